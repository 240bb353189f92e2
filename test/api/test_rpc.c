/* test_rpc — the rpc layer (api/rpc_server.c, api/rpc_client.c) end to end
 * over real loopback sockets: unary, server stream, bidi, cancellation
 * reaching the handler's cancel fd, deadlines, auth, unknown methods, status
 * messages, message size limit, stream limit, keepalive detecting a frozen
 * peer, shutdown with calls in flight, a server whose requests for calls
 * fail, a server out of gRPC memory. Run under ASan this also checks the layer frees everything. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/time-util.h"
#include "rpc.h"
#include "rpc_server-internal.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

/* What the Wait handler observed, for the test thread. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, finished;
    bool saw_cancel;
    int64_t deadline_ms;
    int64_t waited_ms;
} obs = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false, 0, 0};

static void obs_reset(void)
{
    pthread_mutex_lock(&obs.mu);
    obs.started = obs.finished = 0;
    obs.saw_cancel = false;
    obs.deadline_ms = obs.waited_ms = 0;
    pthread_mutex_unlock(&obs.mu);
}

/* Waits until cond(obs) or timeout; returns whether cond held. */
static bool obs_wait(int field_offset, int want, int timeout_ms)
{
    struct timespec until = time_deadline_ts(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&obs.mu);
    int *v = (int *)((char *)&obs + field_offset);
    while (*v < want)
        if (pthread_cond_timedwait(&obs.cv, &obs.mu, &until) == ETIMEDOUT)
            break;
    bool ok = *v >= want;
    pthread_mutex_unlock(&obs.mu);
    return ok;
}

/* ---- handlers ---- */

static grpc_status_code h_echo(rpc_call *c, void *ud)
{
    (void)ud;
    uint8_t *buf;
    size_t len;
    int rc = rpc_call_recv(c, &buf, &len);
    if (rc < 0)
        return GRPC_STATUS_CANCELLED;
    rc = rpc_call_send(c, buf, len);
    free(buf);
    return rc < 0 ? GRPC_STATUS_INTERNAL : GRPC_STATUS_OK;
}

/* Responds "<method>|<authorization>|<peer non-empty>". */
static grpc_status_code h_whoami(rpc_call *c, void *ud)
{
    (void)ud;
    char out[512];
    const char *auth = rpc_call_metadata(c, "authorization");
    int n = snprintf(out, sizeof out, "%s|%s|%s", rpc_call_method(c), auth ? auth : "-",
                     rpc_call_peer(c)[0] ? "peer" : "nopeer");
    rpc_call_send(c, (uint8_t *)out, (size_t)n);
    return GRPC_STATUS_OK;
}

static grpc_status_code h_peer(rpc_call *c, void *ud)
{
    (void)ud;
    const char *peer = rpc_call_peer(c);
    rpc_call_send(c, (const uint8_t *)peer, strlen(peer));
    return GRPC_STATUS_OK;
}

static grpc_status_code h_fail(rpc_call *c, void *ud)
{
    (void)ud;
    rpc_call_set_message(c, "nope %d", 42);
    return GRPC_STATUS_NOT_FOUND;
}

static grpc_status_code h_noresp(rpc_call *c, void *ud)
{
    (void)c;
    (void)ud;
    return GRPC_STATUS_OK;
}

/* Request: decimal count N; responds "0" .. "N-1". */
static grpc_status_code h_count(rpc_call *c, void *ud)
{
    (void)ud;
    uint8_t *buf;
    size_t len;
    if (rpc_call_recv(c, &buf, &len) < 0)
        return GRPC_STATUS_CANCELLED;
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.*s", (int)len, (char *)buf);
    free(buf);
    int n = atoi(tmp);
    for (int i = 0; i < n; i++) {
        int k = snprintf(tmp, sizeof tmp, "%d", i);
        if (rpc_call_send(c, (uint8_t *)tmp, (size_t)k) < 0)
            return GRPC_STATUS_CANCELLED;
    }
    return GRPC_STATUS_OK;
}

