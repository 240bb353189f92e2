"""kubectl diag cp through the real kubectl on the simulated cluster: files and a tree both ways in
the distroless pod (no tar, no shell), a selector with ':PATH', paths kept inside the container's
root, a missing path, the progress line only on a terminal, Ctrl-C or SIGHUP mid-file, and into a pod whose
API server is 50 ms away."""
import contextlib
import fcntl
import hashlib
import json
import os
import pty
import signal
import subprocess
import termios
import time

import pytest

from conftest import CLI, error_lines, images_json, wait_for
from delayproxy import delayed_kubeconfig


def image_file(image, path):
    with open(images_json()) as f:
        return os.path.join(json.load(f)['images'][image]['rootfs'], path.lstrip('/'))


def make_tree(top):
    os.makedirs(os.path.join(top, 'sub', 'deeper'))
    files = {'a.txt': (b'alpha\n', 0o640), 'sub/b.bin': (os.urandom(300000), 0o600),
             'sub/deeper/c': (b'', 0o755), 'big.sparse': (None, 0o644)}
    for name, (data, mode) in files.items():
        p = os.path.join(top, name)
        with open(p, 'wb') as f:
            if data is None:  # 64 MiB with a little data at each end
                f.write(b'head')
                f.seek(64 << 20)
                f.write(b'tail')
            else:
                f.write(data)
        os.chmod(p, mode)
        os.utime(p, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.chown(os.path.join(top, 'a.txt'), 1234, 4321)
    os.symlink('../a.txt', os.path.join(top, 'sub', 'link'))
    os.utime(os.path.join(top, 'sub', 'link'), ns=(1_500_000_000_000_000_001,) * 2, follow_symlinks=False)
    os.chmod(os.path.join(top, 'sub'), 0o750)
    for d in ('sub/deeper', 'sub', ''):
        os.utime(os.path.join(top, d), ns=(1_400_000_000_000_000_002,) * 2)


def describe(top):
    """Everything cp keeps, per relative path."""
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            entry = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
            if os.path.islink(p):
                entry += (os.readlink(p),)
            elif os.path.isfile(p):
                with open(p, 'rb') as f:
                    entry += (f.read(),)
            out[rel] = entry
    st = os.lstat(top)
    out['.'] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def write_big(path, mib=768):
    """mib MiB of data (no holes): a copy long enough to interrupt."""
    with open(path, 'wb') as f:
        block = os.urandom(1 << 20)
        for _ in range(mib):
            f.write(block)
    return path


def no_temporaries(top):
    return [n for _, dirs, files in os.walk(top) for n in dirs + files if n.startswith('.kdiag-cp-')]


def test_cp_file_out_of_distroless(cluster, tmp_path):
    r = cluster.diag('cp', 'pod/distroless:/hello-server', str(tmp_path))
    assert r.returncode == 0, r.stderr
    got, orig = tmp_path / 'hello-server', image_file('distroless', '/hello-server')
    assert got.read_bytes() == open(orig, 'rb').read()
    assert os.stat(got).st_mode == os.stat(orig).st_mode
    assert os.stat(got).st_mtime_ns == os.stat(orig).st_mtime_ns
    assert 'cp:' not in r.stderr  # no progress line: stderr is not a terminal


def test_cp_out_to_a_bare_new_name_in_the_current_directory(cluster, tmp_path):
    """`cp pod:/f newname`: the destination's directory is ".", not ""."""
    r = subprocess.run([CLI, 'cp', 'pod/distroless:/hello-server', 'hs'], capture_output=True, text=True,
                       timeout=120, env=cluster.env(), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'hs').read_bytes() == open(image_file('distroless', '/hello-server'), 'rb').read()


def test_cp_dash_is_stdout_out_of_the_pod_and_stdin_into_it(cluster, tmp_path):
    """`cp POD:FILE -`: the file's content on stdout, a hole as zeros (was: a local file named "-").
    A directory is refused; a reader that goes (| head) ends the copy quietly with 141, as cat.
    `cp - POD:PATH`: stdin into the pod (was: a local file "-" looked for), named stdin in a
    directory, as cp /dev/stdin DIR names it; kept in $TMPDIR while read, a bad one said."""
    def cp(*args, **kw):
        return subprocess.run([CLI, 'cp'] + list(args), capture_output=True, timeout=120, env=cluster.env(),
                              cwd=str(tmp_path), **kw)
    r = cp('pod/distroless:/hello-server', '-')
    assert (r.returncode, error_lines(r.stderr.decode())) == (0, [])
    assert r.stdout == open(image_file('distroless', '/hello-server'), 'rb').read()
    holey = tmp_path / 'holey'
    with open(holey, 'wb') as f:
        f.write(b'head' + os.urandom(100000))
        f.seek(8 << 20)
        f.write(b'tail')
    assert cluster.diag('cp', str(holey), 'distroless:/tmp/holey').returncode == 0
    r = cp('pod/distroless:/tmp/holey', '-')
    assert (r.returncode, r.stderr) == (0, b'') and r.stdout == holey.read_bytes()
    r = cp('pod/distroless:/tmp', '-')
    assert r.returncode == 1
    assert error_lines(r.stderr.decode()) == [
        'error: cp from pod/distroless: cannot write tmp to stdout: only one regular file\'s content goes '
        'there; name a local directory instead: Is a directory (EISDIR)']
    p = subprocess.Popen([CLI, 'cp', 'pod/distroless:/tmp/holey', '-'], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=cluster.env(), cwd=str(tmp_path))
    assert p.stdout.read(100) == b'head' + holey.read_bytes()[4:100]
    p.stdout.close()
    assert p.wait(60) == 141
    assert p.stderr.read() == b''
    data = os.urandom(300000)
    r = cp('-', 'pod/distroless:/tmp/in', input=data)
    assert (r.returncode, error_lines(r.stderr.decode())) == (0, [])
    assert cp('pod/distroless:/tmp/in', '-').stdout == data
    r = cp('-', 'distroless:/tmp/', input=b'into a directory: its name is stdin, as cp /dev/stdin DIR makes it\n')
    assert (r.returncode, error_lines(r.stderr.decode())) == (0, [])
    assert cp('pod/distroless:/tmp/stdin', '-').stdout.startswith(b'into a directory')
    r = subprocess.run([CLI, 'cp', '-', 'pod/distroless:/tmp/never'], input=b'x', capture_output=True, timeout=60,
                       env=dict(cluster.env(), TMPDIR=str(tmp_path / 'missing')))
    assert r.returncode == 1
    assert error_lines(r.stderr.decode()) == [
        'error: cannot keep stdin in %s while it is read (cp sends a file of known size): No such file or '
        'directory; set TMPDIR to a writable directory with room' % (tmp_path / 'missing')]
    assert os.listdir(tmp_path) == ['holey']


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['term', 'ctrl_c'])
def test_cp_to_stdout_ends_on_a_stop_signal_while_its_reader_does_not_read(cluster, tmp_path, sig):
    """`cp POD:FILE - | less` (or any reader that stopped reading): the copy's write to the full
    pipe blocked, and SIGTERM or Ctrl-C ended nothing until the reader read or went. Now the
    signal interrupts that write: "cp interrupted", exit 1, at once."""
    r = subprocess.run([CLI, 'cp', '-', 'pod/distroless:/tmp/stall'], input=os.urandom(4 << 20),
                       capture_output=True, timeout=120, env=cluster.env())
    assert r.returncode == 0, r.stderr
    rfd, wfd = os.pipe()
    p = subprocess.Popen([CLI, 'cp', 'pod/distroless:/tmp/stall', '-'], stdin=subprocess.DEVNULL, stdout=wfd,
                         stderr=subprocess.PIPE, env=cluster.env())
    os.close(wfd)
    try:
        size = fcntl.fcntl(rfd, fcntl.F_GETPIPE_SZ)
        queued = lambda: int.from_bytes(fcntl.ioctl(rfd, termios.FIONREAD, bytes(4)), 'little')
        def writing():  # a thread of it waits in the kernel's pipe_write (anon_pipe_write on 6.x)
            wchans = []
            for t in os.listdir('/proc/%d/task' % p.pid):
                with contextlib.suppress(OSError), open('/proc/%d/task/%s/wchan' % (p.pid, t)) as f:
                    wchans.append(f.read())
            return any('pipe_write' in w for w in wchans)
        wait_for(lambda: queued() == size or writing() or p.poll() is not None, 60, what='the pipe full')
        assert p.poll() is None, p.stderr.read()
        p.send_signal(sig)
        assert p.wait(timeout=10) == 1
        assert error_lines(p.stderr.read().decode()) == ['error: cp interrupted']
    finally:
        p.kill()
        p.wait()
        os.close(rfd)


