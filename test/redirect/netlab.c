/* netlab — see netlab.h. */
#include "netlab.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/time-util.h"
#include "tproc.h"
#include "tshell.h"

static int ns_fd[3] = {-1, -1, -1};
static pid_t holder[3];

/* A child that owns a fresh network namespace until this process dies. */
static pid_t hold_netns(void)
{
    int p[2];
    char c;
    CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (unshare(CLONE_NEWNET) < 0)
            _exit(1);
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    CHECK(read(p[0], &c, 1) == 1, "netns holder failed (are we root?)");
    close(p[0]);
    return pid;
}

void netlab_init(void)
{
    struct rlimit rl;
    char path[64];

    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ns_fd[NS_HOME] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    CHECK(ns_fd[NS_HOME] >= 0, "open own netns: %s", strerror(errno));
    for (int i = NS_PEER; i <= NS_POD; i++) {
        holder[i] = hold_netns();
        snprintf(path, sizeof path, "/proc/%d/ns/net", holder[i]);
        ns_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
        CHECK(ns_fd[i] >= 0, "open %s: %s", path, strerror(errno));
    }
    /* The veth is created inside "peer" with its other end straight in "pod":
     * no interface ever appears in the test's own namespace. */
    int me = getpid();
    CHECK(tshell("nsenter --net=/proc/%d/ns/net sh -ec 'ip link set lo up; "
                 "ip link add kdrp%d type veth peer name kdrq%d netns %d; "
                 "ip addr add %s/24 dev kdrp%d; ip -6 addr add %s/64 dev kdrp%d nodad; ip link set kdrp%d up'",
                 holder[NS_PEER], me, me, holder[NS_POD], PEER_IP4, me, PEER_IP6, me, me) == 0,
          "the veth in peer");
    CHECK(tshell("nsenter --net=/proc/%d/ns/net sh -ec 'ip link set lo up; "
                 "ip addr add %s/24 dev kdrq%d; ip -6 addr add %s/64 dev kdrq%d nodad; ip link set kdrq%d up'",
                 holder[NS_POD], POD_IP4, me, POD_IP6, me, me) == 0,
          "the veth in pod");
    CHECK(setns(ns_fd[NS_POD], CLONE_NEWNET) == 0, "setns pod: %s", strerror(errno));
}

int netlab_socket(netlab_ns ns, int family)
{
    return netlab_socket_type(ns, family, SOCK_STREAM);
}

int netlab_socket_type(netlab_ns ns, int family, int type)
{
    if (ns != NS_POD && setns(ns_fd[ns], CLONE_NEWNET) < 0)
        return -errno;
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    int e = errno;
    if (ns != NS_POD)
        CHECK(setns(ns_fd[NS_POD], CLONE_NEWNET) == 0, "setns back: %s", strerror(errno));
    return fd < 0 ? -e : fd;
}

static int sockaddr_of(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof *s4;
        return AF_INET;
    }
    CHECK(inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1, "bad ip %s", ip);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return AF_INET6;
}

