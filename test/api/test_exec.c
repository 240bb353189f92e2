/* test_exec — the Exec RPC of the real kdiag-manager: a target process in a
 * mount namespace of its own (a tmpfs with a marker file only it sees), and
 * programs run in it through api/exec_client: exit codes, signals, stdin,
 * the pty, flow control, cancellation, busybox tools. */
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/time-util.h"
#include "contract.h"
#include "exec_client.h"
#include "kdiag.pb-c.h"
#include "mgr.h"
#include "rpc.h"
#include "tmute.h"
#include "tproc.h"

typedef struct {
    mgr_proc m;
    pid_t target; /* sh in its own mount namespace, /mnt a tmpfs with the marker */
    rpc_client *cl;
} fixture;

typedef struct {
    char *out, *err;
    size_t outlen, errlen;
    int code, sig, rc;
    char error[256];
    rpc_status st;
} result;

static fixture *fx;

/* Waits (up to 5 s) until pid runs sleep. */
static void wait_sleep(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f) && strncmp(comm, "sleep", 5) == 0)
            i = 500;
        if (f)
            fclose(f);
        usleep(10000);
    }
}

static int setup(void **state)
{
    fx = calloc(1, sizeof *fx);
    const char *args[] = {"--busybox", KDIAG_ASH, NULL};
    if (mgr_start(&fx->m, args) < 0)
        return -1;
    fx->target = fork();
    if (fx->target == 0) {
        execlp("unshare", "unshare", "--mount", "--propagation", "private", "sh", "-c",
               "mount -t tmpfs kdiag-exec /mnt && touch /mnt/kdiag-exec-marker && exec sleep 1000", (char *)NULL);
        _exit(127);
    }
    wait_sleep(fx->target); /* then the marker is in place */
    if (rpc_client_new(&fx->cl, fx->m.target, fx->m.token) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rpc_client_free(fx->cl);
    kill(fx->target, SIGKILL);
    waitpid(fx->target, NULL, 0);
    mgr_stop(&fx->m, SIGKILL, 10000);
    free(fx);
    return 0;
}

static void append(char **buf, size_t *len, const uint8_t *data, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = 0;
}

typedef struct {
    exec_client *ec;
    const void *in;
    size_t inlen;
    bool close;
} feeder;

static void *feed_main(void *arg)
{
    feeder *f = arg;
    if (f->inlen)
        exec_client_stdin(f->ec, f->in, f->inlen);
    if (f->close)
        exec_client_stdin_close(f->ec);
    return NULL;
}

/* Reads ec to the end into r. */
static void collect(exec_client *ec, result *r)
{
    exec_client_event ev;
    int rc;
    r->code = r->sig = -1;
    while ((rc = exec_client_read(ec, &ev, &r->st)) == 0) {
        if (ev.kind == EXEC_CLIENT_STDOUT)
            append(&r->out, &r->outlen, ev.data, ev.len);
        else if (ev.kind == EXEC_CLIENT_STDERR)
            append(&r->err, &r->errlen, ev.data, ev.len);
        else {
            r->code = ev.code;
            r->sig = ev.signal;
            snprintf(r->error, sizeof r->error, "%s", ev.error);
            break;
        }
    }
    r->rc = rc == 0 ? exec_client_finish(ec, &r->st) : rc;
}

/* Runs st in the target with in as stdin (then stdin-close). */
static void run(exec_client_start *st, const void *in, size_t inlen, result *r)
{
    exec_client *ec;
    pthread_t th;
    memset(r, 0, sizeof *r);
    if (!st->pid && !st->container_id)
        st->pid = (uint64_t)fx->target;
    assert_int_equal(exec_client_new(&ec, fx->cl, st), 0);
    feeder f = {ec, in, inlen, true};
    assert_int_equal(pthread_create(&th, NULL, feed_main, &f), 0);
    collect(ec, r);
    pthread_join(th, NULL);
    exec_client_free(ec);
}

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

#define ARGV(...) (const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)

static void test_runs_in_the_targets_mount_namespace(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("ls", "/mnt")};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.code, 0);
    assert_non_null(r.out);
    assert_non_null(strstr(r.out, "kdiag-exec-marker"));
    assert_null(access("/mnt/kdiag-exec-marker", F_OK) == 0 ? "" : NULL); /* not in ours */
    result_free(&r);
}

