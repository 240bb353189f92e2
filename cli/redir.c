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

#include "basic/alloc-util.h"
#include "basic/list.h"
#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "bridge.h"
#include "contract.h"
#include "ephem.h"
#include "exitcode.h"
#include "fwdpool.h"
#include "kdiag.pb-c.h"
#include "podsel.h"
#include "podwatch.h"
#include "ps.h"
#include "redirect_client.h"
#include "session.h"

#define STALE_STREAM_RETRIES 60     /* x 500 ms: beyond an old manager's keepalive timeout */
#define HALF_CLOSE_TIMEOUT_MS 10000 /* a HalfClose call, and waiting for the forward to carry it */
#define REATTACH_DELAY_MS 1000      /* a followed pod whose debug container ended gets a new one after this */
#define OPEN_RETRY_MS 5000          /* a followed pod that could not be redirected is tried again after this */
#define POOL_DEFAULT 8              /* tunnel forwards per pod (fwdpool.h); KDIAG_REDIR_POOL for the benchmark */
#define SPARES_DEFAULT 1            /* spare tunnel connections per stream; KDIAG_REDIR_SPARES for the benchmark */
#define SPARE_RETRY_MS 100          /* a spare waits for the first forward of the pool: tried again after this */
#define UNBRIDGED_WINDOW_MS 10000   /* connections the local target did not take: one line per window (-v: each) */
#define FOLLOW_ENDED_MAX 3          /* -l / --all-pods add no debug container to a pod with this many ended */
#define FOLLOW_ENDED_WINDOW_S 900 /* ... within this (s; back-offs are 5 min at most); KDIAG_REDIR_ENDED_WINDOW */

struct redir;
struct podrun;

struct rport {
    struct podrun *pr;
    flags_portpair pp;
    pthread_t th;
    bool started;
    redirect_client *rc; /* guarded by r->mu */
    /* Spare tunnel connections of the current stream (docs/redirect.md),
     * guarded by r->mu: the stream's thread and the bridge's park them. */
    bool has_spare; /* the stream is ready and its manager takes spares */
    uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN];
    unsigned spare_gen; /* one per ready stream: older spares are not counted */
    int parked;         /* this generation's spares not yet announced nor ended */
    uint16_t spare_ltunnel;
    bool spare_half_close;
};

/* One pod's redirects: its session (manager, forward), a Redirect stream
 * per port, a bridge, and a pool of forwards for the tunnel connections. */
struct podrun {
    struct redir *r;
    char name[256];
    pod_info pod_read; /* the pod as the watch saw it (spares a kubectl get), or zero */
    session s;
    redirect_client_req req;
    struct rport *ports;
    size_t nports;
    bridge *bridge;
    rpc_client *hc_client; /* the bridge's sender thread only: HalfClose calls */
    int hc_port;           /* hc_client's forward port */
    fwdpool *pool;         /* the tunnel connections' forwards, or NULL */
    pthread_t opener;      /* session, ports, bridge and pool */
    bool opener_started;
    bool at_start; /* one of the pods the run started with (first_pods), not one the watch delivered */
    /* guarded by r->mu */
    bool stopping;
    bool opened, handled; /* the opener finished its part / the main thread took the result */
    bool failed;          /* following: a stream found its port taken (fail_msg): dropped, tried again */
    int open_rc;
    char open_err[2048], fail_msg[1024];
    list_node link; /* r->runs */
};

/* A pod the watch reported (main thread and watch thread, under r->mu). */
struct known {
    char *name, *created;
    pod_info pod; /* the latest event's, until a run takes it (then zero) */
    bool ready;
    bool running;       /* Running, ready or not: kept while it is, so that unready_said lasts */
    bool unready_said;  /* "is running but not ready" was said: "is ready now" when it is taken */
    int64_t not_before; /* no new run before this (ms, monotonic) */
    bool refused;       /* no retry changes the pod (refused_for_good): no new run, kept until it is gone */
    bool crashloop;     /* refused for its ended debug containers (-EMLINK): tried again at retry_at */
    int64_t retry_at;   /* ms, monotonic; 0: not before the watch says more (its target is not running) */
    bool gone;          /* the watch saw it deleted */
};

struct redir {
    const flags *f;
    kube k;
    bool follow;                /* -l or a workload: the watch picks up new pods */
    char *selector;             /* -l, or the workload's selector */
    char ns[256];               /* -n, else the first pods' (the watch's namespace); "" when unknown */
    const char *workload;       /* deploy/NAME …, for messages; NULL for -l */
    podsel_svc_port *svc_ports; /* svc/NAME: its ports, which stand for their targetPorts */
    size_t nsvc_ports;
    bool all_pods; /* every ready pod, lines name their pod */
    uint8_t sid[REDIRECT_CLIENT_SESSION_ID_LEN];
    size_t pool_size;
    int spares;          /* per stream */
    long ended_window_s; /* FOLLOW_ENDED_MAX counts debug containers that ended within this */
    pthread_mutex_t mu;
    bool stopping;
    bool ever_up;
    int wake_efd;
    int fatal;
    char fatal_msg[1024];
    time_ratelimit unbridged; /* guarded by mu: connections not bridged (a busy pod's could flood the terminal) */
    list_node runs;           /* struct podrun, main thread */
    podwatch *watch;
    struct known *known; /* guarded by mu */
    size_t nknown;
    char **many_ports; /* guarded by mu: the pods (uids) told they listen on more ports than redir takes */
    size_t nmany_ports, many_ports_cap;
};

