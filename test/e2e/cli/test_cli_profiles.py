"""One debug container per pod, and --profile (README "Capabilities and profiles"): every command
reuses the pod's kdiag debug container; one that lacks what a command needs is named in one line
with the fix instead of a second container being added. Through the real kubectl on the simulated
cluster, which gives containers containerd's default capability set plus what they add."""
import json
import os
import secrets
import time

import pytest

from conftest import DEBUG_IMAGE, debug_base_name, wait_for

GENERAL = {'NET_ADMIN', 'SYS_PTRACE', 'SYS_ADMIN', 'SYS_CHROOT', 'NET_RAW', 'SETUID', 'SETGID', 'KILL',
           'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'CHOWN', 'FOWNER', 'FSETID'}


def debug_containers(cluster, pod):
    return cluster.pod(pod)['spec'].get('ephemeralContainers', [])


def added_caps(container):
    return set(((container.get('securityContext') or {}).get('capabilities') or {}).get('add') or [])


def redirect_once(cluster, bg, pod, *flags):
    """redir of pod port 80 until it says it redirects, then Ctrl-C; its exit code."""
    r = bg(cluster, 'redir', 'pod/' + pod, '80:%d' % (20000 + os.getpid() % 20000), *flags)
    r.wait_out('redirecting pod/%s:80' % pod)
    return r.interrupt()


def test_ps_redir_shell_leave_one_debug_container(cluster, bg, fresh_pod):
    r = cluster.diag('ps', 'pod/' + fresh_pod)
    assert r.returncode == 0, r.stderr
    [first] = debug_containers(cluster, fresh_pod)
    assert added_caps(first) == GENERAL   # the default profile: what every command needs
    assert redirect_once(cluster, bg, fresh_pod) == 0
    r = cluster.diag('shell', 'pod/' + fresh_pod, '--', '-c', 'echo in-$((6*7))')
    assert r.returncode == 0 and 'in-42' in r.stdout, r.stdout + r.stderr
    assert [c['name'] for c in debug_containers(cluster, fresh_pod)] == [first['name']]


def test_cp_restricted_adds_only_ptrace_and_read_search_and_copies(cluster, fresh_pod, tmp_path):
    f = tmp_path / 'in.txt'
    f.write_text('restricted cp\n')
    os.chown(f, 101, 101)  # nginx's user: kept in the pod (CHOWN is in the runtime's defaults)
    r = cluster.diag('cp', str(f), 'pod/%s:/tmp/in.txt' % fresh_pod, '--profile', 'restricted')
    assert r.returncode == 0, r.stderr
    [first] = debug_containers(cluster, fresh_pod)
    assert added_caps(first) == {'SYS_PTRACE', 'DAC_READ_SEARCH'}  # no SYS_ADMIN, SYS_CHROOT
    r = cluster.diag('cp', 'pod/%s:/tmp/in.txt' % fresh_pod, str(tmp_path / 'back'))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'back').read_text() == 'restricted cp\n'
    assert os.stat(tmp_path / 'back').st_uid == 101
    assert len(debug_containers(cluster, fresh_pod)) == 1


def test_restricted_then_redir_names_net_admin_and_the_fix(cluster, bg, fresh_pod):
    r = cluster.diag('ps', 'pod/' + fresh_pod, '--profile', 'restricted')
    assert r.returncode == 0, r.stderr
    assert any(':80' in l.split()[-1] for l in r.stdout.splitlines()[1:]), r.stdout
    [first] = debug_containers(cluster, fresh_pod)
    assert added_caps(first) == {'SYS_PTRACE'}   # ps needs nothing else beyond the runtime's defaults
    r = cluster.diag('redir', 'pod/' + fresh_pod, '80:8080')
    assert r.returncode == 1, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'lacks NET_ADMIN, which redir needs' in r.stderr and first['name'] in r.stderr, r.stderr
    assert '--profile general' in r.stderr and '--new-container' in r.stderr, r.stderr
    assert len(debug_containers(cluster, fresh_pod)) == 1
    # asked for explicitly, a second one is added, with the first one's capabilities too
    assert redirect_once(cluster, bg, fresh_pod, '--new-container') == 0
    first, second = debug_containers(cluster, fresh_pod)
    assert added_caps(second) >= {'SYS_PTRACE', 'NET_ADMIN'}


