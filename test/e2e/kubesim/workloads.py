"""Deployments, ReplicaSets and StatefulSets (apps/v1) and Services (v1): their REST (get, list,
watch, create, update, patch, delete, the scale and status subresources) and the controllers that
make pods of them, on one thread woken by every change of the store.

What the controllers do, as far as kubectl can tell:
* a Deployment owns one ReplicaSet per pod template, named <deployment>-<pod-template-hash>; a
  changed template (kubectl rollout restart) makes a new one, scaled to spec.replicas at once,
  while the old ones keep only as many pods as the new one still lacks available ones; a rollout
  that makes no progress for progressDeadlineSeconds is ProgressDeadlineExceeded; a paused one
  (kubectl rollout pause) makes no new ReplicaSet until resumed;
* a ReplicaSet keeps spec.replicas pods named <replicaset>-<5 characters>, each with an
  ownerReference to it and the pod-template-hash label; a pod is available once Ready for
  minReadySeconds (the controllers wake at least once a second to see it);
* a StatefulSet creates <name>-0 … <name>-(n-1) in order, each once the one before is Ready,
  removes them from the highest ordinal down, and replaces pods of an older template from the
  highest ordinal down, one at a time;
* pods and ReplicaSets whose controller is gone are deleted (the garbage collector's Background
  propagation; --cascade=orphan removes the ownerReferences instead).
Services are stored only: a selector, a cluster IP, no proxying and no Endpoints."""
import copy
import datetime
import json
import sys
import threading
import traceback

import apierrors
import patch as patch_mod
import podutil
import resources
import selectors_k8s as sel
import store as store_mod
import validation

# resource → (kind, API group, short names)
RESOURCES = {
    'deployments': ('Deployment', 'apps', ['deploy']),
    'replicasets': ('ReplicaSet', 'apps', ['rs']),
    'statefulsets': ('StatefulSet', 'apps', ['sts']),
    'services': ('Service', '', ['svc']),
}
CONTROLLER_KINDS = ('deployments', 'replicasets', 'statefulsets')
REVISION = 'deployment.kubernetes.io/revision'


def api_version(resource):
    return 'apps/v1' if RESOURCES[resource][1] == 'apps' else 'v1'


def parse_path(p):
    """(group, namespace, resource, name, subresource) of a workload URL path, else None."""
    if p[:3] == ['apis', 'apps', 'v1']:
        group, rest = 'apps', p[3:]
    elif p[:2] == ['api', 'v1']:
        group, rest = '', p[2:]
    else:
        return None
    if len(rest) == 1:
        ns, rest = None, rest
    elif 3 <= len(rest) <= 5 and rest[0] == 'namespaces':
        ns, rest = rest[1], rest[2:]
    else:
        return None
    resource, name, sub = rest[0], (rest + [''])[1], (rest + ['', ''])[2]
    if RESOURCES.get(resource, (0, None))[1] != group:
        return None
    if ns is None and len(rest) > 1:
        return None
    return group, ns, resource, name, sub


# -- selectors and hashes --------------------------------------------------------------------
def selector_reqs(selector):
    """A LabelSelector (matchLabels, matchExpressions) as selectors_k8s requirements."""
    ops = {'In': 'in', 'NotIn': 'notin', 'Exists': 'exists', 'DoesNotExist': 'notexists'}
    reqs = [(k, '=', {v}) for k, v in sorted((selector.get('matchLabels') or {}).items())]
    for e in selector.get('matchExpressions') or []:
        reqs.append((e.get('key'), ops.get(e.get('operator'), 'in'), set(e.get('values') or [])))
    return reqs


def selector_string(selector):
    parts = ['%s=%s' % kv for kv in sorted((selector.get('matchLabels') or {}).items())]
    for e in selector.get('matchExpressions') or []:
        op = e.get('operator')
        if op in ('In', 'NotIn'):
            parts.append('%s %s (%s)' % (e['key'], op.lower(), ','.join(sorted(e.get('values') or []))))
        else:
            parts.append(('!' if op == 'DoesNotExist' else '') + e['key'])
    return ','.join(parts)


