"""SPDY/3.1 server-side session, the subset kubectl's spdystream client speaks (see
/work/shared/reference/kubectl-protocols.md): SYN_STREAM / SYN_REPLY / DATA / RST_STREAM / PING /
GOAWAY; SETTINGS and WINDOW_UPDATE are ignored (the client never needs flow control). Header
blocks are one zlib stream per direction, primed with the SPDY/3 dictionary."""
import queue
import struct
import threading
import zlib

# The SPDY/3 header-compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): the common
# header names, each preceded by its 32-bit length, then a run of raw text.
_WORDS = ('options head post put delete trace accept accept-charset accept-encoding '
          'accept-language accept-ranges age allow authorization cache-control connection '
          'content-base content-encoding content-language content-length content-location '
          'content-md5 content-range content-type date etag expect expires from host if-match '
          'if-modified-since if-none-match if-range if-unmodified-since last-modified location '
          'max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after '
          'server te trailer transfer-encoding upgrade user-agent vary via warning '
          'www-authenticate method get status').split() + ['200 OK'] + \
    'version HTTP/1.1 url public set-cookie keep-alive origin'.split()
_TAIL = ('100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505'
         '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request'
         '401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented'
         '503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 '
         'Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,'
         'application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age='
         'gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.')
DICTIONARY = b''.join(struct.pack('!I', len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
assert len(DICTIONARY) == 1423, len(DICTIONARY)

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_CANCEL = 1, 2, 5
MAX_DATA = 32 * 1024


class ProtocolError(Exception):
    pass


def encode_headers(headers):
    out = [struct.pack('!I', len(headers))]
    for k, v in headers.items():
        k, v = k.lower().encode(), v.encode()
        out.append(struct.pack('!I', len(k)) + k + struct.pack('!I', len(v)) + v)
    return b''.join(out)


def decode_headers(block):
    (n,), off, h = struct.unpack_from('!I', block), 4, {}
    for _ in range(n):
        (kl,) = struct.unpack_from('!I', block, off)
        k = block[off + 4:off + 4 + kl].decode()
        off += 4 + kl
        (vl,) = struct.unpack_from('!I', block, off)
        v = block[off + 4:off + 4 + vl].decode()
        off += 4 + vl
        h[k.lower()] = v
    return h


class Stream:
    """A client-initiated stream. Inbound data: read() (b'' at FIN/reset/connection end)."""

    def __init__(self, conn, sid, headers, fin):
        self.conn = conn
        self.id = sid
        self.headers = headers
        self.inbox = queue.Queue()
        self.remote_fin = False
        self.local_fin = False
        self.replied = False
        self.reset = False
        self.lock = threading.Lock()
        if fin:
            self._remote_close()

    def _remote_close(self):
        if not self.remote_fin:
            self.remote_fin = True
            self.inbox.put(None)

    def reply(self):
        with self.lock:
            if self.replied:
                return
            self.replied = True
        self.conn.send_control(SYN_REPLY, 0, struct.pack('!I', self.id), headers={})

    def read(self, timeout=None):
        if self.remote_fin and self.inbox.empty():
            return b''
        item = self.inbox.get(timeout=timeout)
        if item is None:
            self.inbox.put(None)  # keep returning EOF
            return b''
        return item

    def write(self, data):
        """False if the stream or connection is gone."""
        if self.local_fin or self.reset:
            return False
        mv = memoryview(data)
        for off in range(0, len(mv), MAX_DATA):
            if not self.conn.send_data(self.id, 0, bytes(mv[off:off + MAX_DATA])):
                return False
        return True

    def close(self):
        """Half-close our side (FIN). Idempotent."""
        with self.lock:
            if self.local_fin or self.reset:
                return
            self.local_fin = True
        self.conn.send_data(self.id, FLAG_FIN, b'')
        self.conn._maybe_forget(self)

    def rst(self, status=RST_CANCEL):
        with self.lock:
            if self.reset:
                return
            self.reset = True
        self.conn.send_control(RST_STREAM, 0, struct.pack('!II', self.id, status))
        self._remote_close()
        self.conn._maybe_forget(self, force=True)


class Connection:
    """read_exact(n) -> bytes (short at EOF); write(bytes). on_stream(stream) runs on the reader
    thread for each new stream and must not block. on_reset(stream) likewise."""

    def __init__(self, read_exact, write, on_stream, on_close=None):
        self.read_exact = read_exact
        self.write = write
        self.on_stream = on_stream
        self.on_close = on_close
        self.wlock = threading.Lock()
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                        zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.streams = {}
        self.slock = threading.Lock()
        self.closed = False

    # -- writing -------------------------------------------------------------
    def _write_frame(self, frame):
        """Caller holds wlock. False once the connection failed."""
        try:
            self.write(frame)
            return True
        except OSError:
            self.closed = True
            return False

    def send_control(self, ftype, flags, payload, headers=None):
        with self.wlock:  # also orders the header blocks of the shared deflate stream
            if self.closed:
                return False
            if headers is not None:
                payload += self.deflate.compress(encode_headers(headers)) + \
                    self.deflate.flush(zlib.Z_SYNC_FLUSH)
            return self._write_frame(struct.pack('!HHI', 0x8003, ftype, (flags << 24) | len(payload)) + payload)

    def send_data(self, sid, flags, data):
        frame = struct.pack('!II', sid & 0x7FFFFFFF, (flags << 24) | len(data)) + data
        with self.wlock:
            return not self.closed and self._write_frame(frame)

    def goaway(self):
        with self.slock:
            last = max(self.streams) if self.streams else 0
        self.send_control(GOAWAY, 0, struct.pack('!II', last, 0))

    def _maybe_forget(self, st, force=False):
        if force or (st.local_fin and st.remote_fin):
            with self.slock:
                self.streams.pop(st.id, None)

    def all_streams(self):
        with self.slock:
            return list(self.streams.values())

    # -- reading -------------------------------------------------------------
    def serve(self):
        """Reader loop; returns when the peer goes away. Then every stream sees EOF."""
        try:
            while True:
                hdr = self.read_exact(8)
                if len(hdr) < 8:
                    break
                w0, w1 = struct.unpack('!II', hdr)
                flags, length = w1 >> 24, w1 & 0xFFFFFF
                payload = self.read_exact(length) if length else b''
                if len(payload) < length:
                    break
                if w0 & 0x80000000:
                    if not self._control((w0 & 0xFFFF), flags, payload):
                        break
                else:
                    self._data(w0 & 0x7FFFFFFF, flags, payload)
        except (OSError, ProtocolError, zlib.error, struct.error):
            pass
        finally:
            with self.wlock:
                self.closed = True
            for st in self.all_streams():
                st.reset = True
                st._remote_close()
            if self.on_close:
                self.on_close()

    def _control(self, ftype, flags, p):
        if ftype == SYN_STREAM:
            sid = struct.unpack_from('!I', p)[0] & 0x7FFFFFFF
            headers = decode_headers(self.inflate.decompress(p[10:]))
            st = Stream(self, sid, headers, flags & FLAG_FIN)
            with self.slock:
                self.streams[sid] = st
            self.on_stream(st)
        elif ftype == RST_STREAM:
            sid = struct.unpack_from('!I', p)[0] & 0x7FFFFFFF
            with self.slock:
                st = self.streams.pop(sid, None)
            if st:
                st.reset = True
                st._remote_close()
        elif ftype == PING:
            self.send_control(PING, 0, p[:4])
        elif ftype == GOAWAY:
            return False
        elif ftype == HEADERS:
            self.inflate.decompress(p[4:])  # keep the zlib stream in step
        # SETTINGS, WINDOW_UPDATE, anything else: ignored
        return True

    def _data(self, sid, flags, data):
        with self.slock:
            st = self.streams.get(sid)
        if st is None:
            return
        if data:
            st.inbox.put(data)
        if flags & FLAG_FIN:
            st._remote_close()
            self._maybe_forget(st)

    def close(self):
        with self.wlock:
            self.closed = True
