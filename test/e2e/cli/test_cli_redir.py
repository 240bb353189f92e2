"""kubectl diag redir end to end: real kubectl port-forward, real manager, real nftables in the
simulated pods' network namespaces, real traffic from the curl pod and from the node."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import KUBECTLS, error_lines, free_port, wait_for
from e2e_common import CONN_CLIENT, EchoServer, children, cmdline, grpc_forwards, redirect_rules


def curl_saw(cluster, text, after=0):
    return any(text in l for l in cluster.logs_since('curl', after))


def test_incoming_reaches_local_server_and_ctrl_c_removes_rules(cluster, bg, local_http):
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80 → localhost:%d (incoming)' % srv.port)
    rules = redirect_rules(cluster.pod_ruleset('nginx'))
    assert any('dport 80' in l and 'redirect' in l for l in rules), rules
    mark = len(cluster.logs_since('curl'))
    # the curl pod fetches http://nginx/ every second: its log shows the local server's answer
    wait_for(lambda: curl_saw(cluster, srv.marker, mark), 30, what='curl pod to get the local answer')
    assert any(h.startswith('nginx') for _, h, _ in srv.requests), srv.requests
    # one line per connection on stderr: pod:80 ← peer ⇒ localhost:port
    assert re.search(r'pod:80 ← 10\.244\.0\.\d+:\d+ ⇒ localhost:%d' % srv.port, r.err()), r.err()
    assert r.interrupt() == 0, r.err()
    # the rules are gone at once, and nginx answers the curl pod again
    assert redirect_rules(cluster.pod_ruleset('nginx')) == []
    mark = len(cluster.logs_since('curl'))
    wait_for(lambda: curl_saw(cluster, 'Welcome to nginx', mark), 30, what='nginx to answer again')


def test_a_port_given_by_its_name_is_the_containers(cluster, bg, local_http):
    """redir pod/nginx http:LOCAL, as kubectl port-forward takes a container port's name (the demo's
    nginx names port 80 "http"); before, "http" was an invalid port (exit 2)."""
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/nginx', 'http:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80 → localhost:%d (incoming)' % srv.port)
    mark = len(cluster.logs_since('curl'))
    wait_for(lambda: curl_saw(cluster, srv.marker, mark), 30, what='curl pod to get the local answer')
    assert r.interrupt() == 0, r.err()


def test_a_port_name_that_is_not_there_or_twice_is_refused_before_a_debug_container(cluster, fresh_pod):
    r = cluster.diag('redir', 'pod/' + fresh_pod, 'http:8080')
    assert (r.returncode, error_lines(r.stderr)) == (1, [
        'error: no container of pod/%s declares a port named "http": the pod\'s named ports are none; give the '
        'port\'s number instead, e.g. kubectl diag redir pod/%s 80:8080' % (fresh_pod, fresh_pod)])
    assert cluster.pod(fresh_pod)['spec'].get('ephemeralContainers', []) == []
    r = cluster.diag('redir', 'pod/nginx', 'http:8080', '80:8081')
    assert (r.returncode, error_lines(r.stderr)) == (2, [
        'error: ports http and 80 both go to port 80 of pod/nginx: redirect it once'])
    r = cluster.diag('redir', '--outgoing', 'pod/nginx', 'http:8080')
    assert (r.returncode, error_lines(r.stderr)) == (2, [
        'error: kubectl diag redir --outgoing catches the ports the pod connects to, which have no name in it: '
        'give "http" as a number, e.g. --outgoing 80:8080'])
    r = cluster.diag('redir', 'pod/nginx', 'HTTP:8080')
    assert (r.returncode, error_lines(r.stderr)) == (2, [
        'error: invalid port "HTTP:8080": use PODPORT or PODPORT:LOCALPORT, e.g. 80, 80:8080 or http:8080 (a '
        'port\'s name)'])


def test_outgoing_reaches_local_server(cluster, bg, local_http):
    srv = local_http()
    nginx_ip = cluster.pod('nginx')['status']['podIP']
    r = bg(cluster, 'redir', '--outgoing', '-l', 'app=curl', '80:%d' % srv.port)
    r.wait_out('redirecting pod/curl:80 → localhost:%d (outgoing)' % srv.port)
    wait_for(lambda: srv.requests, 30, what="the curl pod's request at the local server")
    path, host, _ = srv.requests[0]
    assert path == '/' and host.startswith('nginx')
    # the connection line names the original destination
    wait_for(lambda: 'pod → %s:80 (from ' % nginx_ip in r.err(), 10, what='connection line')
    mark = len(cluster.logs_since('curl'))
    wait_for(lambda: curl_saw(cluster, srv.marker, mark), 30, what='curl to log the local answer')
    assert r.interrupt() == 0, r.err()
    assert redirect_rules(cluster.pod_ruleset('curl')) == []


def test_all_listening_ports(cluster, bg, local_http):
    port = free_port()
    name = 'allports-%d' % os.getpid()
    cluster.ok('run', name, '--image=distroless', '--restart=Never', '--', str(port))
    try:
        cluster.wait_running(name)
        wait_for(lambda: str(port) in cluster.diag('ps', 'pod/' + name).stdout, 30, what='the server to listen')
        srv = local_http(port)
        # the request comes from the node, whose address is the pod's hostIP: left alone by default
        r = bg(cluster, 'redir', '--include-probes', 'pod/' + name)
        r.wait_out('redirecting pod/%s:%d → localhost:%d (incoming)' % (name, port, port))
        ip = cluster.pod(name)['status']['podIP']
        got = cluster.in_node(['python3', '-c', 'import urllib.request,sys; print(urllib.request.urlopen('
                               '"http://%s:%d/x", timeout=10).read().decode())' % (ip, port)])
        assert srv.marker in got.stdout, got.stdout + got.stderr
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def listening_ports(cluster, pod):
    """The TCP ports the pod listens on, as its network namespace's /proc/net/tcp{,6} list them."""
    ports = set()
    for table in ('tcp', 'tcp6'):
        with open('/proc/%d/net/%s' % (cluster.pod_pid(pod), table)) as f:
            ports |= {int(r.split()[1].rsplit(':', 1)[1], 16) for r in f.readlines()[1:] if r.split()[3] == '0A'}
    return ports


