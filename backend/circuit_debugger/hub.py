"""Hub names (`gpt2-small`, `EleutherAI/pythia-70m`, `meta-llama/Llama-3.2-1B`) as local
snapshot directories of the HuggingFace cache.

A name is resolved to a folder `$HF_HOME/hub/models--ORG--NAME/snapshots/<rev>/` (downloading
only configs, tokenizers and safetensors when a hub is reachable; never `.bin` pickles), and
that folder is then loaded exactly like a local checkpoint directory, so every check on local
directories (shards, pickles) applies to hub models too. With `HF_HUB_OFFLINE=1` (or
`TRANSFORMERS_OFFLINE=1`) only the cache is read. The environment is read at call time, not
at import, so a process (or a test) may set `HF_HOME` / `HF_HUB_OFFLINE` after importing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

# Aliases TransformerLens users know; TransformerLens' own alias table is consulted next.
ALIASES = {"gpt2-small": "gpt2"}
# What a snapshot needs: configs, tokenizer files, safetensors weights. No pickles, no code.
PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "merges*", "vocab*"]


class HubError(RuntimeError):
    """A hub name could not be resolved to a cached (or downloaded) snapshot."""


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def cache_dir() -> Path:
    """The hub cache as the environment says now (HF_HUB_CACHE, else $HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def repo_id(name: str) -> str:
    if name in ALIASES:
        return ALIASES[name]
    try:
        from transformer_lens.tools.model_registry.registry_io import resolve_model_alias

        return resolve_model_alias(name) or name
    except Exception:  # the alias table is a convenience; the name itself is still tried
        return name


def snapshot(name: str, revision: Optional[str] = None) -> Path:
    """The local snapshot folder of hub model `name` (downloaded when online and missing)."""
    from huggingface_hub import snapshot_download

    repo = repo_id(name)
    where = cache_dir()
    try:
        path = snapshot_download(repo, revision=revision, cache_dir=str(where), local_files_only=offline(),
                                 allow_patterns=PATTERNS)
    except Exception as e:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP and OS errors
        if offline():
            raise HubError(f"{name}: not a local directory, and {repo!r} is not in the HuggingFace cache "
                           f"({where}) while HF_HUB_OFFLINE=1; download it once online, or point HF_HOME "
                           f"at a populated cache") from None
        raise HubError(f"{name}: not a local directory, and fetching {repo!r} from the HuggingFace hub "
                       f"failed ({type(e).__name__}: {e})") from None
    return Path(path)
