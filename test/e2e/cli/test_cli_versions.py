"""The CLI with the oldest and newest kubectl it supports (1.27, 1.33): manager creation with
get --raw + replace --raw, port-forward, exec, logs."""
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
