/* test_manager — the kdiag-manager binary: startup lines, flags, auth,
 * Pprof, reflection, Ps, SIGTERM/SIGINT with calls in flight. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/time-util.h"
#include "contract.h"
#include "hello_client.h"
#include "kdiag.pb-c.h"
#include "mgr.h"
#include "reflection.h"
#include "reflection_v1alpha.pb-c.h"
#include "rpc.h"
#include "wire.h"


static int setup(void **state)
{
    mgr_proc *m = calloc(1, sizeof *m);
    if (mgr_start(m, NULL) < 0) {
        fprintf(stderr, "kdiag-manager did not start\n");
        return -1;
    }
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    mgr_proc *m = *state;
    if (m->pid > 0)
        mgr_stop(m, SIGKILL, 10000);
    free(m);
    return 0;
}

/* Last: the shared manager, after every test above, exits 0 on SIGTERM (in
 * an ASan build LeakSanitizer would make that non-zero). */
static void test_clean_exit(void **state)
{
    mgr_proc *m = *state;
    int st = mgr_stop(m, SIGTERM, 20000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_startup_lines(void **state)
{
    mgr_proc *m = *state;
    char host[64];
    int port;
    assert_int_equal(sscanf(m->lines[0], "Listening on %63[^:]:%d", host, &port), 2);
    assert_string_equal(host, "127.0.0.1");
    assert_true(port > 0 && port < 65536);
    assert_int_equal(strlen(m->lines[1]), strlen("Token: ") + 32);
    assert_memory_equal(m->lines[1], "Token: ", 7);
    for (int i = 7; i < 39; i++)
        assert_non_null(strchr("0123456789abcdef", m->lines[1][i]));
    assert_true(m->tunnel_port > 0 && m->tunnel_port != m->port);
    /* a second manager gets another port and another token */
    mgr_proc m2;
    assert_int_equal(mgr_start(&m2, NULL), 0);
    assert_int_not_equal(m2.port, m->port);
    assert_string_not_equal(m2.token, m->token);
    int st = mgr_stop(&m2, SIGINT, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Started with the secret in its environment, the manager ends its start-up
 * lines with a proof of it, and wipes it from what /proc shows. */
#define SECRET "00112233445566778899aabbccddeeff"

/* A manager of its own, started with SECRET in its environment. */
static void start_with_secret(mgr_proc *m)
{
    setenv(CONTRACT_SECRET_ENV, SECRET, 1);
    int rc = mgr_start(m, NULL);
    unsetenv(CONTRACT_SECRET_ENV);
    assert_int_equal(rc, 0);
}

static void test_proof_of_secret(void **state)
{
    (void)state;
    const char *secret = SECRET;
    mgr_proc m;
    start_with_secret(&m);
    assert_memory_equal(m.lines[m.n_lines - 1], "Proof: ", 7);
    contract_banner b;
    contract_find_result r;
    contract_banner_find(m.text, strlen(m.text), secret, &b, &r);
    assert_true(r.found && r.proven);
    assert_int_equal(b.grpc_port, m.port);
    assert_string_equal(b.token, m.token);
    contract_banner_find(m.text, strlen(m.text), "ffeeddccbbaa99887766554433221100", &b, &r);
    assert_false(r.found);
    assert_int_equal(r.rejected, 1);

    char path[64], env[8192];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)m.pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(env, 1, sizeof env - 1, f);
    fclose(f);
    assert_null(memmem(env, n, secret, strlen(secret)));
    int st = mgr_stop(&m, SIGTERM, 10000);
    assert_true(WIFEXITED(st));

    char err[1024];
    setenv(CONTRACT_SECRET_ENV, "not-hex", 1);
    int rc = mgr_run(NULL, err, sizeof err);
    unsetenv(CONTRACT_SECRET_ENV);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, CONTRACT_SECRET_ENV " must be 32 hex digits"));
}

/* Hello needs no token and proves the secret; everything else still needs
 * the token; the client that asked sends the token on the same connection. */
static void test_hello_proves_the_secret_without_the_token(void **state)
{
    const char *secret = SECRET;
    mgr_proc m;
    start_with_secret(&m);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, m.target, NULL), 0);
    contract_hello h;
    rpc_status st;
    assert_int_equal(hello_call(cl, secret, m.token, NULL, 5000, &h, &st), 0);
    assert_int_equal(h.grpc_port, m.port);
    assert_int_equal(h.tunnel_port, m.tunnel_port);
    assert_true(h.target_found); /* PID 1 */
    assert_int_equal(hello_call(cl, secret, m.token, "containerd://0123456789abcdef", 5000, &h, &st), 0);
    assert_false(h.target_found);
    assert_int_equal(hello_call(cl, "ffeeddccbbaa99887766554433221100", m.token, NULL, 5000, &h, &st), -EPERM);
    /* the secret proven, the token not: a record gone bad, whose token must not be sent */
    assert_int_equal(hello_call(cl, secret, "0123456789abcdef0123456789abcdef", NULL, 5000, &h, &st), -EACCES);
    assert_int_equal(hello_call(cl, secret, "", NULL, 5000, &h, &st), -EACCES);

    uint8_t *resp = NULL;
    size_t rlen;
    static const uint8_t short_nonce[] = {0x0a, 0x02, 1, 2};
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_HELLO, short_nonce, sizeof short_nonce, &resp, &rlen,
                                      5000, &st),
                     -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "nonce has 2 bytes"));
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &rlen, 5000, &st),
                     -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(rpc_client_set_token(cl, m.token), 0);
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &rlen, 5000, &st), 0);
    free(resp);
    rpc_client_free(cl);
    assert_true(WIFEXITED(mgr_stop(&m, SIGTERM, 10000)));

    /* a manager without a secret has nothing to prove: Hello is not served */
    mgr_proc *shared = *state;
    assert_int_equal(rpc_client_new(&cl, shared->target, NULL), 0);
    assert_int_equal(hello_call(cl, secret, shared->token, NULL, 5000, &h, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(rpc_client_set_token(cl, shared->token), 0);
    assert_int_equal(hello_call(cl, secret, shared->token, NULL, 5000, &h, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    rpc_client_free(cl);
}

static void test_pprof_unimplemented(void **state)
{
    mgr_proc *m = *state;
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, m->target, m->token), 0);
    Kdiag__Solo__Io__PprofRequest req = KDIAG__SOLO__IO__PPROF_REQUEST__INIT;
    req.pid = 1;
    uint8_t buf[16], *resp = NULL;
    size_t n = kdiag__solo__io__pprof_request__pack(&req, buf), rlen;
    rpc_status st;
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_PPROF, buf, n, &resp, &rlen, 5000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_string_equal(st.message, "pprof is not supported by kdiag-c's manager (it is not written in Go)");
    assert_int_equal(rpc_client_unary(cl, CONTRACT_SERVICE "Nope", buf, n, &resp, &rlen, 5000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_non_null(strstr(st.message, CONTRACT_SERVICE "Nope"));
    rpc_client_free(cl);
}

static void test_auth_required(void **state)
{
    mgr_proc *m = *state;
    char wrong[64];
    snprintf(wrong, sizeof wrong, "%s", m->token);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    const char *tokens[] = {NULL, wrong, ""};
    const char *methods[] = {CONTRACT_METHOD_PS, CONTRACT_METHOD_PPROF, "/x.Y/Z", REFLECTION_V1ALPHA_METHOD};
    for (int t = 0; t < 3; t++) {
        rpc_client *cl;
        assert_int_equal(rpc_client_new(&cl, m->target, tokens[t]), 0);
        for (int i = 0; i < 4; i++) {
            uint8_t *resp = NULL;
            size_t rlen;
            rpc_status st;
            assert_int_equal(rpc_client_unary(cl, methods[i], (const uint8_t *)"", 0, &resp, &rlen, 5000, &st),
                             -EPROTO);
            assert_int_equal(st.code, GRPC_STATUS_UNAUTHENTICATED);
        }
        rpc_client_free(cl);
    }
}

static void test_no_auth_flag(void **state)
{
    (void)state;
    mgr_proc m;
    const char *args[] = {"--no-auth", "-v", NULL};
    assert_int_equal(mgr_start(&m, args), 0);
    assert_null(strstr(m.lines[1], "Token"));
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, m.target, NULL), 0);
    uint8_t *resp = NULL;
    size_t rlen;
    rpc_status st;
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_PPROF, (const uint8_t *)"", 0, &resp, &rlen, 5000, &st),
                     -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    rpc_client_free(cl);
    int s = mgr_stop(&m, SIGTERM, 10000);
    assert_true(WIFEXITED(s) && WEXITSTATUS(s) == 0);
}

