"""Serve the built front end (frontend/dist) from the API's own port.

Paths under /api, /docs and /openapi.json belong to the API; `/assets/*` are the hashed
bundle files; every other GET (`/`, `/s/<share id>`, ...) gets index.html and the front end
reads its state from the URL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .routes import methods_at

log = logging.getLogger("circuit_debugger.server")

REPO_FRONTEND = Path(__file__).resolve().parents[3] / "frontend" / "dist"
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Circuit Debugger</title>
<p>The web UI is not built. Run <code>./scripts/setup.sh</code> (or <code>npm ci &amp;&amp; npm run build</code>
in <code>frontend/</code>). The API is up: <a href="/docs">/docs</a>.</p>"""


def mount_frontend(app: FastAPI, directory: Optional[str | Path]) -> None:
    dist = Path(directory) if directory else REPO_FRONTEND
    index = dist / "index.html"
    if not index.is_file():
        log.warning("front end not found at %s; serving the API only", dist)
    else:
        app.mount("/assets", StaticFiles(directory=dist / "assets", check_dir=False), name="assets")

    @app.get("/{path:path}", include_in_schema=False)
    def spa(path: str):
        if path.startswith("api/") or path == "api":
            allowed = sorted(methods_at(app.routes, "/" + path, skip=spa))
            if allowed:  # a POST route asked with GET: say so, not "no such route"
                return JSONResponse({"detail": f"method GET not allowed here (allowed: {', '.join(allowed)})"},
                                    status_code=405, headers={"Allow": ", ".join(allowed)})
            return JSONResponse({"detail": "no such API route"}, status_code=404)
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=200)
        if not _plausible(path):
            return JSONResponse({"detail": "no such page"}, status_code=404)
        file = (dist / path).resolve()
        if path and file.is_file() and dist.resolve() in file.parents:  # favicon and other top-level files
            return FileResponse(file)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


def _plausible(path: str) -> bool:
    """A path the UI could have made: no NUL or other control character (the filesystem refuses
    them with an exception), no part longer than a file name may be, 2,000 characters at most."""
    return (len(path) <= 2000 and not any(ord(c) < 32 for c in path)
            and all(len(part.encode()) <= 255 for part in path.split("/")))
