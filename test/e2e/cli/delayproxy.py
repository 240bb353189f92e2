"""A TCP proxy on loopback that holds every byte for a fixed time each way: a cluster's API server
as far away as over a network (this kernel has no netem). `delayed_kubeconfig` writes a copy of a
kubeconfig whose server goes through the proxy; everything kubectl does, port-forward included,
then crosses the delay.

    with delayed_kubeconfig(kc, 25, kc2):    # 25 ms each way, 50 ms round trip
        ...KUBECONFIG=kc2...

Each direction holds at most QUEUE bytes in flight, then stops reading, so a sender is slowed by
TCP as over a link instead of filling the proxy."""
import collections
import contextlib
import re
import socket
import threading
import time

QUEUE = 4 << 20  # bytes in flight per direction: 80 MB/s at 50 ms
SERVER = re.compile(r'(server: https?://[^:\s]+:)(\d+)')


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
        held = [0]  # bytes queued

        def reader():
            while True:
                with cv:
                    while held[0] >= QUEUE:
                        cv.wait()
                try:
                    data = src.recv(262144)
                except OSError:
                    data = b''
                with cv:
                    q.append((time.monotonic() + self.delay, data))
                    held[0] += len(data)
                    cv.notify_all()
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
                    with cv:
                        held[0] = 0
                        q.clear()
                        cv.notify_all()
                    return
                with cv:
                    held[0] -= len(data)
                    cv.notify_all()
        for f in (reader, writer):
            threading.Thread(target=f, daemon=True).start()


@contextlib.contextmanager
def delayed_kubeconfig(kubeconfig, delay_ms, out):
    """Writes out: kubeconfig with its API server behind a DelayProxy of delay_ms each way, which
    runs until the block ends."""
    with open(kubeconfig) as f:
        text = f.read()
    with DelayProxy(int(SERVER.search(text).group(2)), delay_ms) as p:
        with open(out, 'w') as f:
            f.write(SERVER.sub(r'\g<1>%d' % p.port, text))
        yield out
