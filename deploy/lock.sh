#!/usr/bin/env bash
# The lock: every transitive version for the supported Python (3.11, Linux x86_64), resolved by `uv pip compile`
# from pyproject.toml (all extras) and constraints.txt. deploy/install.sh installs under it (pip -c), so
# `make lab`, `make test`, CI and the classroom image (deploy/Dockerfile) get the same versions next term.
#
#   deploy/lock.sh compile   re-resolve after pyproject.toml changed; versions already locked are kept when they
#                            still fit (uv reads the existing lock as its preferences)        (make lock)
#   deploy/lock.sh upgrade   re-resolve everything to the newest versions                      (make upgrade)
#   deploy/lock.sh check     the lock matches pyproject.toml + constraints.txt: the fingerprint in its header,
#                            then a fresh resolution starting from the lock must reproduce it (make test, CI)
#   deploy/lock.sh fingerprint   print the fingerprint of the inputs
#
# Environment (optional):
#   UV                where uv is (default: the venv's, else PATH)
#   TORCH_FIND_LINKS  a folder holding the CPU wheel of torch (default /opt/wheels where it exists)
#   TORCH_INDEX_URL   or an index holding it, e.g. https://download.pytorch.org/whl/cpu
# The lock records torch without the +cpu tag (torch==2.13.0 matches the CPU build, and macOS's wheel); resolving
# against PyPI's Linux torch instead would lock its CUDA packages, so the CPU build is pinned while resolving.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK="$ROOT/requirements.lock"
PYVER=3.11
PLATFORM=x86_64-manylinux_2_28
CMD=${1:-check}

UV=${UV:-}
if [ -z "$UV" ]; then
  if [ -x "$ROOT/.venv/bin/uv" ]; then UV="$ROOT/.venv/bin/uv"; elif command -v uv >/dev/null 2>&1; then UV=uv; fi
fi

fingerprint() {
  # what the resolution depends on: the [project] dependencies and extras, requires-python, and constraints.txt
  "${PYTHON:-python3}" - "$ROOT" <<'EOF'
import hashlib, sys, pathlib
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
root = pathlib.Path(sys.argv[1])
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
parts = [project.get("requires-python", ""), *sorted(project.get("dependencies", []))]
for extra, deps in sorted(project.get("optional-dependencies", {}).items()):
    parts += [f"[{extra}]", *sorted(deps)]
cons = [l.split("#")[0].strip() for l in (root / "constraints.txt").read_text().splitlines()]
parts += ["[constraints]", *sorted(c for c in cons if c)]
print(hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16])
EOF
}

resolve() {  # resolve OUT [uv options...]; OUT may already hold a lock (its pins are the preferences)
  local out=$1; shift
  if [ -z "$UV" ]; then
    echo "deploy/lock.sh: uv is not installed (it comes with the dev extra: make setup, or pip install uv)" >&2
    exit 2
  fi
  local tmp cpu
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cpu="$tmp/cpu-torch.txt"
  grep -E '^torch==' "$ROOT/constraints.txt" | sed 's/$/+cpu/' > "$cpu"
  local links=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then links=(--extra-index-url "$TORCH_INDEX_URL" --index-strategy unsafe-best-match)
  elif [ -n "${TORCH_FIND_LINKS:-}" ]; then links=(--find-links "$TORCH_FIND_LINKS")
  elif [ -d /opt/wheels ]; then links=(--find-links /opt/wheels)
  fi
  # the existing lock, +cpu restored, so that uv keeps its versions
  [ -f "$out" ] && sed -E 's/^(torch==[^ ]+)$/\1+cpu/' "$out" > "$tmp/prev.txt" && cp "$tmp/prev.txt" "$tmp/lock.txt"
  (cd "$ROOT" && "$UV" pip compile pyproject.toml --all-extras -c constraints.txt -c "$cpu" \
      --python-version "$PYVER" --python-platform "$PLATFORM" ${links[@]+"${links[@]}"} \
      --no-header --quiet -o "$tmp/lock.txt" "$@")
  {
    echo "# labkit's lock: every version for Python $PYVER on Linux x86_64, all extras. Written by deploy/lock.sh;"
    echo "# do not edit by hand (make lock after changing pyproject.toml, make upgrade for newer versions)."
    echo "# inputs fingerprint: $(fingerprint)"
    sed -E -e 's/^(torch==[0-9.]+)\+cpu$/\1/' -e 's|-c .*/cpu-torch.txt$|-c (the CPU build of torch, while resolving)|' "$tmp/lock.txt"
  } > "$out.new"
  mv "$out.new" "$out"
}

case "$CMD" in
  fingerprint) fingerprint ;;
  compile) resolve "$LOCK"; echo "requirements.lock: $(grep -c '==' "$LOCK") packages" ;;
  upgrade) resolve "$LOCK" --upgrade; echo "requirements.lock: $(grep -c '==' "$LOCK") packages" ;;
  check)
    if [ ! -f "$LOCK" ]; then echo "requirements.lock is missing: run make lock" >&2; exit 1; fi
    want=$(fingerprint)
    have=$(sed -n 's/^# inputs fingerprint: //p' "$LOCK")
    if [ "$want" != "$have" ]; then
      echo "requirements.lock does not match pyproject.toml/constraints.txt (fingerprint $have, inputs $want):" \
           "run make lock and commit requirements.lock" >&2
      exit 1
    fi
    [ "${2:-}" = "--fast" ] && { echo "requirements.lock matches its inputs (fingerprint $have)"; exit 0; }
    tmpd=$(mktemp -d); trap 'rm -rf "$tmpd"' EXIT
    cp "$LOCK" "$tmpd/requirements.lock"
    resolve "$tmpd/requirements.lock"
    if ! diff -u "$LOCK" "$tmpd/requirements.lock" >&2; then
      echo "requirements.lock is not what deploy/lock.sh resolves from its inputs (edited by hand?): run make lock" >&2
      exit 1
    fi
    echo "requirements.lock matches pyproject.toml and constraints.txt ($(grep -c '==' "$LOCK") packages)"
    ;;
  *) echo "usage: deploy/lock.sh compile|upgrade|check [--fast]|fingerprint" >&2; exit 2 ;;
esac
