/* cp's pure parts, for the unit tests (test/cli/test_cp.c). */
#ifndef KDIAG_CLI_CP_INTERNAL_H
#define KDIAG_CLI_CP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "cp.h"

/* One side of a copy: remote ("POD:PATH", "pod/POD:PATH", "deploy/NAME:PATH"
 * and the other workloads of podsel_workload_ref, ":PATH" for the pod of
 * --pod/-l, kubectl cp's "NAMESPACE/POD:PATH") or a local path. An argument
 * is remote when it has a ':' and the part before it has no '/' (besides a
 * pod/, pods/ or po/ prefix, or a workload's), or is NAMESPACE/POD: a local
 * path with a ':' is written ./a:b. */
typedef struct {
    bool remote;
    bool workload; /* pod holds KIND/NAME, not a pod's name */
    char ns[64];   /* NAMESPACE/POD:PATH; "" when not named */
    char pod[256]; /* "" when not named */
    const char *path;
} cp_operand;

/* Fills op from arg (path points into arg). -EINVAL with a message for an
 * empty path. */
int cp_parse_operand(const char *arg, cp_operand *op, char *err, size_t errlen);

/* "12.5 MiB" style: n bytes in out. */
const char *cp_human_bytes(unsigned long long n, char *out, size_t outlen);

#endif
