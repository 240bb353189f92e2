#!/usr/bin/python3
"""kubectl diag cp against kubectl cp on the simulated cluster, side by side in one run: the same
file (--mb MiB) into and out of the same pod, a busybox pod given a `tar` on its PATH (kubectl cp
needs one; kubectl diag cp does not; rm for the clean-up). Two files: random bytes (nothing to
compress) and the first --mb MiB of a tar of /usr/lib (libraries: zstd -1 makes them ~2.7x
smaller). kubectl diag cp runs twice: as it is (file content as zstd where that pays) and with
KDIAG_CP_ZSTD=0 (content as it is). Each command end to end, as a user runs it (kubectl diag cp:
pod lookup, the running manager, its port-forward, the copy). Runs alternate.

  bench/cp_bench.py [--build DIR] [--mb N] [--runs N] [--link-mbit N] [--delay-ms N]
As root (the simulated cluster), with socat and nsenter installed. --link-mbit N: the API server's traffic on loopback goes
through N Mbit/s each way (tc htb classes on lo, removed at the end), as to a
cluster over a network. --delay-ms N: every command reaches the API server through a proxy that
holds each byte N ms each way (test/e2e/cli/delayproxy.py; this kernel has no netem). Prints one line per run and the ratios (kubectl cp's time / kubectl
diag cp's: above 1 means kubectl diag cp is faster), then what each way cost the whole machine in
CPU-seconds (every process: the simulated cluster, kubectl, the CLI, the manager, tar or socat), the
same copies' medians: with 2 cores, a copy that costs more CPU than kubectl cp's can be faster only
where kubectl cp leaves a core idle."""
import contextlib
import filecmp
import os
import subprocess
import tempfile
import time
from statistics import median

from benchlib import delayed, machine_cpu, main, port_forward, timed
from delayproxy import SERVER

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
WAYS = ('kubectl', 'diag', 'diag plain', 'port-forward')
BARE_PORT = 7777  # the pod's port of the "port-forward" way


def make_files(d, mb):
    files = {'random': os.path.join(d, 'random'), 'libraries': os.path.join(d, 'libraries')}
    with open(files['random'], 'wb') as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    with open(files['libraries'], 'wb') as f:
        tar = subprocess.Popen(['tar', 'cf', '-', '/usr/lib'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        left = mb << 20
        while left:
            b = tar.stdout.read(min(left, 1 << 20))
            assert b, 'tar of /usr/lib gave less than %d MiB' % mb
            f.write(b)
            left -= len(b)
        tar.kill()
        tar.wait()
    return files


@contextlib.contextmanager
def link(port, mbit):
    """Traffic to and from 127.0.0.1:port each through its own htb class of mbit Mbit/s (a
    full-duplex link); the rest of lo in a class of 100 Gbit/s."""
    if not mbit:
        yield
        return

    def tc(*args):
        subprocess.run(['tc'] + list(args), check=True, stderr=subprocess.DEVNULL)
    tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '20')
    try:
        tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '100gbit')
        for cls, key in (('1:10', 'dport'), ('1:11', 'sport')):
            tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', cls, 'htb', 'rate', '%dmbit' % mbit,
               'ceil', '%dmbit' % mbit, 'burst', '256kb')
            tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'u32', 'match', 'ip', key, str(port),
               '0xffff', 'flowid', cls)
        yield
    finally:
        subprocess.run(['tc', 'qdisc', 'del', 'dev', 'lo', 'root'], check=False)


def api_port(kubeconfig):
    with open(kubeconfig) as f:
        return int(SERVER.search(f.read()).group(2))


def run(c, cli, a):
    c.ok('apply', '-f', '-', input=TARBOX)
    c.wait_running('tarbox')
    with tempfile.TemporaryDirectory(prefix='kdiag-cp-bench-') as d, link(api_port(c.kubeconfig), a.link_mbit), \
            delayed(c.env(), a.delay_ms, d) as env, \
            port_forward(c, 'tarbox', BARE_PORT, dict(env, KUBECTL_PORT_FORWARD_WEBSOCKETS='false')) as lport:
        copies(c, cli, a, d, env, lport)


def listening(pid, port):
    """Whether a TCP socket listens on port in the network namespace of pid."""
    with open('/proc/%d/net/tcp' % pid) as f:
        return any(l.split()[1].endswith(':%04X' % port) and l.split()[3] == '0A' for l in f.readlines()[1:])


