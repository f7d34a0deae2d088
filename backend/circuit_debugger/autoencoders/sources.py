"""What `--autoencoders MODEL=SPEC` can name, turned into (where, factory) pairs.

SPEC is one of: a dictionary folder (SAELens layout, or a Gemma Scope params.npz with a
cfg.json); a circuit-tracer transcoder set (config.yaml) or cross-layer transcoder folder
(W_enc_0.safetensors ...); a folder whose subfolders are any of these; or a `saelens:` id
(see releases.py). Anything that is not recognised is reported, never silently skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .format import is_saelens_folder

WHAT = ("no dictionaries found: expected cfg.json + sae_weights.safetensors (SAELens), config.yaml "
        "(circuit-tracer transcoders), W_enc_0.safetensors (circuit-tracer CLT), or subfolders of those")


def _saelens(folder: Path) -> Callable:
    def make():
        from . import load as load_saelens  # looked up now (the package's `load`)

        return load_saelens(folder)
    return make


def _one_folder(folder: Path) -> list[tuple[str, Callable]] | None:
    from . import circuit_tracer

    if is_saelens_folder(folder):
        return [(str(folder), _saelens(folder))]
    if circuit_tracer.is_transcoder_set(folder):
        return circuit_tracer.transcoder_set(folder)
    if circuit_tracer.is_clt(folder):
        return [(str(folder), lambda: circuit_tracer.load_clt(folder))]
    return None


def resolve_spec(spec: str, errors: dict) -> list[tuple[str, Callable]]:
    if spec.startswith("saelens:"):
        from .releases import resolve

        return resolve(spec, errors)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        errors[spec] = "directory not found"
        return []
    found = _one_folder(folder)
    if found is not None:
        return found
    out: list = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        # a subfolder that is no other format is read as a SAELens folder: its error names the file
        out += _one_folder(sub) or [(str(sub), _saelens(sub))]
    if not out and not errors:
        errors[str(folder)] = WHAT
    return out
