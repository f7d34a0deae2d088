"""Per-node tables for a target: activation, direct effect, act×grad total effect, and
(optionally) the exact zero-ablation effect of the top nodes.

The residual stream is a sum of *groups* of atomic writers: the embeddings, and per layer
either the heads or an SAE's latents + error, and either the MLP neurons or a transcoder's
latents + error, plus biases. Every metric loops over the groups, whatever the basis.

Cost: one forward that keeps the activations it needs, one backward to those activations
only (no parameter gradients), then vectorised arithmetic; the exact check is one more
batched forward of k copies, each ablating one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .autoencoders.splice import SpliceChoice, latent_key
from .autoencoders.resid import resid_cut, resid_groups, upstream_of
from .execution import LEAVES, PRE_EDIT, RunRequest, capture_hooks, execute  # noqa: F401 (re-exported)
from .interventions import Intervention
from .linear import layers_before, ln_bias_term, post_norm_hooks, residual_direction, write_direction
from .model import DebugModel
from .nodes import EMBED_HOOK, POS_EMBED_HOOK, ATTN, EMB, HEAD, MLP, NEURON, POS, RESID, SAE, SAE_ERR, TRANSCODER, \
    TRANSCODER_ERR, NodeId, activation_hook, ln_scale_hook, pattern_hook, value_hook
from .targets import SUBLAYER_READS, Readout, Target


@dataclass
class Group:
    kind: str
    layer: Optional[int]
    key: str  # where its activation is captured
    W: Optional[torch.Tensor] = None  # heads [H, d_head, d]; neurons/latents [n, d]; None: the activation is the write
    bias: Optional[torch.Tensor] = None  # the sublayer bias that goes with this group [d]
    sublayer: str = ""  # 'attn' | 'mlp' | 'resid' (a residual SAE) | '' (embeddings)
    W_for: Optional[Callable] = None  # n_mlp -> W: a cross-layer transcoder's writes before the readout


def groups(model: DebugModel, choice: SpliceChoice) -> list[Group]:
    W, L = model.W, model.shape.n_layers
    out = [Group(EMB, None, EMBED_HOOK)] + ([Group(POS, None, POS_EMBED_HOOK)] if model.shape.has_pos else [])
    aes = model.autoencoders
    for l in range(L):
        out += resid_groups(aes, choice, l)
        if l in choice.saes:
            ae = aes.saes[l]
            out += [Group(SAE, l, latent_key(SAE, l), ae.W_dec, ae.b_dec, "attn"),
                    Group(SAE_ERR, l, latent_key(SAE_ERR, l), sublayer="attn")]
        else:
            out.append(Group(HEAD, l, activation_hook(NodeId(HEAD, l), L), W.W_O[l], W.b_O[l], "attn"))
        if l in choice.transcoders and aes.clt is not None:
            out += aes.clt.groups(l, Group)
        elif l in choice.transcoders:
            ae = aes.transcoders[l]
            out += [Group(TRANSCODER, l, latent_key(TRANSCODER, l), ae.W_dec, ae.b_dec, "mlp"),
                    Group(TRANSCODER_ERR, l, latent_key(TRANSCODER_ERR, l), sublayer="mlp")]
        else:
            out.append(Group(NEURON, l, activation_hook(NodeId(NEURON, l), L), W.W_out[l], W.b_out[l], "mlp"))
    return out + resid_groups(aes, choice, L)


def capture_names(model: DebugModel, target: Target) -> list[str]:
    L = model.shape.n_layers
    names = list(LEAVES)
    for l in range(L):
        names += [activation_hook(NodeId(HEAD, l), L), value_hook(l), pattern_hook(l),
                  activation_hook(NodeId(NEURON, l), L), activation_hook(NodeId(ATTN, l), L),
                  activation_hook(NodeId(MLP, l), L)]
    names += [ln_scale_hook(ln) for ln in model.W.ln] + post_norm_hooks(model)
    names += sorted(target.hooks)
    seen, out = set(), []
    for n in names:
        if n not in seen and n in model.hook_points:
            seen.add(n)
            out.append(n)
    return out


@dataclass
class Forward:
    acts: dict
    logits: torch.Tensor
    value: torch.Tensor  # scalar
    edited: list = field(default_factory=list)  # hooks of sublayer / residual edits (pre-edit values in acts)


def run_captured(model: DebugModel, ids: Sequence[int], target: Target, interventions: Sequence[Intervention],
                 source: dict, grad: bool, choice: SpliceChoice = SpliceChoice()) -> Forward:
    cap = execute(model, ids, RunRequest(interventions, source, capture_names(model, target), grad=grad, splice=choice))
    return Forward(cap.acts, cap.logits, target.value(cap.acts, cap.logits)[0], cap.edited)


@dataclass
class Metrics:
    """Per group (same order as `groups`): arrays over [seq, units] (vector groups: [seq])."""

    act: list
    direct: list
    total: list
    groups: list = field(default_factory=list)
    head_sources: dict = field(default_factory=dict)  # layer -> [head, seq_k]
    sub_direct: dict = field(default_factory=dict)  # ('attn'|'mlp', layer) -> [seq]
    sub_total: dict = field(default_factory=dict)
    sub_act: dict = field(default_factory=dict)
    bias: dict = field(default_factory=dict)


def _unit_act(g: Group, a: torch.Tensor) -> torch.Tensor:
    if g.kind == HEAD:
        return torch.einsum("phe,hed->phd", a, g.W.float()).norm(dim=-1)
    return a if g.W is not None else a.norm(dim=-1)


def metrics(model: DebugModel, fw: Forward, gs: list[Group], ro: Readout) -> Metrics:
    """Direct effects through the readout (LN scale frozen) and act×grad for every unit.
    The arithmetic is float32 whatever the model's dtype (half-precision models included)."""
    acts = fw.acts
    seq = acts[EMBED_HOOK].shape[1]
    L = model.shape.n_layers
    P = ro.positions
    G = residual_direction(model, ro, acts).float()  # [P, d]
    n_attn, n_mlp = layers_before(ro)
    arch = model.arch
    sub_read = SUBLAYER_READS.get(ro.stage)  # 'attn' | 'mlp' when the read is one sublayer's output
    if ro.stage == "z" and not any(g.kind == HEAD and g.layer == ro.layer for g in gs):
        # a hook_z latent's writers are its layer's heads, even where that layer's SAE is spliced
        gs = list(gs) + [Group(HEAD, ro.layer, activation_hook(NodeId(HEAD, ro.layer), L), model.W.W_O[ro.layer],
                               model.W.b_O[ro.layer], "attn")]
    present = [g for g in gs if g.key in acts]
    grads = torch.autograd.grad(fw.value, [acts[g.key] for g in present] +
                                [acts[activation_hook(NodeId(k, l), L)] for k in (ATTN, MLP) for l in range(L)],
                                allow_unused=True)
    m = Metrics([], [], [], present)
    cut = resid_cut(present, ro, n_mlp)
    for g, gr in zip(present, grads[:len(present)]):
        a = acts[g.key][0].detach().float()
        gr = torch.zeros_like(a) if gr is None else gr[0].float()
        W = g.W_for(n_mlp).float() if g.W_for is not None else None if g.W is None else g.W.float()
        before = g.layer is None or (g.sublayer == "attn" and g.layer < n_attn) or (g.sublayer == "mlp" and g.layer < n_mlp) \
            or (g.sublayer == "resid" and g.layer <= n_mlp)
        if sub_read:  # a read of one sublayer's output: only its writers count
            before = g.sublayer == sub_read and g.layer == ro.layer and (ro.stage != "z" or g.kind == HEAD)
        before = before and not upstream_of(g, cut)
        direct = torch.zeros(a.shape[:-1] if W is None or g.kind == HEAD else a.shape, dtype=a.dtype)
        Gw = write_direction(model, g.sublayer, g.layer, G, acts, P).float() \
            if g.kind in (HEAD, NEURON) and ro.stage != "z" else G
        if g.kind == HEAD:
            total = (a * gr).sum(-1)
            if before:
                WG = Gw.reshape(len(P), *W.shape[:2]) if ro.stage == "z" else torch.einsum("hed,pd->phe", W, Gw)
                direct[P] = (a[P] * WG).sum(-1)
                # a key/value head shared by several query heads (GQA/MQA) serves each of them
                v = acts[value_hook(g.layer)][0].detach().float().repeat_interleave(arch.group_size, dim=1)
                pat = acts[pattern_hook(g.layer)][0][:, P].detach().float()  # [head, P, seq_k]
                m.head_sources[g.layer] = (pat.transpose(0, 1) * torch.einsum("khe,phe->phk", v, WG)).sum(0)
        elif W is not None:
            total = a * gr
            if before:
                direct[P] = a[P] * (Gw @ W.T)
        else:
            total = (a * gr).sum(-1)
            if before:
                direct[P] = (a[P] * Gw).sum(-1)
        if before and g.bias is not None and ro.stage != "z":  # b_O is added after z
            m.bias[f"L{g.layer}.{g.sublayer.upper()}.bias"] = float((Gw @ g.bias.float()).sum())
        m.act.append(_unit_act(g, a))
        m.direct.append(direct)
        m.total.append(total)
    for i, (k, l) in enumerate([(k, l) for k in (ATTN, MLP) for l in range(L)]):
        out = acts[activation_hook(NodeId(k, l), L)][0].detach().float()
        gr = grads[len(present) + i]
        m.sub_total[(k, l)] = (out * gr[0].float()).sum(-1) if gr is not None else torch.zeros(seq)
        d = torch.zeros(seq, dtype=out.dtype)
        before = (l < n_attn) if k == ATTN else (l < n_mlp)
        if sub_read:
            before = k == (ATTN if sub_read == "attn" else MLP) and l == ro.layer
        before = before and not (cut is not None and l < cut)
        if before and ro.stage == "z":  # the heads' z, read in z space
            d[P] = (acts[activation_hook(NodeId(HEAD, l), L)][0, P].detach().float().flatten(-2) * G).sum(-1)
        elif before:
            d[P] = (out[P] * G).sum(-1)
        m.sub_direct[(k, l)] = d
        m.sub_act[(k, l)] = out.norm(dim=-1)
    # a spliced autoencoder reads the sublayer's output after the edit: its latents + error already are the edit
    spliced = {(ATTN if g.sublayer == "attn" else MLP, g.layer) for g in present
               if g.kind in (SAE, SAE_ERR, TRANSCODER, TRANSCODER_ERR)}
    spliced |= {(RESID, g.layer) for g in present if g.sublayer == "resid"}
    for hook in fw.edited:  # a sublayer / residual edit: what it changed, read through the same direction
        kind, layer = _edit_site(hook, L)
        if (kind, layer) in spliced or (cut is not None and layer < cut):  # inside / upstream of a residual SAE
            continue
        before = (layer < n_attn if kind == ATTN else layer < n_mlp if kind == MLP else layer <= ro.layer) \
            and not sub_read
        if ro.stage == "mlp_out":  # an edit of the MLP output the latent reads
            before = kind == MLP and layer == ro.layer
        if before:
            delta = (acts[hook][0, P] - acts[PRE_EDIT + hook][0, P]).detach().float()
            m.bias[f"{NodeId(kind, layer)}.intervention"] = float((delta * G).sum())
    if not sub_read and ro.ln:
        m.bias[f"{ro.ln}.bias"] = ln_bias_term(model, ro)
    m.bias["readout.bias"] = float(ro.const)
    return m


