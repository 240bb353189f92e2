/* fuzz_requests — libFuzzer target for what a client controls: request
 * decoding (kdiag requests, reflection requests) and the handlers' input
 * checks, the latter through a real in-process server and client so that
 * gRPC framing, the rpc layer and the handlers all see the bytes.
 *
 * The first input byte picks the path; the rest is the message. Properties
 * checked beyond "no crash, no leak, no UB":
 *   - Ps answers OK or INVALID_ARGUMENT, nothing else;
 *   - Redirect with a port outside 1..65535 is INVALID_ARGUMENT, never a
 *     stream that starts.
 * Runs in a network namespace of its own when root (Redirect then installs
 * its nftables rules there), with Ps reading a one-process fixture proc root. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "contract.h"
#include "hello.h"
#include "kdiag.pb-c.h"
#include "netns.h"
#include "ps_rpc.h"
#include "redirect.h"
#include "reflection-internal.h"
#include "rpc.h"

#define TOKEN "00112233445566778899aabbccddeeff"

static rpc_client *cl, *open_cl; /* with the token, and without it (Hello) */

static char proc_root[] = "/tmp/kdiag-fuzz-proc-XXXXXX";

/* The fixture: <root>/stat and one process, <root>/1/{stat,status,cmdline,fd/}. */
static const char *const fixture_files[][2] = {
    {"stat", "cpu  1 0 1 1 0 0 0 0 0 0\nbtime 1700000000\n"},
    {"1/stat", "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 100 1000000 200 "
               "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"},
    {"1/status", "Name:\tinit\nUid:\t0\t0\t0\t0\n"},
    {"1/cmdline", "init\0"},
};

static void fixture_path(char *buf, size_t sz, const char *leaf)
{
    snprintf(buf, sz, "%s/%s", proc_root, leaf);
}

static void remove_proc_root(void)
{
    char p[128];
    for (size_t i = 0; i < sizeof fixture_files / sizeof *fixture_files; i++) {
        fixture_path(p, sizeof p, fixture_files[i][0]);
        unlink(p);
    }
    fixture_path(p, sizeof p, "1/fd");
    rmdir(p);
    fixture_path(p, sizeof p, "1");
    rmdir(p);
    rmdir(proc_root);
}

static void make_fixture(void)
{
    char p[128];
    if (!mkdtemp(proc_root))
        abort();
    atexit(remove_proc_root);
    fixture_path(p, sizeof p, "1");
    mkdir(p, 0755);
    fixture_path(p, sizeof p, "1/fd");
    mkdir(p, 0755);
    for (size_t i = 0; i < sizeof fixture_files / sizeof *fixture_files; i++) {
        fixture_path(p, sizeof p, fixture_files[i][0]);
        FILE *f = fopen(p, "w");
        size_t n = strlen(fixture_files[i][1]) + !strcmp(fixture_files[i][0], "1/cmdline");
        if (!f || fwrite(fixture_files[i][1], 1, n, f) != n || fclose(f) != 0)
            abort();
    }
}

/* libFuzzer's entry points (it declares them in no header). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (geteuid() == 0 && unshare(CLONE_NEWNET) == 0)
        netns_lo_up();
    make_fixture();
    static ps_opts po;
    po.proc_root = proc_root;
    po.exclude_pid = -1;
    rpc_server_opts so = {.bind = "127.0.0.1:0", .token = TOKEN, .max_msg_bytes = 1 << 20};
    rpc_server *s; /* lives for the whole run */
    if (rpc_server_new(&s, &so) < 0)
        abort();
    redirect_mgr *rm = NULL;
    redirect_opts ro = {.pair_timeout_ms = 1000};
    if (redirect_mgr_new(&rm, &ro) < 0)
        abort();
    int port;
    static hello_opts ho = {.secret = "00112233445566778899aabbccddeeff"};
    if (rpc_server_add(s, CONTRACT_METHOD_PS, RPC_UNARY, ps_rpc_handle, &po) < 0 ||
        rpc_server_add_open(s, CONTRACT_METHOD_HELLO, hello_rpc_handle, &ho) < 0 ||
        rpc_server_add(s, CONTRACT_METHOD_REDIRECT, RPC_SERVER_STREAM, redirect_rpc_handle, rm) < 0 ||
        reflection_register(s) < 0 || rpc_server_start(s, &port) < 0)
        abort();
    redirect_mgr_reserve_port(rm, (uint16_t)port);
    atomic_store(&ho.grpc_port, port);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    if (rpc_client_new(&cl, target, TOKEN) < 0 || rpc_client_new(&open_cl, target, NULL) < 0)
        abort();
    return 0;
}

