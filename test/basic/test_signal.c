/* signal-util: blocked signals stay pending for the thread that waits for
 * them; a child's mask is cleared. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/signal-util.h"

static void restore(sigset_t *old)
{
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void block_stop_keeps_sigterm_for_sigwait(void **state)
{
    (void)state;
    sigset_t old, set, cur;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    assert_int_equal(sig_block_stop(&set), 0);
    assert_true(sigismember(&set, SIGINT));
    assert_true(sigismember(&set, SIGTERM));
    assert_true(sigismember(&set, SIGHUP));
    assert_false(sigismember(&set, SIGCHLD));
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    assert_true(sigismember(&cur, SIGTERM));
    assert_int_equal(kill(getpid(), SIGTERM), 0); /* would end the test if not blocked */
    int sig = 0;
    assert_int_equal(sigwait(&set, &sig), 0);
    assert_int_equal(sig, SIGTERM);
    restore(&old);
}

static void block_takes_a_list(void **state)
{
    (void)state;
    sigset_t old, set, cur;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    assert_int_equal(sig_block(&set, SIGUSR1, SIGCHLD, -1), 0);
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    assert_true(sigismember(&cur, SIGUSR1));
    assert_true(sigismember(&cur, SIGCHLD));
    assert_false(sigismember(&cur, SIGUSR2));
    restore(&old);
}

static void block_refuses_a_bad_number(void **state)
{
    (void)state;
    sigset_t old, cur;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    assert_int_equal(sig_block(NULL, SIGUSR2, 100000, -1), -EINVAL);
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    assert_false(sigismember(&cur, SIGUSR2));
    restore(&old);
}

static void block_all_then_child_unblocks_all(void **state)
{
    (void)state;
    sigset_t old, cur;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    assert_int_equal(sig_block_all(), 0);
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    assert_true(sigismember(&cur, SIGPIPE));
    assert_true(sigismember(&cur, SIGHUP));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* with the mask cleared, SIGTERM ends the child */
        if (sig_unblock_all() == 0)
            kill(getpid(), SIGTERM);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGTERM);
    restore(&old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(block_stop_keeps_sigterm_for_sigwait),
        cmocka_unit_test(block_takes_a_list),
        cmocka_unit_test(block_refuses_a_bad_number),
        cmocka_unit_test(block_all_then_child_unblocks_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
