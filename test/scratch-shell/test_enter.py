"""`enter` + `ash` against a scratch "container" made of real namespaces.

Target: a root holding one static binary (no shell), run in new PID, mount,
UTS, IPC and network namespaces, chrooted, /proc mounted, in a cgroup whose
path holds a made-up container id. Debug container: its own mount namespace
whose root holds only enter + ash, sharing the target's PID namespace (what
Kubernetes' targetContainerName does). Everything created here carries this
process' pid in its name and is removed at the end, even on failure.

Needs root. Paths come from the environment (set by CMake): KDIAG_ENTER,
KDIAG_ASH, KDIAG_SCRATCH_TARGET.
"""
import errno
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import nsutil  # noqa: E402
from nsutil import children  # noqa: E402

ENTER = os.environ["KDIAG_ENTER"]
ASH = os.environ["KDIAG_ASH"]
TARGET_BIN = os.environ["KDIAG_SCRATCH_TARGET"]
DEBUGCTR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "debugctr.py")
TAG = f"kdiag-enter-{os.getpid()}"
TARGET_PATH = "/scratch/bin:/scratch/sbin"
SHELL = "/usr/local/bin/ash"
# Host tools by absolute path: the debug container runs with the debug image's PATH.
CHROOT, NSENTER, UNSHARE = (shutil.which(t) or f"/usr/bin/{t}" for t in ("chroot", "nsenter", "unshare"))
ENTER_IN_DEBUG = "/usr/local/bin/enter"


def fake_id(seed):
    return hashlib.sha256(f"{TAG}-{seed}".encode()).hexdigest()


def cgroup_base():
    """A cgroup hierarchy we may create groups in: v2 root, hybrid's unified, or v1 pids."""
    for base, probe in (("/sys/fs/cgroup", "cgroup.controllers"),
                        ("/sys/fs/cgroup/unified", "cgroup.procs"),
                        ("/sys/fs/cgroup/pids", "cgroup.procs")):
        if os.path.exists(os.path.join(base, probe)):
            return base
    pytest.skip("no writable cgroup hierarchy")


