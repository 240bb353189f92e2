#include "redir.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "basic/signal-util.h"
#include "bridge.h"
#include "exitcode.h"
#include "kdiag.pb-c.h"
#include "ps.h"
#include "redirect_client.h"
#include "session.h"

#define MAX_PORTS 256
#define STALE_STREAM_RETRIES 60     /* x 500 ms: beyond an old manager's keepalive timeout */
#define HALF_CLOSE_TIMEOUT_MS 10000 /* a HalfClose call, and waiting for the forward to carry it */

struct redir;

struct rport {
    struct redir *r;
    flags_portpair pp;
    pthread_t th;
    bool started;
    redirect_client *rc; /* guarded by r->mu */
};

struct redir {
    session s;
    bool outgoing;
    redirect_client_req req; /* what every stream of this run asks, port aside */
    pthread_mutex_t mu;
    bool stopping;
    int wake_efd;
    int fatal;
    char fatal_msg[1024];
    struct rport *ports;
    size_t nports;
    bridge *bridge;
    rpc_client *hc_client; /* the bridge's sender thread only: HalfClose calls */
    int hc_port;           /* hc_client's forward port */
};

struct conn_ctx {
    struct redir *r;
    char line[256];
};

static void wake(struct redir *r)
{
    uint64_t one = 1;
    (void)!write(r->wake_efd, &one, sizeof(one));
}

static void set_fatal(struct redir *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(struct redir *r, const char *fmt, ...)
{
    pthread_mutex_lock(&r->mu);
    if (!r->fatal) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->fatal_msg, sizeof(r->fatal_msg), fmt, ap);
        va_end(ap);
        r->fatal = 1;
    }
    pthread_mutex_unlock(&r->mu);
    wake(r);
}

static bool stopping(struct redir *r)
{
    pthread_mutex_lock(&r->mu);
    bool s = r->stopping;
    pthread_mutex_unlock(&r->mu);
    return s;
}

static void on_done(void *ud, const bridge_result *res)
{
    struct conn_ctx *c = ud;
    if (res->err == -ECONNREFUSED && strcmp(res->where, "local target") == 0)
        fprintf(stderr, "%s: refused by the local target (is something listening there?)\n", c->line);
    else if (res->err == -EBUSY)
        fprintf(stderr, "%s: refused: %d connections are bridged already (the limit)\n", c->line,
                bridge_max_conns(c->r->bridge));
    else if (res->err < 0 && res->err != -ECONNRESET && res->err != -EPIPE && res->err != -ECANCELED)
        fprintf(stderr, "%s: %s error: %s\n", c->line, res->where, strerror(-res->err)); /* resets are the peers' business */
    free(c);
}

#define HINT_OLD_TABLE_OWNER \
    " (an older kdiag-manager in this pod holds the redirect table; kubectl diag sends redirects to the oldest " \
    "running debug container with NET_ADMIN, but this pod's table belongs to another one: its managers predate " \
    "per-manager tables, so only a restart of the pod clears it)"

/* Adds what to do when the manager's own message does not say it. */
static const char *hint_for(grpc_status_code code, const char *msg)
{
    switch (code) {
    case GRPC_STATUS_FAILED_PRECONDITION:
        /* Managers from before per-manager tables: another one owns `inet kdiag` (docs/notes.md). */
        return strstr(msg, "belongs to another process") ? HINT_OLD_TABLE_OWNER : "";
    case GRPC_STATUS_ALREADY_EXISTS:
        return strstr(msg, "first") ? "" : " (another kubectl diag redir redirects this port: stop it first)";
    case GRPC_STATUS_UNAUTHENTICATED:
        return " (the manager's token did not match: the debug container may have been replaced)";
    default: return "";
    }
}

/* One Redirect stream over one generation of the port-forward. */
struct stream_run {
    struct rport *p;
    uint16_t ltunnel; /* the forward's local end of the manager's tunnel port */
    bool reconnect;   /* a stream of this port was ready before */
    bool ready;
    bool half_close; /* the manager carries half-closes out of band */
};

static void announce_conn(struct stream_run *sr, const redirect_client_event *ev)
{
    struct rport *p = sr->p;
    struct redir *r = p->r;
    struct conn_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->r = r;
    if (r->outgoing)
        snprintf(c->line, sizeof(c->line), "pod → %s (from %s) ⇒ localhost:%u", ev->original_dst, ev->peer,
                 p->pp.local_port);
    else
        snprintf(c->line, sizeof(c->line), "pod:%u ← %s ⇒ localhost:%u", p->pp.pod_port, ev->peer, p->pp.local_port);
    fprintf(stderr, "%s\n", c->line);
    /* ev->tunnel_port is the manager's, in the pod: we reach it through our forward */
    if (bridge_start(r->bridge, sr->ltunnel, p->pp.local_port, ev->token, sr->half_close, on_done, c) < 0) {
        fprintf(stderr, "%s: out of memory: not bridged\n", c->line);
        free(c);
    }
}

