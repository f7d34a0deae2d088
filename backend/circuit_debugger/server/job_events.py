"""A job's progress as Server-Sent Events: `GET /api/jobs/{id}/events`.

The stream sends the job's state (`event: job`, without its request and result) at once and
then every time its status, `done`, `total`, `cancel` or `error` changes, read from the
database (so a job run by another replica streams as well), and ends after the job ends
(`event: end`; fetch `GET /api/jobs/{id}` for the result). It is bounded:
- it holds no admission slot (`capacity.Capacity` lets it through after its rate token) but
  its own: at most `max_streams_per_client` open per client (429 beyond) and `max_streams` in
  all (503 beyond);
- the caps count per server process (under `--workers N` each process has its own);
- it lasts at most `lifetime` seconds (`event: reopen`; a browser's EventSource reconnects and
  gets the current state first);
- a comment line (`: ping`) every `heartbeat` seconds keeps proxies from timing it out and
  finds a client that has gone (its slot is freed as soon as the server notices).

Access: a browser's EventSource cannot send `Authorization`. With access tokens, the page asks
`POST /api/jobs/{id}/ticket` (with its token, like any API call) for a ticket and opens
`/api/jobs/{id}/events?ticket=...`: a ticket is an HMAC of the job id and an expiry (120 s)
under the stored hash of the caller's token, so it names one job, expires, dies with its token,
needs no shared state between replicas, and the long-lived token never appears in a URL or a
log. Behind a proxy that sets the identity header no ticket is needed."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Optional

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from .access import TOKEN_HASH, ticket_for
from .capacity import client_key

log = logging.getLogger("circuit_debugger.server")
FINAL = ("done", "failed", "cancelled")
WATCHED = ("status", "done", "total", "cancel", "error")  # a change in any of these is an event
POLL_S = 0.25  # how often a stream reads its job (one indexed row, without the result)
RETRY_MS = 2000  # the EventSource reconnection delay the stream asks for
TICKET_S = 120


class TicketResponse(BaseModel):
    ticket: Optional[str] = Field(description="append ?ticket=... to the events URL; null when the caller's "
                                              "identity is not a token (no ticket needed)")
    expires: float = Field(description="epoch seconds after which the ticket opens no stream")


class StreamSlots:
    """Open streams per client and in all (the stream's own caps, not admission slots)."""

    def __init__(self, per_client: int, total: int):
        self.per_client, self.total = per_client, total
        self.open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> Optional[tuple[int, str]]:
        """None when taken, else (status, why)."""
        with self._lock:
            if self.open.get(key, 0) >= self.per_client:
                return 429, f"this client already has {self.per_client} job progress streams open; close one"
            if sum(self.open.values()) >= self.total:
                return 503, f"server busy: {self.total} job progress streams already open; retry shortly"
            self.open[key] = self.open.get(key, 0) + 1
        return None

    def give(self, key: str) -> None:
        with self._lock:
            left = self.open.pop(key, 0) - 1
            if left > 0:
                self.open[key] = left


class _Stream(EventSourceResponse):
    """Gives its slot back however the response ends (finished, client gone, cancelled)."""

    def __init__(self, *a, release, **kw):
        super().__init__(*a, **kw)
        self._release = release

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def state_of(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in ("request", "result")}


def add_job_event_routes(app: FastAPI, jobs, check, errors: dict, *, per_client: int, total: int,
                         lifetime: float, heartbeat: float = 15.0) -> StreamSlots:
    slots = StreamSlots(per_client, total)
    app.state.job_streams = slots

    async def read(jid: str) -> dict:
        return state_of(await anyio.to_thread.run_sync(lambda: jobs.get(jid)))

    @app.get("/api/jobs/{job_id}/events", responses={**errors, 429: errors[404], 503: errors[404],
                                                       200: {"content": {"text/event-stream": {}},
                                                             "description": "the job's progress as Server-Sent Events"}})
    async def job_events(job_id: str, request: Request, ticket: Optional[str] = None):
        """The job's progress as Server-Sent Events (`event: job` on every change, `event: end`
        after it ended, `event: reopen` at the stream's lifetime, `: ping` comments between).
        `ticket` (from `POST /api/jobs/{id}/ticket`) stands in for the access token, which an
        EventSource cannot send; without access control it is not needed."""
        first = await read(check(job_id))  # 404 before anything is opened
        key = client_key(request.scope)
        refused = slots.take(key)
        if refused:
            return JSONResponse({"detail": refused[1]}, status_code=refused[0], headers={"Retry-After": "5"})

        async def events():
            opened, seq, last = time.monotonic(), 0, None
            job = first
            yield ServerSentEvent(comment="job progress", retry=RETRY_MS)
            while True:
                now = tuple(job.get(k) for k in WATCHED)
                if now != last:
                    seq, last = seq + 1, now
                    yield ServerSentEvent(json.dumps(job), event="job", id=str(seq))
                if job["status"] in FINAL:
                    yield ServerSentEvent(json.dumps({"status": job["status"]}), event="end", id=str(seq + 1))
                    return
                if time.monotonic() - opened >= lifetime:
                    yield ServerSentEvent(json.dumps({"after_s": lifetime}), event="reopen", id=str(seq + 1))
                    return
                await asyncio.sleep(POLL_S)
                try:
                    job = await read(job_id)
                except Exception as e:  # noqa: BLE001 - a busy or briefly unreachable database: read again next time
                    log.debug("job %s: progress not read (%s)", job_id, e)

        return _Stream(events(), release=lambda: slots.give(key), ping=heartbeat, send_timeout=30,
                       headers={"Cache-Control": "no-store"})

    @app.post("/api/jobs/{job_id}/ticket", response_model=TicketResponse, responses=errors)
    def job_events_ticket(job_id: str, request: Request):
        """A short-lived ticket that opens this job's event stream in place of the access token."""
        jobs.get(check(job_id))
        expires = int(time.time()) + TICKET_S
        stored = request.scope.get(TOKEN_HASH)
        return {"ticket": ticket_for(stored, job_id, expires) if stored else None, "expires": float(expires)}

    return slots
