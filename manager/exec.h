/* exec — the Exec RPC (docs/exec.md): runs a program inside a target
 * process's namespaces and root, on a pty or on pipes, and carries its stdin,
 * output, window size, signals and exit over the call.
 *
 * The manager is multi-threaded, so it never joins a namespace itself: a
 * child (the keeper) joins the target with scratch-shell's nsjoin and forks
 * the program, waits for it and reports its PID and wait status on a pipe.
 * Output is sent with blocking sends: a client that stops reading stalls the
 * program, the manager's memory does not grow. */
#ifndef KDIAG_MANAGER_EXEC_H
#define KDIAG_MANAGER_EXEC_H

#include "rpc.h"

typedef struct {
    const char *busybox; /* ExecStart.tools runs applets of this static busybox */
} exec_opts;

/* Handler of CONTRACT_METHOD_EXEC (RPC_BIDI_STREAM); ud is an exec_opts that
 * outlives the server. */
grpc_status_code exec_rpc_handle(rpc_call *call, void *ud);

#endif