/* Bidi: answers each message upper-cased, until the client half-closes. */
static grpc_status_code h_upper(rpc_call *c, void *ud)
{
    (void)ud;
    for (;;) {
        uint8_t *buf;
        size_t len;
        int rc = rpc_call_recv(c, &buf, &len);
        if (rc == -ENODATA)
            return GRPC_STATUS_OK;
        if (rc < 0)
            return GRPC_STATUS_CANCELLED;
        for (size_t i = 0; i < len; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z')
                buf[i] -= 32;
        rc = rpc_call_send(c, buf, len);
        free(buf);
        if (rc < 0)
            return GRPC_STATUS_CANCELLED;
    }
}

/* Server stream that sends one "ready" message, then waits (poll) on the
 * cancel fd for up to 20 s and reports what it saw. */
static grpc_status_code h_wait(rpc_call *c, void *ud)
{
    (void)ud;
    int64_t t0 = time_now_ms();
    pthread_mutex_lock(&obs.mu);
    obs.deadline_ms = rpc_call_deadline_ms(c);
    obs.started++;
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
    rpc_call_send(c, (const uint8_t *)"ready", 5);
    struct pollfd p = {rpc_call_cancel_fd(c), POLLIN, 0};
    int r = poll(&p, 1, 20000);
    pthread_mutex_lock(&obs.mu);
    obs.saw_cancel = r == 1 && rpc_call_cancelled(c);
    obs.waited_ms = time_now_ms() - t0;
    obs.finished++;
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
    return GRPC_STATUS_CANCELLED;
}

/* Unary that waits (poll on the cancel fd, up to 20 s) before answering. */
static grpc_status_code h_slow(rpc_call *c, void *ud)
{
    (void)ud;
    int64_t t0 = time_now_ms();
    pthread_mutex_lock(&obs.mu);
    obs.deadline_ms = rpc_call_deadline_ms(c);
    obs.started++;
    pthread_mutex_unlock(&obs.mu);
    struct pollfd p = {rpc_call_cancel_fd(c), POLLIN, 0};
    int r = poll(&p, 1, 20000);
    rpc_call_send(c, (const uint8_t *)"late", 4);
    pthread_mutex_lock(&obs.mu);
    obs.saw_cancel = r == 1 && rpc_call_cancelled(c);
    obs.waited_ms = time_now_ms() - t0;
    obs.finished++;
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
    return GRPC_STATUS_OK;
}

/* ---- fixtures ---- */

typedef struct {
    rpc_server *s;
    int port;
    char target[64];
} fixture;

static size_t fx_memory;  /* the next fx_start's rpc_server_opts.memory */
static int fx_preface_ms; /* and its preface_ms */

static fixture *fx_start(const char *token, int max_msg, int max_streams, int keepalive_ms)
{
    fixture *f = calloc(1, sizeof *f);
    rpc_server_opts o = {.bind = "127.0.0.1:0",
                         .token = token,
                         .max_msg_bytes = max_msg,
                         .max_streams = max_streams,
                         .keepalive_ms = keepalive_ms,
                         .memory = fx_memory,
                         .preface_ms = fx_preface_ms};
    assert_int_equal(rpc_server_new(&f->s, &o), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Echo", RPC_UNARY, h_echo, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Whoami", RPC_UNARY, h_whoami, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Fail", RPC_UNARY, h_fail, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Peer", RPC_UNARY, h_peer, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/NoResp", RPC_UNARY, h_noresp, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Count", RPC_SERVER_STREAM, h_count, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Upper", RPC_BIDI_STREAM, h_upper, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Wait", RPC_SERVER_STREAM, h_wait, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Stall", RPC_BIDI_STREAM, h_wait, NULL), 0); /* never reads */
    assert_int_equal(rpc_server_add(f->s, "/t.T/Slow", RPC_UNARY, h_slow, NULL), 0);
    assert_int_equal(rpc_server_add(f->s, "/t.T/Echo", RPC_UNARY, h_echo, NULL), -EEXIST);
    assert_int_equal(rpc_server_start(f->s, &f->port), 0);
    assert_true(f->port > 0);
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", f->port);
    obs_reset();
    return f;
}

static void fx_stop(fixture *f)
{
    rpc_server_free(f->s);
    free(f);
}

static int unary(rpc_client *cl, const char *method, const char *req, size_t req_len, char **resp,
                 size_t *resp_len, int timeout_ms, rpc_status *st)
{
    uint8_t *r = NULL;
    size_t rl = 0;
    int rc = rpc_client_unary(cl, method, (const uint8_t *)req, req_len, &r, &rl, timeout_ms, st);
    if (resp) {
        *resp = (char *)r;
        *resp_len = rl;
    } else {
        free(r);
    }
    return rc;
}

/* ---- tests ---- */

static void test_unary_echo(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_status st;
    char *resp;
    size_t len;
    assert_int_equal(unary(cl, "/t.T/Echo", "hello", 5, &resp, &len, 5000, &st), 0);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(resp, "hello", 5);
    free(resp);

    /* empty message (PsRequest{} is zero bytes) */
    assert_int_equal(unary(cl, "/t.T/Echo", "", 0, &resp, &len, 5000, &st), 0);
    assert_int_equal(len, 0);
    assert_non_null(resp);
    free(resp);

    /* 3 MiB of varied bytes, under the 4 MiB default */
    size_t big = 3 << 20;
    char *b = malloc(big);
    for (size_t i = 0; i < big; i++)
        b[i] = (char)(i * 131 + (i >> 11));
    assert_int_equal(unary(cl, "/t.T/Echo", b, big, &resp, &len, 10000, &st), 0);
    assert_int_equal(len, big);
    assert_memory_equal(resp, b, big);
    free(resp);
    free(b);

    /* metadata, method and peer reach the handler */
    assert_int_equal(unary(cl, "/t.T/Whoami", "", 0, &resp, &len, 5000, &st), 0);
    assert_int_equal(len, strlen("/t.T/Whoami|Bearer " TOKEN "|peer"));
    assert_memory_equal(resp, "/t.T/Whoami|Bearer " TOKEN "|peer", len);
    free(resp);
    rpc_client_free(cl);
    fx_stop(f);
}

/* n bytes from fd within ms, else fail. */
static void read_within(int fd, uint8_t *buf, size_t n, int ms)
{
    size_t got = 0;
    int64_t end = time_now_ms() + ms;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(end - time_now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0)
            fail_msg("%zu of %zu bytes within %d ms", got, n, ms);
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            fail_msg("read: %zd (%s)", r, r < 0 ? strerror(errno) : "EOF");
        got += (size_t)r;
    }
}

/* The server's SETTINGS come at accept, before the client's preface: a gRPC
 * client starts no call before them (one round trip less through kubectl
 * port-forward). Core's own SETTINGS follow once the preface is there, and
 * the connection then serves calls. */
static void test_server_settings_come_first(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)f->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    uint8_t frame[9];
    static const uint8_t empty_settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    read_within(fd, frame, sizeof frame, 2000); /* nothing sent yet */
    assert_memory_equal(frame, empty_settings, sizeof frame);
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const uint8_t ack[9] = {0, 0, 0, 4, 1, 0, 0, 0, 0};
    assert_int_equal(write(fd, preface, sizeof preface - 1), (ssize_t)(sizeof preface - 1));
    assert_int_equal(write(fd, empty_settings, sizeof empty_settings), 9);
    assert_int_equal(write(fd, ack, sizeof ack), 9);
    /* then core: its SETTINGS and the ACK of ours, in either order, no GOAWAY */
    bool settings = false, acked = false;
    while (!settings || !acked) {
        read_within(fd, frame, sizeof frame, 5000);
        uint32_t len = (uint32_t)frame[0] << 16 | (uint32_t)frame[1] << 8 | frame[2];
        assert_int_not_equal(frame[3], 7); /* GOAWAY */
        uint8_t payload[256];
        assert_true(len <= sizeof payload);
        if (len)
            read_within(fd, payload, len, 2000);
        if (frame[3] == 4 && (frame[4] & 1))
            acked = true;
        else if (frame[3] == 4)
            settings = true;
    }
    close(fd);
    rpc_client *cl;
    rpc_status st;
    char *resp;
    size_t n;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    assert_int_equal(unary(cl, "/t.T/Echo", "hi", 2, &resp, &n, 5000, &st), 0);
    assert_int_equal(n, 2);
    free(resp);
    rpc_client_free(cl);
    fx_stop(f);
}

