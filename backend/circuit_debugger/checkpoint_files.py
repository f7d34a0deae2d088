"""Which files of a checkpoint directory hold its weights, checked before anything loads them.

Weights are read only from safetensors: a single `model.safetensors`, or the shards named by
`model.safetensors.index.json` (how every checkpoint over ~1B parameters ships). Each shard the
index names must exist, parse, and hold the tensors the index assigns to it; a failure names
the file. A directory whose weights exist only as pickles (`pytorch_model.bin`, `*.pt`, ...) is
refused with a message saying to convert it: a pickle can run arbitrary code when loaded, so
none is ever opened here, and `no_unpickling()` makes sure no library falls back to
`torch.load` while a model loads.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CONVERT_HINT = ("convert it to safetensors first, in an environment you trust (e.g. `AutoModelForCausalLM."
                "from_pretrained(DIR).save_pretrained(OUT)` writes model.safetensors); pickled checkpoints can "
                "run code when loaded, so this debugger never unpickles them")


class CheckpointError(RuntimeError):
    """A weights file is missing, truncated, pickled or inconsistent; the message names it."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable ({e.strerror or e})") from None


def check_safetensors(path: Path) -> set[str]:
    """The tensor names in `path`; fails with the file's name (not a stack trace) if the file is
    missing, unreadable or truncated. Reads headers only (slices are not materialised)."""
    from safetensors import safe_open

    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for key in keys:
                f.get_slice(key)
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    return keys


def pickled_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and p.name.endswith(PICKLE_SUFFIXES))


def refuse_pickles(directory: Path, what: str = "weights") -> None:
    pickles = pickled_files(directory)
    if pickles:
        raise CheckpointError(f"{directory}: the {what} are only in pickle format ({', '.join(pickles[:4])}); "
                              + CONVERT_HINT)


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a HuggingFace checkpoint directory, every one checked."""
    index = directory / INDEX
    if index.exists():
        return _sharded(directory, index)
    single = directory / SINGLE
    if single.exists():
        check_safetensors(single)
        return [single]
    refuse_pickles(directory)
    raise CheckpointError(f"{single}: file not found (nor {INDEX} for a sharded checkpoint)")


def _sharded(directory: Path, index: Path) -> list[Path]:
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index}: expected a non-empty 'weight_map' of tensor name -> shard file")
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        if Path(shard).name != shard or not shard.endswith(".safetensors"):
            raise CheckpointError(f"{index}: shard {shard!r} must be a .safetensors file in the same directory")
        by_shard.setdefault(shard, set()).add(tensor)
    files = []
    for shard, tensors in sorted(by_shard.items()):
        path = directory / shard
        if not path.exists():
            raise CheckpointError(f"{path}: file not found (named by {index.name}; "
                                  f"{len(by_shard)} shards expected)")
        missing = tensors - check_safetensors(path)
        if missing:
            raise CheckpointError(f"{path}: lacks tensors that {index.name} places there "
                                  f"({', '.join(sorted(missing)[:4])})")
        files.append(path)
    return files


_guard = threading.RLock()


@contextmanager
def no_unpickling() -> Iterator[None]:
    """While a model loads, `torch.load` raises instead of unpickling. The weights were checked
    to be safetensors, which `transformers` prefers; this guarantees it never falls back to a
    pickle that happens to sit beside them. Loads are serialised by a lock (they happen at
    start-up), and the original function is restored even if loading fails."""
    import torch

    def refuse(f, *args, **kwargs):
        raise CheckpointError(f"{getattr(f, 'name', f)}: refusing to unpickle; " + CONVERT_HINT)

    with _guard:
        original = torch.load
        torch.load = refuse
        try:
            yield
        finally:
            torch.load = original
