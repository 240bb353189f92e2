/* bridge — see bridge.h. A connection starts on the caller's thread (both
 * connects, the hello when they settled at once), then lives on the loop
 * thread: connects still in flight (watched for EPOLLOUT), the hello if not
 * sent yet, then a splice pair of the loop. */
#include "bridge.h"
#include "bridge-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/list.h"
#include "basic/time-util.h"
#include "splice_loop.h"
#include "splice_pump.h"

#define FDS_PER_CONN 6 /* two sockets, two pipes */
/* A connect not done by then is given up: the manager's pairing timeout
 * (TUNNEL_PAIR_TIMEOUT_MS) has reset the peer, and a local target that never
 * accepts (its listen backlog full) would hold the socket for the kernel's
 * SYN retries, about 2 minutes, and say so only then. */
#define CONNECT_MS 10000
#define FDS_RESERVED 256 /* kubectl's pipes, gRPC, stdio, ... */
#define CONNECTING 1     /* conn.terr / conn.lerr while the connect is in flight */

typedef struct conn {
    bridge *b;
    splice_watch wt, wl; /* connect of the tunnel / local side in flight */
    int tfd, lfd;
    int terr, lerr;   /* 0 connected, CONNECTING, or -errno */
    int64_t deadline; /* for the connects (CONNECT_MS), from the start or the announcement */
    bool local_v6;    /* the local connect tries ::1 (127.0.0.1 refused) */
    bool hello_sent;
    bool half_close; /* the stream carries half-closes out of band */
    /* A spare (bridge_park): parked until the announcement, which makes it an
     * ordinary connection. */
    bool parked, spare_hello_sent;
    uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN];
    uint8_t ann[2 + CONTRACT_TUNNEL_ANNOUNCE_MAX];
    size_t ann_got;
    bridge_announce_fn announce;
    splice_pair *sp; /* once spliced */
    uint16_t tunnel_port, local_port;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    bridge_done_fn done;
    void *ud;
    list_node link; /* b->connecting while not spliced, then b->spliced */
} conn;

/* A half-close of a local target for the sender thread to report. */
typedef struct {
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    uint64_t bytes;
    list_node link; /* b->reports */
} report;

struct bridge {
    splice_loop *loop;
    int max_conns;
    atomic_int active;             /* started, done not yet called: the number the limit counts */
    list_node connecting, spliced; /* loop thread */
    bridge_socket_fn sock_fn;
    void *sock_ud;
    bridge_opts o;

    pthread_t sender; /* runs o.half_close (a blocking RPC) off the loop thread */
    bool sender_started;
    pthread_mutex_t mu; /* guards reports, stop */
    pthread_cond_t cv;
    list_node reports;
    bool stop;
};

