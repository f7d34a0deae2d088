"""Load models: the embedded default, local HuggingFace or TransformerLens-native checkpoint
directories (single or sharded safetensors, fp32/fp16/bf16, tied or untied embeddings), and hub
names such as `gpt2-small` through the HuggingFace cache (`hub.py`).

Weights are read only from safetensors (`checkpoint_files.py`): pickled checkpoints are refused
with a message saying to convert them, and nothing is ever unpickled. Models bigger than one
device load with an accelerate device map and optional disk offload (`placement.py`).

`load_model` raises only `ModelLoadError` or `UserError` (e.g. `model.UnsupportedModel`):
whatever goes wrong while loading (a bad file, an architecture the engine cannot decompose, a
bug), the caller gets a message it can show beside the models that did load, and a server
keeps serving those.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from .checkpoint_files import CheckpointError, no_unpickling, read_json, refuse_pickles, weight_files
from .checkpoint_files import check_safetensors
from .codec import HFCodec, VocabCodec
from .errors import UserError
from .model import DebugModel
from .placement import DeviceMap, gather, home_device, materialized, parse_device_map, uses_disk

log = logging.getLogger("circuit_debugger.loading")

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
LLAMA_MODEL_DIR = Path(__file__).parent / "models" / "llama"  # the embedded Llama-family model (spec 'llama')
TESTBED_DIR = Path(__file__).parent / "testbeds" / "models"
REFERENCE_FILE = "reference_prompts.json"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says which file or what, and why."""


def _read_json(path: Path) -> dict:
    try:
        return read_json(path)
    except CheckpointError as e:
        raise ModelLoadError(str(e)) from None


def _reference_prompts(directory: Path) -> list[str]:
    path = directory / REFERENCE_FILE
    if not path.exists():
        return []
    data = _read_json(path)
    prompts = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ModelLoadError(f"{path}: expected a list of strings (or {{'prompts': [...]}})")
    return prompts


def is_tl_native_dir(directory: Path) -> bool:
    cfg = directory / "config.json"
    if not cfg.exists():
        return False
    data = _read_json(cfg)
    return isinstance(data, dict) and "n_layers" in data and "d_model" in data and "architectures" not in data


def _debug_model(name: str, bridge, codec, source: str, reference_prompts=()) -> DebugModel:
    """The DebugModel of a booted bridge, its weight copies real tensors on one device even
    when accelerate offloaded or split the model."""
    device = home_device(bridge)
    try:
        with materialized(bridge, device):
            m = DebugModel(name, bridge, codec, source=source, reference_prompts=reference_prompts)
    except (UserError, ModelLoadError):
        raise
    except Exception as e:  # e.g. a family whose weights the engine does not read yet
        raise ModelLoadError(f"{source}: the checkpoint loaded, but the debugger cannot read this "
                             f"architecture ({type(e).__name__}: {e})") from None
    if getattr(getattr(bridge, "original_model", None), "hf_device_map", None):
        m.W = gather(m.W, device)
        m.device = device
    return m


def load_hf_dir(directory: Path, name: str, device: Optional[str] = None, dtype: Optional[torch.dtype] = None,
                device_map: Optional[DeviceMap] = None, offload_dir: Optional[str] = None,
                source: Optional[str] = None) -> DebugModel:
    """A HuggingFace checkpoint directory (config.json + safetensors, single or sharded).
    Half-precision checkpoints are upcast to float32 unless `dtype` says otherwise."""
    from transformer_lens.model_bridge import TransformerBridge

    _read_json(directory / "config.json")
    weight_files(directory)
    kwargs: dict = {"dtype": dtype or torch.float32}
    if device_map is not None:
        kwargs["device_map"] = device_map
        if offload_dir:
            kwargs["offload_folder"] = str(offload_dir)
        elif uses_disk(device_map):
            raise ModelLoadError("a device map with 'disk' needs --offload-dir (where the offloaded weights go)")
    else:
        kwargs["device"] = device or "cpu"
    try:
        with no_unpickling():
            bridge = TransformerBridge.boot_transformers(str(directory), **kwargs)
    except CheckpointError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{directory}: could not load as a HuggingFace checkpoint "
                             f"({type(e).__name__}: {e})") from None
    bridge.eval()
    codec = HFCodec(bridge.tokenizer, prepend_bos=bool(getattr(bridge.cfg, "default_prepend_bos", True)))
    return _debug_model(name, bridge, codec, source or str(directory), _reference_prompts(directory))


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
    if not weights.exists():
        refuse_pickles(directory)
    check_safetensors(weights)
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


