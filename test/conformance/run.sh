#!/usr/bin/env bash
# Runs conformance.js against kdiag-manager; exit 77 (skipped) when setup.sh
# could not install the node modules because npm was unreachable.
#   run.sh <this dir> <dest dir> <kdiag-manager> <api dir>
set -u
src=$1 dest=$2 manager=$3 api=$4
if [ -f "$dest/npm-unreachable" ]; then
  echo "SKIP: $(cat "$dest/npm-unreachable"); grpc-js conformance not run"
  exit 77
fi
exec timeout 100 node "$src/conformance.js" "$dest/node_modules" "$manager" "$api"