int netlab_connect(netlab_ns ns, const char *ip, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = sockaddr_of(ip, port, &ss, &len);
    int fd = netlab_socket(ns, fam);
    if (fd < 0)
        return fd;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int netlab_listen(netlab_ns ns, const char *ip, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;
    int fam = sockaddr_of(ip, 0, &ss, &len);
    int fd = netlab_socket(ns, fam);
    CHECK(fd >= 0, "socket: %s", strerror(-fd));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0 && listen(fd, 4096) == 0 &&
              getsockname(fd, (struct sockaddr *)&ss, &len) == 0,
          "listen on %s: %s", ip, strerror(errno));
    *port = ntohs(fam == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

char *netlab_pod_sh(const char *cmd)
{
    /* popen forks from this thread, which lives in "pod". */
    FILE *f = popen(cmd, "r");
    CHECK(f, "popen %s", cmd);
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    CHECK(out, "oom");
    size_t r;
    while ((r = fread(out + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            out = realloc(out, cap);
            CHECK(out, "oom");
        }
    }
    out[n] = 0;
    pclose(f);
    return out;
}

/* ---- the manager ---- */

static void drop_net_admin(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    /* Out of the bounding set, so execve cannot give it back to root... */
    if (prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0) < 0)
        _exit(121);
    /* ...and out of the inheritable set, the other way back in. */
    if (syscall(SYS_capget, &h, d) < 0)
        _exit(122);
    d[0].inheritable = d[1].inheritable = 0;
    if (syscall(SYS_capset, &h, d) < 0)
        _exit(123);
}

static const char *next_stderr; /* netlab_mgr_stderr_to */

void netlab_mgr_stderr_to(const char *path)
{
    next_stderr = path;
}

void netlab_mgr_start(netlab_mgr *m, const char *bin, bool drop)
{
    int p[2];
    memset(m, 0, sizeof *m);
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (drop)
            drop_net_admin();
        dup2(p[1], 1);
        if (next_stderr) {
            int fd = open(next_stderr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0 || dup2(fd, 2) < 0)
                _exit(124);
        }
        signal(SIGPIPE, SIG_DFL);
        execl(bin, bin, getenv("NETLAB_VERBOSE") ? "-v" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    next_stderr = NULL;
    m->pid = pid;
    /* Raw reads, not stdio: the three lines may come in one read. */
    char out[1024];
    size_t n = 0;
    int lines = 0;
    while (lines < 3) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        CHECK(poll(&pf, 1, 10000) == 1, "manager printed %d of 3 lines in 10 s", lines);
        ssize_t r = read(p[0], out + n, sizeof out - 1 - n);
        CHECK(r > 0, "manager exited after %d lines", lines);
        n += (size_t)r;
        out[n] = 0;
        lines = 0;
        for (char *q = out; (q = strchr(q, '\n')); q++)
            lines++;
    }
    close(p[0]);
    contract_banner b;
    contract_find_result fr;
    contract_banner_find(out, n, NULL, &b, &fr);
    CHECK(b.grpc_port && b.token[0] && b.tunnel_port, "manager's first lines: %s", out);
    m->grpc_port = b.grpc_port;
    m->tunnel_port = b.tunnel_port;
    snprintf(m->token, sizeof m->token, "%s", b.token);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", m->grpc_port);
    CHECK(rpc_client_new(&m->client, target, m->token) == 0, "rpc_client_new");
}

void netlab_mgr_kill(netlab_mgr *m)
{
    if (m->pid > 0) {
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
        m->pid = 0;
    }
}

void netlab_mgr_stop(netlab_mgr *m)
{
    int status = 0;
    CHECK(kill(m->pid, SIGTERM) == 0, "kill: %s", strerror(errno));
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(m->pid, &status, WNOHANG);
        if (r == m->pid) {
            m->pid = 0;
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "manager ended with status 0x%x", status);
            return;
        }
        usleep(10000);
    }
    CHECK(false, "manager still running 10 s after SIGTERM");
}

int netlab_mgr_fd_count(const netlab_mgr *m)
{
    int n = tproc_fd_count(m->pid);
    CHECK(n >= 0, "/proc/%d/fd: %s", m->pid, strerror(-n));
    return n;
}

long netlab_mgr_rss_kb(const netlab_mgr *m)
{
    long kb = tproc_status(m->pid, "VmRSS");
    CHECK(kb >= 0, "no VmRSS in /proc/%d/status", m->pid);
    return kb;
}

/* ---- the CLI's role: redirect_client + the CLI's bridge (cli/bridge.c) ---- */

/* The bridge's sockets: local targets in "home", the tunnel in "pod". */
static int bridge_socket(void *ud, bool local, int family)
{
    (void)ud;
    return netlab_socket(local ? NS_HOME : NS_POD, family);
}

