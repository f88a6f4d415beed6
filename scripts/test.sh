#!/usr/bin/env bash
# The README's test command: set up everything (system packages included), lint, then run
# the whole suite against a real PostgreSQL (a throwaway local cluster unless
# LOOPCTL_TEST_DATABASE_URL is set, or testcontainers when a Docker engine runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test
.venv/bin/ruff check .
exec .venv/bin/pytest -n "${LOOPCTL_TEST_WORKERS:-auto}" "$@"
