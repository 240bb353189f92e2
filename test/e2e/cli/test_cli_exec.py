"""kubectl diag shell and exec through the manager's Exec RPC (docs/exec.md), through the real
kubectl (port-forward only) on the simulated cluster: pipes, a real terminal (Python's pty: the
shell's `tty`, resize, Ctrl-C, exit code, the terminal restored; and the same in tmux, a real
terminal emulator), programs of the target, busybox tools, a missing command."""
import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time

import pytest

from conftest import CLI, VIEWER_TOKEN, cmdline, error_lines, wait_for


def test_shell_on_pipes_in_the_distroless_pod(cluster):
    r = cluster.diag('shell', 'pod/distroless', input='ls /\ntty\necho done-$((6*7))\nexit 4\n')
    assert r.returncode == 4, r.stdout + r.stderr
    assert 'hello-server' in r.stdout.split()
    assert 'not a tty' in r.stdout          # pipes, not a terminal
    assert 'done-42' in r.stdout


def test_exec_runs_a_program_of_the_target(cluster):
    r = cluster.diag('exec', 'pod/distroless', '--', '/hello-server', '0')
    assert r.returncode == 2, r.stdout + r.stderr
    assert "hello-server: invalid port '0'" in r.stderr


def test_exec_target_path_and_stdin(cluster):
    r = cluster.diag('exec', '-i', 'pod/nginx', '--', 'sh', '-c', 'read x; echo got-$x; exit 3', input='abc\n')
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout == 'got-abc\n'


def run_with_fd_closed(cluster, fd, *args):
    """kubectl diag ARGS with fd (0, 1 or 2) closed, as `<&-` or `>&-` in a shell."""
    pipes = {'stdin': subprocess.DEVNULL, 'stdout': subprocess.PIPE, 'stderr': subprocess.PIPE}
    return subprocess.run([CLI] + list(args), text=True, timeout=60, env=cluster.env(),
                          preexec_fn=lambda: os.close(fd), **pipes)


def test_exec_i_with_stdin_closed_gives_the_program_eof(cluster):
    """`<&-`: the program reads EOF (was: the CLI read its own eventfd as stdin and hung)."""
    r = run_with_fd_closed(cluster, 0, 'exec', '-i', 'pod/nginx', '--', 'sh', '-c', 'cat; echo eof; exit 3')
    assert (r.returncode, r.stdout) == (3, 'eof\n'), r.stderr


def test_exec_with_stdout_closed_keeps_the_exit_code(cluster):
    """`>&-`: the output goes nowhere, as with kubectl exec (was: written into an eventfd, EINVAL, exit 1)."""
    r = run_with_fd_closed(cluster, 1, 'exec', 'pod/nginx', '--', 'sh', '-c', 'echo out; exit 4')
    assert r.returncode == 4, r.stderr
    assert error_lines(r.stderr) == [], r.stderr  # run first, the debug container may still be starting


def test_exec_output_to_a_non_blocking_pipe_waits_for_its_reader(cluster):
    """Stdout a pipe left O_NONBLOCK by whoever shares it, read late: the output waits, all of it
    arrives and the exit code is the program's (was: EAGAIN, the program stopped, exit 1)."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    p = subprocess.Popen([CLI, 'exec', '--tools', 'pod/nginx', '--', 'sh', '-c', 'head -c 1000000 /dev/zero; exit 4'],
                         stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, env=cluster.env())
    os.close(w)
    try:
        time.sleep(2)  # the pipe fills meanwhile
        with os.fdopen(r, 'rb') as f:
            out = f.read()
        assert (p.wait(timeout=60), len(out)) == (4, 1000000), p.stderr.read()
    finally:
        p.kill()
        p.wait()


def test_exec_stdin_a_non_blocking_pipe_that_another_reader_shares(cluster):
    """Stdin a pipe left O_NONBLOCK and read by another process too (a job of the same shell): poll
    says readable, the other reader takes the bytes first, read says EAGAIN. That is not the end of
    stdin: the program reads on until the writer closes (was: EAGAIN closed stdin, and the command
    ended while bytes still came)."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    p = subprocess.Popen([CLI, 'exec', '-i', '--tools', 'pod/nginx', '--', 'sh', '-c', 'cat >/dev/null; exit 5'],
                         stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    done = threading.Event()

    def other_reader():
        poller = select.poll()
        poller.register(r, select.POLLIN)
        while not done.is_set():
            if poller.poll(100):
                try:
                    if os.read(r, 1) == b'':
                        return
                except BlockingIOError:
                    pass

    t = threading.Thread(target=other_reader)
    t.start()
    try:
        for _ in range(1500):
            os.write(w, b'x')
            time.sleep(0.001)
        assert p.poll() is None, p.communicate()  # its stdin is still open
        os.close(w)
        w = -1
        out, err = p.communicate(timeout=60)
        assert p.returncode == 5, err
    finally:
        done.set()
        t.join()
        if w >= 0:
            os.close(w)
        os.close(r)
        p.kill()
        p.wait()


def test_exec_tools_ls(cluster):
    r = cluster.diag('exec', '--tools', 'pod/distroless', '--', 'ls', '/')
    assert r.returncode == 0, r.stderr
    assert 'hello-server' in r.stdout.split()
    assert 'kdiag-manager' not in r.stdout   # the target's root, not the debug image's


def test_exec_program_starts_with_no_signal_ignored(cluster):
    """As under kubectl exec: what the manager inherited ignored (kubesim's Python runtime ignores SIGXFSZ,
    a shell's background job SIGQUIT) is not passed on, so Ctrl-\\ and RLIMIT_FSIZE still kill."""
    r = cluster.diag('exec', '--tools', 'pod/distroless', '--', 'grep', 'SigIgn', '/proc/self/status')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['SigIgn:', '0000000000000000']


def test_exec_missing_command_is_127_with_one_line(cluster):
    r = cluster.diag('exec', 'pod/distroless', '--', 'no-such-command', 'x')
    assert r.returncode == 127, r.stdout + r.stderr
    assert error_lines(r.stderr) == ["error: no-such-command: command not found in the target's PATH"]


def test_exec_of_a_directory_says_it_is_one_with_126(cluster):
    """execve gives EACCES for a directory: the line said 'Permission denied', as if a mode or a
    capability were missing."""
    r = cluster.diag('exec', 'pod/nginx', '--', '/etc', 'x')
    assert r.returncode == 126, r.stdout + r.stderr
    assert error_lines(r.stderr) == ['error: /etc: cannot execute in the target: Is a directory']


def test_exec_of_a_script_whose_interpreter_is_missing_says_so_with_126(cluster):
    """The script is there (in PATH, and by its path); its #! interpreter is not: not 'not found'."""
    name = 'kdiag-badinterp-%d' % os.getpid()
    r = cluster.diag('exec', 'pod/nginx', '--', 'sh', '-c',
                     'printf "#!/no/such/interpreter\\n" > /bin/%s && chmod 755 /bin/%s' % (name, name))
    assert r.returncode == 0, r.stderr
    try:
        for cmd in (name, '/bin/' + name):
            r = cluster.diag('exec', 'pod/nginx', '--', cmd)
            assert r.returncode == 126, r.stderr
            assert error_lines(r.stderr) == [
                'error: %s: cannot execute in the target: its #! interpreter or ELF loader (ld.so) is missing: '
                'No such file or directory' % cmd]
    finally:
        cluster.diag('exec', 'pod/nginx', '--', 'sh', '-c', 'rm -f /bin/' + name)


@pytest.mark.parametrize('stream', ['stdout', 'stderr'])
def test_exec_output_reader_gone_stops_the_program_with_141(cluster, stream):
    """`exec ... | head -c 2`: the command ends with 141 as kubectl exec does (SIGPIPE), and the
    program in the pod is stopped, instead of writing on into a pipe nobody reads."""
    mark = 'kdiag-pipe-' + stream
    script = 'exec yes %s%s' % (mark, '' if stream == 'stdout' else ' >&2')
    pipe, null = subprocess.PIPE, subprocess.DEVNULL
    p = subprocess.Popen([CLI, 'exec', 'pod/nginx', '--', 'sh', '-c', script], stdin=null,
                         stdout=pipe if stream == 'stdout' else null, stderr=pipe if stream == 'stderr' else null,
                         env=cluster.env())
    try:
        out = p.stdout if stream == 'stdout' else p.stderr
        assert out.read(2) == b'kd'
        out.close()
        assert p.wait(timeout=20) == 141
        wait_for(lambda: not cluster.pids_in_pod('nginx', mark), 10, what='the yes in the pod stopped')
    finally:
        p.kill()
        p.wait()


