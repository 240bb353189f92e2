#!/usr/bin/python3
"""kubectl diag cp against kubectl cp on the simulated cluster, side by side in one run: the same
file (random bytes, --mb MiB) into and out of the same pod, a busybox pod given a `tar` on its PATH
(kubectl cp needs one; kubectl diag cp does not; rm for the clean-up). Each command end to end, as a user runs it
(kubectl diag cp: pod lookup, the running manager, its port-forward, the copy). Runs alternate.

  bench/cp_bench.py [--build DIR] [--mb N] [--runs N]
As root (the simulated cluster). Prints one line per run and the ratios (kubectl cp's time /
kubectl diag cp's: above 1 means kubectl diag cp is faster)."""
import filecmp
import os
import tempfile
from statistics import median

from benchlib import main, timed

TARBOX = '''apiVersion: v1
kind: Pod
metadata: {name: tarbox}
spec:
  containers:
  - name: tarbox
    image: curl
    env: [{name: PATH, value: /tmp/bin:/bin}]
    command: [sh, -c, 'mkdir -p /tmp/bin && for a in tar rm; do ln -sf /bin/busybox /tmp/bin/$a; done && exec sleep 86400']
'''


def run(c, cli, a):
    c.ok('apply', '-f', '-', input=TARBOX)
    c.wait_running('tarbox')
    env = c.env()
    kubectl = ['/usr/bin/kubectl']
    with tempfile.TemporaryDirectory(prefix='kdiag-cp-bench-') as d:
        src = os.path.join(d, 'src')
        with open(src, 'wb') as f:
            for _ in range(a.mb):
                f.write(os.urandom(1 << 20))
        # the debug container once, outside the measurements (kubectl cp has no such step)
        timed([cli, 'cp', src, 'pod/tarbox:/tmp/warm'], env)
        # the fixed cost of each command: a 1-byte file in and out
        tiny = os.path.join(d, 'tiny')
        with open(tiny, 'wb') as f:
            f.write(b'x')
        fixed = {'kubectl': [], 'diag': []}
        for i in range(a.runs):
            fixed['kubectl'].append(timed(kubectl + ['cp', tiny, 'tarbox:/tmp/tiny'], env) +
                                    timed(kubectl + ['cp', 'tarbox:/tmp/tiny', tiny + '.k'], env))
            fixed['diag'].append(timed([cli, 'cp', tiny, 'pod/tarbox:/tmp/tiny'], env) +
                                 timed([cli, 'cp', 'pod/tarbox:/tmp/tiny', tiny + '.d%d' % i], env))
        print('1 byte in and out: kubectl cp %.2f s, kubectl diag cp %.2f s (medians)' %
              (median(fixed['kubectl']), median(fixed['diag'])), flush=True)
        times = {k: [] for k in ('into kubectl', 'into diag', 'out of kubectl', 'out of diag')}
        for i in range(a.runs):
            times['into kubectl'].append(timed(kubectl + ['cp', src, 'tarbox:/tmp/k%d' % i], env))
            times['into diag'].append(timed([cli, 'cp', src, 'pod/tarbox:/tmp/d%d' % i], env))
            out_k, out_d = os.path.join(d, 'k%d' % i), os.path.join(d, 'd%d' % i)
            times['out of kubectl'].append(timed(kubectl + ['cp', 'tarbox:/tmp/k%d' % i, out_k], env))
            times['out of diag'].append(timed([cli, 'cp', 'pod/tarbox:/tmp/d%d' % i, out_d], env))
            assert filecmp.cmp(src, out_k, shallow=False) and filecmp.cmp(src, out_d, shallow=False)
            os.unlink(out_k)
            os.unlink(out_d)
            c.ok('exec', 'tarbox', '--', 'rm', '-f', '/tmp/k%d' % i, '/tmp/d%d' % i)
            print('run %d: into the pod kubectl cp %.2f s, diag cp %.2f s; out of it kubectl cp %.2f s, '
                  'diag cp %.2f s' % (i, times['into kubectl'][-1], times['into diag'][-1],
                                      times['out of kubectl'][-1], times['out of diag'][-1]), flush=True)
    for way in ('into', 'out of'):
        k, dg = median(times[way + ' kubectl']), median(times[way + ' diag'])
        print('%s the pod, %d MiB: kubectl cp %.2f s (%.0f MB/s), kubectl diag cp %.2f s (%.0f MB/s): '
              'ratio %.2f' % (way, a.mb, k, a.mb * 1.048576 / k, dg, a.mb * 1.048576 / dg, k / dg))


if __name__ == '__main__':
    main(run, mb=256, runs=3)
