/* procfs internals: the parsers of one file's contents (NUL-terminated),
 * apart from the I/O so that the unit tests feed them crafted files. */
#ifndef KDIAG_PROCFS_INTERNAL_H
#define KDIAG_PROCFS_INTERNAL_H

#include "procfs.h"

/* Fills pid, ppid, sid, name and state from /proc/PID/stat and returns the start
 * time in clock ticks since boot and the rss in pages; -ENOENT for a task in
 * its last moment (state X), -EBADMSG for a line that does not parse. */
int procfs_parse_stat(const char *buf, procfs_proc *out, uint64_t *start_ticks, uint64_t *rss_pages);
/* The real uid from /proc/PID/status. */
int procfs_parse_status_uid(const char *buf, uint32_t *uid);

#endif
