"""The node and the pods' sandboxes: the node netns with bridge kbr0, the cgroup tree, and per pod
a pause process holding its namespaces, a veth to the bridge, an IP and the /etc/hosts file; plus
connections into a pod's network namespace (port-forward)."""
import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time

from rt import caps, host

NODE_NAME = 'kubesim-node'
BRIDGE = 'kbr0'
GATEWAY = '10.244.0.1'   # the bridge's address, reported as the pod's hostIP
POD_NET = '10.244.0.'
POD_IPS = 253            # .2 … .254

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# -- cgroups ---------------------------------------------------------------------------------
def cgroup2_base():
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


def probe_cgroup(path):
    """Can processes really be moved there? (Not when e.g. the parent has domain controllers
    enabled for its children while having processes of its own.)"""
    probe = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        host.write(os.path.join(path, 'cgroup.procs'), str(probe.pid))
    finally:
        probe.stdin.close()
        probe.wait()


def rmdir_tree(path, timeout=10.0):
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
                    host.write(os.path.join(d, 'cgroup.kill'), '1')
                except OSError:
                    pass
        if busy is None or time.monotonic() > deadline:
            if busy is not None:
                host.log('cannot remove cgroup %s: %s' % (path, busy))
            return
        time.sleep(0.02)


# -- the node --------------------------------------------------------------------------------
class Node:
    """The node netns, the cgroup root (both in the stages' record) and the pod IPs."""

    def __init__(self, stages):
        self.stages = stages
        self.ips = set()     # last octets in use; guarded by Runtime.lock
        self._next_ip = 2
        self._net_lock = threading.Lock()
        self._host_net = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)

    @property
    def netns(self):
        st = self.stages.state
        return st['netns'] if st else None

    def cg(self, *parts):
        """A path below the runtime's cgroup, or None when it runs without cgroups."""
        st = self.stages.state
        if not st or not st.get('cgroup'):
            return None
        return os.path.join(st['cgroup'], *parts)

    def setup(self):
        """Records, then creates, the cgroup root (if usable) and the node netns with its bridge."""
        stages = self.stages
        os.makedirs(stages.dir, 0o700, exist_ok=True)
        rid = '%x%s' % (os.getpid(), secrets.token_hex(3))
        stages.state = {'id': rid, 'netns': 'kubesim-%s-node' % rid, 'cgroup': None, 'pids': {}}
        base = None if os.environ.get('KUBESIM_NO_CGROUPS') else cgroup2_base()
        if base:
            stages.state['cgroup'] = os.path.join(base, 'kubesim-' + rid)
        stages.save()  # before creating anything, so a crash in between is still cleaned up
        if base:
            try:
                os.mkdir(stages.state['cgroup'])
                os.mkdir(os.path.join(stages.state['cgroup'], 'shims'))
                probe_cgroup(os.path.join(stages.state['cgroup'], 'shims'))
            except OSError as e:
                host.log('cgroup2 at %s is not usable (%s); containers run without cgroups' % (base, e))
                shutil.rmtree(stages.state['cgroup'], ignore_errors=True)
                stages.state['cgroup'] = None
                stages.save()
        ns = stages.state['netns']
        host.run(['ip', 'netns', 'add', ns])
        host.run(['ip', '-n', ns, '-batch', '-'], input=(
            'link set lo up\n'
            'link add %s type bridge\n'
            'addr add %s/24 dev %s\n'
            'link set %s up\n' % (BRIDGE, GATEWAY, BRIDGE, BRIDGE)))

    @staticmethod
    def kill_all(st):
        """cgroup.kill on the whole tree of a record (first step of a teardown)."""
        cg = st.get('cgroup')
        if cg and os.path.isdir(cg):
            try:
                host.write(os.path.join(cg, 'cgroup.kill'), '1')
            except OSError as e:
                host.log('cgroup.kill in %s: %s' % (cg, e))

    @staticmethod
    def remove_cgroups(st):
        """Removes the cgroup tree of a record (its processes are killed)."""
        if st.get('cgroup'):
            rmdir_tree(st['cgroup'])

    @staticmethod
    def remove_netns(st):
        if st.get('netns') and os.path.exists('/run/netns/' + st['netns']):
            try:
                host.run(['ip', 'netns', 'del', st['netns']])
            except RuntimeError as e:
                host.log(str(e))

    def alloc_ip(self):
        """A free last octet of 10.244.0.0/24. Caller holds Runtime.lock."""
        for i in range(POD_IPS):
            n = 2 + (self._next_ip - 2 + i) % POD_IPS
            if n not in self.ips:
                self.ips.add(n)
                self._next_ip = n + 1
                return n
        raise RuntimeError('pod IP range 10.244.0.0/24 is exhausted (253 pods); delete pods')

    # -- a pod's sandbox ---------------------------------------------------------------------
    def start_sandbox(self, p, pods_dir, update, refresh_hosts):
        """Files, cgroup, pause process and network of pod p; update(p) publishes its status,
        refresh_hosts(ns) rewrites the namespace's /etc/hosts files once p has its IP."""
        spec = p.pod.get('spec') or {}
        p.dir = os.path.join(pods_dir, p.uid)
        os.makedirs(os.path.join(p.dir, 'logs'), exist_ok=True)
        os.makedirs(os.path.join(p.dir, 'pause-root'), exist_ok=True)
        hostname = (spec.get('hostname') or p.name)[:63]
        host.write(p.dir + '/hostname', hostname + '\n')
        host.write(p.dir + '/hosts', '')
        update(p)
        if self.cg():
            p.cgroup = self.cg('kubepods', 'besteffort', 'pod' + p.uid)
            os.makedirs(p.cgroup, exist_ok=True)
        sandbox_id = secrets.token_hex(32)
        sandbox_cg = None
        if p.cgroup:
            sandbox_cg = os.path.join(p.cgroup, sandbox_id)
            os.mkdir(sandbox_cg)
        with p.spawn_lock:
            if p.deleting.is_set():
                return
            popen, pid, err = self.stages.spawn(
                'pause', {'cgroup': sandbox_cg, 'hostname': hostname,
                          'new_pid': bool(spec.get('shareProcessNamespace')),
                          'scratch': os.path.join(p.dir, 'pause-root'),
                          'caps': caps.resolve_caps({})},
                os.path.join(p.dir, 'pause.json'), argv0='/pause')
            p.pause = popen
        if err:
            raise RuntimeError('pause: %s' % err[1])
        p.pause_pid = pid
        p.pause_pidfd = os.pidfd_open(pid)
        p.netns_fd = os.open('/proc/%d/ns/net' % pid, os.O_RDONLY | os.O_CLOEXEC)
        self._plug(p, pid)
        p.sandbox_ready.set()
        refresh_hosts(p.ns)
        update(p)

    def _plug(self, p, pid):
        """The pod's veth on the bridge and eth0 with its IP and default route in its netns."""
        # unique among live pods (one per IP), different when an IP is reused
        p.veth = 'veth%03d%s' % (p.ip_last, hashlib.sha256(p.uid.encode()).hexdigest()[:6])
        node = self.netns
        p.ip = POD_NET + str(p.ip_last)
        host.run(['ip', '-n', node, 'link', 'add', p.veth, 'type', 'veth', 'peer', 'name', 'eth0',
                  'netns', str(pid)])
        host.run(['ip', '-n', node, 'link', 'set', p.veth, 'master', BRIDGE, 'up'])
        host.run(['nsenter', '--net=/proc/%d/ns/net' % pid, 'ip', '-batch', '-'], input=(
            'link set lo up\n'
            'addr add %s/24 dev eth0\n'
            'link set eth0 up\n'
            'route add default via %s\n' % (p.ip, GATEWAY)))

    def unplug(self, p):
        if p.veth and self.stages.state:
            try:
                host.run(['ip', '-n', self.netns, 'link', 'del', p.veth])
            except RuntimeError:
                pass  # gone with the pod's netns already

    def connect(self, p, port, timeout):
        """A TCP connection to 127.0.0.1:port in pod p's netns."""
        fd = p.netns_fd
        if fd is None or not p.sandbox_ready.is_set():
            raise ConnectionRefusedError(errno.ECONNREFUSED, 'pod %s/%s has no network yet' % (p.ns, p.name))
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
                    host.log('setns back to the host netns failed: %s' % os.strerror(e))
                    os._exit(70)
        try:
            # as Go's net.Dial in containerd's port-forward: small writes (an HTTP/2 frame
            # each) go out at once instead of waiting up to 40 ms for the peer's delayed ACK
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(timeout)
            s.connect(('127.0.0.1', int(port)))
            s.settimeout(None)
        except BaseException:
            s.close()
            raise
        return s


def hosts_text(pods, ns):
    """/etc/hosts of the pods of namespace ns: localhost lines and one line per pod with an IP."""
    lines = ['# Kubernetes-managed hosts file.', '127.0.0.1\tlocalhost',
             '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet',
             'fe00::0\tip6-mcastprefix', 'fe00::1\tip6-allnodes', 'fe00::2\tip6-allrouters']
    live = sorted((q for q in pods if q.ns == ns and q.ip and not q.deleting.is_set()), key=lambda q: q.name)
    lines += ['%s\t%s' % (q.ip, q.name) for q in live]
    return '\n'.join(lines) + '\n'


def write_hosts(paths, text):
    """Rewrites each hosts file in place: it is bind-mounted into the containers, so its inode
    must stay."""
    for path in paths:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, text, 0)
                os.ftruncate(fd, len(text))
            finally:
                os.close(fd)
        except OSError:
            pass
