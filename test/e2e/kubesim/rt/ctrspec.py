"""What a container process runs with, from its spec and image as containerd and the kubelet make
it: argv (command/args over entrypoint/cmd) and environment with $(VAR) expansion and fieldRefs
(capabilities: rt/caps.py)."""
from rt import sandbox

DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


def expand_vars(s, env):
    """Kubernetes $(VAR) expansion: defined names are replaced, $$ escapes, the rest stays."""
    out, i = [], 0
    while i < len(s):
        if s[i] == '$' and i + 1 < len(s):
            if s[i + 1] == '$':
                out.append('$')
                i += 2
                continue
            if s[i + 1] == '(':
                j = s.find(')', i + 2)
                if j > 0 and s[i + 2:j] in env:
                    out.append(env[s[i + 2:j]])
                    i = j + 1
                    continue
        out.append(s[i])
        i += 1
    return ''.join(out)


def _field_ref(p, path):
    md, pspec = p.pod['metadata'], p.pod.get('spec') or {}
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        kind, _, rest = path[9:].partition("['")
        return (md.get(kind) or {}).get(rest.rstrip("']"), '')
    return {'metadata.name': p.name, 'metadata.namespace': p.ns, 'metadata.uid': p.uid,
            'spec.nodeName': sandbox.NODE_NAME,
            'spec.serviceAccountName': pspec.get('serviceAccountName', 'default'),
            'status.podIP': p.ip or '', 'status.hostIP': sandbox.GATEWAY,
            'status.podIPs': p.ip or '', 'status.hostIPs': sandbox.GATEWAY}.get(path, '')


def environment(p, cspec, img):
    """(['K=V', ...], {name: value of the spec's env}) of a container of pod p."""
    env = {}
    for e in img.get('env') or []:
        k, _, v = e.partition('=')
        env[k] = v
    if 'PATH' not in env:
        env['PATH'] = DEFAULT_PATH
    env['HOSTNAME'] = ((p.pod.get('spec') or {}).get('hostname') or p.name)[:63]
    defined = {}
    for e in cspec.get('env') or []:
        name = e.get('name')
        if not name:
            continue
        if 'value' in e:
            v = expand_vars(str(e.get('value') or ''), defined)
        elif (e.get('valueFrom') or {}).get('fieldRef'):
            v = _field_ref(p, e['valueFrom']['fieldRef'].get('fieldPath', ''))
        else:
            v = ''  # configMap/secret references: no such objects in kubesim
        defined[name] = v
        env[name] = v
    return ['%s=%s' % kv for kv in env.items()], defined


def argv(cspec, img, defined):
    """command + args, or the image's entrypoint + (args or its cmd); $(VAR) expanded in the spec's."""
    cmd, args = cspec.get('command'), cspec.get('args')
    if cmd:
        return [expand_vars(x, defined) for x in cmd] + [expand_vars(x, defined) for x in (args or [])]
    return list(img.get('entrypoint') or []) + (
        [expand_vars(x, defined) for x in args] if args is not None else list(img.get('cmd') or []))
