/* capture — the Capture RPC: the packets of the manager's network namespace
 * (the pod's), from an AF_PACKET socket with a TPACKET_V3 ring, filtered in
 * the kernel by a program libpcap's pcap_compile made from tcpdump syntax.
 * Needs CAP_NET_RAW only. Stream and limits: docs/capture.md. */
#ifndef KDIAG_CAPTURE_H
#define KDIAG_CAPTURE_H

#include <grpc/status.h>

#include "rpc.h"

/* Handler of /kdiag.solo.io.Manager/Capture (RPC_SERVER_STREAM); ud unused. */
grpc_status_code capture_rpc_handle(rpc_call *call, void *ud);

#endif
