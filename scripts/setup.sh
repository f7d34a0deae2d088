#!/usr/bin/env bash
# Create .venv and install the backend with pinned dependencies, then install and build the
# web UI (frontend/dist). Idempotent: re-running is fast when nothing changed. torch comes
# first, pinned, so no CUDA build is ever pulled in.
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

# The web UI: Node.js >= 20.19 and npm from the system (Debian: apt-get install nodejs npm).
if ! command -v npm >/dev/null; then
  echo "setup: npm not found; install Node.js >= 20.19 and npm (e.g. apt-get install nodejs npm), then re-run" >&2
  exit 1
fi
cd frontend
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1  # browser tests use the system's Chromium
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.circuit-debugger-installed 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.circuit-debugger-installed
fi
want=$(find src index.html package-lock.json vite.config.ts tsconfig.json -type f -not -name '*.test.*' -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1)
if [ "$(cat dist/.built-from 2>/dev/null)" != "$want" ]; then
  npm run --silent build >/dev/null
  echo "$want" > dist/.built-from
fi
