"""Who may use the server: access tokens (`--auth-token-file`) and/or an identity header set by
a trusted reverse proxy (`--trust-identity-header NAME`). Off when neither is given.

The token file holds hashes, never tokens: one `NAME sha256:HEX` per line (`#` comments), made
by `circuit-debugger token NAME --file FILE`, which prints the token once. Tokens are 256-bit
random strings, so a plain SHA-256 is enough (nothing to brute-force); a presented token is
hashed and compared with every stored hash in constant time.

What stays open without an identity: the UI's pages and assets (GET outside /api and /mcp),
`GET /api/health`, and reading a share by its unguessable id (`GET /api/shares/{id}`): a link
is enough to see an investigation, re-running it needs access. Everything else (the API, the
MCP endpoint, creating shares) needs a token or the proxy's header. One exception for the
browser's EventSource, which cannot send headers: `GET /api/jobs/{id}/events?ticket=...` with a
short-lived ticket for that job, made from the caller's token (`ticket_for`; see job_events.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs

from .capacity import IDENTITY
from .guard import send_json

TOKEN_HASH = "circuit_debugger.token_hash"  # scope key: the stored hash of the token presented
TICKET_MAX_S = 300  # a ticket never lasts longer than this (job_events.py makes them for 120 s)
_EVENTS = re.compile(r"^/api/jobs/([A-Za-z0-9_-]{1,64})/events$")
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.@+-]{1,100})\s+sha256:(?P<hash>[0-9a-f]{64})$")


class AccessConfigError(Exception):
    """The token file is missing or malformed (the server refuses to start)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_token_file(path: str | Path) -> dict[str, str]:
    """{hash: name} from a token file; refuses one holding anything but `NAME sha256:HEX` lines."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise AccessConfigError(f"cannot read the token file {path}: {e.strerror}") from None
    hashes: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise AccessConfigError(f"{path}, line {i}: expected 'NAME sha256:HEX' (the file keeps hashes, not tokens; "
                                    "make entries with `circuit-debugger token NAME --file FILE`)")
        hashes[m["hash"]] = m["name"]
    if not hashes:
        raise AccessConfigError(f"the token file {path} has no tokens")
    return hashes


def add_token(path: str | Path, name: str) -> str:
    """Append a new token's hash under `name` to the file (created 0600) and return the token."""
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]{1,100}", name):
        raise AccessConfigError("a token name is 1-100 letters, digits or . _ @ + -")
    token = "cdt_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{name} sha256:{token_hash(token)}\n")
    return token


def ticket_for(stored_hash: str, job_id: str, expires: int) -> str:
    """'EXPIRES.HMAC': opens job `job_id`'s event stream until `expires` (epoch seconds) for the
    holder of the token whose stored hash this is."""
    mac = hmac.new(bytes.fromhex(stored_hash), f"job-events|{job_id}|{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def is_open(method: str, path: str) -> bool:
    """Paths reachable without an identity (see the module's docstring)."""
    if method not in ("GET", "HEAD"):
        return False
    if path == "/api/health" or path.startswith("/api/shares/"):
        return True
    return not (path == "/api" or path.startswith("/api/") or path == "/mcp" or path.startswith("/mcp/"))


class Access:
    """Pure ASGI middleware: sets scope[IDENTITY] (the token's name or the proxy's user) or
    answers 401. With neither tokens nor a header configured every request passes."""

    def __init__(self, app, token_hashes: Optional[dict[str, str]] = None, identity_header: Optional[str] = None):
        self.app = app
        self.hashes = list((token_hashes or {}).items())
        self.header = identity_header.lower().encode() if identity_header else None
        self.header_name = identity_header
        self.enabled = bool(self.hashes or self.header)

    def identify(self, headers: dict, scope=None) -> Optional[str]:
        if self.header:
            who = headers.get(self.header, b"").decode("latin-1").strip()
            if who and len(who) <= 200:
                return "user:" + who
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if self.hashes and scheme.lower() == "bearer" and token.strip():
            presented = token_hash(token.strip())
            found = None
            for stored, name in self.hashes:  # every comparison made, each in constant time
                if hmac.compare_digest(presented, stored):
                    found = name, stored
            if found is None:
                return None
            if scope is not None:
                scope[TOKEN_HASH] = found[1]
            return "token:" + found[0]
        return self.ticket_holder(scope) if scope is not None else None

    def ticket_holder(self, scope) -> Optional[str]:
        """The token name behind a valid `?ticket=` on a job's event stream, else None."""
        m = _EVENTS.match(scope.get("path", ""))
        if not (self.hashes and m and scope.get("method") in ("GET", "HEAD")):
            return None
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket", [])
        expires, _, mac = (values[0] if len(values) == 1 else "").partition(".")
        if not (expires.isdigit() and len(expires) <= 12 and len(mac) == 64 and time.time() <= int(expires) <= time.time() + TICKET_MAX_S):
            return None
        found = None
        for stored, name in self.hashes:  # every comparison made, each in constant time
            if hmac.compare_digest(ticket_for(stored, m.group(1), int(expires)), f"{expires}.{mac}"):
                found = name
        return None if found is None else "token:" + found

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not self.enabled:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        who = self.identify(headers, scope)
        if who is None and not is_open(scope.get("method", "GET"), scope.get("path", "")):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            how = [f"sign in through the proxy (it sets {self.header_name})"] if self.header else []
            how += ["send 'Authorization: Bearer <token>'"] if self.hashes else []
            bad = b"authorization" in headers and self.hashes
            detail = "access token not recognised" if bad else f"this server needs to know who you are: {' or '.join(how)}"
            return await send_json(send, 401, detail, [(b"www-authenticate", b'Bearer realm="circuit-debugger"')])
        if who is not None:
            scope[IDENTITY] = who
        await self.app(scope, receive, send)
