"""Small helpers shared by the streaming subresources: container lookup with the API server's
error messages, and the time formats of logs."""
import datetime

import apierrors


def all_container_names(pod):
    spec = pod.get('spec') or {}
    return [c['name'] for key in ('initContainers', 'containers', 'ephemeralContainers')
            for c in spec.get(key) or []]


def resolve_container(pod, container):
    """The container named by the request, or the pod's only container; 400 otherwise."""
    name = pod['metadata']['name']
    spec = pod.get('spec') or {}
    if not container:
        cs = [c['name'] for c in spec.get('containers') or []]
        if len(cs) == 1:
            return cs[0]
        msg = 'a container name must be specified for pod %s, choose one of: [%s]' % (name, ' '.join(cs))
        inits = [c['name'] for c in spec.get('initContainers') or []]
        if inits:
            msg += ' or one of the init containers: [%s]' % ' '.join(inits)
        ecs = [c['name'] for c in spec.get('ephemeralContainers') or []]
        if ecs:
            msg += ' or one of the ephemeral containers: [%s]' % ' '.join(ecs)
        raise apierrors.bad_request(msg)
    if container not in all_container_names(pod):
        raise apierrors.bad_request('container %s is not valid for pod %s' % (container, name))
    return container


def container_status(pod, container):
    st = pod.get('status') or {}
    for key in ('initContainerStatuses', 'containerStatuses', 'ephemeralContainerStatuses'):
        for cs in st.get(key) or []:
            if cs.get('name') == container:
                return cs
    return None


def parse_time(ts):
    """RFC 3339 with optional fraction of up to nanoseconds → aware datetime (None if malformed)."""
    try:
        ts = ts.strip()
        if ts.endswith('Z'):
            ts = ts[:-1] + '+00:00'
        if '.' in ts:
            head, rest = ts.split('.', 1)
            i = 0
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac, tz = rest[:i], rest[i:]
            ts = head + '.' + (frac + '000000')[:6] + tz
        return datetime.datetime.fromisoformat(ts)
    except ValueError:
        return None
