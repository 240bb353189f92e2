"""Validation of pods and of updates to spec.ephemeralContainers, with the field paths and
messages of k8s.io/kubernetes/pkg/apis/core/validation. Each error is (reason, field, body)."""
import json
import re

DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
DNS1123_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
             "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
             "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                 "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                 "'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")

# EphemeralContainerCommon fields an ephemeral container may set; the rest are forbidden.
EC_ALLOWED = {'name', 'image', 'command', 'args', 'workingDir', 'env', 'envFrom', 'volumeMounts',
              'volumeDevices', 'terminationMessagePath', 'terminationMessagePolicy',
              'imagePullPolicy', 'securityContext', 'stdin', 'stdinOnce', 'tty',
              'targetContainerName'}
EC_FORBIDDEN_ORDER = ['ports', 'resources', 'resizePolicy', 'restartPolicy', 'lifecycle',
                      'livenessProbe', 'readinessProbe', 'startupProbe']


def _quote(v):
    return json.dumps(v) if isinstance(v, str) else str(v)


def required(field):
    return ('FieldValueRequired', field, 'Required value')


def invalid(field, value, detail):
    return ('FieldValueInvalid', field, 'Invalid value: %s: %s' % (_quote(value), detail))


def duplicate(field, value):
    return ('FieldValueDuplicate', field, 'Duplicate value: %s' % _quote(value))


def not_found(field, value):
    return ('FieldValueNotFound', field, 'Not found: %s' % _quote(value))


def forbidden(field, detail):
    return ('FieldValueForbidden', field, 'Forbidden: %s' % detail)


def default_container(c):
    """The defaults the API server fills into every container (so PUT round-trips compare equal)."""
    img = c.get('image', '')
    tag_latest = ':' not in img.rsplit('/', 1)[-1] or img.endswith(':latest')
    c.setdefault('imagePullPolicy', 'Always' if tag_latest and '@' not in img else 'IfNotPresent')
    c.setdefault('terminationMessagePath', '/dev/termination-log')
    c.setdefault('terminationMessagePolicy', 'File')
    if 'resources' not in c and 'targetContainerName' not in c and c.get('_ephemeral') is None:
        pass
    return c


def _validate_container_common(c, path, seen, errs):
    name = c.get('name', '')
    if not name:
        errs.append(required(path + '.name'))
    elif not DNS1123_LABEL.match(name) or len(name) > 63:
        errs.append(invalid(path + '.name', name, LABEL_MSG))
    elif name in seen:
        errs.append(duplicate(path + '.name', name))
    if name:
        seen.add(name)
    if not c.get('image', '').strip():
        errs.append(required(path + '.image'))
    pol = c.get('imagePullPolicy')
    if pol not in (None, 'Always', 'IfNotPresent', 'Never'):
        errs.append(('FieldValueNotSupported', path + '.imagePullPolicy',
                     'Unsupported value: %s: supported values: "Always", "IfNotPresent", "Never"' % _quote(pol)))


def validate_pod_create(pod):
    errs = []
    md = pod.get('metadata') or {}
    name = md.get('name', '')
    if not name:
        errs.append(('FieldValueRequired', 'metadata.name', 'Required value: name or generateName is required'))
    elif not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        errs.append(invalid('metadata.name', name, SUBDOMAIN_MSG))
    spec = pod.get('spec') or {}
    containers = spec.get('containers') or []
    if not containers:
        errs.append(required('spec.containers'))
    seen = set()
    for i, c in enumerate(spec.get('initContainers') or []):
        _validate_container_common(c, 'spec.initContainers[%d]' % i, seen, errs)
    for i, c in enumerate(containers):
        _validate_container_common(c, 'spec.containers[%d]' % i, seen, errs)
    rp = spec.get('restartPolicy', 'Always')
    if rp not in ('Always', 'OnFailure', 'Never'):
        errs.append(('FieldValueNotSupported', 'spec.restartPolicy',
                     'Unsupported value: %s: supported values: "Always", "OnFailure", "Never"' % _quote(rp)))
    if spec.get('ephemeralContainers'):
        errs.append(forbidden('spec.ephemeralContainers', 'cannot be set on create'))
    return errs


def _diff(old, new):
    lines = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            if k in old:
                lines.append('-\t%s: %s' % (k, json.dumps(old[k])))
            if k in new:
                lines.append('+\t%s: %s' % (k, json.dumps(new[k])))
    return '  core.EphemeralContainer{\n' + '\n'.join(lines) + '\n  }\n'


def validate_ephemeral_update(pod, new_ecs):
    """pod: the current pod; new_ecs: the requested spec.ephemeralContainers (defaulted)."""
    errs = []
    spec = pod.get('spec') or {}
    old_ecs = spec.get('ephemeralContainers') or []
    path = 'spec.ephemeralContainers'
    if not isinstance(new_ecs, list):
        return [invalid(path, '', 'must be a list')]
    seen = {c.get('name') for c in (spec.get('containers') or []) + (spec.get('initContainers') or [])}
    targets = {c.get('name') for c in spec.get('containers') or []} | \
        {c.get('name') for c in spec.get('initContainers') or []}
    for i, ec in enumerate(new_ecs):
        p = '%s[%d]' % (path, i)
        if not isinstance(ec, dict):
            errs.append(invalid(p, ec, 'must be an object'))
            continue
        _validate_container_common(ec, p, seen, errs)
        for f in EC_FORBIDDEN_ORDER:
            if ec.get(f) not in (None, {}, []):
                errs.append(forbidden('%s.%s' % (p, f), 'cannot be set for an Ephemeral Container'))
        for f in sorted(set(ec) - EC_ALLOWED - set(EC_FORBIDDEN_ORDER)):
            errs.append(forbidden('%s.%s' % (p, f), 'cannot be set for an Ephemeral Container'))
        t = ec.get('targetContainerName')
        if t and t not in targets:
            errs.append(not_found('%s.targetContainerName' % p, t))
    by_name = {ec.get('name'): ec for ec in new_ecs if isinstance(ec, dict)}
    for old in old_ecs:
        new = by_name.get(old['name'])
        if new is None:
            errs.append(forbidden(path, 'existing ephemeral containers %s may not be removed\n' % _quote(old['name'])))
        elif new != old:
            errs.append(forbidden('%s[%s]' % (path, old['name']),
                                  'existing ephemeral containers %s may not be changed\n%s' % (
                                      _quote(old['name']), _diff(old, new))))
    return errs


def log_options(q):
    """Validates pods/log query options; returns (errors, parsed dict)."""
    errs, opts = [], {}

    def num(key):
        v = q.get(key)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise ValueError('%s: invalid value %r: must be an integer' % (key, v))
    opts['limitBytes'] = num('limitBytes')
    opts['tailLines'] = num('tailLines')
    opts['sinceSeconds'] = num('sinceSeconds')
    opts['sinceTime'] = q.get('sinceTime')
    if opts['limitBytes'] is not None and opts['limitBytes'] < 1:
        errs.append(invalid('limitBytes', opts['limitBytes'], 'must be greater than 0'))
    if opts['tailLines'] is not None and opts['tailLines'] < 0:
        errs.append(invalid('tailLines', opts['tailLines'], 'must be greater than or equal to 0'))
    if opts['sinceSeconds'] is not None and opts['sinceSeconds'] < 1:
        errs.append(invalid('sinceSeconds', opts['sinceSeconds'], 'must be greater than 0'))
    if opts['sinceSeconds'] is not None and opts['sinceTime']:
        errs.append(forbidden('', 'at most one of `sinceTime` or `sinceSeconds` may be specified'))
    return errs, opts
