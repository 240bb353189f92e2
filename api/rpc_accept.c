/* rpc_accept — see rpc_accept.h. Runs on a splice_loop (one thread, one
 * epoll set) that splices nothing: it watches the listeners and the
 * connections, and its tick closes the ones past their deadline. */
#include "rpc_accept.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/addr-util.h"
#include "basic/list.h"
#include "basic/sock-util.h"
#include "basic/time-util.h"
#include "rpc_log.h"
#include "splice_loop.h"

#define ACCEPT_LISTENERS 2 /* "localhost": 127.0.0.1 and ::1 */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; /* RFC 9113 3.4 */
#define PREFACE_LEN (sizeof preface - 1)

typedef struct conn {
    rpc_accept *a;
    splice_watch w;
    int fd;           /* waiting: the connection; handed: a duplicate, watched for the hang-up */
    int gfd;          /* handed: gRPC's fd */
    bool authed;      /* handed: made a call with the token; under a->mu */
    int64_t deadline; /* waiting: when it is closed without the preface */
    list_node link;   /* a->waiting or a->handed */
} conn;

typedef struct {
    rpc_accept *a;
    splice_watch w;
    int fd;
} listener;

/* Connections closed in this period, for the summary line. */
typedef struct {
    int64_t start_ms;
    unsigned long full, evicted, evicted_handed, silent, other;
} accept_noise;

struct rpc_accept {
    rpc_accept_opts o;
    splice_loop *loop;
    listener l[ACCEPT_LISTENERS];
    int n_l;
    pthread_mutex_t mu; /* guards handed and its conns' authed */
    list_node handed;   /* oldest first */
    /* loop thread only */
    list_node waiting; /* oldest first */
    int open;
    int64_t resume_ms; /* accept paused (out of fds) until then; 0 = not paused */
    accept_noise noise;
};

/* ---- binding ---- */

static int listen_on(const char *ip, int port, int *bound)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof *v6;
    } else {
        return -EADDRNOTAVAIL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, zero = 0; /* SO_REUSEADDR for TIME_WAIT leftovers; no SO_REUSEPORT: a taken port is an error */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) /* "[::]" takes IPv4 too, as gRPC's own listener did */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        close(fd);
        return -EADDRNOTAVAIL;
    }
    *bound = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

/* "ADDR:PORT" -> listeners; the port of the first for all (port 0: a free one). */
static int bind_all(rpc_accept *a, const char *bind, int *port)
{
    char host[64];
    unsigned p;
    if (addr_parse_listen(bind, host, sizeof host, &p) < 0)
        return -EADDRNOTAVAIL;
    const char *ips[ACCEPT_LISTENERS] = {host, NULL};
    if (!strcmp(host, "localhost"))
        ips[0] = "127.0.0.1", ips[1] = "::1";
    *port = (int)p;
    for (int i = 0; i < ACCEPT_LISTENERS && ips[i]; i++) {
        int fd = listen_on(ips[i], *port, port);
        if (fd < 0 && i == 0)
            return fd;
        if (fd >= 0) /* ::1 is optional: IPv6 may be off */
            a->l[a->n_l++] = (listener){a, {NULL}, fd};
    }
    return 0;
}

/* ---- connections ---- */

static void noise_note(rpc_accept *a, unsigned long *counter)
{
    if (!a->noise.start_ms)
        a->noise.start_ms = time_now_ms();
    (*counter)++;
}

/* Once a period: what was closed, in one line. Returns ms until it is due,
 * or -1 when nothing is counted. */
static int noise_tick(rpc_accept *a)
{
    accept_noise *n = &a->noise;
    if (!n->start_ms)
        return -1;
    int64_t left = n->start_ms + RPC_NOISE_PERIOD_MS - time_now_ms();
    if (left > 0)
        return (int)left;
    rpc_log("closed %lu connections to the gRPC port in %d s: %lu over the limit of %d open, %lu to make room "
            "(%lu without the HTTP/2 preface yet, %lu without a call with the token), %lu without the preface "
            "within %d ms, %lu not HTTP/2",
            n->full + n->evicted + n->evicted_handed + n->silent + n->other, RPC_NOISE_PERIOD_MS / 1000, n->full,
            a->o.max_conns, n->evicted + n->evicted_handed, n->evicted, n->evicted_handed, n->silent,
            a->o.preface_ms, n->other);
    *n = (accept_noise){0};
    return -1;
}

