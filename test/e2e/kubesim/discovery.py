"""Discovery documents (/api, /apis, /api/v1, /apis/apps/v1, /version), plain and aggregated, and
the OpenAPI stubs kubectl's validation reads."""


def version():
    return {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-kubesim', 'gitCommit': 'kubesim',
            'gitTreeState': 'clean', 'buildDate': '2026-11-25T00:00:00Z', 'goVersion': 'go1.23',
            'compiler': 'gc', 'platform': 'linux/amd64'}


def api(req):
    v = req.h.sim.aggregated_discovery and aggregated_version(req.header('Accept'))
    if v:
        return req.send_json(200, aggregated_core(v), aggregated_ctype(v))
    host = req.header('Host') or '127.0.0.1'
    req.send_json(200, {'kind': 'APIVersions', 'versions': ['v1'],
                        'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': host}]})


def apis(req):
    v = req.h.sim.aggregated_discovery and aggregated_version(req.header('Accept'))
    if v:
        return req.send_json(200, aggregated_groups(v), aggregated_ctype(v))
    req.send_json(200, {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': [apps_group()]})


def apps_group():
    gv = {'groupVersion': 'apps/v1', 'version': 'v1'}
    return {'kind': 'APIGroup', 'apiVersion': 'v1', 'name': 'apps', 'versions': [gv], 'preferredVersion': gv}


def _res(name, kind, namespaced, verbs, short=None, sub=False):
    r = {'name': name, 'singularName': '' if sub else kind.lower(), 'namespaced': namespaced,
         'kind': kind, 'verbs': verbs}
    if short:
        r['shortNames'] = short
    return r


CRUD = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']


def _scale(parent):
    """The scale subresource, served as autoscaling/v1 Scale (kubectl scale reads group and version)."""
    return dict(_res(parent + '/scale', 'Scale', True, ['get', 'patch', 'update'], sub=True),
                group='autoscaling', version='v1')


def apps_v1():
    res = []
    for name, kind, short in (('deployments', 'Deployment', 'deploy'), ('replicasets', 'ReplicaSet', 'rs'),
                              ('statefulsets', 'StatefulSet', 'sts')):
        res += [dict(_res(name, kind, True, CRUD, [short]), categories=['all']), _scale(name),
                _res(name + '/status', kind, True, ['get', 'patch', 'update'], sub=True)]
    return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': 'apps/v1', 'resources': res}


def core_v1():
    crud = CRUD
    return {'kind': 'APIResourceList', 'groupVersion': 'v1', 'resources': [
        _res('namespaces', 'Namespace', False, ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'], ['ns']),
        _res('events', 'Event', True, ['get', 'list', 'watch'], ['ev']),
        dict(_res('pods', 'Pod', True, crud, ['po']), categories=['all']),
        _res('pods/attach', 'PodAttachOptions', True, ['create', 'get'], sub=True),
        _res('pods/ephemeralcontainers', 'Pod', True, ['get', 'patch', 'update'], sub=True),
        _res('pods/exec', 'PodExecOptions', True, ['create', 'get'], sub=True),
        _res('pods/log', 'Pod', True, ['get'], sub=True),
        _res('pods/portforward', 'PodPortForwardOptions', True, ['create', 'get'], sub=True),
        _res('pods/status', 'Pod', True, ['get', 'patch', 'update'], sub=True),
        dict(_res('services', 'Service', True, ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
                  ['svc']), categories=['all']),
        _res('services/status', 'Service', True, ['get', 'patch', 'update'], sub=True),
    ]}


# (group, kind, collection path, item path) of what kubectl creates, patches and replaces
OPENAPI_KINDS = [('', 'Namespace', '/api/v1/namespaces', '/api/v1/namespaces/{name}')] + [
    (g, k, '/%s/namespaces/{namespace}/%s' % (p, r), '/%s/namespaces/{namespace}/%s/{name}' % (p, r))
    for g, k, p, r in (('', 'Pod', 'api/v1', 'pods'), ('', 'Service', 'api/v1', 'services'),
                       ('apps', 'Deployment', 'apis/apps/v1', 'deployments'),
                       ('apps', 'ReplicaSet', 'apis/apps/v1', 'replicasets'),
                       ('apps', 'StatefulSet', 'apis/apps/v1', 'statefulsets'))]


def openapi_v3_root():
    return {'paths': {'api/v1': {'serverRelativeURL': '/openapi/v3/api/v1?hash=kubesim1'},
                      'apis/apps/v1': {'serverRelativeURL': '/openapi/v3/apis/apps/v1?hash=kubesim1'}}}


def openapi_v3_doc(group):
    """Just enough OpenAPI v3 for kubectl to see that PATCH/POST/PUT of the group's kinds take
    the fieldValidation query parameter, so it leaves validation to the server."""
    def op(kind):
        return {'parameters': [{'name': 'fieldValidation', 'in': 'query', 'schema': {'type': 'string'}},
                               {'name': 'fieldManager', 'in': 'query', 'schema': {'type': 'string'}},
                               {'name': 'dryRun', 'in': 'query', 'schema': {'type': 'string'}}],
                'x-kubernetes-group-version-kind': {'group': group, 'version': 'v1', 'kind': kind},
                'responses': {'200': {'description': 'OK'}}}
    paths = {}
    for g, kind, coll, item in OPENAPI_KINDS:
        if g == group:
            paths[coll] = {'post': op(kind)}
            paths[item] = {'patch': op(kind), 'put': op(kind)}
    return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': 'v1.32.0'}, 'paths': paths,
            'components': {'schemas': {}}}


# -- OpenAPI v2 (kubectl 1.27 fetches it as protobuf, gnostic's openapi.v2.Document) ------------
OPENAPI_V2_TYPE = 'application/octet-stream'  # what kube-openapi answers for the protobuf form


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _f(num, payload):
    """A length-delimited protobuf field."""
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def openapi_v2_proto():
    """Document{swagger, info, paths} whose PATCH/PUT/POST operations of OPENAPI_KINDS carry the
    fieldValidation query parameter and the x-kubernetes-group-version-kind extension: what kubectl
    looks for to leave validation to the server."""
    def query_param(name):
        # ParametersItem.parameter → Parameter.non_body_parameter → NonBodyParameter.query_parameter_sub_schema
        q = _f(2, 'query') + _f(4, name) + _f(6, 'string')
        return _f(8, _f(1, _f(2, _f(3, q))))

    def operation(group, kind):
        gvk = 'group: "%s"\nkind: %s\nversion: v1\n' % (group, kind)
        ext = _f(13, _f(1, 'x-kubernetes-group-version-kind') + _f(2, _f(2, gvk)))
        return b''.join(query_param(n) for n in ('fieldValidation', 'fieldManager', 'dryRun')) + ext

    paths = b''
    for group, kind, coll, item in OPENAPI_KINDS:
        paths += _f(2, _f(1, coll) + _f(2, _f(4, operation(group, kind))))
        paths += _f(2, _f(1, item) + _f(2, _f(3, operation(group, kind)) + _f(8, operation(group, kind))))
    return _f(1, '2.0') + _f(2, _f(1, 'Kubernetes') + _f(2, 'v1.32.0')) + _f(8, paths)


# -- aggregated discovery (apidiscovery.k8s.io v2 / v2beta1) -----------------------------------
def aggregated_version(accept):
    """'v2' or 'v2beta1' when the client asks for the aggregated form, else None."""
    for part in (accept or '').split(','):
        if 'as=APIGroupDiscoveryList' in part and 'g=apidiscovery.k8s.io' in part:
            for v in ('v2', 'v2beta1'):
                if 'v=%s;' % v in part + ';':
                    return v
    return None


def _aggregated_group(name, resource_list):
    """One APIGroupDiscovery of an APIResourceList: subresources folded into their resource."""
    subs, resources = [], []
    for r in resource_list['resources']:
        if '/' in r['name']:
            parent, sub = r['name'].split('/')
            kind = {'group': r.get('group', name), 'version': r.get('version', 'v1'), 'kind': r['kind']}
            subs.append((parent, {'subresource': sub, 'verbs': r['verbs'], 'responseKind': kind}))
    for r in resource_list['resources']:
        if '/' in r['name']:
            continue
        d = {'resource': r['name'], 'responseKind': {'group': name, 'version': 'v1', 'kind': r['kind']},
             'scope': 'Namespaced' if r['namespaced'] else 'Cluster', 'singularResource': r['singularName'],
             'verbs': r['verbs']}
        if r.get('shortNames'):
            d['shortNames'] = r['shortNames']
        if r.get('categories'):
            d['categories'] = r['categories']
        s = [x for p, x in subs if p == r['name']]
        if s:
            d['subresources'] = s
        resources.append(d)
    md = {'creationTimestamp': None}
    if name:
        md['name'] = name
    return {'metadata': md, 'versions': [{'version': 'v1', 'resources': resources, 'freshness': 'Current'}]}


def aggregated_core(version):
    return {'kind': 'APIGroupDiscoveryList', 'apiVersion': 'apidiscovery.k8s.io/' + version, 'metadata': {},
            'items': [_aggregated_group('', core_v1())]}


def aggregated_groups(version):
    return {'kind': 'APIGroupDiscoveryList', 'apiVersion': 'apidiscovery.k8s.io/' + version, 'metadata': {},
            'items': [_aggregated_group('apps', apps_v1())]}


def aggregated_ctype(version):
    return 'application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList' % version
