#!/usr/bin/env bash
# Set up (if needed) and run every test: Python (pytest), the generated API client's
# freshness, the front end's type check and unit tests (Vitest), and the browser end-to-end
# tests (Playwright driving Debian's Chromium against a real server). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if ! [ -x /usr/lib/postgresql/15/bin/initdb ]; then  # the storage tests start a real PostgreSQL server
  echo "test: installing Debian's postgresql for the storage tests"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
.venv/bin/python -m pytest tests -q "$@"

if ! [ -x /usr/bin/chromium ]; then
  echo "test: installing Debian's chromium and chromium-driver for the browser tests"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cd frontend
npm run --silent check:api
npx tsc -p .
npx vitest run
npx playwright test