def test_a_pod_listening_on_more_ports_than_redir_takes_is_told_which(cluster, bg, label):
    """No ports given: every port the pod listens on, but at most 256 (the manager's streams). A pod
    listening on 260 had its lowest 256 redirected and the 4 others left alone without a word; now
    stderr says so, which ones, and how to choose."""
    name = label + '-many'
    cluster.ok('run', name, '--image=nginx', '--restart=Never', '--labels=app=' + label, '--command', '--',
               'sh', '-c', 'for p in $(seq 3000 3259); do httpd -p $p -h /; done; exec sleep 100000')
    cluster.wait_running(name)
    wait_for(lambda: len(listening_ports(cluster, name)) == 260, 30, what='260 listeners')
    r = bg(cluster, 'redir', 'pod/' + name)
    redirected = lambda: r.out().count('redirecting pod/%s:' % name)
    wait_for(lambda: redirected() >= 256 or r.proc.poll() is not None, 120, what='256 ports redirected')
    assert redirected() == 256 and 'redirecting pod/%s:3255 → localhost:3255 (incoming)' % name in r.out(), r.out()
    assert ':3256 ' not in r.out(), r.out()
    assert ('pod/%s listens on 260 TCP ports, and redir takes at most 256: only the lowest, 3000-3255, are '
            'redirected, not the 4 from 3256 to 3259; name the ports to redirect others, e.g. kubectl diag redir '
            'pod/%s 3256' % (name, name)) in error_lines(r.err()), r.err()
    assert r.interrupt() == 0, r.err()


def test_many_ports_are_said_once_per_pod_across_reattaches(cluster, bg, label):
    """Following -l, the line saying that a pod listens on more ports than redir takes came again on
    every re-attach to the pod (here: its manager killed). It is said once per pod in a run."""
    name = label + '-many'
    cluster.ok('run', name, '--image=nginx', '--restart=Never', '--labels=app=' + label, '--command', '--',
               'sh', '-c', 'for p in $(seq 3000 3259); do httpd -p $p -h /; done; exec sleep 100000')
    cluster.wait_running(name)
    wait_for(lambda: len(listening_ports(cluster, name)) == 260, 30, what='260 listeners')
    r = bg(cluster, 'redir', '-l', 'app=' + label)
    redirected = lambda: r.out().count('redirecting pod/%s:' % name)
    wait_for(lambda: redirected() >= 256 or r.proc.poll() is not None, 120, what='256 ports redirected')
    pids = cluster.pids_in_pod(name, 'kdiag-manager')
    assert len(pids) == 1, pids
    os.kill(pids[0], 9)
    wait_for(lambda: redirected() >= 512 or r.proc.poll() is not None, 180, what='the ports redirected again')
    assert redirected() == 512, r.out() + r.err()
    assert 'its redirect is dropped' in r.err(), r.err()
    assert len([l for l in r.err().splitlines() if 'pod/%s listens on 260 TCP ports' % name in l]) == 1, r.err()
    assert r.interrupt() == 0, r.err()


