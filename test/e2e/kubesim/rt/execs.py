"""Exec sessions: a command started in every namespace, the cgroup, environment, working
directory, capabilities and user of a running container (rt/stage.py exec), with pipes or a pty."""
import errno
import fcntl
import os
import secrets
import signal
import struct
import subprocess
import termios


def _set_winsize(fd, width, height):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', int(height), int(width), 0, 0))


class ExecProcess:
    """A process started by Runtime.exec(). Owns its fds until close()."""

    def __init__(self, popen, pid, pidfd, stdin_fd, stdout_fd, stderr_fd, tty, on_exit):
        self._popen = popen
        self.pid = pid
        self._pidfd = pidfd
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.tty = tty
        self._on_exit = on_exit
        self._closed = False

    def resize(self, width, height):
        if self.tty:
            _set_winsize(self.stdout_fd, width, height)

    def wait(self):
        code = self._popen.wait()
        self._on_exit()
        return code

    def kill(self):
        if self._pidfd is not None and self._popen.poll() is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except OSError:
                pass

    def close(self):
        """Closes the pipes / pty master (call after reading to EOF and wait())."""
        if self._closed:
            return
        self._closed = True
        fds = {fd for fd in (self.stdin_fd, self.stdout_fd, self.stderr_fd) if fd is not None}
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def stage_spec(c, pid, argv, tty, shim_cgroup):
    """The exec stage's spec for container c (a snapshot taken under Runtime.lock) whose main
    process is pid."""
    env = list(c.env)
    if tty and not any(e.startswith('TERM=') for e in env):
        env.append('TERM=xterm')
    kinds = ('ipc', 'uts', 'net', 'pid', 'mnt') + (('cgroup',) if c.cgroup else ())
    return {'join': {k: '/proc/%d/ns/%s' % (pid, k) for k in kinds},
            'cgroup': c.cgroup, 'shim_cgroup': shim_cgroup, 'argv': list(argv),
            'env': env, 'cwd': c.cwd, 'caps': c.caps, 'uid': c.uid, 'gid': c.gid, 'tty': bool(tty)}


def _close_files(popen):
    for f in (popen.stdin, popen.stdout, popen.stderr):
        if f:
            f.close()


def _start_error(err, argv, container, pod_name):
    """The exception for a stage's start-up error (errno, message, reached_child)."""
    code, msg, in_child = err
    if code == errno.ENOENT and in_child and 'executable file not found' in msg:
        return FileNotFoundError(errno.ENOENT, msg, argv[0])
    if code == errno.EACCES and in_child:
        return PermissionError(errno.EACCES, msg, argv[0])
    if not in_child:
        return ProcessLookupError('container "%s" in pod "%s" is not running (%s)' % (container, pod_name, msg))
    return OSError(code, msg)


def start(stages, p, container, spec, stdin, size):
    """Starts the exec stage for pod p; returns its ExecProcess. size=(width, height) sizes the pty
    before the command starts (tty only)."""
    tty = spec['tty']
    spec_path = os.path.join(p.dir, 'exec-%s.json' % secrets.token_hex(8))
    master = slave = None
    if tty:
        master, slave = os.openpty()
        if size and size[0] > 0 and size[1] > 0:
            _set_winsize(master, size[0], size[1])
        ios = {'stdin': slave, 'stdout': slave, 'stderr': slave}
    else:
        ios = {'stdin': subprocess.PIPE if stdin else subprocess.DEVNULL,
               'stdout': subprocess.PIPE, 'stderr': subprocess.PIPE}
    try:
        popen, cpid, err = stages.spawn('exec', spec, spec_path, **ios)
    except BaseException:
        if master is not None:
            os.close(master)
        raise
    finally:
        if slave is not None:
            os.close(slave)
        try:
            os.unlink(spec_path)
        except OSError:
            pass
    if err is not None:
        if master is not None:
            os.close(master)
        if popen is not None:
            stages.finish(popen)
            _close_files(popen)
        raise _start_error(err, spec['argv'], container, p.name)
    try:
        pidfd = os.pidfd_open(cpid)
    except OSError:
        pidfd = None
    p.exec_pids.add(cpid)

    def on_exit():
        p.exec_pids.discard(cpid)
        stages.forget(popen)
    if tty:
        return ExecProcess(popen, cpid, pidfd, master if stdin else None, master, None, True, on_exit)
    # Hand the raw fds over to the ExecProcess (it closes them), not Python file objects.
    fds = [os.dup(f.fileno()) if f else None for f in (popen.stdin, popen.stdout, popen.stderr)]
    _close_files(popen)
    popen.stdin = popen.stdout = popen.stderr = None
    return ExecProcess(popen, cpid, pidfd, fds[0], fds[1], fds[2], False, on_exit)
