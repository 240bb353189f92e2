/* fd-util: closing twice, O_NONBLOCK, writing more than a pipe holds. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/fd-util.h"

static void fd_close_sets_minus_one_and_is_idempotent(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int keep = p[0];
    fd_close(&p[0]);
    assert_int_equal(p[0], -1);
    assert_int_equal(fcntl(keep, F_GETFD), -1); /* really closed */
    fd_close(&p[0]);                            /* again: nothing */
    assert_int_equal(p[0], -1);
    fd_close(&p[1]);
}

static void fd_nonblock_sets_the_flag(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    assert_int_equal(fd_nonblock(p[0]), 0);
    assert_int_not_equal(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    char c;
    assert_int_equal(read(p[0], &c, 1), -1); /* empty: would block */
    assert_int_equal(errno, EAGAIN);
    fd_close(&p[0]);
    fd_close(&p[1]);
    assert_int_equal(fd_nonblock(-1), -EBADF);
}

#define BIG (1024 * 1024) /* many times a pipe's buffer: short writes */

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    size_t *got = calloc(1, sizeof *got);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++, (*got)++)
            if (buf[i] != (char)(*got % 251))
                return got; /* counted so far: the test sees it short */
    return got;
}

static void fd_write_all_writes_everything_in_order(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    char *data = malloc(BIG);
    assert_non_null(data);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (char)(i % 251);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drain, &p[0]), 0);
    assert_int_equal(fd_write_all(p[1], data, BIG), 0);
    fd_close(&p[1]);
    size_t *got;
    pthread_join(th, (void **)&got);
    assert_int_equal(*got, BIG);
    free(got);
    free(data);
    fd_close(&p[0]);
}

static void fd_write_all_reports_a_closed_reader(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    fd_close(&p[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(fd_write_all(p[1], "x", 1), -EPIPE);
    fd_close(&p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fd_close_sets_minus_one_and_is_idempotent),
        cmocka_unit_test(fd_nonblock_sets_the_flag),
        cmocka_unit_test(fd_write_all_writes_everything_in_order),
        cmocka_unit_test(fd_write_all_reports_a_closed_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
