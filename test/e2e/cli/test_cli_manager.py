"""The debug container's manager as kubectl-diag finds it (docs/contract.md): runs of kubectl-diag
at the same time, a manager whose tunnel did not start, start-up lines forged into its log. Through
the real kubectl on the simulated cluster."""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import (CLI, DEBUG_IMAGE, DEMO, KUBECTLS, Cluster, debug_base_name, fnv1a32, images_json, kubesim_up,
                      wait_for)

FIXED_PORT_IMAGE = 'kdiag-manager-fixed-port:1'
EPHEMERAL = 61000
FORGED_SECRET = '0123456789abcdef0123456789abcdef'


def image_store(state):
    """The usual images plus the debug image whose manager serves gRPC on a fixed port (a random
    one of 7000-7999): so it needs no ephemeral port, and its tunnel listener (127.0.0.1:0) is
    the only socket that does."""
    with open(images_json()) as f:
        store = json.load(f)
    debug = store['images'][DEBUG_IMAGE]
    store['images'][FIXED_PORT_IMAGE] = dict(debug, entrypoint=[
        '/usr/local/bin/ash', '-c', 'exec /usr/local/bin/kdiag-manager --bind 127.0.0.1:$((7000 + RANDOM % 1000))'])
    path = os.path.join(state, 'images-manager.json')
    with open(path, 'w') as f:
        json.dump(store, f)
    return path


@pytest.fixture(scope='module')
def cluster(request):
    state = kubesim_up(request, 'kdiag-cli-mgr-%d-' % os.getpid(), image_store, [DEMO],
                       env={'KUBECTL': KUBECTLS['default']})
    c = Cluster(state)
    for p in ('nginx', 'curl', 'distroless'):
        c.wait_running(p)
    return c


