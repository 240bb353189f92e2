"""Fixtures of the kubectl-diag e2e suite: a simulated cluster (test/e2e/kubesim) per test file,
driven through the real kubectl by the real kubectl-diag binary.

Environment (set by CMakeLists.txt): KDIAG_CLI (kubectl-diag), KUBESIM_IMAGES (image store)."""
import json
import os
import struct
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # test/e2e, for e2e_common
# free_port and wait_for are imported by the test files from here; local_http is a fixture.
from e2e_common import (Background, closing_all, cmdline, free_port, kubesim_up,  # noqa: E402,F401
                        local_http, wait_for)

REPO = os.path.realpath(os.path.join(HERE, '..', '..', '..'))
DEMO = os.path.join(REPO, 'test', 'e2e', 'manifests', 'demo.yaml')
SDK = '/usr/lib/google-cloud-sdk/bin'
KUBECTLS = {'default': '/usr/bin/kubectl', '1.27': os.path.join(SDK, 'kubectl.1.27'),
            '1.33': os.path.join(SDK, 'kubectl.1.33')}
CLI = os.environ.get('KDIAG_CLI') or os.path.join(REPO, 'build', 'cli', 'kubectl-diag')
DEBUG_IMAGE = subprocess.run([CLI, 'version'], capture_output=True, text=True,
                             check=True).stdout.split()[-1]   # "manager image <name>"
LIMITED_TOKEN = 'limited-%d-0123456789' % os.getpid()
VIEWER_TOKEN = 'viewer-%d-0123456789' % os.getpid()
READINESS_GATE = 'kdiag.test/ready'  # run_unready_pod's pods are ready once the test sets it True


def error_lines(stderr):
    """stderr's lines without the progress of a debug container still starting, which a slow
    machine shows and a fast one does not."""
    return [l for l in stderr.strip().splitlines() if not l.startswith('waiting for debug container ')]


def images_json():
    return os.environ.get('KUBESIM_IMAGES') or os.path.join(REPO, 'build', 'images', 'images.json')