def test_many_ports_are_said_again_for_a_pod_made_again_under_its_name(cluster, bg, label):
    """Following -l, a pod deleted and made again under the same name (as a StatefulSet's) is
    another pod: the line saying that it listens on more ports than redir takes was said once per
    pod name, so the new pod was not told. It is said once per pod (uid)."""
    name = label + '-many'
    run = ('run', name, '--image=nginx', '--restart=Never', '--labels=app=' + label, '--command', '--',
           'sh', '-c', 'for p in $(seq 3000 3259); do httpd -p $p -h /; done; exec sleep 100000')
    told = lambda: len([l for l in r.err().splitlines() if 'pod/%s listens on 260 TCP ports' % name in l])
    cluster.ok(*run)
    cluster.wait_running(name)
    wait_for(lambda: len(listening_ports(cluster, name)) == 260, 30, what='260 listeners')
    r = bg(cluster, 'redir', '-l', 'app=' + label)
    redirected = lambda: r.out().count('redirecting pod/%s:' % name)
    wait_for(lambda: redirected() >= 256 or r.proc.poll() is not None, 120, what='256 ports redirected')
    assert told() == 1, r.err()
    cluster.ok('delete', 'pod', name)
    wait_for(lambda: 'pod/%s is deleted' % name in r.err(), 30, what='the redirect dropped')
    cluster.ok(*run)
    cluster.wait_running(name)
    wait_for(lambda: redirected() >= 512 or r.proc.poll() is not None, 180, what='the new pod redirected')
    assert redirected() == 512, r.out() + r.err()
    assert told() == 2, r.err()
    assert r.interrupt() == 0, r.err()


def test_200_concurrent_connections_intact(cluster, bg):
    with EchoServer() as echo:
        port = echo.port
        r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % port)  # clients on the node
        r.wait_out('redirecting pod/distroless:8080')
        ip = cluster.pod('distroless')['status']['podIP']
        res = cluster.in_node(['python3', CONN_CLIENT, ip, '8080', '200', '32768'], timeout=180)
        assert res.returncode == 0, res.stdout + res.stderr
        assert 'ok 200/200' in res.stdout, res.stdout + res.stderr
        assert r.err().count('pod:8080 ← ') >= 200
        assert r.interrupt() == 0


def tunnel_conns(cluster, pod):
    """Established connections to the manager's tunnel port in the pod, as its /proc/net/tcp lists
    them (the port is in the name of the manager's table, inet kdiag-<tunnel port>)."""
    rules = cluster.pod_ruleset(pod)
    m = re.search(r'table inet kdiag-(\d+)', rules)
    assert m, rules
    local = '0100007F:%04X' % int(m.group(1))
    with open('/proc/%d/net/tcp' % cluster.pod_pid(pod)) as f:
        rows = [l.split() for l in f.readlines()[1:]]
    return sum(1 for r in rows if r[1] == local and r[3] == '01')


@pytest.mark.parametrize('spares', ['default', '0'])
def test_spare_tunnel_connection_is_parked_and_topped_up(cluster, bg, monkeypatch, spares):
    # docs/redirect.md "Spare tunnel connections": one parked per stream, a new one after each
    # connection announced on it; KDIAG_REDIR_SPARES=0 parks none (every connection on the stream)
    want = 1
    if spares != 'default':
        monkeypatch.setenv('KDIAG_REDIR_SPARES', spares)
        want = int(spares)
    with EchoServer() as echo:
        r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8081:%d' % echo.port)  # peer on the node
        r.wait_out('redirecting pod/distroless:8081')
        parked = lambda: tunnel_conns(cluster, 'distroless')
        wait_for(lambda: parked() == want, 10, what='%d spare(s) parked' % want)
        ip = cluster.pod('distroless')['status']['podIP']
        for i in range(3):
            res = cluster.in_node(['python3', CONN_CLIENT, ip, '8081', '1', '65536'], timeout=60)
            assert 'ok 1/1' in res.stdout, res.stdout + res.stderr
            wait_for(lambda: parked() == want, 10, what='%d spare(s) parked after connection %d' % (want, i + 1))
        time.sleep(0.5)
        assert parked() == want
        assert r.err().count('pod:8081 ← ') == 3, r.err()
        assert r.interrupt() == 0
        # the stream's end closes its spares
        wait_for(lambda: parked() == 0, 10, what='spares closed after the redirect ended')


