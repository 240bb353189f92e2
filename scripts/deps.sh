#!/usr/bin/env bash
# Installs what building and testing kdiag-c needs on Debian 12 / Ubuntu, as root.
#   scripts/deps.sh            everything: build, tests, images (the default)
#   scripts/deps.sh --build    only what compiling the shipped binaries needs (Dockerfile)
#   scripts/deps.sh --runtime  only what the debug image takes from the system beyond glibc:
#                              the shared libraries its binaries load, /etc/services (Dockerfile.release)
# One package per line so each area adds its own without touching the others.
set -euo pipefail
runtime=(
  libmnl0              # the one library linked dynamically besides glibc (no libmnl.a)
  netbase              # /etc/services, copied into the debug image: capture filters' port names (port http)
)
build=(
  build-essential
  cmake
  pkg-config
  libgrpc-dev
  nettle-dev
  protobuf-c-compiler
  libprotobuf-c-dev
  libnftnl-dev
  libmnl-dev
  libjansson-dev
  busybox-static
  libpcap-dev          # the manager's capture filters (pcap_compile), linked statically
  libzstd-dev          # cp's compression (api/copyz.c), linked statically
  netbase              # /etc/services, copied into the debug image: capture filters' port names (port http)
)
tests=(
  libcmocka-dev
  nftables
  iproute2
  procps
  psmisc
  util-linux
  python3
  python3-pytest
  python3-yaml
  openssl
  socat
  iperf3
  tcpdump              # capture tests read the files back; the capture benchmark's baseline
  tmux                 # cli_e2e_exec drives the interactive shell through a real terminal emulator
  clang
  clang-format
  libclang-rt-14-dev
  nodejs
  npm
  # images (scripts/image.sh, test/images): an OCI toolchain and the debian:12 base
  podman
  runc
  buildah
  skopeo
  debootstrap
)
# What ends up inside the shipped binaries: the compiler, glibc's and libgcc's
# static parts, the static archives. Installed at an older version than apt's
# candidate, they are brought up to it (by the default mode, which builds and
# tests): the Dockerfile's build, on a fresh debian:12, gets the candidates, and
# test/images/test_oci.py checks that both builds hold the same bytes.
embedded=(gcc-12 cpp-12 binutils libc6-dev libgcc-12-dev libstdc++-12-dev libgrpc-dev libabsl-dev libre2-dev
  libc-ares-dev zlib1g-dev libprotobuf-c-dev libnftnl-dev libjansson-dev nettle-dev libpcap0.8-dev libzstd-dev
  busybox-static netbase)
case ${1:-} in
  "") pkgs=("${build[@]}" "${tests[@]}") ;;
  --build) pkgs=("${build[@]}") ;;
  --runtime) pkgs=("${runtime[@]}") ;;
  *) echo "usage: deps.sh [--build | --runtime]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node/npm may come from elsewhere (not Debian) on a developer machine: fine if present.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
export DEBIAN_FRONTEND=noninteractive
if [ -z "${1:-}" ]; then
  apt-get update -qq || echo "deps: apt-get update failed: the installed versions stay" >&2
  for p in "${embedded[@]}"; do
    have=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
    want=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -n "$have" ] && [ -n "$want" ] && [ "$want" != "(none)" ] && [ "$have" != "$want" ]; then
      echo "deps: $p $have -> $want (as the Dockerfile's build gets it)" >&2
      missing+=("$p")
    fi
  done
elif [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