def test_cp_tree_round_trip_through_distroless(cluster, tmp_path):
    src, back = str(tmp_path / 'tree'), str(tmp_path / 'back')
    make_tree(src)
    r = cluster.diag('cp', src, 'distroless:/tmp')  # an existing directory: /tmp/tree
    assert r.returncode == 0, r.stderr
    r = cluster.diag('cp', 'pod/distroless:/tmp/tree', back)  # a new name
    assert r.returncode == 0, r.stderr
    assert describe(back) == describe(src)
    st = os.stat(os.path.join(back, 'big.sparse'))
    assert st.st_size == (64 << 20) + 4 and st.st_blocks * 512 < (1 << 20), 'not sparse'
    assert no_temporaries(str(tmp_path)) == []


def test_cp_of_a_containers_root_leaves_kernel_filesystems_empty(cluster, fresh_pod, tmp_path):
    """`cp pod:/ DIR`, the whole filesystem of an image without tar: /proc and /sys (kernel
    filesystems mounted in it) arrive as empty directories, the image's files as they are (was:
    the first file of /proc that cannot be read, /proc/sys/kernel/..., ended the copy, exit 1)."""
    back = tmp_path / 'root'
    r = cluster.diag('cp', 'pod/%s:/' % fresh_pod, str(back))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(back / 'proc')) == [] and sorted(os.listdir(back / 'sys')) == []
    rootfs = image_file('nginx', '/')
    files = 0
    for top, dirs, names in os.walk(rootfs):
        for n in names:
            p = os.path.join(top, n)
            runtime_mounted = os.path.relpath(p, rootfs) in ('etc/hosts', 'etc/hostname', 'etc/resolv.conf')
            if os.path.isfile(p) and not os.path.islink(p) and not runtime_mounted:
                with open(p, 'rb') as f, open(os.path.join(str(back), os.path.relpath(p, rootfs)), 'rb') as g:
                    assert f.read() == g.read(), p
                files += 1
    assert files > 0
    assert no_temporaries(str(tmp_path)) == []


