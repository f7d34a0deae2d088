"""Export and import graphs in the JSON that circuit-tracer writes and Neuronpedia's graph
viewer reads (circuit-tracer 0.5's `frontend/graph_models.py` + `utils/create_graph_files.py`,
read for the format, not copied):

    {"metadata": {slug, scan, transcoder_list, prompt_tokens, prompt, node_threshold, schema_version},
     "qParams": {pinnedIds, supernodes: [[label, node_id, ...], ...], linkType, clickedId, sg_pos},
     "nodes": [{node_id, feature, layer (str), ctx_idx, feature_type, token_prob, is_target_logit,
                run_idx, reverse_ctx_idx, jsNodeId, clerp, influence, activation}],
     "links": [{source, target, weight}]}

Their node ids: transcoder feature "{layer}_{feature}_{pos}" (feature_type "cross layer
transcoder"), error "0_{layer}_{pos}" ("mlp reconstruction error"), token "E_{vocab}_{pos}"
("embedding"), logit "{n_layers+1}_{vocab}_{pos}" ("logit"); their node `influence` is the
cumulative influence share (our `cumulative`). Kinds they do not have get ids and feature
types of their own (heads "A{l}_{h}_{pos}" "attention head", neurons "N{l}_{i}_{pos}" "mlp
neuron", SAE latents "S{l}_{i}_{pos}" "sae latent", SAE errors "SE{l}_{pos}" "sae reconstruction
error", position embeddings "P_{pos}" "position embedding", the rest of an MLP "R{l}_{pos}"
"mlp rest", intervention deltas "I{l}_{pos}" "intervention").
Every node also carries `cd` (our row) and the metadata `cd` (the rest of our graph), so an
exported graph imports back identical; a file from circuit-tracer (no `cd`) imports from the
standard fields alone.
"""

from __future__ import annotations

from typing import Optional

from ..errors import UserError

FEATURE_TYPES = {"transcoder": "cross layer transcoder", "transcoder_error": "mlp reconstruction error",
                 "embed": "embedding", "logit": "logit", "head": "attention head", "neuron": "mlp neuron",
                 "sae": "sae latent", "sae_error": "sae reconstruction error", "pos_embed": "position embedding",
                 "mlp_rest": "mlp rest", "intervention": "intervention"}
KIND_OF = {v: k for k, v in FEATURE_TYPES.items()}


def _ct_id(n: dict, vocab: Optional[list], n_layers: int, target_vocab: Optional[int]) -> str:
    k, l, p, i = n["kind"], n.get("layer"), n.get("position"), n.get("index")
    if k == "transcoder":
        return f"{l}_{i}_{p}"
    if k == "transcoder_error":
        return f"0_{l}_{p}"
    if k == "embed":
        return f"E_{vocab[p] if vocab else p}_{p}"
    if k == "logit":
        return f"{n_layers + 1}_{target_vocab if target_vocab is not None else 0}_{p}"
    prefix = {"head": "A", "neuron": "N", "sae": "S", "sae_error": "SE", "mlp_rest": "R", "intervention": "I",
              "pos_embed": "P"}[k]
    if k == "pos_embed":
        return f"P_{p}"
    return f"{prefix}{l}_{i}_{p}" if i is not None else f"{prefix}{l}_{p}"


def export(graph: dict, *, pins=(), supernodes=(), notes: Optional[dict] = None,
           slug: str = "circuit-debugger-graph") -> dict:
    """`graph`: a graph as `/api/graph` returns it. `supernodes`: [{"label", "ids"}]; `pins` and
    supernode ids are our node ids (mapped to theirs here)."""
    for n in graph.get("nodes", []):
        k = n.get("kind")
        if k not in FEATURE_TYPES:
            raise UserError(f"graph node {n.get('id')!r}: unknown kind {k!r} (expected one of {sorted(FEATURE_TYPES)})")
        if not isinstance(n.get("position"), int) or (k not in ("embed", "pos_embed", "logit")
                                                      and not isinstance(n.get("layer"), int)):
            raise UserError(f"graph node {n.get('id')!r}: a {k} node needs an integer position and layer")
        if k in ("transcoder", "head", "neuron", "sae") and not isinstance(n.get("index"), int):
            raise UserError(f"graph node {n.get('id')!r}: a {k} node needs an integer index")
    if not isinstance(graph.get("target"), dict):
        raise UserError("graph: `target` must be an object")
    n_layers, vocab_ids, target_vocab = graph.get("n_layers", 0), graph.get("token_ids"), graph["target"].get("id")
    ids: dict = {}
    taken: set = set()
    nodes = []
    for n in graph["nodes"]:
        cid = _ct_id(n, vocab_ids, n_layers, target_vocab)
        if cid in taken:  # their error ids "0_{l}_{p}" can equal a layer-0 feature's id
            cid = f"{cid}_{n['kind']}"
        taken.add(cid)
        ids[n["id"]] = cid
        k = n["kind"]
        layer = "E" if k in ("embed", "pos_embed") else str(n_layers + 1) if k == "logit" else str(n["layer"])
        feature = n["index"] if n.get("index") is not None else (n["position"] if k in ("embed", "pos_embed") else -1)
        if k == "logit":
            feature = target_vocab if target_vocab is not None else 0
        nodes.append({"node_id": cid, "feature": feature, "layer": layer, "ctx_idx": n["position"],
                      "feature_type": FEATURE_TYPES[k], "token_prob": graph["target"].get("probability", 0.0)
                      if k == "logit" else 0.0, "is_target_logit": k == "logit", "run_idx": 0,
                      "reverse_ctx_idx": 0, "jsNodeId": cid,
                      "clerp": n.get("label") or (f'Output "{n.get("token")}"' if k == "logit" else ""),
                      "influence": n.get("cumulative"), "activation": n.get("activation"), "cd": n})
    links = [{"source": ids[e["source"]], "target": ids[e["target"]], "weight": e["weight"]} for e in graph["edges"]
             if e["source"] in ids and e["target"] in ids]
    rest = {k: v for k, v in graph.items() if k not in ("nodes", "edges")}
    return {
        "metadata": {"slug": slug, "scan": f"circuit-debugger:{graph.get('model', '')}", "transcoder_list": [],
                     "prompt_tokens": graph.get("tokens", []), "prompt": "".join(graph.get("tokens", [])),
                     "node_threshold": graph.get("node_threshold"), "schema_version": 1, "cd": rest},
        "qParams": {"pinnedIds": [ids[p] for p in pins if p in ids],
                    "supernodes": [[s["label"]] + [ids[i] for i in s["ids"] if i in ids] for s in supernodes],
                    "linkType": "both", "clickedId": "", "sg_pos": "",
                    "cd_notes": {ids[k]: v for k, v in (notes or {}).items() if k in ids}},
        "nodes": nodes, "links": links,
    }