def test_a_local_reader_that_stalls_does_not_stop_the_redirect(cluster, bg):
    """docs/redirect.md: tunnel connections go through the pool of forwards, the gRPC forward only
    while none of the pool is up. The spare parked when the stream got ready went on the gRPC
    forward, before the pool was up, and stayed there: the first connection took it, and a local
    target that stopped reading stopped the stream's keepalive with it ("lost (keepalive watchdog
    timeout)"), and every connection of the pod. Now the spare waits for the pool."""
    stall = socket.socket()
    stall.bind(('127.0.0.1', 0))
    stall.listen(8)  # connections complete in the backlog, nobody ever reads them
    feed = None
    try:
        with EchoServer() as echo:
            r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8082:%d' % stall.getsockname()[1],
                   '8081:%d' % echo.port)  # peers on the node
            r.wait_out('redirecting pod/distroless:8082')
            r.wait_out('redirecting pod/distroless:8081')
            ip = cluster.pod('distroless')['status']['podIP']
            send = ('import socket\ns = socket.create_connection((%r, 8082), timeout=60)\n'
                    's.sendall(bytes(60 << 20))\n' % ip)
            feed = subprocess.Popen(['ip', 'netns', 'exec', cluster.node_netns(), 'python3', '-c', send],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            until, served = time.monotonic() + 15, []  # past the keepalive watchdog (10 s)
            while time.monotonic() < until:
                res = cluster.in_node(['python3', CONN_CLIENT, ip, '8081', '1', '65536', '10'], timeout=60)
                served.append('ok 1/1' in res.stdout)
                time.sleep(0.5)
            # The stream lives on. (A connection may still share the stalled target's forward,
            # the least loaded by count, and be reset when its hello cannot pass: fwdpool.h.)
            assert 'lost' not in r.err() and 'restarting' not in r.err(), r.err()
            assert served.count(True) >= len(served) // 2, (served, r.err())
            assert r.interrupt() == 0
    finally:
        if feed:
            feed.kill()
            feed.wait()
        stall.close()


def test_a_pool_forward_that_fails_to_start_is_tried_again(cluster, bg, tmp_path):
    """docs/redirect.md "Tunnel port-forwards": the first forward of the tunnel port alone (the
    pool's) fails to start, as it does when the API server is slow for a moment. The pool's thread
    ended at that first failure: no forward of the pool for the rest of the run, no spare ever
    parked, and every connection on the gRPC forward (a local reader that stalls then stops the
    stream's keepalive). Now it is tried again and both warm forwards and the spare come up."""
    failed = tmp_path / 'failed'
    wrapper = tmp_path / 'kubectl'
    wrapper.write_text(
        '#!/usr/bin/python3\nimport os, sys\n'
        '# a pool forward: port-forward ... pod/P :TUNNEL (the gRPC forward names two ports)\n'
        'if "port-forward" in sys.argv and sys.argv[-2].startswith("pod/") and not os.path.exists(%r):\n'
        '    open(%r, "w").close()\n'
        '    sys.exit("error: injected: the API server timed out")\n'
        'os.execv(%r, [%r] + sys.argv[1:])\n' % (str(failed), str(failed), KUBECTLS['default'], KUBECTLS['default']))
    wrapper.chmod(0o755)
    with EchoServer() as echo:
        r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8081:%d' % echo.port, kubectl=str(wrapper))
        r.wait_out('redirecting pod/distroless:8081')
        assert failed.exists(), r.err()
        pool = lambda: [p for p in children(r.proc.pid) if 'port-forward' in cmdline(p)
                        and cmdline(p).split()[-2].startswith('pod/')]
        wait_for(lambda: len(pool()) == 2, 15, what='the pool\'s 2 warm forwards: %s'
                 % [cmdline(p) for p in children(r.proc.pid)])
        wait_for(lambda: tunnel_conns(cluster, 'distroless') == 1, 15, what='a spare parked')
        assert r.interrupt() == 0


def test_port_forward_killed_is_recovered(cluster, bg, local_http):
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    wait_for(lambda: srv.requests, 30, what='first redirected request')
    pf = grpc_forwards(r.proc.pid)
    assert len(pf) == 1, [cmdline(p) for p in children(r.proc.pid)]
    os.kill(pf[0], 9)
    r.wait_out('re-established pod/nginx:80', timeout=60)
    assert 'restarting it' in r.err()
    new_pf = grpc_forwards(r.proc.pid)
    assert len(new_pf) == 1 and new_pf != pf
    n = len(srv.requests)
    wait_for(lambda: len(srv.requests) > n, 30, what='requests after the restart')
    assert r.interrupt() == 0
    assert redirect_rules(cluster.pod_ruleset('nginx')) == []


def test_port_forward_stopped_is_replaced(cluster, bg, local_http):
    # a stopped kubectl (SIGSTOP; a wedged one the same) never acted on the SIGTERM that replaced
    # it: the redirect was lost for good
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    pf = grpc_forwards(r.proc.pid)
    assert len(pf) == 1, [cmdline(p) for p in children(r.proc.pid)]
    os.kill(pf[0], signal.SIGSTOP)
    try:
        r.wait_out('re-established pod/nginx:80', timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pf[0], signal.SIGCONT)
    n = len(srv.requests)
    wait_for(lambda: len(srv.requests) > n, 30, what='requests after the restart')
    assert r.interrupt() == 0
    assert redirect_rules(cluster.pod_ruleset('nginx')) == []


def test_pod_deleted_mid_redirect_exits_non_zero(cluster, bg, local_http):
    srv = local_http()
    name = 'victim-%d' % os.getpid()
    cluster.ok('run', name, '--image=nginx', '--restart=Never')
    cluster.wait_running(name)
    r = bg(cluster, 'redir', 'pod/' + name, '80:%d' % srv.port)
    r.wait_out('redirecting pod/%s:80' % name)
    cluster.ok('delete', 'pod', name, '--wait=false')
    code = r.proc.wait(90)
    assert code == 1, (code, r.err())
    assert re.search(r'pod/%s is (gone|being deleted|no longer running)' % name, r.err()), r.err()


def test_target_restart_ends_a_named_pods_redirect_saying_so(cluster, bg, label, local_http):
    """A restart of the target container ends the debug container, which lives in the target's
    PID namespace, and with it the redirect of a named pod. It said "the debug container … exited
    (code 137); see kubectl logs …", logs that tell nothing; now it names the restart and the fix."""
    name = label + '-a'
    cluster.ok('run', name, '--image=distroless', '--labels=app=' + label)  # restartPolicy Always
    cluster.wait_running(name)
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/' + name, '8080:%d' % srv.port)
    r.wait_out('redirecting pod/%s:8080' % name)
    target = cluster.pids_in_pod(name, 'hello-server')
    assert target, 'no hello-server in pod/%s' % name
    for pid in target:
        os.kill(pid, signal.SIGKILL)
    code = r.proc.wait(60)
    assert code == 1, (code, r.err())
    assert re.search(r'error: the debug container \S+ in pod/%s ended \(code 137\) when its target container %s '
                     r'stopped or restarted: .*; the redirect ended \(run it again for a new debug container'
                     % (name, name), r.err()), r.err()


def test_host_network_pod_is_refused_before_a_debug_container(cluster, bg, label):
    """A pod with hostNetwork: true has the node's network namespace: the manager's prerouting rule
    for port P would catch P for every pod and process of the node. redir went ahead, added a debug
    container and redirected; now it refuses before adding one."""
    name = label + '-host'
    pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'labels': {'app': label}},
           'spec': {'hostNetwork': True, 'containers': [{'name': 'c', 'image': 'distroless'}]}}
    cluster.ok('apply', '-f', '-', input=json.dumps(pod))
    cluster.wait_running(name)
    r = bg(cluster, 'redir', 'pod/' + name, '8080:8989')
    code = r.proc.wait(30)
    assert code == 1, (code, r.err())
    assert "error: pod/%s uses its node's network (hostNetwork: true)" % name in r.err(), r.err()
    assert not cluster.pod(name)['spec'].get('ephemeralContainers'), cluster.pod(name)['spec']


