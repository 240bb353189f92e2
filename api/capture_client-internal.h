/* capture_client-internal — test seam of api/capture_client.c: a batch
 * decoded and written without a stream (fuzz_capture). */
#ifndef KDIAG_CAPTURE_CLIENT_INTERNAL_H
#define KDIAG_CAPTURE_CLIENT_INTERNAL_H

#include <stdatomic.h>

#include "capture_client.h"

struct capture_client {
    rpc_stream *stream; /* NULL in the fuzzer */
    atomic_bool cancelled;
    uint8_t *buf; /* one batch of records */
    size_t cap;
    char iface[32];     /* the request's interface: "" for all */
    capture_pcapng *ng; /* pcapng output, or NULL: pcap */
    char *ng_name;
    uint32_t ng_id[CAPTURE_CLIENT_IFACES_MAX]; /* pcapng interface id of s->ifaces[i] */
    uint32_t ng_other;                         /* of packets on an interface not in ready; UINT32_MAX: none yet */
};

/* A batch (the wire bytes of a CaptureResponse after the ready one): its
 * pcap records to fd in one write (write_whole), so a capture ends between whole records;
 * the packets, bytes and the manager's counts into s. 0, -EBADMSG (nothing
 * written), -ENOMEM, or the write's -errno. */
int capture_client_batch(capture_client *c, int fd, const uint8_t *buf, size_t len, capture_client_stats *s);

#endif