def test_cp_namespace_slash_pod_as_kubectl_cp_takes_it(cluster, tmp_path):
    """kubectl cp's NAMESPACE/POD:PATH, both ways (was: taken for a local path, a usage error)."""
    ns = 'cp-ns-%d' % os.getpid()
    cluster.ok('create', 'namespace', ns)
    try:
        cluster.ok('run', 'web', '-n', ns, '--image=nginx', '--restart=Never')
        cluster.wait_running('web', ns=ns)
        r = cluster.diag('cp', '%s/web:/etc/hostname' % ns, str(tmp_path / 'h'))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / 'h').read_text() == 'web\n'
        (tmp_path / 'in').write_bytes(b'into another namespace\n')
        r = cluster.diag('cp', str(tmp_path / 'in'), '%s/web:/tmp/in' % ns)
        assert r.returncode == 0, r.stderr
        r = cluster.diag('exec', '--tools', '-n', ns, 'web', '--', 'cat', '/tmp/in')
        assert (r.returncode, r.stdout) == (0, 'into another namespace\n'), r.stderr
        r = cluster.diag('cp', '-n', 'default', '%s/web:/etc/hostname' % ns, str(tmp_path / 'h2'))
        assert r.returncode == 2
        assert error_lines(r.stderr) == ['error: two namespaces given (-n default and "%s/"): use one' % ns]
    finally:
        cluster.kubectl('delete', 'namespace', ns, '--wait=false')


