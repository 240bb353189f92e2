/* time-util: the clock is monotonic and ms and us agree. */
#include <setjmp.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ms_and_us_count_the_same_clock),
        cmocka_unit_test(never_goes_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
