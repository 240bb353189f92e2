/* Unit tests for scratch-shell/target.c against a made-up /proc tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target.h"

static char proc_root[256];

static void put(const char *pid, const char *name, const char *content, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", proc_root, pid);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", proc_root, pid, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
}

static int setup(void **state)
{
    (void)state;
    snprintf(proc_root, sizeof(proc_root), "/tmp/kdiag-target-test-%d-XXXXXX", (int)getpid());
    assert_non_null(mkdtemp(proc_root));
    put("1", "cgroup", "0::/kubepods/pod-x/pause0000\n", 29);
    put("3", "cgroup", "4:name=c0ffee42:/other\n", 23); /* id only in a controller name */
    const char *two = "12:pids:/kubepods/pod-x/c0ffee42\n0::/kubepods/pod-x/c0ffee42\n";
    put("7", "cgroup", two, strlen(two));
    put("5", "cgroup", "0::/kubepods/pod-x/c0ffee42", 27);   /* no final newline */
    put("4", "cgroup", "0::/kubepods/pod-x/c0ffee42\n", 28); /* "self" below */
    put("12", "cgroup", "0::/kubepods/pod-x/beef\n", 24);
    put("abc", "cgroup", "0::/c0ffee42\n", 13); /* not a pid */
    static const char *const forms[][2] = {
        {"100", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b.slice/"
                "cri-containerd-aaa111.scope\n"},
        {"101", "0::/kubepods.slice/kubepods-burstable.slice/crio-bbb222.scope\n"},
        {"102", "0::/system.slice/docker-ccc333.scope\n"},
        {"103", "0::/kubepods/burstable/pod-y/ddd444\n"},
        {"104", "0::/kubepods/pod-x/eee555eee\n"},                /* eee555 is only part of an id */
        {"105", "0::/kubepods.slice/crio-conmon-fff666.scope\n"}, /* CRI-O's monitor, not the container */
        {"106", "0::/kubepods/podggg777-uid/hhh888\n"},           /* ggg777 is only part of a pod uid */
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
        put(forms[i][0], "cgroup", forms[i][1], strlen(forms[i][1]));
    put("5", "environ", "PATH=/a:/b\0TERM=dumb\0HOME=/h\0", 29);
    put("6", "environ", "A=1\0B=2", 7); /* no final NUL */
    put("8", "environ", "", 0);
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", proc_root);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_lowest_pid_wins_and_self_is_skipped(void **state)
{
    pid_t pid = 0;
    (void)state;
    assert_int_equal(target_find_by_container_id(proc_root, "c0ffee42", 4, &pid), 0);
    assert_int_equal(pid, 5);
    assert_int_equal(target_find_by_container_id(proc_root, "beef", 4, &pid), 0);
    assert_int_equal(pid, 12);
}

static void test_no_match_and_controller_names(void **state)
{
    pid_t pid = 0;
    (void)state;
    assert_int_equal(target_find_by_container_id(proc_root, "name", 0, &pid), -ESRCH);
    assert_int_equal(target_find_by_container_id(proc_root, "deadbeef", 0, &pid), -ESRCH);
    assert_int_equal(target_find_by_container_id("/nonexistent-proc", "x", 0, &pid), -ENOENT);
}

/* The id names a whole cgroup path component, bare or in the runtimes' forms;
 * it never matches part of a longer id or of a pod uid. */
static void test_id_is_a_whole_path_component(void **state)
{
    static const struct {
        const char *id;
        int ret;
        pid_t pid;
    } cases[] = {
        {"aaa111", 0, 100},    {"bbb222", 0, 101},    {"ccc333", 0, 102},
        {"ddd444", 0, 103},    {"eee555", -ESRCH, 0}, {"fff666", -ESRCH, 0},
        {"ggg777", -ESRCH, 0}, {"aaa11", -ESRCH, 0},  {"containerd-aaa111", -ESRCH, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pid_t pid = 0;
        assert_int_equal(target_find_by_container_id(proc_root, cases[i].id, 0, &pid), cases[i].ret);
        if (cases[i].ret == 0)
            assert_int_equal(pid, cases[i].pid);
    }
}

/* A request's Target: container id (any runtime prefix) first, else the pid, else 1. */
static void test_resolve(void **state)
{
    pid_t pid = 0;
    (void)state;
    assert_int_equal(target_resolve(proc_root, "containerd://c0ffee42", 7, 4, &pid), 0);
    assert_int_equal(pid, 5);
    assert_int_equal(target_resolve(proc_root, "", 42, 4, &pid), 0);
    assert_int_equal(pid, 42);
    assert_int_equal(target_resolve(proc_root, NULL, 0, 4, &pid), 0);
    assert_int_equal(pid, 1);
    assert_int_equal(target_resolve(proc_root, "a/b", 0, 4, &pid), -EINVAL);
    assert_int_equal(target_resolve(proc_root, "deadbeef", 0, 4, &pid), -ESRCH);
    assert_int_equal(target_resolve(proc_root, NULL, (uint64_t)INT_MAX + 1, 4, &pid), -ERANGE);
}

static void test_normalize_id(void **state)
{
    (void)state;
    assert_string_equal(target_normalize_id("containerd://abc123"), "abc123");
    assert_string_equal(target_normalize_id("cri-o://x.y_z-1"), "x.y_z-1");
    assert_string_equal(target_normalize_id("abc"), "abc");
    assert_null(target_normalize_id(""));
    assert_null(target_normalize_id("docker://"));
    assert_null(target_normalize_id("a/b"));
    assert_null(target_normalize_id("a b"));
}

static void test_environ_term_from_caller(void **state)
{
    char **env = NULL;
    (void)state;
    assert_int_equal(target_read_environ(proc_root, 5, "xterm-256color", &env), 0);
    assert_string_equal(env[0], "PATH=/a:/b");
    assert_string_equal(env[1], "HOME=/h");
    assert_string_equal(env[2], "TERM=xterm-256color");
    assert_null(env[3]);
    target_env_free(env);

    /* No terminal on our side: the target's TERM describes none of ours. */
    assert_int_equal(target_read_environ(proc_root, 5, NULL, &env), 0);
    assert_string_equal(env[0], "PATH=/a:/b");
    assert_string_equal(env[1], "HOME=/h");
    assert_null(env[2]);
    target_env_free(env);
}

static void test_environ_edge_cases(void **state)
{
    char **env = NULL;
    (void)state;
    assert_int_equal(target_read_environ(proc_root, 6, NULL, &env), 0);
    assert_string_equal(env[0], "A=1");
    assert_string_equal(env[1], "B=2");
    assert_null(env[2]);
    target_env_free(env);
    assert_int_equal(target_read_environ(proc_root, 8, "t", &env), 0);
    assert_string_equal(env[0], "TERM=t");
    assert_null(env[1]);
    target_env_free(env);
    assert_int_equal(target_read_environ(proc_root, 99, "t", &env), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowest_pid_wins_and_self_is_skipped),
        cmocka_unit_test(test_no_match_and_controller_names),
        cmocka_unit_test(test_id_is_a_whole_path_component),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_normalize_id),
        cmocka_unit_test(test_environ_term_from_caller),
        cmocka_unit_test(test_environ_edge_cases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
