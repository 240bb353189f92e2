/* test_hostile_streams — Exec, CopyFrom, CopyTo and Capture of the real
 * kdiag-manager fed malformed and abusive requests through the raw RPC: each
 * is refused with a clear status or handled, the manager keeps serving, and
 * clients that vanish with many Execs open leave no process, fd or thread
 * behind. The target is a busybox sleep chrooted into a directory of the
 * test's own (DIR), so escapes out of its root would show. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/time-util.h"
#include "contract.h"
#include "exec_client.h"
#include "kdiag.pb-c.h"
#include "mgr.h"
#include "tproc.h"
#include "rpc.h"
#include "tsan.h"
#include "tshell.h"

static mgr_proc M;
static rpc_client *CL;
static pid_t target;
static char dir[64] = "/tmp/kdiag-hostile-streams-XXXXXX";
static char self_exe[PATH_MAX];

/* ---- helpers ---- */

/* A stream's messages dropped, its status returned. */
static rpc_status finish(rpc_stream *s)
{
    uint8_t *buf;
    size_t len;
    rpc_status st = {0};
    while (rpc_stream_read(s, &buf, &len, &st) == 0)
        free(buf);
    rpc_stream_free(s);
    return st;
}

/* A bidi call of method with the given raw messages, then half-closed: its status. */
static rpc_status bidi_raw(const char *method, const uint8_t *const *msgs, const size_t *lens, int n)
{
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, CL, method, 20000), 0);
    for (int i = 0; i < n; i++)
        rpc_stream_write(s, msgs[i], lens[i]);
    rpc_stream_close_send(s);
    return finish(s);
}

/* A length-delimited field (len < 128) at out: its size. */
static size_t ld(uint8_t *out, int field, const void *data, size_t len)
{
    out[0] = (uint8_t)(field << 3 | 2);
    out[1] = (uint8_t)len;
    memcpy(out + 2, data, len);
    return len + 2;
}

static size_t pack_exec(const Kdiag__Solo__Io__ExecRequest *r, uint8_t **out)
{
    size_t n = kdiag__solo__io__exec_request__get_packed_size(r);
    *out = malloc(n ? n : 1);
    return kdiag__solo__io__exec_request__pack(r, *out);
}

/* An ExecStart of argv (n strings) in the target. */
static size_t exec_start(char **argv, size_t n, uint8_t **out)
{
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    Kdiag__Solo__Io__ExecStart s = KDIAG__SOLO__IO__EXEC_START__INIT;
    Kdiag__Solo__Io__ExecRequest r = KDIAG__SOLO__IO__EXEC_REQUEST__INIT;
    t.pid = (uint64_t)target;
    s.argv = argv;
    s.n_argv = n;
    s.target = &t;
    r.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_START;
    r.start = &s;
    return pack_exec(&r, out);
}

/* Reads an Exec to its end: the exit (code -1 when none) and the status. */
static rpc_status exec_collect(rpc_stream *s, int *code, char *error, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    rpc_status st = {0};
    *code = -1;
    while (rpc_stream_read(s, &buf, &len, &st) == 0) {
        Kdiag__Solo__Io__ExecResponse *m = kdiag__solo__io__exec_response__unpack(NULL, len, buf);
        free(buf);
        assert_non_null(m);
        if (m->msg_case == KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_EXIT) {
            *code = m->exit->code;
            snprintf(error, errlen, "%s", m->exit->error);
            rpc_stream_close_send(s);
        }
        kdiag__solo__io__exec_response__free_unpacked(m, NULL);
    }
    rpc_stream_free(s);
    return st;
}

/* A CopyFrom of path (len bytes, NULs allowed): its status, the file's content in out. */
static rpc_status copy_from(const char *path, size_t len, char *out, size_t outlen)
{
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    Kdiag__Solo__Io__CopyFromRequest r = KDIAG__SOLO__IO__COPY_FROM_REQUEST__INIT;
    uint8_t buf[4096];
    t.pid = (uint64_t)target;
    r.target = &t;
    r.path = (char *)"";
    size_t n = kdiag__solo__io__copy_from_request__pack(&r, buf);
    buf[n++] = 0x12; /* field 2 (path), length-delimited, written by hand: NULs kept */
    buf[n++] = (uint8_t)len;
    memcpy(buf + n, path, len);
    n += len;
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, CL, CONTRACT_METHOD_COPY_FROM, buf, n, 20000), 0);
    uint8_t *msg;
    size_t ml, got = 0;
    rpc_status st = {0};
    while (rpc_stream_read(s, &msg, &ml, &st) == 0) {
        Kdiag__Solo__Io__CopyChunk *c = kdiag__solo__io__copy_chunk__unpack(NULL, ml, msg);
        free(msg);
        assert_non_null(c);
        if (!c->entry && c->data.len + got < outlen) {
            memcpy(out + got, c->data.data, c->data.len);
            got += c->data.len;
        }
        kdiag__solo__io__copy_chunk__free_unpacked(c, NULL);
    }
    out[got] = 0;
    rpc_stream_free(s);
    return st;
}

