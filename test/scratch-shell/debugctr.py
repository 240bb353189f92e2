"""Last stage of the test's "debug container": run inside a fresh mount
namespace (and the target's PID namespace). Mounts /proc for this PID
namespace in ROOT (unless --no-proc), drops the named capabilities from the
bounding set, chroots into ROOT and execs the given program from inside it.
With --pty the program gets a terminal of the container's own devpts instance
(mounted at ROOT/dev/pts), as `kubectl exec -it` gives one from the container's
/dev/ptmx; its output is copied to stdout and its exit code is ours.

usage: debugctr.py ROOT [--no-proc] [--pty] [--drop CAP]... -- PROGRAM [ARGS...]
"""
import ctypes
import fcntl
import os
import struct
import termios
import shutil
import subprocess
import sys

TIOCSPTLCK, TIOCGPTN = 0x40045431, 0x80045430  # <asm-generic/ioctls.h>; Python's termios lacks them
CAPS = {"sys_chroot": 18, "sys_ptrace": 19, "sys_admin": 21}
PR_CAPBSET_DROP = 24


def main(argv):
    root, rest = argv[0], argv[1:]
    mount_proc, drops, pty = True, [], False
    while rest and rest[0] != "--":
        opt = rest.pop(0)
        if opt == "--no-proc":
            mount_proc = False
        elif opt == "--pty":
            pty = True
        elif opt == "--drop":
            drops.append(CAPS[rest.pop(0)])
        else:
            raise SystemExit(f"debugctr: unknown option {opt}")
    prog = rest[1:]
    if mount_proc:
        subprocess.run([shutil.which("mount", path="/usr/bin:/bin") or "/bin/mount", "-t", "proc", "proc", os.path.join(root, "proc")], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in drops:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise SystemExit(f"debugctr: PR_CAPBSET_DROP {cap}: errno {ctypes.get_errno()}")
    master = own_pty(root) if pty else None
    os.chroot(root)
    os.chdir("/")
    if master is None:
        os.execv(prog[0], prog)
    run_on_pty(master, prog)


def own_pty(root):
    """A pty master of a new devpts instance at ROOT/dev/pts, as a container runtime mounts one."""
    pts = os.path.join(root, "dev", "pts")
    os.makedirs(pts, exist_ok=True)
    subprocess.run(["/bin/mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", pts],
                   check=True)
    master = os.open(os.path.join(pts, "ptmx"), os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    return master


def run_on_pty(master, prog):
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    child = os.fork()
    if child == 0:
        os.setsid()
        slave = os.open(f"/dev/pts/{n}", os.O_RDWR)
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execv(prog[0], prog)
    while True:
        try:
            b = os.read(master, 4096)
        except OSError:  # EIO: the last slave is closed
            break
        if not b:
            break
        os.write(1, b)
    _, status = os.waitpid(child, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(sys.argv[1:])
