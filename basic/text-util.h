/* text-util — text from elsewhere (a path, a selector) as it goes into a
 * one-line message: escaped and, when long, cut in the middle. */
#ifndef KDIAG_BASIC_TEXT_UTIL_H
#define KDIAG_BASIC_TEXT_UTIL_H

#include <stddef.h>

/* The bytes text_shown writes at most, NUL included. */
#define TEXT_SHOWN_SIZE(head, tail) ((head) + sizeof "…" + (tail))

/* s into out (TEXT_SHOWN_SIZE(head, tail) bytes) as one line: '\\', '\n',
 * '\t', '\r' and ESC as C escapes, other control bytes as \xNN (a newline
 * or an escape sequence would forge lines on the user's terminal); when
 * that is longer than head + tail bytes, at most head bytes of its start
 * and tail of its end with "…" between, a UTF-8 character never cut.
 * Returns out. */
const char *text_shown(char *out, const char *s, size_t head, size_t tail);

#endif
