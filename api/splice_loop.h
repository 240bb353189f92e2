/* splice_loop — the one event loop that splices socket pairs both ways, shared
 * by the manager's tunnel (manager/tunnel.c) and the CLI's bridge (cli/bridge.c).
 *
 * One thread and one epoll set serve every pair: bytes go through pipes with
 * splice(2) (api/splice_pump.h), a FIN on one side becomes shutdown(SHUT_WR)
 * on the other (or is reported to the owner, splice_pair_opts.a_eof), a reset
 * or error on one side resets the other. The number of
 * pairs is capped (splice_loop_pair refuses with -EBUSY at the cap), and
 * splice_loop_free leaves no thread and no fd behind.
 *
 * The loop's owner runs its own fds on the same thread (a listener,
 * connections still in their handshake) with splice_loop_watch, and reaches
 * the thread from others with splice_loop_post. Functions marked "loop thread"
 * may only be called from callbacks the loop runs.
 */
#ifndef KDIAG_SPLICE_LOOP_H
#define KDIAG_SPLICE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPLICE_LOOP_MAX_PAIRS 4096             /* default cap */
#define SPLICE_LOOP_PIPE_BYTES (1024 * 1024)   /* per direction, best effort */
#define SPLICE_LOOP_THREAD_NAME "kdiag-splice" /* the loop's thread, as ps and /proc show it */

typedef struct splice_loop splice_loop;

/* An fd of the owner's, watched on the loop thread: embed it in the object
 * the fd belongs to; fn gets the epoll events. */
typedef struct splice_watch splice_watch;
typedef void (*splice_watch_fn)(splice_watch *w, uint32_t events);
struct splice_watch {
    splice_watch_fn fn;
};

/* A pair ended: 0 when both directions finished, else the -errno that reset it. */
typedef void (*splice_done_fn)(void *ud, int err);

/* Out-of-band half-close, for a b that must not carry a FIN (kubectl
 * port-forward ends the whole stream at the first FIN): a reached EOF and all
 * of its bytes (count given) are written to b. Return true when the owner
 * passes that on out of band (b stays open), false to send the FIN on b after
 * all. Not called when b -> a is over already: then the FIN goes on b (a full
 * close, nothing left to cut off). Loop thread. */
typedef bool (*splice_eof_fn)(void *ud, uint64_t bytes);

typedef struct splice_pair splice_pair;

typedef struct {
    splice_done_fn done; /* may be NULL */
    splice_eof_fn a_eof; /* NULL: a's FIN becomes shutdown(b, SHUT_WR) */
    void *ud;
    /* b's far end sends a FIN only once both directions ended there (it
     * passes half-closes out of band, as a_eof): a FIN from b while a -> b
     * still runs means that end was torn down (its own peer reset, or it
     * died), and resets a rather than ending b -> a with a FIN. */
    bool b_fin_when_both;
    bool a_shut_known;     /* b's side already closed its write side ... */
    uint64_t a_shut_after; /* ... after this many bytes: as splice_pair_shut_after */
} splice_pair_opts;

typedef struct {
    int max_pairs;     /* 0 = SPLICE_LOOP_MAX_PAIRS */
    size_t pipe_bytes; /* 0 = SPLICE_LOOP_PIPE_BYTES */
    /* Runs on the loop thread before every wait; returns ms until the owner's
     * next deadline, or -1 for none. May be NULL. */
    int (*tick)(void *ud);
    void *ud;
} splice_loop_opts;

/* Starts the loop's thread. */
int splice_loop_new(splice_loop **ret, const splice_loop_opts *o);
/* Stops and joins the thread, runs the posts still queued (splice_loop_stopping
 * is true for them), closes every pair still running (done is called with
 * -ECANCELED). The owner closes its watched fds afterwards. NULL: no-op. */
void splice_loop_free(splice_loop *l);

/* Any thread: runs fn(ud) on the loop thread soon (or in splice_loop_free, if
 * that comes first). 0 or -ENOMEM. */
int splice_loop_post(splice_loop *l, void (*fn)(void *ud), void *ud);
/* True once splice_loop_free started: a post then should free what it carries. */
bool splice_loop_stopping(const splice_loop *l);

/* Loop thread (or before the loop runs anything of the owner's): */
int splice_loop_watch(splice_loop *l, int fd, uint32_t events, splice_watch *w);
int splice_loop_rewatch(splice_loop *l, int fd, uint32_t events, splice_watch *w);
/* Before closing fd or freeing w: also drops events for w still pending in
 * the batch being handled. */
void splice_loop_unwatch(splice_loop *l, int fd, splice_watch *w);
/* Loop thread: splices a <-> b (connected sockets, made non-blocking here)
 * until both directions are done. Owns a and b from here on, also on failure:
 * -EBUSY at the cap, or an -errno of the set-up (a and b are reset then, and
 * done is not called). done (may be NULL) runs on the loop thread at the end. */
int splice_loop_pair(splice_loop *l, int a, int b, splice_done_fn done, void *ud);
/* Loop thread: the same with opts; *ret (may be NULL) is the pair, valid
 * until its done runs. */
int splice_loop_pair_opts(splice_loop *l, int a, int b, const splice_pair_opts *o, splice_pair **ret);
/* Loop thread: b's side closed its write side after bytes (reported out of
 * band): shuts a's write side once that many bytes of b's reached a (at once
 * when they did). May end the pair (done runs before this returns). */
void splice_pair_shut_after(splice_pair *p, uint64_t bytes);

#endif
