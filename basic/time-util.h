/* time-util — the monotonic clock, for deadlines and intervals (never for
 * wall-clock time: it does not jump when the system time is set). */
#ifndef KDIAG_BASIC_TIME_UTIL_H
#define KDIAG_BASIC_TIME_UTIL_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds / microseconds. */
int64_t time_now_ms(void);
int64_t time_now_us(void);

#endif
