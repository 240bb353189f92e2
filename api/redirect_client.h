/* redirect_client — the client's side of Redirect, used by the CLI (cli/redir.c)
 * and the redirect tests.
 *
 *   redirect_client_req req = {.port = 80, .session_id = sid};
 *   redirect_client *rc;
 *   redirect_client_new(&rc, cl, &req);
 *   redirect_client_run(rc, on_event, ud, &st);   // blocks until the stream ends
 *   ... from any thread: redirect_client_cancel(rc);
 *
 * For each redirected connection the client opens a connection to the
 * manager's tunnel port (through kubectl port-forward), tries its local
 * target, writes the hello of redirect_client_hello() with the outcome and,
 * when the target answered, splices the two (cli/bridge.c does all that).
 * Protocol: docs/redirect.md. Functions return 0 or a negative errno.
 */
#ifndef KDIAG_REDIRECT_CLIENT_H
#define KDIAG_REDIRECT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "contract.h"
#include "rpc.h"

#define REDIRECT_CLIENT_SESSION_ID_LEN 16 /* what the CLI sends (at most CONTRACT_REDIRECT_SESSION_ID_MAX) */

/* A RedirectRequest (api/kdiag.proto). */
typedef struct {
    uint32_t port;
    bool outgoing;
    /* One run of the client: a stream of the same session takes a port over
     * from a stale one at once. All zero: no session. */
    uint8_t session_id[REDIRECT_CLIENT_SESSION_ID_LEN];
    /* incoming: sources left alone (the node's addresses: kubelet probes) */
    const char *skip_sources[CONTRACT_REDIRECT_SKIP_SOURCES_MAX];
    size_t nskip_sources;
    bool include_loopback; /* outgoing: catch the pod's connections to itself too */
    bool half_close;       /* half-closes out of band (docs/redirect.md "Half-close") */
} redirect_client_req;

typedef struct {
    bool ready;      /* first event: rules installed, traffic is being captured */
    bool half_close; /* ready: half-closes travel out of band on this stream (asked for and granted) */
    /* ready: the manager takes spare tunnel connections presenting spare_token
     * (redirect_client_spare_hello; docs/redirect.md "Spare tunnel connections") */
    bool has_spare;
    uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN];
    uint32_t tunnel_port; /* the manager's tunnel port (in the pod) */
    /* The rest is set for connections (ready == false): */
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    const char *peer;         /* "ip:port", IPv6 as "[ip]:port" */
    const char *original_dst; /* what the peer dialled */
    /* Not a new connection but a report on the connection of token: its peer
     * closed its write side after peer_write_closed_after bytes. */
    bool peer_write_closed;
    uint64_t peer_write_closed_after;
} redirect_client_event;

/* Called on the thread running redirect_client_run, one event at a time;
 * strings are valid during the call only. A negative return ends the stream
 * (redirect_client_run then returns it). Slow work belongs on another thread:
 * the manager's next message waits meanwhile. */
typedef int (*redirect_client_fn)(void *ud, const redirect_client_event *ev);

typedef struct redirect_client redirect_client;

/* A fresh random session id; 0 or -errno. */
int redirect_client_session_id(uint8_t out[REDIRECT_CLIENT_SESSION_ID_LEN]);
/* Starts the call (no deadline). With req->half_close the client asks the
 * manager to carry half-closes out of band: it then sends no FIN through a
 * tunnel connection but calls redirect_client_half_close, and acts on
 * peer_write_closed events. -ENOMEM, -EMSGSIZE for a request too large, or
 * -EIO when the call cannot start. */
int redirect_client_new(redirect_client **ret, rpc_client *cl, const redirect_client_req *req);
/* Reads the stream until it ends. 0 when it ended OK or by redirect_client_cancel,
 * -EPROTO when the manager ended it with an error (in *st: e.g. ALREADY_EXISTS,
 * INVALID_ARGUMENT, FAILED_PRECONDITION), -EBADMSG for an undecodable message
 * (st INTERNAL), the callback's negative return, or another -errno when the
 * stream broke locally (st UNAVAILABLE). st may be NULL. */
int redirect_client_run(redirect_client *rc, redirect_client_fn fn, void *ud, rpc_status *st);
/* Thread-safe: ends the stream; the manager removes the rules at once. */
void redirect_client_cancel(redirect_client *rc);
void redirect_client_free(redirect_client *rc);

/* HalfClose (blocking unary call, timeout_ms): the client's end of the
 * connection of token closed its write side after bytes. 0, or -EPROTO with
 * the status in *st. */
int redirect_client_half_close(rpc_client *cl, const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN], uint64_t bytes,
                               int timeout_ms, rpc_status *st);

/* Decodes one RedirectResponse (from the stream, or a spare's announcement)
 * and calls fn with its event: fn's return, or -EBADMSG when it does not
 * decode or lacks its token. */
int redirect_client_decode(const uint8_t *buf, size_t len, redirect_client_fn fn, void *ud);

/* The hello that parks a spare tunnel connection: the stream's spare_token
 * + CONTRACT_TUNNEL_STATUS_SPARE. */
void redirect_client_spare_hello(uint8_t out[CONTRACT_TUNNEL_HELLO_LEN],
                                 const uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN]);

/* The tunnel hello: token + status (target_ok = the local target accepted the
 * connection, then bridge; false = it refused, the manager resets the peer). */
void redirect_client_hello(uint8_t out[CONTRACT_TUNNEL_HELLO_LEN], const uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN],
                           bool target_ok);

#endif
