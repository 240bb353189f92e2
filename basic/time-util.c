#include "basic/time-util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000L

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

int64_t time_now_ms(void)
{
    return now_ns() / 1000000;
}

int64_t time_now_us(void)
{
    return now_ns() / 1000;
}

struct timespec time_deadline_ts(clockid_t clock, int64_t ms)
{
    struct timespec ts;
    if (ms < 0)
        ms = 0;
    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= NS_PER_S) {
        ts.tv_sec++;
        ts.tv_nsec -= NS_PER_S;
    }
    return ts;
}

int time_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0)
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return -rc;
}

bool time_ratelimit_pass(time_ratelimit *rl, int64_t window_ms, unsigned *quiet)
{
    int64_t now = time_now_ms();
    *quiet = rl->quiet;
    if (rl->said && now - rl->said < window_ms) {
        rl->quiet++;
        return false;
    }
    rl->said = now;
    rl->quiet = 0;
    return true;
}

static void with_more(const char *line, unsigned quiet, char *out, size_t outlen)
{
    if (quiet)
        snprintf(out, outlen, "%s (and %u more since the last such line)", line, quiet);
    else
        snprintf(out, outlen, "%s", line);
}

bool time_ratelimit_line(time_ratelimit *rl, int64_t window_ms, const char *line, char *out, size_t outlen)
{
    unsigned quiet;
    if (!time_ratelimit_pass(rl, window_ms, &quiet)) {
        snprintf(rl->held, sizeof rl->held, "%s", line);
        return false;
    }
    with_more(line, quiet, out, outlen);
    return true;
}

bool time_ratelimit_flush(time_ratelimit *rl, int64_t window_ms, bool at_end, char *out, size_t outlen, int *timeout)
{
    int64_t now = time_now_ms(), due = rl->said + window_ms;
    bool say = rl->quiet && (at_end || now >= due);
    if (say) {
        with_more(rl->held, rl->quiet - 1, out, outlen);
        rl->said = now;
        rl->quiet = 0;
    }
    *timeout = !rl->quiet ? -1 : due > now ? (int)(due - now) : 0;
    return say;
}

int time_ratelimit_say_held(time_ratelimit *rl, pthread_mutex_t *mu, int64_t window_ms, bool at_end, FILE *stream)
{
    char out[TIME_RATELIMIT_OUT_MAX];
    int timeout;
    pthread_mutex_lock(mu);
    bool say = time_ratelimit_flush(rl, window_ms, at_end, out, sizeof out, &timeout);
    pthread_mutex_unlock(mu);
    if (say)
        fprintf(stream, "%s\n", out);
    return timeout;
}
