#!/bin/sh
# build-rootfs.sh: assemble an image root filesystem from a file list.
#
#   build-rootfs.sh --files LIST --out DIR [--build-dir B] [--source-dir S]
#                   [--allow-missing SRC]...
#
# LIST has one entry per line ('#' starts a comment):
#   file DEST SRC [libs] [mode=NNNN]
#   dir  DEST [mode=NNNN]
#   link DEST TARGET
# SRC: an absolute path is a host file, "src:PATH" is relative to the source
# tree (S, default: the parent of this script's folder), anything else is
# relative to the build tree (B). "libs" also copies every shared library the
# file needs (ldd), with the dynamic loader, at their own paths.
# --allow-missing SRC leaves that entry out, with a warning, when SRC does not
# exist (a component this tree does not build yet); every other SRC must exist.
# The tree is built next to DIR and swapped in at the end, so DIR is either the
# old or the new image, never half of one.
set -eu

die() { echo "build-rootfs: $*" >&2; exit 1; }

files= out= build=. allow_missing=" " src=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case $1 in
    --files) files=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --source-dir) src=$2; shift 2 ;;
    --allow-missing) allow_missing="$allow_missing$2 "; shift 2 ;;
    *) die "unknown argument '$1'; usage: build-rootfs.sh --files LIST --out DIR [--build-dir B] [--source-dir S] [--allow-missing SRC]..." ;;
  esac
done
[ -n "$files" ] && [ -n "$out" ] || die "--files LIST and --out DIR are required"
[ -r "$files" ] || die "cannot read file list '$files'"

new="$out.new.$$"
trap 'rm -rf "$new"' EXIT
rm -rf "$new"
mkdir -p "$new"

resolve() {
  case $1 in
    /*) echo "$1" ;;
    src:*) echo "$src/${1#src:}" ;;
    *) echo "$build/$1" ;;
  esac
}

# copy_in HOSTFILE DEST [MODE]: dereferenced copy at DEST inside the new root.
copy_in() {
  mkdir -p "$new$(dirname "$2")"
  cp -L "$1" "$new$2"
  if [ -n "${3:-}" ]; then chmod "$3" "$new$2"; fi
}

# copy_libs BINARY: the loader and every library ldd resolves, at the same paths.
copy_libs() {
  ldd_out=$(ldd "$1" 2>&1) || die "ldd '$1' failed: $ldd_out"
  case $ldd_out in
    *"not found"*) die "'$1' needs libraries this machine lacks: $(echo "$ldd_out" | grep 'not found' | tr -s ' \t' ' ')" ;;
  esac
  echo "$ldd_out" | while read -r a b c _; do
    case "$a $b $c" in
      *" => /"*) copy_in "$c" "$c" ;;          # libfoo.so.1 => /lib/.../libfoo.so.1 (0x..)
      /*) copy_in "$a" "$a" ;;                 # /lib64/ld-linux-x86-64.so.2 (0x..)
    esac
  done
}

lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  line=${line%%#*}
  set -f; set -- $line; set +f
  [ $# -gt 0 ] || continue
  kind=$1; shift
  case $kind in
    file)
      [ $# -ge 2 ] || die "$files:$lineno: 'file' needs DEST SRC"
      dest=$1 srcname=$2 from=$(resolve "$2"); shift 2
      libs= mode=
      for f in "$@"; do
        case $f in
          libs) libs=1 ;; mode=*) mode=${f#mode=} ;;
          *) die "$files:$lineno: unknown flag '$f' (libs, mode=NNNN)" ;;
        esac
      done
      if [ ! -e "$from" ]; then
        case $allow_missing in
          *" $srcname "*) ;;
          *) die "$files:$lineno: '$from' does not exist; build it first" ;;
        esac
        echo "build-rootfs: warning: $from not built, $dest left out of $out" >&2
        continue
      fi
      copy_in "$from" "$dest" "$mode"
      if [ -n "$libs" ]; then copy_libs "$from"; fi ;;
    dir)
      [ $# -ge 1 ] || die "$files:$lineno: 'dir' needs DEST"
      mkdir -p "$new$1"
      case ${2:-} in mode=*) chmod "${2#mode=}" "$new$1" ;; esac ;;
    link)
      [ $# -eq 2 ] || die "$files:$lineno: 'link' needs DEST TARGET"
      mkdir -p "$new$(dirname "$1")"
      ln -sfn "$2" "$new$1" ;;
    *) die "$files:$lineno: unknown entry '$kind' (file, dir, link)" ;;
  esac
done < "$files"

rm -rf "$out.old"
if [ -e "$out" ]; then mv "$out" "$out.old"; fi
mv "$new" "$out"
rm -rf "$out.old"
