/* dynbuf — a growing byte buffer read from a file descriptor, kept
 * NUL-terminated so that it can be searched as a string (curl's dynbuf). */
#ifndef KDIAG_BASIC_DYNBUF_H
#define KDIAG_BASIC_DYNBUF_H

#include <stddef.h>

typedef struct {
    char *p; /* NULL until the first byte; then p[len] == '\0' */
    size_t len, cap;
} dynbuf;

/* Appends what one read(2) of fd gives. 1 when bytes came, or when the read
 * would block or was interrupted (call again after poll); 0 at end of file;
 * -errno (-ENOMEM) on failure. */
int dynbuf_read(dynbuf *b, int fd);

/* Drops the first n (<= len) bytes, e.g. the complete lines already used. */
void dynbuf_consume(dynbuf *b, size_t n);

/* Hands the contents over as a malloc'd string ("" when empty; NULL when out
 * of memory), leaving b empty. */
char *dynbuf_steal(dynbuf *b);

void dynbuf_free(dynbuf *b);

#endif
