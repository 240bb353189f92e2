"""The little of Kubernetes' protobuf encoding kubectl uses towards us: typed clients (`kubectl
create namespace`, `create deployment`, `create service`, `auth can-i`) POST application/vnd.kubernetes.protobuf
bodies. Decodes the 'k8s\\0' + runtime.Unknown envelope and the fields those commands fill (SCHEMA)
into the JSON shape the rest of the server uses."""

MAGIC = b'k8s\x00'
PROTOBUF = 'application/vnd.kubernetes.protobuf'


class DecodeError(ValueError):
    pass


def _varint(b, i):
    shift = n = 0
    while True:
        if i >= len(b):
            raise DecodeError('truncated varint')
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if not c & 0x80:
            return n, i
        shift += 7


def fields(b):
    """Yields (field number, wire type, value) of one message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise DecodeError('unsupported wire type %d' % wt)
        yield num, wt, v


def _map_entry(b):
    k = v = ''
    for num, _, val in fields(b):
        if num == 1:
            k = val.decode()
        elif num == 2:
            v = val.decode()
    return k, v


# message → {field number: (JSON name, type)}; a type is 'str', 'int', 'bool', 'map' (string to
# string), 'intstr' or a message, '[' in front when repeated. Fields not listed are dropped: these
# are the fields kubectl's typed clients fill (create namespace, deployment, service; auth can-i).
SCHEMA = {
    'ObjectMeta': {1: ('name', 'str'), 2: ('generateName', 'str'), 3: ('namespace', 'str'),
                   11: ('labels', 'map'), 12: ('annotations', 'map')},
    'Namespace': {1: ('metadata', 'ObjectMeta')},
    'Deployment': {1: ('metadata', 'ObjectMeta'), 2: ('spec', 'DeploymentSpec')},
    'DeploymentSpec': {1: ('replicas', 'int'), 2: ('selector', 'LabelSelector'), 3: ('template', 'PodTemplateSpec'),
                       5: ('minReadySeconds', 'int'), 6: ('revisionHistoryLimit', 'int'), 7: ('paused', 'bool'),
                       9: ('progressDeadlineSeconds', 'int')},
    'LabelSelector': {1: ('matchLabels', 'map'), 2: ('matchExpressions', '[LabelSelectorRequirement')},
    'LabelSelectorRequirement': {1: ('key', 'str'), 2: ('operator', 'str'), 3: ('values', '[str')},
    'PodTemplateSpec': {1: ('metadata', 'ObjectMeta'), 2: ('spec', 'PodSpec')},
    'PodSpec': {2: ('containers', '[Container'), 3: ('restartPolicy', 'str'),
                4: ('terminationGracePeriodSeconds', 'int')},
    'Container': {1: ('name', 'str'), 2: ('image', 'str'), 3: ('command', '[str'), 4: ('args', '[str'),
                  5: ('workingDir', 'str'), 6: ('ports', '[ContainerPort'), 7: ('env', '[EnvVar'),
                  14: ('imagePullPolicy', 'str')},
    'ContainerPort': {1: ('name', 'str'), 3: ('containerPort', 'int'), 4: ('protocol', 'str')},
    'EnvVar': {1: ('name', 'str'), 2: ('value', 'str')},
    'Service': {1: ('metadata', 'ObjectMeta'), 2: ('spec', 'ServiceSpec')},
    'ServiceSpec': {1: ('ports', '[ServicePort'), 2: ('selector', 'map'), 3: ('clusterIP', 'str'), 4: ('type', 'str')},
    'ServicePort': {1: ('name', 'str'), 2: ('protocol', 'str'), 3: ('port', 'int'), 4: ('targetPort', 'intstr')},
    # kubectl auth can-i
    'SelfSubjectAccessReview': {1: ('metadata', 'ObjectMeta'), 2: ('spec', 'SelfSubjectAccessReviewSpec')},
    'SelfSubjectAccessReviewSpec': {1: ('resourceAttributes', 'ResourceAttributes')},
    'ResourceAttributes': {1: ('namespace', 'str'), 2: ('verb', 'str'), 3: ('group', 'str'), 4: ('version', 'str'),
                           5: ('resource', 'str'), 6: ('subresource', 'str'), 7: ('name', 'str')},
}


def _value(typ, wt, v):
    if typ == 'str':
        return v.decode()
    if typ == 'int':
        return v - (1 << 64) if v >= 1 << 63 else v
    if typ == 'bool':
        return bool(v)
    if typ == 'intstr':
        d = {n: val for n, _, val in fields(v)}
        return d.get(3, b'').decode() if d.get(1) == 1 else d.get(2, 0)
    return message(typ, v)


def message(name, b):
    """Decodes message `name` of SCHEMA into its JSON shape."""
    out = {}
    for num, wt, v in fields(b):
        if num not in SCHEMA[name]:
            continue
        key, typ = SCHEMA[name][num]
        if typ == 'map':
            k, val = _map_entry(v)
            out.setdefault(key, {})[k] = val
        elif typ.startswith('['):
            out.setdefault(key, []).append(_value(typ[1:], wt, v))
        elif typ not in ('str', 'bool') or v:  # Go writes empty strings and false; JSON omits them
            out[key] = _value(typ, wt, v)
    return out


def decode(body):
    """→ (kind, object dict); kind '' or without a schema: the object holds what the envelope says."""
    if not body.startswith(MAGIC):
        raise DecodeError('missing k8s protobuf magic')
    kind, api_version, raw = '', 'v1', b''
    for num, _, v in fields(body[4:]):
        if num == 1:
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    api_version = v2.decode()
                elif n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = v
    obj = {'kind': kind, 'apiVersion': api_version}
    if kind in SCHEMA:
        obj.update(message(kind, raw))
    obj.setdefault('metadata', {})
    return kind, obj
