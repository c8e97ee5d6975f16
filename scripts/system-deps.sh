#!/usr/bin/env bash
# Debian packages the test suite and the benchmarks use (load generator, browser, CLI tools,
# PgBouncer for the change feed behind a pooler, redis-sentinel for failover, valgrind for
# bench/instructions.py).
# Installs only what is missing; a no-op on a machine that has them all.
set -euo pipefail
packages=(curl jq bc wrk nginx-light chromium redis-tools redis-sentinel openssl prometheus pgbouncer valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node for the NextAuth interop tests (tests/node/setup.sh), checked by command rather than by
# package: a Node from another source (with its own npm) must not be replaced by Debian's.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]} (run as root to install)" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A failed install is reported, not fatal: the suite then says which test lacked which tool.
if ! { apt-get update -qq >/dev/null && \
       apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "system-deps: could not install ${missing[*]}; tests that drive them will fail" >&2
fi
