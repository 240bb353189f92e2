"""get / list / watch / wait / create / apply / delete, discovery, RBAC and authentication,
through the real kubectl."""
import json
import subprocess
import time

from conftest import VIEWER_TOKEN, versions, wait_for


@versions('1.27', '1.32', '1.33')
def test_get_pods_table(cluster, kv):
    out = cluster.ok('get', 'pods', version=kv)
    lines = out.splitlines()
    assert lines[0].split() == ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    for name in ('nginx', 'curl', 'distroless', 'echo'):
        assert rows[name][1:3] == ['1/1', 'Running'], out
    assert rows['two'][1:3] == ['2/2', 'Running'], out


@versions('1.27', '1.32')
def test_label_selectors(cluster, kv):
    def names(sel):
        out = cluster.ok('get', 'pods', '-l', sel, '-o', 'jsonpath={.items[*].metadata.name}', version=kv)
        return sorted(out.split())
    assert names('app=nginx') == ['nginx']
    assert names('app==curl') == ['curl']
    assert names('tier=back') == ['echo', 'two']
    assert names('tier!=back,app!=nginx') == ['curl', 'distroless']
    assert names('app in (nginx, echo)') == ['echo', 'nginx']
    assert names('app notin (nginx,echo,curl),!tier') == ['distroless']
    assert names('tier') == ['echo', 'two']
    r = cluster.kubectl('get', 'pods', '-l', 'app in (', version=kv)
    assert r.returncode != 0


def test_field_selector_and_status(cluster):
    out = cluster.ok('get', 'pods', '--field-selector', 'metadata.name=curl', '-o', 'json')
    items = json.loads(out)['items']
    assert [p['metadata']['name'] for p in items] == ['curl']
    p = items[0]
    assert p['status']['phase'] == 'Running'
    assert p['status']['podIP'].startswith('10.244.0.')
    cs = p['status']['containerStatuses'][0]
    assert cs['containerID'].startswith('containerd://') and 'running' in cs['state']
    ready = [c for c in p['status']['conditions'] if c['type'] == 'Ready']
    assert ready and ready[0]['status'] == 'True'
    out = cluster.ok('get', 'pods', '-o', 'wide')
    assert 'kubesim-node' in out and '10.244.0.' in out


