/* redirect_bench — Redirect against the direct path, side by side in one run
 * (root; by hand, not a ctest):
 *   redirect_bench KDIAG_MANAGER [GiB per throughput run, default 1] [tput|setup|rss]
 *
 * Same test bed as test/redirect (netlab): namespaces "peer" and "pod" joined
 * by a veth, the real kdiag-manager in "pod", this process playing the CLI.
 *   direct:   peer -> podIP:8080, a server in the pod
 *   redirect: peer -> podIP:80 -> nft -> manager -> tunnel -> CLI bridge -> local server
 * Prints: bulk throughput (ratio redirect/direct), extra connection-setup
 * latency (connect + first byte echoed; median, p99) and the manager's RSS
 * with 1,000 redirected connections open.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/time-util.h"
#include "netlab.h"

#define RPORT 80
#define SAMPLES 2000
#define NOPEN 1000

typedef struct {
    int lfd;
    bool echo; /* else: sink */
} server;

static void *serve_one(void *arg)
{
    int fd = (int)((intptr_t)arg >> 1);
    bool s_echo = (intptr_t)arg & 1;
    char *buf = malloc(1 << 18);
    CHECK(buf, "oom");
    ssize_t r;
    while ((r = recv(fd, buf, 1 << 18, 0)) > 0) {
        if (s_echo && send(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0)
            break;
    }
    free(buf);
    close(fd);
    return NULL;
}

/* Accepts forever, one detached thread per connection. */
static void *server_main(void *arg)
{
    server *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        CHECK(pthread_create(&th, &a, serve_one, (void *)(((intptr_t)fd << 1) | s->echo)) == 0, "pthread_create");
        pthread_attr_destroy(&a);
    }
}

static void server_start(server *s, netlab_ns ns, const char *ip, bool echo, int *port)
{
    s->echo = echo;
    s->lfd = netlab_listen(ns, ip, port);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, server_main, s) == 0, "pthread_create");
    pthread_detach(th);
}

/* MB/s of one connection sending bytes to a sink, until the sink closed. */
static double bulk(const char *ip, int port, uint64_t bytes)
{
    static char buf[1 << 20];
    int fd = netlab_connect(NS_PEER, ip, port);
    CHECK(fd >= 0, "connect %s:%d: %s", ip, port, strerror(-fd));
    int64_t t0 = time_now_us();
    for (uint64_t sent = 0; sent < bytes;) {
        ssize_t w = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
        CHECK(w > 0, "send: %s", strerror(errno));
        sent += (uint64_t)w;
    }
    shutdown(fd, SHUT_WR);
    char c;
    CHECK(recv(fd, &c, 1, 0) == 0, "sink did not close"); /* all data taken by the far end */
    double us = (double)(time_now_us() - t0);
    close(fd);
    return (double)bytes / us; /* bytes/us = MB/s */
}

static int64_t last_t0;


/* us for connect + one byte there and back. */
static double setup_us(const char *ip, int port)
{
    char c = 'x';
    int64_t t0 = last_t0 = time_now_us();
    int fd = netlab_connect(NS_PEER, ip, port);
    CHECK(fd >= 0, "connect: %s", strerror(-fd));
    CHECK(send(fd, &c, 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, 0) == 1, "echo");
    double us = (double)(time_now_us() - t0);
    close(fd);
    return us;
}

