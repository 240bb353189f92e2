/* tproc — what a test reads of another process in /proc. */
#ifndef KDIAG_TEST_TPROC_H
#define KDIAG_TEST_TPROC_H

#include <sys/types.h>

/* Its open fds (entries of /proc/PID/fd), or -errno. */
int tproc_fd_count(pid_t pid);
/* The number after "key:" in /proc/PID/status (VmRSS in kB, Threads), or -1
 * when the file or the line is missing. */
long tproc_status(pid_t pid, const char *key);
/* Its threads whose name (/proc/PID/task/TID/comm as read, with its newline)
 * begins with prefix: "kdiag-manager\n" matches that whole name only. */
int tproc_threads_named(pid_t pid, const char *prefix);

#endif
