#!/usr/bin/env bash
# A larger fuzz run of every route (schemathesis, every check it has, i.e. `--checks all`; loopback
# only, bounded): first the pytest driver (500 valid and 500 invalid cases per route), then the
# schemathesis CLI against a real server (examples, coverage, fuzzing and stateful phases).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
CD_FUZZ_EXAMPLES=${CD_FUZZ_EXAMPLES:-500} .venv/bin/python -m pytest tests/test_fuzz.py -q -s "$@"

port=${CD_FUZZ_PORT:-8799}
db=$(mktemp -d)/fuzz.sqlite
.venv/bin/circuit-debugger serve --port "$port" --share-db "$db" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.5; done
.venv/bin/schemathesis --config-file tests/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
  --checks all --max-examples "${CD_FUZZ_CLI_EXAMPLES:-100}" --seed 1 --workers 2 --request-timeout 300
