#!/bin/sh
# check-ash.sh BUSYBOX OUT: copies Debian's static busybox to OUT (named ash so
# it starts as the shell) after checking it really is usable as the scratch
# shell: statically linked, and a standalone shell whose applets run with an
# empty environment (no PATH, no /bin/top).
set -eu
src=$1 out=$2
case $(basename "$out") in
  ash) ;;
  *) echo "check-ash: output must be named ash (busybox picks the applet from argv[0]): $out" >&2
     exit 1 ;;
esac
if readelf -l "$src" | grep -q 'Requesting program interpreter'; then
  echo "check-ash: $src is dynamically linked: install busybox-static (not busybox)" >&2
  exit 1
fi
tmpdir="$out.tmp.$$"
trap 'rm -rf "$tmpdir"' EXIT
mkdir -p "$tmpdir"
cp "$src" "$tmpdir/ash"
chmod 0755 "$tmpdir/ash"
res=$(env -i "$tmpdir/ash" -c 'top -n 1' 2>&1) || {
  echo "check-ash: 'env -i ash -c \"top -n 1\"' failed: $res" >&2; exit 1; }
case $res in
  *PID*) ;;
  *) echo "check-ash: 'top -n 1' printed no process table (standalone shell missing?): $res" >&2
     exit 1 ;;
esac
mv "$tmpdir/ash" "$out"
