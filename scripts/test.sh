#!/usr/bin/env bash
# Runs every test: installs what is missing, builds with -Werror, runs the whole
# ctest suite, then rebuilds with ASan+UBSan and runs the C suites (label "c")
# again. As root (the tests make namespaces, veths and nftables tables).
#   scripts/test.sh            everything
#   KDIAG_NO_ASAN=1 scripts/test.sh   skip the sanitizer pass
#   KDIAG_NO_FUZZ=1 scripts/test.sh   skip the bounded libFuzzer run
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (tests create namespaces and nftables rules)" >&2; exit 2; }
scripts/deps.sh
jobs=$(nproc)

cmake -S . -B build -DKDIAG_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure --timeout 900)

if [ -z "${KDIAG_NO_ASAN:-}" ]; then
  cmake -S . -B build-asan -DKDIAG_WERROR=ON -DKDIAG_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L '^c$' --timeout 900)
fi

# Bounded libFuzzer run of request decoding + the handlers' input checks
# (clang). The whole tree is built there, so it also proves clang -Werror clean.
if [ -z "${KDIAG_NO_FUZZ:-}" ]; then
  CC=clang cmake -S . -B build-fuzz -DKDIAG_WERROR=ON -DKDIAG_FUZZ=ON -DKDIAG_SANITIZE=ON \
    -DKDIAG_FUZZ_SECONDS="${KDIAG_FUZZ_SECONDS:-30}" >/dev/null
  cmake --build build-fuzz -j"$jobs"
  (cd build-fuzz && ctest --output-on-failure -L fuzz)
fi
