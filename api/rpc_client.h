/* rpc_client — the client half of the rpc layer (see rpc.h, docs/rpc.md).
 *
 * One channel per client, the token sent on every call. Each call is driven
 * by the thread that calls in: plain blocking code. */
#ifndef KDIAG_RPC_CLIENT_H
#define KDIAG_RPC_CLIENT_H

#include <grpc/status.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest message a client takes: responses can be large (a Ps listing of
 * thousands of processes); the manager keeps its Ps response under it. */
#define RPC_CLIENT_MAX_MSG (64 << 20)

typedef struct rpc_client rpc_client;
typedef struct rpc_stream rpc_stream;

typedef struct {
    grpc_status_code code;
    char message[512];
} rpc_status;

/* Sets what gRPC core reads from the environment when it starts, for
 * clients: GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS (RPC_CLIENT_POLL_MS,
 * docs/rpc.md), unless the user set it. setenv races with getenv on other
 * threads, so a program calls this before it starts any; gRPC's start (the
 * first client or server) calls it too, for the programs that do not. */
void rpc_client_env(void);

/* target "127.0.0.1:PORT"; token may be NULL (no authorization header).
 * *ret is NULL on failure. */
int rpc_client_new(rpc_client **ret, const char *target, const char *token);
/* A client on fd, a socket already connected to the server (a kept
 * forward's spare connection, cli/keep.h); it owns fd, also on failure.
 * Its calls fail once that connection ends: there is no reconnecting. */
int rpc_client_new_fd(rpc_client **ret, int fd, const char *token);
/* Sends token (NULL: none) with the calls started from now on; for a client
 * that first checked who it talks to (Hello). Not while calls start in other
 * threads. 0 or -ENOMEM. */
int rpc_client_set_token(rpc_client *cl, const char *token);
void rpc_client_free(rpc_client *cl);

/* Unary call. timeout_ms <= 0 means no deadline. On return st holds the
 * call's status; 0 is returned when st->code == GRPC_STATUS_OK and *resp
 * (malloc'd) holds the response, -EPROTO otherwise. */
int rpc_client_unary(rpc_client *cl, const char *method, const uint8_t *req, size_t req_len, uint8_t **resp,
                     size_t *resp_len, int timeout_ms, rpc_status *st);

/* Server-streaming call: sends req and half-closes. A failure to send
 * surfaces as the call's status on the first read. *ret is NULL on failure. */
int rpc_client_stream_open(rpc_stream **ret, rpc_client *cl, const char *method, const uint8_t *req,
                           size_t req_len, int timeout_ms);
/* Next message: 0 = message (malloc'd), 1 = stream ended (status in st),
 * negative errno on local failure. */
int rpc_stream_read(rpc_stream *s, uint8_t **buf, size_t *len, rpc_status *st);
/* Thread-safe; a blocked rpc_stream_read returns 1 with GRPC_STATUS_CANCELLED. */
void rpc_stream_cancel(rpc_stream *s);
void rpc_stream_free(rpc_stream *s);

/* Bidirectional call: open, then write / close_send and read as above
 * (one writer and one reader thread at most). *ret is NULL on failure. */
int rpc_client_bidi_open(rpc_stream **ret, rpc_client *cl, const char *method, int timeout_ms);
int rpc_stream_write(rpc_stream *s, const uint8_t *buf, size_t len);
int rpc_stream_close_send(rpc_stream *s);

#endif
