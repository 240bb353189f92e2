/* Capture end to end: namespaces "peer" and "pod" joined by a veth
 * (test/redirect/netlab), the real kdiag-manager in "pod", this process
 * playing the CLI with the CLI's own client (api/capture_client), a scripted
 * UDP exchange, and the file read back with libpcap and tcpdump.
 *   capture_itest <kdiag-manager> <case>
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/time-util.h"
#include "capture_client.h"
#include "netlab.h"

#define UDP_PORT 7777
#define FILTER "udp port 7777"
#define EXCHANGES 10
#define ETH_HDR 14
#define SLL2_HDR 20
#define IP_UDP_HDR 28

static char path[64], veth[32];
static capture_pcapng *ng_w; /* set: cap_start writes pcapng into ng_fd as pod "ng_name" */
static int ng_fd = -1;
static const char *ng_name;

static void remove_file(void)
{
    unlink(path);
}

typedef struct {
    netlab_mgr *m;
    capture_client_req req;
    capture_client *cc;
    int fd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, ended;
    int rc;
    capture_client_stats s;
    rpc_status st;
} cap_run;

static int on_progress(void *ud, const capture_client_stats *s)
{
    cap_run *r = ud;
    pthread_mutex_lock(&r->mu);
    r->ready = s->ready;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static void *cap_thread(void *arg)
{
    cap_run *r = arg;
    int rc = capture_client_run(r->cc, r->fd, on_progress, r, &r->s, &r->st);
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    r->ended = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Starts a capture into path; waits until the manager captures (or the stream ended). */
static void cap_start(cap_run *r, netlab_mgr *m, const capture_client_req *req)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->req = *req;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->fd = ng_w ? dup(ng_fd) : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(r->fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(capture_client_new(&r->cc, m->client, &r->req) == 0, "capture_client_new");
    if (ng_w)
        CHECK(capture_client_set_pcapng(r->cc, ng_w, ng_name) == 0, "capture_client_set_pcapng");
    CHECK(pthread_create(&r->thread, NULL, cap_thread, r) == 0, "pthread_create");
    pthread_mutex_lock(&r->mu);
    struct timespec ts = time_deadline_ts(CLOCK_REALTIME, 10000);
    while (!r->ready && !r->ended)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
            break;
    bool ok = r->ready || r->ended;
    pthread_mutex_unlock(&r->mu);
    CHECK(ok, "no ready message within 10 s");
}

/* Waits for the stream to end by itself (count or duration), 10 s at most. */
static void cap_join(cap_run *r)
{
    pthread_mutex_lock(&r->mu);
    struct timespec ts = time_deadline_ts(CLOCK_REALTIME, 10000);
    while (!r->ended)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
            break;
    bool ended = r->ended;
    pthread_mutex_unlock(&r->mu);
    CHECK(ended, "the capture did not end within 10 s (%llu packets)", (unsigned long long)r->s.packets);
    pthread_join(r->thread, NULL);
    capture_client_free(r->cc);
    close(r->fd);
}

/* n UDP datagrams of sizes[i] bytes from peer to pod:UDP_PORT, each echoed back. */
static void exchange(const size_t *sizes, int n)
{
    int srv = netlab_socket_type(NS_POD, AF_INET, SOCK_DGRAM);
    int cli = netlab_socket_type(NS_PEER, AF_INET, SOCK_DGRAM);
    CHECK(srv >= 0 && cli >= 0, "udp sockets");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT)};
    inet_pton(AF_INET, POD_IP4, &a.sin_addr);
    CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        CHECK(sendto(cli, buf, sizes[i], 0, (struct sockaddr *)&a, sizeof a) == (ssize_t)sizes[i], "sendto");
        ssize_t got = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        CHECK(got == (ssize_t)sizes[i], "pod got %zd of %zu", got, sizes[i]);
        CHECK(sendto(srv, buf, (size_t)got, 0, (struct sockaddr *)&from, fl) == got, "echo");
        CHECK(recv(cli, buf, sizeof buf, 0) == got, "peer got the echo");
    }
    close(srv);
    close(cli);
}

typedef struct {
    int linktype;
    uint64_t packets, caplen, len;
    uint32_t max_caplen;
} pcap_sum;

