"""How storage faults answer: a busy database is 503 with Retry-After (the client retries;
nothing waits longer than the busy timeout), damaged data is a 500 that names the damage.
Neither carries a path or a stack."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..storage import StorageBusy, StorageDamaged

log = logging.getLogger("circuit_debugger.server")


def install(app: FastAPI) -> None:
    @app.exception_handler(StorageBusy)
    async def busy(_: Request, e: StorageBusy):
        log.warning("storage busy: %s", e)
        return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": str(e.retry_after)})

    @app.exception_handler(StorageDamaged)
    async def damaged(_: Request, e: StorageDamaged):
        log.error("storage damaged: %s", e)
        return JSONResponse({"detail": str(e)}, status_code=500)
