"""kubectl diag redir following a selector's pods: --all-pods redirects every running pod at once,
a deleted pod's redirect is dropped, a new matching pod is redirected within 2 s of running; without
--all-pods a replaced pod's successor takes over. Real kubectl, real traffic from the node."""
import json
import os
import re
import signal
import time

from conftest import READINESS_GATE, free_port, wait_for
from e2e_common import children, cmdline, forwards_to

FOLLOW_GOAL_S = 2.0


def redirect(cluster, bg, label, srv, pods, *flags):
    """Runs pods labelled app=label, then redir -l app=label (and flags) of port 8080 to srv, once it
    redirects each of them."""
    cluster.run_pods(label, pods)
    r = bg(cluster, 'redir', *flags, '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    for p in pods:
        r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (p, srv.port))
    return r


def running_at(cluster, pod):
    """The monotonic time at which the test first sees pod Running (polled; so a little late)."""
    return wait_for(lambda: cluster.pod(pod).get('status', {}).get('phase') == 'Running' and time.monotonic(), 60,
                    interval=0.05, what='pod %s running' % pod)


def test_a_selector_too_long_to_watch_is_refused_at_once(cluster, bg, fresh_pod):
    """A selector too long for the watch's path: redir redirected the pod, then retried the watch
    forever ("the selector is too long" every 2 s). redir and capture --all-pods refuse it at once,
    before adding anything, with its length, the limit and the fix (exit 2)."""
    sel = 'run=%s,%s' % (fresh_pod, ','.join('k%d!=v' % i for i in range(150)))
    said = ('error: -l: the selector is %d characters long, more than the 1024 kubectl diag can watch the pods '
            'of: shorten it (match fewer labels, or one label the pods share), or name one pod (pod/NAME)' % len(sel))
    for args in (['redir', '-l', sel, '8080:18989'], ['capture', '--all-pods', '-l', sel, '-w', os.devnull]):
        r = bg(cluster, *args)
        wait_for(lambda: r.proc.poll() is not None, 30, what='%s to end' % args[0])
        assert (r.proc.returncode, r.err().strip().splitlines()) == (2, [said]), r.err()
    assert not cluster.pod(fresh_pod)['spec'].get('ephemeralContainers'), 'a debug container was added'


def test_all_pods_each_pod_reaches_the_local_port(cluster, bg, label, local_http):
    srv = local_http()
    pods = ['%s-%d' % (label, i) for i in range(3)]
    r = redirect(cluster, bg, label, srv, pods, '--all-pods')
    for p in pods:
        assert srv.marker in cluster.http_get(p, 8080), p
        # the connection line names its pod
        wait_for(lambda: re.search(r'pod/%s:8080 ← 10\.244\.0\.\d+:\d+ ⇒ localhost:%d' % (p, srv.port), r.err()),
                 10, what='the connection line of ' + p)
    assert r.interrupt() == 0, r.err()


def test_all_pods_drops_deleted_and_redirects_new_within_2s(cluster, bg, label, local_http):
    srv = local_http()
    pods = ['%s-%d' % (label, i) for i in range(2)]
    r = redirect(cluster, bg, label, srv, pods, '--all-pods')
    assert forwards_to(pods[0], children(r.proc.pid))
    cluster.ok('delete', 'pod', pods[0], '--wait=false')
    wait_for(lambda: re.search(r'pod/%s (is deleted|is gone|is being deleted).*its redirect is dropped' % pods[0],
                               r.err()), 30, what='the line dropping ' + pods[0])
    wait_for(lambda: not forwards_to(pods[0], children(r.proc.pid)), 10,
             what='the forwards of %s to end' % pods[0])
    assert srv.marker in cluster.http_get(pods[1], 8080)  # the other pod is still redirected

    new = '%s-new' % label
    t_create = time.monotonic()
    cluster.ok('run', new, '--image=distroless', '--restart=Never', '--labels=app=' + label)
    t_running = running_at(cluster, new)
    r.wait_out('redirecting pod/%s:8080' % new, timeout=30)
    t_redir = wait_for(lambda: 'redirecting pod/%s:8080' % new in r.out() and time.monotonic(), 1, interval=0.02)
    print('new pod: redirect active %.2f s after it was seen Running (%.2f s after kubectl run)' % (
        t_redir - t_running, t_redir - t_create))
    assert 'pod/%s is running: redirecting it' % new in r.err()
    assert t_redir - t_running < FOLLOW_GOAL_S, r.err()
    assert srv.marker in cluster.http_get(new, 8080)
    assert r.interrupt() == 0, r.err()


