/* tunnel — see tunnel.h. The splice loop's thread owns the listener, the
 * tunnel connections in their hello and the spliced pairs; handler threads
 * only add waiting peers (under the lock). */
#include "tunnel.h"
#include "splice_loop.h"
#include "splice_pump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "basic/list.h"
#include "basic/sock-util.h"
#include "basic/time-util.h"

#define NBUCKETS 1024
#define NOISE_WINDOW_MS 10000 /* failed connections are logged as one summary line per window */

/* What can go wrong with connections before they are paired: anyone in the
 * pod can cause these (no token needed for most), so they are counted and
 * summed up once per NOISE_WINDOW_MS instead of logged one by one. */
typedef enum {
    NOISE_SHORT,    /* tunnel connection closed before token + status */
    NOISE_TOKEN,    /* unknown or used token */
    NOISE_SILENT,   /* no token within the pairing timeout */
    NOISE_SPARE,    /* a spare refused: wrong status, its stream ended, or over CONTRACT_TUNNEL_SPARES_MAX */
    NOISE_UNPAIRED, /* redirected connection without a tunnel connection in time */
    NOISE_LIMIT,    /* paired beyond max_pairs */
    NOISE_ACCEPT,   /* accept paused (fd table or memory full) */
    NOISE_KINDS
} noise_kind;

/* A redirected connection waiting for its tunnel connection. */
typedef struct waiting {
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    int fd;
    const void *owner;
    int report_fd;       /* see tunnel_add_peer */
    bool shut_known;     /* the client's HalfClose came before the pairing: */
    uint64_t shut_after; /* shut the peer after this many bytes */
    int64_t deadline;
    struct waiting *hnext; /* hash chain */
    list_node link;        /* t->wait, deadline order; once claimed t->claimed */
} waiting;

/* A tunnel connection that has not finished token + status, or a parked spare
 * (docs/redirect.md "Spare tunnel connections"). */
typedef struct hello {
    splice_watch w;
    tunnel *t;
    int fd;
    uint8_t buf[CONTRACT_TUNNEL_HELLO_LEN];
    size_t got;
    int64_t deadline;
    waiting *peer;     /* claimed by a valid token, waiting for the status byte */
    bool spare_asked;  /* the token is a stream's spare_token: parks on SPARE */
    const void *owner; /* parked: the stream whose next connection it may carry */
    bool taken;        /* parked, under t->lock: taken for an announcement (or dropped); a post ends it */
    list_node link;    /* t->hellos in deadline order; parked: t->spares, under t->lock */
} hello;

/* A stream's spare_token: tunnel connections presenting it park for it. */
typedef struct spare_reg {
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    const void *owner;
    list_node link; /* t->regs, under t->lock */
} spare_reg;

/* A spliced connection: the peer is the pair's a, the tunnel connection its b. */
typedef struct paired {
    tunnel *t;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    const void *owner;
    int report_fd;   /* -1: half-closes travel as FINs; guarded by t->lock */
    splice_pair *sp; /* loop thread */
    list_node link;  /* t->paired, under t->lock */
} paired;

struct tunnel {
    tunnel_opts o;
    int listen_fd, timer_fd, port;
    splice_watch wlisten, wtimer;
    splice_loop *loop;
    int64_t accept_resume;       /* 0 = accepting */
    unsigned noise[NOISE_KINDS]; /* loop thread only */
    int64_t noise_until;         /* end of the current summary window, 0 = none open */

    pthread_mutex_t lock; /* guards buckets and the waiting lists */
    waiting *buckets[NBUCKETS];
    list_node wait;    /* waiting */
    list_node claimed; /* waiting, claimed by a hello: drop and move reach them until pair_start */

    list_node hellos; /* hello, loop thread only */
    list_node paired; /* paired, under lock */
    list_node regs;   /* spare_reg, under lock */
    list_node spares; /* hello, parked, under lock */
};

