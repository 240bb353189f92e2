"""kubesim runtime stage: the small program between the runtime and a container process.

Run by runtime.py as `python3 -I -S stage.py MODE SPEC.json STATUS_FD` in a fresh, single-threaded process,
so unshare()/setns() of mount and PID namespaces are allowed (they are not in the threaded
API server). Modes:

  pause      new net/uts/ipc (+pid when the pod shares one) namespaces; a child with an empty
             tmpfs root sleeps in them and reaps orphans (PID 1 of a shared PID namespace).
  container  a child joins the pod's namespaces (and a PID namespace: its own, the pause's or a
             target container's), gets its own mount namespace with an overlay of the image,
             /proc, /dev, /sys, /etc/hosts, pivots into it, drops capabilities and executes the
             command; this process stays outside as the shim and writes its stdout/stderr to the
             log file, one '<RFC3339Nano> <stream> <line>' record per line.
  exec       a child enters all namespaces of a running container process (and its cgroup), and
             executes a command with the container's environment; this process waits for it.

Protocol on the status pipe to the runtime (its fd number is argv[3]), closed when start-up is over:
  'pid <host pid of the child>\n' then 'ok\n' or 'err <errno> <message>\n'.
The process exits with the child's exit code (128+signal when killed by a signal).
Standard library + ctypes only; it imports nothing after pivot_root.
"""
import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import sys
import termios
import time
__import__('warnings')  # os.execvpe imports it lazily; after pivot_root it could not

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = {'ipc': CLONE_NEWIPC, 'uts': CLONE_NEWUTS, 'net': CLONE_NEWNET,
            'pid': CLONE_NEWPID, 'mnt': CLONE_NEWNS, 'cgroup': CLONE_NEWCGROUP}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
CAP_VERSION_3 = 0x20080522
SYS_PIVOT_ROOT = {'x86_64': 155, 'aarch64': 41, 'riscv64': 41, 'ppc64le': 203, 's390x': 217}

STATUS_FD = -1  # set from argv: the runtime's status pipe

libc = ctypes.CDLL(None, use_errno=True)


class CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]


def _check(ret, what):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, '%s: %s' % (what, os.strerror(e)))
    return ret


def setns(fd, nstype, what):
    _check(libc.setns(fd, nstype), 'setns(%s)' % what)


def unshare(flags):
    _check(libc.unshare(flags), 'unshare(0x%x)' % flags)


def mount(src, target, fstype, flags, data=None):
    _check(libc.mount(src.encode() if src else None, target.encode(),
                      fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                      data.encode() if data else None),
           'mount %s on %s (%s)' % (src or fstype, target, data or ''))


def umount2(target, flags):
    _check(libc.umount2(target.encode(), flags), 'umount %s' % target)


def pivot_root_here():
    """pivot_root('.', '.') then detach the old root stacked on top (as runc does)."""
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, 'pivot_root: unknown architecture %s' % os.uname().machine)
    _check(libc.syscall(ctypes.c_long(nr), b'.', b'.'), 'pivot_root')
    mount(None, '.', None, MS_SLAVE | MS_REC)
    umount2('.', MNT_DETACH)
    os.chdir('/')


def set_name(name):
    libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def cap_last():
    with open('/proc/sys/kernel/cap_last_cap') as f:
        return int(f.read())


CAP_LAST = cap_last()  # read now: after pivot_root there may be no /proc


def apply_caps_and_ids(spec):
    """Capabilities as containerd applies them: spec['caps'] is a list of capability numbers, or
    None to keep every capability (privileged). The rest leaves the bounding set (so no execve
    can get it back), then uid/gid change, then effective=permitted=caps with an empty inheritable
    set (containerd's default since GHSA-c9cp-9c75-9v8c), so an execve() as root ends up with
    exactly these capabilities and a non-root one with none."""
    caps = spec.get('caps')
    last = CAP_LAST
    if caps is not None:
        for c in range(last + 1):
            if c not in caps:
                _check(libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0), 'prctl(PR_CAPBSET_DROP, %d)' % c)
    set_ids(spec)
    if caps is not None and os.geteuid() == 0:
        set_caps(caps, last)


def set_caps(caps, last):
    keep = set(caps)
    mask = 0
    for c in keep:
        if c <= last:
            mask |= 1 << c
    hdr = CapHeader(CAP_VERSION_3, 0)
    data = (CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xffffffff
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    _check(libc.capset(ctypes.byref(hdr), data), 'capset')


def set_ids(spec):
    uid, gid = spec.get('uid'), spec.get('gid')
    if gid is not None:
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)


