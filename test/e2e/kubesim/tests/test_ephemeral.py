"""pods/ephemeralcontainers through the real kubectl: kubectl debug, replace --raw (PUT),
patch --subresource (1.32+), validation errors (422) and Pod Security Admission (403)."""
import json

from conftest import versions, wait_for


def ec_names(cluster, pod, ns='default'):
    return [c['name'] for c in cluster.pod(pod, ns)['spec'].get('ephemeralContainers') or []]


def ec_state(cluster, pod, name, ns='default'):
    for s in cluster.pod(pod, ns)['status'].get('ephemeralContainerStatuses') or []:
        if s['name'] == name:
            return s.get('state', {})
    return {}


@versions('1.27', '1.32', '1.33')
def test_kubectl_debug_adds_running_container(cluster, kv):
    name = 'dbg-' + kv.replace('.', '')
    r = cluster.kubectl('debug', 'nginx', '--image=nginx', '-c', name, '--target=nginx', '--',
                        '/bin/busybox', 'sleep', '300', version=kv)
    assert r.returncode == 0, r.stderr
    assert name in ec_names(cluster, 'nginx')
    wait_for(lambda: 'running' in ec_state(cluster, 'nginx', name), 30, what='%s running' % name)
    # the debug container shares the target's PID namespace: it sees the httpd
    r = cluster.kubectl('exec', 'nginx', '-c', name, '--', '/bin/busybox', 'ps', version=kv)
    assert r.returncode == 0 and 'httpd' in r.stdout, r.stdout + r.stderr


@versions('1.27', '1.32', '1.33')
def test_replace_raw_put(cluster, kv):
    path = '/api/v1/namespaces/default/pods/distroless/ephemeralcontainers'
    pod = json.loads(cluster.ok('get', '--raw', path, version=kv))
    name = 'put-' + kv.replace('.', '')
    pod['spec'].setdefault('ephemeralContainers', []).append(
        {'name': name, 'image': 'nginx', 'command': ['/bin/busybox', 'sleep', '300'],
         'targetContainerName': 'distroless'})
    out = cluster.ok('replace', '--raw', path, '-f', '-', input=json.dumps(pod), version=kv)
    assert name in [c['name'] for c in json.loads(out)['spec']['ephemeralContainers']]
    wait_for(lambda: 'running' in ec_state(cluster, 'distroless', name), 30, what='%s running' % name)
    # removing an existing one is refused
    pod = json.loads(cluster.ok('get', '--raw', path, version=kv))
    pod['spec']['ephemeralContainers'] = [c for c in pod['spec']['ephemeralContainers'] if c['name'] != name]
    r = cluster.kubectl('replace', '--raw', path, '-f', '-', input=json.dumps(pod), version=kv)
    assert r.returncode == 1
    assert 'spec.ephemeralContainers: Forbidden: existing ephemeral containers "%s" may not be removed' % name in r.stderr


@versions('1.32', '1.33')
def test_patch_subresource_and_validation(cluster, kv):
    name = 'patch-' + kv.replace('.', '')
    ec = {'name': name, 'image': 'nginx', 'command': ['/bin/busybox', 'sleep', '300']}
    out = cluster.ok('patch', 'pod', 'echo', '--subresource=ephemeralcontainers', '-p',
                     json.dumps({'spec': {'ephemeralContainers': [ec]}}), version=kv)
    assert 'pod/echo patched' in out
    assert name in ec_names(cluster, 'echo')
    bad = {'spec': {'ephemeralContainers': [
        {'name': name, 'image': 'other'},
        {'name': 'echo', 'image': 'nginx', 'ports': [{'containerPort': 80}]},
        {'name': 'x1', 'image': 'nginx', 'targetContainerName': 'nope'},
        {'name': 'x2'}]}}
    r = cluster.kubectl('patch', 'pod', 'echo', '--subresource=ephemeralcontainers', '-p', json.dumps(bad),
                        version=kv)
    assert r.returncode == 1
    err = r.stderr
    assert 'The Pod "echo" is invalid' in err
    assert '.name: Duplicate value: "echo"' in err
    assert '.ports: Forbidden: cannot be set for an Ephemeral Container' in err
    assert '.targetContainerName: Not found: "nope"' in err
    assert '.image: Required value' in err
    assert 'spec.ephemeralContainers[%s]: Forbidden: existing ephemeral containers "%s" may not be changed' % (
        name, name) in err
    assert ec_names(cluster, 'echo').count(name) == 1


def test_patch_subresource_refused_by_old_kubectl(cluster):
    r = cluster.kubectl('patch', 'pod', 'echo', '--subresource=ephemeralcontainers', '-p', '{}', version='1.27')
    assert r.returncode == 1 and 'invalid subresource value: "ephemeralcontainers"' in r.stderr


