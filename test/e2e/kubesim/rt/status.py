"""The pod status the kubelet would report: phase, conditions, IPs and container statuses, from
the runtime's view of a pod."""
from rt import host, sandbox

CONDITIONS = ('PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled')


def _phase(main, policy):
    running = waiting = stopped = succeeded = 0
    for c in main:
        if 'running' in c.state:
            running += 1
        elif 'terminated' in c.state:
            stopped += 1
            succeeded += c.state['terminated'].get('exitCode') == 0
        elif 'terminated' in c.last_state:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return 'Pending'
    if running:
        return 'Running'
    if stopped:
        if policy == 'Always':
            return 'Running'
        if stopped == succeeded:
            return 'Succeeded'
        return 'Running' if policy == 'OnFailure' else 'Failed'
    return 'Pending'


def _set_cond(p, typ, ok, reason=None, message=None):
    """A condition keeps its lastTransitionTime while its status stays."""
    status = 'True' if ok else 'False'
    old = p.cond.get(typ)
    t = old[1] if old and old[0] == status else host.now_rfc3339()
    p.cond[typ] = (status, t, reason, message)


def _gates_not_ready(p):
    """The kubelet's message for the first readiness gate whose condition is not True, or None."""
    for g in (p.pod.get('spec') or {}).get('readinessGates') or []:
        t = g.get('conditionType')
        c = p.gates.get(t)
        if c is None:
            return 'corresponding condition of pod readiness gate "%s" does not exist.' % t
        if c.get('status') != 'True':
            return 'the status of pod readiness gate "%s" is not "True", but %s' % (t, c.get('status'))
    return None


def _conditions(p, phase, main):
    unready = sorted(c.name for c in main if not c.running)
    ready = not unready and phase == 'Running'
    gates = _gates_not_ready(p)
    if phase in ('Succeeded', 'Failed'):
        reason, msg = 'PodCompleted', None
    elif unready:
        reason, msg = 'ContainersNotReady', 'containers with unready status: [%s]' % ' '.join(unready)
    else:
        reason = msg = None
    _set_cond(p, 'PodReadyToStartContainers', p.sandbox_ready.is_set())
    _set_cond(p, 'Initialized', True)
    if ready and gates:
        _set_cond(p, 'Ready', False, 'ReadinessGatesNotReady', gates)
    else:
        _set_cond(p, 'Ready', ready, reason, msg)
    _set_cond(p, 'ContainersReady', ready, reason, msg)
    _set_cond(p, 'PodScheduled', True)
    conds = []
    for typ in CONDITIONS:
        status, t, reason, msg = p.cond[typ]
        c = {'type': typ, 'status': status, 'lastProbeTime': None, 'lastTransitionTime': t}
        if reason:
            c['reason'] = reason
        if msg:
            c['message'] = msg
        conds.append(c)
    return conds + [dict(c) for c in p.gates.values()]


def render(p):
    """Rebuilds p.pod['status'] from the runtime's view. Caller holds Runtime.lock."""
    main = [c for c in p.ctrs.values() if not c.ephemeral]
    eph = [c for c in p.ctrs.values() if c.ephemeral]
    phase = _phase(main, (p.pod.get('spec') or {}).get('restartPolicy') or 'Always')
    st = p.pod.setdefault('status', {})
    st['phase'] = phase
    st['conditions'] = _conditions(p, phase, main)
    st['hostIP'] = sandbox.GATEWAY
    st['hostIPs'] = [{'ip': sandbox.GATEWAY}]
    if p.ip:
        st['podIP'] = p.ip
        st['podIPs'] = [{'ip': p.ip}]
    st['startTime'] = p.start_time
    st['qosClass'] = 'BestEffort'
    st['containerStatuses'] = [c.status() for c in sorted(main, key=lambda c: c.name)]
    if eph:
        st['ephemeralContainerStatuses'] = [c.status() for c in eph]
