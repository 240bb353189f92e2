"""kubesim runtime: pods made of real Linux namespaces, processes, veths, cgroups and mounts.

The contract with the API server is /tmp/kubesim-runtime-interface.md (Runtime, ExecProcess).
Layout of what it creates (all recorded under STATE/runtime/state.json, so teardown() from a
fresh process after a crash still finds everything):

  network   named netns "kubesim-<id>-node" holding bridge kbr0 (10.244.0.1/24) and one veth per
            pod; the pod end is eth0 in the pod's netns. Nothing is added to the host namespace.
  processes per pod a pause process (net/uts/ipc namespaces, PID 1 of the shared PID namespace
            with shareProcessNamespace) and per container a shim (rt/stage.py) whose child is the
            container process; exec sessions are rt/stage.py too. All are in our cgroups.
  cgroups   <cgroup2>/<our cgroup>/kubesim-<id>/{shims, kubepods/besteffort/pod<uid>/<id>}
  files     STATE/runtime/pods/<uid>/...: hosts, hostname, logs/<container>/<n>.log, specs, and
            empty mount points (the overlays and tmpfs live only in the containers' own mount
            namespaces and vanish with them).
"""
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

STAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rt', 'stage.py')
NODE_NAME = 'kubesim-node'
BRIDGE = 'kbr0'
GATEWAY = '10.244.0.1'
POD_NET = '10.244.0.'
DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
START_TIMEOUT = 30.0

CAPS = ['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID',
        'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW',
        'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT',
        'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD',
        'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG',
        'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE']
CAP_NUM = {n: i for i, n in enumerate(CAPS)}
DEFAULT_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID',
                'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE']

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _log(msg):
    sys.stderr.write('kubesim runtime: %s\n' % msg)
    sys.stderr.flush()


def now_rfc3339():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def normalize_image(ref):
    """Drop docker.io/, docker.io/library/ (and library/) prefixes and a :latest tag."""
    for prefix in ('docker.io/library/', 'docker.io/', 'library/'):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if ref.endswith(':latest') and '/' not in ref[ref.rfind(':'):]:
        ref = ref[:-len(':latest')]
    return ref


def canonical_image(ref):
    """The name a runtime reports back (status.image): docker.io/library/nginx:latest."""
    name = normalize_image(ref)
    first = name.split('/', 1)[0]
    if '/' not in name or ('.' not in first and ':' not in first and first != 'localhost'):
        name = 'docker.io/' + ('library/' + name if '/' not in name else name)
    last = name.rsplit('/', 1)[-1]
    if ':' not in last and '@' not in last:
        name += ':latest'
    return name


def resolve_caps(sc):
    """containerd's rule: default set + add - drop ('ALL' allowed in both); privileged = all.
    Returns a list of capability numbers, or None for all. ValueError on an unknown name."""
    sc = sc or {}
    if sc.get('privileged'):
        return None
    caps = sc.get('capabilities') or {}

    def names(lst):
        out = []
        for n in lst or []:
            u = str(n).upper()
            u = u[4:] if u.startswith('CAP_') else u
            if u != 'ALL' and u not in CAP_NUM:
                raise ValueError('unknown capability "CAP_%s"' % u)
            out.append(u)
        return out
    add, drop = names(caps.get('add')), names(caps.get('drop'))
    have = set(DEFAULT_CAPS)
    if 'ALL' in add:
        have = set(CAPS)
    have |= {a for a in add if a != 'ALL'}
    if 'ALL' in drop:
        have = {a for a in add if a != 'ALL'} if 'ALL' not in add else set()
    have -= set(drop)
    last = _cap_last()
    return sorted(CAP_NUM[c] for c in have if CAP_NUM[c] <= last)


def _cap_last():
    try:
        with open('/proc/sys/kernel/cap_last_cap') as f:
            return int(f.read())
    except OSError:
        return len(CAPS) - 1


def expand_vars(s, env):
    """Kubernetes $(VAR) expansion: defined names are replaced, $$ escapes, the rest stays."""
    out, i = [], 0
    while i < len(s):
        if s[i] == '$' and i + 1 < len(s):
            if s[i + 1] == '$':
                out.append('$')
                i += 2
                continue
            if s[i + 1] == '(':
                j = s.find(')', i + 2)
                if j > 0 and s[i + 2:j] in env:
                    out.append(env[s[i + 2:j]])
                    i = j + 1
                    continue
        out.append(s[i])
        i += 1
    return ''.join(out)


