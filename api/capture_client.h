/* capture_client — the client's side of Capture, used by the CLI
 * (cli/capture.c), the capture tests and the benchmark: runs the stream and
 * writes what it brings as a pcap file.
 *
 *   capture_client_req req = {.interface = "any", .filter = "tcp port 80"};
 *   capture_client *cc;
 *   capture_client_new(&cc, cl, &req);
 *   capture_client_run(cc, fd, on_progress, ud, &stats, &st);   // blocks until the stream ends
 *   ... from any thread: capture_client_cancel(cc);
 *
 * The file is pcap with nanosecond timestamps (magic 0xa1b23c4d) and the link
 * type the manager chose (Ethernet for one Ethernet interface, LINUX_SLL2 for
 * "any"); records are written whole, one batch per write (to a pipe or
 * socket: in PIPE_BUF pieces, each once poll says there is room), so a
 * capture that ends at any point (cancel, Ctrl-C) leaves a valid file.
 * Functions return 0 or a negative errno. Stream: docs/capture.md.
 *
 * pcapng instead: capture_pcapng_new(&w, fd) writes the section header, then
 * capture_client_set_pcapng(cc, w, "pod/web-1") before run. Several clients
 * (one per pod, each on its own thread) may share one w: each adds an
 * interface block per interface of its pod ("eth0", description "pod/web-1
 * eth0", ns timestamps) and writes its batches whole under w's lock, so the
 * file holds the packets in the order their batches arrived; when the stream
 * ends, run adds a statistics block per interface (packets, kernel drops). */
#ifndef KDIAG_CAPTURE_CLIENT_H
#define KDIAG_CAPTURE_CLIENT_H
#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"

#define CAPTURE_CLIENT_PCAP_MAGIC_NS 0xa1b23c4du /* pcap, nanosecond timestamps */
#define CAPTURE_CLIENT_IFACES_MAX 64

/* A CaptureRequest (api/kdiag.proto): NULL strings and 0 numbers are the defaults. */
typedef struct {
    const char *interface; /* NULL, "" or "any": all of the pod's interfaces */
    const char *filter;    /* pcap-filter(7) */
    uint32_t snaplen;
    uint64_t count;
    uint32_t duration_ms;
} capture_client_req;

typedef struct {
    uint32_t index;
    char name[32];
    uint64_t packets; /* written, seen on this interface */
} capture_client_iface;

typedef struct {
    bool ready;        /* the manager captures; linktype and snaplen are set */
    uint32_t linktype; /* LINKTYPE_* of the file */
    uint32_t snaplen;
    uint64_t packets;      /* records written */
    uint64_t bytes;        /* bytes written, file header included */
    uint64_t captured;     /* packets the manager sent so far (packets < captured: lost in the stream) */
    uint64_t kernel_drops; /* packets the kernel dropped in the manager (its ring was full) */
    capture_client_iface ifaces[CAPTURE_CLIENT_IFACES_MAX];
    size_t nifaces;
} capture_client_stats;

/* Called on the thread of capture_client_run once the manager is ready and
 * after each batch written. A negative return ends the stream (run returns it). */
typedef int (*capture_client_fn)(void *ud, const capture_client_stats *s);

typedef struct capture_client capture_client;
typedef struct capture_pcapng capture_pcapng;

/* Writes the pcapng section header to fd (not owned). -ENOMEM or the write's -errno. */
int capture_pcapng_new(capture_pcapng **ret, int fd);
void capture_pcapng_free(capture_pcapng *w);

/* Starts the call (no deadline). -ENOMEM, -EMSGSIZE for a request too
 * large, or -EIO when the call cannot start. */
int capture_client_new(capture_client **ret, rpc_client *cl, const capture_client_req *req);
/* Reads the stream until it ends, writing pcap to fd (the file header once
 * the manager is ready). s (never NULL) holds the counts, also on failure.
 * 0 when the stream ended OK (a count or duration limit) or by
 * capture_client_cancel; -EPROTO when the manager ended it with an error (in
 * *st: INVALID_ARGUMENT for a bad filter or interface, FAILED_PRECONDITION
 * without NET_RAW), -EBADMSG for an undecodable message, the callback's
 * negative return, a write error (st->code stays GRPC_STATUS_OK; -EPIPE:
 * the reader went away; -ECANCELED: cancelled while fd, not a regular file,
 * took nothing for a second, the last batch cut short), or another -errno
 * when the stream broke (st UNAVAILABLE). st may be NULL. */
int capture_client_run(capture_client *cc, int fd, capture_client_fn fn, void *ud, capture_client_stats *s,
                       rpc_status *st);
/* Before run: write into w (not owned, outlives cc) instead of run's fd;
 * name ("pod/web-1") goes in each interface's description. -ENOMEM. */
int capture_client_set_pcapng(capture_client *cc, capture_pcapng *w, const char *name);
/* Thread-safe: ends the stream; what was written stays a valid file. */
void capture_client_cancel(capture_client *cc);
void capture_client_free(capture_client *cc);

#endif
