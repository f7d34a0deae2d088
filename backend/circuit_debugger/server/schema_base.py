"""Field types and the strict base model shared by the API contract's modules."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
Position = Annotated[int, Field(ge=-100_000, le=100_000)]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]


class Strict(BaseModel):
    """Requests: unknown fields refused, and no coercion (`false` is not 0, `"100"` and `1000.0`
    are not the integer 100)."""
    model_config = ConfigDict(extra="forbid", strict=True)