def _edit_site(hook: str, n_layers: int) -> tuple[str, int]:
    for kind in (ATTN, MLP, RESID):
        for l in range(n_layers + 1):
            if l <= n_layers - 1 or kind == RESID:
                if activation_hook(NodeId(kind, l), n_layers) == hook:
                    return kind, l
    raise ValueError(hook)


def atomic_sum(m: Metrics) -> float:
    return float(sum(d.sum() for d in m.direct)) + sum(m.bias.values())


@dataclass
class Table:
    """Flat arrays over every node (component or node@position), plus how to name row i."""

    blocks: list = field(default_factory=list)  # (kind, layer, n_units or None, act, direct, total, per_position)

    def add(self, kind, layer, n_units, act, direct, total, per_position):
        self.blocks.append((kind, layer, n_units, act.reshape(-1), direct.reshape(-1), total.reshape(-1), per_position))

    def stacked(self, which: int) -> torch.Tensor:
        return torch.cat([b[{2: 3, 3: 4, 4: 5}[which]] for b in self.blocks])

    def node_at(self, flat_index: int) -> NodeId:
        for kind, layer, n_units, act, _, _, per_position in self.blocks:
            n = act.numel()
            if flat_index < n:
                width = n_units or 1
                pos, unit = divmod(flat_index, width) if per_position else (None, flat_index)
                return NodeId(kind, layer, unit if n_units else None, pos)
            flat_index -= n
        raise IndexError(flat_index)


