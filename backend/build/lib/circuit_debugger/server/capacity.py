"""Admission control: beyond `max_pending` API requests in flight, answer 503 at once (with
Retry-After) instead of queueing without bound behind the model lock."""

from __future__ import annotations

import json
import threading


class Capacity:
    """Pure ASGI middleware; cheap routes (health, models, reading a share) always pass."""

    FREE = ("/api/health", "/api/models", "/api/shares/")

    def __init__(self, app, max_pending: int):
        self.app = app
        self.max_pending = max_pending
        self.pending = 0
        self.refused = 0
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/api/") or path.startswith(self.FREE) and scope.get("method") == "GET":
            return await self.app(scope, receive, send)
        with self._lock:
            admit = self.pending < self.max_pending
            if admit:
                self.pending += 1
            else:
                self.refused += 1
        if not admit:
            body = json.dumps({"detail": f"server busy: {self.max_pending} requests already in flight; retry shortly"}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", b"1"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.pending -= 1
