#!/usr/bin/env bash
# Everything loopctl needs on a fresh Debian machine, idempotently: the database stack
# (scripts/provision-db.sh, needs root) and a Python virtualenv in .venv with loopctl in it.
# Usage: scripts/bootstrap.sh [--test]   (--test adds the test tools and browser)
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1

if [ "$(id -u)" = 0 ]; then
  bash scripts/provision-db.sh
  if [ "$with_test" = 1 ] && [ -x scripts/provision-test.sh ]; then bash scripts/provision-test.sh; fi
elif ! command -v sqitch >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "bootstrap: run as root once (sudo $0) to install PostgreSQL, pgvector and sqitch" >&2
  exit 2
fi

PY=${LOOPCTL_PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "bootstrap: Python 3.11+ is required (set LOOPCTL_PYTHON)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$PY" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
extras=""
[ "$with_test" = 1 ] && extras="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" 2>&1 \
  | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import loopctl' # fails loudly if the install did not happen
