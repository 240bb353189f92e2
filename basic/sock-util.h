/* sock-util — what a server's accept loop does when accept fails. */
#ifndef KDIAG_BASIC_SOCK_UTIL_H
#define KDIAG_BASIC_SOCK_UTIL_H

#include <errno.h>
#include <stdbool.h>

/* How long an accept loop stops accepting after accept_exhausted: the
 * pending connection stays in the backlog, and a full fd table is not
 * retried at once, which would spin the loop. */
#define ACCEPT_PAUSE_MS 100

/* Whether accept's errno says the process or the system ran out of file
 * descriptors, buffers or memory (pause), as opposed to a connection that
 * died before it was accepted (accept the next one). */
static inline bool accept_exhausted(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

#endif