def load_hub(name: str, device: Optional[str] = None, dtype: Optional[torch.dtype] = None,
             device_map: Optional[DeviceMap] = None, offload_dir: Optional[str] = None,
             label: Optional[str] = None) -> DebugModel:
    """A hub model by name, from the HuggingFace cache (downloaded into it when a hub is
    reachable and HF_HUB_OFFLINE is not set), loaded like a local directory."""
    from .hub import HubError, repo_id, snapshot

    try:
        folder = snapshot(name)
    except HubError as e:
        raise ModelLoadError(str(e)) from None
    return load_hf_dir(folder, label or name, device, dtype, device_map, offload_dir, source=f"hub:{repo_id(name)}")


def _load_embedded(spec: str, name: Optional[str], device, dtype) -> DebugModel:
    """An embedded model with the dictionaries shipped for it (autoencoders/<spec>/ or
    $CD_<SPEC>_AUTOENCODERS), when that folder exists."""
    from .embedded import EMBEDDED, shipped_autoencoders

    directory = EMBEDDED[spec]
    if not (directory / "config.json").exists():
        arch = " --arch llama" if spec == "llama" else ""
        raise ModelLoadError(f"{directory}: the {spec} model is not built (run `python -m "
                             f"circuit_debugger.default_model.train{arch}`)")
    m = load_hf_dir(directory, name or spec, device, dtype)
    shipped = shipped_autoencoders(spec)
    if shipped.is_dir():
        from .autoencoders import load_onto

        m.load_errors.update(load_onto(m, shipped))
    return m


def _load(spec: str, name: Optional[str], device, dtype, device_map, offload_dir) -> DebugModel:
    if spec in ("default", "llama"):  # the embedded models (embedded.py)
        return _load_embedded(spec, name, device, dtype)
    if spec.startswith("tracr/"):
        name_part = spec.split("/", 1)[1]
        if name_part not in testbed_names():
            raise ModelLoadError(f"{spec}: no such testbed (have: {', '.join(testbed_names())})")
        return load_tl_native_dir(TESTBED_DIR / name_part, name or spec, device, dtype)
    path = Path(spec).expanduser()
    if path.is_dir():
        label = name or path.name
        if is_tl_native_dir(path):
            if device_map is not None:
                log.info("%s: TransformerLens-native checkpoints load whole on one device; device map ignored", spec)
            return load_tl_native_dir(path, label, device, dtype)
        return load_hf_dir(path, label, device, dtype, device_map, offload_dir)
    if path.exists():
        raise ModelLoadError(f"{spec}: a file, not a checkpoint directory; pass the directory holding "
                             "config.json and the safetensors weights")
    if spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"{spec}: directory not found")
    return load_hub(spec, device, dtype, device_map, offload_dir, label=name)


def load_model(spec: str, name: Optional[str] = None, device: Optional[str] = None,
               dtype: Optional[torch.dtype] = None, device_map: Optional[DeviceMap] = None,
               offload_dir: Optional[str] = None) -> DebugModel:
    """`spec` is 'default', 'llama', 'tracr/<name>', a checkpoint directory, or a hub model name.
    `device_map` ('auto', 'balanced', a {module: device} dict or its JSON) splits a HuggingFace
    model across devices with accelerate; 'disk' entries go to `offload_dir`.

    Raises ModelLoadError (whose message names the file or says what is wrong) or a UserError
    such as model.UnsupportedModel (an architecture the debugger refuses, saying why); every
    other exception is turned into a ModelLoadError."""
    try:
        return _load(spec, name, device, dtype, parse_device_map(device_map), offload_dir)
    except (ModelLoadError, UserError):  # UserError: e.g. model.UnsupportedModel, saying what cannot be decomposed
        raise
    except (CheckpointError, ValueError) as e:
        raise ModelLoadError(str(e)) from None
    except Exception as e:  # anything else (e.g. an architecture the engine cannot read): say what, keep serving
        log.debug("loading %s failed", spec, exc_info=True)
        raise ModelLoadError(f"{spec}: could not be loaded ({type(e).__name__}: {e})") from None


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
