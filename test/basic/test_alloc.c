/* grow_array and dynbuf: growth, overflow, reading a pipe to its end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/alloc-util.h"
#include "basic/dynbuf.h"

static void grow_array_doubles_from_first(void **state)
{
    (void)state;
    int *v = NULL;
    size_t cap = 0;
    assert_int_equal(GROW_ARRAY(v, cap, 1, 4), 0);
    assert_int_equal(cap, 4);
    v[3] = 3;
    assert_int_equal(GROW_ARRAY(v, cap, 4, 4), 0); /* fits: no change */
    assert_int_equal(cap, 4);
    assert_int_equal(GROW_ARRAY(v, cap, 5, 4), 0);
    assert_int_equal(cap, 8);
    assert_int_equal(GROW_ARRAY(v, cap, 100, 4), 0);
    assert_int_equal(cap, 128);
    assert_int_equal(v[3], 3); /* contents kept */
    free(v);
}

static void grow_array_refuses_overflow(void **state)
{
    (void)state;
    uint64_t *v = NULL;
    size_t cap = 0;
    assert_int_equal(GROW_ARRAY(v, cap, SIZE_MAX / 4, 1), -ENOMEM);
    assert_null(v);
    assert_int_equal(cap, 0);
    assert_int_equal(GROW_ARRAY(v, cap, SIZE_MAX, 1), -ENOMEM);
    assert_int_equal(cap, 0);
}

static void dynbuf_reads_a_pipe_to_its_end(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* more than one read's worth, so the buffer grows */
    static char data[20000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(write(p[1], data, sizeof data) == (ssize_t)sizeof data ? 0 : 1);
    }
    close(p[1]);
    dynbuf b = {0};
    int rc;
    while ((rc = dynbuf_read(&b, p[0])) > 0) {
    }
    close(p[0]);
    assert_int_equal(rc, 0);
    assert_int_equal(b.len, sizeof data);
    assert_memory_equal(b.p, data, sizeof data);
    assert_int_equal(b.p[b.len], '\0');
    dynbuf_free(&b);
    assert_null(b.p);
}

static void dynbuf_consume_keeps_the_rest_terminated(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "one\ntwo\nthr", 11), 11);
    close(p[1]);
    dynbuf b = {0};
    assert_int_equal(dynbuf_read(&b, p[0]), 1);
    dynbuf_consume(&b, 8);
    assert_string_equal(b.p, "thr");
    assert_int_equal(b.len, 3);
    assert_int_equal(dynbuf_read(&b, p[0]), 0);
    close(p[0]);
    char *s = dynbuf_steal(&b);
    assert_string_equal(s, "thr");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    free(s);
}

static void dynbuf_steal_of_nothing_is_empty_string(void **state)
{
    (void)state;
    dynbuf b = {0};
    char *s = dynbuf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    dynbuf_consume(&b, 0); /* harmless on an empty buffer */
    dynbuf_free(&b);
}

static void dynbuf_read_error_is_negative_errno(void **state)
{
    (void)state;
    dynbuf b = {0};
    assert_int_equal(dynbuf_read(&b, -1), -EBADF);
    dynbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grow_array_doubles_from_first),
        cmocka_unit_test(grow_array_refuses_overflow),
        cmocka_unit_test(dynbuf_reads_a_pipe_to_its_end),
        cmocka_unit_test(dynbuf_consume_keeps_the_rest_terminated),
        cmocka_unit_test(dynbuf_steal_of_nothing_is_empty_string),
        cmocka_unit_test(dynbuf_read_error_is_negative_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
