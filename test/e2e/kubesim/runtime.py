"""kubesim runtime: pods made of real Linux namespaces, processes, veths, cgroups and mounts.

Runtime is the contract with the API server (and ExecProcess, from rt/execs.py); its parts, one
job each, are in rt/ (see rt/__init__.py). Layout of what it creates (all recorded under
STATE/runtime/state.json, so teardown() from a fresh process after a crash still finds everything):

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
import errno
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time

from rt import containers, execs, host, images, logs, sandbox, stages, status
# the contract's names, for the API server and the tests
from rt.caps import resolve_caps  # noqa: F401
from rt.execs import ExecProcess  # noqa: F401
from rt.images import canonical_image, normalize_image  # noqa: F401


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
        self.ctrs = {}          # name -> containers.Ctr, spec containers then ephemeral ones
        self.cond = {}          # condition type -> (status, lastTransitionTime, reason, message)
        self.gates = {}         # readiness gate condition type -> its condition, as set through pods/status
        self.start_time = host.now_rfc3339()
        self.exec_pids = set()
        self.gone = False       # delete_pod returned: no more notify

    def find(self, name):
        c = self.ctrs.get(name)
        if c is None:
            raise KeyError(name)
        return c


class Runtime:
    def __init__(self, state_dir, images_json, notify):
        self.state_dir = os.path.abspath(state_dir)
        self.dir = os.path.join(self.state_dir, 'runtime')
        self.images_json = images_json
        self.images = images.open_store(images_json)
        self.notify = notify
        self.lock = threading.RLock()
        # Kubernetes backs off 10s, 20s, ... 5min between restarts; tests may shorten it.
        self.backoff_base = float(os.environ.get('KUBESIM_BACKOFF_SECONDS', '10'))
        # the kubelet's containerLogMaxSize (bytes, 0: never rotate)
        self.log_max_size = logs.max_size_from_env()
        self.stages = stages.Stages(self.dir)
        self.node = sandbox.Node(self.stages)
        self._pods = {}

    @property
    def node_netns(self):
        return self.node.netns

    @property
    def cgroup_root(self):
        """The runtime's cgroup (None without cgroups)."""
        return self.node.cg()

    # ------------------------------------------------------------------ node

    def setup(self):
        if os.geteuid() != 0:
            raise RuntimeError('kubesim runtime needs root (namespaces, veths, cgroups, mounts)')
        for tool, pkg in (('ip', 'iproute2'), ('nsenter', 'util-linux')):
            if shutil.which(tool) is None:
                raise RuntimeError('%s not found: install %s (scripts/deps.sh)' % (tool, pkg))
        self.teardown()  # whatever an earlier run with this state dir left behind
        self.stages.closing = False
        self.node.setup()

    def teardown(self):
        """Removes everything this runtime (or an earlier process with this state dir) made."""
        self.stages.closing = True
        st = self.stages.state or self.stages.load()
        with self.lock:
            pods = list(self._pods.values())
            for p in pods:
                p.gone = True  # the API server is going away too: no more notify
        for p in pods:
            with p.spawn_lock:  # waits for a stage being started right now
                p.deleting.set()
        if st:
            self.node.kill_all(st)
            self.stages.kill_recorded(st)
        for p in pods:
            self._kill_pod_processes(p)
        for p in pods:
            self._reap_pod(p, 10.0)
        if st:
            self.node.remove_cgroups(st)
            self.stages.wait_recorded(st, 5.0)
            self.node.remove_netns(st)
        self.stages.reap_all()
        for p in pods:
            self._close_pod_fds(p)
        with self.lock:
            self._pods.clear()
            self.node.ips.clear()
        self.stages.forget_state()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ status

    def _notify(self, p):
        if p.gone:
            return
        try:
            self.notify(p.ns, p.name)
        except Exception as e:  # the API server's problem, never ours to die of
            host.log('notify %s/%s: %s' % (p.ns, p.name, e))

    def update(self, p, fn=None):
        """Runs fn (a change of the runtime's view of p) under the lock, renders p's status and
        notifies the API server."""
        with self.lock:
            if fn:
                fn()
            status.render(p)
        self._notify(p)

    # ------------------------------------------------------------------ pods

    def _pod_of(self, pod):
        md = pod['metadata']
        with self.lock:
            p = self._pods.get((md.get('namespace', 'default'), md['name']))
        if p is None:
            raise KeyError('pod %s/%s' % (md.get('namespace', 'default'), md['name']))
        return p

    def run_pod(self, pod):
        if self.stages.state is None or self.stages.closing:
            raise RuntimeError('runtime is not set up (call setup())')
        md = pod['metadata']
        key = (md.get('namespace', 'default'), md['name'])
        with self.lock:
            if key in self._pods:
                raise ValueError('pod %s/%s is already running' % key)
            p = _Pod(pod, self.node.alloc_ip())
            self._pods[key] = p
            pod.setdefault('spec', {})['nodeName'] = sandbox.NODE_NAME
            for cs in pod['spec'].get('containers') or []:
                p.ctrs[cs['name']] = containers.Ctr(cs, False)
            for cs in pod['spec'].get('ephemeralContainers') or []:
                p.ctrs[cs['name']] = containers.Ctr(cs, True)
            status.render(p)
        p.thread = threading.Thread(target=self._sandbox_main, args=(p,),
                                    name='pod-%s/%s' % key, daemon=True)
        p.thread.start()

    def _refresh_hosts(self, ns):
        """One line per pod of the namespace in every pod's /etc/hosts."""
        with self.lock:
            text = sandbox.hosts_text(self._pods.values(), ns).encode()
            targets = [q.dir + '/hosts' for q in self._pods.values() if q.ns == ns and q.dir]
        sandbox.write_hosts(targets, text)

    def _sandbox_main(self, p):
        try:
            self.node.start_sandbox(p, os.path.join(self.dir, 'pods'), self.update, self._refresh_hosts)
        except Exception as e:
            host.log('pod %s/%s: sandbox failed: %s' % (p.ns, p.name, e))
            why = 'failed to create pod sandbox: %s' % e

            def fail():
                for c in p.ctrs.values():
                    if 'waiting' in c.state:
                        c.state = {'waiting': {'reason': 'ContainerCreating', 'message': why}}
            self.update(p, fail)
            return
        with self.lock:
            ctrs = list(p.ctrs.values())
        for c in ctrs:
            containers.start_thread(self, p, c)

    def add_ephemeral_container(self, pod, ec):
        p = self._pod_of(pod)
        with self.lock:
            if ec['name'] in p.ctrs:
                raise ValueError('container %s already exists in pod %s/%s' % (ec['name'], p.ns, p.name))
            c = containers.Ctr(ec, True)
            p.ctrs[c.name] = c
            status.render(p)
        if p.sandbox_ready.is_set():
            containers.start_thread(self, p, c)
        # else: _sandbox_main starts every container once the sandbox is up

    def set_gate_conditions(self, pod, conds):
        """The conditions of pod's readiness gates, as a controller sets them (pods/status)."""
        p = self._pod_of(pod)
        self.update(p, lambda: p.gates.update({c['type']: c for c in conds}))

    # ------------------------------------------------------------------ delete

    def _kill_pod_processes(self, p):
        if p.cgroup and os.path.isdir(p.cgroup):
            try:
                host.write(os.path.join(p.cgroup, 'cgroup.kill'), '1')
            except OSError:
                pass
        for c in list(p.ctrs.values()):
            containers.send_signal(self, c, signal.SIGKILL)
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
                self.stages.forget(p.pause)
            except subprocess.TimeoutExpired:
                host.log('pause of %s/%s did not exit' % (p.ns, p.name))

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
            containers.send_signal(self, c, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, float(grace_seconds))
        for c in ctrs:
            if c.thread:
                c.thread.join(max(0.0, deadline - time.monotonic()))
        if p.thread:
            p.thread.join(stages.START_TIMEOUT)  # a sandbox still starting: let it see `deleting`
        self._kill_pod_processes(p)
        self._reap_pod(p, 10.0)
        self.node.unplug(p)
        self._close_pod_fds(p)
        if p.cgroup:
            sandbox.rmdir_tree(p.cgroup)
        with self.lock:
            p.gone = True
            self._pods.pop((p.ns, p.name), None)
            self.node.ips.discard(p.ip_last)
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
            spec = execs.stage_spec(c, pid, argv, tty, self.node.cg('shims')) if pid and argv else None
        if not argv:
            raise ValueError('exec: empty command')
        if pid is None:
            raise ProcessLookupError('container "%s" in pod "%s" is not running' % (container, p.name))
        return execs.start(self.stages, p, container, spec, stdin, size)

    def connect(self, pod, port, timeout=5.0):
        try:
            p = self._pod_of(pod)
        except KeyError:  # deleted meanwhile: for a port-forward, just another refused connection
            raise ConnectionRefusedError(errno.ECONNREFUSED, 'pod %s/%s is not running'
                                         % (pod['metadata'].get('namespace', 'default'),
                                            pod['metadata']['name'])) from None
        return self.node.connect(p, port, timeout)

    def log_path(self, pod, container, previous=False):
        try:
            p = self._pod_of(pod)
        except KeyError:
            return None  # not (or no longer) run by this runtime: no logs
        with self.lock:
            c = p.find(container)
            run = c.runs - (2 if previous else 1)
        return logs.existing(p.dir, container, run)
