"""The image store (<build>/images/images.json) and its root filesystems.

Each image runs chrooted in fresh mount + PID + network namespaces (what the
simulated cluster does, minus the API): its entrypoint starts and behaves as
the image promises. Needs root. Everything lives in namespaces that die with
their processes; temp files carry this pid and are removed.
"""
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
from nsutil import children, wait_for  # noqa: E402

IMAGES_JSON = os.environ["KDIAG_IMAGES_JSON"]
DEBUG_IMAGE = os.environ["KDIAG_DEFAULT_IMAGE"]
BUILD_ROOTFS = os.environ["KDIAG_BUILD_ROOTFS"]
DYN_PROBE = os.environ["KDIAG_DYN_PROBE"]
CHROOT, NSENTER, UNSHARE, IP = (shutil.which(t) for t in ("chroot", "nsenter", "unshare", "ip"))
BUSYBOX = "/bin/busybox"   # the client side of the checks (host busybox-static)
TAG = f"kdiag-images-{os.getpid()}"


@pytest.fixture(scope="module")
def store():
    with open(IMAGES_JSON) as f:
        return json.load(f)["images"]


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix=TAG + "-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Container:
    """An image's entrypoint chrooted in new mount/PID(/net) namespaces, stdout captured."""

    def __init__(self, image, args=None, env=(), dev=True, hosts=None, join_net=None):
        root = image["rootfs"]
        q = shlex.quote
        setup = [] if join_net else [f"{IP} link set lo up"]
        setup.append(f"mount -t proc proc {q(root)}/proc")
        if dev:   # what a runtime gives: a /dev with at least null
            setup += [f"mount -t tmpfs -o mode=755 tmpfs {q(root)}/dev",
                      f"touch {q(root)}/dev/null", f"mount --bind /dev/null {q(root)}/dev/null"]
        if hosts:
            setup.append(f"mount --bind {q(hosts)} {q(root)}/etc/hosts")
        argv = image["entrypoint"] + (image["cmd"] if args is None else args)
        envs = [*image["env"], *env]
        setup.append(f"cd {q(root)} && exec env -i {shlex.join(envs)} {CHROOT} {q(root)} "
                     f"{shlex.join(argv)}")
        cmd = [UNSHARE, "--mount", "--pid", "--fork", "--propagation", "private"]
        if join_net:
            cmd = [NSENTER, f"--net=/proc/{join_net}/ns/net", "--"] + cmd
        else:
            cmd.append("--net")
        cmd += ["--", "sh", "-c", " && ".join(setup)]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines, self.lock = [], threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        # Host PID of the container's PID 1 (unshare's child).
        self.pid = wait_for(lambda: next(iter(children(self.p.pid)), None), "container PID 1")

    def _read(self):
        for raw in self.p.stdout:
            with self.lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def output(self):
        with self.lock:
            return list(self.lines)

    def run_in_net(self, argv, stdin=None, timeout=10):
        return subprocess.run([NSENTER, f"--net=/proc/{self.pid}/ns/net", "--"] + argv,
                              input=stdin, capture_output=True, timeout=timeout)

    def wget(self, url):
        return self.run_in_net([BUSYBOX, "wget", "-q", "-O", "-", url])

    def listening(self, port):
        """A LISTEN socket on port in the container's netns (no connection: no log line)."""
        r = self.run_in_net(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
        want = f":{port:04X} "
        return any(want in l.split(None, 2)[1] + " " and l.split()[3] == "0A"
                   for l in r.stdout.decode().splitlines()[1:] if len(l.split()) > 3)

    def wait_port(self, port):
        wait_for(lambda: self.listening(port), f"port {port}")

    def stop(self):
        """SIGTERM to PID 1 as a runtime does; returns seconds until it was gone."""
        t0 = time.monotonic()
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.p.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        took = time.monotonic() - t0
        self.kill()
        return took

    def kill(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            for c in children(self.p.pid):
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.p.wait(timeout=5)


@pytest.fixture
def containers():
    made = []

    def start(*a, **kw):
        c = Container(*a, **kw)
        made.append(c)
        return c
    yield start
    for c in made:
        c.kill()


def wait_lines(c, n, keep=lambda l: True, skip=0, timeout=5.0):
    """The container's first n output lines (after skip) that satisfy keep."""
    def enough():
        got = [l for l in c.output()[skip:] if keep(l)]
        return got if len(got) >= n else None
    return wait_for(enough, f"{n} output lines", timeout)


def regular_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


# --- the store ------------------------------------------------------------------------------

def test_store_names_and_entrypoints(store):
    assert sorted(store) == sorted(["nginx", "curl", "distroless", DEBUG_IMAGE])
    for name, img in store.items():
        assert os.path.isabs(img["rootfs"]) and os.path.isdir(img["rootfs"]), name
        assert img["workingDir"] == "/" and any(e.startswith("PATH=") for e in img["env"])
        ep = os.path.join(img["rootfs"], img["entrypoint"][0].lstrip("/"))
        if name == DEBUG_IMAGE and not os.path.exists(ep):
            continue   # kdiag-manager not built in this tree: test_debug_image says so
        assert os.access(ep, os.X_OK), f"{name}: entrypoint {ep} missing"


# --- nginx ----------------------------------------------------------------------------------

def test_nginx_serves_port_80_and_logs_each_request(store, containers):
    c = containers(store["nginx"])
    c.wait_port(80)
    n0 = len(c.output())
    r = c.wget("http://127.0.0.1/")
    assert r.returncode == 0 and b"Welcome to nginx!" in r.stdout
    assert c.wget("http://127.0.0.1/index.html").returncode == 0
    assert c.wget("http://127.0.0.1/missing").returncode != 0
    logs = wait_lines(c, 3, skip=n0)
    assert len(logs) == 3, logs
    assert [re.search(r"response:(\d+)$", l).group(1) for l in logs] == ["200", "200", "404"]
    assert c.stop() < 2.0, "nginx stand-in must stop on SIGTERM as PID 1"


def test_nginx_without_dev_still_serves(store, containers):
    c = containers(store["nginx"], dev=False)
    c.wait_port(80)
    assert b"Welcome to nginx!" in c.wget("http://127.0.0.1/").stdout
    wait_for(lambda: any("response:200" in l for l in c.output()), "a log line")


# --- curl -----------------------------------------------------------------------------------

def test_curl_loop_fetches_nginx_by_name_every_second(store, containers, tmp):
    ngx = containers(store["nginx"])
    ngx.wait_port(80)
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:   # as the kubelet writes it: one line per pod name
        f.write("127.0.0.1\tlocalhost\n127.0.0.1\tnginx\n")
    cu = containers(store["curl"], hosts=hosts, join_net=ngx.pid)
    lines = wait_lines(cu, 2, timeout=6)
    for i, l in enumerate(lines[:2], 1):
        assert l.startswith(f"curl: #{i} GET http://nginx/ -> HTTP/1.1 200 OK: "), l
        assert "Welcome to nginx!" in l
    assert sum("response:200" in l for l in ngx.output()) >= 2
    # A failing try is a log line too, and the loop goes on.
    ngx.kill()
    wait_for(lambda: any("-> error: " in l for l in cu.output()), "an error line", timeout=6)
    assert cu.stop() < 2.5


def test_curl_reports_unknown_names(store, containers):
    cu = containers(store["curl"], args=["http://no-such-pod/"])
    wait_for(lambda: any("-> error: wget: bad address 'no-such-pod'" in l
                         for l in cu.output()), "bad address line", timeout=6)


# --- distroless -----------------------------------------------------------------------------

def test_distroless_is_one_static_file(store):
    root = store["distroless"]["rootfs"]
    assert regular_files(root) == ["hello-server"]
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            assert not os.path.islink(os.path.join(d, n)), n
    probe = subprocess.run(["readelf", "-l", os.path.join(root, "hello-server")],
                           capture_output=True, text=True, check=True)
    assert "Requesting program interpreter" not in probe.stdout


def test_distroless_answers_on_8080(store, containers):
    c = containers(store["distroless"], dev=False)
    c.wait_port(8080)
    r = c.wget("http://127.0.0.1:8080/anything")
    assert r.returncode == 0 and r.stdout == b"hello from distroless\n"
    r = c.run_in_net([BUSYBOX, "nc", "127.0.0.1", "8080"], stdin=b"ping 1\n")
    assert r.stdout == b"hello from distroless: ping 1\n"
    logs = wait_lines(c, 2, keep=lambda l: "->" in l)
    assert logs[0].endswith('"GET /anything HTTP/1.1" -> 200')
    assert logs[1].endswith('"ping 1" -> echo')
    assert c.stop() < 2.0


# --- the debug image ------------------------------------------------------------------------

def test_debug_image_tools(store):
    root = store[DEBUG_IMAGE]["rootfs"]
    for tool in ("enter", "ash"):
        path = os.path.join(root, "usr/local/bin", tool)
        out = subprocess.run(["readelf", "-l", path], capture_output=True, text=True,
                             check=True).stdout
        assert "Requesting program interpreter" not in out, f"{tool} must be static"
    r = subprocess.run([UNSHARE, "--mount", "--pid", "--fork", "--", "sh", "-c",
                        f"mount -t proc proc {root}/proc && exec env -i {CHROOT} {root} "
                        "/usr/local/bin/ash -c 'ls /usr/local/bin; /usr/local/bin/enter --help'"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert "enter" in r.stdout.split() and "usage: enter" in r.stdout


def test_debug_image_manager_runs_from_its_own_root(store):
    root = store[DEBUG_IMAGE]["rootfs"]
    if not os.path.exists(os.path.join(root, "usr/local/bin/kdiag-manager")):
        pytest.skip("kdiag-manager is not built in this tree (no CMake target yet)")
    # Every library resolved inside the image, by the image's own loader...
    r = subprocess.run([CHROOT, root, "/lib64/ld-linux-x86-64.so.2", "--list",
                        "/usr/local/bin/kdiag-manager"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "not found" not in r.stdout, r.stdout + r.stderr
    # ...and the manager starts.
    r = subprocess.run([UNSHARE, "--mount", "--pid", "--fork", "--net", "--", "sh", "-c",
                        f"mount -t proc proc {root}/proc && exec env -i {CHROOT} {root} "
                        "/usr/local/bin/kdiag-manager --help"],
                       capture_output=True, text=True, timeout=10)
    assert "error while loading shared libraries" not in r.stderr, r.stderr
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


# --- build-rootfs.sh itself -----------------------------------------------------------------

def build(tmp, listing, *extra):
    lst = os.path.join(tmp, "list")
    with open(lst, "w") as f:
        f.write(listing)
    out = os.path.join(tmp, "rootfs")
    r = subprocess.run([BUILD_ROOTFS, "--files", lst, "--out", out, "--build-dir", tmp, *extra],
                       capture_output=True, text=True, timeout=30)
    return r, out


def test_build_rootfs_copies_shared_libraries(tmp):
    r, out = build(tmp, f"file /bin/probe {DYN_PROBE} libs\ndir /tmp mode=1777\n"
                        "dir /proc\nlink /bin/probe2 probe\n")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(out, "lib64/ld-linux-x86-64.so.2"))
    assert any(f.startswith("libjansson.so") for _, _, fs in os.walk(out) for f in fs)
    assert stat.S_IMODE(os.stat(os.path.join(out, "tmp")).st_mode) == 0o1777
    # /proc too: a sanitizer build of the probe reads /proc/self/maps.
    run = subprocess.run([UNSHARE, "--mount", "--pid", "--fork", "--", "sh", "-c",
                          f"mount -t proc proc {out}/proc && exec {CHROOT} {out} /bin/probe2"],
                         capture_output=True, text=True, timeout=10)
    assert run.returncode == 0 and run.stdout.strip() == '{"probe":"ok"}', run.stderr


def test_build_rootfs_errors(tmp):
    r, out = build(tmp, "file /x does/not/exist\n")
    assert r.returncode != 0 and "list:1: '" in r.stderr and "does not exist" in r.stderr
    assert not os.path.exists(out)
    r, out = build(tmp, "# comment\n\nfrob /x\n")
    assert r.returncode != 0 and "list:3: unknown entry 'frob'" in r.stderr
    r, out = build(tmp, "file /x does/not/exist\ndir /d\n", "--allow-missing", "does/not/exist")
    assert r.returncode == 0 and "warning" in r.stderr and os.path.isdir(os.path.join(out, "d"))
    assert os.listdir(out) == ["d"]
