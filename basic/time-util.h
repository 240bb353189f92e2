/* time-util — the monotonic clock, for deadlines and intervals (never for
 * wall-clock time: it does not jump when the system time is set). */
#ifndef KDIAG_BASIC_TIME_UTIL_H
#define KDIAG_BASIC_TIME_UTIL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds / microseconds. */
int64_t time_now_ms(void);
int64_t time_now_us(void);

/* The absolute time ms from now (a negative ms counts as 0) on clock, for
 * pthread_cond_timedwait (clock: the condition variable's, CLOCK_REALTIME
 * unless set otherwise). */
struct timespec time_deadline_ts(clockid_t clock, int64_t ms);

/* pthread_cond_init for a condition variable whose timed waits take
 * time_deadline_ts(CLOCK_MONOTONIC, ...). 0 or -errno. */
int time_cond_init_monotonic(pthread_cond_t *cv);

#endif
