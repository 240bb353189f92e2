/* capture_client — see capture_client.h. */
#include "capture_client-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract.h"
#include "kdiag.pb-c.h"

#define PCAP_FILE_HDR 24
#define PCAP_REC_HDR 16


static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* pcap is written in the writer's byte order; the magic tells readers which */
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
    if (len > 65536)
        return -EMSGSIZE;
    uint8_t *buf = malloc(len ? len : 1);
    capture_client *c = calloc(1, sizeof *c);
    int rc = -ENOMEM;
    if (buf && c) {
        kdiag__solo__io__capture_request__pack(&req, buf);
        rc = rpc_client_stream_open(&c->stream, cl, CONTRACT_METHOD_CAPTURE, buf, len, 0);
    }
    free(buf);
    if (rc < 0)
        free(c);
    else
        *ret = c;
    return rc;
}

static int on_ready(int fd, const Kdiag__Solo__Io__CaptureResponse *m, capture_client_stats *s)
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
    int rc = write_all(fd, h, sizeof h);
    if (rc == 0)
        s->bytes += sizeof h;
    return rc;
}

/* Packets go from the received bytes straight into pcap records: protobuf-c's
 * unpack would allocate and copy each packet (measured: most of the client's
 * CPU, bench/README.md). A cursor over wire bytes, every length checked. */
typedef struct {
    const uint8_t *p, *end;
} wire;

static bool wire_varint(wire *w, uint64_t *v)
{
    *v = 0;
    for (unsigned sh = 0; sh < 64 && w->p < w->end; sh += 7) {
        uint8_t b = *w->p++;
        *v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* The next field: number, wire type, and a varint in *v or a length-delimited
 * value in *sub (fixed-width values are skipped). 0, or -EBADMSG. */
static int wire_field(wire *w, uint32_t *num, unsigned *type, uint64_t *v, wire *sub)
{
    uint64_t tag;
    if (!wire_varint(w, &tag))
        return -EBADMSG;
    *num = (uint32_t)(tag >> 3);
    *type = tag & 7;
    size_t left = (size_t)(w->end - w->p);
    switch (*type) {
    case 0: return wire_varint(w, v) ? 0 : -EBADMSG;
    case 1: return left >= 8 ? (w->p += 8, 0) : -EBADMSG;
    case 5: return left >= 4 ? (w->p += 4, 0) : -EBADMSG;
    case 2:
        if (!wire_varint(w, v) || *v > (uint64_t)(w->end - w->p))
            return -EBADMSG;
        sub->p = w->p;
        sub->end = w->p + *v;
        w->p += *v;
        return 0;
    default: return -EBADMSG;
    }
}

/* Appends the pcap record of one CapturePacket (wire bytes pk) to c->buf at
 * *used, and counts it in ifc[] at the index of its interface in s. */
static int add_record(capture_client *c, size_t *used, wire pk, const capture_client_stats *s, uint64_t *ifc)
{
    uint64_t ts = 0, olen = 0, ifindex = 0, v;
    wire data = {NULL, NULL}, sub;
    uint32_t num;
    unsigned type;
    while (pk.p < pk.end) {
        if (wire_field(&pk, &num, &type, &v, &sub) < 0)
            return -EBADMSG;
        if (type == 0 && num == 1)
            ts = v;
        else if (type == 0 && num == 2)
            olen = v;
        else if (type == 0 && num == 3)
            ifindex = v;
        else if (type == 2 && num == 4)
            data = sub;
    }
    size_t caplen = (size_t)(data.end - data.p);
    if (caplen > UINT32_MAX - PCAP_REC_HDR)
        return -EBADMSG;
    if (*used + PCAP_REC_HDR + caplen > c->cap) {
        size_t cap = 2 * (*used + PCAP_REC_HDR + caplen);
        uint8_t *b = realloc(c->buf, cap);
        if (!b)
            return -ENOMEM;
        c->buf = b;
        c->cap = cap;
    }
    uint8_t *p = c->buf + *used;
    put32(p, (uint32_t)(ts / 1000000000u));
    put32(p + 4, (uint32_t)(ts % 1000000000u));
    put32(p + 8, (uint32_t)caplen);
    put32(p + 12, olen > caplen && olen <= UINT32_MAX ? (uint32_t)olen : (uint32_t)caplen);
    if (caplen)
        memcpy(p + PCAP_REC_HDR, data.p, caplen);
    *used += PCAP_REC_HDR + caplen;
    for (size_t j = 0; j < s->nifaces; j++)
        if (s->ifaces[j].index == ifindex)
            ifc[j]++;
    return 0;
}

int capture_client_batch(capture_client *c, int fd, const uint8_t *buf, size_t len, capture_client_stats *s)
{
    wire w = {buf, buf + len}, sub;
    size_t used = 0;
    uint64_t n = 0, v, captured = s->captured, drops = s->kernel_drops, ifc[CAPTURE_CLIENT_IFACES_MAX] = {0};
    uint32_t num;
    unsigned type;
    while (w.p < w.end) {
        int rc = wire_field(&w, &num, &type, &v, &sub);
        if (rc == 0 && type == 2 && num == 5) {
            rc = add_record(c, &used, sub, s, ifc);
            n++;
        } else if (rc == 0 && type == 0 && num == 6 && v > captured) {
            captured = v;
        } else if (rc == 0 && type == 0 && num == 7 && v > drops) {
            drops = v;
        } else if (rc == 0 && type == 0 && num == 1 && v) {
            rc = -EBADMSG; /* a second ready message */
        }
        if (rc < 0)
            return rc;
    }
    int rc = write_all(fd, c->buf, used);
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

/* The first message: ready, decoded whole. */
static int on_first(int fd, const uint8_t *buf, size_t len, capture_client_stats *s)
{
    Kdiag__Solo__Io__CaptureResponse *m = kdiag__solo__io__capture_response__unpack(NULL, len, buf);
    int rc = m && m->ready ? on_ready(fd, m, s) : -EBADMSG;
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
        if (r == 1)
            return st->code == GRPC_STATUS_OK || st->code == GRPC_STATUS_CANCELLED ? 0 : -EPROTO;
        r = s->ready ? capture_client_batch(c, fd, buf, len, s) : on_first(fd, buf, len, s);
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
    rpc_stream_cancel(c->stream);
}

void capture_client_free(capture_client *c)
{
    if (!c)
        return;
    rpc_stream_free(c->stream);
    free(c->buf);
    free(c);
}