static void logf_(const tunnel *t, bool always, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(const tunnel *t, bool always, const char *fmt, ...)
{
    if (!always && !t->o.verbose)
        return;
    char line[512]; /* room for the noise summary */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kdiag-manager: tunnel: %s\n", line);
}

/* Counts one failure for the next summary line. Loop thread. */
static void noise(tunnel *t, noise_kind k)
{
    if (!t->noise_until)
        t->noise_until = time_now_ms() + NOISE_WINDOW_MS;
    t->noise[k]++;
}

/* Logs the summary once its window is over (or at once when force); returns
 * the window's end while one is open, else -1. Counts only: nothing a peer
 * sent reaches the log. */
static int64_t noise_flush(tunnel *t, int64_t now, bool force)
{
    if (!t->noise_until || (!force && now < t->noise_until))
        return t->noise_until ? t->noise_until : -1;
    const unsigned *n = t->noise;
    logf_(t, true,
          "%u bad connections in the last %d s: %u closed before token and status, %u with an unknown or used "
          "token, %u silent for %d ms, %u spares refused (status, ended stream or over %d); %u redirected "
          "connections got no tunnel connection in time (reset), %u over the limit of %d (reset); accept paused %u "
          "times",
          n[NOISE_SHORT] + n[NOISE_TOKEN] + n[NOISE_SILENT] + n[NOISE_SPARE], NOISE_WINDOW_MS / 1000,
          n[NOISE_SHORT], n[NOISE_TOKEN], n[NOISE_SILENT], t->o.pair_timeout_ms, n[NOISE_SPARE],
          CONTRACT_TUNNEL_SPARES_MAX, n[NOISE_UNPAIRED], n[NOISE_LIMIT], t->o.max_pairs, n[NOISE_ACCEPT]);
    memset(t->noise, 0, sizeof t->noise);
    t->noise_until = 0;
    return -1;
}

static unsigned bucket_of(const uint8_t *token)
{
    uint32_t h;
    memcpy(&h, token, sizeof h);
    return h % NBUCKETS;
}

/* Caller holds t->lock. Removes and returns the peer holding token, or NULL. */
static waiting *claim_locked(tunnel *t, const uint8_t *token)
{
    waiting **pp = &t->buckets[bucket_of(token)];
    for (; *pp; pp = &(*pp)->hnext) {
        waiting *w = *pp;
        if (memcmp(w->token, token, CONTRACT_TUNNEL_TOKEN_LEN) == 0) {
            *pp = w->hnext;
            list_del(&w->link);
            return w;
        }
    }
    return NULL;
}

/* ---- splicing ---- */

static void paired_free(paired *p)
{
    pthread_mutex_lock(&p->t->lock);
    list_del(&p->link);
    pthread_mutex_unlock(&p->t->lock);
    free(p);
}

static void on_pair_done(void *ud, int err)
{
    paired *p = ud;
    tunnel *t = p->t;
    paired_free(p);
    if (err < 0)
        logf_(t, false, "pair reset: %s", strerror(-err));
    else
        logf_(t, false, "pair closed");
}

/* The peer closed its write side: tells its stream (a tunnel_report on its
 * pipe) instead of sending a FIN through the tunnel. False when there is no
 * stream to tell (it ended) or its pipe is full. */
static bool on_peer_eof(void *ud, uint64_t bytes)
{
    paired *p = ud;
    tunnel_report r = {.bytes = bytes};
    memcpy(r.token, p->token, sizeof r.token);
    pthread_mutex_lock(&p->t->lock);
    bool told = p->report_fd >= 0 && write(p->report_fd, &r, sizeof r) == (ssize_t)sizeof r;
    pthread_mutex_unlock(&p->t->lock);
    return told;
}

static void pair_start(tunnel *t, waiting *w, int tunnel_fd)
{
    int rc = -ENOMEM;
    paired *p = calloc(1, sizeof *p);
    bool report = false;
    /* from claimed to paired in one step: tunnel_drop_owner and tunnel_move_owner see it in one of them */
    pthread_mutex_lock(&t->lock);
    list_del(&w->link);
    if (p) {
        *p = (paired){.t = t, .owner = w->owner, .report_fd = w->report_fd};
        memcpy(p->token, w->token, sizeof p->token);
        list_add(&t->paired, &p->link);
        report = p->report_fd >= 0;
    }
    pthread_mutex_unlock(&t->lock);
    if (p) {
        splice_pair_opts po = {.done = on_pair_done,
                               .a_eof = report ? on_peer_eof : NULL,
                               .b_fin_when_both = report,
                               .ud = p,
                               .a_shut_known = w->shut_known,
                               .a_shut_after = w->shut_after};
        rc = splice_loop_pair_opts(t->loop, w->fd, tunnel_fd, &po, &p->sp); /* p may be gone on return */
        if (rc < 0)
            paired_free(p);
    } else {
        splice_close_reset(w->fd);
        splice_close_reset(tunnel_fd);
    }
    if (rc == -EBUSY) {
        noise(t, NOISE_LIMIT);
        logf_(t, false, "%d connections spliced already (the limit): peer reset", t->o.max_pairs);
    } else if (rc < 0)
        logf_(t, true, "cannot splice a paired connection: %s", strerror(-rc));
    else
        logf_(t, false, "paired");
}

/* ---- tunnel connections in their hello ---- */

/* Caller holds t->lock. The registration of a spare_token, or NULL. */
static spare_reg *reg_find_locked(tunnel *t, const uint8_t *token)
{
    spare_reg *r;
    list_for_each_entry(r, &t->regs, link)
        if (memcmp(r->token, token, CONTRACT_TUNNEL_TOKEN_LEN) == 0)
            return r;
    return NULL;
}

static void hello_free(tunnel *t, hello *h, bool reset_peer);

/* A complete spare hello: parks h for its stream (its watch stays: EOF or
 * bytes from the client end it), or closes it (wrong status, stream gone, or
 * the stream's spares at their limit). */
static void park(tunnel *t, hello *h, uint8_t status)
{
    int n = 0;
    pthread_mutex_lock(&t->lock);
    spare_reg *r = status == CONTRACT_TUNNEL_STATUS_SPARE ? reg_find_locked(t, h->buf) : NULL;
    hello *o;
    list_for_each_entry(o, &t->spares, link)
        n += r && o->owner == r->owner;
    if (r && n < CONTRACT_TUNNEL_SPARES_MAX) {
        list_del(&h->link);
        h->owner = r->owner;
        list_add_tail(&t->spares, &h->link);
    }
    pthread_mutex_unlock(&t->lock);
    if (h->owner) {
        logf_(t, false, "spare tunnel connection parked");
        return;
    }
    noise(t, NOISE_SPARE);
    logf_(t, false, "spare tunnel connection with status %u, for an ended stream or over %d: closed", status,
          CONTRACT_TUNNEL_SPARES_MAX);
    hello_free(t, h, false);
}

/* Loop thread: a parked spare is readable or hung up. Taken for an
 * announcement: the post owns it (and reads the client's hello); else the
 * client closed it or sent what a parked connection must not: closed. */
static void parked_event(tunnel *t, hello *h)
{
    pthread_mutex_lock(&t->lock);
    bool taken = h->taken;
    if (!taken)
        list_del(&h->link);
    pthread_mutex_unlock(&t->lock);
    if (taken) {
        splice_loop_rewatch(t->loop, h->fd, 0, &h->w);
        return;
    }
    logf_(t, false, "spare tunnel connection closed by the client");
    hello_free(t, h, false);
}

static void hello_free(tunnel *t, hello *h, bool reset_peer)
{
    list_del(&h->link);
    if (h->fd >= 0) {
        if (t->loop)
            splice_loop_unwatch(t->loop, h->fd, &h->w);
        close(h->fd);
    }
    if (h->peer) {
        pthread_mutex_lock(&t->lock);
        list_del(&h->peer->link);
        pthread_mutex_unlock(&t->lock);
        if (reset_peer)
            splice_close_reset(h->peer->fd);
        free(h->peer);
    }
    free(h);
}

/* Reads what came of token + status; false when h is finished (and freed). */
static bool hello_fill(tunnel *t, hello *h)
{
    while (h->got < CONTRACT_TUNNEL_HELLO_LEN) {
        ssize_t n = read(h->fd, h->buf + h->got, CONTRACT_TUNNEL_HELLO_LEN - h->got);
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0) {
            if (h->peer) {
                logf_(t, false, "client closed the tunnel after the token: local target refused, resetting the peer");
            } else {
                noise(t, NOISE_SHORT);
                logf_(t, false, "tunnel connection closed after %zu of %d token bytes", h->got,
                      CONTRACT_TUNNEL_TOKEN_LEN);
            }
            hello_free(t, h, true);
            return false;
        }
        h->got += (size_t)n;
        if (h->got >= CONTRACT_TUNNEL_TOKEN_LEN && !h->peer && !h->spare_asked) {
            pthread_mutex_lock(&t->lock);
            h->peer = claim_locked(t, h->buf);
            if (h->peer)
                list_add(&t->claimed, &h->peer->link);
            else
                h->spare_asked = reg_find_locked(t, h->buf) != NULL;
            pthread_mutex_unlock(&t->lock);
            if (!h->peer && !h->spare_asked) {
                noise(t, NOISE_TOKEN);
                logf_(t, false, "tunnel connection with an unknown or used token: closed");
                hello_free(t, h, false);
                return false;
            }
        }
    }
    return true;
}