def test_selector_follows_a_replaced_pod(cluster, bg, label, local_http):
    srv = local_http()
    old = '%s-old' % label
    r = redirect(cluster, bg, label, srv, [old])
    new = '%s-new' % label
    cluster.ok('delete', 'pod', old, '--wait=false')
    cluster.ok('run', new, '--image=distroless', '--restart=Never', '--labels=app=' + label)
    r.wait_out('redirecting pod/%s:8080' % new, timeout=60)
    assert r.proc.poll() is None, r.err()
    assert srv.marker in cluster.http_get(new, 8080)
    # one pod at a time without --all-pods: the connection lines keep their short form
    wait_for(lambda: 'pod:8080 ← ' in r.err(), 10, what='the connection line')
    assert r.interrupt() == 0, r.err()


def test_all_pods_of_a_deployment_follow_a_rollout(cluster, bg, local_http):
    srv = local_http()
    name = 'fweb-%d' % os.getpid()
    cluster.ok('apply', '-f', '-', input="""
apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: distroless}]
""" % (name, name, name))
    try:
        cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=90s', timeout=100)
        old = cluster.pod_names('app=' + name, running=True)
        assert len(old) == 2, old
        r = bg(cluster, 'redir', '--all-pods', 'deploy/' + name, '--include-probes', '8080:%d' % srv.port)
        for p in old:
            r.wait_out('redirecting pod/%s:8080' % p)
        cluster.ok('rollout', 'restart', 'deploy/' + name)
        cluster.ok('rollout', 'status', 'deploy/' + name, '--timeout=90s', timeout=100)

        def replaced():
            ps = cluster.pod_names('app=' + name, running=True)
            return len(ps) == 2 and not set(ps) & set(old) and ps
        new = wait_for(replaced, 60, what='the new replicas alone')
        t0 = time.monotonic()
        for p in new:
            r.wait_out('redirecting pod/%s:8080' % p, timeout=30)
        print('rollout: both new replicas redirected %.2f s after kubectl rollout status returned'
              % (time.monotonic() - t0))
        for p in old:
            wait_for(lambda: re.search(r'pod/%s .*its redirect is dropped' % p, r.err()), 30,
                     what='the line dropping ' + p)
        for p in new:
            assert srv.marker in cluster.http_get(p, 8080), p
        assert r.proc.poll() is None, r.err()
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'deploy', name, '--wait=false')


def test_selector_reattaches_when_the_manager_dies(cluster, bg, label, local_http):
    srv = local_http()
    pod = '%s-0' % label
    r = redirect(cluster, bg, label, srv, [pod])
    pids = cluster.pids_in_pod(pod, 'kdiag-manager')
    assert len(pids) == 1, pids
    os.kill(pids[0], 9)
    wait_for(lambda: re.search(r'debug container \S+ in pod/%s exited.*its redirect is dropped' % pod, r.err()), 60,
             what='the line dropping the dead manager')
    wait_for(lambda: r.out().count('redirecting pod/%s:8080' % pod) == 2, 60, what='the redirect on a new manager')
    assert 'pod/%s is running: redirecting it' % pod in r.err()
    assert len(cluster.pod(pod)['spec']['ephemeralContainers']) == 2
    assert srv.marker in cluster.http_get(pod, 8080)
    assert r.interrupt() == 0, r.err()


