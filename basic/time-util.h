/* time-util — the monotonic clock, for deadlines and intervals (never for
 * wall-clock time: it does not jump when the system time is set). */
#ifndef KDIAG_BASIC_TIME_UTIL_H
#define KDIAG_BASIC_TIME_UTIL_H

#include <pthread.h>
#include <stdio.h>
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
 * pod's peers): said at most once per window, the others counted; the last of
 * those is said when the window ends. Zero is a limit that has said nothing
 * yet. The caller locks. */
#define TIME_RATELIMIT_LINE_MAX 512
#define TIME_RATELIMIT_OUT_MAX (TIME_RATELIMIT_LINE_MAX + 64)
typedef struct {
    int64_t said;                       /* when the last one was said (ms, monotonic); 0: never */
    unsigned quiet;                     /* the ones not said since */
    char held[TIME_RATELIMIT_LINE_MAX]; /* the last of them (time_ratelimit_line) */
} time_ratelimit;

/* true: say this one now (the first, or window_ms after the last one said);
 * *quiet then holds how many were not said since that one. false: counted. */
bool time_ratelimit_pass(time_ratelimit *rl, int64_t window_ms, unsigned *quiet);

/* time_ratelimit_pass for a line: true: say out, the line with " (and N more
 * since the last such line)" when N were counted; false: counted, and held as
 * the last of them. */
bool time_ratelimit_line(time_ratelimit *rl, int64_t window_ms, const char *line, char *out, size_t outlen);

/* The lines held back: true when their window has ended (or at_end: the
 * caller stops): say out, the last of them with the count of the others; a
 * new window starts. *timeout: ms until the ones held are due, -1 none (a
 * poll timeout). */
bool time_ratelimit_flush(time_ratelimit *rl, int64_t window_ms, bool at_end, char *out, size_t outlen, int *timeout);

/* time_ratelimit_flush under mu (the caller does not hold it), the line said
 * on stream when due: the poll timeout until the ones held are due (-1: none). */
int time_ratelimit_say_held(time_ratelimit *rl, pthread_mutex_t *mu, int64_t window_ms, bool at_end, FILE *stream);

#endif