static int tcp_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* A connection that sends nothing is closed at the preface deadline
 * (preface_ms), not before: the manager's is CONTRACT_PREFACE_MS, so that a
 * kept forward's spare connection waits for its command. */
static void test_silent_connection_closed_at_preface_deadline(void **state)
{
    (void)state;
    fx_preface_ms = 600;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    fx_preface_ms = 0;
    int fd = tcp_to(f->port);
    uint8_t frame[9];
    int64_t t0 = time_now_ms();
    read_within(fd, frame, sizeof frame, 2000); /* the early SETTINGS */
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 3000), 1);
    int64_t closed = time_now_ms() - t0;
    assert_int_equal(read(fd, frame, 1), 0);
    fprintf(stderr, "silent connection closed after %lld ms (deadline 600 ms)\n", (long long)closed);
    assert_true(closed >= 550 && closed < 2500);
    close(fd);
    fx_stop(f);
}

/* A client made on a socket connected ahead (rpc_client_new_fd: a kept
 * forward's spare), silent until then with the server's SETTINGS waiting
 * in it, makes its calls on that very connection. */
static void test_client_on_a_connected_socket(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    int fd = tcp_to(f->port);
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &ml), 0);
    usleep(300000);
    rpc_client *cl;
    rpc_status st;
    char *resp, want[64];
    size_t n;
    assert_int_equal(rpc_client_new_fd(&cl, fd, TOKEN), 0);
    assert_int_equal(unary(cl, "/t.T/Peer", "", 0, &resp, &n, 5000, &st), 0);
    snprintf(want, sizeof want, "127.0.0.1:%d", ntohs(me.sin_port));
    resp = realloc(resp, n + 1);
    resp[n] = '\0';
    assert_non_null(strstr(resp, want));
    free(resp);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_status_and_message(void **state)
{
    (void)state;
    fixture *f = fx_start(NULL, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, NULL), 0);
    rpc_status st;
    assert_int_equal(unary(cl, "/t.T/Fail", "", 0, NULL, NULL, 5000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_NOT_FOUND);
    assert_string_equal(st.message, "nope 42");
    assert_int_equal(unary(cl, "/t.T/NoResp", "", 0, NULL, NULL, 5000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_INTERNAL);
    assert_non_null(strstr(st.message, "no response"));
    assert_int_equal(unary(cl, "/t.T/Nope", "", 0, NULL, NULL, 5000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_non_null(strstr(st.message, "/t.T/Nope"));
    assert_int_equal(unary(cl, "/other.Svc/Echo", "", 0, NULL, NULL, 5000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_auth(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    const char *bad[] = {NULL, "0123456789abcdef0123456789abcdee", "0123456789abcdef", "", TOKEN "0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rpc_client *cl;
        assert_int_equal(rpc_client_new(&cl, f->target, bad[i]), 0);
        rpc_status st;
        assert_int_equal(unary(cl, "/t.T/Echo", "x", 1, NULL, NULL, 5000, &st), -EPROTO);
        assert_int_equal(st.code, GRPC_STATUS_UNAUTHENTICATED);
        assert_non_null(strstr(st.message, "authorization: Bearer"));
        /* also before method lookup: an unknown method is not revealed */
        assert_int_equal(unary(cl, "/t.T/Nope", "x", 1, NULL, NULL, 5000, &st), -EPROTO);
        assert_int_equal(st.code, GRPC_STATUS_UNAUTHENTICATED);
        /* streams too */
        rpc_stream *s;
        assert_int_equal(rpc_client_stream_open(&s, cl, "/t.T/Count", (const uint8_t *)"3", 1, 5000), 0);
        uint8_t *buf;
        size_t len;
        assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1);
        assert_int_equal(st.code, GRPC_STATUS_UNAUTHENTICATED);
        rpc_stream_free(s);
        rpc_client_free(cl);
    }
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_status st;
    assert_int_equal(unary(cl, "/t.T/Echo", "x", 1, NULL, NULL, 5000, &st), 0);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_server_stream(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, cl, "/t.T/Count", (const uint8_t *)"500", 3, 10000), 0);
    assert_non_null(s);
    rpc_status st;
    uint8_t *buf;
    size_t len;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 0);
        char want[16];
        int n = snprintf(want, sizeof want, "%d", i);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(buf, want, len);
        free(buf);
    }
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1); /* stays ended */
    rpc_stream_free(s);

    /* a unary call on the same channel afterwards */
    assert_int_equal(unary(cl, "/t.T/Echo", "a", 1, NULL, NULL, 5000, &st), 0);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_bidi(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, cl, "/t.T/Upper", 10000), 0);
    assert_non_null(s);
    rpc_status st;
    for (int i = 0; i < 20; i++) {
        char msg[32], want[32];
        int n = snprintf(msg, sizeof msg, "msg-%d-abc", i);
        snprintf(want, sizeof want, "MSG-%d-ABC", i);
        assert_int_equal(rpc_stream_write(s, (uint8_t *)msg, (size_t)n), 0);
        uint8_t *buf;
        size_t len;
        assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 0); /* answer before the next write */
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(buf, want, len);
        free(buf);
    }
    assert_int_equal(rpc_stream_close_send(s), 0);
    assert_int_equal(rpc_stream_write(s, (const uint8_t *)"x", 1), -EPIPE);
    uint8_t *buf;
    size_t len;
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    rpc_stream_free(s);
    rpc_client_free(cl);
    fx_stop(f);
}

