#!/usr/bin/env bash
# run.sh: kubectl-diag end to end on a real Kubernetes cluster made with kind (Docker).
#
#   run.sh [--keep] [--build-dir DIR] [--dockerfile auto|release|source] [-- PYTEST ARGS...]
#
# Creates a kind cluster (or uses KDIAG_KIND_CLUSTER), builds the debug image under the CLI's
# default image name and a distroless test image, loads both into the cluster, applies
# manifests.yaml, waits until the workload serves, runs test_kind.py with the real kubectl and
# kubectl-diag, and deletes the cluster (or, for KDIAG_KIND_CLUSTER, the test namespaces) on
# exit unless --keep. Exits 77 (skipped) when there is no working Docker daemon or no kind.
# See README.md for the environment variables.
set -euo pipefail

SKIP=77
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
NS=kdiag-e2e
PSA_NS=kdiag-e2e-baseline
DISTROLESS_IMAGE=kdiag-e2e-distroless:1
DISTROLESS_BASE=${KDIAG_KIND_DISTROLESS_BASE:-gcr.io/distroless/static-debian12}
PYTHON=${PYTHON:-/usr/bin/python3}

log() { printf 'kind-e2e: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

keep=0
build=${KDIAG_BUILD_DIR:-$REPO/build}
dockerfile=auto
pytest_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1; shift ;;
    --build-dir) [ $# -ge 2 ] || die "--build-dir needs a directory"; build=$2; shift 2 ;;
    --dockerfile) [ $# -ge 2 ] || die "--dockerfile needs auto, release or source"; dockerfile=$2; shift 2 ;;
    --) shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: run.sh [--keep] [--build-dir DIR] [--dockerfile auto|release|source] [-- PYTEST ARGS])" ;;
  esac
done
case $dockerfile in
  auto|release|source) ;;
  *) die "--dockerfile '$dockerfile': use auto, release or source" ;;
esac

# --- what this machine has: skip (77) without Docker or kind, before any other work ----------
KIND=${KIND:-kind}
DOCKER=${DOCKER:-docker}
missing=
if ! command -v "$KIND" >/dev/null 2>&1; then
  missing="kind (not on PATH; install it or set KIND=/path/to/kind)"
fi
if ! command -v "$DOCKER" >/dev/null 2>&1; then
  missing="${missing:+$missing and }docker (not on PATH)"
elif ! docker_err=$(timeout 20 "$DOCKER" info 2>&1 >/dev/null); then
  # shellcheck disable=SC2016 # a sed script: its last non-blank line
  docker_err=$(printf '%s\n' "$docker_err" | sed -n '/[^[:space:]]/h; ${x;p;}')
  missing="${missing:+$missing and }a working Docker daemon ('docker info' failed: ${docker_err:-no output})"
fi
if [ -n "$missing" ]; then
  echo "SKIPPED kind e2e: this machine lacks $missing"
  exit $SKIP
fi

# --- everything else is required: a missing piece is a failure, not a skip --------------------
KUBECTL=${KUBECTL:-$(command -v kubectl || true)}
if [ -z "$KUBECTL" ] || [ ! -x "$KUBECTL" ]; then
  die "kubectl not found: install it or set KUBECTL=/path/to/kubectl"
fi
"$PYTHON" -c 'import pytest' 2>/dev/null || die "$PYTHON has no pytest: apt-get install python3-pytest"
[ -d "$build" ] || die "build directory '$build' does not exist: cmake -B '$build' -S '$REPO' && cmake --build '$build' (or pass --build-dir)"
build=$(cd "$build" && pwd)
CLI=${KDIAG_CLI:-$build/cli/kubectl-diag}
for f in "$CLI" "$build/images/hello-server"; do
  [ -x "$f" ] || die "'$f' is missing: cmake --build '$build' first"
done

# The image the CLI injects by default: the configured value (ctest passes it), else the build
# directory's cache, else the top CMakeLists.txt (set(KDIAG_DEFAULT_IMAGE "...${PROJECT_VERSION}")).
image=${KDIAG_DEFAULT_IMAGE:-}
if [ -z "$image" ] && [ -f "$build/CMakeCache.txt" ]; then
  image=$(sed -n 's/^KDIAG_DEFAULT_IMAGE:[A-Z]*=//p' "$build/CMakeCache.txt" | sed -n 1p)