/* CopyTo's first message, for dest (destlen bytes, NULs kept) in the target: its size. */
static size_t copy_to_first(const char *dest, size_t destlen, uint8_t *out)
{
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    Kdiag__Solo__Io__CopyToRequest first = KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT;
    t.pid = (uint64_t)target;
    first.target = &t;
    first.path = (char *)"";
    size_t n = kdiag__solo__io__copy_to_request__pack(&first, out);
    return n + ld(out + n, 2, dest, destlen);
}

/* A CopyTo of one file (name, content) to dest in the target. */
static rpc_status copy_to(const char *dest, size_t destlen, const char *name, const char *content)
{
    Kdiag__Solo__Io__CopyToRequest req[2] = {KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT,
                                             KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT};
    Kdiag__Solo__Io__CopyChunk chunk[2] = {KDIAG__SOLO__IO__COPY_CHUNK__INIT, KDIAG__SOLO__IO__COPY_CHUNK__INIT};
    Kdiag__Solo__Io__CopyEntry e = KDIAG__SOLO__IO__COPY_ENTRY__INIT;
    uint8_t b0[512], b1[512], b2[512];
    size_t n0 = copy_to_first(dest, destlen, b0);
    e.path = (char *)name;
    e.mode = S_IFREG | 0644;
    e.size = strlen(content);
    chunk[0].entry = &e;
    chunk[1].data.data = (uint8_t *)content;
    chunk[1].data.len = strlen(content);
    req[0].chunk = &chunk[0];
    req[1].chunk = &chunk[1];
    const uint8_t *msgs[] = {b0, b1, b2};
    size_t lens[] = {n0, kdiag__solo__io__copy_to_request__pack(&req[0], b1),
                     kdiag__solo__io__copy_to_request__pack(&req[1], b2)};
    return bidi_raw(CONTRACT_METHOD_COPY_TO, msgs, lens, 3);
}

static void assert_status(rpc_status st, grpc_status_code want, const char *needle)
{
    if (st.code != want || (needle && !strstr(st.message, needle)))
        fail_msg("status %d (%s), want %d with '%s'", st.code, st.message, want, needle ? needle : "");
    fprintf(stderr, "  refused: %d %s\n", st.code, st.message);
}

static void assert_serving(void)
{
    uint8_t *resp = NULL;
    size_t len;
    rpc_status st;
    rpc_client_unary(CL, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &len, 10000, &st);
    free(resp);
    assert_int_equal(st.code, GRPC_STATUS_OK);
}

/* The manager's own threads (handlers, Exec's input threads): named as the
 * process; gRPC's pools (named timer_manager, default-executo, ...) grow and
 * shrink by themselves. */
static int mgr_threads(void)
{
    return tproc_threads_named(M.pid, "kdiag-manager\n");
}

/* Processes whose command line holds marker (the Execs' sleeps), and the manager's children. */
static void count_procs(const char *marker, int *with_marker, int *children)
{
    DIR *d = opendir("/proc");
    *with_marker = *children = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        int pid = atoi(e->d_name), ppid = 0;
        char path[64], buf[512] = "";
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        for (size_t i = 0; i < n; i++)
            buf[i] = buf[i] ? buf[i] : ' ';
        *with_marker += strstr(buf, marker) != NULL;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        f = fopen(path, "r");
        char *rp = f && fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
        if (f)
            fclose(f);
        *children += rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == M.pid;
    }
    if (d)
        closedir(d);
}

/* ---- Exec ---- */

static void test_exec_malformed_first_messages_refused(void **state)
{
    (void)state;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x7f};
    static const uint8_t start_as_varint[] = {0x08, 0x01};  /* field 1 (start) with wire type 0 */
    static const uint8_t stdin_first[] = {0x12, 0x01, 'x'}; /* stdin_chunk */
    static const uint8_t resize_first[] = {0x1a, 0x02, 0x08, 0x05};
    static const uint8_t signal_first[] = {0x20, 0x09};
    static const uint8_t argv_not_string[] = {0x0a, 0x02, 0x08, 0x01}; /* start { argv as varint } */
    const uint8_t *cases[] = {garbage, start_as_varint, stdin_first, resize_first, signal_first, argv_not_string};
    const size_t lens[] = {sizeof garbage,      sizeof start_as_varint, sizeof stdin_first,
                           sizeof resize_first, sizeof signal_first,    sizeof argv_not_string};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_status(bidi_raw(CONTRACT_METHOD_EXEC, &cases[i], &lens[i], 1), GRPC_STATUS_INVALID_ARGUMENT,
                      "the first ExecRequest must be a start message");
    /* nothing at all, and an empty start */
    assert_status(bidi_raw(CONTRACT_METHOD_EXEC, NULL, NULL, 0), GRPC_STATUS_INVALID_ARGUMENT, NULL);
    uint8_t *m;
    size_t n = exec_start(NULL, 0, &m);
    assert_status(bidi_raw(CONTRACT_METHOD_EXEC, (const uint8_t *const *)&m, &n, 1), GRPC_STATUS_INVALID_ARGUMENT,
                  "argv is empty");
    free(m);
    assert_serving();
}

/* A second start, signals out of range and garbage after the start change
 * nothing: the one program runs to its exit. */
static void test_exec_second_start_and_bad_signals_ignored(void **state)
{
    (void)state;
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)"exit 5"};
    uint8_t *msgs[4];
    size_t lens[4];
    lens[0] = exec_start(argv, 3, &msgs[0]);
    char *argv2[] = {(char *)"sh", (char *)"-c", (char *)"exit 9"};
    lens[1] = exec_start(argv2, 3, &msgs[1]);
    static const uint8_t bad_signal[] = {0x20, 0xff, 0xff, 0xff, 0xff, 0x0f}; /* signal -1 */
    static const uint8_t huge_signal[] = {0x20, 0xe7, 0x07};                  /* signal 999 */
    msgs[2] = (uint8_t *)bad_signal;
    lens[2] = sizeof bad_signal;
    msgs[3] = (uint8_t *)huge_signal;
    lens[3] = sizeof huge_signal;
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, CL, CONTRACT_METHOD_EXEC, 20000), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rpc_stream_write(s, msgs[i], lens[i]), 0);
    int code;
    char error[256];
    rpc_status st = exec_collect(s, &code, error, sizeof error);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(code, 5);
    free(msgs[0]);
    free(msgs[1]);
}

/* A signal right behind the start, before the program runs, is not lost. */
static void test_exec_signal_right_after_start_delivered(void **state)
{
    (void)state;
    char *argv[] = {(char *)"sleep", (char *)"5"};
    static const uint8_t term[] = {0x20, 0x0f}; /* signal 15 */
    uint8_t *msgs[2];
    size_t lens[2] = {exec_start(argv, 2, &msgs[0]), sizeof term};
    msgs[1] = (uint8_t *)term;
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, CL, CONTRACT_METHOD_EXEC, 20000), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(rpc_stream_write(s, msgs[i], lens[i]), 0);
    int code;
    char error[256];
    long long t0 = time_now_ms();
    rpc_status st = exec_collect(s, &code, error, sizeof error);
    fprintf(stderr, "  exit %d after %lld ms\n", code, time_now_ms() - t0);
    free(msgs[0]);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(code, 128 + SIGTERM);
}

/* 3 MB of argv: the program cannot start (E2BIG) and says so; 5 MB: over the message limit. */
static void test_exec_huge_argv(void **state)
{
    (void)state;
    size_t n = 100000;
    char **argv = calloc(n, sizeof *argv);
    char *word = malloc(31);
    memset(word, 'a', 30);
    word[30] = 0;
    argv[0] = (char *)"sh";
    for (size_t i = 1; i < n; i++)
        argv[i] = word;
    uint8_t *m;
    size_t len = exec_start(argv, n, &m);
    fprintf(stderr, "  argv of %zu bytes\n", len);
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, CL, CONTRACT_METHOD_EXEC, 30000), 0);
    assert_int_equal(rpc_stream_write(s, m, len), 0);
    int code;
    char error[256];
    rpc_status st = exec_collect(s, &code, error, sizeof error);
    free(m);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(code, CONTRACT_EXEC_NOT_EXECUTABLE);
    assert_non_null(strstr(error, "Argument list too long"));
    argv = realloc(argv, n * 2 * sizeof *argv);
    for (size_t i = n; i < 2 * n; i++)
        argv[i] = word;
    len = exec_start(argv, 2 * n, &m);
    st = bidi_raw(CONTRACT_METHOD_EXEC, (const uint8_t *const *)&m, &len, 1);
    assert_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL);
    free(m);
    free(argv);
    free(word);
    assert_serving();
}

/* ---- Copy ---- */

