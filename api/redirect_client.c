/* redirect_client — see redirect_client.h. */
#include "redirect_client.h"
#include "splice_pump.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kdiag.pb-c.h"

#define STATUS_OK 0x00      /* = TUNNEL_STATUS_OK in manager/tunnel.h */
#define STATUS_REFUSED 0x01 /* = TUNNEL_STATUS_REFUSED */
#define BRIDGE_PIPE_BYTES (1024 * 1024)

struct redirect_client {
    rpc_stream *stream;
};

redirect_client *redirect_client_open(rpc_client *cl, uint32_t port, bool outgoing)
{
    Kdiag__Solo__Io__RedirectRequest req = KDIAG__SOLO__IO__REDIRECT_REQUEST__INIT;
    uint8_t buf[32];
    req.port = port;
    req.outgoing = outgoing;
    size_t len = kdiag__solo__io__redirect_request__pack(&req, buf);

    redirect_client *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    if (rpc_client_stream_open(&rc->stream, cl, REDIRECT_CLIENT_METHOD, buf, len, 0) < 0) {
        free(rc);
        return NULL;
    }
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
        if (r < 0)
            return r;
        if (r == 1) /* ended: OK, cancelled by us, or the manager's error */
            return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_CANCELLED ? 0 : -EPROTO;
        Kdiag__Solo__Io__RedirectResponse *m = kdiag__solo__io__redirect_response__unpack(NULL, len, buf);
        free(buf);
        if (!m || (!m->ready && m->tunnel_token.len != REDIRECT_CLIENT_TOKEN_LEN)) {
            if (m)
                kdiag__solo__io__redirect_response__free_unpacked(m, NULL);
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "undecodable RedirectResponse from the manager");
            rpc_stream_cancel(rc->stream);
            return -EBADMSG;
        }
        redirect_client_event ev = {
            .ready = m->ready,
            .tunnel_port = m->port,
            .peer = m->peer ? m->peer : "",
            .original_dst = m->original_dst ? m->original_dst : "",
        };
        if (!m->ready)
            memcpy(ev.token, m->tunnel_token.data, REDIRECT_CLIENT_TOKEN_LEN);
        r = fn(ud, &ev);
        kdiag__solo__io__redirect_response__free_unpacked(m, NULL);
        if (r < 0) {
            rpc_stream_cancel(rc->stream);
            return r;
        }
    }
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

int redirect_client_tunnel_hello(int fd, const uint8_t token[REDIRECT_CLIENT_TOKEN_LEN], bool target_ok)
{
    uint8_t hello[REDIRECT_CLIENT_TOKEN_LEN + 1];
    memcpy(hello, token, REDIRECT_CLIENT_TOKEN_LEN);
    hello[REDIRECT_CLIENT_TOKEN_LEN] = target_ok ? STATUS_OK : STATUS_REFUSED;
    size_t off = 0;
    while (off < sizeof hello) {
        ssize_t n = send(fd, hello + off, sizeof hello - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, -1);
            continue;
        }
        if (n < 0)
            return -errno;
        off += (size_t)n;
    }
    return 0;
}

/* ---- bridge ---- */

int redirect_client_bridge(int tunnel_fd, int local_fd)
{
    splice_pump d[2] = {{.pipe = {-1, -1}}, {.pipe = {-1, -1}}}; /* 0: tunnel -> local, 1: local -> tunnel */
    int fds[2] = {tunnel_fd, local_fd};
    int rc = 0;

    for (int i = 0; i < 2 && rc == 0; i++) {
        rc = splice_pump_init(&d[i], BRIDGE_PIPE_BYTES);
        int fl = fcntl(fds[i], F_GETFL);
        if (rc == 0 && (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0))
            rc = -errno;
    }
    while (rc == 0 && !(d[0].shut && d[1].shut)) {
        rc = splice_pump_run(&d[0], tunnel_fd, local_fd);
        if (rc == 0)
            rc = splice_pump_run(&d[1], local_fd, tunnel_fd);
        if (rc < 0 || (d[0].shut && d[1].shut))
            break;
        /* Read a side only while its pipe is empty, write a side while data waits for it:
         * no wake-ups for a pipe that is full by slots but not by bytes. */
        struct pollfd p[2] = {{.fd = tunnel_fd}, {.fd = local_fd}};
        for (int i = 0; i < 2; i++) {
            if (!d[i].eof && d[i].inpipe == 0)
                p[i].events |= POLLIN;
            if (d[i].inpipe > 0)
                p[1 - i].events |= POLLOUT;
        }
        for (int i = 0; i < 2; i++)
            if (!p[i].events)
                p[i].fd = -1; /* else a hung-up side we wait for nothing from would spin poll */
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            rc = -errno;
        for (int i = 0; i < 2 && rc == 0; i++)
            if (p[i].revents & POLLERR) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &err, &el);
                rc = err ? -err : -ECONNRESET;
            }
    }
    for (int i = 0; i < 2; i++)
        splice_pump_close(&d[i]);
    if (rc < 0) {
        splice_close_reset(tunnel_fd);
        splice_close_reset(local_fd);
    } else {
        close(tunnel_fd);
        close(local_fd);
    }
    return rc;
}
