"""Fixtures of the kubectl-diag e2e suite: a simulated cluster (test/e2e/kubesim) per test file,
driven through the real kubectl by the real kubectl-diag binary.

Environment (set by CMakeLists.txt): KDIAG_CLI (kubectl-diag), KUBESIM_IMAGES (image store)."""
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.realpath(os.path.join(HERE, '..', '..', '..'))
KUBESIM = os.path.join(REPO, 'test', 'e2e', 'kubesim', 'kubesim')
DEMO = os.path.join(REPO, 'test', 'e2e', 'manifests', 'demo.yaml')
SDK = '/usr/lib/google-cloud-sdk/bin'
KUBECTLS = {'default': '/usr/bin/kubectl', '1.27': os.path.join(SDK, 'kubectl.1.27'),
            '1.33': os.path.join(SDK, 'kubectl.1.33')}
CLI = os.environ.get('KDIAG_CLI') or os.path.join(REPO, 'build', 'cli', 'kubectl-diag')
LIMITED_TOKEN = 'limited-%d-0123456789' % os.getpid()
VIEWER_TOKEN = 'viewer-%d-0123456789' % os.getpid()


def images_json():
    return os.environ.get('KUBESIM_IMAGES') or os.path.join(REPO, 'build', 'images', 'images.json')


def wait_for(pred, timeout=30, interval=0.2, what='condition'):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    def __init__(self, state):
        self.state = state
        self.kubeconfig = os.path.join(state, 'kubeconfig')

    def env(self, extra=None):
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, NO_COLOR='1')
        env.pop('KUBECTL', None)
        env.update(extra or {})
        return env

    def kubectl(self, *args, timeout=60, input=None):
        return subprocess.run([KUBECTLS['default']] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=self.env(), input=input)

    def ok(self, *args, **kw):
        r = self.kubectl(*args, **kw)
        assert r.returncode == 0, 'kubectl %s failed (%d):\n%s%s' % (' '.join(args), r.returncode,
                                                                     r.stdout, r.stderr)
        return r.stdout

    def diag(self, *args, timeout=120, input=None, kubectl=None):
        """Runs kubectl-diag to completion."""
        extra = {'KUBECTL': kubectl} if kubectl else None
        return subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env(extra), input=input)

    def diag_bg(self, *args, kubectl=None):
        """Starts kubectl-diag in the background (stdout and stderr to files)."""
        return Background(self, list(args), kubectl)

    def pod(self, name, ns='default'):
        return json.loads(self.ok('get', 'pod', name, '-n', ns, '-o', 'json'))

    def wait_running(self, name, ns='default', timeout=60):
        wait_for(lambda: self.pod(name, ns).get('status', {}).get('phase') == 'Running', timeout,
                 what='pod %s/%s running' % (ns, name))

    def pod_pid(self, name, ns='default'):
        """A host pid of a process in the pod (its pause process): for nsenter --net."""
        uid = self.pod(name, ns)['metadata']['uid']
        with open(os.path.join(self.state, 'runtime', 'pods', uid, 'pause.json')) as f:
            cg = json.load(f)['cgroup']
        with open(os.path.join(cg, 'cgroup.procs')) as f:
            return int(f.read().split()[0])

    def pod_ruleset(self, name, ns='default'):
        pid = self.pod_pid(name, ns)
        r = subprocess.run(['nsenter', '--net=/proc/%d/ns/net' % pid, 'nft', 'list', 'ruleset'],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def node_netns(self):
        with open(os.path.join(self.state, 'runtime', 'state.json')) as f:
            return json.load(f)['netns']

    def in_node(self, argv, timeout=120):
        """Runs argv in the simulated node's network namespace (it routes to the pod IPs)."""
        return subprocess.run(['ip', 'netns', 'exec', self.node_netns()] + argv, capture_output=True,
                              text=True, timeout=timeout)

    def logs_since(self, pod, since_lines=0):
        return self.ok('logs', pod).splitlines()[since_lines:]


class Background:
    def __init__(self, cluster, args, kubectl):
        self.dir = tempfile.mkdtemp(prefix='kdiag-cli-bg-%d-' % os.getpid())
        self.out_path = os.path.join(self.dir, 'out')
        self.err_path = os.path.join(self.dir, 'err')
        extra = {'KUBECTL': kubectl} if kubectl else None
        self.proc = subprocess.Popen([CLI] + args, stdout=open(self.out_path, 'w'),
                                     stderr=open(self.err_path, 'w'), env=cluster.env(extra),
                                     stdin=subprocess.DEVNULL)

    def out(self):
        with open(self.out_path) as f:
            return f.read()

    def err(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_out(self, text, timeout=60):
        def seen():
            if text in self.out():
                return True
            if self.proc.poll() is not None:
                raise AssertionError('kubectl-diag exited %s before printing %r:\n%s%s' % (
                    self.proc.returncode, text, self.out(), self.err()))
            return False
        wait_for(seen, timeout, what=repr(text))

    def interrupt(self, timeout=30):
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_cluster(request, manifests, users=None):
    state = tempfile.mkdtemp(prefix='kdiag-cli-e2e-%d-' % os.getpid(), dir='/tmp')

    def down():
        r = subprocess.run([KUBESIM, 'down', '--state', state], capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print('kubesim down failed; state kept in %s:\n%s%s' % (state, r.stdout, r.stderr))
    request.addfinalizer(down)
    argv = [KUBESIM, 'up', '--state', state, '--images', images_json(), '--wait', '120']
    for m in manifests:
        argv += ['--manifest', m]
    if users:
        path = os.path.join(state, 'test-users.json')
        with open(path, 'w') as f:
            json.dump({'users': users}, f)
        argv += ['--users', path]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, KUBECTL=KUBECTLS['default']))
    assert r.returncode == 0, 'kubesim up failed:\n%s%s' % (r.stdout, r.stderr)
    c = Cluster(state)
    for p in ('nginx', 'curl', 'distroless'):
        c.wait_running(p)
    return c


@pytest.fixture(scope='session')
def cluster(request):
    return start_cluster(request, [DEMO], users=[
        {'name': 'limited', 'token': LIMITED_TOKEN,
         'rules': [{'verbs': ['get', 'list', 'watch'], 'resources': ['pods', 'pods/log', 'pods/ephemeralcontainers'],
                    'namespaces': ['default']},
                   {'verbs': ['update', 'patch'], 'resources': ['pods/ephemeralcontainers'],
                    'namespaces': ['default']}]},
        {'name': 'viewer', 'token': VIEWER_TOKEN,
         'rules': [{'verbs': ['get', 'list', 'watch'], 'resources': ['pods', 'pods/log', 'pods/ephemeralcontainers'],
                    'namespaces': ['default']}]}])


@pytest.fixture
def bg():
    """kubectl-diag processes started by a test; killed at the end whatever happens."""
    procs = []

    def start(cluster, *args, kubectl=None):
        b = cluster.diag_bg(*args, kubectl=kubectl)
        procs.append(b)
        return b
    yield start
    for b in procs:
        b.close()


class LocalHTTP:
    """An HTTP server on 127.0.0.1 that answers with a marker and records the requests."""

    def __init__(self, port=0):
        self.marker = 'local-%d-%d' % (os.getpid(), time.monotonic_ns() % 1000000)
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.0'

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get('Host', ''), self.client_address))
                body = ('%s\n' % outer.marker).encode()
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), H)
        self.port = self.srv.server_address[1]
        self.th = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.th.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def local_http():
    servers = []

    def start(port=0):
        s = LocalHTTP(port)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.close()