static int default_socket(void *ud, bool local, int family)
{
    (void)ud;
    (void)local;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

void bridge_set_socket_fn(bridge *b, bridge_socket_fn fn, void *ud)
{
    b->sock_fn = fn;
    b->sock_ud = ud;
}

/* ---- the end of a connection ---- */

static void finish(conn *c, int err, const char *where)
{
    bridge *b = c->b;
    bridge_result r = {.err = err, .where = where};
    if (c->done)
        c->done(c->ud, &r);
    if (!c->parked) /* a spare counts once announced */
        atomic_fetch_sub(&b->active, 1);
    free(c);
}

static void close_side(conn *c, int *fd, splice_watch *w)
{
    if (*fd < 0)
        return;
    if (c->b->loop && !splice_loop_stopping(c->b->loop))
        splice_loop_unwatch(c->b->loop, *fd, w);
    close(*fd);
    *fd = -1;
}

/* Ends a connection that never reached the splice. */
static void fail(conn *c, int err, const char *where)
{
    list_del(&c->link);
    close_side(c, &c->tfd, &c->wt);
    close_side(c, &c->lfd, &c->wl);
    finish(c, err, where);
}

static void on_pair_done(void *ud, int err)
{
    conn *c = ud;
    list_del(&c->link);
    finish(c, err, "connection");
}

/* The local target closed its write side, all its bytes are in the tunnel:
 * queued for the sender thread instead of a FIN through the tunnel. */
static bool on_local_eof(void *ud, uint64_t bytes)
{
    conn *c = ud;
    bridge *b = c->b;
    report *r = malloc(sizeof *r);
    if (!r)
        return false;
    memcpy(r->token, c->token, sizeof r->token);
    r->bytes = bytes;
    pthread_mutex_lock(&b->mu);
    list_add_tail(&b->reports, &r->link);
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return true;
}

static void *sender_main(void *arg)
{
    bridge *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (list_empty(&b->reports) && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        report *r = list_first_entry_or_null(&b->reports, report, link);
        if (b->stop || !r)
            break;
        list_del(&r->link);
        pthread_mutex_unlock(&b->mu);
        b->o.half_close(b->o.half_close_ud, r->token, r->bytes);
        free(r);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- connecting ----
 *
 * bridge_start begins on the caller's thread (the stream's): both connects,
 * and the hello when both are settled, which on loopback is usually at once.
 * The loop thread then watches what is still in flight and splices: the
 * manager gets the hello without waiting for the loop thread to wake. */

/* Starts a non-blocking connect on a fresh socket: 0 connected, CONNECTING, or -errno. */
static int connect_start(conn *c, bool local, int family, uint16_t port, int *fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        *a = (struct sockaddr_in){.sin_family = AF_INET,
                                  .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        *a = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_loopback};
        len = sizeof *a;
    }
    int one = 1;
    *fd = c->b->sock_fn(c->b->sock_ud, local, family);
    if (*fd < 0)
        return *fd;
    if (fcntl(*fd, F_SETFL, O_NONBLOCK) < 0)
        return -errno;
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(*fd, (struct sockaddr *)&ss, len) == 0)
        return 0;
    return errno == EINPROGRESS ? CONNECTING : -errno;
}

static int connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* Resolves connects that are already done, without waiting. */
static void settle(conn *c)
{
    struct pollfd p[2] = {{.fd = c->terr == CONNECTING ? c->tfd : -1, .events = POLLOUT},
                          {.fd = c->lerr == CONNECTING ? c->lfd : -1, .events = POLLOUT}};
    if ((p[0].fd >= 0 || p[1].fd >= 0) && poll(p, 2, 0) > 0) {
        if (p[0].revents)
            c->terr = connect_result(c->tfd);
        if (p[1].revents)
            c->lerr = connect_result(c->lfd);
    }
}

/* "localhost": 127.0.0.1, and ::1 when that refused. */
static void local_connect(conn *c)
{
    c->lerr = connect_start(c, true, AF_INET, c->local_port, &c->lfd);
    settle(c);
    if (c->lerr == -ECONNREFUSED) {
        if (c->lfd >= 0)
            close(c->lfd);
        c->local_v6 = true;
        c->lerr = connect_start(c, true, AF_INET6, c->local_port, &c->lfd);
    }
}

/* Sends the hello once the tunnel is connected and the local side settled. */
static void hello(conn *c)
{
    if (c->hello_sent || c->terr != 0 || c->lerr == CONNECTING)
        return;
    uint8_t buf[CONTRACT_TUNNEL_HELLO_LEN];
    redirect_client_hello(buf, c->token, c->lerr == 0);
    ssize_t n = send(c->tfd, buf, sizeof buf, MSG_NOSIGNAL);
    if (n != (ssize_t)sizeof buf) /* a fresh socket has room for 17 bytes: anything else is an error */
        c->terr = n < 0 ? -errno : -EIO;
    c->hello_sent = c->terr == 0;
}

/* Loop thread: once both connects are done, hello, then splice (or refuse). */
static void proceed(conn *c)
{
    if (c->terr == CONNECTING || c->lerr == CONNECTING)
        return;
    hello(c);
    if (c->terr < 0) {
        fail(c, c->terr, "tunnel");
        return;
    }
    if (c->lerr < 0) { /* refused: closing the tunnel connection makes the manager reset the peer */
        fail(c, c->lerr, c->lerr == -EBUSY ? "limit" : "local target");
        return;
    }
    bridge *b = c->b;
    if (b->o.bridged)
        b->o.bridged(c->ud);
    list_del(&c->link);
    list_add(&b->spliced, &c->link);
    int tfd = c->tfd, lfd = c->lfd;
    splice_loop_unwatch(b->loop, tfd, &c->wt);
    splice_loop_unwatch(b->loop, lfd, &c->wl);
    c->tfd = c->lfd = -1;
    /* The local side is a, the tunnel b: with half_close, the local FIN goes out of band. */
    splice_pair_opts po = {.done = on_pair_done, .a_eof = c->half_close ? on_local_eof : NULL, .ud = c};
    int rc = splice_loop_pair_opts(b->loop, lfd, tfd, &po, &c->sp); /* owns both fds now; c may be gone */
    if (rc < 0) {
        list_del(&c->link);
        finish(c, rc, rc == -EBUSY ? "limit" : "connection");
    }
}

