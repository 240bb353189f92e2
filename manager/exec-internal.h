/* exec internals: the parser of /proc/PID/status, apart from the I/O so that
 * the tests feed it crafted files. */
#ifndef KDIAG_EXEC_INTERNAL_H
#define KDIAG_EXEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Supplementary groups kept; a target with more is refused (E2BIG). */
#define EXEC_GROUPS_MAX 64

/* A process's credentials: effective uid and gid, supplementary groups. */
typedef struct {
    uint32_t uid, gid;
    size_t ngroups;
    uint32_t groups[EXEC_GROUPS_MAX];
} exec_ids;

/* The effective uid and gid and the groups from a /proc/PID/status text whose
 * every line (the first too) follows a '\n'. 0, -EBADMSG, -E2BIG. */
int exec_parse_status_ids(const char *buf, exec_ids *out);

#endif
