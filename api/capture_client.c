/* capture_client — see capture_client.h. */
#include "capture_client-internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/alloc-util.h"
#include "basic/fd-util.h"
#include "basic/time-util.h"
#include "contract.h"
#include "kdiag.pb-c.h"
#include "wire.h"

#define PCAP_FILE_HDR 24
#define PCAP_REC_HDR 16
/* pcapng (draft-ietf-opsawg-pcapng): block types, header sizes, options */
#define NG_SHB 0x0a0d0d0au
#define NG_IDB 1u
#define NG_ISB 5u
#define NG_EPB 6u
#define NG_EPB_HDR 28 /* type, length, interface, ts high, ts low, caplen, len */
#define NG_OPT_IF_NAME 2
#define NG_OPT_IF_DESCRIPTION 3
#define NG_OPT_IF_TSRESOL 9
#define NG_OPT_ISB_IFRECV 4
#define NG_OPT_ISB_OSDROP 7

struct capture_pcapng {
    int fd;
    pthread_mutex_t mu; /* one block (or batch of blocks) at a time; next_id, stalled */
    uint32_t next_id;
    bool stalled; /* a cancelled capture gave up on fd: the others do at once */
};

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* pcap is written in the writer's byte order; the magic tells readers which */
}

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

#define CANCEL_STALL_MS 1000

/* Writes to what is not a regular file (a pipe, a FIFO, a socket) in pieces
 * that cannot block, PIPE_BUF once poll says there is room, so that a reader
 * that stopped reading cannot hold a cancelled capture (c, or NULL: no
 * cancel): CANCEL_STALL_MS after the cancel without room, -ECANCELED (the
 * batch is cut short; at once for the other captures of a pcapng writer,
 * whose lock the caller holds). */
static int write_polled(capture_client *c, int fd, const uint8_t *p, size_t n)
{
    int64_t give_up = 0;
    if (c && c->ng && c->ng->stalled && atomic_load(&c->cancelled))
        return -ECANCELED;
    while (n) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int r = poll(&pf, 1, 200); /* a cancel is seen within this */
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r <= 0) {
            if (c && atomic_load(&c->cancelled) && !give_up)
                give_up = time_now_ms() + CANCEL_STALL_MS;
            if (give_up && time_now_ms() >= give_up) {
                if (c->ng)
                    c->ng->stalled = true;
                return -ECANCELED;
            }
            continue;
        }
        ssize_t w = write(fd, p, n < PIPE_BUF ? n : PIPE_BUF);
        if (w < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
    return 0;
}

/* Writes a block or batch of records whole, or not at all: when the write
 * fails part way (a full disk) at the end of a regular file, the file is cut
 * back to where it began, so it still ends on a whole record. Anything
 * else: write_polled. */
static int write_whole(capture_client *c, int fd, const void *p, size_t n)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return write_polled(c, fd, p, n);
    off_t at = lseek(fd, 0, SEEK_CUR);
    bool at_end = at >= 0 && at == st.st_size;
    int rc = fd_write_all(fd, p, n);
    if (rc < 0 && at_end && ftruncate(fd, at) == 0)
        (void)lseek(fd, at, SEEK_SET);
    return rc;
}

int capture_pcapng_new(capture_pcapng **ret, int fd)
{
    uint8_t h[28] = {0};
    uint16_t major = 1, minor = 0;
    put32(h, NG_SHB);
    put32(h + 4, sizeof h);
    put32(h + 8, 0x1a2b3c4du); /* byte-order magic: the writer's order, as for pcap */
    memcpy(h + 12, &major, 2);
    memcpy(h + 14, &minor, 2);
    memset(h + 16, 0xff, 8); /* section length: unknown */
    put32(h + 24, sizeof h);
    capture_pcapng *w = calloc(1, sizeof *w);
    *ret = NULL;
    if (!w)
        return -ENOMEM;
    w->fd = fd;
    pthread_mutex_init(&w->mu, NULL);
    int rc = write_whole(NULL, fd, h, sizeof h);
    if (rc < 0)
        capture_pcapng_free(w);
    else
        *ret = w;
    return rc;
}