/* Loop thread: watches a connect still in flight (*err set when that fails). */
static void watch_connect(conn *c, int fd, int *err, splice_watch *w)
{
    if (*err != CONNECTING)
        return;
    int rc = splice_loop_watch(c->b->loop, fd, EPOLLOUT, w);
    if (rc < 0)
        *err = rc;
}

static void spare_event(conn *c);

static void on_tunnel(splice_watch *w, uint32_t events)
{
    (void)events;
    conn *c = (conn *)((char *)w - offsetof(conn, wt));
    if (c->parked) {
        spare_event(c);
        return;
    }
    splice_loop_rewatch(c->b->loop, c->tfd, 0, &c->wt);
    c->terr = connect_result(c->tfd);
    proceed(c);
}

static void on_local(splice_watch *w, uint32_t events)
{
    (void)events;
    conn *c = (conn *)((char *)w - offsetof(conn, wl));
    splice_loop_rewatch(c->b->loop, c->lfd, 0, &c->wl);
    c->lerr = connect_result(c->lfd);
    if (c->lerr == -ECONNREFUSED && !c->local_v6) {
        close_side(c, &c->lfd, &c->wl);
        c->local_v6 = true;
        c->lerr = connect_start(c, true, AF_INET6, c->local_port, &c->lfd);
        watch_connect(c, c->lfd, &c->lerr, &c->wl);
    }
    proceed(c);
}

/* The post of bridge_start, on the loop thread. */
static void begin(void *ud)
{
    conn *c = ud;
    bridge *b = c->b;
    list_add(&b->connecting, &c->link);
    if (splice_loop_stopping(b->loop)) {
        fail(c, -ECANCELED, "connection");
        return;
    }
    watch_connect(c, c->tfd, &c->terr, &c->wt);
    watch_connect(c, c->lfd, &c->lerr, &c->wl);
    proceed(c);
}

/* ---- spares ----
 *
 * A spare connects to the tunnel, sends the stream's spare_token with the
 * SPARE status and waits, on the loop thread, for the announcement of a
 * connection: a 2-byte big-endian length and a RedirectResponse. Then it goes
 * on as bridge_start does after its tunnel connect, with the announced token. */

/* Sends the spare hello once the tunnel connect is done; watches for the announcement. */
static int spare_hello(conn *c)
{
    uint8_t buf[CONTRACT_TUNNEL_HELLO_LEN];
    redirect_client_spare_hello(buf, c->spare_token);
    ssize_t n = send(c->tfd, buf, sizeof buf, MSG_NOSIGNAL);
    if (n != (ssize_t)sizeof buf)
        return n < 0 ? -errno : -EIO;
    c->spare_hello_sent = true;
    return splice_loop_rewatch(c->b->loop, c->tfd, EPOLLIN | EPOLLRDHUP, &c->wt);
}

static int take_announcement(void *ud, const redirect_client_event *ev)
{
    conn *c = ud;
    if (ev->ready || ev->peer_write_closed)
        return -EBADMSG; /* only a connection's message belongs on a spare */
    memcpy(c->token, ev->token, sizeof c->token);
    if (c->announce)
        c->announce(c->ud, ev);
    return 0;
}

/* Reads what came of the announcement: 0 once it is complete, -EAGAIN
 * before, or the -errno that ends the spare (0 bytes: -ECONNRESET). */
