"""Tracing through transcoders: the frozen linear model, latent connections, attribution graphs.

On a prompt, freeze the attention patterns, every layer norm's scale and each transcoder's
error; replace each MLP by its transcoder with the latent activations held at their values.
What is left is linear in its *sources* — token and position embeddings, latent activations,
error vectors — plus constants (biases). In it:

- a latent's pre-activation (its encoder read of the normalised residual) and the target
  (logit(A) − logit(B) through the frozen final LN) are exact sums of source contributions,
  edge(src → dst) = ∂read_dst/∂src · src, plus a bias term;
- those edges are the "direct" effects: paths through the residual stream and through any
  chain of attention heads' OV circuits, but not through another latent (held fixed).

This module computes that model in plain torch from the weights (fast), with batched
backward passes. Tests check it against the same freeze done with hooks on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..errors import UserError
from ..linear import centre as _centre, frozen_ln as _ln, frozen_ln_back as _ln_back
from ..nodes import EMBED_HOOK, POS_EMBED_HOOK, ln_scale_hook, pattern_hook


@dataclass
class Frozen:
    """Everything held fixed for one prompt, and the sources' values."""

    model: object
    ids: list
    emb: torch.Tensor  # [seq, d]
    pos: torch.Tensor  # [seq, d]
    s1: list  # per layer [seq, 1] (ones when the model has no LN)
    s2: list
    sf: torch.Tensor  # [seq, 1]
    patterns: list  # per layer [head, seq_q, seq_k]
    acts: list  # per layer [seq, d_sae]
    errs: list  # per layer [seq, d]
    logits: torch.Tensor


def capture(model, ids: Sequence[int]) -> Frozen:
    """One real forward with every transcoder spliced in, keeping what the freeze needs."""
    from ..execution import RunRequest, execute
    from .splice import SpliceChoice

    from ..architecture import require_plain_blocks

    require_plain_blocks(model.arch, "attribution graphs")
    L = model.shape.n_layers
    tcs = model.autoencoders.transcoders
    missing = [l for l in range(L) if l not in tcs]
    if missing:
        raise UserError(f"attribution graphs need a transcoder on every layer; model {model.name!r} has none for "
                        f"layers {missing}")
    names = [EMBED_HOOK, POS_EMBED_HOOK] + [pattern_hook(l) for l in range(L)]
    names += [ln_scale_hook(ln) for ln in model.W.ln]
    cap = execute(model, ids, RunRequest(capture=names, splice=SpliceChoice(tuple(range(L)), ())))
    store, logits = cap.acts, cap.logits
    seq = len(ids)
    one = torch.ones(seq, 1, dtype=model.dtype)
    scale = lambda ln: store[ln_scale_hook(ln)][0].detach() if ln in model.W.ln else one
    return Frozen(model, list(ids), store[EMBED_HOOK][0].detach(),
                  store[POS_EMBED_HOOK][0].detach() if POS_EMBED_HOOK in store else torch.zeros_like(store[EMBED_HOOK][0]),
                  [scale(f"blocks.{l}.ln1") for l in range(L)], [scale(f"blocks.{l}.ln2") for l in range(L)],
                  scale("ln_final"), [store[pattern_hook(l)][0].detach() for l in range(L)],
                  [store[f"tc:{l}"][0].detach() for l in range(L)], [store[f"tcerr:{l}"][0].detach() for l in range(L)],
                  logits[0].detach())


