/* capture_bench — kdiag's capture path against tcpdump -w on the same traffic,
 * side by side in one run (root; by hand, not a ctest):
 *   capture_bench KDIAG_MANAGER [seconds per trial, default 1] [64|1514|both] [readers]
 *
 * Test bed of test/redirect (netlab): namespaces "peer" and "pod" joined by a
 * veth. UDP datagrams go from "peer" to a socket in "pod" that never reads, at
 * a paced rate; in "pod", on its end of the veth, with the filter
 * "udp dst port 9", they are captured by
 *   kdiag:   the real kdiag-manager + api/capture_client writing pcap to /tmp,
 *            gRPC over the pod's loopback (the manager and client path, not
 *            kubectl port-forward: that forward is the same for every command
 *            and would be what is measured);
 *   tcpdump: tcpdump -B 32768 (the manager's ring is 32 MiB too) -w /tmp/...
 * For 64- and 1514-byte frames: the highest rate each captures with zero
 * drops (every packet sent is in the file), climbing by 1.25x, the two taking
 * turns at each rate;
 * the ratio kdiag / tcpdump (goal >= 0.8); CPU per million packets of the
 * manager (and of tcpdump) at that rate.
 * With "readers": the two ways of reading an AF_PACKET socket the manager
 * could use, alone (this process counts the packets, nothing is written):
 * recvmmsg (64 a call, SO_RCVBUF as large as the ring) against the manager's
 * TPACKET_V3 ring: zero-drop rate and CPU per million packets of each.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/time-util.h"
#include "capture_client.h"
#include "netlab.h"

#define UDP_PORT 9
#define FILTER "udp dst port 9"
#define RATE_START 25000
#define RATE_MAX 4000000

static char veth[32], path[64];
static int sender = -1;
static netlab_mgr *mgr;
static bool pcapng; /* kdiag trials write pcapng */

typedef enum { CAP_KDIAG, CAP_TCPDUMP, CAP_RECVMMSG, CAP_RING } capturer;
static const char *const cap_names[] = {"kdiag", "tcpdump", "recvmmsg", "ring"};
#define RING_BLOCK (1u << 18) /* the manager's ring (manager/capture.c) */
#define RING_BLOCKS 128u

typedef struct {
    uint64_t sent, got, drops;
    double secs;     /* sending took */
    double cpu_s;    /* the capturer's CPU (manager or tcpdump) during the trial */
    double client_s; /* kdiag: the client's (this process but the sender) */
    bool gen_limit;  /* the sender could not reach the rate asked */
} trial;

/* n datagrams of payload bytes at rate per second; returns the seconds it took. */
static double blast(size_t payload, uint64_t rate, uint64_t n)
{
    static char buf[1500];
    struct iovec iov = {buf, payload};
    struct mmsghdr msgs[64];
    for (int i = 0; i < 64; i++)
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};
    int64_t t0 = time_now_us();
    uint64_t sent = 0;
    while (sent < n) {
        uint64_t due = (uint64_t)(time_now_us() - t0) * rate / 1000000 + 1;
        if (due > n)
            due = n;
        if (due <= sent)
            continue;
        unsigned k = due - sent < 64 ? (unsigned)(due - sent) : 64;
        int r = sendmmsg(sender, msgs, k, 0);
        CHECK(r > 0 || errno == ENOBUFS || errno == EAGAIN, "sendmmsg: %s", strerror(errno));
        if (r > 0)
            sent += (uint64_t)r;
    }
    return (double)(time_now_us() - t0) / 1e6;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double proc_cpu_s(pid_t pid)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s", p);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    CHECK(n > 0, "read %s", p);
    buf[n] = 0;
    unsigned long ut = 0, st = 0;
    char *q = strrchr(buf, ')');
    CHECK(q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2, "parse %s", p);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- kdiag: the manager + capture_client ---- */
typedef struct {
    capture_client *cc;
    int fd;
    capture_client_stats s;
    rpc_status st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, ended;
} kd_run;

