"""Capability sets of container processes, by containerd's rules."""

CAPS = ['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID',
        'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW',
        'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT',
        'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD',
        'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG',
        'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE']
CAP_NUM = {n: i for i, n in enumerate(CAPS)}
# containerd's default set (oci.DefaultCapabilities)
DEFAULT_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID',
                'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE']


def resolve_caps(sc):
    """containerd's rule: default set + add - drop ('ALL' allowed in both); privileged = all.
    Returns a list of capability numbers, or None for all. ValueError on an unknown name."""
    sc = sc or {}
    if sc.get('privileged'):
        return None
    caps = sc.get('capabilities') or {}

    def names(lst):
        out = []
        for n in lst or []:
            u = str(n).upper()
            u = u[4:] if u.startswith('CAP_') else u
            if u != 'ALL' and u not in CAP_NUM:
                raise ValueError('unknown capability "CAP_%s"' % u)
            out.append(u)
        return out
    add, drop = names(caps.get('add')), names(caps.get('drop'))
    have = set(DEFAULT_CAPS)
    if 'ALL' in add:
        have = set(CAPS)
    have |= {a for a in add if a != 'ALL'}
    if 'ALL' in drop:
        have = {a for a in add if a != 'ALL'} if 'ALL' not in add else set()
    have -= set(drop)
    last = _cap_last()
    return sorted(CAP_NUM[c] for c in have if CAP_NUM[c] <= last)


def _cap_last():
    try:
        with open('/proc/sys/kernel/cap_last_cap') as f:
            return int(f.read())
    except OSError:
        return len(CAPS) - 1
