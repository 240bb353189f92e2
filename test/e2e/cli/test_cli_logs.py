"""kubectl diag logs end to end: several pods, command mode with drain, new pods, restarted
containers, resumed streams, through the real kubectl logs -f on the simulated cluster."""
import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time

from conftest import CLI, KUBECTLS, error_lines, wait_for
from e2e_common import FdExpect, children, cmdline, prefixed


def test_two_pods_while_a_command_runs(cluster):
    r = cluster.diag('logs', '-l', 'app=nginx', '-l', 'app=curl:curl', '-d', '1500ms', '--',
                     'sh', '-c', 'echo command-output; sleep 3; exit 3', timeout=60)
    assert r.returncode == 3, r.stderr
    assert 'command-output' in r.stdout.splitlines()
    curl = prefixed(r.stdout, 'curl', 'curl')
    nginx = prefixed(r.stdout, 'nginx', 'nginx')
    assert len(curl) >= 2, r.stdout      # one request a second for ~4 s
    assert len(nginx) >= 2, r.stdout     # nginx logs each of them
    assert all('GET http://nginx/' in l for l in curl), curl
    # NO_COLOR (set by the fixture): no escape sequences
    assert '\033[' not in r.stdout


def test_a_bare_pod_name_with_its_container(cluster):
    """`logs curl:curl`, as pod/curl:curl and --pod curl:curl (was: unexpected argument, exit 2)."""
    r = cluster.diag('logs', 'curl:curl', '-d', '1500ms', '--', 'sleep', '2', timeout=60)
    assert r.returncode == 0, r.stderr
    assert prefixed(r.stdout, 'curl', 'curl'), r.stdout


def test_command_exit_code_and_no_history(cluster):
    # a line of the second the command starts in may be shown (sinceTime has 1 s resolution)
    wait_for(lambda: len(cluster.logs_since('curl')) >= 3, 30, what='3 lines of curl, one a second')
    r = cluster.diag('logs', '--pod', 'curl', '--', 'true', timeout=60)
    assert r.returncode == 0, r.stderr
    # lines from before the command started are not replayed
    first = cluster.logs_since('curl')[0]
    assert first not in r.stdout
    r = cluster.diag('logs', '--pod', 'curl', '--', 'sh', '-c', 'exit 42', timeout=60)
    assert r.returncode == 42


def test_more_containers_than_it_follows_is_said_once(cluster, bg, label, tmp_path):
    """logs follows at most 256 containers at once: with 257 it followed 256 and left the last
    out without a word. It says once, before the followers start, how many match and how to
    narrow. The pods are listed by the real kubectl; the 256 followers' `kubectl logs -f` fail at
    once (a --kubectl wrapper), as nothing here needs 256 real streams."""
    name = 'many-%d' % os.getpid()
    containers = [{'name': 'c%03d' % i, 'image': 'curl', 'command': ['/bin/busybox', 'sleep', '100000']}
                  for i in range(257)]
    cluster.ok('create', '-f', '-', input=json.dumps({
        'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'labels': {'app': label}},
        'spec': {'containers': containers, 'terminationGracePeriodSeconds': 1}}))
    wait_for(lambda: sum('running' in c.get('state', {}) for c in
                         cluster.pod(name).get('status', {}).get('containerStatuses', [])) == 257,
             180, interval=2, what='257 running containers')
    calls = tmp_path / 'calls'
    wrapper = tmp_path / 'kubectl'
    wrapper.write_text('#!/bin/sh\necho "$*" >> %s\ncase " $* " in *" logs -f "*) echo "no streams here" >&2; '
                       'exit 1;; esac\nexec %s "$@"\n' % (calls, KUBECTLS['default']))
    wrapper.chmod(0o755)
    r = bg(cluster, 'logs', '-l', 'app=' + label, kubectl=str(wrapper))
    # the first listing and two more (one every 2 s): the line is said once, not at each
    wait_for(lambda: calls.exists() and calls.read_text().count('get pods ') >= 3, 60, what='3 listings')
    assert r.interrupt() == 0, r.err()
    said = [l for l in error_lines(r.err()) if not l.startswith('error: cannot follow the logs of ')]
    assert said == ['warning: 257 containers match; logs follows at most 256 at once, so only the first 256 '
                    'are followed: narrow the pods with -l SELECTOR, or the containers with -c CONTAINER (or '
                    '-l SELECTOR:CONTAINER)'], r.err()
    followed = {l.split(' -c ')[1].split()[0] for l in calls.read_text().splitlines() if 'logs -f ' in l}
    assert len(followed) == 256, followed


