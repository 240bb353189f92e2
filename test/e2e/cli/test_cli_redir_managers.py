"""kubectl diag redir on pods that carry several debug containers (several kdiag-managers): each
manager redirects in a table of its own (inet kdiag-<tunnel port>), and the CLI sends every
redirect of a pod to the oldest running manager with NET_ADMIN."""
import os
import re
import subprocess

from conftest import wait_for


def fresh_pod(cluster, prefix):
    name = '%s-%d' % (prefix, os.getpid())
    cluster.ok('run', name, '--image=distroless', '--restart=Never')
    cluster.wait_running(name)
    return name


def debug_containers(cluster, name):
    return [c['name'] for c in cluster.pod(name)['spec'].get('ephemeralContainers', [])]


def tunnel_port(cluster, pod, container):
    m = re.search(r'^Tunnel on 127\.0\.0\.1:(\d+)$', cluster.ok('logs', pod, '-c', container), re.M)
    assert m, 'no tunnel line in the log of %s' % container
    return int(m.group(1))


def fetch_from_curl_pod(cluster, ip, port):
    """What a request from another pod (the curl pod) to ip:port gets back."""
    # busybox wget's -T crashes in Debian 12's busybox: the timeout applet bounds it
    r = cluster.kubectl('exec', 'curl', '--', 'sh', '-c', 'timeout 10 wget -q -O - http://%s:%d/' % (ip, port))
    return r.stdout + r.stderr


def redirect_and_fetch(cluster, bg, name, srv, *flags):
    """Starts redir of pod port 8080 to srv; returns the running redir once a request from another
    pod reached srv."""
    r = bg(cluster, 'redir', 'pod/' + name, '8080:%d' % srv.port, *flags)
    r.wait_out('redirecting pod/%s:8080' % name)
    ip = cluster.pod(name)['status']['podIP']
    wait_for(lambda: srv.marker in fetch_from_curl_pod(cluster, ip, 8080), 30, what='the local answer')
    return r


def test_redir_ps_redir_keeps_working_and_uses_the_oldest_manager(cluster, bg, local_http):
    name = fresh_pod(cluster, 'rpr')
    try:
        srv = local_http()
        # two managers, as older runs left them: the first without Ps's capabilities
        assert redirect_and_fetch(cluster, bg, name, srv, '--profile', 'netadmin').interrupt() == 0
        ps = cluster.diag('ps', 'pod/' + name, '--new-container')
        assert ps.returncode == 0, ps.stderr
        first, second = debug_containers(cluster, name)
        r = redirect_and_fetch(cluster, bg, name, srv)
        # the rule is in the oldest manager's own table, the newer manager has none
        ruleset = cluster.pod_ruleset(name)
        tables = re.findall(r'^table inet (\S+)', ruleset, re.M)
        first_port = tunnel_port(cluster, name, first)
        assert tables == ['kdiag-%d' % first_port], ruleset
        assert re.search(r'tcp dport 8080 redirect to :\d+', ruleset), ruleset
        # a second redirect of the same port goes to the same manager, which refuses it
        again = cluster.diag('redir', 'pod/' + name, '8080:%d' % srv.port, timeout=60)
        assert again.returncode == 1 and 'already redirected' in again.stderr, again.stderr
        assert 'NET_ADMIN' not in again.stderr, again.stderr
        assert r.interrupt() == 0, r.err()
        assert second not in cluster.pod_ruleset(name)
        # without ports: the oldest manager lacks Ps's capabilities, so the ports are listed through
        # the second; the redirect still goes to the oldest
        r = bg(cluster, 'redir', 'pod/' + name)
        r.wait_out('redirecting pod/%s:8080 → localhost:8080' % name)
        assert debug_containers(cluster, name) == [first, second]
        assert re.findall(r'^table inet (\S+)', cluster.pod_ruleset(name), re.M) == ['kdiag-%d' % first_port]
        assert r.interrupt() == 0, r.err()
    finally:
        cluster.kubectl('delete', 'pod', name, '--wait=false')


def test_pod_whose_older_manager_owns_the_shared_table(cluster, bg, local_http):
    """Managers before per-manager tables used `inet kdiag` with the owner flag; one in the pod
    (played by nft -i holding that table with its chain) must not keep a new manager out."""
    name = fresh_pod(cluster, 'oldowner')
    netns = '--net=/proc/%d/ns/net' % cluster.pod_pid(name)
    holder = subprocess.Popen(['nsenter', netns, 'nft', '-i'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        holder.stdin.write('add table inet kdiag { flags owner; }\n'
                           'add chain inet kdiag prerouting { type nat hook prerouting priority -101; }\n')
        holder.stdin.flush()
        wait_for(lambda: 'table inet kdiag {' in cluster.pod_ruleset(name), 10, what='the old-style table')
        srv = local_http()
        assert redirect_and_fetch(cluster, bg, name, srv).interrupt() == 0
        assert cluster.diag('ps', 'pod/' + name).returncode == 0
        r = redirect_and_fetch(cluster, bg, name, srv)
        ruleset = cluster.pod_ruleset(name)
        assert 'table inet kdiag {' in ruleset and 'flags owner' in ruleset, ruleset  # left alone
        assert r.interrupt() == 0, r.err()
    finally:
        holder.kill()
        holder.wait(10)
        cluster.kubectl('delete', 'pod', name, '--wait=false')