def build_table(m: Metrics, position: int, per_position: bool) -> Table:
    t = Table()
    for g, act, direct, total in zip(m.groups, m.act, m.direct, m.total):
        n_units = None if act.dim() == 1 else act.shape[-1]
        if per_position:
            t.add(g.kind, g.layer, n_units, act, direct, total, True)
        else:
            t.add(g.kind, g.layer, n_units, act[position], direct.sum(0), total.sum(0), False)
    for (k, l), d in m.sub_direct.items():
        a, tot = m.sub_act[(k, l)], m.sub_total[(k, l)]
        if per_position:
            t.add(k, l, None, a, d, tot, True)
        else:
            t.add(k, l, None, a[position], d.sum(), tot.sum(), False)
    return t


def select_rows(table: Table, top_k: Optional[int]) -> list[int]:
    """Indices of the top_k rows by |total effect| ∪ top_k by |direct effect|, plus every
    sublayer, embedding and error row; sorted by |total effect|."""
    total = table.stacked(4).abs()
    direct = table.stacked(3).abs()
    n = total.numel()
    if top_k is None or top_k >= n:
        chosen = torch.arange(n)
    else:
        always, off = [], 0
        for kind, _, n_units, act, *_ in table.blocks:
            if not n_units:
                always.append(torch.arange(off, off + act.numel()))
            off += act.numel()
        chosen = torch.unique(torch.cat([total.topk(top_k).indices, direct.topk(top_k).indices] + always))
    order = torch.argsort(total[chosen], descending=True, stable=True)
    return chosen[order].tolist()


def exact_ablation(model: DebugModel, ids: Sequence[int], target: Target, interventions: Sequence[Intervention],
                   source: dict, nodes: Sequence[NodeId], clean_value: float, chunk: int = 32,
                   choice: SpliceChoice = SpliceChoice()) -> list[float]:
    """clean target − target with the node zero-ablated (on top of `interventions`), for each
    node, as batched forwards (one batch element per node)."""
    out: list[float] = []
    for start in range(0, len(nodes), chunk):
        part = list(nodes[start:start + chunk])
        ablations = [Intervention(n.component, "zero", None if n.position is None else (n.position,)) for n in part]
        all_iv = list(interventions) + ablations
        batch_of = [None] * len(interventions) + list(range(len(part)))
        cap = execute(model, ids, RunRequest(all_iv, source, sorted(target.hooks), splice=choice, batch_of=batch_of,
                                             batch=len(part)))
        store, logits = cap.acts, cap.logits
        vals = target.value(store, logits)
        out += [clean_value - float(v) for v in vals]
    return out
