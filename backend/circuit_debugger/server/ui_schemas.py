"""API contract of the UI-truth endpoints: model capabilities, exact effects + integrated
gradients, attention under interventions, generation under interventions."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from .schema_base import Finite, Position, Strict, Text
from .schemas import InterventionIn, NodeRow, TraceTarget


class Example(BaseModel):
    prompt: str
    target: str
    distractor: str = ""
    label: str = ""


class Capabilities(BaseModel):
    """What the UI may offer for a model (it offers nothing else)."""
    examples: list[Example] = Field(default_factory=list, description="example questions in this model's own tokens")
    prompt_sets: list[str] = Field(default_factory=list, description="ready-made prompt sets that apply to this model")
    transcoders: bool = False
    saes: bool = False
    graph: bool = False
    mean_ablation: bool = False
    generation: bool = False
    numerical_output: bool = False


class Intervened(Strict):
    model: str = "default"
    prompt: Text
    interventions: list[InterventionIn] = Field(default_factory=list, max_length=64)
    counterfactual_prompt: Optional[Text] = None
    reference_prompts: Optional[list[Text]] = Field(None, max_length=256)


class EffectsRequest(Intervened):
    target: Optional[str] = Field(None, min_length=1, max_length=200, description="the question's token A (or give trace)")
    distractor: Optional[str] = Field(None, max_length=200)
    position: Optional[Position] = None
    trace: Optional[TraceTarget] = Field(None, description="an upstream target instead of a question")
    ablation: Literal["zero", "mean"] = "zero"
    neurons: bool = Field(False, description="also every MLP neuron (one batch copy each)")
    ig_steps: int = Field(16, ge=0, le=64, description="integrated-gradients steps (midpoint rule); 0: none")


class EffectRow(BaseModel):
    id: str
    kind: str
    layer: int
    index: int
    estimate: float = Field(description="Σ_pos (a − a')·∂value/∂a (act×grad for zero-ablation)")
    exact: float = Field(description="value − value with this unit ablated")
    ig: Optional[float] = Field(None, description="integrated gradients along the layer's path a' → a")
    flag: Optional[Literal["sign", "magnitude"]] = Field(None, description="estimate vs exact disagree")
    ig_flag: Optional[Literal["sign", "magnitude"]] = None


class GroupCheck(BaseModel):
    group: str
    sum_ig: Optional[float] = None
    sum_estimate: float
    exact_all_ablated: float = Field(description="value − value with every unit of the group ablated together")


class EffectsResponse(BaseModel):
    model: str
    ablation: str
    ig_steps: int
    value: float
    rows: list[EffectRow]
    groups: list[GroupCheck]
    flag_floor: float = Field(description="differences below this are never flagged (2% of the largest effect)")
    spearman_heads: dict[str, Optional[float]]
    sign_disagreements: dict[str, int]
    elapsed_ms: float


class AttentionAfterRequest(Intervened):
    layer: int = Field(ge=0, le=10_000)
    head: Optional[int] = Field(None, ge=0, le=10_000)


class AttentionAfterResponse(BaseModel):
    model: str
    tokens: list[str]
    layer: int
    interventions: list[str]
    heads: dict[str, list[list[float]]]


class GenerateRequest(Intervened):
    max_new_tokens: int = Field(16, ge=1, le=64)
    temperature: Finite = Field(0.0, ge=0, le=10, description="0: greedy")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    top: int = Field(5, ge=1, le=20, description="alternatives shown per step")


class TokenProb(BaseModel):
    token: str
    id: int
    prob: float


class GenStep(TokenProb):
    top: list[TokenProb]


class GenerateResponse(BaseModel):
    model: str
    prompt_tokens: list[str]
    interventions: list[str]
    temperature: float
    seed: int
    baseline: list[GenStep]
    intervened: Optional[list[GenStep]] = Field(None, description="absent when no intervention is active")
    stopped_at_context: bool


class NodeValuesRequest(Intervened):
    node: str = Field(max_length=100, examples=["L1.H3"])
    target: Optional[str] = Field(None, min_length=1, max_length=200)
    distractor: Optional[str] = Field(None, max_length=200)
    trace: Optional[TraceTarget] = None
    mlp_basis: Literal["neurons", "transcoders"] = "neurons"
    attn_basis: Literal["heads", "saes"] = "heads"
    resid_basis: Literal["none", "saes"] = Field("none", description="the table splices the residual-stream SAEs "
                                                                    "(a residual latent L{l}.R{i} / L{l}.RERR switches them in)")


class NodeValuesResponse(BaseModel):
    model: str
    node: str
    row: NodeRow
    position: int
    mlp_basis: str
    attn_basis: str
    resid_basis: str = "none"


class TokenDisplayRequest(Strict):
    model: str = "default"
    ids: list[int] = Field(max_length=256)


class TokenDisplayResponse(BaseModel):
    model: str
    ids: list[int]
    display: list[str] = Field(description="each token readable on its own ('⟨c3⟩': a byte of a split character)")
