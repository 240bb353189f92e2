"""pods/portforward: SPDY/3.1 (plain, or carried in WebSocket binary messages for kubectl 1.31+).
Each forwarded connection is a pair of streams (error, data) sharing a requestid; the data stream
is spliced to runtime.connect(pod, port). A refused port FINs both streams and leaves the
session alone.

A FIN from either side is passed on as a half-close by default. With KUBESIM_PORTFORWARD=containerd
in kubesim's environment the forward ends as containerd's does (pkg/cri/server
sandbox_portforward_linux.go): no half-close reaches the other side, and 1 s after one direction
ended both are closed, whatever the other was still sending.

KUBESIM_PORTFORWARD_UPGRADES=websocket serves the WebSocket upgrade alone, as behind a proxy that
passes WebSockets and drops other upgrades (a SPDY request then arrives without its Upgrade header
and is refused as the API server refuses it: 400 "Upgrade request required"); =spdy the SPDY
upgrade alone, as an API server before 1.30. Every session is logged to STATE/portforward.log,
one line "NAMESPACE/POD websocket|spdy", so that tests see which protocol a client chose."""
import os
import socket
import sys
import threading
import time

import apierrors
import resources
import spdy
import websocket

WS_PROTOCOL = 'SPDY/3.1+portforward.k8s.io'
SPDY_PROTOCOL = 'portforward.k8s.io'
CONTAINERD = os.environ.get('KUBESIM_PORTFORWARD') == 'containerd'
UPGRADES = os.environ.get('KUBESIM_PORTFORWARD_UPGRADES', 'websocket,spdy').split(',')
CONTAINERD_GRACE = 1.0  # seconds containerd waits for the other direction before closing both


def serve(sim, req, ns, name):
    with sim.lock:
        pod = resources.live_pod(sim, ns, name)
        phase = pod.get('status', {}).get('phase')
        if phase != 'Running':
            raise apierrors.bad_request('pod %s is not running (phase %s)' % (name, phase))
        uid = pod['metadata']['uid']
    up = (req.header('Upgrade') or '').lower()
    sock = req.h.connection
    if ('websocket' in up and 'websocket' not in UPGRADES) or ('spdy/3.1' in up and 'spdy' not in UPGRADES):
        up = ''  # dropped on the way
    if 'websocket' in up:
        if WS_PROTOCOL not in req.header_all('Sec-WebSocket-Protocol'):
            raise apierrors.bad_request('unable to upgrade connection: subprotocol %s required' % WS_PROTOCOL)
        req.switch_protocols([('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
                              ('Sec-WebSocket-Accept', websocket.accept_key(req.header('Sec-WebSocket-Key') or '')),
                              ('Sec-WebSocket-Protocol', WS_PROTOCOL)])
        bs = websocket.ByteStream(websocket.WebSocket(req.h.rfile, sock))
        read, write = bs.read, bs.write
    elif 'spdy/3.1' in up:
        if SPDY_PROTOCOL not in req.header_all('X-Stream-Protocol-Version'):
            raise apierrors.APIError(403, 'Forbidden', 'unable to upgrade: unable to negotiate protocol: '
                                     'client supports %s, server supports [%s]' % (
                                         req.header_all('X-Stream-Protocol-Version'), SPDY_PROTOCOL))
        req.switch_protocols([('Connection', 'Upgrade'), ('Upgrade', 'SPDY/3.1'),
                              ('X-Stream-Protocol-Version', SPDY_PROTOCOL)])
        read, write = req.h.rfile.read, sock.sendall
    else:
        raise apierrors.bad_request('Upgrade request required')
    with sim.lock:
        with open(os.path.join(sim.runtime.state_dir, 'portforward.log'), 'a') as f:
            f.write('%s/%s %s\n' % (ns, name, 'websocket' if 'websocket' in up else 'spdy'))
    Session(sim, pod, uid, sock, read, write).run()


def shut(sock, how=socket.SHUT_RDWR):
    try:
        sock.shutdown(how)
    except OSError:  # closed meanwhile
        pass


class Session:
    def __init__(self, sim, pod, uid, sock, read, write):
        self.sim, self.pod, self.uid, self.sock = sim, pod, uid, sock
        self.pairs = {}
        self.lock = threading.Lock()
        self.targets = set()
        self.conn = spdy.Connection(read, write, self.on_stream)

    def run(self):
        self.sim.register_session(self.uid, self.close)
        try:
            self.conn.serve()
        finally:
            self.sim.unregister_session(self.uid, self.close)
            with self.lock:
                targets = list(self.targets)
            for s in targets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        """The pod is gone: end the whole session (kubectl then reports the lost connection)."""
        try:
            self.conn.goaway()
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def on_stream(self, st):
        st.reply()
        h = st.headers
        rid, kind = h.get('requestid', ''), h.get('streamtype', '')
        with self.lock:
            pair = self.pairs.setdefault(rid, {})
            pair[kind] = st
        if kind == 'data':
            with self.lock:
                self.pairs.pop(rid, None)
            threading.Thread(target=self.forward, args=(pair.get('error'), st, h.get('port', '')),
                             daemon=True).start()

    def forward(self, err, data, port):
        def end():
            data.close()
            if err is not None:
                err.close()
        try:
            target = self.sim.runtime.connect(self.pod, int(port))
        except (OSError, ValueError) as e:
            if self.sim.verbose:
                sys.stderr.write('port-forward %s:%s: %s\n' % (self.pod['metadata']['name'], port, e))
            end()  # refused: this connection ends, the session stays
            return
        with self.lock:
            self.targets.add(target)
        ended = []

        def direction_ended():
            """containerd: the first direction to end closes both after the grace."""
            with self.lock:
                ended.append(True)
                first = len(ended) == 1
            if first:
                threading.Timer(CONTAINERD_GRACE, shut, args=(target,)).start()

        def upstream():
            while True:
                chunk = data.read()
                if not chunk:
                    break
                try:
                    target.sendall(chunk)
                except OSError:
                    break
            if CONTAINERD and not data.reset:
                direction_ended()
                return
            shut(target, socket.SHUT_RDWR if data.reset else socket.SHUT_WR)
        refs = [2]

        def release():
            with self.lock:
                refs[0] -= 1
                last = refs[0] == 0
                if last:
                    self.targets.discard(target)
            if last:
                target.close()

        def upstream_then_release():
            upstream()
            release()
        threading.Thread(target=upstream_then_release, daemon=True).start()
        try:
            while True:
                chunk = target.recv(65536)
                if not chunk or not data.write(chunk):
                    break
        except OSError:
            pass
        if CONTAINERD:
            direction_ended()
            if len(ended) < 2:
                time.sleep(CONTAINERD_GRACE)  # the other direction may still deliver until then
        end()
        release()
