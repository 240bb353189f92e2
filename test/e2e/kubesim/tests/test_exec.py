"""pods/exec through the real kubectl: WebSocket (1.30+) and SPDY (1.27 / forced), stdin, stdout,
stderr, exit codes, unknown containers and commands, and a tty under a pty with resize."""
import fcntl
import os
import pty
import struct
import termios
import time

from conftest import versions
from e2e_common import FdExpect

SPDY_ONLY = {'KUBECTL_REMOTE_COMMAND_WEBSOCKETS': 'false'}


@versions('1.27', '1.32', '1.33')
def test_exec_stdin_stdout_stderr_exit_code(cluster, kv):
    data = ''.join('line %d %s\n' % (i, 'x' * 50) for i in range(3000))  # ~170 kB through stdin
    r = cluster.kubectl('exec', '-i', 'nginx', '--', '/bin/busybox', 'sh', '-c',
                        '/bin/busybox sha256sum; echo to-stderr >&2; exit 3', input=data, version=kv)
    import hashlib
    assert r.stdout.split()[0] == hashlib.sha256(data.encode()).hexdigest()
    assert 'to-stderr' in r.stderr
    assert 'command terminated with exit code 3' in r.stderr
    assert r.returncode == 3
    r = cluster.kubectl('exec', 'nginx', '--', '/bin/busybox', 'true', version=kv)
    assert r.returncode == 0 and r.stderr == ''


def test_exec_spdy_forced_on_new_kubectl(cluster):
    r = cluster.kubectl('exec', '-i', 'nginx', '--', '/bin/busybox', 'sh', '-c', 'cat; exit 7',
                        input='via spdy\n', env=SPDY_ONLY)
    assert r.stdout == 'via spdy\n' and r.returncode == 7


@versions('1.27', '1.32')
def test_exec_errors(cluster, kv):
    r = cluster.kubectl('exec', 'nginx', '-c', 'nope', '--', 'true', version=kv)
    assert r.returncode == 1 and 'container nope is not valid for pod nginx' in r.stderr
    r = cluster.kubectl('exec', 'nginx', '--', '/no/such/binary', version=kv)
    assert r.returncode != 0 and '/no/such/binary' in r.stderr
    r = cluster.kubectl('exec', 'two', '-c', 'second', '--', '/bin/busybox', 'hostname', version=kv)
    assert r.returncode == 0 and r.stdout.strip() == 'two'


@versions('1.27', '1.32', '1.33')
def test_exec_tty_with_resize(cluster, kv):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 100, 0, 0))
    p = cluster.popen('exec', '-it', 'nginx', '--', '/bin/busybox', 'sh', '-c',
                      # the sleep: kubectl's websocket exec may exit on the status before it wrote the
                      # last output (kubernetes/kubernetes#124571); the output, not that race, is tested
                      'read w; /bin/busybox stty size; read x; /bin/busybox stty size; read y; echo "got:$y"; '
                      '/bin/busybox sleep 1',
                      version=kv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                      preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    expect = FdExpect(master).expect
    try:
        # the size is asked once the user typed a line (the command itself may start before the
        # client's first resize message arrives, as on a real node)
        time.sleep(1)
        os.write(master, b'\n')
        expect(b'30 100')
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
        p.send_signal(28)  # SIGWINCH: kubectl reads the new size and sends a resize event
        time.sleep(1)
        os.write(master, b'\n')
        expect(b'40 120')
        os.write(master, b'typed\n')
        expect(b'got:typed')
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


@versions('1.27', '1.32')
def test_exec_process_killed_when_client_goes_away(cluster, kv):
    import subprocess
    from conftest import wait_for
    marker = '12%s' % kv.replace('.', '')
    p = cluster.popen('exec', '-i', 'nginx', '--', '/bin/busybox', 'sleep', marker, version=kv,
                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running():
        return ('sleep ' + marker) in cluster.ok('exec', 'nginx', '--', '/bin/busybox', 'ps')
    try:
        wait_for(running, 15, what='the exec process to start')
    finally:
        p.kill()
        p.wait()
    wait_for(lambda: not running(), 15, what='the exec process to be killed after the client left')


def test_default_capabilities_are_containerds(cluster):
    """Without a securityContext the container's process 1 and an exec'd one have containerd's
    default set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
    NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP) and nothing inheritable or ambient."""
    default = '%016x' % 0xa80425fb
    for status in ('/proc/1/status', '/proc/self/status'):
        out = cluster.ok('exec', 'nginx', '--', '/bin/busybox', 'grep', '^Cap', status)
        assert dict(line.split(':\t') for line in out.splitlines()) == {
            'CapInh': '0' * 16, 'CapPrm': default, 'CapEff': default, 'CapBnd': default, 'CapAmb': '0' * 16}
