"""What the Python benches share: the simulated cluster they run on (test/e2e/cli/conftest.py's),
running and timing commands, the API server moved away (a delay proxy), local servers and
port-forwards, and the printed figures."""
import argparse
import contextlib
import os
import socketserver
import subprocess
import sys
import threading
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'test', 'e2e', 'cli'))
sys.dont_write_bytecode = True

from delayproxy import delayed_kubeconfig  # noqa: E402 (test/e2e/cli is on the path now)


def main(run, **options):
    """Parses --build DIR and the bench's own options (name=default; the type is the default's),
    starts a simulated cluster with the demo pods for the build's kubectl-diag, calls
    run(cluster, cli, args) and removes the cluster whatever happens (also when its start fails)."""
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.path.join(REPO, 'build'))
    for name, default in options.items():
        ap.add_argument('--' + name.replace('_', '-'), dest=name, type=type(default), default=default)
    a = ap.parse_args()
    build = os.path.realpath(a.build)
    os.environ['KDIAG_CLI'] = cli = os.path.join(build, 'cli', 'kubectl-diag')
    os.environ.setdefault('KUBESIM_IMAGES', os.path.join(build, 'images', 'images.json'))
    import conftest  # reads KDIAG_CLI when imported

    fins = []  # what start_cluster leaves to the pytest request it is given: the cluster's removal
    try:
        run(conftest.start_cluster(types.SimpleNamespace(addfinalizer=fins.append), [conftest.DEMO]), cli, a)
    finally:
        for f in fins:
            f()


def timed(argv, env, want_bytes=None, stdin=None):
    """Seconds argv took to run to success, with stdin (bytes) as its input when given; its stdout
    must hold want_bytes bytes when given."""
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=600)
    secs = time.monotonic() - t0
    assert r.returncode == 0, '%s failed:\n%s' % (' '.join(argv), r.stderr.decode(errors='replace'))
    assert want_bytes is None or len(r.stdout) == want_bytes, (len(r.stdout), r.stderr)
    return secs


def machine_cpu():
    """CPU-seconds this machine has spent so far, every process and the kernel (user, nice, system,
    irq, softirq, steal: /proc/stat's first line less idle and iowait). Its change across a command
    on an otherwise idle machine is what the command cost all the processes it kept busy (here the
    simulated cluster, kubectl and the pod's processes too)."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf('SC_CLK_TCK')


def fmt(xs):
    return ' '.join('%.2f' % x for x in xs)


def wait_line(proc, text, timeout=120):
    """Reads proc.stdout until a line contains text; returns that line and the time it appeared."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if text in line:
            return line, time.monotonic()
        if time.monotonic() > deadline:
            break
    raise RuntimeError('no %r from %s' % (text, proc.args))


@contextlib.contextmanager
def port_forward(c, pod, port, env=None):
    """`kubectl port-forward pod/<pod> :<port>` while in the with block; gives its local port."""
    pf = subprocess.Popen(['kubectl', 'port-forward', 'pod/' + pod, ':%d' % port], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env or c.env())
    try:
        line, _ = wait_line(pf, 'Forwarding from 127.0.0.1:')
        yield int(line.split(':')[1].split()[0])
    finally:
        pf.terminate()
        pf.wait(30)


def serve(handler):
    """A threaded TCP server on 127.0.0.1 (a free port) running handler in the background."""
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 64
    s = Server(('127.0.0.1', 0), handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def send_zeros(sock, nbytes):
    chunk = b'\0' * (1 << 20)
    while nbytes > 0:
        sock.sendall(chunk[:min(nbytes, len(chunk))])
        nbytes -= min(nbytes, len(chunk))


@contextlib.contextmanager
def delayed(env, ms, d):
    """env, with its API server ms away each way (delayed_kubeconfig, its kubeconfig in d) when ms
    is not 0."""
    if not ms:
        yield env
        return
    with delayed_kubeconfig(env['KUBECONFIG'], ms, os.path.join(d, 'kubeconfig')) as kc:
        yield dict(env, KUBECONFIG=kc)
