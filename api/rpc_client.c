/* rpc_client — see rpc_client.h and docs/rpc.md.
 *
 * Each call has its own pluck queue; its ops are started and plucked by the
 * thread that calls in, so the API is plain blocking code and calls never
 * wait on each other. */
#include "rpc_client.h"

#include <errno.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc_common.h"

struct rpc_client {
    grpc_channel *ch;
    char *auth; /* "Bearer <token>" or NULL */
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
    int tag_status; /* addresses of these are the pluck tags */
    int tag_send, tag_read;
};

static gpr_timespec deadline_after(int timeout_ms)
{
    if (timeout_ms <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* A client: on a channel to target, or with fd >= 0 on that connected
 * socket (gRPC owns it from then on). */
static int client_new(rpc_client **ret, const char *target, int fd, const char *token)
{
    *ret = NULL;
    rpc_client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        if (fd >= 0)
            close(fd);
        return -ENOMEM;
    }
    if (token && asprintf(&cl->auth, "Bearer %s", token) < 0) {
        free(cl);
        if (fd >= 0)
            close(fd);
        return -ENOMEM;
    }
    rpc_ref();
    grpc_arg args[] = {
        RPC_ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, RPC_CLIENT_MAX_MSG),
        RPC_ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, RPC_KEEPALIVE_MS),
        RPC_ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, RPC_KEEPALIVE_MS),
        RPC_ARG_INT(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        RPC_ARG_INT(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
    };
    grpc_channel_args ca = {sizeof args / sizeof *args, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    sigset_t old;
    rpc_signals_off(&old); /* the channel starts gRPC's event engine threads */
    /* a bad target gives a channel whose calls fail */
    cl->ch = fd >= 0 ? grpc_channel_create_from_fd(target, fd, creds, &ca) : grpc_channel_create(target, creds, &ca);
    rpc_signals_on(&old);
    grpc_channel_credentials_release(creds);
    *ret = cl;
    return 0;
}

int rpc_client_new(rpc_client **ret, const char *target, const char *token)
{
    return client_new(ret, target, -1, token);
}

int rpc_client_new_fd(rpc_client **ret, int fd, const char *token)
{
    return client_new(ret, "fd", fd, token);
}

int rpc_client_set_token(rpc_client *cl, const char *token)
{
    char *auth = NULL;
    if (token && asprintf(&auth, "Bearer %s", token) < 0)
        return -ENOMEM;
    free(cl->auth);
    cl->auth = auth;
    return 0;
}

void rpc_client_free(rpc_client *cl)
{
    if (!cl)
        return;
    grpc_channel_destroy(cl->ch);
    free(cl->auth);
    free(cl);
    rpc_unref();
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
    /* RST_STREAM ENHANCE_YOUR_CALM: the server's gRPC core ran out of its
     * memory quota and cancelled this call ("Buffers full") */
    if (code == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(st->message, "RST_STREAM with error code 11"))
        snprintf(st->message, sizeof st->message,
                 "the manager cancelled the call: its gRPC memory, shared by all its calls, ran out while data "
                 "waited to be taken (many large transfers at once?); retry with fewer at once");
    /* a keepalive ping (also the one a new connection's handshake waits
     * on) went unanswered: a frozen manager, not a broken socket */
    else if (code == GRPC_STATUS_UNAVAILABLE && strstr(st->message, "keepalive watchdog timeout"))
        snprintf(st->message, sizeof st->message,
                 "the manager stopped answering: no reply to a keepalive ping within %d s. Its container may be "
                 "stopped or starved of CPU, or the way to it (kubectl port-forward, the API server, the "
                 "kubelet) stuck",
                 RPC_KEEPALIVE_MS / 1000);
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
    rpc_unref();
}

static bool pluck(rpc_stream *s, void *tag)
{
    grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Sends the initial metadata (with the token) and starts the status op. */
static int stream_start(rpc_stream *s)
{
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
    if (grpc_call_start_batch(s->call, &ops[0], 1, &s->tag_send, NULL) != GRPC_CALL_OK)
        return -EIO;
    pluck(s, &s->tag_send); /* a failure here shows in the status */
    if (grpc_call_start_batch(s->call, &ops[1], 1, &s->tag_status, NULL) != GRPC_CALL_OK) {
        grpc_call_cancel(s->call, NULL);
        return -EIO;
    }
    return 0;
}

int rpc_client_bidi_open(rpc_stream **ret, rpc_client *cl, const char *method, int timeout_ms)
{
    *ret = NULL;
    rpc_stream *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    rpc_ref();
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
    int rc = s->call ? stream_start(s) : -ENOMEM;
    if (rc < 0) {
        stream_destroy(s);
        return rc;
    }
    *ret = s;
    return 0;
}

int rpc_client_stream_open(rpc_stream **ret, rpc_client *cl, const char *method, const uint8_t *req,
                           size_t req_len, int timeout_ms)
{
    int rc = rpc_client_bidi_open(ret, cl, method, timeout_ms);
    /* failures here surface as the call's status on the first read */
    if (rc == 0 && rpc_stream_write(*ret, req, req_len) == 0)
        rpc_stream_close_send(*ret);
    return rc;
}

/* Reads the one response and the status after it. */
static int unary_read(rpc_stream *s, const char *method, uint8_t **buf, size_t *len, rpc_status *st)
{
    int rc = rpc_stream_read(s, buf, len, st);
    if (rc == 0) { /* a message: the status follows */
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
    return rc;
}

int rpc_client_unary(rpc_client *cl, const char *method, const uint8_t *req, size_t req_len, uint8_t **resp,
                     size_t *resp_len, int timeout_ms, rpc_status *st)
{
    rpc_status local;
    if (!st)
        st = &local;
    rpc_stream *s;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = rpc_client_stream_open(&s, cl, method, req, req_len, timeout_ms);
    if (rc < 0) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->message, sizeof st->message, "cannot start call %s: %s", method, strerror(-rc));
        return rc;
    }
    rc = unary_read(s, method, &buf, &len, st);
    rpc_stream_free(s);
    if (rc < 0)
        goto out;
    rc = -EPROTO;
    if (st->code != GRPC_STATUS_OK)
        goto out;
    if (!buf) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s: server sent no response", method);
        goto out;
    }
    *resp = buf;
    *resp_len = len;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    return rc;
}

int rpc_stream_write(rpc_stream *s, const uint8_t *buf, size_t len)
{
    if (s->closed_send)
        return -EPIPE;
    grpc_byte_buffer *bb = rpc_bb_from(buf, len);
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
            return -EINVAL; /* a read is already in progress */
        pluck(s, &s->tag_read);
        if (bb)
            return rpc_bb_take(bb, buf, len);
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