static void conn_done(netlab_cli *c)
{
    pthread_mutex_lock(&c->mu);
    c->bridges_running--;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_bridge_done(void *ud, const bridge_result *r)
{
    netlab_cli *c = ud;
    if (r->err < 0 && getenv("NETLAB_VERBOSE"))
        fprintf(stderr, "netlab: bridge ended: %s: %s\n", r->where, strerror(-r->err));
    pthread_mutex_lock(&c->mu);
    if (r->err == -EBUSY)
        c->refused_at_limit++;
    pthread_mutex_unlock(&c->mu);
    conn_done(c);
}

typedef struct {
    netlab_cli *c;
    uint16_t port;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
} sink_job;

/* NETLAB_TUNNEL_SINK: no bridge, the tunnel connection is the local server
 * (what the manager alone costs): read and drop to EOF. */
static void *sink_main(void *arg)
{
    sink_job *j = arg;
    uint8_t hello[CONTRACT_TUNNEL_HELLO_LEN];
    int t = netlab_connect(NS_POD, "127.0.0.1", j->port);
    CHECK(t >= 0, "tunnel connect: %s", strerror(-t));
    redirect_client_hello(hello, j->token, true);
    CHECK(send(t, hello, sizeof hello, MSG_NOSIGNAL) == (ssize_t)sizeof hello, "hello");
    char *drop = malloc(1 << 18);
    CHECK(drop, "oom");
    while (recv(t, drop, 1 << 18, 0) > 0) { /* copies, as the direct sink does */
    }
    free(drop);
    close(t);
    conn_done(j->c);
    free(j);
    return NULL;
}

static void sink_start(netlab_cli *c, const redirect_client_event *ev)
{
    sink_job *j = malloc(sizeof *j);
    CHECK(j, "oom");
    *j = (sink_job){.c = c, .port = (uint16_t)ev->tunnel_port};
    memcpy(j->token, ev->token, sizeof j->token);
    pthread_attr_t a;
    pthread_t th;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    CHECK(pthread_create(&th, &a, sink_main, j) == 0, "pthread_create");
    pthread_attr_destroy(&a);
}

/* A spare of the CLI's (cli/redir.c does the same). */
typedef struct {
    netlab_cli *c;
    bool announced;
} spare_ctx;

static void top_up(netlab_cli *c);

/* Caller holds c->mu: a new connection, on the stream or a spare. */
static void count_conn_locked(netlab_cli *c, const redirect_client_event *ev)
{
    c->last_event_us = time_now_us();
    c->nconns++;
    snprintf(c->last_peer, sizeof c->last_peer, "%s", ev->peer);
    snprintf(c->last_orig, sizeof c->last_orig, "%s", ev->original_dst);
    memcpy(c->last_token, ev->token, sizeof c->last_token);
    c->bridges_running++;
}

static void on_spare_announce(void *ud, const redirect_client_event *ev)
{
    spare_ctx *s = ud;
    netlab_cli *c = s->c;
    s->announced = true;
    pthread_mutex_lock(&c->mu);
    c->parked--;
    c->on_spares++;
    count_conn_locked(c, ev);
    pthread_mutex_unlock(&c->mu);
    top_up(c);
}

static void on_spare_done(void *ud, const bridge_result *r)
{
    spare_ctx *s = ud;
    netlab_cli *c = s->c;
    bool announced = s->announced;
    free(s);
    if (announced) {
        on_bridge_done(c, r);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->parked--;
    pthread_mutex_unlock(&c->mu);
}

static void top_up(netlab_cli *c)
{
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool want = c->has_spare && !c->ended && c->parked < c->spares;
        if (want)
            c->parked++;
        pthread_mutex_unlock(&c->mu);
        if (!want)
            return;
        spare_ctx *s = calloc(1, sizeof *s);
        CHECK(s, "oom");
        s->c = c;
        int rc = bridge_park(c->br, (uint16_t)c->tunnel_port, (uint16_t)c->local_port, c->spare_token,
                             c->half_close, on_spare_announce, on_spare_done, s);
        if (rc < 0) { /* at the bridge's limit: the next connection tries again */
            free(s);
            pthread_mutex_lock(&c->mu);
            c->parked--;
            pthread_mutex_unlock(&c->mu);
            return;
        }
    }
}

static int on_event(void *ud, const redirect_client_event *ev)
{
    netlab_cli *c = ud;
    pthread_mutex_lock(&c->mu);
    c->last_event_us = time_now_us();
    if (ev->ready) {
        c->ready = true;
        c->half_close = ev->half_close;
        c->tunnel_port = ev->tunnel_port;
        c->offered_spare = ev->has_spare;
        c->has_spare = ev->has_spare && c->spares > 0;
        memcpy(c->spare_token, ev->spare_token, sizeof c->spare_token);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        top_up(c);
        return 0;
    }
    if (ev->peer_write_closed) {
        pthread_mutex_unlock(&c->mu);
        CHECK(bridge_peer_closed(c->br, ev->token, ev->peer_write_closed_after) == 0, "bridge_peer_closed");
        return 0;
    }
    count_conn_locked(c, ev);
    if (c->local_port == NETLAB_IGNORE) {
        c->bridges_running--;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    pthread_mutex_unlock(&c->mu);
    if (c->local_port == NETLAB_TUNNEL_SINK) {
        sink_start(c, ev);
    } else {
        /* the CLI bridges to its port-forward's end; here the tunnel is reached directly */
        CHECK(bridge_start(c->br, (uint16_t)ev->tunnel_port, (uint16_t)c->local_port, ev->token, c->half_close,
                           on_bridge_done, c) == 0,
              "bridge_start");
        top_up(c);
    }
    return 0;
}

/* The bridge's HalfClose sender, as the CLI's (minus the forward). */
static void send_half_close(void *ud, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes)
{
    netlab_cli *c = ud;
    rpc_status st = {0};
    if (redirect_client_half_close(c->client, token, bytes, 10000, &st) < 0)
        fprintf(stderr, "netlab: HalfClose: %s\n", st.message);
}

static void *cli_main(void *arg)
{
    netlab_cli *c = arg;
    int rc = redirect_client_run(c->rc, on_event, c, &c->st);
    pthread_mutex_lock(&c->mu);
    c->run_rc = rc;
    c->ended = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void cli_start(netlab_cli *c, netlab_mgr *m, const redirect_client_req *req, int local_port, int max_conns,
                      int spares)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->local_port = local_port;
    c->spares = local_port != NETLAB_IGNORE && local_port != NETLAB_TUNNEL_SINK ? spares : 0;
    c->client = m->client;
    bridge_opts bo = {.max_conns = max_conns, .half_close = send_half_close, .half_close_ud = c};
    CHECK(bridge_new(&c->br, &bo) == 0, "bridge_new");
    bridge_set_socket_fn(c->br, bridge_socket, NULL);
    redirect_client_req r = *req;
    r.half_close = local_port != NETLAB_IGNORE && local_port != NETLAB_TUNNEL_SINK; /* they take the FINs */
    CHECK(redirect_client_new(&c->rc, m->client, &r) == 0, "redirect_client_new");
    CHECK(pthread_create(&c->thread, NULL, cli_main, c) == 0, "pthread_create");
}

void netlab_cli_start_capped(netlab_cli *c, netlab_mgr *m, uint32_t port, bool outgoing, int local_port, int max_conns)
{
    redirect_client_req req = {.port = port, .outgoing = outgoing};
    cli_start(c, m, &req, local_port, max_conns, 1);
}

void netlab_cli_start_req(netlab_cli *c, netlab_mgr *m, const redirect_client_req *req, int local_port)
{
    cli_start(c, m, req, local_port, 0, 1);
}

void netlab_cli_start(netlab_cli *c, netlab_mgr *m, uint32_t port, bool outgoing, int local_port)
{
    netlab_cli_start_capped(c, m, port, outgoing, local_port, 0);
}

void netlab_cli_start_nospares(netlab_cli *c, netlab_mgr *m, uint32_t port, bool outgoing, int local_port)
{
    redirect_client_req req = {.port = port, .outgoing = outgoing};
    cli_start(c, m, &req, local_port, 0, 0);
}

static bool wait_until(netlab_cli *c, bool (*cond)(netlab_cli *), int timeout_ms)
{
    struct timespec dl = time_deadline_ts(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (!cond(c))
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0)
            break;
    bool ok = cond(c);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static bool ready_or_ended(netlab_cli *c)
{
    return c->ready || c->ended;
}

static bool idle(netlab_cli *c)
{
    return c->bridges_running == 0;
}

bool netlab_cli_wait_ready(netlab_cli *c, int timeout_ms)
{
    CHECK(wait_until(c, ready_or_ended, timeout_ms), "no ready message within %d ms", timeout_ms);
    return c->ready;
}

void netlab_cli_stop(netlab_cli *c)
{
    redirect_client_cancel(c->rc);
    pthread_join(c->thread, NULL);
    redirect_client_free(c->rc);
    c->rc = NULL;
}

int netlab_cli_on_spares(netlab_cli *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->on_spares;
    pthread_mutex_unlock(&c->mu);
    return n;
}

bool netlab_cli_wait_idle(netlab_cli *c, int timeout_ms)
{
    return wait_until(c, idle, timeout_ms);
}

void netlab_cli_free(netlab_cli *c)
{
    if (c->rc)
        netlab_cli_stop(c);
    bridge_free(c->br);
    c->br = NULL;
}

/* ---- echo server ---- */

typedef struct {
    int fd;
    uint8_t buf[16384];
    size_t len, off;
    bool eof;
} echo_conn;

struct netlab_echo {
    int lfd, stop_fd, ep;
    pthread_t thread;
};

static void echo_close(netlab_echo *e, echo_conn *c)
{
    epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Returns false when the connection is finished (and freed). */
static bool echo_run(netlab_echo *e, echo_conn *c)
{
    for (;;) {
        while (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n < 0 && errno == EAGAIN)
                return true;
            if (n < 0) {
                echo_close(e, c);
                return false;
            }
            c->off += (size_t)n;
        }
        c->off = c->len = 0;
        if (c->eof) {
            shutdown(c->fd, SHUT_WR);
            echo_close(e, c);
            return false;
        }
        ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n < 0) {
            echo_close(e, c);
            return false;
        }
        if (n == 0)
            c->eof = true;
        c->len = (size_t)n;
    }
}

static void *echo_main(void *arg)
{
    netlab_echo *e = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(e->ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                for (;;) {
                    int fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    echo_conn *c = calloc(1, sizeof *c);
                    CHECK(c, "oom");
                    c->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
                    epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev);
                    echo_run(e, c);
                }
            } else if (evs[i].data.ptr == (void *)e) {
                return NULL;
            } else {
                echo_conn *c = evs[i].data.ptr;
                /* later events of this batch may name c: it is only freed in echo_run at EOF/error,
                 * and the kernel reports each fd once per epoll_wait, so no duplicates. */
                echo_run(e, c);
            }
        }
    }
}

