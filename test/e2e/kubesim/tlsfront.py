"""TLS in front of the HTTP server. kubectl sends bearer tokens only over TLS, so the API server
listens with a self-signed certificate. Each TLS connection gets its own thread that alone touches
the SSL object (OpenSSL objects must not be read and written from two threads at once, and the
hijacked streaming protocols read and write concurrently); plaintext goes over a socketpair to
the HTTP server, which handles it like any connection."""
import os
import select
import socket
import ssl
import subprocess
import threading


def make_cert(state):
    crt, key = os.path.join(state, 'tls.crt'), os.path.join(state, 'tls.key')
    if not (os.path.exists(crt) and os.path.exists(key)):
        r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                            'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt,
                            '-days', '30', '-subj', '/CN=kubesim', '-addext',
                            'subjectAltName=IP:127.0.0.1,DNS:localhost'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError('openssl could not make a certificate: %s' % r.stderr.decode(errors='replace'))
        os.chmod(key, 0o600)
    return crt, key


class TLSFront:
    def __init__(self, http_server, crt, key, host='127.0.0.1', port=0):
        self.http = http_server
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.ctx.set_alpn_protocols(['http/1.1'])
        self.lsock = socket.create_server((host, port), backlog=256, reuse_port=False)
        self.port = self.lsock.getsockname()[1]
        self.stopped = False

    def serve_in_thread(self):
        t = threading.Thread(target=self._accept_loop, name='tls-accept', daemon=True)
        t.start()
        return t

    def close(self):
        self.stopped = True
        try:
            self.lsock.close()
        except OSError:
            pass

    def _accept_loop(self):
        while not self.stopped:
            try:
                c, addr = self.lsock.accept()
            except OSError:
                if self.stopped:
                    return
                continue
            threading.Thread(target=self._conn, args=(c, addr), daemon=True).start()

    def _conn(self, raw, addr):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(10)
        try:
            t = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        mine, theirs = socket.socketpair()
        try:
            self.http.process_request(theirs, addr)
        except Exception:
            mine.close()
            t.close()
            return
        try:
            _splice(t, mine)
        finally:
            for s in (t, mine):
                try:
                    s.close()
                except OSError:
                    pass


def _splice(t, p):
    """Copies both ways between the TLS socket t and the plain socket p until both ends are done."""
    t.setblocking(False)
    p.setblocking(False)
    to_p, to_t = bytearray(), bytearray()
    t_eof = p_eof = False
    t_want_write = False
    limit = 1 << 20
    while True:
        if t_eof and not to_p and not p_eof:
            try:
                p.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if p_eof and not to_t:
            _close_notify(t)  # the server side finished: nothing more to send
            return
        if t_eof and p_eof:
            return
        rl, wl = [], []
        if not t_eof and len(to_p) < limit:
            rl.append(t)
        if not p_eof and len(to_t) < limit:
            rl.append(p)
        if to_p:
            wl.append(p)
        if to_t or t_want_write:
            wl.append(t)
        if t.pending() and t in rl:
            r, w = [t], []
        else:
            try:
                r, w, _ = select.select(rl, wl, [], 60)
            except (OSError, ValueError):
                return
        if t in r:
            try:
                while len(to_p) < limit:
                    data = t.recv(65536)
                    if not data:
                        t_eof = True
                        break
                    to_p += data
                    if not t.pending():
                        break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLWantWriteError:
                t_want_write = True
            except (ssl.SSLError, OSError):
                return  # the client is gone
        if p in r:
            try:
                data = p.recv(65536)
                if not data:
                    p_eof = True
                else:
                    to_t += data
            except BlockingIOError:
                pass
            except OSError:
                p_eof = True
        if p in w and to_p:
            try:
                n = p.send(to_p)
                del to_p[:n]
            except BlockingIOError:
                pass
            except OSError:
                return
        if (t in w) and to_t:
            t_want_write = False
            try:
                n = t.send(to_t[:65536])
                del to_t[:n]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                t_want_write = True
            except (ssl.SSLError, OSError):
                return


def _close_notify(t):
    try:
        t.settimeout(1)
        t.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass
