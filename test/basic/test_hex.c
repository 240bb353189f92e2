/* hex_of and hex_random: digits, length, and two random names that differ. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "basic/hex-util.h"

static void of_bytes(void **state)
{
    (void)state;
    char out[9];
    hex_of("\x00\x7f\xa5\xff", 4, out);
    assert_string_equal(out, "007fa5ff");
    hex_of("", 0, out);
    assert_string_equal(out, "");
}

static void random_names(void **state)
{
    (void)state;
    char a[17], b[17];
    memset(a, 'x', sizeof a);
    assert_int_equal(hex_random(a, 8), 0);
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strspn(a, "0123456789abcdef"), 16);
    assert_int_equal(hex_random(b, 8), 0);
    assert_string_not_equal(a, b); /* 2^-64 */
    char big[200];
    assert_int_equal(hex_random(big, 65), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(of_bytes),
        cmocka_unit_test(random_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
