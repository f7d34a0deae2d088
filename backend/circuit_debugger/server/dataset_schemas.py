"""The API contract for prompt sets, dataset attribution, interventions over a set and circuit
evaluation (re-exported by `schemas`)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, Field

from .schema_base import Strict, Text

class TemplateSpec(Strict):
    templates: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        min_length=1, max_length=50, examples=[["When {IO} and {S} went to the {PLACE}, {S} gave a drink to"]])
    values: dict[str, list[Annotated[str, Field(max_length=200)]]] = Field(
        description="slot -> values; slots sharing a value list get distinct values in a row",
        examples=[{"IO": [" Mary", " Anna"], "S": [" John", " Tom"], "PLACE": ["store", "park"]}])
    target: Annotated[str, Field(max_length=200)] = Field(examples=[" {IO}"])
    distractor: Optional[Annotated[str, Field(max_length=200)]] = Field(None, examples=[" {S}"])
    counterfactual: Optional[list[Annotated[str, Field(max_length=2000)]]] = Field(
        None, description="one per template (may use more slots), for patching and the ablation reference")
    name: Optional[Annotated[str, Field(max_length=100)]] = None


class PromptRowIn(Strict):
    prompt: Text
    target: Annotated[str, Field(min_length=1, max_length=200)]
    distractor: Optional[Annotated[str, Field(max_length=200)]] = None
    counterfactual: Optional[Text] = None
    slots: dict[str, Annotated[int, Field(ge=0, le=100_000)]] = Field(default_factory=dict)


class PromptSetSpec(Strict):
    """Exactly one source: a ready-made set, a template, pasted JSONL/CSV text, rows, or a stored id."""
    builtin: Optional[Literal["ioi", "greater_than", "induction"]] = None
    template: Optional[TemplateSpec] = None
    text: Optional[Annotated[str, Field(max_length=2_000_000)]] = None
    format: Literal["jsonl", "csv"] = "jsonl"
    rows: Optional[list[PromptRowIn]] = Field(None, min_length=1, max_length=2000)
    id: Optional[Annotated[str, Field(max_length=64)]] = Field(None, description="a stored prompt set")
    n: Annotated[int, Field(ge=1, le=2000)] = Field(100, description="rows drawn (builtin, template)")
    seed: Annotated[int, Field(ge=0, le=2**31)] = 0


class PromptSetRequest(Strict):
    model: str = "default"
    spec: PromptSetSpec


class PromptRow(BaseModel):
    prompt: str
    target: str
    distractor: Optional[str] = None
    counterfactual: Optional[str] = None
    slots: dict[str, int]


class PromptSetResponse(BaseModel):
    id: Optional[str] = Field(None, description="stored sets: their id (immutable)")
    name: str
    description: str = ""
    slots: list[str]
    rows: list[PromptRow]


class DatasetAttributeRequest(Strict):
    model: str = "default"
    promptset: PromptSetSpec
    top_k: Annotated[int, Field(ge=1)] = Field(50, description="at most --max-top-k")
    drill: Annotated[int, Field(ge=0, le=50)] = Field(10, description="nodes shown per prompt in the drill-down")


class DatasetNode(BaseModel):
    id: str
    kind: str
    layer: int
    total_mean: float
    total_std: float
    direct_mean: float
    direct_std: float
    slots: dict[str, Optional[float]] = Field(description="mean act×grad total effect at each slot's position")


class DatasetPrompt(BaseModel):
    prompt: str
    target: str
    distractor: Optional[str]
    metric: float
    total: list[float] = Field(description="total effect of each drill node on this prompt")


class DatasetAttributeResponse(BaseModel):
    model: str
    name: str
    n_prompts: int
    metric_mean: float
    metric_std: float
    slots: list[str]
    nodes: list[DatasetNode]
    drill_nodes: list[str]
    prompts: list[DatasetPrompt]
    elapsed_ms: float


CircuitNode = Annotated[str, Field(max_length=100, examples=["L1.H3", "L1.H3@S2", "L0.N17"])]


class DatasetAblateRequest(Strict):
    model: str = "default"
    promptset: PromptSetSpec
    nodes: list[CircuitNode] = Field(min_length=1, max_length=64)
    ablation: Literal["mean", "resample", "zero", "patch"] = Field(
        "mean", description="'patch': from each row's counterfactual (activation patching over the set)")


class DatasetAblateResponse(BaseModel):
    model: str
    name: str
    nodes: list[str]
    ablation: str
    reference: str
    before_mean: float
    after_mean: float
    change_mean: float
    change_std: float
    before: list[float]
    after: list[float]


class CircuitRequest(Strict):
    model: str = "default"
    promptset: PromptSetSpec
    nodes: list[CircuitNode] = Field(min_length=1, max_length=64)
    ablation: Literal["mean", "resample"] = "mean"
    n_random: Annotated[int, Field(ge=0, le=100)] = 10
    greedy_steps: Annotated[int, Field(ge=0, le=10)] = 3
    seed: Annotated[int, Field(ge=0, le=2**31)] = 0


class Faithfulness(BaseModel):
    model: float = Field(description="F(M): the metric with nothing ablated")
    circuit: float = Field(description="F(C): only the circuit kept, the rest of the universe ablated")
    empty: float = Field(description="F(∅): the whole universe ablated")
    gap: float
    fraction: Optional[float]
    normalized: Optional[float] = Field(description="(F(C) − F(∅)) / (F(M) − F(∅))")


class GreedyStep(BaseModel):
    K: list[str]
    incompleteness: float


class Completeness(BaseModel):
    worst_incompleteness: float = Field(description="max over K tried of |F(C\\K) − F(M\\K)|")
    relative: float
    worst_K: list[str]
    single_nodes: dict[str, float]
    greedy: list[GreedyStep]
    n_subsets_tried: int


class MinimalityItem(BaseModel):
    node: str
    score: float = Field(description="max over K tried of |F(C\\(K∪{v})) − F(C\\K)|")
    relative: float = Field(description="score / |F(C)|")
    K: list[str]


class CircuitCost(BaseModel):
    forwards: int
    configs: int
    elapsed_ms: float


class CircuitResponse(BaseModel):
    model: str
    name: str
    metric: str
    n_prompts: int
    ablation: str
    reference: str
    universe: list[str]
    nodes: list[str]
    faithfulness: Faithfulness
    completeness: Completeness
    minimality: list[MinimalityItem]
    notes: list[str] = Field(default_factory=list, description="how the subsets were searched")
    cost: CircuitCost


class DatasetRef(Strict):
    """The prompt set of an investigation: a ready-made one or a stored one."""
    builtin: Optional[Literal["ioi", "greater_than", "induction"]] = None
    id: Optional[Annotated[str, Field(max_length=64)]] = None
    n: Annotated[int, Field(ge=1, le=2000)] = 100
    seed: Annotated[int, Field(ge=0, le=2**31)] = 0
