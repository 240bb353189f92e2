/* hello_client — the client half of Hello (docs/contract.md): before a
 * client that remembers a manager's secret sends it the token, the manager
 * behind the port proves it knows the secret. */
#ifndef KDIAG_HELLO_CLIENT_H
#define KDIAG_HELLO_CLIENT_H

#include "contract.h"
#include "rpc.h"

/* Calls Hello over cl (made without a token) with a fresh nonce and the
 * target container_id (NULL or "": the default target). 0 when the answer
 * proves secret and that the manager's token is token: *h holds what it
 * proved. -EPROTO when the call failed (st says how: e.g. UNAUTHENTICATED
 * from a manager without a secret, UNAVAILABLE when nothing answers), -EPERM
 * when the answer does not prove the secret (another manager, or something
 * else on the port), -EACCES when it does but the manager's token is not
 * token (a record gone bad: do not send it), -EBADMSG when it is not a
 * HelloResponse, -ENOMEM, or -errno of getrandom. */
int hello_call(rpc_client *cl, const char *secret, const char *token, const char *container_id, int timeout_ms,
               contract_hello *h, rpc_status *st);

#endif
