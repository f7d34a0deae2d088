"""Run a model with dictionaries spliced in: a site's value becomes
decode(latents) + error, where error = true value − reconstruction is an explicit node.

The model's outputs are unchanged (up to float rounding), direct effects still sum exactly,
and the latents and errors are ordinary nodes: captured (in the graph when `grad`, so
act×grad works), and open to the same interventions as neurons. The error stays a function
of the true site value, so every gradient is the real model's: a latent's act×grad is
the first-order effect of removing its decoder write from the true model. (Attribution
graphs, which freeze the error, are computed separately in `graph.py`.)

Sites (see sites.py): the MLP output (transcoders, MLP-out SAEs, or a cross-layer transcoder
whose latents read at layer s write every MLP output l ≥ s), the attention output (SAEs on
hook_attn_out or hook_z) and the residual stream entering a layer (residual SAEs: the
residual is replaced by latents + error there, so everything upstream reaches the logits
only through them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ..nodes import ATTN, ERROR_OF, MLP, RESID, RESID_SAE, RESID_SAE_ERR, SAE, SAE_ERR, TRANSCODER, \
    TRANSCODER_ERR, NodeId, activation_hook, ln_normalized_hook
from .format import Autoencoder

_KEYS = {TRANSCODER: "tc", TRANSCODER_ERR: "tcerr", SAE: "sae", SAE_ERR: "saeerr", RESID_SAE: "rsae",
         RESID_SAE_ERR: "rsaeerr"}


def latent_key(kind: str, layer: int) -> str:
    """Where a layer's latents / error are stored in captures and intervention sources."""
    return _KEYS[kind] + f":{layer}"


@dataclass
class AutoencoderSet:
    """The dictionaries loaded for one model, by site and layer (a CLT takes the MLP site)."""

    transcoders: dict = field(default_factory=dict)  # layer -> Autoencoder (MLP site)
    saes: dict = field(default_factory=dict)  # attention site
    resids: dict = field(default_factory=dict)  # residual stream entering layer l (0..n_layers)
    clt: Optional[object] = None  # a CrossLayerTranscoder (clt.py)
    n_layers: int = 0  # of the model (set when a dictionary is placed; the final residual is layer n_layers)

    def family(self, kind: str) -> dict:
        if kind in (TRANSCODER, TRANSCODER_ERR):
            return self.clt.layers if self.clt is not None else self.transcoders
        return self.resids if kind in (RESID_SAE, RESID_SAE_ERR) else self.saes

    def mlp_layers(self) -> list[int]:
        return sorted(self.family(TRANSCODER))

    def sizes(self) -> dict:
        return {TRANSCODER: {l: a.d_sae for l, a in self.family(TRANSCODER).items()},
                SAE: {l: a.d_sae for l, a in self.saes.items()},
                RESID_SAE: {l: a.d_sae for l, a in self.resids.items()}}

    def every(self) -> "SpliceChoice":
        return SpliceChoice(tuple(self.mlp_layers()), tuple(sorted(self.saes)), tuple(sorted(self.resids)))

    def dictionaries(self) -> list[dict]:
        """One row per loaded dictionary (for /api/models)."""
        rows = [dict(a.describe(), layer=l, letter="T") for l, a in sorted(self.transcoders.items())]
        rows += [dict(a.describe(), layer=l, letter="S") for l, a in sorted(self.saes.items())]
        rows += [dict(a.describe(), layer=l, letter="R") for l, a in sorted(self.resids.items())]
        if self.clt is not None:
            rows.append(self.clt.describe())
        return rows

    def __bool__(self) -> bool:
        return bool(self.transcoders or self.saes or self.resids or self.clt is not None)


@dataclass(frozen=True)
class SpliceChoice:
    """Which layers run through which dictionary in one forward pass."""

    transcoders: tuple = ()
    saes: tuple = ()
    resids: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.transcoders or self.saes or self.resids)


