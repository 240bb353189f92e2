/* fd-util — see fd-util.h. */
#include "fd-util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

void fd_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int fd_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int write_all(int fd, const void *p, size_t n, bool signal_ends)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR && !signal_ends)
            continue;
        if (w < 0 && errno == EAGAIN) { /* O_NONBLOCK, set by whoever shares the fd: wait for room */
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, -1) < 0 && (errno != EINTR || signal_ends))
                return -errno;
            continue;
        }
        if (w < 0)
            return -errno;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int fd_write_all(int fd, const void *p, size_t n)
{
    return write_all(fd, p, n, false);
}

int fd_write_all_or_signal(int fd, const void *p, size_t n)
{
    return write_all(fd, p, n, true);
}

int fd_stdio_open(unsigned *opened)
{
    if (opened)
        *opened = 0;
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int n = open("/dev/null", O_RDWR); /* the lowest free fd: this one, the ones below are open */
        if (n < 0)
            return -errno;
        if (n != fd) {
            close(n);
            return -EBADF;
        }
        if (opened)
            *opened |= 1u << fd;
    }
    return 0;
}
