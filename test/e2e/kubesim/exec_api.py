"""pods/exec over WebSocket (v5/v4.channel.k8s.io: one binary message per chunk, first byte the
channel) and over SPDY/3.1 (one stream per channel), driving a runtime ExecProcess."""
import inspect
import json
import os
import socket
import threading
import time
import queue

import apierrors
import podutil
import resources
import spdy
import websocket

WS_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io',
                'channel.k8s.io']
SPDY_PROTOCOLS = WS_PROTOCOLS
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def _bool(req, key):
    return req.q(key) in ('true', '1')


def status_for(code, argv, err=None):
    if err is not None:
        return {'metadata': {}, 'status': 'Failure', 'message': err, 'reason': 'InternalError',
                'details': {'causes': [{'message': err}]}, 'code': 500}
    if code == 0:
        return {'metadata': {}, 'status': 'Success'}
    return {'metadata': {}, 'status': 'Failure',
            'message': 'command terminated with non-zero exit code: error executing command %s, exit code %d'
                       % ('[' + ' '.join(argv) + ']', code),
            'reason': 'NonZeroExitCode',
            'details': {'causes': [{'reason': 'ExitCode', 'message': str(code)}]}}


def serve(sim, req, ns, name):
    argv = req.qall('command')
    tty, want_in, want_out, want_err = _bool(req, 'tty'), _bool(req, 'stdin'), _bool(req, 'stdout'), _bool(req, 'stderr')
    if tty:
        want_err = False
    if not argv:
        raise apierrors.bad_request('you must specify at least 1 command')
    if not (want_in or want_out or want_err):
        raise apierrors.bad_request('you must specify at least 1 of stdin, stdout, stderr')
    with sim.lock:
        pod = resources.live_pod(sim, ns, name)
        c = podutil.resolve_container(pod, req.q('container'))
        phase = pod.get('status', {}).get('phase')
        if phase in ('Succeeded', 'Failed'):
            raise apierrors.bad_request('cannot exec into a container in a completed pod; current phase is %s' % phase)
        cs = podutil.container_status(pod, c) or {}
        if 'running' not in (cs.get('state') or {}):
            raise apierrors.bad_request('container %s is not running in pod %s' % (c, name)
                                        if cs else 'container not found ("%s")' % c)
        uid = pod['metadata']['uid']
    up = (req.header('Upgrade') or '').lower()
    opts = dict(argv=argv, container=c, tty=tty, stdin=want_in, stdout=want_out, stderr=want_err)
    if 'websocket' in up:
        offered = req.header_all('Sec-WebSocket-Protocol')
        proto = next((p for p in WS_PROTOCOLS if p in offered), None)
        if proto is None:
            raise apierrors.bad_request('unable to upgrade connection: no supported subprotocol in %s' % offered)
        req.switch_protocols([('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
                              ('Sec-WebSocket-Accept', websocket.accept_key(req.header('Sec-WebSocket-Key') or '')),
                              ('Sec-WebSocket-Protocol', proto)])
        return _run_ws(sim, req, pod, uid, proto, opts)
    if 'spdy/3.1' in up:
        offered = req.header_all('X-Stream-Protocol-Version')
        proto = next((p for p in SPDY_PROTOCOLS if p in offered), None)
        if proto is None:
            raise apierrors.APIError(403, 'Forbidden', 'unable to upgrade: unable to negotiate protocol: '
                                     'client supports %s, server supports %s' % (offered, SPDY_PROTOCOLS))
        req.switch_protocols([('Connection', 'Upgrade'), ('Upgrade', 'SPDY/3.1'),
                              ('X-Stream-Protocol-Version', proto)])
        return _run_spdy(sim, req, pod, uid, proto, opts)
    raise apierrors.bad_request('Upgrade request required')


def _start(sim, pod, o, size=None):
    """(process, error message) — the message is what a kubelet reports for a failed start.
    size: the client's first terminal size, applied as soon as the process exists."""
    try:
        if size and _takes_size(sim.runtime.exec):
            # the runtime sizes the pty before the command runs (no race with e.g. `stty size`)
            w, h = _size(size) or (0, 0)
            proc = sim.runtime.exec(pod, o['container'], o['argv'], o['tty'], o['stdin'], size=(w, h))
        else:
            proc = sim.runtime.exec(pod, o['container'], o['argv'], o['tty'], o['stdin'])
            if size:
                _resize(proc, size)
        return proc, None
    except KeyError:
        return None, 'container %s is not valid for pod %s' % (o['container'], pod['metadata']['name'])
    except FileNotFoundError:
        return None, ('Internal error occurred: error executing command in container: failed to exec in '
                      'container: OCI runtime exec failed: exec failed: unable to start container '
                      'process: exec: "%s": executable file not found in $PATH: unknown' % o['argv'][0])
    except OSError as e:
        return None, 'Internal error occurred: error executing command in container: %s' % e


def _pump(fd, write):
    """Copies fd to write() until EOF (EIO on a pty whose slave side is gone)."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data or write(data) is False:
            return


def _finish(proc, pumps):
    code = proc.wait()
    for t in pumps:
        t.join(5)
    return code


def _close_fds(proc):
    if hasattr(proc, 'close'):
        proc.close()  # the runtime's ExecProcess owns its fds
        return
    seen = set()
    for fd in (proc.stdin_fd, proc.stdout_fd, proc.stderr_fd):
        if fd is not None and fd not in seen:
            seen.add(fd)
            try:
                os.close(fd)
            except OSError:
                pass


def _run_ws(sim, req, pod, uid, proto, o):
    ws = websocket.WebSocket(req.h.rfile, req.h.connection)
    sock = req.h.connection
    closer = lambda: _shutdown(sock)
    sim.register_session(uid, closer)
    try:
        early, size = _first_resize_ws(ws, sock) if o['tty'] else ([], None)
        proc, err = _start(sim, pod, o, size)
        if proc is None:
            _ws_status(ws, proto, status_for(None, o['argv'], err))
            ws.close(1000)
            _drain_ws(ws)
            return
        stdin_closed = threading.Event()
        finished = threading.Event()

        def reader():
            try:
                while True:
                    op, msg = early.pop(0) if early else ws.recv()
                    if not msg:
                        continue
                    ch, data = msg[0], msg[1:]
                    if ch == STDIN and proc.stdin_fd is not None and data and not stdin_closed.is_set():
                        try:
                            os.write(proc.stdin_fd, data)
                        except OSError:
                            pass
                    elif ch == RESIZE and o['tty']:
                        _resize(proc, data)
                    elif ch == CLOSE and data[:1] == bytes([STDIN]) and not o['tty']:
                        _close_stdin(proc, stdin_closed)
            except (websocket.Closed, OSError):
                pass
            if not o['tty']:
                _close_stdin(proc, stdin_closed)
            if not finished.is_set():
                proc.kill()  # the client went away: nobody is left to talk to the process
        rt = threading.Thread(target=reader, daemon=True)
        rt.start()

        def sender(ch):
            def w(data):
                try:
                    ws.send_binary(bytes([ch]) + data)
                except (websocket.Closed, OSError):
                    return False
            return w
        pumps = []
        if o['stdout']:
            pumps.append(threading.Thread(target=_pump, args=(proc.stdout_fd, sender(STDOUT)), daemon=True))
        if o['stderr'] and proc.stderr_fd is not None:
            pumps.append(threading.Thread(target=_pump, args=(proc.stderr_fd, sender(STDERR)), daemon=True))
        for t in pumps:
            t.start()
        code = _finish(proc, pumps)
        finished.set()
        _ws_status(ws, proto, status_for(code, o['argv']))
        ws.close(1000)
        rt.join(5)
        _close_fds(proc)
    finally:
        sim.unregister_session(uid, closer)


def _first_resize_ws(ws, sock, wait=1.0):
    """kubectl sends the terminal size right after connecting: wait for it (briefly) so the
    command starts with the right size. Returns (messages read meanwhile, the size message)."""
    early = []
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                op, msg = ws.recv()
            except (socket.timeout, TimeoutError):
                break
            if msg[:1] == bytes([RESIZE]):
                return early, msg[1:]
            early.append((op, msg))
    except (websocket.Closed, OSError):
        pass
    finally:
        try:
            sock.settimeout(None)
        except OSError:
            pass
    return early, None


def _drain_ws(ws):
    try:
        while True:
            ws.recv()
    except (websocket.Closed, OSError):
        pass


def _ws_status(ws, proto, st):
    if proto in ('v4.channel.k8s.io', 'v5.channel.k8s.io'):
        payload = json.dumps(st).encode()
    elif st['status'] == 'Success':
        return
    else:
        payload = st.get('message', '').encode()
    try:
        ws.send_binary(bytes([ERROR]) + payload)
    except (websocket.Closed, OSError):
        pass


def _takes_size(fn):
    try:
        return 'size' in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _size(data):
    """(width, height) of the last complete resize message in data, or None."""
    out = None
    for line in data.split(b'\n'):
        if line.strip():
            try:
                sz = json.loads(line)
                out = (int(sz.get('Width', 0)), int(sz.get('Height', 0)))
            except (ValueError, AttributeError, TypeError):
                pass
    return out


def _resize(proc, data):
    sz = _size(data)
    if sz:
        try:
            proc.resize(*sz)
        except OSError:
            pass


def _close_stdin(proc, flag):
    if flag.is_set():
        return
    flag.set()
    if proc.stdin_fd is not None and proc.stdin_fd != proc.stdout_fd:
        try:
            os.close(proc.stdin_fd)
        except OSError:
            pass
        proc.stdin_fd = None


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _run_spdy(sim, req, pod, uid, proto, o):
    sock = req.h.connection
    streams = {}
    ready = threading.Event()
    expected = {'error'}
    if o['stdin']:
        expected.add('stdin')
    if o['stdout']:
        expected.add('stdout')
    if o['stderr']:
        expected.add('stderr')
    if o['tty'] and proto != 'channel.k8s.io' and proto != 'v2.channel.k8s.io':
        expected.add('resize')
    lock = threading.Lock()

    def on_stream(st):
        st.reply()
        with lock:
            streams[st.headers.get('streamtype', '')] = st
            if expected <= set(streams):
                ready.set()
    conn = spdy.Connection(req.h.rfile.read, sock.sendall, on_stream, on_close=ready.set)
    rt = threading.Thread(target=conn.serve, daemon=True)
    rt.start()
    closer = lambda: _shutdown(sock)
    sim.register_session(uid, closer)
    try:
        ready.wait(30)
        if not expected <= set(streams):
            return
        size = None
        if 'resize' in streams:
            try:
                size = streams['resize'].read(timeout=1.0)
            except queue.Empty:
                pass
        proc, err = _start(sim, pod, o, size)
        if proc is None:
            _spdy_status(streams['error'], proto, status_for(None, o['argv'], err))
        else:
            stdin_closed = threading.Event()
            aux = []
            if 'stdin' in streams and proc.stdin_fd is not None:
                def stdin_pump():
                    s = streams['stdin']
                    while True:
                        data = s.read()
                        if not data:
                            break
                        try:
                            os.write(proc.stdin_fd, data)
                        except (OSError, TypeError):
                            break
                    if not o['tty']:
                        _close_stdin(proc, stdin_closed)
                aux.append(threading.Thread(target=stdin_pump, daemon=True))
            if 'resize' in streams:
                def resize_pump():
                    s, buf = streams['resize'], b''
                    while True:
                        data = s.read()
                        if not data:
                            break
                        buf += data
                        while b'\n' in buf:
                            line, buf = buf.split(b'\n', 1)
                            _resize(proc, line)
                        if buf.strip().endswith(b'}'):
                            _resize(proc, buf)
                            buf = b''
                aux.append(threading.Thread(target=resize_pump, daemon=True))
            pumps = []
            if 'stdout' in streams:
                pumps.append(threading.Thread(target=_pump, args=(proc.stdout_fd, streams['stdout'].write), daemon=True))
            if 'stderr' in streams and proc.stderr_fd is not None:
                pumps.append(threading.Thread(target=_pump, args=(proc.stderr_fd, streams['stderr'].write), daemon=True))
            for t in aux + pumps:
                t.start()

            def kill_when_lost():
                rt.join()
                if not finished.is_set():
                    proc.kill()  # the client went away: nobody is left to talk to the process
            finished = threading.Event()
            threading.Thread(target=kill_when_lost, daemon=True).start()
            code = _finish(proc, pumps)
            finished.set()
            _spdy_status(streams['error'], proto, status_for(code, o['argv']))
            _close_fds(proc)
        for st in streams.values():
            st.close()
        rt.join(10)  # the client hangs up once it has read everything
    finally:
        sim.unregister_session(uid, closer)
        conn.close()


def _spdy_status(st, proto, status):
    if proto in ('v4.channel.k8s.io', 'v5.channel.k8s.io'):
        st.write(json.dumps(status).encode())
    elif status['status'] != 'Success':
        st.write(status.get('message', '').encode())
