"""Schemas of the graph routes: options (granularity, pruning, QK), the pruned graph, and
export / import in circuit-tracer's / Neuronpedia's graph JSON."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, Field

from . import schemas as S
from .schema_base import Strict

AttnMode = Literal["ov", "heads", "sae"]
MlpMode = Literal["transcoder", "neurons"]


class GraphRequest(S.GraphRequest):
    pruning: Literal["circuit-tracer", "ours"] = Field(
        "circuit-tracer", description="node/edge pruning definition (README: 'Attribution graphs')")
    attn: Optional[Union[AttnMode, Annotated[list[AttnMode], Field(max_length=256)]]] = Field(
        None, description="attention sublayers as graph nodes: 'ov' (frozen OV pass-through), 'heads' (each head "
                          "per query position), 'sae' (attention-output SAE latents); one or one per layer")
    mlp: Optional[Union[MlpMode, Annotated[list[MlpMode], Field(max_length=256)]]] = Field(
        None, description="MLP sublayers: 'transcoder' latents or 'neurons'; default: transcoder where loaded")
    neurons_per_position: Annotated[int, Field(ge=1, le=4096)] = 8
    qk_per_head: Annotated[int, Field(ge=0, le=1000)] = 8
    interventions: list[S.InterventionIn] = Field(default_factory=list, max_length=64)
    max_nodes: Annotated[int, Field(ge=1, le=100_000)] = Field(
        1024, description="internal nodes given rows; beyond it the most influential are chosen (long prompts)")


class GraphNode(S.GraphNode):
    cumulative: Optional[float] = Field(None, description="cumulative influence share at this node's rank")
    label: Optional[str] = Field(None, description="the newest explanation of the node's unit")


class QKEdge(BaseModel):
    source: str
    side: Literal["query", "key"]
    weight: float


class QKAttribution(BaseModel):
    node: str
    layer: int
    head: int
    query: int
    key: int = Field(description="the key position the head attends to most (argmax of its pattern row)")
    score: float = Field(description="pre-softmax score s[query, key]")
    constant: float = Field(description="Q0·K0/scale: the score with every source at zero")
    pattern: float
    n_edges: int
    sum_edges: float = Field(description="sum of all query- and key-side edges (+ constant = score)")
    edges: list[QKEdge]


class GraphResponse(S.GraphResponse):
    nodes: list[GraphNode]
    qk: list[QKAttribution] = Field(default_factory=list)
    pruning: str = "circuit-tracer"
    granularity: Optional[dict] = None
    n_nodes_total: Optional[int] = None
    n_edges_total: Optional[int] = None
    n_internal_total: Optional[int] = None
    n_internal_with_rows: Optional[int] = None
    n_layers: Optional[int] = None
    token_ids: Optional[list[int]] = None
    interventions: list[str] = Field(default_factory=list)
    frozen: Optional[str] = None
    imported: bool = False


class Supernode(Strict):
    label: str = Field(max_length=200)
    ids: list[str] = Field(max_length=1000)


class GraphExportRequest(Strict):
    graph: GraphResponse
    pins: list[str] = Field(default_factory=list, max_length=5000)
    supernodes: list[Supernode] = Field(default_factory=list, max_length=500)
    notes: dict[str, str] = Field(default_factory=dict)
    slug: str = Field("circuit-debugger-graph", max_length=200)


class GraphImportResponse(BaseModel):
    graph: GraphResponse
    pins: list[str]
    supernodes: list[dict]
    notes: dict[str, str]


def validated_import(out: dict) -> GraphImportResponse:
    """An imported file's graph, checked against the response schema: a malformed file is a 422
    that says which field is wrong, never a 5xx."""
    from pydantic import ValidationError

    from ..errors import UserError

    try:
        return GraphImportResponse.model_validate(out)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise UserError(f"not a usable graph file: {where}: {first['msg']}") from None
