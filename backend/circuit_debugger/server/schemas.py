"""The HTTP API contract (pydantic v2). The front end's client is generated from these."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .schema_base import Finite, Position, Strict, Text  # noqa: F401
from .dataset_schemas import (  # noqa: F401  (re-exported: the routes use schemas.X)
    CircuitCost, CircuitNode, CircuitRequest, CircuitResponse, Completeness, DatasetAblateRequest,
    DatasetAblateResponse, DatasetAttributeRequest, DatasetAttributeResponse, DatasetNode, DatasetPrompt,
    DatasetRef, Faithfulness, GreedyStep, MinimalityItem, PromptRow, PromptRowIn, PromptSetRequest,
    PromptSetResponse, PromptSetSpec, TemplateSpec,
)


from .graph_state import GraphState  # noqa: E402  (the graph view's state, kept in its own file)

class InterventionIn(Strict):
    node: str = Field(description="node id, e.g. 'L1.H3', 'L0.N17@5', 'L2.MLP', 'L0.RESID'", examples=["L1.H3"])
    op: Literal["zero", "mean", "patch", "scale", "add"]
    positions: Optional[list[Annotated[int, Field(ge=0, le=100_000)]]] = Field(
        None, max_length=4096, description="token positions; omit for all")
    value: Optional[Finite] = Field(None, description="factor for 'scale'")
    vector: Optional[list[Finite]] = Field(None, max_length=65_536, description="what 'add' adds (one position's activation)")
    enabled: bool = Field(True, description="disabled interventions are kept in the list but not applied")


class Common(Strict):
    model: str = "default"
    prompt: Text
    interventions: list[InterventionIn] = Field(default_factory=list, max_length=64)
    counterfactual_prompt: Optional[Text] = Field(None, description="source prompt for 'patch' (same token length)")
    reference_prompts: Optional[list[Text]] = Field(None, description="for 'mean'; default: the model's reference corpus; "
                                                    "at most --max-reference-prompts")
    top_k: Optional[Annotated[int, Field(ge=1)]] = Field(100, description="rows: top_k by |total| ∪ top_k by |direct|; "
                                                         "null = all; at most --max-top-k")
    granularity: Literal["component", "position"] = "component"
    verify_top: Annotated[int, Field(ge=0, le=64)] = Field(0, description="check this many top nodes by exact zero ablation")
    mlp_basis: Literal["neurons", "transcoders"] = Field("neurons", description="show MLPs as neurons or transcoder latents")
    attn_basis: Literal["heads", "saes"] = Field("heads", description="show attention as heads or SAE latents")
    resid_basis: Literal["none", "saes"] = Field("none", description="splice the residual-stream SAEs (their latents replace everything upstream)")


class AttributeRequest(Common):
    target: str = Field(min_length=1, max_length=200, examples=[" Mary"])
    distractor: Optional[str] = Field(None, max_length=200, description="omit: compare with the mean logit")
    position: Optional[Position] = Field(None, description="default: last position; negative counts from the end")


class NeuronTarget(Strict):
    kind: Literal["neuron"]
    node: str = Field(examples=["L1.N5"])
    position: Optional[Position] = None
    input: Literal["gate", "up"] = Field("gate", description="gated MLPs: trace the gate pre-activation or the up value")


class AttentionTarget(Strict):
    kind: Literal["attention"]
    node: str = Field(examples=["L1.H3"])
    query: Optional[Position] = None
    key: Position
    through: Literal["query", "key"] = "query"


class HeadOutputTarget(Strict):
    kind: Literal["head_output"]
    node: str = Field(examples=["L0.H1"])
    position: Optional[Position] = None
    direction_node: Optional[str] = Field(None, description="a later neuron whose input direction to read along")
    direction_vector: Optional[list[Finite]] = Field(None, max_length=65_536)


class LatentTarget(Strict):
    kind: Literal["latent"]
    node: str = Field(examples=["L1.T300"], description="an SAE (L{l}.S{i}) or transcoder (L{l}.T{i}) latent")
    position: Optional[Position] = None


TraceTarget = Annotated[Union[NeuronTarget, AttentionTarget, HeadOutputTarget, LatentTarget],
                        Field(discriminator="kind")]


class TraceRequest(Common):
    target: TraceTarget


class NodeRow(BaseModel):
    id: str
    kind: str
    layer: Optional[int] = None
    index: Optional[int] = None
    position: Optional[int] = None
    activation: Optional[float] = None
    direct_effect: Optional[float] = None
    total_effect: Optional[float] = None
    exact_effect: Optional[float] = None
    direct_by_source: Optional[list[Optional[float]]] = Field(None, description="heads: direct effect per attended (key) position")
    label: Optional[str] = Field(None, description="testbeds: the RASP ops this node implements (ground truth)")
    baseline_activation: Optional[float] = None
    baseline_direct_effect: Optional[float] = None
    baseline_total_effect: Optional[float] = None


class Prediction(BaseModel):
    token: str
    id: int
    logit: float
    prob: float


class SumCheck(BaseModel):
    value: float
    sum_of_direct_effects: float
    residual: float


class AttributeResponse(BaseModel):
    model: str
    prompt: str
    tokens: list[str]
    token_ids: list[int]
    target: dict
    position: int
    logit_diff: float = Field(description="the target's value (for traces: the traced quantity)")
    value: float
    baseline_logit_diff: Optional[float] = None
    top_predictions: list[Prediction]
    baseline_top_predictions: Optional[list[Prediction]] = None
    sum_check: SumCheck
    bias_terms: dict[str, float]
    interventions: list[str]
    granularity: str
    nodes: list[NodeRow]
    n_nodes_total: int
    mlp_basis: str = "neurons"
    attn_basis: str = "heads"
    decomposed: Optional[str] = Field(None, description="set when the decomposed quantity is not the model's own "
                                      "output (soft-capped models: the pre-cap value)")
    elapsed_ms: float


class InterveneRequest(Strict):
    model: str = "default"
    prompt: Text
    interventions: list[InterventionIn] = Field(default_factory=list, max_length=64)
    counterfactual_prompt: Optional[Text] = None
    reference_prompts: Optional[list[Text]] = Field(None, description="at most --max-reference-prompts")
    target: Optional[str] = Field(None, max_length=200)
    distractor: Optional[str] = Field(None, max_length=200)
    position: Optional[Position] = None
    top: Annotated[int, Field(ge=1, le=100)] = 10


class InterveneResponse(BaseModel):
    model: str
    tokens: list[str]
    position: int
    interventions: list[str]
    top_predictions: list[Prediction]
    baseline_top_predictions: list[Prediction]
    logit_diff: Optional[float] = None
    baseline_logit_diff: Optional[float] = None
    change: Optional[float] = None


class TokenizeRequest(Strict):
    model: str = "default"
    text: Text
    kind: Literal["prompt", "output"] = Field("prompt", description="'output': check the text is one target token")


class TokenizeResponse(BaseModel):
    model: str
    token_ids: list[int]
    tokens: list[str]
    display: Optional[list[str]] = Field(None, description="tokens made readable where byte-level BPE split a character ('é[1/2]')")


class AttentionRequest(Strict):
    model: str = "default"
    prompt: Text
    layer: Annotated[int, Field(ge=0, le=10_000)]
    head: Optional[Annotated[int, Field(ge=0, le=10_000)]] = None


class AttentionResponse(BaseModel):
    model: str
    tokens: list[str]
    layer: int
    heads: dict[str, list[list[float]]] = Field(description="node id -> pattern[query][key]")


class LogitLensRequest(Strict):
    model: str = "default"
    node: str
    prompt: Optional[Text] = None
    position: Optional[Position] = None
    k: Annotated[int, Field(ge=1, le=200)] = 10


class LensToken(BaseModel):
    token: str
    id: int
    value: float


class LogitLensResponse(BaseModel):
    model: str
    node: str
    source: str
    promoted: list[LensToken]
    suppressed: list[LensToken]


class ModelInfo(BaseModel):
    name: str
    source: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    d_vocab_out: int
    n_ctx: int
    max_tokens: int
    normalization: Optional[str]
    architecture: dict = Field(default_factory=dict, description="how the model reads and writes its residual "
                               "stream (norms, positions, attention, MLP, block; see README)")
    has_reference_corpus: bool
    device: str
    transcoders: dict[str, int] = Field(default_factory=dict, description="layer -> number of transcoder latents")
    saes: dict[str, int] = Field(default_factory=dict, description="layer -> number of SAE latents")
    resid_saes: dict[str, int] = Field(default_factory=dict, description="layer -> number of residual-stream SAE latents (L{l}.R{i})")
    dictionaries: list[dict] = Field(default_factory=list, description="every loaded SAE/transcoder/CLT: name, site, hook, architecture, source")
    supports: Optional["Capabilities"] = Field(None, description="what the UI may offer for this model")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    failed: dict[str, str] = Field(default_factory=dict, description="models that could not be loaded, with why")
    immediate_rows: int = Field(description="prompt sets of at most this many rows are asked of the immediate dataset "
                                "routes by the UI (a second or so, no worker to start); larger ones run as jobs "
                                "(`serve --immediate-rows`)")


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]


class ErrorBody(BaseModel):
    detail: str
    request_id: Optional[str] = Field(None, description="5xx: the id the server's log files the error under")


class OutputsRequest(Strict):
    model: str = "default"
    prompt: Text


class PositionOutput(BaseModel):
    token: str
    value: float = Field(description="probability of the top token; numerical testbeds: the output value")


class OutputsResponse(BaseModel):
    model: str
    tokens: list[str]
    outputs: list[PositionOutput]
    numerical: bool


class GroundTruthResponse(BaseModel):
    program: str
    description: str
    residual_labels: list[str]
    output_node: str
    nodes: dict[str, dict]
    unused_heads: dict[str, list[int]]
    node_labels: dict[str, Optional[str]]


class GraphRequest(Strict):
    model: str = "default"
    prompt: Text
    target: str = Field(min_length=1, max_length=200)
    distractor: Optional[str] = Field(None, max_length=200)
    position: Optional[Position] = None
    node_threshold: float = Field(0.8, gt=0, le=1, allow_inf_nan=False)
    edge_threshold: float = Field(0.98, gt=0, le=1, allow_inf_nan=False)
    max_latents: Annotated[int, Field(ge=1)] = Field(500, description="at most --max-graph-latents")


class GraphNode(BaseModel):
    id: str
    kind: str
    layer: Optional[int] = None
    position: Optional[int] = None
    index: Optional[int] = None
    token: Optional[str] = None
    activation: float
    influence: float
    input: Optional[float] = Field(None, description="latents: pre-activation; target: its value")
    bias: Optional[float] = Field(None, description="the constant part of the input (biases)")


class GraphEdge(BaseModel):
    source: str
    target: str
    weight: float


class HeadContribution(BaseModel):
    target: str
    head: str
    position: int
    contribution: float


class GraphResponse(BaseModel):
    model: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    attention: list[HeadContribution]
    target: dict
    tokens: list[str]
    completeness: float
    replacement_score: float
    node_threshold: float
    edge_threshold: float
    n_active_latents: int
    n_latents_kept: int
    elapsed_ms: float


class LatentInputsRequest(Strict):
    model: str = "default"
    prompt: Text
    node: str = Field(examples=["L1.T5@7"])
    k: Annotated[int, Field(ge=1, le=1000)] = 20


class LatentWeightsRequest(Strict):
    model: str = "default"
    node: str = Field(examples=["L1.T5"])
    k: Annotated[int, Field(ge=1, le=200)] = 10


class ExplainRequest(Strict):
    model: str = "default"
    node: str = Field(examples=["L1.N5"])
    explainer: Literal["offline", "llm"] = "offline"


class ExampleItem(BaseModel):
    rank: int
    activation: float
    center: int = Field(description="index of the token the example is centred on")
    tokens: list[Optional[str]] = Field(description="null = padding before the start of the text")
    acts: list[Optional[float]]


class ExamplePage(BaseModel):
    total: int
    offset: int
    items: list[ExampleItem]


class HeadPair(BaseModel):
    criterion: str
    rank: int
    query: Optional[str]
    key: Optional[str]
    value: float


class ExplanationItem(BaseModel):
    explainer: str
    text: str
    score: Optional[float] = None
    score_kind: Optional[str] = None
    details: Optional[dict] = None
    created: Optional[float] = None


class StoredLensToken(BaseModel):
    token: Optional[str]
    value: float


class NodeExplanationResponse(BaseModel):
    model: str
    id: str
    kind: str
    layer: int
    index: int
    n_tokens: int
    density: float
    mean: float
    max: float
    histogram: dict
    logit_lens: Optional[list[StoredLensToken]] = None
    de_embedding: Optional[list[StoredLensToken]] = None
    examples: dict[str, ExamplePage] = Field(description="'top', 'quantile' and 'random' samples")
    head_pairs: list[HeadPair]
    explanations: list[ExplanationItem]


class ActivationsRequest(Strict):
    model: str = "default"
    prompt: Text
    node: str = Field(description="a head, neuron or latent without position", examples=["L0.N5"])


class ActivationsResponse(BaseModel):
    model: str
    node: str
    tokens: list[str]
    values: list[float] = Field(description="per token: neurons post-activation, latents their activation, "
                                            "heads the norm of their write")


class InvestigationState(BaseModel):
    """Everything a view shows, so a link reproduces it. `v` is the format version: a newer
    front end still reads every older version (it migrates them)."""
    model_config = ConfigDict(extra="forbid", strict=True)
    v: Literal[1] = 1
    model: Annotated[str, Field(max_length=500)] = "default"
    prompt: Annotated[str, Field(max_length=20_000)] = ""
    target: Annotated[str, Field(max_length=200)] = ""
    distractor: Annotated[str, Field(max_length=200)] = ""
    interventions: list[InterventionIn] = Field(default_factory=list, max_length=64)
    counterfactual_prompt: Annotated[str, Field(max_length=20_000)] = ""
    compare_prompt: Annotated[str, Field(max_length=20_000)] = Field("", description="the second prompt of the compare view")
    node: Optional[Annotated[str, Field(max_length=100)]] = Field(None, description="the selected node")
    view: Literal["table", "graph", "compare", "dataset"] = "table"
    traces: list[TraceTarget] = Field(default_factory=list, max_length=16, description="trace breadcrumb, outermost first")
    mlp_basis: Literal["neurons", "transcoders"] = "neurons"
    attn_basis: Literal["heads", "saes"] = "heads"
    granularity: Literal["component", "position"] = "component"
    top_k: Annotated[int, Field(ge=0, le=100_000)] = Field(100, description="table rows per metric; 0 = every node")
    kind_filter: Annotated[str, Field(max_length=40)] = ""
    search: Annotated[str, Field(max_length=200)] = ""
    dataset: Optional[DatasetRef] = Field(None, description="the prompt set of the dataset view")
    circuit: list[CircuitNode] = Field(default_factory=list, max_length=64, description="nodes selected as a circuit")
    graph: Optional[GraphState] = Field(None, description="the graph view: thresholds, pins, supernodes, notes")
    sort: Annotated[str, Field(max_length=60, pattern=r"^([a-z_]+:(asc|desc))?$")] = Field(
        "", description="node table sort, 'column:desc'; empty: by |total effect|")
    effects: Literal["", "zero", "mean"] = Field("", description="the exact-effects column: off, zero or mean ablation")
    effects_neurons: bool = Field(False, description="exact effects for every neuron too")
    ig_steps: Annotated[int, Field(ge=0, le=64)] = Field(16, description="integrated-gradients steps of the effects column")
    circuit_eval: Literal["", "mean", "resample"] = Field("", description="the circuit was evaluated (with this ablation)")
    resid_basis: Literal["none", "saes"] = Field("none", description="the table splices the residual-stream SAEs")


class ShareCreate(Strict):
    state: InvestigationState


class ShareResponse(BaseModel):
    id: str = Field(description="unguessable; the short link is /s/{id}")
    created: float
    state: Optional[InvestigationState] = None


from .ui_schemas import Capabilities  # noqa: E402  (ModelInfo.supports)

ModelInfo.model_rebuild()
