/* test_splice_loop — api/splice_loop over real loopback TCP connections:
 * bytes and half-closes both ways, a reset passed on, the pair limit, and
 * splice_loop_free ending what still runs with no thread left. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "splice_loop-internal.h"
#include "tproc.h"
#include "tsock.h"

/* What a pair's end and a post on the loop thread report to the test. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int a, b, rc;
    bool added;
    int ended, err;
    bool oob;           /* a's FIN is reported (a_eof), not sent on b */
    bool fin_both;      /* b_fin_when_both */
    int eofs;           /* a_eof calls */
    uint64_t eof_bytes; /* ... and their count */
    splice_pair *sp;
    uint64_t shut_after; /* for shut_on_loop */
} obs;

static splice_loop *loop;

static void on_done(void *ud, int err)
{
    obs *o = ud;
    pthread_mutex_lock(&o->mu);
    o->ended++;
    o->err = err;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static bool on_a_eof(void *ud, uint64_t bytes)
{
    obs *o = ud;
    pthread_mutex_lock(&o->mu);
    o->eofs++;
    o->eof_bytes = bytes;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    return true;
}

static void add_on_loop(void *ud)
{
    obs *o = ud;
    splice_pair_opts po = {.done = on_done, .a_eof = o->oob ? on_a_eof : NULL, .b_fin_when_both = o->fin_both, .ud = o};
    int rc = splice_loop_pair_opts(loop, o->a, o->b, &po, &o->sp);
    pthread_mutex_lock(&o->mu);
    o->rc = rc;
    o->added = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

/* Splices two fresh connections; *x and *y are their far ends. Returns splice_loop_pair's result. */
static int add_pair_with(obs *o, bool oob, bool fin_both, int *x, int *y)
{
    *o = (obs){.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .oob = oob, .fin_both = fin_both};
    assert_int_equal(tsock_loopback_pair(x, &o->a, 0), 0);
    assert_int_equal(tsock_loopback_pair(y, &o->b, 0), 0);
    assert_int_equal(splice_loop_post(loop, add_on_loop, o), 0);
    pthread_mutex_lock(&o->mu);
    while (!o->added)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    return o->rc;
}

static int add_pair_oob(obs *o, bool oob, int *x, int *y)
{
    return add_pair_with(o, oob, false, x, y);
}

static int add_pair(obs *o, int *x, int *y)
{
    return add_pair_oob(o, false, x, y);
}

static void wait_ended(obs *o)
{
    pthread_mutex_lock(&o->mu);
    while (!o->ended)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

static void wait_eof_told(obs *o)
{
    pthread_mutex_lock(&o->mu);
    while (!o->eofs)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

/* Reads to EOF or error (2 s at most): bytes, or -errno. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1)
            return -ETIMEDOUT;
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r < 0)
            return -errno;
        if (r == 0 || (n += (size_t)r) == cap)
            return (ssize_t)n;
    }
}

static int setup(void **state)
{
    (void)state;
    splice_loop_opts o = {.max_pairs = 2};
    return splice_loop_new(&loop, &o);
}

static int teardown(void **state)
{
    (void)state;
    splice_loop_free(loop);
    loop = NULL;
    return 0;
}

static void test_bytes_and_half_closes_both_ways(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[64];
    assert_int_equal(add_pair(&o, &x, &y), 0);
    assert_int_equal(send(x, "hello", 5, 0), 5);
    shutdown(x, SHUT_WR);
    assert_int_equal(read_all(y, buf, sizeof buf), 5); /* the data, then EOF: the half-close came through */
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(send(y, "back", 4, 0), 4); /* the other direction still runs */
    shutdown(y, SHUT_WR);
    assert_int_equal(read_all(x, buf, sizeof buf), 4);
    assert_memory_equal(buf, "back", 4);
    wait_ended(&o);
    assert_int_equal(o.err, 0);
    close(x);
    close(y);
}

static void shut_on_loop(void *ud)
{
    obs *o = ud;
    splice_pair_shut_after(o->sp, o->shut_after);
}

/* a's FIN is reported with its byte count and b stays open; b's side's
 * half-close, told out of band, shuts a after that many bytes. */
static void test_half_close_out_of_band(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[64];
    assert_int_equal(add_pair_oob(&o, true, &x, &y), 0);
    assert_int_equal(send(x, "hello", 5, 0), 5);
    shutdown(x, SHUT_WR);
    wait_eof_told(&o);
    assert_int_equal(o.eof_bytes, 5);
    assert_int_equal(recv(y, buf, sizeof buf, 0), 5);
    struct pollfd p = {.fd = y, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 200), 0); /* no FIN on b */
    assert_int_equal(send(y, "back", 4, 0), 4);
    o.shut_after = 4;
    assert_int_equal(splice_loop_post(loop, shut_on_loop, &o), 0); /* may come before the bytes */
    assert_int_equal(read_all(x, buf, sizeof buf), 4);             /* the bytes, then EOF */
    assert_memory_equal(buf, "back", 4);
    wait_ended(&o); /* both directions done: b is closed */
    assert_int_equal(o.err, 0);
    assert_int_equal(o.eofs, 1);
    assert_int_equal(read_all(y, buf, sizeof buf), 0);
    close(x);
    close(y);
}

/* b's side closed first (its half-close told out of band, a shut); then a's
 * FIN goes on b as a FIN: both directions are over, nothing to report. */
static void test_full_close_sends_fin_unreported(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[64];
    assert_int_equal(add_pair_oob(&o, true, &x, &y), 0);
    assert_int_equal(send(y, "bye", 3, 0), 3);
    o.shut_after = 3;
    assert_int_equal(splice_loop_post(loop, shut_on_loop, &o), 0);
    assert_int_equal(read_all(x, buf, sizeof buf), 3); /* the bytes, then EOF */
    assert_int_equal(send(x, "ok", 2, 0), 2);
    shutdown(x, SHUT_WR);
    assert_int_equal(read_all(y, buf, sizeof buf), 2); /* the bytes, then the FIN */
    assert_memory_equal(buf, "ok", 2);
    wait_ended(&o);
    assert_int_equal(o.err, 0);
    assert_int_equal(o.eofs, 0);
    close(x);
    close(y);
}

/* b_fin_when_both: b's side FINs while a -> b still runs (its end was torn
 * down: through kubectl port-forward a reset arrives as a FIN), and a gets a
 * reset, not a clean end after what came. */
static void test_early_fin_from_b_resets_a(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[64];
    assert_int_equal(add_pair_with(&o, true, true, &x, &y), 0);
    assert_int_equal(send(x, "request", 7, 0), 7); /* a -> b runs: no FIN from x */
    assert_int_equal(recv(y, buf, sizeof buf, 0), 7);
    assert_int_equal(send(y, "part", 4, 0), 4);
    shutdown(y, SHUT_WR);
    assert_int_equal(read_all(x, buf, sizeof buf), -ECONNRESET);
    wait_ended(&o);
    assert_int_equal(o.err, -ECONNRESET);
    close(x);
    close(y);
}

/* b_fin_when_both: b's FIN after a's half-close (reported, a -> b done) is
 * the usual full close: a gets the bytes and a clean end. */
static void test_late_fin_from_b_ends_cleanly(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[64];
    assert_int_equal(add_pair_with(&o, true, true, &x, &y), 0);
    assert_int_equal(send(x, "hi", 2, 0), 2);
    shutdown(x, SHUT_WR);
    wait_eof_told(&o);
    assert_int_equal(recv(y, buf, sizeof buf, 0), 2);
    assert_int_equal(send(y, "ok", 2, 0), 2);
    shutdown(y, SHUT_WR);
    assert_int_equal(read_all(x, buf, sizeof buf), 2); /* the bytes, then EOF */
    assert_memory_equal(buf, "ok", 2);
    wait_ended(&o);
    assert_int_equal(o.err, 0);
    close(x);
    close(y);
}

static void test_reset_passed_on(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[8];
    assert_int_equal(add_pair(&o, &x, &y), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(x, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(x);
    assert_int_equal(read_all(y, buf, sizeof buf), -ECONNRESET);
    wait_ended(&o);
    assert_true(o.err < 0);
    close(y);
}

static void test_limit_refuses_with_a_reset(void **state)
{
    (void)state;
    obs o1, o2, o3;
    int x1, y1, x2, y2, x3, y3;
    char buf[8];
    assert_int_equal(add_pair(&o1, &x1, &y1), 0);
    assert_int_equal(add_pair(&o2, &x2, &y2), 0);
    assert_int_equal(splice_loop_npairs(loop), 2);
    assert_int_equal(add_pair(&o3, &x3, &y3), -EBUSY); /* the limit is 2 */
    assert_int_equal(read_all(x3, buf, sizeof buf), -ECONNRESET);
    assert_int_equal(read_all(y3, buf, sizeof buf), -ECONNRESET);
    assert_int_equal(o3.ended, 0); /* refused pairs get no done call */
    int ends[] = {x1, y1, x2, y2, x3, y3};
    for (size_t i = 0; i < sizeof ends / sizeof *ends; i++)
        close(ends[i]);
    wait_ended(&o1);
    wait_ended(&o2);
}

/* The loop threads /proc/self/task lists once it drops those that exited:
 * pthread_join returns at a thread's exit, a moment before the kernel does. */
static int loop_threads_settled(int want)
{
    int n = -1;
    for (int i = 0; i < 100 && (n = tproc_threads_named(getpid(), SPLICE_LOOP_THREAD_NAME)) != want; i++)
        usleep(10000);
    return n;
}

static void test_free_ends_everything(void **state)
{
    (void)state;
    obs o;
    int x, y;
    char buf[8];
    assert_int_equal(loop_threads_settled(1), 1); /* this test's; the one before is gone */
    assert_int_equal(add_pair(&o, &x, &y), 0);
    splice_loop_free(loop);
    loop = NULL;
    assert_int_equal(o.ended, 1);
    assert_int_equal(o.err, -ECANCELED);
    assert_int_equal(read_all(x, buf, sizeof buf), 0); /* closed, not reset */
    assert_int_equal(read_all(y, buf, sizeof buf), 0);
    assert_int_equal(loop_threads_settled(0), 0);
    close(x);
    close(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bytes_and_half_closes_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_out_of_band, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_close_sends_fin_unreported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_fin_from_b_resets_a, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_fin_from_b_ends_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_passed_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_refuses_with_a_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_ends_everything, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
