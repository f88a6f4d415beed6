#!/usr/bin/env bash
# Test-only system packages, idempotently (needs root; scripts/bootstrap.sh --test runs it):
# headless Chromium and its driver, for the browser tests (passkey signup with the DevTools
# virtual authenticator). Other areas add their test-only packages to the list below.
set -euo pipefail
packages=(chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v chromium >/dev/null
