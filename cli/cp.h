/* cp — `kubectl diag cp`: files and directories between a container of a pod
 * and this machine, through the manager's CopyFrom/CopyTo (docs/cp.md); no
 * tar or anything else needed in the container. */
#ifndef KDIAG_CLI_CP_H
#define KDIAG_CLI_CP_H

#include "flags.h"
#include "kube.h"

int cp_main(const flags *f, const kube *k);

#endif