def test_cp_zstd_and_plain_chunks_round_trip(cluster, tmp_path):
    """Chunks that compress (log text) and chunks that do not (random bytes), interleaved in one
    file, into the pod and back out, through kubectl: byte for byte, with zstd (the default) and
    with KDIAG_CP_ZSTD=0 (docs/cp.md "Compression"; test/copy counts the bytes on the wire)."""
    src = tmp_path / 'mixed.log'
    with open(src, 'wb') as f:
        for i in range(30):
            f.write(b''.join(b'2026-12-02T20:%02d:%02d level=info msg="request %d done"\n' % (i, k % 60, k)
                             for k in range(6000)) if i % 3 else os.urandom(300000))
    size = src.stat().st_size
    assert size > 8 << 20
    for env in ({}, {'KDIAG_CP_ZSTD': '0'}):
        name = 'mixed-%d.log' % len(env)
        r = subprocess.run([CLI, 'cp', str(src), 'distroless:/tmp/' + name], capture_output=True,
                           text=True, timeout=120, env=cluster.env(env))
        assert r.returncode == 0, r.stderr
        back = tmp_path / ('back-' + name)
        r = subprocess.run([CLI, 'cp', 'distroless:/tmp/' + name, str(back)], capture_output=True,
                           text=True, timeout=120, env=cluster.env(env))
        assert r.returncode == 0, r.stderr
        assert back.read_bytes() == src.read_bytes(), env


def test_cp_into_a_pod_50ms_away_as_fast_as_out_of_it(cluster, tmp_path):
    """The manager's receive window grows to the bandwidth-delay product (docs/rpc.md, "receive
    window"): with the API server 50 ms away (a proxy holding each byte 25 ms each way), 32 MiB go
    into the pod about as fast as they come out of it. With the window fixed at 64 KiB, one
    128 KiB chunk crossed per round trip: 64 MiB took 26.8 s into the pod, 1.2 s out of it."""
    src, back = tmp_path / 'r32', tmp_path / 'r32.back'
    src.write_bytes(os.urandom(32 << 20))
    took = {}
    with delayed_kubeconfig(cluster.kubeconfig, 25, str(tmp_path / 'kubeconfig')) as kc:
        env = cluster.env({'KUBECONFIG': kc})
        for way, args in (('into', [str(src), 'distroless:/tmp/r32']), ('out of', ['distroless:/tmp/r32', str(back)])):
            t0 = time.monotonic()
            r = subprocess.run([CLI, 'cp'] + args, capture_output=True, text=True, timeout=120, env=env)
            took[way] = time.monotonic() - t0
            assert r.returncode == 0, r.stderr
    assert back.read_bytes() == src.read_bytes()
    assert took['into'] < 2 * took['out of'] + 2, took


def test_cp_out_of_a_pod_drops_set_id_bits_that_into_it_keeps(cluster, tmp_path):
    """A set-uid root program copied out of a pod by root was one here too: a file of a
    compromised pod gave whoever may run it root on this machine. Out of the pod set-uid and
    set-gid are dropped, as kubectl cp does; into the pod they are kept; the sticky bit both ways."""
    src, back = tmp_path / 'setid', tmp_path / 'back'
    src.mkdir()
    modes = {'suid': 0o4755, 'sgid': 0o2711, 'both': 0o6750, 'sticky': 0o1777}
    for name, mode in modes.items():
        (src / name).mkdir() if name == 'sticky' else (src / name).write_bytes(b'#!/bin/sh\n')
        os.chmod(src / name, mode)
    r = cluster.diag('cp', str(src), 'distroless:/tmp')
    assert r.returncode == 0, r.stderr
    r = cluster.diag('exec', '--tools', 'pod/distroless', '--', 'stat', '-c', '%n %a', *['/tmp/setid/' + n for n in modes])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split('\n')[:-1] == ['/tmp/setid/%s %o' % (n, m) for n, m in modes.items()], r.stdout
    r = cluster.diag('cp', 'pod/distroless:/tmp/setid', str(back))
    assert r.returncode == 0, r.stderr
    got = {n: os.lstat(back / n).st_mode & 0o7777 for n in modes}
    assert got == {'suid': 0o755, 'sgid': 0o711, 'both': 0o750, 'sticky': 0o1777}, {n: oct(m) for n, m in got.items()}
    assert all(os.lstat(back / n).st_uid == 0 for n in modes)


