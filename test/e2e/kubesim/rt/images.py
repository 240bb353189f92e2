"""The image store (images.json: name → rootfs, entrypoint, cmd, env, workingDir) and the names
and ids a runtime reports for an image."""
import hashlib
import json
import os
import subprocess

from rt import host


def normalize_image(ref):
    """Drop docker.io/, docker.io/library/ (and library/) prefixes and a :latest tag."""
    for prefix in ('docker.io/library/', 'docker.io/', 'library/'):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if ref.endswith(':latest') and '/' not in ref[ref.rfind(':'):]:
        ref = ref[:-len(':latest')]
    return ref


def canonical_image(ref):
    """The name a runtime reports back (status.image): docker.io/library/nginx:latest."""
    name = normalize_image(ref)
    first = name.split('/', 1)[0]
    if '/' not in name or ('.' not in first and ':' not in first and first != 'localhost'):
        name = 'docker.io/' + ('library/' + name if '/' not in name else name)
    last = name.rsplit('/', 1)[-1]
    if ':' not in last and '@' not in last:
        name += ':latest'
    return name


def image_id(reported, img):
    """status.imageID: the reported name without its tag @sha256:<digest of the store entry>."""
    iid = reported.rsplit(':', 1)[0] if ':' in reported.rsplit('/', 1)[-1] else reported
    return iid + '@sha256:' + hashlib.sha256(json.dumps(img, sort_keys=True).encode()).hexdigest()


def pull_error(ref, store_path):
    """containerd's message for an image the store does not have."""
    canon = canonical_image(ref)
    return ('failed to pull and unpack image "%s": failed to resolve reference "%s": '
            '%s: not found in the kubesim image store %s (build it: cmake --build '
            '<build> --target images)' % (canon, canon, canon, store_path))


class Store:
    """images.json, re-read when it changes (an image added later is picked up)."""

    def __init__(self, path):
        self.path = path
        self._images = {}
        self._stamp = None

    def get(self, ref):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
        if stamp != self._stamp:
            try:
                with open(self.path) as f:
                    self._images = json.load(f).get('images', {})
                self._stamp = stamp
            except (OSError, ValueError) as e:
                host.log('cannot read image store %s: %s' % (self.path, e))
                return None
        return self._images.get(normalize_image(ref))


PODMAN_PREFIX = 'podman:'


class PodmanStore:
    """--images podman:JSON: an image podman's store has (scripts/image.sh builds the debug
    image there) runs from `podman image mount` with the entrypoint, cmd, env and working dir
    of `podman image inspect`; any other name comes from the JSON store."""

    def __init__(self, fallback_json):
        self.fallback = Store(fallback_json)
        self.path = 'podman + ' + fallback_json
        self._mounted = {}   # image id -> rootfs

    def get(self, ref):
        r = subprocess.run(['podman', 'image', 'inspect', canonical_image(ref)], capture_output=True, text=True)
        if r.returncode != 0:
            return self.fallback.get(ref)
        info = json.loads(r.stdout)[0]
        iid, cfg = info['Id'], info.get('Config') or {}
        if iid not in self._mounted:
            m = subprocess.run(['podman', 'image', 'mount', iid], capture_output=True, text=True)
            if m.returncode != 0:
                host.log('podman image mount %s: %s' % (iid, m.stderr.strip()))
                return None
            self._mounted[iid] = m.stdout.strip()
        return {'rootfs': self._mounted[iid], 'entrypoint': cfg.get('Entrypoint') or [],
                'cmd': cfg.get('Cmd') or [], 'env': cfg.get('Env') or [],
                'workingDir': cfg.get('WorkingDir') or '/', 'podmanId': iid}


def open_store(spec):
    """images.json, or podman's store in front of one (PODMAN_PREFIX + JSON)."""
    if spec.startswith(PODMAN_PREFIX):
        return PodmanStore(spec[len(PODMAN_PREFIX):])
    return Store(spec)
