/* redirect — the Redirect RPC: a reverse port-forward of one pod port.
 *
 * Per stream: a redirect listener on a random port (IPv4 + IPv6), the nftables
 * rules that send the port's traffic to it (nft.h), one RedirectResponse per
 * accepted connection, whose data then flows through the shared tunnel
 * (tunnel.h) once the client presents the connection's token. Ending the
 * stream removes its rules and listener at once; paired connections run on.
 * Protocol and behaviour: docs/redirect.md.
 */
#ifndef KDIAG_REDIRECT_H
#define KDIAG_REDIRECT_H

#include <grpc/status.h>
#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"

typedef struct {
    int pair_timeout_ms; /* 0 = TUNNEL_PAIR_TIMEOUT_MS (tunnel.h) */
    bool verbose;
} redirect_opts;

typedef struct redirect_mgr redirect_mgr;

/* Opens the tunnel listener and clears a leftover table of this manager's
 * name (`inet kdiag-<tunnel port>`, nft.h). Works
 * without CAP_NET_ADMIN too (Redirect calls then fail with FAILED_PRECONDITION).
 * Raises the RLIMIT_NOFILE soft limit to the hard limit: every redirected
 * connection costs six fds. */
int redirect_mgr_new(redirect_mgr **out, const redirect_opts *o);
int redirect_mgr_tunnel_port(const redirect_mgr *m);
/* Ports the manager itself uses (gRPC, ...): Redirect refuses them. */
void redirect_mgr_reserve_port(redirect_mgr *m, uint16_t port);
/* Handler of /kdiag.solo.io.Manager/Redirect (RPC_SERVER_STREAM); ud = redirect_mgr*. */
grpc_status_code redirect_rpc_handle(rpc_call *call, void *ud);
/* Handler of /kdiag.solo.io.Manager/HalfClose (RPC_UNARY); ud = redirect_mgr*.
 * OK also for a token of no connection (it may have ended meanwhile). */
grpc_status_code redirect_half_close_handle(rpc_call *call, void *ud);
/* Closes everything: the kernel drops the nftables table with the netlink socket. */
void redirect_mgr_free(redirect_mgr *m);

#endif
