"""Authentication (bearer tokens), RBAC-style authorization and Pod Security Admission, with the
messages a real API server returns."""
import json

import apierrors

# The capabilities the baseline profile allows to be added (Kubernetes' default set).
BASELINE_CAPS = {'AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD',
                 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'}
LEVELS = ('privileged', 'baseline', 'restricted')


class Users:
    """users.json: {"users": [{"name": "alice", "token": "t", "rules": [{"verbs": [...],
    "resources": ["pods", "pods/log"], "namespaces": ["default"]}]}]}. A rule without
    "namespaces" (or with "*") applies everywhere; "*" matches any verb or resource."""

    def __init__(self, users):
        self.by_token = {u['token']: u for u in users}

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f)['users'])

    def authenticate(self, auth_header):
        if not auth_header or not auth_header.lower().startswith('bearer '):
            raise apierrors.unauthorized()
        u = self.by_token.get(auth_header[7:].strip())
        if u is None:
            raise apierrors.unauthorized()
        return u

    @staticmethod
    def allows(user, verb, resource, namespace):
        """Whether a rule of user grants verb on resource ("pods/portforward") in namespace."""
        for r in user.get('rules', []):
            verbs, res = r.get('verbs', []), r.get('resources', [])
            nss = r.get('namespaces')
            if ('*' in verbs or verb in verbs) and ('*' in res or resource in res) and \
                    (not nss or '*' in nss or (namespace and namespace in nss)):
                return True
        return False

    @classmethod
    def authorize(cls, user, verb, resource, namespace, name, group=''):
        """Raises 403 shaped like the RBAC authorizer's denial."""
        if cls.allows(user, verb, resource, namespace):
            return
        base = resource.split('/')[0]
        scope = 'in the namespace "%s"' % namespace if namespace else 'at the cluster scope'
        msg = 'User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            user['name'], verb, resource, group, scope)
        raise apierrors.forbidden(base, name, msg)


def _quote_list(items):
    return ', '.join('"%s"' % i for i in items)


def _containers(spec):
    for key in ('initContainers', 'containers', 'ephemeralContainers'):
        for c in spec.get(key) or []:
            yield c


def _plural(names, what):
    return '%s %s' % ('container' if len(names) == 1 else 'containers', _quote_list(names)) + what


def _check(spec, level):
    """List of (check id, reason, detail) violations of the Pod Security Standards (the checks
    that matter for debug containers)."""
    out = []
    psc = spec.get('securityContext') or {}
    # baseline
    caps_bad, caps = [], set()
    priv = []
    for c in _containers(spec):
        sc = c.get('securityContext') or {}
        add = ((sc.get('capabilities') or {}).get('add')) or []
        bad = [a for a in add if a not in BASELINE_CAPS]
        if bad and level == 'baseline':
            caps_bad.append(c['name'])
            caps.update(bad)
        if sc.get('privileged'):
            priv.append(c['name'])
    if caps_bad:
        out.append(('capabilities_baseline', 'non-default capabilities',
                    _plural(caps_bad, ' must not include %s in securityContext.capabilities.add' %
                            _quote_list(sorted(caps)))))
    hostns = [k + '=true' for k in ('hostNetwork', 'hostPID', 'hostIPC') if spec.get(k)]
    if hostns:
        out.append(('hostNamespaces', 'host namespaces', ', '.join(hostns)))
    if priv:
        out.append(('privileged', 'privileged',
                    _plural(priv, ' must not set securityContext.privileged=true')))
    if level != 'restricted':
        return out
    # restricted
    ape, capr_drop, capr_add, capr_caps, nonroot, seccomp = [], [], [], set(), [], []
    for c in _containers(spec):
        sc = c.get('securityContext') or {}
        if sc.get('allowPrivilegeEscalation') is not False:
            ape.append(c['name'])
        capsd = sc.get('capabilities') or {}
        if 'ALL' not in (capsd.get('drop') or []):
            capr_drop.append(c['name'])
        bad = [a for a in capsd.get('add') or [] if a != 'NET_BIND_SERVICE']
        if bad:
            capr_add.append(c['name'])
            capr_caps.update(bad)
        if sc.get('runAsNonRoot', psc.get('runAsNonRoot')) is not True:
            nonroot.append(c['name'])
        st = (sc.get('seccompProfile') or psc.get('seccompProfile') or {}).get('type')
        if st not in ('RuntimeDefault', 'Localhost'):
            seccomp.append(c['name'])
    if ape:
        out.append(('allowPrivilegeEscalation', 'allowPrivilegeEscalation != false',
                    _plural(ape, ' must set securityContext.allowPrivilegeEscalation=false')))
    details = []
    if capr_drop:
        details.append(_plural(capr_drop, ' must set securityContext.capabilities.drop=["ALL"]'))
    if capr_add:
        details.append(_plural(capr_add, ' must not include %s in securityContext.capabilities.add' %
                               _quote_list(sorted(capr_caps))))
    if details:
        out.append(('capabilities_restricted', 'unrestricted capabilities', '; '.join(details)))
    if nonroot:
        out.append(('runAsNonRoot', 'runAsNonRoot != true',
                    'pod or ' + _plural(nonroot, ' must set securityContext.runAsNonRoot=true')))
    if seccomp:
        out.append(('seccompProfile_restricted', 'seccompProfile',
                    'pod or ' + _plural(seccomp, ' must set securityContext.seccompProfile.type to '
                                        '"RuntimeDefault" or "Localhost"')))
    return out


def pod_security(namespace_obj, pod):
    """Raises 403 when the namespace enforces a level the pod violates."""
    labels = (namespace_obj or {}).get('metadata', {}).get('labels') or {}
    level = labels.get('pod-security.kubernetes.io/enforce', 'privileged')
    if level not in ('baseline', 'restricted'):
        return
    version = labels.get('pod-security.kubernetes.io/enforce-version', 'latest')
    viol = sorted(_check(pod.get('spec') or {}, level))
    if viol:
        msg = 'violates PodSecurity "%s:%s": %s' % (
            level, version, ', '.join('%s (%s)' % (r, d) for _, r, d in viol))
        raise apierrors.forbidden('pods', pod['metadata']['name'], msg)


def access_review(req):
    """POST selfsubjectaccessreviews (`kubectl auth can-i`): the review with its status, as the RBAC
    authorizer fills it (a denial has no reason; kubectl prints "no")."""
    review = req.json_body()
    attrs = (review.get('spec') or {}).get('resourceAttributes')
    if not attrs:
        raise apierrors.bad_request('SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec: Invalid value: '
                                    '"": exactly one of nonResourceAttributes or resourceAttributes must be specified')
    resource = attrs.get('resource', '') + ('/' + attrs['subresource'] if attrs.get('subresource') else '')
    allowed = Users.allows(req.user, attrs.get('verb', ''), resource, attrs.get('namespace', ''))
    status = {'allowed': allowed}
    if allowed:
        status['reason'] = 'kubesim: allowed by a rule of user "%s"' % req.user['name']
    req.send_json(201, {'kind': 'SelfSubjectAccessReview', 'apiVersion': 'authorization.k8s.io/v1',
                        'metadata': {'creationTimestamp': None}, 'spec': review.get('spec'), 'status': status})
