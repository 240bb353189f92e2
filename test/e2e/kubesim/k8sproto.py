"""The little of Kubernetes' protobuf encoding kubectl uses towards us: typed clients (e.g.
`kubectl create namespace`) POST application/vnd.kubernetes.protobuf bodies. Decodes the
'k8s\\0' + runtime.Unknown envelope and the ObjectMeta fields that matter (name, generateName,
namespace, labels, annotations) into the JSON shape the rest of the server uses."""

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


def object_meta(b):
    md = {}
    names = {1: 'name', 2: 'generateName', 3: 'namespace'}
    for num, wt, v in fields(b):
        if num in names and wt == 2:
            md[names[num]] = v.decode()
        elif num in (11, 12) and wt == 2:
            k, val = _map_entry(v)
            md.setdefault('labels' if num == 11 else 'annotations', {})[k] = val
    return md


def decode(body):
    """→ (kind, object dict with metadata only)."""
    if not body.startswith(MAGIC):
        raise DecodeError('missing k8s protobuf magic')
    kind, raw = '', b''
    for num, _, v in fields(body[4:]):
        if num == 1:
            for n2, _, v2 in fields(v):
                if n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = v
    obj = {'kind': kind, 'apiVersion': 'v1', 'metadata': {}}
    for num, _, v in fields(raw):
        if num == 1:
            obj['metadata'] = object_meta(v)
    return kind, obj
