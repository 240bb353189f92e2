"""kubectl-diag ps, shell, list, version and the actionable errors, through the real kubectl on
the simulated cluster."""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import CLI, error_lines, wait_for


def test_ps_lists_nginx_listener(cluster):
    r = cluster.diag('ps', '-l', 'app=nginx')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ['PID', 'PPID', 'NAME', 'LISTEN']
    assert any(':80' in l.split()[-1] for l in lines[1:]), r.stdout
    # the manager does not list itself
    assert 'kdiag-manager' not in r.stdout


def test_a_bare_pod_name_as_kubectl_takes_it(cluster):
    """`kubectl diag ps nginx`, `exec distroless -- ...`, as `kubectl exec NAME` (was: a usage error
    that said to write pod/NAME)."""
    r = cluster.diag('ps', 'nginx')
    assert r.returncode == 0, r.stderr
    assert any(':80' in l.split()[-1] for l in r.stdout.splitlines()[1:]), r.stdout
    r = cluster.diag('exec', '--tools', 'distroless', '--', 'hostname')
    assert (r.returncode, r.stdout) == (0, 'distroless\n'), r.stderr
    r = cluster.diag('ps', 'nginx', 'curl')
    assert r.returncode == 2
    assert error_lines(r.stderr) == ["error: more than one pod given (nginx, curl): 'ps' works on one pod"]


def test_kubectl_verbosity_is_refused_not_taken_for_a_pod(cluster):
    """kubectl's `-v 6` and `--v=6`: the 6 was a bare pod name (ps looked for pod/6 and exited 1;
    logs followed it, waiting for it to appear)."""
    for args, said in ((['ps', '-v', '6'], '"-v 6"'), (['logs', 'nginx', '--verbose', '6'], '"--verbose 6"')):
        r = cluster.diag(*args, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert error_lines(r.stderr) == ['error: flag %s takes no value (got %s): write -v, or -vv for more'
                                         % (args[-2], said)], r.stderr
    r = cluster.diag('ps', '--v=6', 'nginx')
    assert r.returncode == 2 and "kubectl diag's -v takes no level: write -v, or -vv" in r.stderr, r.stderr


def test_ps_json_schema(cluster):
    r = cluster.diag('ps', 'pod/nginx', '-o', 'json')
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc['pod'] == 'nginx' and doc['namespace'] == 'default' and doc['container'] == 'nginx'
    listeners = [a for p in doc['processes'] for a in p['listen']]
    assert {'port': 80, 'protocol': 'tcp'}.items() <= listeners[0].items(), listeners
    for p in doc['processes']:
        assert set(p) == {'pid', 'ppid', 'name', 'cmdline', 'uid', 'state', 'rssBytes', 'startTime',
                          'listen', 'bound'}


def test_ps_wide(cluster):
    r = cluster.diag('ps', '--pod', 'nginx', '-o', 'wide')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ['PID', 'PPID', 'NAME', 'LISTEN', 'USER', 'RSS', 'STATE',
                                                'CMDLINE']
    assert 'httpd' in r.stdout


def test_shell_top_in_distroless_shows_its_binary(cluster):
    r = cluster.diag('shell', 'pod/distroless', '--', '-c', 'ls /; top -n 1')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'hello-server' in r.stdout          # ls / of the distroless image
    assert '/hello-server' in r.stdout         # its process in top
    assert 'kdiag-manager' not in r.stdout.split('Mem:')[0]  # ls / shows the target's root


def test_shell_exit_code_is_the_remote_one(cluster):
    r = cluster.diag('shell', '-l', 'app=distroless', '--', '-c', 'exit 7')
    assert r.returncode == 7, r.stdout + r.stderr


def test_shell_stdin(cluster):
    r = cluster.diag('shell', 'pod/distroless', input='echo piped-$((6*7))\nexit 3\n')
    assert r.returncode == 3, r.stderr
    assert 'piped-42' in r.stdout


def test_shell_takes_kubectl_exec_it(cluster):
    """`shell -it`, as `kubectl exec -it POD -- sh` is typed: stdin forwarded, a terminal only when
    stdin is one (was: "flag --tty belongs to 'exec'")."""
    r = cluster.diag('shell', '-it', 'distroless', input='echo piped-$((6*7))\nexit 3\n')
    assert (r.returncode, r.stdout) == (3, 'piped-42\n'), r.stderr
    assert error_lines(r.stderr) == ['warning: --tty: stdin is not a terminal; running without one']
    r = cluster.diag('shell', '-i', 'pod/distroless', input='exit 4\n')
    assert (r.returncode, r.stderr) == (4, ''), r.stderr
    # and its --help says so (it named no flag of its own)
    assert '  -it, -i, --tty ' in cluster.diag('shell', '--help').stdout


def test_list_shows_debug_containers(cluster):
    assert cluster.diag('ps', 'pod/distroless').returncode == 0
    r = cluster.diag('list')
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in r.stdout.splitlines()]
    assert rows[0] == ['POD', 'CONTAINER', 'IMAGE', 'STATE', 'AGE']
    mine = [row for row in rows[1:] if row[0] == 'distroless']
    assert mine and mine[0][1].startswith('dbg-tools-') and mine[0][3] == 'Running', r.stdout
    # one pod, as ps and exec take it: pod/NAME or the bare NAME (was: unexpected argument)
    for pod in ('pod/distroless', 'distroless'):
        r = cluster.diag('list', pod)
        assert r.returncode == 0, r.stderr
        assert {row.split()[0] for row in r.stdout.splitlines()[1:]} == {'distroless'}, r.stdout


