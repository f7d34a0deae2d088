"""Load models: the embedded default, local HuggingFace or TransformerLens-native checkpoint
directories, and (where a hub is reachable) hub names such as `gpt2-small`.

Weights are read only through safetensors (or `transformers`' own safetensors loading);
no pickle is ever unpickled from disk here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch

from .codec import HFCodec, VocabCodec
from .errors import UserError
from .model import DebugModel

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
TESTBED_DIR = Path(__file__).parent / "testbeds" / "models"
REFERENCE_FILE = "reference_prompts.json"

# Hub aliases TransformerLens users know, mapped to HuggingFace repo names.
HUB_ALIASES = {"gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large",
               "gpt2-xl": "gpt2-xl"}


class ModelLoadError(RuntimeError):
    """A model directory is missing, truncated or malformed; the message names the file."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None


def _reference_prompts(directory: Path) -> list[str]:
    path = directory / REFERENCE_FILE
    if not path.exists():
        return []
    data = _read_json(path)
    prompts = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ModelLoadError(f"{path}: expected a list of strings (or {{'prompts': [...]}})")
    return prompts


def _check_safetensors(path: Path) -> None:
    """Fail with the file's name (not a stack trace) if weights are missing or truncated."""
    from safetensors import safe_open

    if not path.exists():
        raise ModelLoadError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                f.get_slice(key)
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise ModelLoadError(f"{path}: unreadable safetensors file ({e})") from None


def is_tl_native_dir(directory: Path) -> bool:
    cfg = directory / "config.json"
    if not cfg.exists():
        return False
    data = _read_json(cfg)
    return "n_layers" in data and "d_model" in data and "architectures" not in data


def load_hf_dir(directory: Path, name: str, device: Optional[str] = None,
                dtype: Optional[torch.dtype] = None) -> DebugModel:
    from transformer_lens.model_bridge import TransformerBridge

    _read_json(directory / "config.json")
    _check_safetensors(directory / "model.safetensors")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        bridge = TransformerBridge.boot_transformers(str(directory), device=device or "cpu", dtype=dtype)
    except Exception as e:
        raise ModelLoadError(f"{directory}: could not load as a HuggingFace checkpoint ({e})") from None
    bridge.eval()
    codec = HFCodec(bridge.tokenizer, prepend_bos=bool(getattr(bridge.cfg, "default_prepend_bos", True)))
    return DebugModel(name, bridge, codec, source=str(directory), reference_prompts=_reference_prompts(directory))


def load_tl_native_dir(directory: Path, name: str, device: Optional[str] = None,
                       dtype: Optional[torch.dtype] = None) -> DebugModel:
    """config.json with TransformerLens fields + model.safetensors with TL state-dict names."""
    from safetensors.torch import load_file
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    cfg_path = directory / "config.json"
    fields = _read_json(cfg_path)
    weights = directory / "model.safetensors"
    _check_safetensors(weights)
    try:
        cfg = TransformerBridgeConfig.from_dict(fields)
        bridge = TransformerBridge.boot_native(cfg, device=device or "cpu", dtype=dtype)
        state = convert_tl_checkpoint(load_file(str(weights)), bridge.cfg)
        result = bridge.load_state_dict(state, strict=False)
    except Exception as e:
        raise ModelLoadError(f"{directory}: not a valid TransformerLens-native checkpoint ({e})") from None
    if result.missing_keys:
        raise ModelLoadError(f"{weights}: missing weights {sorted(result.missing_keys)[:8]}")
    bridge.eval()
    codec = _native_codec(directory, bridge)
    return DebugModel(name, bridge, codec, source=str(directory), reference_prompts=_reference_prompts(directory))


def _native_codec(directory: Path, bridge):
    if (directory / "vocab.json").exists():
        vocab = _read_json(directory / "vocab.json")
        gt = _read_json(directory / "ground_truth.json") if (directory / "ground_truth.json").exists() else {}
        try:
            out = gt.get("output_node", "output")
            return VocabCodec.from_vocab(vocab, gt.get("nodes", {}).get(out, {}).get("name", out))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{directory / 'vocab.json'}: malformed ({e})") from None
    if (directory / "tokenizer.json").exists():
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast.from_pretrained(str(directory))
        return HFCodec(tok, prepend_bos=tok.bos_token_id is not None)
    raise ModelLoadError(f"{directory}: no tokenizer.json or vocab.json for this TransformerLens-native checkpoint")


def load_hub(name: str, device: Optional[str] = None, dtype: Optional[torch.dtype] = None) -> DebugModel:
    """A hub model by name (needs a reachable hub; never used in tests)."""
    from transformer_lens.model_bridge import TransformerBridge

    repo = HUB_ALIASES.get(name, name)
    try:
        bridge = TransformerBridge.boot_transformers(repo, device=device or "cpu", dtype=dtype)
    except Exception as e:
        raise ModelLoadError(f"{name}: not a local directory, and loading {repo!r} from a model hub failed ({e})") from None
    bridge.eval()
    return DebugModel(name, bridge, HFCodec(bridge.tokenizer), source=f"hub:{repo}")


def load_model(spec: str, name: Optional[str] = None, device: Optional[str] = None,
               dtype: Optional[torch.dtype] = None) -> DebugModel:
    """`spec` is 'default', a checkpoint directory, or a hub model name."""
    if spec == "default":
        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            raise ModelLoadError(
                f"{DEFAULT_MODEL_DIR}: the default model is not built (run `python -m "
                "circuit_debugger.default_model.train`)"
            )
        m = load_hf_dir(DEFAULT_MODEL_DIR, name or "default", device, dtype)
        from .autoencoders import REPO_AUTOENCODERS, load_onto

        shipped = Path(os.environ.get("CD_DEFAULT_AUTOENCODERS", REPO_AUTOENCODERS / "default"))
        if shipped.is_dir():
            m.load_errors.update(load_onto(m, shipped))
        return m
    if spec.startswith("tracr/"):
        name_part = spec.split("/", 1)[1]
        if name_part not in testbed_names():
            raise ModelLoadError(f"{spec}: no such testbed (have: {', '.join(testbed_names())})")
        return load_tl_native_dir(TESTBED_DIR / name_part, name or spec, device, dtype)
    path = Path(spec).expanduser()
    if path.is_dir():
        label = name or path.name
        if is_tl_native_dir(path):
            return load_tl_native_dir(path, label, device, dtype)
        return load_hf_dir(path, label, device, dtype)
    if spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"{spec}: directory not found")
    return load_hub(spec, device, dtype)


def testbed_names() -> list[str]:
    """The shipped tracr testbeds (`tracr/<name>`)."""
    if not TESTBED_DIR.is_dir():
        return []
    return sorted(p.name for p in TESTBED_DIR.iterdir() if (p / "config.json").exists())


def load_ground_truth(model: DebugModel) -> dict | None:
    path = Path(model.source) / "ground_truth.json"
    return _read_json(path) if model.source and path.exists() else None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = ["load_model", "ModelLoadError", "DEFAULT_MODEL_DIR", "UserError", "default_device"]
