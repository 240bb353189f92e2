#include "basic/dynbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/alloc-util.h"

#define DYNBUF_FIRST 8192 /* the first allocation */
#define DYNBUF_READ 4096  /* room made for each read */

int dynbuf_read(dynbuf *b, int fd)
{
    if (GROW_ARRAY(b->p, b->cap, b->len + DYNBUF_READ + 1, DYNBUF_FIRST) < 0)
        return -ENOMEM;
    ssize_t n = read(fd, b->p + b->len, b->cap - b->len - 1);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -errno;
    b->len += (size_t)n;
    b->p[b->len] = '\0';
    return n == 0 ? 0 : 1;
}

void dynbuf_consume(dynbuf *b, size_t n)
{
    if (!b->p)
        return;
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

char *dynbuf_steal(dynbuf *b)
{
    char *s = b->p ? b->p : strdup("");
    *b = (dynbuf){0};
    return s;
}

void dynbuf_free(dynbuf *b)
{
    free(b->p);
    *b = (dynbuf){0};
}
