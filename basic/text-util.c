#include "text-util.h"

#include <stdbool.h>
#include <string.h>

/* Byte c as it goes into a message, into out; returns its length. */
static size_t esc_byte(unsigned char c, char out[4])
{
    static const char hex[] = "0123456789abcdef";
    char named = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c == 0x1b ? 'e' : 0;
    if (!named && c >= 0x20 && c != 0x7f) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '\\';
    out[1] = named ? named : 'x';
    if (named)
        return 2;
    out[2] = hex[c >> 4];
    out[3] = hex[c & 15];
    return 4;
}

static bool utf8_continuation(char c)
{
    return ((unsigned char)c & 0xc0) == 0x80;
}

const char *text_shown(char *out, const char *s, size_t head_max, size_t tail_max)
{
    char e[4];
    size_t n = strlen(s), total = 0, head = n, tail = n, w = 0, o = 0;
    for (size_t i = 0; i < n; i++)
        total += esc_byte((unsigned char)s[i], e);
    if (total > head_max + tail_max) {
        for (head = 0; head < n && w + esc_byte((unsigned char)s[head], e) <= head_max; head++)
            w += esc_byte((unsigned char)s[head], e);
        while (head > 0 && utf8_continuation(s[head]))
            head--;
        for (w = 0; tail > head && w + esc_byte((unsigned char)s[tail - 1], e) <= tail_max; tail--)
            w += esc_byte((unsigned char)s[tail - 1], e);
        while (tail < n && utf8_continuation(s[tail]))
            tail++;
    }
    for (size_t i = 0; i < n; i++) {
        if (i == head && i < tail) {
            memcpy(out + o, "…", sizeof "…" - 1);
            o += sizeof "…" - 1;
            i = tail - 1;
            continue;
        }
        o += esc_byte((unsigned char)s[i], out + o);
    }
    out[o] = '\0';
    return out;
}
