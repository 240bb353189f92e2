"""Runtime tests: real namespaces, processes, veths, cgroups and capabilities, no API server."""
import json
import os
import re
import select
import socket
import subprocess
import threading
import time
import uuid

import pytest

import runtime
from conftest import BUSYBOX, check_nothing_left, _host_links
from e2e_common import FdExpect, recv_all

TS = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z'
# containerd's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
DEFAULT_CAPS_MASK = sum(1 << n for n in (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31))
assert DEFAULT_CAPS_MASK == 0xa80425fb


def make_pod(name, containers, ns='default', **spec):
    spec = dict(spec)
    spec['containers'] = containers
    return {'metadata': {'name': name, 'namespace': ns, 'uid': str(uuid.uuid4())}, 'spec': spec}


def ctr(name, command, image='busybox', **kw):
    c = {'name': name, 'image': image}
    if command is not None:
        c['command'] = ['sh', '-c', command]
    c.update(kw)
    return c


def wait_for(rt, pred, timeout=10.0, what='condition'):
    deadline = time.monotonic() + timeout
    while True:
        with rt.lock:
            v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(0.02)


def cstatus(pod, name, key='containerStatuses'):
    for s in pod.get('status', {}).get(key) or []:
        if s['name'] == name:
            return s
    return None


def running(rt, pod, timeout=10.0):
    wait_for(rt, lambda: pod['status'].get('phase') == 'Running' and all(
        'running' in s['state'] for s in pod['status']['containerStatuses']),
        timeout, 'pod %s running' % pod['metadata']['name'])
    return pod


def start(rt, pod, timeout=10.0):
    rt.run_pod(pod)
    return running(rt, pod, timeout)


def read_all(fds, timeout=10.0):
    out = {fd: b'' for fd in fds if fd is not None}
    open_fds = list(out)
    deadline = time.monotonic() + timeout
    while open_fds:
        left = deadline - time.monotonic()
        assert left > 0, 'exec output did not end'
        for fd in select.select(open_fds, [], [], left)[0]:
            try:
                b = os.read(fd, 65536)
            except OSError:  # EIO: pty closed
                b = b''
            if b:
                out[fd] += b
            else:
                open_fds.remove(fd)
    return out


def run(rt, pod, c, argv, stdin=None):
    e = rt.exec(pod, c, argv, False, stdin is not None)
    try:
        if stdin is not None:
            os.write(e.stdin_fd, stdin)
            os.close(e.stdin_fd)
            e.stdin_fd = None
        out = read_all([e.stdout_fd, e.stderr_fd])
        return e.wait(), out[e.stdout_fd].decode(), out[e.stderr_fd].decode()
    finally:
        e.close()


def log_text(rt, pod, c, previous=False):
    path = rt.log_path(pod, c, previous)
    assert path is not None
    with open(path) as f:
        return f.read()


def host_pid(rt, pod, c):
    with rt.lock:
        return rt._pod_of(pod).ctrs[c].hostpid


# --------------------------------------------------------------------------- pods

def test_pod_runs_with_status_ip_hostname_cgroup_hosts(rt):
    pod = start(rt, make_pod('alpha', [ctr('main', 'echo started; exec sleep 1000')]))
    st = pod['status']
    assert pod['spec']['nodeName'] == 'kubesim-node'
    assert re.fullmatch(r'10\.244\.0\.\d+', st['podIP']) and st['podIP'] != '10.244.0.1'
    assert st['podIPs'] == [{'ip': st['podIP']}]
    conds = {c['type']: c['status'] for c in st['conditions']}
    assert conds['Ready'] == 'True' and conds['ContainersReady'] == 'True'
    assert conds['PodScheduled'] == 'True' and conds['Initialized'] == 'True'
    cs = cstatus(pod, 'main')
    assert re.fullmatch(r'containerd://[0-9a-f]{64}', cs['containerID'])
    assert cs['ready'] is True and cs['started'] is True and cs['restartCount'] == 0
    assert cs['image'] == 'docker.io/library/busybox:latest'
    assert re.fullmatch(r'docker\.io/library/busybox@sha256:[0-9a-f]{64}', cs['imageID'])
    assert re.fullmatch(TS, cs['state']['running']['startedAt'])
    assert rt.events.items and set(rt.events.items) == {('default', 'alpha')}
    cid = cs['containerID'][len('containerd://'):]
    # the container's cgroup, seen from the host and from inside
    with open('/proc/%d/cgroup' % host_pid(rt, pod, 'main')) as f:
        assert cid in f.read()
    # inside, its own cgroup namespace (containerd on cgroup v2): the root is its cgroup
    code, out, _ = run(rt, pod, 'main', ['cat', '/proc/self/cgroup'])
    assert code == 0 and '0::/\n' in out
    code, out, _ = run(rt, pod, 'main', ['hostname'])
    assert (code, out) == (0, 'alpha\n')
    code, out, _ = run(rt, pod, 'main', ['cat', '/etc/hosts'])
    assert '%s\talpha\n' % st['podIP'] in out and '127.0.0.1\tlocalhost' in out
    # its own PID namespace, its own root with /proc, a private writable layer
    code, out, _ = run(rt, pod, 'main', ['sh', '-c', 'cat /proc/1/cmdline | tr "\\0" " "; ls /;'
                                         ' echo x > /bin/new && cat /bin/new'])
    assert code == 0
    assert out.startswith('sh -c echo started; exec sleep 1000') or out.startswith('sleep 1000')
    assert 'bin\n' in out and 'proc\n' in out and out.endswith('x\n')
    assert not os.path.exists(os.path.join(rt.images_json, '..', 'busybox', 'bin', 'new'))
    assert 'started' in log_text(rt, pod, 'main')


