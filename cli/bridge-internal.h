/* bridge-internal — test seams of cli/bridge.c (not for the CLI's modules). */
#ifndef KDIAG_CLI_BRIDGE_INTERNAL_H
#define KDIAG_CLI_BRIDGE_INTERNAL_H

#include <stdbool.h>

#include "bridge.h"

/* Makes the bridge's sockets: a blocking or non-blocking TCP socket of family
 * for the local target (local) or the tunnel, or -errno. Default socket(2);
 * the redirect tests put the local targets and the manager's tunnel in
 * different network namespaces. Set before the first bridge_start. */
typedef int (*bridge_socket_fn)(void *ud, bool local, int family);
void bridge_set_socket_fn(bridge *b, bridge_socket_fn fn, void *ud);

/* Connections started and not yet done. */
int bridge_active(const bridge *b);

#endif