def test_list_pod_column_is_as_wide_as_the_longest_name(cluster, label):
    """list's POD column was 32 wide: a longer name pushed its row's CONTAINER, IMAGE, ... right of
    their headers, and short names left a wide gap. It is as wide as the longest name shown."""
    long_name, short_name = 'a-pod-whose-name-is-longer-than-32-%d' % os.getpid(), 'p%d' % os.getpid()
    cluster.run_pods(label, [long_name, short_name])
    for pod in (long_name, short_name):
        assert cluster.diag('ps', pod).returncode == 0
    r = cluster.diag('list', '-l', 'app=' + label)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sorted(l.split()[0] for l in lines[1:]) == sorted([long_name, short_name]), r.stdout
    starts = [[m.start() for m in re.finditer(r'\S+', l)] for l in lines]
    assert all(s == starts[0] for s in starts[1:]), r.stdout
    assert lines[0].index('CONTAINER') == len(long_name) + 1, r.stdout


def test_list_columns_are_as_wide_as_their_longest_value(cluster, label):
    """CONTAINER (24), IMAGE (44) and STATE (12) had fixed widths: a longer debug image name or state
    (ImagePullBackOff) pushed the rest of its row right of the headers. Every column is as wide as
    its longest value."""
    image = 'registry.example.com/a/very/long/path/kdiag-manager:0.1.0-something'
    ok, long_image = 'ok-%d' % os.getpid(), 'long-image-%d' % os.getpid()
    cluster.run_pods(label, [ok, long_image])
    assert cluster.diag('ps', ok).returncode == 0
    r = cluster.diag('ps', long_image, '--dbg-image', image, '--timeout', '60s', timeout=90)
    assert r.returncode == 1 and 'cannot pull the debug image ' + image in r.stderr, r.stderr  # it stays, waiting
    r = cluster.diag('list', '-l', 'app=' + label)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sorted(l.split()[0] for l in lines[1:]) == sorted([ok, long_image]), r.stdout
    assert [l.split()[2] for l in lines[1:] if l.startswith(long_image)] == [image], r.stdout
    starts = [[m.start() for m in re.finditer(r'\S+', l)] for l in lines]
    assert all(s == starts[0] for s in starts[1:]), r.stdout
    assert lines[0].index('STATE') == lines[0].index('IMAGE') + len(image) + 1, r.stdout


