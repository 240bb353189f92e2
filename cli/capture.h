/* capture — `kubectl diag capture`: the pod's packets as a pcap file.
 *
 * One Capture stream (api/capture_client) over the session's port-forward,
 * written to -w FILE or stdout; stderr carries the progress and, at the end
 * (count, duration, Ctrl-C / SIGTERM), the packets captured and dropped (by
 * the kernel, in the stream). A filter or interface the manager rejects is
 * a usage error (exit 2). */
#ifndef KDIAG_CLI_CAPTURE_H
#define KDIAG_CLI_CAPTURE_H

#include "flags.h"
#include "kube.h"

/* Returns the process exit code; messages go to stderr. */
int capture_main(const flags *f, const kube *k);

#endif