static void test_exit_code_and_stderr(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo out; echo err >&2; exit 7")};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.code, 7);
    assert_int_equal(r.sig, 0);
    assert_string_equal(r.out, "out\n");
    assert_string_equal(r.err, "err\n");
    assert_string_equal(r.error, "");
    result_free(&r);
}

static void *cancel_after_5s(void *arg)
{
    sleep(5);
    exec_client_cancel(arg);
    return NULL;
}

/* The status follows the exit at once: the client need not half-close first
 * (that cost the CLI a round trip per command). */
static void test_status_comes_without_the_half_close(void **state)
{
    (void)state;
    exec_client *ec;
    pthread_t th;
    exec_client_event ev;
    rpc_status st;
    exec_client_start s = {.argv = ARGV("true"), .pid = (uint64_t)fx->target};
    assert_int_equal(exec_client_new(&ec, fx->cl, &s), 0);
    assert_int_equal(exec_client_stdin_close(ec), 0);
    assert_int_equal(exec_client_read(ec, &ev, &st), 0);
    assert_int_equal(ev.kind, EXEC_CLIENT_EXIT);
    assert_int_equal(ev.code, 0);
    assert_int_equal(pthread_create(&th, NULL, cancel_after_5s, ec), 0);
    memset(&st, 0, sizeof st);
    assert_int_equal(exec_client_read(ec, &ev, &st), 1); /* the end, not another event */
    assert_int_equal(st.code, GRPC_STATUS_OK);           /* not CANCELLED by the watchdog */
    pthread_cancel(th);
    pthread_join(th, NULL);
    exec_client_free(ec);
}

static void test_exit_by_signal_is_reported(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("sh", "-c", "kill -TERM $$")};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.sig, SIGTERM);
    assert_int_equal(r.code, 128 + SIGTERM);
    result_free(&r);
}

static void test_missing_command_is_127_not_executable_126(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("kdiag-no-such-command")};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.code, 127);
    assert_non_null(strstr(r.error, "kdiag-no-such-command: command not found"));
    result_free(&r);
    exec_client_start st2 = {.argv = ARGV("/etc/passwd")};
    run(&st2, NULL, 0, &r);
    assert_int_equal(r.code, 126);
    assert_non_null(strstr(r.error, "/etc/passwd: cannot execute"));
    result_free(&r);
}

static void test_env_and_workdir(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo $KDIAG_X; pwd"),
                            .env = (const char *const[]){"KDIAG_X=fortytwo"},
                            .nenv = 1,
                            .workdir = "/mnt"};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "fortytwo\n/mnt\n");
    result_free(&r);
}

/* n random bytes, malloc'd. */
static uint8_t *random_bytes(size_t n)
{
    uint8_t *in = malloc(n);
    assert_non_null(in);
    for (size_t i = 0; i < n; i += 256)
        assert_true(getrandom(in + i, n - i < 256 ? n - i : 256, 0) > 0);
    return in;
}

/* in through cat in the target, with a stdin window (0: the default): back byte-exact. */
static void assert_cat_round_trip(const uint8_t *in, size_t n, size_t window)
{
    result r;
    exec_client_start st = {.argv = ARGV("cat"), .stdin_window = window};
    run(&st, in, n, &r);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.outlen, n);
    assert_memory_equal(r.out, in, n);
    result_free(&r);
}

