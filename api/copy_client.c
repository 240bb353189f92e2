/* copy_client — see copy_client.h and docs/cp.md. */
#include "copy_client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/alloc-util.h"
#include "contract.h"
#include "copyz.h"

int copy_client_errno(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK: return 0;
    case GRPC_STATUS_NOT_FOUND: return -ENOENT;
    case GRPC_STATUS_PERMISSION_DENIED: return -EACCES;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return -ENOSPC;
    case GRPC_STATUS_ALREADY_EXISTS: return -EEXIST;
    case GRPC_STATUS_FAILED_PRECONDITION: return -ENOTDIR;
    case GRPC_STATUS_INVALID_ARGUMENT: return -EPROTO; /* not -EINVAL: that is a usage error of the CLI */
    case GRPC_STATUS_CANCELLED: return -ECANCELED;
    case GRPC_STATUS_UNAVAILABLE: return -ECONNRESET;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return -ETIMEDOUT;
    case GRPC_STATUS_UNIMPLEMENTED: return -EOPNOTSUPP;
    case GRPC_STATUS_ABORTED: return -ENODATA;
    default: return -EIO;
    }
}

grpc_status_code copy_client_status(int rc)
{
    switch (-rc) {
    case 0: return GRPC_STATUS_OK;
    case ENOENT:
    case ESRCH: return GRPC_STATUS_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS: return GRPC_STATUS_PERMISSION_DENIED;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case ENOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case EEXIST: return GRPC_STATUS_ALREADY_EXISTS;
    case ENOTDIR:
    case EISDIR:
    case ENOTEMPTY:
    case EBUSY: return GRPC_STATUS_FAILED_PRECONDITION;
    case EINVAL:
    case EPROTO:
    case ENAMETOOLONG:
    case ELOOP:
    case EXDEV: return GRPC_STATUS_INVALID_ARGUMENT;
    case ECANCELED: return GRPC_STATUS_CANCELLED;
    case ENODATA: return GRPC_STATUS_ABORTED; /* a file shrank while it was read: copy it again */
    default: return GRPC_STATUS_INTERNAL;
    }
}

static Kdiag__Solo__Io__Target *target_msg(Kdiag__Solo__Io__Target *m, const copy_client_target *t)
{
    kdiag__solo__io__target__init(m);
    m->container_id = t && t->container_id ? (char *)t->container_id : (char *)"";
    m->pid = t ? t->pid : 0;
    return m;
}

/* The call ended with st: 0 when OK, else its message into err. */
static int status_rc(const rpc_status *st, char *err, size_t errlen)
{
    if (st->code == GRPC_STATUS_OK)
        return 0;
    snprintf(err, errlen, "%s", st->message[0] ? st->message : "the manager ended the copy without a message");
    return copy_client_errno(st->code);
}

void copy_client_cancel_now(copy_client_cancel *c)
{
    pthread_mutex_lock(&c->mu);
    c->cancelled = true;
    if (c->s)
        rpc_stream_cancel(c->s);
    pthread_mutex_unlock(&c->mu);
}

/* s is the call of o's copy from now on (NULL: no longer). */
static void cancel_attach(const copy_client_opts *o, rpc_stream *s)
{
    if (!o || !o->cancel)
        return;
    pthread_mutex_lock(&o->cancel->mu);
    o->cancel->s = s;
    if (s && o->cancel->cancelled)
        rpc_stream_cancel(s);
    pthread_mutex_unlock(&o->cancel->mu);
}

static void progress(const copy_client_opts *o, const copytree_stats *st)
{
    if (o && o->progress)
        o->progress(o->ud, st);
}