def test_watch_resumes_from_its_resource_version(cluster, bg, label, local_http):
    srv = local_http()
    pods = ['%s-0' % label]
    r = redirect(cluster, bg, label, srv, pods, '--all-pods')

    def watches():
        return [p for p in children(r.proc.pid) if 'get --raw' in cmdline(p) and 'watch=1' in cmdline(p)]
    first = wait_for(watches, 10, what='the watch')
    assert 'resourceVersion=' not in cmdline(first[0])  # the first one lists
    os.kill(first[0], 9)
    again = wait_for(lambda: [p for p in watches() if p not in first], 10, what='the watch to restart')
    assert re.search(r'resourceVersion=\d+', cmdline(again[0])), cmdline(again[0])
    new = '%s-1' % label
    cluster.run_pods(label, [new])
    r.wait_out('redirecting pod/%s:8080' % new, timeout=30)
    assert srv.marker in cluster.http_get(new, 8080)
    assert r.interrupt() == 0, r.err()


def test_all_pods_one_pod_refused_does_not_end_the_others(cluster, bg, label, local_http):
    """One pod's port is redirected by another run already: --all-pods said the error and ended
    every pod's redirect (exit 1). Now that pod is dropped and tried again, the others run on."""
    srv, other = local_http(), local_http()
    pods = ['%s-%d' % (label, i) for i in range(2)]
    cluster.run_pods(label, pods)
    holder = bg(cluster, 'redir', '--include-probes', 'pod/' + pods[0], '8080:%d' % other.port)
    holder.wait_out('redirecting pod/%s:8080' % pods[0])
    r = bg(cluster, 'redir', '--all-pods', '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (pods[1], srv.port))
    wait_for(lambda: 'pod/%s: cannot redirect: port 8080:' % pods[0] in r.err(), 30, what='the refusal line')
    assert 'trying again in 5 s' in r.err(), r.err()
    time.sleep(1)
    assert r.proc.poll() is None, r.err()
    assert srv.marker in cluster.http_get(pods[1], 8080)
    assert other.marker in cluster.http_get(pods[0], 8080)  # the holder's redirect untouched
    # the holder goes: the pod is taken at the next try
    assert holder.interrupt() == 0, holder.err()
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (pods[0], srv.port), timeout=30)
    assert srv.marker in cluster.http_get(pods[0], 8080)
    assert r.interrupt() == 0, r.err()


def redirect_beside_a_host_network_pod(cluster, bg, label, srv):
    """redir --all-pods of two pods, one with hostNetwork: once the other is redirected to srv and the
    host one refused; (the redir, the other pod, the host pod, the refusal line)."""
    ok, host = label + '-0', label + '-host'
    cluster.run_pods(label, [ok])
    cluster.ok('apply', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': host, 'labels': {'app': label}},
        'spec': {'hostNetwork': True, 'containers': [{'name': 'c', 'image': 'distroless'}]}}))
    cluster.wait_running(host)
    r = bg(cluster, 'redir', '--all-pods', '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (ok, srv.port))
    refusal = "pod/%s: cannot redirect: pod/%s uses its node's network (hostNetwork: true)" % (host, host)
    wait_for(lambda: refusal in r.err(), 30, what='the refusal line')
    return r, ok, host, refusal


def test_all_pods_a_host_network_pod_is_refused_once(cluster, bg, label, local_http):
    """A hostNetwork pod among the selected ones is refused (its rules would go into the node's
    network namespace), and no retry changes that: the refusal was said again every 5 s, for as
    long as the redirect ran. Now once; the other pods' redirects run on."""
    srv = local_http()
    r, ok, host, refusal = redirect_beside_a_host_network_pod(cluster, bg, label, srv)
    time.sleep(7)  # past the retry period (5 s): a retry would have said it again
    assert r.err().count(refusal) == 1 and 'not tried again' in r.err(), r.err()
    assert srv.marker in cluster.http_get(ok, 8080)
    assert r.interrupt() == 0, r.err()


def test_all_pods_a_refused_pod_made_again_under_its_name_is_taken(cluster, bg, label, local_http):
    """A pod refused for good (hostNetwork) that is deleted and made again under its name without
    hostNetwork, as a StatefulSet makes its pods again: redirected. The watch's events of the
    deletion and of the new pod reach redir together here (it is stopped meanwhile); the new pod
    kept the old one's refusal for good when both were handled before the main loop looked."""
    srv = local_http()
    r, _, again, _ = redirect_beside_a_host_network_pod(cluster, bg, label, srv)
    r.proc.send_signal(signal.SIGSTOP)
    try:
        cluster.ok('delete', 'pod', again, '--wait=true')
        cluster.run_pods(label, [again])
    finally:
        r.proc.send_signal(signal.SIGCONT)
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (again, srv.port), timeout=60)
    assert srv.marker in cluster.http_get(again, 8080)
    assert r.interrupt() == 0, r.err()


