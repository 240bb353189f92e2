/* text_shown: short text whole, control bytes escaped, long text cut in the
 * middle within its bounds, a UTF-8 character never cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "basic/text-util.h"

static void short_whole_escaped(void **state)
{
    (void)state;
    char out[TEXT_SHOWN_SIZE(8, 8)];
    assert_string_equal(text_shown(out, "run=web", 8, 8), "run=web");
    assert_string_equal(text_shown(out, "a\nb\x1b\x01", 8, 8), "a\\nb\\e\\x01");
}

static void long_cut_in_the_middle(void **state)
{
    (void)state;
    char s[1025], out[TEXT_SHOWN_SIZE(4, 6)];
    memset(s, 'x', sizeof s - 1);
    s[sizeof s - 1] = '\0';
    memcpy(s, "head", 4);
    memcpy(s + 1018, "tail!!", 6);
    assert_string_equal(text_shown(out, s, 4, 6), "head…tail!!");
    /* "é" (2 bytes) across the head's end: left out whole */
    assert_string_equal(text_shown(out, "abcé-------------xyz", 4, 6), "abc…---xyz");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(short_whole_escaped),
        cmocka_unit_test(long_cut_in_the_middle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
