"""kubectl-diag capture through the real kubectl on the simulated cluster: a scripted UDP
exchange from the node to the curl and distroless pods, read back with tcpdump -r; --all-pods
with pods that start and are deleted during the capture."""
import contextlib
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from conftest import CLI, error_lines, pcapng_blocks, start_capture, wait_for
from e2e_common import children, cmdline, forwards_to

PORT = 9999
SIZES = [1, 100, 500, 1000, 1400]


def tcpdump_read(path_or_bytes):
    """tcpdump -r of a file (or of bytes on its stdin): (exit code, packet lines)."""
    if isinstance(path_or_bytes, bytes):
        r = subprocess.run(['tcpdump', '-n', '-r', '-'], input=path_or_bytes, capture_output=True, timeout=30)
    else:
        r = subprocess.run(['tcpdump', '-n', '-r', path_or_bytes], capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode().splitlines(), r.stderr.decode()


def pcap_lengths(data):
    """(linktype, [(caplen, len)]) of a pcap file, read by hand beside tcpdump."""
    import struct
    magic, _, _, _, _, snap, lt = struct.unpack('<IHHiIII', data[:24])
    assert magic == 0xa1b23c4d, hex(magic)
    recs, off = [], 24
    while off < len(data):
        _, _, caplen, length = struct.unpack('<IIII', data[off:off + 16])
        recs.append((caplen, length))
        off += 16 + caplen
    assert off == len(data), 'a torn record at the end'
    return lt, recs


def test_capture_curl_any_exact_packets_and_bytes(cluster, bg, tmp_path):
    out = str(tmp_path / 'curl.pcap')
    p = start_capture(cluster, bg, 'pod/curl', '-f', 'udp port %d' % PORT, '-c', str(len(SIZES)), '-w', out)
    cluster.send_udp('curl', SIZES, PORT)
    assert p.proc.wait(30) == 0, p.err()
    with open(out, 'rb') as f:
        lt, recs = pcap_lengths(f.read())
    assert lt == 276  # LINUX_SLL2: all interfaces
    assert recs == [(20 + 28 + n, 20 + 28 + n) for n in SIZES], recs
    rc, lines, err = tcpdump_read(out)
    assert rc == 0 and len(lines) == len(SIZES), err
    assert all('UDP' in l and '.%d:' % PORT in l for l in lines), lines
    assert '%d packets captured' % len(SIZES) in p.err() and '0 dropped by the kernel' in p.err(), p.err()
    assert 'eth0 %d' % len(SIZES) in p.err(), p.err()


def test_capture_filter_names_a_port_by_its_service_name(cluster, bg, tmp_path):
    """-f 'tcp port http', as tcpdump takes it: the debug image has /etc/services (it had none:
    "unknown port 'http'", exit 2). The curl pod requests http://nginx/ every second."""
    out = str(tmp_path / 'http.pcap')
    p = start_capture(cluster, bg, 'pod/curl', '-i', 'eth0', '-f', 'tcp dst port http', '-c', '2', '-w', out)
    assert p.proc.wait(30) == 0, p.err()
    rc, lines, err = tcpdump_read(out)
    assert rc == 0 and len(lines) == 2 and all('.80:' in l for l in lines), (lines, err)


def test_capture_distroless_one_interface_to_stdout(cluster):
    r = subprocess.Popen([CLI, 'capture', 'pod/distroless', '-i', 'eth0', '-f', 'udp port %d' % PORT,
                          '-c', '3', '-s', '64', '-w', '-'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env())
    try:
        # send until the capture is ready (its ready line is on stderr, read after the end)
        def done():
            cluster.send_udp('distroless', [1000], PORT)
            return r.poll() is not None
        wait_for(done, 90, interval=0.5, what='3 packets captured')
        out, err = r.communicate(timeout=30)
    finally:
        if r.poll() is None:
            r.kill()
    assert r.returncode == 0, err.decode()
    lt, recs = pcap_lengths(out)
    assert lt == 1 and recs == [(64, 14 + 28 + 1000)] * 3, (lt, recs)  # Ethernet, cut at 64 bytes
    rc, lines, terr = tcpdump_read(out)
    assert rc == 0 and len(lines) == 3, terr
    assert b'capturing on eth0' in err and b'3 packets captured' in err, err


def test_capture_ctrl_c_leaves_a_valid_file(cluster, bg, tmp_path):
    out = str(tmp_path / 'int.pcap')
    p = start_capture(cluster, bg, '-l', 'app=distroless', '-f', 'udp', '-w', out)
    for _ in range(5):
        cluster.send_udp('distroless', [1200] * 200, PORT)
    wait_for(lambda: os.path.getsize(out) > 24, 30, what='packets in the file')
    assert p.interrupt() == 0, p.err()
    rc, lines, err = tcpdump_read(out)
    assert rc == 0 and lines, err
    assert '%d packets captured' % len(lines) in p.err(), p.err()


def test_capture_bad_filter_one_line_exit_2(cluster, tmp_path):
    out = str(tmp_path / 'bad.pcap')
    r = cluster.diag('capture', 'pod/curl', '-f', 'tcp porx 80', '-w', out)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
    assert len(lines) == 1 and "filter 'tcp porx 80'" in lines[0] and 'syntax error' in lines[0], r.stderr
    assert not os.path.exists(out)


def test_capture_blank_filter_leaves_out_the_captures_own_stream(cluster, tmp_path):
    """A filter of only blanks is every packet, as an empty one: the manager's own stream on lo
    stays out. It compiled alone but not inside "( ) and not (own ports)", so the exclusion was
    dropped and the capture recorded the stream that carried it (11 MB in 3 s on lo)."""
    out = str(tmp_path / 'blank.pcap')
    r = cluster.diag('capture', 'pod/distroless', '-i', 'lo', '-f', ' \t', '-d', '2s', '-w', out)
    assert r.returncode == 0, r.stderr
    rc, lines, err = tcpdump_read(out)
    assert rc == 0 and lines == [], (len(lines), lines[:3])
    assert '0 packets captured' in r.stderr, r.stderr


def test_capture_keeps_a_peer_that_uses_the_managers_port_as_its_own(cluster, bg, tmp_path):
    """The manager's own stream is left out on loopback only: a peer whose source port happens to
    be the manager's gRPC or tunnel port (both ephemeral, as client ports are) is the user's
    traffic. 'not (tcp port G or tcp port T)' left such connections out of every capture."""
    out = str(tmp_path / 'peer.pcap')
    p = start_capture(cluster, bg, 'pod/curl', '-f', 'tcp port %d' % PORT, '-c', '6', '-w', out)
    dbg = cluster.pod('curl')['spec']['ephemeralContainers'][0]['name']
    log = cluster.ok('logs', 'curl', '-c', dbg)
    ports = [int(re.search(r'^%s on 127\.0\.0\.1:(\d+)$' % w, log, re.M).group(1)) for w in ('Listening', 'Tunnel')]
    ip = cluster.pod('curl')['status']['podIP']
    for sport in ports + [ports[0] + 1]:  # nothing listens on PORT: a SYN and its reset each
        code = ('import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n'
                's.bind(("0.0.0.0", %d))\ntry: s.connect((%r, %d))\nexcept ConnectionRefusedError: pass\n'
                % (sport, ip, PORT))
        r = cluster.in_node(['python3', '-c', code])
        assert r.returncode == 0, r.stderr
    assert p.proc.wait(20) == 0, p.err()  # 6 packets: it waited for the 2 left out
    rc, lines, err = tcpdump_read(out)
    assert rc == 0, err
    for sport in ports:
        assert sum('.%d > ' % sport in l for l in lines) == 1, (sport, lines)


def test_capture_bad_filter_of_several_lines_is_said_on_one_line(cluster, tmp_path):
    """A filter read from a file ($(cat f), as tcpdump -F takes) has line ends, which libpcap takes
    as blanks: its refusal quoted them, and the one error line became several."""
    r = cluster.diag('capture', 'pod/curl', '-f', 'tcp\nporx 80\n', '-w', str(tmp_path / 'bad.pcap'))
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == ["error: Capture: filter 'tcp porx 80 ': can't parse filter expression: "
                                     "syntax error"], r.stderr


def long_filter(last):
    """'port 1 or port 2 or ...' up to 4096 bytes (the most the manager takes), then last."""
    ports = []
    while len(' or '.join(ports + ['port %d' % (len(ports) + 1), last])) <= 4096:
        ports.append('port %d' % (len(ports) + 1))
    return ' or '.join(ports + [last])


@pytest.mark.parametrize('last,why', [('port 9999', 'compiles to'), ('porx 1', "unknown port 'porx'")])
def test_capture_long_filter_refused_says_why(cluster, tmp_path, last, why):
    """A filter near the 4096-byte limit was quoted whole in the 512-byte message, so the reason
    after it (the kernel's 4096-instruction limit, libpcap's own error) was cut off."""
    r = cluster.diag('capture', 'pod/curl', '-f', long_filter(last), '-w', str(tmp_path / 'x.pcap'))
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
    assert len(lines) == 1 and why in lines[0] and len(lines[0]) < 400, r.stderr
    assert "filter 'port 1 or port 2 or " in lines[0] and ' bytes)' in lines[0], r.stderr
    if why == 'compiles to':
        assert 'the kernel takes 4096: make it shorter' in lines[0], r.stderr


def test_capture_refused_leaves_the_output_path_as_it_was(cluster, tmp_path):
    """A filter or interface the manager refuses: an existing file keeps its content (it was
    truncated, then removed), a device node stays (it was unlinked), no temporary is left."""
    keep = tmp_path / 'keep.pcap'
    keep.write_bytes(b'precious')
    node = tmp_path / 'null'
    os.mknod(str(node), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for out, bad in ((keep, ['-f', 'tcp porx 80']), (keep, ['-i', 'nosuch0']), (node, ['-f', 'tcp porx 80'])):
        r = cluster.diag('capture', 'pod/curl', *bad, '-w', str(out))
        assert r.returncode == 2, r.stderr
    assert keep.read_bytes() == b'precious'
    assert stat.S_ISCHR(os.lstat(str(node)).st_mode)
    assert sorted(os.listdir(tmp_path)) == ['keep.pcap', 'null']


@pytest.mark.parametrize('how,sig', [('one', signal.SIGTERM), ('all_pods', signal.SIGINT), ('one', signal.SIGQUIT)])
def test_capture_stop_while_the_debug_container_starts_ends_at_once(cluster, bg, label, tmp_path, how, sig):
    """A stop signal while the debug container starts (an image that never prints its start-up
    lines): one pod exited 143 and left its temporary file beside FILE; --all-pods waited for
    --timeout, then failed. Now: exit 0 at once, FILE as it was, nothing else left."""
    pod = label + '-a'
    cluster.run_pods(label, [pod])
    out = tmp_path / 'keep.pcap'
    out.write_bytes(b'precious')
    target = ['pod/' + pod] if how == 'one' else ['--all-pods', '-l', 'app=' + label]
    p = bg(cluster, 'capture', *target, '--dbg-image', 'curl', '--timeout', '60s', '-w', str(out))
    wait_for(lambda: cluster.pod(pod)['spec'].get('ephemeralContainers'), 30, what='the debug container')
    time.sleep(1)
    t = time.monotonic()
    p.proc.send_signal(sig)
    assert p.proc.wait(30) == 0, p.err()
    assert time.monotonic() - t < 3, p.err()
    assert 'error:' not in p.err(), p.err()
    assert os.listdir(tmp_path) == ['keep.pcap'] and out.read_bytes() == b'precious'


def test_capture_empty_output_name_is_a_usage_error(cluster, tmp_path):
    """-w '' captured into a hidden "..kdiag-<hex>" in the working directory, with a warning, exit 0."""
    r = subprocess.run([CLI, 'capture', 'pod/curl', '-c', '1', '-w', ''], cwd=str(tmp_path), capture_output=True,
                       text=True, env=cluster.env(), timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr == 'error: invalid -w "": give a file name, or - for stdout\n', r.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('arg,name', [('--count=0', '--count'), ('-c0', '-c'), ('-s=0', '-s'),
                                      ('--duration=1x', '--duration')])
def test_capture_bad_value_names_the_flag_without_the_value(cluster, arg, name):
    """--count=0 was 'invalid --count=0 "0"': the flag as written, value and all."""
    r = cluster.diag('capture', 'pod/curl', arg)
    value = arg[len(name):].lstrip('=')
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith('error: invalid %s "%s": use ' % (name, value)), r.stderr


def test_capture_write_error_names_the_file(cluster):
    """A FILE that cannot take the bytes (a full disk; here /dev/full) was 'the capture ended: No
    space left on device', as if the stream had broken."""
    r = cluster.diag('capture', 'pod/curl', '-c', '1', '-w', '/dev/full')
    assert r.returncode == 1, r.stderr
    assert [l for l in r.stderr.splitlines() if l.startswith('error:')] == [
        'error: cannot write /dev/full: No space left on device'], r.stderr
    assert stat.S_ISCHR(os.lstat('/dev/full').st_mode)


def test_capture_full_disk_leaves_whole_records(cluster, bg, tmp_path):
    """The disk fills mid-capture: the batch that did not fit was left in part, a torn last record
    that tcpdump -r calls a truncated dump file. Now the file is cut back to its last whole batch."""
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(small)], check=True)
    try:
        out = str(small / 'full.pcap')
        p = start_capture(cluster, bg, 'pod/curl', '-f', 'udp port %d' % PORT, '-w', out)
        cluster.send_udp('curl', [1000] * 20, PORT)  # 20 kB: whole batches that fit
        wait_for(lambda: os.path.getsize(out) > 20000, 30, what='the first packets in the file')
        for _ in range(5):
            cluster.send_udp('curl', [1200] * 100, PORT)
        assert p.proc.wait(30) == 1, p.err()
        assert 'error: cannot write %s: No space left on device; what was captured until then is in it' % out \
            in p.err(), p.err()
        with open(out, 'rb') as f:
            lt, recs = pcap_lengths(f.read())
        rc, lines, err = tcpdump_read(out)
        assert rc == 0 and len(lines) == len(recs) >= 20, err
        assert '%d packets captured' % len(recs) in p.err(), p.err()
    finally:
        subprocess.run(['umount', '-l', str(small)])


@pytest.mark.parametrize('how', ['one', 'all_pods'])
def test_capture_stop_with_a_reader_that_stopped_reading_ends(cluster, label, tmp_path, how):
    """stdout a pipe whose reader stopped reading (a pager left open, a stuck tcpdump): the write
    blocked for good, and Ctrl-C waited with it until the reader went. With --all-pods each pod's
    stream then waited its own second in turn, each saying so."""
    pods = [label + '-%d' % i for i in range(3 if how == 'all_pods' else 1)]
    cluster.run_pods(label, pods)
    target = ['pod/' + pods[0]] if how == 'one' else ['--all-pods', '-l', 'app=' + label]
    errf = str(tmp_path / 'err')
    with open(errf, 'wb') as err:
        p = subprocess.Popen([CLI, 'capture', *target, '-f', 'udp port %d' % PORT, '-w', '-'],
                             stdout=subprocess.PIPE, stderr=err, env=cluster.env())
    try:
        wait_for(lambda: open(errf).read().count('capturing on') == len(pods) or p.poll() is not None, 120,
                 what='capturing')
        for pod in pods:
            cluster.send_udp(pod, [1200] * 300, PORT)  # 360 kB each: more than the pipe holds
        time.sleep(1)
        assert p.poll() is None, open(errf).read()
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0, open(errf).read()
        assert time.monotonic() - t < 3, open(errf).read()
        assert open(errf).read().count('warning: stdout was not being read when the capture stopped') == 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def test_capture_shows_an_interface_name_with_an_escape_sequence_escaped(cluster, fresh_pod, tmp_path):
    """The pod names its interfaces, and a name may hold ESC (the kernel refuses only '/', ':' and
    blanks; NET_ADMIN in the pod makes one): the ready line printed it raw, an escape sequence
    reaching the user's terminal. It is shown escaped, as the manager's messages show -i."""
    net = '--net=/proc/%d/ns/net' % cluster.pod_pid(fresh_pod)
    odd = 'd\x1b[31m'
    for args in (['add', odd, 'type', 'veth', 'peer', 'name', 'kdp0'], ['set', odd, 'up'], ['set', 'kdp0', 'up']):
        r = subprocess.run(['nsenter', net, 'ip', 'link'] + args, capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
    out = str(tmp_path / 'odd.pcap')
    r = cluster.diag('capture', 'pod/' + fresh_pod, '-d', '1s', '-w', out)
    assert r.returncode == 0, r.stderr
    assert '\x1b' not in r.stderr and ', d\\e[31m)' in r.stderr, r.stderr


def test_capture_on_an_interface_that_is_or_goes_down_says_so(cluster, bg, fresh_pod, tmp_path):
    """An interface that is down is refused before anything is captured, and one that goes down
    ends the capture with its last packets, each in a line that says so. Both were 'Capture:
    Input/output error (gRPC status 13)', the first after a ready line and with the file placed,
    and the datagrams sent right before the link went down were lost (4 runs of 5)."""
    net = '--net=/proc/%d/ns/net' % cluster.pod_pid(fresh_pod)

    def link(*args):
        r = subprocess.run(['nsenter', net, 'ip', 'link'] + list(args), capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr

    link('add', 'kd0', 'type', 'veth', 'peer', 'name', 'kd1')
    try:
        out = str(tmp_path / 'down.pcap')
        r = cluster.diag('capture', 'pod/' + fresh_pod, '-i', 'kd0', '-w', out)
        assert r.returncode == 1, r.stderr
        assert error_lines(r.stderr) == ["error: Capture: interface 'kd0' is down: nothing on it can be captured; "
                                         "capture on any, or once it is up (gRPC status 9)"], r.stderr
        assert 'capturing on' not in r.stderr and not os.path.exists(out), r.stderr
        link('set', 'kd1', 'up')
        link('set', 'kd0', 'up')
        for cmd in (['addr', 'add', '10.99.0.1/24', 'dev', 'kd0'],
                    ['neigh', 'replace', '10.99.0.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'kd0']):
            r = subprocess.run(['nsenter', net, 'ip'] + cmd, capture_output=True, text=True, timeout=20)
            assert r.returncode == 0, r.stderr
        p = start_capture(cluster, bg, 'pod/' + fresh_pod, '-i', 'kd0', '-f', 'udp port %d' % PORT, '-w', out)
        # the link goes down (SIOCSIFFLAGS) right behind the datagrams, before the kernel hands
        # their block over (10 ms after its first packet)
        code = ('import fcntl, socket, struct\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n'
                'for _ in range(5): s.sendto(b"x" * 100, ("10.99.0.2", %d))\n'
                'fl = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"kd0", 0)))[1]\n'
                'fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"kd0", fl & ~1))\n' % PORT)
        r = subprocess.run(['nsenter', net, 'python3', '-c', code], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert p.proc.wait(30) == 1, p.err()
        assert [l for l in p.err().splitlines() if l.startswith('error:')] == [
            "error: Capture: interface 'kd0' went down or was removed: the capture on it ended (gRPC status 9); "
            "what was captured until then is in " + out], p.err()
        rc, lines, err = tcpdump_read(out)
        assert rc == 0 and len(lines) == 5, (err, lines)
        assert '5 packets captured' in p.err(), p.err()
    finally:
        subprocess.run(['nsenter', net, 'ip', 'link', 'del', 'kd0'], capture_output=True, timeout=20)


def test_capture_unknown_interface_names_the_pods_interfaces(cluster):
    """-i with a name the pod has not said only that; now it lists the pod's interfaces."""
    r = cluster.diag('capture', 'pod/curl', '-i', 'eth9', '-w', '-')
    assert r.returncode == 2, r.stderr
    assert [l for l in r.stderr.splitlines() if l.startswith('error:')] == [
        "error: Capture: no interface 'eth9' in the pod's network namespace, which has lo, eth0: "
        "name one of them (-i), or any for all"], r.stderr
    assert r.stdout == ''


def test_capture_control_characters_of_i_and_f_are_shown_escaped(cluster):
    """An -i or -f value with a line end or an escape sequence was echoed raw in the error line: a
    second line, and the terminal turned red. Now they are escaped as other untrusted names are."""
    r = cluster.diag('capture', 'pod/curl', '-i', 'eth0\n\x1b[31m', '-w', '-')
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        "error: Capture: no interface 'eth0\\n\\e[31m' in the pod's network namespace, which has lo, eth0: "
        "name one of them (-i), or any for all"], r.stderr
    r = cluster.diag('capture', 'pod/curl', '-f', 'udp port 1 \x1b[31m', '-w', '-')
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        "error: Capture: filter 'udp port 1 \\e[31m': can't parse filter expression: syntax error"], r.stderr


def test_capture_into_a_file_of_a_directory_that_takes_no_new_file(cluster, fresh_pod):
    """-w /proc/version: FILE is replaced through a new file beside it, which /proc does not take;
    the error was that file's 'cannot write /proc/version: No such file or directory', as if FILE
    were missing. Now it names the directory and the cause, before any debug container is added."""
    r = cluster.diag('capture', 'pod/' + fresh_pod, '-c', '1', '-w', '/proc/version')
    assert r.returncode == 1, r.stderr
    assert error_lines(r.stderr) == [
        'error: cannot write /proc/version: no new file can be made in /proc to replace it '
        '(No such file or directory)'], r.stderr
    assert not cluster.pod(fresh_pod)['spec'].get('ephemeralContainers'), 'a debug container was added'


def test_capture_at_most_4_at_once_per_pod_and_killed_ones_free_their_place(cluster, bg, fresh_pod, tmp_path):
    """Each capture holds a 32 MiB ring of the node's memory: 12 at once on one pod took ~600 MB.
    A fifth at once is refused, exit 1, one line that says why, no file left; a CLI killed with
    SIGKILL gives its place back (the manager sees its call cancelled)."""
    pod = 'pod/' + fresh_pod
    caps = [start_capture(cluster, bg, pod, '-f', 'udp port %d' % PORT, '-w', str(tmp_path / ('%d.pcap' % i)))
            for i in range(4)]
    r = cluster.diag('capture', pod, '-w', str(tmp_path / 'fifth.pcap'))
    assert r.returncode == 1, r.stderr
    assert error_lines(r.stderr) == [
        "error: Capture: 4 captures run in this pod already, the most at once (each holds 32 MiB of the "
        "node's memory): end one of them (Ctrl-C where it runs), then capture again"], r.stderr
    assert sorted(os.listdir(str(tmp_path))) == ['%d.pcap' % i for i in range(4)]
    caps[0].proc.kill()
    caps[1].proc.kill()

    def accepted():  # a place is free once the manager saw a killed CLI's call go
        r = cluster.diag('capture', pod, '-d', '1s', '-w', str(tmp_path / 'again.pcap'))
        assert r.returncode in (0, 1) and ('4 captures run' in r.stderr) == (r.returncode == 1), r.stderr
        return r.returncode == 0
    wait_for(accepted, 30, what='a capture accepted after 2 of 4 were killed')
    start_capture(cluster, bg, pod, '-w', str(tmp_path / 'third.pcap'))  # the 2 left and this one: 3
    wait_for(accepted, 30, what='a fourth capture accepted: both killed ones gave their place back')


def test_capture_through_a_symlink_leaves_its_file_as_it_was_when_refused(cluster, tmp_path):
    """-w LINK to a regular file: a refused filter leaves the file as it was, and a capture replaces
    the file, the link staying a link. The link was followed at once and its file truncated."""
    target = tmp_path / 'target.pcap'
    target.write_bytes(b'precious')
    link = tmp_path / 'latest.pcap'
    link.symlink_to('target.pcap')
    r = cluster.diag('capture', 'pod/curl', '-f', 'tcp porx 80', '-w', str(link))
    assert r.returncode == 2, r.stderr
    assert target.read_bytes() == b'precious'
    r = cluster.diag('capture', 'pod/curl', '-c', '1', '-w', str(link))  # the pod's curl runs every second
    assert r.returncode == 0, r.stderr
    assert os.readlink(str(link)) == 'target.pcap'
    rc, lines, err = tcpdump_read(str(target))
    assert rc == 0 and len(lines) == 1, err
    assert sorted(os.listdir(str(tmp_path))) == ['latest.pcap', 'target.pcap']


def test_capture_keeps_the_files_mode_and_owner(cluster, tmp_path):
    """-w over an existing FILE made private (0600, another owner): the capture that replaced it
    was 0644 and root's, readable by everyone."""
    out = tmp_path / 'private.pcap'
    out.write_bytes(b'')
    os.chmod(str(out), 0o600)
    os.chown(str(out), 65534, 65534)
    r = cluster.diag('capture', 'pod/curl', '-c', '1', '-w', str(out))  # the pod's curl runs every second
    assert r.returncode == 0, r.stderr
    st = os.stat(str(out))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 65534, 65534)
    assert st.st_size > 24


@contextlib.contextmanager
def immutable(path):
    """path made immutable (chattr +i) while the block runs."""
    subprocess.run(['chattr', '+i', str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(['chattr', '-i', str(path)])


def test_capture_into_a_file_whose_directory_takes_no_new_files(cluster, tmp_path):
    """FILE writable, its directory not (another user's directory; here immutable): the new file
    beside FILE could not be made, and the capture failed although FILE takes the bytes."""
    locked = tmp_path / 'locked'
    locked.mkdir()
    out = locked / 'out.pcap'
    out.write_bytes(b'')
    with immutable(locked):
        r = cluster.diag('capture', 'pod/curl', '-c', '1', '-w', str(out))  # the pod's curl runs every second
        assert r.returncode == 0, r.stderr
        rc, lines, err = tcpdump_read(str(out))
        assert rc == 0 and len(lines) == 1, err
        assert os.listdir(str(locked)) == ['out.pcap']


def test_capture_that_cannot_replace_the_file_is_kept_and_named(cluster, tmp_path):
    """FILE that cannot be replaced (immutable; another user's in a sticky directory): the capture
    written beside it stays there and the summary names it. It was removed at the end, exit 0,
    with the summary saying the packets were written to FILE."""
    out = tmp_path / 'fixed.pcap'
    out.write_bytes(b'precious')
    with immutable(out):
        r = cluster.diag('capture', 'pod/curl', '-c', '1', '-w', str(out))  # the pod's curl runs every second
        assert r.returncode == 0, r.stderr
        kept = [n for n in os.listdir(str(tmp_path)) if n != 'fixed.pcap']
        assert len(kept) == 1 and kept[0].startswith('.fixed.pcap.kdiag-'), (kept, r.stderr)
        kept = str(tmp_path / kept[0])
        assert 'warning: cannot name the capture %s (Operation not permitted): it is written as %s' % (
            out, kept) in r.stderr, r.stderr
        assert 'bytes written to %s)' % kept in r.stderr, r.stderr
        rc, lines, err = tcpdump_read(kept)
        assert rc == 0 and len(lines) == 1, err
        assert out.read_bytes() == b'precious'


def test_capture_ctrl_c_while_a_fifo_waits_for_its_reader(cluster, tmp_path):
    """-w FIFO with no reader yet: opening it waits for one, and Ctrl-C must end that wait (with the
    stop signals blocked first, it was never taken). Nothing was made, so it ends as any program."""
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    p = subprocess.Popen([CLI, 'capture', 'pod/curl', '-w', fifo], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=cluster.env())
    try:
        time.sleep(1)
        assert p.poll() is None, p.stderr.read()
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == -signal.SIGINT
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()


def test_capture_refuses_a_terminal_stdout(cluster):
    # no -w and stdout a terminal: the pcap bytes would go to the screen
    import pty
    master, slave = pty.openpty()
    try:
        r = subprocess.run([CLI, 'capture', 'pod/curl'], stdout=slave, stderr=subprocess.PIPE,
                           env=cluster.env(), timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2 and b'-w FILE' in r.stderr, r.stderr


@pytest.mark.parametrize('path', ['/dev/stdout', 'tty'])
def test_capture_refuses_a_terminal_named_by_w(cluster, path):
    """-w /dev/stdout (or the terminal's own name) with a terminal there: the pcap bytes went to
    the screen; only a terminal stdout without -w was refused."""
    import pty
    master, slave = pty.openpty()
    try:
        r = subprocess.run([CLI, 'capture', 'pod/curl', '-c', '1', '-w',
                            os.ttyname(slave) if path == 'tty' else path],
                           stdout=slave, stderr=subprocess.PIPE, env=cluster.env(), timeout=60)
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 65536)
        except BlockingIOError:
            shown = b''
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2 and b'not to a terminal' in r.stderr, r.stderr
    assert shown == b''


def test_capture_all_pods_one_pcapng_each_packet_on_its_pods_interface(cluster, bg, label, tmp_path):
    pods = ['%s-%d' % (label, i) for i in range(3)]
    cluster.run_pods(label, pods)
    out = str(tmp_path / 'all.pcapng')
    p = start_capture(cluster, bg, '--all-pods', '-l', 'app=' + label, '-f', 'udp port %d' % PORT, '-w', out,
                      pods=3)
    sizes = {n: [100 + 10 * i] * (i + 1) for i, n in enumerate(pods)}  # pod i: i+1 datagrams of its own size
    for n in pods:
        cluster.send_udp(n, sizes[n], PORT)

    def all_in():
        with open(out, 'rb') as f:
            return len(pcapng_blocks(f.read())[1]) >= 6
    wait_for(all_in, 30, what='6 packets in the file')
    assert p.interrupt() == 0, p.err()
    with open(out, 'rb') as f:
        ifaces, pkts = pcapng_blocks(f.read())
    got = {n: [] for n in pods}
    for iface, caplen in pkts:
        name, desc = ifaces[iface]
        pod, ifname = desc.split(' ')
        assert ifname == name == 'eth0', ifaces[iface]
        got[pod[len('pod/'):]].append(caplen - 20 - 28)  # SLL2 + IPv4 + UDP
    assert got == sizes, (got, ifaces)
    rc, lines, err = tcpdump_read(out)
    assert rc == 0 and len(lines) == 6, err
    for i, n in enumerate(pods):
        assert 'pod/%s: %d packets captured' % (n, i + 1) in p.err(), p.err()


def test_capture_all_pods_follows_pods_that_start_later(cluster, bg, label, tmp_path):
    """A pod of the selector that starts after the capture joins it; one that is deleted ends its
    stream without failing the command."""
    first, later = label + '-a', label + '-b'
    cluster.run_pods(label, [first])
    out = str(tmp_path / 'follow.pcapng')
    p = start_capture(cluster, bg, '--all-pods', '-l', 'app=' + label, '-f', 'udp port %d' % PORT, '-w', out)
    cluster.run_pods(label, [later])
    wait_for(lambda: p.err().count('capturing on') == 2, 90, what='the later pod captured')
    assert 'pod/%s started: capturing it too' % later in p.err(), p.err()
    sizes = {first: [123], later: [321, 432]}
    for n, s in sizes.items():
        cluster.send_udp(n, s, PORT)

    def all_in():
        with open(out, 'rb') as f:
            return len(pcapng_blocks(f.read())[1]) >= 3
    wait_for(all_in, 30, what='3 packets in the file')
    cluster.ok('delete', 'pod', first, '--now')
    wait_for(lambda: 'pod/%s is being deleted: its capture ends with it' % first in p.err(), 30,
             what='the deletion seen')
    wait_for(lambda: cluster.kubectl('get', 'pod', first).returncode != 0 and
             not forwards_to(first, children(p.proc.pid)), 60, what='%s gone, its port-forward too' % first)
    assert p.interrupt() == 0, p.err()
    assert 'error:' not in p.err(), p.err()
    with open(out, 'rb') as f:
        ifaces, pkts = pcapng_blocks(f.read())
    got = {n: [] for n in sizes}
    for iface, caplen in pkts:
        got[ifaces[iface][1].split(' ')[0][len('pod/'):]].append(caplen - 20 - 28)  # SLL2 + IPv4 + UDP
    assert got == sizes, (got, ifaces)
    assert 'pod/%s: 2 packets captured' % later in p.err(), p.err()


def test_capture_all_pods_a_pod_deleted_before_the_watch_sees_it_is_no_failure(cluster, bg, label, tmp_path):
    """The pod watch stopped: the deleted pod's stream breaks first. Its forward's pod check says
    the pod went, so the stream's end is the pod's, not an error."""
    pods = [label + '-a', label + '-b']
    cluster.run_pods(label, pods)
    p = start_capture(cluster, bg, '--all-pods', '-l', 'app=' + label, '-w', str(tmp_path / 'w.pcapng'), pods=2)
    watches = [c for c in children(p.proc.pid) if 'watch=1' in cmdline(c)]
    assert len(watches) == 1, [cmdline(c) for c in children(p.proc.pid)]
    os.kill(watches[0], signal.SIGSTOP)
    try:
        cluster.ok('delete', 'pod', pods[0], '--now')
        wait_for(lambda: ': its capture ends with it' in p.err(), 30, what='the stream end taken as the pod\'s')
    finally:
        os.kill(watches[0], signal.SIGCONT)
    line = [l for l in p.err().splitlines() if l.endswith(': its capture ends with it')]
    assert len(line) == 1 and line[0].startswith('pod/%s is ' % pods[0]), p.err()
    assert p.interrupt() == 0, p.err()
    assert 'error:' not in p.err(), p.err()


def test_capture_of_a_deleted_pod_ends_saying_so(cluster, bg, label, tmp_path):
    """One named pod deleted mid-capture: the one error line says the pod went (not a gRPC status)
    and where the packets until then are."""
    pod = label + '-a'
    cluster.run_pods(label, [pod])
    out = str(tmp_path / 'one.pcap')
    p = start_capture(cluster, bg, 'pod/' + pod, '-f', 'udp port %d' % PORT, '-w', out)
    cluster.send_udp(pod, [200], PORT)
    wait_for(lambda: os.path.getsize(out) > 24, 30, what='the packet in the file')
    cluster.ok('delete', 'pod', pod, '--now')
    assert p.proc.wait(60) == 1, p.err()
    err = [l for l in p.err().splitlines() if l.startswith('error:')]
    assert len(err) == 1, p.err()
    assert err[0].startswith('error: the capture ended: pod/%s is ' % pod), p.err()
    assert err[0].endswith('; what was captured until then is in %s' % out), p.err()
    assert 'gRPC status' not in p.err(), p.err()
    rc, lines, _ = tcpdump_read(out)
    assert rc == 0 and len(lines) == 1, lines


def test_capture_all_pods_duration_is_the_commands(cluster, bg, label, tmp_path):
    """-d counts from the start for every pod: one that joins later captures for what is left, and
    the command ends when -d has passed."""
    first, later = label + '-a', label + '-b'
    cluster.run_pods(label, [first])
    t0 = time.monotonic()
    p = start_capture(cluster, bg, '--all-pods', '-l', 'app=' + label, '-d', '8s', '-w', str(tmp_path / 'd.pcapng'))
    cluster.run_pods(label, [later])
    assert p.proc.wait(60) == 0, p.err()
    took = time.monotonic() - t0
    assert 'pod/%s started: capturing it too' % later in p.err(), p.err()
    assert p.err().count('capturing on') == 2 and p.err().count('packets captured') == 2, p.err()
    assert 8 <= took < 20, (took, p.err())


def capture_waiting_line(label):
    return ('no pod matches -l app=%s in the current namespace: check the labels with kubectl get pods '
            '--show-labels; waiting for one to run (Ctrl-C to stop)' % label)


def pcapng_file(path):
    """pcapng_blocks of the file at path as it is now."""
    with open(path, 'rb') as f:
        return pcapng_blocks(f.read())


def test_capture_all_pods_with_no_pod_yet_captures_the_first_that_runs(cluster, bg, label, tmp_path):
    """--all-pods started before any pod of its selector runs ended at once (exit 1, "no pod
    matches …"). Now it says that it waits, and captures the first pod that runs."""
    out = str(tmp_path / 'first.pcapng')
    p = bg(cluster, 'capture', '--all-pods', '-l', 'app=' + label, '-f', 'udp port %d' % PORT, '-w', out)
    line = capture_waiting_line(label)
    wait_for(lambda: line in p.err() or p.proc.poll() is not None, 30, what='the waiting line')
    assert p.proc.poll() is None and p.err().splitlines() == [line], p.err()
    pod = label + '-a'
    cluster.run_pods(label, [pod])
    wait_for(lambda: 'capturing on' in p.err() or p.proc.poll() is not None, 90, what='the pod captured')
    assert 'pod/%s started: capturing it\n' % pod in p.err(), p.err()
    cluster.send_udp(pod, [222], PORT)
    wait_for(lambda: len(pcapng_file(out)[1]) >= 1, 30, what='the packet in the file')
    assert p.interrupt() == 0, p.err()
    ifaces, pkts = pcapng_file(out)
    assert [(ifaces[i][1], caplen - 20 - 28) for i, caplen in pkts] == [('pod/%s eth0' % pod, 222)], (ifaces, pkts)


def test_capture_all_pods_says_at_once_a_later_pod_it_cannot_capture(cluster, bg, label, tmp_path):
    """A pod the watch delivers that cannot be captured (here: no container named as -t) was said
    only at the end, after Ctrl-C, while the command went on as if it captured it. It is said at
    once, and the other pods' capture goes on; the end still reports it."""
    out, first, later = str(tmp_path / 'later.pcapng'), label + '-a', label + '-b'
    cluster.run_pods(label, [first])   # kubectl run names the container as the pod
    p = start_capture(cluster, bg, '--all-pods', '-l', 'app=' + label, '-t', first, '-w', out)
    cluster.run_pods(label, [later])
    line = 'pod/%s: cannot capture: ' % later
    wait_for(lambda: line in p.err() or p.proc.poll() is not None, 60, what='the later pod refused')
    assert p.proc.poll() is None, p.err()
    said = [l for l in p.err().splitlines() if l.startswith(line)]
    assert len(said) == 1 and 'no container "%s"' % first in said[0] and \
        said[0].endswith("; the other pods' captures go on"), p.err()
    assert p.interrupt() == 1, p.err()


def test_capture_all_pods_takes_a_pod_that_runs_but_is_not_ready(cluster, bg, label, tmp_path):
    """--all-pods captures running pods, ready or not (an unready pod's packets show why it is not
    ready), the same at the start and when the watch delivers one later (redir waits for Ready)."""
    out, first, later = str(tmp_path / 'unready.pcapng'), label + '-a', label + '-b'
    cluster.run_unready_pod(label, first)
    cluster.wait_running(first)
    p = start_capture(cluster, bg, '--all-pods', '-l', 'app=' + label, '-f', 'udp port %d' % PORT, '-w', out)
    cluster.run_unready_pod(label, later)
    wait_for(lambda: p.err().count('capturing on') == 2 or p.proc.poll() is not None, 90, what='the later pod')
    assert 'pod/%s started: capturing it too\n' % later in p.err(), p.err()
    for pod in (first, later):  # still not ready when captured
        assert {c['type']: c['status'] for c in cluster.pod(pod)['status']['conditions']}['Ready'] == 'False'
    for pod in (first, later):
        cluster.send_udp(pod, [222], PORT)
    wait_for(lambda: len(pcapng_file(out)[1]) >= 2, 30, what='the packets in the file')
    assert p.interrupt() == 0, p.err()
    ifaces, pkts = pcapng_file(out)
    assert sorted(ifaces[i][1] for i, _ in pkts) == ['pod/%s eth0' % first, 'pod/%s eth0' % later], (ifaces, pkts)


def test_capture_all_pods_ctrl_c_while_waiting_for_a_pod(cluster, bg, label, tmp_path):
    """-c alone ends once every stream so far has ended: with no pod yet it waits for one (it would
    end at once, having none). Ctrl-C ends the wait: exit 0, FILE left as it was, no watch left."""
    out = tmp_path / 'none.pcapng'
    out.write_bytes(b'before')
    p = bg(cluster, 'capture', '--all-pods', '-l', 'app=' + label, '-c', '1', '-w', str(out))
    line = capture_waiting_line(label)
    wait_for(lambda: p.proc.poll() is not None or [c for c in children(p.proc.pid) if 'watch=1' in cmdline(c)], 30,
             what='the pod watch')
    watch = [c for c in children(p.proc.pid) if 'watch=1' in cmdline(c)]
    assert p.proc.poll() is None and p.err().splitlines() == [line], p.err()
    assert p.interrupt() == 0, p.err()
    assert p.err().splitlines() == [line, 'no pod ran: nothing was captured (%s is left as it was)' % out], p.err()
    assert out.read_bytes() == b'before' and os.listdir(tmp_path) == ['none.pcapng']
    wait_for(lambda: not any(os.path.exists('/proc/%d' % c) for c in watch), 10, what='the watch to end')


def test_capture_all_pods_needs_a_selector_and_pcapng(cluster, tmp_path):
    r = cluster.diag('capture', '--all-pods', 'pod/curl', '-w', str(tmp_path / 'x'))
    assert r.returncode == 2 and 'needs -l SELECTOR or a workload' in r.stderr, r.stderr
    r = cluster.diag('capture', '--all-pods', '-l', 'app=curl', '--format', 'pcap', '-w', str(tmp_path / 'x'))
    assert r.returncode == 2 and 'drop --format pcap' in r.stderr, r.stderr


def test_capture_format_pcapng_names_the_pods_interfaces(cluster, bg, tmp_path):
    out = str(tmp_path / 'curl.pcapng')
    p = start_capture(cluster, bg, 'pod/curl', '--format', 'pcapng', '-f', 'udp port %d' % PORT, '-c', '2', '-w', out)
    cluster.send_udp('curl', [300, 400], PORT)
    assert p.proc.wait(30) == 0, p.err()
    with open(out, 'rb') as f:
        ifaces, pkts = pcapng_blocks(f.read())
    assert ('eth0', 'pod/curl eth0') in ifaces.values() and ('lo', 'pod/curl lo') in ifaces.values(), ifaces
    assert [(ifaces[i][0], caplen - 48) for i, caplen in pkts] == [('eth0', 300), ('eth0', 400)], (ifaces, pkts)
    rc, lines, err = tcpdump_read(out)
    assert rc == 0 and len(lines) == 2, err