def join_cgroup(path):
    if path:
        with open(os.path.join(path, 'cgroup.procs'), 'w') as f:
            f.write('0')


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def report_error(fd, exc):
    code = getattr(exc, 'errno', None) or errno.EIO
    msg = str(exc).replace('\n', ' ')
    try:
        write_all(fd, ('err %d %s\n' % (code, msg)).encode())
    except OSError:
        pass


def exit_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def open_ns(spec):
    """Open every namespace file to join before anything changes (the paths are host paths)."""
    fds = {}
    for kind, path in (spec.get('join') or {}).items():
        if path:
            fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fds


def relay_start(child, internal_r):
    """Tell the runtime the child's pid, then what the child said before exec (nothing = ok)."""
    global STATUS_FD
    write_all(STATUS_FD, b'pid %d\n' % child)
    chunks = []
    while True:
        b = os.read(internal_r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(internal_r)
    msg = b''.join(chunks)
    write_all(STATUS_FD, msg if msg else b'ok\n')
    os.close(STATUS_FD)
    STATUS_FD = -1
    return not msg


# ---------------------------------------------------------------- root filesystem of a container

def mkdirs(path, mode=0o755):
    try:
        os.makedirs(path, mode)
    except FileExistsError:
        pass


def touch(path):
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def setup_dev(root):
    dev = root + '/dev'
    mkdirs(dev)
    mount('tmpfs', dev, 'tmpfs', MS_NOSUID, 'mode=755,size=65536k')
    for name, major, minor in (('null', 1, 3), ('zero', 1, 5), ('full', 1, 7), ('random', 1, 8),
                               ('urandom', 1, 9), ('tty', 5, 0)):
        os.mknod(dev + '/' + name, 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(dev + '/' + name, 0o666)
    os.mkdir(dev + '/pts')
    mount('devpts', dev + '/pts', 'devpts', MS_NOSUID | MS_NOEXEC,
          'newinstance,ptmxmode=0666,mode=0620')
    os.symlink('pts/ptmx', dev + '/ptmx')
    os.mkdir(dev + '/shm')
    mount('shm', dev + '/shm', 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=1777,size=65536k')
    os.mkdir(dev + '/mqueue')
    for name, target in (('fd', '/proc/self/fd'), ('stdin', '/proc/self/fd/0'),
                         ('stdout', '/proc/self/fd/1'), ('stderr', '/proc/self/fd/2')):
        os.symlink(target, dev + '/' + name)


def setup_rootfs(spec):
    """In a fresh mount namespace: overlay(image, tmpfs) → /proc /dev /sys /etc/hosts → pivot."""
    fs = spec['rootfs']
    unshare(CLONE_NEWNS)
    mount(None, '/', None, MS_REC | MS_PRIVATE)  # nothing we mount may reach the host
    scratch = fs['scratch']
    mount('tmpfs', scratch, 'tmpfs', 0, 'mode=755')
    root = scratch + '/root'
    for d in ('upper', 'work', 'root'):
        os.mkdir(scratch + '/' + d)
    try:
        mount('overlay', root, 'overlay', 0,
              'lowerdir=%s,upperdir=%s/upper,workdir=%s/work' % (fs['image'], scratch, scratch))
        writable = True
    except OSError:
        # No overlayfs (e.g. the image sits on an overlay the kernel refuses to stack):
        # the image read-only, with private tmpfs copies where containers write.
        mount(fs['image'], root, None, MS_BIND | MS_REC)
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        writable = False
        for d in ('tmp', 'run'):
            if os.path.isdir(root + '/' + d):
                mount('tmpfs', root + '/' + d, 'tmpfs', MS_NOSUID | MS_NODEV, 'mode=1777')
        if os.path.isdir(root + '/etc'):
            import shutil
            etc = scratch + '/etc'
            shutil.copytree(root + '/etc', etc, symlinks=True)
            mount(etc, root + '/etc', None, MS_BIND)
    if writable:
        for d in ('proc', 'dev', 'sys', 'etc', 'tmp'):
            mkdirs(root + '/' + d)
    mount('proc', root + '/proc', 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC)
    setup_dev(root)
    if os.path.isdir(root + '/sys'):
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (0 if fs.get('privileged') else MS_RDONLY)
        mount('sysfs', root + '/sys', 'sysfs', flags)
    for name in ('hosts', 'hostname'):
        src = fs.get(name)
        if src and os.path.isdir(root + '/etc'):
            touch(root + '/etc/' + name)
            mount(src, root + '/etc/' + name, None, MS_BIND)
    if writable:
        mkdirs(root + '/' + spec['cwd'].lstrip('/'))  # as containerd does, before a read-only root
    if fs.get('readonly') and writable:
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.chdir(root)
    pivot_root_here()


# ---------------------------------------------------------------------------------- modes

def run_pause(spec):
    join_cgroup(spec.get('cgroup'))
    flags = CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | (CLONE_NEWPID if spec.get('new_pid') else 0)
    unshare(flags)
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(r)
        os.close(STATUS_FD)
        try:
            name = spec['hostname'].encode()
            _check(libc.sethostname(name, len(name)), 'sethostname')
            unshare(CLONE_NEWNS)
            mount(None, '/', None, MS_REC | MS_PRIVATE)
            mount('tmpfs', spec['scratch'], 'tmpfs', 0, 'mode=755,size=64k')
            os.chdir(spec['scratch'])
            pivot_root_here()
            apply_caps_and_ids(spec)
            set_name('pause')
            # PID 1 of a namespace only gets signals it has a handler for; block them and take
            # them with sigwait so no SIGCHLD is lost between two reaps.
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(s, lambda *a: None)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
            os.close(w)
            os.closerange(0, 3)
        except BaseException as e:
            report_error(w, e)
            os._exit(127)
        while True:
            s = signal.sigwait({signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
            if s != signal.SIGCHLD:
                os._exit(0)
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:
                pass
    os.close(w)
    relay_start(child, r)
    _, status = os.waitpid(child, 0)
    return exit_code(status)


def exec_child(spec, r, w, prepare):
    """The forked child's way to the container's command: prepare() (namespaces, fds, root),
    the capabilities and user, then execve of argv with the spec's environment. A failure goes to
    the shim on w (a missing binary in runc's words) and the child exits 127."""
    try:
        os.close(r)
        os.close(STATUS_FD)
        prepare()
        apply_caps_and_ids(spec)
        os.execvpe(spec['argv'][0], spec['argv'], dict(e.split('=', 1) for e in spec['env']))
    except BaseException as e:
        if isinstance(e, FileNotFoundError) and e.filename == spec['argv'][0]:
            e = OSError(errno.ENOENT, 'exec: "%s": executable file not found in $PATH' % spec['argv'][0])
        report_error(w, e)
        os._exit(127)


def enter_pid_ns(spec):
    """A shim's start: into the shims' cgroup, every namespace file to join opened, and the PID
    namespace of the children to come entered (a joined one, or a new one with new_pid).
    Returns the fds of the other namespaces."""
    join_cgroup(spec.get('shim_cgroup'))
    ns = open_ns(spec)
    if 'pid' in ns:
        setns(ns.pop('pid'), CLONE_NEWPID, 'pid')  # only our children enter it
    elif spec.get('new_pid'):
        unshare(CLONE_NEWPID)
    return ns


def run_container(spec):
    ns = enter_pid_ns(spec)
    # stdout/stderr pipes, or one pty with tty: true (its output is the "stdout" stream). With
    # stdin: true the shim keeps the writing end open, so a shell waits instead of reading EOF.
    keep = []
    if spec.get('tty'):
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        streams = [(master, b'stdout')]
        child_fds = (slave, slave, slave)
    else:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        streams = [(out_r, b'stdout'), (err_r, b'stderr')]
        stdin_r = os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC)
        if spec.get('stdin'):
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            keep.append(stdin_w)
        child_fds = (stdin_r, out_w, err_w)
    r, w = os.pipe2(os.O_CLOEXEC)
    log = LogFile(spec['log'], spec.get('log_max_size') or 0, spec.get('log_max_files') or 1)
    child = os.fork()
    if child == 0:
        def prepare():
            if spec.get('tty'):
                os.setsid()
            for i, fd in enumerate(child_fds):
                os.dup2(fd, i)
            if spec.get('tty'):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            join_cgroup(spec.get('cgroup'))
            if spec.get('cgroupns'):
                unshare(CLONE_NEWCGROUP)  # rooted at the container's cgroup, as containerd on v2
            for kind in ('ipc', 'uts', 'net'):
                if kind in ns:
                    setns(ns[kind], NS_FLAGS[kind], kind)
            setup_rootfs(spec)
            os.chdir(spec['cwd'])
        exec_child(spec, r, w, prepare)
    for fd in set(child_fds) | {w}:
        os.close(fd)
    for fd in ns.values():
        os.close(fd)
    started = relay_start(child, r)
    return shim_loop(child, streams, log, spec.get('cgroup') if started else None)


def rfc3339nano(ns):
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(secs))
    frac_s = ('%09d' % frac).rstrip('0')
    return base + ('.' + frac_s if frac_s else '') + 'Z'


MAX_LINE = 16 * 1024  # longer lines are split into several records
ROTATED_SUFFIX = '%Y%m%d-%H%M%S'  # the kubelet's name for a rotated log: <log>.<UTC time>


class LogFile:
    """The container log, rotated as the kubelet does: once it has max_size bytes (0: never) it
    is renamed <path>.<UTC time> and a new file takes its path, atomically (the path never
    vanishes); only the newest max_files - 1 rotated files are kept."""

    def __init__(self, path, max_size, max_files):
        self.path, self.max_size, self.max_files = path, max_size, max_files
        self.fd = self._open(path)
        self.size = os.fstat(self.fd).st_size

    @staticmethod
    def _open(path):
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, record):
        write_all(self.fd, record)
        self.size += len(record)
        if self.max_size and self.size >= self.max_size:
            self._rotate()

    def _rotate(self):
        rotated = '%s.%s' % (self.path, time.strftime(ROTATED_SUFFIX, time.gmtime()))
        fresh = self.path + '.new'
        try:
            if os.path.exists(rotated):  # a second rotation within one second replaces the first
                os.unlink(rotated)
            os.link(self.path, rotated)
            fd = self._open(fresh)
            os.rename(fresh, self.path)
        except OSError:
            return  # keep writing the current file
        os.close(self.fd)
        self.fd, self.size = fd, 0
        folder, base = os.path.split(self.path)
        old = sorted(f for f in os.listdir(folder) if f.startswith(base + '.') and f != base + '.new')
        for f in old[:max(0, len(old) - (self.max_files - 1))]:
            try:
                os.unlink(os.path.join(folder, f))
            except OSError:
                pass


def shim_loop(child, streams, log, cgroup):
    """Copy the child's stdout/stderr into the log until it exits and its pipes are closed."""
    bufs = {fd: b'' for fd, _ in streams}
    names = dict(streams)
    pidfd = os.pidfd_open(child)
    open_fds = list(bufs)
    status = None
    drain_deadline = None

    def emit(fd, line):
        log.write(rfc3339nano(time.time_ns()).encode() + b' ' + names[fd] + b' ' + line + b'\n')

    while open_fds:
        timeout = None
        if drain_deadline is not None:
            timeout = max(0.0, drain_deadline - time.monotonic())
            if timeout == 0:
                break
        watch = open_fds + ([pidfd] if status is None else [])
        ready, _, _ = select.select(watch, [], [], timeout)
        for fd in ready:
            if fd == pidfd:
                _, st = os.waitpid(child, 0)
                status = st
                # Like containerd's shim when the PID namespace is not the container's own:
                # the main process is gone, so is the container.
                if cgroup:
                    try:
                        with open(os.path.join(cgroup, 'cgroup.kill'), 'w') as f:
                            f.write('1')
                    except OSError:
                        pass
                drain_deadline = time.monotonic() + 2.0
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's last slave is closed
                data = b''
            if not data:
                open_fds.remove(fd)
                if bufs[fd]:
                    emit(fd, bufs[fd])
                    bufs[fd] = b''
                continue
            buf = bufs[fd] + data
            lines = buf.split(b'\n')
            buf = lines.pop()
            for line in lines:
                while len(line) > MAX_LINE:
                    emit(fd, line[:MAX_LINE])
                    line = line[MAX_LINE:]
                emit(fd, line)
            while len(buf) > MAX_LINE:
                emit(fd, buf[:MAX_LINE])
                buf = buf[MAX_LINE:]
            bufs[fd] = buf
    for fd, buf in bufs.items():
        if buf:
            emit(fd, buf)
    if status is None:
        _, status = os.waitpid(child, 0)
    return exit_code(status)


def run_exec(spec):
    ns = enter_pid_ns(spec)
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        def prepare():
            join_cgroup(spec.get('cgroup'))
            for kind in ('cgroup', 'ipc', 'uts', 'net', 'mnt'):  # mnt last: it moves our root
                if kind in ns:
                    setns(ns[kind], NS_FLAGS[kind], kind)
            try:
                os.chdir(spec['cwd'])
            except OSError:
                os.chdir('/')
            if spec.get('tty'):
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        exec_child(spec, r, w, prepare)
    os.close(w)
    # Only the child may hold the caller's pipes / pty, so the runtime sees EOF when it exits.
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda sig, _f: os.kill(child, sig))
    relay_start(child, r)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            return exit_code(status)
        except InterruptedError:
            continue


def main():
    global STATUS_FD
    mode, spec_path, STATUS_FD = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.set_inheritable(STATUS_FD, False)  # never into a container or a pause child's exec
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        code = {'pause': run_pause, 'container': run_container, 'exec': run_exec}[mode](spec)
    except BaseException as e:  # a failure before the fork: tell the runtime, never hang it
        try:
            report_error(STATUS_FD, e)
        except OSError:
            pass
        code = 126
    os._exit(code)


if __name__ == '__main__':
    main()
