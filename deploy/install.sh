#!/usr/bin/env bash
# Install labkit into a Python environment, CPU torch first (any other torch request pulls a multi-GB CUDA build).
# Used by `make setup` (and so by `make lab`, `make test`, CI) and by the single-user image (deploy/Dockerfile).
#   deploy/install.sh PYTHON [EXTRAS]      e.g. deploy/install.sh .venv/bin/python dev
# Environment (optional):
#   TORCH_INDEX_URL   where the CPU build of torch comes from, e.g. https://download.pytorch.org/whl/cpu
#                     (unset: pip's configured index, as on the build machines that hold the CPU wheel)
#   PIP_NO_CACHE_DIR  set to 1 in images to keep pip's cache out of the layer (pip reads it itself)
set -euo pipefail
PY=${1:?usage: deploy/install.sh PYTHON [EXTRAS]}
EXTRAS=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "deploy/install.sh: $PY is not a Python >= 3.10 interpreter" >&2
  exit 2
fi
TORCH_ARGS=()
[ -n "${TORCH_INDEX_URL:-}" ] && TORCH_ARGS=(--index-url "$TORCH_INDEX_URL")
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet -c "$ROOT/constraints.txt" ${TORCH_ARGS[@]+"${TORCH_ARGS[@]}"} "torch==2.13.0"
SPEC="$ROOT"
[ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
"$PY" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$SPEC"