static void reflect(rpc_stream *s, int which, const char *arg, Grpc__Reflection__V1alpha__ServerReflectionResponse **out)
{
    Grpc__Reflection__V1alpha__ServerReflectionRequest r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    r.message_request_case = which;
    if (which == GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES)
        r.list_services = (char *)arg;
    else
        r.file_containing_symbol = (char *)arg;
    uint8_t buf[512];
    size_t n = grpc__reflection__v1alpha__server_reflection_request__pack(&r, buf);
    assert_int_equal(rpc_stream_write(s, buf, n), 0);
    uint8_t *resp;
    size_t rlen;
    rpc_status st;
    assert_int_equal(rpc_stream_read(s, &resp, &rlen, &st), 0);
    *out = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, rlen, resp);
    free(resp);
    assert_non_null(*out);
}

static void test_reflection(void **state)
{
    mgr_proc *m = *state;
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, m->target, m->token), 0);
    const char *methods[] = {REFLECTION_V1ALPHA_METHOD, REFLECTION_V1_METHOD};
    for (int v = 0; v < 2; v++) {
        rpc_stream *s;
        assert_int_equal(rpc_client_bidi_open(&s, cl, methods[v], 10000), 0);
        Grpc__Reflection__V1alpha__ServerReflectionResponse *r;
        reflect(s, GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES, "", &r);
        assert_int_equal(r->message_response_case,
                         GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
        bool found = false;
        for (size_t i = 0; i < r->list_services_response->n_service; i++)
            found |= !strcmp(r->list_services_response->service[i]->name, "kdiag.solo.io.Manager");
        assert_true(found);
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

        reflect(s, GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL,
                "kdiag.solo.io.Manager.Ps", &r);
        assert_int_equal(r->message_response_case,
                         GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
        ProtobufCBinaryData *d = &r->file_descriptor_response->file_descriptor_proto[0];
        const char *why = wire_check_kdiag_file((wspan){d->data, d->len});
        if (why)
            fail_msg("descriptor from reflection: %s", why);
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
        assert_int_equal(rpc_stream_close_send(s), 0);
        uint8_t *b;
        size_t bl;
        rpc_status st;
        assert_int_equal(rpc_stream_read(s, &b, &bl, &st), 1);
        assert_int_equal(st.code, GRPC_STATUS_OK);
        rpc_stream_free(s);
    }
    rpc_client_free(cl);
}

static void test_ps_sees_listener(void **state)
{
    mgr_proc *m = *state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    uint32_t port = ntohs(a.sin_port);

    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, m->target, m->token), 0);
    uint8_t *resp = NULL;
    size_t rlen;
    rpc_status st;
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &rlen, 10000, &st), 0);
    Kdiag__Solo__Io__PsResponse *r = kdiag__solo__io__ps_response__unpack(NULL, rlen, resp);
    free(resp);
    assert_non_null(r);
    bool me = false, manager = false;
    for (size_t i = 0; i < r->n_processes; i++) {
        Kdiag__Solo__Io__ProcessInfo *p = r->processes[i];
        manager |= p->pid == (uint64_t)m->pid;
        if (p->pid != (uint64_t)getpid())
            continue;
        for (size_t k = 0; k < p->n_listen_addresses; k++)
            me |= p->listen_addresses[k]->port == port && !strcmp(p->listen_addresses[k]->ip, "127.0.0.1");
    }
    assert_true(me);
    assert_false(manager);
    kdiag__solo__io__ps_response__free_unpacked(r, NULL);
    rpc_client_free(cl);
    close(fd);
}

