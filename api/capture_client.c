/* capture_client — see capture_client.h. */
#include "capture_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract.h"
#include "kdiag.pb-c.h"

#define PCAP_FILE_HDR 24
#define PCAP_REC_HDR 16

struct capture_client {
    rpc_stream *stream;
    uint8_t *buf; /* one batch of records */
    size_t cap;
};

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

/* The batch's records in one write: a capture ends between whole records. */
static int on_packets(capture_client *c, int fd, const Kdiag__Solo__Io__CaptureResponse *m, capture_client_stats *s)
{
    size_t need = 0;
    for (size_t i = 0; i < m->n_packets; i++)
        need += PCAP_REC_HDR + m->packets[i]->data.len;
    if (need > c->cap) {
        uint8_t *b = realloc(c->buf, need);
        if (!b)
            return -ENOMEM;
        c->buf = b;
        c->cap = need;
    }
    uint8_t *p = c->buf;
    for (size_t i = 0; i < m->n_packets; i++) {
        const Kdiag__Solo__Io__CapturePacket *k = m->packets[i];
        uint32_t caplen = (uint32_t)k->data.len;
        put32(p, (uint32_t)(k->timestamp_ns / 1000000000u));
        put32(p + 4, (uint32_t)(k->timestamp_ns % 1000000000u));
        put32(p + 8, caplen);
        put32(p + 12, k->original_length > caplen ? k->original_length : caplen);
        memcpy(p + PCAP_REC_HDR, k->data.data, caplen);
        p += PCAP_REC_HDR + caplen;
        for (size_t j = 0; j < s->nifaces; j++)
            if (s->ifaces[j].index == k->ifindex)
                s->ifaces[j].packets++;
    }
    int rc = write_all(fd, c->buf, need);
    if (rc == 0) {
        s->packets += m->n_packets;
        s->bytes += need;
    }
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
        Kdiag__Solo__Io__CaptureResponse *m = kdiag__solo__io__capture_response__unpack(NULL, len, buf);
        free(buf);
        if (!m || (!s->ready && !m->ready)) {
            if (m)
                kdiag__solo__io__capture_response__free_unpacked(m, NULL);
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "undecodable CaptureResponse from the manager");
            rpc_stream_cancel(c->stream);
            return -EBADMSG;
        }
        r = m->ready ? on_ready(fd, m, s) : on_packets(c, fd, m, s);
        if (m->captured > s->captured)
            s->captured = m->captured;
        if (m->kernel_drops > s->kernel_drops)
            s->kernel_drops = m->kernel_drops;
        kdiag__solo__io__capture_response__free_unpacked(m, NULL);
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
