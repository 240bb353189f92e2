"""kubectl diag redir -l on a pod whose container keeps restarting. The debug container lives in
its target container's PID namespace and ends with each restart; -l re-attached with a new one
each time, and ephemeral containers can never be removed (5 restarts: 5 debug containers). Now it
adds none to a pod that has 3 of ours that ended within 15 min, and says so once, until the
target has run 15 min without a restart. On a cluster of its own whose
restart back-off is 1 s (KUBESIM_BACKOFF_SECONDS), not the kubelet's 10 s, 20 s, ..."""
import calendar
import os
import signal
import time

import pytest

from conftest import DEMO, free_port, start_cluster, wait_for

ENDED_MAX = 3  # cli/redir.c FOLLOW_ENDED_MAX


@pytest.fixture(scope='module')
def cluster(request):
    return start_cluster(request, [DEMO], env={'KUBESIM_BACKOFF_SECONDS': '1'})


def restarts(cluster, name):
    st = cluster.pod(name)['status']
    return sum(c.get('restartCount', 0) for c in st.get('containerStatuses', []))


def ready(cluster, name):
    st = cluster.pod(name)['status']
    return any(c['type'] == 'Ready' and c['status'] == 'True' for c in st.get('conditions', []))


def restart_target(cluster, name, server='hello-server'):
    """Kills the pod's server and waits until it runs again (the pod ready, one restart more)."""
    before = restarts(cluster, name)
    wait_for(lambda: cluster.pids_in_pod(name, server), 30, what='the server in pod/' + name)
    for pid in cluster.pids_in_pod(name, server):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: restarts(cluster, name) > before and ready(cluster, name), 30, what='the restart')


def debug_containers(cluster, name):
    st = cluster.pod(name)['status'].get('ephemeralContainerStatuses', [])
    return sorted((c['name'], list(c['state'])[0]) for c in st)


def refusal_line(pod, target, window):
    return ('pod/%s: cannot redirect: pod/%s has 3 debug containers of kubectl diag that ended within %s (each when '
            "its target container %s stopped or restarted: it lives in that container's PID namespace), and "
            'ephemeral containers can never be removed: redir adds no more by itself until %s has run %s without a '
            'restart; fix what restarts %s, or name the pod (kubectl diag redir pod/%s ...) to add one anyway'
            % (pod, pod, window, target, target, window, target, pod))


def end_debug_containers(cluster, name):
    """Gives the ready pod ENDED_MAX debug containers that ended: each ps adds one, each restart of
    the target ends it."""
    for _ in range(ENDED_MAX):
        r = cluster.diag('ps', 'pod/' + name)
        assert r.returncode == 0, r.stderr
        restart_target(cluster, name)
    wait_for(lambda: [s for _, s in debug_containers(cluster, name)] == ['terminated'] * ENDED_MAX, 30,
             what='3 debug containers ended')


def pod_with_ended_debug_containers(cluster, name, label):
    """Runs pod name (app=label) and gives it ENDED_MAX debug containers that ended; its name."""
    cluster.ok('run', name, '--image=distroless', '--labels=app=' + label)
    cluster.wait_running(name)
    wait_for(lambda: ready(cluster, name), 30, what='pod/%s ready' % name)
    end_debug_containers(cluster, name)
    return name


def started_at(cluster, name):
    """When the pod's first container last started (its running.startedAt), in seconds since the epoch."""
    st = cluster.pod(name)['status']['containerStatuses'][0]['state']['running']['startedAt']
    return calendar.timegm(time.strptime(st, '%Y-%m-%dT%H:%M:%SZ'))


