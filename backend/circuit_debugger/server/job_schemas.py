"""The API contract for jobs: long work (dataset attribution, ablation over a set, circuit
evaluation) submitted with the same bodies as the immediate routes, then polled."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field


class JobResponse(BaseModel):
    id: str = Field(description="unguessable; the job's page and its stored result are shareable by it")
    kind: Literal["dataset_attribute", "dataset_ablate", "circuit_evaluate"]
    model: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    done: int = Field(description="units of work finished (pieces of the prompt set, or 1 for a whole evaluation)")
    total: int
    created: float
    updated: float
    deadline: float = Field(description="the server stops the job at this time (epoch seconds)")
    cancel: bool = Field(description="cancellation was asked")
    error: Optional[str] = None
    request: dict = Field(description="the submitted request body")
    result: Optional[dict] = Field(None, description="once done: the immediate route's response body")