struct conn_ctx {
    struct podrun *pr;
    struct rport *p;
    int slot;     /* pool member carrying it, -1: the gRPC forward */
    bool spare;   /* a parked spare, not announced yet */
    unsigned gen; /* its stream's spare_gen */
    char line[384];
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

static bool stopping(struct podrun *pr)
{
    pthread_mutex_lock(&pr->r->mu);
    bool s = pr->r->stopping || pr->stopping;
    pthread_mutex_unlock(&pr->r->mu);
    return s;
}

static void spare_gone(struct conn_ctx *c)
{
    pthread_mutex_lock(&c->pr->r->mu);
    if (c->spare && c->gen == c->p->spare_gen)
        c->p->parked--;
    c->spare = false;
    pthread_mutex_unlock(&c->pr->r->mu);
}

/* The bridge's thread: the connection is bridged; its line (docs/redirect.md). */
static void on_bridged(void *ud)
{
    struct conn_ctx *c = ud;
    fprintf(stderr, "%s\n", c->line);
}

/* A connection the local side did not take: said at most once per
 * UNBRIDGED_WINDOW_MS (each one with -v), with the count of the others;
 * the last of those when the window ends (flush_unbridged). */
static void say_unbridged(struct conn_ctx *c, const char *why)
{
    struct redir *r = c->pr->r;
    char line[TIME_RATELIMIT_LINE_MAX], out[TIME_RATELIMIT_OUT_MAX];
    snprintf(line, sizeof line, "%s: %s", c->line, why);
    if (r->f->verbose > 0) {
        fprintf(stderr, "%s\n", line);
        return;
    }
    pthread_mutex_lock(&r->mu);
    bool say = time_ratelimit_line(&r->unbridged, UNBRIDGED_WINDOW_MS, line, out, sizeof out);
    bool first_held = !say && r->unbridged.quiet == 1;
    pthread_mutex_unlock(&r->mu);
    if (say)
        fprintf(stderr, "%s\n", out);
    if (first_held) /* the main loop now has a window's end to wait for */
        wake(r);
}

/* The main thread: the connections held back once their window has ended
 * (at_end: at once). Returns the poll timeout until they are due (-1: none). */
static int flush_unbridged(struct redir *r, bool at_end)
{
    return time_ratelimit_say_held(&r->unbridged, &r->mu, UNBRIDGED_WINDOW_MS, at_end, stderr);
}

static void on_done(void *ud, const bridge_result *res)
{
    struct conn_ctx *c = ud;
    bool local = strcmp(res->where, "local target") == 0;
    char why[128];
    if (c->spare) { /* ended unannounced: the stream ended or its forward broke (the stream says so) */
        spare_gone(c);
    } else if (local && res->err == -ECONNREFUSED) {
        say_unbridged(c, "refused by the local target (is something listening there?)");
    } else if (local && res->err == -ETIMEDOUT) {
        say_unbridged(c, "the local target did not accept within 10 s (is its listen backlog full?)");
    } else if (res->err == -EBUSY) {
        snprintf(why, sizeof why, "refused: %d connections are bridged already (the limit)",
                 bridge_max_conns(c->pr->bridge));
        say_unbridged(c, why);
    } else if (res->err < 0 && res->err != -ECONNRESET && res->err != -EPIPE && res->err != -ECANCELED) {
        fprintf(stderr, "%s: %s error: %s\n", c->line, res->where, strerror(-res->err)); /* resets are the peers' business */
    }
    fwdpool_release(c->pr->pool, c->slot);
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
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return strstr(msg, "streams")
                   ? " (each port is a stream: redirect fewer ports at once, or end other kubectl "
                     "diag commands on this pod)"
                   : "";
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

/* The connection's line: said once it is bridged, or with why it is not. */
static void conn_line(struct conn_ctx *c, const redirect_client_event *ev)
{
    struct rport *p = c->p;
    struct podrun *pr = c->pr;
    char who[300] = "pod";
    if (pr->r->all_pods)
        snprintf(who, sizeof(who), "pod/%s", pr->name);
    if (pr->r->f->outgoing)
        snprintf(c->line, sizeof(c->line), "%s → %s (from %s) ⇒ localhost:%u", who, ev->original_dst, ev->peer,
                 p->pp.local_port);
    else
        snprintf(c->line, sizeof(c->line), "%s:%u ← %s ⇒ localhost:%u", who, p->pp.pod_port, ev->peer,
                 p->pp.local_port);
}

static void top_up(struct rport *p, bool wake);

/* Bridge thread: the manager announced a connection on a spare. */
static void on_spare_announce(void *ud, const redirect_client_event *ev)
{
    struct conn_ctx *c = ud;
    spare_gone(c);
    conn_line(c, ev);
    top_up(c->p, true);
}

/* Any thread: parks spares until the stream has its share (none when its
 * manager takes none, the stream is not ready, or the bridge is full: the
 * next connection tries again; none while no forward of the pool is up: the
 * main loop tries again, woken when wake; with a pool of 0, KDIAG_REDIR_POOL=0,
 * on the gRPC forward as every connection). */
static void top_up(struct rport *p, bool wake)
{
    struct podrun *pr = p->pr;
    struct redir *r = pr->r;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        struct conn_ctx *c = NULL;
        if (p->has_spare && p->parked < r->spares && !r->stopping && !pr->stopping && (c = calloc(1, sizeof(*c)))) {
            *c = (struct conn_ctx){.pr = pr, .p = p, .spare = true, .gen = p->spare_gen};
            p->parked++;
        }
        uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
        memcpy(token, p->spare_token, sizeof(token));
        uint16_t port = p->spare_ltunnel;
        bool hc = p->spare_half_close;
        pthread_mutex_unlock(&r->mu);
        if (!c)
            return;
        c->slot = fwdpool_pick(pr->pool, &port);
        if (c->slot < 0 && pr->pool && r->pool_size > 0) {
            /* No forward of the pool is up yet. Parked on the gRPC forward,
             * the spare would carry a later connection there for good, and a
             * local reader that stalls would stop the stream's keepalive with
             * it (fwdpool.h): top_up_all parks it once one is up. */
            spare_gone(c);
            free(c);
            uint64_t one = 1;
            if (wake) /* a stream's thread: the main loop's next turn tries again */
                (void)!write(r->wake_efd, &one, sizeof(one));
            return;
        }
        if (bridge_park(pr->bridge, port, p->pp.local_port, token, hc, on_spare_announce, on_done, c) < 0) {
            spare_gone(c);
            fwdpool_release(pr->pool, c->slot);
            free(c);
            return;
        }
    }
}

/* Main thread: the spares top_up could not park before the pool was up.
 * true while some stream still has fewer than its share. */
static bool top_up_all(struct redir *r)
{
    bool short_of = false;
    struct podrun *pr;
    list_for_each_entry(pr, &r->runs, link) {
        pthread_mutex_lock(&r->mu);
        bool live = pr->handled && !pr->stopping && pr->pool && r->pool_size > 0;
        pthread_mutex_unlock(&r->mu);
        for (size_t i = 0; live && i < pr->nports; i++) {
            struct rport *p = &pr->ports[i];
            pthread_mutex_lock(&r->mu);
            bool want = p->has_spare && p->parked < r->spares;
            pthread_mutex_unlock(&r->mu);
            if (!want)
                continue;
            top_up(p, false);
            pthread_mutex_lock(&r->mu);
            short_of |= p->has_spare && p->parked < r->spares;
            pthread_mutex_unlock(&r->mu);
        }
    }
    return short_of;
}

static void announce_conn(struct stream_run *sr, const redirect_client_event *ev)
{
    struct rport *p = sr->p;
    struct podrun *pr = p->pr;
    struct conn_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->pr = pr;
    c->p = p;
    conn_line(c, ev);
    /* ev->tunnel_port is the manager's, in the pod: we reach it through a forward */
    uint16_t port = sr->ltunnel;
    c->slot = fwdpool_pick(pr->pool, &port);
    if (bridge_start(pr->bridge, port, p->pp.local_port, ev->token, sr->half_close, on_done, c) < 0) {
        fprintf(stderr, "%s: out of memory: not bridged\n", c->line);
        bridge_result res = {.err = -ECANCELED, .where = "connection"};
        on_done(c, &res);
    }
    top_up(p, true); /* on the stream: no spare was parked (a burst, or the bridge was full) */
}

static int on_event(void *ud, const redirect_client_event *ev)
{
    struct stream_run *sr = ud;
    struct rport *p = sr->p;
    if (ev->ready) {
        if (!sr->ready)
            printf("%s pod/%s:%u → localhost:%u (%s)\n", sr->reconnect ? "re-established" : "redirecting",
                   p->pr->name, p->pp.pod_port, p->pp.local_port, p->pr->r->f->outgoing ? "outgoing" : "incoming");
        fflush(stdout);
        sr->ready = true;
        sr->half_close = ev->half_close;
        pthread_mutex_lock(&p->pr->r->mu);
        p->has_spare = ev->has_spare;
        memcpy(p->spare_token, ev->spare_token, sizeof(p->spare_token));
        p->spare_gen++;
        p->parked = 0;
        p->spare_ltunnel = sr->ltunnel;
        p->spare_half_close = ev->half_close;
        pthread_mutex_unlock(&p->pr->r->mu);
        top_up(p, true);
    } else if (sr->ready && ev->peer_write_closed) {
        bridge_peer_closed(p->pr->bridge, ev->token, ev->peer_write_closed_after);
    } else if (sr->ready) {
        announce_conn(sr, ev);
    }
    return 0;
}

/* The bridge's HalfClose sender: a call through the gRPC forward as it is now. */
static void send_half_close(void *ud, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes)
{
    struct podrun *pr = ud;
    int lg, lt;
    char e[1024];
    rpc_status st = {0};
    if (portfwd_wait(pr->s.pf, 0, HALF_CLOSE_TIMEOUT_MS, &lg, &lt, e, sizeof(e)) < 0)
        return; /* the forward is down: so are the tunnel connections it carried */
    if (lg != pr->hc_port) {
        rpc_client_free(pr->hc_client);
        pr->hc_client = NULL;
        if (session_client_at(&pr->s, lg, &pr->hc_client) < 0)
            return;
        pr->hc_port = lg;
    }
    if (redirect_client_half_close(pr->hc_client, token, bytes, HALF_CLOSE_TIMEOUT_MS, &st) < 0)
        fprintf(stderr, "passing a half-close on to the manager of pod/%s failed: %s\n", pr->name, st.message);
}

/* Runs the port's stream to its end; st says how it ended. */
static void run_stream(struct stream_run *sr, int lgrpc, rpc_status *st)
{
    struct rport *p = sr->p;
    struct podrun *pr = p->pr;
    struct redir *r = pr->r;
    redirect_client *rc = NULL;
    rpc_client *cl = NULL;
    int err = session_client_at(&pr->s, lgrpc, &cl);
    redirect_client_req req = pr->req;
    req.port = p->pp.pod_port;
    req.half_close = true;
    if (err == 0)
        err = redirect_client_new(&rc, cl, &req);
    pthread_mutex_lock(&r->mu);
    p->rc = rc;
    if ((r->stopping || pr->stopping) && rc)
        redirect_client_cancel(rc);
    pthread_mutex_unlock(&r->mu);
    if (err == 0) {
        redirect_client_run(rc, on_event, sr, st);
        pthread_mutex_lock(&r->mu);
        p->has_spare = false; /* the manager closes this stream's spares */
        pthread_mutex_unlock(&r->mu);
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
    struct podrun *pr = p->pr;
    struct redir *r = pr->r;
    unsigned after = 0;
    bool ever_ready = false;
    int retries = 0;
    sig_block_stop(NULL);
    while (!stopping(pr)) {
        int lg, lt;
        char e[1024];
        int gen = portfwd_wait(pr->s.pf, after, pr->s.timeout_ms, &lg, &lt, e, sizeof(e));
        if (gen == -ECANCELED || gen == -ENOENT) /* gone: the main thread drops the pod, or ends (on_gone) */
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
        if (stopping(pr))
            break;
        if (is_transport(status.code)) {
            fprintf(stderr, "redirect of pod/%s port %u lost (%s); reconnecting\n", pr->name, p->pp.pod_port,
                    *status.message ? status.message : "stream ended");
            portfwd_kick(pr->s.pf, (unsigned)gen);
            after = (unsigned)gen;
            continue;
        }
        /* A manager that predates session ids keeps a stale stream until its keepalive
         * gives up on it; newer ones hand the port to our session at once. */
        if (ever_ready && status.code == GRPC_STATUS_ALREADY_EXISTS && retries++ < STALE_STREAM_RETRIES) {
            struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
            after = (unsigned)gen - 1;
            continue;
        }
        /* following pods: a pod whose port another redirect holds is dropped and tried again, as
         * one that cannot be opened; the others run on */
        pthread_mutex_lock(&r->mu);
        bool alone = !r->follow || status.code != GRPC_STATUS_ALREADY_EXISTS || pr->failed;
        if (!alone) {
            pr->failed = true;
            snprintf(pr->fail_msg, sizeof(pr->fail_msg), "port %u: %s%s", p->pp.pod_port,
                     *status.message ? status.message : "no message", hint_for(status.code, status.message));
        }
        pthread_mutex_unlock(&r->mu);
        if (!alone) {
            wake(r);
            break;
        }
        set_fatal(r, "redirect of pod/%s port %u failed: %s%s", pr->name, p->pp.pod_port,
                  *status.message ? status.message : "no message", hint_for(status.code, status.message));
        break;
    }
    return NULL;
}

/* What each Redirect of this run asks: one session id for all its streams (a
 * reconnect takes its ports over at once), the node's addresses left alone
 * unless --include-probes, the pod's own connections unless --include-loopback. */
static void request_of(const struct redir *r, const pod_info *pod, redirect_client_req *req)
{
    const flags *f = r->f;
    memset(req, 0, sizeof(*req));
    req->outgoing = f->outgoing;
    req->include_loopback = f->include_loopback;
    for (size_t i = 0; !f->outgoing && !f->include_probes && i < pod->nhost_ips; i++)
        if (req->nskip_sources < CONTRACT_REDIRECT_SKIP_SOURCES_MAX)
            req->skip_sources[req->nskip_sources++] = pod->host_ips[i];
    memcpy(req->session_id, r->sid, sizeof req->session_id);
}

/* Ps through the redirect's manager when it has the capabilities Ps needs,
 * else through a (possibly new) debug container that has them: the redirects
 * stay with the pod's oldest manager either way. */
static int fetch_ps(struct podrun *r, const flags *f, const kube *k, Kdiag__Solo__Io__PsResponse **resp, char *err,
                    size_t errlen)
{
    const pod_container *c = pod_ephemeral_find(&r->s.pod, r->s.mgr.container); /* NULL: new, made with them */
    if (!c || ephem_container_has(c, EPHEM_CAPS_PS))
        return ps_fetch(&r->s, resp, err, errlen);
    session ps;
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_PS, true);
    so.pod = r->name; /* this run's pod, whatever the flags selected */
    so.selector = so.workload = NULL;
    int rc = session_open(k, &so, &ps, err, errlen);
    if (rc == 0) {
        rc = ps_fetch(&ps, resp, err, errlen);
        session_close(&ps);
    }
    return rc;
}

/* Whether pod is yet to be told that it listens on more ports than redir
 * takes; it then counts as told: once per pod, not on every re-attach, but
 * again for a pod made again under its name (its uid, else its name). */
static bool many_ports_untold(struct redir *r, const pod_info *pod)
{
    const char *key = pod->uid ? pod->uid : pod->name;
    bool untold = true;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nmany_ports && untold; i++)
        untold = strcmp(r->many_ports[i], key) != 0;
    char *dup = untold ? strdup(key) : NULL;
    if (dup && GROW_ARRAY(r->many_ports, r->many_ports_cap, r->nmany_ports + 1, 8) == 0) {
        r->many_ports[r->nmany_ports++] = dup;
        dup = NULL;
    }
    free(dup);
    pthread_mutex_unlock(&r->mu);
    return untold;
}

