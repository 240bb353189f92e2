#!/usr/bin/python3
"""How fast a copy out of the pod could be through `kubectl port-forward` with the cheapest ends
there are, against kubectl cp, side by side in one run on the simulated cluster: 256 MiB (--mb) of
random bytes out of a busybox pod, four ways, alternated:
  kubectl       kubectl cp (tar in the pod, kubectl untars it here)
  diag          kubectl diag cp, file content as it is (KDIAG_CP_ZSTD=0), end to end
  diag kept     the same with KDIAG_KEEP_FORWARD=10m: the port-forward a keeper started for the
                first run (the first run pays for the keeper's start, the others take its forward)
  socat         one socat in the pod's network namespace sending the file to a kubectl port-forward
                started before, one socat here writing it (cp_bench.py's "port-forward" way)
  zero-copy     the same with sendfile(2) in the pod and splice(2) here (socket to pipe to file):
                no copy of the bytes in either end
The zero-copy ends are Python processes started and connected before the clock starts (the
receiver is told to begin on its stdin), so their start is not counted; socat's is, a few ms.
Prints each run, then medians and the ratios (kubectl cp's time / the way's: above 1 is faster
than kubectl cp) with what each way cost the whole machine in CPU-seconds.

  bench/cp_ends_bench.py [--build DIR] [--mb N] [--runs N]
As root (the simulated cluster), with socat and nsenter installed."""
import filecmp
import os
import subprocess
import tempfile
import time
from statistics import median

from benchlib import machine_cpu, main, port_forward, timed
from cp_bench import BARE_PORT, TARBOX, bare, listening

SEND = r'''
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.listen(1)
c, _ = s.accept()
fd = os.open(sys.argv[1], os.O_RDONLY)
size, off = os.fstat(fd).st_size, 0
while off < size:
    off += os.sendfile(c.fileno(), fd, off, size - off)
c.shutdown(socket.SHUT_WR)
c.recv(1)
'''
RECV = r'''
import fcntl, os, socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
sys.stdin.read(1)  # go
while True:
    n = os.splice(c.fileno(), w, 1 << 20)
    if not n:
        break
    while n:
        n -= os.splice(r, fd, n)
os.close(fd)
'''


def zero_copy(pid, src, lport, dst):
    peer = subprocess.Popen(['nsenter', '-t', str(pid), '-n', 'python3', '-c', SEND, src, str(BARE_PORT)])
    here = None
    try:
        deadline = time.monotonic() + 10
        while not listening(peer.pid, BARE_PORT):
            assert peer.poll() is None and time.monotonic() < deadline, 'the sender did not listen'
            time.sleep(0.01)
        here = subprocess.Popen(['python3', '-c', RECV, str(lport), dst], stdin=subprocess.PIPE)
        time.sleep(0.3)  # started and connected: the go below starts the clock
        t0 = time.monotonic()
        here.stdin.write(b'g')
        here.stdin.close()
        assert here.wait(600) == 0 and peer.wait(600) == 0
        return time.monotonic() - t0
    finally:
        for p in (peer, here):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def run(c, cli, a):
    c.ok('apply', '-f', '-', input=TARBOX)
    c.wait_running('tarbox')
    env = c.env()
    with tempfile.TemporaryDirectory(prefix='kdiag-cp-ends-') as d, \
            port_forward(c, 'tarbox', BARE_PORT, dict(env, KUBECTL_PORT_FORWARD_WEBSOCKETS='false')) as lport:
        pid = c.pids_in_pod('tarbox', 'sleep 86400')[0]
        in_pod = '/proc/%d/root/tmp/random' % pid
        src = os.path.join(d, 'random')
        with open(src, 'wb') as f:
            for _ in range(a.mb):
                f.write(os.urandom(1 << 20))
        timed([cli, 'cp', src, 'pod/tarbox:/tmp/random'], env)  # also adds the debug container
        ways = {
            'kubectl': lambda dst: timed(['/usr/bin/kubectl', 'cp', 'tarbox:/tmp/random', dst], env),
            'diag': lambda dst: timed([cli, 'cp', 'pod/tarbox:/tmp/random', dst], dict(env, KDIAG_CP_ZSTD='0')),
            'diag kept': lambda dst: timed([cli, 'cp', 'pod/tarbox:/tmp/random', dst],
                                           dict(env, KDIAG_CP_ZSTD='0', KDIAG_KEEP_FORWARD='10m')),
            'socat': lambda dst: bare(pid, ['OPEN:' + in_pod, 'TCP-LISTEN:%d,reuseaddr' % BARE_PORT],
                                      ['TCP:127.0.0.1:%d' % lport, 'CREATE:' + dst]),
            'zero-copy': lambda dst: zero_copy(pid, in_pod, lport, dst),
        }
        times, cpus = {}, {}
        try:
            measure(a, ways, src, d, times, cpus)
        finally:
            subprocess.run([cli, 'forwards', '--stop'], env=env, capture_output=True, timeout=60)
        k = median(times['kubectl'])
        print('%d MiB of random bytes out of the pod, medians of %d runs:' % (a.mb, a.runs))
        for way in ways:
            t = median(times[way])
            print('  %-9s %.2f s, %.2f CPU-s, ratio %.2f' % (way, t, median(cpus[way]), k / t))


def measure(a, ways, src, d, times, cpus):
    """a.runs rounds of every way, alternated; each copy checked against src."""
    for i in range(a.runs):
        row = []
        for way, copy in ways.items():
            dst = os.path.join(d, 'out')
            c0 = machine_cpu()
            t = copy(dst)
            c1 = machine_cpu()
            assert filecmp.cmp(src, dst, shallow=False), '%s: the copy differs' % way
            os.unlink(dst)
            times.setdefault(way, []).append(t)
            cpus.setdefault(way, []).append(c1 - c0)
            row.append('%s %.2f s (CPU %.2f)' % (way, t, c1 - c0))
        print('run %d: %s' % (i, ', '.join(row)), flush=True)


if __name__ == '__main__':
    main(run, mb=256, runs=6)