def test_direct_connections_to_a_redirect_listener_are_logged_once_per_10s(cluster, bg, local_http):
    """An incoming redirect's listener listens on any address: anyone who reaches the pod can
    connect to it directly (a port scan does), and the manager closes those. Each was a line in
    the manager's log (200 connections, 200 lines); now one line per 10 s counts the others."""
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    m = re.search(r'tcp dport 80 redirect to :(\d+)', cluster.pod_ruleset('nginx'))
    assert m, cluster.pod_ruleset('nginx')
    mgr = [c['name'] for c in cluster.pod('nginx')['status']['ephemeralContainerStatuses'] if 'running' in c['state']]
    stray = lambda: cluster.ok('logs', 'nginx', '-c', mgr[-1]).count('did not come through the redirect rule')
    before = stray()
    code = ('import socket\nfor i in range(200):\n'
            '    s = socket.create_connection((%r, %s), timeout=10)\n    s.recv(1)\n    s.close()\n'
            % (cluster.pod('nginx')['status']['podIP'], m.group(1)))
    res = cluster.in_node(['python3', '-c', code])
    assert res.returncode == 0, res.stderr
    wait_for(lambda: stray() > before, 10, what='the line about them')
    time.sleep(0.5)  # the manager has closed all 200: a line each would be there by now
    assert stray() == before + 1
    # the 199 held back: the last of them when the window ends, with the count of the others (they
    # were said only with the next such connection, never if none came)
    wait_for(lambda: stray() == before + 2, 15, what='the line about the ones held back')
    last = [l for l in cluster.ok('logs', 'nginx', '-c', mgr[-1]).splitlines()
            if 'did not come through the redirect rule' in l][-1]
    assert last.endswith(': closed (and 198 more since the last such line)'), last
    assert r.interrupt() == 0, r.err()