/* No ports given: every non-loopback TCP listener, to the same local port. */
static int ports_from_ps(struct podrun *r, const flags *f, const kube *k, char *err, size_t errlen)
{
    Kdiag__Solo__Io__PsResponse *resp;
    int rc = fetch_ps(r, f, k, &resp, err, errlen);
    if (rc < 0)
        return rc;
    uint16_t *ports = malloc(UINT16_MAX * sizeof(*ports)); /* every one, lowest first */
    size_t n = ports ? ps_public_tcp_ports(resp, ports, UINT16_MAX) : 0;
    kdiag__solo__io__ps_response__free_unpacked(resp, NULL);
    if (!ports) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (n > CONTRACT_STREAMS_MAX && many_ports_untold(r->r, &r->s.pod)) /* the manager serves that many streams */
        fprintf(stderr,
                "pod/%s listens on %zu TCP ports, and redir takes at most %d: only the lowest, %u-%u, are redirected, "
                "not the %zu from %u to %u; name the ports to redirect others, e.g. kubectl diag redir pod/%s %u\n",
                r->s.pod.name, n, CONTRACT_STREAMS_MAX, ports[0], ports[CONTRACT_STREAMS_MAX - 1],
                n - CONTRACT_STREAMS_MAX, ports[CONTRACT_STREAMS_MAX], ports[n - 1], r->s.pod.name,
                ports[CONTRACT_STREAMS_MAX]);
    if (n > CONTRACT_STREAMS_MAX)
        n = CONTRACT_STREAMS_MAX;
    r->ports = n ? calloc(n, sizeof(*r->ports)) : NULL;
    for (size_t i = 0; i < n && r->ports; i++)
        r->ports[i].pp = (flags_portpair){.pod_port = ports[i], .local_port = ports[i]};
    free(ports);
    if (n == 0) {
        snprintf(err, errlen,
                 "pod/%s has no TCP port listening on a non-loopback address; name the ports, e.g. kubectl diag "
                 "redir 80:8080",
                 r->s.pod.name);
        return -ENOENT;
    }
    if (!r->ports) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->nports = n;
    return 0;
}

