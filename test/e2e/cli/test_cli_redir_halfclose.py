"""Half-close through kubectl diag redir (issue 14 item 6): kubectl port-forward ends the whole
stream at the first FIN from the pod's side, and containerd's forward closes both directions 1 s
after either ended, so half-closes travel out of band (docs/redirect.md) and no data is lost.
Every test runs on two clusters: kubesim's default forward (a FIN passes as a half-close, so only
kubectl's own ending counts) and one that ends connections the way containerd does
(KUBESIM_PORTFORWARD=containerd). A peer on the node talks to the pod's port; the local program
behind the redirect runs here."""
import hashlib
import socket
import struct
import threading

import pytest

from conftest import DEMO, start_cluster
from e2e_common import recv_all, wait_for

SIZE = 20 * 1024 * 1024


@pytest.fixture(scope='session', params=['kubesim', 'containerd'])
def cluster(request):
    env = {'KUBESIM_PORTFORWARD': 'containerd'} if request.param == 'containerd' else {}
    return start_cluster(request, [DEMO], env=env)


def payload(tag, size=SIZE):
    seed = hashlib.sha256(tag.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def digest(data):
    return '%d:%s' % (len(data), hashlib.sha256(data).hexdigest())


class LocalProgram:
    """A TCP server on 127.0.0.1 that runs serve(conn) per connection and keeps what it returns."""

    def __init__(self, serve):
        self.serve = serve
        self.results = []
        self.errors = []
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            with conn:
                self.results.append(self.serve(conn))
        except OSError as e:
            self.errors.append(repr(e))

    def close(self):
        self.sock.close()


def echo_to_eof(conn):
    """Echoes until the peer's EOF, then closes: what it got."""
    got = bytearray()
    while True:
        b = conn.recv(1 << 16)
        if not b:
            return digest(bytes(got))
        got += b
        conn.sendall(b)


def reply_first(conn):
    """Sends SIZE bytes and closes its write side at once, then reads the peer's SIZE bytes to EOF."""
    conn.sendall(payload('reply'))
    conn.shutdown(socket.SHUT_WR)
    return digest(recv_all(conn))


def answer_after_eof(conn):
    """HTTP/1.0 style: the whole request (to EOF), then the answer."""
    req = recv_all(conn)
    conn.sendall(b'answer to ' + req)
    return digest(req)


def reset_mid_reply(conn):
    """Reads the request, sends part of a reply and resets the connection, as a program that
    crashes mid-reply (SO_LINGER 0: the close sends a RST)."""
    conn.recv(1 << 16)
    conn.sendall(payload('partial', 1 << 16))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    return 'reset'


# The peer, on the node: connects to the pod's port, runs the mode, prints the digest of what came back.
PEER = r'''
import hashlib, socket, sys, threading
ip, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
def payload(tag):
    seed = hashlib.sha256(tag.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]
def read_to_eof(s):
    buf = bytearray()
    while True:
        b = s.recv(1 << 16)
        if not b:
            return bytes(buf)
        buf += b
s = socket.create_connection((ip, 8080), timeout=60)
if mode == 'send-then-half-close':  # sends while reading the echo, then shuts its write side
    def send():
        s.sendall(payload('peer'))
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    got = read_to_eof(s)
    t.join()
elif mode == 'read-then-send':  # the local side closes its write side first; then the peer sends
    got = read_to_eof(s)
    s.sendall(payload('peer'))
    s.shutdown(socket.SHUT_WR)
    s.settimeout(60)
    assert s.recv(1) == b''
elif mode == 'request-until-end':  # a request, then the reply until the connection ends
    s.sendall(b'GET / HTTP/1.1\r\n\r\n')
    n = 0
    try:
        while True:
            b = s.recv(1 << 16)
            if not b:
                print('eof', n)
                break
            n += len(b)
    except ConnectionResetError:
        print('reset', n)
    sys.exit(0)
else:  # short request + half-close (nc -N, HTTP/1.0)
    s.sendall(b'GET / HTTP/1.0\r\n\r\n')
    s.shutdown(socket.SHUT_WR)
    got = read_to_eof(s)
print('%d:%s' % (len(got), hashlib.sha256(got).hexdigest()) if mode != 'short' else got.decode())
'''


def run(cluster, bg, serve, mode, size=SIZE):
    prog = LocalProgram(serve)
    try:
        r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % prog.port)  # the peer is on the node
        r.wait_out('redirecting pod/distroless:8080')
        ip = cluster.pod('distroless')['status']['podIP']
        got = cluster.in_node(['python3', '-c', PEER, ip, mode, str(size)], timeout=180)
        assert got.returncode == 0, got.stdout + got.stderr + r.err()
        wait_for(lambda: prog.results or prog.errors, 30, what='the local program to finish')
        assert r.interrupt() == 0, r.err()
        return got.stdout.strip(), prog.results, prog.errors
    finally:
        prog.close()


def test_peer_sends_20mb_then_half_closes_gets_the_whole_echo(cluster, bg):
    out, results, errors = run(cluster, bg, echo_to_eof, 'send-then-half-close')
    want = digest(payload('peer'))
    assert (out, results, errors) == (want, [want], [])


def test_local_program_half_closes_first_and_the_peer_still_sends_20mb(cluster, bg):
    out, results, errors = run(cluster, bg, reply_first, 'read-then-send')
    assert (out, results, errors) == (digest(payload('reply')), [digest(payload('peer'))], [])


def test_short_request_and_half_close_gets_its_reply(cluster, bg):
    out, results, errors = run(cluster, bg, answer_after_eof, 'short')
    assert out == 'answer to GET / HTTP/1.0', out
    assert errors == []


def test_local_program_reset_mid_reply_resets_the_peer(cluster, bg):
    # The local program's reset cannot pass kubectl port-forward as one (the pod's end of the
    # forward closes with a FIN), but with half-closes out of band the CLI never sends a FIN into
    # the tunnel while the peer's direction runs: the manager takes an early one for what it is,
    # and the peer sees a reset, not a clean end that would pass a cut reply off as whole.
    out, results, errors = run(cluster, bg, reset_mid_reply, 'request-until-end')
    verdict, n = out.split()
    assert verdict == 'reset' and int(n) <= 1 << 16, out
    assert (results, errors) == (['reset'], [])
