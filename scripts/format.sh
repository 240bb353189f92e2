#!/usr/bin/env bash
# Formats the C sources with clang-format and the repository's .clang-format.
#   scripts/format.sh            rewrite the files in place
#   scripts/format.sh --check    change nothing; list the files that are not
#                                formatted and exit 1 when there are any
# Either mode takes optional paths (files or directories) to limit it to.
# The files: tracked *.c and *.h under the directories below; generated code
# (protobuf-c's *.pb-c.*, in the build tree) is never tracked, and files that
# are not kdiag's own are listed in EXCLUDE.
set -euo pipefail
cd "$(dirname "$0")/.."
DIRS=(api basic manager cli scratch-shell test bench images)
EXCLUDE='\.pb-c\.[ch]$'
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
command -v "$CLANG_FORMAT" >/dev/null ||
  { echo "format.sh: $CLANG_FORMAT not found: apt-get install clang-format (scripts/deps.sh)" >&2; exit 2; }

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=("${DIRS[@]}")

mapfile -t files < <(git ls-files -- "${paths[@]}" | grep -E '\.[ch]$' | grep -Ev "$EXCLUDE" || true)
[ ${#files[@]} -gt 0 ] || { echo "format.sh: no C files under ${paths[*]}" >&2; exit 2; }

if [ $check = 0 ]; then
  "$CLANG_FORMAT" -i --style=file "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$CLANG_FORMAT" --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf '%s\n' "${bad[@]}"
  echo "format.sh: ${#bad[@]} of ${#files[@]} files need formatting (run scripts/format.sh)" >&2
  exit 1
fi
