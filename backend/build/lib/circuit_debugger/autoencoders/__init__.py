"""SAEs and transcoders as debugger nodes: on-disk format, loading onto a model, splicing.

Supported placements (the ones whose latents decompose a sublayer exactly):
- transcoders reading `blocks.{l}.ln2.hook_normalized` (or `blocks.{l}.ln2.hook_out`, whose
  LN gain and bias are then folded into the encoder) and writing `blocks.{l}.hook_mlp_out`;
- SAEs reading and writing `blocks.{l}.hook_attn_out`.
"""

from __future__ import annotations

import re
from pathlib import Path

from .format import Autoencoder, AutoencoderLoadError, load

REPO_AUTOENCODERS = Path(__file__).resolve().parents[3] / "autoencoders"

_TC_IN = re.compile(r"^blocks\.(\d+)\.ln2\.hook_(normalized|out)$")
_TC_OUT = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")
_SAE = re.compile(r"^blocks\.(\d+)\.hook_attn_out$")


def place(model, ae: Autoencoder, where: str) -> None:
    """Attach one autoencoder to `model` after checking it fits."""
    d = model.shape.d_model
    if ae.W_enc.shape[0] != d or ae.W_dec.shape[1] != d:
        raise AutoencoderLoadError(f"{where}: d_in/d_out {ae.W_enc.shape[0]}/{ae.W_dec.shape[1]} do not match "
                                   f"the model's d_model {d}")
    ae.to(device=model.device, dtype=model.dtype)
    if ae.is_transcoder:
        m_in, m_out = _TC_IN.match(ae.hook_name), _TC_OUT.match(ae.hook_name_out or "")
        if not (m_in and m_out and m_in.group(1) == m_out.group(1)):
            raise AutoencoderLoadError(
                f"{where}: transcoders must read blocks.L.ln2.hook_normalized (or ln2.hook_out) and write "
                f"blocks.L.hook_mlp_out of the same layer; this one reads {ae.hook_name!r} and writes "
                f"{ae.hook_name_out!r}")
        layer = int(m_in.group(1))
        if layer >= model.shape.n_layers:
            raise AutoencoderLoadError(f"{where}: layer {layer} does not exist in this model")
        if m_in.group(2) == "out":  # fold the LN affine: x_out = x_norm * w + b
            ln = f"blocks.{layer}.ln2"
            if ln in model.W.ln:
                w, b = model.W.ln[ln]
                ae.b_enc = ae.b_enc + (b @ ae.W_enc if b is not None else 0)
                ae.W_enc = w[:, None] * ae.W_enc
            ae.hook_name = f"blocks.{layer}.ln2.hook_normalized"
        model.autoencoders.transcoders[layer] = ae
    else:
        m = _SAE.match(ae.hook_name)
        if not m:
            raise AutoencoderLoadError(f"{where}: SAEs must read and write blocks.L.hook_attn_out; this one reads "
                                       f"{ae.hook_name!r} (residual-stream SAEs would double-count upstream nodes)")
        layer = int(m.group(1))
        if layer >= model.shape.n_layers:
            raise AutoencoderLoadError(f"{where}: layer {layer} does not exist in this model")
        model.autoencoders.saes[layer] = ae


def load_onto(model, directory: Path) -> dict[str, str]:
    """Load every autoencoder folder under `directory` onto `model`; returns {folder: error}."""
    directory = Path(directory)
    errors: dict[str, str] = {}
    if not directory.is_dir():
        return {str(directory): "directory not found"}
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        try:
            place(model, load(folder), str(folder))
        except AutoencoderLoadError as e:
            errors[str(folder)] = str(e)
    return errors


__all__ = ["Autoencoder", "AutoencoderLoadError", "load", "load_onto", "place", "REPO_AUTOENCODERS"]
