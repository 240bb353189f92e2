/* splice_pump — moves bytes from one socket to another through a pipe with
 * splice(2), for the manager's tunnel and the CLI's bridge alike. Both ends
 * are non-blocking; the caller waits (epoll/poll) and calls pump again. */
#ifndef KDIAG_SPLICE_PUMP_H
#define KDIAG_SPLICE_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int pipe[2];
    size_t inpipe, cap; /* bytes in the pipe; pipe capacity */
    bool eof, shut;     /* source reached EOF; this direction is done (SHUT_WR sent unless hold_fin) */
    bool hold_fin;      /* the source's EOF does not shut the destination (reported out of band instead) */
    uint64_t moved;     /* bytes written to the destination */
    uint64_t shut_at;   /* shut the destination once moved reaches this (UINT64_MAX: at the source's EOF only) */
} splice_pump;

/* A pipe of about pipe_bytes (best effort: fewer when the user's pipe budget is spent). */
int splice_pump_init(splice_pump *d, size_t pipe_bytes);
void splice_pump_close(splice_pump *d);
/* Moves what it can from -> to until both would block (what edge-triggered
 * epoll needs); passes a half-close on (the source's EOF, or shut_at
 * reached). 0, or -errno on a hard error. */
int splice_pump_run(splice_pump *d, int from, int to);
/* Closes fd so the peer sees a reset (RST), not an orderly FIN. */
void splice_close_reset(int fd);

#endif