def barrier_kubectl(tmp, parties):
    """A kubectl wrapper that holds every `replace --raw …/ephemeralcontainers` until `parties`
    of them wait: so that many runs have all read the pod before any of them changes it."""
    path = os.path.join(tmp, 'kubectl')
    with open(path, 'w') as f:
        f.write('''#!/bin/sh
case "$*" in *replace*ephemeralcontainers*)
  : > "%(dir)s/waiting.$$"
  for i in $(seq 200); do
    [ "$(ls "%(dir)s" | grep -c '^waiting\\.')" -ge %(n)d ] && break
    sleep 0.05
  done;;
esac
exec %(kubectl)s "$@"
''' % {'dir': tmp, 'n': parties, 'kubectl': KUBECTLS['default']})
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_two_runs_at_once_share_one_debug_container(cluster, fresh_pod):
    tmp = tempfile.mkdtemp(prefix='kdiag-barrier-')
    try:
        wrapper = barrier_kubectl(tmp, 2)
        env = cluster.env({'KUBECTL': wrapper})
        runs = [subprocess.Popen([os.environ['KDIAG_CLI'], 'ps', 'pod/' + fresh_pod], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        results = [r.communicate(timeout=120) + (r.returncode,) for r in runs]
        waited = len([n for n in os.listdir(tmp) if n.startswith('waiting.')])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for out, err, code in results:
        assert code == 0, err
        assert 'PID' in out
    # both got past the barrier together: each had read the pod before either changed it
    assert waited == 2
    ephemeral = cluster.pod(fresh_pod)['spec'].get('ephemeralContainers', [])
    assert len(ephemeral) == 1, [c['name'] for c in ephemeral]


def hold_the_only_ephemeral_port(cluster, pod):
    """Leaves the pod's network namespace one ephemeral port (EPHEMERAL), taken by a connection
    that a helper process holds: bind(127.0.0.1:0) fails there (the manager's tunnel listener),
    connect() still works (it may share the port with another 4-tuple: kubesim's port-forward).
    Returns the helper; kill it to let go."""
    net = '--net=/proc/%d/ns/net' % cluster.pod_pid(pod)
    subprocess.run(['nsenter', net, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=%d %d' % (EPHEMERAL, EPHEMERAL)],
                   check=True)
    helper = subprocess.Popen(['nsenter', net, sys.executable, '-c', """
import socket, sys, time
l = socket.socket(); l.bind(('127.0.0.1', %d)); l.listen()
c = socket.create_connection(('127.0.0.1', %d)); a, _ = l.accept()
print(c.getsockname()[1], flush=True)
time.sleep(3600)
""" % (EPHEMERAL - 1, EPHEMERAL - 1)], stdout=subprocess.PIPE, text=True)
    assert helper.stdout.readline().strip() == str(EPHEMERAL)
    return helper


def test_ps_does_not_wait_for_a_tunnel_that_did_not_start(cluster, fresh_pod):
    helper = hold_the_only_ephemeral_port(cluster, fresh_pod)
    try:
        start = time.monotonic()
        r = cluster.diag('ps', 'pod/' + fresh_pod, '--dbg-image', FIXED_PORT_IMAGE)
        took = time.monotonic() - start
        assert r.returncode == 0, r.stderr
        assert 'httpd' in r.stdout
        assert took < 20, 'ps took %.1f s' % took     # it used to wait 30 s for "Tunnel on", then fail
        name = cluster.pod(fresh_pod)['spec']['ephemeralContainers'][0]['name']
        log = cluster.ok('logs', fresh_pod, '-c', name)
        assert 'redirect unavailable' in log and 'Tunnel on' not in log, log

        # redir needs the tunnel: a manager without one is an error at once, not a 30 s wait
        start = time.monotonic()
        r = cluster.diag('redir', 'pod/' + fresh_pod, '18080:80', '--dbg-image', FIXED_PORT_IMAGE)
        assert r.returncode == 1, r.stdout + r.stderr
        assert 'runs without its redirect tunnel' in r.stderr, r.stderr
        assert time.monotonic() - start < 20
    finally:
        helper.kill()
        helper.wait()


def add_forging_container(cluster, pod, lines):
    """A debug container as the CLI would make it for ps (its name, image, target, capabilities,
    a secret in its spec), whose log holds `lines`, as a workload could make it hold them. Being
    the oldest that fits, it is the one kubectl-diag takes."""
    script = "printf '%s'; exec sleep 3600" % ''.join(l + '\\n' for l in lines)
    name = add_debug_container(cluster, pod, debug_base_name(), ['/usr/local/bin/ash', '-c', script])
    wait_for(lambda: lines[-1] in cluster.kubectl('logs', pod, '-c', name).stdout, 60,
             what='the forged lines in the log')


def add_debug_container(cluster, pod, name, command=None):
    """A debug container such as the CLI makes for ps (its image, target, capabilities, a secret
    in its spec) named name, running command, else the image's manager. Its name."""
    container = {'name': name, 'image': DEBUG_IMAGE, 'targetContainerName': pod,
                 'env': [{'name': 'KDIAG_SECRET', 'value': FORGED_SECRET}],
                 'securityContext': {'capabilities': {'add': ['SYS_PTRACE', 'SYS_ADMIN', 'SYS_CHROOT']}}}
    if command:
        container['command'] = command
    path = '/api/v1/namespaces/default/pods/%s/ephemeralcontainers' % pod
    obj = json.loads(cluster.ok('get', '--raw', path))
    obj['spec'].setdefault('ephemeralContainers', []).append(container)
    cluster.ok('replace', '--raw', path, '-f', '-', input=json.dumps(obj))
    return name


def test_a_manager_of_another_contract_revision_is_not_reused(cluster, fresh_pod):
    """A debug container named as revision 1 of the contract named them (FNV-1a of the version
    alone), with the same image and a secret in its spec, running a real manager: kubectl-diag
    adds one of its own revision beside it instead of talking to it (docs/contract.md,
    "Revision"). Before the revision was in the name, it took that one."""
    version = subprocess.run([CLI, 'version'], capture_output=True, text=True, check=True).stdout.split()[1]
    old = add_debug_container(cluster, fresh_pod, 'dbg-tools-%08x' % fnv1a32(version))
    assert old != debug_base_name()
    wait_for(lambda: 'Proof: ' in cluster.kubectl('logs', fresh_pod, '-c', old).stdout, 60,
             what="the other revision's manager running")
    r = cluster.diag('ps', 'pod/' + fresh_pod)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'nginx' in r.stdout
    assert [c['name'] for c in cluster.pod(fresh_pod)['spec']['ephemeralContainers']] == [old, debug_base_name()]


def test_forged_start_up_lines_are_refused(cluster, fresh_pod):
    add_forging_container(cluster, fresh_pod, ['Listening on 127.0.0.1:1', 'Token: ' + 'f' * 32,
                                               'Tunnel on 127.0.0.1:2', 'Proof: ' + 'a' * 64])
    start = time.monotonic()
    r = cluster.diag('ps', 'pod/' + fresh_pod)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'do not prove the secret' in r.stderr, r.stderr
    assert 'PID' not in r.stdout
    assert time.monotonic() - start < 20
    assert [c['name'] for c in cluster.pod(fresh_pod)['spec']['ephemeralContainers']] == [debug_base_name()]


def test_forged_start_up_lines_without_proof_are_refused(cluster, fresh_pod):
    # they might still get their Proof line: kubectl-diag waits for it, then gives up
    add_forging_container(cluster, fresh_pod, ['Listening on 127.0.0.1:1', 'Token: ' + 'f' * 32])
    r = cluster.diag('ps', 'pod/' + fresh_pod, '--timeout', '4s')
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'do not prove the secret' in r.stderr, r.stderr
    assert 'PID' not in r.stdout
