/* rpc_server — see rpc_server.h and docs/rpc.md.
 *
 * One completion queue, polled by one loop thread, carries every event: new
 * calls (grpc_server_request_call), each call's RECV_CLOSE_ON_SERVER (the
 * cancellation signal) and the ops handler threads start. The loop never
 * blocks: it wakes the handler waiting for an op (each call has its own
 * lock and condition), writes a call's eventfd on cancellation, and answers
 * rejected calls (auth, unknown method, overload) with an async batch.
 * Handlers run on worker threads (unary) or a thread per call (streams).
 * Connections come from our own listener (rpc_accept.h), which bounds them
 * and hands each to core once it has sent the HTTP/2 preface. */
#include "rpc_server.h"

#include <errno.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/addr-util.h"
#include "basic/time-util.h"
#include "rpc_accept.h"
#include "rpc_common.h"
#include "rpc_log.h"
#include "rpc_server-internal.h"

#define RPC_PENDING_REQUESTS 8         /* grpc_server_request_call kept outstanding */
#define RPC_REARM_RETRY_MS 100         /* retry when fewer are outstanding */
#define RPC_REARM_REPORT_MS 10000      /* repeat the complaint while it lasts */
#define RPC_SERVER_MEMORY (128u << 20) /* gRPC core's buffers, all connections together */

typedef enum { TAG_NEW, TAG_OP, TAG_CLOSE, TAG_REJECT, TAG_SHUTDOWN } tag_kind;

typedef struct {
    tag_kind kind;
    void *owner;
} rpc_tag;

/* One in-flight op a handler thread waits for; lives on its stack. */
typedef struct {
    rpc_tag tag;
    bool done, ok; /* under the call's mu */
} rpc_op_wait;

typedef struct {
    char *path;
    rpc_kind kind;
    rpc_handler_fn fn;
    void *ud;
    bool open; /* served without the token (rpc_server_add_open) */
} rpc_method;

struct rpc_call {
    rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    rpc_tag new_tag, close_tag, reject_tag;
    pthread_mutex_t mu; /* the ops this call's handler waits for */
    pthread_cond_t cv;
    int close_cancelled; /* written by core for RECV_CLOSE_ON_SERVER */
    atomic_bool cancelled;
    atomic_int refs; /* handler/reject side + close op */
    int cancel_fd;
    const rpc_method *m;
    char *method, *peer, *msg;
    int conn_fd;  /* gRPC's fd of the call's connection (rpc_accept's hand-over), or -1 */
    char **md_kv; /* key0, val0, key1, ... NUL-terminated copies */
    size_t md_n;
    bool authed; /* the peer proved the token (or none is needed) */
    bool sent_md, half_closed, got_unary;
    bool ended;                /* the status went (rpc_call_end) */
    grpc_status_code end_code; /* which */
    uint8_t *resp;             /* unary response, sent with the status */
    size_t resp_len;
    grpc_slice status_slice;
    bool has_status_slice;
    int64_t start_ms;
    struct rpc_call *next; /* unary work queue */
};

struct rpc_server {
    rpc_server_opts o;
    char *bind, *auth; /* auth = "Bearer <token>" or NULL */
    rpc_method *methods;
    size_t n_methods;
    grpc_server *server;
    grpc_server_credentials *creds; /* insecure: for the connections rpc_accept hands over */
    rpc_accept *acc;
    grpc_completion_queue *cq;
    pthread_t loop, *workers;
    int n_workers;
    bool started, stopped;
    rpc_tag shutdown_tag;
    atomic_int fail_requests; /* test seam */

    /* loop thread only */
    bool short_of_requests, deaf_reported;
    int64_t short_since_ms, short_reported_ms;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* server state changes */
    rpc_call *q_head, *q_tail;
    bool shutting_down, shutdown_seen, workers_stop;
    int live_calls, pending_requests, active_streams; /* shutdown waits for 0, 0, 0 */
};

/* Binary ("-bin") values stop at their first NUL: nothing here reads them. */
static char *slice_strdup(grpc_slice s)
{
    return strndup((const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
}

int rpc_server_new(rpc_server **ret, const rpc_server_opts *opts)
{
    *ret = NULL;
    rpc_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->o = *opts;
    if (s->o.keepalive_ms <= 0)
        s->o.keepalive_ms = RPC_KEEPALIVE_MS;
    if (s->o.max_msg_bytes <= 0)
        s->o.max_msg_bytes = 4 << 20;
    if (s->o.unary_workers <= 0)
        s->o.unary_workers = 4;
    if (s->o.max_streams <= 0)
        s->o.max_streams = 256;
    if (s->o.max_conns <= 0)
        s->o.max_conns = RPC_MAX_CONNS;
    if (s->o.memory == 0)
        s->o.memory = RPC_SERVER_MEMORY;
    if (s->o.preface_ms <= 0)
        s->o.preface_ms = RPC_PREFACE_MS;
    s->bind = strdup(opts->bind ? opts->bind : "127.0.0.1:0");
    if (opts->token && asprintf(&s->auth, "Bearer %s", opts->token) < 0)
        s->auth = NULL;
    if (!s->bind || (opts->token && !s->auth)) {
        free(s->bind);
        free(s);
        return -ENOMEM;
    }
    s->o.bind = s->bind;
    s->o.token = NULL;
    s->shutdown_tag.kind = TAG_SHUTDOWN;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    rpc_ref();
    rpc_log_capture_grpc();
    *ret = s;
    return 0;
}

static int method_add(rpc_server *s, const char *method, rpc_kind kind, rpc_handler_fn fn, void *ud, bool open)
{
    if (s->started || !method || method[0] != '/' || !fn)
        return -EINVAL;
    for (size_t i = 0; i < s->n_methods; i++)
        if (!strcmp(s->methods[i].path, method))
            return -EEXIST;
    rpc_method *m = realloc(s->methods, (s->n_methods + 1) * sizeof *m);
    if (!m)
        return -ENOMEM;
    s->methods = m;
    m = &s->methods[s->n_methods];
    if (!(m->path = strdup(method)))
        return -ENOMEM;
    m->kind = kind;
    m->fn = fn;
    m->ud = ud;
    m->open = open;
    s->n_methods++;
    return 0;
}

int rpc_server_add(rpc_server *s, const char *method, rpc_kind kind, rpc_handler_fn fn, void *ud)
{
    return method_add(s, method, kind, fn, ud, false);
}

int rpc_server_add_open(rpc_server *s, const char *method, rpc_handler_fn fn, void *ud)
{
    return method_add(s, method, RPC_UNARY, fn, ud, true);
}

static const rpc_method *method_find(const rpc_server *s, const char *path)
{
    for (size_t i = 0; i < s->n_methods; i++)
        if (!strcmp(s->methods[i].path, path))
            return &s->methods[i];
    return NULL;
}

void rpc_server_fail_next_requests(rpc_server *s, int n)
{
    atomic_store(&s->fail_requests, n);
}

static void call_free(rpc_call *c)
{
    rpc_server *s = c->srv;
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->has_status_slice)
        grpc_slice_unref(c->status_slice);
    if (c->cancel_fd >= 0)
        close(c->cancel_fd);
    for (size_t i = 0; i < 2 * c->md_n; i++)
        free(c->md_kv[i]);
    free(c->md_kv);
    free(c->method);
    free(c->peer);
    free(c->msg);
    free(c->resp);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    pthread_mutex_lock(&s->mu);
    s->live_calls--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void call_unref(rpc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

/* Asks core for one more call. Called with s->mu held. */
static int request_one(rpc_server *s)
{
    int n = atomic_load(&s->fail_requests);
    if (n > 0 && atomic_compare_exchange_strong(&s->fail_requests, &n, n - 1))
        return -ENOMEM;
    rpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->srv = s;
    c->cancel_fd = -1;
    c->new_tag = (rpc_tag){TAG_NEW, c};
    c->close_tag = (rpc_tag){TAG_CLOSE, c};
    c->reject_tag = (rpc_tag){TAG_REJECT, c};
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, &c->new_tag) != GRPC_CALL_OK) {
        grpc_call_details_destroy(&c->details);
        grpc_metadata_array_destroy(&c->md);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return -EIO;
    }
    s->live_calls++;
    s->pending_requests++;
    return 0;
}

/* Keeps RPC_PENDING_REQUESTS requests outstanding (loop thread). A server
 * with none left hears no call at all, so a shortfall is said on stderr, the
 * loop retries every RPC_REARM_RETRY_MS, and the recovery is said too. */
static void requests_refill(rpc_server *s)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (!s->shutting_down && s->pending_requests < RPC_PENDING_REQUESTS && (rc = request_one(s)) == 0)
        ;
    int pending = s->pending_requests;
    bool down = s->shutting_down;
    pthread_mutex_unlock(&s->mu);
    if (rc < 0 && !down) {
        bool deaf = pending == 0 && !s->deaf_reported; /* the moment it stops hearing anything */
        if (!s->short_of_requests || deaf || time_now_ms() - s->short_reported_ms >= RPC_REARM_REPORT_MS) {
            rpc_log("cannot wait for new calls (%s): %d of %d requests outstanding%s; retrying every %d ms",
                    strerror(-rc), pending, RPC_PENDING_REQUESTS, pending ? "" : ", no call can arrive",
                    RPC_REARM_RETRY_MS);
            s->short_reported_ms = time_now_ms();
            s->deaf_reported |= pending == 0;
        }
        if (!s->short_of_requests)
            s->short_since_ms = s->short_reported_ms;
        s->short_of_requests = true;
    } else if (s->short_of_requests && !down) {
        rpc_log("waiting for new calls again (%d requests outstanding) after %lld ms", pending,
                (long long)(time_now_ms() - s->short_since_ms));
        s->short_of_requests = s->deaf_reported = false;
    }
}