netlab_echo *netlab_echo_start(int *port)
{
    netlab_echo *e = calloc(1, sizeof *e);
    CHECK(e, "oom");
    e->lfd = netlab_listen(NS_HOME, "127.0.0.1", port);
    fcntl(e->lfd, F_SETFL, O_NONBLOCK);
    e->stop_fd = eventfd(0, EFD_CLOEXEC);
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event es = {.events = EPOLLIN, .data.ptr = e};
    CHECK(epoll_ctl(e->ep, EPOLL_CTL_ADD, e->lfd, &el) == 0 && epoll_ctl(e->ep, EPOLL_CTL_ADD, e->stop_fd, &es) == 0,
          "epoll");
    CHECK(pthread_create(&e->thread, NULL, echo_main, e) == 0, "pthread_create");
    return e;
}

void netlab_echo_stop(netlab_echo *e)
{
    uint64_t one = 1;
    CHECK(write(e->stop_fd, &one, sizeof one) == sizeof one, "eventfd");
    pthread_join(e->thread, NULL);
    close(e->lfd);
    close(e->stop_fd);
    close(e->ep);
    free(e); /* connections still open are the test's failure to report, not freed here */
}

/* ---- data streams ---- */

#define BLOCK 65536

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void block_fill(uint64_t seed, uint64_t block, uint8_t *buf)
{
    uint64_t x = seed * 0x100000001b3ULL ^ block;
    for (size_t i = 0; i < BLOCK; i += 8) {
        uint64_t v = splitmix(&x);
        memcpy(buf + i, &v, 8);
    }
}

