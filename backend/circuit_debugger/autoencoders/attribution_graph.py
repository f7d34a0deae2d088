"""Attribution graphs: active transcoder latents (by position), token and position embeddings,
error nodes and the logit target, with edges = exact direct effects in the frozen model
(`graph.py`), pruned by influence on the target.

Pruning follows circuit-tracer: normalise each node's absolute input edges to sum to 1,
influence = (I − A)⁻¹ − I from the target; keep the latents carrying `node_threshold` of the
total influence (embeddings, errors and the target are always kept), then the edges carrying
`edge_threshold` of the edge influence. Scores:
- completeness: 1 − the influence-weighted share of node inputs that come from error nodes;
- replacement: the share of the target's influence that starts at embeddings rather than errors.
Heads' OV contributions: for every kept node, the heads (at each query position) whose output
its read receives most, from gates on each head in the frozen model.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import torch

from .graph import Frozen, Node, capture, edges_linear, forward_leaves, logit_direction, make_leaves, sources


def influence(A: torch.Tensor) -> torch.Tensor:
    """B = Σ_{k≥1} Aᵏ for a normalised DAG adjacency (rows: destinations)."""
    n = A.shape[0]
    return torch.linalg.solve(torch.eye(n, dtype=A.dtype) - A, torch.eye(n, dtype=A.dtype)) - torch.eye(n, dtype=A.dtype)


def normalise(M: torch.Tensor) -> torch.Tensor:
    A = M.abs()
    s = A.sum(1, keepdim=True)
    return torch.where(s > 0, A / s.clamp_min(1e-30), torch.zeros_like(A))


def build(model, ids: Sequence[int], target: int, distractor: Optional[int], position: int, *,
          node_threshold: float = 0.8, edge_threshold: float = 0.98, max_latents: int = 500,
          heads_per_node: int = 3) -> dict:
    t0 = time.perf_counter()
    f: Frozen = capture(model, ids)
    srcs = sources(f)
    heads: list = []
    with torch.no_grad():
        pres, final = forward_leaves(f, make_leaves(f), heads=heads)
    u, b = logit_direction(model, target, distractor)
    latents = [s for s in srcs if s.kind == "transcoder"]
    values = torch.stack([pres[s.layer][s.position, s.index] for s in latents] + [final[position] @ u + b]).detach()
    # [n_latents + 1, n_srcs] edges and [reads, L, H, seq] each head's output contribution to each read
    E, head_grads = edges_linear(f, [(s.layer, s.position, s.index) for s in latents] + [("target", position, u)],
                                 heads)
    bias = values - E.sum(1)

    # the full adjacency over srcs + target (rows = destinations)
    N = len(srcs) + 1
    index = {s.id: j for j, s in enumerate(srcs)}
    M = torch.zeros(N, N, dtype=E.dtype)
    for r, s in enumerate(latents):
        M[index[s.id], :len(srcs)] = E[r]
    M[N - 1, :len(srcs)] = E[-1]
    nodes = srcs + [Node("TARGET", "logit", None, position, float(values[-1]))]
    nodes[-1].token = model.codec.output_str(target) + ("" if distractor is None else f" − {model.codec.output_str(distractor)}")

    A = normalise(M)
    infl = influence(A)[N - 1].clone()
    infl[N - 1] = 1.0
    is_latent = torch.tensor([n.kind == "transcoder" for n in nodes])
    order = torch.argsort(torch.where(is_latent, infl, torch.full_like(infl, -1.0)), descending=True)
    total = float(infl[is_latent].sum())
    keep = ~is_latent
    acc = 0.0
    for j in order.tolist():
        if not is_latent[j] or acc >= node_threshold * total or int(keep[is_latent].sum()) >= max_latents:
            break
        keep[j] = True
        acc += float(infl[j])
    kept = keep.nonzero().flatten()
    M2 = M[kept][:, kept]
    A2 = normalise(M2)
    infl2 = influence(A2)[-1].clone()
    infl2[-1] = 1.0
    score = A2 * infl2[:, None]
    flat = score.flatten()
    order = torch.argsort(flat, descending=True)
    cum = torch.cumsum(flat[order], 0)
    n_edges = int((cum < edge_threshold * cum[-1]).sum()) + 1 if cum.numel() and cum[-1] > 0 else 0
    edge_mask = torch.zeros_like(flat, dtype=torch.bool)
    edge_mask[order[:n_edges]] = True
    edge_mask = edge_mask.reshape(score.shape) & (M2 != 0)
    connected = edge_mask.any(0) | edge_mask.any(1)
    connected[-1] = True

    kept_nodes = [nodes[j] for j in kept.tolist()]
    is_err = torch.tensor([n.kind == "transcoder_error" for n in kept_nodes])
    err_in = (A2 * is_err[None, :]).sum(1)
    completeness = 1 - float((infl2 * err_in).sum() / infl2.sum())
    roots = torch.tensor([n.kind in ("embed", "pos_embed", "transcoder_error") for n in kept_nodes])
    emb_roots = roots & ~is_err
    replacement = float(infl2[emb_roots].sum() / infl2[roots].sum()) if infl2[roots].sum() > 0 else 0.0

    read_row = {s.id: r for r, s in enumerate(latents)}
    read_row["TARGET"] = len(latents)
    out_nodes, out_edges, attention = [], [], []
    local = {}
    for j, n in enumerate(kept_nodes):
        if not connected[j]:
            continue
        local[j] = n.id
        row = {"id": n.id, "kind": n.kind, "layer": n.layer, "position": n.position, "index": n.index,
               "token": n.token, "activation": n.activation, "influence": float(infl2[j])}
        if n.id in read_row:
            r = read_row[n.id]
            row["input"] = float(values[r])
            row["bias"] = float(bias[r])
            hg = head_grads[r]
            top = hg.abs().flatten().topk(min(heads_per_node, hg.numel()))
            for v, flat_i in zip(top.values.tolist(), top.indices.tolist()):
                if v <= 0:
                    continue
                l, h, q = torch.unravel_index(torch.tensor(flat_i), hg.shape)
                attention.append({"target": n.id, "head": f"L{int(l)}.H{int(h)}", "position": int(q),
                                  "contribution": float(hg[l, h, q])})
        out_nodes.append(row)
    for d, s in edge_mask.nonzero().tolist():
        if d in local and s in local:
            out_edges.append({"source": local[s], "target": local[d], "weight": float(M2[d, s])})
    return {
        "nodes": out_nodes, "edges": out_edges, "attention": attention,
        "target": {"position": position, "value": float(values[-1]),
                   "token": model.codec.output_str(target),
                   "distractor": None if distractor is None else model.codec.output_str(distractor)},
        "tokens": model.codec.token_strs(ids),
        "completeness": completeness, "replacement_score": replacement,
        "node_threshold": node_threshold, "edge_threshold": edge_threshold,
        "n_active_latents": len(latents), "n_latents_kept": sum(1 for n in out_nodes if n["kind"] == "transcoder"),
        "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


def contributions(model, ids: Sequence[int], layer: int, index: int, position: int, k: int = 20) -> dict:
    """Input-dependent connections into one transcoder latent: every source's exact
    contribution to its pre-activation in the frozen model, the bias, and the heads its
    input came through. Contributions + bias = the pre-activation."""
    f = capture(model, ids)
    srcs = sources(f)
    L, H, seq = model.shape.n_layers, model.shape.n_heads, len(ids)
    heads: list = []
    with torch.no_grad():
        pres, _ = forward_leaves(f, make_leaves(f), heads=heads)
    value = float(pres[layer][position, index])
    E, head = edges_linear(f, [(layer, position, index)], heads)
    E, head = E[0], head[0]
    rows = sorted(({"source": s.id, "kind": s.kind, "contribution": float(e), "activation": s.activation}
                   for s, e in zip(srcs, E) if float(e) != 0.0), key=lambda r: -abs(r["contribution"]))
    heads = sorted(({"head": f"L{l}.H{h}", "position": q, "contribution": float(head[l, h, q])}
                    for l in range(L) for h in range(H) for q in range(seq) if float(head[l, h, q]) != 0.0),
                   key=lambda r: -abs(r["contribution"]))
    return {"node": f"L{layer}.T{index}@{position}", "pre_activation": value,
            "activation": float(f.acts[layer][position, index]), "bias": value - float(E.sum()),
            "sum_of_contributions": float(E.sum()), "contributions": rows[:k], "n_contributions": len(rows),
            "heads": heads[:k]}
