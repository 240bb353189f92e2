"""kubectl diag cp at its edges, through the real kubectl on the simulated cluster: a file that
shrinks while it is copied, both ways; a regular file on stdin sent as it is; a closed stdin or
stdout refused; what was read of a piped stdin shown on a terminal."""
import contextlib
import hashlib
import os
import pty
import select
import signal
import subprocess

from conftest import CLI, error_lines, wait_for

SIZE = 128 << 20


def write_random(path, size=SIZE):
    """size bytes without holes, each MiB its own (nothing for zstd): a copy long enough to stop."""
    with open(path, 'wb') as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    return path


def rchar(pid):
    """Bytes pid read so far (pread included): an upper bound of how far it read a file."""
    with open('/proc/%d/io' % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith('rchar:'))


def pod_path(cluster, path):
    """path in the distroless pod's container, as this host sees it."""
    return '/proc/%d/root%s' % (cluster.pids_in_pod('distroless', 'hello-server')[0], path)


def temporaries(d):
    return [n for n in os.listdir(d) if n.startswith('.kdiag-cp-')]


def shrank_line(direction, shown):
    return ('error: cp %s pod/distroless: cannot copy %s: it shrank from %d to %d bytes while it was read '
            '(truncated or rewritten meanwhile); copy it again once it is not being written: '
            'No data available (ENODATA)' % (direction, shown, SIZE, 1 << 20))


