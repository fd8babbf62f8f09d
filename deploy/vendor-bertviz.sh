#!/usr/bin/env bash
# Fetch the three scripts bertviz's views load from a CDN (require.js, d3, jQuery) from the npm registry, pinned,
# with their licences, into labkit/vendor/bertviz/ (committed, shipped in the wheel): labkit.attend serves
# bertviz's views with these copies inlined, so they render offline. Re-run only to change a version.
#   deploy/vendor-bertviz.sh
# bertviz asks for d3 5.7.0 and jQuery 2.0.0; jQuery 2.0.0 was never published on npm, 2.2.4 is the last 2.x.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/labkit/vendor/bertviz"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
cd "$TMP"
npm pack --silent requirejs@2.3.6 d3@5.7.0 jquery@2.2.4 >/dev/null
for t in requirejs-2.3.6 d3-5.7.0 jquery-2.2.4; do mkdir "$t" && tar -xzf "$t.tgz" -C "$t"; done
cp requirejs-2.3.6/package/require.js "$OUT/require.js"
# require.js carries its MIT licence header inside the file (the npm package has no LICENSE file)
cp d3-5.7.0/package/dist/d3.min.js "$OUT/d3.min.js"
cp d3-5.7.0/package/LICENSE "$OUT/LICENSE.d3"
cp jquery-2.2.4/package/dist/jquery.min.js "$OUT/jquery.min.js"
cp jquery-2.2.4/package/LICENSE.txt "$OUT/LICENSE.jquery"
python3 - "$OUT" <<'PY'
import hashlib, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
files = {"require.js": ("requirejs", "2.3.6", "MIT"), "d3.min.js": ("d3", "5.7.0", "BSD-3-Clause"),
         "jquery.min.js": ("jquery", "2.2.4", "MIT")}
info = {f: {"package": p, "version": v, "license": l, "sha256": hashlib.sha256((out / f).read_bytes()).hexdigest()}
        for f, (p, v, l) in files.items()}
(out / "VERSIONS.json").write_text(json.dumps(info, indent=1) + "\n")
PY
ls -la "$OUT"
