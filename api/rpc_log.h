/* rpc_log — what the rpc server writes to stderr (the manager's log, which
 * the CLI reads for the start-up lines), made safe from the peers it talks
 * about: every byte a peer chose is escaped and bounded, and lines caused by
 * peers that did not prove the token ("noise") are rate-limited, with one
 * summary line per period for the rest. Private to api/rpc_server.c. */
#ifndef KDIAG_RPC_LOG_H
#define KDIAG_RPC_LOG_H

#include <stddef.h>
#include <stdint.h>

#define RPC_LOG_FIELD 128         /* buffer for one peer-chosen string as shown */
#define RPC_NOISE_PERIOD_MS 10000 /* noise is counted per period ... */
#define RPC_NOISE_LINES 3         /* ... and this many lines of it shown in each */

/* Copies in[0..len) into out (outsz >= 4 bytes) as printable ASCII: '\\',
 * '"', '\n', '\r', '\t' as C escapes, other bytes outside 0x20-0x7e as \xNN;
 * what does not fit is cut and marked "...". in may be NULL ("?"). */
void rpc_log_escape(char *out, size_t outsz, const void *in, size_t len);

/* One line on stderr ("kdiag rpc: " + fmt + "\n"); fmt's arguments must be
 * escaped already. */
void rpc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for a line an unauthenticated peer caused: shown when fewer than
 * RPC_NOISE_LINES were shown in this period, else counted. */
void rpc_log_noise(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes the summary of a period that has ended ("N more lines ... not
 * shown"); returns the ms until the current period ends while lines are
 * being counted (call again then), else -1. */
int64_t rpc_log_noise_tick(void);

/* gRPC core's own log lines (it logs what peers send when it cannot parse
 * it) go through rpc_log_noise too, escaped, from now on. */
void rpc_log_capture_grpc(void);

#endif