static int spare_read(conn *c)
{
    for (;;) {
        size_t want = 2;
        if (c->ann_got >= 2) {
            size_t len = ((size_t)c->ann[0] << 8) | c->ann[1];
            if (len == 0 || len > CONTRACT_TUNNEL_ANNOUNCE_MAX)
                return -EBADMSG;
            want = 2 + len;
            if (c->ann_got == want)
                return redirect_client_decode(c->ann + 2, len, take_announcement, c) < 0 ? -EBADMSG : 0;
        }
        ssize_t n = read(c->tfd, c->ann + c->ann_got, want - c->ann_got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? -EAGAIN : -errno;
        if (n == 0)
            return -ECONNRESET;
        c->ann_got += (size_t)n;
    }
}

/* Loop thread: the spare's tunnel socket is ready. */
static void spare_event(conn *c)
{
    int rc;
    if (!c->spare_hello_sent) { /* the connect finished */
        c->terr = connect_result(c->tfd);
        rc = c->terr < 0 ? c->terr : spare_hello(c);
        if (rc < 0)
            fail(c, rc, "spare");
        return;
    }
    rc = spare_read(c);
    if (rc == -EAGAIN)
        return;
    if (rc < 0) {
        fail(c, rc, "spare");
        return;
    }
    /* Announced: from here on as bridge_start after its tunnel connect. */
    c->parked = false;
    c->deadline = time_now_ms() + CONNECT_MS;
    splice_loop_rewatch(c->b->loop, c->tfd, 0, &c->wt);
    if (atomic_fetch_add(&c->b->active, 1) >= c->b->max_conns)
        c->lerr = -EBUSY; /* refused through the tunnel hello */
    else
        local_connect(c);
    settle(c);
    hello(c);
    watch_connect(c, c->lfd, &c->lerr, &c->wl);
    proceed(c);
}

/* The post of bridge_park, on the loop thread. */
static void begin_spare(void *ud)
{
    conn *c = ud;
    bridge *b = c->b;
    list_add(&b->connecting, &c->link);
    if (splice_loop_stopping(b->loop)) {
        fail(c, -ECANCELED, "spare");
        return;
    }
    int rc = c->terr;
    if (rc == CONNECTING)
        rc = splice_loop_watch(b->loop, c->tfd, EPOLLOUT, &c->wt);
    else if (rc == 0 && (rc = splice_loop_watch(b->loop, c->tfd, 0, &c->wt)) == 0)
        rc = spare_hello(c);
    if (rc < 0)
        fail(c, rc, "spare");
}

/* ---- public ---- */

/* The loop's tick: gives up the connects past their deadline (the local
 * target then counts as refusing: the hello says so); ms to the next one. */
static int tick(void *ud)
{
    bridge *b = ud;
    int64_t now = time_now_ms(), next = -1;
    conn *c, *tmp;
    list_for_each_entry_safe(c, tmp, &b->connecting, link) {
        if (c->parked || (c->lerr != CONNECTING && c->terr != CONNECTING))
            continue;
        if (now < c->deadline) {
            next = next < 0 || c->deadline - now < next ? c->deadline - now : next;
            continue;
        }
        if (c->lerr == CONNECTING) {
            close_side(c, &c->lfd, &c->wl);
            c->lerr = -ETIMEDOUT;
        }
        if (c->terr == CONNECTING) {
            close_side(c, &c->tfd, &c->wt);
            c->terr = -ETIMEDOUT;
        }
        proceed(c); /* c may be gone */
    }
    return next < 0 ? -1 : next > INT32_MAX ? INT32_MAX : (int)next;
}

/* A connection (or spare) of the bridge, before its connects. */
static conn *conn_new(bridge *b, uint16_t tunnel_port, uint16_t local_port, bool half_close, bridge_done_fn done,
                      void *ud)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    *c = (conn){.b = b,
                .wt = {on_tunnel},
                .wl = {on_local},
                .tfd = -1,
                .lfd = -1,
                .tunnel_port = tunnel_port,
                .local_port = local_port,
                .done = done,
                .ud = ud,
                .half_close = half_close && b->o.half_close,
                .deadline = time_now_ms() + CONNECT_MS};
    list_init(&c->link);
    return c;
}

int bridge_park(bridge *b, uint16_t tunnel_port, uint16_t local_port,
                const uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN], bool half_close, bridge_announce_fn announce,
                bridge_done_fn done, void *ud)
{
    conn *c = conn_new(b, tunnel_port, local_port, half_close, done, ud);
    if (!c)
        return -ENOMEM;
    c->parked = true;
    c->announce = announce;
    memcpy(c->spare_token, spare_token, CONTRACT_TUNNEL_TOKEN_LEN);
    c->terr = connect_start(c, false, AF_INET, tunnel_port, &c->tfd);
    int rc = splice_loop_post(b->loop, begin_spare, c);
    if (rc < 0) {
        if (c->tfd >= 0)
            close(c->tfd);
        free(c);
    }
    return rc;
}

