"""Container log files: STATE/runtime/pods/<uid>/logs/<container>/<run>.log, one per run (start) of
a container, written by its shim (rt/stage.py) as '<RFC3339Nano> <stream> <line>' records."""
import os


def path(pod_dir, container, run):
    return os.path.join(pod_dir, 'logs', container, '%d.log' % run)


def create(pod_dir, container, run):
    """Creates the (empty) log file of a run; returns its path."""
    p = path(pod_dir, container, run)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, 'ab').close()
    return p


def existing(pod_dir, container, run):
    """The log file of a run if it exists, else None."""
    if run < 0 or pod_dir is None:
        return None
    p = path(pod_dir, container, run)
    return p if os.path.exists(p) else None
