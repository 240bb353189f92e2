"""Object store of the simulated API server: namespaces, pods and workloads as JSON dicts, one global
resourceVersion counter, and watch fan-out with a bounded event history (so a watch can
resume from a recent resourceVersion, as kubectl does after a list)."""
import collections
import copy
import datetime
import json
import queue
import threading
import uuid

import selectors_k8s as sel

HISTORY = 5000  # events kept for watches that resume from an older resourceVersion


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class Gone(Exception):
    """The requested resourceVersion is older than the event history."""


class Watch:
    """One watcher: a queue of (type, json-text) plus its filter."""

    def __init__(self, store, kind, namespace, label_sel, field_sel):
        self.store = store
        self.kind = kind
        self.namespace = namespace
        self.label_sel = label_sel
        self.field_sel = field_sel
        self.q = queue.Queue()

    def matches(self, kind, obj):
        if kind != self.kind:
            return False
        md = obj.get('metadata', {})
        if self.namespace and md.get('namespace') != self.namespace:
            return False
        return sel.match_labels(self.label_sel, md.get('labels') or {}) and \
            sel.match_fields(self.field_sel, obj)

    def get(self, timeout):
        return self.q.get(timeout=timeout)

    def close(self):
        self.store.unwatch(self)
        self.q.put(None)


class Store:
    """kind is a resource name ('pods', 'namespaces', 'deployments', …). Objects are keyed
    (namespace, name); namespaces use ''."""

    def __init__(self, lock=None):
        self.lock = lock or threading.RLock()
        self.rv = 1
        self.objs = {k: {} for k in ('pods', 'namespaces', 'events', 'services', 'deployments', 'replicasets',
                                     'statefulsets')}
        self.on_change = None  # called (under the lock) after every event: wakes the controllers
        self.history = collections.deque(maxlen=HISTORY)  # (rv, kind, type, obj-copy)
        self.watches = set()

    # -- helpers -------------------------------------------------------------
    def _bump(self, obj):
        self.rv += 1
        obj['metadata']['resourceVersion'] = str(self.rv)
        return self.rv

    def _emit(self, kind, etype, obj):
        snap = copy.deepcopy(obj)
        self.history.append((self.rv, kind, etype, snap))
        for w in list(self.watches):
            if w.matches(kind, snap):
                w.q.put((etype, snap))
        if self.on_change:
            self.on_change()

    # -- public --------------------------------------------------------------
    def current_rv(self):
        with self.lock:
            return str(self.rv)

    def get(self, kind, ns, name):
        """Live object (callers hold self.lock while touching it) or None."""
        return self.objs[kind].get((ns, name))

    def snapshot(self, kind, ns, name):
        with self.lock:
            o = self.objs[kind].get((ns, name))
            return copy.deepcopy(o) if o is not None else None

    def list(self, kind, ns=None, label_sel=None, field_sel=None):
        with self.lock:
            out = []
            for (ons, _), o in sorted(self.objs[kind].items()):
                if ns and ons != ns:
                    continue
                if not sel.match_labels(label_sel, o['metadata'].get('labels') or {}):
                    continue
                if not sel.match_fields(field_sel, o):
                    continue
                out.append(copy.deepcopy(o))
            return out, str(self.rv)

    def add(self, kind, obj):
        with self.lock:
            md = obj['metadata']
            key = (md.get('namespace', ''), md['name'])
            if key in self.objs[kind]:
                raise KeyError(key)
            md.setdefault('uid', str(uuid.uuid4()))
            md.setdefault('creationTimestamp', now_rfc3339())
            self._bump(obj)
            self.objs[kind][key] = obj
            self._emit(kind, 'ADDED', obj)
            return obj

    def modified(self, kind, obj):
        """The live obj changed: new resourceVersion, MODIFIED event."""
        with self.lock:
            md = obj['metadata']
            key = (md.get('namespace', ''), md['name'])
            if self.objs[kind].get(key) is not obj:
                return  # already deleted (or replaced): nothing to announce
            self._bump(obj)
            self._emit(kind, 'MODIFIED', obj)

    def remove(self, kind, obj):
        with self.lock:
            md = obj['metadata']
            key = (md.get('namespace', ''), md['name'])
            if self.objs[kind].get(key) is not obj:
                return
            del self.objs[kind][key]
            self._bump(obj)
            self._emit(kind, 'DELETED', obj)

    def watch(self, kind, ns, label_sel, field_sel, since_rv):
        """Registers a watcher. since_rv None/'0'/'' → synthetic ADDED for all current objects;
        otherwise replay events newer than since_rv from history (Gone if too old)."""
        with self.lock:
            w = Watch(self, kind, ns, label_sel, field_sel)
            if not since_rv or since_rv == '0':
                for (ons, _), o in sorted(self.objs[kind].items()):
                    if w.matches(kind, o):
                        w.q.put(('ADDED', copy.deepcopy(o)))
            else:
                try:
                    rv = int(since_rv)
                except ValueError:
                    raise ValueError(since_rv)
                if rv < self.rv and (not self.history or self.history[0][0] > rv + 1):
                    raise Gone(since_rv)
                for hrv, hkind, etype, snap in self.history:
                    if hrv > rv and w.matches(hkind, snap):
                        w.q.put((etype, snap))
            self.watches.add(w)
            return w

    def unwatch(self, w):
        with self.lock:
            self.watches.discard(w)

    def close_all_watches(self):
        with self.lock:
            ws = list(self.watches)
        for w in ws:
            w.close()


def dumps(obj):
    return json.dumps(obj, separators=(',', ':'))
