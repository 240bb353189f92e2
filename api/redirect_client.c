/* redirect_client — see redirect_client.h. */
#include "redirect_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kdiag.pb-c.h"


struct redirect_client {
    rpc_stream *stream;
};

int redirect_client_session_id(uint8_t out[REDIRECT_CLIENT_SESSION_ID_LEN])
{
    ssize_t n = getrandom(out, REDIRECT_CLIENT_SESSION_ID_LEN, 0);
    if (n == REDIRECT_CLIENT_SESSION_ID_LEN)
        return 0;
    return n < 0 ? -errno : -EIO;
}

static bool has_session(const redirect_client_req *r)
{
    for (size_t i = 0; i < REDIRECT_CLIENT_SESSION_ID_LEN; i++)
        if (r->session_id[i])
            return true;
    return false;
}

/* The serialized RedirectRequest: its length, or -EMSGSIZE when cap is short. */
static int pack_request(const redirect_client_req *r, uint8_t *buf, size_t cap)
{
    Kdiag__Solo__Io__RedirectRequest req = KDIAG__SOLO__IO__REDIRECT_REQUEST__INIT;
    req.port = r->port;
    req.outgoing = r->outgoing;
    if (has_session(r)) {
        req.session_id.data = (uint8_t *)r->session_id;
        req.session_id.len = REDIRECT_CLIENT_SESSION_ID_LEN;
    }
    req.skip_sources = (char **)r->skip_sources;
    req.n_skip_sources = r->nskip_sources < CONTRACT_REDIRECT_SKIP_SOURCES_MAX
                             ? r->nskip_sources
                             : CONTRACT_REDIRECT_SKIP_SOURCES_MAX;
    req.include_loopback = r->include_loopback;
    req.half_close = r->half_close;
    size_t len = kdiag__solo__io__redirect_request__get_packed_size(&req);
    if (len > cap)
        return -EMSGSIZE;
    return (int)kdiag__solo__io__redirect_request__pack(&req, buf);
}

int redirect_client_new(redirect_client **ret, rpc_client *cl, const redirect_client_req *req)
{
    uint8_t buf[512];
    int len = pack_request(req, buf, sizeof buf);
    int rc;

    if (len < 0)
        return len;
    redirect_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    rc = rpc_client_stream_open(&c->stream, cl, CONTRACT_METHOD_REDIRECT, buf, (size_t)len, 0);
    if (rc < 0)
        free(c);
    else
        *ret = c;
    return rc;
}

int redirect_client_run(redirect_client *rc, redirect_client_fn fn, void *ud, rpc_status *st)
{
    rpc_status local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    for (;;) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = rpc_stream_read(rc->stream, &buf, &len, st);
        if (r < 0) {
            st->code = GRPC_STATUS_UNAVAILABLE;
            snprintf(st->message, sizeof st->message, "reading the stream: %s", strerror(-r));
            return r;
        }
        if (r == 1) /* ended: OK, cancelled by us, or the manager's error */
            return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_CANCELLED ? 0 : -EPROTO;
        r = redirect_client_decode(buf, len, fn, ud);
        free(buf);
        if (r == -EBADMSG) {
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "undecodable RedirectResponse from the manager");
        }
        if (r < 0) {
            rpc_stream_cancel(rc->stream);
            return r;
        }
    }
}

int redirect_client_decode(const uint8_t *buf, size_t len, redirect_client_fn fn, void *ud)
{
    Kdiag__Solo__Io__RedirectResponse *m = kdiag__solo__io__redirect_response__unpack(NULL, len, buf);
    if (!m || (!m->ready && m->tunnel_token.len != CONTRACT_TUNNEL_TOKEN_LEN) ||
        (m->ready && m->spare_token.len != 0 && m->spare_token.len != CONTRACT_TUNNEL_TOKEN_LEN)) {
        if (m)
            kdiag__solo__io__redirect_response__free_unpacked(m, NULL);
        return -EBADMSG;
    }
    redirect_client_event ev = {
        .ready = m->ready,
        .half_close = m->ready && m->half_close,
        .has_spare = m->ready && m->spare_token.len == CONTRACT_TUNNEL_TOKEN_LEN,
        .peer_write_closed = m->peer_write_closed,
        .peer_write_closed_after = m->peer_write_closed_after,
        .tunnel_port = m->port,
        .peer = m->peer ? m->peer : "",
        .original_dst = m->original_dst ? m->original_dst : "",
    };
    if (!m->ready)
        memcpy(ev.token, m->tunnel_token.data, CONTRACT_TUNNEL_TOKEN_LEN);
    if (ev.has_spare)
        memcpy(ev.spare_token, m->spare_token.data, CONTRACT_TUNNEL_TOKEN_LEN);
    int r = fn(ud, &ev);
    kdiag__solo__io__redirect_response__free_unpacked(m, NULL);
    return r;
}

void redirect_client_cancel(redirect_client *rc)
{
    rpc_stream_cancel(rc->stream);
}

void redirect_client_free(redirect_client *rc)
{
    if (!rc)
        return;
    rpc_stream_free(rc->stream);
    free(rc);
}

int redirect_client_half_close(rpc_client *cl, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes,
                               int timeout_ms, rpc_status *st)
{
    Kdiag__Solo__Io__HalfCloseRequest req = KDIAG__SOLO__IO__HALF_CLOSE_REQUEST__INIT;
    uint8_t buf[64], *resp = NULL;
    size_t resp_len = 0;
    req.tunnel_token.data = (uint8_t *)token;
    req.tunnel_token.len = CONTRACT_TUNNEL_TOKEN_LEN;
    req.bytes = bytes;
    size_t len = kdiag__solo__io__half_close_request__pack(&req, buf);
    int rc = rpc_client_unary(cl, CONTRACT_METHOD_HALF_CLOSE, buf, len, &resp, &resp_len, timeout_ms, st);
    free(resp);
    return rc;
}

void redirect_client_hello(uint8_t out[CONTRACT_TUNNEL_HELLO_LEN], const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN],
                           bool target_ok)
{
    memcpy(out, token, CONTRACT_TUNNEL_TOKEN_LEN);
    out[CONTRACT_TUNNEL_TOKEN_LEN] = target_ok ? CONTRACT_TUNNEL_STATUS_OK : CONTRACT_TUNNEL_STATUS_REFUSED;
}

void redirect_client_spare_hello(uint8_t out[CONTRACT_TUNNEL_HELLO_LEN],
                                 const uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN])
{
    memcpy(out, spare_token, CONTRACT_TUNNEL_TOKEN_LEN);
    out[CONTRACT_TUNNEL_TOKEN_LEN] = CONTRACT_TUNNEL_STATUS_SPARE;
}
