/* shell internals, for the unit tests. */
#ifndef KDIAG_CLI_SHELL_INTERNAL_H
#define KDIAG_CLI_SHELL_INTERNAL_H

#include <stdbool.h>

#include "shell.h"

/* enter's target arguments: "--container-id ID" when the pod shares one PID
 * namespace (PID 1 is then the pause process), else "1" (the target's own
 * PID 1, whose PID namespace targetContainerName made the debug container
 * join). Returns the number of words written to argv (1 or 2). */
int shell_target_args(bool share_pid, const char *container_id, const char **argv);

#endif
