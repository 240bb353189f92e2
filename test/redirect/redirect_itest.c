/* Redirect end to end: real namespaces, real nftables, real traffic, the real
 * kdiag-manager. This process plays the CLI with the CLI's own code
 * (api/redirect_client + cli/bridge).
 *   redirect_itest <kdiag-manager> <case>
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/addr-util.h"
#include "basic/time-util.h"
#include "netlab.h"
#include "nft.h"
#include "splice_loop.h"

#define PORT 80
#define BULK (64ull << 20)

static const char *bin;
static char table[NFT_TABLE_NAME_MAX]; /* the manager's: inet kdiag-<tunnel port> */

static bool has_table(const char *name)
{
    char *out = netlab_pod_sh("nft list tables 2>&1");
    char want[64];
    snprintf(want, sizeof want, "table inet %s\n", name);
    bool has = strstr(out, want) != NULL;
    free(out);
    return has;
}

static bool has_kdiag_table(void)
{
    return has_table(table);
}

/* `nft list table inet <name>` (or one of its chains: "inet NAME CHAIN") as the kernel reports it. */
static char *nft_list(const char *what, const char *name)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "nft list %s inet %s 2>/dev/null", what, name);
    return netlab_pod_sh(cmd);
}

static bool has_rule_for_80(void)
{
    char *out = nft_list("table", table);
    bool has = strstr(out, "dport 80 ") != NULL;
    free(out);
    return has;
}

/* ms until no kdiag rule for port 80 is left, or -1 after limit_ms. */
static int ms_until_rules_gone(int limit_ms)
{
    int64_t t0 = time_now_us();
    while (time_now_us() - t0 < (int64_t)limit_ms * 1000) {
        if (!has_rule_for_80())
            return (int)((time_now_us() - t0) / 1000);
        usleep(10000);
    }
    return -1;
}

/* ms until the kdiag table is gone, or -1 after limit_ms. */
static int ms_until_table_gone(int limit_ms)
{
    int64_t t0 = time_now_us();
    while (time_now_us() - t0 < (int64_t)limit_ms * 1000) {
        if (!has_kdiag_table())
            return (int)((time_now_us() - t0) / 1000);
        usleep(10000);
    }
    return -1;
}

/* Reads until EOF or error within timeout_ms: bytes read, -errno, or -ETIMEDOUT. */
static ssize_t read_to_end(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    int64_t dl = time_now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        int left = (int)((dl - time_now_us()) / 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) == 0)
            return -ETIMEDOUT;
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r < 0)
            return -errno;
        if (r == 0)
            return (ssize_t)n;
        n += (size_t)r;
        if (n == cap)
            return (ssize_t)n;
    }
}

static void send_all(int fd, const void *buf, size_t len)
{
    CHECK(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len, "send: %s", strerror(errno));
}

static void local_addr_of(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname");
    addr_format((struct sockaddr *)&ss, out, n);
}

/* ---- bulk: 64 MB each way through peer -> nft -> manager -> tunnel -> local ---- */

typedef struct {
    int lfd;
    int64_t got;
    int sent;
} bulk_server;

static void *bulk_server_send(void *arg)
{
    int *fd = arg;
    netlab_send_stream(*fd, 2, BULK);
    shutdown(*fd, SHUT_WR);
    return NULL;
}

static void *bulk_server_main(void *arg)
{
    bulk_server *b = arg;
    int fd = accept(b->lfd, NULL, NULL);
    CHECK(fd >= 0, "accept");
    pthread_t th;
    pthread_create(&th, NULL, bulk_server_send, &fd);
    b->got = netlab_recv_stream(fd, 1);
    pthread_join(th, NULL);
    close(fd);
    return NULL;
}

static void *peer_send(void *arg)
{
    int *fd = arg;
    CHECK(netlab_send_stream(*fd, 1, BULK) == 0, "peer send");
    shutdown(*fd, SHUT_WR);
    return NULL;
}

static void case_incoming(netlab_mgr *m, bool v6)
{
    bulk_server b = {0};
    int lport;
    b.lfd = netlab_listen(NS_HOME, "127.0.0.1", &lport);
    pthread_t srv;
    pthread_create(&srv, NULL, bulk_server_main, &b);

    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    CHECK((int)c.tunnel_port == m->tunnel_port, "ready names tunnel port %u, manager printed %d", c.tunnel_port,
          m->tunnel_port);

    int64_t t0 = time_now_us();
    int fd = netlab_connect(NS_PEER, v6 ? POD_IP6 : POD_IP4, PORT);
    CHECK(fd >= 0, "peer connect: %s", strerror(-fd));
    char me[ADDR_STR_MAX];
    local_addr_of(fd, me, sizeof me);
    pthread_t snd;
    pthread_create(&snd, NULL, peer_send, &fd);
    int64_t got = netlab_recv_stream(fd, 2);
    pthread_join(snd, NULL);
    pthread_join(srv, NULL);
    double secs = (double)(time_now_us() - t0) / 1e6;
    CHECK(got == (int64_t)BULK, "peer received %lld of %llu bytes intact", (long long)got, BULK);
    CHECK(b.got == (int64_t)BULK, "local server received %lld of %llu bytes intact", (long long)b.got, BULK);
    close(fd);
    close(b.lfd);

    const char *want_orig = v6 ? "[" POD_IP6 "]:80" : POD_IP4 ":80";
    CHECK(c.nconns == 1, "%d connection messages", c.nconns);
    CHECK(strcmp(c.last_orig, want_orig) == 0, "original_dst %s, want %s", c.last_orig, want_orig);
    CHECK(strcmp(c.last_peer, me) == 0, "peer %s, want %s", c.last_peer, me);
    CHECK(netlab_cli_wait_idle(&c, 5000), "bridge still running");
    netlab_cli_free(&c);
    printf("incoming %s: 2 x 64 MB intact in %.2f s, original_dst %s, peer %s\n", v6 ? "IPv6" : "IPv4", secs,
           c.last_orig, c.last_peer);
}

/* ---- outgoing ---- */

static void case_outgoing(netlab_mgr *m)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    /* Nothing listens on the peer: without the rule this is refused. */
    int fd = netlab_connect(NS_POD, PEER_IP4, PORT);
    CHECK(fd == -ECONNREFUSED, "before the redirect: connect gave %d, want ECONNREFUSED", fd);

    netlab_cli c;
    netlab_cli_start(&c, m, PORT, true, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    const char *ips[2] = {PEER_IP4, PEER_IP6};
    const char *want[2] = {PEER_IP4 ":80", "[" PEER_IP6 "]:80"};
    for (int i = 0; i < 2; i++) {
        char msg[64], back[64];
        fd = netlab_connect(NS_POD, ips[i], PORT);
        CHECK(fd >= 0, "pod connect to %s:80: %s", ips[i], strerror(-fd));
        int n = snprintf(msg, sizeof msg, "outgoing via %s", ips[i]);
        send_all(fd, msg, (size_t)n);
        shutdown(fd, SHUT_WR);
        ssize_t r = read_to_end(fd, back, sizeof back, 5000);
        CHECK(r == n && memcmp(back, msg, (size_t)n) == 0, "echo through the redirect: got %zd bytes", r);
        close(fd);
        CHECK(strcmp(c.last_orig, want[i]) == 0, "original_dst %s, want %s", c.last_orig, want[i]);
    }
    /* Incoming traffic to port 80 is not captured by an outgoing redirect. */
    char chain[64];
    snprintf(chain, sizeof chain, "%s prerouting", table);
    char *pre = nft_list("chain", chain);
    CHECK(!strstr(pre, "dport 80"), "outgoing rule in prerouting: %s", pre);
    free(pre);
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("outgoing: IPv4 and IPv6 reach the local server, original_dst right\n");
}

