#!/usr/bin/python3
"""kubectl diag shell/exec (the manager's Exec over kubectl port-forward) against kubectl exec into
the same debug container, on the simulated cluster, alternated in one run:

  rtt   `kubectl diag shell pod/distroless -- -c true`, also with a kept forward
        (`KDIAG_KEEP_FORWARD`, cli/keep.h), against
        `kubectl exec distroless -c <debug container> -- /usr/local/bin/ash -c true` (manager present),
        run by the kubectl on PATH and by the server's own client version (this machine's
        /usr/bin/kubectl first asks the server's version to choose one)
  bulk  N MiB of output: `kubectl diag exec --tools pod/distroless -- head -c N /dev/zero` against
        kubectl exec running the same applet
  stdin N MiB of input: `kubectl diag exec -i --tools pod/distroless -- wc -c` against kubectl
        exec -i running the same applet (stdin's window, docs/exec.md)
  floor `kubectl port-forward pod/distroless :GRPC` alone (no kubectl-diag): from its start to its
        "Forwarding from" line, then a connection through it to the manager's first byte (its early
        SETTINGS, docs/rpc.md): what any command that starts a port-forward waits before its first
        call, against kubectl exec's whole round trip

  bench/exec_bench.py [--build DIR] [--runs N] [--mb N] [--delay-ms N]
As root (the simulated cluster). --delay-ms N: both reach the API server through a proxy that holds
each byte N ms each way (test/e2e/cli/delayproxy.py), as a cluster over a network. Prints one line
per measurement and the ratios."""
import os
import re
import socket
import subprocess
import tempfile
import time
from statistics import median as med

from benchlib import delayed, fmt, main, timed, wait_line


def run(c, cli, a):
    with tempfile.TemporaryDirectory(prefix='kdiag-exec-bench-') as d, delayed(c.env(), a.delay_ms, d) as env:
        if a.delay_ms:
            print('the API server %d ms away each way' % a.delay_ms)
        measure(c, cli, a, env)


def measure(c, cli, a, env):
    assert c.diag('shell', 'pod/distroless', '--', '-c', 'true').returncode == 0   # the manager
    ctr = c.pod('distroless')['spec']['ephemeralContainers'][0]['name']
    timed([cli, 'shell', 'pod/distroless', '--', '-c', 'true'], env)   # remembered under this kubeconfig
    kexec = ['kubectl', 'exec', 'distroless', '-c', ctr, '--', '/usr/local/bin/ash', '-c']
    minor = c.ok('version', '-o', 'json').split('"minor": "')[2].split('"')[0]   # the server's
    pinned = '/usr/lib/google-cloud-sdk/bin/kubectl.1.' + minor
    keep = dict(env, KDIAG_KEEP_FORWARD='1m')
    timed([cli, 'shell', 'pod/distroless', '--', '-c', 'true'], keep)   # leaves the keeper
    time.sleep(5)                                                       # its forward comes up
    grpc = int(re.search(r'Listening on [^:]+:(\d+)', c.ok('logs', 'distroless', '-c', ctr)).group(1))
    diag, kept, kube, kpin, listen, first = [], [], [], [], [], []
    for _ in range(a.runs):
        diag.append(timed([cli, 'shell', 'pod/distroless', '--', '-c', 'true'], env))
        kept.append(timed([cli, 'shell', 'pod/distroless', '--', '-c', 'true'], keep))
        kube.append(timed(kexec + ['true'], env))
        if os.path.exists(pinned):
            kpin.append(timed([pinned] + kexec[1:] + ['true'], env))
        t_listen, t_first = forward_floor(env, grpc)
        listen.append(t_listen)
        first.append(t_first)
    print('rtt   kubectl diag shell -- -c true : median %.3f s (runs: %s)' % (med(diag), fmt(diag)))
    print('rtt   the same, kept forward        : median %.3f s (runs: %s)' % (med(kept), fmt(kept)))
    print('rtt   kubectl exec ... ash -c true  : median %.3f s (runs: %s)' % (med(kube), fmt(kube)))
    if kpin:
        print('rtt   kubectl.1.%s exec (pinned)    : median %.3f s (runs: %s)' % (minor, med(kpin), fmt(kpin)))
    floor = [x + y for x, y in zip(listen, first)]
    print('floor kubectl port-forward to listening: median %.3f s (runs: %s)' % (med(listen), fmt(listen)))
    print('floor   then a connection to the manager\'s first byte: median %.3f s (runs: %s)' % (med(first), fmt(first)))
    print('ratio diag shell / kubectl exec round trip: %.2f (goal <= 1)' % (med(diag) / med(kube)))
    print('ratio port-forward floor / kubectl exec round trip: %.2f (> 1: no command through a new port-forward '
          'can match kubectl exec)' % (med(floor) / med(kube)))
    print('      diag shell beyond the floor: %.3f s' % (med(diag) - med(floor)))
    print('ratio diag shell, kept forward / kubectl exec: %.2f' % (med(kept) / med(kube)))
    if kpin:
        print('ratio diag shell, kept forward / pinned kubectl exec: %.2f' % (med(kept) / med(kpin)))

    n = a.mb << 20
    diag, kube = [], []
    for _ in range(a.runs):
        diag.append(n / timed([cli, 'exec', '--tools', 'pod/distroless', '--', 'head', '-c', str(n), '/dev/zero'],
                              env, n) / 1e6)
        kube.append(n / timed(kexec + ['head -c %d /dev/zero' % n], env, n) / 1e6)
    print('bulk  kubectl diag exec, %d MiB stdout : median %.1f MB/s (runs: %s)' % (a.mb, med(diag), fmt(diag)))
    print('bulk  kubectl exec, %d MiB stdout      : median %.1f MB/s (runs: %s)' % (a.mb, med(kube), fmt(kube)))
    print('ratio diag exec / kubectl exec throughput: %.2f' % (med(diag) / med(kube)))

    zeros, count = bytes(n), b'%d\n' % n
    diag, kube = [], []
    for _ in range(a.runs):
        diag.append(n / timed([cli, 'exec', '-i', '--tools', 'pod/distroless', '--', 'wc', '-c'], env,
                              len(count), zeros) / 1e6)
        kube.append(n / timed(['kubectl', 'exec', '-i'] + kexec[2:] + ['wc -c'], env, len(count), zeros) / 1e6)
    print('stdin kubectl diag exec -i, %d MiB : median %.1f MB/s (runs: %s)' % (a.mb, med(diag), fmt(diag)))
    print('stdin kubectl exec -i, %d MiB      : median %.1f MB/s (runs: %s)' % (a.mb, med(kube), fmt(kube)))
    print('ratio diag exec / kubectl exec stdin throughput: %.2f' % (med(diag) / med(kube)))
    print('load average after: %s' % open('/proc/loadavg').read().split(' ', 3)[:3])


def forward_floor(env, grpc):
    """kubectl port-forward to the manager's gRPC port alone: seconds from its start to its
    "Forwarding from" line, and from a connection through it to the manager's first byte."""
    t0 = time.monotonic()
    pf = subprocess.Popen(['kubectl', 'port-forward', 'pod/distroless', ':%d' % grpc], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line, t1 = wait_line(pf, 'Forwarding from 127.0.0.1:')
        with socket.create_connection(('127.0.0.1', int(line.split(':')[1].split()[0])), timeout=60) as s:
            assert s.recv(64), 'the manager closed the connection'
        return t1 - t0, time.monotonic() - t1
    finally:
        pf.terminate()
        pf.wait(30)


if __name__ == '__main__':
    main(run, runs=11, mb=64, delay_ms=0)
