"""Server side of RFC 6455 WebSocket: handshake, framing (client frames are masked), ping/pong,
close, and a byte-stream view of binary messages (for the WebSocket-tunnelled SPDY of kubectl
1.31+ port-forward, where message boundaries mean nothing)."""
import base64
import hashlib
import struct
import threading

GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


class Closed(Exception):
    pass


class WebSocket:
    """rfile: buffered reader of the hijacked connection; sock: the socket (for writes)."""

    def __init__(self, rfile, sock):
        self.rfile = rfile
        self.sock = sock
        self.wlock = threading.Lock()
        self.closed_sent = False

    def _read_exact(self, n):
        b = self.rfile.read(n)
        if b is None or len(b) < n:
            raise Closed('eof')
        return b

    def send(self, opcode, payload=b''):
        n = len(payload)
        if n < 126:
            hdr = struct.pack('!BB', 0x80 | opcode, n)
        elif n < 65536:
            hdr = struct.pack('!BBH', 0x80 | opcode, 126, n)
        else:
            hdr = struct.pack('!BBQ', 0x80 | opcode, 127, n)
        with self.wlock:
            if self.closed_sent:
                raise Closed('close already sent')
            if opcode == OP_CLOSE:
                self.closed_sent = True
            self.sock.sendall(hdr + payload)

    def send_binary(self, payload):
        self.send(OP_BIN, payload)

    def close(self, code=1000, reason=b''):
        try:
            self.send(OP_CLOSE, struct.pack('!H', code) + reason)
        except (Closed, OSError):
            pass

    def recv(self):
        """Next data message as (opcode, payload). Answers pings itself. Raises Closed on a
        close frame (after echoing it) or EOF."""
        msg, mop = b'', None
        while True:
            b0, b1 = self._read_exact(2)
            fin, op = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack('!H', self._read_exact(2))[0]
            elif n == 127:
                n = struct.unpack('!Q', self._read_exact(8))[0]
            mask = self._read_exact(4) if b1 & 0x80 else None
            data = self._read_exact(n) if n else b''
            if mask:
                data = _unmask(data, mask)
            if op == OP_PING:
                try:
                    self.send(OP_PONG, data)
                except (Closed, OSError):
                    pass
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                self.close(1000)
                raise Closed('close frame')
            if op != OP_CONT:
                mop, msg = op, data
            else:
                msg += data
            if fin:
                return mop, msg


def _unmask(data, mask):
    # XOR with the repeating 4-byte mask, done on big integers for speed.
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, 'big') ^ int.from_bytes(key, 'big')).to_bytes(n, 'big')


class ByteStream:
    """read(n)/write(b) over binary messages, for SPDY carried inside WebSocket."""

    def __init__(self, ws):
        self.ws = ws
        self.buf = bytearray()

    def read(self, n):
        while len(self.buf) < n:
            try:
                op, data = self.ws.recv()
            except (Closed, OSError):
                return bytes(self.buf[:0])
            if op in (OP_BIN, OP_TEXT):
                self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def write(self, data):
        self.ws.send_binary(data)