def test_two_pods_talk_over_pod_ips_only_inside_the_node_namespace(rt):
    web = start(rt, make_pod('web', [ctr('httpd', 'mkdir /www && echo hello-from-web > /www/index.html'
                                              ' && exec httpd -f -v -p 80 -h /www')]))
    client = start(rt, make_pod('client', [ctr('c', 'exec sleep 1000')]))
    ip = web['status']['podIP']
    assert ip != client['status']['podIP']
    code, out, err = run(rt, client, 'c', ['wget', '-q', '-O', '-', 'http://%s/' % ip])
    assert (code, out) == (0, 'hello-from-web\n'), err
    # /etc/hosts of the first pod got the second pod, and names resolve through it
    code, out, err = run(rt, web, 'httpd', ['cat', '/etc/hosts'])
    assert '%s\tclient' % client['status']['podIP'] in out
    code, out, err = run(rt, client, 'c', ['wget', '-q', '-O', '-', 'http://web/'])
    assert (code, out) == (0, 'hello-from-web\n'), err
    # the node namespace reaches the pod; the host has neither an address nor a route there
    node = rt.node_netns
    r = subprocess.run(['ip', 'netns', 'exec', node, BUSYBOX, 'ping', '-c', '1', '-W', '2', ip],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '10.244.' not in subprocess.run(['ip', '-o', 'addr'], capture_output=True,
                                           text=True).stdout
    routes = subprocess.run(['ip', 'route', 'show', 'table', 'all'], capture_output=True,
                            text=True).stdout
    assert '10.244.' not in routes
    links = subprocess.run(['ip', '-n', node, '-o', 'link', 'show', 'master', 'kbr0'],
                           capture_output=True, text=True).stdout
    assert len(links.strip().splitlines()) == 2
    assert 'GET / HTTP' in log_text(rt, web, 'httpd') or 'response:200' in log_text(rt, web, 'httpd')


def test_shared_process_namespace_has_pause_as_pid_1(rt):
    pod = start(rt, make_pod('shared', [ctr('a', 'exec sleep 1001'), ctr('b', 'exec sleep 1002')],
                             shareProcessNamespace=True))
    code, out, _ = run(rt, pod, 'a', ['cat', '/proc/1/comm'])
    assert (code, out) == (0, 'pause\n')
    code, out, _ = run(rt, pod, 'b', ['ps', '-o', 'pid,args'])
    assert 'sleep 1001' in out and 'sleep 1002' in out
    # a container's own root is not the pause's: /proc/1/root is empty
    code, out, _ = run(rt, pod, 'a', ['ls', '/proc/1/root/'])
    assert code == 0 and out == ''


def test_env_args_working_dir_and_logs_format(rt):
    pod = make_pod('envy', [{
        'name': 'c', 'image': 'docker.io/library/busybox:latest',
        'command': ['sh', '-c'],
        'args': ['echo "$FOO|$(FOO)|$BAR|$IMAGE_VAR|$HOSTNAME|$MYPOD|$MYIP"; pwd; echo oops >&2;'
                 ' printf partial'],
        'env': [{'name': 'FOO', 'value': 'foo'}, {'name': 'BAR', 'value': 'x-$(FOO)-$$(FOO)'},
                {'name': 'MYPOD', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
                {'name': 'MYIP', 'valueFrom': {'fieldRef': {'fieldPath': 'status.podIP'}}}],
        'workingDir': '/data/work'}], restartPolicy='Never')
    rt.run_pod(pod)
    wait_for(rt, lambda: pod['status'].get('phase') == 'Succeeded', 10, 'Succeeded')
    cs = cstatus(pod, 'c')
    t = cs['state']['terminated']
    assert t['exitCode'] == 0 and t['reason'] == 'Completed'
    lines = log_text(rt, pod, 'c').splitlines()
    recs = [re.fullmatch(r'(%s) (stdout|stderr) (.*)' % TS, line) for line in lines]
    assert all(recs), lines
    got = {(m.group(3), m.group(4)) for m in recs}
    ip = pod['status']['podIP']
    assert ('stdout', 'foo|foo|x-foo-$(FOO)|from-image|envy|envy|%s' % ip) in got
    assert ('stdout', '/data/work') in got and ('stderr', 'oops') in got
    assert ('stdout', 'partial') in got
    assert rt.log_path(pod, 'c', previous=True) is None
    with pytest.raises(KeyError):
        rt.log_path(pod, 'nope')


def test_log_rotation_at_max_size(rt):
    """At log_max_size the log becomes 0.log.<UTC time> and a new 0.log starts; log_path is the
    current file, which has only the newest records."""
    rt.log_max_size = 4096
    pod = start(rt, make_pod('chatty', [ctr('c', 'i=0; while [ $i -lt 1000 ]; do echo "line $i"; i=$((i+1)); done;'
                                                  ' exec sleep 1000')]))
    wait_for(rt, lambda: 'stdout line 999\n' in log_text(rt, pod, 'c'), 10, 'the last line')
    path = rt.log_path(pod, 'c')
    files = sorted(os.listdir(os.path.dirname(path)))
    assert files[0] == '0.log' and 1 <= len(files) - 1 <= 4, files
    assert all(re.fullmatch(r'0\.log\.\d{8}-\d{6}', f) for f in files[1:]), files
    assert os.path.getsize(path) < 4096
    text = log_text(rt, pod, 'c')
    assert ' line 0\n' not in text
    numbers = [int(n) for n in re.findall(r' line (\d+)$', text, re.M)]
    assert numbers == list(range(numbers[0], 1000))


def test_restart_always_counts_and_keeps_last_state(rt):
    pod = make_pod('crashy', [ctr('c', 'echo run-$RANDOM; sleep 0.2; exit 3')])
    rt.run_pod(pod)
    wait_for(rt, lambda: (cstatus(pod, 'c') or {}).get('restartCount', 0) >= 2, 20, 'restarts')
    cs = wait_for(rt, lambda: (lambda s: s if s.get('lastState') else None)(
        cstatus(pod, 'c')), 5, 'lastState')
    last = cs['lastState']['terminated']
    assert last['exitCode'] == 3 and last['reason'] == 'Error'
    assert re.fullmatch(TS, last['finishedAt'])
    assert last['containerID'] != cs.get('containerID') or 'waiting' in cs['state']
    # a restarted container has a previous log
    wait_for(rt, lambda: 'running' in cstatus(pod, 'c')['state'], 10, 'running again')
    assert 'run-' in log_text(rt, pod, 'c', previous=True)
    # crash loop: the state between runs is CrashLoopBackOff
    wait_for(rt, lambda: cstatus(pod, 'c')['state'].get('waiting', {}).get('reason')
             == 'CrashLoopBackOff', 10, 'CrashLoopBackOff')
    assert pod['status']['phase'] == 'Running'


def test_restart_never_failed_phase_and_start_error(rt):
    pod = make_pod('fails', [ctr('c', 'exit 7')], restartPolicy='Never')
    rt.run_pod(pod)
    wait_for(rt, lambda: pod['status'].get('phase') == 'Failed', 10, 'Failed')
    assert cstatus(pod, 'c')['state']['terminated']['exitCode'] == 7
    pod2 = make_pod('nocmd', [{'name': 'c', 'image': 'busybox', 'command': ['/no/such']}],
                    restartPolicy='Never')
    rt.run_pod(pod2)
    wait_for(rt, lambda: pod2['status'].get('phase') == 'Failed', 10, 'Failed')
    t = cstatus(pod2, 'c')['state']['terminated']
    assert t['reason'] == 'StartError' and t['exitCode'] == 128
    assert 'exec: "/no/such": executable file not found' in t['message']


def test_unknown_image_err_image_pull_then_backoff(rt):
    pod = make_pod('ghost', [ctr('c', None, image='nosuchimage:1.0')])
    rt.run_pod(pod)
    wait_for(rt, lambda: (cstatus(pod, 'c') or {}).get('state', {}).get('waiting', {})
             .get('reason') == 'ErrImagePull', 5, 'ErrImagePull')
    assert 'docker.io/library/nosuchimage:1.0' in cstatus(pod, 'c')['state']['waiting']['message']
    wait_for(rt, lambda: cstatus(pod, 'c')['state']['waiting']['reason'] == 'ImagePullBackOff',
             5, 'ImagePullBackOff')
    assert pod['status']['phase'] == 'Pending'
    assert rt.log_path(pod, 'c') is None


# --------------------------------------------------------------------------- exec

def test_exec_exit_code_stdin_env_errors(rt):
    pod = start(rt, make_pod('ex', [ctr('main', 'exec sleep 1000',
                                        env=[{'name': 'HELLO', 'value': 'world'}],
                                        workingDir='/tmp')]))
    code, out, err = run(rt, pod, 'main', ['sh', '-c', 'echo $HELLO; pwd; echo e >&2; exit 42'])
    assert (code, out, err) == (42, 'world\n/tmp\n', 'e\n')
    code, out, _ = run(rt, pod, 'main', ['sh', '-c', 'tr a-z A-Z'], stdin=b'piped text\n')
    assert (code, out) == (0, 'PIPED TEXT\n')
    code, out, _ = run(rt, pod, 'main', ['sh', '-c', 'kill -9 $$'])
    assert code == 137
    with pytest.raises(KeyError):
        rt.exec(pod, 'nope', ['true'], False, False)
    with pytest.raises(FileNotFoundError):
        rt.exec(pod, 'main', ['/no/such/binary'], False, False)
    with pytest.raises(FileNotFoundError):
        rt.exec(pod, 'main', ['nosuchcommand'], False, False)
    with pytest.raises(PermissionError):
        rt.exec(pod, 'main', ['/etc/passwd'], False, False)


def test_exec_tty_and_resize(rt):
    pod = start(rt, make_pod('tty', [ctr('main', 'exec sleep 1000')]))
    e = rt.exec(pod, 'main', ['sh', '-c', 'stty size; read x; stty size; echo T=$TERM; read y;'
                              ' stty size; test -t 0 && exit 5'], True, True, size=(90, 20))
    try:
        assert e.stdin_fd == e.stdout_fd and e.stderr_fd is None
        expect = FdExpect(e.stdout_fd).expect
        expect(b'20 90')  # the size given at start, before the command ran
        e.resize(100, 30)
        os.write(e.stdin_fd, b'a\n')
        expect(b'30 100')
        expect(b'T=xterm')
        e.resize(132, 43)
        os.write(e.stdin_fd, b'b\n')
        expect(b'43 132')
        assert e.wait() == 5
    finally:
        e.close()


def test_exec_kill(rt):
    pod = start(rt, make_pod('killme', [ctr('main', 'exec sleep 1000')]))
    e = rt.exec(pod, 'main', ['sleep', '1000'], False, False)
    t0 = time.monotonic()
    e.kill()
    assert e.wait() == 137 and time.monotonic() - t0 < 10
    e.close()


# --------------------------------------------------------------------------- connect

def test_connect_listening_refused_and_200_concurrent(rt):
    pod = start(rt, make_pod('srv', [ctr('nc', 'exec nc -ll -p 7000 -e cat')]))
    deadline = time.monotonic() + 5
    while True:
        try:
            s = rt.connect(pod, 7000)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    s.sendall(b'ping\n')
    assert s.recv(5) == b'ping\n'
    s.close()
    with pytest.raises(ConnectionRefusedError):
        rt.connect(pod, 7001)
    # the host's own 127.0.0.1:7000 is not the pod's
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', 7000), timeout=2).close()
    # 200 concurrent connects. busybox's servers listen with a backlog of 9, so the server here
    # is the test's own socket, made in the pod's netns independently of the runtime's code.
    server = _listen_in_netns(host_pid(rt, pod, 'nc'), 7100)
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            threading.Thread(target=lambda c: (c.sendall(c.recv(16) * 4096), c.close()),
                             args=(conn,), daemon=True).start()
    srv_thread = threading.Thread(target=serve, daemon=True)
    srv_thread.start()
    results, errors = [], []
    host_ns = os.readlink('/proc/thread-self/ns/net')

    def one(i):
        try:
            c = rt.connect(pod, 7100)
            assert os.readlink('/proc/thread-self/ns/net') == host_ns  # the thread came back
            c.settimeout(20)
            token = b'%016d' % i
            c.sendall(token)
            data = recv_all(c)
            c.close()
            results.append(data == token * 4096)
        except Exception as ex:  # collected and asserted below
            errors.append(ex)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 40
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
    finally:
        stop.set()
        srv_thread.join()
        server.close()
    assert errors == [] and len(results) == 200 and all(results)


def _listen_in_netns(pid, port):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}

    def make():  # this thread moves into the pod's netns and ends there
        fd = os.open('/proc/%d/ns/net' % pid, os.O_RDONLY)
        assert libc.setns(fd, 0x40000000) == 0
        os.close(fd)
        s = socket.socket()
        s.bind(('127.0.0.1', port))
        s.listen(512)
        out['s'] = s
    t = threading.Thread(target=make)
    t.start()
    t.join()
    return out['s']


# --------------------------------------------------------------------------- ephemeral / caps

def test_ephemeral_container_with_target_sees_its_processes(rt):
    pod = start(rt, make_pod('tgt', [ctr('app', 'exec sleep 31337'), ctr('side', 'exec sleep 4242')]))
    ec = {'name': 'dbg-tools-0123abcd', 'image': 'ghcr.io/kdiag-c/kdiag-manager:0.1.0',
          'command': ['sh', '-c', 'ps -o pid,args; hostname; grep ^0:: /proc/1/cgroup'],
          'targetContainerName': 'app'}
    pod['spec'].setdefault('ephemeralContainers', []).append(ec)
    rt.add_ephemeral_container(pod, ec)
    assert cstatus(pod, ec['name'], 'ephemeralContainerStatuses') is not None
    wait_for(rt, lambda: 'terminated' in (cstatus(pod, ec['name'], 'ephemeralContainerStatuses')
                                          or {}).get('state', {}), 10, 'ephemeral terminated')
    t = cstatus(pod, ec['name'], 'ephemeralContainerStatuses')['state']['terminated']
    assert t['exitCode'] == 0 and t['reason'] == 'Completed'
    log = log_text(rt, pod, ec['name'])
    assert 'sleep 31337' in log and 'sleep 4242' not in log
    # the target's cgroup, seen from the ephemeral container's cgroup namespace (a sibling)
    app_id = cstatus(pod, 'app')['containerID'][len('containerd://'):]
    assert 'stdout 0::/../%s\n' % app_id in log
    assert 'stdout tgt\n' in log
    # without a target, and no shared namespace: its own PID namespace
    ec2 = {'name': 'dbg2', 'image': 'busybox', 'command': ['sh', '-c', 'ps -o args; sleep 1000']}
    pod['spec']['ephemeralContainers'].append(ec2)
    rt.add_ephemeral_container(pod, ec2)
    wait_for(rt, lambda: 'running' in (cstatus(pod, 'dbg2', 'ephemeralContainerStatuses')
                                       or {}).get('state', {}), 10, 'dbg2 running')
    code, out, _ = run(rt, pod, 'dbg2', ['ps', '-o', 'args'])
    assert 'sleep 31337' not in out and 'sleep 1000' in out
    # its network is the pod's
    code, out, _ = run(rt, pod, 'dbg2', ['ip', '-o', '-4', 'addr', 'show', 'eth0'])
    assert pod['status']['podIP'] + '/24' in out


def _caps_of(rt, pod, c):
    code, out, _ = run(rt, pod, c, ['cat', '/proc/self/status'])
    vals = dict(line.split(':\t') for line in out.splitlines() if line.startswith('Cap'))
    return {k: int(v, 16) for k, v in vals.items()}


def test_capabilities_really_applied(rt):
    pod = start(rt, make_pod('caps', [ctr('app', 'exec sleep 1000')]))
    caps = _caps_of(rt, pod, 'app')
    assert caps['CapEff'] == caps['CapPrm'] == caps['CapBnd'] == DEFAULT_CAPS_MASK
    assert caps['CapInh'] == caps['CapAmb'] == 0  # containerd sets no inheritable capabilities
    with open('/proc/%d/status' % host_pid(rt, pod, 'app')) as f:  # the container's main process too
        main = {k: int(v, 16) for k, v in (line.split(':\t') for line in f if line.startswith('Cap'))}
    assert main == caps

    def eph(name, sc, cmd):
        ec = {'name': name, 'image': 'tools', 'command': ['sh', '-c', cmd],
              'targetContainerName': 'app', 'securityContext': sc}
        pod['spec'].setdefault('ephemeralContainers', []).append(ec)
        rt.add_ephemeral_container(pod, ec)
        wait_for(rt, lambda: 'terminated' in (cstatus(pod, name, 'ephemeralContainerStatuses')
                                              or {}).get('state', {}), 10, name)
        return (cstatus(pod, name, 'ephemeralContainerStatuses')['state']['terminated']['exitCode'],
                log_text(rt, pod, name))
    nft = '(nft add table inet kubesim_t && nft list tables) || echo NFT-FAILED; '
    link = '(ip link add kst0 type bridge && ip -o link show kst0) || echo LINK-FAILED; '
    show = 'grep Cap /proc/self/status'
    code, log = eph('nonet', {}, nft + link + show)
    assert 'NFT-FAILED' in log and 'LINK-FAILED' in log, log
    assert 'Could not process rule: Operation not permitted' in log
    assert 'RTNETLINK answers: Operation not permitted' in log
    assert 'CapEff:\t%016x' % DEFAULT_CAPS_MASK in log
    code, log = eph('withnet', {'capabilities': {'add': ['NET_ADMIN']}}, nft + link + show)
    assert 'FAILED' not in log and 'table inet kubesim_t' in log and 'kst0' in log, log
    assert 'CapEff:\t%016x' % (DEFAULT_CAPS_MASK | 1 << 12) in log
    code, log = eph('dropped', {'capabilities': {'add': ['NET_ADMIN'], 'drop': ['NET_ADMIN',
                                                                                 'CHOWN']}},
                    'chown 1 /tmp || echo CHOWN-FAILED; ' + nft + show)
    assert 'CHOWN-FAILED' in log and 'NFT-FAILED' in log, log
    assert 'CapEff:\t%016x' % (DEFAULT_CAPS_MASK & ~1) in log
    code, log = eph('priv', {'privileged': True}, show)
    with open('/proc/self/status') as f:
        mine = [line.split()[1] for line in f if line.startswith('CapBnd')][0]
    assert 'CapEff:\t%s' % mine in log
    # exec into a container runs with the container's capabilities
    code, out, err = run(rt, pod, 'app', ['ip', 'link', 'add', 'kst1', 'type', 'bridge'])
    assert code != 0 and 'Operation not permitted' in err
    # the pod's netns has the table/link added by 'withnet' only, the node and host have none
    ours = subprocess.run(['nft', 'list', 'tables'], capture_output=True, text=True).stdout
    assert 'kubesim_t' not in ours


# --------------------------------------------------------------------------- delete / teardown

def test_delete_with_grace(rt):
    polite = start(rt, make_pod('polite', [ctr('c', 'trap "echo got-term; exit 0" TERM; '
                                              'while true; do sleep 0.1; done')]))
    stubborn = start(rt, make_pod('stubborn', [ctr('c', 'exec sleep 1000')]))
    pids = [host_pid(rt, polite, 'c'), host_pid(rt, stubborn, 'c')]
    polite_line = '%s\tpolite\n' % polite['status']['podIP']
    assert polite_line in run(rt, stubborn, 'c', ['cat', '/etc/hosts'])[1]
    path = rt.log_path(polite, 'c')
    t0 = time.monotonic()
    seen, exits = [], []

    def note(ns, n):
        seen.append(n)
        st = cstatus(polite, 'c')['state']
        if n == 'polite' and 'terminated' in st:
            exits.append(st['terminated']['exitCode'])
    rt.notify = note
    rt.delete_pod(polite, 30)
    assert time.monotonic() - t0 < 10  # exited on SIGTERM, long before the grace period
    assert exits == [0]  # by its trap (exit 0), not killed (137)
    assert not os.path.exists(path)
    assert polite_line not in run(rt, stubborn, 'c', ['cat', '/etc/hosts'])[1]
    t0 = time.monotonic()
    rt.delete_pod(stubborn, 1)
    took = time.monotonic() - t0
    assert 0.9 < took < 10  # PID 1 without a handler ignores SIGTERM: killed after the grace
    for pid in pids:
        assert not os.path.exists('/proc/%d' % pid)
    n = len(seen)
    time.sleep(0.3)
    assert len(seen) == n  # nothing after delete_pod returned
    with pytest.raises(KeyError):
        rt.exec(polite, 'c', ['true'], False, False)
    with pytest.raises(ConnectionRefusedError):
        rt.connect(polite, 80)
    assert rt.log_path(polite, 'c') is None
    # nothing of the pods stays in the node namespace either
    links = subprocess.run(['ip', '-n', rt.node_netns, '-o', 'link', 'show', 'master', 'kbr0'],
                           capture_output=True, text=True).stdout
    assert links.strip() == ''
    # the IPs are free again; new pods work
    start(rt, make_pod('again', [ctr('c', 'exec sleep 1000')]))


@pytest.mark.parametrize('cgroups', [True, False])
def test_teardown_from_a_fresh_process_after_a_crash(images, tmp_path, monkeypatch, cgroups):
    """The API server process dies hard; `kubesim down` (a new process) removes everything."""
    if not cgroups:
        monkeypatch.setenv('KUBESIM_NO_CGROUPS', '1')
    state = str(tmp_path / 'state')
    links = _host_links()
    script = r'''
import json, os, sys, time
sys.path.insert(0, %r)
import runtime
rt = runtime.Runtime(%r, %r, lambda ns, n: None)
rt.setup()
pods = []
for i, share in enumerate((False, True)):
    p = {'metadata': {'name': 'p%%d' %% i, 'namespace': 'default', 'uid': 'u%%d' %% i},
         'spec': {'shareProcessNamespace': share,
                  'containers': [{'name': 'c', 'image': 'busybox', 'command': ['sleep', '1000']}]}}
    rt.run_pod(p)
    pods.append(p)
deadline = time.time() + 10
while not all(p['status'].get('phase') == 'Running' for p in pods):
    assert time.time() < deadline
    time.sleep(0.05)
e = rt.exec(pods[0], 'c', ['sleep', '1000'], False, False)
assert (rt.cgroup_root is None) == bool(os.environ.get('KUBESIM_NO_CGROUPS'))
print(json.dumps({'netns': rt.node_netns, 'cgroup': rt.cgroup_root}), flush=True)
time.sleep(1000)
''' % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), state, images)
    proc = subprocess.Popen(['/usr/bin/python3', '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, 'child runtime did not start'
        info = json.loads(line)
        info['links'] = links
        assert os.path.exists('/run/netns/' + info['netns'])
    finally:
        proc.kill()
        proc.wait()
    runtime.Runtime(state, images, lambda ns, n: None).teardown()
    check_nothing_left(state, info)
    runtime.Runtime(state, images, lambda ns, n: None).teardown()  # idempotent


def test_image_name_normalization():
    assert runtime.normalize_image('docker.io/library/nginx:latest') == 'nginx'
    assert runtime.normalize_image('docker.io/nginx') == 'nginx'
    assert runtime.normalize_image('nginx:latest') == 'nginx'
    assert runtime.normalize_image('ghcr.io/kdiag-c/kdiag-manager:0.1.0') == \
        'ghcr.io/kdiag-c/kdiag-manager:0.1.0'
    assert runtime.canonical_image('nginx') == 'docker.io/library/nginx:latest'
    assert runtime.canonical_image('ghcr.io/kdiag-c/kdiag-manager:0.1.0') == \
        'ghcr.io/kdiag-c/kdiag-manager:0.1.0'
    assert runtime.resolve_caps({'privileged': True}) is None
    assert runtime.resolve_caps({'capabilities': {'drop': ['ALL'], 'add': ['NET_ADMIN']}}) == [12]
    with pytest.raises(ValueError, match='CAP_FOO'):
        runtime.resolve_caps({'capabilities': {'add': ['FOO']}})


def test_ephemeral_status_goes_waiting_running_terminated(rt):
    pod = start(rt, make_pod('eph', [ctr('app', 'exec sleep 1000')]))
    seen = []

    def note(ns, name):
        with rt.lock:
            s = cstatus(pod, 'dbg', 'ephemeralContainerStatuses')
            if s:
                state = next(iter(s['state']))
                if not seen or seen[-1] != state:
                    seen.append(state)
    rt.notify = note
    ec = {'name': 'dbg', 'image': 'busybox', 'command': ['sh', '-c', 'sleep 0.3; exit 4'],
          'targetContainerName': 'app'}
    pod['spec'].setdefault('ephemeralContainers', []).append(ec)
    rt.add_ephemeral_container(pod, ec)
    wait_for(rt, lambda: 'terminated' in cstatus(pod, 'dbg', 'ephemeralContainerStatuses')['state'],
             10, 'terminated')
    assert seen == ['waiting', 'running', 'terminated']
    t = cstatus(pod, 'dbg', 'ephemeralContainerStatuses')['state']['terminated']
    assert t['exitCode'] == 4 and t['reason'] == 'Error'
    assert re.fullmatch(r'containerd://[0-9a-f]{64}',
                        cstatus(pod, 'dbg', 'ephemeralContainerStatuses')['containerID'])
    # ephemeral containers never restart and never count for the pod's readiness
    time.sleep(0.5)
    assert cstatus(pod, 'dbg', 'ephemeralContainerStatuses')['restartCount'] == 0
    assert pod['status']['phase'] == 'Running'
    assert {c['type']: c['status'] for c in pod['status']['conditions']}['Ready'] == 'True'
    # an unknown image in an ephemeral container
    ec2 = {'name': 'dbg-bad', 'image': 'ghcr.io/nobody/nothing:1', 'targetContainerName': 'app'}
    pod['spec']['ephemeralContainers'].append(ec2)
    rt.add_ephemeral_container(pod, ec2)
    wait_for(rt, lambda: cstatus(pod, 'dbg-bad', 'ephemeralContainerStatuses')['state']
             .get('waiting', {}).get('reason') == 'ErrImagePull', 5, 'ErrImagePull')


def test_user_stdin_tty_and_read_only_root(rt):
    pod = start(rt, make_pod('misc', [
        ctr('nobody', 'exec sleep 1000', securityContext={'runAsUser': 65534, 'runAsGroup': 65534}),
        # stdin: true keeps stdin open (a shell waits); tty: true gives it a terminal
        {'name': 'shell', 'image': 'busybox', 'command': ['sh'], 'stdin': True, 'tty': True},
        ctr('ro', 'echo x > /etc/x || echo RO-OK; exec sleep 1000', workingDir='/made/for/me',
            securityContext={'readOnlyRootFilesystem': True}),
    ]))
    code, out, _ = run(rt, pod, 'nobody', ['sh', '-c', 'id -u; id -g; grep CapEff /proc/self/status'])
    assert out == '65534\n65534\nCapEff:\t0000000000000000\n'
    code, out, _ = run(rt, pod, 'shell', ['sh', '-c', 'ls -l /proc/1/fd/0; tty < /proc/1/fd/0'])
    assert '/dev/pts/' in out or 'pts' in out, out
    time.sleep(0.3)
    assert 'running' in cstatus(pod, 'shell')['state']  # did not read EOF and exit
    code, out, _ = run(rt, pod, 'ro', ['pwd'])
    assert out == '/made/for/me\n'
    assert 'RO-OK' in log_text(rt, pod, 'ro')


def test_without_cgroups(images, monkeypatch):
    """Where no cgroup2 is writable the runtime still works and still cleans up everything."""
    monkeypatch.setenv('KUBESIM_NO_CGROUPS', '1')
    import tempfile
    import shutil
    state = tempfile.mkdtemp(prefix='kubesim-rt-test-%d-' % os.getpid())
    links = _host_links()
    r = runtime.Runtime(state, images, lambda ns, n: None)
    info = None
    try:
        r.setup()
        info = {'netns': r.node_netns, 'cgroup': None, 'links': links}
        assert r.cgroup_root is None
        a = start(r, make_pod('a', [ctr('c', 'exec sleep 1000')]))
        b = start(r, make_pod('b', [ctr('x', 'exec sleep 1001'), ctr('y', 'sleep 1002 & wait')],
                              shareProcessNamespace=True))
        code, out, _ = run(r, b, 'x', ['ps', '-o', 'args'])
        assert 'sleep 1002' in out and '/pause' in out
        e = r.exec(a, 'c', ['sleep', '1000'], False, False)  # left running on purpose
        r.delete_pod(a, 0.5)
        assert e.wait() == 137
        e.close()
        r.exec(b, 'y', ['sleep', '1003'], False, False).close()  # left for teardown
    finally:
        r.teardown()
    if info:
        check_nothing_left(state, info)
    shutil.rmtree(state, ignore_errors=True)