struct canceller {
    rpc_stream *s;
    int delay_ms;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    usleep((useconds_t)c->delay_ms * 1000);
    rpc_stream_cancel(c->s);
    return NULL;
}

static void test_client_cancel_reaches_handler(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, cl, "/t.T/Wait", (const uint8_t *)"", 0, 0), 0);
    rpc_status st;
    uint8_t *buf;
    size_t len;
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 0); /* "ready" */
    free(buf);
    assert_int_equal(obs.deadline_ms, -1); /* no deadline set */
    struct canceller c = {s, 200};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, &c);
    int64_t t0 = time_now_ms();
    /* the blocked read returns once the other thread cancels */
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1);
    assert_int_equal(st.code, GRPC_STATUS_CANCELLED);
    assert_true(time_now_ms() - t0 < 5000);
    pthread_join(t, NULL);
    assert_true(obs_wait(offsetof(typeof(obs), finished), 1, 5000));
    assert_true(obs.saw_cancel);
    assert_true(obs.waited_ms < 5000);
    rpc_stream_free(s);

    /* freeing a stream mid-call cancels it too */
    obs_reset();
    assert_int_equal(rpc_client_stream_open(&s, cl, "/t.T/Wait", (const uint8_t *)"", 0, 0), 0);
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 0);
    free(buf);
    rpc_stream_free(s);
    assert_true(obs_wait(offsetof(typeof(obs), finished), 1, 5000));
    assert_true(obs.saw_cancel);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_deadline(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    int64_t t0 = time_now_ms();
    rpc_stream *s;
    assert_int_equal(rpc_client_stream_open(&s, cl, "/t.T/Wait", (const uint8_t *)"", 0, 700), 0);
    rpc_status st;
    uint8_t *buf;
    size_t len;
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 0);
    free(buf);
    /* the handler sees what is left of it (0 when it ran that late: ASan on 2 cores); -1 is none */
    assert_true(obs.deadline_ms >= 0 && obs.deadline_ms <= 700);
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1);
    assert_int_equal(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    int64_t took = time_now_ms() - t0;
    assert_true(took >= 600 && took < 5000);
    rpc_stream_free(s);
    assert_true(obs_wait(offsetof(typeof(obs), finished), 1, 5000));
    assert_true(obs.saw_cancel);
    assert_true(obs.waited_ms < 3000);

    /* unary: the deadline ends the call and reaches the handler */
    obs_reset();
    t0 = time_now_ms();
    assert_int_equal(unary(cl, "/t.T/Slow", "x", 1, NULL, NULL, 500, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    took = time_now_ms() - t0;
    assert_true(took >= 400 && took < 5000);
    assert_true(obs_wait(offsetof(typeof(obs), finished), 1, 5000));
    assert_true(obs.saw_cancel);
    assert_true(obs.deadline_ms >= 0 && obs.deadline_ms <= 500);
    /* no deadline: unlimited, and the call still works */
    assert_int_equal(unary(cl, "/t.T/Echo", "x", 1, NULL, NULL, 0, &st), 0);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_max_message(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 1 << 20, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    size_t big = 2 << 20;
    char *b = calloc(1, big);
    rpc_status st;
    assert_int_equal(unary(cl, "/t.T/Echo", b, big, NULL, NULL, 10000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    /* on a stream too */
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, cl, "/t.T/Upper", 10000), 0);
    rpc_stream_write(s, (uint8_t *)b, big);
    uint8_t *buf;
    size_t len;
    assert_int_equal(rpc_stream_read(s, &buf, &len, &st), 1);
    assert_int_equal(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    rpc_stream_free(s);
    free(b);
    /* still serving, exactly at the limit too */
    b = calloc(1, 1 << 20);
    char *resp;
    assert_int_equal(unary(cl, "/t.T/Echo", b, (1 << 20) - 16, &resp, &len, 10000, &st), 0);
    free(resp);
    free(b);
    rpc_client_free(cl);
    fx_stop(f);
}

static void test_stream_limit(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 2, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_stream *s[3];
    rpc_status st;
    uint8_t *buf;
    size_t len;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rpc_client_stream_open(&s[i], cl, "/t.T/Wait", (const uint8_t *)"", 0, 0), 0);
        assert_int_equal(rpc_stream_read(s[i], &buf, &len, &st), 0);
        free(buf);
    }
    assert_int_equal(rpc_client_stream_open(&s[2], cl, "/t.T/Wait", (const uint8_t *)"", 0, 0), 0);
    assert_int_equal(rpc_stream_read(s[2], &buf, &len, &st), 1);
    assert_int_equal(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    rpc_stream_free(s[2]);
    /* unary calls do not count against streams */
    assert_int_equal(unary(cl, "/t.T/Echo", "x", 1, NULL, NULL, 5000, &st), 0);
    rpc_stream_free(s[0]);
    assert_true(obs_wait(offsetof(typeof(obs), finished), 1, 5000));
    /* a slot is free again (the handler thread may still be finishing) */
    bool opened = false;
    for (int tries = 0; tries < 50 && !opened; tries++) {
        assert_int_equal(rpc_client_stream_open(&s[2], cl, "/t.T/Wait", (const uint8_t *)"", 0, 0), 0);
        opened = rpc_stream_read(s[2], &buf, &len, &st) == 0;
        if (opened)
            free(buf);
        else
            usleep(20000);
        if (!opened)
            rpc_stream_free(s[2]);
    }
    assert_true(opened);
    rpc_stream_free(s[2]);
    rpc_stream_free(s[1]);
    rpc_client_free(cl);
    fx_stop(f);
}

struct load_arg {
    const char *target;
    int calls, ok;
};

static void *load_thread(void *arg)
{
    struct load_arg *a = arg;
    rpc_client *cl;
    if (rpc_client_new(&cl, a->target, TOKEN) < 0)
        return NULL; /* a->ok stays short */
    for (int i = 0; i < a->calls; i++) {
        char msg[32], *resp;
        size_t len;
        rpc_status st;
        int n = snprintf(msg, sizeof msg, "m%d", i);
        if (unary(cl, "/t.T/Echo", msg, (size_t)n, &resp, &len, 10000, &st) == 0) {
            a->ok += len == (size_t)n && !memcmp(resp, msg, len);
            free(resp);
        }
    }
    rpc_client_free(cl);
    return NULL;
}

static void test_concurrent_calls(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    pthread_t t[16];
    struct load_arg a[16];
    for (int i = 0; i < 16; i++) {
        a[i] = (struct load_arg){f->target, 50, 0};
        pthread_create(&t[i], NULL, load_thread, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < 16; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
    }
    assert_int_equal(ok, 16 * 50);
    fx_stop(f);
}

struct stream_reader {
    rpc_stream *s;
    rpc_status st;
    int rc;
};

static void *read_to_end(void *arg)
{
    struct stream_reader *r = arg;
    uint8_t *buf;
    size_t len;
    while ((r->rc = rpc_stream_read(r->s, &buf, &len, &r->st)) == 0)
        free(buf);
    return NULL;
}

static void test_shutdown_cancels_calls(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    struct stream_reader r[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rpc_client_stream_open(&r[i].s, cl, "/t.T/Wait", (const uint8_t *)"", 0, 0), 0);
        pthread_create(&t[i], NULL, read_to_end, &r[i]);
    }
    assert_true(obs_wait(offsetof(typeof(obs), started), 3, 5000));
    int64_t t0 = time_now_ms();
    rpc_server_shutdown(f->s);
    assert_true(time_now_ms() - t0 < 5000);
    pthread_mutex_lock(&obs.mu);
    assert_int_equal(obs.finished, 3); /* every handler returned before shutdown did */
    assert_true(obs.saw_cancel);
    pthread_mutex_unlock(&obs.mu);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].rc, 1);
        assert_int_not_equal(r[i].st.code, GRPC_STATUS_OK);
        rpc_stream_free(r[i].s);
    }
    rpc_status st;
    assert_int_equal(unary(cl, "/t.T/Echo", "x", 1, NULL, NULL, 2000, &st), -EPROTO);
    assert_int_equal(st.code, GRPC_STATUS_UNAVAILABLE);
    rpc_client_free(cl);
    fx_stop(f); /* free after shutdown: a second shutdown is a no-op */
}