def test_followers_of_deleted_pods_count_toward_the_limit(cluster, bg, label, tmp_path):
    """The followers of a deleted pod whose containers still run hold slots of the 256 until they
    end, but were not counted: with 129 of them, a new pod of 128 containers had 127 followed and
    one left out without a word. They count: 257 match, said once. The followers' `kubectl logs -f`
    keep running without streaming (a --kubectl wrapper), as they do while a container runs."""
    def pod(name, n):
        containers = [{'name': 'c%03d' % i, 'image': 'curl', 'command': ['/bin/busybox', 'sleep', '100000']}
                      for i in range(n)]
        cluster.ok('create', '-f', '-', input=json.dumps({
            'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'labels': {'app': label}},
            'spec': {'containers': containers, 'terminationGracePeriodSeconds': 1}}))
        wait_for(lambda: sum('running' in c.get('state', {}) for c in
                             cluster.pod(name).get('status', {}).get('containerStatuses', [])) == n,
                 180, interval=2, what='%d running containers' % n)
    old, new = 'old-%d' % os.getpid(), 'new-%d' % os.getpid()
    pod(old, 129)
    calls, pids = tmp_path / 'calls', tmp_path / 'pids'
    wrapper = tmp_path / 'kubectl'
    wrapper.write_text('#!/bin/sh\necho "$*" >> %s\ncase " $* " in *" logs -f "*) echo $$ >> %s; exec sleep 600;; '
                       'esac\nexec %s "$@"\n' % (calls, pids, KUBECTLS['default']))
    wrapper.chmod(0o755)
    followed = lambda: set(re.findall(r'^logs -f --timestamps (\S+) -c (\S+)', calls.read_text(), re.M))
    try:
        r = bg(cluster, 'logs', '-l', 'app=' + label, kubectl=str(wrapper))
        wait_for(lambda: calls.exists() and len(followed()) == 129, 60, what='129 followers')
        cluster.ok('delete', 'pod', old, '--wait=false')
        wait_for(lambda: cluster.kubectl('get', 'pod', old).returncode != 0, 60, what='the old pod gone')
        pod(new, 128)
        wait_for(lambda: 'warning: ' in r.err(), 60, what='the warning')
        assert r.interrupt() == 0, r.err()
    finally:
        for pid in (pids.read_text().split() if pids.exists() else []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert error_lines(r.err()) == ['warning: 257 containers match; logs follows at most 256 at once, so only the '
                                    'first 256 are followed: narrow the pods with -l SELECTOR, or the containers '
                                    'with -c CONTAINER (or -l SELECTOR:CONTAINER)'], r.err()
    assert len(followed()) == 256, len(followed())


def test_follows_new_pods_and_ctrl_c_exits_0(cluster, bg):
    label = 'late-%d' % os.getpid()
    r = bg(cluster, 'logs', '-l', 'app=' + label)
    time.sleep(1)
    name = 'late-%d' % os.getpid()
    cluster.ok('run', name, '--image=curl', '--restart=Never', '--labels=app=' + label, '--',
               'http://nginx/')
    try:
        wait_for(lambda: prefixed(r.out(), name, name), 60, what='lines of the new pod')
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_restarted_container_is_followed(cluster, bg):
    name = 'restarts-%d' % os.getpid()
    cluster.ok('run', name, '--image=curl', '--restart=Always', '--command', '--',
               'sh', '-c', 'echo run-at-$(date +%s%N); sleep 2; exit 1')
    try:
        r = bg(cluster, 'logs', '--pod', name)
        runs = lambda: set(re.findall(r'run-at-\d+', r.out()))  # noqa: E731
        wait_for(lambda: len(runs()) >= 2, 90, what='lines of two runs of the container')
        assert r.interrupt() == 0
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_ended_stream_resumes_without_repeats(cluster, bg):
    r = bg(cluster, 'logs', '--pod', 'curl:curl')
    wait_for(lambda: len(prefixed(r.out(), 'curl', 'curl')) >= 2, 30, what='first lines')
    followers = [p for p in children(r.proc.pid) if ' logs ' in cmdline(p)]
    assert len(followers) == 1
    os.kill(followers[0], signal.SIGKILL)  # the stream ends while the container still runs
    n = len(prefixed(r.out(), 'curl', 'curl'))
    wait_for(lambda: len(prefixed(r.out(), 'curl', 'curl')) >= n + 4, 30, what='lines after the resume')
    assert [p for p in children(r.proc.pid) if ' logs ' in cmdline(p)] != followers
    seq = [int(m) for m in re.findall(r'\[curl/curl\] curl: #(\d+) ', r.out())]
    assert seq == sorted(set(seq)), seq                   # nothing repeated
    assert seq == list(range(seq[0], seq[0] + len(seq))), seq  # nothing lost
    assert r.interrupt() == 0


def test_nothing_selected_is_usage(cluster):
    r = cluster.diag('logs')
    assert r.returncode == 2 and '--all' in r.stderr


def test_a_command_that_cannot_be_executed_exits_126(cluster, tmp_path):
    # as a shell does (and shell/exec): 127 only when it is not found; this was 127 too
    script = tmp_path / 'not-executable'
    script.write_text('echo hi\n')
    script.chmod(0o644)
    r = cluster.diag('logs', '--pod', 'curl', '-d', '0', '--', str(script), timeout=60)
    assert r.returncode == 126, r.stderr
    assert 'error: cannot run "%s": Permission denied' % script in r.stderr, r.stderr
    r = cluster.diag('logs', '--pod', 'curl', '-d', '0', '--', str(tmp_path / 'absent'), timeout=60)
    assert r.returncode == 127, r.stderr


def test_drain_without_a_command_is_usage(cluster):
    # -d was ignored: logs followed until Ctrl-C as if it had not been given
    r = cluster.diag('logs', '--pod', 'curl', '-d', '2s', timeout=30)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == ["error: -d/--drain-duration is how long logs follows after the command "
                                     "ends, and none was given: add one after '--' (logs ... -d 2s -- CMD) "
                                     "or drop -d"], r.stderr


def test_tail_and_since_as_kubectl_logs_takes_them(cluster, bg):
    """--tail N and --since D pick where each container's log starts, as with kubectl logs (the
    default stays the last 10 lines); not with a command, which shows what was logged while it ran."""
    seq = lambda out: [int(m) for m in re.findall(r'\[curl/curl\] curl: #(\d+) ', out)]  # noqa: E731
    first = int(re.search(r'curl: #(\d+) ', cluster.logs_since('curl')[0]).group(1))
    for args, earliest in ((['--tail=-1'], lambda before: first), (['--since', '1h'], lambda before: first),
                           (['--tail', '2'], lambda before: before - 1), (['--since=2s'], lambda before: before - 3)):
        before = int(re.search(r'curl: #(\d+) ', cluster.logs_since('curl')[-1]).group(1))
        r = bg(cluster, 'logs', '--pod', 'curl:curl', *args)
        wait_for(lambda: len(seq(r.out())) >= 3 and seq(r.out())[-1] > before, 30, what='lines of curl')
        assert r.interrupt() == 0, r.err()
        got = seq(r.out())
        assert got == list(range(got[0], got[0] + len(got))), (args, got)
        if earliest(before) == first:
            assert got[0] == first, (args, got, first)
        else:
            assert earliest(before) <= got[0] <= before + 1 and got[0] > first, (args, got, before)
    r = cluster.diag('logs', '--pod', 'curl', '--tail', '5', '--', 'true', timeout=30)
    assert r.returncode == 2
    assert error_lines(r.stderr) == ['error: --tail is for logs without a command: with one, logs shows what was '
                                     'logged while it ran']
    r = cluster.diag('logs', '--pod', 'curl', '--since', 'yesterday', timeout=30)
    assert r.returncode == 2
    assert 'invalid --since "yesterday"' in r.stderr


def test_a_stream_that_printed_nothing_resumes_without_the_history(cluster, bg, fresh_pod):
    """--tail 0 on a quiet pod, its stream ended: the new follower starts where logs started (it
    took --tail=-1 and printed the whole log that --tail 0 had left out)."""
    cluster.http_get(fresh_pod)
    wait_for(lambda: cluster.logs_since(fresh_pod), 30, what='a line of history')
    later = int(time.time()) + 1  # sinceTime has 1 s resolution: logs starts a second after it
    wait_for(lambda: time.time() >= later, 5, what='the next second')
    r = bg(cluster, 'logs', '--pod', fresh_pod, '--tail', '0')
    followers = lambda: [p for p in children(r.proc.pid) if ' logs ' in cmdline(p)]  # noqa: E731
    wait_for(followers, 30, what='the follower')
    first = followers()
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: followers() and followers() != first, 30, what='the follower started again')
    cluster.http_get(fresh_pod)
    wait_for(lambda: len(cluster.logs_since(fresh_pod)) >= 2, 30, what='the new line in the log')
    *history, new = cluster.logs_since(fresh_pod)
    r.wait_out(new)
    assert prefixed(r.out(), fresh_pod, fresh_pod) == ['[%s/%s] %s' % (fresh_pod, fresh_pod, new)], \
        (history, r.out())
    assert r.interrupt() == 0, r.err()