def test_a_restarting_target_gets_no_more_debug_containers_than_the_cap(cluster, bg, label):
    name = label + '-a'
    cluster.ok('run', name, '--image=distroless', '--labels=app=' + label)  # restartPolicy Always
    cluster.wait_running(name)
    r = bg(cluster, 'redir', '-l', 'app=' + label, '8080:%d' % free_port())
    refusal = 'adds no more by itself'
    for n in range(1, ENDED_MAX + 1):
        redirected = lambda: r.out().count('redirecting pod/%s:8080' % name) >= n
        wait_for(lambda: redirected() or refusal in r.err() or r.proc.poll() is not None, 60,
                 what='redirect %d of pod/%s' % (n, name))
        assert redirected(), r.err()
        assert len(debug_containers(cluster, name)) == n, debug_containers(cluster, name)
        restart_target(cluster, name)  # ends debug container n
    wait_for(lambda: refusal in r.err() or r.proc.poll() is not None, 60, what='the refusal')
    assert r.err().count(refusal) == 1, r.err()
    assert refusal_line(name, name, '15 min') in r.err().splitlines(), r.err()
    # more restarts: no debug container added, nothing said again, redir still follows the selector
    for _ in range(2):
        restart_target(cluster, name)
    time.sleep(3)  # a re-attach starts within ~1.2 s of the pod being ready
    assert debug_containers(cluster, name) == [(c, 'terminated') for c, _ in debug_containers(cluster, name)]
    assert len(debug_containers(cluster, name)) == ENDED_MAX, debug_containers(cluster, name)
    assert r.err().count(refusal) == 1, r.err()
    assert r.out().count('redirecting pod/%s:8080' % name) == ENDED_MAX, r.out()
    assert r.proc.poll() is None, r.err()
    assert r.interrupt() == 0, r.err()


def test_debug_containers_that_another_container_ended_do_not_count(cluster, bg, label):
    """The cap counts the debug containers of the container redir targets: a pod whose sidecar
    restarted under 3 of ours (ps -t side) still gets one for its first container (was refused,
    the line saying that its first container keeps restarting, which it never did)."""
    name = label + '-b'
    cluster.ok('apply', '-f', '-', input="""
apiVersion: v1
kind: Pod
metadata: {name: %s, labels: {app: %s}}
spec:
  containers:
  - {name: app, image: distroless}
  - {name: side, image: nginx}
""" % (name, label))
    cluster.wait_running(name)
    wait_for(lambda: ready(cluster, name), 30, what='pod/%s ready' % name)
    for _ in range(ENDED_MAX):
        r = cluster.diag('ps', '-t', 'side', 'pod/' + name)
        assert r.returncode == 0, r.stderr
        restart_target(cluster, name, 'nginx-httpd')  # ends the debug container of side
    wait_for(lambda: [s for _, s in debug_containers(cluster, name)] == ['terminated'] * ENDED_MAX, 30,
             what='3 debug containers ended')
    r = bg(cluster, 'redir', '-l', 'app=' + label, '8080:%d' % free_port())
    redirected = lambda: 'redirecting pod/%s:8080' % name in r.out()
    wait_for(lambda: redirected() or 'cannot redirect' in r.err() or r.proc.poll() is not None, 60,
             what='the redirect of pod/' + name)
    assert redirected(), r.err()
    assert r.interrupt() == 0, r.err()