def splice_hooks(aes: AutoencoderSet, choice: SpliceChoice, latent_ivs: Sequence, apply_iv: Callable,
                 store: Optional[dict], grad: bool) -> list[tuple[str, Callable]]:
    """Hooks for the chosen splices. `latent_ivs` are (intervention, batch) pairs on latent or
    error nodes; `apply_iv(tensor, iv, batch, key)` applies one (shared with the other nodes)."""
    hooks: list = []
    for kind, layers in ((TRANSCODER, choice.transcoders), (SAE, choice.saes), (RESID_SAE, choice.resids)):
        if kind == TRANSCODER and aes.clt is not None and layers:
            hooks += aes.clt.splice_hooks(layers, latent_ivs, apply_iv, store, grad)
            continue
        for layer in layers:
            ae = aes.family(kind)[layer]
            mine = [(iv, b) for iv, b in latent_ivs if iv.node.layer == layer and iv.node.kind == kind]
            errs = [(iv, b) for iv, b in latent_ivs if iv.node.layer == layer and iv.node.kind == ERROR_OF[kind]]
            hooks += _one(ae, kind, layer, mine, errs, apply_iv, store, grad, aes.n_layers)
    return hooks


def site_hook(kind: str, layer: int, n_layers: int) -> str:
    """The hook whose value a dictionary of this kind replaces."""
    site = {TRANSCODER: MLP, SAE: ATTN, RESID_SAE: RESID}[kind]
    return activation_hook(NodeId(site, layer), n_layers)


def input_hook(ae: Autoencoder, layer: int) -> Optional[str]:
    """The hook the encoder reads when it is not the site itself (None: it reads the site)."""
    return {"ln2_normalized": ln_normalized_hook(f"blocks.{layer}.ln2"), "resid_mid": f"blocks.{layer}.ln2.hook_in",
            "z": f"blocks.{layer}.attn.hook_z"}.get(ae.read)


def _one(ae: Autoencoder, kind: str, layer: int, ivs, err_ivs, apply_iv, store, grad, n_layers: int):
    key, err_key = latent_key(kind, layer), latent_key(ERROR_OF[kind], layer)
    inputs: dict = {}

    def read_input(x, hook=None):
        inputs["x"] = x.flatten(-2) if ae.read == "z" else x
        return x

    def splice(out, hook=None):
        x = inputs.pop("x", out)
        acts = ae.encode(x.to(ae.W_enc.dtype))
        # the error is what the dictionary misses of the true value, measured before any
        # latent intervention (else it would absorb the intervention). It stays a function of
        # the true value, so gradients (act×grad) are the real model's, as interventions are.
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

    hooks = []
    src = input_hook(ae, layer)
    if src is not None:
        hooks.append((src, read_input))
    return hooks + [(site_hook(kind, layer, n_layers), splice)]


def latent_readers(aes: AutoencoderSet, choice: SpliceChoice, store: dict, encode: Optional[Callable] = None) -> dict:
    """{hook: fn(x) -> x} that only encode and store the latents (no decode, no error node):
    the forward stays the model's own, which is what a splice without interventions computes
    anyway (mining). Pass them as a RunRequest's `edits`. `encode(ae, x)` replaces
    `ae.encode(x)` (mining keeps TopK latents sparse)."""
    encode = encode or (lambda ae, x: ae.encode(x))
    hooks: dict = {}
    for kind, layers in ((TRANSCODER, choice.transcoders), (SAE, choice.saes), (RESID_SAE, choice.resids)):
        for layer in layers:
            ae = aes.family(kind)[layer]
            src = input_hook(ae, layer) or site_hook(kind, layer, aes.n_layers)

            def read(x, ae=ae, key=latent_key(kind, layer), then=hooks.get(src)):
                store[key] = encode(ae, (x.flatten(-2) if ae.read == "z" else x).to(ae.W_enc.dtype))
                return then(x) if then else x
            hooks[src] = read
    return hooks
