/* Unit tests: the error convention of the CLI — exit codes decided in one
 * place (exitcode.c), every failure carries its message (kube_run, podsel,
 * portfwd_new), and the debug-build check that none is empty. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "exitcode.h"
#include "kube.h"
#include "podsel.h"
#include "portfwd.h"

#define MSG_CANARY 'X' /* what an "uninitialised" message buffer holds */

static void canary(char *err, size_t n)
{
    memset(err, MSG_CANARY, n - 1);
    err[n - 1] = '\0';
}

static void exit_codes_map_errno(void **state)
{
    (void)state;
    assert_int_equal(exitcode_of(0), 0);
    assert_int_equal(exitcode_of(-EINVAL), 2);
    int failures[] = {-ENOENT, -EIO, -ETIMEDOUT, -EACCES, -ENOEXEC, -EAGAIN, -EHOSTUNREACH, -ENOMEM, -E2BIG};
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++)
        assert_int_equal(exitcode_of(failures[i]), 1);
}

static void report_prints_the_message_once(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(exitcode_report(out, -ENOENT, "pod \"x\" not found"), 1);
    assert_int_equal(exitcode_report(out, 0, ""), 0);
    assert_int_equal(exitcode_report(out, -EINVAL, "no pod given"), 2);
    fclose(out);
    assert_string_equal(buf, "error: pod \"x\" not found\nerror: no pod given\n");
    free(buf);
}

static void empty_message_fails_a_debug_build(void **state)
{
    (void)state;
#ifdef NDEBUG
    skip();
#else
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *devnull = fopen("/dev/null", "w");
        freopen("/dev/null", "w", stderr);
        exitcode_report(devnull, -EIO, "");
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
#endif
}

static void kube_run_reports_a_failed_kubectl(void **state)
{
    (void)state;
    kube k = {.kubectl = "/bin/false"};
    kube_result r;
    char err[512];
    canary(err, sizeof(err));
    const char *args[] = {"get", "pod", "x", NULL};
    int rc = kube_run(&k, "get pod/x", args, NULL, 0, 5000, &r, err, sizeof(err));
    assert_int_equal(rc, -EIO); /* it used to return 0 */
    assert_int_equal(r.status, 1);
    assert_string_equal(err, "cannot get pod/x: kubectl exited with status 1 and no message");
    kube_result_free(&r);
}

static void kube_run_reports_a_missing_kubectl(void **state)
{
    (void)state;
    kube k = {.kubectl = "/nonexistent/kubectl"};
    kube_result r;
    char err[512];
    canary(err, sizeof(err));
    const char *args[] = {"version", NULL};
    assert_int_equal(kube_run(&k, "get pod/x", args, NULL, 0, 5000, &r, err, sizeof(err)), -ENOEXEC);
    assert_non_null(strstr(err, "kubectl not found: \"/nonexistent/kubectl\""));
    kube_result_free(&r);
}

static void missing_kubectl_is_not_a_missing_pod(void **state)
{
    (void)state;
    kube k = {.kubectl = "/nonexistent/kubectl"};
    pod_info p;
    char err[512];
    canary(err, sizeof(err));
    int rc = podsel_fetch(&k, "web", 5000, &p, err, sizeof(err));
    assert_int_not_equal(rc, -ENOENT); /* -ENOENT would make a forward think its pod was deleted */
    assert_true(rc < 0);
    assert_non_null(strstr(err, "kubectl not found"));
}

static void podsel_explains_not_found(void **state)
{
    (void)state;
    kube k = {.kubectl = FIXTURES "/kubectl-notfound", .ns = "team"};
    pod_info p;
    char err[512];
    canary(err, sizeof(err));
    assert_int_equal(podsel_fetch(&k, "ghost", 5000, &p, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "pod \"ghost\" not found in namespace \"team\""));
    canary(err, sizeof(err));
    assert_int_equal(podsel_one(&k, NULL, NULL, NULL, 5000, &p, err, sizeof(err)), -EINVAL);
    assert_int_equal(exitcode_of(-EINVAL), 2);
    assert_non_null(strstr(err, "no pod given"));
}

static bool gone(pid_t pid)
{
    char path[64], st[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool zombie = fgets(st, sizeof(st), f) && strstr(st, ") Z ");
    fclose(f);
    return zombie;
}

/* The deadline (--timeout) kills kubectl's whole process group: behind a
 * wrapper script the real kubectl is a grandchild. */
static void kube_run_timeout_kills_the_wrapped_kubectl(void **state)
{
    (void)state;
    char pidfile[] = "/tmp/kdiag-test-pid-XXXXXX";
    int fd = mkstemp(pidfile);
    assert_true(fd >= 0);
    close(fd);
    setenv("KDIAG_TEST_PIDFILE", pidfile, 1);
    kube k = {.kubectl = FIXTURES "/kubectl-wrapper-hangs"};
    kube_result r;
    char err[512];
    canary(err, sizeof(err));
    const char *args[] = {"get", "pods", NULL};
    assert_int_equal(kube_run(&k, "list pods", args, NULL, 0, 500, &r, err, sizeof(err)), -ETIMEDOUT);
    assert_non_null(strstr(err, "cannot list pods: kubectl did not answer within 0.5s;"));
    kube_result_free(&r);
    FILE *f = fopen(pidfile, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    unlink(pidfile);
    for (int i = 0; i < 100 && !gone(pid); i++)
        usleep(20000);
    assert_true(gone(pid));
}

/* Out of file descriptors: portfwd_new used to return -EAGAIN with the
 * caller's message left uninitialised. */
static void portfwd_new_fills_the_message(void **state)
{
    (void)state;
    kube k = {.kubectl = "kubectl"};
    portfwd *pf = (portfwd *)&k;
    char err[512];
    canary(err, sizeof(err));
    struct rlimit old, none = {0, 0};
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    none.rlim_max = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
    int rc = portfwd_new(&pf, &k, "web", "dbg-tools-1", 1000, 1001, 1000, err, sizeof(err));
    setrlimit(RLIMIT_NOFILE, &old);
    assert_int_equal(rc, -EMFILE);
    assert_null(pf);
    assert_string_equal(err, "cannot port-forward to pod/web: eventfd: Too many open files");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exit_codes_map_errno),
        cmocka_unit_test(report_prints_the_message_once),
        cmocka_unit_test(empty_message_fails_a_debug_build),
        cmocka_unit_test(kube_run_reports_a_failed_kubectl),
        cmocka_unit_test(kube_run_reports_a_missing_kubectl),
        cmocka_unit_test(missing_kubectl_is_not_a_missing_pod),
        cmocka_unit_test(podsel_explains_not_found),
        cmocka_unit_test(kube_run_timeout_kills_the_wrapped_kubectl),
        cmocka_unit_test(portfwd_new_fills_the_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
