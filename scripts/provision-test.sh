#!/usr/bin/env bash
# Test-only system packages, idempotently (root, Debian): headless Chromium for the
# Swagger UI check (tests/test_http_swagger_ui.py). Called by scripts/bootstrap.sh --test.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "provision-test: run as root to install chromium" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
