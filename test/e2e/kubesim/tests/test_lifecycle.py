"""`kubesim down` removes everything `up` created: processes, network namespaces, veths, the
bridge, cgroups and mounts — also with exec and port-forward sessions still open."""
import json
import os
import subprocess
import time

from conftest import DEMO, KUBESIM, start_cluster, wait_for


def processes_matching(pred):
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            if pred(int(pid)):
                out.append(int(pid))
        except OSError:
            pass
    return out


def in_cgroup(cg_name):
    def pred(pid):
        with open('/proc/%d/cgroup' % pid) as f:
            return cg_name in f.read()
    return pred


def mentions(text):
    def pred(pid):
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return text.encode() in f.read()
    return pred


def test_down_leaves_nothing(request):
    links_before = set(subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout.split('\n'))
    # this cluster offers only plain discovery: kubectl's fallback path gets exercised too
    cl = start_cluster(request, [DEMO], extra_args=['--discovery', 'plain', '-v'])
    for kv in ('1.27', '1.32', '1.33'):
        assert 'nginx' in cl.ok('get', 'pods', version=kv)
    with open(os.path.join(cl.state, 'kubesim.log')) as f:
        assert '"GET /api/v1?timeout=32s HTTP/1.1" 200' in f.read()
    with open(os.path.join(cl.state, 'runtime', 'state.json')) as f:
        st = json.load(f)
    cg_name = 'kubesim-' + st['id']
    assert os.path.exists('/run/netns/' + st['netns'])
    ctr_pids = processes_matching(in_cgroup(cg_name)) if st.get('cgroup') else []
    assert len(ctr_pids) >= 3 or not st.get('cgroup'), ctr_pids
    # open sessions that `down` has to end
    ex = cl.popen('exec', '-i', 'nginx', '--', '/bin/busybox', 'sleep', '600',
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pf = cl.popen('port-forward', 'pod/nginx', ':80', stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cl.ok('debug', 'distroless', '--image=nginx', '-c', 'dbg', '--target=distroless', '--',
          '/bin/busybox', 'sleep', '600')
    time.sleep(2)
    r = subprocess.run([KUBESIM, 'down', '--state', cl.state], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        for p in (ex, pf):
            p.wait(timeout=20)  # their connections are gone, they must not hang
    finally:
        for p in (ex, pf):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert not os.path.exists('/run/netns/' + st['netns'])
    if st.get('cgroup'):
        assert not os.path.exists(st['cgroup'])
        # killed processes may linger a moment as zombies until their reaper collects them
        wait_for(lambda: processes_matching(in_cgroup(cg_name)) == [], 10,
                 what='no process left in cgroup %s' % cg_name)
    wait_for(lambda: [p for p in ctr_pids if os.path.exists('/proc/%d' % p)] == [], 10,
             what='container processes %s gone' % ctr_pids)
    assert processes_matching(mentions(cl.state)) == []
    with open('/proc/self/mountinfo') as f:
        left = [l for l in f if cl.state in l or cg_name in l]
    assert left == []
    links_after = set(subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout.split('\n'))
    new = [l for l in links_after - links_before if st['id'] in l or 'kubesim' in l]
    assert new == []
    assert not os.path.exists(os.path.join(cl.state, 'runtime'))
    r = subprocess.run([KUBESIM, 'status', '--state', cl.state], capture_output=True, text=True)
    assert r.returncode == 3 and 'not running' in r.stdout