def bare(pid, pod_end, here_end):
    """Seconds for one socat in the network namespace of pid (pod_end: its addresses, the listener
    last) and one here (here_end, connecting to the forward's local port) to move a file."""
    sock = ['socat', '-b', '131072', '-u']
    peer = subprocess.Popen(['nsenter', '-t', str(pid), '-n'] + sock + pod_end)
    try:
        deadline = time.monotonic() + 10
        while not listening(peer.pid, BARE_PORT):
            assert peer.poll() is None and time.monotonic() < deadline, 'socat in the pod did not listen'
            time.sleep(0.01)
        t0 = time.monotonic()
        subprocess.run(sock + here_end, check=True, timeout=600)
        assert peer.wait(600) == 0
        return time.monotonic() - t0
    finally:
        peer.kill()
        peer.wait()


def copies(c, cli, a, d, env, lport):
    """lport: the "port-forward" way's forward to the pod's BARE_PORT."""
    envs = {'kubectl': env, 'diag': env, 'diag plain': dict(env, KDIAG_CP_ZSTD='0')}
    listen = 'TCP-LISTEN:%d,reuseaddr' % BARE_PORT
    connect = 'TCP:127.0.0.1:%d' % lport
    pid = c.pids_in_pod('tarbox', 'sleep 86400')[0]  # tarbox's: its network namespace and files
    in_pod = '/proc/%d/root/tmp/' % pid

    def into(way, src, name):
        if way == 'kubectl':
            return timed(['/usr/bin/kubectl', 'cp', src, 'tarbox:/tmp/' + name], env)
        if way == 'port-forward':
            return bare(pid, [listen, 'CREATE:' + in_pod + name], ['OPEN:' + src, connect])
        return timed([cli, 'cp', src, 'pod/tarbox:/tmp/' + name], envs[way])

    def out(way, name, dst):
        if way == 'kubectl':
            return timed(['/usr/bin/kubectl', 'cp', 'tarbox:/tmp/' + name, dst], env)
        if way == 'port-forward':
            return bare(pid, ['OPEN:' + in_pod + name, listen], [connect, 'CREATE:' + dst])
        return timed([cli, 'cp', 'pod/tarbox:/tmp/' + name, dst], envs[way])

    files = make_files(d, a.mb)
    # the debug container once, outside the measurements (kubectl cp has no such step)
    timed([cli, 'cp', files['random'], 'pod/tarbox:/tmp/warm'], env)
    # the fixed cost of each command: a 1-byte file in and out
    tiny = os.path.join(d, 'tiny')
    with open(tiny, 'wb') as f:
        f.write(b'x')
    fixed = {'kubectl': [], 'diag': []}
    for i in range(a.runs):
        for way in fixed:
            fixed[way].append(into(way, tiny, 'tiny') + out(way, 'tiny', '%s.%s%d' % (tiny, way, i)))
    print('1 byte in and out: kubectl cp %.2f s, kubectl diag cp %.2f s (medians)' %
          (median(fixed['kubectl']), median(fixed['diag'])), flush=True)
    times, cpus = {}, {}
    for i in range(a.runs):
        for data, src in files.items():
            row = []
            for way in WAYS:
                name = '%s-%s-%d' % (data, way.replace(' ', '-'), i)
                c0 = machine_cpu()
                t_in = into(way, src, name)
                c1 = machine_cpu()
                back = os.path.join(d, name)
                t_out = out(way, name, back)
                c2 = machine_cpu()
                assert filecmp.cmp(src, back, shallow=False), '%s: the copy out differs' % name
                os.unlink(back)
                c.ok('exec', 'tarbox', '--', 'rm', '-f', '/tmp/' + name)
                times.setdefault((data, way, 'into'), []).append(t_in)
                times.setdefault((data, way, 'out of'), []).append(t_out)
                cpus.setdefault((data, way, 'into'), []).append(c1 - c0)
                cpus.setdefault((data, way, 'out of'), []).append(c2 - c1)
                row.append('%s %.2f/%.2f (CPU %.2f/%.2f)' % (way, t_in, t_out, c1 - c0, c2 - c1))
            print('run %d, %s (s into/out of the pod): %s' % (i, data, ', '.join(row)), flush=True)
    for data in files:
        for direction in ('into', 'out of'):
            k = median(times[(data, 'kubectl', direction)])
            line = '%s %s the pod, %d MiB: kubectl cp %.2f s (%.0f MB/s)' % (data, direction, a.mb, k,
                                                                        a.mb * 1.048576 / k)
            for way in WAYS[1:]:
                t = median(times[(data, way, direction)])
                line += ', %s %.2f s (%.0f MB/s): ratio %.2f' % (way, t, a.mb * 1.048576 / t, k / t)
            print(line)
            print('  machine CPU-seconds, the same copies: ' + ', '.join(
                '%s %.2f' % (way, median(cpus[(data, way, direction)])) for way in WAYS))


if __name__ == '__main__':
    main(run, mb=256, runs=3, link_mbit=0, delay_ms=0)
