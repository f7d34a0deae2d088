"""One typed execution layer: a run request compiled once into hooks, returning a typed capture.

Every analysis (attribution, exact ablation, clean passes, interventions, circuits, dataset
attribution, graphs, explanations) describes what it wants of a forward pass as a `RunRequest`
and gets a `Capture` back; none assembles hooks by hand.

Order of hooks at one hook point: pre-edit records (for sublayer and residual edits), then
interventions, then autoencoder splices, then captures — so a capture sees the value the rest
of the model sees, and the value before an edit is still known (attribution turns the
difference into an explicit 'intervention' term so direct effects keep summing to the value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import torch

from .interventions import build_hooks
from .nodes import ATTN, EMBED_HOOK, MLP, POS_EMBED_HOOK, RESID, activation_hook

LEAVES = (EMBED_HOOK, POS_EMBED_HOOK)  # where gradients start (captured as leaves when grad=True)
PRE_EDIT = "pre_edit:"  # store prefix of values recorded before an edit
EDITED_KINDS = (ATTN, MLP, RESID)  # edits whose units' rows sit upstream of the edit


@dataclass
class RunRequest:
    """What one forward pass should do. `batch_of[i]` restricts intervention i to one batch
    element (None: all), so k different edits run as one batched pass of `batch` copies."""

    interventions: Sequence = ()
    source: Mapping[str, torch.Tensor] = field(default_factory=dict)
    capture: Sequence[str] = ()
    grad: bool = False
    splice: object = None  # autoencoders.splice.SpliceChoice
    batch_of: Optional[Sequence[Optional[int]]] = None
    batch: int = 1
    tokens: Optional[torch.Tensor] = None  # [batch, pos] instead of `ids` repeated `batch` times
    # arbitrary tensor edits fn(x) -> x, keyed by hook name or by an autoencoder latent key
    # (`splice.latent_key`; applied inside the splice, where latent interventions act)
    edits: Mapping[str, Callable] = field(default_factory=dict)


@dataclass(frozen=True)
class LatentEdit:
    """An edit of a spliced autoencoder's latents, routed like a latent intervention."""

    node: object  # nodes.NodeId of the latent family and layer
    key: str


@dataclass
class Capture:
    acts: dict  # hook name -> tensor (and latent keys from splices, pre-edit records)
    logits: torch.Tensor
    edited: list = field(default_factory=list)  # hook names of sublayer / residual edits (pre-edit values kept)


def capture_hooks(names: Sequence[str], store: dict, grad: bool) -> list[tuple[str, Callable]]:
    """Hooks that record each tensor under the name it was registered with (hook.name differs)."""

    def make(name):
        def fn(x, hook=None):
            if grad and name in LEAVES:
                x = x.detach().requires_grad_(True)
            store[name] = x
            return x
        return fn

    return [(n, make(n)) for n in names]


def compile_hooks(model, req: RunRequest, store: dict) -> tuple[list, list]:
    """The hooks for `req` (in order) and the hook names of its sublayer / residual edits."""
    L = model.shape.n_layers
    edited = sorted({activation_hook(iv.node, L) for iv in req.interventions if iv.node.kind in EDITED_KINDS})

    def pre(name):
        def fn(x, hook=None):
            store[PRE_EDIT + name] = x.detach()
            return x
        return fn

    hooks = [(h, pre(h)) for h in edited]
    latent_edits = {k: fn for k, fn in req.edits.items() if k not in model.hook_points}
    hooks += [(h, (lambda fn: lambda x, hook=None: fn(x))(fn)) for h, fn in req.edits.items() if h in model.hook_points]
    if not latent_edits:
        hooks += build_hooks(req.interventions, L, req.source, req.batch_of, autoencoders=model.autoencoders,
                             splice=req.splice, store=store, grad=req.grad)
    else:  # the splice applies the latent edits (one splice per layer, so not through build_hooks' splice)
        from .autoencoders.splice import latent_key, splice_hooks
        from .nodes import AUTOENCODER_KINDS, NodeId, RESID_SAE, SAE, TRANSCODER

        if any(iv.node.kind in AUTOENCODER_KINDS for iv in req.interventions):
            raise ValueError("latent interventions and latent edits cannot be combined in one run")
        hooks += build_hooks(req.interventions, L, req.source, req.batch_of)
        items = [(LatentEdit(NodeId(k, l), latent_key(k, l)), None)
                 for k, layers in ((TRANSCODER, req.splice.transcoders), (SAE, req.splice.saes),
                                   (RESID_SAE, req.splice.resids)) for l in layers
                 if latent_key(k, l) in latent_edits]
        hooks += splice_hooks(model.autoencoders, req.splice, items,
                              lambda x, iv, b, key: latent_edits[key](x), store, req.grad)
    names = [n for n in dict.fromkeys(list(req.capture) + edited) if n in model.hook_points]
    hooks += capture_hooks(names, store, req.grad)
    return hooks, edited


def execute(model, ids: Sequence[int] | None, req: RunRequest) -> Capture:
    """Run the model once as `req` says."""
    store: dict = {}
    hooks, edited = compile_hooks(model, req, store)
    tokens = req.tokens if req.tokens is not None else model.tokens_tensor(ids, batch=req.batch)
    logits = model.run(tokens, hooks, grad=req.grad)
    return Capture(store, logits, edited)
