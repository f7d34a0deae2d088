"""Write the API's OpenAPI schema (the source of the front end's generated client):
`python -m circuit_debugger.server.openapi OUT.json`. Loads no model."""

from __future__ import annotations

import json
import sys

from ..engine import Debugger
from .app import Settings, create_app


def schema() -> dict:
    return create_app(Settings(models=[], serve_frontend=False), debugger=Debugger(), failed={}).openapi()


if __name__ == "__main__":
    text = json.dumps(schema(), indent=1, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        open(sys.argv[1], "w").write(text)
    else:
        sys.stdout.write(text)
