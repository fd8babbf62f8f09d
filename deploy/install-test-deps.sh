#!/usr/bin/env bash
# System packages the tests need: headless Chromium from Debian (never `playwright install`: it downloads a browser).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
  echo "chromium is missing and this user cannot apt-get install it; the browser tests will fail" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
