/* bridge — the CLI's end of redirected connections.
 *
 * For each connection message of a Redirect stream, bridge_start connects to
 * the local target (127.0.0.1, then ::1) and, through the port-forward, to
 * the manager's tunnel port at the same time, sends the tunnel hello (target
 * reached or refused: on refusal the manager resets the peer) and splices
 * both ways, half-closes and resets passed on. All of it runs on one
 * splice loop (api/splice_loop.h) per bridge: one thread however many
 * connections. At most max_conns connections run at once; one more is
 * refused the same way as a refusing local target, and reported.
 * bridge_free closes what still runs and leaves no thread and no fd. */
#ifndef KDIAG_CLI_BRIDGE_H
#define KDIAG_CLI_BRIDGE_H

#include <stdint.h>

#include "redirect_client.h"

typedef struct {
    int err;           /* 0, or negative errno: -ECONNREFUSED local target refused, -EBUSY over the limit, ... */
    const char *where; /* "local target", "tunnel", "limit" or "connection" for err */
} bridge_result;

/* Runs once per bridge_start that returned 0, on the bridge's thread, also
 * for connections bridge_free ends (err -ECANCELED). */
typedef void (*bridge_done_fn)(void *ud, const bridge_result *r);

typedef struct {
    int max_conns; /* 0 = as many as the open-files limit allows, at most SPLICE_LOOP_MAX_PAIRS */
} bridge_opts;

typedef struct bridge bridge;

/* Starts the bridge's thread; raises the open-files soft limit to the hard one. */
int bridge_new(bridge **ret, const bridge_opts *o);
void bridge_free(bridge *b);
/* Any thread: bridges one redirected connection (tunnel_port: the local end
 * of the port-forward to the manager's tunnel). Starts both connects and,
 * when they are already settled (loopback usually is), sends the hello on
 * the caller's thread without blocking; the rest runs on the bridge's thread.
 * 0, or -ENOMEM (done is then not called). */
int bridge_start(bridge *b, uint16_t tunnel_port, uint16_t local_port, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN],
                 bridge_done_fn done, void *ud);
int bridge_max_conns(const bridge *b);

#endif