/* A client that stops answering (SIGSTOP: its TCP connection stays open but
 * HTTP/2 pings go unanswered) is detected by the server's keepalive. The
 * client is this binary re-executed, so gRPC starts fresh in it. */
static const char *self_path;

static void test_keepalive_detects_frozen_peer(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 500);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_path, self_path, "--wait-client", f->target, (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    assert_true(obs_wait(offsetof(typeof(obs), started), 1, 10000));
    usleep(100000);
    kill(pid, SIGSTOP);
    int64_t t0 = time_now_ms();
    assert_true(obs_wait(offsetof(typeof(obs), finished), 1, 10000));
    int64_t took = time_now_ms() - t0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(obs.saw_cancel);
    /* keepalive 500 ms + timeout 500 ms; generous slack for a loaded machine */
    assert_true(took < 5000);
    fx_stop(f);
}

/* A client with no call in flight answers the server's keepalive pings in
 * time. gRPC core reads an idle channel only from its backup poller (every
 * 5 s by default, as long as the server's ping timeout), so before
 * RPC_CLIENT_POLL_MS servers dropped idle C-core clients now and then: with
 * the manager's 5 s keepalive an idle client's connection was replaced about
 * every 20 s, and a call racing the drop failed with "Broken pipe". The
 * client runs in a process of its own (in this one the server's threads
 * would poll its socket too); the server pings every 2 s with a 2 s timeout
 * and the connection must outlive three pings. */
