"""HTTP/1.1 front of the simulated API server: parsing, authentication, routing, JSON and
chunked responses, and connection hijacking for the streaming subresources."""
import http.server
import json
import socketserver
import sys
import time
import urllib.parse

import admission
import apierrors
import discovery
import exec_api
import k8sproto
import logs
import portforward
import resources
import workloads


class Request:
    def __init__(self, handler, method):
        self.h = handler
        self.method = method
        u = urllib.parse.urlsplit(handler.path)
        self.path = u.path
        self.qs = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.parts = [p for p in self.path.split('/') if p]
        self.user = None
        self._body = None

    def q(self, key, default=None):
        v = self.qs.get(key)
        return v[-1] if v else default

    def qall(self, key):
        return self.qs.get(key, [])

    def header(self, name, default=None):
        return self.h.headers.get(name, default)

    def header_all(self, name):
        vals = []
        for v in self.h.headers.get_all(name) or []:
            vals.extend(x.strip() for x in v.split(',') if x.strip())
        return vals

    def body(self):
        if self._body is None:
            h = self.h
            if (h.headers.get('Transfer-Encoding') or '').lower() == 'chunked':
                data = b''
                while True:
                    line = h.rfile.readline()
                    n = int(line.split(b';')[0].strip() or b'0', 16)
                    if n == 0:
                        while h.rfile.readline() not in (b'\r\n', b'\n', b''):
                            pass
                        break
                    data += h.rfile.read(n)
                    h.rfile.readline()
                self._body = data
            else:
                n = int(h.headers.get('Content-Length') or 0)
                self._body = h.rfile.read(n) if n else b''
        return self._body

    def json_body(self):
        raw = self.body()
        if (self.header('Content-Type') or '').startswith(k8sproto.PROTOBUF):
            try:
                kind, obj = k8sproto.decode(raw)
            except k8sproto.DecodeError as e:
                raise apierrors.bad_request('the body of the request could not be decoded: %s' % e)
            if kind not in k8sproto.SCHEMA:
                raise apierrors.APIError(415, 'UnsupportedMediaType', 'the body of the request was in an '
                                         'unknown format - accepted media types include: application/json')
            return obj
        try:
            return json.loads(raw or b'{}')
        except ValueError as e:
            raise apierrors.bad_request('the body of the request could not be decoded as JSON: %s' % e)

    def wants_table(self):
        return 'as=Table' in (self.header('Accept') or '')

    # -- responses -----------------------------------------------------------
    def send_json(self, code, obj, ctype='application/json'):
        data = json.dumps(obj, separators=(',', ':')).encode()
        self.send_bytes(code, data, ctype)

    def send_bytes(self, code, data, ctype):
        h = self.h
        h.send_response(code)
        h.send_header('Content-Type', ctype)
        h.send_header('Content-Length', str(len(data)))
        h.send_header('Cache-Control', 'no-cache, private')
        h.end_headers()
        h.wfile.write(data)

    def start_chunked(self, ctype):
        h = self.h
        h.send_response(200)
        h.send_header('Content-Type', ctype)
        h.send_header('Transfer-Encoding', 'chunked')
        h.send_header('Cache-Control', 'no-cache, private')
        h.end_headers()
        h.wfile.flush()

    def chunk(self, data):
        if data:
            self.h.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))

    def end_chunked(self):
        try:
            self.h.wfile.write(b'0\r\n\r\n')
        except OSError:
            self.h.close_connection = True

    def switch_protocols(self, headers):
        """Sends 101 and hands the connection over (the handler closes it afterwards)."""
        h = self.h
        h.close_connection = True
        h.log_request(101)
        lines = ['HTTP/1.1 101 Switching Protocols'] + ['%s: %s' % kv for kv in headers] + ['', '']
        h.wfile.write('\r\n'.join(lines).encode())
        h.wfile.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'kubesim'
    sim = None  # set by make_server

    def log_message(self, fmt, *args):
        if self.sim.verbose:
            sys.stderr.write('%s %s\n' % (time.strftime('%H:%M:%S'), fmt % args))

    def _dispatch(self, method):
        req = Request(self, method)
        try:
            if not self.headers.get('Upgrade'):
                req.body()  # consumed up front so an early error leaves the connection usable
            route(self.sim, req)
        except apierrors.APIError as e:
            try:
                req.send_json(e.code, e.status())
            except OSError:
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug of ours: answer 500 rather than drop the connection
            import traceback
            traceback.print_exc()
            try:
                req.send_json(500, apierrors.APIError(500, 'InternalError', 'Internal error occurred: %r' % e).status())
            except OSError:
                self.close_connection = True

    def do_GET(self):
        self._dispatch('GET')

    def do_POST(self):
        self._dispatch('POST')

    def do_PUT(self):
        self._dispatch('PUT')

    def do_PATCH(self):
        self._dispatch('PATCH')

    def do_DELETE(self):
        self._dispatch('DELETE')