/* A NUL in a path is refused, not cut there (which would name another file). */
static void test_copy_path_with_nul_refused(void **state)
{
    (void)state;
    char out[256];
    static const char from[] = "/etc/passwd\0.ignored";
    assert_status(copy_from(from, sizeof from - 1, out, sizeof out), GRPC_STATUS_INVALID_ARGUMENT, "NUL");
    static const char to[] = "/nul-dest\0/x";
    assert_status(copy_to(to, sizeof to - 1, "f", "data"), GRPC_STATUS_INVALID_ARGUMENT, "NUL");
    struct stat st;
    char p[128];
    snprintf(p, sizeof p, "%s/nul-dest", dir);
    assert_int_equal(lstat(p, &st), -1);
    /* an entry's name: CopyToRequest{chunk{entry{path "a\0b", mode 0100644}}} */
    uint8_t first[64], entry[16], chunk[32], req[48];
    size_t n, en = ld(entry, 1, "a\0b", 3);
    memcpy(entry + en, "\x10\xa4\x83\x02", 4);
    en += 4;
    n = ld(req, 3, chunk, ld(chunk, 1, entry, en));
    const uint8_t *msgs[] = {first, req};
    const size_t lens[] = {copy_to_first("/", 1, first), n};
    assert_status(bidi_raw(CONTRACT_METHOD_COPY_TO, msgs, lens, 2), GRPC_STATUS_INVALID_ARGUMENT, "NUL");
    snprintf(p, sizeof p, "%s/a", dir);
    assert_int_equal(lstat(p, &st), -1);
    assert_serving();
}

/* Exec's argv and Capture's filter with a NUL: refused, nothing run. */
static void test_exec_and_capture_strings_with_nul_refused(void **state)
{
    (void)state;
    uint8_t tgt[16], start[64], req[80];
    size_t tn = 0;
    tgt[tn++] = 0x10; /* Target.pid */
    for (uint64_t v = (uint64_t)target; v; v >>= 7)
        tgt[tn++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    size_t sn = ld(start, 1, "sh\0-c", 5);
    sn += ld(start + sn, 7, tgt, tn);
    size_t rn = ld(req, 1, start, sn);
    const uint8_t *m = req;
    assert_status(bidi_raw(CONTRACT_METHOD_EXEC, &m, &rn, 1), GRPC_STATUS_INVALID_ARGUMENT, "NUL");
    rn = ld(req, 2, "udp\0 or tcp", 10); /* CaptureRequest.filter */
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, CL, CONTRACT_METHOD_CAPTURE, req, rn, 20000), 0);
    assert_status(finish(s), GRPC_STATUS_INVALID_ARGUMENT, "NUL");
    assert_serving();
}

/* A FIFO (nobody writes it), alone or in a tree, does not hang the copy. */
static void test_copy_fifo_does_not_hang(void **state)
{
    (void)state;
    char out[256], p[128];
    snprintf(p, sizeof p, "%s/fifodir", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/fifodir/fifo", dir);
    assert_int_equal(mkfifo(p, 0644), 0);
    long long t0 = time_now_ms();
    rpc_status st = copy_from("/fifodir/fifo", 13, out, sizeof out);
    fprintf(stderr, "  a FIFO: %d %s after %lld ms\n", st.code, st.message, time_now_ms() - t0);
    t0 = time_now_ms();
    rpc_status st2 = copy_from("/fifodir", 8, out, sizeof out);
    fprintf(stderr, "  a tree with a FIFO: %d %s after %lld ms\n", st2.code, st2.message, time_now_ms() - t0);
    assert_int_not_equal(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_int_equal(st2.code, GRPC_STATUS_OK);
}

/* A PID past pid_t's range is refused, not cut to the target's (2^32 + PID). */
static void test_copy_pid_out_of_range_refused(void **state)
{
    (void)state;
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    Kdiag__Solo__Io__CopyFromRequest r = KDIAG__SOLO__IO__COPY_FROM_REQUEST__INIT;
    uint8_t buf[64];
    t.pid = (1ull << 32) + (uint64_t)target;
    r.target = &t;
    r.path = (char *)"/etc/passwd";
    size_t n = kdiag__solo__io__copy_from_request__pack(&r, buf);
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, CL, CONTRACT_METHOD_COPY_FROM, buf, n, 20000), 0);
    assert_status(finish(s), GRPC_STATUS_INVALID_ARGUMENT, "out of range");
}

