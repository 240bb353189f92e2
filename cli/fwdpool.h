/* fwdpool — the port-forwards that carry one pod's redirected tunnel
 * connections, one connection per forward while there are enough: a
 * connection whose local reader stalls stops its kubectl port-forward (it then
 * reads nothing more from the API server), so it must share it with no other
 * connection and never with the gRPC stream (bench/README.md). FWDPOOL_WARM
 * start at once; more start while there are fewer than connections + 1 (a
 * spare), up to the pool's max; beyond that, a new connection takes the least
 * loaded. The extra ones end when idle; one that fails to start is tried
 * again, 1 s later and then less often. The forwards start and end on a
 * thread of the pool's own. */
#ifndef KDIAG_CLI_FWDPOOL_H
#define KDIAG_CLI_FWDPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "kube.h"

#define FWDPOOL_WARM 2
#define FWDPOOL_MAX 16

typedef struct fwdpool fwdpool;

/* Forwards to port of container in pod (k is copied: what it points to must
 * outlive the pool), at most max (0: none, every connection then takes the
 * gRPC forward). 0 or -errno. */
int fwdpool_new(fwdpool **ret, const kube *k, const char *pod, const char *container, int port, size_t max,
                int64_t timeout_ms);
/* For a new connection: the least loaded forward that is up, its slot and
 * *port (its local port), or -1 with *port untouched (also for a NULL pool).
 * Asks for another forward while there is no spare. */
int fwdpool_pick(fwdpool *p, uint16_t *port);
/* The connection on slot ended (slot < 0 or a NULL pool: nothing). */
void fwdpool_release(fwdpool *p, int slot);
/* Stops the thread (after a forward it is starting is up or failed) and ends
 * the forwards; NULL: nothing. */
void fwdpool_free(fwdpool *p);

#endif
