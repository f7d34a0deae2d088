"""The debugger as an MCP server (official `mcp` SDK, low-level `Server`), in two transports:

- streamable HTTP at `/mcp` on the running server (`mount_mcp`, called by `create_app`):
  stateless JSON responses, so any replica can answer any call; each POST goes through the same
  admission control (`Capacity`) as the API, and Host/Origin are checked (DNS rebinding);
- stdio (`circuit-debugger mcp --model ...`, `run_stdio`), for a desktop agent that starts it.

Tools are `McpTools` (the HTTP routes themselves, see mcp_tools); resources are each model's
card (`circuit-debugger://models/{name}/card`) and a share by id (`circuit-debugger://shares/{id}`).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote

import mcp_types as types
from fastapi import FastAPI
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from ..errors import UserError
from .mcp_links import share_link
from .mcp_tools import INSTRUCTIONS, McpTools

log = logging.getLogger("circuit_debugger.mcp")

SCHEME = "circuit-debugger://"
CARD = SCHEME + "models/{name}/card"
SHARE = SCHEME + "shares/{id}"
LOOPBACK = ["127.0.0.1", "localhost", "[::1]"]


def _base_url(ctx) -> Optional[str]:
    request = getattr(ctx, "request", None)
    base = getattr(request, "base_url", None)
    return str(base).rstrip("/") if base is not None else None


def model_card(app: FastAPI, name: str) -> str:
    """A model's card: what the server knows (architecture, dictionaries), then its README.md."""
    dbg = app.state.debugger
    if name not in dbg.models:
        raise UserError(f"unknown model {name!r}; loaded: {', '.join(sorted(dbg.models))}", 404)
    m = dbg.models[name]
    d = m.describe()
    lines = [f"# {name}", "", f"Source: `{d['source']}`", "",
             "| | |", "|---|---|"]
    for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx", "max_tokens", "normalization"):
        lines.append(f"| {k} | {d.get(k)} |")
    arch = d.get("architecture") or {}
    if arch:
        lines.append("| architecture | " + ", ".join(f"{k}: {v}" for k, v in arch.items() if v is not None and v != "")
                     + " |")
    for kind in ("transcoders", "saes"):
        if d.get(kind):
            lines.append(f"| {kind} (layer: latents) | {', '.join(f'{l}: {n}' for l, n in d[kind].items())} |")
    lines.append("")
    readme = _readme(m.source)  # the real path (describe() shows shipped files relative to the project)
    lines.append(readme if readme else "(no README.md / model card beside the weights)")
    return "\n".join(lines)


def _readme(source: str) -> Optional[str]:
    if source.startswith("hub:"):
        try:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(source[4:], "README.md")
        except Exception:  # no cache, bad name: the card has the server's part only
            return None
        return Path(path).read_text(encoding="utf-8", errors="replace") if isinstance(path, str) else None
    path = Path(source) / "README.md"
    return path.read_text(encoding="utf-8", errors="replace") if source and path.is_file() else None


def build_server(app: FastAPI, public_url: Optional[str] = None, writes: bool = False) -> Server:
    tools = McpTools(app, public_url, writes)

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools.listing)

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await tools.call(params.name, params.arguments, _base_url(ctx))

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        names = sorted(app.state.debugger.models)
        return types.ListResourcesResult(resources=[
            types.Resource(uri=CARD.format(name=quote(n, safe="")), name=f"{n} model card", mime_type="text/markdown",
                           description=f"The {n} model: architecture, dictionaries and its README") for n in names])

    async def list_templates(ctx, params) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[
            types.ResourceTemplate(uri_template=CARD, name="model card", mime_type="text/markdown",
                                   description="A loaded model's card (URL-encode the name)"),
            types.ResourceTemplate(uri_template=SHARE, name="shared investigation", mime_type="application/json",
                                   description="A stored investigation by id, with its link")])

    async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            text, mime = _read(uri, _base_url(ctx))
        except UserError as e:
            raise MCPError(code=types.INVALID_PARAMS, message=e.message, data={"uri": uri}) from None
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text=text, mime_type=mime)])

    def _read(uri: str, base: Optional[str]) -> tuple[str, str]:
        rest = uri[len(SCHEME):] if uri.startswith(SCHEME) else None
        parts = rest.split("/") if rest else []
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "card":
            return model_card(app, unquote(parts[1])), "text/markdown"
        if len(parts) == 2 and parts[0] == "shares":
            share = tools.entries["get_share"].route.endpoint(share_id=parts[1])
            share = json.loads(json.dumps(share, default=str))
            share["link"] = share_link(tools.public_url or base or "http://127.0.0.1:8000", share["id"])
            return json.dumps(share, ensure_ascii=False), "application/json"
        raise UserError(f"no resource {uri!r}: the resources are {CARD} and {SHARE}", 404)

    return Server("circuit-debugger", version="0.1.0", title="Circuit Debugger", instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_list_resource_templates=list_templates, on_read_resource=read_resource)


class _Endpoint:
    """ASGI app for the /mcp route: forwards to the session manager of the current lifespan
    (a fresh one each time the app starts, so an app can be started more than once)."""

    def __init__(self):
        self.manager: Optional[StreamableHTTPSessionManager] = None

    async def __call__(self, scope, receive, send):
        if self.manager is None:
            body = b'{"detail":"the MCP endpoint runs only while the server is started (ASGI lifespan)"}'
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.manager.handle_request(scope, receive, send)


def transport_security(hosts: list[str]) -> TransportSecuritySettings:
    """Loopback always; `hosts` adds Host names ('name' or 'name:port'); '*' turns the check off."""
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = LOOPBACK + list(hosts)
    allowed_hosts = [h for n in names for h in ((n, f"{n}:*") if ":" not in n.strip("[]") else (n,))]
    origins = [f"{scheme}://{h}" for scheme in ("http", "https") for h in allowed_hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=allowed_hosts,
                                     allowed_origins=origins)


def mount_mcp(app: FastAPI, public_url: Optional[str] = None, hosts: Optional[list[str]] = None,
              writes: bool = False) -> None:
    """Serve MCP (streamable HTTP) at /mcp, with its session manager run by the app's lifespan."""
    server = build_server(app, public_url, writes)
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)  # not a line per stateless call
    endpoint = _Endpoint()
    security = transport_security(hosts or [])
    for path in ("/mcp", "/mcp/"):  # both spellings (the UI's catch-all route would answer the second 405)
        app.add_route(path, endpoint, include_in_schema=False)
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any):
        manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True, security_settings=security)
        async with manager.run():
            endpoint.manager = manager
            try:
                async with previous(a) as state:
                    yield state
            finally:
                endpoint.manager = None

    app.router.lifespan_context = lifespan


def run_stdio(app: FastAPI, public_url: Optional[str] = None, writes: bool = False) -> None:
    """Serve MCP over this process's stdin / stdout until the client closes it."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(app, public_url, writes)

    async def main():
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
