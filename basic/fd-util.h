/* fd-util — the small file descriptor chores every module does (systemd's
 * src/basic/fd-util.h, cut to what kdiag uses). */
#ifndef KDIAG_BASIC_FD_UTIL_H
#define KDIAG_BASIC_FD_UTIL_H

#include <stddef.h>

/* Closes *fd when it is open (>= 0) and sets it to -1: safe to call twice,
 * and on an fd that was never opened. */
void fd_close(int *fd);

/* Sets O_NONBLOCK on fd. 0 or -errno. */
int fd_nonblock(int fd);

/* Writes all n bytes of p to fd, retrying short writes and EINTR, and
 * waiting in poll while an fd that is O_NONBLOCK (a stdout shared with a
 * program that set it) is full. Async-signal-safe. 0 or -errno (-EPIPE: the
 * reader went away). */
int fd_write_all(int fd, const void *p, size_t n);
/* fd_write_all, except that a signal caught while it waits ends it (-EINTR):
 * a thread blocked on a reader that does not read can be stopped. */
int fd_write_all_or_signal(int fd, const void *p, size_t n);

/* Opens /dev/null on each of fds 0, 1 and 2 that is closed, so that no fd
 * opened later (an eventfd of gRPC, a socket) is taken for stdin, stdout or
 * stderr; Go's runtime does the same for kubectl. The fds it opened go in
 * *opened (bit fd; may be NULL): a command that reads or writes the content
 * there (cp -) can refuse it. 0 or -errno. */
int fd_stdio_open(unsigned *opened);

#endif
