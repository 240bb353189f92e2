/* capture — see capture.h and docs/capture.md. */
#include "capture-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/alloc-util.h"
#include "basic/text-util.h"
#include "basic/time-util.h"
#include "contract.h"
#include "kdiag.pb-c.h"
#include "proto_check.h"

/* The ring: 128 blocks of 256 KiB, 32 MiB of kernel memory while a capture
 * runs. Packets cross two processes and gRPC before they are on disk, and a
 * loaded node stalls that pipeline for longer than tcpdump's single thread:
 * 8 MiB dropped 1514-byte frames from ~30-50k pps under load, 32 MiB kept up
 * with the sender (bench/README.md). A block goes to us when full or after
 * CAPTURE_BLOCK_TOV_MS, and becomes one CaptureResponse. */
#define CAPTURE_BLOCK_SIZE (1u << 18)
#define CAPTURE_BLOCKS 128u
#define CAPTURE_BLOCK_TOV_MS 10u
#define CAPTURE_RESERVE 32u /* headroom before a cooked packet: its SLL2 header goes there */
/* Captures one manager runs at once: each holds a ring, kernel memory of the
 * node that the pod's memory limit does not count (12 at once took ~600 MB).
 * 4: 128 MiB at most, and room for a few people capturing one pod with
 * different filters; one more is refused at once (docs/capture.md). */
#define CAPTURE_RUNNING_MAX 4
/* An interface name as a message shows it (text_shown: escaped, so that a
 * newline or an escape sequence in -i cannot forge lines on the user's
 * terminal; cut in the middle when long; a real one has at most 15 bytes). */
#define CAPTURE_IF_SHOWN 24u
typedef char capture_if_shown[TEXT_SHOWN_SIZE(CAPTURE_IF_SHOWN, CAPTURE_IF_SHOWN)];

typedef struct {
    int fd;
    uint8_t *ring;
    unsigned next; /* the block to read next */
    bool cooked;   /* SOCK_DGRAM: the link-layer header is rebuilt as SLL2 */
    uint32_t snaplen, linktype;
    uint64_t count, captured, kernel_drops;
    Kdiag__Solo__Io__CapturePacket *pkts; /* one block's packets, data pointing into the ring */
    Kdiag__Solo__Io__CapturePacket **pptrs;
    size_t cap;
    uint8_t *out; /* the packed message */
    size_t out_cap;
} capture_run;

#ifdef KDIAG_PCAP_STATIC
/* libpcap's D-Bus capture source, never used (only pcap_compile is): defined
 * here so the static link does not pull pcap-dbus.o and libdbus with it
 * (cmake/static-deps.cmake). */
int dbus_findalldevs(void *devlist, char *errbuf);
pcap_t *dbus_create(const char *device, char *errbuf, int *is_ours);
int dbus_findalldevs(void *devlist, char *errbuf)
{
    (void)devlist;
    (void)errbuf;
    return 0;
}
pcap_t *dbus_create(const char *device, char *errbuf, int *is_ours)
{
    (void)device;
    (void)errbuf;
    *is_ours = 0;
    return NULL;
}
#endif

int capture_fix_program(struct sock_filter *f, size_t n, bool cooked, uint32_t snap)
{
    for (size_t i = 0; i < n; i++) {
        struct sock_filter *p = &f[i];
        if (BPF_CLASS(p->code) == BPF_RET && BPF_RVAL(p->code) == BPF_K && p->k)
            p->k = snap;
        if (!cooked || (BPF_CLASS(p->code) != BPF_LD && BPF_CLASS(p->code) != BPF_LDX))
            continue;
        unsigned mode = BPF_MODE(p->code);
        if ((mode != BPF_ABS && mode != BPF_IND && mode != BPF_MSH) || p->k >= (uint32_t)SKF_AD_OFF)
            continue;
        if (p->k >= CAPTURE_SLL2_LEN)
            p->k -= CAPTURE_SLL2_LEN;
        else if (p->k == 0)
            p->k = (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL);
        else if (p->k == 4)
            p->k = (uint32_t)(SKF_AD_OFF + SKF_AD_IFINDEX);
        else if (p->k == 10)
            p->k = (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE);
        else
            return -EINVAL;
    }
    return 0;
}