void capture_pcapng_free(capture_pcapng *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int capture_client_set_pcapng(capture_client *c, capture_pcapng *w, const char *name)
{
    free(c->ng_name);
    if (!(c->ng_name = strdup(name)))
        return -ENOMEM;
    c->ng = w;
    return 0;
}

/* Room for n more bytes in c->buf after used. */
static int buf_reserve(capture_client *c, size_t used, size_t n)
{
    return GROW_ARRAY(c->buf, c->cap, used + n, 64 * 1024);
}

static size_t ng_option(uint8_t *p, uint16_t code, const void *v, size_t len)
{
    uint16_t l = (uint16_t)len;
    memcpy(p, &code, 2);
    memcpy(p + 2, &l, 2);
    memcpy(p + 4, v, len);
    memset(p + 4 + len, 0, pad4(len) - len);
    return 4 + pad4(len);
}

/* Appends an interface description block for interface ifname of this
 * capture to c->buf at *used, with the next interface id of c->ng (its lock
 * held) in *id. */
static int ng_add_idb(capture_client *c, size_t *used, const char *ifname, const capture_client_stats *s, uint32_t *id)
{
    char desc[512];
    int dl = snprintf(desc, sizeof desc, "%s %s", c->ng_name, ifname);
    size_t nl = strlen(ifname), len = 16 + 4 + pad4(nl) + 4 + pad4((size_t)dl) + 4 + 4 + 4 + 4;
    if (dl < 0 || (size_t)dl >= sizeof desc || nl > 0xffff || buf_reserve(c, *used, len) < 0)
        return -ENOMEM;
    uint8_t *p = c->buf + *used, tsresol = 9; /* timestamps in ns */
    uint16_t lt = (uint16_t)s->linktype, zero = 0;
    put32(p, NG_IDB);
    put32(p + 4, (uint32_t)len);
    memcpy(p + 8, &lt, 2);
    memcpy(p + 10, &zero, 2);
    put32(p + 12, s->snaplen);
    size_t o = 16;
    o += ng_option(p + o, NG_OPT_IF_NAME, ifname, nl);
    o += ng_option(p + o, NG_OPT_IF_DESCRIPTION, desc, (size_t)dl);
    o += ng_option(p + o, NG_OPT_IF_TSRESOL, &tsresol, 1);
    memset(p + o, 0, 4); /* opt_endofopt */
    put32(p + o + 4, (uint32_t)len);
    *used += len;
    *id = c->ng->next_id++;
    return 0;
}

/* The pcapng interface blocks of this capture's interfaces: the one asked
 * for, or all the ready message names. Under c->ng's lock. */
static int ng_on_ready(capture_client *c, capture_client_stats *s)
{
    size_t used = 0;
    int rc = 0;
    c->ng_other = UINT32_MAX;
    for (size_t i = 0; i < s->nifaces && rc == 0; i++) {
        c->ng_id[i] = UINT32_MAX;
        if (!c->iface[0] || strcmp(c->iface, s->ifaces[i].name) == 0)
            rc = ng_add_idb(c, &used, s->ifaces[i].name, s, &c->ng_id[i]);
    }
    if (rc == 0)
        rc = write_whole(c, c->ng->fd, c->buf, used);
    if (rc == 0)
        s->bytes += used;
    return rc;
}

/* At the end: an Interface Statistics Block for each interface block of
 * this capture: the packets written on it (isb_ifrecv) and, on the first
 * only, the kernel's drops (isb_osdrop: one socket serves all of them). */
static int ng_stats(capture_client *c, capture_client_stats *s)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ts = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    size_t used = 0;
    bool first = true;
    for (size_t i = 0; i < s->nifaces; i++) {
        if (c->ng_id[i] == UINT32_MAX)
            continue;
        size_t len = 20 + 12 + (first ? 12 : 0) + 4 + 4;
        if (buf_reserve(c, used, len) < 0)
            return -ENOMEM;
        uint8_t *p = c->buf + used;
        put32(p, NG_ISB);
        put32(p + 4, (uint32_t)len);
        put32(p + 8, c->ng_id[i]);
        put32(p + 12, (uint32_t)(ts >> 32));
        put32(p + 16, (uint32_t)ts);
        size_t o = 20 + ng_option(p + 20, NG_OPT_ISB_IFRECV, &s->ifaces[i].packets, 8);
        if (first)
            o += ng_option(p + o, NG_OPT_ISB_OSDROP, &s->kernel_drops, 8);
        memset(p + o, 0, 4);
        put32(p + o + 4, (uint32_t)len);
        used += len;
        first = false;
    }
    pthread_mutex_lock(&c->ng->mu);
    int rc = write_whole(c, c->ng->fd, c->buf, used);
    pthread_mutex_unlock(&c->ng->mu);
    if (rc == 0)
        s->bytes += used;
    return rc;
}