/* ---- 1,000 concurrent connections ---- */

#define NCONC 1000
#define PAYLOAD 512

static void case_concurrent(netlab_mgr *m)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);

    static int fds[NCONC];
    static char payload[NCONC][PAYLOAD], reply[NCONC][PAYLOAD];
    static size_t got[NCONC];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    inet_pton(AF_INET, POD_IP4, &sa.sin_addr);
    int64_t t0 = time_now_us();
    for (int i = 0; i < NCONC; i++) {
        CHECK(getrandom(payload[i], PAYLOAD, 0) == PAYLOAD, "getrandom");
        snprintf(payload[i], 32, "connection %d:", i);
        fds[i] = netlab_socket(NS_PEER, AF_INET);
        CHECK(fds[i] >= 0, "socket %d: %s", i, strerror(-fds[i]));
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        int r = connect(fds[i], (struct sockaddr *)&sa, sizeof sa);
        CHECK(r == 0 || errno == EINPROGRESS, "connect %d: %s", i, strerror(errno));
    }
    /* All connected and open at once before any payload goes. */
    static struct pollfd p[NCONC];
    for (int i = 0; i < NCONC; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
    int pending = NCONC;
    while (pending > 0) {
        CHECK(poll(p, NCONC, 10000) > 0, "%d connections not established within 10 s", pending);
        for (int i = 0; i < NCONC; i++)
            if (p[i].fd >= 0 && p[i].revents) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &el);
                CHECK(err == 0, "connection %d: %s", i, strerror(err));
                send_all(fds[i], payload[i], PAYLOAD);
                shutdown(fds[i], SHUT_WR);
                p[i].fd = -1;
                pending--;
            }
    }
    for (int i = 0; i < NCONC; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    pending = NCONC;
    while (pending > 0) {
        CHECK(poll(p, NCONC, 20000) > 0, "%d replies incomplete after 20 s idle", pending);
        for (int i = 0; i < NCONC; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            ssize_t r = recv(fds[i], reply[i] + got[i], PAYLOAD - got[i], 0);
            if (r < 0 && errno == EAGAIN)
                continue;
            CHECK(r >= 0, "connection %d: %s", i, strerror(errno));
            got[i] += (size_t)r;
            if (r == 0 || got[i] == PAYLOAD) {
                CHECK(got[i] == PAYLOAD && memcmp(reply[i], payload[i], PAYLOAD) == 0,
                      "connection %d: reply does not match its request (%zu bytes)", i, got[i]);
                close(fds[i]);
                p[i].fd = -1;
                pending--;
            }
        }
    }
    double secs = (double)(time_now_us() - t0) / 1e6;
    CHECK(c.nconns == NCONC, "%d connection messages for %d connections", c.nconns, NCONC);
    CHECK(netlab_cli_wait_idle(&c, 10000), "bridges still running");
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("concurrent: %d connections open at once, every reply matched its request, %.2f s\n", NCONC, secs);
}

/* ---- local target refusing ---- */

static void case_refused(netlab_mgr *m)
{
    int closed_port;
    int l = netlab_listen(NS_HOME, "127.0.0.1", &closed_port);
    close(l); /* nothing listens there now */
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, closed_port);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    int64_t t0 = time_now_us();
    int fd = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(fd >= 0, "peer connect: %s", strerror(-fd));
    char buf[16];
    ssize_t r = read_to_end(fd, buf, sizeof buf, 3000);
    int64_t ms = (time_now_us() - t0) / 1000;
    CHECK(r == -ECONNRESET, "peer got %zd (%s), want a reset", r, r < 0 ? strerror((int)-r) : "data/EOF");
    CHECK(ms < 1000, "reset took %lld ms", (long long)ms);
    close(fd);
    netlab_cli_free(&c);
    printf("refused: the peer saw a reset after %lld ms\n", (long long)ms);
}

/* ---- kill -9 of the manager ---- */

static void case_kill9(netlab_mgr *m)
{
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, 1);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    netlab_cli c2;
    netlab_cli_start(&c2, m, PORT, true, 1);
    CHECK(netlab_cli_wait_ready(&c2, 5000), "not ready: %s", c2.st.message);
    char *rules = nft_list("table", table);
    if (getenv("NETLAB_VERBOSE"))
        fputs(rules, stderr);
    CHECK(strstr(rules, "tcp dport 80 redirect to") && strstr(rules, "dnat ip to 127.0.0.1"), "rules: %s", rules);
    free(rules);
    kill(m->pid, SIGKILL);
    int ms = ms_until_table_gone(1000);
    CHECK(ms >= 0, "table %s still there 1 s after kill -9", table);
    netlab_mgr_kill(m);
    netlab_cli_free(&c);
    netlab_cli_free(&c2);
    printf("kill9: table inet %s gone %d ms after kill -9\n", table, ms);
}

/* ---- stream cancel: rules go, paired connections stay ---- */

/* Waits (5 s at most) until the manager announced a connection on c's stream. */
static void wait_announced(netlab_cli *c)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&c->mu);
        int n = c->nconns;
        pthread_mutex_unlock(&c->mu);
        if (n)
            break;
        usleep(10000);
    }
}

static void case_cancel(netlab_mgr *m)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    CHECK(has_rule_for_80(), "no kdiag rule while redirecting");

    int fd = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(fd >= 0, "peer connect: %s", strerror(-fd));
    char buf[16];
    send_all(fd, "before", 6);
    CHECK(recv(fd, buf, sizeof buf, 0) == 6 && memcmp(buf, "before", 6) == 0, "echo before cancel");

    int64_t t0 = time_now_us();
    netlab_cli_stop(&c);
    int ms = ms_until_rules_gone(1000);
    CHECK(ms >= 0, "kdiag rule still there 1 s after the stream was cancelled");
    ms = (int)((time_now_us() - t0) / 1000);
    int fd2 = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(fd2 == -ECONNREFUSED, "new connection after cancel: %d, want ECONNREFUSED", fd2);

    send_all(fd, "after", 5);
    shutdown(fd, SHUT_WR);
    ssize_t r = read_to_end(fd, buf, sizeof buf, 5000);
    CHECK(r == 5 && memcmp(buf, "after", 5) == 0, "paired connection after cancel: %zd", r);
    close(fd);
    CHECK(netlab_cli_wait_idle(&c, 5000), "bridge still running");
    netlab_cli_free(&c);
    netlab_echo_stop(e);

    /* A redirected connection still waiting for its tunnel connection is reset
     * as soon as its stream ends: no client will come for it any more. */
    netlab_cli ign;
    netlab_cli_start(&ign, m, PORT, false, NETLAB_IGNORE);
    CHECK(netlab_cli_wait_ready(&ign, 5000), "not ready: %s", ign.st.message);
    int waiting = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(waiting >= 0, "peer connect: %s", strerror(-waiting));
    wait_announced(&ign);
    int64_t t1 = time_now_us();
    netlab_cli_stop(&ign);
    r = read_to_end(waiting, buf, sizeof buf, 3000);
    int64_t ms_waiting = (time_now_us() - t1) / 1000;
    CHECK(r == -ECONNRESET, "waiting peer got %zd after its stream ended, want a reset", r);
    CHECK(ms_waiting < 1000, "waiting peer reset %lld ms after its stream ended", (long long)ms_waiting);
    close(waiting);
    netlab_cli_free(&ign);
    printf("cancel: rules gone %d ms after cancel; the paired connection kept running; a waiting peer "
           "was reset %lld ms after its stream ended\n",
           ms, (long long)ms_waiting);
}

