"""The server's outer guards against hostile or broken requests (pure ASGI middleware):

- `Errors`: an exception inside a request becomes a 500 whose body carries a request id and
  nothing else (no exception text, no paths); the log has the traceback under that id. The
  exception is not re-raised, so the keep-alive connection stays usable.
- `Bodies`: the whole request body is read *before* the request goes on (so a client trickling
  its body holds no admission slot and no model time), with a size cap (413 at once when
  Content-Length says too much) and a deadline for the whole body (408).
- `Hosts`: the Host header must name this server (against DNS rebinding of a loopback server).

Uvicorn has no timeout for request headers; `protocol.GuardedH11Protocol` adds one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Iterable

log = logging.getLogger("circuit_debugger.server")


async def send_json(send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = (), **extra) -> None:
    body = json.dumps({"detail": detail, **extra}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class Errors:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            rid = new_request_id()
            log.exception("request %s %s failed (request id %s)", scope.get("method"), scope.get("path"), rid)
            if started:  # half a response is out: nothing honest can follow, the server closes the connection
                raise
            await send_json(send, 500, f"internal error (request id {rid}; the server's log has the details)",
                            [(b"x-request-id", rid.encode())], request_id=rid)


class Bodies:
    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        close = [(b"connection", b"close")]  # the unread rest of the body makes the connection unusable
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or len(length) > 18 or int(length) > self.max_bytes):
            return await send_json(send, 413, f"request body over the server's limit of {self.max_bytes} bytes", close)
        chunks: list[bytes] = []
        size = 0

        async def read_all() -> bool:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return False
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_bytes or not message.get("more_body", False):
                    return True

        try:
            connected = await asyncio.wait_for(read_all(), self.timeout_s)
        except asyncio.TimeoutError:
            return await send_json(send, 408, f"request body not received within {self.timeout_s:g} s", close)
        if not connected:
            return
        if size > self.max_bytes:
            return await send_json(send, 413, f"request body over the server's limit of {self.max_bytes} bytes", close)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def host_of(header: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Hosts:
    """`allowed`: host names ('*' = any; '*.example.org' = its subdomains)."""

    def __init__(self, app, allowed: list[str]):
        self.app = app
        self.any = "*" in allowed
        self.exact = {h.lower().strip("[]") for h in allowed if not h.startswith("*")}
        self.suffixes = tuple(h[1:].lower() for h in allowed if h.startswith("*."))

    def allows(self, host: str) -> bool:
        return self.any or host in self.exact or bool(self.suffixes) and host.endswith(self.suffixes)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.any:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
        if not self.allows(host_of(header)):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await send_json(send, 400, f"host {header!r} is not served here (see --allowed-hosts)")
        await self.app(scope, receive, send)
