/* ps_rpc — the kdiag.solo.io.Manager/Ps handler. */
#ifndef KDIAG_PS_RPC_H
#define KDIAG_PS_RPC_H

#include "contract.h"
#include "ps.h"
#include "rpc.h"

/* Unary handler for rpc_server_add(s, CONTRACT_METHOD_PS, RPC_UNARY, ps_rpc_handle, ud).
 * ud is a const ps_opts * or NULL (this /proc, excluding the manager itself). */
grpc_status_code ps_rpc_handle(rpc_call *call, void *ud);

#endif
