/* shell — `kubectl diag shell`: a root shell in the target container, even
 * one without any shell, through the manager's /usr/local/bin/enter. */
#ifndef KDIAG_CLI_SHELL_H
#define KDIAG_CLI_SHELL_H

#include "flags.h"
#include "kube.h"

/* enter's target arguments: "--container-id ID" when the pod shares one PID
 * namespace (PID 1 is then the pause process), else "1" (the target's own
 * PID 1, whose PID namespace targetContainerName made the debug container
 * join). Returns the number of words written to argv (1 or 2). */
int shell_target_args(bool share_pid, const char *container_id, const char **argv);
/* Exit code: the remote command's (kubectl exec passes it on). */
int shell_main(const flags *f, const kube *k);

#endif
