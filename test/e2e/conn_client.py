"""conn_client.py IP PORT N SIZE [TIMEOUT]: N concurrent connections, each sends a 4-byte length
and SIZE unique bytes and expects exactly the same bytes back (a length-prefixed echo server behind
the redirect), then closes. No half-close before the answer: kubectl port-forward closes the local
socket as soon as the remote side of a stream ends, so request/response must not depend on it.
TIMEOUT (seconds, default 60) bounds each connect and the wait for all N to be open.
Prints "ok K/N"; exit 0 only when all N came back intact. Runs on the simulated node (test/e2e/cli)
and, sent on stdin to `python3 -`, in the kind suite's client pod (test/e2e/kind)."""
import hashlib
import socket
import sys
import threading

ip, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60
ok = []
errors = []
start = threading.Barrier(n)


def one(i):
    seed = hashlib.sha256(b'conn-%d' % i).digest()
    payload = (seed * (size // len(seed) + 1))[:size]
    try:
        s = socket.create_connection((ip, port), timeout=timeout)
        start.wait(timeout)  # all connections open at once
        s.sendall(len(payload).to_bytes(4, 'big') + payload)
        got = bytearray()
        while len(got) < size:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
        if bytes(got) == payload:
            ok.append(i)
        else:
            errors.append('conn %d: %d bytes back, %s' % (i, len(got), 'differ' if got else 'none'))
    except Exception as e:  # noqa: BLE001 - reported below
        errors.append('conn %d: %r' % (i, e))
        try:
            start.abort()
        except Exception:  # noqa: BLE001
            pass


threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print('ok %d/%d' % (len(ok), n))
for e in errors[:10]:
    print(e)
sys.exit(0 if len(ok) == n else 1)
