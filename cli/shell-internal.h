/* shell internals, for the unit tests. */
#ifndef KDIAG_CLI_SHELL_INTERNAL_H
#define KDIAG_CLI_SHELL_INTERNAL_H

#include <stdbool.h>

#include "shell.h"

/* Exec's target: the container id when the pod shares one PID namespace (its
 * PID 1 is then the pause process), else NULL: the manager's PID 1, the
 * target's own first process (targetContainerName put the debug container in
 * its PID namespace). */
const char *shell_target_id(bool share_pid, const char *container_id);

#endif
