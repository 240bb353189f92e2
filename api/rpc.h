/* rpc — the small layer over gRPC's C core that the manager and the CLI share.
 *
 * Messages cross this layer as serialized protobuf bytes; callers encode and
 * decode with protobuf-c. Every function returns 0 or a negative errno unless
 * it says otherwise.
 *
 * Server model: every accepted call runs its handler on a thread of its own
 * (unary calls on a bounded worker pool), so handlers are written as plain
 * blocking code: rpc_call_recv / rpc_call_send block until done or until the
 * call is cancelled (client cancel, deadline, peer gone, server shutdown).
 */
#ifndef KDIAG_RPC_H
#define KDIAG_RPC_H

#include <grpc/status.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- server ---- */

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

typedef enum {
    RPC_UNARY,          /* one request, one response */
    RPC_SERVER_STREAM,  /* one request, many responses */
    RPC_BIDI_STREAM,    /* many requests, many responses */
} rpc_kind;

/* A handler returns the status to finish the call with; it may set a message
 * with rpc_call_set_message(). For RPC_UNARY the response is what the handler
 * passed to rpc_call_send() (exactly once on OK). For streams the handler
 * reads with rpc_call_recv() and writes with rpc_call_send(). */
typedef grpc_status_code (*rpc_handler_fn)(rpc_call *call, void *ud);

typedef struct {
    const char *bind;       /* "127.0.0.1:0" */
    const char *token;      /* when non-NULL, calls need "authorization: Bearer <token>",
                               else UNAUTHENTICATED */
    int keepalive_ms;       /* ping interval to detect vanished peers; 0 = 10000 */
    int max_msg_bytes;      /* largest request accepted; 0 = 4 MiB */
    int unary_workers;      /* worker threads for unary calls; 0 = 4 */
    bool verbose;           /* one debug line per call on stderr */
    int max_streams;        /* concurrent streaming calls (one thread each); more get
                               RESOURCE_EXHAUSTED; 0 = 256 */
} rpc_server_opts;

rpc_server *rpc_server_new(const rpc_server_opts *opts);
/* method is the full path, e.g. "/kdiag.solo.io.Manager/Ps". */
int rpc_server_add(rpc_server *s, const char *method, rpc_kind kind, rpc_handler_fn fn, void *ud);
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

/* ---- client ---- */

typedef struct rpc_client rpc_client;
typedef struct rpc_stream rpc_stream;

typedef struct {
    grpc_status_code code;
    char message[512];
} rpc_status;

/* target "127.0.0.1:PORT"; token may be NULL (no authorization header). */
rpc_client *rpc_client_new(const char *target, const char *token);
void rpc_client_free(rpc_client *cl);

/* Unary call. timeout_ms <= 0 means no deadline. On return st holds the
 * call's status; 0 is returned when st->code == GRPC_STATUS_OK and *resp
 * (malloc'd) holds the response, -EPROTO otherwise. */
int rpc_client_unary(rpc_client *cl, const char *method, const uint8_t *req, size_t req_len,
                     uint8_t **resp, size_t *resp_len, int timeout_ms, rpc_status *st);

/* Server-streaming call: sends req and half-closes. */
rpc_stream *rpc_client_stream_open(rpc_client *cl, const char *method, const uint8_t *req,
                                   size_t req_len, int timeout_ms);
/* Next message: 0 = message (malloc'd), 1 = stream ended (status in st),
 * negative errno on local failure. */
int rpc_stream_read(rpc_stream *s, uint8_t **buf, size_t *len, rpc_status *st);
/* Thread-safe; a blocked rpc_stream_read returns 1 with GRPC_STATUS_CANCELLED. */
void rpc_stream_cancel(rpc_stream *s);
void rpc_stream_free(rpc_stream *s);

/* Bidirectional call: open, then write / close_send and read as above
 * (one writer and one reader thread at most). */
rpc_stream *rpc_client_bidi_open(rpc_client *cl, const char *method, int timeout_ms);
int rpc_stream_write(rpc_stream *s, const uint8_t *buf, size_t len);
int rpc_stream_close_send(rpc_stream *s);

#endif
