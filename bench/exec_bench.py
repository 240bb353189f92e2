#!/usr/bin/python3
"""kubectl diag shell/exec (the manager's Exec over kubectl port-forward) against kubectl exec into
the same debug container, on the simulated cluster, alternated in one run:

  rtt   `kubectl diag shell pod/distroless -- -c true` against
        `kubectl exec distroless -c <debug container> -- /usr/local/bin/ash -c true` (manager present)
  bulk  N MiB of output: `kubectl diag exec --tools pod/distroless -- head -c N /dev/zero` against
        kubectl exec running the same applet

  bench/exec_bench.py [--build DIR] [--runs N] [--mb N]
As root (the simulated cluster). Prints one line per measurement and the ratios."""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'test', 'e2e', 'cli'))
sys.dont_write_bytecode = True


def timed(argv, env, want_bytes=None):
    """Seconds argv took; its stdout must hold want_bytes bytes when given."""
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    secs = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert want_bytes is None or len(r.stdout) == want_bytes, (len(r.stdout), r.stderr)
    return secs


def fmt(xs):
    return ' '.join('%.2f' % x for x in xs)


def run(c, cli, a):
    assert c.diag('shell', 'pod/distroless', '--', '-c', 'true').returncode == 0   # the manager
    ctr = c.pod('distroless')['spec']['ephemeralContainers'][0]['name']
    env = c.env()
    kexec = ['kubectl', 'exec', 'distroless', '-c', ctr, '--', '/usr/local/bin/ash', '-c']
    diag, kube = [], []
    for _ in range(a.runs):
        diag.append(timed([cli, 'shell', 'pod/distroless', '--', '-c', 'true'], env))
        kube.append(timed(kexec + ['true'], env))
    med = statistics.median
    print('rtt   kubectl diag shell -- -c true : median %.3f s (runs: %s)' % (med(diag), fmt(diag)))
    print('rtt   kubectl exec ... ash -c true  : median %.3f s (runs: %s)' % (med(kube), fmt(kube)))
    print('ratio diag shell / kubectl exec round trip: %.2f (goal <= 1)' % (med(diag) / med(kube)))

    n = a.mb << 20
    diag, kube = [], []
    for _ in range(a.runs):
        diag.append(n / timed([cli, 'exec', '--tools', 'pod/distroless', '--', 'head', '-c', str(n), '/dev/zero'],
                              env, n) / 1e6)
        kube.append(n / timed(kexec + ['head -c %d /dev/zero' % n], env, n) / 1e6)
    print('bulk  kubectl diag exec, %d MiB stdout : median %.1f MB/s (runs: %s)' % (a.mb, med(diag), fmt(diag)))
    print('bulk  kubectl exec, %d MiB stdout      : median %.1f MB/s (runs: %s)' % (a.mb, med(kube), fmt(kube)))
    print('ratio diag exec / kubectl exec throughput: %.2f' % (med(diag) / med(kube)))
    print('load average after: %s' % open('/proc/loadavg').read().split(' ', 3)[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.path.join(REPO, 'build'))
    ap.add_argument('--runs', type=int, default=11)
    ap.add_argument('--mb', type=int, default=64)
    a = ap.parse_args()
    os.environ['KDIAG_CLI'] = cli = os.path.join(os.path.realpath(a.build), 'cli', 'kubectl-diag')
    os.environ.setdefault('KUBESIM_IMAGES', os.path.join(os.path.realpath(a.build), 'images', 'images.json'))
    import conftest

    class Req:
        fins = []

        def addfinalizer(self, f):
            self.fins.append(f)
    req = Req()
    c = conftest.start_cluster(req, [conftest.DEMO])
    try:
        run(c, cli, a)
    finally:
        for f in req.fins:
            f()


if __name__ == '__main__':
    main()