def wait_for(pred, what, timeout=5.0):
    return nsutil.wait_for(pred, what, timeout, interval=0.02)   # enter's targets start in ms


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def exe_is_target(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe").endswith("kdiag-scratch-target")
    except OSError:
        return False


def find_target_under(pid):
    """Host PID of the first kdiag-scratch-target below pid (BFS)."""
    todo = [pid]
    while todo:
        p = todo.pop(0)
        if exe_is_target(p):
            return p
        todo.extend(children(p))
    return None


def make_root(path, files, dirs=("proc",), marker=None):
    os.makedirs(path)
    for d in dirs:
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for dst, src in files.items():
        full = os.path.join(path, dst.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        shutil.copy2(src, full)
    if marker:
        open(os.path.join(path, marker), "w").close()


class Env:
    """Everything one test module creates; cleanup() is safe to call twice."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix=TAG + "-")
        self.base = cgroup_base()
        self.cg_parent = os.path.join(self.base, TAG)
        try:
            os.makedirs(self.cg_parent, exist_ok=True)
        except OSError as e:
            if e.errno != errno.EROFS:
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)
            pytest.skip(f"{self.base} is mounted read-only: cannot make test cgroups")
        self.procs = []   # Popen objects, killed (whole process groups) at cleanup
        self.cgroups = []

    def cgroup(self, cid):
        cg = os.path.join(self.cg_parent, cid)
        os.makedirs(cg, exist_ok=True)
        self.cgroups.append(cg)
        return cg

    def spawn(self, argv):
        p = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            for pid in [p.pid] + collect_tree(p.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for cg in list(reversed(self.cgroups)) + [self.cg_parent]:
            try:
                wait_for(lambda: rmdir_ok(cg), f"rmdir {cg}", timeout=5)
            except AssertionError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def rmdir_ok(path):
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        # processes still leaving: kill whatever is left in it
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                for pid in f.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        except OSError:
            pass
        return False


def collect_tree(pid):
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def start_container(env, root, cid, argv, new_pidns=True, join_pid=None, hostname=None,
                    environ=None, devpts=False):
    """Starts argv chrooted in root, in cgroup cid; returns the target's host PID. devpts: the
    root is a mount point with its own devpts at /dev/pts, as a container runtime makes it."""
    cg = env.cgroup(cid)
    envs = " ".join(shlex.quote(e) for e in (environ or []))
    inner = ""
    if hostname:
        inner += f"hostname {shlex.quote(hostname)} && "
    if devpts:
        q = shlex.quote(root)
        inner += (f"mount --bind {q} {q} && mount -t devpts -o newinstance,ptmxmode=0666 devpts "
                  f"{q}/dev/pts && ")
    inner += (f"mount -t proc proc {shlex.quote(root)}/proc && "
              f"exec env -i {envs} {CHROOT} {shlex.quote(root)} {shlex.join(argv)}")
    ns = "--mount --uts --ipc --net --propagation private"
    if new_pidns:
        cmd = f"unshare --pid --fork {ns} -- sh -c {shlex.quote(inner)}"
    else:
        cmd = (f"nsenter --target {join_pid} --pid -- "
               f"unshare {ns} -- sh -c {shlex.quote(inner)}")
    p = env.spawn(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {cmd}"])
    return wait_for(lambda: find_target_under(p.pid), f"container {cid} to start")


@pytest.fixture(scope="module")
def env():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()
        assert not os.path.exists(e.cg_parent), f"cgroup {e.cg_parent} left behind"


@pytest.fixture(scope="module")
def scratch(env):
    """The scratch container; returns its host PID, container id and hostname."""
    root = os.path.join(env.tmp, "scratch")
    make_root(root, {"/kdiag-scratch-target": TARGET_BIN}, dirs=("proc", "data"))
    cid = fake_id("scratch")
    host = f"scratch-{os.getpid()}"
    pid = start_container(env, root, cid, ["/kdiag-scratch-target", "/data"], hostname=host,
                          environ=[f"PATH={TARGET_PATH}", "HOME=/data", "TERM=target-term",
                                   "MARK=scratch"])
    return {"pid": pid, "id": cid, "hostname": host}


@pytest.fixture(scope="module")
def debug_root(env):
    root = os.path.join(env.tmp, "debug")
    make_root(root, {ENTER_IN_DEBUG: ENTER, SHELL: ASH})
    script = os.path.join(root, "usr/local/bin/script.sh")
    with open(script, "w") as f:
        f.write("#!/usr/local/bin/ash\necho never\n")
    os.chmod(script, 0o755)
    return root


def run_debug(target_pid, debug_root, args, drop=(), no_proc=False, stdin=None, timeout=15,
              extra_env=None, pty=False):
    """Runs /usr/local/bin/enter ARGS in a fresh debug container sharing target_pid's PID ns."""
    argv = [NSENTER, f"--target={target_pid}", "--pid", "--",
            UNSHARE, "--mount", "--propagation=private", "--",
            sys.executable, DEBUGCTR, debug_root]
    if no_proc:
        argv.append("--no-proc")
    if pty:
        argv.append("--pty")
    for cap in drop:
        argv += ["--drop", cap]
    argv += ["--", ENTER_IN_DEBUG] + list(args)
    e = {"PATH": "/debug/bin", "TERM": "xterm-from-caller"}
    e.update(extra_env or {})
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=e)


def sh(scratch, debug_root, script, **kw):
    return run_debug(scratch["pid"], debug_root, ["1", SHELL, "-c", script], **kw)


# --- behaviour ------------------------------------------------------------------------------

def test_top_shows_target_binary(scratch, debug_root):
    r = sh(scratch, debug_root, "top -n 1")
    assert r.returncode == 0, r.stderr
    pid1 = [l for l in r.stdout.splitlines() if re.match(r"\s*1\s", l)]
    assert len(pid1) == 1 and pid1[0].endswith("/kdiag-scratch-target /data"), r.stdout


def test_root_is_the_scratch_root(scratch, debug_root):
    r = sh(scratch, debug_root, "ls /")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["data", "kdiag-scratch-target", "proc"]


def test_hostname_path_cwd_env(scratch, debug_root):
    r = sh(scratch, debug_root, 'hostname; echo "$PATH"; pwd; echo "$TERM"; echo "$MARK"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [scratch["hostname"], TARGET_PATH, "/data",
                                     "xterm-from-caller", "scratch"]


def test_network_namespace_is_the_targets(scratch, debug_root):
    r = sh(scratch, debug_root, "cat /proc/net/dev")
    assert r.returncode == 0, r.stderr
    ifaces = [l.split(":")[0].strip() for l in r.stdout.splitlines()[2:]]
    assert ifaces == ["lo"]


def test_shell_lives_in_target_pid_namespace(scratch, debug_root):
    r = sh(scratch, debug_root, "cat /proc/1/cmdline; echo; echo $$")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("/kdiag-scratch-target")
    assert int(lines[1]) > 1


def test_from_a_parent_pid_namespace_the_shell_is_forked_into_the_target_one(scratch):
    """enter run from the host (an ancestor PID namespace): only a forked child can be
    in the target's PID namespace, where its own PID is visible in the target's /proc."""
    r = subprocess.run([ENTER, str(scratch["pid"]), ASH, "-c",
                        'test -d /proc/$$ && echo in-target-pidns; hostname; pwd'],
                       capture_output=True, text=True, timeout=10, env={"TERM": "t"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["in-target-pidns", scratch["hostname"], "/data"]


def test_exit_code(scratch, debug_root):
    assert sh(scratch, debug_root, "exit 7").returncode == 7


def test_killed_by_signal_is_128_plus_n(scratch, debug_root):
    assert sh(scratch, debug_root, "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_stdin_piped_through(scratch, debug_root):
    data = "".join(f"line {i}\n" for i in range(2000))
    r = sh(scratch, debug_root, "cat", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


def test_pidfd_and_proc_fallback(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["-v", "1", SHELL, "-c", "hostname"])
    assert r.returncode == 0 and r.stdout.strip() == scratch["hostname"], r.stderr
    assert "via pidfd" in r.stderr
    r = run_debug(scratch["pid"], debug_root, ["-v", "1", SHELL, "-c", "hostname; ls /"],
                  extra_env={"KDIAG_ENTER_FORCE_PROC_NS": "1"})
    assert r.returncode == 0, r.stderr
    assert "via /proc/PID/ns" in r.stderr
    assert r.stdout.split()[0] == scratch["hostname"]
    assert "kdiag-scratch-target" in r.stdout.split()


def test_container_id_in_own_pid_namespace(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root,
                  ["--container-id", "containerd://" + scratch["id"], SHELL, "-c",
                   'hostname; echo "$MARK"'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [scratch["hostname"], "scratch"]


def test_signal_from_a_process_is_forwarded(scratch, debug_root):
    """A SIGTERM sent to enter (what a runtime does to end an exec) reaches the child."""
    argv = [NSENTER, f"--target={scratch['pid']}", "--pid", "--",
            UNSHARE, "--mount", "--propagation=private", "--",
            sys.executable, DEBUGCTR, debug_root, "--", ENTER_IN_DEBUG, "1", SHELL, "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.05; done"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        enter_pid = wait_for(lambda: next((c for c in collect_tree(p.pid)
                                           if exe_of(c).endswith("/enter")), None),
                             "enter process")
        os.kill(enter_pid, signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
        assert "got-term" in out
        assert p.returncode == 9
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# --- interactive, under a pty ---------------------------------------------------------------

class PtySession:
    def __init__(self, argv):
        cmd = shlex.join(argv)
        self.p = subprocess.Popen(["script", "-q", "-e", "-c", cmd, "/dev/null"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  env={"PATH": os.environ["PATH"], "TERM": "xterm-from-caller",
                                       "SHELL": "/bin/sh"})
        self.buf = b""
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while True:
            b = os.read(self.p.stdout.fileno(), 4096)
            if not b:
                return
            with self.lock:
                self.buf += b

    def send(self, s):
        self.p.stdin.write(s.encode())
        self.p.stdin.flush()

    def expect(self, pattern, timeout=10):
        rx = re.compile(pattern.encode())
        def found():
            with self.lock:
                return rx.search(self.buf)
        try:
            return wait_for(found, f"{pattern!r}", timeout)
        except AssertionError:
            raise AssertionError(f"no {pattern!r} in pty output: {self.buf!r}")

    def close(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=5)


def test_interactive_session_and_ctrl_c(scratch, debug_root):
    argv = [NSENTER, f"--target={scratch['pid']}", "--pid", "--",
            UNSHARE, "--mount", "--propagation=private", "--",
            sys.executable, DEBUGCTR, debug_root, "--", ENTER_IN_DEBUG, "1", SHELL]
    s = PtySession(argv)
    try:
        s.send("echo h''i-$((6*7))\n")
        s.expect(r"\nhi-42\r?\n")
        s.send('echo "term=$TERM"\n')
        s.expect(r"\nterm=xterm-from-caller\r?\n")
        # A foreground job, interrupted by the terminal's Ctrl-C: the job dies (130),
        # the shell and enter carry on.
        s.send("sleep 30\n")
        time.sleep(0.5)
        t0 = time.monotonic()
        s.send("\x03")
        s.send("echo after-$?\n")
        s.expect(r"\nafter-130\r?\n", timeout=5)
        assert time.monotonic() - t0 < 5
        s.send("echo still-h''ere\n")
        s.expect(r"\nstill-here\r?\n")
        s.send("exit 4\n")
        assert s.p.wait(timeout=10) == 4
    finally:
        s.close()


def test_terminal_keeps_its_name_in_the_target(env, debug_root):
    """`kubectl exec -it` gives a pty of the debug container's devpts; in the target (its own devpts
    at /dev/pts) `tty` names it instead of saying "not a tty", and the target's /dev/pts is
    untouched."""
    root = os.path.join(env.tmp, "ttytarget")
    make_root(root, {"/kdiag-scratch-target": TARGET_BIN}, dirs=("proc", "dev/pts"))
    pid = start_container(env, root, fake_id("ttytarget"), ["/kdiag-scratch-target", "/"], devpts=True)
    r = run_debug(pid, debug_root, ["1", SHELL, "-c", "tty; test -t 0 && echo stdin-is-a-tty"], pty=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^/dev/pts/0\r?$", r.stdout, re.M), r.stdout
    assert "stdin-is-a-tty" in r.stdout
    # the target's own mount namespace still has its own (empty) devpts
    with open(f"/proc/{pid}/mountinfo") as f:
        pts = [l for l in f if " /dev/pts " in l]
    assert len(pts) == 1 and os.listdir(f"/proc/{pid}/root/dev/pts") == ["ptmx"], pts


# --- shared PID namespace with a pause process as PID 1 -------------------------------------

@pytest.fixture(scope="module")
def pod(env):
    """Pause as PID 1 of a shared PID namespace, containers a and b in it (b runs twice)."""
    pause_root = os.path.join(env.tmp, "pause")
    make_root(pause_root, {"/pause": TARGET_BIN})
    os.link(os.path.join(pause_root, "pause"), os.path.join(pause_root, "kdiag-scratch-target"))
    pause = start_container(env, pause_root, fake_id("pause"), ["/kdiag-scratch-target"],
                            hostname=f"pod-{os.getpid()}")
    ids = {}
    for name in ("a", "b"):
        root = os.path.join(env.tmp, f"ctr-{name}")
        make_root(root, {"/kdiag-scratch-target": TARGET_BIN}, marker=f"i-am-{name}")
        ids[name] = fake_id(f"ctr-{name}")
        start_container(env, root, ids[name], ["/kdiag-scratch-target"], new_pidns=False,
                        join_pid=pause, environ=[f"MARK={name}-first", "PATH=/" + name])
    # A second, later (higher PID) process of container b.
    start_container(env, os.path.join(env.tmp, "ctr-b"), ids["b"], ["/kdiag-scratch-target"],
                    new_pidns=False, join_pid=pause, environ=["MARK=b-second"])
    return {"pause": pause, "ids": ids}


def test_container_id_with_pause_pid1(pod, debug_root):
    for name in ("a", "b"):
        r = run_debug(pod["pause"], debug_root,
                      ["--container-id", pod["ids"][name], SHELL, "-c",
                       'ls /; echo "$MARK $PATH"; cat /proc/1/cmdline'])
        assert r.returncode == 0, r.stderr
        out = r.stdout.split()
        assert f"i-am-{name}" in out
        assert f"{name}-first" in out and f"/{name}" in out   # lowest PID of b wins
        assert "pause" not in out


def test_pid1_is_pause_not_the_container(pod, debug_root):
    r = run_debug(pod["pause"], debug_root, ["1", SHELL, "-c", "ls /"])
    assert r.returncode == 0, r.stderr
    assert "pause" in r.stdout.split()


# --- errors: one line, cause + fix, exit code, no hang --------------------------------------

def one_line_error(r, code, *needles):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enter: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert r.stdout == ""


def test_error_no_such_pid(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["4242", SHELL, "-c", "true"])
    one_line_error(r, 125, "no process with PID 4242", "is the target container running")


def test_error_no_container_match(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["--container-id", "f00dfeed", SHELL])
    one_line_error(r, 125, "no process whose cgroup path contains container id 'f00dfeed'")


def test_error_bad_container_id(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["--container-id", "a/b", SHELL])
    one_line_error(r, 2, "'a/b' is not a container id")


def test_error_program_missing(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", "/usr/local/bin/nosuch"])
    one_line_error(r, 127, "cannot open PROGRAM '/usr/local/bin/nosuch'",
                   "No such file or directory", "/usr/local/bin/ash")


def test_error_program_not_executable(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", "/usr/local/bin"])
    one_line_error(r, 126, "PROGRAM '/usr/local/bin' is not an executable file")


def test_error_program_is_a_script(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", "/usr/local/bin/script.sh"])
    one_line_error(r, 127, "cannot execute '/usr/local/bin/script.sh' in the target",
                   "must be a static binary")


def test_error_usage(scratch, debug_root):
    one_line_error(run_debug(scratch["pid"], debug_root, []), 2, "missing PID", "usage:")
    one_line_error(run_debug(scratch["pid"], debug_root, ["1"]), 2, "missing PROGRAM")
    one_line_error(run_debug(scratch["pid"], debug_root, ["abc", SHELL]), 2,
                   "'abc' is not a PID")
    one_line_error(run_debug(scratch["pid"], debug_root, ["--bogus", "1", SHELL]), 2,
                   "unknown option '--bogus'")


def test_error_without_sys_ptrace(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", SHELL, "-c", "true"], drop=["sys_ptrace"])
    one_line_error(r, 125, "cannot open /proc/1/root", "Permission denied", "SYS_PTRACE")


def test_error_without_sys_admin(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", SHELL, "-c", "true"], drop=["sys_admin"])
    one_line_error(r, 125, "cannot join the", "namespace of PID 1", "Operation not permitted",
                   "SYS_ADMIN")


def test_error_without_sys_chroot(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", SHELL, "-c", "true"], drop=["sys_chroot"])
    one_line_error(r, 125, "cannot join the mnt namespace of PID 1", "SYS_CHROOT")


def test_error_proc_not_mounted(scratch, debug_root):
    r = run_debug(scratch["pid"], debug_root, ["1", SHELL], no_proc=True)
    one_line_error(r, 125, "/proc is not mounted", "mount -t proc proc /proc")
