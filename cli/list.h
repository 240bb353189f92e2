/* list — `kubectl diag list`: this tool's debug containers in the namespace. */
#ifndef KDIAG_CLI_LIST_H
#define KDIAG_CLI_LIST_H

#include <stdio.h>

#include "flags.h"
#include "kube.h"
#include "pod.h"

/* Prints the table POD CONTAINER IMAGE STATE AGE for the dbg-tools-*
 * containers of pods; returns how many rows. */
size_t list_print(FILE *out, const pod_info *pods, size_t n);
int list_main(const flags *f, const kube *k);

#endif
