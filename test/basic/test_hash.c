/* fnv1a32 and fnv1a64: the published FNV-1a test vectors, and folding in steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "basic/hash.h"

static void known_vectors(void **state)
{
    (void)state;
    assert_int_equal(fnv1a32(FNV1A32_INIT, ""), 0x811c9dc5u);
    assert_int_equal(fnv1a32(FNV1A32_INIT, NULL), 0x811c9dc5u);
    assert_int_equal(fnv1a32(FNV1A32_INIT, "a"), 0xe40c292cu);
    assert_int_equal(fnv1a32(FNV1A32_INIT, "foobar"), 0xbf9cf968u);
    assert_true(fnv1a64(FNV1A64_INIT, "") == 0xcbf29ce484222325ull);
    assert_true(fnv1a64(FNV1A64_INIT, "a") == 0xaf63dc4c8601ec8cull);
    assert_true(fnv1a64(FNV1A64_INIT, "foobar") == 0x85944171f73967e8ull);
    assert_true(fnv1a64(fnv1a64(FNV1A64_INIT, "foo"), "bar") == fnv1a64(FNV1A64_INIT, "foobar"));
}

static void folding_in_steps_is_hashing_the_concatenation(void **state)
{
    (void)state;
    assert_int_equal(fnv1a32(fnv1a32(fnv1a32(FNV1A32_INIT, "foo"), "/"), "bar"), fnv1a32(FNV1A32_INIT, "foo/bar"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_vectors),
        cmocka_unit_test(folding_in_steps_is_hashing_the_concatenation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
