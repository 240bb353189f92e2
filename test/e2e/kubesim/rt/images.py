"""The image store (images.json: name → rootfs, entrypoint, cmd, env, workingDir) and the names
and ids a runtime reports for an image."""
import hashlib
import json
import os

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
