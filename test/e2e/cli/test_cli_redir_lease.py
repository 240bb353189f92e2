"""Leases: when a kubectl diag redir disappears without removing its redirects (killed, its
kubectl port-forward killed while it cannot come back, frozen), the manager removes its nftables
rules within 15 s, through the connection ending or gRPC keepalive (5 s ping + 5 s timeout)."""
import os
import re
import resource
import signal
import time

import pytest

from conftest import wait_for
from e2e_common import children, cmdline, forwards_to, redirect_rules

LEASE_S = 15


@pytest.fixture(scope='module')
def pod(cluster):
    name = 'lease-%d' % os.getpid()
    cluster.ok('run', name, '--image=distroless', '--restart=Never')
    cluster.wait_running(name)
    yield name
    cluster.kubectl('delete', 'pod', name, '--wait=false')


def start(cluster, bg, pod, local_http):
    srv = local_http()
    r = bg(cluster, 'redir', 'pod/' + pod, '8080:%d' % srv.port)
    r.wait_out('redirecting pod/%s:8080' % pod)
    assert redirect_rules(cluster.pod_ruleset(pod)), cluster.pod_ruleset(pod)
    return r


def seconds_until_rules_gone(cluster, pod, t0):
    wait_for(lambda: not redirect_rules(cluster.pod_ruleset(pod)), 30, interval=0.1, what='the rules to go')
    return time.monotonic() - t0


def port_forward_of(r):
    pf = [p for p in children(r.proc.pid) if 'port-forward' in cmdline(p)]
    assert pf, [cmdline(p) for p in children(r.proc.pid)]
    return pf


def test_cli_killed_rules_gone_within_15s(cluster, bg, pod, local_http):
    r = start(cluster, bg, pod, local_http)
    t0 = time.monotonic()
    r.proc.kill()
    r.proc.wait(10)
    secs = seconds_until_rules_gone(cluster, pod, t0)
    print('kill -9 of the CLI: rules gone after %.2f s' % secs)
    assert secs < LEASE_S
    # its kubectl children (the gRPC forward and the tunnel pool) go with it
    wait_for(lambda: not forwards_to(pod), 10, what='the port-forwards of the killed CLI to exit')


def test_cli_fatal_signal_says_so_with_its_stack(cluster, bg, pod, local_http):
    """A fatal signal (here SIGSEGV sent by this test): one line on stderr naming it and its sender,
    the stack of the thread that took it, then the signal's own end (status -11); the manager
    removes the rules as after kill -9."""
    core = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, core[1]))  # no core file in the test's directory
    try:
        r = start(cluster, bg, pod, local_http)
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, core)
    t0 = time.monotonic()
    os.kill(r.proc.pid, signal.SIGSEGV)
    assert r.proc.wait(10) == -signal.SIGSEGV, r.err()
    err = r.err()
    assert 'kubectl-diag: SIGSEGV sent by process %d; the stack of the thread that took it:\n' % os.getpid() in err, err
    frames = err.split('the stack of the thread that took it:\n')[1].splitlines()
    assert any(re.search(r'/kubectl-diag\([^)]*\)\[0x[0-9a-f]+\]$', f) for f in frames), err
    assert any(re.search(r'/libc\.so\.6\([^)]*\)\[0x[0-9a-f]+\]$', f) for f in frames), err
    secs = seconds_until_rules_gone(cluster, pod, t0)
    print('SIGSEGV of the CLI: rules gone after %.2f s' % secs)
    assert secs < LEASE_S
    wait_for(lambda: not forwards_to(pod), 10, what='the port-forwards of the CLI to exit')


def test_port_forward_killed_rules_gone_within_15s(cluster, bg, pod, local_http):
    """The CLI cannot come back (stopped) while its port-forward dies: the path to it is gone.
    Once it runs again it re-establishes the redirect."""
    r = start(cluster, bg, pod, local_http)
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        for p in port_forward_of(r):
            os.kill(p, signal.SIGKILL)
        secs = seconds_until_rules_gone(cluster, pod, t0)
        print('kill -9 of kubectl port-forward: rules gone after %.2f s' % secs)
        assert secs < LEASE_S
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    r.wait_out('re-established pod/%s:8080' % pod, timeout=60)
    assert redirect_rules(cluster.pod_ruleset(pod))
    assert r.interrupt() == 0, r.err()


def test_cli_frozen_rules_gone_within_15s(cluster, bg, pod, local_http):
    """SIGSTOP: the port-forward stays up and carries the manager's pings to a process that never
    answers them; keepalive gives up. Once it runs again it re-establishes the redirect."""
    r = start(cluster, bg, pod, local_http)
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        secs = seconds_until_rules_gone(cluster, pod, t0)
        print('SIGSTOP of the CLI: rules gone after %.2f s' % secs)
        assert secs < LEASE_S
        assert port_forward_of(r)  # the forward was up all along
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    r.wait_out('re-established pod/%s:8080' % pod, timeout=60)
    assert redirect_rules(cluster.pod_ruleset(pod))
    assert r.interrupt() == 0, r.err()
