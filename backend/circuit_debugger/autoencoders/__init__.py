"""Dictionaries (SAEs, transcoders, cross-layer transcoders) as debugger nodes: on-disk
formats, loading onto a model, splicing.

Sources (`--autoencoders MODEL=SPEC`, see `sources.py`): one dictionary folder, a folder of
them, a circuit-tracer transcoder set or CLT folder, or `saelens:RELEASE[/SAE_ID]` /
`saelens:ORG/REPO/PATH` resolved in the HuggingFace cache. Sites: see `sites.py`.
"""

from __future__ import annotations

from pathlib import Path

from .format import Autoencoder, AutoencoderLoadError, load

REPO_AUTOENCODERS = Path(__file__).resolve().parents[3] / "autoencoders"


def place(model, ae, where: str) -> None:
    """Attach one dictionary to `model` after checking it fits (and rewriting it for its site)."""
    from .clt import CrossLayerTranscoder

    model.autoencoders.n_layers = model.shape.n_layers
    if isinstance(ae, CrossLayerTranscoder):
        ae.place(model, where)
        return
    from .sites import resolve

    ae.to(device=model.device, dtype=model.dtype)
    site, layer = resolve(model, ae, where)
    slot = {"mlp": model.autoencoders.transcoders, "attn": model.autoencoders.saes,
            "resid": model.autoencoders.resids}[site]
    if layer in slot or (site == "mlp" and model.autoencoders.clt is not None):
        have = slot[layer].name if layer in slot else model.autoencoders.clt.name
        raise AutoencoderLoadError(f"{where}: layer {layer} already has a dictionary at the {site} site ({have})")
    slot[layer] = ae


def load_onto(model, spec) -> dict[str, str]:
    """Load the dictionaries `spec` names onto `model`; returns {what: error} for each one
    that did not load (an empty dict only when at least one loaded)."""
    from .sources import resolve_spec

    errors: dict[str, str] = {}
    found = resolve_spec(str(spec), errors)
    for where, make in found:
        try:
            place(model, make(), where)
        except AutoencoderLoadError as e:
            errors[where] = str(e)
        except Exception as e:  # any other failure is this dictionary's too: listed, and the model still serves
            errors[where] = f"{type(e).__name__}: {e}"
    return errors


__all__ = ["Autoencoder", "AutoencoderLoadError", "load", "load_onto", "place", "REPO_AUTOENCODERS"]