def test_list_all_namespaces(cluster):
    """list -A, as kubectl get -A: the debug containers of every namespace, NAMESPACE first."""
    ns = 'list-all-namespaces-%d' % os.getpid()  # longer than the NAMESPACE column was (20)
    cluster.ok('create', 'namespace', ns)
    try:
        cluster.ok('run', 'web', '-n', ns, '--image=nginx', '--restart=Never')
        cluster.wait_running('web', ns=ns)
        assert cluster.diag('ps', '-n', ns, 'pod/web').returncode == 0
        assert cluster.diag('ps', 'pod/distroless').returncode == 0
        r = cluster.diag('list', '-A')
        assert r.returncode == 0, r.stderr
        rows = [l.split() for l in r.stdout.splitlines()]
        assert rows[0] == ['NAMESPACE', 'POD', 'CONTAINER', 'IMAGE', 'STATE', 'AGE']
        assert {(row[0], row[1]) for row in rows[1:]} >= {(ns, 'web'), ('default', 'distroless')}, r.stdout
        # the columns line up, as kubectl get -A's: each row's POD under the header's
        lines = r.stdout.splitlines()
        col = lines[0].index('POD')
        assert all(l[:col].rstrip() == l.split()[0] and l[col - 1:col + 1] != '  ' for l in lines[1:]), r.stdout
        r = cluster.diag('list', '--all-namespaces', '-l', 'run=web')
        assert [l.split()[:2] for l in r.stdout.splitlines()[1:]] == [[ns, 'web']], r.stdout + r.stderr
        r = cluster.diag('list', '-A', 'pod/web')
        assert r.returncode == 2
        assert error_lines(r.stderr) == ['error: -A lists the debug containers of every namespace: drop pod/web, '
                                         'or -A']
    finally:
        cluster.kubectl('delete', 'namespace', ns, '--wait=false')


def test_manager_is_reused(cluster):
    assert cluster.diag('ps', 'pod/curl').returncode == 0
    before = cluster.pod('curl')['spec'].get('ephemeralContainers', [])
    assert cluster.diag('ps', 'pod/curl').returncode == 0
    after = cluster.pod('curl')['spec'].get('ephemeralContainers', [])
    assert [c['name'] for c in before] == [c['name'] for c in after]
    assert len(after) == 1 and len(after[0]['name']) == len('dbg-tools-') + 8
    caps = after[0]['securityContext']['capabilities']['add']
    # the default profile (general): what every command needs, so that none adds a second one
    assert {'NET_ADMIN', 'SYS_PTRACE', 'SYS_ADMIN', 'SYS_CHROOT', 'NET_RAW'} <= set(caps), caps


def test_manage_prints_container_and_port(cluster):
    r = cluster.diag('manage', 'pod/nginx')
    assert r.returncode == 0, r.stderr
    name, port = r.stdout.split()
    assert name.startswith('dbg-tools-') and 0 < int(port) < 65536


def test_no_pod_matches(cluster):
    r = cluster.diag('ps', '-l', 'app=nothing-here')
    assert r.returncode == 1
    assert 'no pod matches -l app=nothing-here' in r.stderr


def test_pod_not_found(cluster):
    r = cluster.diag('ps', 'pod/ghost')
    assert r.returncode == 1
    assert 'pod "ghost" not found' in r.stderr and 'kubectl get pods' in r.stderr


def test_unknown_target(cluster):
    r = cluster.diag('shell', 'pod/nginx', '-t', 'nope', '--', '-c', 'true')
    assert r.returncode == 1
    assert 'no container "nope"' in r.stderr and 'nginx' in r.stderr


def test_no_pod_given_is_usage(cluster):
    r = cluster.diag('ps')
    assert r.returncode == 2
    assert '--pod' in r.stderr


def test_kubectl_missing(cluster):
    r = cluster.diag('ps', 'pod/nginx', '--kubectl', '/nonexistent/kubectl')
    assert r.returncode == 1
    assert 'kubectl not found' in r.stderr and '--kubectl' in r.stderr


