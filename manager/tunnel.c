/* tunnel — see tunnel.h. One epoll thread owns the listener, the tunnel
 * connections in their hello and the spliced pairs; handler threads only add
 * waiting peers (under the lock). */
#include "tunnel.h"
#include "splice_pump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "basic/signal-util.h"
#include "basic/time-util.h"

#define HELLO_LEN (TUNNEL_TOKEN_LEN + 1)
#define NBUCKETS 1024
#define PIPE_BYTES (1024 * 1024) /* best effort; fewer when the user's pipe budget is spent */
#define ACCEPT_PAUSE_MS 100     /* after EMFILE, so a full fd table does not spin */

typedef enum { REF_LISTENER, REF_WAKE, REF_TIMER, REF_HELLO, REF_SPLICE } ref_kind;

typedef struct {
    ref_kind kind;
    void *obj;
} ep_ref;

/* A redirected connection waiting for its tunnel connection. */
typedef struct waiting {
    uint8_t token[TUNNEL_TOKEN_LEN];
    int fd;
    const void *owner;
    int64_t deadline;
    struct waiting *hnext;       /* hash chain */
    struct waiting *prev, *next; /* deadline order */
} waiting;

/* A tunnel connection that has not finished token + status. */
typedef struct hello {
    ep_ref ref;
    int fd;
    uint8_t buf[HELLO_LEN];
    size_t got;
    int64_t deadline;
    waiting *peer; /* claimed by a valid token, waiting for the status byte */
    struct hello *prev, *next;
} hello;

/* A paired connection: a = the redirected peer, b = the tunnel connection. */
typedef struct pair {
    ep_ref ra, rb;
    int a, b;
    splice_pump ab, ba;
    struct pair *prev, *next;
} pair;

#define LIST_DECL(T) \
    struct {         \
        T *head, *tail; \
    }

struct tunnel {
    tunnel_opts o;
    int listen_fd, wake_fd, timer_fd, ep_fd, port;
    ep_ref rlisten, rwake, rtimer;
    pthread_t thread;
    bool thread_started;
    int64_t accept_resume; /* 0 = accepting */

    pthread_mutex_t lock; /* guards buckets, waiting list, stop */
    waiting *buckets[NBUCKETS];
    LIST_DECL(waiting) wait;
    bool stop;

    LIST_DECL(hello) hellos; /* thread only */
    LIST_DECL(pair) pairs;   /* thread only */
};

#define LIST_APPEND(l, e)       \
    do {                        \
        (e)->next = NULL;       \
        (e)->prev = (l).tail;   \
        if ((l).tail)           \
            (l).tail->next = (e); \
        else                    \
            (l).head = (e);     \
        (l).tail = (e);         \
    } while (0)

#define LIST_REMOVE(l, e)                 \
    do {                                  \
        if ((e)->prev)                    \
            (e)->prev->next = (e)->next;  \
        else                              \
            (l).head = (e)->next;         \
        if ((e)->next)                    \
            (e)->next->prev = (e)->prev;  \
        else                              \
            (l).tail = (e)->prev;         \
        (e)->prev = (e)->next = NULL;     \
    } while (0)

static void logf_(const tunnel *t, bool always, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(const tunnel *t, bool always, const char *fmt, ...)
{
    if (!always && !t->o.verbose)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kdiag-manager: tunnel: %s\n", line);
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
        if (memcmp(w->token, token, TUNNEL_TOKEN_LEN) == 0) {
            *pp = w->hnext;
            LIST_REMOVE(t->wait, w);
            return w;
        }
    }
    return NULL;
}

static void wake(tunnel *t)
{
    uint64_t one = 1;
    if (write(t->wake_fd, &one, sizeof one) < 0) {
        /* counter saturated: the thread is awake anyway */
    }
}

/* ---- splicing ---- */

static void pair_free(tunnel *t, pair *p, bool reset)
{
    LIST_REMOVE(t->pairs, p);
    splice_pump_close(&p->ab);
    splice_pump_close(&p->ba);
    if (reset) {
        splice_close_reset(p->a);
        splice_close_reset(p->b);
    } else {
        close(p->a);
        close(p->b);
    }
    free(p);
}