static void test_idle_client_keeps_its_connection(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 2000);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        execl(self_path, self_path, "--idle-client", f->target, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char out[512] = "";
    size_t got = 0;
    ssize_t r;
    while (got < sizeof out - 1 && (r = read(p[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)r;
    close(p[0]);
    int ws = 0;
    waitpid(pid, &ws, 0);
    char before[128] = "", after[128] = "";
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || sscanf(out, "%127s %127s", before, after) != 2)
        fail_msg("idle client: status %d, said %s", ws, out);
    if (strcmp(before, after) != 0)
        fail_msg("the idle client's connection was replaced: %s, then %s", before, after);
    fx_stop(f);
}

static void test_bad_bind(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_server_opts o = {.bind = f->target};
    rpc_server *s2;
    assert_int_equal(rpc_server_new(&s2, &o), 0);
    int port;
    assert_int_equal(rpc_server_start(s2, &port), -EADDRNOTAVAIL); /* taken, no SO_REUSEPORT */
    rpc_server_free(s2);
    o.bind = "192.0.2.1:0"; /* not a local address */
    assert_int_equal(rpc_server_new(&s2, &o), 0);
    assert_int_equal(rpc_server_start(s2, &port), -EADDRNOTAVAIL);
    rpc_server_free(s2);
    assert_int_equal(rpc_server_add(f->s, "/late", RPC_UNARY, h_echo, NULL), -EINVAL);
    fx_stop(f);
}

/* Runs fn with this process's stderr (fd 2) going to a file; returns what was
 * written there (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    FILE *log = tmpfile();
    assert_non_null(log);
    int saved = dup(2);
    dup2(fileno(log), 2);
    fn(arg);
    dup2(saved, 2);
    close(saved);
    long n = lseek(fileno(log), 0, SEEK_END); /* fd 2 wrote through the same file offset */
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fileno(log), out, (size_t)n, 0), n);
    fclose(log);
    return out;
}