def test_a_refused_pod_is_followed_again_once_its_target_ran_the_window(cluster, bg, label, monkeypatch):
    """The cap is a rate: 3 of ours at the target that ended within the window (15 min; here
    KDIAG_REDIR_ENDED_WINDOW=30 s). A refused pod was refused for good, also once its target had
    run for weeks. Now it is tried again once its target has run the window without a restart
    (a restart meanwhile starts the wait anew), and redirected; --all-pods with a second pod, whose
    redirect runs meanwhile (a run whose only pod is refused: the test after this one)."""
    window = 30
    monkeypatch.setenv('KDIAG_REDIR_ENDED_WINDOW', str(window))
    name, other = label + '-c', label + '-d'
    for n in (name, other):
        cluster.ok('run', n, '--image=distroless', '--labels=app=' + label)
    for n in (name, other):
        cluster.wait_running(n)
        wait_for(lambda: ready(cluster, n), 30, what='pod/%s ready' % n)
    end_debug_containers(cluster, name)
    r = bg(cluster, 'redir', '--all-pods', '-l', 'app=' + label, '8080:%d' % free_port())
    line = refusal_line(name, name, '%d s' % window)
    redirected = lambda: 'redirecting pod/%s:8080' % name in r.out()
    wait_for(lambda: line in r.err() or redirected() or r.proc.poll() is not None, 60, what='the refusal')
    assert line in r.err().splitlines(), r.err()
    restart_target(cluster, name)  # within the window: the wait starts anew
    since = started_at(cluster, name)
    wait_for(lambda: redirected() or r.proc.poll() is not None, window + 30, what='pod/%s redirected again' % name)
    assert redirected(), r.err()
    assert time.time() >= since + window, (time.time() - since, r.err())
    assert r.err().count(line) == 1, r.err()
    assert len(debug_containers(cluster, name)) == ENDED_MAX + 1, debug_containers(cluster, name)
    assert 'redirecting pod/%s:8080' % other in r.out(), r.out()
    assert r.interrupt() == 0, r.err()


def test_debug_containers_that_ended_before_the_window_do_not_count(cluster, bg, label, monkeypatch):
    """3 of ours at the target that ended longer ago than the window (15 min; here
    KDIAG_REDIR_ENDED_WINDOW=5 s), the target running since: redir -l refused the pod for good
    (exit 1 at the start), however long ago they ended. Now the pod is redirected at once."""
    window = 5
    monkeypatch.setenv('KDIAG_REDIR_ENDED_WINDOW', str(window))
    name = pod_with_ended_debug_containers(cluster, label + '-e', label)
    since = started_at(cluster, name)
    wait_for(lambda: time.time() > since + window + 1, window + 10, what='the window to pass')
    r = bg(cluster, 'redir', '-l', 'app=' + label, '8080:%d' % free_port())
    redirected = lambda: 'redirecting pod/%s:8080' % name in r.out()
    wait_for(lambda: redirected() or r.proc.poll() is not None, 60, what='the redirect of pod/' + name)
    assert redirected(), r.err()
    assert 'cannot redirect' not in r.err(), r.err()
    assert len(debug_containers(cluster, name)) == ENDED_MAX + 1, debug_containers(cluster, name)
    assert r.interrupt() == 0, r.err()


def test_a_run_whose_only_pod_is_refused_at_the_start_waits_for_it(cluster, bg, label, monkeypatch):
    """redir -l whose only pod has 3 of ours that ended within the window (here
    KDIAG_REDIR_ENDED_WINDOW=20 s): the refusal line says when the pod is tried again, yet the run
    ended at once (exit 1). Now it waits, and redirects the pod once its target has run the window."""
    window = 20
    monkeypatch.setenv('KDIAG_REDIR_ENDED_WINDOW', str(window))
    name = pod_with_ended_debug_containers(cluster, label + '-f', label)
    since = started_at(cluster, name)
    r = bg(cluster, 'redir', '-l', 'app=' + label, '8080:%d' % free_port())
    line = refusal_line(name, name, '%d s' % window)
    redirected = lambda: 'redirecting pod/%s:8080' % name in r.out()
    wait_for(lambda: line in r.err() or redirected() or r.proc.poll() is not None, 60, what='the refusal')
    assert line in r.err().splitlines(), r.err()
    wait_for(lambda: redirected() or r.proc.poll() is not None, window + 30, what='pod/%s redirected' % name)
    assert redirected(), r.err()
    assert time.time() >= since + window, (time.time() - since, r.err())
    assert r.err().count(line) == 1, r.err()
    assert len(debug_containers(cluster, name)) == ENDED_MAX + 1, debug_containers(cluster, name)
    assert r.interrupt() == 0, r.err()
