/* shell — `kubectl diag shell` and `kubectl diag exec`: a program in the
 * target container, run by the manager's Exec RPC (docs/exec.md) over the
 * session's port-forward: busybox ash from the debug image (shell), a program
 * of the target (exec) or a busybox applet (exec --tools). */
#ifndef KDIAG_CLI_SHELL_H
#define KDIAG_CLI_SHELL_H

#include "flags.h"
#include "kube.h"

/* Exit code: the remote program's (128+N when signal N killed it; 127 not
 * found, 126 not executable), or 1/2 for a failure of kubectl diag's own. */
int shell_main(const flags *f, const kube *k);
int exec_main(const flags *f, const kube *k);

#endif
