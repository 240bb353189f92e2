"""The CLI with the oldest and newest kubectl it supports (1.27, 1.33; the suite runs 1.32): manager creation with
get --raw + replace --raw, port-forward, exec, logs, and the gRPC commands over the forward."""
import os

import pytest

from conftest import KUBECTLS, wait_for


@pytest.fixture(params=['1.27', '1.33'])
def kubectl(request):
    path = KUBECTLS[request.param]
    if not os.access(path, os.X_OK):
        pytest.skip('kubectl %s not installed at %s' % (request.param, path))
    return path


def test_ps_shell_redir_logs(cluster, bg, local_http, kubectl):
    # a fresh pod per version, so each kubectl creates the debug container itself
    name = 'v%s-%d' % (os.path.basename(kubectl).replace('.', '-').replace('kubectl-', ''), os.getpid())
    cluster.ok('run', name, '--image=nginx', '--restart=Never')
    try:
        cluster.wait_running(name)
        r = cluster.diag('ps', 'pod/' + name, '--kubectl', kubectl)
        assert r.returncode == 0 and ':80' in r.stdout, r.stderr
        r = cluster.diag('shell', 'pod/' + name, '--kubectl', kubectl, '--', '-c', 'hostname; exit 5')
        assert r.returncode == 5 and name in r.stdout, r.stdout + r.stderr
        srv = local_http()
        # the request comes from the node (the pod's hostIP), left alone by default
        red = bg(cluster, 'redir', '--include-probes', 'pod/' + name, '80:%d' % srv.port, kubectl=kubectl)
        red.wait_out('redirecting pod/%s:80' % name)
        ip = cluster.pod(name)['status']['podIP']
        got = cluster.in_node(['python3', '-c', 'import urllib.request; print(urllib.request.urlopen('
                               '"http://%s/", timeout=10).read().decode())' % ip])
        assert srv.marker in got.stdout, got.stdout + got.stderr
        assert red.interrupt() == 0
        r = cluster.diag('logs', '--pod', name, '--kubectl', kubectl, '-d', '1s', '--', 'python3', '-c',
                         'import urllib.request,subprocess; subprocess.run(["ip","netns","exec","%s",'
                         '"python3","-c","import urllib.request; urllib.request.urlopen(\'http://%s/\')"])'
                         % (cluster.node_netns(), ip))
        assert r.returncode == 0, r.stderr
        assert '[%s/%s] ' % (name, name) in r.stdout, r.stdout + r.stderr
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_exec_cp_capture(cluster, kubectl, tmp_path):
    """The commands served over the manager's gRPC (exec with stdin, cp both ways, capture) through
    each kubectl's port-forward, on a pod whose debug container that kubectl created."""
    name = 'w%s-%d' % (os.path.basename(kubectl).replace('.', '-').replace('kubectl-', ''), os.getpid())
    cluster.ok('run', name, '--image=curl', '--restart=Never')  # requests http://nginx/ every second
    try:
        cluster.wait_running(name)
        r = cluster.diag('exec', '-i', '--tools', 'pod/' + name, '--kubectl', kubectl, '--', 'sh', '-c',
                         'read x; echo got-$x; exit 4', input='abc\n')
        assert (r.returncode, r.stdout) == (4, 'got-abc\n'), r.stderr
        data = os.urandom(3 << 20)
        (tmp_path / 'in').write_bytes(data)
        r = cluster.diag('cp', '--kubectl', kubectl, str(tmp_path / 'in'), 'pod/%s:/tmp/f' % name)
        assert r.returncode == 0, r.stderr
        r = cluster.diag('cp', '--kubectl', kubectl, 'pod/%s:/tmp/f' % name, str(tmp_path / 'out'))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / 'out').read_bytes() == data
        r = cluster.diag('capture', '--kubectl', kubectl, 'pod/' + name, '-c', '1', '-w', str(tmp_path / 'c.pcap'))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / 'c.pcap').stat().st_size > 24  # more than the file header: a packet
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