def test_exec_i_t_pod_says_that_t_names_the_container(cluster):
    """kubectl exec -i -t POD: here -t alone names the target container, so no pod was given, and
    the line said only that."""
    r = cluster.diag('exec', '-i', '-t', 'nginx', '--', 'sh', '-c', 'echo x')
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        'error: no pod given: name one with --pod NAME (or pod/NAME), name a workload (deploy/NAME, sts/NAME, '
        'rs/NAME, svc/NAME) or select with -l LABEL=VALUE (-t nginx names the target container: for a terminal, '
        'give --tty or -it)'], r.stderr


def test_exec_needs_a_command(cluster):
    r = cluster.diag('exec', 'pod/distroless')
    assert r.returncode == 2
    assert "exec needs a command after '--'" in r.stderr


def test_exec_in_a_pod_deleted_meanwhile_says_the_pod_went(cluster, bg, fresh_pod):
    """The pod deleted while its command runs: one error line names the pod's end, not the broken
    gRPC stream."""
    p = bg(cluster, 'exec', '--tools', 'pod/' + fresh_pod, '--', 'sh', '-c', 'echo started; exec sleep 60')
    p.wait_out('started')
    cluster.ok('delete', 'pod', fresh_pod, '--now')
    assert p.proc.wait(60) == 1, p.err()
    err = error_lines(p.err())
    assert len(err) == 1 and err[0].startswith('error: the command ended: pod/%s is ' % fresh_pod), p.err()
    assert 'gRPC status' not in p.err(), p.err()


class Term:
    """kubectl-diag on a pty of its own, the way a person runs it."""

    def __init__(self, cluster, args, rows=24, cols=80, before=''):
        env = cluster.env({'TERM': 'xterm'})
        # the parent shell prints the CLI's exit code and the terminal's mode after it ends
        cmd = before + '"$0" "$@"; echo "rc=$?"; stty -a'
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve('/bin/sh', ['/bin/sh', '-c', cmd, CLI] + list(args), env)
        self.resize(rows, cols)
        self.out = b''

    def resize(self, rows, cols):
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))

    def send(self, data):
        os.write(self.fd, data.encode())

    def expect(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, 'no %r in %r' % (text, self.out[-2000:])
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b''
                assert chunk, 'the terminal closed without %r in %r' % (text, self.out[-2000:])
                self.out += chunk
        return self.out.decode(errors='replace')

    def close(self):
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def until(term, keys, text, timeout=20):
    """Sends keys to term (a Term or a Tmux) until text shows: for what the CLI passes on in its
    own time, such as a resize."""
    deadline = time.monotonic() + timeout
    while True:
        term.send(*keys)
        try:
            return term.expect(text, timeout=1)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def wait_started(cluster, pod, command, before):
    """Waits until a process with command line command, not one of the host pids before, runs in pod
    (so a Ctrl-C sent next reaches it, not the shell that starts it)."""
    wait_for(lambda: set(cluster.pids_in_pod(pod, command)) - set(before), 30,
             what='%r running in pod/%s' % (command, pod))


def test_interactive_shell_has_a_terminal_and_returns_the_exit_code(cluster):
    t = Term(cluster, ['shell', 'pod/distroless'], rows=33, cols=91)
    try:
        t.expect('# ')
        t.send('tty; stty size\r')
        out = t.expect('33 91')
        assert '/dev/pts/' in out and 'not a tty' not in out, out
        t.send('exit 5\r')
        out = t.expect('rc=5')
        mode = t.expect('echok').split('rc=5')[1]   # stty -a of the local terminal, after kubectl-diag
        assert ' icanon' in mode and ' echo ' in mode, mode   # cooked again: restored
    finally:
        t.close()


def test_interactive_shell_resize_and_ctrl_c(cluster):
    t = Term(cluster, ['shell', 'pod/distroless'])
    try:
        t.expect('# ')
        t.resize(40, 120)                   # the kernel sends kubectl-diag SIGWINCH
        until(t, ('stty size\r',), '40 120')
        before = cluster.pids_in_pod('distroless', 'sleep 100')
        t.send('sleep 100\r')
        wait_started(cluster, 'distroless', 'sleep 100', before)
        t.send('\x03')                      # a byte in raw mode: the remote terminal's ^C
        t.send('echo after-$((20+22))\r')
        t.expect('after-42', timeout=20)    # sleep interrupted, the shell still there
        t.send('exit\r')
        t.expect('rc=0')
    finally:
        t.close()


def test_exec_it_runs_on_a_terminal(cluster):
    t = Term(cluster, ['exec', '-it', 'pod/nginx', '--', 'sh', '-c', 'tty; exit 6'])
    try:
        out = t.expect('rc=6')
        assert '/dev/pts/' in out, out
    finally:
        t.close()


def test_exec_tty_without_i_leaves_ctrl_c_a_signal(cluster):
    """--tty without -i: the program has a terminal, but this one stays cooked (its keys are not
    sent), so Ctrl-C is SIGINT, sent on (was: raw, and the ^C byte went nowhere)."""
    t = Term(cluster, ['exec', '--tty', 'pod/nginx', '--', 'sh', '-c', 'tty; sleep 60'],
             before="trap '' INT; ")  # the parent shell lives on to print rc
    try:
        t.expect('/dev/pts/')
        t.send('\x03')
        t.expect('rc=130', timeout=20)
    finally:
        t.close()


class Tmux:
    """kubectl-diag in a detached tmux session on a private server (its socket in a temporary
    directory: -S, since -L leaves the socket file behind), read with capture-pane; the CLI's
    exit code goes to a file, followed by the output of the shell command after, if any."""

    def __init__(self, cluster, args, rows, cols, after=None, job_control=False):
        self.dir = tempfile.mkdtemp(prefix='kdiag-tmux-')
        self.rc = os.path.join(self.dir, 'rc')
        self.sock = os.path.join(self.dir, 'tmux')
        self.env = cluster.env({'TERM': 'xterm'})
        then = '; %s >> %s 2>&1' % (after, shlex.quote(self.rc)) if after else ''
        cli = shlex.join([CLI] + list(args))
        self.report = 'echo rc=$? > %s%s; echo end >> %s' % (shlex.quote(self.rc), then, shlex.quote(self.rc))
        if not job_control:
            self.tmux('new-session', '-d', '-s', 'diag', '-x', str(cols), '-y', str(rows), cli + '; ' + self.report)
            self.report = None
            return
        # Typed into an interactive bash: a job it can stop and continue. The report is typed once
        # the job ended, since bash runs the rest of a list as soon as its first command stops.
        self.tmux('new-session', '-d', '-s', 'diag', '-x', str(cols), '-y', str(rows), 'PS1=bash$ bash --norc -i')
        try:
            self.expect('bash$')
            self.send(cli, 'Enter')
        except BaseException:  # no Tmux to close(): its server and bash would outlive the test
            self.close()
            raise

    def pids(self):
        """The pids of kubectl-diag on this pane's terminal."""
        tty = self.tmux('display', '-p', '-t', 'diag', '#{pane_tty}').strip().replace('/dev/', '')
        out = subprocess.run(['pgrep', '-f', '-t', tty, '^' + CLI], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def tmux(self, *args):
        return subprocess.run(['tmux', '-S', self.sock, '-f', '/dev/null'] + list(args), env=self.env,
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def send(self, *keys):
        self.tmux('send-keys', '-t', 'diag', *keys)

    def expect(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            screen = self.tmux('capture-pane', '-p', '-J', '-t', 'diag', '-S', '-200')
            if text in screen:
                return screen
            assert time.monotonic() < deadline, 'no %r on the screen:\n%s' % (text, screen)
            time.sleep(0.2)

    def exit_code(self, timeout=60):
        deadline = time.monotonic() + timeout
        if self.report:
            wait_for(lambda: not self.pids(), timeout, what='kubectl-diag ended')
            self.send(self.report, 'Enter')
        while not os.path.exists(self.rc) or not open(self.rc).read().endswith('end\n'):
            assert time.monotonic() < deadline, 'kubectl-diag did not end'
            time.sleep(0.2)
        return open(self.rc).read().split('\n')[0]

    def after(self):
        """The output of the command after (once exit_code returned)."""
        return open(self.rc).read().split('\n', 1)[1].rsplit('end\n', 1)[0]

    def close(self):
        subprocess.run(['tmux', '-S', self.sock, 'kill-server'], capture_output=True, timeout=30)
        shutil.rmtree(self.dir)


def test_shell_in_tmux_resize_ctrl_c_and_exit_code(cluster):
    t = Tmux(cluster, ['shell', 'pod/distroless'], rows=24, cols=80)
    try:
        t.expect('# ')
        t.send('stty size', 'Enter')
        t.expect('24 80')
        t.tmux('resize-window', '-t', 'diag', '-x', '120', '-y', '40')
        until(t, ('stty size', 'Enter'), '40 120')   # tmux's SIGWINCH, then the resize message
        before = cluster.pids_in_pod('distroless', 'sleep 100')
        t.send('sleep 100', 'Enter')
        wait_started(cluster, 'distroless', 'sleep 100', before)
        t.send('C-c')                        # the remote terminal's ^C for the foreground job
        t.send('echo after-$((20+22))', 'Enter')
        t.expect('after-42', timeout=20)     # sleep interrupted, the shell still there
        t.send('exit 3', 'Enter')
        assert t.exit_code() == 'rc=3'
    finally:
        t.close()


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGHUP])
def test_shell_killed_by_sigterm_or_sighup_ends_and_restores_the_terminal(cluster, sig):
    """As kubectl exec -it and ssh: a shell on a terminal ends when the CLI is told to (kill,
    timeout(1)), even with a job in the foreground that would not see the signal end the shell; the
    remote session goes and the local terminal is cooked again."""
    t = Tmux(cluster, ['shell', 'pod/distroless'], rows=24, cols=80, after='stty -a')
    try:
        t.expect('# ')
        before = cluster.pids_in_pod('distroless', 'sleep 101')
        t.send('sleep 101', 'Enter')
        wait_started(cluster, 'distroless', 'sleep 101', before)
        cli = t.pids()
        assert len(cli) == 1, cli
        os.kill(cli[0], sig)
        assert t.exit_code(timeout=20) == 'rc=%d' % (128 + sig)
        stty = t.after().split()
        assert 'icanon' in stty and 'echo' in stty and 'isig' in stty, stty
        wait_for(lambda: not set(cluster.pids_in_pod('distroless', 'sleep 101')) - set(before), 20,
                 what='sleep 101 ended')
    finally:
        t.close()


def test_shell_stopped_and_continued_makes_the_terminal_raw_again(cluster):
    """kill -TSTP stops the CLI and its shell (bash) takes the terminal back; `fg` hands it on cooked, and
    the CLI makes it raw again, so keys reach the remote shell once (not echoed by both terminals)."""
    t = Tmux(cluster, ['shell', 'pod/distroless'], rows=24, cols=80, job_control=True)
    try:
        t.expect('/ # ')
        tty = t.tmux('display', '-p', '-t', 'diag', '#{pane_tty}').strip()
        def local():
            return subprocess.run(['stty', '-a', '-F', tty], capture_output=True, text=True).stdout.split()
        assert '-icanon' in local()
        cli = t.pids()
        assert len(cli) == 1, cli
        os.kill(cli[0], signal.SIGTSTP)
        t.expect('Stopped')
        t.send('fg', 'Enter')
        wait_for(lambda: '-icanon' in local() and '-echo' in local(), 20, what='the terminal raw again after fg')
        t.send('echo $((6*7))', 'Enter')
        t.expect('\n42\n')
        t.send('exit 5', 'Enter')
        assert t.exit_code() == 'rc=5'
    finally:
        t.close()


MANAGER = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(CLI))), 'manager', 'kdiag-manager')


