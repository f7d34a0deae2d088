#!/usr/bin/env bash
# A larger fuzz run of every route (schemathesis, every check it has, i.e. `--checks all`; valid and
# invalid inputs; loopback only, bounded): 500 cases per route and mode.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
CD_FUZZ_EXAMPLES=${CD_FUZZ_EXAMPLES:-500} .venv/bin/python -m pytest tests/test_fuzz.py -q -s "$@"
