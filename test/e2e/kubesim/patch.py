"""The three patch flavours kubectl sends: JSON merge patch (RFC 7386), strategic merge patch
(lists of named things merge by their key), and JSON patch (RFC 6902, the common operations)."""
import copy

from apierrors import APIError

# Strategic merge keys of the Pod fields kubectl patches.
MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name',
    'env': 'name', 'volumes': 'name', 'volumeMounts': 'mountPath', 'ports': 'containerPort',
    'conditions': 'type', 'imagePullSecrets': 'name', 'tolerations': None,
}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(target, patch, field=None):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        p = {k: v for k, v in patch.items() if k != '$patch'}
        return copy.deepcopy(p)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith('$'):
            continue  # $setElementOrder/…, $retainKeys, …: ordering hints only
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and MERGE_KEYS.get(k) and isinstance(out.get(k), list):
            out[k] = _merge_list(out[k], v, MERGE_KEYS[k])
        elif isinstance(v, dict):
            out[k] = strategic_merge(out.get(k), v, k)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_list(cur, patch, key):
    out = [copy.deepcopy(x) for x in cur]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get('$patch') == 'delete':
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append({k: v for k, v in copy.deepcopy(item).items() if not k.startswith('$')})
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def _ptr(path):
    if path == '':
        return []
    if not path.startswith('/'):
        raise APIError(422, 'Invalid', 'invalid JSON pointer %r' % path)
    return [p.replace('~1', '/').replace('~0', '~') for p in path[1:].split('/')]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _ptr(op.get('path', ''))
        name = op.get('op')
        if name == 'test':
            continue
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1] if parts else None
        if name in ('add', 'replace'):
            val = copy.deepcopy(op.get('value'))
            if isinstance(parent, list):
                if last == '-':
                    parent.append(val)
                elif name == 'add':
                    parent.insert(int(last), val)
                else:
                    parent[int(last)] = val
            else:
                parent[last] = val
        elif name == 'remove':
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise APIError(422, 'Invalid', 'unsupported JSON patch operation %r' % name)
    return doc


def apply(doc, body, content_type):
    ct = (content_type or '').split(';')[0].strip()
    try:
        if ct == 'application/merge-patch+json':
            return merge_patch(doc, body)
        if ct == 'application/strategic-merge-patch+json':
            return strategic_merge(doc, body)
        if ct == 'application/json-patch+json':
            return json_patch(doc, body)
        if ct == 'application/apply-patch+yaml':
            return strategic_merge(doc, body)  # kubectl sends JSON here; good enough for pods
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise APIError(422, 'Invalid', 'the patch could not be applied: %s' % e)
    raise APIError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                   'accepted media types include: application/json-patch+json, '
                   'application/merge-patch+json, application/apply-patch+yaml, '
                   'application/strategic-merge-patch+json')
