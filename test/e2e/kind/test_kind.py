"""kubectl-diag end to end on a real Kubernetes cluster (kind): the scenarios of test/e2e/cli/
through the real kubectl and the real kubectl-diag, with real images (nginx, curl, a distroless
server), real kube-proxy Services and DNS, and the nftables rules the node's kernel reports.

run.sh creates the cluster, loads the images, applies manifests.yaml and sets
KDIAG_KIND_KUBECONFIG, KDIAG_KIND_NAMESPACE, KDIAG_KIND_BASELINE_NAMESPACE, KDIAG_CLI, KUBECTL
and DOCKER. Without KDIAG_KIND_KUBECONFIG this module is skipped."""
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

# The helpers of the simulated-cluster suites (test/e2e/e2e_common.py); local_http is a fixture.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), '..'))
import e2e_common  # noqa: E402
from e2e_common import (CONN_CLIENT, Background, EchoServer, children, closing_all,  # noqa: E402,F401
                        cmdline, free_port, grpc_forwards, local_http, prefixed, redirect_rules)

KUBECONFIG = os.environ.get('KDIAG_KIND_KUBECONFIG')
# Every test is skipped (pytest exits 0) without the cluster run.sh makes. A module-level
# pytest.skip() would collect nothing, and pytest exits 5 ("no tests collected") for that.
pytestmark = pytest.mark.skipif(not KUBECONFIG, reason='KDIAG_KIND_KUBECONFIG is not set: run '
                                'test/e2e/kind/run.sh (needs Docker and kind)')

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.realpath(os.path.join(HERE, '..', '..', '..'))
NS = os.environ.get('KDIAG_KIND_NAMESPACE', 'kdiag-e2e')
PSA_NS = os.environ.get('KDIAG_KIND_BASELINE_NAMESPACE', 'kdiag-e2e-baseline')
CLI = os.environ.get('KDIAG_CLI') or os.path.join(REPO, 'build', 'cli', 'kubectl-diag')
KUBECTL = os.environ.get('KUBECTL') or shutil.which('kubectl') or 'kubectl'
DOCKER = os.environ.get('DOCKER', 'docker')
DEFAULT_LIMIT = 240  # seconds per test unless @limit says otherwise


def limit(seconds):
    """Per-test time limit (enforced by the autouse fixture below)."""
    def deco(f):
        f.time_limit = seconds
        return f
    return deco


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit(request):
    seconds = getattr(request.function, 'time_limit', DEFAULT_LIMIT)

    def expired(signum, frame):
        raise TimeLimitExceeded('%s took longer than its %ds limit' % (request.node.name, seconds))
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# A real cluster: poll kubectl less often than on the simulated one.
wait_for = functools.partial(e2e_common.wait_for, interval=0.5)


