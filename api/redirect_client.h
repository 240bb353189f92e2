/* redirect_client — the client's side of Redirect, for the CLI.
 *
 *   redirect_client *rc = redirect_client_open(cl, 80, false);
 *   redirect_client_run(rc, on_event, ud, &st);   // blocks until the stream ends
 *   ... from any thread: redirect_client_cancel(rc);
 *
 * For each redirected connection the CLI opens a connection to the manager's
 * tunnel port (through kubectl port-forward), tries its local target, calls
 * redirect_client_tunnel_hello() with the outcome and, when the target
 * answered, redirect_client_bridge(). Protocol: docs/redirect.md. Functions
 * return 0 or a negative errno unless they say otherwise.
 */
#ifndef KDIAG_REDIRECT_CLIENT_H
#define KDIAG_REDIRECT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"

#define REDIRECT_CLIENT_METHOD "/kdiag.solo.io.Manager/Redirect"
#define REDIRECT_CLIENT_TOKEN_LEN 16

typedef struct {
    bool ready;           /* first event: rules installed, traffic is being captured */
    uint32_t tunnel_port; /* the manager's tunnel port (in the pod) */
    /* The rest is set for connections (ready == false): */
    uint8_t token[REDIRECT_CLIENT_TOKEN_LEN];
    const char *peer;         /* "ip:port", IPv6 as "[ip]:port" */
    const char *original_dst; /* what the peer dialled */
} redirect_client_event;

/* Called on the thread running redirect_client_run, one event at a time;
 * strings are valid during the call only. A negative return ends the stream
 * (redirect_client_run then returns it). Slow work belongs on another thread:
 * the manager's next message waits meanwhile. */
typedef int (*redirect_client_fn)(void *ud, const redirect_client_event *ev);

typedef struct redirect_client redirect_client;

/* Starts the call (no deadline). NULL when out of memory. */
redirect_client *redirect_client_open(rpc_client *cl, uint32_t port, bool outgoing);
/* Reads the stream until it ends. 0 when it ended OK or by redirect_client_cancel,
 * -EPROTO when the manager ended it with an error (in *st: e.g. ALREADY_EXISTS,
 * INVALID_ARGUMENT, FAILED_PRECONDITION), -EBADMSG for an undecodable message,
 * or the callback's negative return. st may be NULL. */
int redirect_client_run(redirect_client *rc, redirect_client_fn fn, void *ud, rpc_status *st);
/* Thread-safe: ends the stream; the manager removes the rules at once. */
void redirect_client_cancel(redirect_client *rc);
void redirect_client_free(redirect_client *rc);

/* Writes token + status on a fresh tunnel connection: target_ok = the local
 * target accepted the connection (then bridge), false = it refused (the
 * manager resets the peer; close fd afterwards). */
int redirect_client_tunnel_hello(int tunnel_fd, const uint8_t token[REDIRECT_CLIENT_TOKEN_LEN], bool target_ok);
/* Splices tunnel_fd <-> local_fd both ways until both directions finished,
 * passing half-closes on, and a reset of either side on to the other (as a
 * reset). Blocks; closes both fds. 0, or the -errno that ended it. */
int redirect_client_bridge(int tunnel_fd, int local_fd);

#endif
