#!/usr/bin/env bash
# image.sh: builds the debug image (the one `kubectl diag` injects) from both
# Dockerfiles with podman (or docker), tagged with the version CMake stamps
# into the binaries. Needs a configured and built tree (cmake --build build).
#
#   scripts/image.sh [--build-dir DIR] [--engine podman|docker] [--tag TAG] [WHAT...]
#     WHAT: base     the debian:12 base image, when the engine's store lacks it
#           release  Dockerfile.release: the binaries of DIR      -> $KDIAG_DEFAULT_IMAGE
#           source   Dockerfile: everything compiled in the image -> $KDIAG_DEFAULT_IMAGE-source
#           (default: base release source; --tag: the tag of what is built instead)
#   scripts/image.sh run [PODMAN RUN ARGS...]   podman run with the flags this host needs
#
# Each built image's ID is written to DIR/images/oci/<what>.id (tests use the
# ID, so a concurrent build elsewhere cannot swap the image under them) and its
# size, in bytes, to DIR/images/oci/<what>.size.
#
# What podman needs here, and why (all of it is in this file, nowhere else):
# * --runtime runc: crun (podman's first choice when installed) refuses hosts
#   with a hybrid cgroup v1/v2 layout; runc runs on both.
# * podman run --ulimit: podman asks the runtime for nofile/nproc limits of
#   1048576, and a caller without CAP_SYS_RESOURCE (a sandbox, a CI container)
#   may not raise a limit above its own: the container is given the caller's
#   own nofile limit and podman's conmon's nproc limit (32768).
# * build --network host: the RUN steps need the Debian mirror; the host's
#   network spares netavark's bridge and the firewall rules it adds to the host.
# * build --pull=never: no registry is needed; a missing base is an error here.
# The debian:12 base comes from `debootstrap --variant=minbase bookworm` with the
# Debian mirror apt already uses, given the apt sources of the official image
# (bookworm, bookworm-updates, bookworm-security: the Dockerfile's build then
# gets the packages this host has, so both images hold the same binaries),
# imported as docker.io/library/debian:12. A base imported by an older
# image.sh (its comment is not BASE_MARK) is made again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "image.sh: $*" >&2; exit 1; }
log() { echo "image.sh: $*" >&2; }

BASE=docker.io/library/debian:12
BASE_MARK="kdiag-base 2: debootstrap minbase, debian:12's apt sources"
engine=podman build_dir=$repo/build what=() run=0 tag=
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build_dir=$(cd "$2" && pwd) || die "no build directory '$2'"; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    run) run=1; shift; break ;;
    base|release|source) what+=("$1"); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case $engine in
  podman) eng=(podman --runtime runc); build_flags=(--pull=never --network host) ;;
  docker) eng=(docker); build_flags=() ;;
  *) die "--engine podman or docker, not '$engine'" ;;
esac
if [ $run = 1 ]; then
  exec "${eng[@]}" run --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=32768:32768 "$@"
fi
[ ${#what[@]} -gt 0 ] || what=(base release source)

cache_var() { sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt"; }
[ -r "$build_dir/CMakeCache.txt" ] || die "'$build_dir' is not a configured build: cmake -S . -B build && cmake --build build"
image=$(cache_var KDIAG_DEFAULT_IMAGE)
[ -n "$image" ] || die "$build_dir/CMakeCache.txt has no KDIAG_DEFAULT_IMAGE"
out=$build_dir/images/oci
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The mirror apt uses for the Debian archive (PATTERN debian) or its security
# updates (PATTERN debian-security): deb822 .sources or one-line lists.
apt_mirror() {
  local pat=$1 fallback=$2 m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -E -m1 "$pat/?\$") ||
    m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' |
      grep -E -m1 "$pat/?\$") ||
    m=$fallback
  echo "$m"
}

build_base() {
  if [ "$("${eng[@]}" image inspect -f '{{.Comment}}' "$BASE" 2>/dev/null)" = "$BASE_MARK" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap missing (scripts/deps.sh installs it)"
  local mirror=${KDIAG_DEBIAN_MIRROR:-$(apt_mirror debian http://deb.debian.org/debian)}
  local security=${KDIAG_DEBIAN_SECURITY_MIRROR:-$(apt_mirror debian-security http://deb.debian.org/debian-security)}
  log "no $BASE of this image.sh in the $engine store: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$tmp/base" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  rm -rf "$tmp/base/var/cache/apt/archives/"*.deb "$tmp/base/var/lib/apt/lists/"* "$tmp/base/etc/apt/sources.list"
  cat >"$tmp/base/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  tar -C "$tmp/base" -c . | "${eng[@]}" import --message "$BASE_MARK" - "$BASE" >/dev/null
  rm -rf "$tmp/base"
}

# build_image WHAT TAG CONTEXT DOCKERFILE [extra build args...]
build_image() {
  local w=$1 tag=$2 ctx=$3 file=$4
  shift 4
  log "building $tag ($file)"
  if [ "$engine" = docker ]; then
    docker buildx build --load -t "$tag" -f "$file" "$@" "$ctx" >&2
    docker image inspect -f '{{.Id}}' "$tag" >"$out/$w.id"
  else
    "${eng[@]}" build "${build_flags[@]}" -t "$tag" -f "$file" --iidfile "$out/$w.id" "$@" "$ctx" >&2
  fi
  "${eng[@]}" image inspect -f '{{.Size}}' "$(cat "$out/$w.id")" >"$out/$w.size"
  log "$tag: $(awk '{printf "%.1f MB", $1 / 1e6}' "$out/$w.size") ($(cat "$out/$w.id"))"
}

# Dockerfile.release's context: scripts/deps.sh, images/, and under build/ only
# the build-tree files images/debug-image.files names.
release_context() {
  local ctx=$tmp/release what dest src rest
  mkdir -p "$ctx/scripts" "$ctx/build"
  cp "$repo/scripts/deps.sh" "$ctx/scripts/"
  cp -R "$repo/images" "$ctx/images"
  while read -r what dest src rest; do
    [ "$what" = file ] || continue
    case $src in /*|src:*) continue ;; esac
    [ -e "$build_dir/$src" ] || die "'$build_dir/$src' (named in images/debug-image.files) is missing: cmake --build '$build_dir' first"
    mkdir -p "$ctx/build/$(dirname "$src")"
    cp -L "$build_dir/$src" "$ctx/build/$src"
  done < <(sed 's/#.*//' "$repo/images/debug-image.files")
  echo "$ctx"
}

start=$SECONDS
for w in "${what[@]}"; do
  case $w in
    base) build_base ;;
    release) build_image release "${tag:-$image}" "$(release_context)" "$repo/Dockerfile.release" ;;
    source) # BuildKit reads Dockerfile.dockerignore by itself; podman is told.
            ignore=()
            if [ "$engine" = podman ]; then ignore=(--ignorefile "$repo/Dockerfile.dockerignore"); fi
            build_image source "${tag:-$image-source}" "$repo" "$repo/Dockerfile" ${ignore[@]+"${ignore[@]}"} ;;
  esac
done
log "done in $((SECONDS - start)) s"
