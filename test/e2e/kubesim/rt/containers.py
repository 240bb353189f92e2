"""A container's lifecycle as the kubelet drives it: image pull (ErrImagePull, ImagePullBackOff),
start (rt/stage.py container), run, exit, restart per restartPolicy with back-off
(CrashLoopBackOff); ephemeral containers wait for their target and never restart.

The functions take the Runtime (rt) for its lock, stages, node, image store and update(p, fn),
which changes the runtime's view under the lock and publishes the pod's status."""
import errno
import os
import secrets
import shutil
import signal
import threading
import time

from rt import caps, ctrspec, host, images, logs, sandbox

MAX_BACKOFF = 300.0  # seconds, the kubelet's cap


class Ctr:
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


def start_thread(rt, p, c):
    """Starts c's worker thread (once)."""
    with rt.lock:
        if c.thread is not None:
            return
        c.thread = threading.Thread(target=_main, args=(rt, p, c), name='ctr-%s/%s/%s' % (p.ns, p.name, c.name),
                                    daemon=True)
    c.thread.start()


def send_signal(rt, c, sig):
    """sig to c's main process, if it runs."""
    with rt.lock:
        pidfd = c.pidfd
        if pidfd is None:
            return
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass


def _backoff(rt, n):
    return min(rt.backoff_base * (2 ** n), MAX_BACKOFF)


def _main(rt, p, c):
    try:
        if c.ephemeral:
            rt.update(p)  # its waiting status, set by add_ephemeral_container
        _loop(rt, p, c)
    except Exception as e:
        host.log('container %s/%s/%s: %s' % (p.ns, p.name, c.name, e))


def _loop(rt, p, c):
    pulls = 0
    while not p.deleting.is_set():
        img = rt.images.get(c.image_ref)
        if img is None:
            if not _pull_failed(rt, p, c, pulls):
                return
            pulls += 1
            continue
        pulls = 0
        if c.ephemeral and not _wait_target(rt, p, c):
            return
        code = _run_once(rt, p, c, img)
        if code is None or c.ephemeral or p.deleting.is_set():
            return
        policy = (p.pod.get('spec') or {}).get('restartPolicy') or 'Always'
        if policy == 'Never' or (policy == 'OnFailure' and code == 0):
            return
        if not _before_restart(rt, p, c):
            return
        with rt.lock:
            c.restart_count += 1


def _pull_failed(rt, p, c, pulls):
    """ErrImagePull, then ImagePullBackOff for the back-off; False when the pod goes away."""
    msg = images.pull_error(c.image_ref, rt.images.path)

    def pull_err():
        c.state = {'waiting': {'reason': 'ErrImagePull', 'message': msg}}
    rt.update(p, pull_err)
    if p.deleting.wait(1.0):
        return False

    def backoff():
        c.state = {'waiting': {'reason': 'ImagePullBackOff', 'message': 'Back-off pulling image "%s"' % c.image_ref}}
    rt.update(p, backoff)
    return not p.deleting.wait(_backoff(rt, pulls))


def _before_restart(rt, p, c):
    """The first restart is at once, later ones after a back-off in CrashLoopBackOff; False when
    the pod goes away meanwhile."""
    delay = 0 if c.restart_count == 0 else _backoff(rt, c.restart_count - 1)
    if not delay:
        with rt.lock:
            c.last_state = {'terminated': c.state['terminated']}
        return True

    def crashloop():
        c.last_state = {'terminated': c.state['terminated']}
        c.state = {'waiting': {
            'reason': 'CrashLoopBackOff',
            'message': 'back-off %ds restarting failed container=%s pod=%s_%s(%s)' % (
                delay, c.name, p.name, p.ns, p.uid)}}
    rt.update(p, crashloop)
    return not p.deleting.wait(delay)


def _wait_target(rt, p, c):
    """An ephemeral container with targetContainerName needs the target's PID namespace."""
    target = c.spec.get('targetContainerName')
    if not target:
        return True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not p.deleting.is_set():
        with rt.lock:
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
            'startedAt': '1970-01-01T00:00:00Z', 'finishedAt': host.now_rfc3339()}}
    rt.update(p, fail)
    return False


def _pid_namespace(rt, p, c):
    """(join path or None, new_pid): the target's PID namespace for an ephemeral container with
    a target, the pause's when the pod shares one, else a new one."""
    target = c.spec.get('targetContainerName') if c.ephemeral else None
    if target:
        with rt.lock:
            t = p.ctrs.get(target)
            tpid = t.hostpid if t else None
        return '/proc/%d/ns/pid' % (tpid or 0), False
    if (p.pod.get('spec') or {}).get('shareProcessNamespace'):
        return '/proc/%d/ns/pid' % p.pause_pid, False
    return None, True


