"""Run a model with autoencoders spliced in: a sublayer's output becomes
decode(latents) + error, where error = true output − reconstruction is an explicit node.

The model's outputs are unchanged (up to float rounding), direct effects still sum exactly,
and the latents and errors are ordinary nodes: captured (in the graph when `grad`, so
act×grad works), and open to the same interventions as neurons. The error stays a function
of the true sublayer output, so every gradient is the real model's: a latent's act×grad is
the first-order effect of removing its decoder write from the true model. (Attribution
graphs, which freeze the error, are computed separately in `graph.py`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence


from ..nodes import ATTN, ERROR_OF, MLP, SAE, SAE_ERR, TRANSCODER, TRANSCODER_ERR, NodeId, activation_hook, \
    ln_normalized_hook
from .format import Autoencoder


def latent_key(kind: str, layer: int) -> str:
    """Where a layer's latents / error are stored in captures and intervention sources."""
    return {TRANSCODER: "tc", TRANSCODER_ERR: "tcerr", SAE: "sae", SAE_ERR: "saeerr"}[kind] + f":{layer}"


@dataclass
class AutoencoderSet:
    """The autoencoders loaded for one model: transcoders and SAEs by layer."""

    transcoders: dict = field(default_factory=dict)  # layer -> Autoencoder
    saes: dict = field(default_factory=dict)

    def family(self, kind: str) -> dict:
        return self.transcoders if kind in (TRANSCODER, TRANSCODER_ERR) else self.saes

    def sizes(self) -> dict:
        return {TRANSCODER: {l: a.d_sae for l, a in self.transcoders.items()},
                SAE: {l: a.d_sae for l, a in self.saes.items()}}

    def __bool__(self) -> bool:
        return bool(self.transcoders or self.saes)


@dataclass(frozen=True)
class SpliceChoice:
    """Which layers run through which autoencoder in one forward pass."""

    transcoders: tuple = ()
    saes: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.transcoders or self.saes)


def splice_hooks(aes: AutoencoderSet, choice: SpliceChoice, latent_ivs: Sequence, apply_iv: Callable,
                 store: Optional[dict], grad: bool) -> list[tuple[str, Callable]]:
    """Hooks for the chosen splices. `latent_ivs` are (intervention, batch) pairs on latent or
    error nodes; `apply_iv(tensor, iv, batch, key)` applies one (shared with the other nodes)."""
    hooks: list = []
    for kind, layers in ((TRANSCODER, choice.transcoders), (SAE, choice.saes)):
        for layer in layers:
            ae = aes.family(kind)[layer]
            mine = [(iv, b) for iv, b in latent_ivs if iv.node.layer == layer and iv.node.kind == kind]
            errs = [(iv, b) for iv, b in latent_ivs if iv.node.layer == layer and iv.node.kind == ERROR_OF[kind]]
            hooks += _one(ae, kind, layer, mine, errs, apply_iv, store, grad)
    return hooks


def _one(ae: Autoencoder, kind: str, layer: int, ivs, err_ivs, apply_iv, store, grad):
    key, err_key = latent_key(kind, layer), latent_key(ERROR_OF[kind], layer)
    inputs: dict = {}
    out_hook = activation_hook(NodeId(MLP if kind == TRANSCODER else ATTN, layer), layer + 1)

    def read_input(x, hook=None):
        inputs["x"] = x
        return x

    def splice(out, hook=None):
        x = inputs.pop("x", out)
        acts = ae.encode(x.to(ae.W_enc.dtype))
        # the error is what the autoencoder misses of the true output, measured before any
        # latent intervention (else it would absorb the intervention). It stays a function of
        # the true sublayer, so gradients (act×grad) are the real model's, as interventions are.
        acts = acts.detach()
        err = out - ae.decode(acts).to(out.dtype)
        if grad:  # a leaf: its gradient is W_dec·g, and upstream gradients go through `out` only
            acts.requires_grad_(True)
        for iv, b in ivs:
            acts = apply_iv(acts, iv, b, key)
        recon = ae.decode(acts).to(out.dtype)
        captured_err = err
        for iv, b in err_ivs:
            err = apply_iv(err, iv, b, err_key)
        if store is not None:
            store[key] = acts
            store[err_key] = captured_err if not err_ivs else err
        return recon + err

    if kind == TRANSCODER:
        return [(ln_normalized_hook(f"blocks.{layer}.ln2"), read_input), (out_hook, splice)]
    return [(out_hook, splice)]