static int kd_progress(void *ud, const capture_client_stats *s)
{
    kd_run *r = ud;
    pthread_mutex_lock(&r->mu);
    r->ready = s->ready;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static void *kd_thread(void *arg)
{
    kd_run *r = arg;
    capture_client_run(r->cc, r->fd, kd_progress, r, &r->s, &r->st);
    pthread_mutex_lock(&r->mu);
    r->ended = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Waits up to ms for cond (ready or ended) under r->mu. */
static bool kd_wait(kd_run *r, bool *flag, int ms)
{
    pthread_mutex_lock(&r->mu);
    struct timespec ts = time_deadline_ts(CLOCK_REALTIME, ms);
    while (!*flag && pthread_cond_timedwait(&r->cv, &r->mu, &ts) == 0)
        ;
    bool v = *flag;
    pthread_mutex_unlock(&r->mu);
    return v;
}

static void trial_kdiag(netlab_mgr *m, size_t payload, uint64_t rate, double secs, trial *t)
{
    kd_run r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    uint64_t n = (uint64_t)((double)rate * secs);
    capture_client_req req = {.interface = veth, .filter = FILTER, .count = n};
    r.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(r.fd >= 0 && capture_client_new(&r.cc, m->client, &req) == 0, "start kdiag capture");
    capture_pcapng *w = NULL;
    if (pcapng)
        CHECK(capture_pcapng_new(&w, r.fd) == 0 && capture_client_set_pcapng(r.cc, w, "pod/bench") == 0, "pcapng");
    pthread_t th;
    CHECK(pthread_create(&th, NULL, kd_thread, &r) == 0, "thread");
    CHECK(kd_wait(&r, &r.ready, 10000), "kdiag capture not ready: %s", r.st.message);
    double cpu0 = proc_cpu_s(m->pid), self0 = self_cpu_s(), send0 = thread_cpu_s();
    t->secs = blast(payload, rate, n);
    double send_s = thread_cpu_s() - send0;
    if (!kd_wait(&r, &r.ended, 2000)) /* short of n: drops */
        capture_client_cancel(r.cc);
    pthread_join(th, NULL);
    t->cpu_s = proc_cpu_s(m->pid) - cpu0;
    t->client_s = self_cpu_s() - self0 - send_s;
    t->sent = n;
    t->got = r.s.packets;
    t->drops = r.s.kernel_drops;
    capture_client_free(r.cc);
    capture_pcapng_free(w);
    close(r.fd);
    unlink(path);
}

/* ---- tcpdump -w ---- */
static void trial_tcpdump(size_t payload, uint64_t rate, double secs, trial *t)
{
    uint64_t n = (uint64_t)((double)rate * secs);
    char count[32];
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(p[1], 2);
        execlp("tcpdump", "tcpdump", "-n", "-i", veth, "-B", "32768", "-c", count, "-w", path, FILTER, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char err[4096];
    size_t len = 0;
    int64_t until = time_now_ms() + 10000;
    while (!memmem(err, len, "listening on", 12) && time_now_ms() < until) {
        struct pollfd pf = {p[0], POLLIN, 0};
        if (poll(&pf, 1, 100) == 1) {
            ssize_t r = read(p[0], err + len, sizeof err - 1 - len);
            CHECK(r > 0, "tcpdump exited before listening");
            len += (size_t)r;
        }
    }
    CHECK(memmem(err, len, "listening on", 12), "tcpdump did not start");
    t->secs = blast(payload, rate, n);
    int status = 0;
    struct rusage ru;
    for (int64_t end = time_now_ms() + 2000; time_now_ms() < end;)
        if (wait4(pid, &status, WNOHANG, &ru) == pid)
            goto done;
        else
            usleep(10000);
    kill(pid, SIGINT);
    CHECK(wait4(pid, &status, 0, &ru) == pid, "wait tcpdump");
done:
    for (ssize_t r; (r = read(p[0], err + len, sizeof err - 1 - len)) > 0;)
        len += (size_t)r;
    close(p[0]);
    err[len] = 0;
    unsigned long long got = 0, drops = 0;
    const char *c = strstr(err, " packets captured");
    const char *d = strstr(err, " packets dropped by kernel");
    while (c && c > err && c[-1] >= '0' && c[-1] <= '9')
        c--;
    while (d && d > err && d[-1] >= '0' && d[-1] <= '9')
        d--;
    CHECK(c && d && sscanf(c, "%llu", &got) == 1 && sscanf(d, "%llu", &drops) == 1, "tcpdump said: %s", err);
    t->sent = n;
    t->got = got;
    t->drops = drops;
    t->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
               ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    unlink(path);
}

/* ---- readers alone: recvmmsg or a TPACKET_V3 ring ---- */
typedef struct {
    capturer kind;
    int fd;
    uint8_t *ring;
    bool stop;    /* __atomic */
    uint64_t got; /* __atomic: our datagrams seen */
    double cpu_s;
} reader;

static bool is_ours(const uint8_t *f, size_t n)
{
    return n >= 42 && f[12] == 0x08 && f[13] == 0 && f[23] == IPPROTO_UDP && f[36] == 0 && f[37] == UDP_PORT;
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    static uint8_t bufs[64][2048];
    struct iovec iov[64];
    struct mmsghdr msgs[64];
    for (int i = 0; i < 64; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    double t0 = thread_cpu_s();
    unsigned next = 0;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint64_t n = 0;
        if (r->kind == CAP_RECVMMSG) {
            int k = recvmmsg(r->fd, msgs, 64, MSG_DONTWAIT, NULL);
            for (int i = 0; i < k; i++)
                n += is_ours(bufs[i], msgs[i].msg_len);
            if (k <= 0)
                poll(&(struct pollfd){r->fd, POLLIN, 0}, 1, 20);
        } else {
            struct tpacket_block_desc *bd = (void *)(r->ring + (size_t)next * RING_BLOCK);
            if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
                poll(&(struct pollfd){r->fd, POLLIN, 0}, 1, 20);
                continue;
            }
            uint8_t *h = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
            for (uint32_t i = 0; i < bd->hdr.bh1.num_pkts; i++) {
                struct tpacket3_hdr *th = (void *)h;
                n += is_ours(h + th->tp_mac, th->tp_snaplen);
                h += th->tp_next_offset;
            }
            __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            next = (next + 1) % RING_BLOCKS;
        }
        __atomic_add_fetch(&r->got, n, __ATOMIC_RELEASE);
    }
    r->cpu_s = thread_cpu_s() - t0;
    return NULL;
}

static void trial_reader(capturer kind, size_t payload, uint64_t rate, double secs, trial *t)
{
    reader r = {.kind = kind};
    uint64_t n = (uint64_t)((double)rate * secs);
    r.fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    CHECK(r.fd >= 0, "packet socket: %s", strerror(errno));
    if (kind == CAP_RING) {
        int ver = TPACKET_V3;
        struct tpacket_req3 req = {.tp_block_size = RING_BLOCK,
                                   .tp_block_nr = RING_BLOCKS,
                                   .tp_frame_size = 2048,
                                   .tp_frame_nr = RING_BLOCK / 2048 * RING_BLOCKS,
                                   .tp_retire_blk_tov = 10};
        CHECK(setsockopt(r.fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof ver) == 0 &&
                  setsockopt(r.fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) == 0,
              "ring: %s", strerror(errno));
        r.ring = mmap(NULL, (size_t)RING_BLOCK * RING_BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
        CHECK(r.ring != MAP_FAILED, "mmap: %s", strerror(errno));
    } else {
        int sz = (int)(RING_BLOCK * RING_BLOCKS);
        CHECK(setsockopt(r.fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) == 0, "SO_RCVBUFFORCE: %s",
              strerror(errno));
    }
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)if_nametoindex(veth)};
    CHECK(bind(r.fd, (struct sockaddr *)&sll, sizeof sll) == 0, "bind: %s", strerror(errno));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, reader_main, &r) == 0, "thread");
    t->secs = blast(payload, rate, n);
    for (int64_t end = time_now_ms() + 2000; time_now_ms() < end && __atomic_load_n(&r.got, __ATOMIC_ACQUIRE) < n;)
        usleep(10000);
    __atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    struct tpacket_stats_v3 st = {0};
    socklen_t len = kind == CAP_RING ? sizeof st : sizeof(struct tpacket_stats);
    getsockopt(r.fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);
    t->sent = n;
    t->got = r.got;
    t->drops = st.tp_drops;
    t->cpu_s = r.cpu_s;
    if (r.ring)
        munmap(r.ring, (size_t)RING_BLOCK * RING_BLOCKS);
    close(r.fd);
}

