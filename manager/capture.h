/* capture — the Capture RPC: the packets of the manager's network namespace
 * (the pod's), from an AF_PACKET socket with a TPACKET_V3 ring, filtered in
 * the kernel by a program libpcap's pcap_compile made from tcpdump syntax.
 * Needs CAP_NET_RAW only. Stream and limits: docs/capture.md. */
#ifndef KDIAG_CAPTURE_H
#define KDIAG_CAPTURE_H

#include <grpc/status.h>
#include <stdatomic.h>

#include "rpc.h"

/* The manager's own listeners, which a capture leaves out: the port-forward
 * reaches them inside the pod, so a capture on lo or "any" would otherwise
 * record the stream that carries it, and that stream would grow with what it
 * recorded. And the captures that run, which the handler counts. */
typedef struct {
    atomic_int grpc_port; /* set once the server listens */
    int tunnel_port;      /* 0: none (no redirect) */
    atomic_int running;   /* Capture calls past their request, 0 at the start */
} capture_opts;

/* Handler of /kdiag.solo.io.Manager/Capture (RPC_SERVER_STREAM); ud: a capture_opts. */
grpc_status_code capture_rpc_handle(rpc_call *call, void *ud);

#endif
