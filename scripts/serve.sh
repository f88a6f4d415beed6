#!/usr/bin/env bash
# The README's serve command: set up everything, then run loopctl on 127.0.0.1:8000 with an
# embedded PostgreSQL under ./.loopctl (or LOOPCTL_DATABASE_URL when set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/loopctl serve "$@"