/* The container port named name in pod, or 0; err then lists the names
 * the pod declares (and r's Service's, with svc/NAME). */
static uint16_t named_port(const struct redir *r, const pod_info *pod, const char *name, char *err, size_t errlen)
{
    uint16_t port = pod_port_by_name(pod, name);
    size_t len = 0, nsvc = 0;
    char known[1024] = "";
    if (port)
        return port;
    for (size_t i = 0; i < pod->ncontainers; i++)
        for (size_t k = 0; k < pod->containers[i].nports && len < sizeof known; k++)
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s (%u)", len ? ", " : "",
                                    pod->containers[i].ports[k].name, pod->containers[i].ports[k].port);
    if (!len)
        len = (size_t)snprintf(known, sizeof known, "none");
    for (size_t i = 0; i < r->nsvc_ports && len < sizeof known; i++)
        if (r->svc_ports[i].name[0])
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s (%u)", nsvc++ ? ", " : "; its Service's are ",
                                    r->svc_ports[i].name, r->svc_ports[i].port);
    snprintf(err, errlen,
             "no container of pod/%s declares a port named \"%s\"%s: the pod's named ports are %s; give the port's "
             "number instead, e.g. kubectl diag redir pod/%s 80:8080",
             pod->name, name, nsvc ? " (nor does its Service)" : "", known, pod->name);
    return 0;
}

/* Where port pp goes in pod. A port's name is the pod's container port of
 * that name, as kubectl port-forward takes it. With svc/NAME a port of the
 * Service (its number, or its name) stands for its targetPort in the pod,
 * as with kubectl port-forward svc/NAME (a local port given stays); any
 * other number is the pod's own. Not with --outgoing: its ports are those
 * the pod connects to, which the Service does not map (and names are
 * refused before). A name given without a local port takes the number of
 * the port it names: the Service's, or the container's. */
static int port_target(const struct redir *r, const pod_info *pod, flags_portpair *pp, char *err, size_t errlen)
{
    char given[FLAGS_PORT_NAME_MAX + 8];
    bool svc_named = false;
    flags_port_shown(pp, given, sizeof given);
    for (size_t i = 0; i < r->nsvc_ports && !r->f->outgoing; i++) {
        const podsel_svc_port *sp = &r->svc_ports[i];
        if (pp->pod_name[0] ? strcmp(sp->name, pp->pod_name) != 0 : sp->port != pp->pod_port)
            continue;
        uint16_t to = sp->target ? sp->target : pod_port_by_name(pod, sp->target_name);
        if (!to) {
            snprintf(err, errlen,
                     "%s port %s goes to the container port named \"%s\", which no container of pod/%s declares: "
                     "give the pod's port number instead (kubectl diag redir pod/%s PODPORT:%u)",
                     r->workload, given, sp->target_name, pod->name, pod->name,
                     pp->local_port ? pp->local_port : sp->port);
            return -ENXIO; /* a pod's container ports never change: refused_for_good */
        }
        pp->pod_port = to;
        if (!pp->local_port) /* as for a number: the Service's port */
            pp->local_port = sp->port;
        svc_named = true;
        break;
    }
    if (pp->pod_name[0] && !svc_named && !(pp->pod_port = named_port(r, pod, pp->pod_name, err, errlen)))
        return -ENXIO;
    if (!pp->local_port)
        pp->local_port = pp->pod_port;
    return 0;
}

/* Every port given goes somewhere in pod (port_target): checked on the pod
 * as read, before a debug container is added to a pod that cannot take it
 * (session_opts' check). */