static void test_stdin_round_trip_exact(void **state)
{
    (void)state;
    size_t n = 3 * 1024 * 1024 + 17;
    uint8_t *in = random_bytes(n);
    assert_cat_round_trip(in, n, 0);
    free(in);
}

static void test_tty_has_a_name_and_size(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("sh", "-c", "tty; stty size"), .tty = true, .rows = 33, .cols = 77};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.code, 0);
    assert_non_null(r.out);
    assert_non_null(strstr(r.out, "/dev/pts/"));
    assert_non_null(strstr(r.out, "33 77"));
    assert_null(strstr(r.out, "not a tty"));
    result_free(&r);
}

/* Reads until out holds want. */
static void read_until(exec_client *ec, result *r, const char *want)
{
    exec_client_event ev;
    while (!r->out || !strstr(r->out, want)) {
        assert_int_equal(exec_client_read(ec, &ev, &r->st), 0);
        if (ev.kind == EXEC_CLIENT_STDOUT)
            append(&r->out, &r->outlen, ev.data, ev.len);
        assert_int_not_equal(ev.kind, EXEC_CLIENT_EXIT);
    }
}

/* Starts st in the target and reads its output until want shows. */
static exec_client *start_until(exec_client_start st, result *r, const char *want)
{
    exec_client *ec;
    st.pid = (uint64_t)fx->target;
    assert_int_equal(exec_client_new(&ec, fx->cl, &st), 0);
    read_until(ec, r, want);
    return ec;
}

static void test_tty_resize_reaches_the_program(void **state)
{
    (void)state;
    result r = {0};
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo ready; read x; stty size"), .tty = true, .rows = 10, .cols = 20};
    exec_client *ec = start_until(st, &r, "ready");
    assert_int_equal(exec_client_resize(ec, 40, 100), 0);
    assert_int_equal(exec_client_stdin(ec, "go\n", 3), 0);
    collect(ec, &r);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "40 100"));
    exec_client_free(ec);
    result_free(&r);
}

static void test_ctrl_c_byte_interrupts_the_foreground_job(void **state)
{
    (void)state;
    result r = {0};
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo ready; sleep 100"), .tty = true};
    exec_client *ec = start_until(st, &r, "ready");
    usleep(200000); /* sleep has started */
    assert_int_equal(exec_client_stdin(ec, "\x03", 1), 0);
    collect(ec, &r);
    assert_int_equal(r.sig, SIGINT);
    exec_client_free(ec);
    result_free(&r);
}

static void test_signal_message_reaches_the_process_group(void **state)
{
    (void)state;
    result r = {0};
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo ready; exec sleep 100")};
    exec_client *ec = start_until(st, &r, "ready");
    assert_int_equal(exec_client_signal(ec, SIGUSR1), 0);
    collect(ec, &r);
    assert_int_equal(r.sig, SIGUSR1);
    exec_client_free(ec);
    result_free(&r);
}

static bool gone(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    char *rp = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
    fclose(f);
    return rp && rp[2] == 'Z';
}

static void test_cancel_kills_the_process_tree(void **state)
{
    (void)state;
    result r = {0};
    int fds = tproc_fd_count(fx->m.pid);
    exec_client_start st = {.argv = ARGV("sh", "-c", "sleep 1000 & echo pids $$ $! end; wait")};
    exec_client *ec = start_until(st, &r, "end");
    int sh = 0, sl = 0;
    assert_int_equal(sscanf(strstr(r.out, "pids"), "pids %d %d", &sh, &sl), 2);
    assert_false(gone(sh) || gone(sl));
    exec_client_cancel(ec);
    exec_client_free(ec);
    int64_t deadline = time_now_ms() + 10000;
    while ((!gone(sh) || !gone(sl) || tproc_fd_count(fx->m.pid) > fds) && time_now_ms() < deadline)
        usleep(20000);
    assert_true(gone(sh));
    assert_true(gone(sl));
    assert_true(tproc_fd_count(fx->m.pid) <= fds);
    result_free(&r);
}