def test_all_pods_a_pod_without_the_services_named_target_port_is_refused_once(cluster, bg, label, local_http):
    """svc/NAME whose port goes to a named targetPort that one of its pods does not declare: that
    pod was given a debug container, refused, and tried again every 5 s for as long as the redirect
    ran (a pod's ports never change). Now it is refused once, before a debug container is added;
    the other pods' redirects run on."""
    srv = local_http()
    named, bare = label + '-named', label + '-bare'
    for name, ports in ((named, [{'name': 'http', 'containerPort': 8080}]), (bare, [])):
        cluster.ok('apply', '-f', '-', input=json.dumps({
            'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'labels': {'app': label}},
            'spec': {'containers': [{'name': 'c', 'image': 'distroless', 'ports': ports}]}}))
    cluster.ok('apply', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': label},
        'spec': {'selector': {'app': label}, 'ports': [{'port': 8081, 'targetPort': 'http'}]}}))
    try:
        cluster.wait_running(named)
        cluster.wait_running(bare)
        r = bg(cluster, 'redir', '--all-pods', 'svc/' + label, '--include-probes', '8081:%d' % srv.port)
        r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (named, srv.port))
        refusal = ('pod/%s: cannot redirect: service/%s port 8081 goes to the container port named "http", '
                   'which no container of pod/%s declares' % (bare, label, bare))
        wait_for(lambda: refusal in r.err(), 30, what='the refusal line')
        time.sleep(7)  # past the retry period (5 s): a retry would have said it again
        assert r.err().count(refusal) == 1 and 'not tried again' in r.err(), r.err()
        assert not cluster.pod(bare)['spec'].get('ephemeralContainers'), cluster.pod(bare)['spec']
        assert srv.marker in cluster.http_get(named, 8080)
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'service', label, '--wait=false')


def waiting_line(what, hint):
    """redir's and capture --all-pods' line when no pod of what runs at the start."""
    return 'no pod matches %s in the current namespace: %s; waiting for one to run (Ctrl-C to stop)' % (what, hint)


def label_hint():
    return 'check the labels with kubectl get pods --show-labels'


def processes_naming(text):
    """Pids of the processes whose command line holds text (kubectl children left behind)."""
    return [int(d) for d in os.listdir('/proc') if d.isdigit() and text in cmdline(int(d))]


def test_a_selector_with_no_pod_yet_redirects_the_first_that_runs(cluster, bg, label, local_http):
    """redir -l started before its pod exists ended at once: exit 1, "no pod matches -l …". Now it
    says that it waits and redirects the first pod that runs; traffic reaches the local server."""
    srv = local_http()
    r = bg(cluster, 'redir', '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    line = waiting_line('-l app=' + label, label_hint())
    wait_for(lambda: line in r.err() or r.proc.poll() is not None, 30, what='the waiting line')
    assert r.proc.poll() is None and r.err().splitlines() == [line], r.err()
    pod = label + '-0'
    cluster.run_pods(label, [pod])
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (pod, srv.port), timeout=30)
    assert 'pod/%s is running: redirecting it' % pod in r.err(), r.err()
    assert srv.marker in cluster.http_get(pod, 8080)
    assert r.interrupt() == 0, r.err()


