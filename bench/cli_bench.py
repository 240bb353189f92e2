#!/usr/bin/python3
"""kubectl-diag benchmarks on the simulated cluster, each compared side by side in one run:

  startup   time from `kubectl diag redir pod/P 80:L` to its "redirecting" line, manager present
            and manager created, against `kubectl port-forward pod/P :80` to "Forwarding from"
  bulk      one redirected connection (laptop -> pod peer) against one plain kubectl
            port-forward connection (laptop -> pod), same bytes, same direction, same pod
  rate      sequential connections per second through one redirect

  bench/cli_bench.py [--build DIR] [--mb N] [--runs N] [--conns N]
As root (the simulated cluster). Prints one line per measurement and the ratios."""
import socket
import socketserver
import subprocess
import time

from statistics import median as med

from benchlib import fmt, main, port_forward, send_zeros, serve, wait_line

PEER = r'''
import socket, sys, time
ip, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if mode == 'bulk':   # read everything the laptop sends, until it closes
    s = socket.create_connection((ip, port), timeout=60)
    s.sendall(b'B')
    t0 = time.monotonic(); got = 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got += len(b)
    print(got, time.monotonic() - t0)
else:                # n sequential request/response connections
    t0 = time.monotonic()
    for i in range(n):
        s = socket.create_connection((ip, port), timeout=30)
        s.sendall(b'p')
        assert s.recv(1) == b'p'
        s.close()
    print(n, time.monotonic() - t0)
'''


def local_server(nbytes):
    """On 'B': sends nbytes and closes; on 'p': answers 'p' and waits for the close; anything else
    (e.g. a stray HTTP request) is closed at once."""
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            c = self.request.recv(1)
            if c == b'B':
                send_zeros(self.request, nbytes)
            elif c == b'p':
                self.request.sendall(b'p')
                self.request.recv(1)
    return serve(H)


def startup(c, cli, pod, port):
    t0 = time.monotonic()
    p = subprocess.Popen([cli, 'redir', 'pod/' + pod, '80:%d' % port], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=c.env())
    try:
        return wait_line(p, 'redirecting')[1] - t0
    finally:
        p.send_signal(2)
        p.wait(30)


def pf_startup(c, pod):
    t0 = time.monotonic()
    p = subprocess.Popen(['kubectl', 'port-forward', 'pod/' + pod, ':80'], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=c.env())
    try:
        return wait_line(p, 'Forwarding from')[1] - t0
    finally:
        p.terminate()
        p.wait(30)


def run(c, cli, a):
    nbytes = a.mb << 20
    # a sink in a pod for the plain port-forward baseline: reads until EOF, then closes
    c.ok('run', 'sink', '--image=curl', '--restart=Never', '--command', '--', 'sh', '-c',
         'printf "#!/bin/sh\\nexec cat > /dev/null\\n" > /tmp/sink; chmod +x /tmp/sink; '
         'while true; do nc -l -p 9000 -e /tmp/sink; done')
    c.wait_running('sink')
    srv = local_server(nbytes)
    port = srv.server_address[1]

    # --- startup ---
    created = []
    for i in range(a.runs):
        name = 'fresh-%d' % i
        c.ok('run', name, '--image=nginx', '--restart=Never')
        c.wait_running(name)
        created.append(startup(c, cli, name, port))
    present = [startup(c, cli, 'nginx', port) for _ in range(a.runs + 1)][1:]  # first run creates it
    pf = [pf_startup(c, 'nginx') for _ in range(a.runs)]
    print('startup  redir, manager present : median %.3f s (runs: %s)' % (med(present), fmt(present)))
    print('startup  redir, manager created : median %.3f s (runs: %s)' % (med(created), fmt(created)))
    print('startup  kubectl port-forward   : median %.3f s (runs: %s)' % (med(pf), fmt(pf)))
    print('ratio    redir present / port-forward startup: %.2f' % (med(present) / med(pf)))

    # --- bulk: laptop -> pod through a redirect vs through kubectl port-forward, alternating ---
    # (the distroless pod: no other client connects to its port 8080 meanwhile)
    ip = c.pod('distroless')['status']['podIP']
    # --include-probes: the peer runs on the node, whose connections are left alone by default
    r = subprocess.Popen([cli, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % port], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=c.env())
    redir_mbs, pf_mbs = [], []
    try:
        wait_line(r, 'redirecting')
        with port_forward(c, 'sink', 9000) as lport:
            for _ in range(a.runs):
                out = c.in_node(['python3', '-c', PEER, ip, '8080', 'bulk', '0'], timeout=600)
                got, secs = out.stdout.split()
                assert int(got) == nbytes, out.stdout + out.stderr
                redir_mbs.append(nbytes / float(secs) / 1e6)
                pf_mbs.append(send_bulk(lport, nbytes))
            out = c.in_node(['python3', '-c', PEER, ip, '8080', 'rate', str(a.conns)], timeout=600)
            n, secs = out.stdout.split()
            rate = int(n) / float(secs)
    finally:
        r.send_signal(2)
        r.wait(30)
    print('bulk     one redirected connection: median %.1f MB/s (runs: %s; %d MiB laptop -> pod peer)'
          % (med(redir_mbs), fmt(redir_mbs), a.mb))
    print('bulk     one kubectl port-forward : median %.1f MB/s (runs: %s; %d MiB laptop -> pod)'
          % (med(pf_mbs), fmt(pf_mbs), a.mb))
    ratios = [x / y for x, y in zip(redir_mbs, pf_mbs)]
    print('ratio    redirect / port-forward throughput: median %.2f (runs: %s; goal >= 0.9)'
          % (med(ratios), fmt(ratios)))
    print('rate     %d sequential connections through one redirect: %.0f conn/s' % (a.conns, rate))
    srv.shutdown()


def send_bulk(lport, nbytes):
    """nbytes through kubectl port-forward to the sink pod; MB/s until the sink closes."""
    s = socket.create_connection(('127.0.0.1', lport))
    t0 = time.monotonic()
    send_zeros(s, nbytes)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):   # the sink's close comes back once it has read everything
        pass
    s.close()
    return nbytes / (time.monotonic() - t0) / 1e6


if __name__ == '__main__':
    main(run, mb=256, runs=5, conns=200)