/* ".." , an absolute symlink to / and a parent that is one: all stay in DIR. */
static void test_copy_escapes_stay_in_the_root(void **state)
{
    (void)state;
    char out[256], p[128];
    static const char *paths[] = {"/../../etc/passwd", "../../../etc/passwd", "/abs/etc/passwd",
                                  "/abs/../abs/./etc/passwd", "/up/etc/passwd"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        rpc_status st = copy_from(paths[i], strlen(paths[i]), out, sizeof out);
        assert_int_equal(st.code, GRPC_STATUS_OK);
        assert_string_equal(out, "inside the target\n");
    }
    assert_status(copy_from("/proc/self/root/etc/passwd", 26, out, sizeof out), GRPC_STATUS_NOT_FOUND, NULL);
    assert_status(copy_from("/loop/x", 7, out, sizeof out), GRPC_STATUS_INVALID_ARGUMENT, "ELOOP");
    /* CopyTo through a parent that is a symlink to /: lands in DIR */
    assert_int_equal(copy_to("/abs/kdiag-hostile-escape", 25, "f", "escaped?").code, GRPC_STATUS_OK);
    assert_int_equal(access("/kdiag-hostile-escape", F_OK), -1);
    snprintf(p, sizeof p, "%s/kdiag-hostile-escape", dir);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(copy_to("/up/../../kdiag-hostile-escape2", 31, "f", "escaped?").code, GRPC_STATUS_OK);
    assert_int_equal(access("/kdiag-hostile-escape2", F_OK), -1);
    /* entry names that leave the tree */
    static const char *names[] = {"../x", "a/../../x", "..", ".", "/etc/x"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        assert_status(copy_to("/", 1, names[i], "x"), GRPC_STATUS_INVALID_ARGUMENT, NULL);
    assert_int_equal(access("/x", F_OK), -1);
    assert_serving();
}

/* ---- Capture ---- */

/* A Capture read to its end, sleeping delay_us after each message (a slow reader). */
static rpc_status capture_slow(const Kdiag__Solo__Io__CaptureRequest *r, int *msgs, uint32_t *snaplen, int delay_us)
{
    size_t n = kdiag__solo__io__capture_request__get_packed_size(r);
    uint8_t *buf = malloc(n), *msg;
    kdiag__solo__io__capture_request__pack(r, buf);
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, CL, CONTRACT_METHOD_CAPTURE, buf, n, 20000), 0);
    free(buf);
    size_t ml;
    rpc_status st = {0};
    *msgs = 0;
    while (rpc_stream_read(s, &msg, &ml, &st) == 0) {
        Kdiag__Solo__Io__CaptureResponse *c = kdiag__solo__io__capture_response__unpack(NULL, ml, msg);
        free(msg);
        assert_non_null(c);
        if (c->ready)
            *snaplen = c->snaplen;
        (*msgs)++;
        kdiag__solo__io__capture_response__free_unpacked(c, NULL);
        usleep((useconds_t)delay_us);
    }
    rpc_stream_free(s);
    return st;
}

static rpc_status capture(const Kdiag__Solo__Io__CaptureRequest *r, int *msgs, uint32_t *snaplen)
{
    return capture_slow(r, msgs, snaplen, 0);
}

static void test_capture_limits(void **state)
{
    (void)state;
    Kdiag__Solo__Io__CaptureRequest r = KDIAG__SOLO__IO__CAPTURE_REQUEST__INIT;
    int msgs;
    uint32_t snap = 0;
    char *filter = malloc(65537);
    memset(filter, ' ', 65536);
    memcpy(filter, "udp", 3);
    filter[65536] = 0;
    r.filter = filter;
    assert_status(capture(&r, &msgs, &snap), GRPC_STATUS_INVALID_ARGUMENT, "filter has 65536 bytes");
    free(filter);
    r.filter = (char *)"";
    r.snaplen = 1u << 31;
    assert_status(capture(&r, &msgs, &snap), GRPC_STATUS_INVALID_ARGUMENT, "snaplen");
    r.snaplen = 0; /* the default */
    r.count = 0;   /* no limit: the duration ends it */
    r.duration_ms = 300;
    r.interface = (char *)"lo";
    assert_int_equal(capture(&r, &msgs, &snap).code, GRPC_STATUS_OK);
    assert_int_equal(snap, 262144);
    assert_true(msgs >= 2); /* ready and the final counts */
    r.interface = (char *)"../../lo";
    assert_status(capture(&r, &msgs, &snap), GRPC_STATUS_INVALID_ARGUMENT, "no interface");
    assert_serving();
}

static void *flood_main(void *arg)
{
    atomic_bool *stop = arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[1400] = {0};
    while (!atomic_load(stop))
        sendto(fd, buf, sizeof buf, 0, (struct sockaddr *)&a, sizeof a);
    close(fd);
    return NULL;
}

/* duration_ms ends the capture while packets keep coming faster than a slow
 * reader takes them (every block of the ring is full each time it looks). */
