"""A TCP proxy on loopback that holds every byte for a fixed time each way: a cluster's API server
as far away as over a network (this kernel has no netem). `kubeconfig_through(path, proxy, out)`
writes a copy of a kubeconfig whose server goes through the proxy; everything kubectl does,
port-forward included, then crosses the delay.

    with DelayProxy(api_port, 25) as p:      # 25 ms each way, 50 ms round trip
        kubeconfig_through(kc, p, kc2)
"""
import collections
import re
import socket
import threading
import time


class DelayProxy:
    def __init__(self, upstream_port, delay_ms):
        self.up = upstream_port
        self.delay = delay_ms / 1000.0
        self.lsock = socket.create_server(('127.0.0.1', 0))
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        self.lock = threading.Lock()

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return  # closed
            try:
                u = socket.create_connection(('127.0.0.1', self.up))
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.socks += [c, u]
            for src, dst in ((c, u), (u, c)):
                self._pipe(src, dst)

    def _pipe(self, src, dst):
        """Two threads: one reads and stamps each chunk with when it may go, one sends it then."""
        q, cv = collections.deque(), threading.Condition()

        def reader():
            while True:
                try:
                    data = src.recv(262144)
                except OSError:
                    data = b''
                with cv:
                    q.append((time.monotonic() + self.delay, data))
                    cv.notify()
                if not data:
                    return

        def writer():
            while True:
                with cv:
                    while not q:
                        cv.wait()
                    due, data = q.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not data:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(data)
                except OSError:  # the far side is gone: stop reading for it too
                    try:
                        src.shutdown(socket.SHUT_RD)
                    except OSError:
                        pass
                    return
        for f in (reader, writer):
            threading.Thread(target=f, daemon=True).start()


def api_port(kubeconfig):
    with open(kubeconfig) as f:
        return int(re.search(r'server: https?://[^:\s]+:(\d+)', f.read()).group(1))


def kubeconfig_through(kubeconfig, proxy, out):
    """out: kubeconfig with its server's port replaced by the proxy's."""
    with open(kubeconfig) as f:
        text = f.read()
    with open(out, 'w') as f:
        f.write(re.sub(r'(server: https?://[^:\s]+:)(\d+)', r'\g<1>%d' % proxy.port, text))
    return out
