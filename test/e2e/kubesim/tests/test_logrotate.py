"""Container log rotation as the kubelet does it at containerLogMaxSize (kubesim up
--container-log-max-size; 64Ki here): kubectl logs shows only the current file, so the first lines
are gone after a rotation, and logs -f carries on in the new file."""
import re
import subprocess

import pytest

from conftest import start_cluster, wait_for
from e2e_common import FdExpect

MAX_SIZE = '64Ki'
LINES = 3000  # ~80 bytes each as records: about three rotations at 64Ki

POD = '''apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  containers:
  - name: chatty
    image: nginx
    command: ["/bin/busybox", "sh", "-c"]
    args:
    - 'while [ ! -e /tmp/go ]; do /bin/busybox sleep 0.1; done;
       i=0; while [ $i -lt %d ]; do echo "line $i ................................"; i=$((i+1)); done;
       exec /bin/busybox sleep 100000'
''' % LINES


@pytest.fixture(scope='session')
def cluster(request, tmp_path_factory):
    manifest = tmp_path_factory.mktemp('logrotate') / 'chatty.yaml'
    manifest.write_text(POD)
    return start_cluster(request, [str(manifest)], extra_args=['--container-log-max-size', MAX_SIZE])


def numbers(text):
    return [int(n) for n in re.findall(r'^line (\d+) ', text, re.M)]


def test_logs_after_rotation_show_only_the_current_file(cluster):
    follow = cluster.popen('logs', '-f', 'chatty', stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        cluster.ok('exec', 'chatty', '--', '/bin/busybox', 'touch', '/tmp/go')
        wait_for(lambda: 'line %d ' % (LINES - 1) in cluster.ok('logs', 'chatty', '--tail=1'), 60,
                 what='the last line')
        for kv in ('1.27', '1.32', '1.33'):
            got = numbers(cluster.ok('logs', 'chatty', version=kv))
            # the current file: a tail of the lines, in order, without the first ones
            assert got and got[-1] == LINES - 1 and 0 not in got
            assert got == list(range(got[0], LINES))
        # what the current file holds (records without the stream tag) is under the maximum
        assert len(cluster.ok('logs', 'chatty', '--timestamps').encode()) < 64 * 1024
        # -f, started before the first line, follows the file through its rotations to the end
        out = FdExpect(follow.stdout.fileno())
        out.expect(b'line %d ' % (LINES - 1), 60)
        got = numbers(out.buf.decode())
        assert got[0] == 0 and got == sorted(set(got))
    finally:
        follow.kill()
        follow.wait()
