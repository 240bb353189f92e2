"""Errors become actions: Pod Security admission and RBAC denials, through the real kubectl on the
simulated cluster."""
import os
import re
import shutil
import signal
import time

import pytest

from conftest import error_lines, wait_for

PSA_NS = 'psa-%d' % os.getpid()


@pytest.fixture(scope='module')
def baseline_ns(cluster):
    cluster.ok('create', '-f', '-', input='apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n'
               '    pod-security.kubernetes.io/enforce: baseline\n' % PSA_NS)
    cluster.ok('run', 'web', '-n', PSA_NS, '--image=nginx', '--restart=Never')
    cluster.wait_running('web', ns=PSA_NS)
    yield PSA_NS
    cluster.kubectl('delete', 'namespace', PSA_NS, '--wait=false')


def test_pod_security_baseline_says_profile_and_fix(cluster, baseline_ns):
    r = cluster.diag('redir', '-n', baseline_ns, 'pod/web', '80:8080')
    assert r.returncode == 1
    assert 'Pod Security "baseline"' in r.stderr, r.stderr
    assert 'NET_ADMIN' in r.stderr
    assert ('kubectl label namespace %s pod-security.kubernetes.io/enforce=privileged' % baseline_ns) in r.stderr
    # nothing was added
    assert not cluster.pod('web', baseline_ns)['spec'].get('ephemeralContainers')


def test_pod_security_privileged_flag_is_refused_too(cluster, baseline_ns):
    r = cluster.diag('shell', '--namespace', baseline_ns, 'pod/web', '--privileged', '--', '-c', 'true')
    assert r.returncode == 1
    assert 'Pod Security "baseline"' in r.stderr and 'privileged' in r.stderr, r.stderr


def test_rbac_missing_portforward_adds_no_container(cluster, fresh_pod):
    # asked with kubectl auth can-i before the debug container is added: a container added for a
    # command that then cannot reach it would stay in the pod for good
    r = cluster.diag('--context', 'kubesim-limited', 'ps', 'pod/' + fresh_pod)
    assert r.returncode == 1
    assert "you may not 'create' the resource \"pods/portforward\"" in r.stderr, r.stderr
    assert 'so no debug container was added' in r.stderr
    # the check asks as the command did, in its context
    assert 'kubectl auth can-i create pods --subresource=portforward --context=kubesim-limited -n default' in r.stderr
    assert not cluster.pod(fresh_pod)['spec'].get('ephemeralContainers')
    # the check costs the admin nothing but a moment: the same command works
    assert cluster.diag('ps', 'pod/' + fresh_pod).returncode == 0
    assert len(cluster.pod(fresh_pod)['spec']['ephemeralContainers']) == 1


def test_rbac_missing_ephemeralcontainers_update(cluster):
    name = 'rbac-%d' % os.getpid()  # a pod without a debug container yet
    cluster.ok('run', name, '--image=nginx', '--restart=Never')
    try:
        cluster.wait_running(name)
        r = cluster.diag('--context', 'kubesim-viewer', 'ps', 'pod/' + name)
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
    assert r.returncode == 1
    # asked before anything is added, and both of what the viewer lacks named at once
    assert "you may not 'update' the resource \"pods/ephemeralcontainers\"" in r.stderr, r.stderr
    assert 'Missing too: verb "create" on "pods/portforward".' in r.stderr
    assert ('kubectl auth can-i update pods --subresource=ephemeralcontainers --context=kubesim-viewer -n default'
            in r.stderr), r.stderr


def test_rbac_missing_portforward_for_shell(cluster):
    # the debug container exists (made by the admin); the limited user may not port-forward,
    # which shell needs (it runs through the manager, not kubectl exec)
    assert cluster.diag('ps', 'pod/distroless').returncode == 0
    r = cluster.diag('--context', 'kubesim-limited', 'shell', 'pod/distroless', '--', '-c', 'true')
    assert r.returncode == 1
    assert 'user "limited"' in r.stderr, r.stderr  # kubectl port-forward's own denial
    assert "'create' the resource \"pods/portforward\"" in r.stderr
    assert 'kubectl auth can-i create pods --subresource=portforward --context=kubesim-limited -n default' in r.stderr


def test_image_that_cannot_be_pulled_is_named_at_once(cluster):
    # kubesim reports the unknown image as a kubelet does (waiting: ErrImagePull, then
    # ImagePullBackOff, with containerd's message); the CLI stops at the first of them, long
    # before its --timeout, with one line: the image, the cluster's message and the fix.
    t = time.monotonic()
    r = cluster.diag('ps', 'pod/nginx', '--dbg-image', 'no-such-image:1', '--timeout', '60s', timeout=90)
    took = time.monotonic() - t
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1, r.stderr
    assert 'cannot pull the debug image no-such-image:1 for pod/nginx' in lines[0], r.stderr
    assert re.search(r'\((ErrImagePull|ImagePullBackOff): ', lines[0]), r.stderr
    assert 'no-such-image:1' in lines[0].split('(', 1)[1], r.stderr   # the cluster's message
    assert 'scripts/image.sh' in lines[0] and '--dbg-image' in lines[0]
    assert took < 30, 'named after %.1f s, not at once' % took



