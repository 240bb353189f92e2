"""Fixtures for the runtime tests: tiny images made from the host's static busybox (+ nft with its
libraries), and a Runtime per test with a unique state dir whose teardown is checked to leave
nothing behind (netns, veth, cgroup, mount, process, files)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # test/e2e, for e2e_common

import runtime  # noqa: E402

BUSYBOX = shutil.which('busybox') or '/bin/busybox'


def _copy_with_libs(binary, root):
    dst = root + binary
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(binary, dst)
    out = subprocess.run(['ldd', binary], capture_output=True, text=True).stdout
    for lib in re.findall(r'(/\S+) \(0x', out):
        target = root + lib
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            shutil.copy(os.path.realpath(lib), target)


def _elf_interpreter(path):
    """True if the (64-bit little-endian) ELF file has a PT_INTERP header, i.e. is dynamic."""
    import struct
    with open(path, 'rb') as f:
        data = f.read(1 << 16)
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    return any(struct.unpack_from('<I', data, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def _busybox_root(root):
    for d in ('bin', 'etc', 'tmp', 'root'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy(BUSYBOX, root + '/bin/busybox')
    applets = subprocess.run([BUSYBOX, '--list'], capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != 'busybox' and not os.path.lexists(root + '/bin/' + a):
            os.symlink('busybox', root + '/bin/' + a)
    with open(root + '/etc/passwd', 'w') as f:
        f.write('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n')
    with open(root + '/etc/group', 'w') as f:
        f.write('root:x:0:\nnogroup:x:65534:\n')


@pytest.fixture(scope='session')
def images(tmp_path_factory):
    base = str(tmp_path_factory.mktemp('images'))
    if _elf_interpreter(BUSYBOX):
        pytest.fail('%s is not static: install busybox-static' % BUSYBOX)
    _busybox_root(base + '/busybox')
    _busybox_root(base + '/tools')
    _copy_with_libs(shutil.which('nft') or '/usr/sbin/nft', base + '/tools')
    env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'IMAGE_VAR=from-image']
    store = {'images': {
        'busybox': {'rootfs': base + '/busybox', 'entrypoint': [], 'cmd': ['sh'], 'env': env,
                    'workingDir': '/'},
        'tools': {'rootfs': base + '/tools', 'entrypoint': ['/bin/sh', '-c'],
                  'cmd': ['sleep 1000'], 'env': env, 'workingDir': '/root'},
        # The same name the debug image has, to check reference normalization end to end.
        'ghcr.io/kdiag-c/kdiag-manager:0.1.0': {'rootfs': base + '/busybox',
                                                'entrypoint': ['sleep'], 'cmd': ['1000'],
                                                'env': env, 'workingDir': '/'},
    }}
    path = base + '/images.json'
    with open(path, 'w') as f:
        json.dump(store, f)
    return path


def _mounts_mentioning(s):
    hits = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/mountinfo' % pid) as f:
                hits += [line for line in f if s in line]
        except OSError:
            pass
    return hits


def _processes_mentioning(s):
    hits = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if s.encode() in f.read():
                    hits.append(int(pid))
        except OSError:
            pass
    return hits


def _host_links():
    out = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout
    return {line.split(':')[1].strip().split('@')[0] for line in out.splitlines()}


class Events:
    def __init__(self):
        self.items = []

    def __call__(self, ns, name):
        self.items.append((ns, name))


def check_nothing_left(state_dir, info):
    """Asserts that a torn-down runtime left nothing: netns, cgroup, processes, mounts, files."""
    netns = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    assert info['netns'] not in netns
    if info['cgroup']:
        assert not os.path.exists(info['cgroup'])
    deadline = time.monotonic() + 5
    while _processes_mentioning(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_mentioning(state_dir) == []
    assert _mounts_mentioning(state_dir) == []
    assert not os.path.exists(os.path.join(state_dir, 'runtime'))
    assert _host_links() <= info['links']


@pytest.fixture
def rt(images):
    state = tempfile.mkdtemp(prefix='kubesim-rt-test-%d-' % os.getpid())
    events = Events()
    links = _host_links()
    r = runtime.Runtime(state, images, events)
    r.backoff_base = 0.5
    r.events = events
    info = None
    try:
        r.setup()
        info = {'netns': r.node_netns, 'cgroup': r.cgroup_root, 'links': links}
        yield r
    finally:
        r.teardown()
    if info:
        check_nothing_left(state, info)
    shutil.rmtree(state, ignore_errors=True)