static void test_stalled_reader_does_not_grow_the_manager(void **state)
{
    (void)state;
    result r = {0};
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo ready; exec cat /dev/zero")};
    exec_client *ec = start_until(st, &r, "ready");
    sleep(1); /* windows fill, the sends block */
    long before = tproc_status(fx->m.pid, "VmRSS");
    sleep(3);
    long after = tproc_status(fx->m.pid, "VmRSS");
    fprintf(stderr, "manager RSS with a stalled reader: %ld kB, 3 s later %ld kB\n", before, after);
    assert_true(after - before < 4096);
    /* and the stream still flows when read again */
    exec_client_event ev;
    size_t got = 0;
    while (got < 8 * 1024 * 1024) {
        assert_int_equal(exec_client_read(ec, &ev, &r.st), 0);
        got += ev.len;
    }
    exec_client_cancel(ec);
    exec_client_free(ec);
    result_free(&r);
}

typedef struct {
    exec_client *ec;
    atomic_size_t sent;
} pusher;

static void *push_main(void *arg)
{
    pusher *p = arg;
    static uint8_t chunk[64 * 1024];
    while (atomic_load(&p->sent) < 256u * 1024 * 1024 && exec_client_stdin(p->ec, chunk, sizeof chunk) == 0)
        atomic_fetch_add(&p->sent, sizeof chunk);
    return NULL;
}

/* A program that does not read its stdin stalls the client's sends; the manager does not buffer. */
static void test_unread_stdin_stalls_the_client(void **state)
{
    (void)state;
    result r = {0};
    pusher p = {0};
    pthread_t th;
    exec_client_start st = {.argv = ARGV("sh", "-c", "echo ready; exec sleep 100"), .pid = (uint64_t)fx->target};
    assert_int_equal(exec_client_new(&p.ec, fx->cl, &st), 0);
    read_until(p.ec, &r, "ready");
    assert_int_equal(pthread_create(&th, NULL, push_main, &p), 0);
    sleep(1);
    size_t sent = atomic_load(&p.sent);
    long before = tproc_status(fx->m.pid, "VmRSS");
    sleep(2);
    long after = tproc_status(fx->m.pid, "VmRSS");
    fprintf(stderr, "stdin nobody reads: %zu KiB taken, then %zu KiB; manager RSS %ld kB, then %ld kB\n",
            sent >> 10, atomic_load(&p.sent) >> 10, before, after);
    assert_true(atomic_load(&p.sent) <= EXEC_CLIENT_WINDOW); /* the window: 64 KiB of it in the pipe */
    assert_true(after - before < 4096);
    exec_client_cancel(p.ec);
    pthread_join(th, NULL);
    exec_client_free(p.ec);
    result_free(&r);
}

/* The client keeps at most its window of stdin unanswered: against a manager
 * that takes every message and never answers it stops there (what the
 * manager's gRPC would hold, however large core's windows grew), and to the
 * real one, which answers as the program reads, stdin 8 times the window
 * goes through whole. */
static void test_stdin_keeps_to_its_window(void **state)
{
    (void)state;
    const size_t window = 1u << 20, n = 8 * window;
    uint8_t *in = random_bytes(n);

    tmute *mute;
    char addr[64];
    assert_int_equal(tmute_start(&mute, CONTRACT_METHOD_EXEC, addr, sizeof addr), 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, addr, NULL), 0);
    exec_client_start st = {.argv = ARGV("cat"), .pid = 1, .stdin_window = window};
    exec_client *ec;
    assert_int_equal(exec_client_new(&ec, cl, &st), 0);
    feeder f = {ec, in, n, true};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, feed_main, &f), 0);
    size_t got = tmute_settled(mute);
    exec_client_cancel(ec); /* the waiting writer returns */
    pthread_join(th, NULL);
    exec_client_free(ec);
    rpc_client_free(cl);
    tmute_free(mute);
    fprintf(stderr, "a manager that does not answer got %zu bytes of 8 MiB of stdin (window %zu)\n", got, window);
    assert_true(got >= window);
    assert_true(got <= window + window / CONTRACT_EXEC_CHUNK * 8); /* the window, each message's framing */

    assert_cat_round_trip(in, n, window);
    free(in);
}

