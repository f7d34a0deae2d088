"""Whole-response cache for deterministic read routes (pure ASGI middleware).

Why: most interactive traffic repeats requests (people opening the same shared investigation,
toggling back to a view they saw). The engine already caches results, but a repeated request
still paid the framework's full path every time: body validation, a thread hop, the response
model's validation and JSON encoding of a ~50 KB table (~3 ms of CPU, as much as the rest of a
cached request). Here a repeated request gets the stored bytes of the first answer.

Safe because:
- only routes whose answer is a pure function of the request body and the loaded models
  (`CACHEABLE`) are cached, and only their 200 answers; models and dictionaries never change
  in a running server (jobs load theirs in their own processes). Explanations (editable by
  `POST /api/explain` and jobs), shares, prompt sets, jobs and generation are never cached;
- the key is the whole canonical request: method, path, query string, content type and the
  body's JSON with keys sorted (a body that is not JSON, or has a duplicated key, is not
  cached at all). Two requests share an answer only when every field, interventions
  included, is equal; the key is kept in full (no hash) and compared exactly;
- memory is bounded: keys and bodies together at most `max_bytes` (LRU eviction); an answer
  larger than an eighth of that is not kept;
- it sits inside access control and admission (`install_guards`), so a cached answer needs
  the same token and counts against the same limits as a computed one.
`--response-cache-mb 0` (env CD_RESPONSE_CACHE_MB) turns it off.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Optional

CACHEABLE = frozenset({
    "/api/attribute", "/api/trace", "/api/intervene", "/api/attention", "/api/logit-lens", "/api/activations",
    "/api/outputs", "/api/tokenize", "/api/effects", "/api/attention/intervened", "/api/node-values",
    "/api/tokens/display",
})


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate("duplicated key")
    return out


def canonical_key(method: str, path: str, query: bytes, content_type: bytes, body: bytes) -> Optional[str]:
    """The request as one exact string, or None when it is not to be cached."""
    try:
        parsed = json.loads(body, object_pairs_hook=_no_duplicates)
        text = json.dumps(parsed, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (ValueError, RecursionError, TypeError):  # not JSON, duplicated keys, too deep, huge numbers
        return None
    return json.dumps([method, path, query.decode("latin-1"), content_type.decode("latin-1"), text])


class ResponseStore:
    """LRU of key -> (status, headers, body), bounded by the bytes of keys and bodies."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.max_entry = max_bytes // 8
        self.data: OrderedDict = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    @staticmethod
    def _size(key: str, body: bytes) -> int:
        return len(key) + len(body) + 200  # + headers and bookkeeping, roughly

    def get(self, key: str):
        hit = self.data.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self.data.move_to_end(key)
        return hit

    def put(self, key: str, headers: list, body: bytes) -> None:
        size = self._size(key, body)
        if size > self.max_entry:
            return
        old = self.data.pop(key, None)
        if old is not None:
            self.bytes -= self._size(key, old[1])
        self.data[key] = (headers, body)
        self.bytes += size
        while self.bytes > self.max_bytes:
            k, (_, b) = self.data.popitem(last=False)
            self.bytes -= self._size(k, b)


class ResponseCache:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.store = ResponseStore(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in CACHEABLE:
            return await self.app(scope, receive, send)
        chunks = []
        while True:  # guard.Bodies has read the whole body already: this is one message
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or ())
        key = canonical_key("POST", scope["path"], scope.get("query_string", b""),
                            headers.get(b"content-type", b""), body)
        hit = self.store.get(key) if key is not None else None
        if hit is not None:
            await send({"type": "http.response.start", "status": 200, "headers": hit[0]})
            await send({"type": "http.response.body", "body": hit[1]})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status, out_headers, parts = 0, [], []

        async def capture(message):
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], list(message.get("headers") or ())
            elif message["type"] == "http.response.body" and status == 200:
                parts.append(message.get("body", b""))
                if not message.get("more_body", False) and status == 200 and key is not None:
                    self.store.put(key, out_headers, b"".join(parts))
            await send(message)

        await self.app(scope, replay, capture)
