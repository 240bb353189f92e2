"""kubectl diag logs end to end: several pods, command mode with drain, new pods, restarted
containers, resumed streams, through the real kubectl logs -f on the simulated cluster."""
import os
import re
import signal
import time

from conftest import wait_for
from e2e_common import children, cmdline, prefixed


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


def test_command_exit_code_and_no_history(cluster):
    r = cluster.diag('logs', '--pod', 'curl', '--', 'true', timeout=60)
    assert r.returncode == 0, r.stderr
    # lines from before the command started are not replayed
    first = cluster.logs_since('curl')[0]
    assert first not in r.stdout
    r = cluster.diag('logs', '--pod', 'curl', '--', 'sh', '-c', 'exit 42', timeout=60)
    assert r.returncode == 42


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
