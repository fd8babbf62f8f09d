#!/usr/bin/env bash
# Build labkit's JupyterLab extension: the TypeScript in labextension/ -> the prebuilt extension in
# labkit/labextension/, which the wheel installs as share/jupyter/labextensions/labkit (pyproject.toml's
# shared-data). Called by `make setup` (and so `make lab`, `make test`, CI) before the pip install, and by
# deploy/Dockerfile. A wheel built afterwards (python -m build, pip wheel .) carries it: installing the wheel needs
# no Node.js.
#   deploy/build-labextension.sh PYTHON        e.g. .venv/bin/python
# Needs Node.js >= 18 (nodejs.org or the distribution's package) and the npm registry (the packages are pinned by
# labextension/yarn.lock: `jlpm install --immutable`). JupyterLab's jlpm and jupyter-builder come from PYTHON's
# environment; when they are missing, JupyterLab is installed there first, at the version requirements.lock pins.
# Skips when the output is newer than the sources and the lockfile (LABKIT_FORCE_LABEXTENSION=1 builds anyway).
set -euo pipefail
PY=${1:?usage: deploy/build-labextension.sh PYTHON}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC="$ROOT/labextension"
OUT="$ROOT/labkit/labextension"
say() { echo "build-labextension: $*"; }

# fresh: the built package.json is newer than every source file, the lockfile and the build's own settings
if [ "${LABKIT_FORCE_LABEXTENSION:-0}" != 1 ] && [ -f "$OUT/package.json" ] && ls "$OUT"/static/remoteEntry.*.js >/dev/null 2>&1; then
  newer=$(find "$SRC/src" "$SRC/style" "$SRC/package.json" "$SRC/yarn.lock" "$SRC/tsconfig.json" "$SRC/.yarnrc.yml" \
          -newer "$OUT/package.json" -print -quit)
  if [ -z "$newer" ]; then
    say "up to date ($OUT)"
    exit 0
  fi
  say "$newer changed since the last build"
fi

if [ "${LABKIT_SKIP_LABEXTENSION:-0}" = 1 ]; then
  say "LABKIT_SKIP_LABEXTENSION=1: not built; JupyterLab will have no Labkit panel"
  exit 0
fi
if ! command -v node >/dev/null 2>&1; then
  echo "build-labextension: Node.js is needed to build the JupyterLab extension from the repository" \
       "(apt-get install nodejs, or https://nodejs.org); installing a built wheel needs none." \
       "LABKIT_SKIP_LABEXTENSION=1 installs without the Labkit panel." >&2
  exit 2
fi
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 18 ]; then
  echo "build-labextension: Node.js $(node --version) is too old; 18 or newer builds the extension" >&2
  exit 2
fi

SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
if ! "$PY" -c 'import jupyterlab, jupyter_builder' 2>/dev/null || [ ! -x "$SCRIPTS/jlpm" ]; then
  say "installing JupyterLab into $("$PY" -c 'import sys; print(sys.prefix)') first (jlpm, jupyter-builder)"
  CONS=(-c "$ROOT/constraints.txt")
  [ "${LABKIT_UNLOCKED:-0}" != 1 ] && [ -f "$ROOT/requirements.lock" ] && CONS+=(-c "$ROOT/requirements.lock")
  "$PY" -m pip install --quiet "${CONS[@]}" jupyterlab jupyter-builder
fi
# jupyter-builder (the build:labextension script) from the same environment
export PATH="$SCRIPTS:$PATH"

cd "$SRC"
say "jlpm install --immutable (the packages labextension/yarn.lock pins; the first time downloads ~100 MB)"
jlpm install --immutable
say "jlpm build:prod (TypeScript, then the federated bundle into labkit/labextension)"
jlpm build:prod
if [ ! -f "$OUT/package.json" ] || ! ls "$OUT"/static/remoteEntry.*.js >/dev/null 2>&1; then
  echo "build-labextension: the build left no extension in $OUT" >&2
  exit 1
fi
touch "$OUT/package.json"
bytes=$(find "$OUT/static" -name '*.js' -printf '%s\n' | awk '{s+=$1} END {print s}')
say "built $OUT ($(find "$OUT/static" -name '*.js' | wc -l) JS files, $bytes bytes)"
