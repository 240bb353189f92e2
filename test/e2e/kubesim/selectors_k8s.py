"""Label and field selectors as the API server parses them (the subset kubectl sends).

Label selector grammar: comma-separated requirements, each one of
  key=value, key==value, key!=value, key in (a,b), key notin (a,b), key, !key
Field selectors: metadata.name, metadata.namespace, status.phase, spec.nodeName with =, ==, !=."""
import re


class SelectorError(ValueError):
    pass


def _split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    if depth != 0:
        raise SelectorError('unbalanced parentheses')
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


_KEY = r'[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?'
_SET = re.compile(r'^(' + _KEY + r')\s+(in|notin)\s*\(([^)]*)\)$')
_EQ = re.compile(r'^(' + _KEY + r')\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$')
_EXISTS = re.compile(r'^(!?)\s*(' + _KEY + r')$')


def parse_labels(s):
    """Returns a list of (key, op, values) or None for an empty selector."""
    if not s:
        return None
    reqs = []
    for part in _split_top(s):
        m = _SET.match(part)
        if m:
            vals = {v.strip() for v in m.group(4).split(',') if v.strip() != ''}
            reqs.append((m.group(1), m.group(3), vals))
            continue
        m = _EQ.match(part)
        if m:
            op = '!=' if m.group(3) == '!=' else '='
            reqs.append((m.group(1), op, {m.group(4)}))
            continue
        m = _EXISTS.match(part)
        if m:
            reqs.append((m.group(2), 'notexists' if m.group(1) else 'exists', set()))
            continue
        raise SelectorError('unable to parse requirement: %r' % part)
    return reqs


def match_labels(reqs, labels):
    if not reqs:
        return True
    for key, op, vals in reqs:
        have = key in labels
        v = labels.get(key)
        if op == '=' and not (have and v in vals):
            return False
        if op == '!=' and have and v in vals:
            return False
        if op == 'in' and not (have and v in vals):
            return False
        if op == 'notin' and have and v in vals:
            return False
        if op == 'exists' and not have:
            return False
        if op == 'notexists' and have:
            return False
    return True


FIELDS = {
    'metadata.name': lambda o: o.get('metadata', {}).get('name', ''),
    'metadata.namespace': lambda o: o.get('metadata', {}).get('namespace', ''),
    'status.phase': lambda o: o.get('status', {}).get('phase', ''),
    'spec.nodeName': lambda o: o.get('spec', {}).get('nodeName', ''),
    'status.podIP': lambda o: o.get('status', {}).get('podIP', ''),
}


def parse_fields(s):
    if not s:
        return None
    reqs = []
    for part in _split_top(s):
        m = re.match(r'^([A-Za-z.]+)\s*(==|!=|=)\s*(.*)$', part)
        if not m:
            raise SelectorError('invalid selector: %r; can\'t understand %r' % (s, part))
        if m.group(1) not in FIELDS:
            raise SelectorError('field label not supported: %s' % m.group(1))
        reqs.append((m.group(1), '!=' if m.group(2) == '!=' else '=', m.group(3)))
    return reqs


def match_fields(reqs, obj):
    if not reqs:
        return True
    for field, op, val in reqs:
        have = FIELDS[field](obj)
        if (op == '=') != (have == val):
            return False
    return True
