"""Deployments, ReplicaSets, StatefulSets and Services through the real kubectl: create, apply,
scale, rollout restart and rollout status, garbage collection, and the pods each controller makes."""
import json
import os
import re
import select
import subprocess
import time

from conftest import versions, wait_for


def pods_of(cluster, selector, kv='1.32'):
    return json.loads(cluster.ok('get', 'pods', '-l', selector, '-o', 'json', version=kv))['items']


def live_names(cluster, selector, kv='1.32'):
    return sorted(p['metadata']['name'] for p in pods_of(cluster, selector, kv)
                  if not p['metadata'].get('deletionTimestamp'))


def deployment_manifest(name, replicas=2, labels=None):
    labels = labels or {'app': name}
    return json.dumps({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
                       'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                                'template': {'metadata': {'labels': labels},
                                             'spec': {'terminationGracePeriodSeconds': 2,
                                                      'containers': [{'name': 'web', 'image': 'nginx'}]}}}})


@versions('1.27', '1.32', '1.33')
def test_deployment_pods_are_owned_replicaset_pods(cluster, kv):
    name = 'dep-' + kv.replace('.', '')
    assert ('deployment.apps/%s created' % name) in cluster.ok(
        'create', 'deployment', name, '--image=nginx', '--replicas=3', version=kv)
    out = cluster.ok('rollout', 'status', 'deployment/' + name, '--timeout=60s', version=kv, timeout=70)
    assert ('deployment "%s" successfully rolled out' % name) in out
    rs = json.loads(cluster.ok('get', 'rs', '-l', 'app=' + name, '-o', 'json', version=kv))['items']
    assert len(rs) == 1
    rs_name, h = rs[0]['metadata']['name'], rs[0]['metadata']['labels']['pod-template-hash']
    assert rs_name == '%s-%s' % (name, h)
    assert rs[0]['metadata']['ownerReferences'][0]['kind'] == 'Deployment'
    pods = pods_of(cluster, 'app=' + name, kv)
    assert len(pods) == 3
    for p in pods:
        assert re.fullmatch(re.escape(rs_name) + r'-[bcdfghjklmnpqrstvwxz2456789]{5}', p['metadata']['name'])
        assert p['metadata']['labels']['pod-template-hash'] == h
        ref = p['metadata']['ownerReferences'][0]
        assert (ref['kind'], ref['name'], ref['uid'], ref['controller']) == \
            ('ReplicaSet', rs_name, rs[0]['metadata']['uid'], True)
    d = json.loads(cluster.ok('get', 'deploy', name, '-o', 'json', version=kv))
    st = d['status']
    assert (st['observedGeneration'], st['replicas'], st['updatedReplicas'], st['availableReplicas']) == \
        (d['metadata']['generation'], 3, 3, 3)
    assert {c['type']: c['reason'] for c in st['conditions']} == \
        {'Available': 'MinimumReplicasAvailable', 'Progressing': 'NewReplicaSetAvailable'}
    table = cluster.ok('get', 'deployments', name, version=kv).splitlines()
    assert table[0].split() == ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE']
    assert table[1].split()[:4] == [name, '3/3', '3', '3']
    cluster.ok('delete', 'deployment', name, version=kv)
    wait_for(lambda: pods_of(cluster, 'app=' + name) == [], 30, what='pods of deleted %s gone' % name)
    assert cluster.ok('get', 'rs', '-l', 'app=' + name, '-o', 'name') == ''


