"""Fixtures of the kubesim fidelity suite: one simulated cluster per pytest session (each test file
runs as its own ctest test), driven only through the real kubectl binaries."""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # test/e2e, for e2e_common
# the test files import KUBESIM and wait_for from here
from e2e_common import KUBESIM, kubesim_up, wait_for  # noqa: E402,F401

REPO = os.path.realpath(os.path.join(HERE, '..', '..', '..', '..'))
DEMO = os.path.join(REPO, 'test', 'e2e', 'manifests', 'demo.yaml')
TEST_PODS = os.path.join(HERE, 'pods.yaml')
SDK = '/usr/lib/google-cloud-sdk/bin'
KUBECTLS = {'1.27': os.path.join(SDK, 'kubectl.1.27'), '1.32': '/usr/bin/kubectl',
            '1.33': os.path.join(SDK, 'kubectl.1.33')}
VIEWER_TOKEN = 'viewer-0123456789abcdef'


def images_json():
    return os.environ.get('KUBESIM_IMAGES') or os.path.join(REPO, 'build', 'images', 'images.json')


def kubectl_path(version):
    path = KUBECTLS[version]
    if not os.access(path, os.X_OK):
        pytest.skip('kubectl %s not installed at %s' % (version, path))
    return path


def versions(*vs):
    """pytest parametrization over kubectl versions."""
    return pytest.mark.parametrize('kv', list(vs))


class Cluster:
    def __init__(self, state):
        self.state = state
        self.kubeconfig = os.path.join(state, 'kubeconfig')
        self.cache = os.path.join(state, 'kubectl-cache')

    def env(self, extra=None):
        env = dict(os.environ, KUBECONFIG=self.kubeconfig)
        env.update(extra or {})
        return env

    def argv(self, args, version='1.32'):
        return [kubectl_path(version), '--cache-dir', self.cache] + list(args)

    def kubectl(self, *args, version='1.32', input=None, timeout=60, env=None):
        """Runs kubectl; returns CompletedProcess with text stdout/stderr."""
        return subprocess.run(self.argv(args, version), input=input, capture_output=True,
                              timeout=timeout, env=self.env(env),
                              text=not isinstance(input, bytes))

    def ok(self, *args, **kw):
        r = self.kubectl(*args, **kw)
        assert r.returncode == 0, 'kubectl %s failed (%d):\n%s%s' % (' '.join(args), r.returncode,
                                                                     r.stdout, r.stderr)
        return r.stdout

    def popen(self, *args, version='1.32', env=None, **kw):
        return subprocess.Popen(self.argv(args, version), env=self.env(env), **kw)

    def pod(self, name, ns='default'):
        return json.loads(self.ok('get', 'pod', name, '-n', ns, '-o', 'json'))

    def wait_ready(self, *names, ns='default', timeout=90):
        self.ok('wait', '--for=condition=Ready', '-n', ns, '--timeout=%ds' % timeout,
                *['pod/' + n for n in names], timeout=timeout + 10)


def echo_image(state):
    """An image store = the project's images + "kubesim-echo" (a static TCP echo server on port 9000,
    built by CMake as kubesim-echo-server, or here with cc when run outside ctest)."""
    root = os.path.join(state, 'echo-image')
    for d in ('proc', 'sys', 'dev', 'etc', 'tmp'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    binary = os.environ.get('KUBESIM_ECHO_SERVER')
    if binary:
        shutil.copy(binary, os.path.join(root, 'echo-server'))
    else:
        subprocess.run(['cc', '-O2', '-static', '-o', os.path.join(root, 'echo-server'),
                        os.path.join(HERE, '..', 'echo-server.c')], check=True)
    with open(images_json()) as f:
        store = json.load(f)
    store['images']['kubesim-echo'] = {'rootfs': root, 'entrypoint': ['/echo-server'], 'cmd': ['9000'],
                                       'env': ['PATH=/'], 'workingDir': '/'}
    path = os.path.join(state, 'images.json')
    with open(path, 'w') as f:
        json.dump(store, f)
    return path


def start_cluster(request, manifests, users=None, extra_args=()):
    assert os.path.exists(images_json()), 'image store %s missing: build the "images" target' % images_json()
    # restarts after 1 s instead of Kubernetes' 10 s back-off keep restart tests short
    state = kubesim_up(request, 'kubesim-test-%d-' % os.getpid(), echo_image, manifests, users, extra_args,
                       env={'KUBECTL': KUBECTLS['1.32'], 'KUBESIM_BACKOFF_SECONDS': '1'})
    return Cluster(state)


@pytest.fixture(scope='session')
def cluster(request):
    return start_cluster(request, [DEMO, TEST_PODS], users=[
        {'name': 'viewer', 'token': VIEWER_TOKEN,
         'rules': [{'verbs': ['get', 'list', 'watch'], 'resources': ['pods', 'pods/log'],
                    'namespaces': ['default']}]}])

