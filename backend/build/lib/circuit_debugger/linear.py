"""Direct effects: each component's write dotted with the readout direction (LN scale frozen).

With LN(r) = (r − mean r)/s · w + b and s frozen, LN(r)·u = r·G + b·u where
G = centre(w ⊙ u / s). So a component's direct effect is its write at that position · G,
and the sum over all components plus the bias terms is exactly the target.
"""

from __future__ import annotations

import torch

from .model import DebugModel
from .nodes import ATTN, EMB, HEAD, MLP, NEURON, POS, NodeId, activation_hook, ln_scale_hook
from .targets import Acts, Readout


def residual_direction(model: DebugModel, ro: Readout, acts: Acts) -> torch.Tensor:
    """G [P, d_model]: residual-space directions whose dot with the residual gives the readout."""
    U = ro.U.to(model.dtype)
    if ro.stage == "attn_out" or ro.ln not in model.W.ln:  # no layer norm on this read
        return U
    w = model.W.ln[ro.ln][0] if ro.affine else 1.0
    s = acts[ln_scale_hook(ro.ln)][0, ro.positions].detach().reshape(len(ro.positions), 1)
    G = U * w / s
    return G - G.mean(-1, keepdim=True) if model.norm == "LN" else G


def ln_bias_term(model: DebugModel, ro: Readout) -> float:
    if not ro.affine or ro.ln not in model.W.ln or model.W.ln[ro.ln][1] is None:
        return 0.0
    return float((ro.U @ model.W.ln[ro.ln][1]).sum())


def layers_before(ro: Readout) -> tuple[int, int]:
    """How many attention and MLP sublayers write before the readout point."""
    return (ro.layer + 1 if ro.stage == "mid" else ro.layer), ro.layer


def write_vector(model: DebugModel, node: NodeId, acts: Acts, position: int) -> torch.Tensor:
    """What `node` adds to the residual stream at `position` on this prompt [d_model]."""
    L, W = model.shape.n_layers, model.W
    if node.kind == HEAD:
        z = acts[activation_hook(node, L)][0, position, node.index].detach()
        return z @ W.W_O[node.layer, node.index]
    if node.kind == NEURON:
        return acts[activation_hook(node, L)][0, position, node.index].detach() * W.W_out[node.layer, node.index]
    if node.kind in (ATTN, MLP, EMB, POS):
        return acts[activation_hook(node, L)][0, position].detach()
    raise ValueError(f"{node} has no write vector")