static void pair_run(tunnel *t, pair *p)
{
    int rc = splice_pump_run(&p->ab, p->a, p->b);
    if (rc == 0)
        rc = splice_pump_run(&p->ba, p->b, p->a);
    if (rc < 0) {
        logf_(t, false, "pair reset: %s", strerror(-rc));
        pair_free(t, p, true);
    } else if (p->ab.shut && p->ba.shut) {
        logf_(t, false, "pair closed");
        pair_free(t, p, false);
    }
}

static void pair_start(tunnel *t, int peer_fd, int tunnel_fd)
{
    pair *p = calloc(1, sizeof *p);
    if (!p)
        goto fail;
    p->a = peer_fd;
    p->b = tunnel_fd;
    p->ab.pipe[0] = p->ab.pipe[1] = p->ba.pipe[0] = p->ba.pipe[1] = -1;
    p->ra = (ep_ref){REF_SPLICE, p};
    p->rb = (ep_ref){REF_SPLICE, p};
    LIST_APPEND(t->pairs, p);
    int rc = splice_pump_init(&p->ab, PIPE_BYTES);
    if (rc == 0)
        rc = splice_pump_init(&p->ba, PIPE_BYTES);
    struct epoll_event ea = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &p->ra};
    struct epoll_event eb = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &p->rb};
    if (rc == 0 && (epoll_ctl(t->ep_fd, EPOLL_CTL_ADD, p->a, &ea) < 0 || epoll_ctl(t->ep_fd, EPOLL_CTL_ADD, p->b, &eb) < 0))
        rc = -errno;
    if (rc < 0) {
        logf_(t, true, "cannot splice a paired connection: %s", strerror(-rc));
        pair_free(t, p, true); /* closing the fds also drops them from epoll */
        return;
    }
    logf_(t, false, "paired");
    pair_run(t, p);
    return;
fail:
    splice_close_reset(peer_fd);
    splice_close_reset(tunnel_fd);
}

/* ---- tunnel connections in their hello ---- */

static void hello_free(tunnel *t, hello *h, bool reset_peer)
{
    LIST_REMOVE(t->hellos, h);
    if (h->fd >= 0)
        close(h->fd);
    if (h->peer) {
        if (reset_peer)
            splice_close_reset(h->peer->fd);
        free(h->peer);
    }
    free(h);
}

static void hello_read(tunnel *t, hello *h)
{
    while (h->got < HELLO_LEN) {
        ssize_t n = read(h->fd, h->buf + h->got, HELLO_LEN - h->got);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (h->peer)
                logf_(t, false, "client closed the tunnel after the token: local target refused, resetting the peer");
            else
                logf_(t, true, "tunnel connection closed after %zu of %d token bytes: dropped", h->got,
                      TUNNEL_TOKEN_LEN);
            hello_free(t, h, true);
            return;
        }
        h->got += (size_t)n;
        if (h->got >= TUNNEL_TOKEN_LEN && !h->peer) {
            pthread_mutex_lock(&t->lock);
            h->peer = claim_locked(t, h->buf);
            pthread_mutex_unlock(&t->lock);
            if (!h->peer) {
                logf_(t, true, "tunnel connection with an unknown or used token: closed");
                hello_free(t, h, false);
                return;
            }
        }
    }
    waiting *w = h->peer;
    int peer_fd = w->fd, tunnel_fd = h->fd;
    uint8_t status = h->buf[TUNNEL_TOKEN_LEN];
    if (status != TUNNEL_STATUS_OK) {
        logf_(t, false, "client reports status %u (local target refused): resetting the peer", status);
        hello_free(t, h, true);
        return;
    }
    epoll_ctl(t->ep_fd, EPOLL_CTL_DEL, tunnel_fd, NULL);
    h->fd = -1;
    free(w);
    h->peer = NULL;
    hello_free(t, h, false);
    pair_start(t, peer_fd, tunnel_fd);
}

