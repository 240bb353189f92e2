/* logs internals: line timestamps and colours, for the unit tests. */
#ifndef KDIAG_CLI_LOGS_INTERNAL_H
#define KDIAG_CLI_LOGS_INTERNAL_H

#include <stdint.h>

#include "logs.h"

typedef struct {
    int64_t sec;
    int32_t nsec;
} logs_ts;

/* Splits "2026-11-25T21:00:00.123456789Z text" into the time and the text. */
int logs_parse_ts(const char *line, logs_ts *ts, const char **text);
int logs_ts_cmp(const logs_ts *a, const logs_ts *b);
/* ANSI SGR code (e.g. "32") for a container, the same in every run. */
const char *logs_color_for(const char *pod, const char *container);

#endif
