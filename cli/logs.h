/* logs — `kubectl diag logs`: follows many containers at once.
 *
 * One `kubectl logs -f --timestamps` child per container, all read by one
 * poll loop; pods are re-listed every LOGS_POLL_MS to pick up new pods and
 * restarted containers. A stream that ends while its container still runs is
 * resumed from its last timestamp without repeating lines. */
#ifndef KDIAG_CLI_LOGS_H
#define KDIAG_CLI_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flags.h"
#include "kube.h"

#define LOGS_POLL_MS 2000

typedef struct {
    int64_t sec;
    int32_t nsec;
} logs_ts;

/* Splits "2026-11-25T21:00:00.123456789Z text" into the time and the text. */
int logs_parse_ts(const char *line, logs_ts *ts, const char **text);
int logs_ts_cmp(const logs_ts *a, const logs_ts *b);
/* ANSI SGR code (e.g. "32") for a container, the same in every run. */
const char *logs_color_for(const char *pod, const char *container);
/* Exit code: 0 after Ctrl-C without a command; the command's otherwise. */
int logs_main(const flags *f, const kube *k);

#endif
