"""Wire the guards (hosts, CORS, errors, access, bodies, admission) onto the app, and make the
OpenAPI schema tell the truth about them: every status a request can get, and the configured
caps (`--max-top-k`, `--max-reference-prompts`, `--max-graph-latents`) in place of fixed ones,
so the flags, the engine's `Limits` and the schema are one source."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ..engine import Limits
from .access import Access, is_open, read_token_file
from .capacity import Capacity
from .guard import Bodies, Errors, Hosts
from .response_cache import ResponseCache

# statuses any operation may answer besides its own (the body is always ErrorBody)
COMMON_STATUSES = {
    "400": "the body is not parseable JSON, or the Host header names another server",
    "401": "an access token (or the trusted proxy's identity header) is required and was missing or wrong",
    "408": "the request body did not arrive within the server's deadline",
    "413": "the request body is over the server's size limit, or the prompt over the token limit",
    "422": "the request is well-formed but wrong (the detail says what)",
    "429": "this client sent more requests a minute than the server allows",
    "500": "internal error: the body carries only a request id, the server's log has the rest",
    "503": "server busy (requests in flight) or out of memory for this request; see Retry-After",
}


def install_guards(app: FastAPI, settings) -> None:
    """Outermost first: Host check, CORS, error bodies, access, whole-body read, admission, and
    the cache of whole answers (inside admission and access: a cached answer passes both)."""
    hashes = read_token_file(settings.auth_token_file) if settings.auth_token_file else None
    if settings.response_cache_mb > 0:
        app.add_middleware(ResponseCache, max_bytes=int(settings.response_cache_mb * 1024 * 1024))
    app.add_middleware(Capacity, max_pending=settings.max_pending, per_client=settings.max_pending_per_client,
                       rate_per_minute=settings.rate_limit)
    app.add_middleware(Bodies, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout)
    app.add_middleware(Access, token_hashes=hashes, identity_header=settings.identity_header)
    app.add_middleware(Errors)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                       allow_headers=["authorization", "content-type"], expose_headers=["retry-after", "x-request-id"])
    app.add_middleware(Hosts, allowed=settings.allowed_hosts)
    app.state.access_enabled = bool(hashes or settings.identity_header)


def _cap(prop: dict, key: str, value: int) -> None:
    """Set `key` on the property's schema (or on its non-null branch when it is Optional)."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") in ("integer", "array"):
            branch[key] = value


def document_statuses(app: FastAPI, limits: Limits) -> None:
    base = app.openapi
    caps = {"reference_prompts": ("maxItems", limits.max_reference_prompts), "top_k": ("maximum", limits.max_top_k),
            "max_latents": ("maximum", limits.max_graph_latents)}

    def openapi() -> dict:
        if getattr(app.state, "openapi_documented", False):
            return app.openapi_schema
        schema = base()
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                for code, why in COMMON_STATUSES.items():
                    responses.setdefault(code, {"description": why, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
        if getattr(app.state, "access_enabled", False):  # /docs gets an "Authorize" button; clients see what needs it
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an access token (--auth-token-file)"}}
            for path, ops in schema.get("paths", {}).items():
                for method, op in ops.items():
                    if not is_open(method.upper(), path):
                        op["security"] = [{"bearer": []}]
        for name, model in schema.get("components", {}).get("schemas", {}).items():
            if not name.endswith("Request"):  # requests only (a share's state keeps its own top_k: 0 = all)
                continue
            for field, (key, value) in caps.items():
                if field in model.get("properties", {}):
                    _cap(model["properties"][field], key, value)
        app.state.openapi_documented = True
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
