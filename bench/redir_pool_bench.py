#!/usr/bin/python3
"""kubectl diag redir with concurrent connections on the simulated cluster, side by side in one run,
for each size of the pool of tunnel port-forwards (KDIAG_REDIR_POOL):

  eight     8 concurrent redirected connections (pod peer -> laptop, N MiB each), aggregate MB/s,
            against 8 concurrent plain kubectl port-forward connections to the same pod carrying
            the same bytes in the same direction (pod -> laptop)
  stalled   7 such redirected connections while an 8th one's local reader never reads,
            aggregate MB/s of the 7 against the 8-connection figure

  bench/redir_pool_bench.py [--build DIR] [--mb N] [--pools 0,2,4,8] [--runs N]

Each pool size first runs a round of 8 connections that grows the pool, then --runs rounds of
the three measurements, alternated; medians and per-round ratios are printed.
As root (the simulated cluster). Prints one line per measurement and the ratios."""
import socket
import socketserver
import subprocess
import sys
import threading
import time
from statistics import median as med

from benchlib import fmt, main, port_forward, serve, wait_line

CONNS = 8
DEADLINE = 60  # s: a stalled run reports the bytes sent by then

# The pod peer, on the node: n connections to ip:port at once, each sends its mode byte ('R' read,
# 'S' stall), then nbytes, half-closes and waits for the local end to close. Prints the seconds until
# every 'R' connection ended, and the bytes they sent.
PEER = r'''
import socket, sys, threading, time
ip, port, nbytes, modes, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
chunk = b'\0' * (1 << 16)
sent = [0] * len(modes)
t0 = time.monotonic()
def one(i, mode):
    s = socket.create_connection((ip, port), timeout=30)
    s.sendall(mode.encode())
    left = nbytes
    try:
        while left > 0:
            s.settimeout(max(0.1, deadline - (time.monotonic() - t0)))
            n = s.send(chunk[:min(left, len(chunk))])
            left -= n
            sent[i] += n
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    if mode != 'S':
        s.close()
ts = [threading.Thread(target=one, args=(i, m), daemon=True) for i, m in enumerate(modes)]
for t in ts:
    t.start()
for t, m in zip(ts, modes):
    if m != 'S':
        t.join()
print(time.monotonic() - t0, sum(b for b, m in zip(sent, modes) if m != 'S'))
'''

# The pod-side source for the plain port-forward baseline: every connection gets nbytes, then a close.
SOURCE = r'''
import socket, socketserver, sys
nbytes = int(sys.argv[2])
chunk = b'\0' * (1 << 16)
class H(socketserver.BaseRequestHandler):
    def handle(self):
        left = nbytes
        while left > 0:
            n = self.request.send(chunk[:min(left, len(chunk))])
            left -= n
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
'''


def local_sink(stop):
    """The redirect's local target: 'R' reads until EOF and closes; 'S' never reads (until stop)."""
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            if self.request.recv(1) == b'S':
                stop.wait()
                return
            while self.request.recv(1 << 20):
                pass
    return serve(H)


def forwards(pid):
    from e2e_common import children, cmdline
    return [p for p in children(pid) if 'port-forward' in cmdline(p)]


def plain_eight(c, pod, port, nbytes):
    """8 concurrent connections through one kubectl port-forward, each reading nbytes: MB/s."""
    with port_forward(c, pod, port) as lport:
        got = [0] * CONNS

        def one(i):
            s = socket.create_connection(('127.0.0.1', lport))
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                got[i] += len(b)
            s.close()
        ts = [threading.Thread(target=one, args=(i,)) for i in range(CONNS)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        secs = time.monotonic() - t0
        assert sum(got) == CONNS * nbytes, got
        return sum(got) / secs / 1e6


def redirected(c, ip, modes, nbytes):
    out = c.in_node(['python3', '-c', PEER, ip, '8080', str(nbytes), modes, str(DEADLINE)], timeout=DEADLINE + 60)
    secs, sent = out.stdout.split()
    return int(sent) / float(secs) / 1e6


def run(c, cli, a):
    nbytes = a.mb << 20
    pod = 'distroless'
    ip = c.pod(pod)['status']['podIP']
    src = subprocess.Popen(['nsenter', '--net=/proc/%d/ns/net' % c.pod_pid(pod), 'python3', '-c', SOURCE, '9100',
                            str(nbytes)])
    stop = threading.Event()
    sink = local_sink(stop)
    try:
        time.sleep(1)
        for pool in [int(p) for p in a.pools.split(',')]:
            r = subprocess.Popen([cli, 'redir', '--include-probes', 'pod/' + pod, '8080:%d' % sink.server_address[1]],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env=c.env({'KDIAG_REDIR_POOL': str(pool)}))
            try:
                wait_line(r, 'redirecting')
                # a first round grows the pool (a forward per connection, and a spare)
                redirected(c, ip, 'R' * CONNS, 4 << 20)
                want = 1 + min(pool, CONNS + 1)
                deadline = time.monotonic() + 30
                while len(forwards(r.pid)) < want and time.monotonic() < deadline:
                    time.sleep(0.2)
                plain, eight, stalled = [], [], []
                for _ in range(a.runs):  # alternated, each stalled connection released before the next round
                    plain.append(plain_eight(c, pod, 9100, nbytes))
                    eight.append(redirected(c, ip, 'R' * CONNS, nbytes))
                    stalled.append(redirected(c, ip, 'S' + 'R' * (CONNS - 1), nbytes))
                    stop.set()
                    time.sleep(0.5)
                    stop.clear()
            finally:
                r.send_signal(2)
                r.wait(60)
                stop.clear()
            print('pool %d  medians of %d: 8 plain port-forward connections %.1f MB/s; 8 redirected %.1f MB/s; '
                  '7 redirected + 1 stalled %.1f MB/s' % (pool, a.runs, med(plain), med(eight), med(stalled)))
            r1 = [e / p for e, p in zip(eight, plain)]
            r2 = [st / e for st, e in zip(stalled, eight)]
            print('pool %d  ratio redirected / plain: median %.2f (runs %s; goal >= 0.9); stalled / eight: median '
                  '%.2f (runs %s; goal >= 0.8)' % (pool, med(r1), fmt(r1), med(r2), fmt(r2)))
            sys.stdout.flush()
    finally:
        stop.set()
        sink.shutdown()
        src.terminate()
        src.wait(10)


if __name__ == '__main__':
    main(run, mb=32, pools='0,2,4,8', runs=3)