/* Stdin fills its window and the program does not read it: a signal sent
 * then does not wait behind it (the manager queues what the window holds). */
static void test_signal_goes_past_unread_stdin(void **state)
{
    (void)state;
    result r = {0};
    static uint8_t chunk[CONTRACT_EXEC_CHUNK];
    pthread_t th;
    exec_client_start st = {
        .argv = ARGV("sh", "-c", "trap 'echo INT; exit 7' INT; echo ready; while :; do sleep 0.1; done")};
    exec_client *ec = start_until(st, &r, "ready");
    /* a manager that takes no more stdin holds back the sends: then the
     * watchdog ends the call, and the test fails below */
    assert_int_equal(pthread_create(&th, NULL, cancel_after_5s, ec), 0);
    size_t sent = 0;
    while (exec_client_stdin_ready(ec) && exec_client_stdin(ec, chunk, sizeof chunk) == 0)
        sent += sizeof chunk;
    assert_int_equal(exec_client_signal(ec, SIGINT), 0);
    free(r.out);
    r = (result){0};
    collect(ec, &r);
    pthread_cancel(th);
    pthread_join(th, NULL);
    assert_int_equal(sent, EXEC_CLIENT_WINDOW);
    assert_int_equal(r.code, 7); /* not -1: cancelled by the watchdog */
    assert_string_equal(r.out, "INT\n");
    exec_client_free(ec);
    result_free(&r);
}

static void test_tools_run_busybox_in_the_target(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = ARGV("ls", "/mnt"), .tools = true};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "kdiag-exec-marker"));
    result_free(&r);
    exec_client_start st2 = {.argv = ARGV("ash", "-c", "echo $((6*7))"), .tools = true};
    run(&st2, NULL, 0, &r);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "42\n");
    result_free(&r);
}

static void test_bad_start_is_refused(void **state)
{
    (void)state;
    result r;
    exec_client_start st = {.argv = NULL, .argc = 0};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.rc, 1);
    assert_int_equal(r.st.code, GRPC_STATUS_INVALID_ARGUMENT);
    result_free(&r);
    exec_client_start st2 = {.argv = ARGV("true"), .pid = 999999999};
    run(&st2, NULL, 0, &r);
    assert_int_equal(r.rc, 1);
    assert_true(r.st.code == GRPC_STATUS_NOT_FOUND || r.st.code == GRPC_STATUS_INVALID_ARGUMENT);
    result_free(&r);
}

/* A message after the start that does not decode ends the call with
 * INVALID_ARGUMENT, and the program is killed (nothing could reach its stdin
 * or signal it any more). The raw stream: exec_client only sends good ones. */
