"""Helpers shared by the namespace-based Python tests (test/images, test/scratch-shell): they
start processes in new namespaces and wait, briefly, for them to appear and behave."""
import time


def wait_for(pred, what, timeout=5.0, interval=0.05):
    """pred()'s first true value, polled every interval seconds; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid):
    """Direct children of pid's main thread (none once pid is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []
