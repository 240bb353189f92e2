/* rpc — server and client over gRPC's C core. See rpc.h and docs/rpc.md.
 *
 * Server: one completion queue, polled by one loop thread, carries every event:
 * new calls (grpc_server_request_call), each call's RECV_CLOSE_ON_SERVER (the
 * cancellation signal) and the ops handler threads start. The loop never
 * blocks: it wakes the handler waiting for an op, writes a call's eventfd on
 * cancellation, and answers rejected calls (auth, unknown method, overload)
 * with an async batch. Handlers run on worker threads (unary) or a thread per
 * call (streams).
 *
 * Client: each call has its own pluck queue; ops are started and plucked by
 * the thread that calls in, so the API is plain blocking code. */
#include "rpc.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
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
#include <time.h>
#include <unistd.h>

#define RPC_PENDING_REQUESTS 8  /* grpc_server_request_call kept outstanding */
#define RPC_CLIENT_MAX_MSG (64 << 20)

typedef enum { TAG_NEW, TAG_OP, TAG_CLOSE, TAG_REJECT, TAG_SHUTDOWN } tag_kind;

typedef struct {
    tag_kind kind;
    void *owner;
} rpc_tag;

/* One in-flight op a handler thread waits for; lives on its stack. */
typedef struct {
    rpc_tag tag;
    bool done, ok;
} rpc_op_wait;

typedef struct {
    char *path;
    rpc_kind kind;
    rpc_handler_fn fn;
    void *ud;
} rpc_method;

struct rpc_call {
    rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    rpc_tag new_tag, close_tag, reject_tag;
    int close_cancelled;            /* written by core for RECV_CLOSE_ON_SERVER */
    atomic_bool cancelled;
    atomic_int refs;                /* handler/reject side + close op */
    int cancel_fd;
    const rpc_method *m;
    char *method, *peer, *msg;
    char **md_kv;                   /* key0, val0, key1, ... NUL-terminated copies */
    size_t md_n;
    bool sent_md, half_closed, got_unary;
    uint8_t *resp;                  /* unary response, sent with the status */
    size_t resp_len;
    grpc_slice status_slice;
    bool has_status_slice;
    struct timespec start;
    struct rpc_call *next;          /* unary work queue */
};

struct rpc_server {
    rpc_server_opts o;
    char *bind, *auth;              /* auth = "Bearer <token>" or NULL */
    rpc_method *methods;
    size_t n_methods;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t loop, *workers;
    int n_workers;
    bool started, stopped;
    rpc_tag shutdown_tag;

    pthread_mutex_t mu;             /* guards everything below and every call's op waits */
    pthread_cond_t cv;              /* server state changes */
    pthread_cond_t op_cv;           /* an op completed */
    rpc_call *q_head, *q_tail;
    bool shutting_down, shutdown_seen, workers_stop;
    int live_calls, pending_requests, active_streams;   /* shutdown waits for 0, 0, 0 */
};

#define ARG_INT(key, v) {GRPC_ARG_INTEGER, (char *)(key), {.integer = (v)}}

/* Binary ("-bin") values stop at their first NUL: nothing here reads them. */
static char *slice_strdup(grpc_slice s)
{
    return strndup((const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
}

static grpc_byte_buffer *bb_from(const uint8_t *buf, size_t len)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* Copies a received message out and destroys it. */
static int bb_take(grpc_byte_buffer *bb, uint8_t **buf, size_t *len)
{
    grpc_byte_buffer_reader r;
    int rc = -EBADMSG;   /* undecompressable */
    if (grpc_byte_buffer_reader_init(&r, bb)) {
        grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
        size_t n = GRPC_SLICE_LENGTH(sl);
        uint8_t *p = malloc(n ? n : 1);
        rc = p ? 0 : -ENOMEM;
        if (p) {
            memcpy(p, GRPC_SLICE_START_PTR(sl), n);
            *buf = p;
            *len = n;
        }
        grpc_slice_unref(sl);
        grpc_byte_buffer_reader_destroy(&r);
    }
    grpc_byte_buffer_destroy(bb);
    return rc;
}

static gpr_timespec deadline_after(int timeout_ms)
{
    if (timeout_ms <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* ------------------------------------------------------------------ server */

rpc_server *rpc_server_new(const rpc_server_opts *opts)
{
    rpc_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *opts;
    if (s->o.keepalive_ms <= 0)
        s->o.keepalive_ms = 10000;
    if (s->o.max_msg_bytes <= 0)
        s->o.max_msg_bytes = 4 << 20;
    if (s->o.unary_workers <= 0)
        s->o.unary_workers = 4;
    if (s->o.max_streams <= 0)
        s->o.max_streams = 256;
    s->bind = strdup(opts->bind ? opts->bind : "127.0.0.1:0");
    if (opts->token && asprintf(&s->auth, "Bearer %s", opts->token) < 0)
        s->auth = NULL;
    if (!s->bind || (opts->token && !s->auth)) {
        free(s->bind);
        free(s);
        return NULL;
    }
    s->o.bind = s->bind;
    s->o.token = NULL;
    s->shutdown_tag.kind = TAG_SHUTDOWN;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->op_cv, NULL);
    grpc_init();
    return s;
}

int rpc_server_add(rpc_server *s, const char *method, rpc_kind kind, rpc_handler_fn fn, void *ud)
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
    s->n_methods++;
    return 0;
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
    if (c->peer)
        gpr_free(c->peer);
    free(c->msg);
    free(c->resp);
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

/* Called with s->mu held. */
static void request_one(rpc_server *s)
{
    rpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = s;
    c->cancel_fd = -1;
    c->new_tag = (rpc_tag){TAG_NEW, c};
    c->close_tag = (rpc_tag){TAG_CLOSE, c};
    c->reject_tag = (rpc_tag){TAG_REJECT, c};
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    s->live_calls++;
    if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, &c->new_tag) != GRPC_CALL_OK) {
        grpc_call_details_destroy(&c->details);
        grpc_metadata_array_destroy(&c->md);
        free(c);
        s->live_calls--;
        return;
    }
    s->pending_requests++;
}

static void call_log(rpc_call *c, grpc_status_code code)
{
    rpc_server *s = c->srv;
    bool notable = code == GRPC_STATUS_INTERNAL || code == GRPC_STATUS_UNKNOWN ||
                   code == GRPC_STATUS_UNAUTHENTICATED || code == GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (!s->o.verbose && !notable)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - c->start.tv_sec) * 1000 + (now.tv_nsec - c->start.tv_nsec) / 1000000;
    fprintf(stderr, "kdiag rpc: %s from %s: status %d%s%s (%ld ms)\n", c->method ? c->method : "?",
            c->peer ? c->peer : "?", (int)code, c->msg ? ": " : "", c->msg ? c->msg : "", ms);
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
        unsigned char diff = 0;   /* constant time over the token's length */
        for (size_t j = 0; j < want; j++)
            diff |= p[j] ^ (uint8_t)s->auth[j];
        return diff == 0;
    }
    return false;
}

static void *stream_main(void *arg);
static void *worker_main(void *arg);

/* A new call arrived (loop thread). */
static void call_accept(rpc_server *s, rpc_call *c)
{
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    atomic_init(&c->refs, 2);
    c->method = slice_strdup(c->details.method);
    c->peer = grpc_call_get_peer(c->call);
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

    if (!c->method || c->cancel_fd < 0 || !c->md_kv) {
        call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory or file descriptors");
        return;
    }
    if (!auth_ok(s, c)) {
        call_reject(c, GRPC_STATUS_UNAUTHENTICATED,
                    "missing or wrong token: send metadata 'authorization: Bearer <token>' "
                    "with the token kdiag-manager printed");
        return;
    }
    for (size_t i = 0; i < s->n_methods; i++)
        if (!strcmp(s->methods[i].path, c->method))
            c->m = &s->methods[i];
    if (!c->m) {
        call_reject(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", c->method);
        return;
    }

    pthread_mutex_lock(&s->mu);
    if (s->shutting_down) {
        pthread_mutex_unlock(&s->mu);
        call_reject(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
        return;
    }
    if (c->m->kind == RPC_UNARY) {
        if (s->q_tail)
            s->q_tail->next = c;
        else
            s->q_head = c;
        s->q_tail = c;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    bool full = s->active_streams >= s->o.max_streams;
    if (!full)
        s->active_streams++;
    pthread_mutex_unlock(&s->mu);
    if (full) {
        call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many streams open (limit %d)", s->o.max_streams);
        return;
    }
    pthread_t t;
    pthread_attr_t attr;   /* detached: shutdown waits for active_streams == 0 */
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

static void *loop_main(void *arg)
{
    rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        rpc_tag *t = ev.tag;
        rpc_call *c = t->owner;
        switch (t->kind) {
        case TAG_NEW:
            pthread_mutex_lock(&s->mu);
            s->pending_requests--;
            if (!s->shutting_down)
                request_one(s);
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            if (ev.success) {
                call_accept(s, c);
            } else {   /* server shutting down: the call never existed */
                atomic_init(&c->refs, 1);
                call_unref(c);
            }
            break;
        case TAG_OP: {
            rpc_op_wait *w = (rpc_op_wait *)t;
            pthread_mutex_lock(&s->mu);
            w->ok = ev.success;
            w->done = true;
            pthread_cond_broadcast(&s->op_cv);
            pthread_mutex_unlock(&s->mu);
            break;
        }
        case TAG_CLOSE:
            if (c->close_cancelled) {
                atomic_store(&c->cancelled, true);
                if (c->cancel_fd >= 0)
                    (void)eventfd_write(c->cancel_fd, 1);   /* cannot overflow: written once */
            }
            call_unref(c);
            break;
        case TAG_REJECT:
            call_unref(c);
            break;
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
    rpc_server *s = c->srv;
    rpc_op_wait w = {{TAG_OP, c}, false, false};
    if (grpc_call_start_batch(c->call, ops, n, &w.tag, NULL) != GRPC_CALL_OK)
        return false;
    pthread_mutex_lock(&s->mu);
    while (!w.done)
        pthread_cond_wait(&s->op_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return w.ok;
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
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_md)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_byte_buffer *bb = NULL;
    if (code == GRPC_STATUS_OK && c->resp) {
        bb = bb_from(c->resp, c->resp_len);
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
    pthread_mutex_lock(&s->mu);   /* s is not touched after the unlock below */
    s->active_streams--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int rpc_server_start(rpc_server *s, int *port)
{
    if (s->started)
        return -EALREADY;
    grpc_arg args[] = {
        ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, s->o.max_msg_bytes),
        ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, s->o.keepalive_ms),
        ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, s->o.keepalive_ms),
        ARG_INT(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        ARG_INT(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        /* clients ping every 10 s: allow that and more, without strikes */
        ARG_INT(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000),
        ARG_INT(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0),
        ARG_INT(GRPC_ARG_ALLOW_REUSEPORT, 0),   /* a taken port is an error */
        ARG_INT(GRPC_ARG_MAX_CONCURRENT_STREAMS, 4096),
    };
    grpc_channel_args ca = {sizeof args / sizeof *args, args};
    s->server = grpc_server_create(&ca, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int p = grpc_server_add_http2_port(s->server, s->bind, creds);
    grpc_server_credentials_release(creds);
    int rc = p <= 0 ? -EADDRNOTAVAIL : -pthread_create(&s->loop, NULL, loop_main, s);
    if (rc < 0) {   /* nothing started yet: the queue drains at once */
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
        s->server = NULL;
        s->cq = NULL;
        return rc;
    }
    grpc_server_start(s->server);
    s->started = true;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < RPC_PENDING_REQUESTS; i++)
        request_one(s);
    pthread_mutex_unlock(&s->mu);
    s->workers = calloc(s->o.unary_workers, sizeof *s->workers);
    for (int i = 0; s->workers && i < s->o.unary_workers; i++)
        if (pthread_create(&s->workers[s->n_workers], NULL, worker_main, s) == 0)
            s->n_workers++;
    if (s->n_workers == 0) {
        rpc_server_shutdown(s);   /* cannot run without a worker */
        return -EAGAIN;
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
    for (size_t i = 0; i < s->n_methods; i++)
        free(s->methods[i].path);
    free(s->methods);
    free(s->workers);
    free(s->bind);
    free(s->auth);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->op_cv);
    free(s);
    grpc_shutdown_blocking();
}

/* -------------------------------------------------------------- call (server) */

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
    int rc = bb_take(bb, buf, len);
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
    grpc_byte_buffer *bb = bb_from(buf, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    bool ok = call_batch(c, ops, n);
    c->sent_md = true;
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : -ECANCELED;
}

int rpc_call_cancel_fd(rpc_call *c) { return c->cancel_fd; }
bool rpc_call_cancelled(const rpc_call *c) { return atomic_load(&((rpc_call *)c)->cancelled); }
const char *rpc_call_method(const rpc_call *c) { return c->method; }
const char *rpc_call_peer(const rpc_call *c) { return c->peer ? c->peer : ""; }

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

/* ------------------------------------------------------------------ client */

struct rpc_client {
    grpc_channel *ch;
    char *auth;
};

struct rpc_stream {
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata auth_md;
    bool has_auth;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code code;
    grpc_slice details;
    const char *error_string;
    bool got_md, ended, closed_send;
    int tag_status;   /* addresses of these are the pluck tags */
    int tag_send, tag_read;
};

rpc_client *rpc_client_new(const char *target, const char *token)
{
    rpc_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    if (token && asprintf(&cl->auth, "Bearer %s", token) < 0) {
        free(cl);
        return NULL;
    }
    grpc_init();
    grpc_arg args[] = {
        ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, RPC_CLIENT_MAX_MSG),
        ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, 10000),
        ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000),
        ARG_INT(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        ARG_INT(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
    };
    grpc_channel_args ca = {sizeof args / sizeof *args, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    cl->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return cl;
}

void rpc_client_free(rpc_client *cl)
{
    if (!cl)
        return;
    grpc_channel_destroy(cl->ch);
    free(cl->auth);
    free(cl);
    grpc_shutdown_blocking();
}

static void status_out(rpc_status *st, grpc_status_code code, grpc_slice details, const char *err)
{
    if (!st)
        return;
    st->code = code;
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n == 0 && err && code != GRPC_STATUS_OK) {
        snprintf(st->message, sizeof st->message, "%s", err);
        return;
    }
    if (n >= sizeof st->message)
        n = sizeof st->message - 1;
    memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
    st->message[n] = 0;
}

static void stream_destroy(rpc_stream *s)
{
    if (s->call)
        grpc_call_unref(s->call);
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        grpc_completion_queue_destroy(s->cq);
    }
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trail_md);
    grpc_slice_unref(s->details);
    if (s->has_auth)
        grpc_slice_unref(s->auth_md.value);
    gpr_free((void *)s->error_string);
    free(s);
}

static bool pluck(rpc_stream *s, void *tag)
{
    grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Creates the call and starts its initial metadata and status ops. */
rpc_stream *rpc_client_bidi_open(rpc_client *cl, const char *method, int timeout_ms)
{
    rpc_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trail_md);
    s->details = grpc_empty_slice();
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(cl->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                       deadline_after(timeout_ms), NULL);
    grpc_slice_unref(m);
    if (cl->auth) {
        s->auth_md.key = grpc_slice_from_static_string("authorization");
        s->auth_md.value = grpc_slice_from_copied_string(cl->auth);
        s->has_auth = true;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = s->has_auth;
    ops[0].data.send_initial_metadata.metadata = &s->auth_md;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &s->trail_md;
    ops[1].data.recv_status_on_client.status = &s->code;
    ops[1].data.recv_status_on_client.status_details = &s->details;
    ops[1].data.recv_status_on_client.error_string = &s->error_string;
    if (!s->call || grpc_call_start_batch(s->call, &ops[0], 1, &s->tag_send, NULL) != GRPC_CALL_OK) {
        stream_destroy(s);
        return NULL;
    }
    pluck(s, &s->tag_send);
    if (grpc_call_start_batch(s->call, &ops[1], 1, &s->tag_status, NULL) != GRPC_CALL_OK) {
        grpc_call_cancel(s->call, NULL);
        stream_destroy(s);
        return NULL;
    }
    return s;
}

int rpc_client_unary(rpc_client *cl, const char *method, const uint8_t *req, size_t req_len,
                     uint8_t **resp, size_t *resp_len, int timeout_ms, rpc_status *st)
{
    rpc_status local;
    if (!st)
        st = &local;
    rpc_stream *s = rpc_client_stream_open(cl, method, req, req_len, timeout_ms);
    if (!s) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->message, sizeof st->message, "cannot start call %s", method);
        return -ENOMEM;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = rpc_stream_read(s, &buf, &len, st);
    if (rc == 0) {   /* a message: the status follows */
        uint8_t *extra = NULL;
        size_t elen;
        rc = rpc_stream_read(s, &extra, &elen, st);
        if (rc == 0) {
            free(extra);
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "%s: server sent more than one response", method);
            rpc_stream_cancel(s);
        }
    }
    rpc_stream_free(s);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    if (st->code != GRPC_STATUS_OK || !buf) {
        if (st->code == GRPC_STATUS_OK) {
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "%s: server sent no response", method);
        }
        free(buf);
        return -EPROTO;
    }
    *resp = buf;
    *resp_len = len;
    return 0;
}

rpc_stream *rpc_client_stream_open(rpc_client *cl, const char *method, const uint8_t *req,
                                   size_t req_len, int timeout_ms)
{
    rpc_stream *s = rpc_client_bidi_open(cl, method, timeout_ms);
    /* failures here surface as the call's status on the first read */
    if (s && rpc_stream_write(s, req, req_len) == 0)
        rpc_stream_close_send(s);
    return s;
}

int rpc_stream_write(rpc_stream *s, const uint8_t *buf, size_t len)
{
    if (s->closed_send)
        return -EPIPE;
    grpc_byte_buffer *bb = bb_from(buf, len);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    int rc = -ECONNRESET;
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) == GRPC_CALL_OK)
        rc = pluck(s, &s->tag_send) ? 0 : -ECONNRESET;
    grpc_byte_buffer_destroy(bb);
    return rc;
}

int rpc_stream_close_send(rpc_stream *s)
{
    if (s->closed_send)
        return 0;
    s->closed_send = true;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) != GRPC_CALL_OK)
        return -ECONNRESET;
    return pluck(s, &s->tag_send) ? 0 : -ECONNRESET;
}

int rpc_stream_read(rpc_stream *s, uint8_t **buf, size_t *len, rpc_status *st)
{
    if (!s->ended) {
        grpc_byte_buffer *bb = NULL;
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (!s->got_md) {
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
            s->got_md = true;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &bb;
        if (grpc_call_start_batch(s->call, ops, n, &s->tag_read, NULL) != GRPC_CALL_OK)
            return -EINVAL;   /* a read is already in progress */
        pluck(s, &s->tag_read);
        if (bb)
            return bb_take(bb, buf, len);
        s->ended = true;
        pluck(s, &s->tag_status);
    }
    status_out(st, s->code, s->details, s->error_string);
    return 1;
}

void rpc_stream_cancel(rpc_stream *s)
{
    grpc_call_cancel(s->call, NULL);
}

void rpc_stream_free(rpc_stream *s)
{
    if (!s)
        return;
    if (!s->ended) {
        grpc_call_cancel(s->call, NULL);
        pluck(s, &s->tag_status);
    }
    stream_destroy(s);
}
