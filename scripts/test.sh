#!/usr/bin/env bash
# Set up (if needed) and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/python -m pytest tests -q "$@"
