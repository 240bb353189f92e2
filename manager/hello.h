/* hello — the kdiag.solo.io.Manager/Hello handler: proves to a client that
 * remembers an earlier session that this manager is the one whose secret it
 * knows, before the client sends the token (docs/contract.md). */
#ifndef KDIAG_HELLO_H
#define KDIAG_HELLO_H

#include <stdatomic.h>

#include "contract.h"
#include "rpc.h"

typedef struct {
    char secret[CONTRACT_SECRET_HEX_LEN + 1]; /* from the container's spec */
    atomic_int grpc_port;                     /* set once the server listens (0 before) */
    int tunnel_port;                          /* 0: no tunnel */
    char token[CONTRACT_TOKEN_HEX_LEN + 1];   /* "": none (--no-auth) */
} hello_opts;

/* Unary handler for rpc_server_add_open(s, CONTRACT_METHOD_HELLO, hello_rpc_handle, ud),
 * ud a const hello_opts * that outlives the server. Register it only when the
 * manager has a secret. */
grpc_status_code hello_rpc_handle(rpc_call *call, void *ud);

#endif