def verb_of(req, collection):
    m = req.method
    if m == 'GET':
        if req.q('watch') in ('true', '1'):
            return 'watch'
        return 'list' if collection else 'get'
    return {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch', 'DELETE': 'delete'}.get(m, m.lower())


def route(sim, req):
    p = req.parts
    if req.method == 'GET' and p in ([], ['healthz'], ['readyz'], ['livez']):
        return req.send_bytes(200, b'ok', 'text/plain')
    if req.method == 'GET' and p == ['version']:
        return req.send_json(200, discovery.version())
    req.user = sim.users.authenticate(req.header('Authorization'))
    if p == ['api']:
        return discovery.api(req)
    if p == ['apis']:
        return discovery.apis(req)
    if p == ['api', 'v1']:
        return req.send_json(200, discovery.core_v1())
    if p == ['openapi', 'v2']:
        return req.send_bytes(200, discovery.openapi_v2_proto(), discovery.OPENAPI_V2_TYPE)
    if p == ['openapi', 'v3']:
        return req.send_json(200, discovery.openapi_v3_root())
    if p == ['openapi', 'v3', 'api', 'v1']:
        return req.send_json(200, discovery.openapi_v3_doc(''))
    if p == ['apis', 'apps']:
        return req.send_json(200, discovery.apps_group())
    if p == ['apis', 'apps', 'v1']:
        return req.send_json(200, discovery.apps_v1())
    if p == ['openapi', 'v3', 'apis', 'apps', 'v1']:
        return req.send_json(200, discovery.openapi_v3_doc('apps'))
    if req.method == 'POST' and p == ['apis', 'authorization.k8s.io', 'v1', 'selfsubjectaccessreviews']:
        return admission.access_review(req)  # every user may ask about itself (system:basic-user)
    wl = workloads.parse_path(p)
    if wl:
        group, ns, resource, name, sub = wl
        sim.users.authorize(req.user, verb_of(req, not name), resource + ('/' + sub if sub else ''), ns, name,
                            group)
        return workloads.serve(sim, req, resource, ns, name, sub)
    if p[:1] in (['openapi'], ['apis']) or p[:2] != ['api', 'v1']:
        raise apierrors.APIError(404, 'NotFound', 'the server could not find the requested resource')
    rest = p[2:]
    # /api/v1/pods, /api/v1/namespaces[/NS]
    if rest == ['events'] or (len(rest) == 3 and rest[0] == 'namespaces' and rest[2] == 'events'):
        ns = rest[1] if len(rest) == 3 else None
        sim.users.authorize(req.user, verb_of(req, True), 'events', ns, '')
        return resources.events(sim, req, ns)
    if rest == ['pods']:
        sim.users.authorize(req.user, verb_of(req, True), 'pods', None, '')
        return resources.pods_collection(sim, req, None)
    if rest and rest[0] == 'namespaces' and len(rest) <= 2:
        name = rest[1] if len(rest) == 2 else ''
        sim.users.authorize(req.user, verb_of(req, not name), 'namespaces', None, name)
        return resources.namespaces(sim, req, name)
    if len(rest) >= 3 and rest[0] == 'namespaces' and rest[2] == 'pods' and len(rest) <= 5:
        ns = rest[1]
        name = rest[3] if len(rest) >= 4 else ''
        sub = rest[4] if len(rest) == 5 else ''
        resource = 'pods/' + sub if sub else 'pods'
        if sub in ('exec', 'attach', 'portforward'):
            verb = 'create'  # websocket GETs are authorized as create, like the real server
        elif sub == 'log':
            verb = 'get'
        else:
            verb = verb_of(req, not name)
        sim.users.authorize(req.user, verb, resource, ns, name)
        if not name:
            return resources.pods_collection(sim, req, ns)
        if not sub:
            return resources.pod(sim, req, ns, name)
        if sub == 'ephemeralcontainers':
            return resources.ephemeral_containers(sim, req, ns, name)
        if sub == 'status' and req.method == 'GET':
            return resources.pod(sim, req, ns, name)
        if sub == 'status' and req.method in ('PATCH', 'PUT'):
            return resources.pod_status(sim, req, ns, name)
        if sub == 'log' and req.method == 'GET':
            return logs.serve(sim, req, ns, name)
        if sub == 'exec' and req.method in ('GET', 'POST'):
            return exec_api.serve(sim, req, ns, name)
        if sub == 'portforward' and req.method in ('GET', 'POST'):
            return portforward.serve(sim, req, ns, name)
        raise apierrors.APIError(404, 'NotFound', 'the server could not find the requested resource')
    raise apierrors.APIError(404, 'NotFound', 'the server could not find the requested resource')


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Never listens itself: tlsfront hands it the plaintext side of each TLS connection."""
    daemon_threads = True
    block_on_close = False


def make_server(sim):
    handler = type('SimHandler', (Handler,), {'sim': sim})
    return Server(('127.0.0.1', 0), handler, bind_and_activate=False)
