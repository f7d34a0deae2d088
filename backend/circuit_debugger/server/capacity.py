"""Admission control: beyond `max_pending` API requests in flight, answer 503 at once (with
Retry-After) instead of queueing without bound behind the model lock. One client (an identity
when access control names one, else an address) may hold at most `per_client` of those slots,
and at most `rate_per_minute` requests a minute (429 beyond), so one client cannot starve the
others. It sits inside `guard.Bodies`: a request is admitted only once its body has arrived.
A job's event stream (`GET /api/jobs/{id}/events`, open for minutes) takes a rate token but no
admission slot: it has its own caps (server/job_events.py)."""

from __future__ import annotations

import json
import re
import threading
import time

IDENTITY = "circuit_debugger.identity"  # scope key set by access.Access
STREAM = re.compile(r"^/api/jobs/[^/]+/events$")


def client_key(scope) -> str:
    who = scope.get(IDENTITY)
    if who:
        return f"id:{who}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:?"


class Capacity:
    """Pure ASGI middleware over the API and MCP tool calls (POST /mcp); cheap routes (health,
    models, reading a share) always pass."""

    FREE = ("/api/health", "/api/models", "/api/shares/")

    def __init__(self, app, max_pending: int, per_client: int | None = None, rate_per_minute: int = 0):
        self.app = app
        self.max_pending = max_pending
        self.per_client = per_client or max_pending
        self.rate = rate_per_minute
        self.pending = 0
        self.refused = 0
        self.by_client: dict[str, int] = {}
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self._lock = threading.Lock()

    def _take_token(self, key: str, now: float) -> float:
        """0 when the request may go, else the seconds until it could."""
        tokens, last = self.buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - last) * self.rate / 60.0)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return (1.0 - tokens) * 60.0 / self.rate
        self.buckets[key] = (tokens - 1.0, now)
        if len(self.buckets) > 100_000:  # forget full buckets (idle clients) so the table stays small
            self.buckets = {k: v for k, v in self.buckets.items() if v[0] < self.rate - 1}
        return 0.0

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        method = scope.get("method")
        mcp_call = method == "POST" and (path == "/mcp" or path.startswith("/mcp/"))  # tool calls run the model too
        if not (path.startswith("/api/") or mcp_call) or path.startswith(self.FREE) and method == "GET":
            return await self.app(scope, receive, send)
        key = client_key(scope)
        status, detail, retry = 0, "", 1
        stream = method == "GET" and bool(STREAM.match(path))
        with self._lock:
            wait = self._take_token(key, time.monotonic()) if self.rate else 0.0
            if wait:
                status, retry = 429, max(1, round(wait + 0.5))
                detail = f"too many requests: at most {self.rate} a minute per client; retry in {retry} s"
            elif stream:
                pass  # admitted without a slot (its own caps: job_events.StreamSlots)
            elif self.pending >= self.max_pending:
                status, detail = 503, f"server busy: {self.max_pending} requests already in flight; retry shortly"
            elif self.by_client.get(key, 0) >= self.per_client:
                status, detail = 503, f"server busy: this client already has {self.per_client} requests in flight"
            else:
                self.pending += 1
                self.by_client[key] = self.by_client.get(key, 0) + 1
            if status:
                self.refused += 1
        if stream and not status:
            return await self.app(scope, receive, send)
        if status:
            body = json.dumps({"detail": detail}).encode()
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", str(retry).encode()),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.pending -= 1
                left = self.by_client.pop(key) - 1
                if left:
                    self.by_client[key] = left
