/* flags internals: the parsers of single option values, for the unit tests. */
#ifndef KDIAG_CLI_FLAGS_INTERNAL_H
#define KDIAG_CLI_FLAGS_INTERNAL_H

#include "flags.h"

/* "80" -> 80:80, "80:8080" -> 80:8080; ports 1..65535; "http:8080" -> the
 * port named http, 8080 here; "http" -> the port named http, local 0. */
int flags_parse_port_pair(const char *s, flags_portpair *pp, char *err, size_t errlen);
/* Go-style durations: "500ms", "2m", "1m30s", "1h", "0". */
int flags_parse_duration(const char *s, int64_t *ms);
/* Splits "VALUE[:CONTAINER]" at the last ':' (label selectors and pod names never contain one). */
int flags_parse_selector(const char *s, flags_selector *sel, char *err, size_t errlen);

#endif