def run(f: Frozen, emb, pos, acts: Sequence, errs: Sequence, gates=None, heads: Optional[list] = None):
    """The frozen model: latent pre-activations per layer [seq, d_sae] and the final
    normalised residual [seq, d] (dot with an unembedding direction for a logit read).
    `gates` [layer, head, seq] (optional) multiply each head's output (for head contributions);
    `heads`, if a list, receives each layer's head outputs [head, seq, d]."""
    m, W = f.model, f.model.W
    r = emb + pos
    pres = []
    for l in range(m.shape.n_layers):
        ae = m.autoencoders.transcoders[l]
        x = _ln(m, f"blocks.{l}.ln1", r, f.s1[l])
        v = torch.einsum("kd,hde->hke", x, W.W_V[l]) + W.b_V[l][:, None]
        z = torch.einsum("hqk,hke->hqe", f.patterns[l], v)
        if gates is not None:
            z = z * gates[l][:, :, None]
        o = torch.einsum("hqe,hed->hqd", z, W.W_O[l])
        if heads is not None:
            heads.append(o)
        r = r + o.sum(0) + W.b_O[l]
        pres.append(_ln(m, f"blocks.{l}.ln2", r, f.s2[l], affine=False) @ ae.W_enc + ae.b_enc)
        r = r + acts[l] @ ae.W_dec + ae.b_dec + errs[l]
    return pres, _ln(m, "ln_final", r, f.sf)


def logit_direction(model, target: int, distractor: Optional[int]):
    W = model.W
    if distractor is None:
        return W.W_U[:, target] - W.W_U.mean(1), float(W.b_U[target] - W.b_U.mean())
    return W.W_U[:, target] - W.W_U[:, distractor], float(W.b_U[target] - W.b_U[distractor])


@dataclass
class Node:
    id: str
    kind: str  # embed | pos_embed | transcoder | transcoder_error | logit | bias
    layer: Optional[int]
    position: Optional[int]
    activation: float
    index: Optional[int] = None


def sources(f: Frozen) -> list[Node]:
    out = []
    seq = len(f.ids)
    toks = f.model.codec.token_strs(f.ids)
    for p in range(seq):
        out.append(Node(f"EMB@{p}", "embed", None, p, float(f.emb[p].norm())))
        out.append(Node(f"POS@{p}", "pos_embed", None, p, float(f.pos[p].norm())))
    for l, a in enumerate(f.acts):
        for p, i in (a > 0).nonzero().tolist():
            out.append(Node(f"L{l}.T{i}@{p}", "transcoder", l, p, float(a[p, i]), i))
        for p in range(seq):
            out.append(Node(f"L{l}.TERR@{p}", "transcoder_error", l, p, float(f.errs[l][p].norm())))
    for n in out:
        n.token = toks[n.position]
    return out


def edges_into(f: Frozen, srcs: list[Node], reads: torch.Tensor, leaves: dict, extra: Optional[dict] = None):
    """[n_reads, n_srcs]: each read's exact contribution from each source (one batched
    backward). With `extra` leaves, also returns their raw gradients {name: [n_reads, ...]}."""
    leaves = dict(leaves, **(extra or {}))
    names = list(leaves)
    grads = torch.autograd.grad(reads, [leaves[n] for n in names], grad_outputs=torch.eye(reads.numel(), dtype=reads.dtype),
                                is_grads_batched=True, retain_graph=True, allow_unused=True)
    g = {n: (torch.zeros((reads.numel(),) + leaves[n].shape, dtype=reads.dtype) if gr is None else gr)
         for n, gr in zip(names, grads)}
    R = reads.numel()
    # columns in the order `sources` lists them: EMB@p, POS@p per position; then per layer the
    # active latents (row-major over position, index) and the error at each position
    emb_pos = torch.stack([(g["emb"] * f.emb).sum(-1), (g["pos"] * f.pos).sum(-1)], 2).reshape(R, -1)
    cols = [emb_pos]
    for l in range(len(f.acts)):
        active = f.acts[l] > 0
        cols.append((g[f"acts{l}"] * f.acts[l])[:, active])
        cols.append((g[f"errs{l}"] * f.errs[l]).sum(-1))
    out = torch.cat(cols, 1)
    assert out.shape[1] == len(srcs), "sources and edge columns out of step"
    return (out, {n: g[n] for n in extra}) if extra else out