int copy_client_from(rpc_client *cl, const copy_client_target *t, const char *remote, const char *local,
                     const copy_client_opts *o, char *err, size_t errlen)
{
    copytree_recv *r = NULL;
    rpc_stream *s = NULL;
    uint8_t *req = NULL;
    err[0] = '\0';
    int rc = o && o->to_stdout
                 ? copytree_recv_new_stream(&r, STDOUT_FILENO, "stdout", err, errlen)
                 : copytree_recv_new(&r, AT_FDCWD, local, 0, geteuid() == 0 ? COPYTREE_KEEP_OWNER : 0, err, errlen);
    if (rc < 0)
        return rc;
    Kdiag__Solo__Io__Target tm;
    Kdiag__Solo__Io__CopyFromRequest m = KDIAG__SOLO__IO__COPY_FROM_REQUEST__INIT;
    m.target = target_msg(&tm, t);
    m.path = (char *)remote;
    m.zstd = !(o && o->no_zstd);
    size_t len = kdiag__solo__io__copy_from_request__get_packed_size(&m);
    rc = -ENOMEM;
    if (!(req = malloc(len)))
        goto fail;
    kdiag__solo__io__copy_from_request__pack(&m, req);
    rc = rpc_client_stream_open(&s, cl, CONTRACT_METHOD_COPY_FROM, req, len, o ? o->timeout_ms : 0);
    if (rc < 0)
        goto fail;
    cancel_attach(o, s);
    for (;;) {
        uint8_t *buf = NULL;
        size_t n = 0;
        rpc_status st = {0};
        rc = rpc_stream_read(s, &buf, &n, &st);
        if (rc == 1) {
            rc = status_rc(&st, err, errlen);
            if (rc == 0)
                rc = copytree_recv_finish(r, err, errlen);
            break;
        }
        if (rc < 0)
            goto fail;
        Kdiag__Solo__Io__CopyChunk *c = kdiag__solo__io__copy_chunk__unpack(NULL, n, buf);
        free(buf);
        if (!c) {
            rc = -EPROTO;
            snprintf(err, errlen, "the manager sent an undecodable CopyChunk (%zu bytes)", n);
            break;
        }
        bool tick = c->entry || c->zstd.len || c->data.len > CONTRACT_COPY_DATA_MAX / 2;
        rc = copytree_recv_chunk(r, c, err, errlen);
        kdiag__solo__io__copy_chunk__free_unpacked(c, NULL);
        if (rc < 0)
            break;
        if (tick)
            progress(o, copytree_recv_stats(r));
    }
    if (rc == 0)
        progress(o, copytree_recv_stats(r));
    goto out;
fail:
    snprintf(err, errlen, "cannot copy from %s: the call failed: %s", remote, strerror(-rc));
out:
    cancel_attach(o, NULL);
    rpc_stream_free(s); /* cancels a call still running */
    copytree_recv_free(r);
    free(req);
    return rc;
}

typedef struct {
    rpc_stream *s;
    uint8_t *buf;
    size_t cap;
    copytree_stats stats;
    const copy_client_opts *o;
    copyz *z;             /* NULL: data goes as it is */
    uint64_t window;      /* at most this many bytes sent and not yet acknowledged */
    uint64_t sent, acked; /* bytes of the messages after the first */
    int ended;            /* waiting for an answer: 1, the call's status came (in st); < 0, a read failed */
    rpc_status st;
} to_state;

/* Reads the manager's answers until at most ts->window bytes are in flight.
 * -ECONNRESET when the call ended (ts->st says why) or failed. */
static int to_wait(to_state *ts)
{
    while (ts->sent - ts->acked > ts->window) {
        uint8_t *buf = NULL;
        size_t n = 0;
        int r = rpc_stream_read(ts->s, &buf, &n, &ts->st);
        if (r == 0) {
            Kdiag__Solo__Io__CopyToResponse *m = kdiag__solo__io__copy_to_response__unpack(NULL, n, buf);
            if (m && m->taken > ts->acked && m->taken <= ts->sent)
                ts->acked = m->taken;
            if (m)
                kdiag__solo__io__copy_to_response__free_unpacked(m, NULL);
        }
        free(buf);
        if (r != 0) {
            ts->ended = r;
            return -ECONNRESET;
        }
    }
    return 0;
}

/* copytree_send's emit: one CopyToRequest per chunk, while the window allows.
 * -ECONNRESET when the manager is no longer reading (it ended the call: its
 * status says why). */
