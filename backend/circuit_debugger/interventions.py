"""Interventions: zero, mean, patch (from a counterfactual prompt), scale and add (steer).

An intervention names a node (any id from `nodes`), an op, and optionally positions. It is
turned into a forward hook at the node's activation hook. Hooks never modify their input in
place, so activations captured elsewhere (and autograd) stay consistent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch

from .errors import UserError
from .nodes import ATTN, AUTOENCODER_KINDS, EMB, HEAD, LATENT_KINDS, MLP, NEURON, POS, RESID, SAE_ERR, \
    TRANSCODER_ERR, RESID_SAE_ERR, NodeId, Shape, activation_hook, parse_node, validate

OPS = ("zero", "mean", "patch", "scale", "add")


@dataclass(frozen=True)
class Intervention:
    node: NodeId
    op: str
    positions: Optional[tuple[int, ...]] = None  # None: all positions
    value: Optional[float] = None  # the factor for 'scale'
    vector: Optional[tuple[float, ...]] = None  # what 'add' adds

    @classmethod
    def make(cls, node: str | NodeId, op: str, positions: Optional[Sequence[int]] = None,
             value: Optional[float] = None, vector: Optional[Sequence[float]] = None) -> "Intervention":
        n = parse_node(node) if isinstance(node, str) else node
        if n.position is not None:
            if positions is not None and list(positions) != [n.position]:
                raise UserError(f"intervention on {n}: give the position either as '@{n.position}' or in positions, not both")
            positions = [n.position]
            n = n.component
        return cls(n, op, tuple(positions) if positions is not None else None, value,
                   tuple(vector) if vector is not None else None)

    def __str__(self) -> str:
        where = "" if self.positions is None else f"@{','.join(map(str, self.positions))}"
        arg = f"×{self.value}" if self.op == "scale" else ""
        return f"{self.op}({self.node}{where}){arg}"


def unit_width(node: NodeId, shape: Shape) -> int:
    """Size of one position's activation for this node (what 'add' vectors must match)."""
    if node.kind == HEAD:
        return shape.d_head
    if node.kind in (NEURON,) + LATENT_KINDS:
        return 1
    if node.kind in (ATTN, MLP, RESID, EMB, POS, TRANSCODER_ERR, SAE_ERR, RESID_SAE_ERR):
        return shape.d_model
    raise UserError(f"node {node} cannot be intervened on")


def check(iv: Intervention, shape: Shape, seq_len: int, *, has_counterfactual: bool, has_means: bool,
          latents: Optional[dict] = None) -> None:
    """Raise a UserError naming what is wrong with this intervention for this prompt."""
    validate(iv.node, shape, latents=latents)
    if iv.op not in OPS:
        raise UserError(f"intervention on {iv.node}: unknown op {iv.op!r} (expected one of {', '.join(OPS)})")
    if iv.positions is not None:
        if len(iv.positions) == 0:
            raise UserError(f"intervention on {iv.node}: positions is empty (omit it for all positions)")
        bad = [p for p in iv.positions if not 0 <= p < seq_len]
        if bad:
            raise UserError(f"intervention on {iv.node}: positions {bad} out of range (prompt has positions 0..{seq_len - 1})")
    if iv.op == "scale" and (iv.value is None or not math.isfinite(iv.value)):
        raise UserError(f"intervention scale on {iv.node}: needs a finite 'value' (the factor)")
    if iv.op == "add":
        want = unit_width(iv.node, shape)
        if iv.vector is None or len(iv.vector) != want:
            got = "none" if iv.vector is None else f"{len(iv.vector)} numbers"
            raise UserError(f"intervention add on {iv.node}: 'vector' must have {want} numbers, got {got}")
        if not all(math.isfinite(x) for x in iv.vector):
            raise UserError(f"intervention add on {iv.node}: vector contains NaN or infinity")
    if iv.op == "patch" and not has_counterfactual:
        raise UserError(f"intervention patch on {iv.node}: needs a counterfactual_prompt")
    if iv.op == "mean" and not has_means:
        raise UserError(
            f"intervention mean on {iv.node}: this model has no reference corpus; give reference_prompts"
        )


