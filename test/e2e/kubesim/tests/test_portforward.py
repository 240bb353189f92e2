"""pods/portforward through the real kubectl: WebSocket-tunnelled SPDY (1.31+) and plain SPDY,
200 concurrent connections x 1 MB each way (sha256-checked), a refused port that leaves the
tunnel usable, and deleting a pod while port-forward, exec and logs -f are open."""
import hashlib
import json
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import versions, wait_for
from e2e_common import recv_all

SPDY_ONLY = {'KUBECTL_PORT_FORWARD_WEBSOCKETS': 'false'}


class PortForward:
    def __init__(self, cluster, pod, remote_ports, version='1.32', env=None):
        self.p = cluster.popen('port-forward', 'pod/' + pod, *[':%d' % r for r in remote_ports],
                               version=version, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        self.local = {}
        deadline = time.monotonic() + 20
        while len(self.local) < len(remote_ports):
            assert time.monotonic() < deadline, 'port-forward did not start'
            line = self.p.stdout.readline()
            assert line, 'port-forward ended: %s' % self.p.stderr.read()
            m = re.match(r'Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)', line)
            if m:
                self.local[int(m.group(2))] = int(m.group(1))
        # drain "Handling connection" lines so kubectl never blocks on a full pipe
        threading.Thread(target=self.p.stdout.read, daemon=True).start()

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def echo_roundtrip(port, size, seed):
    data = hashlib.sha256(seed).digest() * (size // 32)
    c = socket.create_connection(('127.0.0.1', port), timeout=120)
    try:
        w = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
        w.start()
        got = recv_all(c, 262144)
        w.join()
    finally:
        c.close()
    return hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), len(got)


@pytest.mark.parametrize('kv,env', [('1.32', None), ('1.33', None), ('1.27', None), ('1.32', SPDY_ONLY)],
                         ids=['1.32-websocket', '1.33-websocket', '1.27-spdy', '1.32-spdy'])
def test_many_connections_one_megabyte_each_way(cluster, kv, env):
    pf = PortForward(cluster, 'echo', [9000], version=kv, env=env)
    try:
        port = pf.local[9000]
        results = [None] * 200
        errors = []

        def one(i):
            try:
                results[i] = echo_roundtrip(port, 1 << 20, b'%d' % i)
            except Exception as e:  # reported below with the others
                errors.append('%d: %r' % (i, e))
        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        took = time.monotonic() - t0
        assert not errors, errors[:5]
        assert all(r == (True, 1 << 20) for r in results), [r for r in results if r != (True, 1 << 20)][:5]
        print('200 x 1 MiB each way through kubectl %s%s: %.1fs' % (kv, ' (spdy)' if env else '', took))
        assert pf.p.poll() is None
    finally:
        pf.close()


@pytest.mark.parametrize('kv,env', [('1.32', None), ('1.27', None)], ids=['1.32-websocket', '1.27-spdy'])
def test_refused_port_keeps_tunnel(cluster, kv, env):
    pf = PortForward(cluster, 'echo', [9000, 9999], version=kv, env=env)
    try:
        c = socket.create_connection(('127.0.0.1', pf.local[9999]), timeout=10)
        c.settimeout(10)
        assert c.recv(100) == b''  # refused inside the pod: this connection just ends
        c.close()
        time.sleep(0.5)
        assert pf.p.poll() is None, 'port-forward died after a refused connection'
        assert echo_roundtrip(pf.local[9000], 4096, b'after') == (True, 4096)
        # and the refused port again, then the working one again
        c = socket.create_connection(('127.0.0.1', pf.local[9999]), timeout=10)
        c.settimeout(10)
        assert c.recv(100) == b''
        c.close()
        assert echo_roundtrip(pf.local[9000], 4096, b'again') == (True, 4096)
        assert pf.p.poll() is None
    finally:
        pf.close()


def test_http_through_port_forward(cluster):
    pf = PortForward(cluster, 'nginx', [80])
    try:
        c = socket.create_connection(('127.0.0.1', pf.local[80]), timeout=10)
        c.sendall(b'GET / HTTP/1.0\r\nHost: nginx\r\n\r\n')
        resp = recv_all(c)
        c.close()
        assert resp.startswith(b'HTTP/1.') and b' 200 ' in resp.split(b'\r\n')[0]
        assert b'Welcome to nginx' in resp
    finally:
        pf.close()


@versions('1.27', '1.32')
def test_delete_pod_ends_open_sessions(cluster, kv):
    name = 'victim-' + kv.replace('.', '')
    m = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
         'spec': {'terminationGracePeriodSeconds': 3, 'containers': [
             {'name': 'c', 'image': 'nginx',
              'command': ['/bin/busybox', 'sh', '-c',
                          'while :; do echo tick; /bin/busybox sleep 0.5; done & '
                          'exec /bin/busybox nc -ll -p 9000 -e /bin/busybox cat']}]}}
    cluster.ok('create', '-f', '-', input=json.dumps(m))
    cluster.wait_ready(name)
    pf = PortForward(cluster, name, [9000], version=kv)
    conn = socket.create_connection(('127.0.0.1', pf.local[9000]), timeout=30)
    conn.sendall(b'ping\n')
    conn.settimeout(10)
    assert conn.recv(5) == b'ping\n'
    ex = cluster.popen('exec', '-i', name, '--', '/bin/busybox', 'sleep', '600', version=kv,
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lf = cluster.popen('logs', '-f', name, version=kv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: lf.stdout.readline(), 10, what='logs -f output')
        time.sleep(1)
        t0 = time.monotonic()
        cluster.ok('delete', 'pod', name, version=kv, timeout=60)
        for proc, what in ((ex, 'exec'), (lf, 'logs -f'), (pf.p, 'port-forward')):
            try:
                proc.wait(timeout=max(1, 25 - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                raise AssertionError('%s still running %ds after the pod was deleted' % (what, time.monotonic() - t0))
        assert lf.returncode == 0  # the log stream just ends
        conn.settimeout(10)
        try:
            rest = conn.recv(100)
        except OSError:
            rest = b''
        assert rest == b''
    finally:
        conn.close()
        for proc in (ex, lf):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pf.close()


def test_idle_tunnels_survive_pings(cluster):
    """kubectl pings every 5 s (SPDY) or 10 s (WebSocket tunnel); unanswered pings end the tunnel."""
    pfs = [PortForward(cluster, 'echo', [9000], version='1.27'),
           PortForward(cluster, 'echo', [9000], version='1.32')]
    try:
        time.sleep(12)
        for pf in pfs:
            assert pf.p.poll() is None, 'idle port-forward ended'
            assert echo_roundtrip(pf.local[9000], 1000, b'idle') == (True, 992)
    finally:
        for pf in pfs:
            pf.close()
