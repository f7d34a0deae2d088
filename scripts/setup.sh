#!/usr/bin/env bash
# Create .venv and install the backend with pinned dependencies. Idempotent: re-running is
# fast when nothing changed. torch comes first, pinned, so no CUDA build is ever pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.circuit-debugger-installed
want=$(cat backend/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e "backend[test]"
  echo "$want" > "$stamp"
fi