def test_debug_image_without_ports_waits_for_the_whole_timeout(cluster):
    """--timeout bounds the wait for the manager's start-up lines too (it was capped at 30 s)."""
    name = 'noports-%d' % os.getpid()
    cluster.ok('run', name, '--image=distroless', '--restart=Never')
    try:
        cluster.wait_running(name)
        t0 = time.monotonic()
        r = cluster.diag('ps', 'pod/' + name, '--dbg-image', 'curl', '--timeout', '34s', timeout=150)
        elapsed = time.monotonic() - t0
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
    assert r.returncode == 1, r.stderr
    assert 'did not print its ports' in r.stderr, r.stderr
    assert elapsed >= 34, elapsed


def test_a_namespace_that_does_not_exist_is_named(cluster):
    # kubectl says "namespaces "x" not found" for a pod in a missing namespace: not a pod to look for
    ns = 'no-such-namespace-%d' % os.getpid()
    for args in (['ps', 'pod/nginx'], ['shell', 'pod/nginx', '--', '-c', 'true'], ['capture', 'pod/nginx', '-c', '1']):
        r = cluster.diag('-n', ns, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.endswith('namespace "%s" does not exist. List namespaces with: kubectl get namespaces\n'
                                 % ns), (args, r.stderr)


def test_not_found_names_the_contexts_namespace_not_default(cluster, tmp_path):
    # the context's namespace is not "default": without -n the message must not send the user there
    ns = 'elsewhere-%d' % os.getpid()
    cfg = tmp_path / 'kubeconfig'
    shutil.copy(cluster.kubeconfig, cfg)
    cluster.ok('--kubeconfig', str(cfg), 'config', 'set-context', '--current', '--namespace=' + ns)
    cluster.ok('create', 'namespace', ns)
    try:
        r = cluster.diag('--kubeconfig', str(cfg), 'ps', 'pod/nginx')
    finally:
        cluster.kubectl('delete', 'namespace', ns, '--wait=false')
    assert r.returncode == 1
    # the command the message suggests lists the pods of that kubeconfig, as the command read them
    assert ('pod "nginx" not found in the current namespace. List pods with: kubectl get pods --kubeconfig=%s\n'
            % cfg) in r.stderr, r.stderr
    assert 'default' not in r.stderr, r.stderr


def test_suggested_commands_ask_as_the_command_did(cluster):
    """The kubectl commands a message suggests carry the command's --context (and kubeconfig and
    kubectl's connection flags): without them they looked at another cluster or as another user."""
    r = cluster.diag('--context', 'kubesim', '--request-timeout=20s', 'ps', '-l', 'app=nope-%d' % os.getpid())
    assert r.returncode == 1
    assert error_lines(r.stderr) == ['error: no pod matches -l app=nope-%d in the current namespace: check the labels '
                                     'with kubectl get pods --context=kubesim --request-timeout=20s --show-labels'
                                     % os.getpid()], r.stderr


def test_a_manager_that_stopped_answering_is_named(cluster, fresh_pod):
    """A manager that gets no CPU (stopped here; a frozen cgroup or a starved node alike) accepts
    connections and answers nothing: gRPC's keepalive gives up on it after ~10 s. The error says
    the manager stopped answering and where to look, not gRPC's "keepalive watchdog timeout", after
    "kubectl port-forward to pod/x ended; restarting it" (the CLI's own restart, to check the pod)."""
    assert cluster.diag('exec', '--tools', 'pod/' + fresh_pod, '--', 'true').returncode == 0
    [manager] = cluster.pids_in_pod(fresh_pod, 'kdiag-manager')
    os.kill(manager, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = cluster.diag('exec', '--tools', 'pod/' + fresh_pod, '--', 'true', timeout=90)
        took = time.monotonic() - t0
    finally:
        os.kill(manager, signal.SIGCONT)
    assert r.returncode == 1, r.stderr
    last = error_lines(r.stderr)[-1]
    assert last.startswith('error: Exec call to the manager (dbg-'), r.stderr
    assert 'the manager stopped answering: no reply to a keepalive ping within 5 s' in last, r.stderr
    assert 'keepalive watchdog' not in r.stderr
    # the CLI restarts the forward itself to check the pod: not "kubectl port-forward ended"
    assert 'restarting it' not in r.stderr, r.stderr
    assert took < 40, took
    os.kill(manager, signal.SIGSTOP)
    try:  # ps restarts the forward once itself: quiet too
        r = cluster.diag('ps', 'pod/' + fresh_pod, timeout=90)
    finally:
        os.kill(manager, signal.SIGCONT)
    assert r.returncode == 1, r.stderr
    assert 'the manager stopped answering' in r.stderr and 'restarting it' not in r.stderr, r.stderr
    assert cluster.diag('exec', '--tools', 'pod/' + fresh_pod, '--', 'true').returncode == 0


def test_rbac_list_all_namespaces_says_the_cluster_scope(cluster):
    """list -A denied at the cluster scope: the message said 'in the current namespace', where the
    user may list pods, and a Role and can-i line that say yes there."""
    r = cluster.diag('--context', 'kubesim-limited', 'list', '-A')
    assert r.returncode == 1
    assert error_lines(r.stderr) == [
        'error: cannot list pods in all namespaces: permission denied — user "limited" may not \'list\' the '
        'resource "pods" in all namespaces (at the cluster scope).',
        'Ask a cluster administrator for a ClusterRole granting verb "list" on "pods" (check with: kubectl auth '
        'can-i list pods --context=kubesim-limited -A), or name one namespace with -n instead of -A.'], r.stderr
    assert cluster.diag('--context', 'kubesim-limited', 'list').returncode == 0
