"""The debug image as a cluster gets it: both Dockerfiles built with podman
(scripts/image.sh) and run under runc.

Run as a script, exits 77 (ctest: skipped) when podman cannot run containers here; with
scripts/deps.sh installed it can, and every test runs. Containers run with
--network none (their own network namespace, no bridge or host firewall rules)
and are removed at the end.
"""
import datetime
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
IMAGE_SH = os.path.join(REPO, "scripts", "image.sh")
BUILD = os.environ["KDIAG_BUILD_DIR"]
IMAGE_PS = os.environ["KDIAG_IMAGE_PS"]
HELLO = os.environ["KDIAG_HELLO_SERVER"]
OCI = os.path.join(BUILD, "images", "oci")
SIZE_GOAL = 15_000_000
TAG = f"kdiag-oci-{os.getpid()}"


def podman_usable():
    if not shutil.which("podman"):
        return "podman is not installed (scripts/deps.sh installs podman, runc, debootstrap)"
    p = subprocess.run(["podman", "--runtime", "runc", "info"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"podman cannot run here: {p.stderr.strip()[:300]}"
    return None


def sh(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def run(*args, **kw):   # podman run with this host's flags (scripts/image.sh)
    return sh(IMAGE_SH, "run", *args, **kw)


@pytest.fixture(scope="module")
def images():
    t = time.monotonic()
    sh(IMAGE_SH, "--build-dir", BUILD, "base", "release", "source", timeout=1700)
    ids, sizes = {}, {}
    for w in ("release", "source"):
        with open(os.path.join(OCI, w + ".id")) as f:
            ids[w] = f.read().strip()
        with open(os.path.join(OCI, w + ".size")) as f:
            sizes[w] = int(f.read())
    print(f"\nimage.sh: {time.monotonic() - t:.0f} s; image sizes: "
          + ", ".join(f"{w} {s / 1e6:.1f} MB" for w, s in sizes.items()))
    return ids, sizes


@pytest.fixture
def containers():
    names = []
    yield names
    if names:
        sh("podman", "rm", "-f", "-t", "0", *names, check=False)


def test_size_goal(images):
    _, sizes = images
    for w, s in sizes.items():
        assert s <= SIZE_GOAL, f"the {w} image is {s / 1e6:.1f} MB, over the {SIZE_GOAL / 1e6:.0f} MB goal"


def export(image_id, tmp):
    c = sh("podman", "create", image_id).stdout.strip()
    try:
        path = os.path.join(tmp, image_id[-12:] + ".tar")
        sh("podman", "export", "-o", path, c)
    finally:
        sh("podman", "rm", c, check=False)
    return tarfile.open(path)


def build_id(data):
    """The ELF build-id note's bytes (NT_GNU_BUILD_ID), or None."""
    i = data.find(b"GNU\0")
    while i >= 12:
        namesz, descsz, ntype = (int.from_bytes(data[i - 12 + k:i - 8 + k], "little") for k in (0, 4, 8))
        if namesz == 4 and ntype == 3 and descsz in (16, 20):
            return data[i + 4:i + 4 + descsz]
        i = data.find(b"GNU\0", i + 1)
    return None


def test_both_dockerfiles_same_files(images, tmp_path):
    """Same paths, types, modes, owners, sizes and link targets; same bytes too,
    except the binaries compiled twice (in the image by Dockerfile, on the host
    for Dockerfile.release): their ELF build-id differs, because it is a hash of
    the unstripped binary, whose debug info names the source and build
    directories (/src and /build in the image, the host's paths outside).
    Nothing else in them differs: that is checked byte for byte."""
    ids, _ = images
    tars = {w: export(ids[w], str(tmp_path)) for w in ids}
    listing = {}
    for w, t in tars.items():
        listing[w] = {m.name.rstrip("/"): (m.type, m.mode, m.uid, m.gid, m.size, m.linkname)
                      for m in t.getmembers()}
    assert listing["release"] == listing["source"]
    assert "usr/local/bin/kdiag-manager" in listing["release"]
    rebuilt = []
    for name, (typ, *_rest) in listing["release"].items():
        if typ != tarfile.REGTYPE:
            continue
        a, b = (tars[w].extractfile(name).read() for w in ("release", "source"))
        if a == b:
            continue
        ida, idb = build_id(a), build_id(b)
        assert ida and idb, f"{name} differs and is not an ELF with a build-id"
        assert a.count(ida) == 1 and b.count(idb) == 1
        assert a.replace(ida, b"\0" * len(ida)) == b.replace(idb, b"\0" * len(idb)), \
            f"{name} differs beyond its build-id"
        rebuilt.append(name)
    assert set(rebuilt) <= {"usr/local/bin/kdiag-manager", "usr/local/bin/enter"}, rebuilt
    # Dockerfile.release carries this build's binaries, not a cached older copy.
    for name in ("kdiag-manager", "enter"):
        with open(os.path.join(BUILD, "stripped", name), "rb") as f:
            assert tars["release"].extractfile("usr/local/bin/" + name).read() == f.read(), name


def test_cmake_rootfs_holds_the_image_files(images, tmp_path):
    """The debug rootfs CMake assembles for the simulated cluster (<build>/images/debug/rootfs)
    and the image Dockerfile.release builds: same paths, types, modes, sizes and bytes."""
    ids, _ = images
    tar = export(ids["release"], str(tmp_path))
    in_image = {}
    for m in tar.getmembers():
        data = tar.extractfile(m).read() if m.isreg() else m.linkname
        in_image[m.name.rstrip("/")] = (m.type, m.mode & 0o7777, data)
    root = os.path.join(BUILD, "images", "debug", "rootfs")
    in_rootfs = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if os.path.islink(p):
                t, data = tarfile.SYMTYPE, os.readlink(p)
            elif os.path.isdir(p):
                t, data = tarfile.DIRTYPE, ""
            else:
                with open(p, "rb") as f:
                    t, data = tarfile.REGTYPE, f.read()
            in_rootfs[os.path.relpath(p, root)] = (t, st.st_mode & 0o7777, data)
    assert sorted(in_rootfs) == sorted(in_image)
    for name in in_rootfs:
        assert in_rootfs[name] == in_image[name], name


def start_manager(image_id, containers, name, target):
    """Runs the image's entrypoint as kubectl diag does: in the target's PID and
    network namespaces. Returns (pid, start-up lines, seconds from the
    container's start to its last start-up line, seconds from `podman run`)."""
    containers.append(name)
    t0 = time.monotonic()
    run("-d", "--name", name, "--network", f"container:{target}", "--pid", f"container:{target}",
        "--cap-add", "SYS_PTRACE,NET_ADMIN", image_id)
    deadline = time.monotonic() + 20
    while True:
        logs = sh("podman", "logs", name).stdout
        if logs.count("\n") >= 3:
            total = time.monotonic() - t0
            break
        assert time.monotonic() < deadline, f"no start-up lines: {logs!r}"
        time.sleep(0.02)
    # When conmon read each line, against when podman saw the process start
    # (taken after runc started it: a line can come "before" it, by a few ms).
    stamped = sh("podman", "logs", "-t", name).stdout.splitlines()
    fmt = "{{.State.Pid}} {{.State.StartedAt.Format \"2006-01-02T15:04:05.999999999Z07:00\"}}"
    pid, started = sh("podman", "inspect", "-f", fmt, name).stdout.split(" ", 1)
    secs = (parse_time(stamped[2].split(" ", 1)[0]) - parse_time(started)).total_seconds()
    return int(pid), logs, max(secs, 0.0), total


def parse_time(s):
    """An RFC 3339 time with up to ns (podman logs -t, inspect's .Format) as UTC."""
    date, rest = s.strip().split("T")
    clock, zone = (rest[:-1], "+00:00") if rest.endswith("Z") else (rest[:-6], rest[-6:])
    clock, _, frac = clock.partition(".")
    return datetime.datetime.fromisoformat(f"{date}T{clock}.{frac[:6].ljust(6, '0')}{zone}")


@pytest.mark.parametrize("which", ["release", "source"])
def test_manager_runs_and_answers_ps(images, distroless, containers, which):
    ids, _ = images
    target = f"{TAG}-target-{which}"
    containers.append(target)
    run("-d", "--name", target, "--network", "none", distroless)
    pid, logs, secs, total = start_manager(ids[which], containers, f"{TAG}-mgr-{which}", target)
    print(f"\n{which}: start-up lines {secs * 1000:.0f} ms after the container started "
          f"({total:.2f} s after `podman run`)")
    lines = logs.splitlines()
    assert lines[0].startswith("Listening on 127.0.0.1:") and lines[1].startswith("Token: ") \
        and lines[2].startswith("Tunnel on 127.0.0.1:"), logs
    assert secs <= 1.0, f"start-up lines came {secs:.2f} s after the container started"
    netns = f"--net=/proc/{pid}/ns/net"
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 10
    while True:   # hello-server may still be starting to listen
        ps = sh("nsenter", netns, "--", IMAGE_PS, input=logs)
        if ":8080" in ps.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    row = [ln for ln in ps.stdout.splitlines() if "hello-server" in ln]
    assert row and ":8080" in row[0], ps.stdout
    # The same call without the token is refused (UNAUTHENTICATED = 16).
    denied = sh("nsenter", netns, "--", IMAGE_PS, "--no-token", input=logs, check=False)
    assert denied.returncode == 3 and denied.stdout.startswith("status 16:"), denied.stdout + denied.stderr
    # Outside the container's network namespace nothing answers there.
    outside = sh(IMAGE_PS, input=logs, check=False)
    assert outside.returncode == 3 and "hello-server" not in outside.stdout


@pytest.fixture(scope="module")
def distroless(images):
    """A scratch image with one static binary (the distroless case)."""
    ctx = tempfile.mkdtemp(prefix=TAG + "-")
    try:
        shutil.copy(HELLO, os.path.join(ctx, "hello-server"))
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write('FROM scratch\nCOPY hello-server /hello-server\nENTRYPOINT ["/hello-server"]\n')
        iid = os.path.join(ctx, "iid")
        sh("podman", "--runtime", "runc", "build", "--pull=never", "--network", "none",
           "--iidfile", iid, ctx)
        with open(iid) as f:
            image_id = f.read().strip()
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    yield image_id
    sh("podman", "rmi", "-f", image_id, check=False)


@pytest.mark.parametrize("how", ["pid", "container-id"])
def test_enter_and_ash_into_distroless(images, distroless, containers, how):
    ids, _ = images
    target = f"{TAG}-distroless-{how}"
    containers.append(target)
    cid = run("-d", "--name", target, "--network", "none", "-e", "MARK=distroless-env",
              distroless).stdout.strip()
    # As kubectl diag shell does: the debug container shares the target's PID
    # (and network) namespace and has SYS_PTRACE, SYS_ADMIN and SYS_CHROOT.
    where = ["1"] if how == "pid" else ["--container-id", cid]
    script = ("ls /; [ -e /bin/sh ] || echo no-sh; echo env=$MARK; "
              "wget -q -O - http://127.0.0.1:8080/; cat /proc/1/comm")
    deadline = time.monotonic() + 10
    while True:
        r = run("--rm", "--network", f"container:{target}", "--pid", f"container:{target}",
                "--cap-add", "SYS_PTRACE,SYS_ADMIN,SYS_CHROOT", "--entrypoint", "/usr/local/bin/enter",
                ids["release"], *where, "/usr/local/bin/ash", "-c", script, check=False)
        if "hello from distroless" in r.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)   # hello-server may still be starting
    out = r.stdout.split()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hello-server" in out and "no-sh" in out and "env=distroless-env" in out, r.stdout
    assert "hello from distroless" in r.stdout
    assert out[-1] == "hello-server"


if __name__ == "__main__":   # ctest: 77 (skipped) when podman cannot run here
    import sys
    why = podman_usable()
    if why:
        print(f"SKIP image tests: {why}")
        sys.exit(77)
    sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", __file__]))
