#include "hex-util.h"

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>

void hex_of(const void *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = b;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int hex_random(char *out, size_t n)
{
    uint8_t r[64];
    if (n > sizeof r)
        return -EINVAL;
    if (getrandom(r, n, 0) != (ssize_t)n)
        return errno ? -errno : -EIO;
    hex_of(r, n, out);
    return 0;
}
