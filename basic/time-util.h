/* time-util — the monotonic clock, for deadlines and intervals (never for
 * wall-clock time: it does not jump when the system time is set). */
#ifndef KDIAG_BASIC_TIME_UTIL_H
#define KDIAG_BASIC_TIME_UTIL_H

#include <pthread.h>
#include <stdbool.h>
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

/* An event that anyone may cause as often as they like (a port scan, a busy
 * pod's peers): said at most once per window, the others counted. Zero is a
 * limit that has said nothing yet. The caller locks. */
typedef struct {
    int64_t said;   /* when the last one was said (ms, monotonic); 0: never */
    unsigned quiet; /* the ones not said since */
} time_ratelimit;

/* true: say this one now (the first, or window_ms after the last one said);
 * *quiet then holds how many were not said since that one. false: counted. */
bool time_ratelimit_pass(time_ratelimit *rl, int64_t window_ms, unsigned *quiet);

#endif
