#!/usr/bin/env bash
# Installs @grpc/grpc-js and @grpc/proto-loader (versions pinned by
# package-lock.json) into the build dir with `npm ci`: node_modules is never
# committed. When the npm registry cannot be reached, leaves a marker so the
# conformance test skips with a message instead of failing.
#   setup.sh <this dir> <dest dir in the build tree>
set -u
src=$1
dest=$2
mkdir -p "$dest"
rm -f "$dest/npm-unreachable"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
if [ -d "$dest/node_modules/@grpc/grpc-js" ] && cmp -s "$src/package-lock.json" "$dest/.installed-lock"; then
  echo "conformance: node modules already installed in $dest"
  exit 0
fi
skip() {
  echo "conformance: $1: the grpc-js conformance test will be skipped" >&2
  echo "$1" > "$dest/npm-unreachable"
  exit 0
}
command -v node >/dev/null && command -v npm >/dev/null || skip "node/npm not installed (scripts/deps.sh installs them)"
if (cd "$dest" && timeout 300 npm ci --no-audit --no-fund --loglevel=error); then
  cp "$src/package-lock.json" "$dest/.installed-lock"
  echo "conformance: installed $(cd "$dest" && node -p 'require("./node_modules/@grpc/grpc-js/package.json").version') grpc-js into $dest"
  exit 0
fi
timeout 30 npm ping >/dev/null 2>&1 || skip "the npm registry is unreachable"
echo "conformance: npm ci failed in $dest although the registry answers" >&2
exit 1
