/* bridge — the CLI's end of redirected connections.
 *
 * For each connection message of a Redirect stream, bridge_start connects to
 * the local target (127.0.0.1, then ::1) and, through the port-forward, to
 * the manager's tunnel port at the same time, sends the tunnel hello (target
 * reached or refused: on refusal the manager resets the peer) and splices
 * both ways, half-closes (in the tunnel, or out of band: docs/redirect.md
 * "Half-close") and resets passed on. All of it runs on one
 * splice loop (api/splice_loop.h) per bridge: one thread however many
 * connections. At most max_conns connections run at once; one more is
 * refused the same way as a refusing local target, and reported.
 * bridge_free closes what still runs and leaves no thread and no fd. */
#ifndef KDIAG_CLI_BRIDGE_H
#define KDIAG_CLI_BRIDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "redirect_client.h"

typedef struct {
    int err;           /* 0, or negative errno: -ECONNREFUSED local target refused, -EBUSY over the limit, ... */
    const char *where; /* "local target", "tunnel", "limit", "connection" or "spare" for err */
} bridge_result;

/* Runs once per bridge_start that returned 0, on the bridge's thread, also
 * for connections bridge_free ends (err -ECANCELED). */
typedef void (*bridge_done_fn)(void *ud, const bridge_result *r);

/* Tells the manager that the local target of the connection of token closed
 * its write side after bytes (HalfClose). Runs on a thread of the bridge's
 * own, one call at a time: it may block. */
typedef void (*bridge_half_close_fn)(void *ud, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes);

typedef struct {
    int max_conns; /* 0 = as many as the open-files limit allows, at most SPLICE_LOOP_MAX_PAIRS */
    /* NULL: half-closes travel as FINs through the tunnel, also for
     * connections started with half_close. */
    bridge_half_close_fn half_close;
    void *half_close_ud;
    /* NULL, or runs on the bridge's thread once a connection's local target
     * accepted and its tunnel connection is up, before the splice starts,
     * with the ud of its bridge_start / bridge_park: a connection that is
     * not bridged gets its done alone. */
    void (*bridged)(void *ud);
} bridge_opts;

typedef struct bridge bridge;

/* Starts the bridge's thread; raises the open-files soft limit to the hard one. */
int bridge_new(bridge **ret, const bridge_opts *o);
void bridge_free(bridge *b);
/* Any thread: bridges one redirected connection (tunnel_port: the local end
 * of the port-forward to the manager's tunnel). Starts both connects and,
 * when they are already settled (loopback usually is), sends the hello on
 * the caller's thread without blocking; the rest runs on the bridge's thread.
 * half_close (the stream granted it): no FIN goes into the tunnel; the local
 * target's half-close goes to opts.half_close, the peer's comes through
 * bridge_peer_closed. 0, or -ENOMEM (done is then not called). */
int bridge_start(bridge *b, uint16_t tunnel_port, uint16_t local_port,
                 const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], bool half_close, bridge_done_fn done, void *ud);
/* A spare's connection was announced (ev: its RedirectResponse, valid during
 * the call); the bridge goes on as for bridge_start of ev->token. Runs on the
 * bridge's thread, before the local connect: keep it short. */
typedef void (*bridge_announce_fn)(void *ud, const redirect_client_event *ev);
/* Any thread: parks a spare tunnel connection (docs/redirect.md "Spare tunnel
 * connections") with the stream's spare_token: once the manager announces a
 * connection on it, announce runs and the connection is bridged as by
 * bridge_start; done runs at its end, or with where "spare" when the spare
 * ended unannounced (the manager closes a stream's spares when it ends).
 * Counts against max_conns once announced (over it, the connection is
 * refused as by bridge_start). 0 or -ENOMEM (done is then not called). */
int bridge_park(bridge *b, uint16_t tunnel_port, uint16_t local_port,
                const uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN], bool half_close, bridge_announce_fn announce,
                bridge_done_fn done, void *ud);
/* Any thread, after the bridge_start of token (from the same thread: the
 * order of the two is kept): the peer closed its write side after bytes;
 * the local target's write side is shut once that many bytes reached it.
 * Unknown or ended connections are ignored. 0 or -ENOMEM. */
int bridge_peer_closed(bridge *b, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes);
int bridge_max_conns(const bridge *b);

#endif