def test_kubectl_too_old(cluster, tmp_path):
    # a "kubectl" that knows no --raw, as very old ones: the message says what to do
    fake_old = tmp_path / 'kubectl-old'
    fake_old.write_text('#!/bin/sh\nfor a; do [ "$a" = --raw ] && { echo "error: unknown flag: --raw" >&2; '
                        'exit 1; }; done\nexec /usr/bin/kubectl "$@"\n')
    fake_old.chmod(0o755)
    r = cluster.diag('ps', 'pod/distroless', '--target', 'distroless', '--dbg-image', 'old-test:1',
                     '--kubectl', str(fake_old))
    assert r.returncode == 1
    assert 'kubectl 1.23 or newer' in r.stderr, r.stderr


def test_usage_errors_name_the_value(cluster):
    for args, needle in ((['redir', 'pod/nginx', '70000'], '70000'), (['redir', 'pod/nginx', 'a:b'], 'a:b'),
                         (['redir', 'pod/nginx', '0'], '"0"'), (['ps', '--bogus'], '--bogus')):
        r = cluster.diag(*args)
        assert r.returncode == 2, args
        assert needle in r.stderr, (args, r.stderr)


def test_help_has_examples_and_exit_codes(cluster):
    for cmd in ('redir', 'ps', 'shell', 'exec', 'logs', 'list', 'completion', 'manage', 'version'):
        r = cluster.diag(cmd, '--help')
        assert r.returncode == 0
        assert 'Examples:' in r.stdout and 'Exit codes:' in r.stdout, cmd
    r = cluster.diag('--help')
    assert '  redir ' in r.stdout and '  manage ' not in r.stdout  # manage is hidden


def test_version_and_completion(cluster):
    r = cluster.diag('version')
    assert r.returncode == 0 and 'kubectl-diag 0.' in r.stdout and 'kdiag-manager' in r.stdout
    r = cluster.diag('completion', 'bash')
    assert 'complete -F' in r.stdout
    r = cluster.diag('__complete', 'ps', 'pod/ng')
    assert r.stdout.splitlines() == ['pod/nginx', ':4'], r.stdout
    helper = os.path.join(os.path.dirname(CLI), 'kubectl_complete-diag')
    import subprocess
    r = subprocess.run([helper, 're'], capture_output=True, text=True, env=cluster.env(), timeout=30)
    assert r.stdout.splitlines() == ['redir', ':4'], r.stdout + r.stderr
    # the bash script end to end: COMPREPLY for `kubectl-diag ps -o <TAB>` and `ps pod/ng<TAB>`
    env = cluster.env({'PATH': os.path.dirname(CLI) + ':' + os.environ['PATH']})
    script = ('source <(kubectl-diag completion bash)\n'
              'COMP_WORDS=(kubectl-diag ps -o ""); COMP_CWORD=3; _kubectl_diag; echo "${COMPREPLY[@]}"\n'
              'COMP_WORDS=(kubectl-diag ps pod/ng); COMP_CWORD=2; _kubectl_diag; echo "${COMPREPLY[@]}"\n')
    r = subprocess.run(['bash', '-c', script], capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.splitlines() == ['wide json', 'pod/nginx'], r.stdout + r.stderr


def test_pod_not_running(cluster):
    name = 'done-%d' % os.getpid()
    cluster.ok('run', name, '--image=curl', '--restart=Never', '--command', '--', 'sh', '-c', 'exit 0')
    try:
        from conftest import wait_for
        wait_for(lambda: cluster.pod(name)['status'].get('phase') == 'Succeeded', 60, what='pod to finish')
        r = cluster.diag('shell', 'pod/' + name, '--', '-c', 'true')
        assert r.returncode == 1
        assert error_lines(r.stderr) == [
            'error: pod/%s is not running (phase Succeeded) and will not run again: pick another pod' % name]
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_shell_in_shared_pid_namespace_finds_target_by_container_id(cluster):
    name = 'shared-%d' % os.getpid()
    manifest = '''apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  shareProcessNamespace: true
  containers:
  - name: web
    image: nginx
  - name: app
    image: distroless
''' % name
    cluster.ok('create', '-f', '-', input=manifest)
    try:
        cluster.wait_running(name)
        # PID 1 is the pause process: only the container id finds the right root
        r = cluster.diag('shell', 'pod/' + name, '-t', 'app', '--', '-c', 'ls /')
        assert r.returncode == 0, r.stderr
        assert 'hello-server' in r.stdout.split(), r.stdout
        r = cluster.diag('shell', 'pod/' + name, '-t', 'web', '--', '-c', 'ls /www')
        assert r.returncode == 0 and 'index.html' in r.stdout, r.stdout + r.stderr
        # kubectl exec's -c names the container too
        r = cluster.diag('exec', '--tools', '-c', 'web', name, '--', 'ls', '/www')
        assert r.returncode == 0 and 'index.html' in r.stdout.split(), r.stdout + r.stderr
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_ps_escapes_control_characters_of_a_hostile_command_line(cluster):
    """A workload's command line with an OSC title, a clear-screen and a newline cannot forge a row
    nor reach the operator's terminal in the table and wide views; -o json keeps it exactly."""
    name = 'hostile-%d' % os.getpid()
    evil = '\x1b]0;pwned\x07\x1b[2J\n1       0       FORGED  0.0.0.0:22'
    pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
           'spec': {'containers': [{'name': 'app', 'image': 'nginx', 'command': [
               '/bin/busybox', 'sh', '-c', "trap 'exit 0' TERM; while :; do /bin/busybox sleep 1; done", evil]}]}}
    cluster.ok('create', '-f', '-', input=json.dumps(pod))
    try:
        cluster.wait_running(name)
        for view in ([], ['-o', 'wide']):
            r = cluster.diag('ps', 'pod/' + name, *view)
            assert r.returncode == 0, r.stderr
            assert '\x1b' not in r.stdout and '\x07' not in r.stdout, repr(r.stdout)
            assert not any('FORGED' in l.split()[:3] for l in r.stdout.splitlines()), r.stdout
        assert '?]0;pwned??[2J?1       0       FORGED  0.0.0.0:22' in r.stdout, repr(r.stdout)
        r = cluster.diag('ps', 'pod/' + name, '-o', 'json')
        assert r.returncode == 0, r.stderr
        assert any(p['cmdline'].endswith(evil) for p in json.loads(r.stdout)['processes']), r.stdout
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_pod_named_like_a_flag_is_a_name_not_a_kubectl_flag(cluster):
    for name in ('--help', '-x', '--namespace=kube-system'):
        for cmd in (['ps'], ['list', '--pod']):
            r = cluster.diag(*(cmd + ['pod/' + name if cmd == ['ps'] else name]))
            assert r.returncode == 1, (cmd, name, r.stdout, r.stderr)
            assert 'pod "%s" not found in the current namespace' % name in r.stderr, (cmd, name, r.stderr)


