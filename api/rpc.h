/* rpc — the small layer over gRPC's C core that the manager and the CLI share:
 * the server half (rpc_server.h) and the client half (rpc_client.h).
 *
 * Messages cross this layer as serialized protobuf bytes; callers encode and
 * decode with protobuf-c. Every function returns 0 or a negative errno unless
 * it says otherwise. gRPC itself is started once per process, on first use.
 * See docs/rpc.md. */
#ifndef KDIAG_RPC_H
#define KDIAG_RPC_H

#include "rpc_client.h"
#include "rpc_server.h"

#endif