void capture_sll2_header(uint8_t out[CAPTURE_SLL2_LEN], const struct sockaddr_ll *sll)
{
    uint32_t ifindex = htonl((uint32_t)sll->sll_ifindex);
    uint16_t hatype = htons(sll->sll_hatype);
    memset(out, 0, CAPTURE_SLL2_LEN);
    memcpy(out, &sll->sll_protocol, 2); /* already in network order */
    memcpy(out + 4, &ifindex, 4);
    memcpy(out + 8, &hatype, 2);
    out[10] = sll->sll_pkttype;
    out[11] = sll->sll_halen < 8 ? sll->sll_halen : 8;
    memcpy(out + 12, sll->sll_addr, out[11]);
}

/* Packs resp and sends it. 0 or -errno (-ECANCELED: the call ended). */
static int send_resp(rpc_call *call, capture_run *r, const Kdiag__Solo__Io__CaptureResponse *resp)
{
    size_t n = kdiag__solo__io__capture_response__get_packed_size(resp);
    if (GROW_ARRAY(r->out, r->out_cap, n, 4096) < 0)
        return -ENOMEM;
    kdiag__solo__io__capture_response__pack(resp, r->out);
    return rpc_call_send(call, r->out, n);
}

/* Adds the kernel's drops since the last call to r->kernel_drops. */
static void read_drops(capture_run *r)
{
    struct tpacket_stats_v3 st;
    socklen_t len = sizeof st;
    if (getsockopt(r->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
        r->kernel_drops += st.tp_drops;
}

static int grow(capture_run *r, size_t n)
{
    if (n <= r->cap)
        return 0;
    Kdiag__Solo__Io__CapturePacket *p = realloc(r->pkts, n * sizeof *p);
    if (p)
        r->pkts = p;
    Kdiag__Solo__Io__CapturePacket **pp = realloc(r->pptrs, n * sizeof *pp);
    if (pp)
        r->pptrs = pp;
    if (!p || !pp)
        return -ENOMEM;
    r->cap = n;
    return 0;
}

/* Sends the packets of one block the kernel handed over (up to the count
 * limit). A loopback device's packets come twice, going out and coming in:
 * like libpcap, only the incoming copy is kept. 0 or -errno. */
static int send_block(rpc_call *call, capture_run *r, struct tpacket_block_desc *bd)
{
    size_t total = bd->hdr.bh1.num_pkts, n = 0;
    int rc = grow(r, total);
    if (rc < 0)
        return rc;
    const size_t sll_off = TPACKET_ALIGN(sizeof(struct tpacket3_hdr));
    uint8_t *h = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
    for (size_t i = 0; i < total && (!r->count || r->captured + n < r->count); i++) {
        uint8_t *pkt = h;
        struct tpacket3_hdr *th = (struct tpacket3_hdr *)pkt;
        const struct sockaddr_ll *sll = (const struct sockaddr_ll *)(pkt + sll_off);
        h += th->tp_next_offset;
        if (sll->sll_pkttype == PACKET_OUTGOING && sll->sll_hatype == ARPHRD_LOOPBACK)
            continue;
        Kdiag__Solo__Io__CapturePacket *p = &r->pkts[n];
        kdiag__solo__io__capture_packet__init(p);
        p->timestamp_ns = (uint64_t)th->tp_sec * 1000000000u + th->tp_nsec;
        p->ifindex = (uint32_t)sll->sll_ifindex;
        uint32_t hdr = 0;
        uint8_t *data = pkt + th->tp_mac;
        if (r->cooked) {
            /* PACKET_RESERVE leaves room between the sockaddr_ll and the packet */
            if (th->tp_net < sll_off + sizeof *sll + CAPTURE_SLL2_LEN)
                return -EPROTO;
            data = pkt + th->tp_net - CAPTURE_SLL2_LEN;
            capture_sll2_header(data, sll);
            hdr = CAPTURE_SLL2_LEN;
        }
        p->original_length = th->tp_len + hdr;
        p->data.data = data;
        p->data.len = th->tp_snaplen + hdr < r->snaplen ? th->tp_snaplen + hdr : r->snaplen;
        r->pptrs[n++] = p;
    }
    if (n == 0)
        return 0;
    read_drops(r);
    r->captured += n;
    Kdiag__Solo__Io__CaptureResponse resp = KDIAG__SOLO__IO__CAPTURE_RESPONSE__INIT;
    resp.packets = r->pptrs;
    resp.n_packets = n;
    resp.captured = r->captured;
    resp.kernel_drops = r->kernel_drops;
    return send_resp(call, r, &resp);
}

/* The ready message: link type, snap length and the namespace's interfaces. */
static int send_ready(rpc_call *call, capture_run *r)
{
    Kdiag__Solo__Io__CaptureResponse resp = KDIAG__SOLO__IO__CAPTURE_RESPONSE__INIT;
    Kdiag__Solo__Io__CaptureInterface ifs[64], *ifp[64];
    struct if_nameindex *ni = if_nameindex();
    size_t n = 0;
    for (size_t i = 0; ni && ni[i].if_index && n < 64; i++, n++) {
        kdiag__solo__io__capture_interface__init(&ifs[n]);
        ifs[n].index = ni[i].if_index;
        ifs[n].name = ni[i].if_name;
        ifp[n] = &ifs[n];
    }
    resp.ready = true;
    resp.linktype = r->linktype;
    resp.snaplen = r->snaplen;
    resp.interfaces = ifp;
    resp.n_interfaces = n;
    int rc = send_resp(call, r, &resp);
    if (ni)
        if_freenameindex(ni);
    return rc;
}

/* filter as a message quotes it: whole when short, else its start and its
 * length, so that the reason after it still fits the message; on one line
 * (a filter read from a file has several: its line ends are blanks to
 * libpcap), other control bytes escaped (text_shown: an escape sequence
 * would reach the user's terminal). buf: CAPTURE_FILTER_SHOWN bytes. */
#define CAPTURE_FILTER_CUT 128u
#define CAPTURE_FILTER_SHOWN TEXT_SHOWN_SIZE(4 * CAPTURE_FILTER_CUT, 0)
static const char *filter_quoted(const char *filter, char *buf)
{
    char cut[CAPTURE_FILTER_CUT];
    size_t n = strlen(filter);
    if (n <= 100)
        snprintf(cut, sizeof cut, "%s", filter);
    else
        snprintf(cut, sizeof cut, "%.80s... (%zu bytes)", filter, n);
    for (char *c = cut; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    return text_shown(buf, cut, 4 * CAPTURE_FILTER_CUT, 0); /* never cut: 4 bytes a byte at most */
}

/* Compiles filter for r->linktype, without the traffic of own (a filter
 * expression, "" for none), and attaches it to r->fd. 0, or -EINVAL with the
 * reason in err. */
static int attach_filter(capture_run *r, const char *filter, const char *own, char *err, size_t errlen)
{
    struct bpf_program prog = {0}, both = {0};
    char q[CAPTURE_FILTER_SHOWN];
    const char *quoted = filter_quoted(filter, q);
    pcap_t *p = pcap_open_dead((int)r->linktype, (int)r->snaplen);
    int rc = -ENOMEM;
    if (!p)
        goto out;
    if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0) { /* the user's, on its own: its error */
        snprintf(err, errlen, "filter '%s': %s", quoted, pcap_geterr(p));
        rc = -EINVAL;
        goto out;
    }
    /* a filter of only blanks is none: "( ) and not (...)" would not compile,
     * and the capture would record its own stream */
    bool blank = filter[strspn(filter, " \t\r\n")] == '\0';
    char expr[CONTRACT_CAPTURE_FILTER_MAX + 128];
    snprintf(expr, sizeof expr, blank ? "%.0snot (%s)" : "(%s) and not (%s)", filter, own);
    if (own[0] && pcap_compile(p, &both, expr, 1, PCAP_NETMASK_UNKNOWN) == 0) {
        pcap_freecode(&prog);
        prog = both;
    }
    if (prog.bf_len > BPF_MAXINSNS) { /* the kernel's limit for a classic program */
        snprintf(err, errlen,
                 "filter '%s' compiles to %u instructions, the kernel takes %d: make it shorter "
                 "(a portrange or a net instead of many ports or hosts)",
                 quoted, prog.bf_len, BPF_MAXINSNS);
        rc = -EINVAL;
        goto out;
    }
    uint32_t snap = r->cooked ? (r->snaplen > CAPTURE_SLL2_LEN ? r->snaplen - CAPTURE_SLL2_LEN : 1) : r->snaplen;
    struct sock_fprog fp = {.len = (unsigned short)prog.bf_len, .filter = (struct sock_filter *)prog.bf_insns};
    if (capture_fix_program(fp.filter, fp.len, r->cooked, snap) < 0) {
        snprintf(err, errlen,
                 "filter '%s' reads link-layer fields the kernel does not give on interface 'any'; "
                 "capture on one interface (-i) to use it",
                 quoted);
        rc = -EINVAL;
        goto out;
    }
    rc = 0;
    if (setsockopt(r->fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) < 0) {
        rc = -errno;
        snprintf(err, errlen, "attaching filter '%s' to the socket: %s", quoted, strerror(errno));
    }
out:
    pcap_freecode(&prog);
    if (p)
        pcap_close(p);
    return rc;
}

/* The ARPHRD_* type of interface name, or -1. */
static int if_hatype(const char *name)
{
    struct ifreq ifr = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), type = -1;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (fd >= 0 && ioctl(fd, SIOCGIFHWADDR, &ifr) == 0)
        type = ifr.ifr_hwaddr.sa_family;
    if (fd >= 0)
        close(fd);
    return type;
}

/* The namespace's interface names, ", " between them, into out. */
static void if_names(char *out, size_t len)
{
    struct if_nameindex *ni = if_nameindex();
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; ni && ni[i].if_index && n < len; i++) {
        int w = snprintf(out + n, len - n, "%s%s", i ? ", " : "", ni[i].if_name);
        n += w > 0 ? (size_t)w : 0;
    }
    if (ni)
        if_freenameindex(ni);
}