class Cluster:
    def __init__(self, state):
        self.state = state
        self.kubeconfig = os.path.join(state, 'kubeconfig')

    def env(self, extra=None):
        # the remembered sessions (~/.cache/kdiag/sessions) go with the cluster's state
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, NO_COLOR='1',
                   XDG_CACHE_HOME=os.path.join(self.state, 'cache'))
        env.pop('KUBECTL', None)
        env.update(extra or {})
        return env

    def kubectl(self, *args, timeout=60, input=None):
        return subprocess.run([KUBECTLS['default']] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=self.env(), input=input)

    def ok(self, *args, **kw):
        r = self.kubectl(*args, **kw)
        assert r.returncode == 0, 'kubectl %s failed (%d):\n%s%s' % (' '.join(args), r.returncode,
                                                                     r.stdout, r.stderr)
        return r.stdout

    def diag(self, *args, timeout=120, input=None, kubectl=None, env=None):
        """Runs kubectl-diag to completion (env: added to its environment)."""
        extra = dict(env or {}, **({'KUBECTL': kubectl} if kubectl else {}))
        return subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env(extra), input=input)

    def diag_bg(self, *args, kubectl=None):
        """Starts kubectl-diag in the background (stdout and stderr to files)."""
        extra = {'KUBECTL': kubectl} if kubectl else None
        return Background([CLI] + list(args), self.env(extra), 'kdiag-cli-bg-%d-' % os.getpid())

    def pod(self, name, ns='default'):
        return json.loads(self.ok('get', 'pod', name, '-n', ns, '-o', 'json'))

    def wait_running(self, name, ns='default', timeout=60):
        wait_for(lambda: self.pod(name, ns).get('status', {}).get('phase') == 'Running', timeout,
                 what='pod %s/%s running' % (ns, name))

    def pod_pid(self, name, ns='default'):
        """A host pid of a process in the pod (its pause process): for nsenter --net."""
        uid = self.pod(name, ns)['metadata']['uid']
        with open(os.path.join(self.state, 'runtime', 'pods', uid, 'pause.json')) as f:
            cg = json.load(f)['cgroup']
        with open(os.path.join(cg, 'cgroup.procs')) as f:
            return int(f.read().split()[0])

    def pod_ruleset(self, name, ns='default'):
        pid = self.pod_pid(name, ns)
        r = subprocess.run(['nsenter', '--net=/proc/%d/ns/net' % pid, 'nft', 'list', 'ruleset'],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def node_netns(self):
        with open(os.path.join(self.state, 'runtime', 'state.json')) as f:
            return json.load(f)['netns']

    def in_node(self, argv, timeout=120):
        """Runs argv in the simulated node's network namespace (it routes to the pod IPs)."""
        return subprocess.run(['ip', 'netns', 'exec', self.node_netns()] + argv, capture_output=True,
                              text=True, timeout=timeout)

    def logs_since(self, pod, since_lines=0):
        return self.ok('logs', pod).splitlines()[since_lines:]

    def run_pods(self, label, names, image='distroless'):
        """Pods names of image, labelled app=label, once all of them run."""
        for n in names:
            self.ok('run', n, '--image=' + image, '--restart=Never', '--labels=app=' + label)
        for n in names:
            self.wait_running(n)

    def run_unready_pod(self, label, name):
        """A distroless pod labelled app=label that runs but is not ready until
        set_readiness_gate(name, 'True'): its readiness gate's condition, which only a controller
        (here the test) sets."""
        self.ok('apply', '-f', '-', input=json.dumps({
            'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'labels': {'app': label}},
            'spec': {'readinessGates': [{'conditionType': READINESS_GATE}],
                     'containers': [{'name': 'c', 'image': 'distroless'}]}}))

    def set_readiness_gate(self, name, status):
        self.ok('patch', 'pod', name, '--subresource=status', '--type=merge', '-p',
                json.dumps({'status': {'conditions': [{'type': READINESS_GATE, 'status': status}]}}))

    def pod_names(self, selector, running=False):
        """The sorted names of the pods selector matches that are not being deleted (and, with
        running, are Running)."""
        pods = json.loads(self.ok('get', 'pods', '-l', selector, '-o', 'json'))['items']
        return sorted(p['metadata']['name'] for p in pods if not p['metadata'].get('deletionTimestamp')
                      and (not running or p['status'].get('phase') == 'Running'))

    def send_udp(self, pod, sizes, port, ns='default'):
        """Datagrams of the given sizes from the node to the pod (nothing listens: the pod answers
        ICMP, which a 'udp port' filter leaves out)."""
        ip = self.pod(pod, ns)['status']['podIP']
        code = ('import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n'
                'for n in %r: s.sendto(b"x"*n, (%r, %d))\n' % (list(sizes), ip, port))
        r = self.in_node(['python3', '-c', code])
        assert r.returncode == 0, r.stderr

    def http_get(self, pod, port=80, path='/'):
        """The body of an HTTP GET from the node to the pod's IP, else the error: stdout + stderr."""
        ip = self.pod(pod)['status']['podIP']
        r = self.in_node(['python3', '-c', 'import urllib.request; print(urllib.request.urlopen('
                          '"http://%s:%d%s", timeout=10).read().decode())' % (ip, port, path)], timeout=30)
        return r.stdout + r.stderr

    def pids_in_pod(self, pod, needle):
        """Host pids of the processes in pod's network namespace whose command line holds needle."""
        netns = os.stat('/proc/%d/ns/net' % self.pod_pid(pod)).st_ino
        out = []
        for d in filter(str.isdigit, os.listdir('/proc')):
            try:
                if needle in cmdline(int(d)) and os.stat('/proc/%s/ns/net' % d).st_ino == netns:
                    out.append(int(d))
            except OSError:
                pass
        return out


def start_cluster(request, manifests, users=None, env=None):
    state = kubesim_up(request, 'kdiag-cli-e2e-%d-' % os.getpid(), images_json(), manifests, users,
                       env=dict({'KUBECTL': KUBECTLS['default']}, **(env or {})))
    c = Cluster(state)
    for p in ('nginx', 'curl', 'distroless'):
        c.wait_running(p)
    return c


@pytest.fixture(scope='session')
def cluster(request):
    return start_cluster(request, [DEMO], users=[
        {'name': 'limited', 'token': LIMITED_TOKEN,
         'rules': [{'verbs': ['get', 'list', 'watch'], 'resources': ['pods', 'pods/log', 'pods/ephemeralcontainers'],
                    'namespaces': ['default']},
                   {'verbs': ['update', 'patch'], 'resources': ['pods/ephemeralcontainers'],
                    'namespaces': ['default']}]},
        {'name': 'viewer', 'token': VIEWER_TOKEN,
         'rules': [{'verbs': ['get', 'list', 'watch'], 'resources': ['pods', 'pods/log', 'pods/ephemeralcontainers'],
                    'namespaces': ['default']}]}])


@pytest.fixture
def bg():
    """kubectl-diag processes started by a test; killed at the end whatever happens."""
    yield from closing_all(lambda cluster, *args, kubectl=None: cluster.diag_bg(*args, kubectl=kubectl))


@pytest.fixture
def fresh_pod(cluster):
    """An nginx pod without a debug container yet; deleted at the end."""
    name = 'fresh-%d-%d' % (os.getpid(), int(time.monotonic() * 1000) % 100000)
    cluster.ok('run', name, '--image=nginx', '--restart=Never')
    try:
        cluster.wait_running(name)
        yield name
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def start_capture(cluster, bg, *args, pods=1):
    """kubectl-diag capture ARGS in the background, once it says it captures on each of pods pods."""
    p = bg(cluster, 'capture', *args)
    wait_for(lambda: p.err().count('capturing on') >= pods or p.proc.poll() is not None, 60 + 30 * pods,
             what='%d pod(s) capturing' % pods)
    assert p.err().count('capturing on') == pods, p.err()
    return p


def pcapng_blocks(data):
    """({interface id: (if_name, if_description)}, [(interface id, caplen)]) of a pcapng file read by hand;
    every block whole."""
    assert struct.unpack('<I', data[:4])[0] == 0x0a0d0d0a, 'no section header'
    ifaces, pkts, off = {}, [], 0
    while off < len(data):
        btype, blen = struct.unpack('<II', data[off:off + 8])
        assert blen >= 12 and blen % 4 == 0 and off + blen <= len(data), 'a torn block at %d' % off
        body = data[off + 8:off + blen - 4]
        if btype == 1:
            opts, o = {}, 8
            while o + 4 <= len(body):
                code, olen = struct.unpack('<HH', body[o:o + 4])
                if code == 0:
                    break
                opts[code] = body[o + 4:o + 4 + olen]
                o += 4 + (olen + 3) // 4 * 4
            ifaces[len(ifaces)] = (opts[2].decode(), opts[3].decode())
        elif btype == 6:
            iface, _, _, caplen = struct.unpack('<IIII', body[:16])
            assert iface in ifaces, 'a packet before its interface block'
            pkts.append((iface, caplen))
        off += blen
    return ifaces, pkts


@pytest.fixture
def label(request, cluster):
    """A value of the app label unique to the test; the pods that carry it are deleted at the end."""
    label = '%s-%d-%d' % (request.module.__name__[len('test_cli_'):].replace('_', '-'), os.getpid(),
                          time.monotonic_ns() % 100000)
    yield label
    cluster.kubectl('delete', 'pod', '-l', 'app=' + label, '--wait=false')


def debug_base_name():
    """The CLI's debug container name for its version and contract revision (ephem_base_name:
    FNV-1a of VERSION+contractREV)."""
    out = subprocess.run([CLI, 'version'], capture_output=True, text=True, check=True).stdout
    rev = [line.split()[1] for line in out.splitlines() if line.startswith('contract ')]
    assert len(rev) == 1, out
    return 'dbg-tools-%08x' % fnv1a32(out.split()[1] + '+contract' + rev[0])


def fnv1a32(text):
    """basic/hash.h's fnv1a32 of text from FNV1A32_INIT."""
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h
