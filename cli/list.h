/* list — `kubectl diag list`: this tool's debug containers in the namespace. */
#ifndef KDIAG_CLI_LIST_H
#define KDIAG_CLI_LIST_H

#include "flags.h"
#include "kube.h"

int list_main(const flags *f, const kube *k);

#endif