def test_since_longer_than_the_epoch_is_all_of_it(cluster, bg):
    """--since 20000000h (2281 years): kubectl logs failed on each container, 'parsing time
    "-255-..."' (and 10 s later started again from where logs started); it is all of the log."""
    first = cluster.logs_since('curl')[0]
    r = bg(cluster, 'logs', '--pod', 'curl:curl', '--since', '20000000h')
    r.wait_out(first, timeout=30)
    assert r.interrupt() == 0 and 'error' not in r.err(), r.err()


def test_a_nul_byte_in_a_line_does_not_stop_the_stream(cluster, bg):
    """A line with a NUL byte: it passes as it is, and the lines after it too (strchr stopped at
    the NUL, so no newline after it was ever found and the output went silent for good)."""
    name = 'nul-%d' % os.getpid()
    cluster.ok('run', name, '--image=curl', '--restart=Never', '--command', '--', 'sh', '-c',
               'i=0; while :; do i=$((i+1)); echo tick-$i; [ $i = 2 ] && printf "Z\\000Z\\n"; sleep 0.3; done')
    try:
        r = bg(cluster, 'logs', '--pod', name)
        ticks = lambda: [l for l in prefixed(r.out(), name, name) if l.endswith(tuple('0123456789'))]  # noqa: E731
        wait_for(lambda: len(ticks()) >= 6, 60, what='lines after the one with a NUL')
        assert '[%s/%s] Z\0Z' % (name, name) in r.out().splitlines()
        assert r.interrupt() == 0
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_reader_gone_ends_logs_with_141(cluster):
    """`logs ... | head -1`: the reader went, so logs ends (141, as a program in a pipeline dies of
    SIGPIPE) instead of following on with nobody reading."""
    p = subprocess.Popen([CLI, 'logs', '--pod', 'curl'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=cluster.env())
    try:
        assert p.stdout.readline().startswith(b'[curl/curl] ')
        p.stdout.close()
        assert p.wait(timeout=20) == 141
        wait_for(lambda: not [c for c in children(p.pid) if ' logs ' in cmdline(c)], 10, what='followers ended')
    finally:
        p.kill()
        p.wait()


def test_first_listing_refused_ends_logs(cluster):
    """A selector that does not parse will not mend by itself: one error line and the command
    ends (it followed nothing, forever)."""
    r = cluster.diag('logs', '-l', 'app in (', timeout=30)
    assert r.returncode in (1, 2), r.stderr
    assert len(error_lines(r.stderr)) == 1, r.stderr


def test_selector_matching_nothing_says_so_and_follows(cluster, bg):
    r = bg(cluster, 'logs', '-l', 'app=nothing-%d' % os.getpid())
    wait_for(lambda: 'no pod matches -l app=nothing-' in r.err(), 30, what='the line saying nothing matches')
    assert r.interrupt() == 0


def test_a_container_name_that_matches_nothing_is_said(cluster):
    # it followed nothing in silence
    r = cluster.diag('logs', '-l', 'app=curl', '-c', 'nope', '--', 'true', timeout=60)
    assert r.returncode == 0, r.stderr
    assert 'pod/curl has no container "nope"; its containers: curl' in r.stderr, r.stderr
    assert r.stderr.count('has no container') == 1, r.stderr


def test_pods_that_come_and_go_do_not_use_up_the_followers(cluster, bg):
    """Nine pods of 32 containers, one after the other, each deleted once followed: the ninth is
    followed too (the slots of gone containers were never freed, so after 256 of them new pods
    were passed over in silence)."""
    label = 'churn-%d' % os.getpid()
    script = 'echo up-$HOSTNAME-$C; trap "exit 0" TERM; while :; do sleep 1; done'
    containers = [{'name': 'c%02d' % i, 'image': 'curl', 'command': ['sh', '-c', script],
                   'env': [{'name': 'C', 'value': 'c%02d' % i}]} for i in range(32)]
    r = bg(cluster, 'logs', '-l', 'app=' + label)
    names = []
    try:
        for i in range(9):
            name = '%s-%d' % (label, i)
            names.append(name)
            pod = {'apiVersion': 'v1', 'kind': 'Pod',
                   'metadata': {'name': name, 'labels': {'app': label}},
                   'spec': {'containers': containers, 'terminationGracePeriodSeconds': 2}}
            cluster.ok('apply', '-f', '-', input=json.dumps(pod))
            wait_for(lambda: len(re.findall(r'up-%s-c\d\d$' % name, r.out(), re.M)) == 32, 60,
                     what='the lines of all 32 containers of ' + name)
            cluster.ok('delete', 'pod', name, '--wait=true')
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'pod', *names, '--wait=false')