def make_leaves(f: Frozen) -> dict:
    leaves = {"emb": f.emb.clone().requires_grad_(True), "pos": f.pos.clone().requires_grad_(True)}
    for l in range(len(f.acts)):
        leaves[f"acts{l}"] = f.acts[l].clone().requires_grad_(True)
        leaves[f"errs{l}"] = f.errs[l].clone().requires_grad_(True)
    return leaves


def forward_leaves(f: Frozen, leaves: dict, gates=None, heads: Optional[list] = None):
    L = len(f.acts)
    return run(f, leaves["emb"], leaves["pos"], [leaves[f"acts{l}"] for l in range(L)],
               [leaves[f"errs{l}"] for l in range(L)], gates, heads)


def edges_linear(f: Frozen, reads: list, heads: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The same edges as `edges_into`, by propagating each read's direction backward by hand.

    `reads`: (layer, position, latent index) for latent pre-activations, or ('target', position,
    u) for a logit read; `heads`: each layer's head outputs from `run`. Latents are fixed in the frozen model, so each MLP block passes the
    residual gradient through unchanged, and each attention layer is the linear map
    g_k += P(w1 ⊙ Σ_h Σ_q A[h,q,k] (g_q W_O[h]ᵀ) W_V[h]ᵀ)/s1_k. Returns ([n_reads, n_srcs] in `sources`
    order, [n_reads, layer, head, seq] head-output contributions)."""
    m, W = f.model, f.model.W
    L, H, seq, d = m.shape.n_layers, m.shape.n_heads, len(f.ids), m.shape.d_model
    R = len(reads)
    G = torch.zeros(R, seq, d, dtype=f.emb.dtype)  # gradient at the current point, all reads
    start = []
    for r, (layer, p, x) in enumerate(reads):
        if layer == "target":  # read through the final LN, at the final residual
            G[r, p] = _ln_back(m, "ln_final", x[None], f.sf[p])[0]
            start.append(L)
        else:  # a latent's read starts when the walk reaches its layer
            start.append(layer)
    start_t = torch.tensor(start)
    post = [None] * L  # G at the residual after layer l's MLP (reads of its latents and error)
    head_c = torch.zeros(R, L, H, seq, dtype=f.emb.dtype)
    for l in range(L - 1, -1, -1):
        post[l] = G.clone()  # MLP l passes the gradient through (its latents are held fixed)
        mine = (start_t == l).nonzero().flatten()
        if len(mine):  # reads of layer l's latents start here: the normalised MLP input
            ps = torch.tensor([reads[r][1] for r in mine.tolist()])  # (centred and scaled by ln2,
            idx = torch.tensor([reads[r][2] for r in mine.tolist()])  # no gain or bias)
            G[mine, ps] = _centre(m, m.autoencoders.transcoders[l].W_enc[:, idx].T) / f.s2[l][ps]
        head_c[:, l] = torch.einsum("Rqd,hqd->Rhq", G, heads[l])
        # back through attention l: g_k += P(w1 ⊙ Σ_h Σ_q A[h,q,k] (g_q W_O[h]ᵀ) W_V[h]ᵀ) / s1_k
        t = torch.einsum("Rqd,hed->Rhqe", G, W.W_O[l])
        t = torch.einsum("hqk,Rhqe->Rhke", f.patterns[l], t)
        back = torch.einsum("Rhke,hde->Rkd", t, W.W_V[l])
        G = G + _ln_back(m, f"blocks.{l}.ln1", back, f.s1[l])
    emb_pos = torch.stack([(G * f.emb).sum(-1), (G * f.pos).sum(-1)], 2).reshape(R, -1)
    cols = [emb_pos]
    for l in range(L):
        ae = m.autoencoders.transcoders[l]
        for p in range(seq):  # row-major over (position, latent), as `sources` lists them
            i = (f.acts[l][p] > 0).nonzero().flatten()
            cols.append(post[l][:, p] @ (ae.W_dec[i] * f.acts[l][p, i][:, None]).T)
        cols.append((post[l] * f.errs[l]).sum(-1))
    return torch.cat(cols, 1), head_c
