/* rpc_common — what the server and client halves of the rpc layer share:
 * gRPC's one-per-process start, byte buffer copies, channel-arg helpers.
 * Private to api/rpc_server.c and api/rpc_client.c. */
#ifndef KDIAG_RPC_COMMON_H
#define KDIAG_RPC_COMMON_H

#include <grpc/byte_buffer.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Both ends ping an idle connection this often and drop it when a ping goes
 * unanswered this long: a vanished (killed, frozen, cut off) peer is gone in
 * ~10 s, and with it a CLI's redirect rules (docs/rpc.md). */
#define RPC_KEEPALIVE_MS 5000
/* How often gRPC core reads a client channel with no call in flight (its
 * "backup poller", GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS; 5 s by
 * default). A peer's keepalive ping is answered only then, so this must stay
 * well below the peer's ping timeout (RPC_KEEPALIVE_MS), or the peer drops
 * idle clients (test_rpc: test_idle_client_keeps_its_connection). */
#define RPC_CLIENT_POLL_MS 1000

#define RPC_ARG_INT(key, v) \
    { \
        GRPC_ARG_INTEGER, (char *)(key), \
        { \
            .integer = (v) \
        } \
    }

/* Starts gRPC once per process, on first use (it stays up until exit, where
 * it is shut down when no rpc object is left). Every rpc object counts itself
 * with rpc_ref / rpc_unref. */
void rpc_ref(void);
/* Around what makes gRPC start threads (grpc_init, a channel): every signal
 * blocked in the calling thread meanwhile, so that gRPC's threads, which
 * inherit the mask, never take a signal meant for the program's own threads
 * (basic/signal-util.h), however early the first client is made. */
void rpc_signals_off(sigset_t *old);
void rpc_signals_on(const sigset_t *old);
void rpc_unref(void);

grpc_byte_buffer *rpc_bb_from(const uint8_t *buf, size_t len);
/* Copies a received message out (malloc'd, never NULL) and destroys bb. */
int rpc_bb_take(grpc_byte_buffer *bb, uint8_t **buf, size_t *len);

#endif
