/* test_exec_unit — exec's pure parser: the target's credentials from crafted
 * /proc/PID/status texts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "exec-internal.h"

static void test_effective_ids_and_groups(void **state)
{
    (void)state;
    exec_ids ids;
    const char *st = "\nName:\tsleep\nUid:\t1000\t1001\t1000\t1001\nGid:\t2000\t2001\t2000\t2001\n"
                     "FDSize:\t64\nGroups:\t4 24 1000 \nNStgid:\t7\n";
    assert_int_equal(exec_parse_status_ids(st, &ids), 0);
    assert_int_equal(ids.uid, 1001);
    assert_int_equal(ids.gid, 2001);
    assert_int_equal(ids.ngroups, 3);
    assert_int_equal(ids.groups[0], 4);
    assert_int_equal(ids.groups[2], 1000);
}

static void test_no_supplementary_groups(void **state)
{
    (void)state;
    exec_ids ids = {.ngroups = 9};
    assert_int_equal(exec_parse_status_ids("\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n", &ids), 0);
    assert_int_equal(ids.ngroups, 0);
    assert_int_equal(exec_parse_status_ids("\nUid:\t5\t5\t5\t5\nGid:\t5\t5\t5\t5\nGroups:", &ids), 0);
    assert_int_equal(ids.uid, 5);
    assert_int_equal(ids.ngroups, 0);
}

static void test_malformed_is_refused(void **state)
{
    (void)state;
    exec_ids ids;
    assert_int_equal(exec_parse_status_ids("", &ids), -EBADMSG);
    assert_int_equal(exec_parse_status_ids("\nUid:\t1\t1\nGroups:\t\n", &ids), -EBADMSG);          /* no Gid */
    assert_int_equal(exec_parse_status_ids("\nUid:\t1\nGid:\t1\t1\nGroups:\t\n", &ids), -EBADMSG); /* one uid */
    assert_int_equal(exec_parse_status_ids("\nUid:\t1\t1\nGid:\t1\t1\nGroups:\tx\n", &ids), -EBADMSG);
    assert_int_equal(exec_parse_status_ids("\nUid:\t1\t4294967295\nGid:\t1\t1\nGroups:\t\n", &ids), -EBADMSG);
}

static void test_too_many_groups_is_e2big(void **state)
{
    (void)state;
    exec_ids ids;
    char st[2048] = "\nUid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\t";
    for (int i = 0; i <= EXEC_GROUPS_MAX; i++)
        snprintf(st + strlen(st), sizeof st - strlen(st), "%d ", i);
    assert_int_equal(exec_parse_status_ids(st, &ids), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_effective_ids_and_groups),
        cmocka_unit_test(test_no_supplementary_groups),
        cmocka_unit_test(test_malformed_is_refused),
        cmocka_unit_test(test_too_many_groups_is_e2big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
