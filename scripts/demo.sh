#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, starts the local simulated cluster
# (test/e2e/kubesim) with test/e2e/manifests/demo.yaml and shows kubectl diag working:
#   1. kubectl diag ps       on the nginx pod
#   2. kubectl diag redir    nginx:80 -> a local server that prints the curl pod's requests
#   3. kubectl diag shell    in the distroless pod (an image with no shell at all)
#   4. kubectl diag exec, cp and capture, briefly: a busybox applet the pod lacks, a directory
#      copied out of it, a few of its packets
# then tears the cluster down.
#   scripts/demo.sh           the demo
#   scripts/demo.sh --keep    leave the cluster up and print the KUBECONFIG to use
#   scripts/demo.sh --no-build  use the existing build
# KDIAG_BUILD_DIR picks the build directory (default: build).
# As root (the simulated pods are real Linux namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
build=${KDIAG_BUILD_DIR:-build}
keep=0
nobuild=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    --no-build) nobuild=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$a' (use --keep, --no-build or --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (the simulated pods are real namespaces)" >&2; exit 2; }

# bold steps and dim commands on a terminal, plain text otherwise or under NO_COLOR
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'; else bold= dim= off=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; }

step "dependencies (scripts/deps.sh)"
scripts/deps.sh
command -v kubectl >/dev/null || {
  echo "demo.sh: kubectl is not installed: install kubectl 1.27 or newer (it is not a Debian package)" >&2
  exit 1
}

if [ "$nobuild" = 0 ]; then
  step "build"
  cmake -S . -B "$build" >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
fi
[ -x "$build/cli/kubectl-diag" ] || { echo "demo.sh: $build/cli/kubectl-diag is missing: build first" >&2; exit 1; }
build=$(cd "$build" && pwd)
export PATH="$build/cli:$PATH"   # kubectl finds its plugin kubectl-diag here

state=$(mktemp -d /tmp/kdiag-demo.XXXXXX)
srv_pid=""
redir_pid=""
cleanup() {
  [ -n "$redir_pid" ] && kill -INT "$redir_pid" 2>/dev/null && wait "$redir_pid" 2>/dev/null || true
  [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
  if [ "$keep" = 1 ]; then
    printf '\nThe cluster is still up. Use it with:\n  export KUBECONFIG=%s/kubeconfig PATH=%s/cli:$PATH\n' \
      "$state" "$build"
    printf 'and stop it with:\n  %s/test/e2e/kubesim/kubesim down --state %s\n' "$repo" "$state"
  else
    step "tear down"
    test/e2e/kubesim/kubesim down --state "$state" && rm -rf "$state"
  fi
}
trap cleanup EXIT

step "simulated cluster (test/e2e/kubesim) with test/e2e/manifests/demo.yaml"
test/e2e/kubesim/kubesim up --state "$state" --images "$build/images/images.json" \
  --manifest test/e2e/manifests/demo.yaml --wait 120
export KUBECONFIG="$state/kubeconfig"
export XDG_CACHE_HOME="$state/cache" # the sessions kubectl diag remembers go with this cluster
kubectl wait --for=condition=Ready pod/nginx pod/curl pod/distroless --timeout=120s >/dev/null
show kubectl get pods
kubectl get pods

step "ps: the nginx pod's processes and their listening ports"
show kubectl diag ps -l app=nginx
kubectl diag ps -l app=nginx

step "redir: nginx's port 80 to a server on this machine"
port=8989
python3 - "$port" <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    def do_GET(self):
        print('  local server: %s %s from %s (Host: %s)' % (self.command, self.path, self.client_address[0],
              self.headers.get('Host')), flush=True)
        body = b'hello from your laptop\n'
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
EOF
srv_pid=$!
show kubectl diag redir -l app=nginx 80:$port "   # for 6 seconds, then Ctrl-C"
kubectl diag redir -l app=nginx 80:$port &
redir_pid=$!
sleep 6
kill -INT "$redir_pid"; wait "$redir_pid" || true; redir_pid=""
sleep 2   # one more request of the curl pod, answered by nginx again
kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
show kubectl logs curl --tail=8 "   # the curl pod got the laptop's answer, then nginx's again"
kubectl logs curl --tail=8

step "shell: a shell in the distroless pod, whose image is one static binary"
show "kubectl diag shell -l app=distroless -- -c 'ls /; top -b -n 1'"
kubectl diag shell -l app=distroless -- -c 'ls /; top -b -n 1'

step "exec, cp, capture: through the same debug container, still no pods/exec"
show kubectl diag exec --tools pod/distroless -- ls -l /etc
kubectl diag exec --tools pod/distroless -- ls -l /etc
show kubectl diag cp pod/distroless:/etc "$state/etc"
kubectl diag cp pod/distroless:/etc "$state/etc"
ls -l "$state/etc"
show "kubectl diag capture -l app=nginx -i eth0 -f 'tcp port 80' -c 6 -d 15s -w - | tcpdump -lnr -"
kubectl diag capture -l app=nginx -i eth0 -f 'tcp port 80' -c 6 -d 15s -w - | tcpdump -lnr - 2>/dev/null

step "list: the debug containers kubectl diag added"
show kubectl diag list
kubectl diag list