@versions('1.27', '1.32', '1.33')
def test_scale_and_rollout_restart(cluster, kv):
    name = 'roll-' + kv.replace('.', '')
    cluster.ok('apply', '-f', '-', input=deployment_manifest(name), version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    assert ('deployment.apps/%s scaled' % name) in cluster.ok('scale', 'deploy/' + name, '--replicas=3',
                                                              version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    old = live_names(cluster, 'app=' + name)
    assert len(old) == 3
    assert ('deployment.apps/%s restarted' % name) in cluster.ok('rollout', 'restart', 'deploy/' + name,
                                                                 version=kv)
    out = cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=90s', version=kv, timeout=100)
    assert ('deployment "%s" successfully rolled out' % name) in out
    new = live_names(cluster, 'app=' + name)
    assert len(new) == 3 and not set(new) & set(old), (old, new)
    cluster.ok('wait', '--for=delete', '--timeout=60s', *['pod/' + n for n in old], version=kv, timeout=70)
    rs = {r['metadata']['name']: r for r in json.loads(cluster.ok('get', 'rs', '-l', 'app=' + name,
                                                                  '-o', 'json'))['items']}
    assert len(rs) == 2
    new_rs = {p['metadata']['ownerReferences'][0]['name'] for p in pods_of(cluster, 'app=' + name)}
    assert len(new_rs) == 1
    new_rs = new_rs.pop()
    old_rs = (set(rs) - {new_rs}).pop()
    assert (rs[old_rs]['spec']['replicas'], rs[new_rs]['spec']['replicas']) == (0, 3)
    restarted = pods_of(cluster, 'app=' + name)[0]['metadata']['annotations']
    assert 'kubectl.kubernetes.io/restartedAt' in restarted
    cluster.ok('delete', 'deploy', name, version=kv)


@versions('1.27', '1.33')
def test_paused_deployment_rolls_out_on_resume(cluster, kv):
    name = 'paused-' + kv.replace('.', '')
    cluster.ok('create', 'deployment', name, '--image=nginx', version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    cluster.ok('rollout', 'pause', 'deploy/' + name, version=kv)
    cluster.ok('set', 'image', 'deploy/' + name, 'nginx=curl', version=kv)
    r = cluster.kubectl('rollout', 'restart', 'deploy/' + name, version=kv)
    assert r.returncode == 1 and "can't restart paused deployment (run rollout resume first)" in r.stderr, r.stderr

    def observed():  # the controller has seen the new template: what it would roll out, it has made
        d = json.loads(cluster.ok('get', 'deploy', name, '-o', 'json'))
        return d['status'].get('observedGeneration') == d['metadata']['generation'] and d
    d = wait_for(observed, 30, what='deploy/%s observed' % name)
    assert len(cluster.ok('get', 'rs', '-l', 'app=' + name, '-o', 'name').split()) == 1
    assert {c['type']: c['reason'] for c in d['status']['conditions']}['Progressing'] == 'DeploymentPaused'
    cluster.ok('rollout', 'resume', 'deploy/' + name, version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    assert len(cluster.ok('get', 'rs', '-l', 'app=' + name, '-o', 'name').split()) == 2
    assert [p['spec']['containers'][0]['image'] for p in pods_of(cluster, 'app=' + name)
            if not p['metadata'].get('deletionTimestamp')] == ['curl']
    cluster.ok('delete', 'deploy', name, version=kv)


def test_min_ready_seconds_delays_availability(cluster):
    m = json.loads(deployment_manifest('minready', 1))
    m['spec']['minReadySeconds'] = 3
    cluster.ok('apply', '-f', '-', input=json.dumps(m))
    wait_for(lambda: pods_of(cluster, 'app=minready'), 30, what='the minready pod')
    cluster.ok('wait', '--for=condition=Ready', 'pod', '-l', 'app=minready', '--timeout=60s', timeout=70)
    ready = time.monotonic()  # at most a second after the pod became Ready
    cluster.ok('rollout', 'status', 'deploy/minready', '--timeout=60s', timeout=70)
    assert time.monotonic() - ready >= 1, 'available before minReadySeconds (3 s; times have 1 s resolution)'
    cluster.ok('delete', 'deploy', 'minready')


def test_rollout_status_fails_past_the_progress_deadline(cluster):
    m = json.loads(deployment_manifest('late', 1))
    m['spec']['progressDeadlineSeconds'] = 2
    m['spec']['template']['spec']['containers'][0]['image'] = 'no-such-image:1'
    cluster.ok('apply', '-f', '-', input=json.dumps(m))
    for kv in ('1.27', '1.32', '1.33'):
        r = cluster.kubectl('rollout', 'status', 'deploy/late', '--timeout=60s', version=kv, timeout=70)
        assert r.returncode == 1 and 'error: deployment "late" exceeded its progress deadline' in r.stderr, \
            r.stdout + r.stderr
    cond = {c['type']: c for c in json.loads(cluster.ok('get', 'deploy', 'late', '-o', 'json'))['status']['conditions']}
    assert (cond['Progressing']['status'], cond['Progressing']['reason']) == ('False', 'ProgressDeadlineExceeded')
    cluster.ok('delete', 'deploy', 'late')


@versions('1.27', '1.33')
def test_rollout_undo_returns_to_the_old_replicaset(cluster, kv):
    name = 'undo-' + kv.replace('.', '')
    cluster.ok('create', 'deployment', name, '--image=nginx', '--replicas=2', version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    first = cluster.ok('get', 'rs', '-l', 'app=' + name, '-o', 'name', version=kv).split()
    cluster.ok('set', 'image', 'deploy/' + name, 'nginx=curl', version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    assert ('deployment.apps/%s rolled back' % name) in cluster.ok('rollout', 'undo', 'deploy/' + name, version=kv)
    cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=60s', version=kv, timeout=70)
    rs = json.loads(cluster.ok('get', 'rs', '-l', 'app=' + name, '-o', 'json'))['items']
    assert len(rs) == 2, [r['metadata']['name'] for r in rs]  # the first one again, not a third
    live = [r for r in rs if r['spec']['replicas'] == 2]
    assert ['replicaset.apps/' + live[0]['metadata']['name']] == first
    assert live[0]['metadata']['annotations']['deployment.kubernetes.io/revision'] == '3'
    history = cluster.ok('rollout', 'history', 'deploy/' + name, version=kv).split()
    assert '2' in history and '3' in history and '1' not in history, history
    cluster.ok('delete', 'deploy', name, version=kv)


def test_apply_is_idempotent_and_selector_must_match(cluster):
    m = json.loads(deployment_manifest('exprs'))
    m['spec']['selector'] = {'matchExpressions': [{'key': 'app', 'operator': 'In', 'values': ['exprs']}]}
    for kv in ('1.27', '1.33'):
        out = cluster.ok('apply', '-f', '-', input=json.dumps(m), version=kv)
        assert 'deployment.apps/exprs ' in out and ('created' in out or 'unchanged' in out)
    assert 'deployment.apps/exprs unchanged' in cluster.ok('apply', '-f', '-', input=json.dumps(m))
    cluster.ok('rollout', 'status', 'deploy/exprs', '--timeout=60s', timeout=70)
    assert len(live_names(cluster, 'app=exprs')) == 2
    cluster.ok('delete', 'deploy', 'exprs')
    bad = json.loads(deployment_manifest('bad'))
    bad['spec']['template']['metadata']['labels'] = {'app': 'other'}
    r = cluster.kubectl('apply', '-f', '-', input=json.dumps(bad))
    assert r.returncode == 1
    assert 'Deployment.apps "bad" is invalid' in r.stderr or 'Deployment "bad" is invalid' in r.stderr, r.stderr
    assert 'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: ' \
           '`selector` does not match template `labels`' in r.stderr


def statefulset_manifest(name, replicas):
    return json.dumps({'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': {'name': name},
                       'spec': {'replicas': replicas, 'serviceName': name,
                                'selector': {'matchLabels': {'app': name}},
                                'template': {'metadata': {'labels': {'app': name}},
                                             'spec': {'terminationGracePeriodSeconds': 1,
                                                      'containers': [{'name': 'db', 'image': 'nginx'}]}}}})


@versions('1.27', '1.32', '1.33')
def test_statefulset_creates_ordered_pods_one_at_a_time(cluster, kv):
    name = 'db' + kv.replace('.', '')
    watch = cluster.popen('get', 'pods', '-l', 'app=' + name, '--watch', '--output-watch-events', '-o',
                          'custom-columns=EVENT:.type,NAME:.object.metadata.name,READY:.object.status.containerStatuses[0].ready',
                          version=kv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert ('statefulset.apps/%s created' % name) in cluster.ok(
            'apply', '-f', '-', input=statefulset_manifest(name, 3), version=kv)
        out = cluster.ok('rollout', 'status', 'sts/' + name, '--timeout=90s', version=kv, timeout=100)
        assert 'partitioned roll out complete: 3 new pods have been updated...' in out, out
    finally:
        watch.terminate()
        events, _ = watch.communicate(timeout=10)
    events = [l.split() for l in events.splitlines()[1:]]
    added = [e[1] for e in events if e[0] == 'ADDED']
    assert added == ['%s-%d' % (name, i) for i in range(3)], events
    for i in (1, 2):  # each pod is created once the one before is ready
        first_ready = events.index(['MODIFIED', '%s-%d' % (name, i - 1), 'true'])
        assert events.index(['ADDED', '%s-%d' % (name, i), '<none>']) > first_ready, events
    pods = {p['metadata']['name']: p for p in pods_of(cluster, 'app=' + name, kv)}
    for i in range(3):
        md = pods['%s-%d' % (name, i)]['metadata']
        assert md['labels']['statefulset.kubernetes.io/pod-name'] == '%s-%d' % (name, i)
        assert md['ownerReferences'][0]['kind'] == 'StatefulSet'
    sts = json.loads(cluster.ok('get', 'sts', name, '-o', 'json', version=kv))
    assert sts['status']['readyReplicas'] == 3 and sts['status']['currentRevision'] == sts['status']['updateRevision']
    cluster.ok('scale', 'sts', name, '--replicas=1', version=kv)
    wait_for(lambda: live_names(cluster, 'app=' + name) == [name + '-0'] and
             len(pods_of(cluster, 'app=' + name)) == 1, 60, what='%s scaled down to %s-0' % (name, name))
    cluster.ok('delete', 'sts', name, version=kv)
    wait_for(lambda: pods_of(cluster, 'app=' + name) == [], 30, what='pods of deleted %s gone' % name)


def test_statefulset_rollout_restart_replaces_every_pod(cluster):
    cluster.ok('apply', '-f', '-', input=statefulset_manifest('dbr', 2))
    cluster.ok('rollout', 'status', 'sts/dbr', '--timeout=60s', timeout=70)
    uids = {p['metadata']['uid'] for p in pods_of(cluster, 'app=dbr')}
    cluster.ok('rollout', 'restart', 'sts/dbr')
    cluster.ok('rollout', 'status', 'sts/dbr', '--timeout=90s', timeout=100)
    wait_for(lambda: len(pods_of(cluster, 'app=dbr')) == 2 and
             not {p['metadata']['uid'] for p in pods_of(cluster, 'app=dbr')} & uids, 60,
             what='both dbr pods replaced')
    assert live_names(cluster, 'app=dbr') == ['dbr-0', 'dbr-1']
    cluster.ok('delete', 'sts', 'dbr')


@versions('1.27', '1.32', '1.33')
def test_services_with_and_without_selector(cluster, kv):
    name = 'svc-' + kv.replace('.', '')
    assert ('service/%s created' % name) in cluster.ok('create', 'service', 'clusterip', name, '--tcp=80:8080',
                                                       version=kv)
    svc = json.loads(cluster.ok('get', 'svc', name, '-o', 'json', version=kv))
    assert svc['spec']['selector'] == {'app': name}
    assert svc['spec']['ports'] == [{'name': '80-8080', 'port': 80, 'protocol': 'TCP', 'targetPort': 8080}]
    assert svc['spec']['clusterIP'].startswith('10.96.')
    row = cluster.ok('get', 'services', name, version=kv).splitlines()
    assert row[0].split() == ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE']
    assert row[1].split()[:5] == [name, 'ClusterIP', svc['spec']['clusterIP'], '<none>', '80/TCP']
    bare = json.dumps({'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': name + '-bare'},
                       'spec': {'ports': [{'port': 5432}]}})
    cluster.ok('apply', '-f', '-', input=bare, version=kv)
    got = json.loads(cluster.ok('get', 'service', name + '-bare', '-o', 'json', version=kv))
    assert 'selector' not in got['spec'] and got['spec']['ports'][0]['targetPort'] == 5432
    cluster.ok('delete', 'svc', name, name + '-bare', version=kv)


def test_expose_deployment(cluster):
    cluster.ok('apply', '-f', '-', input=deployment_manifest('exposed', 1))
    assert 'service/exposed exposed' in cluster.ok('expose', 'deploy/exposed', '--port=80')
    assert json.loads(cluster.ok('get', 'svc', 'exposed', '-o', 'json'))['spec']['selector'] == {'app': 'exposed'}
    for kv in ('1.27', '1.33'):  # the 'all' category
        listed = cluster.ok('get', 'all', '-o', 'name', version=kv).split()
        assert 'deployment.apps/exposed' in listed and 'service/exposed' in listed, listed
        assert [n for n in listed if n.startswith('replicaset.apps/exposed-')], listed
    cluster.ok('delete', 'svc/exposed', 'deploy/exposed')


def test_pod_watch_resumes_from_resource_version(cluster):
    """What a follower does: list, then watch from the list's resourceVersion and again from the
    last event's: nothing in between is lost."""
    cluster.ok('apply', '-f', '-', input=deployment_manifest('resume', 1))
    cluster.ok('rollout', 'status', 'deploy/resume', '--timeout=60s', timeout=70)
    lst = json.loads(cluster.ok('get', '--raw', '/api/v1/namespaces/default/pods?labelSelector=app%3Dresume'))
    rv = lst['metadata']['resourceVersion']
    cluster.ok('rollout', 'restart', 'deploy/resume')
    cluster.ok('rollout', 'status', 'deploy/resume', '--timeout=60s', timeout=70)

    def watch_from(rv):
        r = cluster.kubectl('get', '--raw', '/api/v1/namespaces/default/pods?watch=1&labelSelector=app%%3Dresume'
                            '&timeoutSeconds=2&resourceVersion=%s' % rv)
        return [json.loads(l) for l in r.stdout.splitlines()]
    events = watch_from(rv)
    old = lst['items'][0]['metadata']['name']
    added = [e['object']['metadata']['name'] for e in events if e['type'] == 'ADDED']
    assert len(added) == 1 and added[0] != old, events
    def rvs(evs, low, high):
        return [e['object']['metadata']['resourceVersion'] for e in evs
                if low < int(e['object']['metadata']['resourceVersion']) <= high]
    mid = int(events[len(events) // 2]['object']['metadata']['resourceVersion'])
    last = int(events[-1]['object']['metadata']['resourceVersion'])
    later = watch_from(mid)  # what came after the first watch ended is not compared
    assert rvs(later, mid, last) == rvs(events, mid, last)
    w = cluster.popen('get', 'pods', '-l', 'app=resume', '--watch', '-o', 'json', stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    out = b''

    def first_object():  # the watch's first object, once whole
        nonlocal out
        if select.select([w.stdout], [], [], 0.2)[0]:
            out += os.read(w.stdout.fileno(), 65536)
        try:
            return json.JSONDecoder().raw_decode(out.decode())[0]
        except ValueError:
            return None
    try:
        first = wait_for(first_object, 30, what='the first object of the watch')
    finally:
        w.terminate()
        w.communicate(timeout=10)
    assert first['kind'] == 'Pod' and first['metadata']['labels']['app'] == 'resume', out
    cluster.ok('delete', 'deploy', 'resume')
