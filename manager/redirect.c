/* redirect — see redirect.h. The handler thread of each stream owns its
 * listeners and accepts on them; the tunnel's thread does everything after. */
#include "redirect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "basic/addr-util.h"
#include "basic/list.h"
#include "basic/sock-util.h"
#include "basic/time-util.h"
#include "contract.h"
#include "kdiag.pb-c.h"
#include "nft.h"
#include "tunnel.h"

#define MAX_RESERVED 16
#define BIND_TRIES 16
#define SESSION_ID_MAX CONTRACT_REDIRECT_SESSION_ID_MAX
_Static_assert(CONTRACT_REDIRECT_SKIP_SOURCES_MAX <= NFT_SKIP_SOURCES_MAX, "nft.h holds every skip source");
/* How long a takeover waits for the stream it replaces to let go; that stream
 * only misses it while blocked sending to a client that stopped reading. */
#define TAKEOVER_WAIT_MS 5000
/* Connections that reach a redirect listener directly (anyone who can reach
 * the pod can make them): one line per window, the rest counted in the next. */
#define STRAY_WINDOW_MS 10000

/* A (port, direction) held by a live stream. */
typedef struct active {
    uint16_t port;
    bool outgoing;
    uint16_t listen_port; /* 0 until the listeners are bound */
    uint64_t id;          /* unique per registration: what a takeover waits on */
    uint8_t session_id[SESSION_ID_MAX];
    size_t session_id_len; /* 0: the client named no session */
    int takeover_fd;       /* eventfd: a stream of the same session wants the port */
    const void *heir;      /* that stream, which takes this one's connections over ... */
    int heir_report;       /* ... with its report pipe (-1: half-closes as FINs) */
    list_node link;        /* on redirect_mgr.actives */
} active;

struct redirect_mgr {
    redirect_opts o;
    tunnel *tun;
    nft_conn *nft;
    int nft_err;                    /* why nft is NULL */
    char table[NFT_TABLE_NAME_MAX]; /* ours: inet kdiag-<tunnel port> */
    pthread_mutex_t lock;           /* guards reserved, actives, next_id and the stray counts */
    pthread_cond_t released;        /* an active was removed */
    uint16_t reserved[MAX_RESERVED];
    int nreserved;
    list_node actives;
    uint64_t next_id;
    time_ratelimit strays; /* connections that reached a listener directly */
};

/* One Redirect stream. */
typedef struct {
    uint32_t port;
    bool outgoing;
    uint8_t session_id[SESSION_ID_MAX];
    size_t session_id_len;
    nft_redirect rd; /* what the rules catch; port and to_port filled at start */
    int lfd[2];      /* IPv4, IPv6 (-1 when the pod has no IPv6) */
    uint16_t lport;
    nft_rules rules;
    bool rules_in;
    active *reg;
    bool half_close; /* half-closes out of band (docs/redirect.md "Half-close") */
    int report[2];   /* half_close streams: the tunnel's reports of peers' half-closes; else -1 */
} session;

static bool has_cap_net_admin(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return false;
    return d[CAP_TO_INDEX(CAP_NET_ADMIN)].effective & CAP_TO_MASK(CAP_NET_ADMIN);
}

static bool port_reserved_locked(const redirect_mgr *m, uint16_t port)
{
    if (port == redirect_mgr_tunnel_port(m))
        return true;
    for (int i = 0; i < m->nreserved; i++)
        if (m->reserved[i] == port)
            return true;
    const active *a;
    list_for_each_entry(a, &m->actives, link)
        if (a->listen_port == port)
            return true;
    return false;
}

/* ---- listeners ---- */

static int listen_on(int family, const void *addr, uint16_t port, int *out)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, addr, 4);
        s->sin_port = htons(port);
        len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, addr, 16);
        s->sin6_port = htons(port);
        len = sizeof *s;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *out = fd;
    return ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Binds an IPv4 and an IPv6 listener to one free port. Incoming traffic is
 * redirected to the address it arrived on, so those listen on any address;
 * outgoing traffic is dnat'ed to loopback, so those listen on loopback only. */