static int check_targets(void *ud, const pod_info *pod, char *err, size_t errlen)
{
    const struct redir *r = ud;
    for (size_t i = 0; i < r->f->nports; i++) {
        flags_portpair pp = r->f->ports[i];
        int rc = port_target(r, pod, &pp, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The ports to redirect: the flags', or every public listener of the pod. */
static int choose_ports(struct podrun *r, const flags *f, const kube *k, char *err, size_t errlen)
{
    if (!f->nports)
        return ports_from_ps(r, f, k, err, errlen);
    r->ports = calloc(f->nports, sizeof(*r->ports));
    if (!r->ports) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < f->nports; i++) {
        r->ports[i].pp = f->ports[i];
        int rc = port_target(r->r, &r->s.pod, &r->ports[i].pp, err, errlen);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (r->ports[j].pp.pod_port == r->ports[i].pp.pod_port) {
                char a[FLAGS_PORT_NAME_MAX], b[FLAGS_PORT_NAME_MAX];
                flags_port_shown(&f->ports[j], a, sizeof a);
                flags_port_shown(&f->ports[i], b, sizeof b);
                snprintf(err, errlen, "ports %s and %s both go to port %u of pod/%s: redirect it once", a, b,
                         r->ports[i].pp.pod_port, r->s.pod.name);
                return -EINVAL;
            }
        r->nports++;
    }
    return 0;
}

/* ---- one pod ---- */

/* The opener thread: session, bridge, ports and the pool of forwards for
 * the tunnel connections; the main thread then starts the streams. */
static void *opener_main(void *arg)
{
    struct podrun *pr = arg;
    struct redir *r = pr->r;
    const flags *f = r->f;
    char err[2048] = "";
    sig_block_stop(NULL);
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_REDIR, true);
    so.pod = pr->name;
    so.pod_read = pr->pod_read.name ? &pr->pod_read : NULL;
    so.selector = so.workload = NULL;
    so.extra_caps = f->nports ? 0 : EPHEM_CAPS_PS;   /* to list the ports */
    so.max_ended = r->follow ? FOLLOW_ENDED_MAX : 0; /* each restart of the target ends one (docs/redirect.md) */
    so.ended_window_s = r->ended_window_s;
    so.tunnel = true;
    so.quick = false; /* the pod as read: its node's addresses are the probes' sources (skip_sources) */
    so.check = check_targets;
    so.check_ud = r;
    int rc = session_open(&r->k, &so, &pr->s, err, sizeof(err));
    bridge_opts bo = {.half_close = send_half_close, .half_close_ud = pr, .bridged = on_bridged};
    if (rc == 0 && (rc = bridge_new(&pr->bridge, &bo)) < 0)
        snprintf(err, sizeof(err), "cannot start the bridge: %s", strerror(-rc));
    if (rc == 0) {
        request_of(r, &pr->s.pod, &pr->req);
        rc = choose_ports(pr, f, &pr->s.k, err, sizeof(err));
    }
    if (rc == 0) /* failing: the tunnel connections take the gRPC forward */
        fwdpool_new(&pr->pool, &pr->s.k, pr->s.pod.name, pr->s.mgr.container, pr->s.mgr.tunnel_port, r->pool_size,
                    pr->s.timeout_ms);
    pthread_mutex_lock(&r->mu);
    pr->opened = true;
    pr->open_rc = rc;
    snprintf(pr->open_err, sizeof(pr->open_err), "%s", err);
    pthread_mutex_unlock(&r->mu);
    wake(r);
    return NULL;
}

/* pod_read: the pod as read, taken over (zeroed) when not NULL; at_start: first_pods'. */
static int podrun_new(struct redir *r, const char *name, pod_info *pod_read, bool at_start)
{
    struct podrun *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return -ENOMEM;
    pr->r = r;
    pr->at_start = at_start;
    pr->s = SESSION_NONE; /* podrun_free closes it also when the opener refused before opening it */
    if (pod_read) {
        pr->pod_read = *pod_read;
        memset(pod_read, 0, sizeof(*pod_read));
    }
    snprintf(pr->name, sizeof(pr->name), "%s", name);
    int rc = -pthread_create(&pr->opener, NULL, opener_main, pr);
    if (rc < 0) {
        pod_free(&pr->pod_read);
        free(pr);
        return rc;
    }
    pr->opener_started = true;
    list_add_tail(&r->runs, &pr->link);
    return 0;
}

/* Main thread, once opened: a stream thread per port. */
static void podrun_start(struct podrun *pr)
{
    for (size_t i = 0; i < pr->nports; i++) {
        pr->ports[i].pr = pr;
        if (pthread_create(&pr->ports[i].th, NULL, stream_main, &pr->ports[i]) == 0)
            pr->ports[i].started = true;
    }
}

/* Main thread: ends the pod's streams (the manager removes their rules) and frees it. */
static void podrun_free(struct podrun *pr)
{
    struct redir *r = pr->r;
    pthread_mutex_lock(&r->mu);
    pr->stopping = true;
    for (size_t i = 0; i < pr->nports; i++)
        if (pr->ports[i].rc)
            redirect_client_cancel(pr->ports[i].rc);
    bool opened = pr->opened;
    pthread_mutex_unlock(&r->mu);
    if (opened && pr->s.pf) /* wakes threads blocked in portfwd_wait */
        portfwd_cancel(pr->s.pf);
    if (pr->opener_started)
        pthread_join(pr->opener, NULL);
    if (pr->s.pf)
        portfwd_cancel(pr->s.pf);
    for (size_t i = 0; i < pr->nports; i++)
        if (pr->ports[i].started)
            pthread_join(pr->ports[i].th, NULL);
    bridge_free(pr->bridge); /* after the streams: nothing starts a connection any more */
    fwdpool_free(pr->pool);
    rpc_client_free(pr->hc_client);
    session_close(&pr->s);
    pod_free(&pr->pod_read);
    free(pr->ports);
    list_del(&pr->link);
    free(pr);
}

/* ---- the pods of a selector ---- */

/* r->mu held. */
static struct known *known_find(struct redir *r, const char *name)
{
    for (size_t i = 0; i < r->nknown; i++)
        if (strcmp(r->known[i].name, name) == 0)
            return &r->known[i];
    return NULL;
}

static void known_remove(struct redir *r, struct known *k)
{
    free(k->name);
    free(k->created);
    pod_free(&k->pod);
    *k = r->known[--r->nknown];
}

/* r->mu held: the pod's entry, added (ready) when there is none; NULL when out of memory. */
static struct known *known_get(struct redir *r, const char *name)
{
    struct known *k = known_find(r, name);
    struct known *n = k ? NULL : realloc(r->known, (r->nknown + 1) * sizeof(*n));
    if (n) {
        r->known = n;
        k = &n[r->nknown++];
        *k = (struct known){.name = strdup(name), .ready = true};
        if (!k->name)
            r->nknown--, k = NULL;
    }
    return k;
}

/* When a pod refused for its ended debug containers (-EMLINK) is tried
 * again: once its target has run the window without a restart (ephem_ended_wait);
 * 0 while the target is not running: its next start will tell. */
static int64_t crashloop_retry_at(const struct redir *r, const pod_info *p)
{
    const pod_container *t;
    char e[512];
    long wait = p->name && podsel_target(p, r->f->target, &t, e, sizeof e) == 0
                    ? ephem_ended_wait(p, KDIAG_VERSION, t->name, r->ended_window_s)
                    : -1;
    return wait < 0 ? 0 : time_now_ms() + wait * 1000;
}

/* The watch thread: keeps r->known as the API server sees the pods. */
static void on_pod(void *ud, podwatch_event *ev)
{
    struct redir *r = ud;
    pthread_mutex_lock(&r->mu);
    struct known *k = ev->type != PODWATCH_DELETED ? known_get(r, ev->pod.name) : known_find(r, ev->pod.name);
    if (k) {
        /* another pod of that name (deleted and made again, as a StatefulSet's): nothing refused it
         * yet, also when the old one's deletion came in the same batch of events, or not at all
         * (a watch listed afresh) */
        bool other = k->gone || (k->created && ev->pod.created && strcmp(k->created, ev->pod.created) != 0);
        if (other && ev->type != PODWATCH_DELETED)
            k->refused = k->crashloop = k->unready_said = false;
        free(k->created);
        k->created = ev->pod.created ? strdup(ev->pod.created) : NULL;
        k->ready = ev->type != PODWATCH_DELETED && ev->ready;
        k->running = ev->type != PODWATCH_DELETED && pod_is_running(&ev->pod);
        k->gone = ev->type == PODWATCH_DELETED;
        pod_free(&k->pod);
        k->pod = ev->pod;
        memset(&ev->pod, 0, sizeof(ev->pod));
        if (k->crashloop) /* its target restarted again, or has run on */
            k->retry_at = crashloop_retry_at(r, &k->pod);
    }
    pthread_mutex_unlock(&r->mu);
    wake(r);
}

static struct podrun *run_of(struct redir *r, const char *name)
{
    struct podrun *pr;
    list_for_each_entry(pr, &r->runs, link)
        if (strcmp(pr->name, name) == 0)
            return pr;
    return NULL;
}

/* r->mu held: " (WHY)" of a pod that is not ready, from its Ready condition, or "". */
static const char *unready_why(const struct known *k, char *buf, size_t n)
{
    const char *why = k->pod.unready_why;
    snprintf(buf, n, "%s%s%s", why ? " (" : "", why ? why : "", why ? ")" : "");
    return buf;
}

/* Main thread: drops the runs of pods no longer ready, starts runs for new
 * ready pods (every one with --all-pods, else the newest when none runs),
 * says once of a running pod that it waits to be ready (when it would be
 * taken). Returns the poll timeout until a delayed start is due (-1: none). */
static int reconcile(struct redir *r)
{
    struct podrun *pr, *tmp;
    int64_t now = time_now_ms(), due = -1;
    char why[600];
    pthread_mutex_lock(&r->mu);
    list_for_each_entry_safe(pr, tmp, &r->runs, link) {
        struct known *k = known_find(r, pr->name);
        if (k && !k->ready && !pr->stopping && k->running) {
            fprintf(stderr, "pod/%s is no longer ready%s: its redirect is dropped until it is\n", pr->name,
                    unready_why(k, why, sizeof why));
            k->unready_said = true;
        } else if (k && !k->ready && !pr->stopping) {
            fprintf(stderr, "pod/%s is deleted or no longer running: its redirect is dropped\n", pr->name);
        }
        if (k && !k->ready)
            pr->stopping = true; /* freed below, or once its opener ends */
    }
    /* a refused pod stays refused while it is not ready (restarts); one running unready is kept for unready_said */
    for (size_t i = 0; i < r->nknown; i++)
        if (!r->known[i].ready && !r->known[i].running && (r->known[i].gone || !r->known[i].refused) &&
            !run_of(r, r->known[i].name))
            known_remove(r, &r->known[i--]);
    bool none = true;
    list_for_each_entry(pr, &r->runs, link)
        none &= pr->stopping;
    struct known *start[64];
    size_t n = 0;
    struct known *best = NULL;
    for (size_t i = 0; i < r->nknown; i++) {
        struct known *k = &r->known[i];
        if (k->crashloop && k->retry_at && k->retry_at <= now)
            k->refused = k->crashloop = false;
        else if (k->crashloop && k->retry_at)
            due = due < 0 || k->retry_at < due ? k->retry_at : due;
        if (!k->ready || k->refused || run_of(r, k->name))
            continue;
        if (k->not_before > now) {
            due = due < 0 || k->not_before < due ? k->not_before : due;
            continue;
        }
        if (r->all_pods && n < sizeof(start) / sizeof(*start))
            start[n++] = k;
        else if (!best || (k->created && best->created && strcmp(k->created, best->created) > 0))
            best = k;
    }
    for (size_t i = 0; i < r->nknown && (r->all_pods || (none && !best)); i++) {
        struct known *k = &r->known[i];
        if (k->running && !k->ready && !k->refused && !k->unready_said && !run_of(r, k->name)) {
            fprintf(stderr,
                    "pod/%s is running but not ready%s: it is redirected once it is (name it, kubectl diag redir "
                    "pod/%s, to redirect it now)\n",
                    k->name, unready_why(k, why, sizeof why), k->name);
            k->unready_said = true;
        }
    }
    if (!r->all_pods && best && none)
        start[n++] = best;
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "pod/%s is %s: redirecting it\n", start[i]->name,
                start[i]->unready_said ? "ready now" : "running");
        start[i]->unready_said = false;
        if (podrun_new(r, start[i]->name, start[i]->pod.name ? &start[i]->pod : NULL, false) < 0)
            fprintf(stderr, "pod/%s: cannot start a thread: not redirected\n", start[i]->name);
    }
    pthread_mutex_unlock(&r->mu);
    list_for_each_entry_safe(pr, tmp, &r->runs, link) {
        pthread_mutex_lock(&r->mu);
        bool drop = pr->stopping && pr->handled;
        pthread_mutex_unlock(&r->mu);
        if (drop)
            podrun_free(pr);
    }
    return due < 0 ? -1 : (int)(due - now);
}

