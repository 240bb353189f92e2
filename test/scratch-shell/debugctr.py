"""Last stage of the test's "debug container": run inside a fresh mount
namespace (and the target's PID namespace). Mounts /proc for this PID
namespace in ROOT (unless --no-proc), drops the named capabilities from the
bounding set, chroots into ROOT and execs the given program from inside it.

usage: debugctr.py ROOT [--no-proc] [--drop CAP]... -- PROGRAM [ARGS...]
"""
import ctypes
import os
import shutil
import subprocess
import sys

CAPS = {"sys_chroot": 18, "sys_ptrace": 19, "sys_admin": 21}
PR_CAPBSET_DROP = 24


def main(argv):
    root, rest = argv[0], argv[1:]
    mount_proc, drops = True, []
    while rest and rest[0] != "--":
        opt = rest.pop(0)
        if opt == "--no-proc":
            mount_proc = False
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
    os.chroot(root)
    os.chdir("/")
    os.execv(prog[0], prog)


if __name__ == "__main__":
    main(sys.argv[1:])