/* The socket's pending error (read once: the kernel clears it), or 0. The
 * kernel sets ENETDOWN on a socket bound to an interface that is down, goes
 * down or is removed, and stops giving it that interface's packets. */
static int socket_error(int fd)
{
    int e = 0;
    socklen_t len = sizeof e;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 ? errno : e;
}

/* The socket, its ring and filter, bound to ifname ("" or "any": all).
 * 0, or -errno with the reason in err (-EINVAL: the request's fault, -EPERM:
 * no CAP_NET_RAW, -ENETDOWN: the interface is down). */
static int open_socket(capture_run *r, const char *ifname, const char *filter, const char *own, char *err, size_t errlen)
{
    unsigned ifindex = 0;
    int rc;
    capture_if_shown shown;
    text_shown(shown, ifname, CAPTURE_IF_SHOWN, CAPTURE_IF_SHOWN);
    if (ifname[0] && strcmp(ifname, "any") != 0) {
        if (strlen(ifname) >= IF_NAMESIZE || !(ifindex = if_nametoindex(ifname))) {
            char names[256];
            if_names(names, sizeof names);
            snprintf(err, errlen,
                     "no interface '%s' in the pod's network namespace, which has %s: name one of them (-i), "
                     "or any for all",
                     shown, names);
            return -EINVAL;
        }
    }
    /* One Ethernet(-like) interface: its frames as they are; else cooked. */
    int hatype = ifindex ? if_hatype(ifname) : ARPHRD_NONE;
    r->cooked = hatype != ARPHRD_ETHER && hatype != ARPHRD_LOOPBACK;
    r->linktype = r->cooked ? CAPTURE_LINKTYPE_SLL2 : CAPTURE_LINKTYPE_ETHERNET;
    /* Protocol 0: nothing is queued before the filter is on and bind names ETH_P_ALL. */
    int fd = socket(AF_PACKET, (r->cooked ? SOCK_DGRAM : SOCK_RAW) | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open a packet socket: %s%s", strerror(errno),
                 errno == EPERM ? " (capture needs the NET_RAW capability)" : "");
        return rc;
    }
    r->fd = fd;
    int ver = TPACKET_V3, reserve = CAPTURE_RESERVE;
    struct tpacket_req3 req = {
        .tp_block_size = CAPTURE_BLOCK_SIZE,
        .tp_block_nr = CAPTURE_BLOCKS,
        .tp_frame_size = 2048,
        .tp_frame_nr = CAPTURE_BLOCK_SIZE / 2048 * CAPTURE_BLOCKS,
        .tp_retire_blk_tov = CAPTURE_BLOCK_TOV_MS,
    };
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof ver) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof reserve) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        rc = -errno;
        snprintf(err, errlen, "setting up the TPACKET_V3 ring: %s", strerror(errno));
        return rc;
    }
    void *ring = mmap(NULL, (size_t)CAPTURE_BLOCK_SIZE * CAPTURE_BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "mapping the ring: %s", strerror(errno));
        return rc;
    }
    r->ring = ring;
    if ((rc = attach_filter(r, filter, own, err, errlen)) < 0)
        return rc;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex};
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        rc = -errno;
        snprintf(err, errlen, "binding the packet socket to '%s': %s", ifindex ? shown : "any", strerror(errno));
        return rc;
    }
    if (socket_error(fd) == ENETDOWN) {
        snprintf(err, errlen,
                 "interface '%s' is down: nothing on it can be captured; capture on any, or once it is up", shown);
        return -ENETDOWN;
    }
    return 0;
}

