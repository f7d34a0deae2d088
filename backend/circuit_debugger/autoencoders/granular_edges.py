"""Nodes and exact edges of the mixed-granularity frozen model (`granular.py`).

`nodes(f)` lists the sources in a fixed order; `edges(f, reads)` returns, for each read, every
source's contribution (the read's change when that source is set to zero), by walking each
read's direction backward through the frozen model by hand — batched over reads and done in
chunks of `chunk` reads so memory stays bounded (chunk × seq × d_model per step).

A read is (kind, layer, position, index, vector):
- ("transcoder"|"sae"|"neuron", l, p, i, None): that node's pre-activation;
- ("head", l, q, h, None): head h's output at q projected on its clean direction;
- ("q", l, q, h, w) / ("k", l, k, h, w): (LN1(r) W_Q[h] + b_Q[h])·w at q (resp. W_K, b_K at k)
  — the query- and key-side reads of an attention score (see `qk.py`);
- ("target", None, p, None, u): the final normalised residual at p dotted with u.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .granular import Frozen, ln_back
from .graph_dictionaries import mlp_dictionary, sae_z_grad, tc_decoders, tc_read_grad


@dataclass
class GNode:
    id: str
    kind: str  # embed | pos_embed | head | sae | sae_error | transcoder | transcoder_error | neuron | mlp_rest |
    # intervention | logit
    layer: Optional[int]
    position: Optional[int]
    activation: float
    index: Optional[int] = None
    token: str = ""

    @property
    def role(self) -> str:
        if self.kind in ("embed", "pos_embed"):
            return "input"
        if self.kind == "logit":
            return "output"
        if self.kind in ("sae_error", "transcoder_error", "mlp_rest", "intervention"):
            return "error"
        return "internal"

    def read(self):
        return (self.kind, self.layer, self.position, self.index, None)


def nodes(f: Frozen) -> list[GNode]:
    m, g = f.model, f.g
    seq = len(f.ids)
    toks = m.codec.token_strs(f.ids)
    out: list[GNode] = []
    for p in range(seq):
        out.append(GNode(f"EMB@{p}", "embed", None, p, float(f.emb[p].norm())))
        out.append(GNode(f"POS@{p}", "pos_embed", None, p, float(f.pos[p].norm())))

    def latents(l, letter, kind, acts, err_letter, err_kind, errs):
        for p, i in (acts != 0).nonzero().tolist():
            out.append(GNode(f"L{l}.{letter}{i}@{p}", kind, l, p, float(acts[p, i]), i))
        for p in range(seq):
            out.append(GNode(f"L{l}.{err_letter}@{p}", err_kind, l, p, float(errs[p].norm())))

    for l in range(m.shape.n_layers):
        if g.attn[l] == "heads":
            o = f.src[f"head{l}"]
            for h in range(o.shape[0]):
                for q in range(seq):
                    out.append(GNode(f"L{l}.H{h}@{q}", "head", l, q, float(o[h, q].norm()), h))
        elif g.attn[l] == "sae":
            latents(l, "S", "sae", f.src[f"sae{l}"], "SERR", "sae_error", f.src[f"saeerr{l}"])
        if f"iv{l}" in f.src:
            for p in range(seq):
                out.append(GNode(f"L{l}.ATTN@{p}", "intervention", l, p, float(f.src[f"iv{l}"][p].norm())))
        if g.mlp[l] == "transcoder":
            latents(l, "T", "transcoder", f.src[f"tc{l}"], "TERR", "transcoder_error", f.src[f"tcerr{l}"])
        else:
            latents(l, "N", "neuron", f.src[f"neur{l}"], "MLP", "mlp_rest", f.src[f"rest{l}"])
    for n in out:
        n.token = toks[n.position]
    return out


MLP_KINDS = ("transcoder", "neuron")


def _stage(read, L: int) -> int:
    """Where a read's walk starts, counting down: 2L+1 the target, 2l+1 the input of MLP l,
    2l the attention of layer l (heads, SAE latents, query / key reads)."""
    kind, l = read[0], read[1]
    return 2 * L + 1 if kind == "target" else 2 * l + (1 if kind in MLP_KINDS else 0)


def _walk(f: Frozen, reads: list):
    """Backward walk for one chunk of reads, sorted by `_stage` (latest first); returns
    [R, n_sources] and [R, L, H, seq] head contributions on "ov" layers (each head's output
    dotted with the read's gradient there). A read's gradient is zero above where it starts,
    so each step works on the prefix of reads already started. Each layer's source columns are
    taken as the walk passes it, so memory is a few [R, seq, d_model] tensors whatever the depth."""
    m, W, g = f.model, f.model.W, f.g
    L, H, seq, d = m.shape.n_layers, m.shape.n_heads, len(f.ids), m.shape.d_model
    R = len(reads)
    dt = f.emb.dtype
    stages = [_stage(r, L) for r in reads]
    assert stages == sorted(stages, reverse=True), "reads must be sorted by stage"
    started = lambda st: sum(1 for x in stages if x >= st)  # rows whose walk has begun at stage st
    G = torch.zeros(R, seq, d, dtype=dt)
    by_layer: dict = {}
    for r, (kind, l, p, i, vec) in enumerate(reads):
        if kind == "target":
            G[r, p] = ln_back(m, "ln_final", vec[None], f.sf[p])[0]
        else:
            by_layer.setdefault(l, []).append((r, kind, p, i, vec))
    head_c = torch.zeros(R, L, H, seq, dtype=dt)
    heads_out = f.heads_all or None
    blocks: list = [None] * L

    def pad(x, n):  # rows past the prefix are zero
        return x if n == R else torch.cat([x, x.new_zeros((R - n,) + x.shape[1:])])

    def latent_block(post, name, W_dec, key=None):
        """[n, active units of `name`]: each unit's write through W_dec dotted with `post`."""
        acts = f.src[name]
        dec, mask = padded_writes(f, name, W_dec, key)
        if dec is not None:  # one batched product over positions: [p, n, d] @ [p, d, k]
            c = torch.bmm(post.transpose(0, 1), dec.transpose(1, 2)).permute(1, 0, 2)  # [n, p, k]
            return c[:, mask]
        parts = []
        for p in range(seq):
            i = (acts[p] != 0).nonzero().flatten()
            parts.append(post[:, p] @ (W_dec[i] * acts[p, i][:, None]).T)
        return torch.cat(parts, 1)

    def latent_cols(out, post, name, W_dec, errs):
        n = post.shape[0]
        out.append(pad(latent_block(post, name, W_dec), n))
        out.append(pad((post * errs).sum(-1), n))

    clt_acc: dict = {}  # a CLT's latents read at s: their edges gathered over the MLP outputs l ≥ s they write

    for l in range(L - 1, -1, -1):
        mine = by_layer.get(l, [])
        n = started(2 * l + 2)
        mlp_cols: list = []  # G here is the gradient at the residual after MLP l
        if g.mlp[l] == "transcoder" and m.autoencoders.clt is not None:
            for s, W_s in tc_decoders(f, l):
                c = latent_block(G[:n], f"tc{s}", W_s, f"tc{s}>{l}")
                if s not in clt_acc:
                    clt_acc[s] = torch.zeros(R, c.shape[1], dtype=dt)
                clt_acc[s][:n] += c
            mlp_cols += [clt_acc.pop(l), pad((G[:n] * f.src[f"tcerr{l}"]).sum(-1), n)]
        elif g.mlp[l] == "transcoder":
            latent_cols(mlp_cols, G[:n], f"tc{l}", mlp_dictionary(m, l).W_dec, f.src[f"tcerr{l}"])
        else:
            latent_cols(mlp_cols, G[:n], f"neur{l}", W.W_out[l], f.src[f"rest{l}"])
        for kind in MLP_KINDS:  # reads of this layer's MLP nodes start at its input
            rs = [(r, p, i) for r, k, p, i, _ in mine if k == kind]
            if not rs:
                continue
            r_, p_, i_ = (torch.tensor(x) for x in zip(*rs))
            if kind == "transcoder":
                G[r_, p_] = tc_read_grad(f, l, i_, p_)
            else:
                G[r_, p_] = ln_back(m, f"blocks.{l}.ln2", W.W_in[l][:, i_].T, f.s2[l][p_])
        n = started(2 * l + 1)
        Gn = G[:n]
        attn_cols: list = []  # G here is the gradient at the residual after attention l
        if g.attn[l] == "heads":
            attn_cols.append(pad(torch.einsum("Rqd,hqd->Rhq", Gn, f.src[f"head{l}"]).reshape(n, H * seq), n))
        elif g.attn[l] == "sae":
            latent_cols(attn_cols, Gn, f"sae{l}", m.autoencoders.saes[l].W_dec, f.src[f"saeerr{l}"])
        if f"iv{l}" in f.src:
            attn_cols.append(pad((Gn * f.src[f"iv{l}"]).sum(-1), n))
        blocks[l] = attn_cols + mlp_cols
        if heads_out is not None and g.attn[l] == "ov" and n:
            head_c[:n, l] = torch.bmm(Gn.transpose(0, 1), heads_out[l].permute(1, 2, 0)).permute(1, 2, 0)
        # gradient with respect to each head's pattern-mixed values z[q, h] (d_head), as big GEMMs
        n = started(2 * l)
        e = W.W_O.shape[2]
        WO, WV = _cat_weights(f, l)
        if g.attn[l] == "ov":
            t = (G[:n].reshape(n * seq, d) @ WO).view(n, seq, H, e)
        else:  # heads or SAE latents are held fixed: the residual gradient stops here
            t = torch.zeros(n, seq, H, e, dtype=dt)
        back_x = torch.zeros(n, seq, d, dtype=dt)  # gradient at LN1's output
        for r, kind, p, i, vec in mine:
            if kind == "head":
                t[r, p, i] = W.W_O[l, i] @ f.head_dir[l][i, p]
            elif kind == "sae":
                t[r, p] = sae_z_grad(f, l, i)
            elif kind == "q":
                back_x[r, p] += W.W_Q[l, i] @ vec
            elif kind == "k":
                back_x[r, p] += W.W_K[l, i] @ vec
        if n and (g.attn[l] == "ov" or any(k in ("head", "sae") for _, k, _, _, _ in mine)):
            tm = t.permute(2, 1, 0, 3).reshape(H, seq, n * e)  # [H, q, n·e]
            tk = torch.bmm(f.patterns[l].transpose(1, 2), tm)  # [H, k, n·e]
            tk = tk.view(H, seq, n, e).permute(2, 1, 0, 3).reshape(n * seq, H * e)
            back_x = back_x + (tk @ WV).view(n, seq, d)
        if n:
            G[:n] += ln_back(m, f"blocks.{l}.ln1", back_x, f.s1[l])
    cols = [torch.stack([(G * f.emb).sum(-1), (G * f.pos).sum(-1)], 2).reshape(R, -1)]
    for l in range(L):
        cols += blocks[l]
    return torch.cat(cols, 1), head_c


def _cat_weights(f: Frozen, l: int):
    """Layer l's W_O as [d, H·d_head] and W_V as [H·d_head, d] (cached on the frozen model)."""
    cache = f.__dict__.setdefault("_cat", {})
    if l not in cache:
        W = f.model.W
        H, d, e = W.W_V.shape[1], W.W_V.shape[2], W.W_V.shape[3]
        cache[l] = (W.W_O[l].permute(2, 0, 1).reshape(d, H * e).contiguous(),
                    W.W_V[l].permute(0, 2, 1).reshape(H * e, d).contiguous())
    return cache[l]


def padded_writes(f: Frozen, name: str, W_dec: torch.Tensor, key: Optional[str] = None,
                  budget_bytes: int = 512 << 20):
    """Each position's active units' writes (decoder row × activation) of source `name`, padded
    to the largest count: ([seq, k, d], mask [seq, k]) in `nodes` order (row-major). Cached on
    the untruncated frozen model under `key` (default `name`; a CLT's latents have one decoder
    per layer they write) — a truncated one takes the first rows; (None, None) when the
    cache would pass `budget_bytes` in all (then the caller goes position by position)."""
    root = f.__dict__.get("_root", f)
    cache = root.__dict__.setdefault("_writes", {})
    name_key = key or name
    if name_key not in cache:
        acts = root.src[name]
        counts = (acts != 0).sum(-1)
        k = int(counts.max()) if counts.numel() else 0
        used = sum(v[0].numel() * v[0].element_size() for v in cache.values() if v[0] is not None)
        if k == 0 or used + acts.shape[0] * k * W_dec.shape[1] * W_dec.element_size() > budget_bytes:
            cache[name_key] = (None, None)
        else:
            order = torch.argsort((acts == 0).to(torch.int8), dim=-1, stable=True)[:, :k]  # active first, by index
            mask = torch.arange(k)[None] < counts[:, None]
            a = acts.gather(1, order) * mask
            cache[name_key] = (W_dec[order] * a[..., None], mask)
    dec, mask = cache[name_key]
    P = len(f.ids)
    return (None, None) if dec is None else (dec[:P], mask[:P])


def chunk_size(f: Frozen, budget_bytes: int = 256 << 20) -> int:
    """Reads per backward walk so that its working tensors stay within about `budget_bytes`."""
    m = f.model
    per_read = 4 * len(f.ids) * (6 * m.shape.d_model + m.shape.n_heads * m.shape.d_head * 2
                                 + m.shape.n_layers * m.shape.n_heads)
    return max(1, min(1024, budget_bytes // per_read))


def edges(f: Frozen, reads: list, chunk: Optional[int] = None, heads_k: int = 3, buckets: int = 8,
          node_list: Optional[list] = None):
    """([n_reads, n_sources] edges in `nodes` order, and per read the `heads_k` largest head
    contributions as (values [n_reads, k], flat indices into [L, H, seq])).

    Reads are split into `buckets` ranges of position; a read at position p only reaches
    positions ≤ p, so each range is walked on the model truncated after its last position."""
    from .granular import truncate

    m = f.model
    L, H, seq = m.shape.n_layers, m.shape.n_heads, len(f.ids)
    pos = torch.tensor([n.position for n in (node_list or nodes(f))])
    E = torch.zeros(len(reads), len(pos), dtype=f.emb.dtype)
    hv = torch.zeros(len(reads), heads_k, dtype=f.emb.dtype)
    hi = torch.zeros(len(reads), heads_k, dtype=torch.long)
    bounds = sorted({-(-seq * (k + 1) // min(buckets, seq)) for k in range(min(buckets, seq))})
    lo = 0
    for P in bounds:
        mine = [r for r, x in enumerate(reads) if lo <= x[2] < P]
        lo = P
        if not mine:
            continue
        ft = truncate(f, P)
        cols = (pos < P).nonzero().flatten()
        size = chunk or chunk_size(ft)
        order = sorted(mine, key=lambda r: -_stage(reads[r], L))
        for s in range(0, len(order), size):
            rows = torch.tensor(order[s:s + size])
            Et, h = _walk(ft, [reads[r] for r in rows.tolist()])
            E[rows[:, None], cols[None, :]] = Et
            flat = torch.nn.functional.pad(h, (0, seq - P)).flatten(1)  # back to [L, H, seq]
            top = flat.abs().topk(min(heads_k, flat.shape[1]), dim=1)
            hv[rows, :top.indices.shape[1]] = flat.gather(1, top.indices)
            hi[rows, :top.indices.shape[1]] = top.indices
    return E, (hv, hi)


def read_values(f: Frozen, reads: list, out: dict, xs: list) -> torch.Tensor:
    """Each read's value from one frozen forward's outputs (`out` from `forward`, `xs` its LN1
    outputs per layer)."""
    W = f.model.W
    vals = torch.zeros(len(reads), dtype=f.emb.dtype)
    groups: dict = {}
    for r, (kind, l, p, i, vec) in enumerate(reads):
        if kind in ("transcoder", "sae", "neuron"):
            groups.setdefault((kind, l), []).append((r, p, i))
        elif kind == "target":
            vals[r] = out["final"][p] @ vec
        elif kind == "head":
            vals[r] = out[("head", l)][i, p]
        elif kind == "q":
            vals[r] = (xs[l][p] @ W.W_Q[l, i] + W.b_Q[l, i]) @ vec
        else:
            vals[r] = (xs[l][p] @ W.W_K[l, i] + W.b_K[l, i]) @ vec
    for key, rs in groups.items():
        r_, p_, i_ = (torch.tensor(x) for x in zip(*rs))
        vals[r_] = out[key][p_, i_]
    return vals
