#!/usr/bin/env bash
# Make a model folder read-only for students: folders 0555, files 0444, owned by OWNER (default root, when run as
# root), so that students, who are not the owner, can neither write nor chmod it back.
# Used by the single-user image (deploy/Dockerfile) on labkit's zoo, and by tests/test_hub.py on its copy.
#   deploy/readonly-models.sh DIR [OWNER]
set -euo pipefail
DIR=${1:?usage: deploy/readonly-models.sh DIR [OWNER]}
OWNER=${2:-root}
if [ ! -d "$DIR" ]; then
  echo "readonly-models.sh: $DIR is not a folder (build the zoo first: labkit zoo build)" >&2
  exit 2
fi
if [ "$(id -u)" -eq 0 ]; then
  chown -R "$OWNER:$OWNER" "$DIR" 2>/dev/null || chown -R "$OWNER" "$DIR"
fi
find "$DIR" -type d -exec chmod 0555 {} +
find "$DIR" -type f -exec chmod 0444 {} +
echo "read-only for students: $DIR ($(find "$DIR" -type f | wc -l) files)"