static void conn_close(conn *c)
{
    rpc_accept *a = c->a;
    splice_loop_unwatch(a->loop, c->fd, &c->w);
    close(c->fd);
    pthread_mutex_lock(&a->mu);
    list_del(&c->link);
    pthread_mutex_unlock(&a->mu);
    a->open--;
    free(c);
}

/* A handed-over connection: gRPC shut its socket down (closed it) or the
 * peer reset it. */
static void on_handed(splice_watch *w, uint32_t events)
{
    (void)events;
    conn_close((conn *)((char *)w - offsetof(conn, w)));
}

/* Hands c to gRPC: gRPC gets the socket, c keeps a duplicate to learn when
 * gRPC closes it. */
static void conn_hand(conn *c)
{
    rpc_accept *a = c->a;
    int gfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (gfd < 0) {
        conn_close(c);
        return;
    }
    c->gfd = gfd;
    c->w.fn = on_handed;
    list_del(&c->link);
    pthread_mutex_lock(&a->mu);
    list_add_tail(&a->handed, &c->link);
    pthread_mutex_unlock(&a->mu);
    splice_loop_rewatch(a->loop, c->fd, 0, &c->w); /* EPOLLHUP and EPOLLERR come anyway */
    a->o.hand(gfd, a->o.ud);
}

/* A waiting connection sent something (or hung up): hand it over once the
 * whole preface is there, close it when it is not HTTP/2. */
static void on_waiting(splice_watch *w, uint32_t events)
{
    conn *c = (conn *)((char *)w - offsetof(conn, w));
    char buf[PREFACE_LEN];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(events & (EPOLLHUP | EPOLLERR)))
        return;
    if (n <= 0) {
        conn_close(c); /* the peer went away */
    } else if (memcmp(buf, preface, (size_t)n) != 0) {
        noise_note(c->a, &c->a->noise.other);
        conn_close(c);
    } else if ((size_t)n == PREFACE_LEN) {
        conn_hand(c);
    } else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        conn_close(c); /* a part of the preface, then the end */
    }
}

/* The oldest handed-over connection without a call with the token, or NULL. */
static conn *oldest_unauthed(rpc_accept *a)
{
    conn *c, *found = NULL;
    pthread_mutex_lock(&a->mu);
    list_for_each_entry(c, &a->handed, link)
        if (!c->authed) {
            found = c;
            break;
        }
    pthread_mutex_unlock(&a->mu);
    return found;
}

/* Room for one more: the oldest waiting connection goes, else the oldest
 * handed-over one without a call with the token (gRPC sees it shut down and
 * closes its end), else none is possible. */
static bool make_room(rpc_accept *a)
{
    if (a->open < a->o.max_conns)
        return true;
    conn *old = list_first_entry_or_null(&a->waiting, conn, link);
    if (old) {
        noise_note(a, &a->noise.evicted);
    } else if ((old = oldest_unauthed(a))) {
        noise_note(a, &a->noise.evicted_handed);
        shutdown(old->fd, SHUT_RDWR);
    } else {
        return false;
    }
    conn_close(old);
    return true;
}

/* An empty SETTINGS frame: the server's HTTP/2 connection preface, sent at
 * once. gRPC clients (core's since 1.2x) start no call before the server's
 * SETTINGS, which core would send only once the client's preface is here and
 * the connection handed over: through kubectl port-forward one more round trip
 * per command. Core's own SETTINGS follow as a second frame, which HTTP/2
 * allows; the client's ACK of this one makes core take its settings as acked
 * early: wider frames, and limits no first flight comes near (docs/rpc.md). */
static const uint8_t early_settings[9] = {0, 0, 0, 0x4, 0, 0, 0, 0, 0};

static void conn_add(rpc_accept *a, int fd)
{
    int one = 1; /* gRPC's own listener sets it: small frames go out at once */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)!send(fd, early_settings, sizeof early_settings, MSG_NOSIGNAL | MSG_DONTWAIT);
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    *c = (conn){.a = a, .w = {on_waiting}, .fd = fd, .deadline = time_now_ms() + a->o.preface_ms};
    list_add_tail(&a->waiting, &c->link);
    a->open++;
    if (splice_loop_watch(a->loop, fd, EPOLLIN | EPOLLRDHUP | EPOLLET, &c->w) < 0) {
        conn_close(c);
        return;
    }
    on_waiting(&c->w, 0); /* the preface often arrives with the handshake */
}