static int session_listen(redirect_mgr *m, session *s)
{
    struct in_addr any4 = {htonl(INADDR_ANY)}, lo4 = {htonl(INADDR_LOOPBACK)};
    struct in6_addr any6 = IN6ADDR_ANY_INIT, lo6 = IN6ADDR_LOOPBACK_INIT;
    int rc = -EADDRINUSE;

    for (int i = 0; i < BIND_TRIES; i++) {
        int p = listen_on(AF_INET, s->outgoing ? (void *)&lo4 : (void *)&any4, 0, &s->lfd[0]);
        if (p < 0)
            return p;
        pthread_mutex_lock(&m->lock);
        bool clash = p == (int)s->port || port_reserved_locked(m, (uint16_t)p);
        pthread_mutex_unlock(&m->lock);
        int p6 = clash ? -EADDRINUSE
                       : listen_on(AF_INET6, s->outgoing ? (void *)&lo6 : (void *)&any6, (uint16_t)p, &s->lfd[1]);
        if (p6 >= 0 || p6 == -EAFNOSUPPORT || p6 == -EADDRNOTAVAIL) {
            s->lport = (uint16_t)p; /* without IPv6 in the pod, IPv4 alone */
            pthread_mutex_lock(&m->lock);
            s->reg->listen_port = s->lport;
            pthread_mutex_unlock(&m->lock);
            return 0;
        }
        close(s->lfd[0]);
        s->lfd[0] = -1;
        rc = p6;
        if (p6 != -EADDRINUSE)
            break;
    }
    return rc;
}

/* ---- addresses ---- */

/* The destination the peer dialled, from conntrack. */
static int original_dst(int fd, int family, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof *ss;
    memset(ss, 0, sizeof *ss);
    int rc = family == AF_INET ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, ss, &len)
                               : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, ss, &len);
    return rc < 0 ? -errno : 0;
}

/* ---- the stream ---- */

static int send_response(rpc_call *call, const Kdiag__Solo__Io__RedirectResponse *r)
{
    uint8_t buf[256];
    size_t len = kdiag__solo__io__redirect_response__get_packed_size(r);
    if (len > sizeof buf)
        return -EMSGSIZE;
    kdiag__solo__io__redirect_response__pack(r, buf);
    return rpc_call_send(call, buf, len);
}

/* A connection that reached the listener without the rule: logged at most
 * once per STRAY_WINDOW_MS (each one with -v), with the count of the others;
 * the last of those when the window ends (stray_flush). */
static void stray_log(redirect_mgr *m, const session *s, const char *peer)
{
    char line[TIME_RATELIMIT_LINE_MAX], out[TIME_RATELIMIT_OUT_MAX];
    snprintf(line, sizeof line,
             "kdiag-manager: redirect %u: connection from %s did not come through the redirect rule: closed",
             s->port, peer);
    pthread_mutex_lock(&m->lock);
    bool say = m->o.verbose || time_ratelimit_line(&m->strays, STRAY_WINDOW_MS, line, out, sizeof out);
    pthread_mutex_unlock(&m->lock);
    if (say)
        fprintf(stderr, "%s\n", m->o.verbose ? line : out);
}

/* The strays held back once their window has ended (at_end: at once, a
 * stream or the manager ends). Returns the poll timeout until they are due
 * (-1: none). */
static int stray_flush(redirect_mgr *m, bool at_end)
{
    return time_ratelimit_say_held(&m->strays, &m->lock, STRAY_WINDOW_MS, at_end, stderr);
}

/* Accepts one redirected connection and announces it. 0, -EAGAIN when there
 * was none, or the error of rpc_call_send (the stream is gone). */