class Cluster:
    def env(self):
        env = dict(os.environ, KUBECONFIG=KUBECONFIG, NO_COLOR='1', KUBECTL=KUBECTL)
        return env

    def kubectl(self, *args, ns=NS, timeout=60, input=None):
        argv = [KUBECTL] + (['-n', ns] if ns else []) + list(args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env(),
                              input=input)

    def ok(self, *args, **kw):
        r = self.kubectl(*args, **kw)
        assert r.returncode == 0, 'kubectl %s failed (%d):\n%s%s' % (' '.join(args), r.returncode,
                                                                     r.stdout, r.stderr)
        return r.stdout

    def diag(self, *args, ns=NS, timeout=150, input=None):
        """Runs kubectl-diag to completion."""
        return subprocess.run([CLI, '-n', ns] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=self.env(), input=input)

    def pod(self, name, ns=NS):
        return json.loads(self.ok('get', 'pod', name, '-o', 'json', ns=ns))

    def wait_ready(self, name, ns=NS, timeout=180):
        self.ok('wait', '--for=condition=Ready', 'pod/' + name, '--timeout=%ds' % timeout, ns=ns,
                timeout=timeout + 15)

    def logs(self, pod, container):
        return self.ok('logs', pod, '-c', container).splitlines()

    def saw(self, pod, container, text, after=0):
        return any(text in l for l in self.logs(pod, container)[after:])

    def exec_in(self, pod, container, argv, input=None, timeout=60):
        return self.kubectl('exec', '-i', pod, '-c', container, '--', *argv, input=input, timeout=timeout)

    def node_exec(self, node, argv, timeout=30):
        r = subprocess.run([DOCKER, 'exec', node] + argv, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, 'docker exec %s %s failed (%d): %s' % (node, ' '.join(argv),
                                                                        r.returncode, r.stderr)
        return r.stdout

    def container_pid(self, name, ns=NS):
        """The node and the node-side pid of the pod's first container (crictl inspect)."""
        p = self.pod(name, ns)
        node = p['spec']['nodeName']  # a kind node is the Docker container of that name
        cid = p['status']['containerStatuses'][0]['containerID'].split('://', 1)[1]
        return node, json.loads(self.node_exec(node, ['crictl', 'inspect', cid]))['info']['pid']

    def pod_ruleset(self, name, ns=NS):
        """nft list ruleset in the pod's network namespace, as its node's kernel reports it."""
        node, pid = self.container_pid(name, ns)
        return self.node_exec(node, ['nsenter', '--net=/proc/%d/ns/net' % pid, 'nft', 'list', 'ruleset'])


@pytest.fixture(scope='module')
def cluster():
    c = Cluster()
    for p in ('nginx', 'curl', 'distroless', 'client'):
        c.wait_ready(p, timeout=120)
    return c


@pytest.fixture
def bg():
    """kubectl-diag processes started by a test; stopped at the end whatever happens."""
    # close(): SIGINT first, so that it removes its redirects from the pods
    yield from closing_all(lambda *args: Background(
        [CLI, '-n', NS] + list(args), Cluster().env(), 'kdiag-kind-bg-%d-' % os.getpid(),
        wait_timeout=120, interrupt_timeout=60, close_grace=20))


# The conn_client.py the simulated-cluster suite runs on its node, sent to python3 in the client pod.
with open(CONN_CLIENT) as _f:
    CONN_CLIENT_SOURCE = _f.read()


# --- ps --------------------------------------------------------------------------------------------

def test_ps_lists_nginx_listener(cluster):
    r = cluster.diag('ps', '-l', 'app=nginx')
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert lines[0].split() == ['PID', 'PPID', 'NAME', 'LISTEN'], r.stdout
    assert any(re.search(r':80(?!\d)', l.split()[-1]) for l in lines[1:]), r.stdout
    assert any(l.split()[2].startswith('nginx') for l in lines[1:]), r.stdout
    assert 'kdiag-manager' not in r.stdout  # the manager does not list itself


# --- redir -----------------------------------------------------------------------------------------

def test_incoming_reaches_local_server_and_ctrl_c_removes_rules(cluster, bg, local_http):
    srv = local_http()
    r = bg('redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80 → localhost:%d (incoming)' % srv.port)
    rules = redirect_rules(cluster.pod_ruleset('nginx'))
    assert any('dport 80' in l and 'redirect' in l for l in rules), rules
    mark = len(cluster.logs('curl', 'curl'))
    # the curl pod fetches http://nginx/ (the Service) every second: its log shows the local answer
    wait_for(lambda: cluster.saw('curl', 'curl', srv.marker, mark), 60,
             what="the curl pod's log to show the local server's answer")
    assert any(h.startswith('nginx') for _, h, _ in srv.requests), srv.requests
    assert re.search(r'pod:80 ← [0-9a-fA-F.:\[\]]+:\d+ ⇒ localhost:%d' % srv.port, r.err()), r.err()
    assert r.interrupt() == 0, r.err()
    # Ctrl-C: no rule left in the pod's namespace, and nginx answers the curl pod again
    assert redirect_rules(cluster.pod_ruleset('nginx')) == []
    mark = len(cluster.logs('curl', 'curl'))
    wait_for(lambda: cluster.saw('curl', 'curl', 'Welcome to nginx', mark), 60, what='nginx to answer again')


def test_outgoing_reaches_local_server(cluster, bg, local_http):
    srv = local_http()
    svc_ip = cluster.ok('get', 'service', 'nginx', '-o', 'jsonpath={.spec.clusterIP}').strip()
    nginx_ip = cluster.pod('nginx')['status']['podIP']
    r = bg('redir', '--outgoing', '-l', 'app=curl', '80:%d' % srv.port)
    r.wait_out('redirecting pod/curl:80 → localhost:%d (outgoing)' % srv.port)
    wait_for(lambda: srv.requests, 60, what="the curl pod's request at the local server")
    path, host, _ = srv.requests[0]
    assert path == '/' and host.startswith('nginx'), srv.requests[0]
    # the pod dials the Service's address (kube-proxy translates it later, on the node)
    dest = r'pod → (%s|%s):80 \(from ' % (re.escape(svc_ip), re.escape(nginx_ip))
    wait_for(lambda: re.search(dest, r.err()), 20, what='the connection line naming the destination')
    mark = len(cluster.logs('curl', 'curl'))
    wait_for(lambda: cluster.saw('curl', 'curl', srv.marker, mark), 60, what='curl to log the local answer')
    assert r.interrupt() == 0, r.err()
    assert redirect_rules(cluster.pod_ruleset('curl')) == []


def test_all_listening_ports(cluster, bg, local_http):
    port = free_port()  # free here; the pod's server listens on the same number
    name = 'allports-%d' % os.getpid()
    image = cluster.pod('distroless')['spec']['containers'][0]['image']
    cluster.ok('run', name, '--image=' + image, '--image-pull-policy=Never', '--restart=Never', '--', str(port))
    try:
        cluster.wait_ready(name)
        wait_for(lambda: re.search(r':%d(?!\d)' % port, cluster.diag('ps', 'pod/' + name).stdout), 60,
                 what='the server to listen on %d' % port)
        srv = local_http(port)
        r = bg('redir', 'pod/' + name)
        r.wait_out('redirecting pod/%s:%d → localhost:%d (incoming)' % (name, port, port))
        ip = cluster.pod(name)['status']['podIP']
        got = cluster.exec_in('curl', 'curl', ['curl', '-sS', '-m', '10', 'http://%s:%d/x' % (ip, port)])
        assert srv.marker in got.stdout, got.stdout + got.stderr
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false', '--ignore-not-found')


@limit(420)
def test_200_concurrent_connections_intact(cluster, bg):
    with EchoServer() as echo:
        port = echo.port
        r = bg('redir', 'pod/distroless', '8080:%d' % port)
        r.wait_out('redirecting pod/distroless:8080')
        ip = cluster.pod('distroless')['status']['podIP']
        # 90 s per connect and for all 200 to be open (a real cluster's port-forward is slower)
        res = cluster.exec_in('client', 'client', ['python3', '-', ip, '8080', '200', '32768', '90'],
                              input=CONN_CLIENT_SOURCE, timeout=300)
        assert res.returncode == 0 and 'ok 200/200' in res.stdout, res.stdout + res.stderr
        wait_for(lambda: r.err().count('pod:8080 ← ') >= 200, 30, what='200 connection lines')
        assert r.interrupt() == 0, r.err()


def test_port_forward_killed_is_recovered(cluster, bg, local_http):
    srv = local_http()
    r = bg('redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    wait_for(lambda: srv.requests, 60, what='the first redirected request')
    pf = grpc_forwards(r.proc.pid)
    assert len(pf) == 1, [cmdline(p) for p in children(r.proc.pid)]
    os.kill(pf[0], signal.SIGKILL)
    r.wait_out('re-established pod/nginx:80', timeout=90)
    assert 'restarting it' in r.err(), r.err()
    new_pf = grpc_forwards(r.proc.pid)
    assert len(new_pf) == 1 and new_pf != pf, new_pf
    n = len(srv.requests)
    wait_for(lambda: len(srv.requests) > n, 60, what='requests after the restart')
    assert r.interrupt() == 0, r.err()
    assert redirect_rules(cluster.pod_ruleset('nginx')) == []


def test_pod_deleted_mid_redirect_exits_non_zero(cluster, bg, local_http):
    srv = local_http()
    name = 'victim-%d' % os.getpid()
    image = cluster.pod('nginx')['spec']['containers'][0]['image']
    cluster.ok('run', name, '--image=' + image, '--restart=Never')
    try:
        cluster.wait_ready(name)
        r = bg('redir', 'pod/' + name, '80:%d' % srv.port)
        r.wait_out('redirecting pod/%s:80' % name)
        cluster.ok('delete', 'pod', name, '--wait=false')
        code = r.proc.wait(150)
        assert code == 1, (code, r.err())
        assert re.search(r'pod/%s is (gone|being deleted|no longer running)' % name, r.err()), r.err()
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false', '--ignore-not-found')


# --- shell -----------------------------------------------------------------------------------------

def test_shell_top_in_distroless_shows_its_binary(cluster):
    r = cluster.diag('shell', 'pod/distroless', '--', '-c', 'ls /; top -n 1')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'hello-server' in r.stdout.split()   # ls / of the distroless image
    assert '/hello-server' in r.stdout          # its process in top
    assert 'kdiag-manager' not in r.stdout.split('Mem:')[0]  # ls / shows the target's root


def test_shell_exit_code_is_the_remote_one(cluster):
    r = cluster.diag('shell', '-l', 'app=distroless', '--', '-c', 'exit 7')
    assert r.returncode == 7, r.stdout + r.stderr


# --- logs ------------------------------------------------------------------------------------------

def test_logs_of_two_pods_while_a_command_runs(cluster):
    r = cluster.diag('logs', '-l', 'app=nginx', '-l', 'app=curl:curl', '-d', '1500ms', '--',
                     'sh', '-c', 'echo command-output; sleep 3; exit 3', timeout=120)
    assert r.returncode == 3, r.stderr
    assert 'command-output' in r.stdout.splitlines()
    curl = prefixed(r.stdout, 'curl', 'curl')
    nginx = prefixed(r.stdout, 'nginx', 'nginx')
    assert len(curl) >= 2, r.stdout       # one request a second for ~4.5 s
    assert len(nginx) >= 2, r.stdout      # nginx's access log has each of them
    assert all('GET http://nginx/' in l for l in curl), curl
    assert any('"GET / HTTP/1.1"' in l for l in nginx), nginx
    assert '\033[' not in r.stdout        # NO_COLOR


# --- Pod Security admission ------------------------------------------------------------------------

def test_pod_security_baseline_says_profile_and_fix(cluster):
    r = cluster.diag('redir', 'pod/web', '80:8080', ns=PSA_NS)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'Pod Security "baseline"' in r.stderr, r.stderr
    assert 'NET_ADMIN' in r.stderr, r.stderr
    assert ('kubectl label namespace %s pod-security.kubernetes.io/enforce=privileged' % PSA_NS) in r.stderr
    assert not cluster.pod('web', PSA_NS)['spec'].get('ephemeralContainers')  # nothing was added


def test_pod_security_privileged_flag_is_refused_too(cluster):
    r = cluster.diag('shell', 'pod/web', '--privileged', '--', '-c', 'true', ns=PSA_NS)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'Pod Security "baseline"' in r.stderr and 'privileged' in r.stderr, r.stderr
