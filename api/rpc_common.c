/* rpc_common — see rpc_common.h. */
#include "rpc_common.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_client.h"

static pthread_once_t rpc_once = PTHREAD_ONCE_INIT;
static atomic_int rpc_live; /* servers, clients and streams alive */

/* At exit, gRPC's threads are stopped when nothing of ours still uses them;
 * otherwise (exit() with a call in flight) gRPC is left to the kernel. */
static void rpc_atexit(void)
{
    if (atomic_load(&rpc_live) == 0)
        grpc_shutdown_blocking();
}

/* A grpc_init / grpc_shutdown pair per client tore down and restarted gRPC's
 * threads every time a caller made a fresh client (the CLI does per attempt).
 * gRPC starts its threads here, and they start the rest: with every signal
 * blocked meanwhile, none of them ever takes a signal meant for the
 * program's own threads (basic/signal-util.h), whenever the first client or
 * server is made. */
static void rpc_start(void)
{
    rpc_client_env();
    sigset_t old;
    rpc_signals_off(&old);
    grpc_init();
    rpc_signals_on(&old);
    atexit(rpc_atexit);
}

void rpc_client_env(void)
{
    char poll_ms[16];
    snprintf(poll_ms, sizeof poll_ms, "%d", RPC_CLIENT_POLL_MS);
    setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", poll_ms, 0); /* read by grpc_init; a user's value wins */
}

void rpc_signals_off(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

void rpc_signals_on(const sigset_t *old)
{
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

void rpc_ref(void)
{
    pthread_once(&rpc_once, rpc_start);
    atomic_fetch_add(&rpc_live, 1);
}

void rpc_unref(void)
{
    atomic_fetch_sub(&rpc_live, 1);
}

grpc_byte_buffer *rpc_bb_from(const uint8_t *buf, size_t len)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* The slices straight into one malloc'd buffer: one copy of each message
 * (grpc_byte_buffer_reader_readall would make a flat slice first, then
 * this a second copy). */
int rpc_bb_take(grpc_byte_buffer *bb, uint8_t **buf, size_t *len)
{
    grpc_byte_buffer_reader r;
    grpc_slice *sl;
    size_t n = 0, at = 0;
    uint8_t *p = NULL;
    int rc = -EBADMSG; /* undecompressable */
    if (grpc_byte_buffer_reader_init(&r, bb)) {
        while (grpc_byte_buffer_reader_peek(&r, &sl))
            n += GRPC_SLICE_LENGTH(*sl);
        grpc_byte_buffer_reader_destroy(&r);
        rc = (p = malloc(n ? n : 1)) ? 0 : -ENOMEM;
    }
    if (p && grpc_byte_buffer_reader_init(&r, bb)) {
        while (grpc_byte_buffer_reader_peek(&r, &sl) && at + GRPC_SLICE_LENGTH(*sl) <= n) {
            memcpy(p + at, GRPC_SLICE_START_PTR(*sl), GRPC_SLICE_LENGTH(*sl));
            at += GRPC_SLICE_LENGTH(*sl);
        }
        grpc_byte_buffer_reader_destroy(&r);
    }
    if (p) {
        *buf = p;
        *len = at;
    }
    grpc_byte_buffer_destroy(bb);
    return rc;
}