static void test_capture_duration_under_a_flood(void **state)
{
    (void)state;
    atomic_bool stop = false;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flood_main, &stop), 0);
    usleep(100000);
    Kdiag__Solo__Io__CaptureRequest r = KDIAG__SOLO__IO__CAPTURE_REQUEST__INIT;
    r.interface = (char *)"lo";
    r.filter = (char *)"udp port 9";
    r.duration_ms = 300;
    int msgs;
    uint32_t snap;
    long long t0 = time_now_ms();
    rpc_status st = capture_slow(&r, &msgs, &snap, 20000);
    long long took = time_now_ms() - t0;
    atomic_store(&stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "  a 300 ms capture during a flood: %d messages, ended after %lld ms: %d %s\n", msgs, took,
            st.code, st.message);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_true(took < 6000); /* the manager ends at ~300 ms; the reader then takes what gRPC buffered */
}

/* lo without a filter captures the capture's own stream (as in a pod, where
 * port-forward reaches the manager over lo): each batch sent makes packets
 * for the next, and duration_ms must still end it. */
static void test_capture_of_its_own_stream_ends_at_its_duration(void **state)
{
    (void)state;
    Kdiag__Solo__Io__CaptureRequest r = KDIAG__SOLO__IO__CAPTURE_REQUEST__INIT;
    r.interface = (char *)"lo";
    r.filter = (char *)"";
    r.duration_ms = 300;
    int msgs;
    uint32_t snap;
    long long t0 = time_now_ms();
    rpc_status st = capture(&r, &msgs, &snap);
    long long took = time_now_ms() - t0;
    fprintf(stderr, "  a 300 ms capture of lo: %d messages, ended after %lld ms: %d %s\n", msgs, took, st.code,
            st.message);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_true(took < 3000);
}

/* ---- stdin sent past the window, in many Execs at once ---- */

#define FLOODS 80
#define FLOOD_BYTES (8u << 20)

typedef struct {
    rpc_stream *s;
    const uint8_t *msg; /* one packed stdin chunk, shared */
    size_t len;
    atomic_size_t sent;
} flooder;

/* Writes stdin chunks until FLOOD_BYTES or the call ends; each write blocks
 * while gRPC's flow control holds it back. */
static void *flood_stdin_main(void *arg)
{
    flooder *f = arg;
    while (atomic_load(&f->sent) < FLOOD_BYTES && rpc_stream_write(f->s, f->msg, f->len) == 0)
        atomic_fetch_add(&f->sent, CONTRACT_EXEC_CHUNK);
    return NULL;
}

/* FLOODS Execs of a sleep, each asking for stdin answers (so the manager
 * queues stdin) and then sending 8 MiB of it without waiting for one: what
 * the manager holds for all of them together is bounded, not 4 MiB a call. */
static void test_exec_stdin_past_the_window_is_bounded_across_calls(void **state)
{
    (void)state;
    assert_serving();
    char mark[32];
    snprintf(mark, sizeof mark, "4343.%d", (int)getpid());
    char *argv[] = {"sleep", mark};
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    Kdiag__Solo__Io__ExecStart es = KDIAG__SOLO__IO__EXEC_START__INIT;
    Kdiag__Solo__Io__ExecRequest r = KDIAG__SOLO__IO__EXEC_REQUEST__INIT;
    t.pid = (uint64_t)target;
    es.argv = argv;
    es.n_argv = 2;
    es.target = &t;
    es.stdin_ack_bytes = 64 * 1024;
    r.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_START;
    r.start = &es;
    uint8_t *start, *chunk;
    size_t start_len = pack_exec(&r, &start);
    static uint8_t zeros[CONTRACT_EXEC_CHUNK];
    r = (Kdiag__Solo__Io__ExecRequest)KDIAG__SOLO__IO__EXEC_REQUEST__INIT;
    r.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CHUNK;
    r.stdin_chunk = (ProtobufCBinaryData){sizeof zeros, zeros};
    size_t chunk_len = pack_exec(&r, &chunk);

    long rss0 = tproc_status(M.pid, "VmRSS");
    static flooder f[FLOODS];
    pthread_t th[FLOODS];
    for (int i = 0; i < FLOODS; i++) {
        f[i] = (flooder){.msg = chunk, .len = chunk_len};
        assert_int_equal(rpc_client_bidi_open(&f[i].s, CL, CONTRACT_METHOD_EXEC, 120000), 0);
        assert_int_equal(rpc_stream_write(f[i].s, start, start_len), 0);
        assert_int_equal(pthread_create(&th[i], NULL, flood_stdin_main, &f[i]), 0);
    }
    /* until the sends stop moving for a second (at most 30 s) */
    size_t total = 0, last;
    long long until = time_now_ms() + 30000;
    do {
        last = total;
        usleep(1000000);
        total = 0;
        for (int i = 0; i < FLOODS; i++)
            total += atomic_load(&f[i].sent);
    } while (total != last && time_now_ms() < until);
    long rss1 = tproc_status(M.pid, "VmRSS");
    fprintf(stderr, "%d Execs sent %zu MiB of stdin nobody reads, past their windows; manager RSS %ld -> %ld kB\n",
            FLOODS, total >> 20, rss0, rss1);
    for (int i = 0; i < FLOODS; i++) {
        rpc_stream_cancel(f[i].s);
        pthread_join(th[i], NULL);
        finish(f[i].s);
    }
    free(start);
    free(chunk);
    int marked, children;
    until = time_now_ms() + 20000;
    do
        count_procs(mark, &marked, &children);
    while ((marked || children) && time_now_ms() < until && usleep(50000) == 0);
    assert_int_equal(marked, 0);
    assert_int_equal(children, 0);
#ifndef UNDER_ASAN
    /* gRPC's quota (128 MiB), the stdin budget (32 MiB), each call's one
     * message past it (10 MiB) and the allocator's slack; without the budget
     * each call queued 4 MiB: 489 MB more here, against 189 MB with it */
    assert_true(rss1 - rss0 < 256 * 1024);
#endif
    assert_serving();
}

