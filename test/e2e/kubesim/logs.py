"""pods/log: reads the runtime's log file ('<RFC3339Nano> <stream> <line>' records) and serves
the lines with the options of PodLogOptions; follow streams chunked, flushed, until the container
stops or the pod goes away."""
import datetime
import os
import threading

import apierrors
import podutil
import resources
import validation


class _Limit:
    def __init__(self, n):
        self.left = n

    def cut(self, data):
        if self.left is None:
            return data
        data = data[:self.left]
        self.left -= len(data)
        return data

    def done(self):
        return self.left is not None and self.left <= 0


def _record(raw, timestamps):
    """(datetime, output bytes) of one record line (bytes, ending in \\n)."""
    parts = raw.split(b' ', 2)
    if len(parts) < 3:
        return None, raw
    ts, line = parts[0], parts[2]
    out = ts + b' ' + line if timestamps else line
    return podutil.parse_time(ts.decode(errors='replace')), out


def serve(sim, req, ns, name):
    try:
        errs, opts = validation.log_options({k: req.q(k) for k in
                                             ('limitBytes', 'tailLines', 'sinceSeconds', 'sinceTime')})
    except ValueError as e:
        raise apierrors.bad_request(str(e))
    if errs:
        raise apierrors.invalid('PodLogOptions', name, errs)
    since = None
    if opts['sinceTime']:
        since = podutil.parse_time(opts['sinceTime'])
        if since is None:
            raise apierrors.bad_request('sinceTime: invalid value %r: must be RFC 3339' % opts['sinceTime'])
    elif opts['sinceSeconds']:
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=opts['sinceSeconds'])
    follow = req.q('follow') in ('true', '1')
    timestamps = req.q('timestamps') in ('true', '1')
    previous = req.q('previous') in ('true', '1')
    with sim.lock:
        pod = resources.live_pod(sim, ns, name)
        c = podutil.resolve_container(pod, req.q('container'))
        cs = podutil.container_status(pod, c) or {}
        uid = pod['metadata']['uid']
        waiting = (cs.get('state') or {}).get('waiting')
        path = sim.runtime.log_path(pod, c, previous)
    if path is None or not os.path.exists(path):
        if previous:
            raise apierrors.bad_request('previous terminated container "%s" in pod "%s" not found' % (c, name))
        reason = (waiting or {}).get('reason', 'ContainerCreating')
        raise apierrors.bad_request('container "%s" in pod "%s" is waiting to start: %s' % (c, name, reason))

    stop = threading.Event()
    closer = stop.set
    sim.register_session(uid, closer)
    limit = _Limit(opts['limitBytes'])
    try:
        f = open(path, 'rb')
    except OSError:
        raise apierrors.bad_request('container "%s" in pod "%s" has no logs' % (c, name))
    try:
        req.start_chunked('text/plain')
        lines = []
        pending = b''
        data = f.read()
        chunks = data.split(b'\n')
        pending = chunks.pop()  # a partial record stays pending
        for raw in chunks:
            t, out = _record(raw + b'\n', timestamps)
            if since is not None and t is not None and t < since:
                continue
            lines.append(out)
        if opts['tailLines'] is not None:
            lines = lines[len(lines) - opts['tailLines']:] if opts['tailLines'] else []
        req.chunk(limit.cut(b''.join(lines)))
        req.h.wfile.flush()
        while follow and not limit.done() and not stop.is_set() and not sim.stopping:
            more = f.read()
            if not more and _rotated(f, path):
                more = f.read()  # written to the old file before the rotation
                f.close()
                f = open(path, 'rb')  # go on in the new file
            if more:
                pending += more
                chunks = pending.split(b'\n')
                pending = chunks.pop()
                out = b''.join(_record(raw + b'\n', timestamps)[1] for raw in chunks)
                req.chunk(limit.cut(out))
                continue
            if not _still_running(sim, ns, name, uid, c, path, previous):
                more = f.read()  # whatever was written before the container stopped
                if not more:
                    break
                pending += more
                continue
            if resources._peer_closed(req.h.connection):
                break
            stop.wait(0.2)
        req.end_chunked()
    except OSError:
        req.h.close_connection = True
    finally:
        f.close()
        sim.unregister_session(uid, closer)


def _rotated(f, path):
    """Has the runtime moved the log away from path (rotation) since f was opened?"""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except OSError:
        return False


def _still_running(sim, ns, name, uid, c, path, previous):
    if previous:
        return False
    with sim.lock:
        pod = sim.store.get('pods', ns, name)
        if pod is None or pod['metadata']['uid'] != uid:
            return False
        cs = podutil.container_status(pod, c) or {}
        if 'terminated' in (cs.get('state') or {}):
            return False
        try:
            return sim.runtime.log_path(pod, c, False) == path
        except Exception:
            return False