def test_ctrl_c_while_waiting_for_a_first_pod_exits_0_and_leaves_no_process(cluster, bg):
    """redir --all-pods of a Deployment with 0 replicas ended at once (exit 1). Now it waits for a
    replica; Ctrl-C ends the wait as it ends a redirect: exit 0, its pod watch gone with it."""
    name = 'zero-%d' % os.getpid()
    cluster.ok('create', 'deployment', name, '--image=distroless', '--replicas=0')
    try:
        r = bg(cluster, 'redir', '--all-pods', 'deploy/' + name, '8080:%d' % free_port())
        line = waiting_line('deployment/%s (selector app=%s)' % (name, name),
                            "check with kubectl get pods -l 'app=%s'" % name)
        wait_for(lambda: line in r.err() or r.proc.poll() is not None, 30, what='the waiting line')
        wait_for(lambda: r.proc.poll() is not None or processes_naming('labelSelector=app%3D' + name), 10,
                 what='the pod watch')
        assert r.proc.poll() is None and r.err().splitlines() == [line], r.err()
        kids = children(r.proc.pid)  # the watch's kubectl
        assert r.interrupt() == 0, r.err()
        assert r.err().splitlines() == [line, 'stopping'], r.err()
        wait_for(lambda: not [k for k in kids if os.path.exists('/proc/%d' % k)], 10, what='its children to end')
        assert not processes_naming('labelSelector=app%3D' + name)
    finally:
        cluster.kubectl('delete', 'deployment', name, '--wait=false')


def test_a_missing_named_pod_fails_at_once_where_a_selector_waits(cluster, bg, label):
    """A named pod that does not exist (as kubectl port-forward), a workload that does not exist and
    a Service without selector can never be redirected: each fails at once, exit 1; a selector that
    matches nothing yet waits."""
    svc = 'nosel-%d' % os.getpid()
    cluster.ok('apply', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': svc},
        'spec': {'ports': [{'port': 80}]}}))
    try:
        for target, said in (('pod/nope-' + label, 'error: cannot get pod/nope-%s: pod "nope-%s" not found' %
                              (label, label)),
                             ('deploy/nope-' + label, 'error: cannot get deployment/nope-%s: deployments.apps "nope-%s" not found'
                              % (label, label)),
                             ('svc/' + svc, 'error: service/%s has no selector' % svc)):
            t0 = time.monotonic()
            r = cluster.diag('redir', target, '8080:%d' % free_port(), timeout=30)
            assert r.returncode == 1 and r.stderr.startswith(said), (target, r.stderr)
            assert len(r.stderr.splitlines()) == 1 and time.monotonic() - t0 < 10, r.stderr
        r = bg(cluster, 'redir', '-l', 'app=' + label, '8080:%d' % free_port())
        line = waiting_line('-l app=' + label, label_hint())
        wait_for(lambda: line in r.err() or r.proc.poll() is not None, 30, what='the waiting line')
        assert r.proc.poll() is None, r.err()
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'service', svc, '--wait=false')


def not_ready_line(pod):
    """redir's line for a run_unready_pod pod whose gate was never set."""
    why = 'corresponding condition of pod readiness gate "%s" does not exist.' % READINESS_GATE
    return ('pod/%s is running but not ready (ReadinessGatesNotReady: %s): it is redirected once it is (name it, '
            'kubectl diag redir pod/%s, to redirect it now)' % (pod, why, pod))