static int on_event(void *ud, const redirect_client_event *ev)
{
    struct stream_run *sr = ud;
    struct rport *p = sr->p;
    if (ev->ready) {
        if (!sr->ready)
            printf("%s pod/%s:%u → localhost:%u (%s)\n", sr->reconnect ? "re-established" : "redirecting",
                   p->r->s.pod.name, p->pp.pod_port, p->pp.local_port, p->r->outgoing ? "outgoing" : "incoming");
        fflush(stdout);
        sr->ready = true;
        sr->half_close = ev->half_close;
    } else if (sr->ready && ev->peer_write_closed) {
        bridge_peer_closed(p->r->bridge, ev->token, ev->peer_write_closed_after);
    } else if (sr->ready) {
        announce_conn(sr, ev);
    }
    return 0;
}

/* The bridge's HalfClose sender: a call through the forward as it is now. */
static void send_half_close(void *ud, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes)
{
    struct redir *r = ud;
    int lg, lt;
    char e[1024], target[64];
    rpc_status st = {0};
    if (portfwd_wait(r->s.pf, 0, HALF_CLOSE_TIMEOUT_MS, &lg, &lt, e, sizeof(e)) < 0)
        return; /* the forward is down: so are the tunnel connections it carried */
    if (lg != r->hc_port) {
        rpc_client_free(r->hc_client);
        r->hc_client = NULL;
        snprintf(target, sizeof(target), "127.0.0.1:%d", lg);
        if (rpc_client_new(&r->hc_client, target, r->s.mgr.token) < 0)
            return;
        r->hc_port = lg;
    }
    if (redirect_client_half_close(r->hc_client, token, bytes, HALF_CLOSE_TIMEOUT_MS, &st) < 0)
        fprintf(stderr, "passing a half-close on to the manager failed: %s\n", st.message);
}

/* Runs the port's stream to its end; st says how it ended. */
static void run_stream(struct stream_run *sr, int lgrpc, rpc_status *st)
{
    struct rport *p = sr->p;
    struct redir *r = p->r;
    char target[64];
    redirect_client *rc = NULL;
    snprintf(target, sizeof(target), "127.0.0.1:%d", lgrpc);
    rpc_client *cl = NULL;
    int err = rpc_client_new(&cl, target, r->s.mgr.token);
    redirect_client_req req = r->req;
    req.port = p->pp.pod_port;
    req.half_close = true;
    if (err == 0)
        err = redirect_client_new(&rc, cl, &req);
    pthread_mutex_lock(&r->mu);
    p->rc = rc;
    if (r->stopping && rc)
        redirect_client_cancel(rc);
    pthread_mutex_unlock(&r->mu);
    if (err == 0) {
        redirect_client_run(rc, on_event, sr, st);
    } else {
        st->code = GRPC_STATUS_UNAVAILABLE;
        snprintf(st->message, sizeof(st->message), "cannot open the stream: %s", strerror(-err));
    }
    pthread_mutex_lock(&r->mu);
    p->rc = NULL;
    pthread_mutex_unlock(&r->mu);
    redirect_client_free(rc);
    rpc_client_free(cl);
}

static bool is_transport(grpc_status_code code)
{
    return code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_CANCELLED || code == GRPC_STATUS_DEADLINE_EXCEEDED ||
           code == GRPC_STATUS_OK || code == GRPC_STATUS_UNKNOWN || code == GRPC_STATUS_INTERNAL;
}