def test_cp_into_nginx_by_selector(cluster, tmp_path):
    f = tmp_path / 'note.txt'
    f.write_text('from the laptop\n')
    r = cluster.diag('cp', str(f), '-l', 'app=nginx', ':/tmp/renamed.txt')
    assert r.returncode == 0, r.stderr
    r = cluster.diag('cp', '-l', 'app=nginx', '-t', 'nginx', ':/tmp/renamed.txt', str(tmp_path / 'again'))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'again').read_text() == 'from the laptop\n'


def test_cp_paths_stay_inside_the_container(cluster, tmp_path):
    r = cluster.diag('cp', 'distroless:../../../../hello-server', str(tmp_path / 'hs'))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'hs').read_bytes() == open(image_file('distroless', '/hello-server'), 'rb').read()
    f = tmp_path / 'x'
    f.write_text('x\n')
    marker = 'kdiag-cp-e2e-escape-%d' % os.getpid()
    r = cluster.diag('cp', str(f), 'distroless:/../../../' + marker)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists('/' + marker)
    r = cluster.diag('cp', 'distroless:/' + marker, str(tmp_path / 'y'))  # it is at the container's /
    assert r.returncode == 0, r.stderr


def test_cp_into_a_pod_sets_a_directorys_mode_on_it_not_on_a_symlink_put_in_its_place(cluster, tmp_path):
    """A process of the pod swaps the copy's temporary directory for a symlink to another file
    while the copy writes into it: the directory's mode must not land on that file (the manager
    is root with FOWNER; the file could be /etc/passwd)."""
    src = tmp_path / 'src'
    src.mkdir()
    write_big(src / 'big', mib=256)  # the time to swap
    os.chmod(src, 0o751)
    top = '/tmp/kdiag-swap-%d' % os.getpid()
    r = cluster.diag('exec', '--tools', 'pod/nginx', '--', 'sh', '-c',
                     'mkdir -p %s/dst && echo secret > %s/victim && chmod 600 %s/victim' % (top, top, top))
    assert r.returncode == 0, r.stderr
    swap = ('echo watching; while :; do for d in %s/dst/.kdiag-cp-*; do if [ -d "$d" ]; then '
            'mv "$d" %s/moved && ln -s ../victim "$d" && echo swapped && exit 0; fi; done; done' % (top, top))
    attacker = subprocess.Popen([CLI, 'exec', '--tools', 'pod/nginx', '--', 'sh', '-c', swap], text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=cluster.env())
    try:
        assert attacker.stdout.readline() == 'watching\n'
        r = cluster.diag('cp', str(src), 'pod/nginx:%s/dst/' % top, timeout=300)
        assert attacker.wait(timeout=30) == 0 and attacker.stdout.read() == 'swapped\n', 'no swap: ' + r.stderr
        r = cluster.diag('exec', '--tools', 'pod/nginx', '--', 'stat', '-c', '%a', top + '/victim')
        assert r.stdout == '600\n', r.stderr
    finally:
        attacker.kill()
        attacker.wait()
        cluster.diag('exec', '--tools', 'pod/nginx', '--', 'rm', '-rf', top)


def test_cp_onto_a_file_the_runtime_mounts_is_refused_and_leaves_the_mount(cluster, tmp_path):
    """/etc/hosts is bind-mounted into the container: a rename over it from the manager's mount
    namespace would unmount it there (the copy then replaced the kubelet's file in the container)."""
    def hosts():
        r = cluster.diag('exec', '--tools', 'pod/nginx', '--', 'sh', '-c',
                         'grep -c " /etc/hosts " /proc/self/mountinfo; cat /etc/hosts')
        assert r.returncode in (0, 1), r.stderr
        return r.stdout
    before = hosts()
    assert before.startswith('1\n'), before
    f = tmp_path / 'hosts'
    f.write_text('10.9.9.9 not-the-kubelets\n')
    r = cluster.diag('cp', str(f), 'pod/nginx:/etc/hosts')
    assert r.returncode == 1, r.stderr
    assert error_lines(r.stderr)[-1] == (
        'error: cp to pod/nginx: cannot copy to /etc/hosts: it is a mount point (a file the runtime mounts, '
        'as /etc/hosts or a ConfigMap subPath), and replacing it would unmount it: Device or resource busy '
        '(EBUSY)'), r.stderr
    assert hosts() == before