/* A run's pod or debug container is gone: followed pods are re-attached
 * after REATTACH_DELAY_MS if still ready, else the redirect ends. */
static int on_gone(struct redir *r, struct podrun *pr)
{
    int lg, lt;
    char e[1024];
    portfwd_wait(pr->s.pf, 0, 1, &lg, &lt, e, sizeof(e));
    if (!r->follow) {
        fprintf(stderr, "error: %s; the redirect ended%s\n", e,
                portfwd_pod_went(pr->s.pf) ? ""
                                           : " (run it again for a new debug container; with -l or a workload "
                                             "redir re-attaches by itself)");
        return EXITCODE_FAILURE;
    }
    fprintf(stderr, "%s: its redirect is dropped\n", e);
    pthread_mutex_lock(&r->mu);
    struct known *k = known_find(r, pr->name);
    if (k)
        k->not_before = time_now_ms() + REATTACH_DELAY_MS;
    pthread_mutex_unlock(&r->mu);
    podrun_free(pr);
    return -1;
}

/* A pod that no retry changes: it refuses (-EPERM: hostNetwork, its debug
 * container lacks NET_ADMIN), lacks a Service's named targetPort (-ENXIO),
 * or has FOLLOW_ENDED_MAX debug containers that ended (-EMLINK). */
