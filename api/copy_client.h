/* copy_client — the client's side of CopyFrom and CopyTo (docs/cp.md), used by
 * the CLI (cli/cp.c) and the copy tests: the remote tree is streamed to or
 * from a local path through copytree, so the local side also writes through
 * temporary names and keeps modes and mtimes (owners when running as root).
 *
 * Both return 0 or -errno with one line in err: the manager's status message
 * for a failure on its side ("cannot open /x: No such file or directory
 * (ENOENT)"), copytree's for one on the local side. */
#ifndef KDIAG_COPY_CLIENT_H
#define KDIAG_COPY_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "copytree.h"
#include "rpc.h"

/* Which container's root the remote path is in (api/kdiag.proto Target):
 * container_id (NULL or "" for none) or pid; neither: the manager's PID 1. */
typedef struct {
    const char *container_id;
    uint64_t pid;
} copy_client_target;

/* Called now and then (and once at the end) with what has been copied so far. */
typedef void (*copy_client_progress_fn)(void *ud, const copytree_stats *st);

/* Lets another thread stop a copy (Ctrl-C): the call is cancelled, the copy
 * returns -ECANCELED, and both sides remove their temporaries. */
typedef struct {
    pthread_mutex_t mu;
    rpc_stream *s; /* the call in progress */
    bool cancelled;
} copy_client_cancel;
#define COPY_CLIENT_CANCEL_INIT \
    { \
        PTHREAD_MUTEX_INITIALIZER, NULL, false \
    }
/* Thread-safe; before the call starts, it is cancelled as soon as it does. */
void copy_client_cancel_now(copy_client_cancel *c);

typedef struct {
    copy_client_progress_fn progress; /* may be NULL; called on the copying thread */
    void *ud;
    int timeout_ms;             /* of the whole call; <= 0: none */
    copy_client_cancel *cancel; /* may be NULL */
    bool no_zstd;               /* file content goes as it is both ways (docs/cp.md "Compression") */
    size_t window;  /* CopyTo: bytes in flight, not yet written by the manager; 0: COPY_CLIENT_WINDOW */
    bool to_stdout; /* CopyFrom: one regular file's content to stdout, local unused (-EPIPE: its reader went) */
    int from_fd;    /* CopyTo: > 0, the regular file open there goes as one file named "stdin", local unused */
    off_t from_off; /* from this offset of from_fd to its end */
} copy_client_opts;

/* CopyTo's default window (docs/cp.md "Memory and flow control"): what the manager's
 * gRPC may hold for one copy. At 100 ms round trip it allows 80 MB/s; eight
 * copies at once hold half of the manager's gRPC memory. */
#define COPY_CLIENT_WINDOW (8u << 20)

/* remote (in t's root) → local (an existing directory receives it under its name), or to stdout. */
int copy_client_from(rpc_client *cl, const copy_client_target *t, const char *remote, const char *local,
                     const copy_client_opts *o, char *err, size_t errlen);
/* local → remote. */
int copy_client_to(rpc_client *cl, const char *local, const copy_client_target *t, const char *remote,
                   const copy_client_opts *o, char *err, size_t errlen);

/* The status code the manager ends a copy with for -errno rc (-ENOENT →
 * NOT_FOUND, ...), and back: both directions of the mapping in one place. */
grpc_status_code copy_client_status(int rc);
int copy_client_errno(grpc_status_code code);

#endif
