"""Residual-stream SAEs in the per-node tables: the cut they make.

With a residual SAE spliced at the residual entering layer c, that residual *is* latents +
decoder bias + error from there on, so every writer upstream of c (embeddings, sublayers of
layers < c, residual SAEs at earlier layers) reaches the readout only through them: their
direct effect is 0 and the latents' is exact, and direct effects still sum to the value.
Total effects (act×grad) are untouched: the error is a function of the true residual, so
gradients are the real model's.
"""

from __future__ import annotations

from typing import Optional

from ..nodes import RESID_SAE, RESID_SAE_ERR
from .splice import latent_key


def resid_groups(aes, choice, layer: int) -> list:
    from ..attribution import Group

    if layer not in choice.resids:
        return []
    ae = aes.resids[layer]
    return [Group(RESID_SAE, layer, latent_key(RESID_SAE, layer), ae.W_dec, ae.b_dec, "resid"),
            Group(RESID_SAE_ERR, layer, latent_key(RESID_SAE_ERR, layer), sublayer="resid")]


def resid_cut(groups, ro, n_mlp: int) -> Optional[int]:
    """The layer of the last residual SAE before the readout (None: no cut)."""
    from ..targets import SUBLAYER_READS

    if ro.stage in SUBLAYER_READS:  # a read of one sublayer's output: no residual cut applies
        return None
    layers = [g.layer for g in groups if g.kind == RESID_SAE and g.layer <= n_mlp]
    return max(layers) if layers else None


def upstream_of(g, cut: Optional[int]) -> bool:
    return cut is not None and (g.layer is None or g.layer < cut)


__all__ = ["resid_groups", "resid_cut", "upstream_of", "RESID_SAE_ERR"]
