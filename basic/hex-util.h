/* hex-util — bytes as lowercase hex, and random names and secrets made of it. */
#ifndef KDIAG_BASIC_HEX_UTIL_H
#define KDIAG_BASIC_HEX_UTIL_H

#include <stddef.h>

/* Writes the n bytes of b as 2n hex digits and a NUL to out (2n + 1 bytes). */
void hex_of(const void *b, size_t n, char *out);
/* Writes n random bytes (getrandom) as hex_of does. 0 or -errno. */
int hex_random(char *out, size_t n);

#endif