static void *stream_main(void *arg)
{
    struct rport *p = arg;
    struct redir *r = p->r;
    unsigned after = 0;
    bool ever_ready = false;
    int retries = 0;
    sig_block_stop(NULL);
    while (!stopping(r)) {
        int lg, lt;
        char e[1024];
        int gen = portfwd_wait(r->s.pf, after, r->s.timeout_ms, &lg, &lt, e, sizeof(e));
        if (gen == -ECANCELED)
            break;
        if (gen == -ETIMEDOUT && after) /* down for long: the forward's supervisor says why, and retries */
            continue;
        if (gen < 0) {
            set_fatal(r, "%s", e);
            break;
        }
        struct stream_run sr = {.p = p, .ltunnel = (uint16_t)lt, .reconnect = ever_ready};
        rpc_status status = {0};
        run_stream(&sr, lg, &status);
        if (sr.ready) {
            ever_ready = true;
            retries = 0;
        }
        if (stopping(r))
            break;
        if (is_transport(status.code)) {
            fprintf(stderr, "redirect of pod port %u lost (%s); reconnecting\n", p->pp.pod_port,
                    *status.message ? status.message : "stream ended");
            portfwd_kick(r->s.pf, (unsigned)gen);
            after = (unsigned)gen;
            continue;
        }
        /* A manager that predates session ids keeps a stale stream until its keepalive
         * gives up on it (10 s + 10 s); newer ones hand the port to our session at once. */
        if (ever_ready && status.code == GRPC_STATUS_ALREADY_EXISTS && retries++ < STALE_STREAM_RETRIES) {
            struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
            after = (unsigned)gen - 1;
            continue;
        }
        set_fatal(r, "redirect of pod/%s port %u failed: %s%s", r->s.pod.name, p->pp.pod_port,
                  *status.message ? status.message : "no message", hint_for(status.code, status.message));
        break;
    }
    return NULL;
}

static void stop_all(struct redir *r)
{
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    for (size_t i = 0; i < r->nports; i++)
        if (r->ports[i].rc)
            redirect_client_cancel(r->ports[i].rc);
    pthread_mutex_unlock(&r->mu);
    /* wakes threads blocked in portfwd_wait; the forward is freed by session_close */
    if (r->s.pf)
        portfwd_cancel(r->s.pf);
    for (size_t i = 0; i < r->nports; i++)
        if (r->ports[i].started)
            pthread_join(r->ports[i].th, NULL);
}

/* What each Redirect of this run asks: one session id for all its streams (a
 * reconnect takes its ports over at once), the node's addresses left alone
 * unless --include-probes, the pod's own connections unless --include-loopback. */
static int request_of(const flags *f, const pod_info *pod, redirect_client_req *req)
{
    memset(req, 0, sizeof(*req));
    req->outgoing = f->outgoing;
    req->include_loopback = f->include_loopback;
    for (size_t i = 0; !f->outgoing && !f->include_probes && i < pod->nhost_ips; i++)
        if (req->nskip_sources < CONTRACT_REDIRECT_SKIP_SOURCES_MAX)
            req->skip_sources[req->nskip_sources++] = pod->host_ips[i];
    return redirect_client_session_id(req->session_id);
}

/* Ps through the redirect's manager when it has the capabilities Ps needs,
 * else through a (possibly new) debug container that has them: the redirects
 * stay with the pod's oldest manager either way. */
static int fetch_ps(struct redir *r, const flags *f, const kube *k, Kdiag__Solo__Io__PsResponse **resp, char *err,
                    size_t errlen)
{
    const pod_container *c = pod_ephemeral_find(&r->s.pod, r->s.mgr.container); /* NULL: new, made with them */
    if (!c || ephem_container_has(c, EPHEM_CAPS_PS))
        return ps_fetch(&r->s, resp, err, errlen);
    session ps;
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_PS, true);
    int rc = session_open(k, &so, &ps, err, errlen);
    if (rc == 0) {
        rc = ps_fetch(&ps, resp, err, errlen);
        session_close(&ps);
    }
    return rc;
}

/* No ports given: every non-loopback TCP listener, to the same local port. */
static int ports_from_ps(struct redir *r, const flags *f, const kube *k, char *err, size_t errlen)
{
    Kdiag__Solo__Io__PsResponse *resp;
    int rc = fetch_ps(r, f, k, &resp, err, errlen);
    if (rc < 0)
        return rc;
    uint16_t ports[MAX_PORTS];
    size_t n = ps_public_tcp_ports(resp, ports, MAX_PORTS);
    kdiag__solo__io__ps_response__free_unpacked(resp, NULL);
    if (n == 0) {
        snprintf(err, errlen,
                 "pod/%s has no TCP port listening on a non-loopback address; name the ports, e.g. kubectl diag "
                 "redir 80:8080",
                 r->s.pod.name);
        return -ENOENT;
    }
    r->ports = calloc(n, sizeof(*r->ports));
    if (!r->ports) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        r->ports[i].pp = (flags_portpair){ports[i], ports[i]};
    r->nports = n;
    return 0;
}

/* The ports to redirect: the flags', or every public listener of the pod. */
static int choose_ports(struct redir *r, const flags *f, const kube *k, char *err, size_t errlen)
{
    if (!f->nports)
        return ports_from_ps(r, f, k, err, errlen);
    r->ports = calloc(f->nports, sizeof(*r->ports));
    if (!r->ports) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < f->nports; i++)
        r->ports[i].pp = f->ports[i];
    r->nports = f->nports;
    return 0;
}