static void twelve_calls(void *arg)
{
    fixture *f = arg;
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    rpc_status st;
    for (int i = 0; i < 12; i++)
        assert_int_equal(unary(cl, "/t.T/Echo", "x", 1, NULL, NULL, 10000, &st), 0);
    rpc_client_free(cl);
}

/* A server that cannot ask gRPC for new calls (the 8 it keeps outstanding run
 * out) says so on stderr, keeps retrying, and serves again once it can; it
 * used to go deaf without a word. */
static void test_request_failures_are_loud_and_recover(void **state)
{
    (void)state;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    rpc_server_fail_next_requests(f->s, 20);
    int64_t t0 = time_now_ms();
    char *log = capture_stderr(twelve_calls, f);
    int64_t took = time_now_ms() - t0;
    fprintf(stderr, "12 calls with 20 failed requests for calls: %lld ms; stderr:\n%s", (long long)took, log);
    assert_non_null(strstr(log, "kdiag rpc: cannot wait for new calls (Cannot allocate memory)"));
    assert_non_null(strstr(log, "0 of 8 requests outstanding, no call can arrive"));
    assert_non_null(strstr(log, "kdiag rpc: waiting for new calls again (8 requests outstanding)"));
    free(log);
    fx_stop(f);
}

static int wait_client(const char *target)
{
    rpc_client *cl;
    rpc_stream *s;
    if (rpc_client_new(&cl, target, TOKEN) < 0 ||
        rpc_client_stream_open(&s, cl, "/t.T/Wait", (const uint8_t *)"", 0, 0) < 0)
        return 1;
    uint8_t *buf;
    size_t len;
    rpc_status st;
    while (rpc_stream_read(s, &buf, &len, &st) == 0)
        free(buf);
    rpc_stream_free(s);
    rpc_client_free(cl);
    return 0;
}