def test_help_names_every_command(cluster):
    # exec, cp and completion each failed their own checks when looked up as a topic, and
    # 'help exec' printed the general help
    for cmd in ('redir', 'ps', 'shell', 'exec', 'cp', 'capture', 'logs', 'list', 'forwards', 'completion'):
        r = cluster.diag('help', cmd)
        assert r.returncode == 0 and r.stdout.startswith('Usage: kubectl diag ' + cmd), (cmd, r.stdout[:200])


def test_bad_keep_forward_in_the_environment_stops_only_what_keeps_one(cluster):
    bad = {'KDIAG_KEEP_FORWARD': 'bogus'}
    for args in (['--help'], ['version'], ['list', '--help'], ['__complete', '']):
        r = cluster.diag(*args, env=bad)
        assert r.returncode == 0, (args, r.stderr)
    r = cluster.diag('ps', 'pod/nginx', env=bad)
    assert r.returncode == 2 and 'invalid $KDIAG_KEEP_FORWARD "bogus"' in r.stderr, r.stderr
    r = cluster.diag('ps', '--keep-forward', '0', 'pod/nginx', env=bad)  # the flag wins
    assert r.returncode == 0, r.stderr


def test_output_that_cannot_be_written_is_a_failure(cluster):
    with open('/dev/full', 'w') as full:
        for args in (['ps', 'pod/nginx', '-o', 'json'], ['version']):
            r = subprocess.run([CLI] + args, stdout=full, stderr=subprocess.PIPE, text=True, env=cluster.env(),
                               timeout=120)
            assert r.returncode == 1, (args, r.stderr)
            assert 'cannot write the output to stdout: No space left on device' in r.stderr, r.stderr


