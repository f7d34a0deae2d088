"""Per-node tables for a target: activation, direct effect, act×grad total effect, and
(optionally) the exact zero-ablation effect of the top nodes.

Cost: one forward that keeps the activations it needs, one backward to those activations
only (no parameter gradients), then vectorised arithmetic; the exact check is one more
batched forward of k copies, each ablating one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .interventions import Intervention, build_hooks
from .linear import DirectEffects, direct_effects
from .model import DebugModel
from .nodes import ATTN, EMB, HEAD, MLP, NEURON, POS, NodeId, activation_hook, ln_scale_hook, pattern_hook, value_hook
from .targets import Target

LEAVES = ("hook_embed", "hook_pos_embed")


def capture_names(model: DebugModel, target: Target) -> list[str]:
    L = model.shape.n_layers
    names = list(LEAVES)
    for l in range(L):
        names += [activation_hook(NodeId(HEAD, l), L), value_hook(l), pattern_hook(l),
                  activation_hook(NodeId(NEURON, l), L), activation_hook(NodeId(ATTN, l), L),
                  activation_hook(NodeId(MLP, l), L)]
    names += [ln_scale_hook(ln) for ln in model.W.ln]
    names += sorted(target.hooks)
    seen, out = set(), []
    for n in names:
        if n not in seen and n in model.bridge.hook_dict:
            seen.add(n)
            out.append(n)
    return out


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


@dataclass
class Forward:
    acts: dict
    logits: torch.Tensor
    value: torch.Tensor  # scalar


def run_captured(model: DebugModel, ids: Sequence[int], target: Target, interventions: Sequence[Intervention],
                 source: dict, grad: bool) -> Forward:
    store: dict = {}
    hooks = build_hooks(interventions, model.shape.n_layers, source) + \
        capture_hooks(capture_names(model, target), store, grad)
    logits = model.run(model.tokens_tensor(ids), hooks, grad=grad)
    return Forward(store, logits, target.value(store, logits)[0])


@dataclass
class Totals:
    heads: torch.Tensor  # [seq, layer, head]
    neurons: torch.Tensor  # [seq, layer, neuron]
    attn: torch.Tensor  # [seq, layer]
    mlp: torch.Tensor
    embed: torch.Tensor  # [seq]
    pos_embed: torch.Tensor


def act_times_grad(model: DebugModel, fw: Forward) -> Totals:
    """act·∂target/∂act: the first-order estimate of what zero-ablating each node does."""
    L = model.shape.n_layers
    keys = {"heads": [activation_hook(NodeId(HEAD, l), L) for l in range(L)],
            "neurons": [activation_hook(NodeId(NEURON, l), L) for l in range(L)],
            "attn": [activation_hook(NodeId(ATTN, l), L) for l in range(L)],
            "mlp": [activation_hook(NodeId(MLP, l), L) for l in range(L)],
            "embed": ["hook_embed"], "pos_embed": ["hook_pos_embed"]}
    flat = [k for ks in keys.values() for k in ks if k in fw.acts]
    grads = torch.autograd.grad(fw.value, [fw.acts[k] for k in flat], allow_unused=True)
    g = {k: (torch.zeros_like(fw.acts[k]) if gr is None else gr) for k, gr in zip(flat, grads)}

    def prod(k):
        if k not in g:
            return None
        return (fw.acts[k].detach() * g[k])[0]

    def stack(kind, reduce_last):
        parts = [prod(k) for k in keys[kind]]
        parts = [p.sum(-1) if reduce_last else p for p in parts]
        return torch.stack(parts, 1)

    seq = fw.acts["hook_embed"].shape[1]
    pe = prod("hook_pos_embed")
    return Totals(stack("heads", True), stack("neurons", False), stack("attn", True), stack("mlp", True),
                  prod("hook_embed").sum(-1), pe.sum(-1) if pe is not None else torch.zeros(seq))


@dataclass
class Table:
    """Flat arrays over every node (component or node@position), plus how to name row i."""

    blocks: list = field(default_factory=list)  # (kind, dims, act, direct, total)

    def add(self, kind: str, act: torch.Tensor, direct: torch.Tensor, total: torch.Tensor, dims: tuple):
        self.blocks.append((kind, dims, act.reshape(-1), direct.reshape(-1), total.reshape(-1)))

    def stacked(self, which: int) -> torch.Tensor:
        return torch.cat([b[which] for b in self.blocks])

    def node_at(self, flat_index: int) -> NodeId:
        for kind, dims, act, _, _ in self.blocks:
            n = act.numel()
            if flat_index < n:
                coords = list(torch.unravel_index(torch.tensor(flat_index), tuple(s for _, s in dims)))
                named = {name: int(c) for (name, _), c in zip(dims, coords)}
                return NodeId(kind, named.get("layer"), named.get("index"), named.get("position"))
            flat_index -= n
        raise IndexError(flat_index)


def build_table(model: DebugModel, fw: Forward, de: DirectEffects, tot: Totals, position: int,
                per_position: bool) -> Table:
    W, sh = model.W, model.shape
    L, H, N = sh.n_layers, sh.n_heads, sh.d_mlp
    acts = fw.acts
    seq = acts["hook_embed"].shape[1]
    z = torch.stack([acts[activation_hook(NodeId(HEAD, l), L)][0].detach() for l in range(L)], 1)  # [seq,L,H,e]
    post = torch.stack([acts[activation_hook(NodeId(NEURON, l), L)][0].detach() for l in range(L)], 1)
    attn = torch.stack([acts[activation_hook(NodeId(ATTN, l), L)][0].detach() for l in range(L)], 1)
    mlp = torch.stack([acts[activation_hook(NodeId(MLP, l), L)][0].detach() for l in range(L)], 1)
    emb = acts["hook_embed"][0].detach()
    pemb = acts["hook_pos_embed"][0].detach() if "hook_pos_embed" in acts else torch.zeros_like(emb)
    t = Table()
    if per_position:
        head_norm = torch.einsum("plhe,lhed->plhd", z, W.W_O).norm(dim=-1)
        P = ("position", seq)
        t.add(HEAD, head_norm, de.heads, tot.heads, (P, ("layer", L), ("index", H)))
        t.add(NEURON, post, de.neurons, tot.neurons, (P, ("layer", L), ("index", N)))
        t.add(ATTN, attn.norm(dim=-1), de.attn, tot.attn, (P, ("layer", L)))
        t.add(MLP, mlp.norm(dim=-1), de.mlp, tot.mlp, (P, ("layer", L)))
        t.add(EMB, emb.norm(dim=-1), de.embed, tot.embed, (P,))
        t.add(POS, pemb.norm(dim=-1), de.pos_embed, tot.pos_embed, (P,))
    else:
        p = position
        head_norm = torch.einsum("lhe,lhed->lhd", z[p], W.W_O).norm(dim=-1)
        t.add(HEAD, head_norm, de.heads.sum(0), tot.heads.sum(0), (("layer", L), ("index", H)))
        t.add(NEURON, post[p], de.neurons.sum(0), tot.neurons.sum(0), (("layer", L), ("index", N)))
        t.add(ATTN, attn[p].norm(dim=-1), de.attn.sum(0), tot.attn.sum(0), (("layer", L),))
        t.add(MLP, mlp[p].norm(dim=-1), de.mlp.sum(0), tot.mlp.sum(0), (("layer", L),))
        t.add(EMB, emb[p].norm().reshape(1), de.embed.sum().reshape(1), tot.embed.sum().reshape(1), ())
        t.add(POS, pemb[p].norm().reshape(1), de.pos_embed.sum().reshape(1), tot.pos_embed.sum().reshape(1), ())
    return t


def select_rows(table: Table, top_k: Optional[int]) -> list[int]:
    """Indices of the top_k rows by |total effect| ∪ top_k by |direct effect|, plus every
    sublayer and embedding row; sorted by |total effect|."""
    total = table.stacked(4).abs()
    direct = table.stacked(3).abs()
    n = total.numel()
    if top_k is None or top_k >= n:
        chosen = torch.arange(n)
    else:
        always, off = [], 0
        for kind, _, act, _, _ in table.blocks:
            if kind not in (HEAD, NEURON):
                always.append(torch.arange(off, off + act.numel()))
            off += act.numel()
        chosen = torch.unique(torch.cat([total.topk(top_k).indices, direct.topk(top_k).indices] + always))
    order = torch.argsort(total[chosen], descending=True, stable=True)
    return chosen[order].tolist()


def exact_ablation(model: DebugModel, ids: Sequence[int], target: Target, interventions: Sequence[Intervention],
                   source: dict, nodes: Sequence[NodeId], clean_value: float, chunk: int = 32) -> list[float]:
    """clean target − target with the node zero-ablated (on top of `interventions`), for each
    node, as batched forwards (one batch element per node)."""
    out: list[float] = []
    for start in range(0, len(nodes), chunk):
        part = list(nodes[start:start + chunk])
        ablations = [Intervention(n.component, "zero", None if n.position is None else (n.position,)) for n in part]
        all_iv = list(interventions) + ablations
        batch_of = [None] * len(interventions) + list(range(len(part)))
        store: dict = {}
        hooks = build_hooks(all_iv, model.shape.n_layers, source, batch_of) + \
            capture_hooks(sorted(target.hooks), store, grad=False)
        logits = model.run(model.tokens_tensor(ids, batch=len(part)), hooks)
        vals = target.value(store, logits)
        out += [clean_value - float(v) for v in vals]
    return out
