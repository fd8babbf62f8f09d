#!/usr/bin/env bash
# Install labkit into a Python environment, CPU torch first (any other torch request pulls a multi-GB CUDA build).
# Used by `make setup` (and so by `make lab`, `make test`, CI) and by the single-user Docker image.
#   deploy/install.sh PYTHON [EXTRAS]      e.g. deploy/install.sh .venv/bin/python dev
set -euo pipefail
PY=${1:?usage: deploy/install.sh PYTHON [EXTRAS]}
EXTRAS=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet -c "$ROOT/constraints.txt" "torch==2.13.0"
SPEC="$ROOT"
[ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
"$PY" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$SPEC"