struct reader {
    rpc_stream *s;
    rpc_status st;
    int rc;
};

static void *read_all(void *arg)
{
    struct reader *r = arg;
    uint8_t *b;
    size_t n;
    while ((r->rc = rpc_stream_read(r->s, &b, &n, &r->st)) == 0)
        free(b);
    return NULL;
}

/* SIGTERM and SIGINT with a stream open: the call is cancelled and the
 * manager exits 0 promptly. */
static void test_signal_with_call_in_flight(void **state)
{
    (void)state;
    int sigs[] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        mgr_proc m;
        assert_int_equal(mgr_start(&m, NULL), 0);
        rpc_client *cl;
        assert_int_equal(rpc_client_new(&cl, m.target, m.token), 0);
        struct reader r = {NULL, {0, ""}, 0};
        assert_int_equal(rpc_client_bidi_open(&r.s, cl, REFLECTION_V1ALPHA_METHOD, 0), 0);
        Grpc__Reflection__V1alpha__ServerReflectionResponse *resp;
        reflect(r.s, GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES, "", &resp);
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(resp, NULL);
        pthread_t t;
        pthread_create(&t, NULL, read_all, &r);
        long long t0 = time_now_ms();
        int st = mgr_stop(&m, sigs[i], 10000);
        assert_true(time_now_ms() - t0 < 5000);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        pthread_join(t, NULL);
        assert_int_equal(r.rc, 1);
        assert_int_not_equal(r.st.code, GRPC_STATUS_OK);
        rpc_stream_free(r.s);
        rpc_client_free(cl);
    }
}