COUNT_SIGINTS = '''import signal, sys, time
n = 0
def on_int(sig, frame):
    global n
    n += 1
signal.signal(signal.SIGINT, on_int)
print('ready', flush=True)
time.sleep(3)
end = time.time() + 3
while time.time() < end:
    time.sleep(0.1)
print('sigints=%d' % n, flush=True)
sys.exit(10 + n)
'''


def test_ctrl_c_on_a_terminal_reaches_the_command_once(cluster):
    """One Ctrl-C on a terminal: the command (in the terminal's foreground group with logs) gets
    one SIGINT; logs passed the terminal's on too, so it got two (a second Ctrl-C often means
    "quit now, skip the clean-up")."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(CLI, [CLI, 'logs', '--pod', 'curl', '--', sys.executable, '-c', COUNT_SIGINTS],
                      cluster.env())
        finally:
            os._exit(127)
    try:
        out = FdExpect(fd)
        out.expect(b'ready', timeout=60)
        time.sleep(0.5)
        os.write(fd, b'\x03')
        out.expect(b'sigints=', timeout=30)
        _, st = os.waitpid(pid, 0)
        pid = 0
        assert b'sigints=1' in out.buf, out.buf[-2000:]
        assert os.waitstatus_to_exitcode(st) == 11
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