/* ---- half-close ---- */

/* A HalfClose that overtakes its connection's tunnel hello is kept for the
 * pairing: the peer gets the client's bytes, then EOF. */
static void case_half_close_early(netlab_mgr *m)
{
    netlab_cli ign;
    netlab_cli_start(&ign, m, PORT, false, NETLAB_IGNORE);
    CHECK(netlab_cli_wait_ready(&ign, 5000), "not ready: %s", ign.st.message);
    int peer = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(peer >= 0, "peer connect: %s", strerror(-peer));
    uint8_t hello[CONTRACT_TUNNEL_HELLO_LEN + 3];
    wait_announced(&ign);
    redirect_client_hello(hello, ign.last_token, true);
    rpc_status st = {0};
    CHECK(redirect_client_half_close(m->client, hello, 3, 5000, &st) == 0, "HalfClose: %s", st.message);
    usleep(100000); /* the manager has taken it in */
    memcpy(hello + CONTRACT_TUNNEL_HELLO_LEN, "abc", 3);
    int tun = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    CHECK(tun >= 0, "tunnel connect");
    send_all(tun, hello, sizeof hello);
    char buf[16];
    ssize_t r = read_to_end(peer, buf, sizeof buf, 3000);
    CHECK(r == 3 && memcmp(buf, "abc", 3) == 0, "peer got %zd bytes, want abc then EOF", r);
    send_all(peer, "xy", 2); /* the other direction still runs */
    shutdown(peer, SHUT_WR);
    r = read_to_end(tun, buf, sizeof buf, 3000);
    CHECK(r == 2 && memcmp(buf, "xy", 2) == 0, "tunnel got %zd bytes, want xy then EOF", r);
    close(tun);
    close(peer);
    netlab_cli_stop(&ign);
    netlab_cli_free(&ign);
    printf("half_close_early: a HalfClose ahead of its hello shut the peer after its 3 bytes\n");
}

/* ---- foreign tunnel connections ---- */

static int64_t ms_until_closed(int fd, int limit_ms)
{
    int64_t t0 = time_now_us();
    char buf[64];
    ssize_t r = read_to_end(fd, buf, sizeof buf, limit_ms);
    CHECK(r == 0 || r == -ECONNRESET, "tunnel connection not closed (%zd)", r);
    return (time_now_us() - t0) / 1000;
}

static void case_foreign(netlab_mgr *m)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    /* A redirected connection whose tunnel connection never comes is reset
     * after the pairing timeout (waited for together with the silent one). */
    netlab_cli ign;
    netlab_cli_start(&ign, m, PORT + 1, false, NETLAB_IGNORE);
    CHECK(netlab_cli_wait_ready(&ign, 5000), "not ready: %s", ign.st.message);
    int orphan = netlab_connect(NS_PEER, POD_IP4, PORT + 1);
    CHECK(orphan >= 0, "peer connect: %s", strerror(-orphan));
    int64_t t_silent = time_now_us();
    int silent = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    CHECK(silent >= 0, "connect tunnel");

    int shortf = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    send_all(shortf, "short", 5);
    shutdown(shortf, SHUT_WR);
    int64_t ms_short = ms_until_closed(shortf, 1000);

    uint8_t wrong[17];
    CHECK(getrandom(wrong, 16, 0) == 16, "getrandom");
    wrong[16] = 0;
    int wrongf = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    send_all(wrongf, wrong, sizeof wrong);
    int64_t ms_wrong = ms_until_closed(wrongf, 1000);

    /* A real connection pairs while the foreign ones are around. */
    int fd = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(fd >= 0, "peer connect");
    char buf[16];
    send_all(fd, "real", 4);
    shutdown(fd, SHUT_WR);
    CHECK(read_to_end(fd, buf, sizeof buf, 5000) == 4 && memcmp(buf, "real", 4) == 0, "real connection");
    close(fd);
    CHECK(netlab_cli_wait_idle(&c, 5000), "bridge still running");

    /* Its token, used once, does not open anything again. */
    uint8_t reused[17];
    memcpy(reused, c.last_token, 16);
    reused[16] = 0;
    int reusedf = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    send_all(reusedf, reused, sizeof reused);
    int64_t ms_reused = ms_until_closed(reusedf, 1000);

    ms_until_closed(silent, 12000);
    int64_t ms_silent = (time_now_us() - t_silent) / 1000;
    CHECK(ms_silent >= 9000, "silent tunnel connection closed after %lld ms, before the 10 s timeout",
          (long long)ms_silent);
    ssize_t r = read_to_end(orphan, buf, sizeof buf, 3000);
    int64_t ms_orphan = (time_now_us() - t_silent) / 1000;
    CHECK(r == -ECONNRESET && ms_orphan >= 9000, "unpaired peer: %zd after %lld ms, want a reset after ~10 s", r,
          (long long)ms_orphan);
    CHECK(ign.nconns == 1, "%d messages for the unpaired peer", ign.nconns);
    close(orphan);
    netlab_cli_free(&ign);
    close(silent);
    close(shortf);
    close(wrongf);
    close(reusedf);
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("foreign: short token closed in %lld ms, wrong token in %lld ms, reused token in %lld ms, "
           "silent connection after %lld ms; the real connection paired; an unpaired peer was reset after %lld ms\n",
           (long long)ms_short, (long long)ms_wrong, (long long)ms_reused, (long long)ms_silent, (long long)ms_orphan);
}

/* ---- 10,000 connections in sequence: no fd leak ---- */

static int echoed_conn(void);

/* The manager's fd count once it held still for 100 ms. */
static int stable_fd_count(const netlab_mgr *m)
{
    int last = -1, same = 0;
    for (int i = 0; i < 200 && same < 5; i++) {
        int n = netlab_mgr_fd_count(m);
        same = n == last ? same + 1 : 0;
        last = n;
        usleep(20000);
    }
    return last;
}

static void case_seq(netlab_mgr *m, int n)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    /* counted with the spare tunnel connection parked, as it is between connections */
    close(echoed_conn());
    int start = stable_fd_count(m);
    int64_t t0 = time_now_us();
    for (int i = 1; i < n; i++) {
        char msg[32], back[32];
        int fd = netlab_connect(NS_PEER, POD_IP4, PORT);
        CHECK(fd >= 0, "connection %d: %s", i, strerror(-fd));
        int len = snprintf(msg, sizeof msg, "seq %d", i);
        send_all(fd, msg, (size_t)len);
        shutdown(fd, SHUT_WR);
        ssize_t r = read_to_end(fd, back, sizeof back, 5000);
        CHECK(r == len && memcmp(back, msg, (size_t)len) == 0, "connection %d: echo %zd", i, r);
        close(fd);
    }
    double secs = (double)(time_now_us() - t0) / 1e6;
    CHECK(netlab_cli_wait_idle(&c, 5000), "bridges still running");
    int now = 0;
    for (int i = 0; i < 100; i++) {
        if ((now = netlab_mgr_fd_count(m)) == start)
            break;
        usleep(20000);
    }
    CHECK(now == start, "manager holds %d fds after %d connections, %d before", now, n, start);
    CHECK(c.nconns == n, "%d connection messages for %d connections", c.nconns, n);
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("seq: %d connections in %.1f s (%.0f/s); manager fds %d before, %d after\n", n, secs, n / secs, start, now);
}

/* ---- several managers in one pod ---- */

/* What a manager from before per-manager table names left in a pod: table
 * `inet kdiag` with the owner flag, a redirect rule in it, held by a live
 * process. Made by the same code (nft.c) those managers ran. */