def test_profile_that_lacks_what_the_command_needs_adds_nothing(cluster, fresh_pod):
    r = cluster.diag('ps', 'pod/' + fresh_pod, '--profile', 'netadmin')
    assert r.returncode == 1, r.stdout + r.stderr
    assert '--profile netadmin does not give SYS_PTRACE, which ps needs' in r.stderr, r.stderr
    assert debug_containers(cluster, fresh_pod) == []
    r = cluster.diag('ps', 'pod/' + fresh_pod, '--profile', 'admin')
    assert r.returncode == 2 and 'invalid --profile "admin"' in r.stderr, r.stderr


def add_old_manager(cluster, pod, name, caps):
    """A debug container as an older kubectl-diag made it: its own secret, the capabilities it
    gave the command of that run."""
    container = {'name': name, 'image': DEBUG_IMAGE, 'targetContainerName': pod,
                 'env': [{'name': 'KDIAG_SECRET', 'value': secrets.token_hex(16)}],
                 'securityContext': {'capabilities': {'add': caps}}}
    path = '/api/v1/namespaces/default/pods/%s/ephemeralcontainers' % pod
    obj = json.loads(cluster.ok('get', '--raw', path))
    obj['spec'].setdefault('ephemeralContainers', []).append(container)
    cluster.ok('replace', '--raw', path, '-f', '-', input=json.dumps(obj))
    wait_for(lambda: 'Tunnel on' in cluster.kubectl('logs', pod, '-c', name).stdout, 60,
             what='the manager of %s' % name)


def test_pod_with_two_managers_from_older_runs(cluster, bg, fresh_pod):
    """redir, then ps, of older runs left base (NET_ADMIN) and base-2 (NET_ADMIN and the shell's):
    every command finds one that fits, redirects stay with the oldest, nothing is added."""
    base = debug_base_name()
    add_old_manager(cluster, fresh_pod, base, ['NET_ADMIN'])
    add_old_manager(cluster, fresh_pod, base + '-2', ['NET_ADMIN', 'SYS_PTRACE', 'SYS_ADMIN', 'SYS_CHROOT'])
    r = cluster.diag('ps', 'pod/' + fresh_pod)
    assert r.returncode == 0, r.stderr
    r = cluster.diag('shell', 'pod/' + fresh_pod, '--', '-c', 'echo in-$((6*7))')
    assert r.returncode == 0 and 'in-42' in r.stdout, r.stdout + r.stderr
    assert redirect_once(cluster, bg, fresh_pod) == 0
    r = bg(cluster, 'redir', 'pod/' + fresh_pod)   # lists the ports through base-2
    r.wait_out('redirecting pod/%s:80' % fresh_pod)
    assert r.interrupt() == 0, r.err()
    assert [c['name'] for c in debug_containers(cluster, fresh_pod)] == [base, base + '-2']


@pytest.fixture
def baseline_ns(cluster):
    """A namespace that enforces Pod Security baseline, with an nginx pod web."""
    ns = 'prof-psa-%d-%d' % (os.getpid(), int(time.monotonic() * 1000) % 100000)
    cluster.ok('create', '-f', '-', input='apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n'
               '    pod-security.kubernetes.io/enforce: baseline\n' % ns)
    try:
        cluster.ok('run', 'web', '-n', ns, '--image=nginx', '--restart=Never')
        cluster.wait_running('web', ns=ns)
        yield ns
    finally:
        cluster.kubectl('delete', 'namespace', ns, '--wait=false')