def test_cp_missing_path_says_which_and_why(cluster, tmp_path):
    r = cluster.diag('cp', 'pod/distroless:/no/such/file', str(tmp_path / 'out'))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith('error: cp from pod/distroless: '), r.stderr
    assert '/no/such' in lines[-1] and '(ENOENT)' in lines[-1], r.stderr
    assert not (tmp_path / 'out').exists()
    r = cluster.diag('cp', str(tmp_path / 'missing'), 'distroless:/tmp/')
    assert r.returncode == 1 and str(tmp_path / 'missing') in r.stderr and '(ENOENT)' in r.stderr, r.stderr
    r = cluster.diag('cp', 'a', 'b')
    assert r.returncode == 2 and 'POD:PATH' in r.stderr, r.stderr


def test_cp_of_a_device_or_fifo_says_what_it_is(cluster, tmp_path):
    r = cluster.diag('cp', 'pod/distroless:/dev/null', str(tmp_path / 'out'))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        'error: cp from pod/distroless: cannot copy /dev/null: it is a character device; '
        'cp copies regular files, directories and symbolic links'), r.stderr
    assert not (tmp_path / 'out').exists()
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    r = cluster.diag('cp', fifo, 'pod/distroless:/tmp/fifo')
    assert r.returncode == 1, r.stderr  # refused by the copy, not a usage error: as from the pod
    assert r.stderr.strip().splitlines()[-1] == (
        'error: cp to pod/distroless: cannot copy %s: it is a FIFO; '
        'cp copies regular files, directories and symbolic links' % fifo), r.stderr