static pid_t hold_old_table(uint16_t port)
{
    int p[2];
    char c = 0;
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        nft_conn *nc;
        nft_rules r;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        nft_redirect rd = {.port = port, .to_port = 9};
        if (nft_conn_open(&nc, "kdiag") == 0 && nft_redirect_add(nc, &rd, &r) == 0)
            c = 'y';
        if (write(p[1], &c, 1) != 1 || c != 'y')
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    CHECK(read(p[0], &c, 1) == 1 && c == 'y', "the old-style table holder failed");
    close(p[0]);
    return pid;
}

/* One echo through incoming port `port` of the pod; true when it came back. */
static bool echo_through(uint16_t port, const char *msg)
{
    char back[64];
    int fd = netlab_connect(NS_PEER, POD_IP4, port);
    if (fd < 0)
        return false;
    send_all(fd, msg, strlen(msg));
    shutdown(fd, SHUT_WR);
    ssize_t r = read_to_end(fd, back, sizeof back, 5000);
    close(fd);
    return r == (ssize_t)strlen(msg) && memcmp(back, msg, (size_t)r) == 0;
}

/* An old pod: an earlier manager owns `inet kdiag`. This manager redirects
 * in its own table and leaves that one alone. */
static void case_old_owner(netlab_mgr *m)
{
    pid_t old = hold_old_table(PORT + 1);
    CHECK(has_table("kdiag"), "the old-style table is not there");
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "redirect beside an old manager's table: %s", c.st.message);
    CHECK(echo_through(PORT, "beside the old table"), "no echo through the redirect");
    char *mine = nft_list("table", table), *theirs = nft_list("table", "kdiag");
    CHECK(strstr(mine, "dport 80 redirect"), "our rule is not in %s: %s", table, mine);
    CHECK(strstr(theirs, "dport 81 redirect") && !strstr(theirs, "dport 80 "), "the old table changed: %s", theirs);
    free(mine);
    free(theirs);
    netlab_cli_free(&c);
    CHECK(ms_until_rules_gone(1000) >= 0, "our rule stayed after the stream ended");
    CHECK(has_table("kdiag"), "the old table went with our stream");
    kill(old, SIGKILL);
    waitpid(old, NULL, 0);
    netlab_echo_stop(e);
    printf("old owner: redirected in table inet %s while another process owns inet kdiag\n", table);
}

/* A new pod with two managers (two debug containers): each redirects in its
 * own table, and one going away leaves the other's redirect working. */
static void case_two_managers(netlab_mgr *m)
{
    netlab_mgr m2;
    char table2[NFT_TABLE_NAME_MAX];
    netlab_mgr_start(&m2, bin, false);
    nft_table_name((uint16_t)m2.tunnel_port, table2);
    CHECK(strcmp(table, table2) != 0, "both managers use table %s", table);
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli a, b;
    netlab_cli_start(&a, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&a, 5000), "first manager: %s", a.st.message);
    netlab_cli_start(&b, &m2, PORT + 1, false, lport);
    CHECK(netlab_cli_wait_ready(&b, 5000), "second manager: %s", b.st.message);
    CHECK(echo_through(PORT, "via the first") && echo_through(PORT + 1, "via the second"), "echo");
    CHECK(has_table(table) && has_table(table2), "one table per manager");
    netlab_cli_free(&b);
    rpc_client_free(m2.client);
    netlab_mgr_kill(&m2);
    int ms = -1;
    for (int i = 0; i < 100 && ms < 0; i++, usleep(10000))
        ms = has_table(table2) ? -1 : i * 10;
    CHECK(ms >= 0, "the second manager's table outlived it");
    CHECK(echo_through(PORT, "first still works"), "the first manager's redirect broke");
    netlab_cli_free(&a);
    netlab_echo_stop(e);
    printf("two managers: tables inet %s and inet %s side by side; the second gone after ~%d ms, the first "
           "still redirecting\n",
           table, table2, ms);
}

/* ---- the CLI's bridge: its connection limit and its drain ---- */

/* Peer connection through the redirect whose one-byte echo came back; fd. */
static int echoed_conn(void)
{
    char ch = 'e';
    int fd = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(fd >= 0, "peer connect: %s", strerror(-fd));
    send_all(fd, &ch, 1);
    CHECK(read_to_end(fd, &ch, 1, 5000) == 1 && ch == 'e', "echo");
    return fd;
}

static int count_dir(const char *path)
{
    int n = 0;
    DIR *d = opendir(path);
    CHECK(d, "opendir %s", path);
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Threads of this process named like the splice loop's. */
static int loop_threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    CHECK(d, "opendir task");
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], comm[64] = "";
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f) &&
            strncmp(comm, SPLICE_LOOP_THREAD_NAME, strlen(SPLICE_LOOP_THREAD_NAME)) == 0)
            n++;
        if (f)
            fclose(f);
    }
    closedir(d);
    return n;
}