fi
if [ -z "$image" ]; then
  version=$(sed -n 's/^project([^)]* VERSION \([0-9][0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt" | sed -n 1p)
  image=$(sed -n 's/^set(KDIAG_DEFAULT_IMAGE "\([^"]*\)".*/\1/p' "$REPO/CMakeLists.txt" | sed -n 1p)
  image=${image//\$\{PROJECT_VERSION\}/$version}
fi
# shellcheck disable=SC2016 # a literal ${ left over means the version was not found
case $image in
  ''|*'${'*|*' '*) die "cannot tell the default debug image (got '$image'): set KDIAG_DEFAULT_IMAGE" ;;
esac

# Dockerfile.release copies the binaries of the build directory, with the libraries of a
# Debian 12 container: only right when they were built on Debian 12. Elsewhere build from source.
if [ "$dockerfile" = auto ]; then
  dockerfile=source
  # shellcheck disable=SC1091 # the machine's own file
  if [ -r /etc/os-release ] && (. /etc/os-release && [ "${ID:-}" = debian ] && [ "${VERSION_ID:-}" = 12 ]); then
    dockerfile=release
  fi
fi

# --- state and cleanup ----------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kdiag-kind-e2e.$$.XXXXXX")
kubeconfig=$tmp/kubeconfig
created=0
cluster=${KDIAG_KIND_CLUSTER:-kdiag-e2e-$$}
child=
child_sig=TERM

# bounded SECONDS CMD...: runs CMD with a time limit, in the background so that Ctrl-C or a TERM
# of this script interrupts the wait at once (bash runs traps only between foreground commands).
# timeout(1) passes the signal on to CMD's whole process group.
bounded() {
  local limit=$1 rc=0
  shift
  timeout --signal="$child_sig" --kill-after=30 "$limit" "$@" &
  child=$!
  wait "$child" || rc=$?
  child=
  return "$rc"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$child" ]; then
    kill -s "$child_sig" "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  if [ "$rc" -ne 0 ] && [ -s "$kubeconfig" ]; then
    log "failed ($rc); cluster state:"
    KUBECONFIG=$kubeconfig timeout 30 "$KUBECTL" get pods -A -o wide >&2
    KUBECONFIG=$kubeconfig timeout 30 "$KUBECTL" get events -n "$NS" --sort-by=.lastTimestamp >&2
    if [ -n "${KDIAG_KIND_LOGS:-}" ]; then
      timeout 120 "$KIND" export logs "$KDIAG_KIND_LOGS" --name "$cluster" >&2
    fi
  fi
  if [ "$keep" = 1 ]; then
    log "kept cluster '$cluster': export KUBECONFIG=$kubeconfig"
  elif [ "$created" = 1 ]; then
    log "deleting cluster '$cluster'"
    timeout 180 "$KIND" delete cluster --name "$cluster" --kubeconfig "$kubeconfig" >&2 \
      || log "could not delete cluster '$cluster': run kind delete cluster --name $cluster"
  elif [ -s "$kubeconfig" ]; then
    KUBECONFIG=$kubeconfig timeout 60 "$KUBECTL" delete namespace "$NS" "$PSA_NS" \
      --ignore-not-found --wait=false >/dev/null
  fi
  [ "$keep" = 1 ] || rm -rf "$tmp"
  # 77 means "skipped" to ctest: a failure must never look like one
  if [ "$rc" -eq $SKIP ]; then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

k() { KUBECONFIG=$kubeconfig "$KUBECTL" "$@"; }

# --- cluster ----------------------------------------------------------------------------------------
if [ -n "${KDIAG_KIND_CLUSTER:-}" ]; then
  # no grep -q: it stops reading early, and pipefail would then see kind's SIGPIPE
  "$KIND" get clusters 2>/dev/null | grep -x -- "$cluster" >/dev/null \
    || die "KDIAG_KIND_CLUSTER='$cluster' is not a kind cluster here (kind get clusters)"
  "$KIND" get kubeconfig --name "$cluster" >"$kubeconfig"
  log "using the existing cluster '$cluster'"
else
  log "creating cluster '$cluster'${KIND_NODE_IMAGE:+ from $KIND_NODE_IMAGE}"
  created=1
  node_image=()
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then node_image=(--image "$KIND_NODE_IMAGE"); fi
  bounded 420 "$KIND" create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 300s \
    ${node_image[@]+"${node_image[@]}"} >&2
fi

# --- images -------------------------------------------------------------------------------------------
# The same script as every other build of the debug image (Docker with BuildKit here).
log "building $image ($dockerfile)"
bounded 1500 "$REPO/scripts/image.sh" --engine docker --build-dir "$build" --tag "$image" "$dockerfile" >&2

# buildx --load puts the result in the local store.
build_image() { # TAG CONTEXT [docker build args...]
  local tag=$1 ctx=$2
  shift 2
  log "building $tag"
  bounded 1500 "$DOCKER" buildx build --load -t "$tag" "$@" "$ctx" >&2
}

dctx=$tmp/distroless-context
mkdir -p "$dctx"
cp -L "$build/images/hello-server" "$dctx/hello-server"
printf 'FROM %s\nCOPY hello-server /hello-server\nENTRYPOINT ["/hello-server"]\n' \
  "$DISTROLESS_BASE" >"$dctx/Dockerfile"
build_image "$DISTROLESS_IMAGE" "$dctx"

log "loading $image and $DISTROLESS_IMAGE into '$cluster'"
bounded 300 "$KIND" load docker-image "$image" "$DISTROLESS_IMAGE" --name "$cluster" >&2

# The tests read the nftables rules of a pod's network namespace with the node's nft
# (docker exec NODE nsenter --net=/proc/PID/ns/net nft list ruleset).
mapfile -t nodes < <("$KIND" get nodes --name "$cluster")
[ ${#nodes[@]} -gt 0 ] || die "kind get nodes --name $cluster lists no node"
for node in "${nodes[@]}"; do
  if ! "$DOCKER" exec "$node" sh -c 'command -v nft' >/dev/null 2>&1; then
    log "installing nftables in node $node (its image has no nft)"
    bounded 300 "$DOCKER" exec "$node" sh -c \
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables' \
      >/dev/null || die "could not install nftables in node $node"
  fi
done

# --- workload -----------------------------------------------------------------------------------------
# Pods created right after their namespace can race its default ServiceAccount: retry the apply.
applied=0
for _ in $(seq 1 15); do
  if k apply -f "$HERE/manifests.yaml" >"$tmp/apply.log" 2>&1; then applied=1; break; fi
  sleep 2
done
[ "$applied" = 1 ] || { cat "$tmp/apply.log" >&2; die "kubectl apply -f manifests.yaml failed"; }
log "waiting for the pods"
bounded 320 "$KUBECTL" --kubeconfig "$kubeconfig" wait --for=condition=Ready pod --all -n "$NS" --timeout=300s >&2
bounded 140 "$KUBECTL" --kubeconfig "$kubeconfig" wait --for=condition=Ready pod --all -n "$PSA_NS" --timeout=120s >&2
# DNS and the Service work once the curl pod gets nginx's page.
deadline=$((SECONDS + 120))
until k logs -n "$NS" curl -c curl --tail=5 2>/dev/null | grep 'Welcome to nginx' >/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    k logs -n "$NS" curl -c curl --tail=5 >&2 || true
    die "the curl pod did not get http://nginx/ within 120s (cluster DNS or the Service does not work)"
  fi
  sleep 2
done

# --- the tests ------------------------------------------------------------------------------------------
log "running test_kind.py (kubectl: $KUBECTL, kubectl-diag: $CLI, debug image: $image)"
cd "$HERE"
# SIGINT, not TERM, on a timeout or Ctrl-C: pytest then runs its teardown (stops the CLIs it started)
child_sig=INT
export KDIAG_KIND_KUBECONFIG="$kubeconfig" KDIAG_KIND_CLUSTER="$cluster" KDIAG_KIND_NAMESPACE="$NS" \
  KDIAG_KIND_BASELINE_NAMESPACE="$PSA_NS" KDIAG_CLI="$CLI" KUBECTL="$KUBECTL" DOCKER="$DOCKER" \
  PYTHONDONTWRITEBYTECODE=1
bounded "${KDIAG_KIND_PYTEST_TIMEOUT:-1200}" \
  "$PYTHON" -m pytest -q -p no:cacheprovider "$HERE/test_kind.py" ${pytest_args[@]+"${pytest_args[@]}"}