@versions('1.27', '1.33')
def test_create_watch_wait_delete(cluster, kv):
    name = 'w-' + kv.replace('.', '')
    manifest = json.dumps({'apiVersion': 'v1', 'kind': 'Pod',
                           'metadata': {'name': name, 'labels': {'app': 'watchme'}},
                           'spec': {'terminationGracePeriodSeconds': 2,
                                    'containers': [{'name': 'c', 'image': 'nginx'}]}})
    watch = cluster.popen('get', 'pods', '-l', 'app=watchme', '--watch', '--output-watch-events',
                          '-o', 'custom-columns=EVENT:.type,NAME:.object.metadata.name,PHASE:.object.status.phase',
                          version=kv,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert 'created' in cluster.ok('create', '-f', '-', input=manifest, version=kv)
        r = cluster.kubectl('create', '-f', '-', input=manifest, version=kv)
        assert r.returncode == 1 and 'AlreadyExists' in r.stderr and ('pods "%s" already exists' % name) in r.stderr
        cluster.ok('wait', '--for=condition=Ready', 'pod/' + name, '--timeout=60s', version=kv, timeout=70)
        t0 = time.monotonic()
        assert ('pod "%s" deleted' % name) in cluster.ok('delete', 'pod', name, version=kv)
        assert time.monotonic() - t0 < 15
        r = cluster.kubectl('get', 'pod', name, version=kv)
        assert r.returncode == 1 and ('pods "%s" not found' % name) in r.stderr
    finally:
        time.sleep(1)
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    events = [l.split() for l in out.splitlines()]
    kinds = [e[0] for e in events if len(e) == 3 and e[1] == name]
    assert kinds, out
    assert kinds[0] == 'ADDED' and 'MODIFIED' in kinds and kinds[-1] == 'DELETED', out
    assert ['MODIFIED', name, 'Running'] in events, out


def test_apply_is_idempotent_and_labels(cluster):
    m = json.dumps({'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'applied'},
                    'spec': {'containers': [{'name': 'c', 'image': 'nginx'}]}})
    assert 'pod/applied created' in cluster.ok('apply', '-f', '-', input=m)
    assert 'pod/applied unchanged' in cluster.ok('apply', '-f', '-', input=m)
    cluster.ok('label', 'pod', 'applied', 'extra=yes')
    assert cluster.ok('get', 'pods', '-l', 'extra=yes', '-o', 'name').strip() == 'pod/applied'
    cluster.ok('delete', 'pod', 'applied', '--grace-period=1', '--wait=false')
    cluster.ok('wait', '--for=delete', 'pod/applied', '--timeout=30s', timeout=40)


@versions('1.27', '1.33')
def test_server_side_apply(cluster, kv):
    name = 'ssa-' + kv.replace('.', '')
    m = json.dumps({'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'labels': {'v': '1'}},
                    'spec': {'containers': [{'name': 'c', 'image': 'nginx'}]}})
    assert ('pod/%s serverside-applied' % name) in cluster.ok('apply', '--server-side', '-f', '-', input=m,
                                                               version=kv)
    cluster.ok('apply', '--server-side', '-f', '-', input=m.replace('"v": "1"', '"v": "2"'), version=kv)
    assert cluster.ok('get', 'pod', name, '-o', 'jsonpath={.metadata.labels.v}', version=kv) == '2'
    cluster.ok('delete', 'pod', name, '--grace-period=1', version=kv)


def test_namespaces(cluster):
    cluster.ok('create', 'namespace', 'scratch-ns')
    out = cluster.ok('get', 'ns', 'scratch-ns', '--show-labels')
    assert 'kubernetes.io/metadata.name=scratch-ns' in out and 'Active' in out
    r = cluster.kubectl('run', 'x', '--image=nginx', '-n', 'nope-ns')
    assert r.returncode == 1 and 'namespaces "nope-ns" not found' in r.stderr
    cluster.ok('delete', 'namespace', 'scratch-ns', timeout=90)
    r = cluster.kubectl('get', 'ns', 'scratch-ns')
    assert 'namespaces "scratch-ns" not found' in r.stderr


def test_unknown_image_waits_with_pull_error(cluster):
    cluster.ok('run', 'badimage', '--image=does-not-exist:1.0')
    try:
        def reason():
            p = cluster.pod('badimage')
            st = (p['status'].get('containerStatuses') or [{}])[0].get('state', {})
            return st.get('waiting', {}).get('reason') in ('ErrImagePull', 'ImagePullBackOff')
        wait_for(reason, 30, what='ErrImagePull')
        out = cluster.ok('get', 'pod', 'badimage')
        assert 'ErrImagePull' in out or 'ImagePullBackOff' in out
    finally:
        cluster.ok('delete', 'pod', 'badimage', '--grace-period=1')


@versions('1.27', '1.32')
def test_rbac_denials(cluster, kv):
    as_viewer = ['--token', VIEWER_TOKEN]
    out = cluster.ok('get', 'pods', '-o', 'name', *as_viewer, version=kv)
    assert 'pod/nginx' in out
    r = cluster.kubectl('delete', 'pod', 'nginx', *as_viewer, version=kv)
    assert r.returncode == 1
    assert r.stderr.strip().endswith('Error from server (Forbidden): pods "nginx" is forbidden: User "viewer" '
                                     'cannot delete resource "pods" in API group "" in the namespace "default"')
    r = cluster.kubectl('get', 'pods', '-n', 'locked', *as_viewer, version=kv)
    assert 'Error from server (Forbidden): pods is forbidden: User "viewer" cannot list resource "pods" ' \
           'in API group "" in the namespace "locked"' in r.stderr
    r = cluster.kubectl('exec', 'nginx', *as_viewer, '--', 'true', version=kv)
    assert r.returncode == 1
    assert 'pods "nginx" is forbidden: User "viewer" cannot create resource "pods/exec" in API group "" ' \
           'in the namespace "default"' in r.stderr
    r = cluster.kubectl('port-forward', 'pod/echo', ':9000', *as_viewer, version=kv, timeout=30)
    assert r.returncode == 1
    assert 'pods "echo" is forbidden: User "viewer" cannot create resource "pods/portforward" in API group "" ' \
           'in the namespace "default"' in r.stderr
    r = cluster.kubectl('get', 'namespaces', *as_viewer, version=kv)
    assert 'namespaces is forbidden: User "viewer" cannot list resource "namespaces" in API group "" ' \
           'at the cluster scope' in r.stderr


@versions('1.27', '1.32', '1.33')
def test_auth_can_i(cluster, kv):
    """kubectl auth can-i: a SelfSubjectAccessReview (protobuf from 1.32 on), answered per the
    user's rules, subresources included; exit 0 "yes", exit 1 "no"."""
    as_viewer = ['--token', VIEWER_TOKEN]
    for args, want in ((['create', 'pods', '--subresource=portforward'], 'yes'),
                       (['create', 'pods', '--subresource=portforward', *as_viewer], 'no'),
                       (['get', 'pods', '--subresource=log', *as_viewer], 'yes'),
                       (['list', 'pods', '-n', 'locked', *as_viewer], 'no'),
                       (['list', 'pods', *as_viewer], 'yes')):
        r = cluster.kubectl('auth', 'can-i', *args, version=kv)
        assert (r.returncode, r.stdout.strip()) == ((0, 'yes') if want == 'yes' else (1, 'no')), (args, r.stderr)


def test_unknown_token_is_unauthorized(cluster):
    r = cluster.kubectl('get', 'pods', '--token', 'not-a-token')
    assert r.returncode == 1
    assert 'error: You must be logged in to the server (Unauthorized)' in r.stderr


@versions('1.27', '1.32', '1.33')
def test_discovery_and_other_resources(cluster, kv):
    out = cluster.ok('api-resources', version=kv)
    rows = {l.split()[0]: l.split() for l in out.splitlines()[1:]}
    assert rows['pods'][1:] == ['po', 'v1', 'true', 'Pod']
    assert rows['namespaces'][1:] == ['ns', 'v1', 'false', 'Namespace']
    assert rows['deployments'][1:] == ['deploy', 'apps/v1', 'true', 'Deployment']
    assert rows['statefulsets'][1:] == ['sts', 'apps/v1', 'true', 'StatefulSet']
    assert rows['services'][1:] == ['svc', 'v1', 'true', 'Service']
    assert 'pod/nginx' in cluster.ok('get', 'all', '-o', 'name', version=kv)
    r = cluster.kubectl('get', 'events', version=kv)
    assert r.returncode == 0 and 'No resources found in default namespace.' in r.stderr
    assert 'Events:' in cluster.ok('describe', 'pod', 'nginx', version=kv)
    r = cluster.kubectl('get', 'cronjobs', version=kv)
    assert r.returncode == 1 and 'the server doesn\'t have a resource type "cronjobs"' in r.stderr


def test_a_readiness_gate_holds_ready_until_its_condition_is_set_through_status(cluster):
    """spec.readinessGates: the pod runs but is not Ready (ReadinessGatesNotReady) until a controller
    sets the gate's condition True through pods/status; False again makes it unready again."""
    name, gate = 'gated-%d' % (time.monotonic_ns() % 100000), 'example.com/ok'
    cluster.ok('apply', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
        'spec': {'readinessGates': [{'conditionType': gate}], 'containers': [{'name': 'c', 'image': 'distroless'}]}}))
    try:
        def ready():
            pod = cluster.pod(name)
            conds = {c['type']: c for c in pod['status'].get('conditions') or []}
            return pod['status'].get('phase'), conds.get('Ready', {}), conds.get(gate)
        wait_for(lambda: ready()[0] == 'Running', 30, what='Running')
        _, cond, own = ready()
        assert (cond['status'], cond['reason'], own) == ('False', 'ReadinessGatesNotReady', None), cond
        assert cond['message'] == 'corresponding condition of pod readiness gate "%s" does not exist.' % gate
        for status in ('True', 'False'):
            cluster.ok('patch', 'pod', name, '--subresource=status', '--type=merge', '-p',
                       json.dumps({'status': {'conditions': [{'type': gate, 'status': status}]}}))
            wait_for(lambda: ready()[1]['status'] == status, 10, what='Ready %s' % status)
            assert ready()[2]['status'] == status
        assert ready()[1]['message'] == 'the status of pod readiness gate "%s" is not "True", but False' % gate
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