/* The file read back with libpcap; fails the test on a read error (a torn record). */
static pcap_sum read_back(void)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    CHECK(p, "libpcap cannot open %s: %s", path, errbuf);
    pcap_sum s = {.linktype = pcap_datalink(p)};
    struct pcap_pkthdr *h;
    const u_char *d;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
        s.packets++;
        s.caplen += h->caplen;
        s.len += h->len;
        if (h->caplen > s.max_caplen)
            s.max_caplen = h->caplen;
    }
    CHECK(rc == PCAP_ERROR_BREAK, "reading %s after %llu packets: %s", path, (unsigned long long)s.packets,
          pcap_geterr(p));
    pcap_close(p);
    return s;
}

/* The packets of the file that filter (libpcap's syntax) matches. */
static uint64_t matching(const char *filter)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(path, errbuf);
    CHECK(p, "libpcap cannot open %s: %s", path, errbuf);
    struct bpf_program prog;
    CHECK(pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) == 0, "filter %s: %s", filter, pcap_geterr(p));
    struct pcap_pkthdr *h;
    const u_char *d;
    uint64_t n = 0;
    while (pcap_next_ex(p, &h, &d) == 1)
        n += pcap_offline_filter(&prog, h, d) != 0;
    pcap_freecode(&prog);
    pcap_close(p);
    return n;
}

/* tcpdump -r: it must exit 0 and print one line per packet. */
static void tcpdump_reads(uint64_t packets)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tcpdump -n -r %s 2>/dev/null >%s.txt; echo $? $(wc -l <%s.txt); rm -f %s.txt", path,
             path, path, path);
    FILE *f = popen(cmd, "r");
    CHECK(f, "popen");
    char line[256] = "";
    CHECK(fgets(line, sizeof line, f), "no output from the tcpdump command");
    pclose(f);
    unsigned st = 99;
    unsigned long long lines = 0;
    CHECK(sscanf(line, "%u %llu", &st, &lines) == 2 && st == 0 && lines == packets,
          "tcpdump -r: exit %u, %llu lines, want 0 and %llu", st, lines, (unsigned long long)packets);
}

static const size_t sizes[EXCHANGES] = {1, 64, 100, 200, 300, 512, 700, 1000, 1200, 1400};

/* The exchange on one interface or all: exactly 2 * EXCHANGES packets with exactly their bytes. */
static void case_exchange(netlab_mgr *m, bool any)
{
    cap_run r;
    capture_client_req req = {.interface = any ? "any" : veth, .filter = FILTER, .count = 2 * EXCHANGES};
    cap_start(&r, m, &req);
    CHECK(r.s.ready, "not ready: %s", r.st.message);
    exchange(sizes, EXCHANGES);
    cap_join(&r);
    CHECK(r.rc == 0, "capture ended with %d: %s", r.rc, r.st.message);
    uint64_t want = 0, hdr = any ? SLL2_HDR : ETH_HDR;
    for (int i = 0; i < EXCHANGES; i++)
        want += 2 * (hdr + IP_UDP_HDR + sizes[i]);
    pcap_sum s = read_back();
    CHECK(s.linktype == (any ? DLT_LINUX_SLL2 : DLT_EN10MB), "linktype %d", s.linktype);
    CHECK(s.packets == 2 * EXCHANGES && s.len == want && s.caplen == want,
          "%llu packets, %llu bytes (%llu captured), want %d and %llu", (unsigned long long)s.packets,
          (unsigned long long)s.len, (unsigned long long)s.caplen, 2 * EXCHANGES, (unsigned long long)want);
    CHECK(r.s.packets == s.packets && r.s.captured == s.packets && r.s.kernel_drops == 0,
          "client counted %llu, manager %llu, drops %llu", (unsigned long long)r.s.packets,
          (unsigned long long)r.s.captured, (unsigned long long)r.s.kernel_drops);
    bool named = false;
    for (size_t i = 0; i < r.s.nifaces; i++)
        if (strcmp(r.s.ifaces[i].name, veth) == 0)
            named = r.s.ifaces[i].packets == 2 * EXCHANGES;
    CHECK(named, "the packets are not counted on %s", veth);
    tcpdump_reads(2 * EXCHANGES);
    printf("ok: %s: %llu packets, %llu bytes\n", any ? "any" : veth, (unsigned long long)s.packets,
           (unsigned long long)s.len);
}

/* Datagrams from the pod to itself over lo, seen by the kernel going out and
 * coming in: each captured once, as tcpdump does, on lo and on any. */