/* Streams blocks until the count, the duration or the call ends, or the
 * interface goes (-ENETDOWN, after what the kernel held). 0 or -errno. */
static int capture_loop(rpc_call *call, capture_run *r, uint32_t duration_ms)
{
    int64_t deadline = duration_ms ? time_now_ms() + duration_ms : 0;
    bool closing = false; /* past the deadline: one last block timeout for what the kernel holds */
    int end = 0;          /* what the loop returns once closed: 0, or -ENETDOWN */
    for (;;) {
        struct tpacket_block_desc *bd;
        while ((bd = (void *)(r->ring + (size_t)r->next * CAPTURE_BLOCK_SIZE)),
               __atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) {
            int rc = send_block(call, r, bd);
            __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            r->next = (r->next + 1) % CAPTURE_BLOCKS;
            if (rc < 0)
                return rc;
            if (r->count && r->captured >= r->count)
                return 0;
            if (deadline && time_now_ms() >= deadline)
                break; /* a client slower than the traffic always finds a full block */
        }
        int timeout = -1;
        if (deadline) {
            int64_t left = deadline - time_now_ms();
            if (left <= 0 && closing)
                return end;
            if (left <= 0) {
                closing = true;
                deadline += 2 * CAPTURE_BLOCK_TOV_MS;
                left = 2 * CAPTURE_BLOCK_TOV_MS;
            }
            timeout = (int)left;
        }
        struct pollfd pf[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = rpc_call_cancel_fd(call), .events = POLLIN}};
        if (poll(pf, 2, timeout) < 0 && errno != EINTR)
            return -errno;
        if (pf[1].revents || rpc_call_cancelled(call))
            return -ECANCELED;
        if (pf[0].revents & (POLLERR | POLLNVAL)) {
            int e = socket_error(r->fd);
            if (e != ENETDOWN || end)
                return e ? -e : -EIO;
            /* the interface went: its last packets are in a block the kernel hands over within its timeout */
            end = -ENETDOWN;
            closing = true;
            deadline = time_now_ms() + 2 * CAPTURE_BLOCK_TOV_MS;
        }
    }
}

