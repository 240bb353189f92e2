"""Container log files: STATE/runtime/pods/<uid>/logs/<container>/<run>.log, one per run (start) of
a container, written by its shim (rt/stage.py) as '<RFC3339Nano> <stream> <line>' records, and
rotated as the kubelet does: once a file reaches the maximum size it becomes
<run>.log.<YYYYmmdd-HHMMSS> (UTC) and a new one is started; MAX_FILES files are kept in all."""
import os
import re

MAX_SIZE_ENV = 'KUBESIM_CONTAINER_LOG_MAX_SIZE'
DEFAULT_MAX_SIZE = 10 * 1024 * 1024  # the kubelet's containerLogMaxSize default, 10Mi
MAX_FILES = 5                        # the kubelet's containerLogMaxFiles default
_UNITS = {'': 1, 'k': 1000, 'M': 1000 ** 2, 'G': 1000 ** 3, 'Ki': 1024, 'Mi': 1024 ** 2, 'Gi': 1024 ** 3}


def parse_size(text):
    """Bytes of a quantity as the kubelet's containerLogMaxSize takes it (e.g. 10Mi, 500k,
    4096); 0 turns rotation off. ValueError otherwise."""
    m = re.fullmatch(r'(\d+)(|k|M|G|Ki|Mi|Gi)', str(text).strip())
    if not m:
        raise ValueError('invalid container log max size %r (examples: 10Mi, 512Ki, 4096)' % text)
    return int(m.group(1)) * _UNITS[m.group(2)]


def max_size_from_env():
    return parse_size(os.environ[MAX_SIZE_ENV]) if os.environ.get(MAX_SIZE_ENV) else DEFAULT_MAX_SIZE


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
