/* rpc_accept — the rpc server's own listener in front of gRPC core, which
 * (1.51) bounds neither the number of connections nor what a silent one
 * costs. One thread accepts, holds each connection until it has sent the
 * HTTP/2 client preface, and only then hands it to gRPC
 * (grpc_server_add_channel_from_fd); a connection that stays silent costs a
 * socket and a few bytes here, never gRPC's per-connection memory. Private
 * to api/rpc_server.c.
 *
 * Bounds: at most max_conns connections open (waiting + handed over); at the
 * limit a new one closes the oldest waiting one, else the oldest handed-over
 * one that has made no call with the token (rpc_accept_authed), else it is
 * closed itself. A waiting connection is closed when it has not sent the
 * preface within preface_ms, or sent something else.
 * Closed connections are summed up in one log line per period (rpc_log.h),
 * never one line each. A handed-over connection is counted until gRPC
 * closes it: the thread keeps a duplicate of its fd and sees the hang-up
 * that gRPC's shutdown(2) of the socket causes. */
#ifndef KDIAG_RPC_ACCEPT_H
#define KDIAG_RPC_ACCEPT_H

typedef struct rpc_accept rpc_accept;

/* Takes a connection that sent the preface; owns fd from then on, also on
 * failure. Called on the accept thread. */
typedef void (*rpc_accept_hand_fn)(int fd, void *ud);

typedef struct {
    const char *bind; /* "ADDR:PORT": an IPv4 literal, a bracketed IPv6 literal or localhost */
    int max_conns;    /* > 0 */
    int preface_ms;   /* > 0 */
    rpc_accept_hand_fn hand;
    void *ud;
} rpc_accept_opts;

/* Binds and listens (no thread yet); *port receives the bound port.
 * -EADDRNOTAVAIL when the address is not local or the port is taken. */
int rpc_accept_new(rpc_accept **ret, const rpc_accept_opts *o, int *port);
/* Starts accepting (on a thread of its own). */
int rpc_accept_start(rpc_accept *a);
/* Stops the thread and closes the listeners, the waiting connections and
 * the duplicates it keeps (gRPC's fds stay gRPC's). NULL does nothing. */
void rpc_accept_free(rpc_accept *a);
/* Stops the thread and closes the listeners and the waiting connections (no
 * more hand-overs; new connections are refused); rpc_accept_authed stays
 * safe until rpc_accept_free. */
void rpc_accept_stop(rpc_accept *a);
/* Any thread: the connection gRPC got as fd made a call with the token, so
 * it is never closed to make room. */
void rpc_accept_authed(rpc_accept *a, int fd);

#endif
