"""What kubectl diag redir leaves alone by default: the node's connections to an incoming port (the
kubelet's probes come from the pod's hostIP) and, with --outgoing, the pod's connections to itself
(a sidecar talking to the app on localhost). --include-probes and --include-loopback catch them."""
import re

from conftest import wait_for

NODE_GET = 'import urllib.request; print(urllib.request.urlopen("http://%s:%d/", timeout=10).read().decode())'


def from_node(cluster, ip, port):
    r = cluster.in_node(['python3', '-c', NODE_GET % (ip, port)])
    return r.stdout + r.stderr


def from_pod(cluster, pod, url):
    # busybox wget's -T crashes in Debian 12's busybox: the timeout applet bounds it
    r = cluster.kubectl('exec', pod, '--', 'sh', '-c', 'timeout 10 wget -q -O - %s' % url)
    return r.stdout + r.stderr


def test_incoming_leaves_the_nodes_connections_alone_unless_include_probes(cluster, bg, local_http):
    srv = local_http()
    pod = cluster.pod('distroless')
    ip, host_ip = pod['status']['podIP'], pod['status']['hostIP']
    r = bg(cluster, 'redir', 'pod/distroless', '8080:%d' % srv.port)
    r.wait_out('redirecting pod/distroless:8080')
    # the kernel's view: the node's address returns before the redirect rule
    assert re.search(r'tcp dport 8080 ip saddr %s return' % re.escape(host_ip), cluster.pod_ruleset('distroless'))
    wait_for(lambda: srv.marker in from_pod(cluster, 'curl', 'http://%s:8080/' % ip), 30, what='another pod redirected')
    assert 'hello from distroless' in from_node(cluster, ip, 8080)  # the node (probes) still reaches the app
    assert r.interrupt() == 0, r.err()

    r = bg(cluster, 'redir', '--include-probes', 'pod/distroless', '8080:%d' % srv.port)
    r.wait_out('redirecting pod/distroless:8080')
    assert 'saddr' not in cluster.pod_ruleset('distroless')
    assert srv.marker in from_node(cluster, ip, 8080)
    assert r.interrupt() == 0, r.err()


def test_outgoing_leaves_the_pods_own_connections_alone_unless_include_loopback(cluster, bg, local_http):
    srv = local_http()
    curl_ip = cluster.pod('curl')['status']['podIP']
    r = bg(cluster, 'redir', '--outgoing', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    assert 'oiftype loopback tcp dport 80 return' in cluster.pod_ruleset('nginx')
    assert 'Welcome to nginx' in from_pod(cluster, 'nginx', 'http://127.0.0.1/')  # the app answers itself
    assert srv.marker in from_pod(cluster, 'nginx', 'http://%s/' % curl_ip)  # elsewhere: redirected
    assert r.interrupt() == 0, r.err()

    r = bg(cluster, 'redir', '--outgoing', '--include-loopback', 'pod/nginx', '80:%d' % srv.port)
    r.wait_out('redirecting pod/nginx:80')
    assert 'loopback' not in cluster.pod_ruleset('nginx')
    assert srv.marker in from_pod(cluster, 'nginx', 'http://127.0.0.1/')
    assert r.interrupt() == 0, r.err()
