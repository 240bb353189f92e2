"""Workload targets end to end: ps, logs, redir and capture on deploy/NAME, sts/NAME, rs/NAME and svc/NAME
pick the pods the object's selector matches, on the simulated cluster's controllers."""
import json
import os
import signal
import subprocess

import pytest

from conftest import KUBECTLS, pcapng_blocks, start_capture, wait_for
from e2e_common import children, forwards_to, prefixed, redirect_rules

SUFFIX = str(os.getpid())
WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{name: httpd, image: nginx, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: poller}
spec:
  replicas: 2
  selector:
    matchExpressions: [{key: app, operator: In, values: [poller]}]
  template:
    metadata: {labels: {app: poller}}
    spec:
      containers: [{name: poll, image: curl, args: ["http://nginx/"]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: db, image: distroless}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: external}
spec:
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 0
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      containers: [{name: c, image: nginx}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      containers: [{name: c, image: no-such-image-%s}]
""" % SUFFIX
# Services whose port 8081 (named front) reaches web's pods on port 80: by number, by the
# container port's name, and by a name no container port has
WORKLOADS += ''.join('---\napiVersion: v1\nkind: Service\nmetadata: {name: %s}\n'
                     'spec: {selector: {app: web}, ports: [{name: front, port: 8081, targetPort: %s}]}\n' % s
                     for s in (('web-port', '80'), ('web-named', 'http'), ('web-unnamed', 'https')))


@pytest.fixture(scope='module')
def workloads(cluster):
    cluster.ok('apply', '-f', '-', input=WORKLOADS)
    for w in ('deploy/web', 'deploy/poller', 'sts/db'):
        cluster.ok('rollout', 'status', w, '--timeout=90s', timeout=100)
    return cluster


def ps_pod(cluster, *target):
    r = cluster.diag('ps', '-o', 'json', *target)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)['pod']


def test_ps_on_a_deployment_replicaset_and_service_picks_a_replica(workloads):
    web = workloads.pod_names('app=web')
    assert len(web) == 3
    for target in ('deploy/web', 'deployment/web', 'deployment.apps/web', 'svc/web', 'service/web'):
        assert ps_pod(workloads, target) in web, target
    rs = json.loads(workloads.ok('get', 'rs', '-l', 'app=web', '-o', 'json'))['items'][0]['metadata']['name']
    assert ps_pod(workloads, 'rs/' + rs) in web


@pytest.mark.parametrize('kv', ['1.27', '1.33'])
def test_workloads_resolve_through_older_and_newer_kubectl(workloads, kv):
    r = workloads.diag('ps', '-o', 'json', 'svc/web', kubectl=KUBECTLS[kv])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['pod'] in workloads.pod_names('app=web')
    r = workloads.diag('ps', 'deploy/nope', kubectl=KUBECTLS[kv])
    assert r.returncode == 1 and 'deployments.apps "nope" not found' in r.stderr, r.stderr


def test_ps_on_a_statefulset_picks_one_of_its_ordinals(workloads):
    assert workloads.pod_names('app=db') == ['db-0', 'db-1']
    assert ps_pod(workloads, 'sts/db') in ('db-0', 'db-1')
    assert ps_pod(workloads, 'statefulset/db') in ('db-0', 'db-1')


def test_logs_of_a_deployment_follow_every_replica(workloads):
    pods = workloads.pod_names('app=poller')
    assert len(pods) == 2
    r = workloads.diag('logs', 'deploy/poller', '-d', '1500ms', '--', 'sleep', '3', timeout=60)
    assert r.returncode == 0, r.stderr
    for p in pods:  # matchExpressions became "app in (poller)": both replicas, each line prefixed
        lines = prefixed(r.stdout, p, 'poll')
        assert lines and all('GET http://nginx/' in l for l in lines), (p, r.stdout)


def test_logs_of_a_deployment_show_what_each_replica_logs(workloads):
    pods = workloads.pod_names('app=web')
    ips = [workloads.pod(p)['status']['podIP'] for p in pods]
    code = 'import urllib.request\nfor ip in %r: urllib.request.urlopen("http://%%s/" %% ip, timeout=10).read()' % ips
    r = workloads.diag('logs', 'deploy/web', '-d', '1500ms', '--',
                       'ip', 'netns', 'exec', workloads.node_netns(), 'python3', '-c', code, timeout=60)
    assert r.returncode == 0, r.stderr
    for p in pods:  # one request each, one log line each, each prefixed with its replica
        assert prefixed(r.stdout, p, 'httpd'), (p, r.stdout)


@pytest.mark.parametrize('port', ['80', 'http'])
def test_redir_on_a_deployment_reaches_a_replica(workloads, bg, local_http, port):
    srv = local_http()
    r = bg(workloads, 'redir', '--include-probes', 'deploy/web', '%s:%d' % (port, srv.port))
    r.wait_out('→ localhost:%d (incoming)' % srv.port)
    line = [l for l in r.out().splitlines() if 'redirecting pod/' in l][0]
    pod = line.split('pod/')[1].split(':')[0]
    assert pod in workloads.pod_names('app=web'), line
    got = workloads.http_get(pod, 80, '/x')
    assert srv.marker in got, got
    assert r.interrupt() == 0, r.err()


@pytest.mark.parametrize('svc,port', [('web-port', '8081'), ('web-named', '8081'), ('web-named', 'front')])
def test_redir_on_a_service_redirects_the_target_port_of_its_port(workloads, bg, local_http, svc, port):
    """redir svc/NAME PORT: PORT is the Service's (its number, or its name), as with kubectl
    port-forward svc/NAME, and its traffic reaches the pods on the targetPort (8081 -> 80 here, a
    number or a container port's name). The CLI redirected pod port 8081, where nothing comes:
    nothing was redirected, and nothing said so."""
    srv = local_http()
    r = bg(workloads, 'redir', '--include-probes', 'svc/' + svc, '%s:%d' % (port, srv.port))
    r.wait_out('→ localhost:%d (incoming)' % srv.port)
    line = [l for l in r.out().splitlines() if 'redirecting pod/' in l][0]
    pod = line.split('pod/')[1].split(':')[0]
    got = workloads.http_get(pod, 80, '/x')
    assert srv.marker in got, got
    assert pod in workloads.pod_names('app=web') and line.startswith('redirecting pod/%s:80 ' % pod), line
    assert r.interrupt() == 0, r.err()


def test_redir_outgoing_on_a_service_takes_its_ports_as_given(workloads, bg, local_http):
    """--outgoing catches the ports the pods connect to, which the Service does not map: 8081 stays
    8081 (it became the targetPort, 80, and caught the pods' own connections to port 80)."""
    srv = local_http()
    r = bg(workloads, 'redir', '--outgoing', 'svc/web-port', '8081:%d' % srv.port)
    r.wait_out('→ localhost:%d (outgoing)' % srv.port)
    line = [l for l in r.out().splitlines() if 'redirecting pod/' in l][0]
    pod = line.split('pod/')[1].split(':')[0]
    assert line.startswith('redirecting pod/%s:8081 ' % pod), line
    assert [l for l in redirect_rules(workloads.pod_ruleset(pod)) if 'dnat' in l and 'dport 8081 ' in l], \
        workloads.pod_ruleset(pod)
    assert r.interrupt() == 0, r.err()


def test_redir_on_a_service_whose_target_port_names_no_container_port(workloads):
    r = workloads.diag('redir', 'svc/web-unnamed', '8081:8989', timeout=60)
    assert r.returncode == 1, r.stderr
    assert 'service/web-unnamed port 8081 goes to the container port named "https", which no container of pod/web-' \
        in r.stderr and 'PODPORT:8989' in r.stderr, r.stderr


def test_capture_on_a_service_captures_a_backing_pod(workloads, bg, tmp_path):
    out = str(tmp_path / 'svc.pcap')
    p = start_capture(workloads, bg, 'svc/web', '-f', 'udp port 9999', '-c', '2', '-w', out)
    pod = p.err().split('capturing on any in pod/')[1].split(' ')[0]  # not the 'waiting for debug container' line
    assert pod in workloads.pod_names('app=web'), p.err()
    ip = workloads.pod(pod)['status']['podIP']
    workloads.send_udp(pod, [10, 20], 9999)
    assert p.proc.wait(30) == 0, p.err()
    r = subprocess.run(['tcpdump', '-n', '-r', out], capture_output=True, text=True, timeout=30)
    assert len([l for l in r.stdout.splitlines() if ip + '.9999' in l]) == 2, r.stdout + r.stderr


def test_capture_all_pods_of_a_deployment_into_one_pcapng(workloads, bg, tmp_path):
    out = str(tmp_path / 'web.pcapng')
    pods = workloads.pod_names('app=web')
    p = start_capture(workloads, bg, 'deploy/web', '--all-pods', '-f', 'udp port 9999', '-c', '1', '-w', out,
                      pods=len(pods))
    for i, pod in enumerate(pods):  # one datagram each, of its own size; -c 1 ends each pod's stream
        workloads.send_udp(pod, [100 + i], 9999)
    assert p.proc.wait(30) == 0, p.err()
    with open(out, 'rb') as f:
        ifaces, pkts = pcapng_blocks(f.read())
    got = sorted((ifaces[i][1], caplen - 48) for i, caplen in pkts)  # SLL2 + IPv4 + UDP
    assert got == [('pod/%s eth0' % pod, 100 + i) for i, pod in enumerate(pods)], (got, p.err())


def test_capture_all_pods_of_a_statefulset_takes_a_recreated_pod_again(workloads, bg, tmp_path):
    """db-0 deleted comes back under the same name: the capture says the old one goes and takes the
    new one."""
    out = str(tmp_path / 'db.pcapng')
    p = start_capture(workloads, bg, 'sts/db', '--all-pods', '-f', 'udp port 9999', '-w', out, pods=2)
    old = workloads.pod('db-0')['metadata']['uid']
    workloads.ok('delete', 'pod', 'db-0', '--wait=false')
    wait_for(lambda: 'pod/db-0 is being deleted: its capture ends with it' in p.err(), 30, what='the deletion seen')
    wait_for(lambda: 'pod/db-0 started: capturing it too' in p.err() and p.err().count('capturing on') == 3, 90,
             what='the new db-0 captured')
    assert workloads.pod('db-0')['metadata']['uid'] != old
    # the old db-0's stream ended: its port-forward is not restarted to the new pod
    wait_for(lambda: len(forwards_to('db-0', children(p.proc.pid))) == 1, 30, what='one port-forward to db-0')
    workloads.send_udp('db-0', [777], 9999)

    def got():
        with open(out, 'rb') as f:
            ifaces, pkts = pcapng_blocks(f.read())
        return [(ifaces[i][1], caplen - 48) for i, caplen in pkts]  # SLL2 + IPv4 + UDP
    wait_for(lambda: ('pod/db-0 eth0', 777) in got(), 30, what="the new db-0's datagram in the file")
    assert p.interrupt() == 0, p.err()
    assert 'error:' not in p.err(), p.err()


def test_redir_on_a_named_pod_ends_when_it_is_recreated(workloads, bg, local_http):
    """pod/db-1 replaced under its name while the port-forward is stopped: when kubectl port-forward
    comes back to a broken connection, the pod it finds is the new one, without our debug container.
    The redirect ends saying so; it does not restart the forward to a pod with no manager."""
    srv = local_http()
    r = bg(workloads, 'redir', 'pod/db-1', '5432:%d' % srv.port)
    r.wait_out('→ localhost:%d (incoming)' % srv.port)
    pfs = forwards_to('db-1', children(r.proc.pid))
    assert pfs, r.err()
    old = workloads.pod('db-1')['metadata']['uid']
    for pid in pfs:  # its pod check can then run only once the new db-1 is there
        os.kill(pid, signal.SIGSTOP)
    try:
        workloads.ok('delete', 'pod', 'db-1', '--wait=true', timeout=60)
        def replaced():
            r = workloads.kubectl('get', 'pod', 'db-1', '-o', 'json')
            p = json.loads(r.stdout) if r.returncode == 0 else {}
            return p and p['metadata']['uid'] != old and p['status'].get('phase') == 'Running'
        wait_for(replaced, 90, what='a new db-1 running')
    finally:
        for pid in pfs:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert r.proc.wait(30) == 1, r.err()
    assert 'error: pod/db-1 was recreated: the debug container' in r.err(), r.err()
    assert 'restarting it' not in r.err(), r.err()


def test_after_a_rollout_the_new_replicas_are_picked(workloads):
    old = workloads.pod_names('app=web')
    workloads.ok('rollout', 'restart', 'deploy/web')
    workloads.ok('rollout', 'status', 'deploy/web', '--timeout=90s', timeout=100)
    new = workloads.pod_names('app=web')
    assert len(new) == 3 and not set(new) & set(old), (old, new)
    assert ps_pod(workloads, 'deploy/web') in new  # never an old pod still terminating


def test_errors_name_the_object_and_the_fix(workloads):
    r = workloads.diag('ps', 'deploy/nope')
    assert r.returncode == 1
    assert 'deployments.apps "nope" not found in the current namespace' in r.stderr, r.stderr
    assert 'kubectl get deployments.apps\n' in r.stderr + '\n', r.stderr
    r = workloads.diag('-n', 'default', 'ps', 'deploy/nope')
    assert 'deployments.apps "nope" not found in namespace "default"' in r.stderr, r.stderr
    assert 'kubectl get deployments.apps -n default' in r.stderr, r.stderr
    r = workloads.diag('redir', 'svc/missing', '80')
    assert r.returncode == 1 and 'services "missing" not found' in r.stderr, r.stderr
    r = workloads.diag('ps', 'svc/external')
    assert r.returncode == 1 and 'service/external has no selector' in r.stderr, r.stderr
    r = workloads.diag('logs', 'svc/external')
    assert r.returncode == 1 and 'service/external has no selector' in r.stderr, r.stderr
    r = workloads.diag('ps', 'deploy/idle')
    assert r.returncode == 1
    assert 'no pod matches deployment/idle (selector app=idle) in the current namespace' in r.stderr, r.stderr
    assert "kubectl get pods -l 'app=idle'" in r.stderr, r.stderr
    wait_for(lambda: workloads.pod_names('app=stuck'), 30, what='the stuck pod')
    r = workloads.diag('ps', 'deploy/stuck')
    assert r.returncode == 1
    assert '1 pod(s) match deployment/stuck (selector app=stuck) in the current namespace but none is running' \
        in r.stderr, r.stderr
    r = workloads.diag('ps', 'deploy/web', '-l', 'app=web')
    assert r.returncode == 2 and 'both deployment/web and app=web given' in r.stderr, r.stderr


def test_help_names_the_workload_targets(cluster):
    for cmd in ('ps', 'logs', 'redir', 'capture'):
        out = cluster.diag(cmd, '--help').stdout
        assert 'deploy/NAME' in out and 'svc/NAME' in out, (cmd, out)


def test_workload_names_complete(workloads):
    r = workloads.diag('__complete', 'ps', 'deploy/')
    assert {'deploy/web', 'deploy/poller', 'deploy/idle'} <= set(r.stdout.splitlines()), r.stdout
    r = workloads.diag('__complete', 'logs', 'sts/d')
    assert r.stdout.splitlines() == ['sts/db', ':4'], r.stdout


def test_reading_the_workload_needs_get_on_it(workloads):
    # the viewer may read pods but not deployments: the message names the missing rule
    r = workloads.diag('--context', 'kubesim-viewer', 'ps', 'deploy/web')
    assert r.returncode == 1, r.stderr
    assert 'may not \'get\' the resource "deployments"' in r.stderr, r.stderr


def test_cp_to_and_from_a_deployment_uses_one_replica(workloads, tmp_path):
    f = tmp_path / 'note'
    f.write_text('to a replica\n')
    r = workloads.diag('cp', str(f), 'deploy/web:/tmp/note')
    assert r.returncode == 0, r.stderr
    r = workloads.diag('cp', 'deploy/web:/tmp/note', str(tmp_path / 'back'))  # the same replica again
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'back').read_text() == 'to a replica\n'