def test_baseline_profile_passes_pod_security_baseline(cluster, baseline_ns):
    r = cluster.diag('ps', '-n', baseline_ns, 'pod/web')
    assert r.returncode == 1 and 'Pod Security "baseline"' in r.stderr, r.stderr
    assert '--profile baseline' in r.stderr, r.stderr
    assert not cluster.pod('web', baseline_ns)['spec'].get('ephemeralContainers')
    r = cluster.diag('manage', '-n', baseline_ns, 'pod/web', '--profile', 'baseline')
    assert r.returncode == 0, r.stderr
    [c] = cluster.pod('web', baseline_ns)['spec']['ephemeralContainers']
    assert added_caps(c) and added_caps(c) <= {'SYS_CHROOT', 'SETUID', 'SETGID', 'KILL', 'DAC_OVERRIDE', 'CHOWN',
                                               'FOWNER', 'FSETID', 'MKNOD'}, c
    # its manager runs; ps needs more than baseline gives: said, nothing added
    r = cluster.diag('ps', '-n', baseline_ns, 'pod/web')
    assert r.returncode == 1 and 'lacks SYS_PTRACE, which ps needs' in r.stderr, r.stderr
    assert len(cluster.pod('web', baseline_ns)['spec']['ephemeralContainers']) == 1


def test_ps_of_another_users_process_needs_only_sys_ptrace(cluster):
    """The table's row for ps: with SYS_PTRACE added to the runtime's default set (DAC_OVERRIDE
    among them) the manager, root, reads the sockets of a process that runs as another user."""
    name = 'prof-uid-%d' % os.getpid()
    cluster.ok('create', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
        'spec': {'restartPolicy': 'Never', 'containers': [
            {'name': 'app', 'image': 'distroless', 'securityContext': {'runAsUser': 1000, 'runAsGroup': 1000}}]}}))
    try:
        cluster.wait_running(name)
        r = cluster.diag('ps', 'pod/' + name, '--profile', 'restricted', '-o', 'json')
        assert r.returncode == 0, r.stderr
        [c] = debug_containers(cluster, name)
        assert added_caps(c) == {'SYS_PTRACE'}
        procs = json.loads(r.stdout)['processes']
        assert any(p['uid'] == 1000 and {'port': 8080, 'protocol': 'tcp'}.items() <= l.items()
                   for p in procs for l in p['listen']), procs
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_profile_names_complete(cluster):
    r = cluster.diag('__complete', 'ps', '--profile', 're')
    assert r.stdout.splitlines() == ['restricted', ':4'], r.stdout
    r = cluster.diag('__complete', 'ps', '--profile', '')
    assert r.stdout.splitlines()[:-1] == ['general', 'netadmin', 'baseline', 'restricted', 'sysadmin'], r.stdout


def test_capture_works_under_pod_security_baseline(cluster, bg, baseline_ns, tmp_path):
    """The table's baseline column: capture's NET_RAW is in the runtime's default set, so with
    --profile baseline it runs in a namespace that enforces baseline; redir then says what is missing."""
    out = str(tmp_path / 'web.pcap')
    p = bg(cluster, 'capture', '-n', baseline_ns, 'pod/web', '--profile', 'baseline', '-f', 'udp port 9999',
           '-c', '3', '-w', out)

    def done():   # send until the capture, once ready, has its 3 packets
        cluster.send_udp('web', [100], 9999, ns=baseline_ns)
        return p.proc.poll() is not None
    wait_for(done, 90, interval=0.5, what='3 packets captured')
    assert p.proc.wait(30) == 0, p.err()
    assert '3 packets captured' in p.err(), p.err()
    [c] = cluster.pod('web', baseline_ns)['spec']['ephemeralContainers']
    assert 'NET_RAW' not in added_caps(c), c
    r = cluster.diag('redir', '-n', baseline_ns, 'pod/web', '80:8080')
    assert r.returncode == 1 and 'lacks NET_ADMIN, which redir needs' in r.stderr, r.stderr
    assert len(cluster.pod('web', baseline_ns)['spec']['ephemeralContainers']) == 1
