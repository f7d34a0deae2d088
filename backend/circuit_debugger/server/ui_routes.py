"""Routes for the UI-truth endpoints (kept out of app.py so it stays a list of thin routes)."""

from __future__ import annotations

from fastapi import APIRouter

from . import ui_schemas as U


def router(dbg, errors: dict) -> APIRouter:
    r = APIRouter()

    def ivs(req: U.Intervened) -> dict:
        return {"interventions": [i.model_dump(exclude={"enabled"}) for i in req.interventions if i.enabled],
                "counterfactual_prompt": req.counterfactual_prompt, "reference_prompts": req.reference_prompts}

    @r.post("/api/effects", response_model=U.EffectsResponse, responses=errors)
    def effects(req: U.EffectsRequest):
        """Exact zero/mean-ablation effect of every head (and neuron), beside the act×grad
        estimate and integrated gradients; rows flagged where estimate and exact disagree."""
        return dbg.effects(req.model, req.prompt, req.target, req.distractor, req.position,
                           req.trace.model_dump() if req.trace else None, ablation=req.ablation,
                           neurons=req.neurons, ig_steps=req.ig_steps, **ivs(req))

    @r.post("/api/attention/intervened", response_model=U.AttentionAfterResponse, responses=errors)
    def attention_intervened(req: U.AttentionAfterRequest):
        """A layer's attention pattern with the interventions applied."""
        return dbg.attention_after(req.model, req.prompt, req.layer, req.head, **ivs(req))

    @r.post("/api/generate", response_model=U.GenerateResponse, responses=errors)
    def generate(req: U.GenerateRequest):
        """A continuation with and without the interventions, token by token with probabilities."""
        return dbg.generate(req.model, req.prompt, max_new_tokens=req.max_new_tokens, temperature=req.temperature,
                            seed=req.seed, top=req.top, **ivs(req))

    @r.post("/api/node-values", response_model=U.NodeValuesResponse, responses=errors)
    def node_values(req: U.NodeValuesRequest):
        """One node's current and baseline numbers for a question, whether or not the table lists it."""
        return dbg.node_values(req.model, req.prompt, req.node, req.target, req.distractor,
                               req.trace.model_dump() if req.trace else None, mlp_basis=req.mlp_basis,
                               attn_basis=req.attn_basis, resid_basis=req.resid_basis, **ivs(req))

    @r.post("/api/tokens/display", response_model=U.TokenDisplayResponse, responses=errors)
    def token_display(req: U.TokenDisplayRequest):
        """Token ids shown readably (byte-level pieces of a character as their bytes)."""
        return dbg.token_display(req.model, req.ids)

    return r
