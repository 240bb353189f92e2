"""Small OS helpers shared by the runtime's modules."""
import subprocess
import sys
import time


def log(msg):
    sys.stderr.write('kubesim runtime: %s\n' % msg)
    sys.stderr.flush()


def now_rfc3339():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def run(argv, input=None):
    """Runs a command to completion; RuntimeError with its message when it fails."""
    r = subprocess.run(argv, input=input, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError('%s failed (exit %d): %s' % (' '.join(argv), r.returncode,
                                                      (r.stderr or r.stdout).strip()))
    return r.stdout


def proc_starttime(pid, live_only=False):
    """Start time of a process (to recognise it despite pid reuse); None if it is gone (or, with
    live_only, a zombie)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        if live_only and fields[0] in ('Z', 'X'):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def wait_gone(pid, start, timeout):
    """Waits until the process pid started at `start` has exited (or timeout seconds)."""
    deadline = time.monotonic() + timeout
    while (start is not None and proc_starttime(pid, True) == start
           and time.monotonic() < deadline):
        time.sleep(0.02)