static void case_loopback(netlab_mgr *m, bool any)
{
    cap_run r;
    capture_client_req req = {.interface = any ? "any" : "lo", .filter = FILTER, .duration_ms = 1500};
    cap_start(&r, m, &req);
    int srv = netlab_socket_type(NS_POD, AF_INET, SOCK_DGRAM);
    int cli = netlab_socket_type(NS_POD, AF_INET, SOCK_DGRAM);
    CHECK(srv >= 0 && cli >= 0, "udp sockets");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
    char buf[64];
    for (int i = 0; i < EXCHANGES; i++) {
        CHECK(sendto(cli, "loop", 4, 0, (struct sockaddr *)&a, sizeof a) == 4, "sendto");
        CHECK(recv(srv, buf, sizeof buf, 0) == 4, "recv");
    }
    close(srv);
    close(cli);
    cap_join(&r);
    CHECK(r.rc == 0, "capture ended with %d: %s", r.rc, r.st.message);
    pcap_sum s = read_back();
    CHECK(s.packets == EXCHANGES && r.s.captured == EXCHANGES, "%llu packets (manager: %llu), want %d",
          (unsigned long long)s.packets, (unsigned long long)r.s.captured, EXCHANGES);
    tcpdump_reads(EXCHANGES);
    printf("ok: loopback on %s: %llu packets\n", any ? "any" : "lo", (unsigned long long)s.packets);
}

/* A filter that matches nothing of the exchange captures nothing: the file is its header. */
static void case_filter_nothing(netlab_mgr *m)
{
    cap_run r;
    capture_client_req req = {.filter = "udp port 7778", .duration_ms = 500};
    cap_start(&r, m, &req);
    exchange(sizes, EXCHANGES);
    cap_join(&r);
    CHECK(r.rc == 0, "capture ended with %d: %s", r.rc, r.st.message);
    pcap_sum s = read_back();
    CHECK(s.packets == 0 && r.s.captured == 0 && r.s.bytes == 24, "%llu packets, %llu bytes",
          (unsigned long long)s.packets, (unsigned long long)r.s.bytes);
    tcpdump_reads(0);
    printf("ok: nothing captured\n");
}

/* No filter, on every interface, lo included, where this client's stream to
 * the manager runs (as kubectl port-forward's does in a pod): the capture
 * leaves its own stream out, else each message it sends is packets of the
 * next one, and the file grows by itself. The exchange is all there is. */
static void case_own_stream(netlab_mgr *m)
{
    cap_run r;
    capture_client_req req = {.interface = "any", .duration_ms = 1500};
    cap_start(&r, m, &req);
    CHECK(r.s.ready, "not ready: %s", r.st.message);
    exchange(sizes, EXCHANGES);
    cap_join(&r);
    CHECK(r.rc == 0, "capture ended with %d: %s", r.rc, r.st.message);
    pcap_sum s = read_back();
    char own[32];
    snprintf(own, sizeof own, "tcp port %d", m->grpc_port);
    uint64_t mine = matching(own), ours = matching(FILTER);
    printf("%llu packets in 1.5 s: %llu of the exchange, %llu of the capture's stream (port %d), %llu bytes\n",
           (unsigned long long)s.packets, (unsigned long long)ours, (unsigned long long)mine, m->grpc_port,
           (unsigned long long)s.caplen);
    CHECK(mine == 0 && ours == 2 * EXCHANGES && s.packets < 2 * EXCHANGES + 20, "the stream was captured");
    printf("ok: the capture's own stream left out\n");
}

/* A filter libpcap rejects: INVALID_ARGUMENT with libpcap's message on one line, no file header. */
static void case_bad_filter(netlab_mgr *m)
{
    cap_run r;
    capture_client_req req = {.filter = "udp porx 7777"};
    cap_start(&r, m, &req);
    cap_join(&r);
    CHECK(r.rc == -EPROTO && r.st.code == GRPC_STATUS_INVALID_ARGUMENT, "rc %d status %d", r.rc, (int)r.st.code);
    CHECK(strstr(r.st.message, "udp porx 7777") && strstr(r.st.message, "syntax error") && !strchr(r.st.message, '\n'),
          "message: %s", r.st.message);
    CHECK(r.s.bytes == 0, "wrote %llu bytes", (unsigned long long)r.s.bytes);
    capture_client_req bad_if = {.interface = "nosuch0"};
    cap_start(&r, m, &bad_if);
    cap_join(&r);
    CHECK(r.st.code == GRPC_STATUS_INVALID_ARGUMENT && strstr(r.st.message, "nosuch0"), "message: %s", r.st.message);
    printf("ok: %s\n", r.st.message);
}