static int to_emit(void *ud, const Kdiag__Solo__Io__CopyChunk *c)
{
    to_state *ts = ud;
    Kdiag__Solo__Io__CopyToRequest m = KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT;
    Kdiag__Solo__Io__CopyChunk zc;
    m.chunk = (Kdiag__Solo__Io__CopyChunk *)c;
    if (ts->z) {
        copyz_pack(ts->z, c, &zc);
        m.chunk = &zc;
    }
    size_t len = kdiag__solo__io__copy_to_request__get_packed_size(&m);
    if (GROW_ARRAY(ts->buf, ts->cap, len, 4096) < 0)
        return -ENOMEM;
    kdiag__solo__io__copy_to_request__pack(&m, ts->buf);
    if (rpc_stream_write(ts->s, ts->buf, len) < 0)
        return -ECONNRESET;
    ts->sent += len;
    if (to_wait(ts) < 0)
        return -ECONNRESET;
    if (c->entry)
        ts->stats.entries++;
    ts->stats.bytes += c->data.len;
    if (c->entry || c->data.len > CONTRACT_COPY_DATA_MAX / 2)
        progress(ts->o, &ts->stats);
    return 0;
}

int copy_client_to(rpc_client *cl, const char *local, const copy_client_target *t, const char *remote,
                   const copy_client_opts *o, char *err, size_t errlen)
{
    to_state ts = {.o = o, .window = o && o->window ? o->window : COPY_CLIENT_WINDOW};
    err[0] = '\0';
    Kdiag__Solo__Io__Target tm;
    Kdiag__Solo__Io__CopyToRequest m = KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT;
    m.target = target_msg(&tm, t);
    m.path = (char *)remote;
    /* answers four times per window: the window refills in steps of a quarter */
    m.ack_bytes = (uint32_t)(ts.window / 4 ? ts.window / 4 : 1);
    int rc = rpc_client_bidi_open(&ts.s, cl, CONTRACT_METHOD_COPY_TO, o ? o->timeout_ms : 0);
    if (rc < 0) {
        snprintf(err, errlen, "cannot copy to %s: the call failed: %s", remote, strerror(-rc));
        return rc;
    }
    cancel_attach(o, ts.s);
    size_t len = kdiag__solo__io__copy_to_request__get_packed_size(&m);
    rc = -ENOMEM;
    if ((ts.buf = malloc(len)) && (o && o->no_zstd ? 0 : copyz_new(&ts.z)) == 0) {
        ts.cap = len;
        kdiag__solo__io__copy_to_request__pack(&m, ts.buf);
        rc = rpc_stream_write(ts.s, ts.buf, len) < 0 ? -ECONNRESET : 0;
    }
    if (rc == 0)
        rc = o && o->from_fd > 0
                 ? copytree_send_file(o->from_fd, o->from_off, "stdin", "stdin", to_emit, &ts, NULL, err, errlen)
                 : copytree_send(AT_FDCWD, local, 0, to_emit, &ts, NULL, err, errlen);
    if (rc == -ENOMEM && !err[0])
        snprintf(err, errlen, "cannot copy %s: out of memory", local);
    if (rc < 0 && rc != -ECONNRESET)
        goto out; /* a local failure: freeing the stream cancels the call, the manager removes its temporaries */
    if (rc == 0)
        rpc_stream_close_send(ts.s);
    /* The answers left (the last when all went well), then the status. */
    for (;;) {
        uint8_t *buf = NULL;
        size_t n = 0;
        int r = ts.ended ? ts.ended : rpc_stream_read(ts.s, &buf, &n, &ts.st);
        free(buf);
        if (r == 1) {
            rc = status_rc(&ts.st, err, errlen);
            break;
        }
        if (r < 0) {
            rc = r;
            snprintf(err, errlen, "cannot copy to %s: the call failed: %s", remote, strerror(-r));
            break;
        }
    }
    if (rc == 0)
        progress(o, &ts.stats);
out:
    cancel_attach(o, NULL);
    rpc_stream_free(ts.s);
    free(ts.buf);
    copyz_free(ts.z);
    return rc;
}