/* Says how a call ended: calls that failed on the server's side or were
 * refused always, others when verbose. Whatever the peer chose is escaped;
 * lines about peers without the token are rate-limited (rpc_log.h). */
static void call_log(rpc_call *c, grpc_status_code code)
{
    rpc_server *s = c->srv;
    bool notable = code == GRPC_STATUS_INTERNAL || code == GRPC_STATUS_UNKNOWN ||
                   code == GRPC_STATUS_UNAUTHENTICATED || code == GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (!s->o.verbose && !notable)
        return;
    char method[RPC_LOG_FIELD], peer[RPC_LOG_FIELD], msg[2 * RPC_LOG_FIELD];
    rpc_log_escape(method, sizeof method, GRPC_SLICE_START_PTR(c->details.method),
                   GRPC_SLICE_LENGTH(c->details.method));
    rpc_log_escape(peer, sizeof peer, c->peer, c->peer ? strlen(c->peer) : 0);
    rpc_log_escape(msg, sizeof msg, c->msg, c->msg ? strlen(c->msg) : 0);
    long long ms = time_now_ms() - c->start_ms;
    if (c->authed)
        rpc_log("%s from %s: status %d%s%s (%lld ms)", method, peer, (int)code, c->msg ? ": " : "",
                c->msg ? msg : "", ms);
    else
        rpc_log_noise("%s from %s: status %d%s%s (%lld ms)", method, peer, (int)code, c->msg ? ": " : "",
                      c->msg ? msg : "", ms);
}

/* Finishes a call the loop will not hand to a handler; never blocks. */
#define call_reject(c, code, ...) (rpc_call_set_message((c), __VA_ARGS__), call_reject_now((c), (code)))
static void call_reject_now(rpc_call *c, grpc_status_code code)
{
    c->status_slice = grpc_slice_from_copied_string(c->msg ? c->msg : "");
    c->has_status_slice = true;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = code;
    ops[1].data.send_status_from_server.status_details = &c->status_slice;
    call_log(c, code);
    if (grpc_call_start_batch(c->call, ops, 2, &c->reject_tag, NULL) != GRPC_CALL_OK)
        call_unref(c);
}

static bool auth_ok(const rpc_server *s, const rpc_call *c)
{
    if (!s->auth)
        return true;
    size_t want = strlen(s->auth);
    for (size_t i = 0; i < c->md.count; i++) {
        grpc_slice k = c->md.metadata[i].key, v = c->md.metadata[i].value;
        if (GRPC_SLICE_LENGTH(k) != 13 || memcmp(GRPC_SLICE_START_PTR(k), "authorization", 13))
            continue;
        if (GRPC_SLICE_LENGTH(v) != want)
            return false;
        const uint8_t *p = GRPC_SLICE_START_PTR(v);
        unsigned char diff = 0; /* constant time over the token's length */
        for (size_t j = 0; j < want; j++)
            diff |= p[j] ^ (uint8_t)s->auth[j];
        return diff == 0;
    }
    return false;
}

static void *stream_main(void *arg);

