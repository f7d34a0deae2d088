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


def select_rows(f, ns: list, internal: list, target_read, max_nodes: int, heads_k: int, batch: int = 256):
    """Returns (indices into `internal` in the order chosen, rows [n_chosen + 1, n_sources] with
    the target's last, head values, head indices)."""
    index = {n.id: j for j, n in enumerate(ns)}
    int_cols = torch.tensor([index[n.id] for n in internal], dtype=torch.long)
    E_t, (hv_t, hi_t) = edges(f, [target_read], heads_k=heads_k, node_list=ns)
    rows, hvs, his = [], [], []
    A_rows = [normalise(E_t)]
    chosen: list = []
    mask = torch.zeros(len(internal), dtype=torch.bool)
    while len(chosen) < max_nodes:
        infl = A_rows[0][0].clone()
        if chosen:
            A = torch.cat(A_rows[1:])
            at = int_cols[torch.tensor(chosen)]
            v = infl
            for _ in range(len(chosen) + 1):  # a DAG: the walk dies out within its depth
                v = v[at] @ A
                if not bool(v.any()):
                    break
                infl = infl + v
        score = infl[int_cols].masked_fill(mask, -1.0)
        top = score.topk(min(batch, max_nodes - len(chosen), len(internal)))
        new = [i for s, i in zip(top.values.tolist(), top.indices.tolist()) if s > 0]
        if not new:
            break
        E, (hv, hi) = edges(f, [internal[i].read() for i in new], heads_k=heads_k, node_list=ns)
        rows.append(E)
        hvs.append(hv)
        his.append(hi)
        A_rows.append(normalise(E))
        chosen += new
        mask[new] = True
    return chosen, torch.cat(rows + [E_t]), torch.cat(hvs + [hv_t]), torch.cat(his + [hi_t])