int capture_client_new(capture_client **ret, rpc_client *cl, const capture_client_req *r)
{
    Kdiag__Solo__Io__CaptureRequest req = KDIAG__SOLO__IO__CAPTURE_REQUEST__INIT;
    req.interface = (char *)(r->interface ? r->interface : "");
    req.filter = (char *)(r->filter ? r->filter : "");
    req.snaplen = r->snaplen;
    req.count = r->count;
    req.duration_ms = r->duration_ms;
    size_t len = kdiag__solo__io__capture_request__get_packed_size(&req);
    *ret = NULL;
    if (len > 65536)
        return -EMSGSIZE;
    uint8_t *buf = malloc(len ? len : 1);
    capture_client *c = calloc(1, sizeof *c);
    int rc = -ENOMEM;
    if (buf && c) {
        kdiag__solo__io__capture_request__pack(&req, buf);
        rc = rpc_client_stream_open(&c->stream, cl, CONTRACT_METHOD_CAPTURE, buf, len, 0);
        if (strcmp(req.interface, "any") != 0)
            snprintf(c->iface, sizeof c->iface, "%s", req.interface);
    }
    free(buf);
    if (rc < 0)
        free(c);
    else
        *ret = c;
    return rc;
}

static int on_ready(capture_client *c, int fd, const Kdiag__Solo__Io__CaptureResponse *m, capture_client_stats *s)
{
    uint8_t h[PCAP_FILE_HDR] = {0};
    put32(h, CAPTURE_CLIENT_PCAP_MAGIC_NS);
    uint16_t major = 2, minor = 4;
    memcpy(h + 4, &major, 2);
    memcpy(h + 6, &minor, 2);
    put32(h + 16, m->snaplen);
    put32(h + 20, m->linktype);
    s->ready = true;
    s->linktype = m->linktype;
    s->snaplen = m->snaplen;
    for (size_t i = 0; i < m->n_interfaces && s->nifaces < CAPTURE_CLIENT_IFACES_MAX; i++) {
        capture_client_iface *f = &s->ifaces[s->nifaces++];
        f->index = m->interfaces[i]->index;
        snprintf(f->name, sizeof f->name, "%s", m->interfaces[i]->name);
    }
    if (c->ng) {
        pthread_mutex_lock(&c->ng->mu);
        int rc = ng_on_ready(c, s);
        pthread_mutex_unlock(&c->ng->mu);
        return rc;
    }
    int rc = write_whole(c, fd, h, sizeof h);
    if (rc == 0)
        s->bytes += sizeof h;
    return rc;
}

/* Packets go from the received bytes straight into pcap records: protobuf-c's
 * unpack would allocate and copy each packet (measured: most of the client's
 * CPU, bench/README.md). They are read with api/wire.h, every length checked. */

/* Appends the pcap record (or pcapng block, c->ng's lock held) of one
 * CapturePacket (wire bytes pk) to c->buf at *used, and counts it in ifc[]
 * at the index of its interface in s. */
static int add_record(capture_client *c, size_t *used, wire pk, const capture_client_stats *s, uint64_t *ifc)
{
    uint64_t ts = 0, olen = 0, ifindex = 0, v;
    wire data = {NULL, NULL}, sub;
    uint32_t num;
    unsigned type;
    int rc;
    while ((rc = wire_next(&pk, &num, &type, &v, &sub)) == 0) {
        if (type == WIRE_VARINT && num == 1)
            ts = v;
        else if (type == WIRE_VARINT && num == 2)
            olen = v;
        else if (type == WIRE_VARINT && num == 3)
            ifindex = v;
        else if (type == WIRE_LEN && num == 4)
            data = sub;
    }
    if (rc < 0)
        return rc;
    size_t caplen = (size_t)(data.end - data.p);
    if (caplen > UINT32_MAX - 64)
        return -EBADMSG;
    size_t j = 0;
    while (j < s->nifaces && s->ifaces[j].index != ifindex)
        j++;
    if (j < s->nifaces)
        ifc[j]++;
    uint32_t len = olen > caplen && olen <= UINT32_MAX ? (uint32_t)olen : (uint32_t)caplen;
    if (!c->ng) {
        if (buf_reserve(c, *used, PCAP_REC_HDR + caplen) < 0)
            return -ENOMEM;
        uint8_t *p = c->buf + *used;
        put32(p, (uint32_t)(ts / 1000000000u));
        put32(p + 4, (uint32_t)(ts % 1000000000u));
        put32(p + 8, (uint32_t)caplen);
        put32(p + 12, len);
        if (caplen)
            memcpy(p + PCAP_REC_HDR, data.p, caplen);
        *used += PCAP_REC_HDR + caplen;
        return 0;
    }
    uint32_t id = j < s->nifaces ? c->ng_id[j] : UINT32_MAX;
    if (id == UINT32_MAX && c->ng_other == UINT32_MAX && ng_add_idb(c, used, "other", s, &c->ng_other) < 0)
        return -ENOMEM; /* an interface the ready message did not name (or not the one asked for) */
    if (id == UINT32_MAX)
        id = c->ng_other;
    size_t blen = NG_EPB_HDR + pad4(caplen) + 4;
    if (buf_reserve(c, *used, blen) < 0)
        return -ENOMEM;
    uint8_t *p = c->buf + *used;
    put32(p, NG_EPB);
    put32(p + 4, (uint32_t)blen);
    put32(p + 8, id);
    put32(p + 12, (uint32_t)(ts >> 32));
    put32(p + 16, (uint32_t)ts);
    put32(p + 20, (uint32_t)caplen);
    put32(p + 24, len);
    if (caplen)
        memcpy(p + NG_EPB_HDR, data.p, caplen);
    memset(p + NG_EPB_HDR + caplen, 0, pad4(caplen) - caplen);
    put32(p + blen - 4, (uint32_t)blen);
    *used += blen;
    return 0;
}