def test_a_running_pod_that_is_not_ready_at_the_start_waits_until_it_is(cluster, bg, label, local_http):
    """redir -l took a pod that ran but was not ready at the start, where the same pod delivered by
    the watch later waited until ready, without a word. Now both wait: the run says it waits, the pod
    says once why it is not taken, and again when it is ready and redirected."""
    srv, pod = local_http(), label + '-0'
    cluster.run_unready_pod(label, pod)
    cluster.wait_running(pod)
    r = bg(cluster, 'redir', '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    line = not_ready_line(pod)
    wait_for(lambda: line in r.err() or r.proc.poll() is not None, 30, what='the not-ready line')
    assert r.err().splitlines() == ['waiting for a pod of -l app=%s to be ready (Ctrl-C to stop)' % label, line], \
        r.err()
    assert 'redirecting' not in r.out() and r.proc.poll() is None, r.out()
    cluster.set_readiness_gate(pod, 'True')
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (pod, srv.port), timeout=30)
    assert 'pod/%s is ready now: redirecting it' % pod in r.err(), r.err()
    assert srv.marker in cluster.http_get(pod, 8080)
    assert r.interrupt() == 0, r.err()


def test_a_pod_delivered_running_but_not_ready_says_why_once(cluster, bg, label, local_http):
    """A run waiting for its first pod got one that ran but never became ready: nothing was said, it
    waited on. Now the pod's line says why (its Ready condition), once however often the pod changes
    while not ready, and again when it is ready and redirected."""
    srv, pod = local_http(), label + '-0'
    r = bg(cluster, 'redir', '--all-pods', '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    wait_for(lambda: 'waiting for one to run' in r.err() or r.proc.poll() is not None, 30, what='the waiting line')
    cluster.run_unready_pod(label, pod)
    line = not_ready_line(pod)
    wait_for(lambda: line in r.err() or r.proc.poll() is not None, 30, what='the not-ready line')
    cluster.set_readiness_gate(pod, 'False')  # another event of the pod, still not ready
    wait_for(lambda: cluster.pod(pod)['status']['conditions'][-1]['status'] == 'False', 10, what='the gate False')
    cluster.set_readiness_gate(pod, 'True')
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (pod, srv.port), timeout=30)
    assert r.err().count('pod/%s is running but not ready' % pod) == 1, r.err()
    assert 'pod/%s is ready now: redirecting it' % pod in r.err(), r.err()
    assert srv.marker in cluster.http_get(pod, 8080)
    assert r.interrupt() == 0, r.err()


def test_a_waiting_run_whose_first_pod_is_refused_says_it_waits_on(cluster, bg, label, local_http):
    """A run waiting for its first pod that got a hostNetwork one said "… not tried again" and then
    nothing while it waited on. Now a line says that it waits for another pod; the next is taken."""
    srv, host, ok = local_http(), label + '-host', label + '-0'
    r = bg(cluster, 'redir', '-l', 'app=' + label, '--include-probes', '8080:%d' % srv.port)
    wait_for(lambda: 'waiting for one to run' in r.err() or r.proc.poll() is not None, 30, what='the waiting line')
    cluster.ok('apply', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': host, 'labels': {'app': label}},
        'spec': {'hostNetwork': True, 'containers': [{'name': 'c', 'image': 'distroless'}]}}))
    refusal = "pod/%s: cannot redirect: pod/%s uses its node's network (hostNetwork: true)" % (host, host)
    wait_for(lambda: refusal in r.err() or r.proc.poll() is not None, 30, what='the refusal line')
    waiting = 'waiting for another pod of -l app=%s to be ready (Ctrl-C to stop)' % label
    wait_for(lambda: waiting in r.err() or r.proc.poll() is not None, 10, what='the line that it waits on')
    lines = r.err().splitlines()
    assert lines[-2].startswith(refusal) and lines[-2].endswith('; not tried again') and lines[-1] == waiting, lines
    cluster.run_pods(label, [ok])
    r.wait_out('redirecting pod/%s:8080 → localhost:%d (incoming)' % (ok, srv.port), timeout=30)
    assert srv.marker in cluster.http_get(ok, 8080)
    assert r.interrupt() == 0, r.err()