static void decode_only(const uint8_t *d, size_t n)
{
    Kdiag__Solo__Io__PsRequest *ps = kdiag__solo__io__ps_request__unpack(NULL, n, d);
    if (ps)
        kdiag__solo__io__ps_request__free_unpacked(ps, NULL);
    Kdiag__Solo__Io__RedirectRequest *rr = kdiag__solo__io__redirect_request__unpack(NULL, n, d);
    if (rr)
        kdiag__solo__io__redirect_request__free_unpacked(rr, NULL);
    Kdiag__Solo__Io__PprofRequest *pp = kdiag__solo__io__pprof_request__unpack(NULL, n, d);
    if (pp)
        kdiag__solo__io__pprof_request__free_unpacked(pp, NULL);
    uint8_t *out = NULL;
    size_t olen;
    if (reflection_answer(d, n, &out, &olen) == 0)
        free(out);
}

/* A unary call of d, which must answer OK or INVALID_ARGUMENT. */
static void call_unary(rpc_client *c, const char *method, const uint8_t *d, size_t n)
{
    uint8_t *resp = NULL;
    size_t rlen;
    rpc_status st;
    rpc_client_unary(c, method, d, n, &resp, &rlen, 10000, &st);
    free(resp);
    if (st.code != GRPC_STATUS_OK && st.code != GRPC_STATUS_INVALID_ARGUMENT) {
        fprintf(stderr, "%s answered %d: %s\n", method, st.code, st.message);
        abort();
    }
}

static void call_redirect(const uint8_t *d, size_t n)
{
    Kdiag__Solo__Io__RedirectRequest *rr = kdiag__solo__io__redirect_request__unpack(NULL, n, d);
    bool bad_port = rr && (rr->port == 0 || rr->port > 65535);
    if (rr)
        kdiag__solo__io__redirect_request__free_unpacked(rr, NULL);
    /* A valid port opens a stream that stays open: a short deadline ends it.
     * A bad port must be refused, and on a loaded machine under ASan the answer
     * can take longer than that: give it time, so only a wrong answer fails. */
    rpc_stream *s;
    if (rpc_client_stream_open(&s, cl, CONTRACT_METHOD_REDIRECT, d, n, bad_port ? 10000 : 30) < 0)
        abort();
    uint8_t *buf;
    size_t len;
    rpc_status st;
    int msgs = 0;
    while (rpc_stream_read(s, &buf, &len, &st) == 0) {
        free(buf);
        msgs++;
    }
    rpc_stream_free(s);
    if (bad_port && (msgs > 0 || st.code != GRPC_STATUS_INVALID_ARGUMENT)) {
        fprintf(stderr, "Redirect with a bad port: %d messages, status %d: %s\n", msgs, st.code, st.message);
        abort();
    }
}

static void call_reflection(const uint8_t *d, size_t n)
{
    rpc_stream *s;
    if (rpc_client_bidi_open(&s, cl, REFLECTION_V1_METHOD, 10000) < 0)
        abort();
    uint8_t *buf;
    size_t len;
    rpc_status st;
    if (rpc_stream_write(s, d, n) == 0)
        rpc_stream_close_send(s);
    while (rpc_stream_read(s, &buf, &len, &st) == 0)
        free(buf);
    rpc_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: decode_only(d, n); break;
    case 1: call_unary(cl, CONTRACT_METHOD_PS, d, n); break;
    case 2: call_redirect(d, n); break;
    case 3: call_reflection(d, n); break;
    case 4: call_unary(open_cl, CONTRACT_METHOD_HELLO, d, n); break; /* served without the token */
    }
    return 0;
}