@versions('1.27', '1.32')
def test_pod_security_rejects_privileged_and_capabilities(cluster, kv):
    # sysadmin (1.28+) asks for privileged; 1.27's strongest profile, netadmin, adds capabilities
    profile, why = ('netadmin', 'non-default capabilities (container "priv" must not include "NET_ADMIN" '
                    'in securityContext.capabilities.add)') if kv == '1.27' else (
        'sysadmin', 'privileged (container "priv" must not set securityContext.privileged=true)')
    r = cluster.kubectl('-n', 'locked', 'debug', 'app', '--image=nginx', '--profile=' + profile, '-c', 'priv',
                        version=kv)
    assert r.returncode == 1
    assert ('Error from server (Forbidden): pods "app" is forbidden: violates PodSecurity "baseline:latest": '
            + why) in r.stderr
    path = '/api/v1/namespaces/locked/pods/app/ephemeralcontainers'
    pod = json.loads(cluster.ok('get', '--raw', path, version=kv))
    pod['spec']['ephemeralContainers'] = (pod['spec'].get('ephemeralContainers') or []) + [
        {'name': 'caps', 'image': 'nginx', 'securityContext': {'capabilities': {
            'add': ['SYS_PTRACE', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_CHROOT']}}}]
    r = cluster.kubectl('replace', '--raw', path, '-f', '-', input=json.dumps(pod), version=kv)
    assert r.returncode == 1
    assert ('pods "app" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities '
            '(container "caps" must not include "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE" in '
            'securityContext.capabilities.add)') in r.stderr
    assert 'caps' not in ec_names(cluster, 'app', 'locked')
    # what baseline allows goes through
    pod['spec']['ephemeralContainers'][-1] = {'name': 'ok-' + kv.replace('.', ''), 'image': 'nginx',
                                              'command': ['/bin/busybox', 'sleep', '300'],
                                              'securityContext': {'capabilities': {'add': ['SYS_CHROOT']}}}
    cluster.ok('replace', '--raw', path, '-f', '-', input=json.dumps(pod), version=kv)


CONFLICT = ('Operation cannot be fulfilled on pods "%s": the object has been modified; please apply your '
            'changes to the latest version and try again')


@versions('1.27', '1.32', '1.33')
def test_replace_raw_stale_resource_version_conflicts(cluster, kv):
    """PUT is optimistic: a body read before the pod changed gets 409 Conflict and changes nothing;
    the same body without a resourceVersion is applied unconditionally, as by the API server."""
    path = '/api/v1/namespaces/default/pods/two/ephemeralcontainers'
    stale = json.loads(cluster.ok('get', '--raw', path, version=kv))
    cluster.ok('label', 'pod', 'two', '--overwrite', 'touched=' + kv.replace('.', ''), version=kv)
    name = 'rv-' + kv.replace('.', '')
    stale['spec'].setdefault('ephemeralContainers', []).append(
        {'name': name, 'image': 'nginx', 'command': ['/bin/busybox', 'sleep', '300']})
    r = cluster.kubectl('replace', '--raw', path, '-f', '-', '-v=8', input=json.dumps(stale), version=kv)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'Error from server (Conflict): ' + CONFLICT % 'two' in r.stderr
    # -v=8 logs the Status kubectl decoded: kind Status is implied by its decoding it
    body = r.stderr.split('server response object: ', 1)[1].split('\nError from server', 1)[0]
    status = json.loads(body[body.index('['):])[0]
    assert (status['reason'], status['code'], status['details']) == ('Conflict', 409, {'name': 'two', 'kind': 'pods'})
    assert name not in ec_names(cluster, 'two')
    del stale['metadata']['resourceVersion']
    out = cluster.ok('replace', '--raw', path, '-f', '-', input=json.dumps(stale), version=kv)
    assert name in [c['name'] for c in json.loads(out)['spec']['ephemeralContainers']]


@versions('1.27', '1.33')
def test_replace_and_patch_pod_stale_resource_version_conflict(cluster, kv):
    """kubectl replace (PUT pods/NAME) and a patch naming an old resourceVersion: 409, as upstream."""
    pod = cluster.pod('echo')
    cluster.ok('label', 'pod', 'echo', '--overwrite', 'touched=' + kv.replace('.', ''), version=kv)
    pod['metadata']['labels']['stale'] = 'yes'
    r = cluster.kubectl('replace', '-f', '-', input=json.dumps(pod), version=kv)
    assert r.returncode == 1
    assert 'Error from server (Conflict): error when replacing "STDIN": ' + CONFLICT % 'echo' in r.stderr
    rv = pod['metadata']['resourceVersion']
    r = cluster.kubectl('patch', 'pod', 'echo', '-p', json.dumps(
        {'metadata': {'resourceVersion': rv, 'labels': {'stale': 'yes'}}}), version=kv)
    assert r.returncode == 1
    assert 'Error from server (Conflict): ' + CONFLICT % 'echo' in r.stderr
    assert 'stale' not in cluster.pod('echo')['metadata']['labels']
