/* bridge — the CLI's end of one redirected connection.
 *
 * Connects to the local target, then through the port-forward to the
 * manager's tunnel port, and hands both to api/redirect_client: the tunnel
 * hello (token + "target reached/refused"; on refusal the manager resets the
 * peer) and the splice both ways with half-closes and resets passed on.
 * Each bridge runs on a detached thread of its own. */
#ifndef KDIAG_CLI_BRIDGE_H
#define KDIAG_CLI_BRIDGE_H

#include <stdint.h>

#define BRIDGE_TOKEN_LEN 16

typedef struct {
    int err;            /* 0, or negative errno: -ECONNREFUSED local target refused, ... */
    const char *where;  /* "local target", "tunnel" or "connection" for err */
} bridge_result;

typedef void (*bridge_done_fn)(void *ud, const bridge_result *r);

/* Starts the bridge; done (may be NULL) runs on its thread at the end. */
int bridge_start(int tunnel_port, uint16_t local_port, const uint8_t token[BRIDGE_TOKEN_LEN], bridge_done_fn done,
                 void *ud);
/* Bridges currently running (for clean shutdown and tests). */
int bridge_active(void);

#endif