def _proc_starttime(pid, live_only=False):
    """Start time of a process (to recognise it despite pid reuse); None if it is gone (or, with
    live_only, a zombie)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        if live_only and fields[0] in ('Z', 'X'):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _cgroup2_base():
    """Directory of our own cgroup in the cgroup2 hierarchy, or None without a writable one."""
    mnt = None
    try:
        with open('/proc/self/mountinfo') as f:
            for line in f:
                fields = line.split()
                sep = fields.index('-')
                if fields[sep + 1] == 'cgroup2':
                    mnt = fields[4]
                    break
        if mnt is None:
            return None
        with open('/proc/self/cgroup') as f:
            for line in f:
                if line.startswith('0::'):
                    path = os.path.join(mnt, line[3:].strip().lstrip('/'))
                    return path.rstrip('/') if os.access(path, os.W_OK) else None
    except (OSError, ValueError):
        pass
    return None


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def _run(argv, input=None):
    r = subprocess.run(argv, input=input, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError('%s failed (exit %d): %s' % (' '.join(argv), r.returncode,
                                                      (r.stderr or r.stdout).strip()))
    return r.stdout


class _Ctr:
    """One container (or ephemeral container) of a pod, across its restarts."""

    def __init__(self, spec, ephemeral):
        self.name = spec['name']
        self.spec = spec
        self.ephemeral = ephemeral
        self.image_ref = spec.get('image') or ''
        self.image_id = ''
        self.reported_image = self.image_ref
        self.state = {'waiting': {'reason': 'ContainerCreating'}}
        self.last_state = {}
        self.restart_count = 0
        self.cid = None
        self.hostpid = None
        self.pidfd = None
        self.popen = None
        self.cgroup = None
        self.env = []
        self.cwd = '/'
        self.caps = None
        self.uid = self.gid = None
        self.thread = None
        self.runs = 0  # number of log files (one per run)

    @property
    def running(self):
        return 'running' in self.state

    def status(self):
        st = {'name': self.name, 'state': self.state, 'lastState': self.last_state,
              'ready': self.running and not self.ephemeral, 'restartCount': self.restart_count,
              'image': self.reported_image, 'imageID': self.image_id,
              'started': self.running}
        if self.cid:
            st['containerID'] = 'containerd://' + self.cid
        return st


class _Pod:
    def __init__(self, pod, ip_last):
        md = pod['metadata']
        self.pod = pod
        self.ns, self.name = md.get('namespace', 'default'), md['name']
        self.uid = md.get('uid') or secrets.token_hex(16)
        self.ip_last = ip_last
        self.ip = None
        self.dir = None
        self.cgroup = None
        self.pause = None       # Popen of the pause stage
        self.pause_pid = None   # host pid of the process holding the namespaces
        self.pause_pidfd = None
        self.netns_fd = None
        self.veth = None
        self.sandbox_ready = threading.Event()
        self.deleting = threading.Event()
        self.spawn_lock = threading.Lock()
        self.thread = None
        self.ctrs = {}          # name -> _Ctr, spec containers then ephemeral ones
        self.cond = {}          # condition type -> (status, lastTransitionTime)
        self.start_time = now_rfc3339()
        self.exec_pids = set()
        self.gone = False       # delete_pod returned: no more notify

    def find(self, name):
        c = self.ctrs.get(name)
        if c is None:
            raise KeyError(name)
        return c


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
        if not self.tty:
            return
        fcntl.ioctl(self.stdout_fd, termios.TIOCSWINSZ, struct.pack('HHHH', height, width, 0, 0))

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


class Runtime:
    def __init__(self, state_dir, images_json, notify):
        self.state_dir = os.path.abspath(state_dir)
        self.dir = os.path.join(self.state_dir, 'runtime')
        self.images_json = images_json
        self.notify = notify
        self.lock = threading.RLock()
        # Kubernetes backs off 10s, 20s, ... 5min between restarts; tests may shorten it.
        self.backoff_base = float(os.environ.get('KUBESIM_BACKOFF_SECONDS', '10'))
        self._pods = {}
        self._ips = set()
        self._next_ip = 2
        self._state = None
        self._state_lock = threading.Lock()
        self._closing = False
        self._images = {}
        self._images_stamp = None
        self._net_lock = threading.Lock()
        self._popens = set()  # every stage we started, reaped in teardown
        self._host_net = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)

    # ------------------------------------------------------------------ state record

    def _state_path(self):
        return os.path.join(self.dir, 'state.json')

    def _save_state(self):
        with self._state_lock:
            st = self._state
            if st is None:
                return
            tmp = self._state_path() + '.tmp'
            try:
                with open(tmp, 'w') as f:
                    json.dump(st, f)
                os.replace(tmp, self._state_path())
            except OSError as e:
                if not self._closing:
                    raise
                _log('state record not written while tearing down: %s' % e)

    def _load_state(self):
        try:
            with open(self._state_path()) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _record_pid(self, pid, add):
        with self._state_lock:
            st = self._state
            if st is None:
                return
            if add:
                st['pids'][str(pid)] = _proc_starttime(pid)
            else:
                st['pids'].pop(str(pid), None)
        self._save_state()

    @property
    def node_netns(self):
        return self._state['netns'] if self._state else None

    # ------------------------------------------------------------------ node

    def setup(self):
        if os.geteuid() != 0:
            raise RuntimeError('kubesim runtime needs root (namespaces, veths, cgroups, mounts)')
        for tool, pkg in (('ip', 'iproute2'), ('nsenter', 'util-linux')):
            if shutil.which(tool) is None:
                raise RuntimeError('%s not found: install %s (scripts/deps.sh)' % (tool, pkg))
        self.teardown()  # whatever an earlier run with this state dir left behind
        self._closing = False
        os.makedirs(self.dir, 0o700, exist_ok=True)
        rid = '%x%s' % (os.getpid(), secrets.token_hex(3))
        self._state = {'id': rid, 'netns': 'kubesim-%s-node' % rid, 'cgroup': None, 'pids': {}}
        base = None if os.environ.get('KUBESIM_NO_CGROUPS') else _cgroup2_base()
        if base:
            self._state['cgroup'] = os.path.join(base, 'kubesim-' + rid)
        self._save_state()  # before creating anything, so a crash in between is still cleaned up
        if base:
            try:
                os.mkdir(self._state['cgroup'])
                os.mkdir(os.path.join(self._state['cgroup'], 'shims'))
                self._probe_cgroup(os.path.join(self._state['cgroup'], 'shims'))
            except OSError as e:
                _log('cgroup2 at %s is not usable (%s); containers run without cgroups'
                     % (base, e))
                shutil.rmtree(self._state['cgroup'], ignore_errors=True)
                self._state['cgroup'] = None
                self._save_state()
        ns = self._state['netns']
        _run(['ip', 'netns', 'add', ns])
        _run(['ip', '-n', ns, '-batch', '-'], input=(
            'link set lo up\n'
            'link add %s type bridge\n'
            'addr add %s/24 dev %s\n'
            'link set %s up\n' % (BRIDGE, GATEWAY, BRIDGE, BRIDGE)))

    @staticmethod
    def _probe_cgroup(path):
        """Can processes really be moved there? (Not when e.g. the parent has domain controllers
        enabled for its children while having processes of its own.)"""
        probe = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        try:
            _write(os.path.join(path, 'cgroup.procs'), str(probe.pid))
        finally:
            probe.stdin.close()
            probe.wait()

    def _cg(self, *parts):
        if not self._state or not self._state.get('cgroup'):
            return None
        return os.path.join(self._state['cgroup'], *parts)

    def teardown(self):
        """Removes everything this runtime (or an earlier process with this state dir) made."""
        self._closing = True
        st = self._state or self._load_state()
        with self.lock:
            pods = list(self._pods.values())
            for p in pods:
                p.gone = True  # the API server is going away too: no more notify
        for p in pods:
            with p.spawn_lock:  # waits for a stage being started right now
                p.deleting.set()
        if st:
            cg = st.get('cgroup')
            if cg and os.path.isdir(cg):
                try:
                    _write(os.path.join(cg, 'cgroup.kill'), '1')
                except OSError as e:
                    _log('cgroup.kill in %s: %s' % (cg, e))
            for pid, start in list((st.get('pids') or {}).items()):
                pid = int(pid)
                if start is not None and _proc_starttime(pid) == start:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        for p in pods:
            self._kill_pod_processes(p)
        for p in pods:
            self._reap_pod(p, 10.0)
        if st:
            cg = st.get('cgroup')
            if cg:
                self._rmdir_tree(cg)
            for pid, start in list((st.get('pids') or {}).items()):
                self._wait_gone(int(pid), start, 5.0)
            if st.get('netns') and os.path.exists('/run/netns/' + st['netns']):
                try:
                    _run(['ip', 'netns', 'del', st['netns']])
                except RuntimeError as e:
                    _log(str(e))
        with self._state_lock:
            popens, self._popens = self._popens, set()
        for popen in popens:
            try:
                popen.wait(5.0)
            except subprocess.TimeoutExpired:
                _log('stage %d did not exit' % popen.pid)
        for p in pods:
            self._close_pod_fds(p)
        with self.lock:
            self._pods.clear()
            self._ips.clear()
        with self._state_lock:
            self._state = None
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _wait_gone(pid, start, timeout):
        deadline = time.monotonic() + timeout
        while (start is not None and _proc_starttime(pid, True) == start
               and time.monotonic() < deadline):
            time.sleep(0.02)

    @staticmethod
    def _rmdir_tree(path, timeout=10.0):
        """rmdir a cgroup subtree bottom-up, waiting for killed processes to leave it."""
        if not os.path.isdir(path):
            return
        deadline = time.monotonic() + timeout
        while True:
            busy = None
            for d, _subdirs, _files in os.walk(path, topdown=False):
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    busy = e
                    try:
                        _write(os.path.join(d, 'cgroup.kill'), '1')
                    except OSError:
                        pass
            if busy is None or time.monotonic() > deadline:
                if busy is not None:
                    _log('cannot remove cgroup %s: %s' % (path, busy))
                return
            time.sleep(0.02)

    # ------------------------------------------------------------------ images

    def _image(self, ref):
        try:
            st = os.stat(self.images_json)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
        if stamp != self._images_stamp:
            try:
                with open(self.images_json) as f:
                    self._images = json.load(f).get('images', {})
                self._images_stamp = stamp
            except (OSError, ValueError) as e:
                _log('cannot read image store %s: %s' % (self.images_json, e))
                return None
        return self._images.get(normalize_image(ref))

    # ------------------------------------------------------------------ spawning stages

    def _spawn(self, mode, spec, spec_path, argv0=None, stdin=subprocess.DEVNULL,
               stdout=subprocess.DEVNULL, stderr=None):
        """Starts rt/stage.py; returns (popen, child pid or None, error or None), error being
        (errno, message, reached_child)."""
        if self._closing:
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
        with self._state_lock:
            self._popens.add(popen)
        data = b''
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([r], [], [], left)[0]:
                    popen.kill()
                    return popen, None, (errno.ETIMEDOUT, '%s did not start in %ds'
                                         % (mode, START_TIMEOUT), False)
                b = os.read(r, 4096)
                if not b:
                    break
                data += b
        finally:
            os.close(r)
        pid, err = None, None
        for line in data.decode(errors='replace').splitlines():
            if line.startswith('pid '):
                pid = int(line[4:])
            elif line.startswith('err '):
                code, _, msg = line[4:].partition(' ')
                err = (int(code), msg, pid is not None)
        if pid is None and err is None:
            err = (errno.EIO, '%s stage exited during start-up (status %s)'
                   % (mode, popen.poll()), False)
        if pid is not None:
            # The child too: without cgroups a fresh process's teardown finds it only this way.
            self._record_pid(pid, True)
            popen.kubesim_child = pid
        return popen, pid, err

    def _finish_popen(self, popen):
        code = popen.wait()
        self._forget(popen)
        return code

    def _forget(self, popen):
        """A stage that has exited (and been waited for) leaves the records."""
        self._record_pid(popen.pid, False)
        child = getattr(popen, 'kubesim_child', None)
        if child is not None:
            self._record_pid(child, False)
        with self._state_lock:
            self._popens.discard(popen)

    # ------------------------------------------------------------------ status

    def _notify(self, p):
        if p.gone:
            return
        try:
            self.notify(p.ns, p.name)
        except Exception as e:  # the API server's problem, never ours to die of
            _log('notify %s/%s: %s' % (p.ns, p.name, e))

    def _set_cond(self, p, typ, ok, reason=None, message=None):
        status = 'True' if ok else 'False'
        old = p.cond.get(typ)
        t = old[1] if old and old[0] == status else now_rfc3339()
        p.cond[typ] = (status, t, reason, message)

    def _render(self, p):
        """Rebuilds pod['status'] from the runtime's view. Caller holds self.lock."""
        pod = p.pod
        spec = pod.get('spec') or {}
        main = [c for c in p.ctrs.values() if not c.ephemeral]
        eph = [c for c in p.ctrs.values() if c.ephemeral]
        running = waiting = stopped = succeeded = 0
        for c in main:
            if 'running' in c.state:
                running += 1
            elif 'terminated' in c.state:
                stopped += 1
                succeeded += c.state['terminated'].get('exitCode') == 0
            elif 'terminated' in c.last_state:
                stopped += 1
            else:
                waiting += 1
        policy = spec.get('restartPolicy') or 'Always'
        if waiting:
            phase = 'Pending'
        elif running:
            phase = 'Running'
        elif stopped:
            if policy == 'Always':
                phase = 'Running'
            elif stopped == succeeded:
                phase = 'Succeeded'
            elif policy == 'OnFailure':
                phase = 'Running'
            else:
                phase = 'Failed'
        else:
            phase = 'Pending'
        unready = sorted(c.name for c in main if not c.running)
        ready = not unready and phase == 'Running'
        if phase in ('Succeeded', 'Failed'):
            reason, msg = 'PodCompleted', None
        elif unready:
            reason, msg = 'ContainersNotReady', 'containers with unready status: [%s]' % ' '.join(unready)
        else:
            reason = msg = None
        self._set_cond(p, 'PodReadyToStartContainers', p.sandbox_ready.is_set())
        self._set_cond(p, 'Initialized', True)
        self._set_cond(p, 'Ready', ready, reason, msg)
        self._set_cond(p, 'ContainersReady', ready, reason, msg)
        self._set_cond(p, 'PodScheduled', True)
        conds = []
        for typ in ('PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady',
                    'PodScheduled'):
            status, t, reason, msg = p.cond[typ]
            c = {'type': typ, 'status': status, 'lastProbeTime': None, 'lastTransitionTime': t}
            if reason:
                c['reason'] = reason
            if msg:
                c['message'] = msg
            conds.append(c)
        st = pod.setdefault('status', {})
        st['phase'] = phase
        st['conditions'] = conds
        st['hostIP'] = GATEWAY
        st['hostIPs'] = [{'ip': GATEWAY}]
        if p.ip:
            st['podIP'] = p.ip
            st['podIPs'] = [{'ip': p.ip}]
        st['startTime'] = p.start_time
        st['qosClass'] = 'BestEffort'
        st['containerStatuses'] = [c.status() for c in sorted(main, key=lambda c: c.name)]
        if eph:
            st['ephemeralContainerStatuses'] = [c.status() for c in eph]

    def _update(self, p, fn=None):
        with self.lock:
            if fn:
                fn()
            self._render(p)
        self._notify(p)

    # ------------------------------------------------------------------ pods

    def _pod_of(self, pod):
        md = pod['metadata']
        with self.lock:
            p = self._pods.get((md.get('namespace', 'default'), md['name']))
        if p is None:
            raise KeyError('pod %s/%s' % (md.get('namespace', 'default'), md['name']))
        return p

    def _alloc_ip(self):
        for i in range(253):
            n = 2 + (self._next_ip - 2 + i) % 253
            if n not in self._ips:
                self._ips.add(n)
                self._next_ip = n + 1
                return n
        raise RuntimeError('pod IP range 10.244.0.0/24 is exhausted (253 pods); delete pods')

    def run_pod(self, pod):
        if self._state is None or self._closing:
            raise RuntimeError('runtime is not set up (call setup())')
        md = pod['metadata']
        key = (md.get('namespace', 'default'), md['name'])
        with self.lock:
            if key in self._pods:
                raise ValueError('pod %s/%s is already running' % key)
            p = _Pod(pod, self._alloc_ip())
            self._pods[key] = p
            pod.setdefault('spec', {})['nodeName'] = NODE_NAME
            for cs in pod['spec'].get('containers') or []:
                p.ctrs[cs['name']] = _Ctr(cs, False)
            for cs in pod['spec'].get('ephemeralContainers') or []:
                p.ctrs[cs['name']] = _Ctr(cs, True)
            self._render(p)
        p.thread = threading.Thread(target=self._sandbox_main, args=(p,),
                                    name='pod-%s/%s' % key, daemon=True)
        p.thread.start()

    def _hosts_text(self, ns):
        lines = ['# Kubernetes-managed hosts file.', '127.0.0.1\tlocalhost',
                 '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet',
                 'fe00::0\tip6-mcastprefix', 'fe00::1\tip6-allnodes', 'fe00::2\tip6-allrouters']
        pods = sorted((q for q in self._pods.values() if q.ns == ns and q.ip
                       and not q.deleting.is_set()), key=lambda q: q.name)
        lines += ['%s\t%s' % (q.ip, q.name) for q in pods]
        return '\n'.join(lines) + '\n'

    def _refresh_hosts(self, ns):
        """One line per pod of the namespace in every pod's /etc/hosts. Rewritten in place: the
        file is bind-mounted into the containers, so its inode must stay."""
        with self.lock:
            text = self._hosts_text(ns).encode()
            targets = [q.dir + '/hosts' for q in self._pods.values() if q.ns == ns and q.dir]
        for path in targets:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, text, 0)
                    os.ftruncate(fd, len(text))
                finally:
                    os.close(fd)
            except OSError:
                pass

    def _sandbox_main(self, p):
        try:
            self._start_sandbox(p)
        except Exception as e:
            _log('pod %s/%s: sandbox failed: %s' % (p.ns, p.name, e))
            why = 'failed to create pod sandbox: %s' % e

            def fail():
                for c in p.ctrs.values():
                    if 'waiting' in c.state:
                        c.state = {'waiting': {'reason': 'ContainerCreating', 'message': why}}
            self._update(p, fail)
            return
        with self.lock:
            ctrs = list(p.ctrs.values())
        for c in ctrs:
            self._start_ctr_thread(p, c)

    def _start_sandbox(self, p):
        spec = p.pod.get('spec') or {}
        p.dir = os.path.join(self.dir, 'pods', p.uid)
        os.makedirs(os.path.join(p.dir, 'logs'), exist_ok=True)
        os.makedirs(os.path.join(p.dir, 'pause-root'), exist_ok=True)
        hostname = (spec.get('hostname') or p.name)[:63]
        _write(p.dir + '/hostname', hostname + '\n')
        _write(p.dir + '/hosts', '')
        self._update(p)
        if self._cg():
            p.cgroup = self._cg('kubepods', 'besteffort', 'pod' + p.uid)
            os.makedirs(p.cgroup, exist_ok=True)
        sandbox_id = secrets.token_hex(32)
        sandbox_cg = None
        if p.cgroup:
            sandbox_cg = os.path.join(p.cgroup, sandbox_id)
            os.mkdir(sandbox_cg)
        with p.spawn_lock:
            if p.deleting.is_set():
                return
            popen, pid, err = self._spawn(
                'pause', {'cgroup': sandbox_cg, 'hostname': hostname,
                          'new_pid': bool(spec.get('shareProcessNamespace')),
                          'scratch': os.path.join(p.dir, 'pause-root'),
                          'caps': resolve_caps({})},
                os.path.join(p.dir, 'pause.json'), argv0='/pause')
            p.pause = popen
        if err:
            raise RuntimeError('pause: %s' % err[1])
        p.pause_pid = pid
        p.pause_pidfd = os.pidfd_open(pid)
        p.netns_fd = os.open('/proc/%d/ns/net' % pid, os.O_RDONLY | os.O_CLOEXEC)
        # unique among live pods (one per IP), different when an IP is reused
        p.veth = 'veth%03d%s' % (p.ip_last, hashlib.sha256(p.uid.encode()).hexdigest()[:6])
        node = self._state['netns']
        p.ip = POD_NET + str(p.ip_last)
        _run(['ip', '-n', node, 'link', 'add', p.veth, 'type', 'veth', 'peer', 'name', 'eth0',
              'netns', str(pid)])
        _run(['ip', '-n', node, 'link', 'set', p.veth, 'master', BRIDGE, 'up'])
        _run(['nsenter', '--net=/proc/%d/ns/net' % pid, 'ip', '-batch', '-'], input=(
            'link set lo up\n'
            'addr add %s/24 dev eth0\n'
            'link set eth0 up\n'
            'route add default via %s\n' % (p.ip, GATEWAY)))
        p.sandbox_ready.set()
        self._refresh_hosts(p.ns)
        self._update(p)

    def _start_ctr_thread(self, p, c):
        with self.lock:
            if c.thread is not None:
                return
            c.thread = threading.Thread(target=self._ctr_main, args=(p, c),
                                        name='ctr-%s/%s/%s' % (p.ns, p.name, c.name),
                                        daemon=True)
        c.thread.start()

    def _backoff(self, n):
        return min(self.backoff_base * (2 ** n), 300.0)

    def _ctr_main(self, p, c):
        try:
            if c.ephemeral:
                self._update(p)  # its waiting status, set by add_ephemeral_container
            self._ctr_loop(p, c)
        except Exception as e:
            _log('container %s/%s/%s: %s' % (p.ns, p.name, c.name, e))

    def _ctr_loop(self, p, c):
        pulls = 0
        while not p.deleting.is_set():
            img = self._image(c.image_ref)
            if img is None:
                canon = canonical_image(c.image_ref)
                msg = ('failed to pull and unpack image "%s": failed to resolve reference "%s": '
                       '%s: not found in the kubesim image store %s (build it: cmake --build '
                       '<build> --target images)' % (canon, canon, canon, self.images_json))

                def pull_err():
                    c.state = {'waiting': {'reason': 'ErrImagePull', 'message': msg}}
                self._update(p, pull_err)
                if p.deleting.wait(1.0):
                    return

                def backoff():
                    c.state = {'waiting': {'reason': 'ImagePullBackOff',
                                           'message': 'Back-off pulling image "%s"' % c.image_ref}}
                self._update(p, backoff)
                if p.deleting.wait(self._backoff(pulls)):
                    return
                pulls += 1
                continue
            pulls = 0
            if c.ephemeral and not self._wait_target(p, c):
                return
            code = self._run_once(p, c, img)
            if code is None or c.ephemeral or p.deleting.is_set():
                return
            policy = (p.pod.get('spec') or {}).get('restartPolicy') or 'Always'
            if policy == 'Never' or (policy == 'OnFailure' and code == 0):
                return
            delay = 0 if c.restart_count == 0 else self._backoff(c.restart_count - 1)
            if delay:
                def crashloop():
                    c.last_state = {'terminated': c.state['terminated']}
                    c.state = {'waiting': {
                        'reason': 'CrashLoopBackOff',
                        'message': 'back-off %ds restarting failed container=%s pod=%s_%s(%s)'
                                   % (delay, c.name, p.name, p.ns, p.uid)}}
                self._update(p, crashloop)
                if p.deleting.wait(delay):
                    return
            else:
                with self.lock:
                    c.last_state = {'terminated': c.state['terminated']}
            with self.lock:
                c.restart_count += 1

    def _wait_target(self, p, c):
        """An ephemeral container with targetContainerName needs the target's PID namespace."""
        target = c.spec.get('targetContainerName')
        if not target:
            return True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not p.deleting.is_set():
            with self.lock:
                t = p.ctrs.get(target)
                if t is not None and t.running and t.hostpid:
                    return True
            p.deleting.wait(0.1)
        if p.deleting.is_set():
            return False

        def fail():
            c.state = {'terminated': {
                'exitCode': 128, 'reason': 'StartError',
                'message': 'target container "%s" is not running' % target,
                'startedAt': '1970-01-01T00:00:00Z', 'finishedAt': now_rfc3339()}}
        self._update(p, fail)
        return False

    def _container_env(self, p, c, img):
        pod = p.pod
        md, pspec = pod['metadata'], pod.get('spec') or {}
        env = {}
        for e in img.get('env') or []:
            k, _, v = e.partition('=')
            env[k] = v
        if 'PATH' not in env:
            env['PATH'] = DEFAULT_PATH[5:]
        env['HOSTNAME'] = (pspec.get('hostname') or p.name)[:63]
        defined = {}
        for e in c.spec.get('env') or []:
            name = e.get('name')
            if not name:
                continue
            if 'value' in e:
                v = expand_vars(str(e.get('value') or ''), defined)
            elif (e.get('valueFrom') or {}).get('fieldRef'):
                path = e['valueFrom']['fieldRef'].get('fieldPath', '')
                fields = {'metadata.name': p.name, 'metadata.namespace': p.ns,
                          'metadata.uid': p.uid, 'spec.nodeName': NODE_NAME,
                          'spec.serviceAccountName': pspec.get('serviceAccountName', 'default'),
                          'status.podIP': p.ip or '', 'status.hostIP': GATEWAY,
                          'status.podIPs': p.ip or '', 'status.hostIPs': GATEWAY}
                if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
                    kind, _, rest = path[9:].partition("['")
                    v = ((md.get(kind) or {}).get(rest.rstrip("']"), ''))
                else:
                    v = fields.get(path, '')
            else:
                v = ''  # configMap/secret references: no such objects in kubesim
            defined[name] = v
            env[name] = v
        return ['%s=%s' % kv for kv in env.items()], defined

    def _run_once(self, p, c, img):
        """Starts one run of the container and waits for it. Returns its exit code, or None
        when the pod is going away before it started."""
        env, defined = self._container_env(p, c, img)
        cmd = c.spec.get('command')
        args = c.spec.get('args')
        if cmd:
            argv = [expand_vars(x, defined) for x in cmd] + \
                   [expand_vars(x, defined) for x in (args or [])]
        else:
            argv = list(img.get('entrypoint') or []) + (
                [expand_vars(x, defined) for x in args] if args is not None
                else list(img.get('cmd') or []))
        sc = c.spec.get('securityContext') or {}
        cid = secrets.token_hex(32)
        reported = canonical_image(c.image_ref)
        image_id = reported.rsplit(':', 1)[0] if ':' in reported.rsplit('/', 1)[-1] else reported
        image_id += '@sha256:' + hashlib.sha256(json.dumps(img, sort_keys=True).encode()).hexdigest()
        cdir = os.path.join(p.dir, 'ctr', c.name)
        logdir = os.path.join(p.dir, 'logs', c.name)
        os.makedirs(cdir, exist_ok=True)
        os.makedirs(logdir, exist_ok=True)
        run = c.runs
        log = os.path.join(logdir, '%d.log' % run)
        open(log, 'ab').close()
        scratch = os.path.join(cdir, 'scratch-%d' % run)
        os.makedirs(scratch, exist_ok=True)
        try:
            caps = resolve_caps(sc)
            err = None
        except ValueError as e:
            caps, err = None, (errno.EINVAL, str(e), False)
        if not argv and err is None:
            err = (errno.EINVAL, 'no command specified', False)
        cgroup = None
        if p.cgroup:
            cgroup = os.path.join(p.cgroup, cid)
            os.mkdir(cgroup)
        pause = p.pause_pid
        join = {k: '/proc/%d/ns/%s' % (pause, k) for k in ('net', 'uts', 'ipc')}
        new_pid = False
        target = c.spec.get('targetContainerName') if c.ephemeral else None
        if target:
            with self.lock:
                t = p.ctrs.get(target)
                tpid = t.hostpid if t else None
            join['pid'] = '/proc/%d/ns/pid' % (tpid or 0)
        elif (p.pod.get('spec') or {}).get('shareProcessNamespace'):
            join['pid'] = '/proc/%d/ns/pid' % pause
        else:
            new_pid = True
        spec = {'join': join, 'new_pid': new_pid, 'cgroup': cgroup,
                'shim_cgroup': self._cg('shims'), 'log': log,
                'rootfs': {'image': img['rootfs'], 'scratch': scratch,
                           'hosts': p.dir + '/hosts', 'hostname': p.dir + '/hostname',
                           'privileged': bool(sc.get('privileged')),
                           'readonly': bool(sc.get('readOnlyRootFilesystem'))},
                'argv': argv, 'env': env, 'cgroupns': cgroup is not None,
                'tty': bool(c.spec.get('tty')), 'stdin': bool(c.spec.get('stdin')),
                'cwd': c.spec.get('workingDir') or img.get('workingDir') or '/',
                'caps': caps, 'uid': sc.get('runAsUser'), 'gid': sc.get('runAsGroup')}
        with self.lock:
            c.runs += 1
            c.cid, c.cgroup, c.env, c.cwd, c.caps = cid, cgroup, env, spec['cwd'], caps
            c.uid, c.gid = spec['uid'], spec['gid']
            c.reported_image, c.image_id = reported, image_id
        started_at = now_rfc3339()
        popen = pid = None
        if err is None:
            with p.spawn_lock:
                if p.deleting.is_set():
                    return None
                popen, pid, err = self._spawn('container', spec, os.path.join(cdir, '%d.json' % run))
                c.popen = popen
        if err is not None:
            if popen is not None:
                self._finish_popen(popen)
            code, msg = 128, err[1]

            def start_error():
                c.hostpid = None
                c.state = {'terminated': {
                    'exitCode': 128, 'reason': 'StartError',
                    'message': 'failed to create containerd task: failed to create shim task: '
                               'OCI runtime create failed: runc create failed: unable to start '
                               'container process: %s: unknown' % msg,
                    'startedAt': '1970-01-01T00:00:00Z', 'finishedAt': now_rfc3339(),
                    'containerID': 'containerd://' + cid}}
            self._update(p, start_error)
            if cgroup:
                self._rmdir_tree(cgroup, 2.0)
            shutil.rmtree(scratch, ignore_errors=True)
            return code
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None

        def running():
            c.hostpid, c.pidfd = pid, pidfd
            c.state = {'running': {'startedAt': started_at}}
        self._update(p, running)
        code = self._finish_popen(popen)
        if code < 0:  # the shim itself was killed
            code = 128 - code

        def terminated():
            c.hostpid = None
            if c.pidfd is not None:
                os.close(c.pidfd)
                c.pidfd = None
            c.state = {'terminated': {
                'exitCode': code, 'reason': 'Completed' if code == 0 else 'Error',
                'startedAt': started_at, 'finishedAt': now_rfc3339(),
                'containerID': 'containerd://' + cid}}
        self._update(p, terminated)
        if cgroup:
            self._rmdir_tree(cgroup, 2.0)
        shutil.rmtree(scratch, ignore_errors=True)
        return code

    def add_ephemeral_container(self, pod, ec):
        p = self._pod_of(pod)
        with self.lock:
            if ec['name'] in p.ctrs:
                raise ValueError('container %s already exists in pod %s/%s'
                                 % (ec['name'], p.ns, p.name))
            c = _Ctr(ec, True)
            p.ctrs[c.name] = c
            self._render(p)
        if p.sandbox_ready.is_set():
            self._start_ctr_thread(p, c)
        # else: _sandbox_main starts every container once the sandbox is up

    # ------------------------------------------------------------------ delete

    def _signal_ctr(self, c, sig):
        with self.lock:
            pidfd = c.pidfd
            if pidfd is None:
                return
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except OSError:
                pass

    def _kill_pod_processes(self, p):
        if p.cgroup and os.path.isdir(p.cgroup):
            try:
                _write(os.path.join(p.cgroup, 'cgroup.kill'), '1')
            except OSError:
                pass
        for c in list(p.ctrs.values()):
            self._signal_ctr(c, signal.SIGKILL)
        for pid in list(p.exec_pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if p.pause_pidfd is not None:
            try:
                signal.pidfd_send_signal(p.pause_pidfd, signal.SIGKILL)
            except OSError:
                pass

    def _reap_pod(self, p, timeout):
        deadline = time.monotonic() + timeout
        if p.thread:
            p.thread.join(max(0.1, deadline - time.monotonic()))
        for c in list(p.ctrs.values()):
            if c.thread:
                c.thread.join(max(0.1, deadline - time.monotonic()))
        if p.pause is not None:
            try:
                p.pause.wait(max(0.1, deadline - time.monotonic()))
                self._forget(p.pause)
            except subprocess.TimeoutExpired:
                _log('pause of %s/%s did not exit' % (p.ns, p.name))

    def _close_pod_fds(self, p):
        for attr in ('netns_fd', 'pause_pidfd'):
            fd = getattr(p, attr)
            if fd is not None:
                os.close(fd)
                setattr(p, attr, None)
        with self.lock:
            for c in p.ctrs.values():
                if c.pidfd is not None:
                    os.close(c.pidfd)
                    c.pidfd = None

    def delete_pod(self, pod, grace_seconds):
        p = self._pod_of(pod)
        with p.spawn_lock:
            p.deleting.set()  # no container starts after this
        self._refresh_hosts(p.ns)
        with self.lock:
            ctrs = list(p.ctrs.values())
        for c in ctrs:
            self._signal_ctr(c, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, float(grace_seconds))
        for c in ctrs:
            if c.thread:
                c.thread.join(max(0.0, deadline - time.monotonic()))
        if p.thread:
            p.thread.join(START_TIMEOUT)  # a sandbox still starting: let it see `deleting`
        self._kill_pod_processes(p)
        self._reap_pod(p, 10.0)
        if p.veth and self._state:
            try:
                _run(['ip', '-n', self._state['netns'], 'link', 'del', p.veth])
            except RuntimeError:
                pass  # gone with the pod's netns already
        self._close_pod_fds(p)
        if p.cgroup:
            self._rmdir_tree(p.cgroup)
        with self.lock:
            p.gone = True
            self._pods.pop((p.ns, p.name), None)
            self._ips.discard(p.ip_last)
        if p.dir:
            shutil.rmtree(p.dir, ignore_errors=True)
        self._refresh_hosts(p.ns)

    # ------------------------------------------------------------------ exec / connect / logs

    def exec(self, pod, container, argv, tty, stdin, size=None):
        """size=(width, height): the pty's size before the command starts (tty only)."""
        p = self._pod_of(pod)
        with self.lock:
            c = p.find(container)
            pid = c.hostpid if c.running else None
            env, cwd, caps, cgroup = list(c.env), c.cwd, c.caps, c.cgroup
            uid, gid = c.uid, c.gid
        if not argv:
            raise ValueError('exec: empty command')
        if pid is None:
            raise ProcessLookupError('container "%s" in pod "%s" is not running'
                                     % (container, p.name))
        if tty and not any(e.startswith('TERM=') for e in env):
            env.append('TERM=xterm')
        kinds = ('ipc', 'uts', 'net', 'pid', 'mnt') + (('cgroup',) if cgroup else ())
        spec = {'join': {k: '/proc/%d/ns/%s' % (pid, k) for k in kinds},
                'cgroup': cgroup, 'shim_cgroup': self._cg('shims'), 'argv': list(argv),
                'env': env, 'cwd': cwd, 'caps': caps, 'uid': uid, 'gid': gid, 'tty': bool(tty)}
        spec_path = os.path.join(p.dir, 'exec-%s.json' % secrets.token_hex(8))
        master = slave = None
        if tty:
            master, slave = os.openpty()
            if size and size[0] > 0 and size[1] > 0:
                fcntl.ioctl(master, termios.TIOCSWINSZ,
                            struct.pack('HHHH', int(size[1]), int(size[0]), 0, 0))
            ios = {'stdin': slave, 'stdout': slave, 'stderr': slave}
        else:
            ios = {'stdin': subprocess.PIPE if stdin else subprocess.DEVNULL,
                   'stdout': subprocess.PIPE, 'stderr': subprocess.PIPE}
        try:
            popen, cpid, err = self._spawn('exec', spec, spec_path, **ios)
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
                self._finish_popen(popen)
                for f in (popen.stdin, popen.stdout, popen.stderr):
                    if f:
                        f.close()
            code, msg, in_child = err
            if code == errno.ENOENT and in_child and 'executable file not found' in msg:
                raise FileNotFoundError(errno.ENOENT, msg, argv[0])
            if code == errno.EACCES and in_child:
                raise PermissionError(errno.EACCES, msg, argv[0])
            if not in_child:
                raise ProcessLookupError('container "%s" in pod "%s" is not running (%s)'
                                         % (container, p.name, msg))
            raise OSError(code, msg)
        try:
            pidfd = os.pidfd_open(cpid)
        except OSError:
            pidfd = None
        p.exec_pids.add(cpid)

        def on_exit():
            p.exec_pids.discard(cpid)
            self._forget(popen)
        if tty:
            return ExecProcess(popen, cpid, pidfd, master if stdin else None, master, None, True,
                               on_exit)
        # Hand the raw fds over to the ExecProcess (it closes them), not Python file objects.
        fds = []
        for f in (popen.stdin, popen.stdout, popen.stderr):
            fds.append(os.dup(f.fileno()) if f else None)
            if f:
                f.close()
        popen.stdin = popen.stdout = popen.stderr = None
        return ExecProcess(popen, cpid, pidfd, fds[0], fds[1], fds[2], False, on_exit)

    def connect(self, pod, port, timeout=5.0):
        try:
            p = self._pod_of(pod)
        except KeyError:  # deleted meanwhile: for a port-forward, just another refused connection
            raise ConnectionRefusedError(errno.ECONNREFUSED, 'pod %s/%s is not running'
                                         % (pod['metadata'].get('namespace', 'default'),
                                            pod['metadata']['name'])) from None
        fd = p.netns_fd
        if fd is None or not p.sandbox_ready.is_set():
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         'pod %s/%s has no network yet' % (p.ns, p.name))
        # A socket belongs to the netns its creating thread is in; only creation needs the switch.
        with self._net_lock:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, 'setns into pod %s/%s: %s' % (p.ns, p.name, os.strerror(e)))
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                if _libc.setns(self._host_net, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    # This thread would stay in the pod's netns: unrecoverable.
                    _log('setns back to the host netns failed: %s' % os.strerror(e))
                    os._exit(70)
        try:
            s.settimeout(timeout)
            s.connect(('127.0.0.1', int(port)))
            s.settimeout(None)
        except BaseException:
            s.close()
            raise
        return s

    def log_path(self, pod, container, previous=False):
        try:
            p = self._pod_of(pod)
        except KeyError:
            return None  # not (or no longer) run by this runtime: no logs
        with self.lock:
            c = p.find(container)
            run = c.runs - (2 if previous else 1)
        if run < 0 or p.dir is None:
            return None
        path = os.path.join(p.dir, 'logs', container, '%d.log' % run)
        return path if os.path.exists(path) else None
