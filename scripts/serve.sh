#!/usr/bin/env bash
# Set up (if needed) and start the debugger on the embedded default model.
#   ./scripts/serve.sh [--model DIR_OR_HUB_NAME ...] [--host 0.0.0.0] [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/circuit-debugger serve "$@"