static void on_listener(splice_watch *w, uint32_t events)
{
    (void)events;
    listener *l = (listener *)((char *)w - offsetof(listener, w));
    rpc_accept *a = l->a;
    for (int i = 0; i < 64; i++) { /* then the other fds get their turn */
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (accept_exhausted(errno)) { /* the connection stays in the backlog */
                for (int j = 0; j < a->n_l; j++)
                    splice_loop_rewatch(a->loop, a->l[j].fd, 0, &a->l[j].w);
                a->resume_ms = time_now_ms() + ACCEPT_PAUSE_MS;
            }
            return;
        }
        if (make_room(a)) {
            conn_add(a, fd);
        } else {
            noise_note(a, &a->noise.full);
            close(fd);
        }
    }
}

/* Before every wait: closes waiting connections past their deadline, resumes
 * accepting after a pause, writes the summary; ms until the next of those. */
static int on_tick(void *ud)
{
    rpc_accept *a = ud;
    int64_t now = time_now_ms(), next = -1;
    conn *c, *tmp;
    list_for_each_entry_safe(c, tmp, &a->waiting, link) {
        if (c->deadline > now) { /* oldest first: the rest are later */
            next = c->deadline - now;
            break;
        }
        noise_note(a, &a->noise.silent);
        conn_close(c);
    }
    if (a->resume_ms && a->resume_ms <= now) {
        for (int j = 0; j < a->n_l; j++)
            splice_loop_rewatch(a->loop, a->l[j].fd, EPOLLIN, &a->l[j].w);
        a->resume_ms = 0;
    }
    if (a->resume_ms && (next < 0 || a->resume_ms - now < next))
        next = a->resume_ms - now;
    int ms = noise_tick(a);
    if (ms >= 0 && (next < 0 || ms < next))
        next = ms;
    return (int)next;
}

/* ---- lifetime ---- */

int rpc_accept_new(rpc_accept **ret, const rpc_accept_opts *o, int *port)
{
    *ret = NULL;
    rpc_accept *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->o = *o;
    list_init(&a->waiting);
    list_init(&a->handed);
    pthread_mutex_init(&a->mu, NULL);
    int rc = bind_all(a, o->bind, port);
    if (rc < 0) {
        rpc_accept_free(a);
        return rc;
    }
    *ret = a;
    return 0;
}

int rpc_accept_start(rpc_accept *a)
{
    splice_loop_opts lo = {.max_pairs = 1, .pipe_bytes = 4096, .tick = on_tick, .ud = a};
    int rc = splice_loop_new(&a->loop, &lo);
    for (int i = 0; rc == 0 && i < a->n_l; i++) {
        a->l[i].w.fn = on_listener;
        rc = splice_loop_watch(a->loop, a->l[i].fd, EPOLLIN, &a->l[i].w);
    }
    return rc;
}

void rpc_accept_stop(rpc_accept *a)
{
    if (!a)
        return;
    splice_loop_free(a->loop);
    a->loop = NULL;
    for (int i = 0; i < a->n_l; i++) /* new connections are refused, not left in the backlog */
        close(a->l[i].fd);
    a->n_l = 0;
    conn *c, *tmp;
    list_for_each_entry_safe(c, tmp, &a->waiting, link) {
        close(c->fd);
        list_del(&c->link);
        free(c);
    }
}

void rpc_accept_authed(rpc_accept *a, int fd)
{
    conn *c;
    pthread_mutex_lock(&a->mu);
    for (list_node *n = a->handed.prev; n != &a->handed; n = n->prev) /* newest first: fd numbers are reused */
        if ((c = list_entry(n, conn, link))->gfd == fd) {
            c->authed = true;
            break;
        }
    pthread_mutex_unlock(&a->mu);
}

void rpc_accept_free(rpc_accept *a)
{
    if (!a)
        return;
    rpc_accept_stop(a);
    conn *c, *tmp;
    list_for_each_entry_safe(c, tmp, &a->handed, link) {
        close(c->fd);
        list_del(&c->link);
        free(c);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
}
