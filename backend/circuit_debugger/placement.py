"""Placing a model bigger than one device: `--device-map auto|balanced|<json>` and `--offload-dir`.

The bridge hands the device map to accelerate, which splits the HuggingFace modules across
GPUs, the CPU and disk (offloaded modules keep their weights on disk and load them for each
forward pass). The engine's own weight copies (`model.Weights`, the readout matrices every
table multiplies by) must be real tensors on ONE device: `materialized` loads offloaded
parameters while they are read, and `gather` moves every tensor of the result to the device
the tokens enter (the embedding's). Activations captured by hooks may live on other devices
of the map; the engine's arithmetic then runs on the gathered device.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from dataclasses import fields, is_dataclass
from typing import Any, Iterator, Optional, Union

DeviceMap = Union[str, dict]
NAMED_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


class PlacementError(ValueError):
    """A device map that cannot be used; the message says why."""


def parse_device_map(value: Optional[str]) -> Optional[DeviceMap]:
    """`auto`, `balanced`, ... or a JSON object {module name: device} (devices are GPU indices,
    'cuda:N', 'cpu' or 'disk'), from the command line or the environment."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        spec = value
    elif value in NAMED_MAPS:
        return value
    else:
        try:
            spec = json.loads(value)
        except json.JSONDecodeError:
            raise PlacementError(f"device map {value!r}: expected one of {', '.join(NAMED_MAPS)} or a JSON "
                                 "object {module: device}") from None
    if not isinstance(spec, dict) or not spec or not all(isinstance(k, str) for k in spec):
        raise PlacementError("device map: a JSON object {module name: device} with at least one entry")
    for module, device in spec.items():
        if isinstance(device, bool) or not isinstance(device, (int, str)):
            raise PlacementError(f"device map: {module!r} -> {device!r}; a device is a GPU index, 'cuda:N', "
                                 "'cpu' or 'disk'")
        if isinstance(device, str) and device.strip().lower() == "meta":
            raise PlacementError(f"device map: {module!r} -> 'meta' has no weights to run; use 'disk' to offload")
    return spec


def uses_disk(device_map: Optional[DeviceMap]) -> bool:
    return isinstance(device_map, dict) and any(str(v).lower() == "disk" for v in device_map.values())


def offloaded_modules(bridge) -> list:
    """Modules whose parameters accelerate keeps off-device (on disk or the CPU) between passes."""
    model = getattr(bridge, "original_model", None)
    if model is None or not getattr(model, "hf_device_map", None):
        return []
    from accelerate.utils import has_offloaded_params

    return [m for m in model.modules() if has_offloaded_params(m)]


@contextmanager
def materialized(bridge, device) -> Iterator[None]:
    """Within the block, offloaded parameters are real tensors on `device` (so reading the
    bridge's TransformerLens-named parameters sees data, not 'meta' placeholders); they are
    offloaded again on exit. Tensors derived inside the block keep their data."""
    import torch
    from accelerate.utils import align_module_device

    modules = offloaded_modules(bridge)
    if not modules:
        yield
        return
    with ExitStack() as stack:
        stack.callback(_refresh_property_aliases, bridge)  # runs last: re-point at the offloaded placeholders
        for module in modules:
            stack.enter_context(align_module_device(module, torch.device(device)))
        _refresh_property_aliases(bridge)
        yield


def _refresh_property_aliases(bridge) -> None:
    """Bridge components keep attribute aliases of their HF parameters (a norm's `w` is its
    `weight`), resolved once at boot, when offloaded parameters were 'meta' placeholders.
    accelerate swaps parameter objects when it loads or offloads them, so the aliases are
    re-resolved after each swap (the same walk the bridge does at boot)."""
    for module in bridge.modules():
        registry = module.__dict__.get("_property_alias_registry")
        for alias, path in (registry or {}).items():
            if isinstance(getattr(type(module), alias, None), property):
                continue  # a property reads the live parameter already
            target = module
            try:
                for part in path.split("."):
                    target = getattr(target, part)
            except AttributeError:
                continue
            object.__setattr__(module, alias, target)


def home_device(bridge):
    """Where tokens enter: the bridge's device (accelerate sets it from the map's embedding)."""
    import torch

    return torch.device(getattr(bridge.cfg, "device", None) or "cpu")


def gather(obj: Any, device) -> Any:
    """`obj` with every tensor (in dataclass fields, dicts, lists, tuples) on `device`;
    dataclasses are updated in place, containers rebuilt. Tensors already there are kept."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device)
    if is_dataclass(obj) and not isinstance(obj, type):
        for f in fields(obj):
            setattr(obj, f.name, gather(getattr(obj, f.name), device))
        return obj
    if isinstance(obj, dict):
        return {k: gather(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(gather(v, device) for v in obj)
    return obj