static int refusals(netlab_cli *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->refused_at_limit;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* A redirect of PORT bridged to the local port, ready. */
static void cli_ready(netlab_cli *c, netlab_mgr *m, int lport, int max_conns)
{
    netlab_cli_start_capped(c, m, PORT, false, lport, max_conns);
    CHECK(netlab_cli_wait_ready(c, 5000), "not ready: %s", c->st.message);
}

#define LIMIT 3

static void case_bridge_limit(netlab_mgr *m)
{
    int lport, fds[LIMIT];
    char buf[16];
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    cli_ready(&c, m, lport, LIMIT);
    for (int i = 0; i < LIMIT; i++)
        fds[i] = echoed_conn();
    /* one more than the limit: refused at once, the peer sees a reset */
    int64_t t0 = time_now_us();
    int over = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(over >= 0, "peer connect: %s", strerror(-over));
    ssize_t r = read_to_end(over, buf, sizeof buf, 3000);
    int64_t ms = (time_now_us() - t0) / 1000;
    CHECK(r == -ECONNRESET && ms < 1000, "connection over the limit: %zd after %lld ms, want a reset", r,
          (long long)ms);
    for (int i = 0; i < 500 && refusals(&c) == 0; i++) /* the bridge reports after closing the tunnel */
        usleep(10000);
    CHECK(refusals(&c) == 1, "%d refusals at the limit", refusals(&c));
    close(over);
    /* the ones within the limit still work, and a freed place is used again */
    send_all(fds[0], "x", 1);
    CHECK(read_to_end(fds[0], buf, 1, 5000) == 1 && buf[0] == 'x', "echo within the limit");
    close(fds[0]);
    for (int i = 0; i < 500 && bridge_active(c.br) >= LIMIT; i++)
        usleep(10000);
    fds[0] = echoed_conn();
    for (int i = 0; i < LIMIT; i++)
        close(fds[i]);
    CHECK(netlab_cli_wait_idle(&c, 5000), "bridge still running");
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("bridge_limit: connection %d refused with a reset after %lld ms, the %d within the limit served\n",
           LIMIT + 1, (long long)ms, LIMIT);
}

#define NDRAIN 50

static void case_bridge_drain(netlab_mgr *m)
{
    int lport, fds[NDRAIN];
    char buf[16];
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    /* a first stream connects the gRPC channel: the fds counted below are the bridge's */
    cli_ready(&c, m, lport, 0);
    netlab_cli_free(&c);
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left");
    int fd0 = count_dir("/proc/self/fd");
    CHECK(loop_threads() == 0, "a splice loop thread before the bridge");

    cli_ready(&c, m, lport, 0);
    CHECK(loop_threads() == 1, "%d splice loop threads with one bridge", loop_threads());
    for (int i = 0; i < NDRAIN; i++)
        fds[i] = echoed_conn();
    int fd_open = count_dir("/proc/self/fd");
    netlab_cli_free(&c); /* what Ctrl-C does: the bridge ends with connections open */
    for (int i = 0; i < NDRAIN; i++) {
        ssize_t r = read_to_end(fds[i], buf, sizeof buf, 3000);
        CHECK(r == 0 || r == -ECONNRESET, "connection %d after the bridge ended: %zd", i, r);
        close(fds[i]);
    }
    int fd1 = count_dir("/proc/self/fd");
    for (int i = 0; i < 200 && fd1 != fd0; i++) { /* the echo server closes its ends when it sees them go */
        usleep(10000);
        fd1 = count_dir("/proc/self/fd");
    }
    CHECK(loop_threads() == 0, "%d splice loop threads after bridge_free", loop_threads());
    CHECK(fd1 == fd0, "%d fds before the bridge, %d with %d connections, %d after", fd0, fd_open, NDRAIN, fd1);
    netlab_echo_stop(e);
    printf("bridge_drain: %d open connections ended by bridge_free; fds %d -> %d -> %d; no loop thread left\n",
           NDRAIN, fd0, fd_open, fd1);
}

/* ---- a flood of bad tunnel connections: the log stays short and unforged ---- */

#define NFLOOD 3000
static const char forged[] = "\nListening on 127.0.0.1:1\nToken: forged\nTunnel on 127.0.0.1:2\n";
static char flood_log[64];

/* One bad tunnel connection of three kinds: forged lines as the token
 * (unknown), 5 bytes of them (short), nothing at all (short). */
static void bad_tunnel_conn(netlab_mgr *m, int i)
{
    int fd = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    CHECK(fd >= 0, "tunnel connect %d: %s", i, strerror(-fd));
    if (i % 3 == 0)
        send_all(fd, forged, sizeof forged - 1);
    else if (i % 3 == 1)
        send_all(fd, forged, 5);
    close(fd);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    CHECK(f, "open %s", path);
    char *buf = calloc(1, 1 << 20);
    CHECK(buf, "oom");
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

static void case_tunnel_flood(netlab_mgr *m)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    int64_t t0 = time_now_us();
    for (int i = 0; i < NFLOOD; i++)
        bad_tunnel_conn(m, i);
    double secs = (double)(time_now_us() - t0) / 1e6;
    CHECK(echo_through(PORT, "real traffic during the flood"), "the redirect broke under the flood");
    /* the summary comes when its 10 s window closes */
    size_t len = 0;
    char *log = NULL;
    for (int i = 0; i < 150; i++, usleep(100000)) {
        free(log);
        log = read_file(flood_log, &len);
        if (strstr(log, "bad connections"))
            break;
    }
    int lines = 0;
    for (char *q = log; (q = strchr(q, '\n')); q++)
        lines++;
    CHECK(strstr(log, "tunnel: 3000 bad connections in the last 10 s: 2000 closed before token and status, 1000 with "
                      "an unknown or used token"),
          "no summary of the %d bad connections in the manager's log:\n%s", NFLOOD, log);
    CHECK(!strstr(log, "Listening on") && !strstr(log, "Token:") && !strstr(log, "Tunnel on"),
          "forged lines in the manager's log:\n%s", log);
    CHECK(lines <= 3 && len < 1024, "manager's log: %d lines, %zu bytes after %d bad connections:\n%s", lines, len,
          NFLOOD, log);
    free(log);
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("tunnel_flood: %d bad tunnel connections in %.1f s (a third with forged start-up lines): %d log line(s), "
           "%zu bytes, nothing forged\n",
           NFLOOD, secs, lines, len);
}

/* ---- errors ---- */

static grpc_status_code end_status(netlab_mgr *m, uint32_t port, bool outgoing, char *msg, size_t n)
{
    netlab_cli c;
    netlab_cli_start(&c, m, port, outgoing, 1);
    CHECK(!netlab_cli_wait_ready(&c, 5000), "port %u: ready, want an error", port);
    netlab_cli_free(&c);
    snprintf(msg, n, "%s", c.st.message);
    CHECK(c.run_rc == -EPROTO, "run_rc %d", c.run_rc);
    return c.st.code;
}

/* ---- what a redirect leaves alone ---- */

/* "app": a server in the pod that answers "app" to every connection, one at a time. */
typedef struct {
    int fd;
    pthread_t th;
} app_server;

static void *app_main(void *arg)
{
    app_server *a = arg;
    for (;;) {
        int c = accept(a->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char drain[64];
        send_all(c, "app", 3);
        shutdown(c, SHUT_WR);
        while (recv(c, drain, sizeof drain, 0) > 0) { /* until the client's FIN: no reset */
        }
        close(c);
    }
}

static void app_start(app_server *a, uint16_t port)
{
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT};
    int one = 1, zero = 0;
    a->fd = netlab_socket(NS_POD, AF_INET6);
    setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(a->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    CHECK(bind(a->fd, (struct sockaddr *)&s6, sizeof s6) == 0 && listen(a->fd, 64) == 0, "app: %s", strerror(errno));
    CHECK(pthread_create(&a->th, NULL, app_main, a) == 0, "pthread_create");
}

static void app_stop(app_server *a)
{
    shutdown(a->fd, SHUT_RDWR); /* wakes accept */
    pthread_join(a->th, NULL);
    close(a->fd);
}

/* What a connection from ns to ip:port gets: "app", the echo of msg, or "" (refused/failed). */
static void who_answers(netlab_ns ns, const char *ip, uint16_t port, char *out, size_t n)
{
    static const char msg[] = "echo";
    out[0] = 0;
    int fd = netlab_connect(ns, ip, port);
    if (fd < 0)
        return;
    send_all(fd, msg, sizeof msg - 1);
    shutdown(fd, SHUT_WR);
    ssize_t r = read_to_end(fd, out, n - 1, 5000);
    out[r > 0 ? r : 0] = 0;
    close(fd);
}

static void expect_answer(netlab_ns ns, const char *ip, const char *want, const char *why)
{
    char got[64];
    who_answers(ns, ip, PORT, got, sizeof got);
    CHECK(strcmp(got, want) == 0, "%s: %s:80 answered \"%s\", want \"%s\"", why, ip, got, want);
}

/* The node's connections (the kubelet's probes; here: the peer's IPv4
 * address as the node's) reach the app, not the local target, unless the
 * client leaves skip_sources empty (--include-probes). */
static void case_skip_source(netlab_mgr *m)
{
    app_server app;
    app_start(&app, PORT); /* IPv4 and IPv6 */
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    redirect_client_req req = {.port = PORT, .skip_sources = {PEER_IP4}, .nskip_sources = 1};
    netlab_cli c;
    netlab_cli_start_req(&c, m, &req, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    char *rules = nft_list("table", table);
    CHECK(strstr(rules, "tcp dport 80 ip saddr " PEER_IP4 " return"), "no skip rule in the kernel: %s", rules);
    free(rules);
    expect_answer(NS_PEER, POD_IP4, "app", "from the node's address");
    expect_answer(NS_PEER, POD_IP6, "echo", "from another address of the same peer");
    netlab_cli_free(&c);
    /* the manager ends the stream after the client: until then the port is taken */
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left after the first stream");

    netlab_cli_start(&c, m, PORT, false, lport); /* --include-probes: no skip_sources */
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    expect_answer(NS_PEER, POD_IP4, "echo", "from the node's address with probes included");
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    app_stop(&app);
    printf("skip source: the node's connections reach the app by default, the local target with the flag\n");
}

/* An outgoing redirect leaves the pod's connections to itself (a sidecar to
 * the app on localhost, or to its own IP) alone unless include_loopback. */
static void case_loopback(netlab_mgr *m)
{
    app_server app;
    app_start(&app, PORT); /* IPv4 and IPv6 */
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start(&c, m, PORT, true, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    char *rules = nft_list("table", table);
    CHECK(strstr(rules, "oiftype loopback tcp dport 80 return"), "no loopback rule in the kernel: %s", rules);
    free(rules);
    expect_answer(NS_POD, "127.0.0.1", "app", "to localhost");
    expect_answer(NS_POD, "::1", "app", "to ::1");
    expect_answer(NS_POD, POD_IP4, "app", "to the pod's own IP");
    expect_answer(NS_POD, PEER_IP4, "echo", "to another host");
    netlab_cli_free(&c);
    /* the manager ends the stream after the client: until then the port is taken */
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left after the first stream");

    redirect_client_req req = {.port = PORT, .outgoing = true, .include_loopback = true};
    netlab_cli_start_req(&c, m, &req, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    expect_answer(NS_POD, "127.0.0.1", "echo", "to localhost with loopback included");
    expect_answer(NS_POD, "::1", "echo", "to ::1 with loopback included");
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    app_stop(&app);
    printf("loopback: the pod's connections to itself reach the app by default, the local target with the flag\n");
}

/* ---- spare tunnel connections ---- */

static void read_exact(int fd, void *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    int64_t dl = time_now_us() + (int64_t)timeout_ms * 1000;
    while (got < n) {
        int left = (int)((dl - time_now_us()) / 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CHECK(left > 0 && poll(&p, 1, left) == 1, "%zu of %zu bytes within %d ms", got, n, timeout_ms);
        ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
        CHECK(r > 0, "%zu of %zu bytes, then %s", got, n, r == 0 ? "EOF" : strerror(errno));
        got += (size_t)r;
    }
}

/* A tunnel connection that presents c's spare_token with status. */
static int spare_connect(netlab_mgr *m, const netlab_cli *c, uint8_t status)
{
    uint8_t hello[CONTRACT_TUNNEL_HELLO_LEN];
    redirect_client_spare_hello(hello, c->spare_token);
    hello[CONTRACT_TUNNEL_TOKEN_LEN] = status;
    int t = netlab_connect(NS_POD, "127.0.0.1", m->tunnel_port);
    CHECK(t >= 0, "tunnel connect: %s", strerror(-t));
    send_all(t, hello, sizeof hello);
    return t;
}

typedef struct {
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    char peer[80], orig[80];
} announced;

static int grab(void *ud, const redirect_client_event *ev)
{
    announced *a = ud;
    CHECK(!ev->ready && !ev->peer_write_closed, "a spare got a message that is not a connection's");
    memcpy(a->token, ev->token, sizeof a->token);
    snprintf(a->peer, sizeof a->peer, "%s", ev->peer);
    snprintf(a->orig, sizeof a->orig, "%s", ev->original_dst);
    return 0;
}

/* Waits for the announcement on one of n spares: its index, the message in *a. */
static int await_announcement(const int *sp, int n, announced *a)
{
    struct pollfd p[CONTRACT_TUNNEL_SPARES_MAX];
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = sp[i], .events = POLLIN};
    CHECK(poll(p, (nfds_t)n, 3000) >= 1, "no spare got an announcement within 3 s");
    for (int i = 0; i < n; i++) {
        if (sp[i] < 0 || !p[i].revents)
            continue;
        uint8_t len[2], msg[CONTRACT_TUNNEL_ANNOUNCE_MAX];
        read_exact(sp[i], len, 2, 1000);
        size_t l = ((size_t)len[0] << 8) | len[1];
        CHECK(l > 0 && l <= sizeof msg, "announcement of %zu bytes", l);
        read_exact(sp[i], msg, l, 1000);
        CHECK(redirect_client_decode(msg, l, grab, a) == 0, "undecodable announcement");
        return i;
    }
    CHECK(false, "poll said ready, no spare was");
    return -1;
}


#define SPARE_ROUNDS 10

static void case_spares(netlab_mgr *m)
{
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;

    /* The CLI's bridge parks one and tops up: connections come on spares. */
    netlab_cli_start(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    CHECK(c.offered_spare, "no spare_token on the ready message");
    for (int i = 0; i < SPARE_ROUNDS; i++) {
        usleep(100000); /* the spare of the connection before has parked */
        close(echoed_conn());
    }
    int on_spares = netlab_cli_on_spares(&c);
    CHECK(on_spares >= SPARE_ROUNDS - 2 && c.nconns == SPARE_ROUNDS, "%d of %d connections on spares", on_spares,
          c.nconns);
    netlab_cli_free(&c);
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left");

    /* A client that parks none gets every connection on the stream. */
    netlab_cli_start_nospares(&c, m, PORT, false, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    for (int i = 0; i < 3; i++)
        close(echoed_conn());
    CHECK(c.nconns == 3 && netlab_cli_on_spares(&c) == 0, "%d connections, %d on spares without spares", c.nconns,
          netlab_cli_on_spares(&c));
    netlab_cli_free(&c);
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left");

    /* The protocol by hand. */
    int fd0 = stable_fd_count(m);
    netlab_cli ign;
    netlab_cli_start(&ign, m, PORT, false, NETLAB_IGNORE);
    CHECK(netlab_cli_wait_ready(&ign, 5000), "not ready: %s", ign.st.message);
    CHECK(ign.offered_spare, "no spare_token on the ready message");
    int bad = spare_connect(m, &ign, CONTRACT_TUNNEL_STATUS_OK);
    int64_t ms_bad = ms_until_closed(bad, 2000);
    close(bad);
    int sp[CONTRACT_TUNNEL_SPARES_MAX + 1];
    for (int i = 0; i <= CONTRACT_TUNNEL_SPARES_MAX; i++)
        sp[i] = spare_connect(m, &ign, CONTRACT_TUNNEL_STATUS_SPARE);
    int64_t ms_over = ms_until_closed(sp[CONTRACT_TUNNEL_SPARES_MAX], 2000);
    close(sp[CONTRACT_TUNNEL_SPARES_MAX]);
    for (int i = 0; i < CONTRACT_TUNNEL_SPARES_MAX; i++) {
        struct pollfd p = {.fd = sp[i], .events = POLLIN};
        CHECK(poll(&p, 1, 100) == 0, "parked spare %d closed or written to", i);
    }

    /* announced on a spare, not on the stream; the client answers there */
    int peer = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(peer >= 0, "peer connect: %s", strerror(-peer));
    announced a;
    int k = await_announcement(sp, CONTRACT_TUNNEL_SPARES_MAX, &a);
    char want_orig[64];
    snprintf(want_orig, sizeof want_orig, "%s:%d", POD_IP4, PORT);
    CHECK(strcmp(a.orig, want_orig) == 0 && strncmp(a.peer, PEER_IP4 ":", strlen(PEER_IP4) + 1) == 0,
          "announced %s -> %s", a.peer, a.orig);
    usleep(100000);
    CHECK(ign.nconns == 0, "the stream announced it too");
    uint8_t hello[CONTRACT_TUNNEL_HELLO_LEN];
    redirect_client_hello(hello, a.token, true);
    send_all(sp[k], hello, sizeof hello);
    char buf[8];
    send_all(peer, "ping", 4);
    read_exact(sp[k], buf, 4, 3000);
    CHECK(memcmp(buf, "ping", 4) == 0, "tunnel got %.4s", buf);
    send_all(sp[k], "pong", 4);
    read_exact(peer, buf, 4, 3000);
    CHECK(memcmp(buf, "pong", 4) == 0, "peer got %.4s", buf);
    close(peer);
    CHECK(ms_until_closed(sp[k], 2000) >= 0, "paired spare");
    close(sp[k]);
    sp[k] = -1;

    /* refused in answer to the announcement: the peer is reset */
    peer = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(peer >= 0, "peer connect: %s", strerror(-peer));
    k = await_announcement(sp, CONTRACT_TUNNEL_SPARES_MAX, &a);
    redirect_client_hello(hello, a.token, false);
    send_all(sp[k], hello, sizeof hello);
    ssize_t r = read_to_end(peer, buf, sizeof buf, 3000);
    CHECK(r == -ECONNRESET, "refused on a spare: the peer got %zd, want a reset", r);
    close(peer);
    close(sp[k]);
    sp[k] = -1;

    /* the stream's end closes the spares still parked */
    netlab_cli_stop(&ign);
    int left = 0;
    for (int i = 0; i < CONTRACT_TUNNEL_SPARES_MAX; i++)
        if (sp[i] >= 0) {
            CHECK(ms_until_closed(sp[i], 2000) < 1000, "parked spare after the stream's end");
            close(sp[i]);
            left++;
        }
    netlab_cli_free(&ign);
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left");
    int fd1 = stable_fd_count(m);
    CHECK(fd1 == fd0, "manager fds %d after, %d before", fd1, fd0);
    netlab_echo_stop(e);
    printf("spares: %d of %d connections came on the bridge's spares; by hand: a wrong status closed in %lld ms, "
           "spare %d over the limit in %lld ms; announced, answered, bridged; refused -> peer reset; %d parked "
           "closed at the stream's end; manager fds %d before, %d after\n",
           on_spares, SPARE_ROUNDS, (long long)ms_bad, CONTRACT_TUNNEL_SPARES_MAX + 1, (long long)ms_over, left,
           fd0, fd1);
}

/* ---- takeover by the same session ---- */

static int hold_ready(void *ud, const redirect_client_event *ev)
{
    (void)ud;
    if (ev->ready) {
        CHECK(write(1, "ready\n", 6) == 6, "write");
    }
    return 0;
}

/* --hold-stream: a separate client process (this binary, re-executed) that
 * holds a redirect of `port` for session `sid` and says "ready" on stdout. It
 * is a process of its own so that SIGSTOP freezes it as a lost client looks to
 * the manager: the connection stays up, nothing answers. */
static int hold_stream(const char *grpc_port, const char *token, const char *sid_hex, const char *port)
{
    char target[64];
    rpc_client *cl;
    redirect_client_req req = {.port = (uint32_t)atoi(port)};
    for (int i = 0; i < REDIRECT_CLIENT_SESSION_ID_LEN; i++)
        CHECK(sscanf(sid_hex + 2 * i, "%2hhx", &req.session_id[i]) == 1, "bad session id");
    snprintf(target, sizeof target, "127.0.0.1:%s", grpc_port);
    CHECK(rpc_client_new(&cl, target, token) == 0, "rpc_client_new");
    redirect_client *rc;
    CHECK(redirect_client_new(&rc, cl, &req) == 0, "redirect_client_new");
    rpc_status st;
    int r = redirect_client_run(rc, hold_ready, NULL, &st);
    fprintf(stderr, "hold-stream: the stream ended (%d): %s\n", r, st.message);
    return 1;
}

static pid_t start_holder(netlab_mgr *m, const uint8_t sid[REDIRECT_CLIENT_SESSION_ID_LEN], int *out_fd)
{
    char gp[16], hex[2 * REDIRECT_CLIENT_SESSION_ID_LEN + 1], port[16], exe[4096];
    int p[2];
    for (int i = 0; i < REDIRECT_CLIENT_SESSION_ID_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", sid[i]);
    snprintf(gp, sizeof gp, "%d", m->grpc_port);
    snprintf(port, sizeof port, "%d", PORT);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0 && pipe(p) == 0, "readlink/pipe");
    exe[n] = 0;
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        execl(exe, exe, "--hold-stream", gp, m->token, hex, port, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    char buf[8] = "";
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    CHECK(poll(&pf, 1, 10000) == 1 && read(p[0], buf, sizeof buf - 1) > 0 && strncmp(buf, "ready", 5) == 0,
          "the holding client did not get ready");
    return pid;
}

/* A client that lost its connection silently (SIGSTOP: the manager cannot
 * tell for ~20 s) reconnects with the same session id: its new stream takes
 * the port over at once, traffic flows through it; other sessions still get
 * ALREADY_EXISTS. */
static void case_takeover(netlab_mgr *m)
{
    redirect_client_req req = {.port = PORT};
    CHECK(redirect_client_session_id(req.session_id) == 0, "session id");
    int hold_fd, lport;
    pid_t holder = start_holder(m, req.session_id, &hold_fd);
    CHECK(kill(holder, SIGSTOP) == 0, "SIGSTOP");
    netlab_echo *e = netlab_echo_start(&lport);

    char msg[512];
    CHECK(end_status(m, PORT, false, msg, sizeof msg) == GRPC_STATUS_ALREADY_EXISTS, "no session: %s", msg);
    redirect_client_req other = {.port = PORT};
    CHECK(redirect_client_session_id(other.session_id) == 0, "session id");
    netlab_cli o;
    netlab_cli_start_req(&o, m, &other, 1);
    CHECK(!netlab_cli_wait_ready(&o, 5000) && o.st.code == GRPC_STATUS_ALREADY_EXISTS, "another session: %s",
          o.st.message);
    netlab_cli_free(&o);

    int64_t t0 = time_now_us();
    netlab_cli c;
    netlab_cli_start_req(&c, m, &req, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000), "same session: %s", c.st.message);
    int64_t ms = (time_now_us() - t0) / 1000;
    CHECK(ms < 2000, "takeover took %lld ms", (long long)ms);
    CHECK(echo_through(PORT, "through the new stream"), "no echo through the new stream");
    CHECK(c.nconns == 1, "%d connection messages on the new stream", c.nconns);
    char *rules = nft_list("table", table);
    const char *first = strstr(rules, "dport 80 redirect");
    CHECK(first && !strstr(first + 1, "dport 80 redirect"), "one rule for port 80: %s", rules);
    free(rules);
    netlab_cli_free(&c);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    close(hold_fd);
    netlab_echo_stop(e);
    printf("takeover: a stream of the same session replaced the frozen one in %lld ms; other sessions and "
           "none got ALREADY_EXISTS\n",
           (long long)ms);
}

/* The second stream of a takeover, as the CLI's reconnect runs it: the same
 * bridge gets its reports. */
typedef struct {
    netlab_cli *c; /* the first stream's, whose bridge holds the connection */
    redirect_client *rc;
    pthread_t thread;
    atomic_int ready, reports;
} heir_stream;

static int heir_event(void *ud, const redirect_client_event *ev)
{
    heir_stream *h = ud;
    if (ev->ready)
        atomic_store(&h->ready, 1);
    if (ev->peer_write_closed) {
        atomic_fetch_add(&h->reports, 1);
        CHECK(bridge_peer_closed(h->c->br, ev->token, ev->peer_write_closed_after) == 0, "bridge_peer_closed");
    }
    return 0;
}

static void *heir_main(void *arg)
{
    heir_stream *h = arg;
    rpc_status st;
    redirect_client_run(h->rc, heir_event, h, &st);
    return NULL;
}

/* A connection open while its stream is taken over by a stream of the same
 * session (the CLI reconnected): its peer's half-close is reported on the new
 * stream, not sent as a FIN through the tunnel. */
static void case_takeover_half_close(netlab_mgr *m)
{
    redirect_client_req req = {.port = PORT, .half_close = true};
    CHECK(redirect_client_session_id(req.session_id) == 0, "session id");
    int lport;
    netlab_echo *e = netlab_echo_start(&lport);
    netlab_cli c;
    netlab_cli_start_req(&c, m, &req, lport);
    CHECK(netlab_cli_wait_ready(&c, 5000) && c.half_close, "first stream: %s", c.st.message);
    int fd = netlab_connect(NS_PEER, POD_IP4, PORT);
    CHECK(fd >= 0, "connect");
    char buf[16];
    CHECK(send(fd, "abc", 3, 0) == 3 && recv(fd, buf, sizeof buf, 0) == 3, "echo before the takeover");

    heir_stream h = {.c = &c};
    CHECK(redirect_client_new(&h.rc, m->client, &req) == 0, "redirect_client_new");
    CHECK(pthread_create(&h.thread, NULL, heir_main, &h) == 0, "pthread_create");
    for (int i = 0; i < 500 && !atomic_load(&h.ready); i++)
        usleep(10000);
    CHECK(atomic_load(&h.ready), "the second stream did not get ready");

    shutdown(fd, SHUT_WR);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pf, 1, 5000) == 1 && recv(fd, buf, sizeof buf, 0) == 0, "no EOF after the half-close");
    CHECK(atomic_load(&h.reports) == 1, "%d half-close reports on the new stream (0: a FIN crossed the tunnel)",
          atomic_load(&h.reports));
    close(fd);
    redirect_client_cancel(h.rc);
    pthread_join(h.thread, NULL);
    redirect_client_free(h.rc);
    netlab_cli_free(&c);
    netlab_echo_stop(e);
    printf("takeover_half_close: the half-close of a connection open during the takeover went to the new stream\n");
}

static void case_errors(netlab_mgr *m)
{
    char msg[512];
    CHECK(end_status(m, 0, false, msg, sizeof msg) == GRPC_STATUS_INVALID_ARGUMENT && strstr(msg, "port 0"),
          "port 0: %s", msg);
    printf("port 0: %s\n", msg);
    CHECK(end_status(m, 70000, false, msg, sizeof msg) == GRPC_STATUS_INVALID_ARGUMENT && strstr(msg, "70000"),
          "port 70000: %s", msg);
    printf("port 70000: %s\n", msg);
    CHECK(end_status(m, (uint32_t)m->grpc_port, false, msg, sizeof msg) == GRPC_STATUS_INVALID_ARGUMENT,
          "gRPC port: %s", msg);
    printf("gRPC port: %s\n", msg);
    CHECK(end_status(m, (uint32_t)m->tunnel_port, true, msg, sizeof msg) == GRPC_STATUS_INVALID_ARGUMENT,
          "tunnel port: %s", msg);

    netlab_cli a, b;
    netlab_cli_start(&a, m, PORT, false, 1);
    CHECK(netlab_cli_wait_ready(&a, 5000), "first: %s", a.st.message);
    CHECK(end_status(m, PORT, false, msg, sizeof msg) == GRPC_STATUS_ALREADY_EXISTS && strstr(msg, "80"),
          "second redirect of incoming 80: %s", msg);
    printf("same port twice: %s\n", msg);
    netlab_cli_start(&b, m, PORT, true, 1); /* the other direction is another redirect */
    CHECK(netlab_cli_wait_ready(&b, 5000), "outgoing 80 beside incoming 80: %s", b.st.message);
    netlab_cli_free(&b);
    netlab_cli_free(&a);
    /* Once the first ended, the port is free again. */
    CHECK(ms_until_rules_gone(1000) >= 0, "rules left after both streams ended");
    netlab_cli_start(&a, m, PORT, false, 1);
    CHECK(netlab_cli_wait_ready(&a, 5000), "again after the end: %s", a.st.message);
    netlab_cli_free(&a);
}

static void case_no_net_admin(netlab_mgr *m)
{
    char msg[512];
    grpc_status_code code = end_status(m, PORT, false, msg, sizeof msg);
    CHECK(code == GRPC_STATUS_FAILED_PRECONDITION && strstr(msg, "NET_ADMIN"), "code %d: %s", code, msg);
    char *tables = netlab_pod_sh("nft list tables 2>&1");
    CHECK(!strstr(tables, "inet kdiag"), "a kdiag table appeared: %s", tables);
    free(tables);
    printf("no NET_ADMIN: %s\n", msg);
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--hold-stream") == 0)
        return hold_stream(argv[2], argv[3], argv[4], argv[5]);
    if (argc != 3) {
        fprintf(stderr, "usage: redirect_itest KDIAG_MANAGER CASE\n");
        return 2;
    }
    bin = argv[1];
    const char *cs = argv[2];
    if (geteuid() != 0) {
        fprintf(stderr, "redirect_itest needs root (network namespaces, nftables)\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    netlab_init();
    netlab_mgr m;
    if (strcmp(cs, "tunnel_flood") == 0) { /* its test reads the manager's log */
        snprintf(flood_log, sizeof flood_log, "/tmp/kdiag-flood-%d.log", (int)getpid());
        netlab_mgr_stderr_to(flood_log);
    }
    netlab_mgr_start(&m, bin, strcmp(cs, "no_net_admin") == 0);
    nft_table_name((uint16_t)m.tunnel_port, table);
    CHECK(!has_kdiag_table(), "kdiag table before any redirect");

    if (strcmp(cs, "incoming_v4") == 0)
        case_incoming(&m, false);
    else if (strcmp(cs, "incoming_v6") == 0)
        case_incoming(&m, true);
    else if (strcmp(cs, "outgoing") == 0)
        case_outgoing(&m);
    else if (strcmp(cs, "concurrent") == 0)
        case_concurrent(&m);
    else if (strcmp(cs, "refused") == 0)
        case_refused(&m);
    else if (strcmp(cs, "kill9") == 0)
        case_kill9(&m);
    else if (strcmp(cs, "cancel") == 0)
        case_cancel(&m);
    else if (strcmp(cs, "foreign") == 0)
        case_foreign(&m);
    else if (strcmp(cs, "half_close_early") == 0)
        case_half_close_early(&m);
    else if (strcmp(cs, "seq") == 0)
        case_seq(&m, 10000);
    else if (strcmp(cs, "bridge_limit") == 0)
        case_bridge_limit(&m);
    else if (strcmp(cs, "bridge_drain") == 0)
        case_bridge_drain(&m);
    else if (strcmp(cs, "tunnel_flood") == 0)
        case_tunnel_flood(&m);
    else if (strcmp(cs, "errors") == 0)
        case_errors(&m);
    else if (strcmp(cs, "no_net_admin") == 0)
        case_no_net_admin(&m);
    else if (strcmp(cs, "old_owner") == 0)
        case_old_owner(&m);
    else if (strcmp(cs, "two_managers") == 0)
        case_two_managers(&m);
    else if (strcmp(cs, "takeover") == 0)
        case_takeover(&m);
    else if (strcmp(cs, "takeover_half_close") == 0)
        case_takeover_half_close(&m);
    else if (strcmp(cs, "skip_source") == 0)
        case_skip_source(&m);
    else if (strcmp(cs, "spares") == 0)
        case_spares(&m);
    else if (strcmp(cs, "loopback") == 0)
        case_loopback(&m);
    else {
        fprintf(stderr, "unknown case %s\n", cs);
        return 2;
    }
    rpc_client_free(m.client);
    if (m.pid > 0)
        netlab_mgr_stop(&m); /* SIGTERM: a clean exit, checked (and leak-checked under ASan) */
    if (*flood_log)
        unlink(flood_log);
    printf("PASS %s\n", cs);
    return 0;
}