def _index(node: NodeId, positions: Optional[Sequence[int]], batch: Optional[int]):
    b = slice(None) if batch is None else batch
    p = slice(None) if positions is None else list(positions)
    if node.kind in (HEAD, NEURON) + LATENT_KINDS:
        return (b, p, node.index)
    return (b, p)


def _apply(x: torch.Tensor, iv: Intervention, batch: Optional[int], source: Mapping[str, torch.Tensor],
           key: str) -> torch.Tensor:
    """Apply one intervention; `key` names its sources ('mean:'+key, 'patch:'+key)."""
    idx = _index(iv.node, iv.positions, batch)
    y = x.clone()
    if iv.op == "zero":
        y[idx] = 0.0
    elif iv.op == "scale":
        y[idx] = x[idx] * iv.value
    elif iv.op == "add":
        vec = torch.tensor(iv.vector, dtype=x.dtype, device=x.device)
        y[idx] = x[idx] + (vec[0] if unit_is_scalar(iv.node) else vec)
    elif iv.op == "mean":
        mean = source["mean:" + key]  # [d] or [n_heads, d_head] or [d_mlp] or [d_sae]
        m = mean[iv.node.index] if iv.node.index is not None else mean
        y[idx] = m.to(x.dtype)
    elif iv.op == "patch":
        cf = source["patch:" + key]  # [1, pos, ...] from the counterfactual prompt
        cidx = (0,) + idx[1:]
        y[idx] = cf[cidx].to(x.dtype)
    return y


def unit_is_scalar(node: NodeId) -> bool:
    return node.kind in (NEURON,) + LATENT_KINDS


def build_hooks(interventions: Sequence[Intervention], n_layers: int,
                source: Mapping[str, torch.Tensor] | None = None,
                batch_of: Optional[Sequence[Optional[int]]] = None,
                autoencoders=None, splice=None, store: Optional[dict] = None,
                grad: bool = False) -> list[tuple[str, Callable]]:
    """One hook per hook point applying, in order, the interventions that act there; then
    the autoencoder splices in `splice` (which apply the interventions on latents / errors).

    `batch_of[i]` restricts intervention i to one batch element (None: all elements); this
    lets k single-node ablations run as one batched forward.
    """
    source = source or {}
    grouped: dict[str, list[tuple[Intervention, Optional[int]]]] = defaultdict(list)
    latent: list = []
    for i, iv in enumerate(interventions):
        item = (iv, None if batch_of is None else batch_of[i])
        if iv.node.kind in AUTOENCODER_KINDS:
            latent.append(item)
        else:
            grouped[activation_hook(iv.node, n_layers)].append(item)

    def make(hook: str, items):
        def fn(x, hook=None, _items=items, _name=hook):
            for iv, b in _items:
                x = _apply(x, iv, b, source, _name)
            return x
        return fn

    hooks = [(h, make(h, items)) for h, items in grouped.items()]
    if splice:
        from .autoencoders.splice import splice_hooks

        apply_iv = lambda x, iv, b, key: _apply(x, iv, b, source, key)
        hooks += splice_hooks(autoencoders, splice, latent, apply_iv, store, grad)
    elif latent:
        raise UserError(f"intervention on {latent[0][0].node}: its autoencoder is not spliced in")
    return hooks


def needed_sources(interventions: Sequence[Intervention], n_layers: int) -> tuple[set[str], set[str]]:
    """Hook names whose mean activations / counterfactual activations these interventions need."""
    def key(iv):
        if iv.node.kind in AUTOENCODER_KINDS:
            from .autoencoders.splice import latent_key

            return latent_key(iv.node.kind, iv.node.layer)
        return activation_hook(iv.node, n_layers)

    means = {key(iv) for iv in interventions if iv.op == "mean"}
    patches = {key(iv) for iv in interventions if iv.op == "patch"}
    return means, patches
