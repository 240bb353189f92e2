/* logs — `kubectl diag logs`: follows many containers at once.
 *
 * One `kubectl logs -f --timestamps` child per container, all read by one
 * poll loop; pods are re-listed every LOGS_POLL_MS to pick up new pods and
 * restarted containers. A stream that ends while its container still runs is
 * resumed from its last timestamp without repeating lines. */
#ifndef KDIAG_CLI_LOGS_H
#define KDIAG_CLI_LOGS_H

#include "flags.h"
#include "kube.h"

#define LOGS_POLL_MS 2000

/* Exit code: 0 after Ctrl-C without a command; the command's otherwise. */
int logs_main(const flags *f, const kube *k);

#endif