def test_ctrl_c_while_the_debug_container_starts_ends_at_once(cluster, bg, fresh_pod):
    # the opener waited for the container (an image that never prints the start-up lines) until
    # --timeout, whatever signal came: 36 s of a 40 s timeout
    r = bg(cluster, 'redir', 'pod/' + fresh_pod, '80:%d' % free_port(), '--dbg-image', 'curl', '--timeout', '60s')
    wait_for(lambda: cluster.pod(fresh_pod)['spec'].get('ephemeralContainers'), 30, what='the debug container')
    time.sleep(1)
    t = time.monotonic()
    assert r.interrupt(timeout=30) == 0, r.err()
    assert time.monotonic() - t < 3, r.err()


def first_answer(cluster, pod, port, timeout):
    """A peer on the node connects to pod:port and prints what its first read got ("eof",
    "data" or "reset") and after how many seconds. A reset that beats connect's return (the
    connecting thread not yet run again, on a loaded machine) is a reset too: connect fails with it."""
    peer = ('import socket, time\n'
            't = time.monotonic()\n'
            'try:\n'
            '    s = socket.create_connection(("%s", %d), timeout=%d)\n'
            '    t = time.monotonic()\n'
            '    print("eof" if s.recv(10) == b"" else "data", round(time.monotonic() - t, 2))\n'
            'except ConnectionResetError:\n'
            '    print("reset", round(time.monotonic() - t, 2))\n'
            % (cluster.pod(pod)['status']['podIP'], port, timeout))
    return cluster.in_node(['python3', '-c', peer], timeout=timeout + 30)


def test_local_target_refusing_resets_the_peer(cluster, bg):
    port = free_port()  # nothing listens there
    r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % port)  # the peer is on the node
    r.wait_out('redirecting pod/distroless:8080')
    got = first_answer(cluster, 'distroless', 8080, 10)
    assert len(got.stdout.split()) == 2, got.stdout + got.stderr
    verdict, secs = got.stdout.split()
    assert verdict in ('reset', 'eof') and float(secs) < 5, got.stdout + got.stderr
    wait_for(lambda: 'refused by the local target' in r.err(), 10, what='the refusal on stderr')
    assert r.interrupt() == 0


def refused_peers(cluster, pod, port, n):
    """n connections from the node to pod:port, one after the other, each until the pod's end of
    it goes (the local target refused: reset, or closed; the reset may beat connect's return)."""
    code = ('import socket\nfor i in range(%d):\n'
            '    try:\n        s = socket.create_connection((%r, %d), timeout=10)\n        s.recv(1)\n'
            '        s.close()\n    except ConnectionResetError:\n        pass\n'
            % (n, cluster.pod(pod)['status']['podIP'], port))
    res = cluster.in_node(['python3', '-c', code])
    assert res.returncode == 0, res.stderr


