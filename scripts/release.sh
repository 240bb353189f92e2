#!/usr/bin/env bash
# release.sh: the plugin's release artifacts from a built tree (target `release`).
#
#   scripts/release.sh --build-dir B --version V --out DIR [--manifest PATH]
#
# DIR gets kubectl-diag-V-linux-amd64.tar.gz (the plugin's files, from
# `cmake --install B --component plugin --strip`, plus README.md; owners, times
# and order fixed so the same binaries give the same tarball), its .sha256
# (sha256sum format) and diag.yaml: the krew manifest, i.e. .krew.yaml rendered
# the way krew-release-bot renders it for tag vV ({{ .TagName }}, and
# addURIAndSha -> uri + sha256, here of the local tarball). Every `from` of the
# manifest's files and its bin are checked against the tarball.
# --manifest PATH also writes the manifest there (plugins/diag.yaml at release).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "release.sh: $*" >&2; exit 1; }
build= version= out= manifest=
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[ -n "$build" ] && [ -n "$version" ] && [ -n "$out" ] || die "--build-dir, --version and --out are required"
name=kubectl-diag-$version-linux-amd64.tar.gz
tag=v$version
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

cmake --install "$build" --component plugin --strip --prefix "$stage/prefix" >/dev/null
mkdir -p "$stage/root" "$out"
cp "$stage/prefix/bin/kubectl-diag" "$stage/prefix/bin/kubectl_complete-diag" "$repo/README.md" "$stage/root/"
tar -C "$stage/root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . |
  gzip -9n >"$out/$name"
(cd "$out" && sha256sum "$name" >"$name.sha256")
sha=$(cut -d' ' -f1 "$out/$name.sha256")

# Render .krew.yaml: addURIAndSha "URL" .TagName -> "uri: URL" + "sha256: SHA"
# (URL's {{ .TagName }} / {{ .Version }} filled in), then {{ .TagName }}.
sed -E \
  -e "s#\{\{ *addURIAndSha \"([^\"]*)\" *\.TagName *\}\}#uri: \1\n    sha256: $sha#" \
  -e "s#\{\{ *\.TagName *\}\}#$tag#g" -e "s#\{\{ *\.Version *\}\}#$version#g" \
  "$repo/.krew.yaml" >"$stage/diag.yaml"
grep -q '{{' "$stage/diag.yaml" && die ".krew.yaml uses template actions this renderer does not know"
grep -q "uri: .*/$name\$" "$stage/diag.yaml" || die "the manifest's uri does not name $name"
listing=$(tar -tzf "$out/$name" | sed 's#^\./##')
for f in $(sed -n 's/^ *- from: *//p' "$stage/diag.yaml") $(sed -n 's/^ *bin: *//p' "$stage/diag.yaml"); do
  grep -qx "$f" <<<"$listing" || die "the manifest names '$f', which $name lacks"
done
cp "$stage/diag.yaml" "$out/diag.yaml"
if [ -n "$manifest" ]; then
  { echo "# The krew manifest of release $tag, written by scripts/release.sh --manifest from .krew.yaml;"
    echo "# sha256 is that of the tarball released with it (test release_krew checks the rest)."
    cat "$stage/diag.yaml"; } >"$manifest"
fi
echo "release.sh: $out/$name ($sha)"
