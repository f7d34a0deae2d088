"""Choosing which internal nodes get rows when there are too many (long prompts, wide
dictionaries): the idea of circuit-tracer's feature selection, written for our walk.

Start from the target's row (every source's edge into it). Repeat: estimate each internal
node's influence on the target through the rows computed so far (normalised |edges|, summed
over paths), take the `batch` most influential nodes without a row, compute their rows (one
batched backward walk), until `max_nodes` rows or no node with influence is left. Nodes never
chosen are not in the graph; their edges into chosen nodes are left out of the adjacency (the
rows' biases still hold the whole constant part, and completeness counts only drawn errors).
"""

from __future__ import annotations

import torch

from .granular_edges import edges
from .pruning import normalise


def _influence(first: torch.Tensor, rows: torch.Tensor, sums: torch.Tensor, at: torch.Tensor, block: int = 256):
    """Influence on the target through the computed rows: first·(A + A² + …) where A's rows are
    |rows| / sums (normalised on the fly, a block of rows at a time, so no copy is kept)."""
    infl = first.clone()
    v = first
    for _ in range(rows.shape[0] + 1):  # a DAG: the walk dies out within its depth
        w = v[at] / sums.flatten()
        nxt = torch.zeros_like(first)
        for s in range(0, rows.shape[0], block):
            nxt += w[s:s + block] @ rows[s:s + block].abs()
        if not bool(nxt.any()):
            break
        infl += nxt
        v = nxt
    return infl


def select_rows(f, ns: list, internal: list, target_read, max_nodes: int, heads_k: int, batch: int = 128):
    """Returns (indices into `internal` in the order chosen, rows [n_chosen + 1, n_sources] with
    the target's last, head values, head indices)."""
    index = {n.id: j for j, n in enumerate(ns)}
    int_cols = torch.tensor([index[n.id] for n in internal], dtype=torch.long)
    E_t, (hv_t, hi_t) = edges(f, [target_read], heads_k=heads_k, node_list=ns)
    n_max = min(max_nodes, len(internal))
    rows = torch.zeros(n_max + 1, E_t.shape[1], dtype=E_t.dtype)  # the target's row goes last
    hv = torch.zeros(n_max + 1, hv_t.shape[1], dtype=hv_t.dtype)
    hi = torch.zeros(n_max + 1, hi_t.shape[1], dtype=hi_t.dtype)
    rows[n_max], hv[n_max], hi[n_max] = E_t[0], hv_t[0], hi_t[0]
    sums = torch.zeros(n_max, 1, dtype=E_t.dtype)
    first = normalise(E_t)[0]
    chosen: list = []
    mask = torch.zeros(len(internal), dtype=torch.bool)
    while len(chosen) < n_max:
        k = len(chosen)
        infl = _influence(first, rows[:k], sums[:k], int_cols[torch.tensor(chosen, dtype=torch.long)]) if k else first
        score = infl[int_cols].masked_fill(mask, -1.0)
        top = score.topk(min(batch, n_max - k))
        new = [i for s, i in zip(top.values.tolist(), top.indices.tolist()) if s > 0]
        if not new:
            break
        E, (v, i) = edges(f, [internal[j].read() for j in new], heads_k=heads_k, node_list=ns)
        rows[k:k + len(new)], hv[k:k + len(new)], hi[k:k + len(new)] = E, v, i
        sums[k:k + len(new), 0] = E.abs().sum(1).clamp_min(1e-30)
        chosen += new
        mask[new] = True
    keep = torch.cat([torch.arange(len(chosen)), torch.tensor([n_max])])
    if len(chosen) < n_max:
        rows, hv, hi = rows[keep], hv[keep], hi[keep]
    return chosen, rows, hv, hi