def test_a_refusing_local_target_is_said_once_per_10s(cluster, bg):
    """Each connection a local target refused printed two lines (the connection, then the refusal),
    however many came: 30 made 60 lines, a busy pod flooded the terminal. Now a connection's line
    comes once it is bridged, and refusals are said once per 10 s with the count of the others."""
    r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % free_port())  # nothing there
    r.wait_out('redirecting pod/distroless:8080')
    refusals = lambda: r.err().count('refused by the local target')
    refused_peers(cluster, 'distroless', 8080, 30)

    def one_more():  # until the next window says the others
        refused_peers(cluster, 'distroless', 8080, 1)
        return refusals() >= 2
    wait_for(one_more, 30, interval=0.5, what='the second refusal line')
    lines = [l for l in r.err().splitlines() if ' ← ' in l]
    assert len(lines) == 2 and refusals() == 2, r.err()
    m = re.search(r'refused by the local target \(is something listening there\?\) '
                  r'\(and (\d+) more since the last such line\)$', lines[1])
    assert m and int(m.group(1)) >= 29, lines
    assert r.interrupt() == 0, r.err()


def said_refusals(err):
    """How many refusals the lines say: each line one, plus the others it counts."""
    lines = [l for l in err.splitlines() if 'refused by the local target' in l]
    more = [re.search(r'\(and (\d+) more since the last such line\)$', l) for l in lines]
    return len(lines) + sum(int(m.group(1)) for m in more if m), lines


@pytest.mark.parametrize('end', ['window', 'ctrl-c'])
def test_refusals_held_back_are_said_when_the_window_ends(cluster, bg, end):
    """A burst of refused connections, then nothing: the first was said and the others only counted
    for the next such line, which never came (20 refusals, 1 said). Now the last one held back is
    said when the 10 s window ends, or when redir stops, with the count of the others."""
    r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % free_port())  # nothing there
    r.wait_out('redirecting pod/distroless:8080')
    refused_peers(cluster, 'distroless', 8080, 20)
    wait_for(lambda: said_refusals(r.err())[1], 10, what='the first refusal line')
    if end == 'window':
        wait_for(lambda: said_refusals(r.err())[0] >= 20, 15, what='the refusals held back')
        assert r.interrupt() == 0, r.err()
    else:
        assert r.interrupt() == 0, r.err()
    said, lines = said_refusals(r.err())
    assert said == 20 and len(lines) == 2, r.err()
    assert lines[1].endswith('refused by the local target (is something listening there?) (and 18 more since the '
                             'last such line)'), lines


def test_a_refusing_local_target_is_said_for_each_connection_with_v(cluster, bg):
    r = bg(cluster, 'redir', '-v', '--include-probes', 'pod/distroless', '8080:%d' % free_port())
    r.wait_out('redirecting pod/distroless:8080')
    refused_peers(cluster, 'distroless', 8080, 5)
    wait_for(lambda: r.err().count('refused by the local target') == 5, 10, what='a refusal line for each')
    assert r.interrupt() == 0, r.err()


