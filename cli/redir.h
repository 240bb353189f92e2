/* redir — `kubectl diag redir`: pod ports to local ports through the manager.
 *
 * One Redirect stream per port over the session's single port-forward; each
 * redirected connection becomes a bridge. Streams broken by a port-forward
 * restart are reopened; a gone pod ends the command with exit 1; SIGINT or
 * SIGTERM cancels the streams (the manager removes its rules) and exits 0. */
#ifndef KDIAG_CLI_REDIR_H
#define KDIAG_CLI_REDIR_H

#include "flags.h"
#include "kube.h"

/* Returns the process exit code; messages go to stderr. */
int redir_main(const flags *f, const kube *k);

#endif