static void hello_read(tunnel *t, hello *h)
{
    if (!hello_fill(t, h) || h->got < CONTRACT_TUNNEL_HELLO_LEN)
        return;
    uint8_t status = h->buf[CONTRACT_TUNNEL_TOKEN_LEN];
    if (h->spare_asked) {
        park(t, h, status);
        return;
    }
    if (status != CONTRACT_TUNNEL_STATUS_OK) {
        logf_(t, false, "client reports status %u (local target refused): resetting the peer", status);
        hello_free(t, h, true);
        return;
    }
    waiting *peer = h->peer;
    int tunnel_fd = h->fd;
    splice_loop_unwatch(t->loop, tunnel_fd, &h->w);
    h->fd = -1;
    h->peer = NULL;
    hello_free(t, h, false);
    pair_start(t, peer, tunnel_fd);
    free(peer);
}

static void on_hello(splice_watch *w, uint32_t events)
{
    (void)events;
    hello *h = (hello *)((char *)w - offsetof(hello, w));
    if (h->owner)
        parked_event(h->t, h);
    else
        hello_read(h->t, h);
}

static void accept_pause(tunnel *t)
{
    noise(t, NOISE_ACCEPT);
    logf_(t, false, "accept: %s; pausing %d ms", strerror(errno), ACCEPT_PAUSE_MS);
    splice_loop_rewatch(t->loop, t->listen_fd, 0, &t->wlisten);
    t->accept_resume = time_now_ms() + ACCEPT_PAUSE_MS;
}