def _our_row(n: dict, tokens: list) -> dict:
    """A node of a circuit-tracer file (no `cd`) as our row."""
    kind = KIND_OF.get(n.get("feature_type", ""))
    if kind is None:
        raise UserError(f"node {n.get('node_id')!r}: unknown feature_type {n.get('feature_type')!r}")
    p = int(n["ctx_idx"])
    parts = str(n["node_id"]).split("_")
    layer = None if n["layer"] == "E" or kind == "logit" else int(n["layer"])
    index = None
    if kind == "transcoder":
        index = int(parts[1])
        nid = f"L{layer}.T{index}@{p}"
    elif kind == "transcoder_error":
        nid = f"L{layer}.TERR@{p}"
    elif kind == "embed":
        nid = f"EMB@{p}"
    elif kind == "logit":
        nid = "TARGET" if n.get("is_target_logit") else f"LOGIT{n.get('feature')}@{p}"
    else:
        raise UserError(f"node {n.get('node_id')!r}: feature_type {n['feature_type']!r} needs its `cd` row")
    return {"id": nid, "kind": kind, "layer": layer, "position": p, "index": index,
            "token": tokens[p] if 0 <= p < len(tokens) else "", "activation": float(n.get("activation") or 0.0),
            "influence": float(n.get("influence") or 0.0), "cumulative": float(n.get("influence") or 0.0),
            "label": n.get("clerp") or None}


def import_graph(data: dict) -> dict:
    """A file in that format (ours or circuit-tracer's) → {graph, pins, supernodes, notes}."""
    try:
        return _import(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UserError(f"not a circuit-tracer / Neuronpedia graph file: {type(e).__name__}: {e}") from None


def _import(data: dict) -> dict:
    meta, q, nodes, links = data["metadata"], data.get("qParams") or {}, data["nodes"], data["links"]
    tokens = list(meta.get("prompt_tokens") or [])
    rows = [n["cd"] if isinstance(n.get("cd"), dict) else _our_row(n, tokens) for n in nodes]
    ours = {n["node_id"]: r["id"] for n, r in zip(nodes, rows)}
    edges = [{"source": ours[e["source"]], "target": ours[e["target"]], "weight": float(e["weight"])}
             for e in links if e["source"] in ours and e["target"] in ours]
    rest = meta.get("cd")
    if isinstance(rest, dict):
        graph = dict(rest, nodes=rows, edges=edges)
    else:
        graph = {"model": str(meta.get("scan", "")), "nodes": rows, "edges": edges, "attention": [], "qk": [],
                 "target": {"position": max((r["position"] for r in rows), default=0), "value": 0.0,
                            "token": "", "distractor": None},
                 "tokens": tokens, "completeness": 0.0, "replacement_score": 0.0,
                 "node_threshold": float(meta.get("node_threshold") or 0.8), "edge_threshold": 0.98,
                 "pruning": "circuit-tracer", "n_active_latents": 0,
                 "n_latents_kept": sum(1 for r in rows if r["kind"] == "transcoder"), "elapsed_ms": 0.0,
                 "imported": True}
    supernodes = [{"label": str(s[0]), "ids": [ours[i] for i in s[1:] if i in ours]}
                  for s in q.get("supernodes", []) if isinstance(s, list) and s]
    notes = {ours[k]: v for k, v in (q.get("cd_notes") or {}).items() if k in ours}
    return {"graph": graph, "pins": [ours[p] for p in q.get("pinnedIds", []) if p in ours],
            "supernodes": supernodes, "notes": notes}
