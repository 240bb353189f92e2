/* cp's command line: which operand is the pod's, and the flags around it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "completion.h"
#include "cp-internal.h"
#include "flags.h"

static void test_operand_forms(void **state)
{
    (void)state;
    static const struct {
        const char *arg;
        bool remote, workload;
        const char *ns, *pod, *path;
    } cases[] = {
        {"web:/etc/hosts", true, false, "", "web", "/etc/hosts"},
        {"pod/web-0:/var/log", true, false, "", "web-0", "/var/log"},
        {"pods/web:rel/x", true, false, "", "web", "rel/x"},
        {"po/web:/", true, false, "", "web", "/"},
        {":/etc", true, false, "", "", "/etc"},
        {"./a:b", false, false, "", "", "./a:b"},
        {"/abs/path", false, false, "", "", "/abs/path"},
        {"plain", false, false, "", "", "plain"},
        /* kubectl cp's NAMESPACE/POD:PATH (beside another pod's path, operands() makes it local) */
        {"ns/web:/x", true, false, "ns", "web", "/x"},
        {"dir/a:b", true, false, "dir", "a", "b"},
        {"Dir/a:b", false, false, "", "", "Dir/a:b"},
        {"a.b/c:d", false, false, "", "", "a.b/c:d"},
        {"-x/c:d", false, false, "", "", "-x/c:d"},
        {"x/:d", false, false, "", "", "x/:d"},
        {"x/y/z:d", false, false, "", "", "x/y/z:d"},
        {"deploy/web:/etc/hosts", true, true, "", "deploy/web", "/etc/hosts"},
        {"svc/web:x", true, true, "", "svc/web", "x"},
        {"deploy/a/b:c", false, false, "", "", "deploy/a/b:c"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cp_operand op;
        char err[256] = "";
        assert_int_equal(cp_parse_operand(cases[i].arg, &op, err, sizeof err), 0);
        if (op.remote != cases[i].remote)
            fail_msg("%s: remote %d", cases[i].arg, op.remote);
        assert_int_equal(op.workload, cases[i].workload);
        assert_string_equal(op.ns, cases[i].ns);
        assert_string_equal(op.pod, cases[i].pod);
        assert_string_equal(op.path, cases[i].path);
    }
}

static void test_operand_without_path(void **state)
{
    (void)state;
    cp_operand op;
    char err[256] = "";
    assert_int_equal(cp_parse_operand("web:", &op, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "web:/etc/hosts"));
}

static void test_flags_take_two_operands(void **state)
{
    (void)state;
    flags f;
    char err[256];
    char *argv[] = {"kubectl-diag", "cp", "-n", "prod", "pod/web:/etc", "./etc", "-t", "app", NULL};
    assert_int_equal(flags_parse(8, argv, &f, err, sizeof err), 0);
    assert_int_equal(f.cmd, FLAGS_CMD_CP);
    assert_int_equal(f.ncp_args, 2);
    assert_string_equal(f.cp_args[0], "pod/web:/etc"); /* an operand, not --pod */
    assert_int_equal(f.npods, 0);
    assert_string_equal(f.ns, "prod");
    assert_string_equal(f.target, "app");
    flags_free(&f);

    char *one[] = {"kubectl-diag", "cp", "web:/x", NULL};
    assert_int_equal(flags_parse(3, one, &f, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "SOURCE and DEST"));
    flags_free(&f);
    char *three[] = {"kubectl-diag", "cp", "a", "b", "c", NULL};
    assert_int_equal(flags_parse(5, three, &f, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "\"c\" is a third"));
    flags_free(&f);
    /* after "--", operands only: a local file named -lead */
    char *dash[] = {"kubectl-diag", "cp", "-n", "prod", "--", "-lead", "pod/web:/tmp/", NULL};
    assert_int_equal(flags_parse(7, dash, &f, err, sizeof err), 0);
    assert_int_equal(f.ncp_args, 2);
    assert_string_equal(f.cp_args[0], "-lead");
    assert_int_equal(f.nlabels, 0);
    assert_int_equal(f.nrest, 0);
    flags_free(&f);
    char *dash3[] = {"kubectl-diag", "cp", "--", "a", "b", "c", NULL};
    assert_int_equal(flags_parse(6, dash3, &f, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "\"c\" is a third"));
    flags_free(&f);
}

static void test_completion_offers_cp(void **state)
{
    (void)state;
    char buf[4096] = "";
    FILE *out = fmemopen(buf, sizeof buf - 1, "w");
    kube k = {.kubectl = "/bin/false"};
    char *words[] = {"c"};
    completion_complete(out, &k, words, 1);
    fclose(out);
    assert_non_null(strstr(buf, "cp\n"));
}

static void test_human_bytes(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(cp_human_bytes(512, b, sizeof b), "512 B");
    assert_string_equal(cp_human_bytes(1536, b, sizeof b), "1.5 KiB");
    assert_string_equal(cp_human_bytes(4ULL << 30, b, sizeof b), "4.0 GiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operand_forms),
        cmocka_unit_test(test_operand_without_path),
        cmocka_unit_test(test_flags_take_two_operands),
        cmocka_unit_test(test_completion_offers_cp),
        cmocka_unit_test(test_human_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
