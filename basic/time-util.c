#include "basic/time-util.h"

#include <time.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t time_now_ms(void)
{
    return now_ns() / 1000000;
}

int64_t time_now_us(void)
{
    return now_ns() / 1000;
}