/* Gives a stream its own thread, or refuses it when too many are open. */
static void call_start_stream(rpc_server *s, rpc_call *c)
{
    pthread_mutex_lock(&s->mu);
    bool full = s->active_streams >= s->o.max_streams;
    if (!full)
        s->active_streams++;
    pthread_mutex_unlock(&s->mu);
    if (full) {
        call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many streams open (limit %d)", s->o.max_streams);
        return;
    }
    pthread_t t;
    pthread_attr_t attr; /* detached: shutdown waits for active_streams == 0 */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, stream_main, c);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        pthread_mutex_lock(&s->mu);
        s->active_streams--;
        pthread_mutex_unlock(&s->mu);
        call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a thread for %s", c->method);
    }
}

/* Queues a unary call for the worker pool; false when shutting down. */
static bool call_queue_unary(rpc_server *s, rpc_call *c)
{
    pthread_mutex_lock(&s->mu);
    bool down = s->shutting_down;
    if (!down) {
        if (s->q_tail)
            s->q_tail->next = c;
        else
            s->q_head = c;
        s->q_tail = c;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return !down;
}

/* Auth before method lookup (an unknown method is not revealed; only an open
 * method is served without the token, and its call stays unauthenticated:
 * its connection is not marked, its log lines are noise), then hands the call
 * to a worker or a stream thread. */
static void call_route(rpc_server *s, rpc_call *c)
{
    if (!c->method || c->cancel_fd < 0 || !c->md_kv) {
        call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory or file descriptors");
        return;
    }
    if (!auth_ok(s, c)) {
        const rpc_method *m = method_find(s, c->method);
        if (!m || !m->open) {
            call_reject(c, GRPC_STATUS_UNAUTHENTICATED,
                        "missing or wrong token: send metadata 'authorization: Bearer <token>' "
                        "with the token kdiag-manager printed");
            return;
        }
        c->m = m;
    } else {
        c->authed = true;
        if (s->auth && c->conn_fd >= 0)
            rpc_accept_authed(s->acc, c->conn_fd); /* its connection is never closed to make room */
        c->m = method_find(s, c->method);
    }
    if (!c->m) {
        call_reject(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", c->method);
        return;
    }
    if (c->m->kind != RPC_UNARY)
        call_start_stream(s, c);
    else if (!call_queue_unary(s, c))
        call_reject(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
}

/* The peer's address, and in *fd the connection's fd: core names a connection
 * handed to it by fd "fd:N"; the fd lives as long as the call's connection. */
static char *call_peer(grpc_call *call, int *fd)
{
    char *p = grpc_call_get_peer(call), *out = NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (!p || sscanf(p, "fd:%d", fd) != 1)
        *fd = -1;
    if (*fd >= 0 && getpeername(*fd, (struct sockaddr *)&ss, &len) == 0) {
        char a[ADDR_STR_MAX];
        out = strdup(addr_format((struct sockaddr *)&ss, a, sizeof a));
    }
    if (!out && p)
        out = strdup(p);
    gpr_free(p);
    return out;
}

/* A new call arrived (loop thread): copy what handlers read, start the close
 * op that reports cancellation, route it. */
static void call_accept(rpc_server *s, rpc_call *c)
{
    c->start_ms = time_now_ms();
    atomic_init(&c->refs, 2);
    c->method = slice_strdup(c->details.method);
    c->peer = call_peer(c->call, &c->conn_fd);
    c->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->md_kv = calloc(2 * c->md.count + 1, sizeof *c->md_kv);
    if (c->md_kv)
        for (; c->md_n < c->md.count; c->md_n++) {
            c->md_kv[2 * c->md_n] = slice_strdup(c->md.metadata[c->md_n].key);
            c->md_kv[2 * c->md_n + 1] = slice_strdup(c->md.metadata[c->md_n].value);
        }

    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK)
        atomic_fetch_sub(&c->refs, 1);
    call_route(s, c);
}

static void on_new_call(rpc_server *s, rpc_call *c, bool ok)
{
    pthread_mutex_lock(&s->mu);
    s->pending_requests--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    requests_refill(s);
    if (ok) {
        call_accept(s, c);
    } else { /* server shutting down: the call never existed */
        atomic_init(&c->refs, 1);
        call_unref(c);
    }
}

/* Wakes the handler thread waiting for this op; c is not touched after. */
static void on_op_done(rpc_op_wait *w, bool ok)
{
    rpc_call *c = w->tag.owner;
    pthread_mutex_lock(&c->mu);
    w->ok = ok;
    w->done = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_close(rpc_call *c)
{
    if (c->close_cancelled) {
        atomic_store(&c->cancelled, true);
        if (c->cancel_fd >= 0)
            (void)eventfd_write(c->cancel_fd, 1); /* cannot overflow: written once */
    }
    call_unref(c);
}

/* How long the loop may block: until the next retry when short of requests
 * for calls, until the noise summary is due, else for ever. */
static gpr_timespec loop_deadline(rpc_server *s)
{
    int64_t ms = rpc_log_noise_tick();
    if (s->short_of_requests && (ms < 0 || ms > RPC_REARM_RETRY_MS))
        ms = RPC_REARM_RETRY_MS;
    if (ms < 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void *loop_main(void *arg)
{
    rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, loop_deadline(s), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_QUEUE_TIMEOUT && s->short_of_requests)
            requests_refill(s);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        rpc_tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW: on_new_call(s, t->owner, ev.success); break;
        case TAG_OP: on_op_done((rpc_op_wait *)t, ev.success); break;
        case TAG_CLOSE: on_close(t->owner); break;
        case TAG_REJECT: call_unref(t->owner); break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->mu);
            s->shutdown_seen = true;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            break;
        }
    }
    return NULL;
}

/* Starts a batch on a handler's call and waits for it. */
static bool call_batch(rpc_call *c, grpc_op *ops, size_t n)
{
    rpc_op_wait w = {{TAG_OP, c}, false, false};
    if (grpc_call_start_batch(c->call, ops, n, &w.tag, NULL) != GRPC_CALL_OK)
        return false;
    pthread_mutex_lock(&c->mu);
    while (!w.done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return w.ok;
}

/* Sends what the handler left (initial metadata, the unary response) with
 * the status, in one batch. */
static void call_finish(rpc_call *c, grpc_status_code code)
{
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_md)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_byte_buffer *bb = NULL;
    if (code == GRPC_STATUS_OK && c->resp) {
        bb = rpc_bb_from(c->resp, c->resp_len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    grpc_slice details = grpc_slice_from_copied_string(c->msg ? c->msg : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = &details;
    call_batch(c, ops, n);
    grpc_slice_unref(details);
    if (bb)
        grpc_byte_buffer_destroy(bb);
}

static void call_run(rpc_call *c)
{
    rpc_server *s = c->srv;
    grpc_status_code code;
    pthread_mutex_lock(&s->mu);
    bool down = s->shutting_down;
    pthread_mutex_unlock(&s->mu);
    if (down) {
        code = GRPC_STATUS_UNAVAILABLE;
        rpc_call_set_message(c, "server is shutting down");
    } else {
        code = c->m->fn(c, c->m->ud);
    }
    if (code == GRPC_STATUS_OK && c->m->kind == RPC_UNARY && !c->resp) {
        code = GRPC_STATUS_INTERNAL;
        rpc_call_set_message(c, "%s: handler returned no response", c->method);
    }
    if (c->ended)
        code = c->end_code;
    else
        call_finish(c, code);
    call_log(c, atomic_load(&c->cancelled) && code == GRPC_STATUS_OK ? GRPC_STATUS_CANCELLED : code);
    call_unref(c);
}

static void *worker_main(void *arg)
{
    rpc_server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->q_head && !s->workers_stop)
            pthread_cond_wait(&s->cv, &s->mu);
        rpc_call *c = s->q_head;
        if (!c)
            break;
        s->q_head = c->next;
        if (!s->q_head)
            s->q_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        call_run(c);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void *stream_main(void *arg)
{
    rpc_call *c = arg;
    rpc_server *s = c->srv;
    call_run(c);
    pthread_mutex_lock(&s->mu); /* s is not touched after the unlock below */
    s->active_streams--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* rpc_accept's hand-over: the connection sent the HTTP/2 preface. */
static void server_take_fd(int fd, void *ud)
{
    rpc_server *s = ud;
    grpc_server_add_channel_from_fd(s->server, fd, s->creds);
}

/* Creates the core server and binds our own listener (core's has no bound on
 * connections, rpc_accept.h); the port, or -EADDRNOTAVAIL. */
static int server_bind(rpc_server *s)
{
    /* What gRPC core may hold for all connections together. Each connection's
     * receive window is max(16 MiB, 2 x the BDP it measures) while the quota
     * is under 20% used, then shrinks towards the BDP, and to nothing at
     * 100%; past it core cancels streams ("Buffers full"). Six 128 MiB
     * copies into one pod once outgrew it in CI: CopyTo's clients now keep at
     * most their window (8 MiB) unwritten (docs/cp.md). */
    grpc_resource_quota *rq = grpc_resource_quota_create("kdiag-manager");
    grpc_resource_quota_resize(rq, s->o.memory);
    grpc_arg args[] = {
        RPC_ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, s->o.max_msg_bytes),
        RPC_ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, s->o.keepalive_ms),
        RPC_ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, s->o.keepalive_ms),
        RPC_ARG_INT(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        RPC_ARG_INT(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        /* clients ping every 5 s: allow that and more, without strikes */
        RPC_ARG_INT(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000),
        RPC_ARG_INT(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0),
        RPC_ARG_INT(GRPC_ARG_MAX_CONCURRENT_STREAMS, 4096),
        /* BDP probing (core's default, said here on purpose): the receive
         * window grows with the bandwidth-delay product. Without it core 1.51
         * keeps the connection's window at 64 KiB (GRPC_ARG_HTTP2_STREAM_
         * LOOKAHEAD_BYTES only sets the streams'), one CopyTo chunk per round
         * trip: 64 MiB into a pod 50 ms away took 26.8 s, 1.4 s with probing
         * (kubectl cp 0.9 s). Peers without the token get at most a window
         * each buffered (test_hostile), all of them at most the quota. */
        RPC_ARG_INT(GRPC_ARG_HTTP2_BDP_PROBE, 1),
        /* Frames as large as the window, not 16 KiB: a CopyTo's 128 KiB
         * chunks cross kubectl port-forward in fewer, larger writes (cp into
         * a pod on kubesim: 65 -> 80-87 MB/s). The window, not the frame,
         * bounds what a peer gets buffered. */
        RPC_ARG_INT(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 1 << 20),
        {GRPC_ARG_POINTER, (char *)GRPC_ARG_RESOURCE_QUOTA, {.pointer = {rq, grpc_resource_quota_arg_vtable()}}},
    };
    grpc_channel_args ca = {sizeof args / sizeof *args, args};
    s->server = grpc_server_create(&ca, NULL);
    grpc_resource_quota_unref(rq); /* the server holds its own reference */
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    s->creds = grpc_insecure_server_credentials_create();
    rpc_accept_opts ao = {s->bind, s->o.max_conns, s->o.preface_ms, server_take_fd, s};
    int p, rc = rpc_accept_new(&s->acc, &ao, &p);
    return rc < 0 ? rc : p;
}

/* Undoes server_bind when nothing was started: the queue drains at once. */
static void server_unbind(rpc_server *s)
{
    rpc_accept_free(s->acc);
    s->acc = NULL;
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    s->server = NULL;
    s->cq = NULL;
}

/* The first requests for calls and the unary workers; a server that cannot
 * have them fails here, loudly, instead of starting deaf. */
static int server_staff(rpc_server *s)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (s->pending_requests < RPC_PENDING_REQUESTS && (rc = request_one(s)) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        return rc;
    s->workers = calloc((size_t)s->o.unary_workers, sizeof *s->workers);
    if (!s->workers)
        return -ENOMEM;
    for (int i = 0; i < s->o.unary_workers; i++)
        if ((rc = -pthread_create(&s->workers[s->n_workers], NULL, worker_main, s)) == 0)
            s->n_workers++;
    return s->n_workers > 0 ? 0 : rc;
}

int rpc_server_start(rpc_server *s, int *port)
{
    if (s->started)
        return -EALREADY;
    int p = server_bind(s);
    int rc = p < 0 ? p : -pthread_create(&s->loop, NULL, loop_main, s);
    if (rc < 0) {
        server_unbind(s);
        return rc;
    }
    grpc_server_start(s->server);
    s->started = true;
    if ((rc = server_staff(s)) < 0 || (rc = rpc_accept_start(s->acc)) < 0) {
        rpc_server_shutdown(s);
        return rc;
    }
    if (port)
        *port = p;
    return 0;
}

void rpc_server_shutdown(rpc_server *s)
{
    if (!s->started || s->stopped)
        return;
    s->stopped = true;
    rpc_accept_stop(s->acc); /* no new connection from here on */
    pthread_mutex_lock(&s->mu);
    s->shutting_down = true;
    pthread_mutex_unlock(&s->mu);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    /* Calls finish (their ops fail fast once cancelled), queued unary calls
     * are answered UNAVAILABLE, the shutdown tag arrives. */
    pthread_mutex_lock(&s->mu);
    s->workers_stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    pthread_mutex_lock(&s->mu);
    while (!s->shutdown_seen || s->live_calls > 0 || s->active_streams > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    grpc_completion_queue_shutdown(s->cq);
    pthread_join(s->loop, NULL);
}

void rpc_server_free(rpc_server *s)
{
    if (!s)
        return;
    rpc_server_shutdown(s);
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->cq)
        grpc_completion_queue_destroy(s->cq);
    if (s->creds)
        grpc_server_credentials_release(s->creds);
    rpc_accept_free(s->acc);
    for (size_t i = 0; i < s->n_methods; i++)
        free(s->methods[i].path);
    free(s->methods);
    free(s->workers);
    free(s->bind);
    free(s->auth);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    rpc_unref();
}

/* ------------------------------------------------------ the handler's side */

int rpc_call_recv(rpc_call *c, uint8_t **buf, size_t *len)
{
    if (c->half_closed || (c->m->kind != RPC_BIDI_STREAM && c->got_unary))
        return -ENODATA;
    if (atomic_load(&c->cancelled))
        return -ECANCELED;
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!call_batch(c, &op, 1)) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return -ECANCELED;
    }
    if (!bb) {
        c->half_closed = true;
        /* a message over the limit makes core cancel the call with
         * RESOURCE_EXHAUSTED; to the handler it is a cancelled call */
        return atomic_load(&c->cancelled) ? -ECANCELED : -ENODATA;
    }
    c->got_unary = c->m->kind != RPC_BIDI_STREAM;
    int rc = rpc_bb_take(bb, buf, len);
    if (rc == 0 && *len > (size_t)c->srv->o.max_msg_bytes) {
        free(*buf);
        *buf = NULL;
        return -EMSGSIZE;
    }
    return rc;
}

int rpc_call_send(rpc_call *c, const uint8_t *buf, size_t len)
{
    if (c->m->kind == RPC_UNARY) {
        if (c->resp)
            return -EALREADY;
        if (!(c->resp = malloc(len ? len : 1)))
            return -ENOMEM;
        memcpy(c->resp, buf, len);
        c->resp_len = len;
        return 0;
    }
    if (atomic_load(&c->cancelled))
        return -ECANCELED;
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_md)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_byte_buffer *bb = rpc_bb_from(buf, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    bool ok = call_batch(c, ops, n);
    c->sent_md = true;
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : -ECANCELED;
}

void rpc_call_end(rpc_call *c, grpc_status_code code)
{
    if (c->ended || c->m->kind == RPC_UNARY)
        return;
    call_finish(c, code);
    c->sent_md = true;
    c->end_code = code;
    c->ended = true;
}

int rpc_call_cancel_fd(rpc_call *c)
{
    return c->cancel_fd;
}
bool rpc_call_cancelled(const rpc_call *c)
{
    return atomic_load(&((rpc_call *)c)->cancelled);
}
const char *rpc_call_method(const rpc_call *c)
{
    return c->method;
}
const char *rpc_call_peer(const rpc_call *c)
{
    return c->peer ? c->peer : "";
}

const char *rpc_call_metadata(const rpc_call *c, const char *key)
{
    for (size_t i = 0; i < c->md_n; i++)
        if (c->md_kv[2 * i] && !strcmp(c->md_kv[2 * i], key))
            return c->md_kv[2 * i + 1];
    return NULL;
}

int64_t rpc_call_deadline_ms(const rpc_call *c)
{
    gpr_timespec d = c->details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return -1;
    d = gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC);
    gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ms = (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
    return ms < 0 ? 0 : ms;
}

void rpc_call_set_message(rpc_call *c, const char *fmt, ...)
{
    va_list ap;
    char *m = NULL;
    va_start(ap, fmt);
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    free(c->msg);
    c->msg = m;
}
