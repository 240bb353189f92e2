"""The simulated cluster: object store + runtime + users, and the pod lifecycle glue between
them (create → run_pod, delete → delete_pod on a worker thread, runtime notify → MODIFIED)."""
import copy
import datetime
import threading

import store as store_mod


class Cluster:
    def __init__(self, runtime_factory, users, verbose=False):
        self.users = users
        self.verbose = verbose
        self.store = None
        self.runtime = runtime_factory(self.notify)
        self.store = store_mod.Store(lock=getattr(self.runtime, 'lock', None))
        self.lock = self.store.lock
        self.sessions = {}   # pod uid -> set of close callables (exec, port-forward, logs -f)
        self.slock = threading.Lock()
        self.workers = []
        self.stopping = False
        self.aggregated_discovery = True  # False: only the plain /api, /apis, /api/v1 documents

    # -- runtime callback ----------------------------------------------------
    def notify(self, namespace, name):
        st = self.store
        if st is None:
            return
        with st.lock:
            pod = st.get('pods', namespace, name)
            if pod is not None:
                st.modified('pods', pod)

    # -- streaming sessions tied to a pod ------------------------------------
    def register_session(self, uid, closer):
        with self.slock:
            self.sessions.setdefault(uid, set()).add(closer)

    def unregister_session(self, uid, closer):
        with self.slock:
            s = self.sessions.get(uid)
            if s:
                s.discard(closer)

    def _close_sessions(self, uid):
        with self.slock:
            closers = list(self.sessions.pop(uid, ()))
        for c in closers:
            try:
                c()
            except Exception:
                pass

    # -- lifecycle -----------------------------------------------------------
    def ensure_namespace(self, name, labels=None):
        with self.lock:
            if self.store.get('namespaces', '', name) is None:
                self.store.add('namespaces', {
                    'metadata': {'name': name, 'labels': dict(labels or {}, **{
                        'kubernetes.io/metadata.name': name})},
                    'spec': {'finalizers': ['kubernetes']}, 'status': {'phase': 'Active'}})

    def start_pod(self, pod):
        self.runtime.run_pod(pod)

    def delete_pod(self, pod, grace):
        """Marks the pod terminating and finishes the deletion on a worker thread."""
        with self.lock:
            md = pod['metadata']
            if md.get('deletionTimestamp'):
                return False
            ts = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
            md['deletionTimestamp'] = ts.strftime('%Y-%m-%dT%H:%M:%SZ')
            md['deletionGracePeriodSeconds'] = grace
            self.store.modified('pods', pod)
        t = threading.Thread(target=self._finish_delete, args=(pod, grace), name='delete-' + md['name'],
                             daemon=True)
        self.workers = [w for w in self.workers if w.is_alive()] + [t]
        t.start()
        return True

    def _finish_delete(self, pod, grace):
        try:
            self.runtime.delete_pod(pod, grace)
        except Exception:
            import traceback
            traceback.print_exc()
        self._close_sessions(pod['metadata']['uid'])
        self.store.remove('pods', pod)

    def delete_namespace(self, ns_obj):
        name = ns_obj['metadata']['name']
        with self.lock:
            ns_obj['status']['phase'] = 'Terminating'
            ns_obj['metadata'].setdefault('deletionTimestamp', store_mod.now_rfc3339())
            self.store.modified('namespaces', ns_obj)
            for kind in ('services', 'deployments', 'replicasets', 'statefulsets'):
                for o in [o for (ons, _), o in self.store.objs[kind].items() if ons == name]:
                    self.store.remove(kind, o)
            pods = [p for (pns, _), p in self.store.objs['pods'].items() if pns == name]
        for p in pods:
            self.delete_pod(p, 1)

        def finish():
            for t in list(self.workers):
                if t.is_alive():
                    t.join(60)
            self.store.remove('namespaces', ns_obj)
        threading.Thread(target=finish, daemon=True).start()

    def shutdown(self):
        """Deletes every pod (really stopping it) and closes all watches."""
        self.stopping = True
        with self.lock:
            pods = list(self.store.objs['pods'].values())
        for p in pods:
            self.delete_pod(p, 1)
        for t in list(self.workers):
            t.join(60)
        self.store.close_all_watches()

    def snapshot(self, obj):
        with self.lock:
            return copy.deepcopy(obj)
