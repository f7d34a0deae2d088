"""The API contract for jobs: long work (dataset attribution, ablation over a set, circuit
evaluation) submitted with the same bodies as the immediate routes, then polled; explanation
mining and autoencoder training, which write a server-owned folder."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field


class JobResponse(BaseModel):
    id: str = Field(description="unguessable; the job's page and its stored result are shareable by it")
    kind: Literal["dataset_attribute", "dataset_ablate", "circuit_evaluate", "mine_explanations",
                  "train_autoencoders"]
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


class MineRequest(BaseModel):
    """Explanation mining (build.py's) as a job. The output folder is the server's: the same
    request lands in the same folder, so submitting it again resumes where it stopped."""

    model_config = {"extra": "forbid"}
    model: str = "default"
    corpus: Optional[str] = Field(None, max_length=200, description="a file name in the server's corpora folder "
                                  "(text/JSONL/Parquet/CSV); omitted: the model's built-in corpus (default model only)")
    column: str = Field("text", max_length=100, description="the text field of a JSONL/Parquet/CSV corpus")
    ctx: int = Field(64, ge=2, le=4096, strict=True, description="window length in tokens")
    tokens: int = Field(60_000, ge=1, le=100_000_000, strict=True, description="token budget")
    seed: int = Field(777, ge=0, le=2**31 - 1, strict=True)


class TrainRequest(BaseModel):
    """ReLU+L1 autoencoder training (autoencoders/train.py's trainer) as a job, one dictionary
    per layer: transcoders of the MLPs or SAEs on the attention outputs. The output folder is
    the server's: the same request lands in the same folder, so submitting it again resumes and
    ends with the same weights as one uninterrupted run."""

    model_config = {"extra": "forbid"}
    model: str = "default"
    kind: Literal["transcoder", "sae"] = Field("transcoder", description="transcoder: reads the MLP input "
                                               "(ln2.hook_normalized), writes hook_mlp_out; sae: hook_attn_out")
    layers: Optional[list[int]] = Field(None, max_length=256, description="layers to train (omitted: all)")
    latents: int = Field(1024, ge=1, le=65_536, strict=True)
    l1: float = Field(1e-3, gt=0, le=100)
    steps: int = Field(2000, ge=1, le=1_000_000, strict=True, description="Adam steps per layer")
    batch: int = Field(16, ge=1, le=1024, strict=True, description="corpus rows per step")
    seed: int = Field(0, ge=0, le=2**31 - 1, strict=True)
    corpus: Optional[str] = Field(None, max_length=200, description="a file name in the server's corpora folder "
                                  "(text/JSONL/Parquet/CSV); omitted: the model's built-in corpus (default model only)")
    column: str = Field("text", max_length=100, description="the text field of a JSONL/Parquet/CSV corpus")
    ctx: int = Field(64, ge=2, le=4096, strict=True, description="window length in tokens")
    tokens: int = Field(200_000, ge=1, le=10_000_000, strict=True, description="training corpus size in tokens")
    eval_tokens: int = Field(20_000, ge=1, le=1_000_000, strict=True,
                             description="held-out tokens for the metrics (CE loss recovered, variance explained, L0)")
