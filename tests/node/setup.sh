#!/usr/bin/env bash
# Installs tests/node/package.json (the real next-auth v4, React 18 and esbuild to bundle
# next-auth/react for the browser test, a Redis client) into a throwaway
# folder under the temp dir, once per version of that file, and prints the folder. The tests'
# session fixture calls it; several test workers at once wait for one install (flock).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "tests/node/setup.sh: '$tool' not found - install Node.js 18+ with npm" \
         "(Debian: apt-get install nodejs npm, or run scripts/system-deps.sh as root)" >&2
    exit 127
  fi
done
hash=$(sha256sum "$here/package.json" | cut -c1-12)
dir=${REGCOPILOT_NODE_DIR:-${TMPDIR:-/tmp}/regcopilot-node-$hash}
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ ! -f "$dir/.installed" ]; then
  cp "$here/package.json" "$dir/package.json"
  # next-auth's peer `next` is needed by neither next-auth/jwt nor next-auth/react: left
  # out (--legacy-peer-deps), which spares Next's native binaries.
  (cd "$dir" && npm install --no-audit --no-fund --legacy-peer-deps --loglevel=error >&2)
  touch "$dir/.installed"
fi
echo "$dir"
