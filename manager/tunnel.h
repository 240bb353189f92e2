/* tunnel — pairs redirected connections with the CLI's tunnel connections and
 * splices them together.
 *
 * Wire protocol of a tunnel connection (client = the CLI, through kubectl
 * port-forward to 127.0.0.1:<tunnel port> in the pod):
 *
 *   client -> manager:  16 bytes  tunnel_token from the RedirectResponse
 *                        1 byte   status: CONTRACT_TUNNEL_STATUS_OK (0x00) = the client
 *                                 reached its local target; from the next byte
 *                                 on the connection carries the redirected
 *                                 connection's data, both ways.
 *                                 Any other value (send CONTRACT_TUNNEL_STATUS_REFUSED,
 *                                 0x01) = the local target refused: the manager
 *                                 resets the peer (it sees ECONNRESET) and
 *                                 closes the tunnel connection.
 *   Closing the tunnel connection right after the token, without a status
 *   byte, counts as refused too.
 *
 *   The manager never writes before the status byte. An unknown, already used
 *   or short token closes the tunnel connection at once; pairing is by token
 *   only, never by arrival order. A tunnel connection that has not sent token
 *   and status within the pairing timeout is closed, and a redirected
 *   connection whose tunnel connection has not arrived by then is reset.
 *   Anyone in the pod can cause these: they are counted and logged as one
 *   summary line per 10 s (counts only, nothing the peer sent), one line each
 *   only with verbose.
 *
 * Spare tunnel connections: a client may open tunnel connections ahead of
 * time with its stream's spare_token (tunnel_spare_token) and status
 * CONTRACT_TUNNEL_STATUS_SPARE; they park, without a timeout, until the
 * manager writes a connection's announcement on one (a 2-byte big-endian
 * length and the RedirectResponse the stream would have carried), after
 * which the client sends that connection's token + status on it as above.
 * The announcement saves the stream message and the client's connect.
 *
 * After pairing, both directions are spliced (splice(2) through pipes, no
 * copies into user space); a FIN on one side becomes a shutdown(SHUT_WR) on the
 * other, unless half-closes travel out of band (report_fd of tunnel_add_peer,
 * tunnel_half_close; docs/redirect.md "Half-close"); a reset or error on one
 * side resets the other. Resetting the tunnel
 * connection (SO_LINGER 0 + close) is how the client passes a reset from its
 * local target on to the peer.
 *
 * All sockets are served by one splice loop (api/splice_loop.h) per tunnel;
 * paired connections beyond max_pairs are refused (the peer is reset).
 */
#ifndef KDIAG_TUNNEL_H
#define KDIAG_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "contract.h"

/* How long a redirected connection waits for its tunnel connection, and a
 * tunnel connection for its complete hello, by default. */
#define TUNNEL_PAIR_TIMEOUT_MS 10000

typedef struct {
    int pair_timeout_ms; /* 0 = TUNNEL_PAIR_TIMEOUT_MS */
    bool verbose;        /* one stderr line per connection event (not only summaries) */
    int max_pairs;       /* connections spliced at once; 0 = SPLICE_LOOP_MAX_PAIRS */
} tunnel_opts;

typedef struct tunnel tunnel;

/* Listens on 127.0.0.1:0 and starts the tunnel's thread. */
int tunnel_new(tunnel **out, const tunnel_opts *o);
int tunnel_port(const tunnel *t);
/* What the tunnel writes to a report_fd when a peer closed its write side. */
typedef struct {
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    uint64_t bytes; /* the peer sent this many bytes, all of them written to the tunnel connection */
} tunnel_report;

/* Hands over a redirected connection (the tunnel owns fd from here on, also
 * on failure) and returns the fresh random token the client must present.
 * owner tags it for tunnel_drop_owner (the Redirect stream it came through).
 * report_fd -1: the peer's FIN becomes a FIN on the tunnel connection; else
 * (a non-blocking pipe of the owner's, open until tunnel_drop_owner returns)
 * the tunnel connection gets no FIN: a tunnel_report is written there, and the
 * client's half-close comes back through tunnel_half_close. */
int tunnel_add_peer(tunnel *t, int fd, const void *owner, int report_fd, uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN]);
/* Any thread: the client's end of the connection of token closed its write
 * side after bytes: the peer's write side is shut once that many bytes
 * reached it (also when the call overtook the tunnel connection's hello).
 * Unknown or ended connections are ignored. 0 or -ENOMEM. */
int tunnel_half_close(tunnel *t, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes);
/* Spare tunnel connections (docs/redirect.md): a fresh random spare_token for
 * owner's ready message; tunnel connections presenting it with
 * CONTRACT_TUNNEL_STATUS_SPARE park (at most CONTRACT_TUNNEL_SPARES_MAX) until
 * tunnel_drop_owner. 0 or -errno. */
int tunnel_spare_token(tunnel *t, const void *owner, uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN]);
/* Any thread: writes the announcement msg (a packed RedirectResponse of a
 * connection tunnel_add_peer took) on one of owner's parked spares, which
 * then waits for the client's hello like any tunnel connection. 1 when sent,
 * 0 when owner has no spare parked (announce it on the stream instead). */
int tunnel_spare_announce(tunnel *t, const void *owner, const uint8_t *msg, size_t len);
/* Resets the owner's connections still waiting for their tunnel connection:
 * once their stream is gone no client will come for them. Paired ones, and
 * those whose tunnel connection is in its hello, run on (their half-closes as
 * FINs again: the owner's report_fd is not used after this returns). Its
 * spare_token ends and its parked spares are closed. */
void tunnel_drop_owner(tunnel *t, const void *owner);
/* Gives from's connections (waiting and paired) to the stream to, whose
 * report_fd (as in tunnel_add_peer) carries their half-closes from now on:
 * the stream that took from's port over (same session). */
void tunnel_move_owner(tunnel *t, const void *from, const void *to, int report_fd);
/* Stops the thread and closes every connection it holds. */
void tunnel_free(tunnel *t);

#endif