static void on_listener(splice_watch *w, uint32_t events)
{
    (void)events;
    tunnel *t = (tunnel *)((char *)w - offsetof(tunnel, wlisten));
    for (;;) {
        int fd = accept4(t->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (accept_exhausted(errno))
                accept_pause(t);
            return; /* EAGAIN, or a connection that died before accept */
        }
        hello *h = calloc(1, sizeof *h);
        if (!h) {
            close(fd);
            continue;
        }
        *h = (hello){.w = {on_hello}, .t = t, .fd = fd, .deadline = time_now_ms() + t->o.pair_timeout_ms};
        list_add_tail(&t->hellos, &h->link);
        if (splice_loop_watch(t->loop, fd, EPOLLIN | EPOLLRDHUP, &h->w) < 0) {
            hello_free(t, h, false);
            continue;
        }
        hello_read(t, h); /* the token often arrives with the handshake */
    }
}

static void on_timer(splice_watch *w, uint32_t events)
{
    (void)events;
    tunnel *t = (tunnel *)((char *)w - offsetof(tunnel, wtimer));
    uint64_t v;
    if (read(t->timer_fd, &v, sizeof v) < 0) {
        /* spurious: expire() runs before the next wait anyway */
    }
}

/* Resets waiting peers past their deadline; returns the next deadline, -1 for none. */
static int64_t expire_waiting(tunnel *t, int64_t now)
{
    int64_t next = -1;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        waiting *w = list_first_entry_or_null(&t->wait, waiting, link);
        if (w && w->deadline <= now) {
            claim_locked(t, w->token);
            pthread_mutex_unlock(&t->lock);
            noise(t, NOISE_UNPAIRED);
            logf_(t, false, "no tunnel connection for a redirected connection within %d ms: reset",
                  t->o.pair_timeout_ms);
            splice_close_reset(w->fd);
            free(w);
            continue;
        }
        if (w)
            next = w->deadline;
        pthread_mutex_unlock(&t->lock);
        return next;
    }
}

/* The loop's tick: expires hellos and waiting peers, resumes accepting;
 * returns ms until the next deadline, -1 for none. */
