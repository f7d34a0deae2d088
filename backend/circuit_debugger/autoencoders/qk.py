"""Attention (QK) attribution for a head node: which upstream nodes drove its attention score.

For head h of layer l at query position q we decompose the pre-softmax score s[q, k*] for the
key k* the head attends to most (argmax of its frozen pattern row; ties: the first). With LN
scales, patterns and node values frozen, the query vector and the key vector are each affine
in the sources: Q = Q0 + Σ_i Q_i, K = K0 + Σ_j K_j, where Q0, K0 are their values with every
source at zero (biases only) and Q_i, K_j the parts due to source i at the query side (through
the residual at q) and j at the key side (at k*). The score s = Q·K / a (a: the model's
attention scale) is bilinear; we split every cross term Q_i·K_j equally between its two sides:

    query-side edge of i = Q_i · (K + K0) / (2a)
    key-side edge of j   = (Q + Q0) / 2 · K_j / a
    constant             = Q0 · K0 / a

and Σ query-side + Σ key-side + constant = s exactly (the tests check this against the real
model's `hook_attn_scores`). A query-side edge is the exact edge into the linear read
"(LN1(r_q) W_Q + b_Q)·(K + K0)/(2a)", so it is computed by the same backward walk as every
other edge (`granular_edges`); a source that reaches both sides (when k* = q) has two edges.
"""

from __future__ import annotations

import torch

from .granular import Frozen, forward, zero_sources
from .granular_edges import edges


def qk_reads(f: Frozen, heads: list, xs: list, xs0: list) -> tuple[list, list]:
    """`heads`: (layer, head, query). Returns the 2 reads per head and per head a dict with
    key, score and constant."""
    W, a = f.model.W, f.model.attn_scale
    reads, info = [], []
    for l, h, q in heads:
        k = int(torch.argmax(f.patterns[l][h, q]))
        Q = xs[l][q] @ W.W_Q[l, h] + W.b_Q[l, h]
        K = xs[l][k] @ W.W_K[l, h] + W.b_K[l, h]
        Q0 = xs0[l][q] @ W.W_Q[l, h] + W.b_Q[l, h]
        K0 = xs0[l][k] @ W.W_K[l, h] + W.b_K[l, h]
        reads.append(("q", l, q, h, (K + K0) / (2 * a)))
        reads.append(("k", l, k, h, (Q + Q0) / (2 * a)))
        info.append({"layer": l, "head": h, "query": q, "key": k, "score": float(Q @ K / a),
                     "constant": float(Q0 @ K0 / a), "pattern": float(f.patterns[l][h, q, k])})
    return reads, info


def qk_edges(f: Frozen, heads: list, xs: list) -> tuple[list, torch.Tensor]:
    """Per head: info and the [2, n_sources] query-side and key-side edges."""
    if not heads:
        return [], torch.zeros(0, 2, 0)
    xs0: list = []
    with torch.no_grad():
        forward(f, zero_sources(f), resid_in=xs0)
    reads, info = qk_reads(f, heads, xs, xs0)
    E, _ = edges(f, reads)
    return info, E.reshape(len(heads), 2, -1)
