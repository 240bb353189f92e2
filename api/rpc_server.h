/* rpc_server — the server half of the rpc layer (see rpc.h, docs/rpc.md).
 *
 * Every accepted call runs its handler on a thread of its own (unary calls on
 * a bounded worker pool), so handlers are written as plain blocking code:
 * rpc_call_recv / rpc_call_send block until done or until the call is
 * cancelled (client cancel, deadline, peer gone, server shutdown). */
#ifndef KDIAG_RPC_SERVER_H
#define KDIAG_RPC_SERVER_H

#include <grpc/status.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connections open at once, default: clients (one connection each per CLI
 * run, grpcurl, tests) need a handful; each costs gRPC core 12-18 KiB. */
#define RPC_MAX_CONNS 256
/* Silence allowed before the client's HTTP/2 preface, default: clients send
 * it at once, also through port-forward. */
#define RPC_PREFACE_MS 5000

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

typedef enum {
    RPC_UNARY,         /* one request, one response */
    RPC_SERVER_STREAM, /* one request, many responses */
    RPC_BIDI_STREAM,   /* many requests, many responses */
} rpc_kind;

/* A handler returns the status to finish the call with; it may set a message
 * with rpc_call_set_message(). For RPC_UNARY the response is what the handler
 * passed to rpc_call_send() (exactly once on OK). For streams the handler
 * reads with rpc_call_recv() and writes with rpc_call_send(). */
typedef grpc_status_code (*rpc_handler_fn)(rpc_call *call, void *ud);

typedef struct {
    const char *bind;  /* "127.0.0.1:0" */
    const char *token; /* when non-NULL, calls need "authorization: Bearer <token>",
                               else UNAUTHENTICATED */
    int keepalive_ms;  /* ping interval to detect vanished peers; 0 = 5000 (RPC_KEEPALIVE_MS) */
    int max_msg_bytes; /* largest request accepted; 0 = 4 MiB */
    int unary_workers; /* worker threads for unary calls; 0 = 4 */
    bool verbose;      /* one debug line per call on stderr */
    int max_streams;   /* concurrent streaming calls (one thread each); more get
                               RESOURCE_EXHAUSTED; 0 = 256 */
    int max_conns;     /* open connections at most (api/rpc_accept.h); 0 = RPC_MAX_CONNS */
    size_t memory;     /* gRPC core's buffers, all connections together; 0 = 128 MiB */
    int preface_ms;    /* a connection that has not sent the HTTP/2 preface by then is
                               closed (api/rpc_accept.h); 0 = RPC_PREFACE_MS */
} rpc_server_opts;

/* *ret is NULL on failure. */
int rpc_server_new(rpc_server **ret, const rpc_server_opts *opts);
/* method is the full path, e.g. "/kdiag.solo.io.Manager/Ps". */
int rpc_server_add(rpc_server *s, const char *method, rpc_kind kind, rpc_handler_fn fn, void *ud);
/* A unary method served also without the token (the peer has not proven
 * anything yet: Hello). Its calls share the unary workers and count as
 * unauthenticated (rpc_log_noise, no mark on the connection). */
int rpc_server_add_open(rpc_server *s, const char *method, rpc_handler_fn fn, void *ud);
/* Binds and starts serving; *port receives the bound port. */
int rpc_server_start(rpc_server *s, int *port);
/* Cancels every in-flight call, waits for handlers to return, stops. */
void rpc_server_shutdown(rpc_server *s);
void rpc_server_free(rpc_server *s);

/* A call is used by one handler thread; rpc_call_recv and rpc_call_send may
 * block at the same time in two threads (one of each) for bidi streams. */

/* Next request message (malloc'd, caller frees; never NULL, len may be 0). 0 = message, -ENODATA =
 * client half-closed, -ECANCELED = call cancelled, -EMSGSIZE = over limit. */
int rpc_call_recv(rpc_call *c, uint8_t **buf, size_t *len);
/* Sends one response message; blocks until the transport took it. */
int rpc_call_send(rpc_call *c, const uint8_t *buf, size_t len);
/* Streams: sends the status now, with the message set so far, instead of when
 * the handler returns (which then returns whatever: it is not sent again). A
 * thread waiting in rpc_call_recv returns; later sends fail. For a handler
 * whose answer is complete before the client half-closes. */
void rpc_call_end(rpc_call *c, grpc_status_code code);
/* An eventfd that becomes readable once the call is cancelled or the peer is
 * gone; for handlers that wait on other fds (epoll/poll) too. Owned by the call. */
int rpc_call_cancel_fd(rpc_call *c);
bool rpc_call_cancelled(const rpc_call *c);
/* Request metadata value for key (lowercase), or NULL. Valid during the handler. */
const char *rpc_call_metadata(const rpc_call *c, const char *key);
const char *rpc_call_method(const rpc_call *c);
const char *rpc_call_peer(const rpc_call *c);
/* Milliseconds left before the client's deadline; -1 when there is none. */
int64_t rpc_call_deadline_ms(const rpc_call *c);
void rpc_call_set_message(rpc_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