def test_more_ports_than_the_managers_streams_are_refused_before_a_debug_container(cluster, fresh_pod):
    """Each port is a stream of the manager, which serves 256 at once: of 300 ports 160-220
    came up, then redir ended (exit 1) on the manager's RESOURCE_EXHAUSTED, a debug container added.
    Now refused before anything is done."""
    r = cluster.diag('redir', 'pod/' + fresh_pod, *[str(p) for p in range(1000, 1300)], timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert error_lines(r.stderr) == [
        'error: kubectl diag redir takes at most 256 ports at once (300 given): each port is a stream of the '
        "pod's manager, which serves at most 256 streams; redirect fewer ports"], r.stderr
    assert not cluster.pod(fresh_pod)['spec'].get('ephemeralContainers'), cluster.pod(fresh_pod)['spec']


def test_local_target_that_never_accepts_is_given_up_with_the_peer(cluster, bg):
    # its listen backlog full, the connect stayed in SYN-SENT for the kernel's retries (about
    # 2 minutes) and said so only then, long after the manager had reset the peer at 10 s
    full = socket.socket()
    full.bind(('127.0.0.1', 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        for _ in range(2):  # the backlog of listen(0) holds one; the next SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(('127.0.0.1', port))
            fillers.append(s)
        r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % port)
        r.wait_out('redirecting pod/distroless:8080')
        got = first_answer(cluster, 'distroless', 8080, 30)
        assert got.stdout.split()[0] in ('reset', 'eof'), got.stdout + got.stderr
        wait_for(lambda: 'the local target did not accept within 10 s' in r.err(), 15, what='the line')
        assert r.interrupt() == 0, r.err()
    finally:
        for s in fillers:
            s.close()
        full.close()


def test_port_already_redirected_is_a_clear_error(cluster, bg, local_http):
    srv = local_http()
    first = bg(cluster, 'redir', 'pod/distroless', '8080:%d' % srv.port)
    first.wait_out('redirecting pod/distroless:8080')
    second = cluster.diag('redir', 'pod/distroless', '8080:%d' % srv.port, timeout=60)
    assert second.returncode == 1
    assert 'port 8080' in second.stderr and 'already' in second.stderr.lower(), second.stderr
    assert first.proc.poll() is None  # the first one keeps going
    assert first.interrupt() == 0


def test_api_server_gone_is_said_once_and_redir_keeps_trying(cluster, bg, local_http, tmp_path):
    """With the API server unreachable the forward cannot be checked nor restarted: redir says so
    once, with what it waits for, keeps trying past --timeout, and recovers when it answers."""
    srv = local_http()
    kc = tmp_path / 'kubeconfig'
    good = open(cluster.kubeconfig).read()
    kc.write_text(good)
    r = bg(cluster, '--kubeconfig', str(kc), '--timeout', '5s', 'redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    kc.write_text(re.sub(r'server: https://\S+', 'server: https://127.0.0.1:1', good))
    pf = grpc_forwards(r.proc.pid)
    assert len(pf) == 1
    os.kill(pf[0], 9)
    waiting = 'waiting for the API server to answer'
    wait_for(lambda: waiting in r.err(), 30, what='the API server message')
    assert 'The connection to the server 127.0.0.1:1 was refused' in r.err(), r.err()
    time.sleep(12)  # past --timeout, several retries
    assert r.proc.poll() is None, r.err()
    assert r.err().count(waiting) == 1, r.err()  # once per state change, not per retry
    kc.write_text(good)
    r.wait_out('re-established pod/nginx:80', timeout=60)
    assert 'kubectl port-forward to pod/nginx is up again' in r.err()
    n = len(srv.requests)
    wait_for(lambda: len(srv.requests) > n, 30, what='requests after the API server is back')
    assert r.interrupt() == 0, r.err()


def marked_processes(mark):
    found = []
    for d in os.listdir('/proc'):
        try:
            with open('/proc/%s/environ' % d, 'rb') as f:
                if ('KDIAG_WRAPPED=%s' % mark).encode() in f.read().split(b'\0'):
                    found.append(int(d))
        except (OSError, ValueError):
            pass
    return found


# logs follows a quiet pod: a follower that gets lines would die of SIGPIPE anyway
@pytest.mark.parametrize('command', [['redir', 'pod/nginx', '80:{port}'], ['logs', '-l', 'app=distroless']])
def test_ctrl_c_leaves_no_kubectl_behind_a_wrapper_script(cluster, bg, local_http, tmp_path, command):
    """kubectl behind a wrapper script (not exec'd) is a grandchild: Ctrl-C must reach it too."""
    mark = '%d-%d' % (os.getpid(), time.time_ns())
    wrapper = tmp_path / 'kubectl'
    wrapper.write_text('#!/bin/sh\nexport KDIAG_WRAPPED=%s\n%s "$@"\n' % (mark, KUBECTLS['default']))
    wrapper.chmod(0o755)
    srv = local_http()
    r = bg(cluster, *[a.format(port=srv.port) for a in command], kubectl=str(wrapper))
    if command[0] == 'redir':
        r.wait_out('redirecting pod/nginx:80')
    wait_for(lambda: any(cmdline(p).startswith(KUBECTLS['default'] + ' ') for p in marked_processes(mark)),
             30, what='kubectl (not just its wrapper) running')
    if command[0] == 'logs':
        time.sleep(3)  # its first lines written: an orphan would not die of SIGPIPE then
    assert r.interrupt() == 0, r.err()
    wait_for(lambda: not marked_processes(mark), 10,
             what='no kubectl left: %s' % [cmdline(p) for p in marked_processes(mark)])
