"""Long interactive requests (dataset attribution, ablation over a set, circuit evaluation)
run in a worker thread while the event loop watches the connection: when the client leaves,
the engine stops at its next batch (see `stopping.py`), so a dropped request no longer holds
the model for others; and every such request has a server-side time limit."""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

import anyio
from starlette.requests import Request

from ..stopping import Token, run_with

POLL_S = 0.25


async def run_stoppable(request: Optional[Request], fn: Callable, time_limit: float):
    """`request` None (an MCP tool call): only the time limit stops the work."""
    token = Token(time_limit)
    work = asyncio.ensure_future(anyio.to_thread.run_sync(run_with, token, fn))
    while True:
        done, _ = await asyncio.wait({work}, timeout=POLL_S)
        if done:
            return work.result()
        if request is not None and not token.client_gone and await request.is_disconnected():
            token.client_gone = True
