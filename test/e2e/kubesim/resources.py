"""Namespaces and pods: get, list (selectors), watch (chunked events), create, patch, update,
delete, the ephemeralcontainers subresource, and Table output for kubectl get."""
import copy
import datetime
import json
import queue
import random
import select
import time

import admission
import apierrors
import patch as patch_mod
import selectors_k8s as sel
import store as store_mod
import validation


def _selectors(req):
    try:
        return sel.parse_labels(req.q('labelSelector')), sel.parse_fields(req.q('fieldSelector'))
    except sel.SelectorError as e:
        raise apierrors.bad_request('unable to parse requirement: %s' % e)


def _with_kind(obj, kind):
    out = {'kind': kind, 'apiVersion': API_VERSIONS.get(kind, 'v1')}
    out.update(obj)
    return out


# -- Table (kubectl get's human output) ------------------------------------------------------
def _age(ts):
    try:
        t = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return '<unknown>'
    s = int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
    if s < 0:
        return '0s'
    if s < 120:
        return '%ds' % s
    m = s // 60
    if m < 10:
        return '%dm%ds' % (m, s % 60) if s % 60 else '%dm' % m
    if m < 180:
        return '%dm' % m
    h = m // 60
    if h < 8:
        return '%dh%dm' % (h, m % 60) if m % 60 else '%dh' % h
    if h < 48:
        return '%dh' % h
    return '%dd' % (h // 24)


def pod_status_reason(pod):
    st = pod.get('status') or {}
    reason = st.get('reason') or st.get('phase', 'Pending')
    ready = 0
    for cs in st.get('containerStatuses') or []:
        s = cs.get('state') or {}
        if 'waiting' in s and s['waiting'].get('reason'):
            reason = s['waiting']['reason']
        elif 'terminated' in s:
            t = s['terminated']
            reason = t.get('reason') or ('Signal:%s' % t['signal'] if t.get('signal') else
                                         'ExitCode:%s' % t.get('exitCode'))
        elif 'running' in s and cs.get('ready'):
            ready += 1
    if pod['metadata'].get('deletionTimestamp'):
        reason = 'Terminating'
    return reason, ready


def pod_row(pod):
    st = pod.get('status') or {}
    reason, ready = pod_status_reason(pod)
    total = len(pod.get('spec', {}).get('containers') or [])
    restarts = sum(cs.get('restartCount', 0) for cs in st.get('containerStatuses') or [])
    return [pod['metadata']['name'], '%d/%d' % (ready, total), reason, restarts,
            _age(pod['metadata'].get('creationTimestamp')), st.get('podIP') or '<none>',
            pod.get('spec', {}).get('nodeName') or '<none>', '<none>', '<none>']


POD_COLS = [('Name', 'string', 'name', 0), ('Ready', 'string', '', 0), ('Status', 'string', '', 0),
            ('Restarts', 'string', '', 0), ('Age', 'string', '', 0), ('IP', 'string', '', 1),
            ('Node', 'string', '', 1), ('Nominated Node', 'string', '', 1),
            ('Readiness Gates', 'string', '', 1)]
NS_COLS = [('Name', 'string', 'name', 0), ('Status', 'string', '', 0), ('Age', 'string', '', 0)]


KINDS = {'pods': 'Pod', 'namespaces': 'Namespace', 'events': 'Event'}  # resource → kind
API_VERSIONS = {}  # kind → apiVersion where it is not v1
TABLES = {}  # resource → (columns, row function) of the resources other modules serve


def register(resource, kind, api_version, cols, rowf):
    """Makes list, watch and Table output serve another module's resource."""
    KINDS[resource] = kind
    API_VERSIONS[kind] = api_version
    TABLES[resource] = (cols, rowf)


EVENT_COLS = [('Last Seen', 'string', '', 0), ('Type', 'string', '', 0), ('Reason', 'string', '', 0),
              ('Object', 'string', '', 0), ('Message', 'string', '', 0)]


def table(kind, objs, rv, defs=True):
    k = KINDS[kind]
    if kind == 'pods':
        cols, rowf = POD_COLS, pod_row
    elif kind in TABLES:
        cols, rowf = TABLES[kind]
    elif kind == 'namespaces':
        cols, rowf = NS_COLS, lambda o: [o['metadata']['name'], o.get('status', {}).get('phase', 'Active'),
                                         _age(o['metadata'].get('creationTimestamp'))]
    else:
        cols, rowf = EVENT_COLS, lambda o: ['', o.get('type', ''), o.get('reason', ''), '', o.get('message', '')]
    t = {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1', 'metadata': {'resourceVersion': rv}}
    t['columnDefinitions'] = [{'name': n, 'type': ty, 'format': f, 'description': '', 'priority': p}
                              for n, ty, f, p in cols] if defs else []
    t['rows'] = [{'cells': rowf(o), 'object': _with_kind(o, k)} for o in objs]
    return t


# -- list / watch ---------------------------------------------------------------------------
def list_or_watch(sim, req, kind, ns):
    ls, fs = _selectors(req)
    if req.q('watch') in ('true', '1'):
        return watch(sim, req, kind, ns, ls, fs)
    items, rv = sim.store.list(kind, ns, ls, fs)
    if req.wants_table():
        return req.send_json(200, table(kind, items, rv))
    k = KINDS[kind]
    return req.send_json(200, {'kind': k + 'List', 'apiVersion': API_VERSIONS.get(k, 'v1'), 'metadata': {'resourceVersion': rv},
                               'items': [_with_kind(o, k) for o in items]})


def _peer_closed(sock):
    try:
        r, _, _ = select.select([sock], [], [], 0)
        if r:
            import socket as s
            return sock.recv(1, s.MSG_PEEK | s.MSG_DONTWAIT) == b''
    except (OSError, ValueError):
        return True
    return False


def watch(sim, req, kind, ns, ls, fs):
    try:
        w = sim.store.watch(kind, ns, ls, fs, req.q('resourceVersion'))
    except store_mod.Gone as g:
        raise apierrors.APIError(410, 'Expired', 'too old resource version: %s (%s)' % (
            g, sim.store.current_rv()))
    except ValueError:
        raise apierrors.bad_request('invalid resourceVersion %r' % req.q('resourceVersion'))
    timeout = req.q('timeoutSeconds')
    deadline = time.monotonic() + (int(timeout) if timeout and timeout.isdigit() else 1800)
    as_table = req.wants_table()
    k = KINDS[kind]
    first = True
    try:
        req.start_chunked('application/json')
        while not sim.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = w.get(timeout=min(left, 1.0))
            except queue.Empty:
                if _peer_closed(req.h.connection):
                    break
                continue
            if item is None:
                break
            etype, obj = item
            o = table(kind, [obj], obj['metadata'].get('resourceVersion'), first) if as_table \
                else _with_kind(obj, k)
            first = False
            req.chunk(json.dumps({'type': etype, 'object': o}, separators=(',', ':')).encode() + b'\n')
        req.end_chunked()
    except OSError:
        req.h.close_connection = True
    finally:
        w.close()


def events(sim, req, ns):
    """The simulator records no events; kubectl get/describe/wait still find the resource."""
    if req.method != 'GET':
        raise apierrors.method_not_allowed()
    return list_or_watch(sim, req, 'events', ns)


# -- namespaces -----------------------------------------------------------------------------
def _meta_update(live, new_md):
    """Applies label/annotation changes, the parts of metadata clients may change."""
    changed = False
    for key in ('labels', 'annotations'):
        v = new_md.get(key) or {}
        if (live['metadata'].get(key) or {}) != v:
            if v:
                live['metadata'][key] = copy.deepcopy(v)
            else:
                live['metadata'].pop(key, None)
            changed = True
    return changed


def _precondition(resource, live, new):
    """Optimistic concurrency of update and patch: a result carrying a resourceVersion applies only
    to that version of the object, else 409; without one the update is unconditional (pods and
    namespaces allow unconditional updates upstream). Checked before validation, as upstream."""
    md = new.get('metadata') if isinstance(new, dict) else None
    rv = md.get('resourceVersion') if isinstance(md, dict) else None
    if rv and str(rv) != live['metadata'].get('resourceVersion'):
        raise apierrors.conflict(resource, live['metadata']['name'])


def namespaces(sim, req, name):
    if not name:
        if req.method == 'GET':
            return list_or_watch(sim, req, 'namespaces', None)
        if req.method == 'POST':
            return create_namespace(sim, req, req.json_body())
        raise apierrors.method_not_allowed()
    return namespace(sim, req, name)


def create_namespace(sim, req, body):
    md = body.get('metadata') or {}
    nm = md.get('name', '')
    if not nm or not validation.DNS1123_LABEL.match(nm):
        raise apierrors.invalid('Namespace', nm, [validation.invalid('metadata.name', nm, validation.LABEL_MSG)]
                                if nm else [validation.required('metadata.name')])
    obj = {'metadata': {'name': nm, 'labels': dict(md.get('labels') or {}, **{
        'kubernetes.io/metadata.name': nm})}, 'spec': {'finalizers': ['kubernetes']},
        'status': {'phase': 'Active'}}
    if md.get('annotations'):
        obj['metadata']['annotations'] = md['annotations']
    try:
        sim.store.add('namespaces', obj)
    except KeyError:
        raise apierrors.already_exists('namespaces', nm)
    return req.send_json(201, _with_kind(sim.snapshot(obj), 'Namespace'))


def namespace(sim, req, name):
    st = sim.store
    if req.method == 'PATCH' and _is_apply(req) and st.snapshot('namespaces', '', name) is None:
        body = req.json_body()
        body.setdefault('metadata', {}).setdefault('name', name)
        return create_namespace(sim, req, body)  # server-side apply creates what is missing
    with sim.lock:
        obj = st.get('namespaces', '', name)
        if obj is None:
            raise apierrors.not_found('namespaces', name)
        if req.method == 'GET':
            if req.wants_table():
                return req.send_json(200, table('namespaces', [copy.deepcopy(obj)], st.current_rv()))
            return req.send_json(200, _with_kind(copy.deepcopy(obj), 'Namespace'))
        if req.method in ('PATCH', 'PUT'):
            cur = _with_kind(copy.deepcopy(obj), 'Namespace')
            new = patch_mod.apply(cur, req.json_body(), req.header('Content-Type')) \
                if req.method == 'PATCH' else req.json_body()
            _precondition('namespaces', obj, new)
            md = new.get('metadata') or {}
            md.setdefault('labels', {})['kubernetes.io/metadata.name'] = name
            if _meta_update(obj, md):
                st.modified('namespaces', obj)
            return req.send_json(200, _with_kind(copy.deepcopy(obj), 'Namespace'))
        if req.method == 'DELETE':
            if obj['status'].get('phase') != 'Terminating':
                sim.delete_namespace(obj)
            return req.send_json(200, _with_kind(copy.deepcopy(obj), 'Namespace'))
    raise apierrors.method_not_allowed()


# -- pods -----------------------------------------------------------------------------------
def default_pod_spec(spec):
    """The defaults the API server gives a pod spec, a pod's or a pod template's."""
    for c in (spec.get('containers') or []) + (spec.get('initContainers') or []):
        validation.default_container(c)
        c.setdefault('resources', {})
    for k, v in (('restartPolicy', 'Always'), ('terminationGracePeriodSeconds', 30), ('dnsPolicy', 'ClusterFirst'),
                 ('securityContext', {}), ('schedulerName', 'default-scheduler'), ('enableServiceLinks', True)):
        spec.setdefault(k, v)


def _default_pod(pod):
    spec = pod.setdefault('spec', {})
    default_pod_spec(spec)
    spec.setdefault('preemptionPolicy', 'PreemptLowerPriority')
    spec.setdefault('priority', 0)
    spec.setdefault('serviceAccountName', 'default')
    spec.setdefault('serviceAccount', spec['serviceAccountName'])
    pod['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}
    return pod


def new_object(body, kind, ns):
    """body made a new kind object of namespace ns (the request's): its kind and namespace checked,
    a name made from generateName, what the server sets dropped. Returns its metadata; APIError."""
    if body.get('kind') not in (None, kind):
        raise apierrors.bad_request('the API version in the data (%s) does not match the expected kind %s'
                                    % (body.get('kind'), kind))
    md = body.setdefault('metadata', {})
    if md.get('namespace') and md['namespace'] != ns:
        raise apierrors.bad_request('the namespace of the provided object does not match the '
                                    'namespace sent on the request')
    if not md.get('name') and md.get('generateName'):
        md['name'] = md['generateName'] + random_suffix()
    for k in ('uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp',
              'deletionGracePeriodSeconds', 'generation', 'managedFields', 'selfLink'):
        md.pop(k, None)
    body.pop('kind', None)
    body.pop('apiVersion', None)
    md['namespace'] = ns
    return md


def creatable_namespace(sim, resource, name, ns):
    """The namespace ns, if a new object (resource, name) may go into it; NotFound, or Forbidden while
    it terminates. Under sim.lock."""
    nso = sim.store.get('namespaces', '', ns)
    if nso is None:
        raise apierrors.not_found('namespaces', ns)
    if nso['status'].get('phase') == 'Terminating':
        raise apierrors.forbidden(resource, name, 'unable to create new content in namespace %s because it is '
                                  'being terminated' % ns)
    return nso


def pods_collection(sim, req, ns):
    if req.method == 'GET':
        return list_or_watch(sim, req, 'pods', ns)
    if req.method == 'POST' and ns:
        return create_pod(sim, req, ns)
    raise apierrors.method_not_allowed()


def _is_apply(req):
    return (req.header('Content-Type') or '').startswith('application/apply-patch')


SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # utilrand's: no vowels, no look-alikes


def random_suffix():
    """The five characters generateName appends (utilrand.String)."""
    return ''.join(random.choice(SAFE_ALPHABET) for _ in range(5))


def create_pod(sim, req, ns, body=None):
    body = req.json_body() if body is None else body
    pod = add_pod(sim, ns, body, 'All' in req.qall('dryRun'))
    return req.send_json(201, _with_kind(sim.snapshot(pod), 'Pod'))


def add_pod(sim, ns, body, dry_run=False):
    """Defaults, validates, admits, stores and starts a pod; returns the live pod. APIError
    otherwise. The controllers create their pods here too."""
    md = new_object(body, 'Pod', ns)
    pod = _default_pod(body)
    name = md.get('name', '')
    with sim.lock:
        nso = copy.deepcopy(creatable_namespace(sim, 'pods', name, ns))
    errs = validation.validate_pod_create(pod)
    if errs:
        raise apierrors.invalid('Pod', name, errs)
    admission.pod_security(nso, pod)
    if dry_run:
        return pod
    try:
        sim.store.add('pods', pod)
    except KeyError:
        raise apierrors.already_exists('pods', name)
    sim.start_pod(pod)
    return pod


def live_pod(sim, ns, name):
    pod = sim.store.get('pods', ns, name)
    if pod is None:
        raise apierrors.not_found('pods', name)
    return pod


def pod(sim, req, ns, name):
    if req.method == 'GET':
        with sim.lock:
            obj = copy.deepcopy(live_pod(sim, ns, name))
        if req.wants_table():
            return req.send_json(200, table('pods', [obj], obj['metadata']['resourceVersion']))
        return req.send_json(200, _with_kind(obj, 'Pod'))
    if req.method == 'DELETE':
        opts = {}
        if req.body():
            opts = req.json_body()
        grace = opts.get('gracePeriodSeconds')
        if req.q('gracePeriodSeconds') is not None:
            grace = int(req.q('gracePeriodSeconds'))
        with sim.lock:
            p = live_pod(sim, ns, name)
            if grace is None:
                grace = p['spec'].get('terminationGracePeriodSeconds', 30)
            sim.delete_pod(p, max(0, int(grace)))
            return req.send_json(200, _with_kind(copy.deepcopy(p), 'Pod'))
    if req.method in ('PATCH', 'PUT'):
        body = req.json_body()
        if req.method == 'PATCH' and _is_apply(req) and sim.store.snapshot('pods', ns, name) is None:
            body.setdefault('metadata', {}).setdefault('name', name)
            return create_pod(sim, req, ns, body)  # server-side apply creates what is missing
        with sim.lock:
            p = live_pod(sim, ns, name)
            cur = _with_kind(copy.deepcopy(p), 'Pod')
            new = patch_mod.apply(cur, body, req.header('Content-Type')) if req.method == 'PATCH' else body
            _precondition('pods', p, new)
            if _meta_update(p, new.get('metadata') or {}):
                sim.store.modified('pods', p)
            return req.send_json(200, _with_kind(copy.deepcopy(p), 'Pod'))
    raise apierrors.method_not_allowed()


def pod_status(sim, req, ns, name):
    """PATCH/PUT pods/status: only the conditions of the pod's readiness gates are taken (the rest
    of the status is the kubelet's, here the runtime's)."""
    body = req.json_body()
    with sim.lock:
        p = live_pod(sim, ns, name)
        new = patch_mod.apply(_with_kind(copy.deepcopy(p), 'Pod'), body, req.header('Content-Type')) \
            if req.method == 'PATCH' else body
        _precondition('pods', p, new)
        gates = {g.get('conditionType') for g in p['spec'].get('readinessGates') or []}
        conds = [copy.deepcopy(c) for c in (new.get('status') or {}).get('conditions') or []
                 if isinstance(c, dict) and c.get('type') in gates]
    sim.runtime.set_gate_conditions(p, conds)
    with sim.lock:
        return req.send_json(200, _with_kind(copy.deepcopy(p), 'Pod'))


def ephemeral_containers(sim, req, ns, name):
    if req.method == 'GET':
        with sim.lock:
            return req.send_json(200, _with_kind(copy.deepcopy(live_pod(sim, ns, name)), 'Pod'))
    if req.method not in ('PUT', 'PATCH'):
        raise apierrors.method_not_allowed()
    body = req.json_body()
    if req.method == 'PUT':
        bname = (body.get('metadata') or {}).get('name')
        if bname and bname != name:
            raise apierrors.bad_request('the name of the object (%s) does not match the name on the '
                                        'URL (%s)' % (bname, name))
    with sim.lock:  # one critical section: the resourceVersion checked is the one updated
        p = live_pod(sim, ns, name)
        new = patch_mod.apply(_with_kind(copy.deepcopy(p), 'Pod'), body, req.header('Content-Type')) \
            if req.method == 'PATCH' else body
        _precondition('pods', p, new)
        nso = copy.deepcopy(sim.store.get('namespaces', '', ns))
        new_ecs = (new.get('spec') or {}).get('ephemeralContainers') or []
        if isinstance(new_ecs, list):
            for ec in new_ecs:
                if isinstance(ec, dict):
                    validation.default_container(ec)
        errs = validation.validate_ephemeral_update(p, new_ecs)
        if errs:
            raise apierrors.invalid('Pod', name, errs)
        old_names = {ec['name'] for ec in p['spec'].get('ephemeralContainers') or []}
        added = [copy.deepcopy(ec) for ec in new_ecs if ec['name'] not in old_names]
        candidate = copy.deepcopy(p)
        candidate['spec']['ephemeralContainers'] = (p['spec'].get('ephemeralContainers') or []) + added
        admission.pod_security(nso, candidate)
        if added:
            p['spec'].setdefault('ephemeralContainers', []).extend(added)
            sim.store.modified('pods', p)
        live_added = p['spec'].get('ephemeralContainers', [])[len(old_names):]
    for ec in live_added:
        sim.runtime.add_ephemeral_container(p, ec)
    with sim.lock:
        return req.send_json(200, _with_kind(copy.deepcopy(p), 'Pod'))
