"""Direct effects: each component's write dotted with the readout direction (norm scales frozen).

With LN(r) = (r − mean r)/s · w + b and s frozen, LN(r)·u = r·G + b·u where
G = centre(w ⊙ u / s) (no centring for RMSNorm; w is the effective gain, 1 + w on Gemma).
So a component's direct effect is its write at that position · G, and the sum over all
components plus the bias terms is exactly the target. Where a sublayer's output is itself
normalised before it is added (post-norms, Gemma-2/3 and OLMo-2), its units' writes pass
through that norm with its scale frozen too: `write_direction` folds it into G.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .model import DebugModel
from .nodes import ATTN, EMB, HEAD, MLP, NEURON, POS, NodeId, activation_hook, ln_scale_hook
from .targets import SUBLAYER_READS, Acts, Readout


def centre(model: DebugModel, x: torch.Tensor) -> torch.Tensor:
    """Remove the mean over d_model where the model's norms are LayerNorms (a read through a
    LayerNorm cannot see the mean); RMSNorm reads see everything. The one place this is decided."""
    return x - x.mean(-1, keepdim=True) if model.arch.norm == "layernorm" else x


def frozen_ln(model: DebugModel, name: str, x: torch.Tensor, s: torch.Tensor, affine: bool = True) -> torch.Tensor:
    """Norm `name` applied to `x` with its scale `s` frozen (a linear map): centre(x)/s, then its
    gain and bias unless `affine` is False (a read of the normalised stream, as transcoders do)."""
    y = centre(model, x) / s
    if affine and name in model.W.ln:
        w, b = model.W.ln[name]
        y = y * w + (b if b is not None else 0)
    return y


def frozen_ln_back(model: DebugModel, name: str, G: torch.Tensor, s: torch.Tensor, affine: bool = True) -> torch.Tensor:
    """Transpose of the frozen norm's Jacobian: P(w ⊙ g)/s (P: centring, symmetric)."""
    if affine and name in model.W.ln:
        G = G * model.W.ln[name][0]
    return centre(model, G) / s


def scale_at(acts: Acts, hook: str, positions: Sequence[int]) -> torch.Tensor:
    """A norm's frozen scale at `positions` of batch element 0, [P, 1]. Some bridges flatten
    it to [batch*pos, 1] (OPT's ln2): there batch element 0's positions come first."""
    s = acts[hook].detach()
    s = s[list(positions)] if s.dim() == 2 else s[0, list(positions)]
    return s.reshape(len(positions), 1)


def residual_direction(model: DebugModel, ro: Readout, acts: Acts) -> torch.Tensor:
    """G [P, d_model]: residual-space directions whose dot with the residual gives the readout."""
    U = ro.U.to(model.dtype)
    if ro.stage in SUBLAYER_READS or ro.ln not in model.W.ln:  # no layer norm on this read
        return U
    w = model.W.ln[ro.ln][0] if ro.affine else 1.0
    G = U * w / scale_at(acts, ln_scale_hook(ro.ln), ro.positions)
    return centre(model, G)


def write_direction(model: DebugModel, sublayer: str, layer: int, G: torch.Tensor, acts: Acts,
                    positions: Sequence[int]) -> torch.Tensor:
    """The direction a unit of `sublayer` ('attn' | 'mlp') at `layer` must write along, before
    any post-norm, for its write to contribute `write · G` to the residual (G [P, d])."""
    # the post-norm multiplies elementwise by gain / s, so a write x contributes x · (G · gain / s)
    return post_norm(model, sublayer, layer, G, acts, positions)


def post_norm(model: DebugModel, sublayer: str, layer: int, x: torch.Tensor, acts, positions) -> torch.Tensor:
    """A unit's raw writes x [P, d] as they reach the residual: through the post-norm's gain
    and frozen scale (`acts=None`: the gain only, for weight-based views)."""
    name = f"blocks.{layer}.{'ln1_post' if sublayer == 'attn' else 'ln2_post'}"
    if name not in model.W.norms:
        return x
    x = x * model.W.norms[name]
    return x if acts is None else x / scale_at(acts, ln_scale_hook(name), positions)


def post_norm_hooks(model: DebugModel) -> list[str]:
    return [ln_scale_hook(n) for n in model.W.norms if n.endswith("_post")]


def mlp_read(model: DebugModel, layer: int) -> tuple[str, str]:
    """(stage, norm) of the residual read by layer `layer`'s MLP: after attention ('mid',
    through ln2) on sequential blocks; the block's input ('pre') on parallel blocks, through
    ln2 or the norm it shares with attention (GPT-J, Phi)."""
    a = model.arch
    stage = "pre" if a.block == "parallel" else "mid"
    norm = f"blocks.{layer}.{a.mlp_norm}" if a.mlp_norm else ""
    return stage, norm


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
    if node.kind in (HEAD, NEURON):  # through the sublayer's post-norm where there is one (scale frozen)
        sub = "attn" if node.kind == HEAD else "mlp"
        a = acts[activation_hook(node, L)][0, position, node.index].detach()
        raw = a @ W.W_O[node.layer, node.index] if node.kind == HEAD else a * W.W_out[node.layer, node.index]
        return post_norm(model, sub, node.layer, raw[None], acts, [position])[0]
    if node.kind in (ATTN, MLP, EMB, POS):
        return acts[activation_hook(node, L)][0, position].detach()
    raise ValueError(f"{node} has no write vector")