static void accept_tunnels(tunnel *t)
{
    for (;;) {
        int fd = accept4(t->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                logf_(t, true, "accept: %s; pausing %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                struct epoll_event ev = {.events = 0, .data.ptr = &t->rlisten};
                epoll_ctl(t->ep_fd, EPOLL_CTL_MOD, t->listen_fd, &ev);
                t->accept_resume = time_now_ms() + ACCEPT_PAUSE_MS;
            }
            return; /* EAGAIN, or a connection that died before accept */
        }
        hello *h = calloc(1, sizeof *h);
        if (!h) {
            close(fd);
            continue;
        }
        h->fd = fd;
        h->ref = (ep_ref){REF_HELLO, h};
        h->deadline = time_now_ms() + t->o.pair_timeout_ms;
        LIST_APPEND(t->hellos, h);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &h->ref};
        if (epoll_ctl(t->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            hello_free(t, h, false);
            continue;
        }
        hello_read(t, h); /* the token often arrives with the handshake */
    }
}

/* Expires hellos and waiting peers; returns ms until the next deadline, -1 for none. */
static int expire(tunnel *t)
{
    int64_t now = time_now_ms(), next = -1;

    while (t->hellos.head && t->hellos.head->deadline <= now) {
        logf_(t, true, "tunnel connection sent no complete token within %d ms: closed", t->o.pair_timeout_ms);
        hello_free(t, t->hellos.head, true);
    }
    if (t->hellos.head)
        next = t->hellos.head->deadline;

    for (;;) {
        pthread_mutex_lock(&t->lock);
        waiting *w = t->wait.head;
        if (w && w->deadline <= now) {
            claim_locked(t, w->token);
            pthread_mutex_unlock(&t->lock);
            logf_(t, true, "no tunnel connection for a redirected connection within %d ms: reset",
                  t->o.pair_timeout_ms);
            splice_close_reset(w->fd);
            free(w);
            continue;
        }
        if (w && (next < 0 || w->deadline < next))
            next = w->deadline;
        pthread_mutex_unlock(&t->lock);
        break;
    }

    if (t->accept_resume) {
        if (t->accept_resume <= now) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->rlisten};
            epoll_ctl(t->ep_fd, EPOLL_CTL_MOD, t->listen_fd, &ev);
            t->accept_resume = 0;
        } else if (next < 0 || t->accept_resume < next) {
            next = t->accept_resume;
        }
    }
    if (next < 0)
        return -1;
    return next - now > 0 ? (int)(next - now) : 0;
}

/* Drops later events of this batch that point into an object about to be handled
 * (and maybe freed). Compares addresses only: the object is not read. */
static void forget(struct epoll_event *evs, int from, int n, const ep_ref *x, const ep_ref *y)
{
    for (int j = from; j < n; j++)
        if (evs[j].data.ptr == x || (y && evs[j].data.ptr == y))
            evs[j].data.ptr = NULL;
}

static void *tunnel_main(void *arg)
{
    tunnel *t = arg;
    struct epoll_event evs[128];

    /* Signals belong to the main thread; SIGPIPE from a splice into a dead
     * socket stays pending here instead of killing the manager. */
    sig_block_all();

    for (;;) {
        int timeout = expire(t);
        int n = epoll_wait(t->ep_fd, evs, 128, timeout);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            ep_ref *r = evs[i].data.ptr;
            if (!r)
                continue; /* belonged to an object handled earlier in this batch */
            switch (r->kind) {
            case REF_LISTENER:
                accept_tunnels(t);
                break;
            case REF_WAKE:
            case REF_TIMER: {
                uint64_t v;
                if (read(r->kind == REF_WAKE ? t->wake_fd : t->timer_fd, &v, sizeof v) < 0) {
                    /* spurious */
                }
                break;
            }
            case REF_HELLO: {
                hello *h = r->obj;
                forget(evs, i + 1, n, &h->ref, NULL);
                hello_read(t, h);
                break;
            }
            case REF_SPLICE: {
                pair *p = r->obj;
                forget(evs, i + 1, n, &p->ra, &p->rb); /* one run serves both ends; p may be freed */
                pair_run(t, p);
                break;
            }
            }
        }
        pthread_mutex_lock(&t->lock);
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            break;
    }
    return NULL;
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
        t->o.pair_timeout_ms = 10000;
    t->listen_fd = t->wake_fd = t->timer_fd = t->ep_fd = -1;
    pthread_mutex_init(&t->lock, NULL);

    t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    t->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    t->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (t->listen_fd < 0 || t->wake_fd < 0 || t->timer_fd < 0 || t->ep_fd < 0 || bind(t->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(t->listen_fd, SOMAXCONN) < 0 || getsockname(t->listen_fd, (struct sockaddr *)&sa, &salen) < 0) {
        rc = -errno;
        goto fail;
    }
    t->port = ntohs(sa.sin_port);
    t->rlisten = (ep_ref){REF_LISTENER, t};
    t->rwake = (ep_ref){REF_WAKE, t};
    t->rtimer = (ep_ref){REF_TIMER, t};
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &t->rlisten};
    struct epoll_event ew = {.events = EPOLLIN, .data.ptr = &t->rwake};
    struct epoll_event et = {.events = EPOLLIN, .data.ptr = &t->rtimer};
    if (epoll_ctl(t->ep_fd, EPOLL_CTL_ADD, t->listen_fd, &el) < 0 || epoll_ctl(t->ep_fd, EPOLL_CTL_ADD, t->wake_fd, &ew) < 0 ||
        epoll_ctl(t->ep_fd, EPOLL_CTL_ADD, t->timer_fd, &et) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = -pthread_create(&t->thread, NULL, tunnel_main, t);
    if (rc < 0)
        goto fail;
    t->thread_started = true;
    *out = t;
    return 0;
fail:
    tunnel_free(t);
    return rc;
}

