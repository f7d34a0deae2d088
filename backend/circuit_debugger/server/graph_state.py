"""The graph view's part of a shared investigation: thresholds, granularity, pins, supernodes
(labelled groups), notes and whether only the pinned subgraph is drawn."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(max_length=100)]


class GraphGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Annotated[str, Field(max_length=200)]
    ids: list[Id] = Field(max_length=500)


class GraphState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_threshold: float = Field(0.8, gt=0, le=1, allow_inf_nan=False)
    edge_threshold: float = Field(0.98, gt=0, le=1, allow_inf_nan=False)
    pruning: Literal["circuit-tracer", "ours"] = "circuit-tracer"
    attn: Literal["ov", "heads"] = "ov"
    pins: list[Id] = Field(default_factory=list, max_length=500)
    groups: list[GraphGroup] = Field(default_factory=list, max_length=100)
    notes: dict[Id, Annotated[str, Field(max_length=2000)]] = Field(default_factory=dict, max_length=500)
    subgraph: bool = Field(False, description="draw only the pinned nodes (groups as supernodes)")
