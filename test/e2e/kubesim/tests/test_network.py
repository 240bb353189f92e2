"""Pod networking: the curl stand-in reaches the nginx stand-in by name over pod IPs inside the
node network namespace; the host has no route to pod IPs; /etc/hosts lists the pods."""
import subprocess

from conftest import wait_for


def test_curl_reaches_nginx_over_pod_ips(cluster):
    nginx_ip = cluster.pod('nginx')['status']['podIP']
    curl_ip = cluster.pod('curl')['status']['podIP']
    assert nginx_ip != curl_ip
    out = wait_for(lambda: (lambda o: o if '200 OK' in o else None)(cluster.ok('logs', 'curl', '--tail=5')),
                   30, what='a successful request in the curl logs')
    assert 'Welcome to nginx' in out
    # the nginx stand-in logs the peer of each request: the curl pod's IP
    wait_for(lambda: curl_ip in cluster.ok('logs', 'nginx', '--tail=20'), 30, what='curl IP in nginx logs')
    hosts = cluster.ok('exec', 'curl', '--', '/bin/busybox', 'cat', '/etc/hosts')
    assert any(l.split()[:2] == [nginx_ip, 'nginx'] for l in hosts.splitlines() if l.strip()), hosts
    assert cluster.ok('exec', 'curl', '--', '/bin/busybox', 'hostname').strip() == 'curl'


def test_host_has_no_route_to_pods(cluster):
    ip = cluster.pod('nginx')['status']['podIP']
    addrs = subprocess.run(['ip', '-o', '-4', 'addr'], capture_output=True, text=True).stdout
    routes = subprocess.run(['ip', '-4', 'route'], capture_output=True, text=True).stdout
    assert '10.244.0.' not in addrs and '10.244.0.' not in routes, addrs + routes
    # so the host cannot connect to a pod: only the API (port-forward, exec) reaches it
    r = subprocess.run(['ip', 'route', 'get', ip], capture_output=True, text=True)
    assert 'kubesim' not in r.stdout