/* ---- many Execs, then their clients vanish ---- */

#define EXECS_PER_CLIENT 10
#define CLIENTS 6
/* The sleeps' argument: "4242.<pid of the test>", so that another run of
 * this test on the machine (CI's sanitizer pass, a loop) is not counted. */
static char sleep_mark[32];

static void sleep_mark_for(pid_t test)
{
    snprintf(sleep_mark, sizeof sleep_mark, "4242.%d", (int)test);
}

/* A child (this binary re-executed): opens EXECS_PER_CLIENT Execs of a sleep
 * in the target, writes 'r' once each printed its line, then waits to be killed. */
static int client_main(const char *tgt, const char *token, const char *pid)
{
    rpc_client *cl;
    if (rpc_client_new(&cl, tgt, token) < 0)
        return 1;
    char script[64];
    sleep_mark_for(getppid());
    snprintf(script, sizeof script, "echo up; exec sleep %s", sleep_mark);
    const char *argv[] = {"sh", "-c", script};
    exec_client_start st = {.argv = argv, .argc = 3, .pid = strtoull(pid, NULL, 10)};
    for (int i = 0; i < EXECS_PER_CLIENT; i++) {
        exec_client *ec;
        exec_client_event ev;
        rpc_status rs;
        if (exec_client_new(&ec, cl, &st) < 0 || exec_client_read(ec, &ev, &rs) != 0 || ev.kind != EXEC_CLIENT_STDOUT)
            return 1;
    }
    if (write(1, "r", 1) != 1)
        return 1;
    for (;;)
        pause();
}

/* One round: CLIENTS children open their Execs and are killed. Fails unless
 * every sleep and keeper is gone and the manager's fds and threads are back
 * to fds0 / threads0 within 20 s. */