static int expire(void *ud)
{
    tunnel *t = ud;
    int64_t now = time_now_ms(), next;

    hello *h;
    while ((h = list_first_entry_or_null(&t->hellos, hello, link)) && h->deadline <= now) {
        noise(t, NOISE_SILENT);
        logf_(t, false, "tunnel connection sent no complete token within %d ms: closed", t->o.pair_timeout_ms);
        hello_free(t, h, true);
    }
    next = expire_waiting(t, now);
    if ((h = list_first_entry_or_null(&t->hellos, hello, link)) && (next < 0 || h->deadline < next))
        next = h->deadline;
    int64_t summary = noise_flush(t, now, false);
    if (summary >= 0 && (next < 0 || summary < next))
        next = summary;
    if (t->accept_resume) {
        if (t->accept_resume <= now) {
            splice_loop_rewatch(t->loop, t->listen_fd, EPOLLIN, &t->wlisten);
            t->accept_resume = 0;
        } else if (next < 0 || t->accept_resume < next) {
            next = t->accept_resume;
        }
    }
    if (next < 0)
        return -1;
    return next - now > 0 ? (int)(next - now) : 0;
}

/* ---- public ---- */

int tunnel_new(tunnel **out, const tunnel_opts *o)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    int rc;
    tunnel *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->o = *o;
    if (t->o.pair_timeout_ms <= 0)
        t->o.pair_timeout_ms = TUNNEL_PAIR_TIMEOUT_MS;
    if (t->o.max_pairs <= 0)
        t->o.max_pairs = SPLICE_LOOP_MAX_PAIRS;
    list_init(&t->wait);
    list_init(&t->claimed);
    list_init(&t->hellos);
    list_init(&t->paired);
    list_init(&t->regs);
    list_init(&t->spares);
    t->wlisten.fn = on_listener;
    t->wtimer.fn = on_timer;
    pthread_mutex_init(&t->lock, NULL);

    t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    t->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (t->listen_fd < 0 || t->timer_fd < 0 || bind(t->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(t->listen_fd, SOMAXCONN) < 0 || getsockname(t->listen_fd, (struct sockaddr *)&sa, &salen) < 0) {
        rc = -errno;
        goto out;
    }
    t->port = ntohs(sa.sin_port);
    splice_loop_opts lo = {.max_pairs = t->o.max_pairs, .tick = expire, .ud = t};
    rc = splice_loop_new(&t->loop, &lo);
    if (rc == 0)
        rc = splice_loop_watch(t->loop, t->timer_fd, EPOLLIN, &t->wtimer);
    if (rc == 0)
        rc = splice_loop_watch(t->loop, t->listen_fd, EPOLLIN, &t->wlisten);
out:
    if (rc < 0)
        tunnel_free(t);
    else
        *out = t;
    return rc;
}

int tunnel_port(const tunnel *t)
{
    return t->port;
}

int tunnel_add_peer(tunnel *t, int fd, const void *owner, int report_fd, uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN])
{
    waiting *w = calloc(1, sizeof *w);
    if (!w) {
        splice_close_reset(fd);
        return -ENOMEM;
    }
    w->fd = fd;
    w->owner = owner;
    w->report_fd = report_fd;
    w->deadline = time_now_ms() + t->o.pair_timeout_ms;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        if (getrandom(w->token, CONTRACT_TUNNEL_TOKEN_LEN, 0) != CONTRACT_TUNNEL_TOKEN_LEN) {
            int e = errno ? -errno : -EIO;
            pthread_mutex_unlock(&t->lock);
            splice_close_reset(fd);
            free(w);
            return e;
        }
        /* 128 random bits do not collide; checked anyway, tokens must be unique. */
        waiting *dup = t->buckets[bucket_of(w->token)];
        while (dup && memcmp(dup->token, w->token, CONTRACT_TUNNEL_TOKEN_LEN) != 0)
            dup = dup->hnext;
        if (!dup)
            break;
    }
    unsigned b = bucket_of(w->token);
    w->hnext = t->buckets[b];
    t->buckets[b] = w;
    bool was_empty = list_empty(&t->wait);
    list_add_tail(&t->wait, &w->link); /* same timeout for all: appending keeps deadline order */
    memcpy(token, w->token, CONTRACT_TUNNEL_TOKEN_LEN);
    pthread_mutex_unlock(&t->lock);
    if (was_empty) {
        /* The thread may sleep without a deadline: a timer wakes it when this one
         * expires (not now: the tunnel connection usually comes first and wakes it). */
        struct itimerspec its = {.it_value = {.tv_sec = t->o.pair_timeout_ms / 1000,
                                              .tv_nsec = (long)(t->o.pair_timeout_ms % 1000) * 1000000 + 1}};
        timerfd_settime(t->timer_fd, 0, &its, NULL);
    }
    return 0;
}