static int accept_one(redirect_mgr *m, rpc_call *call, session *s, int idx)
{
    struct sockaddr_storage peer, orig;
    socklen_t plen = sizeof peer;
    char peer_s[ADDR_STR_MAX], orig_s[ADDR_STR_MAX];
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];

    int fd = accept4(s->lfd[idx], (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return errno == EAGAIN || errno == EINTR || errno == ECONNABORTED ? -EAGAIN : -errno;
    addr_format((struct sockaddr *)&peer, peer_s, sizeof peer_s);
    int rc = original_dst(fd, idx == 0 ? AF_INET : AF_INET6, &orig);
    uint16_t oport = rc == 0 ? ntohs(((struct sockaddr_in *)&orig)->sin_port) : 0; /* same offset in both */
    if (rc < 0 || oport == s->lport) { /* not redirected by our rule: someone dialled the listener itself */
        stray_log(m, s, peer_s);
        close(fd);
        return 0;
    }
    addr_format((struct sockaddr *)&orig, orig_s, sizeof orig_s);
    rc = tunnel_add_peer(m->tun, fd, s, s->report[1], token);
    if (rc < 0) {
        fprintf(stderr, "kdiag-manager: redirect %u: connection from %s dropped: %s\n", s->port, peer_s,
                strerror(-rc));
        return 0;
    }
    if (m->o.verbose)
        fprintf(stderr, "kdiag-manager: redirect %u: connection from %s to %s\n", s->port, peer_s, orig_s);
    Kdiag__Solo__Io__RedirectResponse r = KDIAG__SOLO__IO__REDIRECT_RESPONSE__INIT;
    r.port = (uint32_t)redirect_mgr_tunnel_port(m);
    r.tunnel_token.data = token;
    r.tunnel_token.len = sizeof token;
    r.peer = peer_s;
    r.original_dst = orig_s;
    /* packed once: the same bytes go on a parked spare or, without one, on the stream */
    uint8_t buf[CONTRACT_TUNNEL_ANNOUNCE_MAX];
    size_t len = kdiag__solo__io__redirect_response__get_packed_size(&r);
    if (len > sizeof buf)
        return -EMSGSIZE;
    kdiag__solo__io__redirect_response__pack(&r, buf);
    if (tunnel_spare_announce(m->tun, s, buf, len) > 0)
        return 0;
    /* If this fails the stream is gone; the peer is reset when its pairing times out. */
    return rpc_call_send(call, buf, len);
}

static grpc_status_code nft_error_status(const redirect_mgr *m, rpc_call *call, const session *s, int rc)
{
    const char *dir = s->outgoing ? "outgoing" : "incoming";
    if (rc == -EPERM && !has_cap_net_admin()) {
        rpc_call_set_message(call,
                             "cannot redirect %s port %u: kdiag-manager lacks CAP_NET_ADMIN; the ephemeral "
                             "container needs NET_ADMIN (securityContext.capabilities.add: [NET_ADMIN])",
                             dir, s->port);
    } else if (rc == -EPERM) {
        /* Our table's name carries our tunnel port: no other manager uses it. */
        const char *t = m->table;
        rpc_call_set_message(call,
                             "cannot redirect %s port %u: nftables table inet %s, this kdiag-manager's own, "
                             "is owned by another process in the pod's network namespace; delete it (nft delete "
                             "table inet %s) or restart the pod",
                             dir, s->port, t, t);
    } else {
        rpc_call_set_message(call,
                             "cannot redirect %s port %u: installing the nftables rule failed: %s (errno %d); "
                             "the node's kernel needs nf_tables with nat support",
                             dir, s->port, strerror(-rc), -rc);
    }
    return GRPC_STATUS_FAILED_PRECONDITION;
}

static bool same_session(const active *a, const session *s)
{
    return a->session_id_len > 0 && a->session_id_len == s->session_id_len &&
           memcmp(a->session_id, s->session_id, s->session_id_len) == 0;
}

static active *find_active_locked(redirect_mgr *m, uint32_t port, bool outgoing)
{
    active *a;
    list_for_each_entry(a, &m->actives, link)
        if (a->port == port && a->outgoing == outgoing)
            return a;
    return NULL;
}

static bool active_alive_locked(const redirect_mgr *m, uint64_t id)
{
    const active *a;
    list_for_each_entry(a, &m->actives, link)
        if (a->id == id)
            return true;
    return false;
}

/* Asks the stream holding `a` to end and waits until it has (its rules and
 * listener gone). False when it did not let go within TAKEOVER_WAIT_MS. */
static bool take_over_locked(redirect_mgr *m, active *a)
{
    struct timespec dl;
    uint64_t one = 1, id = a->id;

    (void)!write(a->takeover_fd, &one, sizeof one);
    dl = time_deadline_ts(CLOCK_MONOTONIC, TAKEOVER_WAIT_MS);
    while (active_alive_locked(m, id))
        if (pthread_cond_timedwait(&m->released, &m->lock, &dl) == ETIMEDOUT)
            return !active_alive_locked(m, id);
    return true;
}

/* Registers (port, direction), taking it over from a stream of the same
 * session; the status to fail with, or OK. */
static grpc_status_code session_register(redirect_mgr *m, rpc_call *call, session *s)
{
    grpc_status_code st = GRPC_STATUS_OK;
    const char *dir = s->outgoing ? "outgoing" : "incoming";
    active *a;

    pthread_mutex_lock(&m->lock);
    if (port_reserved_locked(m, (uint16_t)s->port)) {
        rpc_call_set_message(call,
                             "port %u is used by kdiag-manager itself (gRPC, tunnel or a redirect "
                             "listener); redirect another port",
                             s->port);
        st = GRPC_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    while ((a = find_active_locked(m, s->port, s->outgoing))) {
        if (!same_session(a, s)) {
            rpc_call_set_message(call,
                                 "%s port %u is already redirected by another stream; end that "
                                 "redirect first",
                                 dir, s->port);
            st = GRPC_STATUS_ALREADY_EXISTS;
            goto out;
        }
        a->heir = s;
        a->heir_report = s->report[1];
        if (!take_over_locked(m, a)) {
            a->heir = NULL;
            rpc_call_set_message(call,
                                 "%s port %u is held by an earlier stream of this session that did not "
                                 "let go within %d s; try again",
                                 dir, s->port, TAKEOVER_WAIT_MS / 1000);
            st = GRPC_STATUS_ALREADY_EXISTS;
            goto out;
        }
    }
    s->reg = calloc(1, sizeof *s->reg);
    if (!s->reg || (s->reg->takeover_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rpc_call_set_message(call, "cannot register the redirect: %s", strerror(s->reg ? errno : ENOMEM));
        free(s->reg);
        s->reg = NULL;
        st = GRPC_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    s->reg->port = (uint16_t)s->port;
    s->reg->outgoing = s->outgoing;
    s->reg->id = ++m->next_id;
    memcpy(s->reg->session_id, s->session_id, s->session_id_len);
    s->reg->session_id_len = s->session_id_len;
    list_add(&m->actives, &s->reg->link);
out:
    pthread_mutex_unlock(&m->lock);
    return st;
}

/* Passes the tunnel's half-close reports on to the client. 0, or the error
 * of rpc_call_send (the stream is gone). */
static int send_reports(redirect_mgr *m, rpc_call *call, session *s)
{
    tunnel_report tr;
    int rc = 0;
    while (rc == 0 && read(s->report[0], &tr, sizeof tr) == (ssize_t)sizeof tr) {
        Kdiag__Solo__Io__RedirectResponse r = KDIAG__SOLO__IO__REDIRECT_RESPONSE__INIT;
        r.port = (uint32_t)redirect_mgr_tunnel_port(m);
        r.tunnel_token.data = tr.token;
        r.tunnel_token.len = sizeof tr.token;
        r.peer_write_closed = true;
        r.peer_write_closed_after = tr.bytes;
        rc = send_response(call, &r);
    }
    return rc;
}

/* Undoes whatever of the session was set up: rules first, so no new
 * connection is sent to a listener that is about to close. */
static void session_end(redirect_mgr *m, session *s)
{
    if (s->rules_in) {
        int rc = nft_redirect_del(m->nft, &s->rules);
        if (rc < 0)
            fprintf(stderr, "kdiag-manager: redirect %u: removing its nftables rules: %s\n", s->port, strerror(-rc));
    }
    for (int i = 0; i < 2; i++)
        if (s->lfd[i] >= 0)
            close(s->lfd[i]);
    if (s->reg) { /* taken over: the new stream reports for its connections */
        pthread_mutex_lock(&m->lock);
        if (s->reg->heir) {
            tunnel_move_owner(m->tun, s, s->reg->heir, s->reg->heir_report);
            tunnel_report tr; /* and the reports this stream did not send */
            while (s->report[0] >= 0 && s->reg->heir_report >= 0 &&
                   read(s->report[0], &tr, sizeof tr) == (ssize_t)sizeof tr)
                (void)!write(s->reg->heir_report, &tr, sizeof tr);
        }
        pthread_mutex_unlock(&m->lock);
    }
    tunnel_drop_owner(m->tun, s);
    for (int i = 0; i < 2; i++)
        if (s->report[i] >= 0)
            close(s->report[i]);
    if (s->reg) {
        pthread_mutex_lock(&m->lock);
        list_del(&s->reg->link);
        pthread_cond_broadcast(&m->released);
        pthread_mutex_unlock(&m->lock);
        close(s->reg->takeover_fd);
        free(s->reg);
    }
    stray_flush(m, true); /* no stray of this stream's listener is left unsaid */
    if (m->o.verbose)
        fprintf(stderr, "kdiag-manager: redirect %u: stream ended, rules and listener removed\n", s->port);
}

/* What the redirect leaves alone: the sources (incoming) and loopback (outgoing). */
static grpc_status_code skips_from_request(rpc_call *call, const Kdiag__Solo__Io__RedirectRequest *req, nft_redirect *rd)
{
    if (req->outgoing ? req->n_skip_sources > 0 : req->include_loopback) {
        rpc_call_set_message(call, "%s applies to %s redirects only",
                             req->outgoing ? "skip_sources" : "include_loopback",
                             req->outgoing ? "incoming" : "outgoing");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (req->n_skip_sources > CONTRACT_REDIRECT_SKIP_SOURCES_MAX) {
        rpc_call_set_message(call, "%zu skip_sources; at most %d", req->n_skip_sources,
                             CONTRACT_REDIRECT_SKIP_SOURCES_MAX);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < req->n_skip_sources; i++) {
        nft_addr *a = &rd->skip_src[i];
        const char *ip = req->skip_sources[i];
        a->family = strchr(ip, ':') ? AF_INET6 : AF_INET;
        if (inet_pton(a->family, ip, a->addr) != 1) {
            rpc_call_set_message(call, "skip_sources: \"%s\" is not an IPv4 or IPv6 address", ip);
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
    }
    rd->nskip_src = (int)req->n_skip_sources;
    rd->skip_loopback = req->outgoing && !req->include_loopback;
    return GRPC_STATUS_OK;
}

/* Reads and checks the RedirectRequest into s; the status to fail with, or OK. */
static grpc_status_code session_from_request(rpc_call *call, session *s)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    grpc_status_code st = GRPC_STATUS_OK;

    int rc = rpc_call_recv(call, &buf, &len);
    if (rc < 0) {
        rpc_call_set_message(call, "Redirect needs a RedirectRequest: %s", strerror(-rc));
        return rc == -ECANCELED ? GRPC_STATUS_CANCELLED : GRPC_STATUS_INVALID_ARGUMENT;
    }
    Kdiag__Solo__Io__RedirectRequest *req = kdiag__solo__io__redirect_request__unpack(NULL, len, buf);
    free(buf);
    if (!req) {
        rpc_call_set_message(call, "cannot decode the RedirectRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    s->port = req->port;
    s->outgoing = req->outgoing;
    if (req->port == 0 || req->port > 65535) {
        rpc_call_set_message(call, "port %u is out of range: give a TCP port from 1 to 65535", req->port);
        st = GRPC_STATUS_INVALID_ARGUMENT;
    } else if (req->session_id.len > SESSION_ID_MAX) {
        rpc_call_set_message(call, "session_id has %zu bytes; at most %d", req->session_id.len, SESSION_ID_MAX);
        st = GRPC_STATUS_INVALID_ARGUMENT;
    } else if ((st = skips_from_request(call, req, &s->rd)) == GRPC_STATUS_OK) {
        s->session_id_len = req->session_id.len;
        if (s->session_id_len)
            memcpy(s->session_id, req->session_id.data, s->session_id_len);
    }
    s->half_close = req->half_close;
    kdiag__solo__io__redirect_request__free_unpacked(req, NULL);
    return st;
}

/* Listener, rules, the ready message; the status to fail with, or OK. */
static grpc_status_code session_start(redirect_mgr *m, rpc_call *call, session *s)
{
    grpc_status_code st;
    int rc;

    if (!m->nft)
        return nft_error_status(m, call, s, m->nft_err);
    /* before the registration: a takeover hands this pipe to the stream it replaces */
    if (s->half_close && pipe2(s->report, O_NONBLOCK | O_CLOEXEC) < 0) {
        rpc_call_set_message(call, "pipe: %s", strerror(errno));
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    if ((st = session_register(m, call, s)) != GRPC_STATUS_OK)
        return st;
    if ((rc = session_listen(m, s)) < 0) {
        rpc_call_set_message(call, "cannot open a listener for port %u: %s", s->port, strerror(-rc));
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    s->rd.outgoing = s->outgoing;
    s->rd.port = (uint16_t)s->port;
    s->rd.to_port = s->lport;
    if ((rc = nft_redirect_add(m->nft, &s->rd, &s->rules)) < 0)
        return nft_error_status(m, call, s, rc);
    s->rules_in = true;

    uint8_t spare[CONTRACT_TUNNEL_TOKEN_LEN];
    Kdiag__Solo__Io__RedirectResponse ready = KDIAG__SOLO__IO__REDIRECT_RESPONSE__INIT;
    ready.port = (uint32_t)redirect_mgr_tunnel_port(m);
    ready.ready = true;
    ready.half_close = s->half_close;
    if (tunnel_spare_token(m->tun, s, spare) == 0) { /* else no spares: connections come on the stream */
        ready.spare_token.data = spare;
        ready.spare_token.len = sizeof spare;
    }
    if (send_response(call, &ready) < 0)
        return GRPC_STATUS_CANCELLED;
    if (m->o.verbose)
        fprintf(stderr, "kdiag-manager: redirect %u (%s): capturing, listener port %u\n", s->port,
                s->outgoing ? "outgoing" : "incoming", s->lport);
    return GRPC_STATUS_OK;
}

/* Accepts and announces redirected connections until the call ends or a
 * stream of the same session takes the port over. */
static grpc_status_code session_serve(redirect_mgr *m, rpc_call *call, session *s)
{
    struct pollfd pf[5] = {
        {.fd = rpc_call_cancel_fd(call), .events = POLLIN},
        {.fd = s->reg->takeover_fd, .events = POLLIN},
        {.fd = s->lfd[0], .events = POLLIN},
        {.fd = s->lfd[1], .events = POLLIN}, /* -1 is ignored by poll */
        {.fd = s->report[0], .events = POLLIN},
    };
    for (;;) {
        if (poll(pf, 5, stray_flush(m, false)) < 0) {
            if (errno == EINTR)
                continue;
            rpc_call_set_message(call, "poll: %s", strerror(errno));
            return GRPC_STATUS_INTERNAL;
        }
        if (pf[0].revents || rpc_call_cancelled(call))
            return GRPC_STATUS_CANCELLED;
        if (pf[1].revents) {
            rpc_call_set_message(call, "taken over by a newer stream of the same session (the client reconnected)");
            return GRPC_STATUS_ABORTED;
        }
        int rc = pf[4].revents ? send_reports(m, call, s) : 0;
        for (int i = 0; i < 2 && rc >= 0; i++)
            if (pf[i + 2].revents)
                while ((rc = accept_one(m, call, s, i)) == 0) {
                }
        if (rc < 0 && rc != -EAGAIN) {
            /* EMFILE and friends: the stream lives on; a short pause keeps poll from spinning. */
            if (rpc_call_cancelled(call))
                return GRPC_STATUS_CANCELLED;
            fprintf(stderr, "kdiag-manager: redirect %u: accept: %s\n", s->port, strerror(-rc));
            poll(NULL, 0, ACCEPT_PAUSE_MS);
        }
    }
}

grpc_status_code redirect_rpc_handle(rpc_call *call, void *ud)
{
    redirect_mgr *m = ud;
    session s = {.lfd = {-1, -1}, .report = {-1, -1}};

    grpc_status_code st = session_from_request(call, &s);
    if (st != GRPC_STATUS_OK)
        return st;
    st = session_start(m, call, &s);
    if (st == GRPC_STATUS_OK)
        st = session_serve(m, call, &s);
    session_end(m, &s);
    return st;
}

grpc_status_code redirect_half_close_handle(rpc_call *call, void *ud)
{
    redirect_mgr *m = ud;
    uint8_t *buf = NULL, out[1];
    size_t len = 0;
    grpc_status_code st = GRPC_STATUS_OK;
    int rc = rpc_call_recv(call, &buf, &len);
    Kdiag__Solo__Io__HalfCloseRequest *req = rc == 0 ? kdiag__solo__io__half_close_request__unpack(NULL, len, buf) : NULL;
    free(buf);
    if (!req || req->tunnel_token.len != CONTRACT_TUNNEL_TOKEN_LEN) {
        rpc_call_set_message(call, "HalfClose needs a HalfCloseRequest with a %d-byte tunnel_token",
                             CONTRACT_TUNNEL_TOKEN_LEN);
        st = GRPC_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    rc = tunnel_half_close(m->tun, req->tunnel_token.data, req->bytes);
    if (rc < 0) {
        rpc_call_set_message(call, "out of memory");
        st = GRPC_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    Kdiag__Solo__Io__HalfCloseResponse resp = KDIAG__SOLO__IO__HALF_CLOSE_RESPONSE__INIT;
    len = kdiag__solo__io__half_close_response__pack(&resp, out);
    rpc_call_send(call, out, len);
out:
    if (req)
        kdiag__solo__io__half_close_request__free_unpacked(req, NULL);
    return st;
}

/* ---- manager ---- */

int redirect_mgr_new(redirect_mgr **out, const redirect_opts *o)
{
    struct rlimit rl;
    redirect_mgr *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->o = *o;
    list_init(&m->actives);
    pthread_mutex_init(&m->lock, NULL);
    time_cond_init_monotonic(&m->released);

    /* Each redirected connection holds two sockets and two pipes. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    tunnel_opts to = {.pair_timeout_ms = m->o.pair_timeout_ms, .verbose = m->o.verbose};
    int rc = tunnel_new(&m->tun, &to);
    if (rc < 0) {
        pthread_cond_destroy(&m->released);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return rc;
    }
    /* Without nftables the manager still serves everything else; Redirect
     * then fails with the reason. */
    nft_table_name((uint16_t)tunnel_port(m->tun), m->table);
    m->nft_err = nft_conn_open(&m->nft, m->table);
    if (m->nft) {
        rc = nft_clear_leftover(m->nft);
        if (rc < 0 && (rc != -EPERM || has_cap_net_admin()))
            fprintf(stderr, "kdiag-manager: cannot delete a leftover nftables table inet %s: %s\n", m->table,
                    strerror(-rc));
    }
    *out = m;
    return 0;
}

int redirect_mgr_tunnel_port(const redirect_mgr *m)
{
    return tunnel_port(m->tun);
}

void redirect_mgr_reserve_port(redirect_mgr *m, uint16_t port)
{
    pthread_mutex_lock(&m->lock);
    if (m->nreserved < MAX_RESERVED)
        m->reserved[m->nreserved++] = port;
    pthread_mutex_unlock(&m->lock);
}

void redirect_mgr_free(redirect_mgr *m)
{
    if (!m)
        return;
    stray_flush(m, true);
    tunnel_free(m->tun);
    nft_conn_close(m->nft);
    pthread_cond_destroy(&m->released);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
