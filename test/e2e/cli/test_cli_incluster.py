"""kubectl diag run inside a pod: no kubeconfig, the API server's address in the environment and
a service account's token, CA and namespace mounted at /var/run/secrets/kubernetes.io/serviceaccount
(here a tmpfs in a mount namespace of the test's own, so nothing of the machine changes). kubectl
then takes the pod's namespace, and so must the watch kubectl diag runs itself (capture
--all-pods and redir -l, which follow pods)."""
import json
import os
import shutil
import tempfile

import pytest
import yaml

from conftest import CLI, KUBECTLS, Background, wait_for

SA = '/run/secrets/kubernetes.io/serviceaccount'   # /var/run is /run


@pytest.fixture
def in_cluster(cluster):
    """(namespace, argv prefix, env): kubectl-diag as a pod of namespace sees it."""
    ns = 'incluster-%d' % os.getpid()
    with open(cluster.kubeconfig) as f:
        kc = yaml.safe_load(f)
    token = [u['user']['token'] for u in kc['users'] if u['name'] == 'admin'][0]
    with open(os.path.join(cluster.state, 'server.json')) as f:
        port = json.load(f)['port']
    sa = tempfile.mkdtemp(prefix='kdiag-incluster-')
    for name, text in (('token', token), ('namespace', ns + '\n')):
        with open(os.path.join(sa, name), 'w') as f:
            f.write(text)
    shutil.copy(os.path.join(cluster.state, 'tls.crt'), os.path.join(sa, 'ca.crt'))
    home = os.path.join(sa, 'home')
    os.mkdir(home)
    env = {k: v for k, v in os.environ.items() if k not in ('KUBECONFIG', 'POD_NAMESPACE')}
    env.update(HOME=home, XDG_CACHE_HOME=os.path.join(home, 'cache'), NO_COLOR='1', KUBECTL=KUBECTLS['default'],
               KUBERNETES_SERVICE_HOST='127.0.0.1', KUBERNETES_SERVICE_PORT=str(port))
    # unshare execs sh, which execs kubectl-diag: the test's process is kubectl-diag's
    wrap = ['unshare', '--mount', '--propagation', 'private', 'sh', '-ec',
            'mount -t tmpfs kdiag-incluster /run && mkdir -p %s && cp "$0"/token "$0"/namespace "$0"/ca.crt %s '
            '&& exec "$@"' % (SA, SA), sa]
    cluster.ok('create', 'namespace', ns)
    try:
        yield ns, wrap, env
    finally:
        cluster.kubectl('delete', 'namespace', ns, '--wait=false')
        shutil.rmtree(sa, ignore_errors=True)


def test_capture_all_pods_follows_the_pods_of_the_pods_namespace(cluster, in_cluster):
    """A pod made after capture --all-pods started is captured too. Before, the watch took
    "default" when `kubectl config view` had no context, so it never saw a pod of the pod's
    namespace, where kubectl (in-cluster) found the first one."""
    ns, wrap, env = in_cluster
    label = 'app=incluster-%d' % os.getpid()
    cluster.ok('run', 'web1', '-n', ns, '--image=nginx', '--restart=Never', '-l', label)
    cluster.wait_running('web1', ns=ns)
    out = os.path.join(env['HOME'], 'all.pcapng')
    p = Background(wrap + [CLI, 'capture', '--all-pods', '-l', label, '-w', out], env, 'kdiag-incluster-')
    try:
        wait_for(lambda: 'in pod/web1 (' in p.err() or p.proc.poll() is not None, 90,
                 what='in pod/web1 (')
        cluster.ok('run', 'web2', '-n', ns, '--image=nginx', '--restart=Never', '-l', label)
        wait_for(lambda: 'in pod/web2 (' in p.err() or p.proc.poll() is not None, 90,
                 what='in pod/web2 (')
        assert 'in pod/web2 (' in p.err(), p.err()
        assert p.interrupt() == 0, p.err()
    finally:
        p.close()
