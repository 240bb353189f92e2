/* rpc_server-internal — test seams of the rpc server; not for product code. */
#ifndef KDIAG_RPC_SERVER_INTERNAL_H
#define KDIAG_RPC_SERVER_INTERNAL_H

#include "rpc_server.h"

/* The next n attempts to wait for a new call (grpc_server_request_call) fail
 * as if out of memory, so a test can watch the server recover. */
void rpc_server_fail_next_requests(rpc_server *s, int n);

#endif