int bridge_start(bridge *b, uint16_t tunnel_port, uint16_t local_port,
                 const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], bool half_close, bridge_done_fn done, void *ud)
{
    conn *c = conn_new(b, tunnel_port, local_port, half_close, done, ud);
    if (!c)
        return -ENOMEM;
    memcpy(c->token, token, CONTRACT_TUNNEL_TOKEN_LEN);
    bool over = atomic_fetch_add(&b->active, 1) >= b->max_conns;
    c->terr = connect_start(c, false, AF_INET, tunnel_port, &c->tfd);
    if (over)
        c->lerr = -EBUSY; /* refused through the tunnel hello */
    else
        local_connect(c);
    settle(c);
    hello(c);
    int rc = splice_loop_post(b->loop, begin, c);
    if (rc < 0) {
        atomic_fetch_sub(&b->active, 1);
        if (c->tfd >= 0)
            close(c->tfd);
        if (c->lfd >= 0)
            close(c->lfd);
        free(c);
    }
    return rc;
}

/* A peer_write_closed report on its way to the loop thread. */
typedef struct {
    bridge *b;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    uint64_t bytes;
} peer_closed;

static void peer_closed_run(void *ud)
{
    peer_closed *pc = ud;
    conn *c;
    if (!splice_loop_stopping(pc->b->loop))
        list_for_each_entry(c, &pc->b->spliced, link)
            if (memcmp(c->token, pc->token, sizeof c->token) == 0) {
                splice_pair_shut_after(c->sp, pc->bytes); /* may end c */
                break;
            }
    free(pc);
}

int bridge_peer_closed(bridge *b, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes)
{
    peer_closed *pc = malloc(sizeof *pc);
    if (!pc)
        return -ENOMEM;
    *pc = (peer_closed){.b = b, .bytes = bytes};
    memcpy(pc->token, token, sizeof pc->token);
    int rc = splice_loop_post(b->loop, peer_closed_run, pc);
    if (rc < 0)
        free(pc);
    return rc;
}

int bridge_active(const bridge *b)
{
    return atomic_load(&b->active);
}

int bridge_max_conns(const bridge *b)
{
    return b->max_conns;
}

/* As many connections as the open-files limit (raised to the hard one) allows. */
static int conns_for_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 64;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t n = rl.rlim_cur > FDS_RESERVED + FDS_PER_CONN ? (rl.rlim_cur - FDS_RESERVED) / FDS_PER_CONN : 1;
    return n < SPLICE_LOOP_MAX_PAIRS ? (int)n : SPLICE_LOOP_MAX_PAIRS;
}

int bridge_new(bridge **ret, const bridge_opts *o)
{
    bridge *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int fit = conns_for_nofile();
    b->max_conns = o->max_conns > 0 && o->max_conns < fit ? o->max_conns : fit;
    b->sock_fn = default_socket;
    b->o = *o;
    list_init(&b->connecting);
    list_init(&b->spliced);
    list_init(&b->reports);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    int rc = 0;
    if (o->half_close) {
        rc = -pthread_create(&b->sender, NULL, sender_main, b);
        b->sender_started = rc == 0;
    }
    splice_loop_opts lo = {.max_pairs = b->max_conns, .tick = tick, .ud = b};
    if (rc == 0)
        rc = splice_loop_new(&b->loop, &lo);
    if (rc < 0)
        bridge_free(b);
    else
        *ret = b;
    return rc;
}

void bridge_free(bridge *b)
{
    if (!b)
        return;
    splice_loop_free(b->loop); /* joins; cancels queued starts and running pairs */
    b->loop = NULL;
    conn *c;
    while ((c = list_first_entry_or_null(&b->connecting, conn, link)))
        fail(c, -ECANCELED, "connection");
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->sender_started)
        pthread_join(b->sender, NULL);
    report *r;
    while ((r = list_first_entry_or_null(&b->reports, report, link))) { /* their connections are closed */
        list_del(&r->link);
        free(r);
    }
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