/* Waits for Ctrl-C / SIGTERM (exit 0), the pod gone or a stream's fatal error (exit 1). */
static int wait_for_end(struct redir *r, int sfd)
{
    for (;;) {
        struct pollfd pf[3] = {{sfd, POLLIN, 0}, {r->wake_efd, POLLIN, 0}, {portfwd_gone_fd(r->s.pf), POLLIN, 0}};
        if (poll(pf, 3, -1) < 0 && errno != EINTR)
            return EXITCODE_FAILURE;
        if (pf[0].revents) {
            struct signalfd_siginfo si;
            (void)!read(sfd, &si, sizeof(si));
            fprintf(stderr, "stopping: removing the redirects\n");
            return EXITCODE_OK;
        }
        if (pf[2].revents) {
            int lg, lt;
            char e[1024];
            portfwd_wait(r->s.pf, 0, 1, &lg, &lt, e, sizeof(e));
            fprintf(stderr, "error: %s; the redirect ended\n", e);
            return EXITCODE_FAILURE;
        }
        if (pf[1].revents) {
            uint64_t v;
            (void)!read(r->wake_efd, &v, sizeof(v));
            pthread_mutex_lock(&r->mu);
            bool fatal = r->fatal;
            pthread_mutex_unlock(&r->mu);
            if (fatal) {
                fprintf(stderr, "error: %s\n", r->fatal_msg);
                return EXITCODE_FAILURE;
            }
        }
    }
}

/* After the session is open: the bridge, one stream thread per port, then
 * waits for the end. Returns the exit code. */
static int run_redirects(struct redir *r, const flags *f, const kube *k)
{
    char err[2048] = "";
    int code;
    /* From here every thread (ours and gRPC's) inherits blocked SIGINT/SIGTERM;
     * the main thread takes them from a signalfd. */
    sigset_t ss;
    sig_block_stop(&ss);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    r->wake_efd = eventfd(0, EFD_CLOEXEC);
    int rc = sfd < 0 || r->wake_efd < 0 ? -errno : 0;
    if (rc < 0)
        snprintf(err, sizeof(err), "%s", strerror(-rc));
    bridge_opts bo = {.half_close = send_half_close, .half_close_ud = r};
    if (rc == 0 && (rc = bridge_new(&r->bridge, &bo)) < 0)
        snprintf(err, sizeof(err), "cannot start the bridge: %s", strerror(-rc));
    if (rc == 0 && (rc = request_of(f, &r->s.pod, &r->req)) < 0)
        snprintf(err, sizeof(err), "cannot make a session id: %s", strerror(-rc));
    if (rc == 0)
        rc = choose_ports(r, f, k, err, sizeof(err));
    if (rc < 0) {
        code = exitcode_report(stderr, rc, err);
        goto out;
    }
    for (size_t i = 0; i < r->nports; i++) {
        r->ports[i].r = r;
        if (pthread_create(&r->ports[i].th, NULL, stream_main, &r->ports[i]) == 0)
            r->ports[i].started = true;
    }
    code = wait_for_end(r, sfd);
out:
    stop_all(r);
    bridge_free(r->bridge); /* after the streams: nothing starts a connection any more */
    rpc_client_free(r->hc_client);
    if (sfd >= 0)
        close(sfd);
    return code;
}

int redir_main(const flags *f, const kube *k)
{
    struct redir r;
    char err[2048] = "";
    int code;
    memset(&r, 0, sizeof(r));
    r.outgoing = f->outgoing;
    r.wake_efd = -1;
    if (f->outgoing && f->nports == 0) {
        snprintf(err, sizeof(err), "kubectl diag redir --outgoing needs the ports to catch, e.g. --outgoing 80:8080");
        return exitcode_report(stderr, -EINVAL, err);
    }
    pthread_mutex_init(&r.mu, NULL);
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_REDIR, true);
    so.extra_caps = f->nports ? 0 : EPHEM_CAPS_PS; /* to list the ports */
    so.tunnel = true;
    int rc = session_open(k, &so, &r.s, err, sizeof(err));
    if (rc < 0) {
        code = exitcode_report(stderr, rc, err);
    } else {
        code = run_redirects(&r, f, k);
        session_close(&r.s);
    }
    free(r.ports);
    if (r.wake_efd >= 0)
        close(r.wake_efd);
    pthread_mutex_destroy(&r.mu);
    return code;
}
