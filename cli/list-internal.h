/* list internals: the table printer, for the unit tests. */
#ifndef KDIAG_CLI_LIST_INTERNAL_H
#define KDIAG_CLI_LIST_INTERNAL_H

#include <stdio.h>

#include "list.h"
#include "pod.h"

/* Prints the table POD CONTAINER IMAGE STATE AGE for the dbg-tools-*
 * containers of pods, with namespaces a NAMESPACE column first; returns
 * how many rows. */
size_t list_print(FILE *out, const pod_info *pods, size_t n, bool namespaces);

#endif
