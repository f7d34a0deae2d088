"""Every API route of an app, including those inside included routers.

FastAPI >= 0.16x keeps an included router as one lazy entry (holding `original_router` and its
`include_context.prefix`) instead of copying its routes into `app.routes`, so code that walks
`app.routes` for `APIRoute`s (the MCP tool table, the UI catch-all's 405 answer) walks it here.
"""

from __future__ import annotations

from typing import Iterator

from fastapi.routing import APIRoute
from starlette.routing import compile_path


def api_routes(routes, prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) for every APIRoute in `routes`, recursing into included routers."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix + r.path, r
        elif hasattr(r, "original_router"):
            ctx = getattr(r, "include_context", None)
            yield from api_routes(r.original_router.routes, prefix + (getattr(ctx, "prefix", "") or ""))


def methods_at(routes, path: str, skip=None) -> set[str]:
    """The HTTP methods the API routes matching `path` accept (`skip`: an endpoint to leave out)."""
    found: set[str] = set()
    for full, r in api_routes(routes):
        if r.endpoint is skip:
            continue
        regex = r.path_regex if full == r.path else compile_path(full)[0]
        if regex.match(path):
            found |= r.methods
    return found
