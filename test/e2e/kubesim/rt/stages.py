"""The runtime's record of what it created and the stage processes it starts.

STATE/runtime/state.json holds the runtime id, the node netns, the cgroup root and every stage
process (rt/stage.py and its child) with its start time. It is written before anything is created,
so a fresh process (`kubesim down`) can remove everything after a crash."""
import errno
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from rt import host

STAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stage.py')
START_TIMEOUT = 30.0  # seconds a stage may take to report its child's pid


class Stages:
    def __init__(self, dir):
        self.dir = dir
        self.state = None       # the record while set up: {'id', 'netns', 'cgroup', 'pids'}
        self.closing = False    # tearing down: no new stage starts
        self._lock = threading.Lock()
        self._popens = set()    # every stage we started, reaped in reap_all()

    # -- the record --------------------------------------------------------------------------
    def _path(self):
        return os.path.join(self.dir, 'state.json')

    def save(self):
        with self._lock:
            st = self.state
            if st is None:
                return
            tmp = self._path() + '.tmp'
            try:
                with open(tmp, 'w') as f:
                    json.dump(st, f)
                os.replace(tmp, self._path())
            except OSError as e:
                if not self.closing:
                    raise
                host.log('state record not written while tearing down: %s' % e)

    def load(self):
        try:
            with open(self._path()) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def forget_state(self):
        with self._lock:
            self.state = None

    def _record_pid(self, pid, add):
        with self._lock:
            st = self.state
            if st is None:
                return
            if add:
                st['pids'][str(pid)] = host.proc_starttime(pid)
            else:
                st['pids'].pop(str(pid), None)
        self.save()

    @staticmethod
    def kill_recorded(st):
        """SIGKILL to every recorded process still alive (recognised by its start time)."""
        for pid, start in list((st.get('pids') or {}).items()):
            pid = int(pid)
            if start is not None and host.proc_starttime(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    @staticmethod
    def wait_recorded(st, timeout):
        for pid, start in list((st.get('pids') or {}).items()):
            host.wait_gone(int(pid), start, timeout)

    # -- stage processes ---------------------------------------------------------------------
    def spawn(self, mode, spec, spec_path, argv0=None, stdin=subprocess.DEVNULL,
              stdout=subprocess.DEVNULL, stderr=None):
        """Starts rt/stage.py; returns (popen, child pid or None, error or None), error being
        (errno, message, reached_child)."""
        if self.closing:
            return None, None, (errno.ESHUTDOWN, 'the runtime is shutting down', False)
        with open(spec_path, 'w') as f:
            json.dump(spec, f)
        r, w = os.pipe()
        try:
            popen = subprocess.Popen(
                [argv0 or sys.executable, '-I', '-S', STAGE, mode, spec_path, str(w)],
                executable=sys.executable, pass_fds=(w,), stdin=stdin, stdout=stdout,
                stderr=stderr, start_new_session=True)
        finally:
            os.close(w)
        self._record_pid(popen.pid, True)
        with self._lock:
            self._popens.add(popen)
        try:
            data = self._read_status(r)
        finally:
            os.close(r)
        if data is None:
            popen.kill()
            return popen, None, (errno.ETIMEDOUT, '%s did not start in %ds' % (mode, START_TIMEOUT), False)
        pid, err = None, None
        for line in data.decode(errors='replace').splitlines():
            if line.startswith('pid '):
                pid = int(line[4:])
            elif line.startswith('err '):
                code, _, msg = line[4:].partition(' ')
                err = (int(code), msg, pid is not None)
        if pid is None and err is None:
            err = (errno.EIO, '%s stage exited during start-up (status %s)' % (mode, popen.poll()), False)
        if pid is not None:
            # The child too: without cgroups a fresh process's teardown finds it only this way.
            self._record_pid(pid, True)
            popen.kubesim_child = pid
        return popen, pid, err

    @staticmethod
    def _read_status(r):
        """Everything the stage writes on its status pipe until it closes it; None on timeout."""
        data = b''
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                return None
            b = os.read(r, 4096)
            if not b:
                return data
            data += b

    def finish(self, popen):
        """Waits for a stage and forgets it; returns its exit status."""
        code = popen.wait()
        self.forget(popen)
        return code

    def forget(self, popen):
        """A stage that has exited (and been waited for) leaves the records."""
        self._record_pid(popen.pid, False)
        child = getattr(popen, 'kubesim_child', None)
        if child is not None:
            self._record_pid(child, False)
        with self._lock:
            self._popens.discard(popen)

    def reap_all(self, timeout=5.0):
        with self._lock:
            popens, self._popens = self._popens, set()
        for popen in popens:
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                host.log('stage %d did not exit' % popen.pid)