static void vanish_round(int round, int fds0, int threads0, long *rss)
{
    pid_t pid[CLIENTS];
    int out[CLIENTS], marked, children;
    char tpid[16];
    snprintf(tpid, sizeof tpid, "%d", (int)target);
    sleep_mark_for(getpid());
    for (int i = 0; i < CLIENTS; i++) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pid[i] = fork();
        if (pid[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            dup2(p[1], 1);
            execl(self_exe, self_exe, "--client", M.target, M.token, tpid, (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        out[i] = p[0];
    }
    for (int i = 0; i < CLIENTS; i++) {
        char c;
        assert_int_equal(read(out[i], &c, 1), 1);
    }
    /* each shell printed "up" and then execs the sleep: wait for the last exec */
    long long ready_until = time_now_ms() + 10000;
    do
        count_procs(sleep_mark, &marked, &children);
    while (marked < CLIENTS * EXECS_PER_CLIENT && time_now_ms() < ready_until && usleep(20000) == 0);
    int fds1 = tproc_fd_count(M.pid), threads1 = mgr_threads();
    long rss1 = tproc_status(M.pid, "VmRSS");
    assert_int_equal(marked, CLIENTS * EXECS_PER_CLIENT);
    for (int i = 0; i < CLIENTS; i++) {
        kill(pid[i], SIGKILL);
        waitpid(pid[i], NULL, 0);
        close(out[i]);
    }
    long long t0 = time_now_ms(), until = t0 + 20000;
    int fds, threads;
    do {
        usleep(50000);
        count_procs(sleep_mark, &marked, &children);
        fds = tproc_fd_count(M.pid);
        threads = mgr_threads();
    } while ((marked || children || fds > fds0 || threads > threads0) && time_now_ms() < until);
    long long took = time_now_ms() - t0;
    usleep(1500000); /* the manager trims freed memory once a second */
    *rss = tproc_status(M.pid, "VmRSS");
    fprintf(stderr,
            "round %d: %d Execs of %d killed clients gone after %lld ms; manager fds %d -> %d -> %d, threads %d -> "
            "%d -> %d, RSS %ld kB with them, %ld kB after\n",
            round, CLIENTS * EXECS_PER_CLIENT, CLIENTS, took, fds0, fds1, fds, threads0, threads1, threads, rss1,
            *rss);
    assert_int_equal(marked, 0);
    assert_int_equal(children, 0);
    assert_true(fds <= fds0);
    assert_true(threads <= threads0);
}

static void test_vanishing_exec_clients_leave_nothing(void **state)
{
    (void)state;
    assert_serving();
    int fds0 = tproc_fd_count(M.pid), threads0 = mgr_threads();
    long rss0 = tproc_status(M.pid, "VmRSS"), rss[3];
    for (int round = 0; round < 3; round++)
        vanish_round(round, fds0, threads0, &rss[round]);
    fprintf(stderr, "RSS before %ld kB, after each round %ld, %ld, %ld kB\n", rss0, rss[0], rss[1], rss[2]);
#ifndef UNDER_ASAN
    /* the first round fills allocator caches (glibc keeps thread arenas); after it, no growth */
    assert_true(rss[2] - rss[0] < 4 * 1024);
#endif
    assert_serving();
}

/* Last: the manager still stops cleanly; under ASan, LeakSanitizer would make its status non-zero. */
static void test_clean_exit_after_abuse(void **state)
{
    (void)state;
    rpc_client_free(CL);
    CL = NULL;
    int st = mgr_stop(&M, SIGTERM, 20000);
    M.pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- the fixture ---- */

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    /* DIR: busybox as sh, sleep, cat; etc/passwd a marker; abs -> /, up -> ../../.., loop -> loop */
    if (tshell("mkdir -p %s/bin %s/etc && cp %s %s/bin/busybox && for a in sh sleep cat; do ln %s/bin/busybox %s/bin/$a; "
               "done && echo 'inside the target' > %s/etc/passwd && ln -s / %s/abs && ln -s ../../.. %s/up && ln -s loop "
               "%s/loop",
               dir, dir, KDIAG_ASH, dir, dir, dir, dir, dir, dir, dir) != 0)
        return -1;
    target = fork();
    if (target == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("chroot", "chroot", dir, "/bin/sleep", "1000", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* chroot has exec'd the sleep */
        char path[64], link[PATH_MAX] = "";
        snprintf(path, sizeof path, "/proc/%d/root", (int)target);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0 && strncmp(link, dir, (size_t)n) == 0 && n > 1)
            break;
        usleep(10000);
    }
    if (mgr_start(&M, NULL) < 0 || rpc_client_new(&CL, M.target, M.token) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rpc_client_free(CL);
    if (M.pid > 0)
        mgr_stop(&M, SIGTERM, 10000);
    kill(target, SIGKILL);
    waitpid(target, NULL, 0);
    return tshell("rm -rf %s", dir) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "--client"))
        return client_main(argv[2], argv[3], argv[4]);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = 0;
    signal(SIGPIPE, SIG_IGN);
    /* A network namespace of our own, the manager's too: Capture on lo sees only this test's packets. */
    int sk = unshare(CLONE_NEWNET) == 0 ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) : -1;
    struct ifreq ifr = {.ifr_name = "lo", .ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING};
    if (sk < 0 || ioctl(sk, SIOCSIFFLAGS, &ifr) < 0) {
        perror("a network namespace with lo up (this test runs as root)");
        return 1;
    }
    close(sk);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_malformed_first_messages_refused),
        cmocka_unit_test(test_exec_second_start_and_bad_signals_ignored),
        cmocka_unit_test(test_exec_signal_right_after_start_delivered),
        cmocka_unit_test(test_exec_huge_argv),
        cmocka_unit_test(test_copy_path_with_nul_refused),
        cmocka_unit_test(test_exec_and_capture_strings_with_nul_refused),
        cmocka_unit_test(test_copy_pid_out_of_range_refused),
        cmocka_unit_test(test_copy_fifo_does_not_hang),
        cmocka_unit_test(test_copy_escapes_stay_in_the_root),
        cmocka_unit_test(test_exec_stdin_past_the_window_is_bounded_across_calls),
        cmocka_unit_test(test_capture_limits),
        cmocka_unit_test(test_capture_duration_under_a_flood),
        cmocka_unit_test(test_capture_of_its_own_stream_ends_at_its_duration),
        cmocka_unit_test(test_vanishing_exec_clients_leave_nothing),
        cmocka_unit_test(test_clean_exit_after_abuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
