"""UI links for MCP results: the same query string the front end writes (frontend/src/state/url.ts,
format v=1), so an agent's result opens as the same investigation in a browser.

`encode` mirrors url.ts's `encode` field by field (same short names, same order, defaults
omitted, lists as compact JSON) and percent-encodes like the browser's URLSearchParams
(application/x-www-form-urlencoded: space is '+', only `*-._` and alphanumerics stay bare).
"""

from __future__ import annotations

import json
from typing import Any, Optional
from urllib.parse import quote_plus

from .schemas import InvestigationState

# url.ts: TEXT and SHORT, in its order
TEXT = [("model", "model"), ("prompt", "p"), ("target", "a"), ("distractor", "b"), ("counterfactual_prompt", "cf"),
        ("compare_prompt", "cmp"), ("kind_filter", "kind"), ("search", "q")]


def _json(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


def _form(s: str) -> str:
    return quote_plus(s, safe="*").replace("~", "%7E")


def state_of(**fields) -> dict:
    """A full, validated investigation state (defaults filled in) as plain JSON."""
    return InvestigationState.model_validate(fields).model_dump(mode="json")


def encode(state: dict) -> str:
    """The UI's query string for `state` (url.ts `encode`)."""
    s = InvestigationState.model_validate(state)
    d = InvestigationState()
    q: list[tuple[str, str]] = [("v", "1")]
    for k, short in TEXT:
        if getattr(s, k) != getattr(d, k):
            q.append((short, getattr(s, k)))
    if s.interventions:
        q.append(("iv", _json([i.model_dump(mode="json", exclude_none=True) for i in s.interventions])))
    if s.traces:
        q.append(("tr", _json([t.model_dump(mode="json", exclude_none=True) for t in s.traces])))
    if s.node:
        q.append(("node", s.node))
    if s.view != d.view:
        q.append(("view", s.view))
    if s.mlp_basis != d.mlp_basis:
        q.append(("mlp", s.mlp_basis))
    if s.attn_basis != d.attn_basis:
        q.append(("attn", s.attn_basis))
    if s.granularity != d.granularity:
        q.append(("gran", s.granularity))
    if s.top_k != d.top_k:
        q.append(("k", str(s.top_k)))
    if s.dataset:
        q.append(("ds", _json(s.dataset.model_dump(mode="json"))))  # every field, as the UI writes its Ref
    if s.circuit:
        q.append(("circ", ",".join(s.circuit)))
    if s.graph:  # the graph view's state, as url.ts writes it (JSON.stringify, field order)
        q.append(("g", _json(s.graph.model_dump(mode="json"))))
    # the table's sort, the exact-effects column and a circuit evaluation (url.ts, same order)
    if s.sort:
        q.append(("sort", s.sort))
    if s.effects:
        q.append(("fx", s.effects))
    if s.effects_neurons:
        q.append(("fxn", "1"))
    if s.ig_steps != d.ig_steps:
        q.append(("ig", str(s.ig_steps)))
    if s.circuit_eval:
        q.append(("ce", s.circuit_eval))
    if s.resid_basis != d.resid_basis:
        q.append(("res", s.resid_basis))
    return "&".join(f"{k}={_form(v)}" for k, v in q)


def link(base: str, state: dict) -> str:
    return f"{base.rstrip('/')}/?{encode(state)}"


def share_link(base: str, share_id: str) -> str:
    return f"{base.rstrip('/')}/s/{share_id}"


# ---- the investigation each tool's result belongs to -------------------------------------

def _question(req) -> dict:
    target = getattr(req, "target", None)
    return {"model": req.model, "prompt": req.prompt, "target": target if isinstance(target, str) else "",
            "distractor": getattr(req, "distractor", None) or "",
            "interventions": [i.model_dump(mode="json") for i in getattr(req, "interventions", [])],
            "counterfactual_prompt": getattr(req, "counterfactual_prompt", None) or ""}


def _table(req) -> dict:
    top_k = req.top_k if req.top_k is not None else 0
    return {"granularity": req.granularity, "mlp_basis": req.mlp_basis, "attn_basis": req.attn_basis,
            "resid_basis": getattr(req, "resid_basis", "none"),
            "top_k": min(top_k, 100_000)}


def dataset_ref(spec) -> Optional[dict]:
    """A prompt set the UI can name: a ready-made one or a stored id (inline sets have no link)."""
    if spec.id is not None:
        return {"id": spec.id}
    if spec.builtin is not None:
        return {"builtin": spec.builtin, "n": spec.n, "seed": spec.seed}
    return None


def state_for(tool: str, req, result: dict) -> Optional[dict]:
    """The investigation state that shows this tool's result in the UI (None: no such view)."""
    if tool in ("attribute", "intervene"):
        return state_of(**_question(req), **(_table(req) if tool == "attribute" else {}))
    if tool == "trace":
        return state_of(**_question(req), **_table(req), traces=[req.target.model_dump(mode="json")])
    if tool == "exact_effects":
        traces = [req.trace.model_dump(mode="json")] if req.trace is not None else []
        return state_of(**_question(req), traces=traces, effects=req.ablation, effects_neurons=req.neurons,
                        ig_steps=req.ig_steps)
    if tool == "generate":
        return state_of(**_question(req))
    if tool == "attribution_graph":
        return state_of(model=req.model, prompt=req.prompt, target=req.target, distractor=req.distractor or "",
                        view="graph", mlp_basis="transcoders")
    if tool == "attention":
        node = f"L{req.layer}.H{req.head}" if req.head is not None else None
        return state_of(model=req.model, prompt=req.prompt, node=node)
    if tool in ("logit_lens", "activations"):
        return state_of(model=req.model, prompt=getattr(req, "prompt", None) or "", node=req.node.split("@")[0])
    if tool in ("node_explanation", "explain_node"):
        return state_of(model=req.model, node=req.node)
    if tool == "tokenize":
        return state_of(model=req.model, prompt=req.text)
    if tool in ("dataset_attribute", "dataset_ablate", "evaluate_circuit"):
        ref = dataset_ref(req.promptset)
        if ref is None:
            return None
        evaluated = {"circuit_eval": req.ablation} if tool == "evaluate_circuit" else {}  # the UI shows the evaluation
        return state_of(model=req.model, view="dataset", dataset=ref, circuit=list(getattr(req, "nodes", []) or []),
                        **evaluated)
    return None