/* -s 64: records keep 64 bytes, their length stays the packet's. */
static void case_snaplen(netlab_mgr *m)
{
    cap_run r;
    capture_client_req req = {.interface = veth, .filter = FILTER, .snaplen = 64, .count = 2 * EXCHANGES};
    cap_start(&r, m, &req);
    exchange(sizes, EXCHANGES);
    cap_join(&r);
    CHECK(r.rc == 0 && r.s.snaplen == 64, "rc %d snaplen %u: %s", r.rc, r.s.snaplen, r.st.message);
    uint64_t want_len = 0, want_cap = 0;
    for (int i = 0; i < EXCHANGES; i++) {
        uint64_t l = ETH_HDR + IP_UDP_HDR + sizes[i];
        want_len += 2 * l;
        want_cap += 2 * (l < 64 ? l : 64);
    }
    pcap_sum s = read_back();
    CHECK(s.packets == 2 * EXCHANGES && s.len == want_len && s.caplen == want_cap && s.max_caplen == 64,
          "%llu packets, len %llu caplen %llu (max %u), want len %llu caplen %llu", (unsigned long long)s.packets,
          (unsigned long long)s.len, (unsigned long long)s.caplen, s.max_caplen, (unsigned long long)want_len,
          (unsigned long long)want_cap);
    tcpdump_reads(2 * EXCHANGES);
    printf("ok: snaplen 64\n");
}

/* Cancelled in the middle of a flood (what Ctrl-C does): the file holds whole records only. */
static void case_cancel(netlab_mgr *m)
{
    cap_run r;
    capture_client_req req = {.filter = FILTER};
    cap_start(&r, m, &req);
    size_t big[200];
    for (int i = 0; i < 200; i++)
        big[i] = 1000 + (size_t)i;
    for (int round = 0; round < 5; round++)
        exchange(big, 200);
    usleep(100 * 1000); /* a few of the manager's blocks reach us */
    capture_client_cancel(r.cc);
    cap_join(&r);
    CHECK(r.rc == 0 && r.s.packets > 0, "rc %d, %llu packets: %s", r.rc, (unsigned long long)r.s.packets, r.st.message);
    pcap_sum s = read_back();
    CHECK(s.packets == r.s.packets, "file has %llu packets, client wrote %llu", (unsigned long long)s.packets,
          (unsigned long long)r.s.packets);
    tcpdump_reads(s.packets);
    printf("ok: cancelled after %llu packets\n", (unsigned long long)s.packets);
}

/* The interface blocks of a pcapng file (description of each id) and the
 * packets of each id, read by hand beside libpcap: every block whole. */
typedef struct {
    char desc[8][64];
    uint32_t nif;
    uint64_t packets[8];
    uint64_t ifrecv[8]; /* isb_ifrecv of the interface's statistics block */
    uint32_t nstats;
} ng_sum;