/* One trial; retried twice when the sender fell short of the rate (load). */
static void run(capturer kind, size_t payload, uint64_t rate, double secs, trial *t)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        memset(t, 0, sizeof *t);
        if (kind == CAP_KDIAG)
            trial_kdiag(mgr, payload, rate, secs, t);
        else if (kind == CAP_TCPDUMP)
            trial_tcpdump(payload, rate, secs, t);
        else
            trial_reader(kind, payload, rate, secs, t);
        t->gen_limit = (double)t->sent / t->secs < 0.9 * (double)rate;
        if (!t->gen_limit)
            break;
    }
    printf("    %-8s %5zu B  %8llu pps asked, %8.0f sent: %llu of %llu, %llu kernel drops; CPU %.2f s%s\n",
           cap_names[kind], payload, (unsigned long long)rate, (double)t->sent / t->secs,
           (unsigned long long)t->got, (unsigned long long)t->sent, (unsigned long long)t->drops,
           t->cpu_s + t->client_s, kind == CAP_KDIAG ? " (manager + client)" : "");
}

typedef struct {
    capturer kind;
    bool failed;
    bool gen_limited; /* the rate asked is twice what the sender reached: its limit, not the capturer's */
    double rate;      /* the highest rate sent with zero drops */
    trial best;
} ladder;