def remembered(path):
    key, fields = path.read_text().split('\n')[:2]
    return key, fields.split()


def session_files(cache_home):
    d = cache_home / 'kdiag' / 'sessions'
    records = [p for p in d.iterdir() if '.' not in p.name] if d.exists() else []   # not a kept forward's .fwd
    return {p.read_text().split('\n')[0].rsplit('|', 1)[1]: p for p in records}


def kubectl_calls(stderr):
    """The kubectl subcommands -v traced ("+ kubectl ... get pod ...")."""
    verbs = ('get', 'logs', 'port-forward', 'replace', 'exec')
    return [next((w for w in l.split() if w in verbs), l) for l in stderr.splitlines() if l.startswith('+ ')]


def test_remembered_session_needs_only_a_port_forward_and_a_proof(cluster, tmp_path):
    """The last session to a named pod is tried alone (one port-forward, Hello), and only a
    manager that proves the remembered secret gets the token; anything else falls back."""
    env = cluster.env({'XDG_CACHE_HOME': str(tmp_path)})
    shell = [CLI, 'shell', 'pod/distroless', '--', '-c', 'echo hi']
    r = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
    cache = session_files(tmp_path)['distroless']
    key, saved = remembered(cache)
    assert len(saved) == 13, saved
    assert os.stat(cache).st_mode & 0o777 == 0o600                 # it holds the token
    assert os.stat(cache.parent).st_mode & 0o777 == 0o700

    # one record per pod: a session to another pod leaves this one in place
    r = subprocess.run([CLI, 'ps', 'pod/nginx'], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(session_files(tmp_path)) == ['distroless', 'nginx']

    r = subprocess.run(shell[:1] + ['-v'] + shell[1:], env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
    assert 'proved its secret' in r.stderr, r.stderr
    assert kubectl_calls(r.stderr) == ['port-forward'], r.stderr   # no get, no logs

    # An impostor in the pod's network namespace: a manager with another secret, on the port the
    # remembered session names. It gets a Hello and nothing else: no call that carries the token.
    pid = cluster.pod_pid('distroless')
    imp = subprocess.Popen(['nsenter', '--net=/proc/%d/ns/net' % pid, MANAGER, '--bind', '127.0.0.1:0', '-v'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, KDIAG_SECRET='0123456789abcdef0123456789abcdef'))
    try:
        port = int(imp.stdout.readline().split(':')[-1])
        cache.write_text('%s\n%s\n' % (key, ' '.join([str(port)] + saved[1:])))
        r = subprocess.run(shell[:1] + ['-v'] + shell[1:], env=env, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
        assert 'does not prove the remembered secret' in r.stderr, r.stderr
        assert 'get' in kubectl_calls(r.stderr), r.stderr             # then the pod was read
    finally:
        imp.terminate()
        log = imp.communicate(timeout=30)[1]
    calls = [l for l in log.splitlines() if ' from ' in l and ': status ' in l]
    assert calls and all('/Hello from' in l for l in calls), log
    assert remembered(cache)[1] == saved                              # the true manager again

    cache.write_text('%s\n1 2\n' % key)                              # not a record: read the pod
    old = cache.parent / 'deadbeef'                                  # a record 31 days old
    old.write_text('x\n')
    os.utime(old, (time.time() - 31 * 86400,) * 2)
    r = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
    assert remembered(cache)[1] == saved
    assert not old.exists()                                           # removed when one was saved


def test_a_remembered_token_the_manager_no_longer_takes_is_not_sent(cluster, tmp_path):
    """A record whose token is wrong (cut, garbled, another manager's) while its secret is right
    failed every command on the pod with UNAUTHENTICATED until the user removed the file. Hello
    also proves the token now: the CLI never sends a token the manager does not hold, reads the pod
    instead and remembers the right one."""
    env = cluster.env({'XDG_CACHE_HOME': str(tmp_path)})
    shell = [CLI, '-v', 'shell', 'pod/distroless', '--', '-c', 'echo hi']
    r = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
    cache = session_files(tmp_path)['distroless']
    key, saved = remembered(cache)
    for token in ('0' * 32, saved[6][:31], 'x'):
        cache.write_text('%s\n%s\n' % (key, ' '.join(saved[:6] + [token] + saved[7:])))
        r = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
        assert 'the remembered token' in r.stderr and 'get' in kubectl_calls(r.stderr), r.stderr
        assert remembered(cache)[1] == saved                          # the true token again
    r = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
    assert kubectl_calls(r.stderr) == ['port-forward'], r.stderr


def test_a_wrong_remembered_token_leaves_the_kept_forward_to_the_right_manager(cluster, keep_home):
    """The kept forward leads to the right manager when only the record's token is wrong: the
    command reads the pod (it does not send that token), and the keeper stays for the next one."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m'})
    shell, path, f = first_keeps(env, keep_home)
    cache = session_files(keep_home)['distroless']
    key, saved = remembered(cache)
    cache.write_text('%s\n%s\n' % (key, ' '.join(saved[:6] + ['0' * 32] + saved[7:])))
    r = subprocess.run(shell + ['echo two'], env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'two\n'), r.stderr
    assert 'not the remembered token' in r.stderr and 'ending the kept' not in r.stderr, r.stderr
    assert remembered(cache)[1] == saved
    r = subprocess.run(shell + ['echo three'], env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'three\n'), r.stderr
    assert 'taking the kept port-forward' in r.stderr and kubectl_calls(r.stderr) == [], r.stderr
    assert kept(keep_home, 'distroless')[1][:2] == f[:2]      # the same keeper and kubectl


def stalled(pid):
    """Whether pid wrote nothing in 0.5 s: the pipe it writes is full and not read (/proc/PID/io)."""
    def written():
        with open('/proc/%d/io' % pid) as f:
            return next(int(l.split()[1]) for l in f if l.startswith('wchar:'))
    before = written()
    time.sleep(0.5)
    return written() == before


@contextlib.contextmanager
def exec_on_yes(cluster, script):
    """kubectl diag exec -i --tools pod/distroless -- sh -c script, its stdin `yes` without end,
    once the script said "started" and the CLI stopped reading `yes` (stdin's window is full)."""
    yes = subprocess.Popen(['yes'], stdout=subprocess.PIPE)
    p = subprocess.Popen([CLI, 'exec', '-i', '--tools', 'pod/distroless', '--', 'sh', '-c', script],
                         stdin=yes.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    yes.stdout.close()
    try:
        assert p.stdout.readline() == b'started\n'
        wait_for(lambda: stalled(yes.pid), 30, interval=0, what='the CLI to stop reading its stdin')
        yield p
    finally:
        for x in (p, yes):
            if x.poll() is None:
                x.kill()
                x.wait()


def test_ctrl_c_goes_past_stdin_the_program_does_not_read(cluster):
    """Stdin waits for its window; the first Ctrl-C does not wait behind it: the program's trap runs."""
    with exec_on_yes(cluster, 'trap "echo got-INT; exit 7" INT; echo started; while :; do sleep 0.2; done') as p:
        p.send_signal(2)
        assert p.wait(10) == 7, p.stderr.read()
        assert p.stdout.read() == b'got-INT\n'


def test_second_ctrl_c_ends_a_program_that_ignores_the_first(cluster):
    """The first Ctrl-C goes to the program, which ignores it; the second ends the call at once."""
    with exec_on_yes(cluster, 'trap "" INT; echo started; exec sleep 100') as p:
        p.send_signal(2)
        time.sleep(0.5)
        assert p.poll() is None
        p.send_signal(2)
        t0 = time.monotonic()
        assert p.wait(20) == 130, p.stderr.read()
        assert time.monotonic() - t0 < 10


def test_second_ctrl_c_ends_a_command_whose_output_nobody_reads(cluster):
    """stdout a pipe whose reader stopped reading (a pager left open): the second Ctrl-C ends the
    command, and the manager stops the program. It waited in its write of the output until the
    reader read, however many Ctrl-C came."""
    r, w = os.pipe()
    p = subprocess.Popen([CLI, 'exec', 'pod/nginx', '--', 'busybox', 'yes'], stdin=subprocess.DEVNULL,
                         stdout=w, stderr=subprocess.PIPE, env=cluster.env())
    os.close(w)
    try:
        wait_for(lambda: struct.unpack('i', fcntl.ioctl(r, termios.FIONREAD, b'\0' * 4))[0] >= 65536, 60,
                 what='the pipe full of yes')
        p.send_signal(signal.SIGINT)
        time.sleep(0.2)  # two signals, not one that the kernel merged
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 130, p.stderr.read()
        wait_for(lambda: 'yes' not in cluster.diag('exec', '--tools', 'pod/nginx', '--', 'ps', '-o', 'comm').stdout,
                 10, what='yes gone from the pod')
    finally:
        os.close(r)
        if p.poll() is None:
            p.kill()
            p.wait()


def kept(cache_home, pod):
    """The kept forward's file of pod (cli/keep.h): (path, fields) once its keeper wrote it (a
    starting keeper's holds its PID alone), else None."""
    rec = session_files(cache_home).get(pod)
    path = rec.with_name(rec.name + '.fwd') if rec else None
    if not path or not path.exists():
        return None
    lines = path.read_text().split('\n')
    return (path, lines[1].split()) if len(lines) > 2 and len(lines[1].split()) >= 8 else None


def procs_with(*words):
    """PIDs (strings) of the running processes whose command line holds each of words (bytes)."""
    found = []
    for p in os.listdir('/proc'):
        with contextlib.suppress(OSError):
            if p.isdigit() and running(int(p)) and all(w in open('/proc/%s/cmdline' % p, 'rb').read() for w in words):
                found.append(p)
    return found


def running(pid):
    """pid exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in 'ZX'
    except FileNotFoundError:
        return False


@pytest.fixture
def keep_home(tmp_path):
    """A cache home for commands with a kept forward; at the end every keeper whose file is under it
    is ended with its kubectl, also when the test failed."""
    yield tmp_path
    for fwd in tmp_path.glob('**/kdiag/sessions/*.fwd'):
        fields = (fwd.read_text().split('\n') + ['', ''])[1].split()
        for pid, sig in zip(fields[:2], (signal.SIGTERM, signal.SIGKILL)):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), sig)
    # and a keeper still starting (its file without its kubectl's PID yet), found by its cache home
    for pid in procs_with(b'__keep'):
        with contextlib.suppress(OSError):
            env = open('/proc/%s/environ' % pid, 'rb').read().split(b'\0')
            if any(e.startswith(('XDG_CACHE_HOME=%s' % tmp_path).encode()) for e in env):
                os.kill(int(pid), signal.SIGKILL)


def first_keeps(env, keep_home):
    """Runs a first `shell pod/distroless` with env's keep duration: the shell argv (-v, up to -c),
    and the path and fields of the kept forward's file once its keeper wrote it."""
    shell = [CLI, '-v', 'shell', 'pod/distroless', '--', '-c']
    r = subprocess.run(shell + ['echo first'], env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'first\n'), r.stderr
    path, f = wait_for(lambda: kept(keep_home, 'distroless'), timeout=60, what='the keeper to write its file')
    return shell, path, f


def test_kept_forward_serves_the_next_commands_and_ends_when_unused(cluster, keep_home):
    """--keep-forward: the first command leaves a keeper with its own kubectl port-forward; the
    next ones run no kubectl at all and still prove the manager; a command in progress holds it;
    once unused for the duration, the keeper, its kubectl and its file are gone."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '3s'})
    shell, path, f = first_keeps(env, keep_home)
    keeper, kubectl = int(f[0]), int(f[1])
    assert running(keeper) and running(kubectl), f
    assert os.getsid(keeper) == keeper                         # a session of its own: no terminal's signals
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert 'port-forward' in open('/proc/%d/cmdline' % kubectl).read().split('\0')

    r = subprocess.run(shell + ['echo second'], env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'second\n'), r.stderr
    assert 'taking the kept port-forward' in r.stderr and 'proved its secret' in r.stderr, r.stderr
    assert kubectl_calls(r.stderr) == [], r.stderr             # not one kubectl process

    # a command that outlasts the keep duration holds the forward until it ends
    long = subprocess.Popen(shell + ['sleep 5; echo long'], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.5)
        assert running(keeper) and running(kubectl) and path.exists()
        out, err = long.communicate(timeout=60)
    finally:
        long.kill()
    assert (long.returncode, out) == (0, 'long\n'), err
    assert 'taking the kept port-forward' in err, err
    used = os.stat(path).st_mtime
    assert time.time() - used < 2                              # its end counts as the last use

    wait_for(lambda: not running(keeper) and not running(kubectl), timeout=15, what='the keeper to end')
    assert time.time() - used >= 3
    assert not path.exists()
    # and without a keeper, the next command starts its own forward again
    r = subprocess.run(shell + ['echo third'], env=dict(env, KDIAG_KEEP_FORWARD='0'), capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, 'third\n'), r.stderr
    assert kubectl_calls(r.stderr) == ['port-forward'], r.stderr
    assert kept(keep_home, 'distroless') is None


def test_kept_forward_ends_with_its_pod(cluster, keep_home, fresh_pod):
    """A kept forward whose pod is deleted ends at once, keeper and all, whatever the duration."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home)})
    r = subprocess.run([CLI, '--keep-forward', '1h', 'exec', '--tools', 'pod/' + fresh_pod, '--', 'true'],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    path, f = wait_for(lambda: kept(keep_home, fresh_pod), timeout=60, what='the keeper to write its file')
    keeper, kubectl = int(f[0]), int(f[1])
    assert running(keeper) and running(kubectl)
    cluster.ok('delete', 'pod', fresh_pod, '--now')
    wait_for(lambda: not running(keeper) and not running(kubectl), timeout=30, what='the keeper to end')
    assert not path.exists()


def echo_in_distroless(env, word):
    """kubectl diag -v exec --tools pod/distroless -- echo WORD, which must work: its stderr."""
    r = subprocess.run([CLI, '-v', 'exec', '--tools', 'pod/distroless', '--', 'echo', word], env=env,
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, word + '\n'), r.stderr
    return r.stderr


def test_kept_forward_not_taken_after_the_kubeconfig_changed(cluster, keep_home):
    """The key holds the flags, not the current context: once the kubeconfig file was written
    (kubectl config use-context), the kept forward may lead to another cluster. The next command
    does not take it, its keeper ends, and a new keeper serves the commands after."""
    kc = keep_home / 'kubeconfig'
    shutil.copy(cluster.kubeconfig, kc)
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m', 'KUBECONFIG': str(kc)})

    def run(word):
        return echo_in_distroless(env, word)

    run('one')
    path, f = wait_for(lambda: kept(keep_home, 'distroless'), timeout=60, what='the keeper to write its file')
    assert 'taking the kept' in run('two')
    # another context (to the same cluster here, so that the commands still work) made current
    view = "{.contexts[0].context.cluster} {.contexts[0].context.user}"
    cl, user = subprocess.run(['kubectl', 'config', 'view', '-o', 'jsonpath=' + view], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    for args in (['set-context', 'again', '--cluster', cl, '--user', user], ['use-context', 'again']):
        subprocess.run(['kubectl', 'config'] + args, env=env, capture_output=True, check=True)
    err = run('three')
    assert 'the kubeconfig changed since the kept port-forward' in err and 'taking the kept' not in err, err
    assert 'port-forward' in kubectl_calls(err), err
    wait_for(lambda: not running(int(f[0])) and not running(int(f[1])), timeout=15, what='the old keeper to end')
    wait_for(lambda: (lambda k: k and k[1][0] != f[0])(kept(keep_home, 'distroless')), timeout=60,
             what='a new keeper')
    assert 'taking the kept' in run('four')


def test_kubectls_connection_flags_reach_every_kubectl_run(cluster, fresh_pod):
    """--user, --token, --as … as kubectl takes them: passed to every kubectl the CLI runs (before,
    "unknown flag", exit 2). --user viewer is refused as the viewer; -v shows each kubectl with them."""
    for who, check in ((('--user', 'viewer'), '--user=viewer'), (('--token=' + VIEWER_TOKEN,), '--token=TOKEN')):
        r = cluster.diag(*who, 'ps', 'pod/' + fresh_pod)   # kubectl auth can-i answers as the viewer: no
        assert r.returncode == 1 and "permission denied — you may not 'update'" in r.stderr, r.stderr
        assert cluster.pod(fresh_pod)['spec'].get('ephemeralContainers', []) == []
        # the check it suggests asks as the command did (a token not shown)
        assert ('(check with: kubectl auth can-i update pods --subresource=ephemeralcontainers %s -n default)'
                % check) in r.stderr and VIEWER_TOKEN not in r.stderr, r.stderr
    r = cluster.diag('-v', '--as', 'alice', '--as-group=devs', '--request-timeout=30s', 'exec', '--tools',
                     'pod/distroless', '--', 'echo', 'hi')
    assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
    calls = [l for l in r.stderr.splitlines() if l.startswith('+ ')]
    assert calls and all(' --as=alice --as-group=devs --request-timeout=30s ' in l for l in calls), r.stderr
    r = cluster.diag('--insecure-skip-tls-verify=true', 'ps', 'pod/nginx')
    assert (r.returncode, error_lines(r.stderr)) == (2, [
        'error: flag --insecure-skip-tls-verify takes no value (got "--insecure-skip-tls-verify=true")'])


def test_a_kept_forward_is_not_taken_as_another_user(cluster, keep_home):
    """The remembered session and the kept forward are the identity's that made them: a command
    with --user viewer after one as the context's admin reads the pod itself, as the viewer, and
    is refused (with the flags passed and the same key, it took the admin's forward and ran). The
    keeper's kubectl port-forward runs with the flags the command had."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m'})
    echo_in_distroless(env, 'one')
    path, f = wait_for(lambda: kept(keep_home, 'distroless'), timeout=60, what='the keeper to write its file')
    r = subprocess.run([CLI, '--user', 'viewer', 'exec', '--tools', 'pod/distroless', '--', 'true'], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and 'user "viewer" may not \'create\' the resource "pods/portforward"' in r.stderr, \
        r.stderr
    assert running(int(f[0])), 'the first keeper ended'
    # a keeper of a command with --user admin passes it on to its kubectl port-forward
    env2 = dict(env, XDG_CACHE_HOME=str(keep_home / 'second'))
    r = subprocess.run([CLI, '--user', 'admin', 'exec', '--tools', 'pod/distroless', '--', 'true'], env=env2,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _, f2 = wait_for(lambda: kept(keep_home / 'second', 'distroless'), timeout=60, what='the second keeper')
    assert ' --user=admin ' in cmdline(int(f2[0])) + ' ' and '--user=admin' in cmdline(int(f2[1])), f2


def test_kept_forward_taken_with_a_kubeconfig_list_of_many_files(cluster, keep_home):
    """$KUBECONFIG listing many files (one per cluster is common): the stamp of the files a keeper's
    kubectl read overflowed at about 25 files, so no command took the kept forward and each ended
    its keeper; past 2 KiB of paths nothing was remembered at all. The second command takes it."""
    d = keep_home / 'kubeconfigs'
    d.mkdir()
    files = [str(shutil.copy(cluster.kubeconfig, d / ('cluster-%02d.kubeconfig' % i))) for i in range(40)]
    assert len(':'.join(files)) > 2048
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m', 'KUBECONFIG': ':'.join(files)})

    def run(word):
        return echo_in_distroless(env, word)

    run('one')
    path, f = wait_for(lambda: kept(keep_home, 'distroless'), timeout=60, what='the keeper to write its file')
    err = run('two')
    assert 'taking the kept port-forward' in err and kubectl_calls(err) == [], err
    assert running(int(f[0])), 'the keeper ended'


def test_keeper_runs_in_root_and_relative_kubeconfig_paths_still_reach_its_kubectl(cluster, keep_home):
    """The keeper keeps no directory of the user's busy: it and its kubectl run in /. A relative
    --kubeconfig, or a relative $KUBECONFIG entry, reaches that kubectl made absolute, and the next
    command from the same directory, giving the same relative path, takes the kept forward."""
    work = keep_home / 'work'
    work.mkdir()
    kc = work / 'kc'
    shutil.copy(cluster.kubeconfig, kc)
    for home, flags, extra in ((keep_home / 'a', ['--kubeconfig', 'kc'], {}), (keep_home / 'b', [], {'KUBECONFIG': 'kc'})):
        env = cluster.env(dict({'XDG_CACHE_HOME': str(home), 'KDIAG_KEEP_FORWARD': '1m'}, **extra))

        def run(word):
            r = subprocess.run([CLI, '-v'] + flags + ['exec', '--tools', 'pod/distroless', '--', 'echo', word],
                               cwd=work, env=env, capture_output=True, text=True, timeout=120)
            assert (r.returncode, r.stdout) == (0, word + '\n'), r.stderr
            return r.stderr

        run('one')
        path, f = wait_for(lambda: kept(home, 'distroless'), timeout=60, what='the keeper to write its file')
        keeper, kubectl = int(f[0]), int(f[1])
        assert os.readlink('/proc/%d/cwd' % keeper) == '/', f
        assert os.readlink('/proc/%d/cwd' % kubectl) == '/', f
        if flags:
            args = open('/proc/%d/cmdline' % kubectl).read().split('\0')
            assert any(a.endswith(str(kc)) for a in args), args
        else:
            environ = open('/proc/%d/environ' % kubectl).read().split('\0')
            assert 'KUBECONFIG=%s' % kc in environ, [e for e in environ if e.startswith('KUBECONFIG')]
        err = run('two')
        assert 'taking the kept port-forward' in err and kubectl_calls(err) == [], err
        os.kill(keeper, signal.SIGTERM)
        wait_for(lambda: not running(keeper) and not running(kubectl), timeout=15, what='the keeper to end')


def test_a_record_that_is_not_a_private_file_of_ours_is_not_read(cluster, tmp_path):
    """A FIFO at the record's path blocked every command on the pod for good; a record others
    may read (its token and secret) or a symlink to one was used as it was."""
    env = cluster.env({'XDG_CACHE_HOME': str(tmp_path)})
    shell = [CLI, '-v', 'shell', 'pod/distroless', '--', '-c', 'echo hi']
    assert subprocess.run(shell, env=env, capture_output=True, timeout=120).returncode == 0
    rec = session_files(tmp_path)['distroless']
    good = tmp_path / 'good'
    shutil.copy(rec, good)
    for make in (lambda: os.mkfifo(rec), lambda: rec.symlink_to(good), lambda: os.chmod(shutil.copy(good, rec), 0o644)):
        rec.unlink()
        make()
        r = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
        assert 'the remembered manager' not in r.stderr, r.stderr  # read the pod instead
        if not rec.is_file() or rec.is_symlink():
            continue
        assert (rec.stat().st_mode & 0o077) == 0  # written again, private


def keepers_of(cache_home):
    """PIDs of the keepers running with cache_home as $XDG_CACHE_HOME."""
    found = []
    for pid in procs_with(b'__keep'):
        with contextlib.suppress(OSError):
            if ('XDG_CACHE_HOME=%s' % cache_home).encode() in open('/proc/%s/environ' % pid, 'rb').read().split(b'\0'):
                found.append(pid)
    return found


def test_a_session_that_cannot_be_remembered_is_said_once(cluster, keep_home):
    """A cache directory that cannot be written ($XDG_CACHE_HOME a file, or read-only) or a record
    path that is a directory: nothing was remembered, silently, and every command read the pod
    again. Now each command says so in one line (the path, the cause, the fix) and still works; a
    keep duration leaves no keeper that no command could take."""
    ro = keep_home / 'ro'
    ro.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro', 'tmpfs', str(ro)], check=True)
    try:
        (keep_home / 'file').write_text('')
        good = keep_home / 'good'
        r = subprocess.run([CLI, 'exec', '--tools', 'pod/nginx', '--', 'echo', 'hi'], env=cluster.env({'XDG_CACHE_HOME': str(good)}),
                           capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
        rec = session_files(good)['nginx']
        rec.unlink()
        rec.mkdir()                                             # the record's path a directory
        fix = 'set $XDG_CACHE_HOME to a directory you can write'
        for home, where, cause, how in ((keep_home / 'file', keep_home / 'file/kdiag/sessions', 'Not a directory', fix),
                                        (ro, ro / 'kdiag/sessions', 'Read-only file system', fix),
                                        (good, rec, 'Is a directory', 'remove that directory')):
            env = cluster.env({'XDG_CACHE_HOME': str(home), 'KDIAG_KEEP_FORWARD': '10m'})
            for _ in range(2):                                  # each command says it
                r = subprocess.run([CLI, 'exec', '--tools', 'pod/nginx', '--', 'echo', 'hi'], env=env, capture_output=True,
                                   text=True, timeout=120)
                assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
                assert error_lines(r.stderr) == ['warning: cannot remember the session in %s: %s; each command reads '
                                                 'the pod again until it can: %s' % (where, cause, how)], r.stderr
            assert keepers_of(home) == [], home
    finally:
        subprocess.run(['umount', str(ro)])


def test_no_cache_directory_is_said_once_per_command(cluster, tmp_path):
    """Neither $XDG_CACHE_HOME nor $HOME an absolute path, or the cache directory's path too long:
    nothing was remembered, silently, and every command read the pod again. Now each command says
    so in one line naming the variables to set, and still works."""
    fix = ('each command reads the pod again until it can: set $XDG_CACHE_HOME (or $HOME) to the absolute path '
           'of a directory you can write')
    for env, why in (({'XDG_CACHE_HOME': 'cache', 'HOME': 'home'}, 'neither $XDG_CACHE_HOME nor $HOME is an absolute '
                      'path'),
                     ({'XDG_CACHE_HOME': '/' + 'x' * 1100}, 'the path of the cache directory ($XDG_CACHE_HOME, else '
                      '$HOME/.cache) is too long')):
        for _ in range(2):                                      # each command says it
            r = subprocess.run([CLI, 'exec', '--tools', 'pod/nginx', '--', 'echo', 'hi'], env=cluster.env(env),
                               cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
            assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
            assert error_lines(r.stderr) == ['warning: cannot remember the session: %s; %s' % (why, fix)], r.stderr
    assert not list(tmp_path.glob('**/kdiag')), list(tmp_path.glob('**/*'))  # nothing made in the working directory


def test_a_session_key_too_long_is_said_once_per_command(cluster, keep_home):
    """A context name of 2000 bytes makes the record's key (context, namespace, pod) over 2 KiB:
    nothing was remembered, silently, and every command read the pod again. Now each command
    says so in one line naming the cause and the fix, and still works; no keeper is left."""
    cfg = json.loads(cluster.ok('config', 'view', '--raw', '-o', 'json'))
    ctx = dict(cfg['contexts'][0], name='c' * 2000)
    cfg['contexts'].append(ctx)
    kubeconfig = keep_home / 'kubeconfig'
    kubeconfig.write_text(json.dumps(cfg))
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home / 'cache'), 'KUBECONFIG': str(kubeconfig),
                       'KDIAG_KEEP_FORWARD': '10m'})
    for _ in range(2):                                          # each command says it
        r = subprocess.run([CLI, '--context', ctx['name'], 'exec', '--tools', 'pod/nginx', '--', 'echo', 'hi'],
                           env=env, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, 'hi\n'), r.stderr
        assert error_lines(r.stderr) == [
            'warning: cannot remember the session: its key (the --context, namespace and pod names; %, | and control '
            'characters count 3 bytes each) is over 2048 bytes; each command reads the pod again until it can: use a '
            'context with a shorter name (kubectl config rename-context)'], r.stderr
    assert session_files(keep_home / 'cache') == {}
    assert keepers_of(keep_home / 'cache') == []


def test_a_stuck_kept_forward_is_ended_and_replaced(cluster, keep_home):
    """A kept forward whose kubectl no longer answers (stopped here; a dead API connection does
    the same) cost every command two Hello timeouts and was taken again each time. Now the
    first command after it waits one Hello timeout, ends that keeper and starts a new one, and
    the next takes the new forward."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m'})

    def run(word):
        t = time.monotonic()
        r = subprocess.run([CLI, '-v', 'exec', '--tools', 'pod/distroless', '--', 'echo', word], env=env,
                           capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, word + '\n'), r.stderr
        return time.monotonic() - t, r.stderr

    run('one')
    _, f = wait_for(lambda: kept(keep_home, 'distroless'), timeout=60, what='the keeper to write its file')
    keeper, kubectl = int(f[0]), int(f[1])
    os.kill(kubectl, signal.SIGSTOP)
    try:
        took, err = run('two')
        assert took < 5 and 'ending the kept port-forward' in err, (took, err)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the keeper may have killed it already
            os.kill(kubectl, signal.SIGCONT)
    wait_for(lambda: not running(keeper), timeout=15, what='the stuck keeper to end')
    wait_for(lambda: (lambda k: k and int(k[1][0]) != keeper)(kept(keep_home, 'distroless')), timeout=60,
             what='a new keeper')
    took, err = run('three')
    assert 'taking the kept port-forward' in err and took < 2, (took, err)


def test_a_relative_kubectl_reaches_the_keeper(cluster, keep_home):
    # the keeper runs in /: ./kubectl must reach it made absolute, or no forward was kept
    work = keep_home / 'bin'
    work.mkdir()
    (work / 'kubectl').symlink_to(shutil.which('kubectl'))
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m'})
    for word in ('one', 'two'):
        r = subprocess.run([CLI, '-v', '--kubectl', './kubectl', 'exec', '--tools', 'pod/distroless', '--', 'echo',
                            word], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, word + '\n'), r.stderr
        if word == 'one':
            wait_for(lambda: kept(keep_home, 'distroless'), timeout=60, what='the keeper to write its file')
    assert 'taking the kept port-forward' in r.stderr, r.stderr


def test_forwards_lists_the_kept_forwards_and_stop_ends_them(cluster, keep_home):
    """kubectl diag forwards: each kept forward with its local port, keeper, idle time and end;
    --stop pod/NAME ends that one (keeper and kubectl gone when it returns) and leaves the
    others; -n and --context narrow (they were ignored: --stop -n other ended them all); --stop
    alone ends the rest; a pod without one is exit 1, a selector a usage error."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m'})

    def diag(*args):
        return subprocess.run([CLI] + list(args), env=env, capture_output=True, text=True, timeout=120)

    fields = {}
    for pod in ('distroless', 'nginx'):
        r = diag('exec', '--tools', 'pod/' + pod, '--', 'true')
        assert r.returncode == 0, r.stderr
        fields[pod] = wait_for(lambda: kept(keep_home, pod), timeout=60, what='the keeper to write its file')[1]
    r = diag('forwards')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ['POD', 'NAMESPACE', 'CONTEXT', 'LOCAL', 'KEEPER', 'IDLE', 'ENDS', 'IN'], r.stdout
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert set(rows) == {'distroless', 'nginx'}, r.stdout
    for pod, f in fields.items():
        assert rows[pod][1:5] == ['default', '-', '127.0.0.1:' + f[5], f[0]], (rows[pod], f)
        assert rows[pod][6] in ('9m', '10m'), rows[pod]
    assert {l.split()[0] for l in diag('forwards', '-n', 'default').stdout.splitlines()[1:]} == set(rows)
    for narrow, none in ((['-n', 'kube-system'], 'in namespace kube-system'),
                         (['--context', 'elsewhere'], 'of context elsewhere')):
        r = diag('forwards', *narrow)
        assert (r.returncode, r.stdout) == (0, '') and 'no kept port-forwards ' + none in r.stderr, r.stderr
        r = diag('forwards', '--stop', *narrow)
        assert (r.returncode, r.stdout) == (1, '') and 'no kept port-forwards ' + none in r.stderr, r.stderr
    assert all(running(int(f[0])) for f in fields.values())

    r = diag('forwards', '--stop', 'pod/nginx')
    assert r.returncode == 0 and 'pod/nginx: kept port-forward ended' in r.stdout, (r.stdout, r.stderr)
    assert not running(int(fields['nginx'][0])) and not running(int(fields['nginx'][1]))
    assert running(int(fields['distroless'][0])) and running(int(fields['distroless'][1]))
    assert [l.split()[0] for l in diag('forwards').stdout.splitlines()[1:]] == ['distroless']
    r = diag('forwards', '--stop', 'pod/nginx')
    assert r.returncode == 1 and 'no kept port-forwards to pod/nginx' in r.stderr, (r.stdout, r.stderr)

    r = diag('forwards', '--stop')
    assert r.returncode == 0 and 'pod/distroless: kept port-forward ended' in r.stdout, (r.stdout, r.stderr)
    assert not running(int(fields['distroless'][0])) and not running(int(fields['distroless'][1]))
    r = diag('forwards')
    assert (r.returncode, r.stdout) == (0, '') and 'no kept port-forwards' in r.stderr, r.stderr
    r = diag('forwards', '-l', 'app=web')
    assert r.returncode == 2 and 'forwards takes one pod' in r.stderr, r.stderr
    assert 'Usage: kubectl diag forwards' in diag('forwards', '--help').stdout


def test_forwards_pod_name_is_the_pod_of_the_current_namespace(cluster, keep_home, tmp_path):
    """`forwards --stop pod/NAME` without -n ended the kept forwards to the pods of that name in
    every namespace. pod/NAME is now the pod of one namespace, as kubectl takes it: -n's, else the
    current context's, else default; a plain `forwards` still lists them all."""
    ns = 'fwd-other-%d' % os.getpid()
    cluster.ok('create', 'namespace', ns)
    try:
        cluster.ok('run', 'nginx', '-n', ns, '--image=nginx', '--restart=Never')
        cluster.wait_running('nginx', ns)
        env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m'})
        kc = tmp_path / 'kubeconfig-other'                     # its context's namespace is ns
        shutil.copy(cluster.kubeconfig, kc)
        other = dict(env, KUBECONFIG=str(kc))
        subprocess.run(['kubectl', 'config', 'set-context', '--current', '--namespace', ns], env=other,
                       capture_output=True, check=True)

        def forwards(*args, env=env):
            r = subprocess.run([CLI, 'forwards'] + list(args), env=env, capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            return {l.split()[1]: l.split()[4] for l in r.stdout.splitlines()[1:] if l.split()[3] != 'starting'}

        for flags in ([], ['-n', ns]):
            r = subprocess.run([CLI] + flags + ['exec', '--tools', 'pod/nginx', '--', 'true'], env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        keepers = wait_for(lambda: (lambda k: k if len(k) == 2 else None)(forwards()), timeout=60,
                           what='both keepers up')
        assert set(keepers) == {'default', ns}
        assert forwards('pod/nginx') == {'default': keepers['default']}
        assert forwards('pod/nginx', env=other) == {ns: keepers[ns]}

        r = subprocess.run([CLI, 'forwards', '--stop', 'pod/nginx'], env=env, capture_output=True, text=True,
                           timeout=30)
        assert (r.returncode, r.stdout) == (0, 'pod/nginx: kept port-forward ended (keeper %s)\n' %
                                            keepers['default']), (r.stdout, r.stderr)
        assert not running(int(keepers['default'])) and running(int(keepers[ns]))
        r = subprocess.run([CLI, 'forwards', '--stop', 'pod/nginx'], env=env, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and 'no kept port-forwards to pod/nginx in namespace default' in r.stderr, r.stderr
        assert running(int(keepers[ns]))
        r = subprocess.run([CLI, 'forwards', '--stop', 'pod/nginx'], env=other, capture_output=True, text=True,
                           timeout=30)
        assert (r.returncode, r.stdout) == (0, 'pod/nginx: kept port-forward ended (keeper %s)\n' % keepers[ns]), \
            (r.stdout, r.stderr)
        assert not running(int(keepers[ns]))
    finally:
        cluster.kubectl('delete', 'namespace', ns, '--wait=false')


@contextlib.contextmanager
def holding(env, shell):
    """shell (first_keeps') running `echo started; read x; echo done-$x` once it said started: it
    then holds the kept forward until its stdin says go. Killed at the end."""
    p = subprocess.Popen(shell + ['echo started; read x; echo done-$x'], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == 'started\n'
        yield p
    finally:
        p.kill()


def test_forwards_stop_lets_the_commands_using_it_finish(cluster, keep_home):
    """`forwards --stop` while a command used the kept forward cut that command off ("port-forward
    ended; restarting it", then "Socket closed", exit 1). Now the forward is no longer offered at
    once, --stop says it is in use and returns, the command finishes, and the keeper and its
    kubectl end as it does."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m'})
    shell, path, f = first_keeps(env, keep_home)
    keeper, kubectl = int(f[0]), int(f[1])
    with holding(env, shell) as p:
        r = subprocess.run([CLI, 'forwards', '--stop', 'pod/distroless'], env=env, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert r.stdout == 'pod/distroless: kept port-forward in use; it ends when the commands using it end ' \
                           '(keeper %d)\n' % keeper, r.stdout
        assert not path.exists() and running(keeper) and running(kubectl)
        r = subprocess.run([CLI, 'forwards'], env=env, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, ''), r.stdout            # no longer offered
        out, err = p.communicate('go\n', timeout=60)
    assert (p.returncode, out) == (0, 'done-go\n'), err
    assert 'ended' not in err and 'Socket closed' not in err, err
    wait_for(lambda: not running(keeper) and not running(kubectl), timeout=15, what='the keeper to end')


def test_forwards_says_a_kept_forward_in_use_is_in_use(cluster, keep_home):
    """A command that uses the kept forward longer than its duration: `forwards` showed it idle for
    all that time and "ENDS IN 0s", though it lives until that command ends and the duration after.
    Now IDLE is "-" and ENDS IN says it is in use and how long it lives once the commands end."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m'})
    shell, path, f = first_keeps(env, keep_home)
    with holding(env, shell) as p:
        before = time.time() - 11 * 60                          # last let go 11 min ago
        os.utime(path, (before, before))
        r = subprocess.run([CLI, 'forwards'], env=env, capture_output=True, text=True, timeout=30)
        row = r.stdout.splitlines()[1]
        assert r.returncode == 0 and row.split()[4:6] == [f[0], '-'], r.stdout
        assert row.endswith(' in use (then 10m)'), r.stdout
        out, err = p.communicate('go\n', timeout=60)
    assert (p.returncode, out) == (0, 'done-go\n'), err
    assert running(int(f[0])), 'the keeper ended'
    r = subprocess.run([CLI, 'forwards'], env=env, capture_output=True, text=True, timeout=30)
    idle, left = r.stdout.splitlines()[1].split()[5:]
    assert idle in ('0s', '1s') and left in ('9m', '10m'), r.stdout


def test_a_kept_forward_lost_mid_command_is_said_in_one_line(cluster, keep_home):
    """The keeper's kubectl killed while a command used its forward: the command said "kubectl
    port-forward to pod/distroless ended; restarting it" (of no use to it), then failed with "Socket
    closed". Now it fails with one line that says what broke."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m'})
    shell, path, f = first_keeps(env, keep_home)
    with holding(env, shell) as p:
        os.kill(int(f[1]), signal.SIGKILL)
        out, err = p.communicate(timeout=60)
    lines = [l for l in error_lines(err) if not l.startswith(('+ ', 'kubectl-diag: '))]   # -v's
    assert p.returncode == 1 and out == '' and len(lines) == 1, err
    assert re.fullmatch(r'error: the connection to the manager \(dbg-tools-\w+ in pod/distroless\) was lost during the '
                        r'command: .+ \(gRPC status 14\); the kept port-forward it went through ended, and the '
                        r'command with it: run it again', lines[0]), err


def test_a_last_use_in_the_future_does_not_end_the_kept_forward(cluster, keep_home):
    """The clock set back (NTP, a VM restored) leaves the kept forward's last use (its file's
    mtime) in the future: the keeper took that for its file being gone and ended at once. Now the
    last use counts as now, and the forward lives its duration from there."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m'})
    shell, path, f = first_keeps(env, keep_home)
    keeper, kubectl = int(f[0]), int(f[1])
    later = time.time() + 3600
    os.utime(path, (later, later))
    wait_for(lambda: not path.exists() or path.stat().st_mtime < time.time() + 5, timeout=15,
             what='the keeper to look at the last use')
    assert path.exists() and running(keeper) and running(kubectl)
    r = subprocess.run([CLI, 'forwards'], env=env, capture_output=True, text=True, timeout=30)
    assert r.stdout.splitlines()[1].split()[6] in ('1m', '59s', '58s', '57s'), r.stdout   # ENDS IN
    r = subprocess.run(shell + ['echo again'], env=env, capture_output=True, text=True, timeout=120)
    assert 'taking the kept port-forward' in r.stderr, r.stderr


def test_forwards_stop_right_after_the_command_ends_the_starting_keeper(cluster, keep_home):
    """`forwards --stop` run as the command that leaves a keeper ends (a script's clean-up) found
    no file it could read while the keeper still started its kubectl: it said "no kept
    port-forwards" and the keeper came up after it and lived its whole duration. Now a starting
    keeper is listed and stopped too, and gives up its start at once."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '10m',
                       'KUBECTL': str(keep_home / 'slow-kubectl')})
    real = shutil.which('kubectl')
    # the keeper's kubectl port-forward takes 3 s to start: its start is seen for sure
    (keep_home / 'slow-kubectl').write_text('#!/bin/sh\ncase " $* " in *" port-forward "*) '
                                            '[ -e %s ] && sleep 3;; esac\nexec %s "$@"\n' % (keep_home / 'slow', real))
    os.chmod(keep_home / 'slow-kubectl', 0o755)
    r = subprocess.run([CLI, 'exec', '--tools', 'pod/distroless', '--', 'true'], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (keep_home / 'slow').touch()                               # for the keeper's kubectl only
    fwd = wait_for(lambda: list((keep_home / 'kdiag' / 'sessions').glob('*.fwd')), timeout=30,
                   what='the keeper to make its file')[0]
    keeper = int(wait_for(lambda: procs_with(b'__keep', str(keep_home).encode()), timeout=30, what='the keeper')[0])
    assert kept(keep_home, 'distroless') is None               # not up yet
    r = subprocess.run([CLI, 'forwards'], env=env, capture_output=True, text=True, timeout=30)
    rows = r.stdout.splitlines()[1:]
    assert r.returncode == 0 and [l.split()[:4] for l in rows] == [['distroless', 'default', '-', 'starting']], \
        (r.stdout, r.stderr)
    t0 = time.monotonic()
    r = subprocess.run([CLI, 'forwards', '--stop'], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == 'pod/distroless: kept port-forward ended (keeper %d)\n' % keeper, \
        (r.stdout, r.stderr)
    assert time.monotonic() - t0 < 2
    assert not running(keeper) and not fwd.exists()
    assert procs_with(b'port-forward', str(keep_home).encode()) == []   # its slow kubectl went with it


def tcp_to(pid, port):
    """Local ports of pid's established IPv4 TCP connections to 127.0.0.1:port (/proc/net/tcp and
    the socket inodes among pid's fds)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir('/proc/%d/fd' % pid):
            with contextlib.suppress(OSError):
                link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
                if link.startswith('socket:['):
                    inodes.add(link[8:-1])
    ports = []
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            c = line.split()
            if c[2] == '0100007F:%04X' % port and c[3] == '01' and c[9] in inodes:
                ports.append(int(c[1].split(':')[1], 16))
    return ports


def test_kept_forward_hands_out_a_ready_connection(cluster, keep_home):
    """The keeper holds a connection through its kubectl port-forward made ahead (its streams and
    the manager's accept done); the next command takes that very socket (the kernel shows it among
    the command's fds), and the keeper makes the next, also when its spare is torn down. A keeper
    that does not answer costs a command at most half a second, and it makes its own connection."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m'})
    shell, path, f = first_keeps(env, keep_home)
    keeper, local = int(f[0]), int(f[5])
    spare = wait_for(lambda: tcp_to(keeper, local), timeout=30, what="the keeper's spare connection")

    def spare_other_than(old):
        """The keeper's spare connection (its local ports) once it is none of old's."""
        ports = tcp_to(keeper, local)
        return ports if ports and not set(ports) & set(old) else None
    assert len(spare) == 1, spare

    p = subprocess.Popen(shell + ['echo started; sleep 3; echo second'], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == 'started\n'
        assert tcp_to(p.pid, local) == spare                  # the keeper's socket, in the command
        assert spare[0] not in tcp_to(keeper, local)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert (p.returncode, out) == (0, 'second\n'), err
    assert "and its keeper's ready connection" in err and 'proved its secret' in err, err
    assert kubectl_calls(err) == [], err
    nxt = wait_for(lambda: spare_other_than(spare), timeout=30, what='the next spare')
    # a spare torn down under the keeper (the kernel destroys its socket) is made again
    r = subprocess.run(['ss', '-K', 'dst', '127.0.0.1', 'dport', '=', ':%d' % local, 'sport', '=', ':%d' % nxt[0]],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert nxt[0] not in tcp_to(keeper, local)
    wait_for(lambda: spare_other_than(nxt), timeout=30, what='a spare in place of the torn-down one')

    os.kill(keeper, signal.SIGSTOP)                           # a keeper that does not answer
    try:
        t0 = time.monotonic()
        r = subprocess.run(shell + ['echo third'], env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
    finally:
        os.kill(keeper, signal.SIGCONT)
    assert (r.returncode, r.stdout) == (0, 'third\n'), r.stderr
    assert 'taking the kept port-forward' in r.stderr and "ready connection" not in r.stderr, r.stderr
    assert took < 5, took


def test_keep_forward_bad_values_say_what_to_use(cluster):
    r = cluster.diag('--keep-forward', '25h', 'ps', 'pod/distroless')
    assert r.returncode == 2
    assert error_lines(r.stderr) == ['error: invalid --keep-forward "25h": use a duration up to 24h such as 10m, '
                                     'or 0 for none'], r.stderr
    r = cluster.diag('ps', 'pod/distroless', env={'KDIAG_KEEP_FORWARD': 'soon'})
    assert r.returncode == 2
    assert 'invalid $KDIAG_KEEP_FORWARD "soon"' in r.stderr, r.stderr


def test_kept_forward_one_keeper_and_a_killed_one_replaced(cluster, keep_home):
    """Two commands that end at once leave one keeper. A keeper killed with SIGKILL takes its
    kubectl with it; its file stays, the next command does not take it and starts the next keeper."""
    env = cluster.env({'XDG_CACHE_HOME': str(keep_home), 'KDIAG_KEEP_FORWARD': '1m'})
    cmd = [CLI, '-v', 'exec', '--tools', 'pod/nginx', '--', 'sh', '-c']
    assert subprocess.run(cmd + ['true'], env=env, capture_output=True, timeout=120).returncode == 0
    path, f = wait_for(lambda: kept(keep_home, 'nginx'), timeout=60, what='the keeper to write its file')
    os.kill(int(f[0]), signal.SIGKILL)
    wait_for(lambda: not running(int(f[0])) and not running(int(f[1])), timeout=15,
             what='the killed keeper and its kubectl to go')
    assert path.exists()                                       # left behind

    both = [subprocess.Popen(cmd + ['sleep 1; echo x%d' % i], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in both]
    for i, (p, (out, err)) in enumerate(zip(both, outs)):
        assert (p.returncode, out) == (0, 'x%d\n' % i), err
        assert 'taking the kept' not in err, err                # not the dead keeper's forward
    path, g = wait_for(lambda: (lambda k: k if k and k[1][0] != f[0] else None)(kept(keep_home, 'nginx')),
                       timeout=60, what='a new keeper')
    time.sleep(2)
    keepers = [p for p in os.listdir('/proc') if p.isdigit() and running(int(p)) and
               open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')[1:4] == [b'__keep', b'60000', b'nginx']]
    assert keepers == [g[0]], (keepers, g)
    os.kill(int(g[0]), signal.SIGTERM)                         # a keeper told to end unlinks its file
    wait_for(lambda: not running(int(g[0])) and not running(int(g[1])), timeout=15, what='the keeper to end')
    assert not path.exists()

    # deleting the file ends its keeper too (docs/contract.md)
    assert subprocess.run(cmd + ['true'], env=env, capture_output=True, timeout=120).returncode == 0
    path, h = wait_for(lambda: kept(keep_home, 'nginx'), timeout=60, what='the keeper to write its file')
    path.unlink()
    wait_for(lambda: not running(int(h[0])) and not running(int(h[1])), timeout=15, what='the keeper to end')
