"""One wording for invalid arguments, shared by the HTTP API (its 422 `detail`) and the MCP
tools (their error text), so an agent and a browser read the same message."""

from __future__ import annotations

from typing import Iterable


def validation_detail(errors: Iterable[dict]) -> str:
    """`field.path: what is wrong; ...` from pydantic / FastAPI error dicts ('body' dropped)."""
    parts = []
    for err in errors:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"
