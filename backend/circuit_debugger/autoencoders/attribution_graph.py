"""Attribution graphs: nodes at mixed granularity (`granular.py`: embeddings, heads per query
position, SAE / transcoder latents, MLP neurons, error nodes) and the logit target, with
edges = exact direct effects in the frozen model (`granular_edges.py`), pruned by influence on
the target (`pruning.py`: circuit-tracer's definition or ours), plus QK edges for head nodes
(`qk.py`). Scores:
- completeness: 1 − the influence-weighted share of node inputs that come from error nodes;
- replacement: the share of the target's influence that starts at embeddings rather than errors.
Heads' OV contributions (layers whose attention is not made of nodes): for every kept node,
the heads (at each query position) whose output its read receives most.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import torch

from ..errors import UserError

from .granular import Granularity, capture as capture_g, clean_sources, forward as forward_g
from .granular_edges import GNode, edges as edges_g, nodes as gnodes, read_values
from .graph import logit_direction
from .pruning import FullGraph, influence, normalise, prune
from .qk import qk_edges
from .selection import select_rows


def build(model, ids: Sequence[int], target: int, distractor: Optional[int], position: int, *,
          node_threshold: float = 0.8, edge_threshold: float = 0.98, max_latents: int = 500,
          heads_per_node: int = 3, granularity: Optional[Granularity] = None, pruning: str = "circuit-tracer",
          qk_per_head: int = 8, interventions: Sequence = (), max_nodes: int = 1024) -> dict:
    """The pruned graph (see `granular.py` for the nodes, `pruning.py` for the pruning)."""
    t0 = time.perf_counter()
    g = granularity or Granularity.parse(model)
    f = capture_g(model, ids, g, interventions)
    ns = gnodes(f)
    internal_all = [n for n in ns if n.role == "internal"]
    u, b = logit_direction(model, target, distractor)
    target_read = ("target", None, position, None, u)
    if len(internal_all) > max_nodes:  # too many: rows only for the most influential (selection.py)
        chosen, E, head_v, head_i = select_rows(f, ns, internal_all, target_read, max_nodes, heads_per_node)
        internal = [internal_all[i] for i in chosen]
    else:
        internal = internal_all
        E, (head_v, head_i) = edges_g(f, [n.read() for n in internal] + [target_read], heads_k=heads_per_node,
                                      node_list=ns)
    reads = [n.read() for n in internal] + [target_read]
    xs: list = []
    with torch.no_grad():
        out = forward_g(f, clean_sources(f), resid_in=xs)
    values = read_values(f, reads, out, xs).detach()
    values[-1] = values[-1] + b
    real = float(f.logits[position, target] - (f.logits[position, distractor] if distractor is not None
                                                else f.logits[position].mean()))
    if abs(real - float(values[-1])) > 1e-3 * (1 + abs(real)):
        raise UserError(f"the graph's frozen model gives {float(values[-1]):.5g} for the target where the run gives "
                        f"{real:.5g}; an intervention here cannot be held fixed in the graph (residual-stream "
                        f"interventions are not supported in graphs)")
    L, H, seq = model.shape.n_layers, model.shape.n_heads, len(ids)
    bias = values - E.sum(1)  # from full rows: the constant part whatever is drawn
    n_internal_total = len(internal_all)
    if len(internal) < n_internal_total:
        index = {n.id: j for j, n in enumerate(ns)}
        chosen_ids = {n.id for n in internal}
        ns = [n for n in ns if n.role != "internal" or n.id in chosen_ids]
        E = E[:, torch.tensor([index[n.id] for n in ns])]
    N = len(ns) + 1
    index = {n.id: j for j, n in enumerate(ns)}
    M = torch.zeros(N, N, dtype=E.dtype)
    rows = [index[n.id] for n in internal] + [N - 1]
    M[rows, :N - 1] = E
    tnode = GNode("TARGET", "logit", None, position, float(values[-1]))
    tnode.token = model.codec.output_str(target) + ("" if distractor is None else f" − {model.codec.output_str(distractor)}")
    ns = ns + [tnode]
    w = torch.zeros(N, dtype=E.dtype)
    w[N - 1] = 1.0
    full = FullGraph(M, [n.role for n in ns], w)
    pr = prune(full, node_threshold, edge_threshold, pruning, max_internal=max_latents)
    keep, em = pr.node_mask, pr.edge_mask
    inputs = torch.tensor([n.role == "input" for n in ns])
    keep = keep & ~(inputs & ~em.any(0))  # embeddings with no kept edge are not drawn

    kept = keep.nonzero().flatten()
    A2 = normalise(M[kept][:, kept])
    infl2 = influence(A2, w[kept]) + w[kept]
    kept_nodes = [ns[j] for j in kept.tolist()]
    is_err = torch.tensor([n.role == "error" for n in kept_nodes])
    err_in = (A2 * is_err[None, :]).sum(1)
    completeness = 1 - float((infl2 * err_in).sum() / infl2.sum())
    roots = torch.tensor([n.role in ("input", "error") for n in kept_nodes])
    replacement = float(infl2[roots & ~is_err].sum() / infl2[roots].sum()) if infl2[roots].sum() > 0 else 0.0

    read_row = {n.id: r for r, n in enumerate(internal)}
    read_row["TARGET"] = len(internal)
    out_nodes, attention = [], []
    for j in kept.tolist():
        n = ns[j]
        row = {"id": n.id, "kind": n.kind, "layer": n.layer, "position": n.position, "index": n.index,
               "token": n.token, "activation": n.activation, "influence": float(pr.influence[j]),
               "cumulative": float(pr.cumulative[j])}
        if n.id in read_row:
            r = read_row[n.id]
            row["input"] = float(values[r])
            row["bias"] = float(bias[r])
            for v, flat_i in zip(head_v[r].tolist(), head_i[r].tolist()):
                if v == 0:
                    continue
                l, h, q = flat_i // (H * seq), flat_i // seq % H, flat_i % seq
                attention.append({"target": n.id, "head": f"L{l}.H{h}", "position": q, "contribution": v})
        out_nodes.append(row)
    out_edges = [{"source": ns[s].id, "target": ns[d].id, "weight": float(M[d, s])} for d, s in em.nonzero().tolist()]
    kept_heads = [(n.layer, n.index, n.position) for n in kept_nodes if n.kind == "head"]
    info, QK = qk_edges(f, kept_heads, xs)
    qk = []
    for h_info, rows2 in zip(info, QK):
        items = [(side, ns[j].id, float(rows2[s, j])) for s, side in enumerate(("query", "key"))
                 for j in rows2[s].nonzero().flatten().tolist()]
        items.sort(key=lambda x: -abs(x[2]))
        qk.append(dict(h_info, node=f"L{h_info['layer']}.H{h_info['head']}@{h_info['query']}",
                       n_edges=len(items), sum_edges=float(rows2.sum()),
                       edges=[{"source": sid, "side": side, "weight": v} for side, sid, v in items[:qk_per_head]]))
    n_lat = sum(1 for n in internal_all if n.kind in ("transcoder", "sae"))
    frozen = ("attention patterns, every LN scale, each node's value (latent and neuron activations, head outputs "
              "where heads are nodes) and each error, from the " + ("intervened" if interventions else "clean") + " run")
    return {
        "interventions": [str(i) for i in interventions], "frozen": frozen,
        "nodes": out_nodes, "edges": out_edges, "attention": attention, "qk": qk,
        "n_layers": model.shape.n_layers, "token_ids": [int(i) for i in ids],
        "target": {"position": position, "value": float(values[-1]), "id": int(target),
                   "probability": float(torch.softmax(f.logits[position], -1)[target]),
                   "token": model.codec.output_str(target),
                   "distractor": None if distractor is None else model.codec.output_str(distractor)},
        "tokens": model.codec.token_strs(ids),
        "completeness": completeness, "replacement_score": replacement,
        "node_threshold": node_threshold, "edge_threshold": edge_threshold, "pruning": pruning,
        "granularity": {"attn": list(g.attn), "mlp": list(g.mlp), "neurons_per_position": g.neurons_per_position},
        "n_active_latents": n_lat,
        "n_latents_kept": sum(1 for n in out_nodes if n["kind"] in ("transcoder", "sae")),
        "n_nodes_total": N, "n_internal_total": n_internal_total, "n_internal_with_rows": len(internal), "n_edges_total": int((M != 0).sum()),
        "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


def contributions(model, ids: Sequence[int], layer: int, index: int, position: int, k: int = 20) -> dict:
    """Input-dependent connections into one transcoder (or CLT) latent: every source's exact
    contribution to its pre-activation in the frozen model (attention through OV; transcoder
    latents where a layer has one, neurons elsewhere), the bias, and the heads its input came
    through. Contributions + bias = the pre-activation."""
    g = Granularity.parse(model)
    if g.mlp[layer] != "transcoder":
        from .graph_dictionaries import graphable_mlp

        raise UserError(f"latent L{layer}.T{index}: {graphable_mlp(model, layer)}")
    f = capture_g(model, ids, g)
    ns = gnodes(f)
    read = ("transcoder", layer, position, index, None)
    E, (hv, hi) = edges_g(f, [read], heads_k=max(k, 1), node_list=ns)
    xs: list = []
    with torch.no_grad():
        out = forward_g(f, clean_sources(f), resid_in=xs)
    value = float(read_values(f, [read], out, xs)[0])
    E = E[0]
    H, seq = model.shape.n_heads, len(ids)
    rows = sorted(({"source": s.id, "kind": s.kind, "contribution": float(e), "activation": s.activation}
                   for s, e in zip(ns, E) if float(e) != 0.0), key=lambda r: -abs(r["contribution"]))
    heads = [{"head": f"L{i // (H * seq)}.H{i // seq % H}", "position": i % seq, "contribution": v}
             for v, i in zip(hv[0].tolist(), hi[0].tolist()) if v != 0.0]
    return {"node": f"L{layer}.T{index}@{position}", "pre_activation": value,
            "activation": float(f.src[f"tc{layer}"][position, index]), "bias": value - float(E.sum()),
            "sum_of_contributions": float(E.sum()), "contributions": rows[:k], "n_contributions": len(rows),
            "heads": heads[:k]}
