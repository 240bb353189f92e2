/* splice_loop — see splice_loop.h. */
#include "splice_loop-internal.h"
#include "splice_pump.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/fd-util.h"
#include "basic/list.h"
#include "basic/signal-util.h"

#define BATCH 128 /* epoll events handled per wait */
#define PAIR_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

typedef struct post {
    void (*fn)(void *ud);
    void *ud;
    list_node link; /* l->posts */
} post;

/* a and b spliced both ways; wa/wb are their epoll entries. */
typedef struct splice_pair {
    splice_loop *l;
    splice_watch wa, wb;
    int a, b;
    splice_pump ab, ba;
    splice_pair_opts o;
    bool eof_told;  /* o.a_eof ran */
    list_node link; /* l->pairs */
} pair;

struct splice_loop {
    splice_loop_opts o;
    int ep_fd, wake_fd;
    splice_watch wake;
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    atomic_int npairs;

    pthread_mutex_t lock; /* guards posts and stop */
    list_node posts;
    bool stop;

    /* loop thread only */
    list_node pairs;
    struct epoll_event evs[BATCH];
    int ev_i, ev_n; /* the batch being handled */
};

/* Drops the rest of the batch's events for w (its object is being freed).
 * Compares addresses only. */
static void forget(splice_loop *l, const splice_watch *w)
{
    for (int j = l->ev_i + 1; j < l->ev_n; j++)
        if (l->evs[j].data.ptr == w)
            l->evs[j].data.ptr = NULL;
}

/* ---- pairs ---- */

static void pair_end(pair *p, int err)
{
    splice_loop *l = p->l;
    forget(l, &p->wa);
    forget(l, &p->wb);
    /* Out of the epoll set before the close: a forked child may hold the
     * sockets too, and then close() would leave them registered with a
     * pointer to the pair freed below. */
    epoll_ctl(l->ep_fd, EPOLL_CTL_DEL, p->a, NULL);
    epoll_ctl(l->ep_fd, EPOLL_CTL_DEL, p->b, NULL);
    list_del(&p->link);
    splice_pump_close(&p->ab);
    splice_pump_close(&p->ba);
    if (err < 0 && err != -ECANCELED) { /* passes a reset on; a stopped loop just closes */
        splice_close_reset(p->a);
        splice_close_reset(p->b);
    } else {
        close(p->a);
        close(p->b);
    }
    atomic_fetch_sub(&l->npairs, 1);
    if (p->o.done)
        p->o.done(p->o.ud, err);
    free(p);
}

static int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return err ? -err : -ECONNRESET;
}

static void pair_run(pair *p, uint32_t events, int errfd)
{
    int rc = events & EPOLLERR ? sock_error(errfd) : 0;
    if (rc == 0)
        rc = splice_pump_run(&p->ab, p->a, p->b);
    if (rc == 0)
        rc = splice_pump_run(&p->ba, p->b, p->a);
    if (rc == 0 && p->o.b_fin_when_both && p->ba.eof && !p->ab.shut)
        rc = -ECONNRESET;
    if (rc == 0 && p->ab.shut && p->o.a_eof && !p->eof_told) {
        p->eof_told = true;
        /* With b -> a done as well, a FIN on b cuts nothing off (both
         * directions are over) and costs the owner no report. Else a FIN
         * only when there is no one to tell. */
        if (p->ba.shut || !p->o.a_eof(p->o.ud, p->ab.moved))
            shutdown(p->b, SHUT_WR);
    }
    if (rc < 0)
        pair_end(p, rc);
    else if (p->ab.shut && p->ba.shut)
        pair_end(p, 0);
}

#define PAIR_OF(w, field) ((pair *)((char *)(w)-offsetof(pair, field)))

static void pair_on_a(splice_watch *w, uint32_t events)
{
    pair *p = PAIR_OF(w, wa);
    forget(p->l, &p->wb); /* one run serves both ends */
    pair_run(p, events, p->a);
}

static void pair_on_b(splice_watch *w, uint32_t events)
{
    pair *p = PAIR_OF(w, wb);
    forget(p->l, &p->wa);
    pair_run(p, events, p->b);
}

void splice_pair_shut_after(splice_pair *p, uint64_t bytes)
{
    p->ba.shut_at = bytes;
    pair_run(p, 0, -1);
}

int splice_loop_pair(splice_loop *l, int a, int b, splice_done_fn done, void *ud)
{
    splice_pair_opts o = {.done = done, .ud = ud};
    return splice_loop_pair_opts(l, a, b, &o, NULL);
}

int splice_loop_pair_opts(splice_loop *l, int a, int b, const splice_pair_opts *o, splice_pair **ret)
{
    int rc = 0;
    pair *p = NULL;
    if (atomic_load(&l->stopping)) {
        rc = -ECANCELED;
        goto fail;
    }
    if (atomic_load(&l->npairs) >= l->o.max_pairs) {
        rc = -EBUSY;
        goto fail;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        rc = -ENOMEM;
        goto fail;
    }
    *p = (pair){.l = l,
                .wa = {pair_on_a},
                .wb = {pair_on_b},
                .a = a,
                .b = b,
                .o = *o,
                .ab = {.pipe = {-1, -1}},
                .ba = {.pipe = {-1, -1}}};
    rc = fd_nonblock(a);
    if (rc == 0)
        rc = fd_nonblock(b);
    if (rc == 0)
        rc = splice_pump_init(&p->ab, l->o.pipe_bytes);
    if (rc == 0)
        rc = splice_pump_init(&p->ba, l->o.pipe_bytes);
    p->ab.hold_fin = o->a_eof != NULL;
    p->ba.hold_fin = o->b_fin_when_both; /* decided in pair_run */
    if (o->a_shut_known)
        p->ba.shut_at = o->a_shut_after;
    struct epoll_event ea = {.events = PAIR_EVENTS, .data.ptr = &p->wa};
    struct epoll_event eb = {.events = PAIR_EVENTS, .data.ptr = &p->wb};
    if (rc == 0 && (epoll_ctl(l->ep_fd, EPOLL_CTL_ADD, a, &ea) < 0 || epoll_ctl(l->ep_fd, EPOLL_CTL_ADD, b, &eb) < 0))
        rc = -errno;
    if (rc < 0)
        goto fail;
    list_add(&l->pairs, &p->link);
    atomic_fetch_add(&l->npairs, 1);
    if (ret)
        *ret = p;
    pair_run(p, 0, -1); /* data may be waiting already: edge-triggered epoll will not say so */
    return 0;
fail:
    if (p) {
        splice_pump_close(&p->ab);
        splice_pump_close(&p->ba);
        free(p);
    }
    splice_close_reset(a);
    splice_close_reset(b);
    return rc;
}