int tunnel_port(const tunnel *t)
{
    return t->port;
}

int tunnel_add_peer(tunnel *t, int fd, const void *owner, uint8_t token[TUNNEL_TOKEN_LEN])
{
    waiting *w = calloc(1, sizeof *w);
    if (!w) {
        splice_close_reset(fd);
        return -ENOMEM;
    }
    w->fd = fd;
    w->owner = owner;
    w->deadline = time_now_ms() + t->o.pair_timeout_ms;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        if (getrandom(w->token, TUNNEL_TOKEN_LEN, 0) != TUNNEL_TOKEN_LEN) {
            int e = errno ? -errno : -EIO;
            pthread_mutex_unlock(&t->lock);
            splice_close_reset(fd);
            free(w);
            return e;
        }
        /* 128 random bits do not collide; checked anyway, tokens must be unique. */
        waiting *dup = t->buckets[bucket_of(w->token)];
        while (dup && memcmp(dup->token, w->token, TUNNEL_TOKEN_LEN) != 0)
            dup = dup->hnext;
        if (!dup)
            break;
    }
    unsigned b = bucket_of(w->token);
    w->hnext = t->buckets[b];
    t->buckets[b] = w;
    bool was_empty = t->wait.head == NULL;
    LIST_APPEND(t->wait, w); /* same timeout for all: appending keeps deadline order */
    memcpy(token, w->token, TUNNEL_TOKEN_LEN);
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

void tunnel_drop_owner(tunnel *t, const void *owner)
{
    int n = 0;
    pthread_mutex_lock(&t->lock);
    for (waiting *w = t->wait.head, *next; w; w = next) {
        next = w->next;
        if (w->owner != owner)
            continue;
        claim_locked(t, w->token); /* unclaimed peers are in no epoll set: safe from this thread */
        splice_close_reset(w->fd);
        free(w);
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    if (n)
        logf_(t, false, "%d waiting connection(s) reset: their stream ended", n);
}

void tunnel_free(tunnel *t)
{
    if (!t)
        return;
    if (t->thread_started) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_mutex_unlock(&t->lock);
        wake(t);
        pthread_join(t->thread, NULL);
    }
    while (t->pairs.head)
        pair_free(t, t->pairs.head, false);
    while (t->hellos.head)
        hello_free(t, t->hellos.head, true);
    while (t->wait.head) {
        waiting *w = t->wait.head;
        claim_locked(t, w->token);
        splice_close_reset(w->fd);
        free(w);
    }
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    if (t->wake_fd >= 0)
        close(t->wake_fd);
    if (t->timer_fd >= 0)
        close(t->timer_fd);
    if (t->ep_fd >= 0)
        close(t->ep_fd);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
