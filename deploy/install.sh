#!/usr/bin/env bash
# Install labkit into a Python environment, CPU torch first (any other torch request pulls a multi-GB CUDA build).
# Used by `make setup` (and so by `make lab`, `make test`, CI) and by the single-user image (deploy/Dockerfile).
#   deploy/install.sh PYTHON [EXTRAS]      e.g. deploy/install.sh .venv/bin/python dev
# Environment (optional):
#   TORCH_INDEX_URL   where the CPU build of torch comes from, e.g. https://download.pytorch.org/whl/cpu
#                     (unset: pip's configured index, as on the build machines that hold the CPU wheel)
#                     (torch alone comes from there, without its dependencies; they come with the rest)
#   PIP_NO_CACHE_DIR  set to 1 in images to keep pip's cache out of the layer (pip reads it itself)
#   LABKIT_UNLOCKED   set to 1 to install without requirements.lock (newest versions: what `make upgrade` tries)
#   CMAKE_ARGS        llama.cpp's build flags (default -DGGML_NATIVE=OFF: a portable build)
# Every version comes from requirements.lock (deploy/lock.sh writes it), so next term's class gets this term's.
set -euo pipefail
PY=${1:?usage: deploy/install.sh PYTHON [EXTRAS]}
EXTRAS=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "deploy/install.sh: $PY is not a Python >= 3.10 interpreter" >&2
  exit 2
fi
CONS=(-c "$ROOT/constraints.txt")
if [ "${LABKIT_UNLOCKED:-0}" != 1 ]; then
  if [ ! -f "$ROOT/requirements.lock" ]; then
    echo "deploy/install.sh: requirements.lock is missing (deploy/lock.sh compile writes it)" >&2
    exit 2
  fi
  CONS+=(-c "$ROOT/requirements.lock")
fi
TORCH_ARGS=()
[ -n "${TORCH_INDEX_URL:-}" ] && TORCH_ARGS=(--index-url "$TORCH_INDEX_URL" --no-deps)
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet "${CONS[@]}" ${TORCH_ARGS[@]+"${TORCH_ARGS[@]}"} "torch==2.13.0"
# llama-cpp-python ships no wheels: pip compiles it from source the first time (about 8 minutes on 2 cores), then
# reuses the wheel from its cache. Portable flags, so that the cached wheel (and the classroom image) runs on any
# x86-64, not only on the CPU that built it. Installed on its own, not --quiet, so the build shows it is alive.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
if ! "$PY" -c 'import llama_cpp' 2>/dev/null; then
  if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then  # the classroom image (Debian/Ubuntu, root)
      echo "deploy/install.sh: installing a C++ compiler and cmake to build llama.cpp"
      apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential cmake >/dev/null \
        && rm -rf /var/lib/apt/lists/*
    else
      echo "deploy/install.sh: llama-cpp-python compiles llama.cpp and needs cmake and a C++ compiler (g++);" \
           "install them (Debian/Ubuntu: apt-get install build-essential cmake) and run this again" >&2
      exit 1
    fi
  fi
  echo "deploy/install.sh: installing llama-cpp-python (the first time on a machine pip compiles llama.cpp: about 8 minutes on 2 cores; its cached wheel afterwards)"
  "$PY" -m pip install --progress-bar on "${CONS[@]}" "llama-cpp-python[server]" 2>&1 \
    | grep -v "^WARNING: Location" | grep --line-buffered -E "Building|Created wheel|Successfully|Using cached|ERROR|error" || true
  "$PY" -c 'import llama_cpp' || { echo "deploy/install.sh: llama-cpp-python did not install (needs cmake and a C++ compiler)" >&2; exit 1; }
fi
SPEC="$ROOT"
[ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
"$PY" -m pip install --quiet "${CONS[@]}" -e "$SPEC"