static ng_sum ng_read(void)
{
    static uint8_t b[1 << 20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s", path);
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    CHECK(n >= 28 && n < (ssize_t)sizeof b, "read %zd bytes", n);
    ng_sum s = {0};
    uint32_t type, len;
    memcpy(&type, b, 4);
    CHECK(type == 0x0a0d0d0a, "no section header");
    for (size_t off = 0; off < (size_t)n; off += len) {
        CHECK(off + 12 <= (size_t)n, "a torn block at %zu", off);
        memcpy(&type, b + off, 4);
        memcpy(&len, b + off + 4, 4);
        CHECK(len >= 12 && len % 4 == 0 && off + len <= (size_t)n, "block at %zu: length %u", off, len);
        if (type == 1) { /* IDB: options from offset 16; if_description is code 3 */
            CHECK(s.nif < 8, "too many interfaces");
            for (size_t o = off + 16; o + 4 <= off + len - 4;) {
                uint16_t code, ol;
                memcpy(&code, b + o, 2);
                memcpy(&ol, b + o + 2, 2);
                if (code == 0)
                    break;
                if (code == 3)
                    snprintf(s.desc[s.nif], sizeof s.desc[0], "%.*s", (int)ol, (const char *)b + o + 4);
                o += 4 + ((ol + 3u) & ~3u);
            }
            s.nif++;
        } else if (type == 6) {
            uint32_t id;
            memcpy(&id, b + off + 8, 4);
            CHECK(id < s.nif, "a packet on interface %u before its block", id);
            s.packets[id]++;
        } else if (type == 5) { /* ISB: isb_ifrecv (4) is its first option */
            uint32_t id;
            uint16_t code;
            memcpy(&id, b + off + 8, 4);
            memcpy(&code, b + off + 20, 2);
            CHECK(id < s.nif && code == 4 && len >= 40, "statistics block of interface %u", id);
            memcpy(&s.ifrecv[id], b + off + 24, 8);
            s.nstats++;
        }
    }
    return s;
}

/* Two captures (two "pods") into one pcapng file at once: each packet on an
 * interface of its capture, named by it; tcpdump reads the file whole. */
static void case_pcapng_two(netlab_mgr *m)
{
    ng_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(ng_fd >= 0 && capture_pcapng_new(&ng_w, ng_fd) == 0, "pcapng writer");
    cap_run a, b;
    capture_client_req any = {.filter = FILTER, .count = 2 * EXCHANGES};
    ng_name = "pod/a";
    cap_start(&a, m, &any);
    ng_name = "pod/b";
    cap_start(&b, m, &any);
    exchange(sizes, EXCHANGES);
    cap_join(&a);
    cap_join(&b);
    CHECK(a.rc == 0 && b.rc == 0, "captures ended with %d, %d", a.rc, b.rc);
    ng_sum s = ng_read();
    uint64_t pa = 0, pb = 0;
    for (uint32_t i = 0; i < s.nif; i++) {
        printf("interface %u: %s, %llu packets\n", i, s.desc[i], (unsigned long long)s.packets[i]);
        const char *sp = strchr(s.desc[i], ' ');
        CHECK(sp && (strncmp(s.desc[i], "pod/a ", 6) == 0 || strncmp(s.desc[i], "pod/b ", 6) == 0), "interface %s",
              s.desc[i]);
        CHECK(!s.packets[i] || strcmp(sp + 1, veth) == 0, "%llu packets on %s", (unsigned long long)s.packets[i],
              s.desc[i]);
        CHECK(s.ifrecv[i] == s.packets[i], "%s: isb_ifrecv %llu, %llu packets", s.desc[i],
              (unsigned long long)s.ifrecv[i], (unsigned long long)s.packets[i]);
        *(s.desc[i][4] == 'a' ? &pa : &pb) += s.packets[i];
    }
    CHECK(s.nstats == s.nif, "%u statistics blocks for %u interfaces", s.nstats, s.nif);
    CHECK(pa == 2 * EXCHANGES && pb == 2 * EXCHANGES, "pod/a %llu packets, pod/b %llu, want %d each",
          (unsigned long long)pa, (unsigned long long)pb, 2 * EXCHANGES);
    tcpdump_reads(4 * EXCHANGES);
    capture_pcapng_free(ng_w);
    close(ng_fd);
    printf("ok: pcapng of two captures, %llu + %llu packets\n", (unsigned long long)pa, (unsigned long long)pb);
}

#define RUNNING_MAX 4 /* manager/capture.c's CAPTURE_RUNNING_MAX */

/* One capture past the manager's limit: refused at once, RESOURCE_EXHAUSTED,
 * a message that says how many run and what to do, nothing written. */
static void cap_refused(netlab_mgr *m)
{
    cap_run r;
    capture_client_req req = {.filter = FILTER};
    cap_start(&r, m, &req);
    cap_join(&r);
    CHECK(r.st.code == GRPC_STATUS_RESOURCE_EXHAUSTED && !r.s.ready && r.s.bytes == 0, "status %d: %s",
          (int)r.st.code, r.st.message);
    CHECK(strstr(r.st.message, "4 captures run") && strstr(r.st.message, "end one of them"), "message: %s",
          r.st.message);
}

/* A capture in slot r that the manager accepts. */
static void cap_accepted(cap_run *r, netlab_mgr *m, const capture_client_req *req)
{
    cap_start(r, m, req);
    CHECK(r->s.ready, "refused: status %d: %s", (int)r->st.code, r->st.message);
}

/* The same once the manager saw a cancelled call go (it learns of it a moment
 * after the client): refused until then, 5 s at most. */
static void cap_accepted_soon(cap_run *r, netlab_mgr *m, const capture_client_req *req)
{
    int64_t deadline = time_now_ms() + 5000;
    for (cap_start(r, m, req); !r->s.ready && time_now_ms() < deadline; cap_start(r, m, req)) {
        cap_join(r);
        CHECK(r->st.code == GRPC_STATUS_RESOURCE_EXHAUSTED, "status %d: %s", (int)r->st.code, r->st.message);
        usleep(20 * 1000);
    }
    CHECK(r->s.ready, "still refused 5 s after a capture was cancelled: %s", r->st.message);
}

/* At most RUNNING_MAX captures at once; a slot comes back however a capture
 * ends: its count, its duration, a cancel, an error after its request. */
static void case_limit(netlab_mgr *m)
{
    cap_run r[RUNNING_MAX];
    capture_client_req counted = {.filter = FILTER, .count = 1}, timed = {.filter = FILTER, .duration_ms = 2000},
                       open = {.filter = FILTER}, bad = {.filter = "udp porx 1"};
    cap_accepted(&r[0], m, &counted);
    cap_accepted(&r[1], m, &timed);
    cap_accepted(&r[2], m, &open);
    cap_accepted(&r[3], m, &open);
    cap_refused(m);
    exchange(sizes, 1); /* r[0] has its packet */
    cap_join(&r[0]);
    CHECK(r[0].rc == 0, "the counted capture ended with %d: %s", r[0].rc, r[0].st.message);
    cap_accepted(&r[0], m, &open);
    cap_refused(m);
    capture_client_cancel(r[2].cc);
    cap_join(&r[2]);
    cap_accepted_soon(&r[2], m, &open);
    cap_refused(m);
    cap_join(&r[1]); /* its 2 s */
    CHECK(r[1].rc == 0, "the timed capture ended with %d: %s", r[1].rc, r[1].st.message);
    for (int i = 0; i < 2; i++) { /* each takes the free slot, fails, and gives it back */
        cap_start(&r[1], m, &bad);
        cap_join(&r[1]);
        CHECK(r[1].st.code == GRPC_STATUS_INVALID_ARGUMENT, "bad filter %d: status %d: %s", i, (int)r[1].st.code,
              r[1].st.message);
    }
    cap_accepted(&r[1], m, &open);
    cap_refused(m);
    for (int i = 0; i < RUNNING_MAX; i++) {
        capture_client_cancel(r[i].cc);
        cap_join(&r[i]);
    }
    printf("ok: %d captures at once; count, duration, cancel and error each gave theirs back\n", RUNNING_MAX);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: capture_itest KDIAG_MANAGER CASE\n");
        return 2;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "capture_itest needs root (network namespaces)\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(path, sizeof path, "/tmp/kdiag-capture-%d.pcap", (int)getpid());
    snprintf(veth, sizeof veth, "kdrq%d", (int)getpid()); /* netlab's pod end of the veth */
    atexit(remove_file);
    netlab_init();
    netlab_mgr m;
    netlab_mgr_start(&m, argv[1], false);
    const char *cs = argv[2];
    if (strcmp(cs, "exchange_any") == 0)
        case_exchange(&m, true);
    else if (strcmp(cs, "exchange_iface") == 0)
        case_exchange(&m, false);
    else if (strcmp(cs, "loopback_lo") == 0)
        case_loopback(&m, false);
    else if (strcmp(cs, "loopback_any") == 0)
        case_loopback(&m, true);
    else if (strcmp(cs, "filter_nothing") == 0)
        case_filter_nothing(&m);
    else if (strcmp(cs, "own_stream") == 0)
        case_own_stream(&m);
    else if (strcmp(cs, "bad_filter") == 0)
        case_bad_filter(&m);
    else if (strcmp(cs, "snaplen") == 0)
        case_snaplen(&m);
    else if (strcmp(cs, "cancel") == 0)
        case_cancel(&m);
    else if (strcmp(cs, "pcapng_two") == 0)
        case_pcapng_two(&m);
    else if (strcmp(cs, "limit") == 0)
        case_limit(&m);
    else
        CHECK(false, "unknown case %s", cs);
    rpc_client_free(m.client);
    netlab_mgr_stop(&m);
    return 0;
}