int tunnel_spare_token(tunnel *t, const void *owner, uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN])
{
    spare_reg *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->owner = owner;
    if (getrandom(r->token, sizeof r->token, 0) != (ssize_t)sizeof r->token) {
        int e = errno ? -errno : -EIO;
        free(r);
        return e;
    }
    pthread_mutex_lock(&t->lock);
    list_add(&t->regs, &r->link);
    pthread_mutex_unlock(&t->lock);
    memcpy(token, r->token, sizeof r->token);
    return 0;
}

/* The post of a spare taken off t->spares. Announced: from now on an
 * ordinary tunnel connection in its hello (the client answers the
 * announcement with token + status), else closed. */
typedef struct {
    tunnel *t;
    hello *h;
    bool announced;
} spare_job;

static void spare_run(void *ud)
{
    spare_job *j = ud;
    tunnel *t = j->t;
    hello *h = j->h;
    bool announced = j->announced;
    free(j);
    if (!announced || splice_loop_stopping(t->loop)) {
        hello_free(t, h, false);
        return;
    }
    h->owner = NULL;
    h->taken = false;
    h->spare_asked = false;
    h->got = 0;
    h->deadline = time_now_ms() + t->o.pair_timeout_ms;
    list_add_tail(&t->hellos, &h->link); /* same timeout for all: deadline order */
    splice_loop_rewatch(t->loop, h->fd, EPOLLIN | EPOLLRDHUP, &h->w);
    hello_read(t, h);
}

static void spare_post(tunnel *t, hello *h, bool announced)
{
    spare_job *j = malloc(sizeof *j);
    if (j) {
        *j = (spare_job){.t = t, .h = h, .announced = announced};
        if (splice_loop_post(t->loop, spare_run, j) == 0)
            return;
        free(j);
    }
    /* Cannot reach the loop thread: the fd stays in its epoll set and h
     * stays allocated (parked_event leaves taken spares alone), closed by
     * tunnel_free. Only out of memory gets here. */
    pthread_mutex_lock(&t->lock);
    list_add_tail(&t->spares, &h->link);
    pthread_mutex_unlock(&t->lock);
}

int tunnel_spare_announce(tunnel *t, const void *owner, const uint8_t *msg, size_t len)
{
    uint8_t buf[2 + CONTRACT_TUNNEL_ANNOUNCE_MAX];
    if (len > CONTRACT_TUNNEL_ANNOUNCE_MAX)
        return 0;
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    memcpy(buf + 2, msg, len);
    for (;;) {
        hello *h, *found = NULL;
        pthread_mutex_lock(&t->lock);
        list_for_each_entry(h, &t->spares, link)
            if (h->owner == owner && !h->taken) {
                found = h;
                break;
            }
        if (found) {
            found->taken = true;
            list_del(&found->link);
        }
        pthread_mutex_unlock(&t->lock);
        if (!found)
            return 0;
        /* Nothing was written to a parked connection before: its send buffer has room. */
        ssize_t n = send(found->fd, buf, 2 + len, MSG_NOSIGNAL | MSG_DONTWAIT);
        bool ok = n == (ssize_t)(2 + len);
        spare_post(t, found, ok);
        if (ok)
            return 1;
    }
}