/* The request, checked. NULL with code and message set on the call. */
static Kdiag__Solo__Io__CaptureRequest *read_request(rpc_call *call, grpc_status_code *code)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    Kdiag__Solo__Io__CaptureRequest *req = NULL;
    int rc = rpc_call_recv(call, &buf, &len);
    *code = GRPC_STATUS_INVALID_ARGUMENT;
    if (rc == -ECANCELED) {
        *code = GRPC_STATUS_CANCELLED;
    } else if (rc < 0) {
        rpc_call_set_message(call, "Capture: no request message (%s); send one CaptureRequest", strerror(-rc));
    } else if (!(req = kdiag__solo__io__capture_request__unpack(NULL, len, buf))) {
        rpc_call_set_message(call, "Capture: request (%zu bytes) is not a valid kdiag.solo.io.CaptureRequest", len);
    } else if (proto_has_nul_string(&kdiag__solo__io__capture_request__descriptor, buf, len)) {
        rpc_call_set_message(call, "Capture: the interface or the filter has a NUL byte");
    } else if (req->snaplen > CAPTURE_SNAPLEN_MAX) {
        rpc_call_set_message(call, "Capture: snaplen %u is over the maximum %u", req->snaplen, CAPTURE_SNAPLEN_MAX);
    } else if (strlen(req->filter) > CONTRACT_CAPTURE_FILTER_MAX) {
        rpc_call_set_message(call, "Capture: the filter has %zu bytes, at most %u are taken", strlen(req->filter),
                             CONTRACT_CAPTURE_FILTER_MAX);
    } else {
        *code = GRPC_STATUS_OK;
    }
    free(buf);
    if (*code != GRPC_STATUS_OK && req) {
        kdiag__solo__io__capture_request__free_unpacked(req, NULL);
        req = NULL;
    }
    return req;
}