def _stage_spec(rt, p, c, img, run, cgroup):
    """(container stage spec, start error or None) of run number `run` of c."""
    env, defined = ctrspec.environment(p, c.spec, img)
    argv = ctrspec.argv(c.spec, img, defined)
    sc = c.spec.get('securityContext') or {}
    try:
        cap_set, err = caps.resolve_caps(sc), None
    except ValueError as e:
        cap_set, err = None, (errno.EINVAL, str(e), False)
    if not argv and err is None:
        err = (errno.EINVAL, 'no command specified', False)
    join = {k: '/proc/%d/ns/%s' % (p.pause_pid, k) for k in ('net', 'uts', 'ipc')}
    pid_ns, new_pid = _pid_namespace(rt, p, c)
    if pid_ns:
        join['pid'] = pid_ns
    cdir = os.path.join(p.dir, 'ctr', c.name)
    spec = {'join': join, 'new_pid': new_pid, 'cgroup': cgroup,
            'shim_cgroup': rt.node.cg('shims'), 'log': logs.create(p.dir, c.name, run),
            'log_max_size': rt.log_max_size, 'log_max_files': logs.MAX_FILES,
            'rootfs': {'image': img['rootfs'], 'scratch': os.path.join(cdir, 'scratch-%d' % run),
                       'hosts': p.dir + '/hosts', 'hostname': p.dir + '/hostname',
                       'privileged': bool(sc.get('privileged')),
                       'readonly': bool(sc.get('readOnlyRootFilesystem'))},
            'argv': argv, 'env': env, 'cgroupns': cgroup is not None,
            'tty': bool(c.spec.get('tty')), 'stdin': bool(c.spec.get('stdin')),
            'cwd': c.spec.get('workingDir') or img.get('workingDir') or '/',
            'caps': cap_set, 'uid': sc.get('runAsUser'), 'gid': sc.get('runAsGroup')}
    return spec, err


def _run_once(rt, p, c, img):
    """Starts one run of the container and waits for it. Returns its exit code, or None
    when the pod is going away before it started."""
    cid = secrets.token_hex(32)
    reported = images.canonical_image(c.image_ref)
    cdir = os.path.join(p.dir, 'ctr', c.name)
    os.makedirs(cdir, exist_ok=True)
    run = c.runs
    cgroup = os.path.join(p.cgroup, cid) if p.cgroup else None
    spec, err = _stage_spec(rt, p, c, img, run, cgroup)
    scratch = spec['rootfs']['scratch']
    os.makedirs(scratch, exist_ok=True)
    if cgroup:
        os.mkdir(cgroup)
    with rt.lock:
        c.runs += 1
        c.cid, c.cgroup, c.env, c.cwd, c.caps = cid, cgroup, spec['env'], spec['cwd'], spec['caps']
        c.uid, c.gid = spec['uid'], spec['gid']
        c.reported_image, c.image_id = reported, images.image_id(reported, img)
    started_at = host.now_rfc3339()
    popen = pid = None
    if err is None:
        with p.spawn_lock:
            if p.deleting.is_set():
                return None
            popen, pid, err = rt.stages.spawn('container', spec, os.path.join(cdir, '%d.json' % run))
            c.popen = popen
    if err is not None:
        if popen is not None:
            rt.stages.finish(popen)
        _start_failed(rt, p, c, cid, err[1])
        code = 128
    else:
        code = _wait(rt, p, c, cid, popen, pid, started_at)
    if cgroup:
        sandbox.rmdir_tree(cgroup, 2.0)
    shutil.rmtree(scratch, ignore_errors=True)
    return code


def _start_failed(rt, p, c, cid, msg):
    def start_error():
        c.hostpid = None
        c.state = {'terminated': {
            'exitCode': 128, 'reason': 'StartError',
            'message': 'failed to create containerd task: failed to create shim task: '
                       'OCI runtime create failed: runc create failed: unable to start '
                       'container process: %s: unknown' % msg,
            'startedAt': '1970-01-01T00:00:00Z', 'finishedAt': host.now_rfc3339(),
            'containerID': 'containerd://' + cid}}
    rt.update(p, start_error)


def _wait(rt, p, c, cid, popen, pid, started_at):
    """Publishes c running, waits for its shim, publishes it terminated; returns the exit code."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None

    def running():
        c.hostpid, c.pidfd = pid, pidfd
        c.state = {'running': {'startedAt': started_at}}
    rt.update(p, running)
    code = rt.stages.finish(popen)
    if code < 0:  # the shim itself was killed
        code = 128 - code

    def terminated():
        c.hostpid = None
        if c.pidfd is not None:
            os.close(c.pidfd)
            c.pidfd = None
        c.state = {'terminated': {
            'exitCode': code, 'reason': 'Completed' if code == 0 else 'Error',
            'startedAt': started_at, 'finishedAt': host.now_rfc3339(),
            'containerID': 'containerd://' + cid}}
    rt.update(p, terminated)
    return code