static int batch(capture_client *c, int fd, const uint8_t *buf, size_t len, capture_client_stats *s)
{
    wire w = {buf, buf + len}, sub;
    size_t used = 0;
    uint64_t n = 0, v, captured = s->captured, drops = s->kernel_drops, ifc[CAPTURE_CLIENT_IFACES_MAX] = {0};
    uint32_t num;
    unsigned type;
    int rc;
    while ((rc = wire_next(&w, &num, &type, &v, &sub)) == 0) {
        if (type == WIRE_LEN && num == 5) {
            rc = add_record(c, &used, sub, s, ifc);
            n++;
        } else if (type == WIRE_VARINT && num == 6 && v > captured) {
            captured = v;
        } else if (type == WIRE_VARINT && num == 7 && v > drops) {
            drops = v;
        } else if (type == WIRE_VARINT && num == 1 && v) {
            rc = -EBADMSG; /* a second ready message */
        }
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    rc = write_whole(c, c->ng ? c->ng->fd : fd, c->buf, used);
    if (rc < 0)
        return rc;
    s->packets += n;
    s->bytes += used;
    s->captured = captured;
    s->kernel_drops = drops;
    for (size_t j = 0; j < s->nifaces; j++)
        s->ifaces[j].packets += ifc[j];
    return 0;
}

int capture_client_batch(capture_client *c, int fd, const uint8_t *buf, size_t len, capture_client_stats *s)
{
    if (!c->ng)
        return batch(c, fd, buf, len, s);
    pthread_mutex_lock(&c->ng->mu);
    uint32_t other = c->ng_other, next = c->ng->next_id;
    int rc = batch(c, fd, buf, len, s);
    if (rc < 0 && other != c->ng_other) { /* its interface block was not written */
        c->ng_other = other;
        c->ng->next_id = next;
    }
    pthread_mutex_unlock(&c->ng->mu);
    return rc;
}

/* The first message: ready, decoded whole. */
static int on_first(capture_client *c, int fd, const uint8_t *buf, size_t len, capture_client_stats *s)
{
    Kdiag__Solo__Io__CaptureResponse *m = kdiag__solo__io__capture_response__unpack(NULL, len, buf);
    int rc = m && m->ready ? on_ready(c, fd, m, s) : -EBADMSG;
    if (m)
        kdiag__solo__io__capture_response__free_unpacked(m, NULL);
    return rc;
}

int capture_client_run(capture_client *c, int fd, capture_client_fn fn, void *ud, capture_client_stats *s,
                       rpc_status *st)
{
    rpc_status local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    memset(s, 0, sizeof *s);
    for (;;) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = rpc_stream_read(c->stream, &buf, &len, st);
        if (r < 0) {
            st->code = GRPC_STATUS_UNAVAILABLE;
            snprintf(st->message, sizeof st->message, "reading the stream: %s", strerror(-r));
            return r;
        }
        if (r == 1 && st->code != GRPC_STATUS_OK && st->code != GRPC_STATUS_CANCELLED)
            return -EPROTO;
        if (r == 1)
            return c->ng && s->ready ? ng_stats(c, s) : 0;
        r = s->ready ? capture_client_batch(c, fd, buf, len, s) : on_first(c, fd, buf, len, s);
        free(buf);
        if (r == -EBADMSG) {
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "undecodable CaptureResponse from the manager");
        }
        if (r == 0 && fn)
            r = fn(ud, s);
        if (r < 0) {
            rpc_stream_cancel(c->stream);
            return r;
        }
    }
}

void capture_client_cancel(capture_client *c)
{
    atomic_store(&c->cancelled, true);
    rpc_stream_cancel(c->stream);
}

void capture_client_free(capture_client *c)
{
    if (!c)
        return;
    rpc_stream_free(c->stream);
    free(c->ng_name);
    free(c->buf);
    free(c);
}