/* The last block made, so small reads do not regenerate 64 KiB each (heap, not
 * TLS: bridge threads have small stacks). */
typedef struct {
    uint64_t seed, block;
    uint8_t data[BLOCK];
} block_cache;

static void fill(block_cache *bc, uint64_t seed, uint64_t pos, uint8_t *buf, size_t n)
{
    while (n > 0) {
        uint64_t b = pos / BLOCK;
        size_t off = pos % BLOCK, k = BLOCK - off < n ? BLOCK - off : n;
        if (bc->block != b || bc->seed != seed) {
            block_fill(seed, b, bc->data);
            bc->block = b;
            bc->seed = seed;
        }
        memcpy(buf, bc->data + off, k);
        buf += k;
        pos += k;
        n -= k;
    }
}

static block_cache *cache_new(void)
{
    block_cache *bc = malloc(sizeof *bc);
    CHECK(bc, "oom");
    bc->block = UINT64_MAX;
    return bc;
}

int netlab_send_stream(int fd, uint64_t seed, uint64_t n)
{
    block_cache *bc = cache_new();
    uint8_t *buf = malloc(BLOCK);
    CHECK(buf, "oom");
    uint64_t pos = 0;
    int rc = 0;
    while (pos < n && rc == 0) {
        size_t k = n - pos < BLOCK ? (size_t)(n - pos) : BLOCK;
        fill(bc, seed, pos, buf, k);
        size_t off = 0;
        while (off < k) {
            ssize_t w = send(fd, buf + off, k - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                break;
            }
            off += (size_t)w;
        }
        pos += k;
    }
    free(buf);
    free(bc);
    return rc;
}

int64_t netlab_recv_stream(int fd, uint64_t seed)
{
    block_cache *bc = cache_new();
    uint8_t *buf = malloc(2 * BLOCK);
    CHECK(buf, "oom");
    uint8_t *want = buf + BLOCK;
    int64_t pos = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, BLOCK, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0)
                pos = -errno;
            break;
        }
        fill(bc, seed, (uint64_t)pos, want, (size_t)r);
        if (memcmp(buf, want, (size_t)r) != 0) {
            pos = -EBADMSG;
            break;
        }
        pos += r;
    }
    free(buf);
    free(bc);
    return pos;
}