/* The filter expression of o's ports on loopback ("" for none): the
 * port-forward reaches them there. Loopback only: a peer of the pod that
 * happens to use one of them as its own port is the user's traffic. */
static void own_ports(const capture_opts *o, char *out, size_t len)
{
    int g = atomic_load(&o->grpc_port), t = o->tunnel_port;
    if (g > 0 && t > 0)
        snprintf(out, len, "(tcp port %d or tcp port %d) and (host 127.0.0.1 or host ::1)", g, t);
    else if (g > 0 || t > 0)
        snprintf(out, len, "tcp port %d and (host 127.0.0.1 or host ::1)", g > 0 ? g : t);
    else
        out[0] = '\0';
}

/* One more capture in *running, unless CAPTURE_RUNNING_MAX run. */
static bool take_slot(atomic_int *running)
{
    int n = atomic_load(running);
    while (n < CAPTURE_RUNNING_MAX && !atomic_compare_exchange_weak(running, &n, n + 1))
        ;
    return n < CAPTURE_RUNNING_MAX;
}

grpc_status_code capture_rpc_handle(rpc_call *call, void *ud)
{
    capture_opts *o = ud;
    capture_run r = {.fd = -1};
    char own[128];
    own_ports(o, own, sizeof own);
    char err[512] = "";
    grpc_status_code code;
    Kdiag__Solo__Io__CaptureRequest *req = read_request(call, &code);
    if (!req)
        return code;
    bool slot = take_slot(&o->running);
    if (!slot) {
        rpc_call_set_message(call,
                             "Capture: %d captures run in this pod already, the most at once (each holds %u MiB of "
                             "the node's memory): end one of them (Ctrl-C where it runs), then capture again",
                             CAPTURE_RUNNING_MAX, CAPTURE_BLOCK_SIZE / 1024 * CAPTURE_BLOCKS / 1024);
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    r.snaplen = req->snaplen ? req->snaplen : CAPTURE_SNAPLEN_MAX;
    r.count = req->count;
    int rc = open_socket(&r, req->interface, req->filter, own, err, sizeof err);
    if (rc == 0 && (rc = send_ready(call, &r)) == 0)
        rc = capture_loop(call, &r, req->duration_ms);
    if (rc == 0) { /* the final counts */
        Kdiag__Solo__Io__CaptureResponse resp = KDIAG__SOLO__IO__CAPTURE_RESPONSE__INIT;
        read_drops(&r);
        resp.captured = r.captured;
        resp.kernel_drops = r.kernel_drops;
        rc = send_resp(call, &r, &resp);
    }
    code = rc == 0                                        ? GRPC_STATUS_OK
           : rc == -ECANCELED || rpc_call_cancelled(call) ? GRPC_STATUS_CANCELLED
           : rc == -EINVAL                                ? GRPC_STATUS_INVALID_ARGUMENT
           : rc == -EPERM || rc == -ENETDOWN              ? GRPC_STATUS_FAILED_PRECONDITION
                                                          : GRPC_STATUS_INTERNAL;
    capture_if_shown shown;
    if (rc == -ENETDOWN && !err[0])
        snprintf(err, sizeof err, "interface '%s' went down or was removed: the capture on it ended",
                 text_shown(shown, req->interface, CAPTURE_IF_SHOWN, CAPTURE_IF_SHOWN));
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_CANCELLED)
        rpc_call_set_message(call, "Capture: %s", err[0] ? err : strerror(-rc));
out:
    if (r.ring)
        munmap(r.ring, (size_t)CAPTURE_BLOCK_SIZE * CAPTURE_BLOCKS);
    if (r.fd >= 0)
        close(r.fd);
    free(r.pkts);
    free(r.pptrs);
    free(r.out);
    kdiag__solo__io__capture_request__free_unpacked(req, NULL);
    if (slot) /* however it ended (count, duration, cancel, error), once its ring is gone */
        atomic_fetch_sub(&o->running, 1);
    return code;
}