static void test_bad_flags(void **state)
{
    (void)state;
    char err[4096];
    struct {
        const char *args[4];
        const char *want;
    } cases[] = {
        {{"--bind", "nonsense", NULL}, "'nonsense'"},
        {{"--bind", "127.0.0.1:70000", NULL}, "'127.0.0.1:70000'"},
        {{"--bind", "127.0.0.1:", NULL}, "'127.0.0.1:'"},
        {{"--bind", "[::1:0", NULL}, "'[::1:0'"},
        {{"--bogus", NULL}, "'--bogus'"},
        {{"--bind", NULL}, "'--bind'"},
        {{"extra", NULL}, "'extra'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(mgr_run(cases[i].args, err, sizeof err), 2);
        if (!strstr(err, cases[i].want) || !strstr(err, "usage:"))
            fail_msg("stderr for case %zu lacks %s: %s", i, cases[i].want, err);
    }
    const char *help[] = {"--help", NULL};
    assert_int_equal(mgr_run(help, err, sizeof err), 0);
}

static void test_bind_flag(void **state)
{
    mgr_proc *m = *state;
    char err[4096], bindarg[64];
    /* the first manager's port is taken: a clear error, exit 1 */
    snprintf(bindarg, sizeof bindarg, "127.0.0.1:%d", m->port);
    const char *args[] = {"--bind", bindarg, NULL};
    assert_int_equal(mgr_run(args, err, sizeof err), 1);
    assert_non_null(strstr(err, bindarg));
    /* a chosen free port, and IPv6 loopback */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    snprintf(bindarg, sizeof bindarg, "127.0.0.1:%d", ntohs(a.sin_port));
    mgr_proc m2;
    assert_int_equal(mgr_start(&m2, args), 0);
    assert_int_equal(m2.port, ntohs(a.sin_port));
    mgr_stop(&m2, SIGTERM, 10000);
    const char *v6[] = {"--bind", "[::1]:0", NULL};
    assert_int_equal(mgr_start(&m2, v6), 0);
    assert_memory_equal(m2.lines[0], "Listening on [::1]:", 19);
    char target[64];
    snprintf(target, sizeof target, "[::1]:%d", m2.port);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, target, m2.token), 0);
    uint8_t *resp = NULL;
    size_t rlen;
    rpc_status st;
    assert_int_equal(rpc_client_unary(cl, CONTRACT_METHOD_PPROF, (const uint8_t *)"", 0, &resp, &rlen, 5000, &st),
                     -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    rpc_client_free(cl);
    mgr_stop(&m2, SIGTERM, 10000);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_lines),
        cmocka_unit_test(test_proof_of_secret),
        cmocka_unit_test(test_hello_proves_the_secret_without_the_token),
        cmocka_unit_test(test_pprof_unimplemented),
        cmocka_unit_test(test_auth_required),
        cmocka_unit_test(test_no_auth_flag),
        cmocka_unit_test(test_reflection),
        cmocka_unit_test(test_ps_sees_listener),
        cmocka_unit_test(test_signal_with_call_in_flight),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_bind_flag),
        cmocka_unit_test(test_clean_exit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
