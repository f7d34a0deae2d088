"""Direct effects: each component's write dotted with the readout direction (LN scale frozen).

With LN(r) = (r − mean r)/s · w + b and s frozen, LN(r)·u = r·G + b·u where
G = centre(w ⊙ u / s). So a component's direct effect is its write at that position · G,
and the sum over all components plus the bias terms is exactly the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import DebugModel
from .nodes import activation_hook, ln_scale_hook, pattern_hook, value_hook, NodeId, HEAD, NEURON, ATTN, MLP, EMB, POS
from .targets import Acts, Readout


def residual_direction(model: DebugModel, ro: Readout, acts: Acts) -> torch.Tensor:
    """G [P, d_model]: residual-space directions whose dot with the residual gives the readout."""
    U = ro.U.to(model.dtype)
    if ro.ln not in model.W.ln:  # no layer norm in this model
        return U
    w, _ = model.W.ln[ro.ln]
    s = acts[ln_scale_hook(ro.ln)][0, ro.positions].detach().reshape(len(ro.positions), 1)
    G = U * w / s
    return G - G.mean(-1, keepdim=True) if model.norm == "LN" else G


def ln_bias_term(model: DebugModel, ro: Readout) -> float:
    if ro.ln not in model.W.ln or model.W.ln[ro.ln][1] is None:
        return 0.0
    return float((ro.U @ model.W.ln[ro.ln][1]).sum())


def layers_before(ro: Readout) -> tuple[int, int]:
    """How many attention and MLP sublayers write before the readout point."""
    return (ro.layer + 1 if ro.stage == "mid" else ro.layer), ro.layer


@dataclass
class DirectEffects:
    """Per position (rows: all prompt positions; zero where the readout does not read)."""

    heads: torch.Tensor  # [seq, layer, head]
    head_sources: torch.Tensor  # [layer, head, seq_k] summed over readout positions
    neurons: torch.Tensor  # [seq, layer, neuron]
    attn: torch.Tensor  # [seq, layer] from the sublayer outputs actually computed
    mlp: torch.Tensor  # [seq, layer]
    embed: torch.Tensor  # [seq]
    pos_embed: torch.Tensor  # [seq]
    bias: dict  # name -> float: attention/MLP output biases, LN bias and readout constant

    def atomic_sum(self) -> float:
        return float(self.heads.sum() + self.neurons.sum() + self.embed.sum() + self.pos_embed.sum()) + \
            sum(self.bias.values())


def direct_effects(model: DebugModel, ro: Readout, acts: Acts) -> DirectEffects:
    W, sh = model.W, model.shape
    L = sh.n_layers
    seq = acts["hook_embed"].shape[1]
    P = ro.positions
    G = residual_direction(model, ro, acts)  # [P, d]
    n_attn, n_mlp = layers_before(ro)
    dt = G.dtype

    heads = torch.zeros(seq, L, sh.n_heads, dtype=dt)
    sources = torch.zeros(L, sh.n_heads, seq, dtype=dt)
    neurons = torch.zeros(seq, L, sh.d_mlp, dtype=dt)
    attn = torch.zeros(seq, L, dtype=dt)
    mlp = torch.zeros(seq, L, dtype=dt)
    bias: dict[str, float] = {}
    g_sum = G.sum(0)
    for l in range(n_attn):
        z = acts[activation_hook(NodeId(HEAD, l), L)][0, P].detach()  # [P, head, d_head]
        WG = torch.einsum("hed,pd->phe", W.W_O[l], G)  # [P, head, d_head]
        heads[P, l] = (z * WG).sum(-1)
        v = acts[value_hook(l)][0].detach()  # [seq_k, head, d_head]
        pat = acts[pattern_hook(l)][0][:, P].detach()  # [head, P, seq_k]
        vg = torch.einsum("khe,phe->phk", v, WG)  # [P, head, seq_k]
        sources[l] = (pat.transpose(0, 1) * vg).sum(0)
        attn[P, l] = acts[activation_hook(NodeId(ATTN, l), L)][0, P].detach().mul(G).sum(-1)
        bias[f"L{l}.ATTN.bias"] = float(W.b_O[l] @ g_sum)
    for l in range(n_mlp):
        post = acts[activation_hook(NodeId(NEURON, l), L)][0, P].detach()  # [P, neuron]
        neurons[P, l] = post * (G @ W.W_out[l].T)
        mlp[P, l] = acts[activation_hook(NodeId(MLP, l), L)][0, P].detach().mul(G).sum(-1)
        bias[f"L{l}.MLP.bias"] = float(W.b_out[l] @ g_sum)
    embed = torch.zeros(seq, dtype=dt)
    pos_embed = torch.zeros(seq, dtype=dt)
    embed[P] = (acts["hook_embed"][0, P].detach() * G).sum(-1)
    pos_embed[P] = (acts["hook_pos_embed"][0, P].detach() * G).sum(-1)
    bias[f"{ro.ln}.bias"] = ln_bias_term(model, ro)
    bias["readout.bias"] = float(ro.const)
    return DirectEffects(heads, sources, neurons, attn, mlp, embed, pos_embed, bias)


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
