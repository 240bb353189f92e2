/* podwatch's pure parts, for the unit tests. */
#ifndef KDIAG_CLI_PODWATCH_INTERNAL_H
#define KDIAG_CLI_PODWATCH_INTERNAL_H

#include "podwatch.h"

enum { PODWATCH_LINE_EVENT, PODWATCH_LINE_SKIP, PODWATCH_LINE_EXPIRED };

/* One line of the watch: PODWATCH_LINE_EVENT (ev filled, rv updated),
 * PODWATCH_LINE_SKIP (a bookmark: rv updated; anything else: ignored) or
 * PODWATCH_LINE_EXPIRED (410: list afresh). rv holds rvlen bytes. */
int podwatch_parse_line(const char *line, podwatch_event *ev, char *rv, size_t rvlen);
/* The --raw path: pods of ns matching selector (URL-encoded), watched from rv ("" = list first). */
int podwatch_path(char *buf, size_t n, const char *ns, const char *selector, const char *rv);

#endif
