#!/bin/sh
# Builds and runs the Ps benchmark (as root). See bench/README.md.
#   bench/ps_bench.sh [BUILD_DIR] [ps_bench options: --procs N --runs N --calls N]
set -eu
b=${1:-build}
[ $# -gt 0 ] && shift
cmake --build "$b" -j2 --target ps_bench kdiag-manager >/dev/null
exec "$b/bench/ps_bench" --manager "$b/manager/kdiag-manager" "$@"