def test_a_long_selector_is_passed_whole(cluster):
    # a selector cut at 512 bytes lost its last term and matched every pod
    sel = ','.join('!zz%03d' % i for i in range(100)) + ',app=nosuchapp'
    assert len(sel) > 600
    r = cluster.diag('ps', '-l', sel)
    assert r.returncode == 1 and 'no pod matches' in r.stderr, r.stdout + r.stderr


def test_completion_offers_pods_only_where_a_pod_goes(cluster, tmp_path):
    # after a flag that takes a value of its own, or after '--', pods were offered
    for words in (['ps', '-t', ''], ['ps', '--timeout', ''], ['shell', 'pod/nginx', '--', '']):
        r = cluster.diag('__complete', *words)
        assert r.stdout.splitlines() == [':4'], (words, r.stdout)
    # file names for -w, --kubeconfig and cp's local operand (directive 0: the shell's own)
    for words in (['capture', '-w', ''], ['--kubeconfig', '']):
        assert cluster.diag('__complete', *words).stdout.splitlines() == [':0'], words
    assert cluster.diag('__complete', 'cp', 'pod/ngi').stdout.splitlines() == ['pod/nginx', ':0']
    assert 'exec' in cluster.diag('__complete', 'help', 'ex').stdout.split()
    # a bare pod name begun, as ps and exec take it (nothing was offered: only pod/NAME)
    assert cluster.diag('__complete', 'ps', 'ngi').stdout.splitlines() == ['nginx', ':4']
    assert cluster.diag('__complete', 'exec', '-c', 'x', 'distr').stdout.splitlines() == ['distroless', ':4']
    (tmp_path / 'trace.pcap').write_bytes(b'')
    env = cluster.env({'PATH': os.path.dirname(CLI) + ':' + os.environ['PATH']})
    script = ('source <(kubectl-diag completion bash)\n'
              'COMP_WORDS=(kubectl-diag capture -w %s/tra); COMP_CWORD=3; _kubectl_diag; echo "${COMPREPLY[@]}"\n'
              % tmp_path)
    r = subprocess.run(['bash', '-c', script], capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.split() == [str(tmp_path / 'trace.pcap')], r.stdout + r.stderr


@pytest.fixture
def two_containers(cluster):
    """A pod with the containers app and sidecar; deleted at the end."""
    name = 'two-%d-%d' % (os.getpid(), time.monotonic_ns() % 100000)
    cluster.ok('create', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
        'spec': {'terminationGracePeriodSeconds': 1, 'containers': [{'name': 'app', 'image': 'distroless'},
                                                                    {'name': 'sidecar', 'image': 'curl'}]}}))
    yield name
    cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_completion_offers_the_containers_of_the_pod_on_the_line(cluster, two_containers):
    """After -c/-t/--container/--target nothing was offered; now the containers of the pod given
    on the line, as the command reads it (none without a pod; capture's -c is its count)."""
    name = two_containers
    for words in (['exec', 'pod/' + name, '-c', ''], ['shell', name, '--container', ''],
                  ['logs', name, '-c', ''], ['ps', '--pod', name, '--target', ''], ['redir', name, '-t', ''],
                  ['cp', name + ':/etc', 'etc', '-c', ''], ['-n', 'default', 'exec', name, '-t', '']):
        r = cluster.diag('__complete', *words)
        assert r.stdout.splitlines() == ['app', 'sidecar', ':4'], (words, r.stdout, r.stderr)
    assert cluster.diag('__complete', 'exec', name, '-c', 'si').stdout.splitlines() == ['sidecar', ':4']
    for words in (['exec', '-c', ''], ['capture', 'pod/' + name, '-c', ''], ['exec', 'pod/nope', '-c', '']):
        assert cluster.diag('__complete', *words).stdout.splitlines() == [':4'], words
    # kubectl diag ... <TAB>: kubectl runs kubectl_complete-diag from PATH
    env = cluster.env({'PATH': os.path.dirname(CLI) + ':' + os.environ['PATH']})
    r = subprocess.run(['kubectl', '__complete', 'diag', 'exec', 'pod/' + name, '-c', ''], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.stdout.splitlines() == ['app', 'sidecar', ':4'], r.stdout + r.stderr


def test_completion_offers_the_containers_in_the_forms_with_the_name_attached(cluster, two_containers):
    """--container=NAME, --target=NAME, -cNAME, -tNAME (and -c=NAME, -vtNAME, -vt NAME), which the
    parser takes, offered nothing. After '=' the names alone, as cobra answers (kubectl's scripts
    and ours put the flag back); -cNAME whole words."""
    name = two_containers
    for words, want in ((['exec', 'pod/' + name, '--container='], ['app', 'sidecar']),
                        (['shell', name, '--target=si'], ['sidecar']),
                        (['logs', name, '-c='], ['app', 'sidecar']),
                        (['exec', name, '-ca'], ['-capp']),
                        (['ps', '--pod', name, '-ts'], ['-tsidecar']),
                        (['exec', name, '-vta'], ['-vtapp']), (['exec', name, '-vt', ''], ['app', 'sidecar']),
                        (['cp', name + ':/etc', 'etc', '-cs'], ['-csidecar']),
                        (['capture', name, '-c5'], []),                      # capture's -c is its count
                        (['exec', name, '-nfoo'], []), (['exec', '--target='], [])):
        r = cluster.diag('__complete', *words)
        assert r.stdout.splitlines() == want + [':4'], (words, r.stdout, r.stderr)
    # kubectl diag ... <TAB>: kubectl passes the word to kubectl_complete-diag as it is
    env = cluster.env({'PATH': os.path.dirname(CLI) + ':' + os.environ['PATH']})
    r = subprocess.run(['kubectl', '__complete', 'diag', 'exec', 'pod/' + name, '--container=s'],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.splitlines() == ['sidecar', ':4'], r.stdout + r.stderr
    # our bash script: bash splits "--container=s" into "--container" "=" "s"
    script = cluster.diag('completion', 'bash').stdout
    for typed, words, want in (('--container=s', ['--container', '=', 's'], 'sidecar'),
                               ('--container=', ['--container', '='], 'app sidecar'),
                               ('-cs', ['-cs'], '-csidecar')):
        comp = ['kubectl-diag', 'exec', 'pod/' + name] + words
        r = subprocess.run(['bash', '-c', script + 'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kubectl_diag; '
                            'echo "${COMPREPLY[*]}"', 'bash'] + comp, capture_output=True, text=True,
                           env=env, timeout=30)
        assert r.stdout.strip() == want, (typed, r.stdout, r.stderr)


def test_ps_of_thousands_of_long_command_lines_cuts_them_to_fit(cluster):
    """4500 processes with 16 KB command lines: 72 MB of listing, past the 64 MiB a response may
    be, and ps failed whole ("Received message larger than max"). The command lines are cut
    instead; a short one stays whole."""
    name = 'fatps-%d' % os.getpid()
    script = ('f=$(head -c 16000 /dev/zero | tr "\\0" x); i=0; while [ $i -lt 4500 ]; do '
              'sh -c "sleep 3600; :" $f & i=$((i+1)); done; echo started; wait')
    pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
           'spec': {'terminationGracePeriodSeconds': 1,
                    'containers': [{'name': 'app', 'image': 'curl', 'command': ['sh', '-c', script]}]}}
    cluster.ok('create', '-f', '-', input=json.dumps(pod))
    try:
        wait_for(lambda: 'started' in cluster.kubectl('logs', name).stdout, 120, what='4500 processes')
        r = cluster.diag('ps', 'pod/' + name, '-o', 'json')
        assert r.returncode == 0, r.stderr
        procs = json.loads(r.stdout)['processes']
        long = [p['cmdline'] for p in procs if p['cmdline'].startswith('sh -c sleep 3600; : xxx')]
        assert len(long) >= 4500, len(procs)
        assert max(len(c) for c in long) < 16000
        assert [p['cmdline'] for p in procs if p['pid'] == 1] == ['sh -c ' + script]
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')