def test_cp_into_the_pod_of_a_file_that_shrinks_meanwhile_fails_and_leaves_nothing(cluster, tmp_path):
    """The CLI stopped mid-file, the file truncated to 1 MiB, the CLI let go: it used to send the
    rest as zeros, exit 0, a file of the old size in the pod. Now: one error line naming the file
    and both sizes, exit 1, nothing in the pod."""
    big = write_random(tmp_path / 'big')
    pod_tmp = pod_path(cluster, '/tmp')
    p = subprocess.Popen([CLI, 'cp', str(big), 'pod/distroless:/tmp/shrinks'], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    try:
        wait_for(lambda: temporaries(pod_tmp) or p.poll() is not None, 60, interval=0.005,
                 what='the temporary file in the pod')
        os.kill(p.pid, signal.SIGSTOP)
        assert p.poll() is None, 'the copy ended before it could be stopped'
        assert rchar(p.pid) < SIZE, 'the CLI read all of the file before it was stopped'
        os.truncate(big, 1 << 20)
        os.kill(p.pid, signal.SIGCONT)
        assert p.wait(timeout=60) == 1
        assert error_lines(p.stderr.read().decode()) == [shrank_line('to', big)]
        wait_for(lambda: not temporaries(pod_tmp), 20, what='no temporary in the pod')
        assert not os.path.exists(os.path.join(pod_tmp, 'shrinks'))
    finally:
        p.kill()
        p.wait()


def test_cp_out_of_the_pod_of_a_file_that_shrinks_meanwhile_fails_and_leaves_nothing(cluster, tmp_path):
    """The same with the manager as the sender: it stopped mid-file, the file in the pod
    truncated, the manager let go. It used to pad the rest with zeros and the CLI kept a file of
    the old size; now the manager ends the call ABORTED with the line, the CLI says it and keeps
    nothing."""
    src = write_random(tmp_path / 'src')
    r = cluster.diag('cp', str(src), 'pod/distroless:/tmp/shrinks-out', timeout=120)
    assert r.returncode == 0, r.stderr
    os.unlink(src)
    managers = cluster.pids_in_pod('distroless', 'kdiag-manager')
    assert managers
    before = {m: rchar(m) for m in managers}
    out = tmp_path / 'out'
    out.mkdir()
    p = subprocess.Popen([CLI, 'cp', 'pod/distroless:/tmp/shrinks-out', str(out)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    try:
        wait_for(lambda: temporaries(out) or p.poll() is not None, 60, interval=0.005,
                 what='the temporary file here')
        for m in managers:
            os.kill(m, signal.SIGSTOP)
        assert p.poll() is None, 'the copy ended before the manager could be stopped'
        assert all(rchar(m) - before[m] < SIZE for m in managers), 'the manager read all of the file'
        os.truncate(pod_path(cluster, '/tmp/shrinks-out'), 1 << 20)
        for m in managers:
            os.kill(m, signal.SIGCONT)
        assert p.wait(timeout=60) == 1
        assert error_lines(p.stderr.read().decode()) == [shrank_line('from', '/tmp/shrinks-out')]
        assert os.listdir(out) == []
    finally:
        for m in managers:
            try:
                os.kill(m, signal.SIGCONT)
            except ProcessLookupError:
                pass
        p.kill()
        p.wait()
        with contextlib.suppress(OSError):
            os.unlink(pod_path(cluster, '/tmp/shrinks-out'))


def test_cp_a_file_on_stdin_goes_as_it_is_from_its_offset_with_no_tmpdir(cluster, tmp_path):
    """`cp - POD:PATH < FILE`: the file goes as it is, from where stdin stands, with its size. It
    used to be copied into $TMPDIR first (a missing one failed the copy: "cannot keep stdin in
    ..."; a small one filled up). stdin is left at its end, as cat leaves it."""
    src, data = tmp_path / 'src', os.urandom(32 << 20)
    src.write_bytes(b'skipped\n' + data)
    try:
        with open(src, 'rb') as f:
            os.lseek(f.fileno(), 8, os.SEEK_SET)
            r = subprocess.run([CLI, 'cp', '-', 'pod/distroless:/tmp/from-stdin'], stdin=f, capture_output=True,
                               timeout=120, env=cluster.env({'TMPDIR': str(tmp_path / 'missing')}))
            assert (r.returncode, error_lines(r.stderr.decode())) == (0, [])
            assert os.lseek(f.fileno(), 0, os.SEEK_CUR) == 8 + len(data)
        with open(pod_path(cluster, '/tmp/from-stdin'), 'rb') as f:
            assert hashlib.file_digest(f, 'sha256').digest() == hashlib.sha256(data).digest()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pod_path(cluster, '/tmp/from-stdin'))


def test_cp_a_kernel_file_on_stdin_goes_read_to_its_end(cluster, tmp_path):
    """`cp - POD:PATH < /proc/self/environ`: procfs says 0 for its size, so sent as a regular file
    as it is, it arrived empty; it is read to its end first, as a named one is."""
    with open('/proc/self/environ', 'rb') as f:
        want = f.read()
    assert want
    try:
        with open('/proc/self/environ', 'rb') as f:
            r = subprocess.run([CLI, 'cp', '-', 'pod/distroless:/tmp/environ'], stdin=f, capture_output=True,
                               timeout=120, env=cluster.env())
        assert (r.returncode, error_lines(r.stderr.decode())) == (0, [])
        with open(pod_path(cluster, '/tmp/environ'), 'rb') as f:
            assert f.read() == want
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pod_path(cluster, '/tmp/environ'))


def test_cp_dash_on_a_closed_stdin_or_stdout_fails_naming_it(cluster, tmp_path):
    """`cp - POD:F <&-` wrote an empty file and exited 0 (the CLI puts /dev/null on closed fds);
    `cp POD:F - >&-` sent the content there. cat fails on both: so does cp now, naming the fd and
    the way out, and the pod gets nothing."""
    def closed(redirect, *args):
        return subprocess.run(['sh', '-c', 'exec "$@" ' + redirect, 'sh', CLI, 'cp'] + list(args),
                              capture_output=True, text=True, timeout=60, env=cluster.env())
    r = closed('<&-', '-', 'pod/distroless:/tmp/closed')
    assert (r.returncode, error_lines(r.stderr)) == (1, [
        'error: cannot read stdin: it is closed (<&-): give cp - the content on stdin (cp - POD:PATH < FILE, '
        'or from a pipe), or name the local file instead of -'])
    assert not os.path.exists(pod_path(cluster, '/tmp/closed'))
    r = closed('>&-', 'pod/distroless:/hello-server', '-')
    assert (r.returncode, error_lines(r.stderr)) == (1, [
        'error: cannot write to stdout: it is closed (>&-): give cp - somewhere to write (> FILE, or a pipe), '
        'or name a local path instead of -'])


def test_cp_dash_on_a_stdin_or_stdout_open_the_other_way_fails_before_the_pod(cluster, fresh_pod, tmp_path):
    """`cp - POD:F 0>>FILE` (stdin open for writing only) failed reading it only after a debug
    container was added to the pod for the copy, where it stays; `cp POD:F - 1<FILE` likewise.
    Both are refused first, naming the fd, and the pod gets no debug container."""
    other = tmp_path / 'other'
    other.write_bytes(b'x')

    def run(redirect, *args):
        return subprocess.run(['sh', '-c', 'exec "$@" ' + redirect, 'sh', CLI, 'cp'] + list(args),
                              capture_output=True, text=True, timeout=60, env=cluster.env())
    r = run('0>>"%s"' % other, '-', 'pod/%s:/tmp/x' % fresh_pod)
    assert (r.returncode, error_lines(r.stderr)) == (1, [
        'error: cannot read stdin: it is open for writing only (0>FILE): give cp - the content on stdin '
        '(cp - POD:PATH < FILE, or from a pipe), or name the local file instead of -'])
    r = run('1<"%s"' % other, 'pod/%s:/etc/hostname' % fresh_pod, '-')
    assert (r.returncode, error_lines(r.stderr)) == (1, [
        'error: cannot write to stdout: it is open for reading only (1<FILE): give cp - somewhere to write '
        '(> FILE, or a pipe), or name a local path instead of -'])
    assert cluster.pod(fresh_pod)['spec'].get('ephemeralContainers', []) == []
    assert other.read_bytes() == b'x'


def test_cp_dash_shows_what_was_read_of_a_piped_stdin_on_a_terminal(cluster, tmp_path):
    """`cp - POD:PATH < /dev/zero` filled $TMPDIR with nothing shown until it failed. With stderr
    a terminal, "cp: reading stdin: <n>" is redrawn while a piped stdin is read, so the user sees
    it grow (here one MiB, then three, written as the test goes), and ends with the total."""
    master, slave = pty.openpty()
    rfd, wfd = os.pipe()
    p = subprocess.Popen([CLI, 'cp', '-', 'pod/distroless:/tmp/piped'], stdin=rfd, stdout=subprocess.PIPE,
                         stderr=slave, env=cluster.env())
    os.close(slave)
    os.close(rfd)
    seen = bytearray()

    def shown(text):
        while select.select([master], [], [], 0)[0]:
            try:
                seen.extend(os.read(master, 4096))
            except OSError:  # EIO: every writer is gone
                break
        return text in seen
    try:
        os.write(wfd, bytes(1 << 20))
        wait_for(lambda: shown(b'\r\x1b[Kcp: reading stdin: 1.0 MiB'), 20, interval=0.05, what='1.0 MiB read')
        os.write(wfd, bytes(2 << 20))
        wait_for(lambda: shown(b'\r\x1b[Kcp: reading stdin: 3.0 MiB'), 20, interval=0.05, what='3.0 MiB read')
        os.close(wfd)
        wfd = -1
        assert p.wait(timeout=60) == 0
        shown(b'')
        assert b'cp: reading stdin: 3.0 MiB\r\n' in seen, seen
        assert os.path.getsize(pod_path(cluster, '/tmp/piped')) == 3 << 20
    finally:
        if wfd >= 0:
            os.close(wfd)
        p.kill()
        p.wait()
        os.close(master)
        with contextlib.suppress(OSError):
            os.unlink(pod_path(cluster, '/tmp/piped'))