static bool refused_for_good(int rc)
{
    return rc == -EPERM || rc == -ENXIO || rc == -EMLINK;
}

/* Following: says that the run waits for (another) pod to be ready. */
static void say_waiting(const struct redir *r, const char *which)
{
    if (r->workload)
        fprintf(stderr, "waiting for %s pod of %s (selector %s) to be ready (Ctrl-C to stop)\n", which,
                r->workload, r->selector);
    else
        fprintf(stderr, "waiting for %s pod of -l %s to be ready (Ctrl-C to stop)\n", which, r->selector);
}

/* r->mu held: whether a pod other than pr's is redirected or about to be. */
static bool other_pod(struct redir *r, const struct podrun *pr)
{
    const struct podrun *o;
    list_for_each_entry(o, &r->runs, link)
        if (o != pr && !o->stopping)
            return true;
    for (size_t i = 0; i < r->nknown; i++)
        if (r->known[i].ready && !r->known[i].refused && strcmp(r->known[i].name, pr->name) != 0)
            return true;
    return false;
}

/* Main thread: starts the streams of runs whose opener finished. An exit
 * code when the redirect cannot go on, else -1. */
static int take_opened(struct redir *r)
{
    struct podrun *pr, *tmp;
    list_for_each_entry_safe(pr, tmp, &r->runs, link) {
        pthread_mutex_lock(&r->mu);
        bool now = pr->opened && !pr->handled;
        pr->handled |= now;
        bool dropped = pr->stopping, failed = pr->failed && !pr->stopping;
        if (failed) {
            struct known *k = known_find(r, pr->name);
            if (k)
                k->not_before = time_now_ms() + OPEN_RETRY_MS;
            pr->stopping = true;
        }
        pthread_mutex_unlock(&r->mu);
        if (failed) {
            fprintf(stderr, "pod/%s: cannot redirect: %s; trying again in %d s\n", pr->name, pr->fail_msg,
                    OPEN_RETRY_MS / 1000);
            podrun_free(pr);
            continue;
        }
        if (!now)
            continue;
        if (dropped) {
            podrun_free(pr);
        } else if (pr->open_rc == 0) {
            r->ever_up = true;
            podrun_start(pr);
        } else if (!r->follow || (!r->ever_up && pr->at_start && pr->open_rc != -EMLINK &&
                                  pr->link.next == &r->runs && pr->link.prev == &r->runs)) {
            /* the only pod the run started with cannot be redirected: said at once, unless it is
             * tried again later (its ended debug containers: the line says when); a pod the watch
             * delivered later is one of those followed */
            return exitcode_report(stderr, pr->open_rc, pr->open_err);
        } else {
            bool refused = refused_for_good(pr->open_rc), crashloop = pr->open_rc == -EMLINK;
            if (crashloop) /* the message says when it is tried again */
                fprintf(stderr, "pod/%s: cannot redirect: %s\n", pr->name, pr->open_err);
            else if (refused)
                fprintf(stderr, "pod/%s: cannot redirect: %s; not tried again\n", pr->name, pr->open_err);
            else
                fprintf(stderr, "pod/%s: cannot redirect: %s; trying again in %d s\n", pr->name, pr->open_err,
                        OPEN_RETRY_MS / 1000);
            pthread_mutex_lock(&r->mu);
            /* a refusal is kept also before the watch's first word on the pod (an entry
             * never started); a retry only for a pod the watch reported */
            struct known *k = refused ? known_get(r, pr->name) : known_find(r, pr->name);
            if (k) {
                k->not_before = time_now_ms() + OPEN_RETRY_MS;
                k->refused = refused;
                k->crashloop = crashloop; /* until the watch tells more: a window from now */
                k->retry_at = crashloop ? time_now_ms() + r->ended_window_s * 1000 : 0;
            }
            bool waiting = refused && !crashloop && !other_pod(r, pr);
            pthread_mutex_unlock(&r->mu);
            podrun_free(pr);
            if (waiting)
                say_waiting(r, "another");
        }
    }
    return -1;
}

/* ---- the run ---- */

/* Waits for Ctrl-C / SIGTERM (exit 0), a fatal error (exit 1), and with a
 * named pod for it to go (exit 1); meanwhile starts, follows and drops runs. */