static void test_undecodable_message_ends_the_call(void **state)
{
    (void)state;
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, fx->cl, CONTRACT_METHOD_EXEC, 30000), 0);
    char *argv[] = {"sh", "-c", "echo pid $$ end; exec sleep 1000"};
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    t.pid = (uint64_t)fx->target;
    Kdiag__Solo__Io__ExecStart st = KDIAG__SOLO__IO__EXEC_START__INIT;
    st.n_argv = 3;
    st.argv = argv;
    st.target = &t;
    Kdiag__Solo__Io__ExecRequest m = KDIAG__SOLO__IO__EXEC_REQUEST__INIT;
    m.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_START;
    m.start = &st;
    uint8_t buf[512];
    assert_int_equal(rpc_stream_write(s, buf, kdiag__solo__io__exec_request__pack(&m, buf)), 0);
    int pid = 0;
    rpc_status status = {0};
    uint8_t *msg;
    size_t len;
    while (!pid && rpc_stream_read(s, &msg, &len, &status) == 0) {
        Kdiag__Solo__Io__ExecResponse *r = kdiag__solo__io__exec_response__unpack(NULL, len, msg);
        free(msg);
        assert_non_null(r);
        if (r->msg_case == KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDOUT_CHUNK) {
            char line[64];
            snprintf(line, sizeof line, "%.*s", (int)r->stdout_chunk.len, (char *)r->stdout_chunk.data);
            assert_int_equal(sscanf(line, "pid %d end", &pid), 1);
        }
        kdiag__solo__io__exec_response__free_unpacked(r, NULL);
    }
    assert_true(pid > 0);
    assert_false(gone(pid));
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}; /* field 1: a length past the end */
    assert_int_equal(rpc_stream_write(s, junk, sizeof junk), 0);
    int rc;
    while ((rc = rpc_stream_read(s, &msg, &len, &status)) == 0)
        free(msg);
    assert_int_equal(rc, 1);
    assert_int_equal(status.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(status.message, "does not decode"));
    rpc_stream_free(s);
    int64_t deadline = time_now_ms() + 10000;
    while (!gone(pid) && time_now_ms() < deadline)
        usleep(20000);
    assert_true(gone(pid));
}