int splice_loop_npairs(const splice_loop *l)
{
    return atomic_load(&l->npairs);
}

/* ---- watches ---- */

int splice_loop_watch(splice_loop *l, int fd, uint32_t events, splice_watch *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (atomic_load(&l->stopping))
        return -ECANCELED;
    return epoll_ctl(l->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int splice_loop_rewatch(splice_loop *l, int fd, uint32_t events, splice_watch *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->ep_fd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void splice_loop_unwatch(splice_loop *l, int fd, splice_watch *w)
{
    epoll_ctl(l->ep_fd, EPOLL_CTL_DEL, fd, NULL);
    forget(l, w);
}

/* ---- posts ---- */

int splice_loop_post(splice_loop *l, void (*fn)(void *ud), void *ud)
{
    post *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    *p = (post){.fn = fn, .ud = ud};
    pthread_mutex_lock(&l->lock);
    bool was_empty = list_empty(&l->posts);
    list_add_tail(&l->posts, &p->link);
    pthread_mutex_unlock(&l->lock);
    if (was_empty) {
        uint64_t one = 1;
        if (write(l->wake_fd, &one, sizeof one) < 0) {
            /* counter saturated: the loop is being woken anyway */
        }
    }
    return 0;
}

bool splice_loop_stopping(const splice_loop *l)
{
    return atomic_load(&l->stopping);
}

/* Runs every queued post; returns whether the loop is asked to stop. */
static bool run_posts(splice_loop *l)
{
    list_node todo = LIST_INIT(todo);
    post *p, *tmp;
    pthread_mutex_lock(&l->lock);
    list_splice_tail_init(&todo, &l->posts);
    bool stop = l->stop;
    pthread_mutex_unlock(&l->lock);
    list_for_each_entry_safe(p, tmp, &todo, link) {
        p->fn(p->ud);
        free(p);
    }
    return stop;
}

static void on_wake(splice_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
}

/* ---- the thread ---- */

static void *loop_main(void *arg)
{
    splice_loop *l = arg;
    /* Signals belong to the main thread; SIGPIPE from a splice into a dead
     * socket stays pending here instead of killing the process. */
    sig_block_all();
    for (;;) {
        int timeout = l->o.tick ? l->o.tick(l->o.ud) : -1;
        int n = epoll_wait(l->ep_fd, l->evs, BATCH, timeout);
        if (n < 0 && errno != EINTR)
            break;
        bool woken = false;
        l->ev_n = n < 0 ? 0 : n;
        for (l->ev_i = 0; l->ev_i < l->ev_n; l->ev_i++) {
            splice_watch *w = l->evs[l->ev_i].data.ptr;
            if (w == &l->wake) {
                uint64_t v;
                woken = read(l->wake_fd, &v, sizeof v) > 0 || woken;
            } else if (w) {
                w->fn(w, l->evs[l->ev_i].events);
            }
        }
        l->ev_n = 0;
        if (woken && run_posts(l))
            break;
    }
    return NULL;
}

int splice_loop_new(splice_loop **ret, const splice_loop_opts *o)
{
    int rc = 0;
    splice_loop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->o = *o;
    if (l->o.max_pairs <= 0)
        l->o.max_pairs = SPLICE_LOOP_MAX_PAIRS;
    if (l->o.pipe_bytes == 0)
        l->o.pipe_bytes = SPLICE_LOOP_PIPE_BYTES;
    l->wake.fn = on_wake;
    list_init(&l->pairs);
    list_init(&l->posts);
    pthread_mutex_init(&l->lock, NULL);
    l->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->wake};
    if (l->ep_fd < 0 || l->wake_fd < 0 || epoll_ctl(l->ep_fd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0) {
        rc = -errno;
        goto out;
    }
    rc = -pthread_create(&l->thread, NULL, loop_main, l);
    l->started = rc == 0;
    if (l->started)
        pthread_setname_np(l->thread, SPLICE_LOOP_THREAD_NAME);
out:
    if (rc < 0)
        splice_loop_free(l);
    else
        *ret = l;
    return rc;
}

void splice_loop_free(splice_loop *l)
{
    if (!l)
        return;
    atomic_store(&l->stopping, true);
    if (l->started) {
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_mutex_unlock(&l->lock);
        uint64_t one = 1;
        if (write(l->wake_fd, &one, sizeof one) < 0) {
            /* saturated: the loop is woken anyway */
        }
        pthread_join(l->thread, NULL);
    }
    run_posts(l); /* with stopping set: they free what they carry */
    pair *p;
    while ((p = list_first_entry_or_null(&l->pairs, pair, link)))
        pair_end(p, -ECANCELED);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    if (l->ep_fd >= 0)
        close(l->ep_fd);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
