"""The README's Role is exactly what kubectl diag needs: a user holding just that Role (its
YAML read from README.md) runs ps, redir, shell, exec and logs (no pods/exec); a user holding it minus any one verb
(watch: only a redir that follows -l) gets the error naming that verb and resource, and the `kubectl auth can-i` line to check it;
what a new debug container would need (its log, a port-forward) is asked before one is added, so none is."""
import os
import re

import pytest
import yaml

from conftest import DEMO, REPO, start_cluster, wait_for

TOKEN = 'rbac-%d-%%s-0123456789' % os.getpid()


def readme_role():
    with open(os.path.join(REPO, 'README.md')) as f:
        text = f.read()
    blocks = [yaml.safe_load(b) for b in re.findall(r'```yaml\n(.*?)```', text, re.S)]
    roles = [b for b in blocks if isinstance(b, dict) and b.get('kind') == 'Role']
    assert len(roles) == 1, 'README.md has one Role'
    return roles[0]


def pairs(role):
    """(verb, resource) of every rule; the Role only names the core group."""
    out = []
    for rule in role['rules']:
        assert rule['apiGroups'] == ['']
        out += [(v, r) for r in rule['resources'] for v in rule['verbs']]
    return out


def user(name, grants):
    return {'name': name, 'token': TOKEN % name,
            'rules': [{'verbs': [v], 'resources': [r], 'namespaces': ['default']} for v, r in grants]}


ROLE = readme_role()
PAIRS = pairs(ROLE)
LESS = {'%s-%s' % (v, r.replace('/', '-')): (v, r) for v, r in PAIRS}


@pytest.fixture(scope='module')
def cluster(request):
    users = [user('diag', PAIRS)]
    users += [user('less-' + k, [p for p in PAIRS if p != missing]) for k, missing in LESS.items()]
    return start_cluster(request, [DEMO], users=users)


def test_role_is_what_the_cli_needs():
    assert ROLE['metadata']['name'] == 'kubectl-diag'
    assert sorted(PAIRS) == sorted([
        ('get', 'pods'), ('list', 'pods'), ('get', 'pods/ephemeralcontainers'),
        ('update', 'pods/ephemeralcontainers'), ('get', 'pods/log'),
        ('create', 'pods/portforward'), ('watch', 'pods')])


def test_ps_redir_shell_logs_with_exactly_the_role(cluster, bg, local_http):
    as_user = ('--context', 'kubesim-diag')
    r = cluster.diag(*as_user, 'ps', '-l', 'app=nginx')
    assert r.returncode == 0 and ':80' in r.stdout, r.stdout + r.stderr
    r = cluster.diag(*as_user, 'shell', 'pod/distroless', '--', '-c', 'ls /')
    assert r.returncode == 0 and 'hello-server' in r.stdout.split(), r.stdout + r.stderr
    r = cluster.diag(*as_user, 'exec', '--tools', 'pod/distroless', '--', 'ls', '/')
    assert r.returncode == 0 and 'hello-server' in r.stdout.split(), r.stdout + r.stderr
    r = cluster.diag(*as_user, 'logs', '--pod', 'curl', '--', 'true', timeout=60)
    assert r.returncode == 0, r.stderr
    srv = local_http()
    r = bg(cluster, *as_user, 'redir', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80 → localhost:%d (incoming)' % srv.port)
    wait_for(lambda: srv.requests, 30, what="the curl pod's request at the local server")
    assert r.interrupt() == 0, r.err()


@pytest.mark.parametrize('less', sorted(LESS))
def test_one_verb_less_is_named(cluster, bg, local_http, less):
    verb, resource = LESS[less]
    name = 'rbac-%s' % less.replace('pods-', '')[:40]   # a pod without a debug container yet
    cluster.ok('run', name, '--image=nginx', '--restart=Never')
    try:
        cluster.wait_running(name)
        as_user = ('--context', 'kubesim-less-' + less)
        if (verb, resource) == ('watch', 'pods'):
            # only a redir that follows -l watches: it keeps its pod and says what is missing
            r = bg(cluster, *as_user, 'redir', '-l', 'run=' + name, '80:%d' % local_http().port)
            wait_for(lambda: 'watching the pods matching -l run=%s fails' % name in r.err(), 60,
                     what='the watch failure line')
            assert r.interrupt() == 0, r.err()
            code, err = 1, r.err()
        else:
            if (verb, resource) == ('list', 'pods'):
                r = cluster.diag(*as_user, 'ps', '-l', 'run=' + name)
            else:
                r = cluster.diag(*as_user, 'ps', 'pod/' + name)
            code, err = r.returncode, r.stderr
        added = cluster.pod(name)['spec'].get('ephemeralContainers') or []
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
    assert code != 0
    if (verb, resource) in (('update', 'pods/ephemeralcontainers'), ('get', 'pods/log'), ('create', 'pods/portforward')):
        # what the new container would need: asked (kubectl auth can-i) before it is added
        assert "you may not '%s' the resource \"%s\"" % (verb, resource) in err, err
        assert 'so no debug container was added' in err, err
    else:
        assert 'user "less-%s"' % less in err, err
        assert "'%s' the resource \"%s\"" % (verb, resource) in err, err
    # only the redir that follows -l got as far as its container (it works, but cannot follow)
    assert len(added) == (1 if (verb, resource) == ('watch', 'pods') else 0), added
    base, _, sub = resource.partition('/')
    check = '%s --subresource=%s' % (base, sub) if sub else base
    # the check asks as the command did: in its context
    assert 'kubectl auth can-i %s %s --context=kubesim-less-%s -n default' % (verb, check, less) in err, err


def test_a_long_selector_is_cut_in_the_watch_failure_line(cluster, bg, local_http):
    """The line saying that watching fails (here: no 'watch' verb) held the whole selector, up to
    1024 characters, before the cause. The selector is cut in the middle; the cause is whole."""
    name = 'rbac-long-selector-%d' % os.getpid()
    sel = 'run=%s,%s' % (name, ','.join('k%d!=v' % i for i in range(120)))
    assert 700 < len(sel) <= 1024
    cluster.ok('run', name, '--image=nginx', '--restart=Never')
    try:
        cluster.wait_running(name)
        r = bg(cluster, '--context', 'kubesim-less-watch-pods', 'redir', '-l', sel, '80:%d' % local_http().port)
        wait_for(lambda: 'watching the pods ' in r.err(), 60, what='the watch failure line')
        assert r.interrupt() == 0, r.err()
        err = r.err()
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
    assert err.count('watching the pods ') == 1, err
    said = err[err.index('watching the pods '):]
    head = 'watching the pods matching -l %s…%s fails; retrying every 2 s: ' % (sel[:64], sel[-64:])
    assert said.startswith(head), said
    cause = said[len(head):].splitlines()  # the cause and its fix, whole
    assert cause[0] == ('cannot watch the pods: permission denied — user "less-watch-pods" may not \'watch\' the '
                        'resource "pods" in namespace "default".'), cause
    assert cause[1].endswith('(check with: kubectl auth can-i watch pods --context=kubesim-less-watch-pods -n '
                             'default).'), cause
