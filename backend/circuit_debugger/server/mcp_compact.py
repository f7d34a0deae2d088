"""Compact views of HTTP API results for agents: the top `rows` rows, numbers rounded to
`DIGITS` decimals, and a `more` line saying what was left out and how to get it. The full,
unrounded response is always one argument away (`full: true`), the same JSON the HTTP route
returns."""

from __future__ import annotations

from typing import Any, Callable

DIGITS = 3


def r(x: Any, digits: int = DIGITS) -> Any:
    """Round floats (recursively in lists and dicts); everything else as is."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, list):
        return [r(v, digits) for v in x]
    if isinstance(x, dict):
        return {k: r(v, digits) for k, v in x.items()}
    return x


def _more(shown: int, total: int, what: str, extra: str = "") -> str | None:
    if shown >= total and not extra:
        return None
    parts = [f"showing {shown} of {total} {what}; pass rows=N for more"] if shown < total else []
    parts.append("full=true for the whole unrounded response (the HTTP API's JSON)")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


def _preds(preds: list[dict] | None, n: int = 5) -> list | None:
    if preds is None:
        return None
    return [{"token": p["token"], "logit": r(p["logit"]), "prob": r(p["prob"])} for p in preds[:n]]


NODE_FIELDS = ("id", "kind", "position", "activation", "direct_effect", "total_effect", "exact_effect",
               "baseline_total_effect", "baseline_direct_effect", "label")


def attribute(res: dict, req, rows: int) -> dict:
    nodes = sorted(res["nodes"], key=lambda n: -abs(n.get("total_effect") or 0.0))
    shown = [{k: r(n[k]) for k in NODE_FIELDS if n.get(k) is not None} for n in nodes[:rows]]
    out = {"model": res["model"], "tokens": res["tokens"], "position": res["position"], "target": res["target"],
           "logit_diff": r(res["logit_diff"]), "baseline_logit_diff": r(res.get("baseline_logit_diff")),
           "top_predictions": _preds(res["top_predictions"]),
           "baseline_top_predictions": _preds(res.get("baseline_top_predictions")),
           "interventions": res["interventions"], "sum_check_residual": r(res["sum_check"]["residual"], 8),
           "nodes_by_abs_total_effect": shown,
           "more": _more(len(shown), len(res["nodes"]), f"rows returned (of {res['n_nodes_total']} nodes in the model; "
                         "top_k sets how many the engine returns)")}
    return {k: v for k, v in out.items() if v is not None}


def intervene(res: dict, req, rows: int) -> dict:
    out = {"model": res["model"], "position": res["position"], "interventions": res["interventions"],
           "logit_diff": r(res.get("logit_diff")), "baseline_logit_diff": r(res.get("baseline_logit_diff")),
           "change": r(res.get("change")), "top_predictions": _preds(res["top_predictions"], rows),
           "baseline_top_predictions": _preds(res["baseline_top_predictions"], rows)}
    return {k: v for k, v in out.items() if v is not None}


def models(res: dict, req, rows: int) -> dict:
    keep = ("name", "source", "n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx", "max_tokens",
            "normalization", "architecture", "transcoders", "saes", "has_reference_corpus", "device")
    return {"models": [{k: m.get(k) for k in keep} for m in res["models"]], "failed": res.get("failed", {}),
            "cards": "read the resource circuit-debugger://models/{name}/card for a model's card"}


def tokenize(res: dict, req, rows: int) -> dict:
    return {"model": res["model"], "tokens": res["tokens"], "token_ids": res["token_ids"], "n_tokens": len(res["tokens"])}


def attention(res: dict, req, rows: int) -> dict:
    tokens = res["tokens"]
    heads = {}
    for node, pattern in res["heads"].items():
        row = pattern[-1]
        top = sorted(range(len(row)), key=lambda k: -row[k])[:rows]
        heads[node] = [{"key": k, "token": tokens[k], "weight": r(row[k])} for k in top]
    return {"model": res["model"], "layer": res["layer"], "tokens": tokens,
            "query": len(tokens) - 1, "from_last_token_top_keys": heads,
            "more": _more(min(rows, len(tokens)), len(tokens), "keys per head (from the last query token)",
                          "full=true also gives every query row")}


def logit_lens(res: dict, req, rows: int) -> dict:
    def toks(xs):
        return [{"token": t["token"], "value": r(t["value"])} for t in xs[:rows]]
    return {"model": res["model"], "node": res["node"], "source": res["source"], "promoted": toks(res["promoted"]),
            "suppressed": toks(res["suppressed"]),
            "more": _more(min(rows, len(res["promoted"])), len(res["promoted"]), "tokens each way", "k sets how many")}


def activations(res: dict, req, rows: int) -> dict:
    vals = res["values"]
    top = sorted(range(len(vals)), key=lambda i: -abs(vals[i]))[:rows]
    # the top positions name their tokens; the whole token list is left to full=true (on a long
    # prompt it was larger than everything else in the answer)
    return {"model": res["model"], "node": res["node"], "n_positions": len(vals),
            "top_positions": [{"position": i, "token": res["tokens"][i], "value": r(vals[i])} for i in top],
            "more": _more(len(top), len(vals), "positions")}


def node_explanation(res: dict, req, rows: int) -> dict:
    def example(e):
        toks = [t if t is not None else "" for t in e["tokens"]]
        c = e["center"]
        text = "".join(toks[:c]) + "[[" + toks[c] + "]]" + "".join(toks[c + 1:]) if 0 <= c < len(toks) else "".join(toks)
        return {"activation": r(e["activation"]), "text": text}
    top = res["examples"].get("top", {"items": [], "total": 0})
    out = {"model": res["model"], "id": res["id"], "kind": res["kind"], "density": r(res["density"], 5),
           "mean": r(res["mean"]), "max": r(res["max"]),
           "explanations": [{"explainer": e["explainer"], "text": e["text"], "score": r(e.get("score"))}
                            for e in res["explanations"]],
           "top_examples": [example(e) for e in top["items"][:rows]],
           "logit_lens": r(res.get("logit_lens") or [])[:rows],
           "more": _more(min(rows, len(top["items"])), top["total"], "top examples", "offset/limit page through them")}
    return out


def graph(res: dict, req, rows: int) -> dict:
    nodes = sorted(res["nodes"], key=lambda n: -abs(n["influence"]))
    edges = sorted(res["edges"], key=lambda e: -abs(e["weight"]))
    keep = ("id", "kind", "layer", "position", "token", "activation", "influence")
    return {"model": res["model"], "target": res["target"], "completeness": r(res["completeness"]),
            "replacement_score": r(res["replacement_score"]), "n_active_latents": res["n_active_latents"],
            "n_latents_kept": res["n_latents_kept"], "n_nodes": len(nodes), "n_edges": len(edges),
            "nodes_by_influence": [{k: r(n.get(k)) for k in keep if n.get(k) is not None} for n in nodes[:rows]],
            "edges_by_abs_weight": [{"source": e["source"], "target": e["target"], "weight": r(e["weight"])}
                                    for e in edges[:rows]],
            "more": _more(min(rows, len(nodes)), len(nodes), "nodes (and as many edges)",
                          "node_threshold / edge_threshold prune more or less")}


def dataset_attribute(res: dict, req, rows: int) -> dict:
    shown = [r({k: n[k] for k in ("id", "total_mean", "total_std", "direct_mean", "direct_std", "slots")})
             for n in res["nodes"][:rows]]
    return {"model": res["model"], "name": res["name"], "n_prompts": res["n_prompts"],
            "metric_mean": r(res["metric_mean"]), "metric_std": r(res["metric_std"]), "slots": res["slots"],
            "nodes_by_mean_total_effect": shown,
            "more": _more(len(shown), len(res["nodes"]), "nodes", "full=true also gives the per-prompt drill-down")}


def dataset_ablate(res: dict, req, rows: int) -> dict:
    keep = ("model", "name", "nodes", "ablation", "reference", "before_mean", "after_mean", "change_mean", "change_std")
    return {**r({k: res[k] for k in keep}), "n_prompts": len(res["before"]),
            "more": "full=true gives the metric per prompt, before and after"}


def circuit(res: dict, req, rows: int) -> dict:
    c = res["completeness"]
    return {"model": res["model"], "name": res["name"], "metric": res["metric"], "n_prompts": res["n_prompts"],
            "ablation": res["ablation"], "nodes": res["nodes"], "faithfulness": r(res["faithfulness"]),
            "completeness": r({"worst_incompleteness": c["worst_incompleteness"], "relative": c["relative"],
                               "worst_K": c["worst_K"], "n_subsets_tried": c["n_subsets_tried"]}),
            "minimality": r(res["minimality"][:rows]), "notes": res.get("notes", []),
            "cost": r(res["cost"], 1),
            "more": _more(min(rows, len(res["minimality"])), len(res["minimality"]), "minimality rows",
                          "full=true gives single-node and greedy completeness steps")}


def share(res: dict, req, rows: int) -> dict:
    return {"id": res["id"], "created": res["created"], "state": res.get("state")}


def effects(res: dict, req, rows: int) -> dict:
    ranked = sorted(res["rows"], key=lambda x: -abs(x["exact"]))
    keep = ("id", "exact", "estimate", "ig", "flag", "ig_flag")
    return {"model": res["model"], "ablation": res["ablation"], "value": r(res["value"]),
            "nodes_by_abs_exact_effect": [{k: r(x[k]) for k in keep if x.get(k) is not None} for x in ranked[:rows]],
            "spearman_heads": r(res["spearman_heads"]), "sign_disagreements": res["sign_disagreements"],
            "more": _more(min(rows, len(ranked)), len(ranked), "nodes", "full=true adds the per-group sum checks")}


def generation(res: dict, req, rows: int) -> dict:
    def run(steps):
        if steps is None:
            return None
        return {"text": "".join(x["token"] for x in steps),
                "steps": [{"token": x["token"], "prob": r(x["prob"]),
                           "top": [f"{t['token']!r} {t['prob']:.3f}" for t in x["top"][:3]]} for x in steps[:rows]]}
    out = {"model": res["model"], "interventions": res["interventions"], "baseline": run(res["baseline"]),
           "intervened": run(res.get("intervened")), "stopped_at_context": res["stopped_at_context"],
           "more": _more(min(rows, len(res["baseline"])), len(res["baseline"]), "steps (the text is whole)")}
    return {k: v for k, v in out.items() if v is not None}


def promptset(res: dict, req, rows: int) -> dict:
    return {"id": res["id"], "name": res["name"], "slots": res["slots"], "n_rows": len(res["rows"]),
            "rows": res["rows"][:rows], "more": _more(min(rows, len(res["rows"])), len(res["rows"]), "rows")}


def explained(res: dict, req, rows: int) -> dict:
    return r(res)


def job(res: dict, req, rows: int) -> dict:
    """A job without its request; a mining or training result in full (it is small), another
    job's result (an immediate route's body) only with full=true."""
    out = {k: res[k] for k in ("id", "kind", "model", "status", "done", "total", "error")}
    result = res.get("result")
    if result is not None and res["kind"] in ("mine_explanations", "train_autoencoders"):
        out["result"] = r(result)
    elif result is not None:
        out["more"] = "full=true gives the result (the immediate route's response body)"
    return out


COMPACT: dict[str, Callable[[dict, Any, int], dict]] = {
    "list_models": models, "tokenize": tokenize, "attribute": attribute, "trace": attribute, "intervene": intervene,
    "attention": attention, "logit_lens": logit_lens, "activations": activations, "node_explanation": node_explanation,
    "attribution_graph": graph, "dataset_attribute": dataset_attribute, "dataset_ablate": dataset_ablate,
    "evaluate_circuit": circuit, "create_share": share, "get_share": share, "create_promptset": promptset,
    "explain_node": explained, "exact_effects": effects, "generate": generation, "get_job": job,
    "train_autoencoders": job, "mine_explanations": job, "cancel_job": job,
}