/* A target running as uid 1000, gid 1000, groups 1000 and 1001 (sleep). */
static pid_t user_target(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        gid_t groups[] = {1000, 1001};
        if (setgroups(2, groups) < 0 || setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
            _exit(126);
        execlp("sleep", "sleep", "1000", (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        wait_sleep(pid);
    return pid;
}

static void test_runs_as_the_targets_user_unless_root_is_asked(void **state)
{
    (void)state;
    result r;
    pid_t t = user_target();
    assert_true(t > 0);
    exec_client_start st = {.argv = ARGV("sh", "-c", "id -u; id -g; id -G"), .pid = (uint64_t)t};
    run(&st, NULL, 0, &r);
    exec_client_start st2 = {.argv = ARGV("id", "-u"), .pid = (uint64_t)t, .root = true};
    result r2;
    run(&st2, NULL, 0, &r2);
    kill(t, SIGKILL);
    waitpid(t, NULL, 0);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "1000\n1000\n1000 1001\n");
    assert_int_equal(r2.code, 0);
    assert_string_equal(r2.out, "0\n");
    result_free(&r);
    result_free(&r2);
}

/* Processes whose cmdline is exactly argv (NUL-separated, n bytes). */
static int count_cmdline(const char *argv, size_t n)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int count = 0;
    while (d && (e = readdir(d))) {
        char path[300], buf[256];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = atoi(e->d_name) > 0 ? fopen(path, "r") : NULL;
        if (f && fread(buf, 1, sizeof buf, f) == n && memcmp(buf, argv, n) == 0)
            count++;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return count;
}

static void test_setsid_escapees_are_killed_when_the_program_exits(void **state)
{
    (void)state;
    result r;
    static const char sleeper[] = "sleep\0"
                                  "1013";
    exec_client_start st = {.argv = ARGV("sh", "-c",
                                         "setsid sleep 1013 & setsid sh -c 'sleep 1013 & wait' & "
                                         "sleep 0.3; exit 0")};
    run(&st, NULL, 0, &r);
    assert_int_equal(r.code, 0);
    int64_t deadline = time_now_ms() + 2000;
    while (count_cmdline(sleeper, sizeof sleeper) > 0 && time_now_ms() < deadline)
        usleep(20000);
    assert_int_equal(count_cmdline(sleeper, sizeof sleeper), 0);
    result_free(&r);
}

static void test_signal_before_the_start_is_delivered(void **state)
{
    (void)state;
    result r;
    exec_client *ec;
    exec_client_start st = {.argv = ARGV("sleep", "30"), .pid = (uint64_t)fx->target};
    int64_t t0 = time_now_ms();
    assert_int_equal(exec_client_new(&ec, fx->cl, &st), 0);
    assert_int_equal(exec_client_signal(ec, SIGTERM), 0); /* the program is not running yet */
    memset(&r, 0, sizeof r);
    collect(ec, &r);
    exec_client_free(ec);
    assert_int_equal(r.sig, SIGTERM);
    assert_true(time_now_ms() - t0 < 10000);
    result_free(&r);
}

/* Processes whose parent is pid (any of its threads). */
static int children_of(pid_t pid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        char path[300], line[512];
        int ppid = 0;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = atoi(e->d_name) > 0 ? fopen(path, "r") : NULL;
        char *rp = f && fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == pid)
            n++;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/* EXEC_MANY (1,000) calls leave no process, fd or thread behind. */
static void test_many_execs_leave_nothing(void **state)
{
    (void)state;
    result r;
    int fds = -1, threads = -1;
    for (int i = 0; i < EXEC_MANY; i++) {
        exec_client_start st = {.argv = ARGV("true"), .tty = i % 2};
        run(&st, NULL, 0, &r);
        assert_int_equal(r.code, 0);
        result_free(&r);
        if (i == 9) {
            fds = tproc_fd_count(fx->m.pid);
            threads = tproc_status(fx->m.pid, "Threads");
        }
    }
    /* gRPC's own fds come and go: allow it a moment */
    int64_t deadline = time_now_ms() + 3000;
    while (tproc_fd_count(fx->m.pid) > fds && time_now_ms() < deadline)
        usleep(20000);
    if (tproc_fd_count(fx->m.pid) > fds) { /* what is left, for the log */
        char cmd[64];
        snprintf(cmd, sizeof cmd, "ls -l /proc/%d/fd >&2", (int)fx->m.pid);
        assert_true(system(cmd) >= 0);
    }
    assert_true(tproc_fd_count(fx->m.pid) <= fds);
    assert_int_equal(children_of(fx->m.pid), 0);
    while (tproc_status(fx->m.pid, "Threads") > threads && time_now_ms() < deadline + 3000)
        usleep(20000);
    assert_true(tproc_status(fx->m.pid, "Threads") <= threads);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_in_the_targets_mount_namespace),
        cmocka_unit_test(test_exit_code_and_stderr),
        cmocka_unit_test(test_status_comes_without_the_half_close),
        cmocka_unit_test(test_exit_by_signal_is_reported),
        cmocka_unit_test(test_missing_command_is_127_not_executable_126),
        cmocka_unit_test(test_env_and_workdir),
        cmocka_unit_test(test_stdin_round_trip_exact),
        cmocka_unit_test(test_tty_has_a_name_and_size),
        cmocka_unit_test(test_tty_resize_reaches_the_program),
        cmocka_unit_test(test_ctrl_c_byte_interrupts_the_foreground_job),
        cmocka_unit_test(test_signal_message_reaches_the_process_group),
        cmocka_unit_test(test_cancel_kills_the_process_tree),
        cmocka_unit_test(test_stalled_reader_does_not_grow_the_manager),
        cmocka_unit_test(test_unread_stdin_stalls_the_client),
        cmocka_unit_test(test_stdin_keeps_to_its_window),
        cmocka_unit_test(test_signal_goes_past_unread_stdin),
        cmocka_unit_test(test_tools_run_busybox_in_the_target),
        cmocka_unit_test(test_bad_start_is_refused),
        cmocka_unit_test(test_runs_as_the_targets_user_unless_root_is_asked),
        cmocka_unit_test(test_setsid_escapees_are_killed_when_the_program_exits),
        cmocka_unit_test(test_signal_before_the_start_is_delivered),
        cmocka_unit_test(test_undecodable_message_ends_the_call),
        cmocka_unit_test(test_many_execs_leave_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