/* CPU seconds (user + system) the manager has used so far. */
static double mgr_cpu_s(const netlab_mgr *m)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", m->pid);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(buf, sizeof buf, f), "read %s", path);
    fclose(f);
    unsigned long ut = 0, st = 0;
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    CHECK(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2, "parse %s", path);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: redirect_bench KDIAG_MANAGER [GiB]\n");
        return 2;
    }
    uint64_t bytes = (uint64_t)((argc > 2 ? atof(argv[2]) : 1.0) * (1 << 30));
    setvbuf(stdout, NULL, _IOLBF, 0);
    netlab_init();
    netlab_mgr m;
    netlab_mgr_start(&m, argv[1], false);

    /* sinks for throughput, echo servers for latency and open connections */
    static server dsink, decho, lsink, lecho;
    int dsink_port, decho_port, lsink_port, lecho_port;
    server_start(&dsink, NS_POD, POD_IP4, false, &dsink_port);
    server_start(&decho, NS_POD, POD_IP4, true, &decho_port);
    server_start(&lsink, NS_HOME, "127.0.0.1", false, &lsink_port);
    server_start(&lecho, NS_HOME, "127.0.0.1", true, &lecho_port);
    netlab_cli c, ce, cs, cn;
    netlab_cli_start(&c, &m, RPORT, false, lsink_port);
    CHECK(netlab_cli_wait_ready(&c, 5000), "not ready: %s", c.st.message);
    netlab_cli_start(&ce, &m, RPORT + 1, false, lecho_port);
    CHECK(netlab_cli_wait_ready(&ce, 5000), "not ready: %s", ce.st.message);
    netlab_cli_start(&cs, &m, RPORT + 2, false, NETLAB_TUNNEL_SINK);
    CHECK(netlab_cli_wait_ready(&cs, 5000), "not ready: %s", cs.st.message);
    netlab_cli_start_nospares(&cn, &m, RPORT + 3, false, lecho_port); /* every connection on the stream */
    CHECK(netlab_cli_wait_ready(&cn, 5000), "not ready: %s", cn.st.message);

    const char *only = argc > 3 ? argv[3] : "";
    /* Throughput: alternate, 3 runs each, median. */
    double d[3], r[3], t[3];
    if (!*only || !strcmp(only, "tput")) {
        bulk(POD_IP4, dsink_port, bytes / 8); /* warm-up */
        bulk(POD_IP4, RPORT, bytes / 8);
        double cpu = 0;
        for (int i = 0; i < 3; i++) {
            d[i] = bulk(POD_IP4, dsink_port, bytes);
            r[i] = bulk(POD_IP4, RPORT, bytes);
            double c0 = mgr_cpu_s(&m);
            t[i] = bulk(POD_IP4, RPORT + 2, bytes);
            cpu += mgr_cpu_s(&m) - c0;
        }
        double dm = pct(d, 3, 0.5), rm = pct(r, 3, 0.5), tm = pct(t, 3, 0.5);
        printf("throughput (%.1f GiB, 1 connection, median of 3): direct %.0f MB/s; "
               "redirect to the tunnel's end %.0f MB/s, ratio %.2f (goal >= 0.8); "
               "redirect + CLI bridge to a local server %.0f MB/s, ratio %.2f\n",
               (double)bytes / (1 << 30), dm, tm, tm / dm, rm, rm / dm);
        printf("  manager CPU: %.2f s per GiB relayed (user + system, all threads)\n",
               cpu / (3.0 * (double)bytes / (1 << 30)));
    }

    /* Connection setup: interleaved samples. */
    static double ds[SAMPLES], rs[SAMPLES], es[SAMPLES], ns[SAMPLES], nes[SAMPLES];
    if (!*only || !strcmp(only, "setup")) {
        for (int i = 0; i < SAMPLES; i++) {
            ds[i] = setup_us(POD_IP4, decho_port);
            rs[i] = setup_us(POD_IP4, RPORT + 1);
            pthread_mutex_lock(&ce.mu);
            es[i] = (double)(ce.last_event_us - last_t0);
            pthread_mutex_unlock(&ce.mu);
            ns[i] = setup_us(POD_IP4, RPORT + 3);
            pthread_mutex_lock(&cn.mu);
            nes[i] = (double)(cn.last_event_us - last_t0);
            pthread_mutex_unlock(&cn.mu);
        }
        double dmed = pct(ds, SAMPLES, 0.5), dp99 = pct(ds, SAMPLES, 0.99);
        double rmed = pct(rs, SAMPLES, 0.5), rp99 = pct(rs, SAMPLES, 0.99);
        double nmed = pct(ns, SAMPLES, 0.5), np99 = pct(ns, SAMPLES, 0.99);
        printf("setup (connect + 1 byte echoed, %d samples): direct median %.0f us p99 %.0f us; redirect median %.0f us "
               "p99 %.0f us; extra median %.0f us (goal <= 300) p99 %.0f us\n",
               SAMPLES, dmed, dp99, rmed, rp99, rmed - dmed, rp99 - dp99);
        printf("  of which: connect -> connection announced at the CLI, median %.0f us; %d of %d on a spare\n",
               pct(es, SAMPLES, 0.5), netlab_cli_on_spares(&ce), ce.nconns);
        printf("  without spares (every connection on the stream): median %.0f us p99 %.0f us, extra median %.0f us "
               "p99 %.0f us; connect -> stream message at the CLI, median %.0f us\n",
               nmed, np99, nmed - dmed, np99 - dp99, pct(nes, SAMPLES, 0.5));
    }

    /* RSS with 1,000 redirected connections open. */
    CHECK(netlab_cli_wait_idle(&ce, 10000), "bridges still running");
    if (!*only || !strcmp(only, "rss")) {
        long rss0 = netlab_mgr_rss_kb(&m);
        static int fds[NOPEN];
        for (int i = 0; i < NOPEN; i++) {
            char ch = 'y';
            fds[i] = netlab_connect(NS_PEER, POD_IP4, RPORT + 1);
            CHECK(fds[i] >= 0, "connect %d", i);
            CHECK(send(fds[i], &ch, 1, MSG_NOSIGNAL) == 1 && recv(fds[i], &ch, 1, 0) == 1, "echo %d", i);
        }
        long rss1 = netlab_mgr_rss_kb(&m);
        int nfd = netlab_mgr_fd_count(&m);
        printf("manager RSS: %.1f MB idle, %.1f MB with %d redirected connections open (%d fds) (goal <= 48 MB)\n",
               rss0 / 1024.0, rss1 / 1024.0, NOPEN, nfd);
        for (int i = 0; i < NOPEN; i++)
            close(fds[i]);
    }
    netlab_cli_wait_idle(&ce, 10000);
    netlab_cli_free(&ce);
    netlab_cli_free(&cs);
    netlab_cli_free(&cn);
    netlab_cli_free(&c);
    rpc_client_free(m.client);
    netlab_mgr_stop(&m);
    return 0;
}
