#include "splice_pump.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int splice_pump_init(splice_pump *d, size_t pipe_bytes)
{
    *d = (splice_pump){.pipe = {-1, -1}, .shut_at = UINT64_MAX};
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    fcntl(d->pipe[1], F_SETPIPE_SZ, (int)pipe_bytes); /* may fail without CAP_SYS_RESOURCE: keep the default */
    int sz = fcntl(d->pipe[1], F_GETPIPE_SZ);
    d->cap = sz > 0 ? (size_t)sz : 65536;
    return 0;
}

void splice_pump_close(splice_pump *d)
{
    for (int i = 0; i < 2; i++)
        if (d->pipe[i] >= 0)
            close(d->pipe[i]);
    d->pipe[0] = d->pipe[1] = -1;
}

int splice_pump_run(splice_pump *d, int from, int to)
{
    for (;;) {
        bool progress = false;
        if (d->inpipe > 0) {
            ssize_t n = splice(d->pipe[0], NULL, to, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d->inpipe -= (size_t)n;
                d->moved += (uint64_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN) {
                return -errno;
            }
        }
        if (!d->eof && d->inpipe < d->cap) {
            ssize_t n = splice(from, NULL, d->pipe[1], NULL, d->cap - d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d->inpipe += (size_t)n;
                progress = true;
            } else if (n == 0) {
                d->eof = true;
                progress = true;
            } else if (errno != EAGAIN) {
                return -errno;
            }
        }
        if (!d->shut && (d->moved >= d->shut_at || (d->eof && d->inpipe == 0))) {
            if (!d->hold_fin || d->moved >= d->shut_at)
                shutdown(to, SHUT_WR); /* the half-close travels on */
            d->shut = true;
        }
        if (!progress)
            return 0;
    }
}

void splice_close_reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}
