"""The protocol kubectl port-forward speaks for kubectl-diag (cli/portfwd.c): SPDY unless the user
set KUBECTL_PORT_FORWARD_WEBSOCKETS, WebSockets once the SPDY upgrade is refused. kubesim logs each
port-forward session's protocol to STATE/portforward.log. A second cluster serves only the
WebSocket upgrade (KUBESIM_PORTFORWARD_UPGRADES=websocket), as behind a proxy that drops others."""
import os

import pytest

from conftest import DEMO, KUBECTLS, start_cluster


@pytest.fixture(scope='session')
def ws_cluster(request):
    return start_cluster(request, [DEMO], env={'KUBESIM_PORTFORWARD_UPGRADES': 'websocket'})


def sessions(cluster):
    try:
        with open(os.path.join(cluster.state, 'portforward.log')) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def new_sessions(cluster, before, pod):
    return [line.split()[1] for line in sessions(cluster)[len(before):] if line.split()[0] == 'default/' + pod]


def test_spdy_unless_the_user_chose(cluster):
    for env, want in ((None, 'spdy'), ('true', 'websocket'), ('false', 'spdy')):
        before = sessions(cluster)
        extra = {'KUBECTL_PORT_FORWARD_WEBSOCKETS': env} if env else {}
        r = cluster.diag('ps', 'pod/nginx', env=extra)
        assert r.returncode == 0 and ':80' in r.stdout, r.stderr
        assert new_sessions(cluster, before, 'nginx') == [want], (env, sessions(cluster))


def test_websockets_when_spdy_is_refused(ws_cluster, bg, local_http, tmp_path):
    c = ws_cluster
    before = sessions(c)
    r = c.diag('ps', '-v', 'pod/nginx')
    assert r.returncode == 0 and ':80' in r.stdout, r.stderr
    assert 'the SPDY upgrade was refused; WebSockets from now on' in r.stderr
    traced = [line.split()[1] for line in r.stderr.splitlines() if line.startswith('+ ') and ' port-forward ' in line]
    assert traced == ['KUBECTL_PORT_FORWARD_WEBSOCKETS=false', 'KUBECTL_PORT_FORWARD_WEBSOCKETS=true'], r.stderr
    assert new_sessions(c, before, 'nginx') == ['websocket'], sessions(c)

    # cp both ways and a redirect (its tunnel) over the WebSocket forward
    src = tmp_path / 'src'
    src.write_bytes(os.urandom(3 << 20))
    r = c.diag('cp', str(src), 'pod/nginx:/tmp/ws-src')
    assert r.returncode == 0, r.stderr
    r = c.diag('cp', 'pod/nginx:/tmp/ws-src', str(tmp_path / 'back'))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'back').read_bytes() == src.read_bytes()
    srv = local_http()
    red = bg(c, 'redir', '--include-probes', 'pod/nginx', '80:%d' % srv.port)
    red.wait_out('redirecting pod/nginx:80')
    got = c.in_node(['python3', '-c', 'import urllib.request; print(urllib.request.urlopen('
                     '"http://%s/", timeout=10).read().decode())' % c.pod('nginx')['status']['podIP']])
    assert srv.marker in got.stdout, got.stdout + got.stderr
    assert red.interrupt() == 0
    assert set(new_sessions(c, before, 'nginx')) == {'websocket'}, sessions(c)


def test_a_kubectl_without_websockets_behind_that_proxy(ws_cluster):
    """kubectl 1.27 speaks SPDY alone: the one line says what the API server answered."""
    if not os.access(KUBECTLS['1.27'], os.X_OK):
        pytest.skip('kubectl 1.27 not installed')
    r = ws_cluster.diag('ps', 'pod/nginx', '--kubectl', KUBECTLS['1.27'], timeout=60)
    assert r.returncode == 1 and 'Upgrade request required' in r.stderr, (r.returncode, r.stderr)
    assert 'WebSockets need kubectl 1.30 or newer' in r.stderr, r.stderr
