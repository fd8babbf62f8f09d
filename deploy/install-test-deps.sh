#!/usr/bin/env bash
# What the tests need beyond the venv (`make test` runs this before pytest):
#  - headless Chromium from Debian (never `playwright install`: it downloads a browser), for the browser tests;
#  - configurable-http-proxy from npm, into .labkit-cache/node (git-ignored), for the JupyterHub test
#    (tests/test_hub.py finds it there, on PATH, or at $CONFIGPROXY_PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHP_VERSION=${CHP_VERSION:-5.3.0}

install_chromium() {
  if command -v chromium >/dev/null 2>&1; then return 0; fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
    echo "chromium is missing and this user cannot apt-get install it; the browser tests will fail" >&2
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq chromium >/dev/null
}

install_chp() {
  local prefix="$ROOT/.labkit-cache/node"
  local bin="$prefix/node_modules/.bin/configurable-http-proxy"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "$CHP_VERSION"; then return 0; fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing: install Node.js >= 20 (Debian: apt-get install nodejs npm); the JupyterHub test will fail" >&2
    return 0
  fi
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "configurable-http-proxy@$CHP_VERSION" >/dev/null
  "$bin" --version >/dev/null
}

install_chromium
install_chp
