/* copy_rpc — CopyFrom and CopyTo (docs/cp.md): files out of and into the root
 * of a process of the pod (the request's Target: a container's lowest PID, a
 * PID, or PID 1), through api/copytree with every path the client names
 * resolved inside that root (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
 * on /proc/PID/root), so ".." and absolute symlinks cannot leave it.
 * Failures end the call with one line naming the path and the cause. */
#ifndef KDIAG_COPY_RPC_H
#define KDIAG_COPY_RPC_H

#include "rpc.h"

/* ud: unused (NULL). */
grpc_status_code copy_rpc_from(rpc_call *call, void *ud);
grpc_status_code copy_rpc_to(rpc_call *call, void *ud);

#endif