def test_cp_from_a_pod_deleted_meanwhile_says_the_pod_went(cluster, fresh_pod, tmp_path):
    """The manager frozen mid-copy, then its pod deleted: the error names the pod's end, and no
    temporary file is left here."""
    big = write_big(tmp_path / 'big', 64)
    r = cluster.diag('cp', str(big), 'pod/%s:/tmp/big' % fresh_pod, timeout=120)
    assert r.returncode == 0, r.stderr
    out = tmp_path / 'out'
    out.mkdir()
    p = subprocess.Popen([CLI, 'cp', 'pod/%s:/tmp/big' % fresh_pod, str(out)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    try:
        managers = cluster.pids_in_pod(fresh_pod, 'kdiag-manager')
        assert managers
        wait_for(lambda: no_temporaries(str(out)) or p.poll() is not None, 60, interval=0.01,
                 what='the temporary file here')
        for pid in managers:
            os.kill(pid, signal.SIGSTOP)  # the copy stops where it is; the deletion kills it
        assert p.poll() is None, 'the copy ended before its pod could be deleted'
        cluster.ok('delete', 'pod', fresh_pod, '--now')
        assert p.wait(timeout=60) == 1
        err = error_lines(p.stderr.read().decode())
        assert len(err) == 1 and err[0].startswith(
            'error: cp from pod/%s: the copy ended: pod/%s is ' % (fresh_pod, fresh_pod)), err
        assert os.listdir(out) == []
    finally:
        p.kill()
        p.wait()


def test_cp_progress_line_on_a_terminal(cluster, tmp_path):
    master, slave = pty.openpty()
    p = subprocess.Popen([CLI, 'cp', 'pod/distroless:/hello-server', str(tmp_path)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave, env=cluster.env())
    os.close(slave)
    seen = b''
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every writer is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(timeout=120) == 0, seen
    assert b'\rcp: ' not in p.stdout.read()
    assert b'\r\x1b[Kcp: ' in seen and b'1 entry\r\n' in seen, seen


def test_cp_ctrl_c_leaves_nothing_in_the_pod(cluster, tmp_path):
    big = write_big(tmp_path / 'big')

    def pod_tmp():
        r = cluster.diag('shell', 'pod/nginx', '--', '-c', 'ls -a /tmp')
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    p = subprocess.Popen([CLI, 'cp', str(big), 'pod/nginx:/tmp/big'], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    try:
        wait_for(lambda: any(n.startswith('.kdiag-cp-') for n in pod_tmp()) or p.poll() is not None, 60,
                 what='the temporary file in the pod')
        assert p.poll() is None, 'the copy ended before it could be interrupted'
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 1
        assert 'interrupted' in p.stderr.read().decode()
        wait_for(lambda: not [n for n in pod_tmp() if n.startswith('.kdiag-cp-') or n == 'big'], 20,
                 what='no temporary and no big in the pod\'s /tmp')
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGHUP, signal.SIGQUIT], ids=['ctrl_c', 'hangup', 'ctrl_bs'])
def test_cp_stop_signal_leaves_nothing_here(cluster, tmp_path, sig):
    """Ctrl-C, the terminal closing (SIGHUP) or Ctrl-\\ (SIGQUIT) mid-copy out of the pod."""
    big = write_big(tmp_path / 'big')
    r = cluster.diag('cp', str(big), 'pod/nginx:/tmp/whole', timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / 'out'
    out.mkdir()
    p = subprocess.Popen([CLI, 'cp', 'pod/nginx:/tmp/whole', str(out)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    try:
        wait_for(lambda: no_temporaries(str(out)) or p.poll() is not None, 60, interval=0.02,
                 what='the temporary file here')
        assert p.poll() is None, 'the copy ended before it could be interrupted'
        p.send_signal(sig)
        assert p.wait(timeout=30) == 1
        assert 'interrupted' in p.stderr.read().decode()
        assert os.listdir(out) == []
    finally:
        p.kill()
        p.wait()


def manager_hwm_kib(cluster, pod):
    """Peak RSS (VmHWM) of the kdiag-managers in pod's network namespace, in KiB."""
    peaks = []
    for pid in cluster.pids_in_pod(pod, 'kdiag-manager'):
        try:
            with open('/proc/%d/status' % pid) as f:
                peaks += [int(l.split()[1]) for l in f if l.startswith('VmHWM:')]
        except OSError:
            pass
    return peaks


def cp_peak_rss_kib(cluster, *args):
    """kubectl diag cp ARGS; its own peak RSS in KiB (its port-forward child not counted)."""
    p = subprocess.Popen([CLI, 'cp', *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=cluster.env())
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    assert p.returncode == 0, err
    return ru.ru_maxrss


def test_cp_1gib_round_trip_same_sha256_in_constant_memory(cluster, tmp_path):
    """Issue #11: 1 GiB without holes into the pod and back, sha256 equal; the manager's and the
    CLI's peak RSS stay far below the file's size."""
    src, back, h = tmp_path / 'gib', tmp_path / 'gib.back', hashlib.sha256()
    block = bytearray(os.urandom(1 << 20))
    with open(src, 'wb') as f:
        for i in range(1024):  # every MiB different: its index in the first bytes
            block[:8] = i.to_bytes(8, 'little')
            f.write(block)
            h.update(block)
    try:
        cli_in = cp_peak_rss_kib(cluster, str(src), 'pod/nginx:/tmp/gib')
        cli_out = cp_peak_rss_kib(cluster, 'pod/nginx:/tmp/gib', str(back))
        managers = manager_hwm_kib(cluster, 'nginx')
    finally:
        cluster.diag('shell', 'pod/nginx', '--', '-c', 'rm -f /tmp/gib')
    os.unlink(src)
    try:
        st = os.stat(back)
        assert st.st_size == 1 << 30 and st.st_blocks * 512 >= 1 << 30, 'not all of it, or sparse'
        with open(back, 'rb') as f:
            assert hashlib.file_digest(f, 'sha256').hexdigest() == h.hexdigest()
    finally:  # pytest keeps the last runs' tmp_path: not 2 GiB of them
        os.unlink(back)
    print('peak RSS kB: CLI in %d, CLI out %d, managers %s' % (cli_in, cli_out, managers))
    # 8.5-9 MB from 64 MiB to 1 GiB with a 64 KiB receive window. Since it grows (docs/rpc.md,
    # "receive window"): 11-20 MB when this test runs alone, 45 MB after the tests before it left
    # the page cache dirty and the manager's writes lag; its gRPC memory is capped at 128 MiB
    assert managers and max(managers) < 96 << 10, managers
    # The CLI's is not constant yet: 51-55 MB at 64 MiB; at 1 GiB 54-166 MB into the pod (166 with
    # a 1 MiB manager window on trial) and 67-138 MB out of it, varying run to run (gRPC core's
    # buffers or malloc's arenas: not found)
    assert max(cli_in, cli_out) < 256 << 10, (cli_in, cli_out)


def test_cp_six_at_once_into_one_pod(cluster, tmp_path):
    """Six copies of 128 MiB into one pod at once, six CLIs and connections, while the manager stops
    three times for a second (a slow disk or CPU): all complete and arrive whole. Each client keeps
    at most its window (8 MiB) unwritten by the manager (docs/cp.md, "Memory and flow control").
    Before that, each connection could get 16 MiB or more buffered in the manager's gRPC, whose
    quota (128 MiB, docs/rpc.md) then cancelled a copy (RST_STREAM 11): once in CI, and in 2 runs
    of 3 here with the quota at 32 MiB (5 of 5 passed with the window, at 2 MiB). In the
    distroless pod and last in this file, away from the 1 GiB test's measure of the nginx pod's
    manager."""
    src = tmp_path / 'r128'
    src.write_bytes(os.urandom(128 << 20))
    names = ['/tmp/six-%d' % i for i in range(6)]
    managers = []
    try:
        procs = [subprocess.Popen([CLI, 'cp', str(src), 'pod/distroless:' + n], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env()) for n in names]
        wait_for(lambda: cluster.pids_in_pod('distroless', 'kdiag-manager'), 60, what="the pod's manager")
        managers = cluster.pids_in_pod('distroless', 'kdiag-manager')
        time.sleep(0.5)
        for _ in range(3):
            for pid in managers:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(1)
            for pid in managers:
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.5)
        errs = [p.communicate(timeout=300)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errs
        r = cluster.diag('shell', 'pod/distroless', '--', '-c', 'sha256sum ' + ' '.join(names))
        assert r.returncode == 0, r.stderr
        want = hashlib.sha256(src.read_bytes()).hexdigest()
        assert [line.split()[0] for line in r.stdout.splitlines()] == [want] * 6, r.stdout
    finally:
        for pid in managers:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        cluster.diag('shell', 'pod/distroless', '--', '-c', 'rm -f ' + ' '.join(names))


def test_a_bad_local_path_adds_no_debug_container(cluster, fresh_pod, tmp_path):
    # checked here before the pod's debug container is added: one added for a copy that then
    # fails on this side would stay in the pod for good
    missing, nodir = tmp_path / 'nosuch', tmp_path / 'no' / 'dir'
    r = cluster.diag('cp', str(missing), 'pod/%s:/tmp/' % fresh_pod)
    assert r.returncode == 1 and 'cannot copy %s: No such file or directory' % missing in r.stderr, r.stderr
    r = cluster.diag('cp', 'pod/%s:/etc/hostname' % fresh_pod, str(nodir / 'x'))
    assert r.returncode == 1, r.stderr
    assert 'cannot copy to %s/: No such file or directory' % nodir in r.stderr, r.stderr
    r = cluster.diag('capture', 'pod/' + fresh_pod, '-c', '1', '-w', str(nodir / 'x.pcap'))
    assert r.returncode == 1 and 'cannot write %s' % (nodir / 'x.pcap') in r.stderr, r.stderr
    assert not cluster.pod(fresh_pod)['spec'].get('ephemeralContainers')