/* --idle-client: the server's view of this client's address, then again
 * after 7 s without a call, on stdout. */
static int idle_client(const char *target)
{
    rpc_client *cl;
    if (rpc_client_new(&cl, target, TOKEN) < 0)
        return 1;
    for (int i = 0; i < 2; i++) {
        if (i)
            sleep(7);
        char *resp = NULL;
        size_t len = 0;
        rpc_status st;
        if (unary(cl, "/t.T/Peer", "", 0, &resp, &len, 5000, &st) < 0) {
            printf("call-failed:%d ", st.code);
        } else {
            printf("%.*s ", (int)len, resp);
        }
        free(resp);
    }
    printf("\n");
    rpc_client_free(cl);
    return 0;
}

/* A server whose gRPC memory runs out while handlers do not read: core
 * cancels calls (RST_STREAM ENHANCE_YOUR_CALM), and the client's status says
 * so in words, not as an HTTP/2 error code. Each stalled call holds what its
 * stream's window let in; eight of them outgrow a 4 MiB quota. */
#define STALLED 8

struct stalled {
    rpc_client *cl;
    rpc_status st;
    size_t sent;
};

static void *stall_one(void *arg)
{
    struct stalled *w = arg;
    rpc_stream *s;
    uint8_t *buf;
    size_t len;
    w->st.code = GRPC_STATUS_UNKNOWN;
    if (rpc_client_bidi_open(&s, w->cl, "/t.T/Stall", 15000) < 0)
        return NULL;
    if (rpc_stream_read(s, &buf, &len, &w->st) == 0) { /* "ready" */
        free(buf);
        uint8_t *data = calloc(1, 1 << 20);
        while (w->sent < (256u << 20) && rpc_stream_write(s, data, 1 << 20) == 0)
            w->sent += 1 << 20;
        free(data);
        rpc_stream_read(s, &buf, &len, &w->st);
    }
    rpc_stream_free(s);
    return NULL;
}

static void test_memory_quota_cancel_is_named(void **state)
{
    (void)state;
    fx_memory = 4 << 20;
    fixture *f = fx_start(TOKEN, 0, 0, 0);
    fx_memory = 0;
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, f->target, TOKEN), 0);
    struct stalled w[STALLED];
    pthread_t th[STALLED];
    for (int i = 0; i < STALLED; i++) {
        w[i] = (struct stalled){.cl = cl};
        assert_int_equal(pthread_create(&th[i], NULL, stall_one, &w[i]), 0);
    }
    int named = 0;
    for (int i = 0; i < STALLED; i++) {
        pthread_join(th[i], NULL);
        fprintf(stderr, "stalled call %d: %zu MiB sent, status %d: %s\n", i, w[i].sent >> 20, (int)w[i].st.code,
                w[i].st.message);
        named += w[i].st.code == GRPC_STATUS_RESOURCE_EXHAUSTED &&
                 strstr(w[i].st.message, "the manager cancelled the call: its gRPC memory") != NULL;
    }
    assert_true(named > 0);
    rpc_client_free(cl);
    fx_stop(f);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--wait-client"))
        return wait_client(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--idle-client"))
        return idle_client(argv[2]);
    self_path = "/proc/self/exe";
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        self_path = exe;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_echo),
        cmocka_unit_test(test_server_settings_come_first),
        cmocka_unit_test(test_silent_connection_closed_at_preface_deadline),
        cmocka_unit_test(test_client_on_a_connected_socket),
        cmocka_unit_test(test_status_and_message),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_server_stream),
        cmocka_unit_test(test_bidi),
        cmocka_unit_test(test_client_cancel_reaches_handler),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_stream_limit),
        cmocka_unit_test(test_concurrent_calls),
        cmocka_unit_test(test_shutdown_cancels_calls),
        cmocka_unit_test(test_keepalive_detects_frozen_peer),
        cmocka_unit_test(test_idle_client_keeps_its_connection),
        cmocka_unit_test(test_bad_bind),
        cmocka_unit_test(test_request_failures_are_loud_and_recover),
        cmocka_unit_test(test_memory_quota_cancel_is_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
