"""`saelens:` dictionary ids resolved offline in the HuggingFace cache.

    saelens:RELEASE            every SAE of a release in the table below
    saelens:RELEASE/SAE_ID     one SAE (SAE_ID as in SAELens' pretrained_saes.yaml)
    saelens:ORG/REPO/PATH      a folder of a HuggingFace repo (SAELens layout, or Gemma Scope's
                               params.npz whose hook follows from the repo name and `layer_N`)

The table is a small extract of facts from SAELens' `pretrained_saes.yaml` (release → repo,
the SAE ids and their folder in the repo), for the releases whose files we can read without
unpickling. Files are looked up with huggingface_hub in the local cache only (HF_HOME,
HF_HUB_OFFLINE=1 works): nothing is downloaded while the server starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from .format import Autoencoder, AutoencoderLoadError, from_cfg, read_cfg, read_tensors

_GPT2_RES = [f"blocks.{l}.hook_resid_pre" for l in range(12)] + ["blocks.11.hook_resid_post"]
RELEASES: dict[str, dict] = {
    "gpt2-small-res-jb": {"repo": "jbloom/GPT2-Small-SAEs-Reformatted", "format": "saelens", "ids": _GPT2_RES},
    "gpt2-small-res-jb-feature-splitting": {
        "repo": "jbloom/GPT2-Small-Feature-Splitting-Experiment-Layer-8", "format": "saelens",
        "ids": [f"blocks.8.hook_resid_pre_{n}" for n in (768, 1536, 3072, 6144, 12288, 24576, 49152, 98304)]},
    # Gemma Scope: SAE ids are the repo folders (layer_L/width_W/average_l0_X)
    "gemma-scope-2b-pt-res": {"repo": "google/gemma-scope-2b-pt-res", "format": "gemma-scope"},
    "gemma-scope-2b-pt-mlp": {"repo": "google/gemma-scope-2b-pt-mlp", "format": "gemma-scope"},
    "gemma-scope-2b-pt-att": {"repo": "google/gemma-scope-2b-pt-att", "format": "gemma-scope"},
    "gemma-scope-2b-pt-transcoders": {"repo": "google/gemma-scope-2b-pt-transcoders", "format": "gemma-scope"},
    # releases whose weights are pickled .pt files: named so the refusal says why
    "gpt2-small-hook-z-kk": {"repo": "ckkissane/attn-saes-gpt2-small-all-layers", "format": "pickle"},
    "gpt2-small-resid-post-v5-32k": {"repo": "jbloom/GPT2-Small-OAI-v5-32k-resid-post-SAEs", "format": "pickle"},
}


def _cached(repo: str, filename: str, what: str) -> Path:
    import os

    from huggingface_hub import hf_hub_download

    # read the cache location now (huggingface_hub fixes it at import time)
    cache = os.environ.get("HF_HUB_CACHE") or str(Path(os.environ.get("HF_HOME") or
                                                        Path.home() / ".cache" / "huggingface") / "hub")
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True, cache_dir=cache))
    except Exception as e:
        raise AutoencoderLoadError(f"{what}: {repo}/{filename} is not in the HuggingFace cache "
                                   f"({type(e).__name__}); download it first (e.g. `hf download {repo} "
                                   f"--include '{filename}'`)") from None


def gemma_scope_cfg(repo: str, folder: str, what: str) -> dict:
    """The cfg SAELens derives for a Gemma Scope folder: JumpReLU, no input shift, and a hook
    that follows from the repo name (res → resid_post, mlp → mlp_out, att → hook_z)."""
    m = re.search(r"layer_(\d+)", folder)
    if not m:
        raise AutoencoderLoadError(f"{what}: cannot tell the layer of Gemma Scope folder {folder!r} (no layer_N)")
    l, name = int(m.group(1)), repo.split("/")[-1]
    cfg = {"architecture": "jumprelu", "apply_b_dec_to_input": False, "normalize_activations": "none"}
    if "transcoder" in name:
        cfg.update(hook_name=f"blocks.{l}.ln2.hook_normalized", hook_name_out=f"blocks.{l}.hook_mlp_out")
    elif "-res" in name:
        cfg["hook_name"] = f"blocks.{l}.hook_resid_post"
    elif "-mlp" in name:
        cfg["hook_name"] = f"blocks.{l}.hook_mlp_out"
    elif "-att" in name:
        cfg["hook_name"] = f"blocks.{l}.attn.hook_z"
    else:
        raise AutoencoderLoadError(f"{what}: cannot tell the hook of Gemma Scope repo {repo!r}")
    return cfg


def load_repo_folder(repo: str, folder: str, what: str, gemma_scope: bool = False) -> Autoencoder:
    folder = folder.strip("/")
    if gemma_scope or repo.startswith("google/gemma-scope"):
        p = _cached(repo, f"{folder}/params.npz", what)
        w = {("W_" + k[2:] if k.startswith("w_") else k): v for k, v in read_tensors(p).items()}
        return from_cfg(gemma_scope_cfg(repo, folder, what), w, what, p, p, what)
    cfg_path = _cached(repo, f"{folder}/cfg.json", what)
    w_path = _cached(repo, f"{folder}/sae_weights.safetensors", what)
    return from_cfg(read_cfg(cfg_path), read_tensors(w_path), what, cfg_path, w_path, what)


def resolve(spec: str, errors: dict) -> list[tuple[str, Callable]]:
    """(where, factory) per dictionary a `saelens:` spec names; unknown ids go to `errors`."""
    body = spec[len("saelens:"):].strip("/")
    head, _, rest = body.partition("/")
    if head in RELEASES:
        rel = RELEASES[head]
        if rel["format"] == "pickle":
            errors[spec] = (f"release {head} ({rel['repo']}) ships pickled .pt files, which are never unpickled "
                            "here; convert them to SAELens' safetensors layout first")
            return []
        ids = [rest] if rest else rel.get("ids")
        if not ids:
            errors[spec] = f"release {head}: name one SAE, e.g. saelens:{head}/layer_3/width_16k/average_l0_71"
            return []
        if rest and "ids" in rel and rest not in rel["ids"]:
            errors[spec] = f"release {head} has no SAE {rest!r} (have: {', '.join(rel['ids'])})"
            return []
        gs = rel["format"] == "gemma-scope"
        return [(f"saelens:{head}/{i}", (lambda i=i: load_repo_folder(rel["repo"], i, f"saelens:{head}/{i}", gs)))
                for i in ids]
    parts = body.split("/")
    if len(parts) < 3:
        errors[spec] = (f"unknown release {head!r} (known: {', '.join(sorted(RELEASES))}); or give "
                        "saelens:ORG/REPO/PATH to a folder of a HuggingFace repo")
        return []
    repo, folder = "/".join(parts[:2]), "/".join(parts[2:])
    return [(spec, lambda: load_repo_folder(repo, folder, spec))]
