/* shell — `kubectl diag shell`: a root shell in the target container, even
 * one without any shell, through the manager's /usr/local/bin/enter. */
#ifndef KDIAG_CLI_SHELL_H
#define KDIAG_CLI_SHELL_H

#include "flags.h"
#include "kube.h"

/* Exit code: the remote command's (kubectl exec passes it on). */
int shell_main(const flags *f, const kube *k);

#endif