static int wait_for_end(struct redir *r, int sfd)
{
    for (;;) {
        int code = take_opened(r);
        if (code >= 0)
            return code;
        int timeout = r->follow ? reconcile(r) : -1;
        if (top_up_all(r) && (timeout < 0 || timeout > SPARE_RETRY_MS))
            timeout = SPARE_RETRY_MS;
        int held = flush_unbridged(r, false);
        if (held >= 0 && (timeout < 0 || timeout > held))
            timeout = held;
        size_t n = 2;
        struct podrun *pr, *ready[256];
        struct pollfd pf[2 + 256] = {{sfd, POLLIN, 0}, {r->wake_efd, POLLIN, 0}};
        list_for_each_entry(pr, &r->runs, link)
            if (pr->handled && !pr->stopping && n < 2 + 256) {
                ready[n - 2] = pr;
                pf[n++] = (struct pollfd){portfwd_gone_fd(pr->s.pf), POLLIN, 0};
            }
        if (poll(pf, n, timeout) < 0 && errno != EINTR)
            return EXITCODE_FAILURE;
        if (pf[0].revents) {
            struct signalfd_siginfo si;
            (void)!read(sfd, &si, sizeof(si));
            fprintf(stderr, "stopping%s\n", list_empty(&r->runs) ? "" : ": removing the redirects");
            return EXITCODE_OK;
        }
        for (size_t i = 2; i < n; i++)
            if (pf[i].revents && (code = on_gone(r, ready[i - 2])) >= 0)
                return code;
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

/* The pods to start with: the named one, the newest ready one of the
 * selector, or with --all-pods every ready one (a Service sends them
 * traffic). Following, none that is ready is no failure: said, and the
 * watch delivers them, saying which run but are not ready (docs/redirect.md). */
static int first_pods(struct redir *r, char *err, size_t errlen)
{
    const flags *f = r->f;
    pod_info one, *pods = NULL;
    size_t n = 0;
    int rc;
    if (f->npods) {
        rc = podrun_new(r, f->pods[0].value, NULL, true);
    } else if (!r->selector) { /* says what to give */
        rc = podsel_one(&r->k, NULL, NULL, NULL, f->timeout_ms, &one, err, errlen);
    } else if ((rc = podsel_running(&r->k, r->selector, r->workload, SIZE_MAX, f->timeout_ms, &pods, &n, err,
                                    errlen)) == -ESRCH) {
        fprintf(stderr, "%s; waiting for one to run (Ctrl-C to stop)\n", err);
        *err = 0;
        rc = 0;
    } else if (rc == 0) {
        const pod_info *newest = pod_newest_ready(pods, n);
        if (!r->ns[0] && pods[0].ns)
            snprintf(r->ns, sizeof(r->ns), "%s", pods[0].ns);
        if (!newest) /* they run, none is ready: the watch's lines say why */
            say_waiting(r, "a");
        for (size_t i = 0; i < n && rc == 0; i++)
            if ((r->all_pods && pod_is_ready(&pods[i])) || &pods[i] == newest)
                rc = podrun_new(r, pods[i].name, &pods[i], true);
        pod_list_free(pods, n);
    }
    if (rc < 0 && !*err)
        snprintf(err, errlen, "cannot start a thread: %s", strerror(-rc));
    return rc;
}

static void stop_all(struct redir *r)
{
    podwatch_free(r->watch); /* no callback after this */
    r->watch = NULL;
    struct podrun *pr;
    bool opening = false;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    list_for_each_entry(pr, &r->runs, link)
        opening |= !pr->opened;
    pthread_mutex_unlock(&r->mu);
    /* an opener may wait for a debug container to start, up to --timeout:
     * its kubectl calls end now (a stop signal means now) */
    if (opening)
        kube_stop_all();
    while ((pr = list_first_entry_or_null(&r->runs, struct podrun, link)))
        podrun_free(pr);
    while (r->nknown)
        known_remove(r, &r->known[0]);
    free(r->known);
    while (r->nmany_ports)
        free(r->many_ports[--r->nmany_ports]);
    free(r->many_ports);
}

/* Spare tunnel connections per stream: KDIAG_REDIR_SPARES (0-4, for the benchmark) or SPARES_DEFAULT. */
static int spares_per_stream(void)
{
    const char *v = getenv("KDIAG_REDIR_SPARES");
    long n = v && *v ? strtol(v, NULL, 10) : SPARES_DEFAULT;
    return n < 0 ? 0 : n > CONTRACT_TUNNEL_SPARES_MAX ? CONTRACT_TUNNEL_SPARES_MAX : (int)n;
}

/* The window of FOLLOW_ENDED_MAX: KDIAG_REDIR_ENDED_WINDOW (seconds, for the tests) or FOLLOW_ENDED_WINDOW_S. */
static long ended_window(void)
{
    const char *v = getenv("KDIAG_REDIR_ENDED_WINDOW");
    long n = v && *v ? strtol(v, NULL, 10) : FOLLOW_ENDED_WINDOW_S;
    return n < 1 ? FOLLOW_ENDED_WINDOW_S : n;
}

/* The most tunnel forwards per pod: KDIAG_REDIR_POOL (0-16, for the benchmark) or POOL_DEFAULT. */
static size_t pool_size(void)
{
    const char *v = getenv("KDIAG_REDIR_POOL");
    long n = v && *v ? strtol(v, NULL, 10) : POOL_DEFAULT;
    return n < 0 ? 0 : n > FWDPOOL_MAX ? FWDPOOL_MAX : (size_t)n;
}

int redir_main(const flags *f, const kube *k)
{
    struct redir r = {.f = f, .k = *k, .wake_efd = -1, .pool_size = pool_size(), .spares = spares_per_stream()};
    char err[2048] = "";
    int code, rc;
    list_init(&r.runs);
    r.ended_window_s = ended_window();
    if (k->ns) /* else the pods' own: podwatch need not ask kubectl for the context's */
        snprintf(r.ns, sizeof(r.ns), "%s", k->ns);
    if (f->outgoing && f->nports == 0) {
        snprintf(err, sizeof(err), "kubectl diag redir --outgoing needs the ports to catch, e.g. --outgoing 80:8080");
        return exitcode_report(stderr, -EINVAL, err);
    }
    for (size_t i = 0; f->outgoing && i < f->nports; i++)
        if (f->ports[i].pod_name[0]) { /* a name is a port of the pod's own; --outgoing catches others' */
            snprintf(err, sizeof(err),
                     "kubectl diag redir --outgoing catches the ports the pod connects to, which have no name in it: "
                     "give \"%s\" as a number, e.g. --outgoing 80:8080",
                     f->ports[i].pod_name);
            return exitcode_report(stderr, -EINVAL, err);
        }
    if (f->nports > CONTRACT_STREAMS_MAX) { /* the manager would refuse the streams beyond */
        snprintf(err, sizeof(err),
                 "kubectl diag redir takes at most %d ports at once (%zu given): each port is a stream of the pod's "
                 "manager, which serves at most %d streams; redirect fewer ports",
                 CONTRACT_STREAMS_MAX, f->nports, CONTRACT_STREAMS_MAX);
        return exitcode_report(stderr, -EINVAL, err);
    }
    r.all_pods = f->all_pods;
    pthread_mutex_init(&r.mu, NULL);
    /* From here every thread (ours and gRPC's) inherits blocked SIGINT/SIGTERM;
     * the main thread takes them from a signalfd. */
    sigset_t ss;
    sig_block_stop(&ss);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    r.wake_efd = eventfd(0, EFD_CLOEXEC);
    rc = sfd < 0 || r.wake_efd < 0 ? -errno : 0;
    if (rc < 0)
        snprintf(err, sizeof(err), "%s", strerror(-rc));
    if (rc == 0 && (rc = redirect_client_session_id(r.sid)) < 0)
        snprintf(err, sizeof(err), "cannot make a session id: %s", strerror(-rc));
    if (rc == 0 && !f->npods && f->nworkloads) {
        char *obj = NULL;
        r.workload = f->workloads[0].value;
        rc = podsel_workload_json(&r.k, r.workload, f->timeout_ms, &r.selector, &obj, err, sizeof(err));
        if (rc == 0 && (rc = podsel_service_ports(obj, &r.svc_ports, &r.nsvc_ports)) < 0)
            snprintf(err, sizeof(err), "out of memory");
        free(obj);
    } else if (rc == 0 && !f->npods && f->nlabels && !(r.selector = strdup(f->labels[0].value))) {
        rc = -ENOMEM;
        snprintf(err, sizeof(err), "out of memory");
    }
    r.follow = r.selector != NULL;
    if (rc == 0 && r.follow)
        rc = podwatch_check_selector(r.selector, r.workload ? r.workload : "-l", err, sizeof(err));
    if (rc == 0)
        rc = first_pods(&r, err, sizeof(err));
    if (rc == 0 && r.follow)
        rc = podwatch_new(&r.watch, &r.k, r.ns[0] ? r.ns : NULL, r.selector, on_pod, &r, err, sizeof(err));
    code = rc < 0 ? exitcode_report(stderr, rc, err) : wait_for_end(&r, sfd);
    stop_all(&r);
    flush_unbridged(&r, true); /* the last ones held back are not lost with the run */
    if (sfd >= 0)
        close(sfd);
    if (r.wake_efd >= 0)
        close(r.wake_efd);
    free(r.selector);
    free(r.svc_ports);
    pthread_mutex_destroy(&r.mu);
    return code;
}
