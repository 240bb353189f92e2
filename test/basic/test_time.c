/* time-util: the clock is monotonic, ms and us agree, deadlines are ms ahead,
 * a rate limit passes one event per window and counts the others. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "basic/time-util.h"

static void ms_and_us_count_the_same_clock(void **state)
{
    (void)state;
    int64_t ms0 = time_now_ms(), us0 = time_now_us();
    struct timespec d = {.tv_nsec = 20 * 1000000};
    nanosleep(&d, NULL);
    int64_t us1 = time_now_us(), ms1 = time_now_ms();
    assert_true(ms1 - ms0 >= 20);
    assert_true(us1 - us0 >= 20000);
    /* the same clock: each read in us falls between the reads in ms around it
     * (a different clock, say CLOCK_REALTIME, would be decades off) */
    assert_true(ms0 <= us0 / 1000 && us0 / 1000 <= ms1);
    assert_true(ms0 <= us1 / 1000 && us1 / 1000 <= ms1);
}

static void never_goes_back(void **state)
{
    (void)state;
    int64_t prev = time_now_us();
    for (int i = 0; i < 100000; i++) {
        int64_t t = time_now_us();
        assert_true(t >= prev);
        prev = t;
    }
}

static void deadline_is_ms_ahead_and_normalised(void **state)
{
    (void)state;
    for (int64_t ms = 0; ms < 3000; ms += 137) {
        struct timespec now, dl;
        clock_gettime(CLOCK_MONOTONIC, &now);
        dl = time_deadline_ts(CLOCK_MONOTONIC, ms);
        assert_true(dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000L);
        int64_t ahead = (int64_t)(dl.tv_sec - now.tv_sec) * 1000 + (dl.tv_nsec - now.tv_nsec) / 1000000;
        assert_true(ahead >= ms - 1 && ahead <= ms + 1000); /* + however long this thread was not running */
    }
    struct timespec now, dl;
    clock_gettime(CLOCK_REALTIME, &now);
    dl = time_deadline_ts(CLOCK_REALTIME, -5000); /* counts as 0 */
    assert_true(dl.tv_sec >= now.tv_sec && dl.tv_sec - now.tv_sec <= 1);
    assert_true(dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000L);
}

/* A timed wait on such a condition variable ends at the monotonic deadline. */
static void monotonic_cond_times_out_on_time(void **state)
{
    (void)state;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    assert_int_equal(time_cond_init_monotonic(&cv), 0);
    int64_t t0 = time_now_ms();
    struct timespec dl = time_deadline_ts(CLOCK_MONOTONIC, 50);
    pthread_mutex_lock(&mu);
    int rc;
    while ((rc = pthread_cond_timedwait(&cv, &mu, &dl)) == 0)
        ;
    pthread_mutex_unlock(&mu);
    int64_t took = time_now_ms() - t0;
    assert_int_equal(rc, ETIMEDOUT);
    assert_true(took >= 49 && took < 5000);
    pthread_cond_destroy(&cv);
}

/* The first passes, the next ones in the window are counted, and the first
 * after the window passes with that count (the window's end comes by moving
 * the last pass back, not by waiting). */
static void ratelimit_passes_one_per_window_and_counts_the_others(void **state)
{
    (void)state;
    time_ratelimit rl = {0};
    unsigned quiet = 99;
    assert_true(time_ratelimit_pass(&rl, 10000, &quiet));
    assert_int_equal(quiet, 0);
    for (int i = 0; i < 3; i++)
        assert_false(time_ratelimit_pass(&rl, 10000, &quiet));
    rl.said -= 10000;
    assert_true(time_ratelimit_pass(&rl, 10000, &quiet));
    assert_int_equal(quiet, 3);
    assert_false(time_ratelimit_pass(&rl, 10000, &quiet)); /* a new window */
}

/* The lines counted are said with the count, and the last of them when the
 * window ends (or at once at the end) with the count of the others. */
static void ratelimit_says_the_lines_held_back_when_the_window_ends(void **state)
{
    (void)state;
    time_ratelimit rl = {0};
    char out[TIME_RATELIMIT_OUT_MAX], line[16];
    int timeout = 99;
    assert_false(time_ratelimit_flush(&rl, 10000, true, out, sizeof out, &timeout)); /* nothing counted */
    assert_int_equal(timeout, -1);
    assert_true(time_ratelimit_line(&rl, 10000, "c0", out, sizeof out));
    assert_string_equal(out, "c0");
    for (int i = 1; i <= 4; i++) {
        snprintf(line, sizeof line, "c%d", i);
        assert_false(time_ratelimit_line(&rl, 10000, line, out, sizeof out));
    }
    assert_false(time_ratelimit_flush(&rl, 10000, false, out, sizeof out, &timeout)); /* the window runs */
    assert_in_range(timeout, 9000, 10000);
    rl.said -= 10000;
    assert_true(time_ratelimit_flush(&rl, 10000, false, out, sizeof out, &timeout));
    assert_string_equal(out, "c4 (and 3 more since the last such line)");
    assert_int_equal(timeout, -1);
    assert_false(time_ratelimit_line(&rl, 10000, "c5", out, sizeof out));           /* a new window */
    assert_true(time_ratelimit_flush(&rl, 10000, true, out, sizeof out, &timeout)); /* at the end: at once */
    assert_string_equal(out, "c5");
    assert_false(time_ratelimit_line(&rl, 10000, "c6", out, sizeof out));
    assert_false(time_ratelimit_line(&rl, 10000, "c7", out, sizeof out));
    rl.said -= 10000; /* the next one after the window passes with the count */
    assert_true(time_ratelimit_line(&rl, 10000, "c8", out, sizeof out));
    assert_string_equal(out, "c8 (and 2 more since the last such line)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ms_and_us_count_the_same_clock),
        cmocka_unit_test(never_goes_back),
        cmocka_unit_test(deadline_is_ms_ahead_and_normalised),
        cmocka_unit_test(monotonic_cond_times_out_on_time),
        cmocka_unit_test(ratelimit_passes_one_per_window_and_counts_the_others),
        cmocka_unit_test(ratelimit_says_the_lines_held_back_when_the_window_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
