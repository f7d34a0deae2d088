"""Cooperative stopping of long engine work on the interactive path.

A request whose client has gone, or that has run past the server's time limit, stops at its
next batched forward (raising `Stopped`, which releases the model lock on the way out) instead
of holding the model for minutes. The engine calls `check()` between forwards; the server
sets the token (`run_with`) for the thread that runs the request."""

from __future__ import annotations

import contextvars
import time
from typing import Callable, Optional

from .errors import UserError


class Stopped(UserError):
    """The work was stopped: its client left, or it reached the time limit (503)."""

    def __init__(self, message: str):
        super().__init__(message, 503)


class Token:
    def __init__(self, time_limit: Optional[float]):
        self.time_limit = time_limit
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.client_gone = False


_current: contextvars.ContextVar = contextvars.ContextVar("circuit_debugger_stop", default=None)


def check() -> None:
    t: Optional[Token] = _current.get()
    if t is None:
        return
    if t.client_gone:
        raise Stopped("stopped: the client closed the connection")
    if t.deadline is not None and time.monotonic() > t.deadline:
        raise Stopped(f"stopped at the server's time limit for a request ({t.time_limit:g} s); submit it as a job "
                      "(POST /api/jobs/...) to run longer")


def run_with(token: Token, fn: Callable):
    reset = _current.set(token)
    try:
        return fn()
    finally:
        _current.reset(reset)