def template_hash(template):
    """FNV-1a of the template, its decimal digits in rand.SafeEncodeString's alphabet (the shape of
    the pod-template-hash and controller-revision-hash labels)."""
    h = 0x811C9DC5
    for b in json.dumps(template, sort_keys=True, separators=(',', ':')).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return ''.join(resources.SAFE_ALPHABET[ord(c) % len(resources.SAFE_ALPHABET)] for c in str(h))


def controller_uid(obj):
    for ref in obj['metadata'].get('ownerReferences') or []:
        if ref.get('controller') and ref.get('kind') in ('Deployment', 'ReplicaSet', 'StatefulSet'):
            return ref.get('uid')
    return None


def owner_ref(owner, kind):
    md = owner['metadata']
    return {'apiVersion': 'apps/v1', 'kind': kind, 'name': md['name'], 'uid': md['uid'],
            'controller': True, 'blockOwnerDeletion': True}


def _seconds_since(ts):
    t = podutil.parse_time(ts) if ts else None
    return (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds() if t else 0


def pod_ready(pod, min_ready_seconds=0):
    """Ready, and (available) for at least min_ready_seconds."""
    return any(c.get('type') == 'Ready' and c.get('status') == 'True' and
               (not min_ready_seconds or _seconds_since(c.get('lastTransitionTime')) >= min_ready_seconds)
               for c in (pod.get('status') or {}).get('conditions') or [])


def terminating(obj):
    return bool(obj['metadata'].get('deletionTimestamp'))


# -- defaults and validation ---------------------------------------------------------------
def _prune(o):
    """o without its null fields: the API server stores Go structs, where null and absent are one."""
    if isinstance(o, dict):
        return {k: _prune(v) for k, v in o.items() if v is not None}
    if isinstance(o, list):
        return [_prune(v) for v in o]
    return o


def _default(resource, obj):
    obj['spec'] = _prune(obj.get('spec') or {})
    spec = obj['spec']
    if resource == 'services':
        spec.setdefault('type', 'ClusterIP')
        spec.setdefault('sessionAffinity', 'None')
        for p in spec.get('ports') or []:
            p.setdefault('protocol', 'TCP')
            p.setdefault('targetPort', p.get('port'))
        return
    spec.setdefault('replicas', 1)
    spec.setdefault('revisionHistoryLimit', 10)
    resources.default_pod_spec(spec.setdefault('template', {}).setdefault('spec', {}))
    if resource == 'deployments':
        spec.setdefault('strategy', {'type': 'RollingUpdate',
                                     'rollingUpdate': {'maxUnavailable': '25%', 'maxSurge': '25%'}})
        spec.setdefault('progressDeadlineSeconds', 600)
    elif resource == 'statefulsets':
        spec.setdefault('podManagementPolicy', 'OrderedReady')
        spec.setdefault('updateStrategy', {'type': 'RollingUpdate', 'rollingUpdate': {'partition': 0}})


def _validate(resource, obj):
    errs = []
    name = obj['metadata'].get('name', '')
    pattern = validation.DNS1123_LABEL if resource == 'services' else validation.DNS1123_SUBDOMAIN
    if not name:
        errs.append(('FieldValueRequired', 'metadata.name', 'Required value: name or generateName is required'))
    elif not pattern.match(name):
        errs.append(validation.invalid('metadata.name', name, validation.LABEL_MSG if resource == 'services'
                                       else validation.SUBDOMAIN_MSG))
    spec = obj['spec']
    if resource == 'services':
        if spec.get('type') != 'ExternalName' and not spec.get('ports'):
            errs.append(validation.required('spec.ports'))
        return errs
    selector = spec.get('selector') or {}
    labels = (spec['template'].get('metadata') or {}).get('labels') or {}
    if not selector.get('matchLabels') and not selector.get('matchExpressions'):
        errs.append(validation.required('spec.selector'))
    elif not sel.match_labels(selector_reqs(selector), labels):
        shown = ', '.join('"%s":"%s"' % kv for kv in sorted(labels.items()))
        errs.append(('FieldValueInvalid', 'spec.template.metadata.labels',
                     'Invalid value: map[string]string{%s}: `selector` does not match template `labels`' % shown))
    pod = {'metadata': {'name': 'template'}, 'spec': spec['template']['spec']}
    for reason, field, body in validation.validate_pod_create(pod):
        errs.append((reason, field.replace('spec.', 'spec.template.spec.', 1), body))
    return errs


def _allocate_cluster_ip(sim):
    used = {s['spec'].get('clusterIP') for s in sim.store.objs['services'].values()}
    for i in range(10, 65000):
        ip = '10.96.%d.%d' % (i // 256, i % 256)
        if i % 256 and ip not in used:
            return ip
    raise apierrors.APIError(500, 'InternalError', 'no cluster IP left')


# -- REST ------------------------------------------------------------------------------------
def serve(sim, req, resource, ns, name, sub):
    kind = RESOURCES[resource][0]
    if sub and (sub not in ('scale', 'status') or (sub == 'scale' and resource == 'services')):
        raise apierrors.APIError(404, 'NotFound', 'the server could not find the requested resource')
    if not name:
        if req.method == 'GET':
            return resources.list_or_watch(sim, req, resource, ns)
        if req.method == 'POST' and ns:
            return _create(sim, req, resource, ns, req.json_body())
        raise apierrors.method_not_allowed()
    if req.method == 'GET':
        with sim.lock:
            obj = copy.deepcopy(_live(sim, resource, ns, name))
        if sub == 'scale':
            return req.send_json(200, _scale(obj))
        if req.wants_table() and not sub:
            return req.send_json(200, resources.table(resource, [obj], obj['metadata']['resourceVersion']))
        return req.send_json(200, resources._with_kind(obj, kind))
    if req.method in ('PUT', 'PATCH'):
        return _update(sim, req, resource, ns, name, sub)
    if req.method == 'DELETE' and not sub:
        return _delete(sim, req, resource, ns, name)
    raise apierrors.method_not_allowed()


def _live(sim, resource, ns, name):
    obj = sim.store.get(resource, ns, name)
    if obj is None:
        raise apierrors.not_found('%s%s' % (resource, '.apps' if RESOURCES[resource][1] else ''), name)
    return obj


def _create(sim, req, resource, ns, body):
    kind = RESOURCES[resource][0]
    md = resources.new_object(body, kind, ns)
    _default(resource, body)
    errs = _validate(resource, body)
    if errs:
        raise apierrors.invalid(kind, md.get('name', ''), errs, RESOURCES[resource][1])
    body['status'] = {'loadBalancer': {}} if resource == 'services' else {}
    if resource != 'services':
        md['generation'] = 1
    with sim.lock:
        resources.creatable_namespace(sim, resource, md['name'], ns)
        if resource == 'services' and body['spec'].get('type') != 'ExternalName' and \
                not body['spec'].get('clusterIP'):
            body['spec']['clusterIP'] = _allocate_cluster_ip(sim)
            body['spec']['clusterIPs'] = [body['spec']['clusterIP']]
        if 'All' in req.qall('dryRun'):
            return req.send_json(201, resources._with_kind(body, kind))
        try:
            sim.store.add(resource, body)
        except KeyError:
            raise apierrors.already_exists(resource, md['name'])
        return req.send_json(201, resources._with_kind(copy.deepcopy(body), kind))


def _scale(obj):
    md = obj['metadata']
    return {'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
            'metadata': {k: md[k] for k in ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp')},
            'spec': {'replicas': obj['spec'].get('replicas', 1)},
            'status': {'replicas': (obj.get('status') or {}).get('replicas', 0),
                       'selector': selector_string(obj['spec'].get('selector') or {})}}


def _update(sim, req, resource, ns, name, sub):
    kind = RESOURCES[resource][0]
    body = req.json_body()
    if req.method == 'PATCH' and not sub and resources._is_apply(req) and \
            sim.store.snapshot(resource, ns, name) is None:
        body.setdefault('metadata', {}).setdefault('name', name)
        return _create(sim, req, resource, ns, body)  # server-side apply creates what is missing
    with sim.lock:
        live = _live(sim, resource, ns, name)
        cur = _scale(live) if sub == 'scale' else resources._with_kind(copy.deepcopy(live), kind)
        new = patch_mod.apply(cur, body, req.header('Content-Type')) if req.method == 'PATCH' else body
        resources._precondition(resource, live, new)
        if sub == 'scale':
            spec = dict(live['spec'], replicas=int((new.get('spec') or {}).get('replicas', 0)))
        elif sub == 'status':
            spec = live['spec']  # status belongs to the controllers
        else:
            spec = copy.deepcopy(new.get('spec') or {})
        cand = {'metadata': live['metadata'], 'spec': spec}
        _default(resource, cand)
        spec = cand['spec']
        errs = _validate(resource, cand)
        if errs:
            raise apierrors.invalid(kind, name, errs, RESOURCES[resource][1])
        if resource == 'services':
            for k in ('clusterIP', 'clusterIPs'):  # immutable; a client may leave them out
                if k in live['spec']:
                    spec[k] = live['spec'][k]
        changed = sub == '' and resources._meta_update(live, new.get('metadata') or {})
        if spec != live['spec']:
            live['spec'] = spec
            if resource != 'services':
                live['metadata']['generation'] = live['metadata'].get('generation', 1) + 1
            changed = True
        if changed:
            sim.store.modified(resource, live)
        out = _scale(live) if sub == 'scale' else resources._with_kind(copy.deepcopy(live), kind)
        return req.send_json(200, out)


def _delete(sim, req, resource, ns, name):
    opts = req.json_body() if req.body() else {}
    policy = req.q('propagationPolicy') or opts.get('propagationPolicy') or 'Background'
    with sim.lock:
        live = _live(sim, resource, ns, name)
        uid = live['metadata']['uid']
        sim.store.remove(resource, live)
        if policy == 'Orphan':
            for kind in ('replicasets', 'pods'):
                for o in list(sim.store.objs[kind].values()):
                    if controller_uid(o) == uid:
                        o['metadata'].pop('ownerReferences', None)
                        sim.store.modified(kind, o)
        return req.send_json(200, resources._with_kind(copy.deepcopy(live), RESOURCES[resource][0]))


# -- Table output ----------------------------------------------------------------------------
def _s(name, priority=0):
    return (name, 'string', 'name' if name == 'Name' else '', priority)


def _containers(o):
    cs = o['spec']['template']['spec'].get('containers') or []
    return [','.join(c['name'] for c in cs), ','.join(c.get('image', '') for c in cs)]


def _deployment_row(o):
    st = o.get('status') or {}
    return [o['metadata']['name'], '%d/%d' % (st.get('readyReplicas', 0), o['spec'].get('replicas', 1)),
            st.get('updatedReplicas', 0), st.get('availableReplicas', 0),
            resources._age(o['metadata'].get('creationTimestamp'))] + _containers(o) + \
        [selector_string(o['spec'].get('selector') or {})]


def _replicaset_row(o):
    st = o.get('status') or {}
    return [o['metadata']['name'], o['spec'].get('replicas', 1), st.get('replicas', 0),
            st.get('readyReplicas', 0), resources._age(o['metadata'].get('creationTimestamp'))] + \
        _containers(o) + [selector_string(o['spec'].get('selector') or {})]


def _statefulset_row(o):
    st = o.get('status') or {}
    return [o['metadata']['name'], '%d/%d' % (st.get('readyReplicas', 0), o['spec'].get('replicas', 1)),
            resources._age(o['metadata'].get('creationTimestamp'))] + _containers(o)


def _service_row(o):
    spec = o['spec']
    ports = ','.join('%s/%s' % (p.get('port'), p.get('protocol', 'TCP')) for p in spec.get('ports') or [])
    selector = ','.join('%s=%s' % kv for kv in sorted((spec.get('selector') or {}).items()))
    return [o['metadata']['name'], spec.get('type', 'ClusterIP'), spec.get('clusterIP') or '<none>', '<none>',
            ports or '<none>', resources._age(o['metadata'].get('creationTimestamp')), selector or '<none>']


TABLES = {
    'deployments': ([_s('Name'), _s('Ready'), _s('Up-to-date'), _s('Available'), _s('Age'),
                     _s('Containers', 1), _s('Images', 1), _s('Selector', 1)], _deployment_row),
    'replicasets': ([_s('Name'), _s('Desired'), _s('Current'), _s('Ready'), _s('Age'), _s('Containers', 1),
                     _s('Images', 1), _s('Selector', 1)], _replicaset_row),
    'statefulsets': ([_s('Name'), _s('Ready'), _s('Age'), _s('Containers', 1), _s('Images', 1)],
                     _statefulset_row),
    'services': ([_s('Name'), _s('Type'), _s('Cluster-IP'), _s('External-IP'), _s('Port(s)'), _s('Age'),
                  _s('Selector', 1)], _service_row),
}
for _r, (_cols, _rowf) in TABLES.items():
    resources.register(_r, RESOURCES[_r][0], api_version(_r), _cols, _rowf)


# -- controllers -----------------------------------------------------------------------------
def _condition(old, ctype, status, reason, message):
    """A status condition keeping the times of the one it replaces where they still hold."""
    now = store_mod.now_rfc3339()
    prev = next((c for c in old if c.get('type') == ctype), {})
    c = {'type': ctype, 'status': status, 'lastUpdateTime': now, 'lastTransitionTime': now,
         'reason': reason, 'message': message}
    if prev.get('status') == status:
        c['lastTransitionTime'] = prev.get('lastTransitionTime', now)
        if prev.get('reason') == reason and prev.get('message') == message:
            c['lastUpdateTime'] = prev.get('lastUpdateTime', now)
    return c


class Controllers:
    """The deployment, replicaset, statefulset and garbage-collection loops, as one."""

    def __init__(self, sim):
        self.sim = sim
        self.store = sim.store
        self.wake = threading.Event()
        self.failures = {}  # owner uid → last pod creation error printed
        self.thread = threading.Thread(target=self._run, name='controllers', daemon=True)

    def start(self):
        self.store.on_change = self.wake.set
        self.thread.start()

    def _run(self):
        while not self.sim.stopping:
            self.wake.wait(1.0)
            self.wake.clear()
            try:
                with self.sim.lock:  # checked under the lock: shutdown lists the pods to stop after us
                    if self.sim.stopping:
                        break
                    self.reconcile()
            except Exception:
                traceback.print_exc()

    def reconcile(self):
        objs = self.store.objs
        self._collect_garbage()
        for d in list(objs['deployments'].values()):
            self._deployment(d)
        for rs in list(objs['replicasets'].values()):
            self._replicaset(rs)
        for s in list(objs['statefulsets'].values()):
            self._statefulset(s)

    def _owned(self, kind, owner):
        uid = owner['metadata']['uid']
        return [o for o in self.store.objs[kind].values() if controller_uid(o) == uid]

    def _set_status(self, resource, obj, status):
        status = {k: v for k, v in status.items() if v not in (0, None, '', [])}
        if obj.get('status') != status:
            obj['status'] = status
            self.store.modified(resource, obj)

    def _set_replicas(self, rs, n):
        if rs['spec'].get('replicas') != n:
            rs['spec']['replicas'] = n
            rs['metadata']['generation'] = rs['metadata'].get('generation', 1) + 1
            self.store.modified('replicasets', rs)

    def _delete_pod(self, pod):
        self.sim.delete_pod(pod, pod['spec'].get('terminationGracePeriodSeconds', 30))

    def _collect_garbage(self):
        uids = {o['metadata']['uid'] for k in CONTROLLER_KINDS for o in self.store.objs[k].values()}
        for kind in ('replicasets', 'pods'):
            for o in list(self.store.objs[kind].values()):
                u = controller_uid(o)
                if u and u not in uids:
                    if kind == 'pods':
                        if not terminating(o):
                            self._delete_pod(o)
                    else:
                        self.store.remove(kind, o)

    def _add_pod(self, owner, kind, labels, name=None):
        """A pod of owner's template; the name, else <owner>-<5 characters>."""
        t = owner['spec']['template']
        tmd = t.get('metadata') or {}
        md = {'labels': dict(tmd.get('labels') or {}, **labels), 'ownerReferences': [owner_ref(owner, kind)]}
        if tmd.get('annotations'):
            md['annotations'] = copy.deepcopy(tmd['annotations'])
        if name:
            md['name'] = name
        else:
            md['generateName'] = owner['metadata']['name'] + '-'
        pod = {'metadata': md, 'spec': copy.deepcopy(t['spec'])}
        uid = owner['metadata']['uid']
        try:
            resources.add_pod(self.sim, owner['metadata']['namespace'], pod)
            self.failures.pop(uid, None)
        except apierrors.APIError as e:
            if self.failures.get(uid) != e.message:
                self.failures[uid] = e.message
                sys.stderr.write('kubesim: %s %s: creating a pod: %s\n' % (kind, owner['metadata']['name'],
                                                                           e.message))

    def _deployment(self, d):
        md, spec = d['metadata'], d['spec']
        h = template_hash(spec['template'])
        rss = sorted(self._owned('replicasets', d), key=lambda r: int(r['metadata'].get('annotations', {}).get(REVISION, 0)))
        new = next((r for r in rss if r['metadata']['labels'].get('pod-template-hash') == h), None)
        olds = [r for r in rss if r is not new]
        want = spec.get('replicas', 1)
        top = int(rss[-1]['metadata'].get('annotations', {}).get(REVISION, 0)) if rss else 0
        if new is None and spec.get('paused'):  # a paused Deployment rolls nothing out
            return self._deployment_status(d, None, rss, want)
        if new is None:
            new = self._new_replicaset(d, h, top + 1, want)
            if new is None:
                return
        elif new is not rss[-1]:  # back to an older template (rollout undo): it becomes the newest revision
            new['metadata']['annotations'][REVISION] = str(top + 1)
            self.store.modified('replicasets', new)
        self._set_replicas(new, want)
        room = max(0, want - (new.get('status') or {}).get('availableReplicas', 0))
        for r in reversed(olds):  # the newest old pods serve until the new ones are available
            n = min(r['spec'].get('replicas', 0), room)
            room -= n
            self._set_replicas(r, n)
        rev = new['metadata'].get('annotations', {}).get(REVISION, '1')
        if (md.get('annotations') or {}).get(REVISION) != rev:
            md.setdefault('annotations', {})[REVISION] = rev
            self.store.modified('deployments', d)
        self._deployment_status(d, new, [new] + olds, want)

    def _new_replicaset(self, d, h, rev, want):
        tmpl = copy.deepcopy(d['spec']['template'])
        tmpl.setdefault('metadata', {})['labels'] = dict(tmpl['metadata'].get('labels') or {},
                                                         **{'pod-template-hash': h})
        selector = copy.deepcopy(d['spec']['selector'])
        selector.setdefault('matchLabels', {})['pod-template-hash'] = h
        rs = {'metadata': {'name': '%s-%s' % (d['metadata']['name'], h), 'namespace': d['metadata']['namespace'],
                           'labels': dict(tmpl['metadata']['labels']), 'generation': 1,
                           'annotations': {'deployment.kubernetes.io/desired-replicas': str(want),
                                           REVISION: str(rev)},
                           'ownerReferences': [owner_ref(d, 'Deployment')]},
              'spec': {'replicas': 0, 'minReadySeconds': d['spec'].get('minReadySeconds', 0), 'selector': selector,
                       'template': tmpl}, 'status': {}}
        try:
            return self.store.add('replicasets', rs)
        except KeyError:
            return None  # a ReplicaSet of that name not ours: real clusters bump collisionCount

    def _deployment_status(self, d, new, rss, want):
        def total(key):
            return sum((r.get('status') or {}).get(key, 0) for r in rss)
        st = {'observedGeneration': d['metadata'].get('generation', 1), 'replicas': total('replicas'),
              'updatedReplicas': (new.get('status') or {}).get('replicas', 0) if new else 0,
              'readyReplicas': total('readyReplicas'), 'availableReplicas': total('availableReplicas')}
        st['unavailableReplicas'] = max(0, want - st['availableReplicas'])
        old = (d.get('status') or {}).get('conditions') or []
        if st['availableReplicas'] >= want - want // 4:  # maxUnavailable 25%, rounded down
            avail = _condition(old, 'Available', 'True', 'MinimumReplicasAvailable',
                               'Deployment has minimum availability.')
        else:
            avail = _condition(old, 'Available', 'False', 'MinimumReplicasUnavailable',
                               'Deployment does not have minimum availability.')
        name = new['metadata']['name'] if new else ''
        busy, late = 'ReplicaSet "%s" is progressing.' % name, 'ReplicaSet "%s" has timed out progressing.' % name
        prev = next((c for c in old if c.get('type') == 'Progressing'), {})
        if d['spec'].get('paused'):
            prog = _condition(old, 'Progressing', 'Unknown', 'DeploymentPaused', 'Deployment is paused')
        elif st['updatedReplicas'] == want and st['replicas'] == want and st['availableReplicas'] == want:
            prog = _condition(old, 'Progressing', 'True', 'NewReplicaSetAvailable',
                              'ReplicaSet "%s" has successfully progressed.' % name)
        elif prev.get('message') == late or (prev.get('message') == busy and _seconds_since(
                prev.get('lastUpdateTime')) > d['spec'].get('progressDeadlineSeconds', 600)):
            prog = _condition(old, 'Progressing', 'False', 'ProgressDeadlineExceeded', late)
        else:
            prog = _condition(old, 'Progressing', 'True', 'ReplicaSetUpdated', busy)
        st['conditions'] = [avail, prog]
        self._set_status('deployments', d, st)

    def _replicaset(self, rs):
        pods = [p for p in self._owned('pods', rs) if not terminating(p)]
        want = rs['spec'].get('replicas', 1)
        h = rs['metadata'].get('labels', {}).get('pod-template-hash')
        for _ in range(want - len(pods)):
            self._add_pod(rs, 'ReplicaSet', {'pod-template-hash': h} if h else {})
        if len(pods) > want:  # not ready ones first, then the newest
            pods.sort(key=lambda p: (pod_ready(p), p['metadata']['creationTimestamp'], p['metadata']['name']))
            ready = [p for p in pods if pod_ready(p)]
            victims = [p for p in pods if not pod_ready(p)] + ready[::-1]
            for p in victims[:len(pods) - want]:
                self._delete_pod(p)
        n_ready = sum(1 for p in pods if pod_ready(p))
        n_available = sum(1 for p in pods if pod_ready(p, rs['spec'].get('minReadySeconds', 0)))
        self._set_status('replicasets', rs, {
            'replicas': len(pods), 'fullyLabeledReplicas': len(pods), 'readyReplicas': n_ready,
            'availableReplicas': n_available, 'observedGeneration': rs['metadata'].get('generation', 1)})

    def _statefulset(self, s):
        name, spec = s['metadata']['name'], s['spec']
        rev = '%s-%s' % (name, template_hash(spec['template']))
        pods = {}
        for p in self._owned('pods', s):
            tail = p['metadata']['name'][len(name) + 1:]
            if tail.isdigit():
                pods[int(tail)] = p
        want = spec.get('replicas', 1)
        self._statefulset_step(s, pods, want, rev)
        live = [p for p in pods.values() if not terminating(p)]
        ready = sum(1 for p in live if pod_ready(p))
        updated = sum(1 for p in live if p['metadata']['labels'].get('controller-revision-hash') == rev)
        old = s.get('status') or {}
        current = old.get('currentRevision') or rev
        if updated == want and ready == want:
            current = rev
        n_current = sum(1 for p in live if p['metadata']['labels'].get('controller-revision-hash') == current)
        self._set_status('statefulsets', s, {
            'observedGeneration': s['metadata'].get('generation', 1), 'replicas': len(live),
            'readyReplicas': ready, 'currentReplicas': n_current, 'updatedReplicas': updated,
            'availableReplicas': ready, 'currentRevision': current, 'updateRevision': rev,
            'collisionCount': 0})

    def _statefulset_step(self, s, pods, want, rev):
        """One ordered step: create the lowest missing pod once all below it are Ready, else remove
        the highest surplus pod, else replace the highest pod of an older revision."""
        name = s['metadata']['name']
        for i in range(want):
            p = pods.get(i)
            if p is None:
                if self.store.get('pods', s['metadata']['namespace'], '%s-%d' % (name, i)) is None:
                    self._add_pod(s, 'StatefulSet', {
                        'controller-revision-hash': rev, 'statefulset.kubernetes.io/pod-name': '%s-%d' % (name, i),
                        'apps.kubernetes.io/pod-index': str(i)}, name='%s-%d' % (name, i))
                return
            if terminating(p) or not pod_ready(p):
                return
        surplus = sorted(i for i in pods if i >= want)
        if surplus:
            if not terminating(pods[surplus[-1]]):
                self._delete_pod(pods[surplus[-1]])
            return
        partition = ((s['spec'].get('updateStrategy') or {}).get('rollingUpdate') or {}).get('partition') or 0
        stale = [i for i in range(partition, want) if pods[i]['metadata']['labels'].get('controller-revision-hash') != rev]
        if stale:
            self._delete_pod(pods[stale[-1]])