/* Rates 25k, x1.25, ... up to the first loss (or the sender's limit) of each
 * capturer, the two taking turns at each rate so that the load of the
 * machine, which changes, weighs on both alike. */
static void climb(ladder *l, size_t n, size_t payload, double secs)
{
    for (double r = RATE_START; r <= RATE_MAX; r *= 1.25) {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            if (l[i].failed || l[i].gen_limited)
                continue;
            any = true;
            trial t;
            run(l[i].kind, payload, (uint64_t)r, secs, &t);
            if (t.got != t.sent || t.drops) {
                l[i].failed = true;
                continue;
            }
            if ((double)t.sent / t.secs > l[i].rate) {
                l[i].best = t;
                l[i].rate = (double)t.sent / t.secs;
            }
            l[i].gen_limited = r * 1.25 > 2 * l[i].rate;
        }
        if (!any)
            return;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: capture_bench KDIAG_MANAGER [seconds per trial] [64|1514|both] [readers|pcapng]\n");
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 1.0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(path, sizeof path, "/tmp/kdiag-capture-bench-%d.pcap", (int)getpid());
    snprintf(veth, sizeof veth, "kdrq%d", (int)getpid()); /* netlab's pod end of the veth */
    netlab_init();
    netlab_mgr m;
    netlab_mgr_start(&m, argv[1], false);
    mgr = &m;
    bool readers = argc > 4 && strcmp(argv[4], "readers") == 0;
    pcapng = argc > 4 && strcmp(argv[4], "pcapng") == 0; /* kdiag writes pcapng (tcpdump -w stays pcap) */

    /* the pod's socket takes the datagrams and never reads: no ICMP back */
    int sink = netlab_socket_type(NS_POD, AF_INET, SOCK_DGRAM);
    sender = netlab_socket_type(NS_PEER, AF_INET, SOCK_DGRAM);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT)};
    inet_pton(AF_INET, POD_IP4, &a.sin_addr);
    CHECK(sink >= 0 && sender >= 0 && bind(sink, (struct sockaddr *)&a, sizeof a) == 0 &&
              connect(sender, (struct sockaddr *)&a, sizeof a) == 0,
          "udp sockets: %s", strerror(errno));

    static const struct {
        size_t payload;
        const char *what;
    } sizes[] = {{22, "64-byte frames"}, {1472, "1514-byte frames (1500-byte IP packets)"}};
    for (size_t i = 0; i < 2; i++) {
        if (argc > 3 && atoi(argv[3]) && (size_t)atoi(argv[3]) != sizes[i].payload + 42)
            continue;
        printf("%s, %.1f s per trial:\n", sizes[i].what, secs);
        if (readers) {
            ladder l[2] = {{.kind = CAP_RECVMMSG}, {.kind = CAP_RING}};
            climb(l, 2, sizes[i].payload, secs);
            printf("  zero-drop rate: recvmmsg %s%.0f pps, TPACKET_V3 ring %s%.0f pps; CPU per million packets: "
                   "recvmmsg %.3f s, ring %.3f s\n",
                   l[0].gen_limited ? ">= " : "", l[0].rate, l[1].gen_limited ? ">= " : "", l[1].rate,
                   l[0].best.got ? l[0].best.cpu_s * 1e6 / (double)l[0].best.got : 0,
                   l[1].best.got ? l[1].best.cpu_s * 1e6 / (double)l[1].best.got : 0);
            continue;
        }
        ladder l[2] = {{.kind = CAP_KDIAG}, {.kind = CAP_TCPDUMP}};
        climb(l, 2, sizes[i].payload, secs);
        printf("  zero-drop rate: kdiag %s%.0f pps, tcpdump -w %s%.0f pps: ratio %.2f (goal >= 0.8)%s\n",
               l[0].gen_limited ? ">= " : "", l[0].rate, l[1].gen_limited ? ">= " : "", l[1].rate,
               l[1].rate > 0 ? l[0].rate / l[1].rate : 0,
               l[0].gen_limited || l[1].gen_limited ? " (the sender's limit reached: a bound, not a ratio)" : "");
        printf("  CPU per million packets at that rate: manager %.2f s (client %.2f s), tcpdump %.2f s\n",
               l[0].best.got ? l[0].best.cpu_s * 1e6 / (double)l[0].best.got : 0,
               l[0].best.got ? l[0].best.client_s * 1e6 / (double)l[0].best.got : 0,
               l[1].best.got ? l[1].best.cpu_s * 1e6 / (double)l[1].best.got : 0);
    }
    rpc_client_free(m.client);
    netlab_mgr_stop(&m);
    return 0;
}