void tunnel_drop_owner(tunnel *t, const void *owner)
{
    int n = 0;
    pthread_mutex_lock(&t->lock);
    waiting *w, *tmp;
    list_for_each_entry_safe(w, tmp, &t->wait, link) {
        if (w->owner != owner)
            continue;
        claim_locked(t, w->token); /* unclaimed peers are in no epoll set: safe from this thread */
        splice_close_reset(w->fd);
        free(w);
        n++;
    }
    list_for_each_entry(w, &t->claimed, link)
        if (w->owner == owner)
            w->report_fd = -1; /* they have their tunnel connection: they pair and run on */
    paired *p;
    list_for_each_entry(p, &t->paired, link)
        if (p->owner == owner)
            p->report_fd = -1; /* its stream is gone: FINs travel again */
    spare_reg *r, *rtmp;
    list_for_each_entry_safe(r, rtmp, &t->regs, link)
        if (r->owner == owner) {
            list_del(&r->link);
            free(r);
        }
    list_node gone;
    list_init(&gone);
    hello *h, *htmp;
    list_for_each_entry_safe(h, htmp, &t->spares, link)
        if (h->owner == owner) {
            h->taken = true;
            list_del(&h->link);
            list_add_tail(&gone, &h->link);
        }
    pthread_mutex_unlock(&t->lock);
    if (n)
        logf_(t, false, "%d waiting connection(s) reset: their stream ended", n);
    list_for_each_entry_safe(h, htmp, &gone, link) {
        list_del(&h->link);
        spare_post(t, h, false);
    }
}

void tunnel_move_owner(tunnel *t, const void *from, const void *to, int report_fd)
{
    pthread_mutex_lock(&t->lock);
    waiting *w;
    list_for_each_entry(w, &t->wait, link)
        if (w->owner == from)
            w->owner = to, w->report_fd = report_fd;
    list_for_each_entry(w, &t->claimed, link)
        if (w->owner == from)
            w->owner = to, w->report_fd = report_fd;
    paired *p;
    list_for_each_entry(p, &t->paired, link)
        if (p->owner == from)
            p->owner = to, p->report_fd = report_fd;
    pthread_mutex_unlock(&t->lock);
}

/* A HalfClose on its way to the loop thread. */
typedef struct {
    tunnel *t;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    uint64_t bytes;
} half_close;

/* The connection of token not paired yet (the call overtook the tunnel
 * connection's hello): the peer waiting for it, or NULL. Under t->lock. */
static waiting *unpaired(tunnel *t, const uint8_t *token)
{
    waiting *w;
    list_for_each_entry(w, &t->claimed, link)
        if (memcmp(w->token, token, CONTRACT_TUNNEL_TOKEN_LEN) == 0)
            return w;
    w = t->buckets[bucket_of(token)];
    while (w && memcmp(w->token, token, CONTRACT_TUNNEL_TOKEN_LEN) != 0)
        w = w->hnext;
    return w;
}

static void half_close_run(void *ud)
{
    half_close *hc = ud;
    tunnel *t = hc->t;
    splice_pair *sp = NULL;
    if (!splice_loop_stopping(t->loop)) {
        pthread_mutex_lock(&t->lock);
        paired *p;
        list_for_each_entry(p, &t->paired, link)
            if (memcmp(p->token, hc->token, sizeof p->token) == 0)
                sp = p->sp;
        waiting *w = sp ? NULL : unpaired(t, hc->token);
        if (w) { /* pair_start applies it */
            w->shut_known = true;
            w->shut_after = hc->bytes;
        }
        pthread_mutex_unlock(&t->lock);
    }
    if (sp) /* only this thread ends pairs: sp stays valid */
        splice_pair_shut_after(sp, hc->bytes);
    free(hc);
}

int tunnel_half_close(tunnel *t, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes)
{
    half_close *hc = malloc(sizeof *hc);
    if (!hc)
        return -ENOMEM;
    *hc = (half_close){.t = t, .bytes = bytes};
    memcpy(hc->token, token, sizeof hc->token);
    int rc = splice_loop_post(t->loop, half_close_run, hc);
    if (rc < 0)
        free(hc);
    return rc;
}

void tunnel_free(tunnel *t)
{
    if (!t)
        return;
    splice_loop_free(t->loop); /* joins the thread, closes the pairs */
    t->loop = NULL;
    noise_flush(t, 0, true);
    hello *h;
    while ((h = list_first_entry_or_null(&t->hellos, hello, link)))
        hello_free(t, h, true);
    while ((h = list_first_entry_or_null(&t->spares, hello, link)))
        hello_free(t, h, false);
    spare_reg *r;
    while ((r = list_first_entry_or_null(&t->regs, spare_reg, link))) {
        list_del(&r->link);
        free(r);
    }
    waiting *w;
    while ((w = list_first_entry_or_null(&t->wait, waiting, link))) {
        claim_locked(t, w->token);
        splice_close_reset(w->fd);
        free(w);
    }
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    if (t->timer_fd >= 0)
        close(t->timer_fd);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
