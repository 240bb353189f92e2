"""Helpers shared by kubectl-diag's end-to-end suites: test/e2e/cli (simulated cluster),
test/e2e/kind (real cluster) and test/e2e/kubesim/tests. Each imports this module after putting
test/e2e on sys.path (relative to its own __file__); nothing here knows which cluster it runs on."""
import http.server
import json
import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.realpath(__file__))
KUBESIM = os.path.join(HERE, 'kubesim', 'kubesim')
# N concurrent length-prefixed echo connections (see its docstring). The simulated-cluster suite
# runs this file on the node; the kind suite sends its text to python3 in the client pod.
CONN_CLIENT = os.path.join(HERE, 'conn_client.py')


def wait_for(pred, timeout=30, interval=0.2, what='condition'):
    """pred()'s first true value, polled every interval seconds; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def recv_all(sock, bufsize=65536):
    """Everything sock receives until the peer ends its stream."""
    data = bytearray()
    while True:
        chunk = sock.recv(bufsize)
        if not chunk:
            return bytes(data)
        data += chunk


class FdExpect:
    """Reads fd (e.g. a pty master) until a token appears; everything read stays in .buf."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b''

    def expect(self, token, timeout=20):
        deadline = time.monotonic() + timeout
        while token not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, 'no %r in %r' % (token, self.buf[-2000:])
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the pty's other side is closed
                    chunk = b''
                assert chunk, 'end of output before %r; output %r' % (token, self.buf[-2000:])
                self.buf += chunk


def kubesim_up(request, prefix, images, manifests, users=None, extra_args=(), env=None):
    """Starts a simulated cluster (kubesim up) in a new state dir /tmp/<prefix>...; kubesim down
    at the end of request's scope removes it (it is kept, and named, when down fails).
    images: the image store's path, or a function that makes one in the state dir and returns its
    path. users: API users with their RBAC rules. env: added to kubesim's environment.
    Returns the state dir."""
    state = tempfile.mkdtemp(prefix=prefix, dir='/tmp')
    os.chmod(state, 0o755)

    def down():
        r = subprocess.run([KUBESIM, 'down', '--state', state], capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print('kubesim down failed; state kept in %s:\n%s%s' % (state, r.stdout, r.stderr))
    request.addfinalizer(down)
    argv = [KUBESIM, 'up', '--state', state, '--images', images(state) if callable(images) else images,
            '--wait', '120']
    for m in manifests:
        argv += ['--manifest', m]
    argv += list(extra_args)
    if users:
        path = os.path.join(state, 'test-users.json')
        with open(path, 'w') as f:
            json.dump({'users': users}, f)
        argv += ['--users', path]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=dict(os.environ, **(env or {})))
    log = ''
    if r.returncode != 0:
        try:
            with open(os.path.join(state, 'kubesim.log')) as f:
                log = f.read()[-4000:]
        except OSError:
            pass
    assert r.returncode == 0, 'kubesim up failed:\n%s%s\n--- server log ---\n%s' % (r.stdout, r.stderr, log)
    return state


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redirect_rules(ruleset):
    return [l.strip() for l in ruleset.splitlines() if 'dport' in l]


def children(pid):
    """Direct children of pid (scans /proc: works without CONFIG_PROC_CHILDREN)."""
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode()
    except OSError:
        return ''


def forwards_to(pod, pids=None):
    """The kubectl port-forwards to pod among pids (default: every process)."""
    if pids is None:
        pids = [int(d) for d in os.listdir('/proc') if d.isdigit()]
    return [p for p in pids if 'port-forward' in cmdline(p) and 'pod/%s ' % pod in cmdline(p)]


def grpc_forwards(pid):
    """kubectl diag redir's port-forwards that carry gRPC (its two ports: gRPC and tunnel); those of
    the tunnel connections' pool carry the tunnel port alone."""
    return [p for p in children(pid) if 'port-forward' in cmdline(p) and cmdline(p).split()[-3].startswith('pod/')]


def prefixed(out, pod, container):
    """The lines of kubectl-diag logs output that came from pod/container."""
    return [l for l in out.splitlines() if l.startswith('[%s/%s] ' % (pod, container))]


def closing_all(make):
    """Fixture body: yields make (same arguments) that remembers what it made, then closes it all."""
    made = []

    def start(*args, **kw):
        x = make(*args, **kw)
        made.append(x)
        return x
    yield start
    for x in made:
        x.close()


class Background:
    """A kubectl-diag process (argv) with stdout and stderr to files, readable while it runs.
    close() kills it at once, or with close_grace sends SIGINT first (so it removes its redirects)
    and kills it only if it is still there after that many seconds."""

    def __init__(self, argv, env, prefix, wait_timeout=60, interrupt_timeout=30, close_grace=None):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.out_path = os.path.join(self.dir, 'out')
        self.err_path = os.path.join(self.dir, 'err')
        self.wait_timeout = wait_timeout
        self.interrupt_timeout = interrupt_timeout
        self.close_grace = close_grace
        with open(self.out_path, 'w') as out, open(self.err_path, 'w') as err:
            self.proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env,
                                         stdin=subprocess.DEVNULL)

    def out(self):
        with open(self.out_path) as f:
            return f.read()

    def err(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_out(self, text, timeout=None):
        def seen():
            if text in self.out():
                return True
            if self.proc.poll() is not None:
                raise AssertionError('kubectl-diag exited %s before printing %r:\n%s%s' % (
                    self.proc.returncode, text, self.out(), self.err()))
            return False
        wait_for(seen, timeout or self.wait_timeout, what=repr(text))

    def interrupt(self, timeout=None):
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout or self.interrupt_timeout)

    def close(self):
        if self.proc.poll() is None:
            if self.close_grace:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(self.close_grace)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


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
    """local_http(port=0) starts a LocalHTTP; all are closed at the end of the test."""
    yield from closing_all(LocalHTTP)


class _Echo(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512


class _EchoHandler(socketserver.BaseRequestHandler):
    """Length-prefixed echo: 4-byte big-endian length, that many bytes back, then wait for close."""

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            b = self.request.recv(min(65536, n - len(buf)))
            if not b:
                return None
            buf += b
        return bytes(buf)

    def handle(self):
        try:
            hdr = self.recv_exact(4)
            body = hdr and self.recv_exact(int.from_bytes(hdr, 'big'))
            if body:
                self.request.sendall(body)
                self.recv_exact(1)  # until the client closes
        except OSError:
            pass


class EchoServer:
    """The length-prefixed echo server conn_client.py talks to, on 127.0.0.1 (a context manager)."""

    def __init__(self):
        self.srv = _Echo(('127.0.0.1', 0), _EchoHandler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
