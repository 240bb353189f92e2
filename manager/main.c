/* kdiag-manager — serves the kdiag.solo.io.Manager service inside the pod.
 *
 * stdout: the start-up lines of api/contract.h in one write (the CLI finds
 * them in the container log), ended by a Proof line when the environment
 * holds CONTRACT_SECRET_ENV. Everything else goes to stderr. SIGTERM/SIGINT
 * cancel in-flight calls and exit 0. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/addr-util.h"
#include "basic/hex-util.h"
#include "basic/signal-util.h"
#include "capture.h"
#include "contract.h"
#include "copy_rpc.h"
#include "exec.h"
#include "hello.h"
#include "reflection.h"
#include "rpc.h"
#include "ps_rpc.h"
#include "redirect.h"

#define DEFAULT_BUSYBOX "/usr/local/bin/ash"

static const char usage[] =
    "usage: kdiag-manager [--bind ADDR:PORT] [--no-auth] [--busybox PATH] [-v] [--help]\n"
    "  --bind ADDR:PORT  where to serve gRPC (default 127.0.0.1:0, a free port)\n"
    "  --busybox PATH    the static busybox whose applets Exec runs with tools\n"
    "                    (default " DEFAULT_BUSYBOX ", as in the debug image)\n"
    "  --no-auth         accept calls without the 'authorization: Bearer <token>' metadata\n"
    "  -v, --verbose     one debug line per call on stderr\n";

typedef struct {
    char host[64]; /* as printed in "Listening on" (IPv6 in brackets) */
    const char *bind;
    const char *busybox;
    bool no_auth, verbose;
} manager_opts;

/* ADDR:PORT with an IPv4 literal, a bracketed IPv6 literal or "localhost",
 * and a port 0-65535. */
static int parse_bind(const char *v, manager_opts *o)
{
    char ip[64];
    unsigned port;
    if (addr_parse_listen(v, ip, sizeof ip, &port) < 0)
        return -EINVAL;
    size_t hl = (size_t)(strrchr(v, ':') - v); /* the host as printed: IPv6 in brackets */
    if (hl >= sizeof o->host)
        return -EINVAL;
    memcpy(o->host, v, hl);
    o->host[hl] = 0;
    o->bind = v;
    return 0;
}

static int parse_args(int argc, char **argv, manager_opts *o)
{
    static const struct option longs[] = {
        {"bind", required_argument, NULL, 'b'},    {"no-auth", no_argument, NULL, 'n'},
        {"busybox", required_argument, NULL, 'B'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->bind = "127.0.0.1:0";
    o->busybox = DEFAULT_BUSYBOX;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":vh", longs, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (parse_bind(optarg, o) < 0) {
                fprintf(stderr,
                        "kdiag-manager: invalid --bind '%s': want ADDR:PORT with an IP address "
                        "and a port 0-65535, e.g. 127.0.0.1:0\n%s",
                        optarg, usage);
                return 2;
            }
            break;
        case 'n': o->no_auth = true; break;
        case 'B': o->busybox = optarg; break;
        case 'v': o->verbose = true; break;
        case 'h': fputs(usage, stdout); return 0;
        case ':':
            fprintf(stderr, "kdiag-manager: option '%s' needs a value\n%s", argv[optind - 1], usage);
            return 2;
        default: fprintf(stderr, "kdiag-manager: unknown option '%s'\n%s", argv[optind - 1], usage); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kdiag-manager: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    return -1;
}

static int make_token(char out[CONTRACT_TOKEN_HEX_LEN + 1])
{
    return hex_random(out, CONTRACT_TOKEN_HEX_LEN / 2);
}

/* Takes the secret the CLI put into the container's environment and wipes it
 * there: the original environment block is what /proc/PID/environ shows, and
 * children must not inherit it. 0 (secret "" when there is none) or -EINVAL. */
static int take_secret(char out[CONTRACT_SECRET_HEX_LEN + 1])
{
    char *v = getenv(CONTRACT_SECRET_ENV);
    int rc = 0;
    out[0] = '\0';
    if (!v)
        return 0;
    if (contract_secret_valid(v))
        memcpy(out, v, CONTRACT_SECRET_HEX_LEN + 1);
    else
        rc = -EINVAL;
    memset(v, 0, strlen(v));
    unsetenv(CONTRACT_SECRET_ENV);
    return rc;
}

/* The start-up lines in one write, so nothing else lands between them. */
static int print_banner(const contract_banner *b, const char *secret)
{
    char buf[512];
    int rc = contract_banner_format(b, secret[0] ? secret : NULL, buf, sizeof buf);
    if (rc == 0 && (fputs(buf, stdout) == EOF || fflush(stdout) == EOF))
        rc = -EIO;
    return rc;
}

static grpc_status_code pprof_handle(rpc_call *call, void *ud)
{
    (void)ud;
    rpc_call_set_message(call, "pprof is not supported by kdiag-c's manager (it is not written in Go)");
    return GRPC_STATUS_UNIMPLEMENTED;
}

static grpc_status_code redirect_unavailable(rpc_call *call, void *ud)
{
    rpc_call_set_message(call,
                         "redirect is unavailable in this manager: %s (it needs the NET_ADMIN "
                         "capability and nftables support in the kernel)",
                         strerror((int)(intptr_t)ud));
    return GRPC_STATUS_FAILED_PRECONDITION;
}

int main(int argc, char **argv)
{
    manager_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;

    /* Two malloc arenas, not glibc's 8 per core: every call has a thread, and
     * each thread that meets a locked arena would get one of its own, whose
     * pages malloc_trim returns only in part. A debugging tool in someone
     * else's pod keeps its memory bounded rather than its mallocs parallel. */
    mallopt(M_ARENA_MAX, 2);

    /* Block the stop signals before any thread exists (gRPC starts its own);
     * main takes them with sigwait. */
    sigset_t stop;
    sig_block_stop(&stop);
    signal(SIGPIPE, SIG_IGN);

    char token[CONTRACT_TOKEN_HEX_LEN + 1], secret[CONTRACT_SECRET_HEX_LEN + 1];
    if (take_secret(secret) < 0) {
        fprintf(stderr, "kdiag-manager: %s must be %d hex digits\n", CONTRACT_SECRET_ENV, CONTRACT_SECRET_HEX_LEN);
        return 2;
    }
    if (!o.no_auth && (rc = make_token(token)) < 0) {
        fprintf(stderr, "kdiag-manager: cannot make a token: getrandom: %s\n", strerror(-rc));
        return 1;
    }
    rpc_server_opts so = {
        .bind = o.bind,
        .token = o.no_auth ? NULL : token,
        .verbose = o.verbose,
        .max_streams = CONTRACT_STREAMS_MAX,
        .preface_ms = CONTRACT_PREFACE_MS,
    };
    rpc_server *s;
    if (rpc_server_new(&s, &so) < 0) {
        fprintf(stderr, "kdiag-manager: out of memory\n");
        return 1;
    }
    int exit_code = 1;
    redirect_mgr *rm = NULL;
    redirect_opts ro = {.verbose = o.verbose};
    int rrc = redirect_mgr_new(&rm, &ro);
    if (rrc < 0)
        fprintf(stderr, "kdiag-manager: redirect unavailable: %s\n", strerror(-rrc));
    rc = rm ? rpc_server_add(s, CONTRACT_METHOD_REDIRECT, RPC_SERVER_STREAM, redirect_rpc_handle, rm)
            : rpc_server_add(s, CONTRACT_METHOD_REDIRECT, RPC_SERVER_STREAM, redirect_unavailable,
                             (void *)(intptr_t)-rrc);
    if (rc == 0 && rm)
        rc = rpc_server_add(s, CONTRACT_METHOD_HALF_CLOSE, RPC_UNARY, redirect_half_close_handle, rm);
    capture_opts co = {.tunnel_port = rm ? redirect_mgr_tunnel_port(rm) : 0}; /* grpc_port once it listens */
    if (rc == 0)
        rc = rpc_server_add(s, CONTRACT_METHOD_PS, RPC_UNARY, ps_rpc_handle, NULL);
    if (rc == 0)
        rc = rpc_server_add(s, CONTRACT_METHOD_CAPTURE, RPC_SERVER_STREAM, capture_rpc_handle, &co);
    if (rc == 0)
        rc = rpc_server_add(s, CONTRACT_METHOD_PPROF, RPC_UNARY, pprof_handle, NULL);
    exec_opts eo = {.busybox = o.busybox};
    if (rc == 0)
        rc = rpc_server_add(s, CONTRACT_METHOD_EXEC, RPC_BIDI_STREAM, exec_rpc_handle, &eo);
    if (rc == 0)
        rc = rpc_server_add(s, CONTRACT_METHOD_COPY_FROM, RPC_SERVER_STREAM, copy_rpc_from, NULL);
    if (rc == 0) /* a client stream, served as bidi */
        rc = rpc_server_add(s, CONTRACT_METHOD_COPY_TO, RPC_BIDI_STREAM, copy_rpc_to, NULL);
    hello_opts ho = {.tunnel_port = rm ? redirect_mgr_tunnel_port(rm) : 0}; /* grpc_port once it listens */
    if (rc == 0 && secret[0]) {
        memcpy(ho.secret, secret, sizeof ho.secret);
        if (!o.no_auth)
            memcpy(ho.token, token, sizeof ho.token);
        rc = rpc_server_add_open(s, CONTRACT_METHOD_HELLO, hello_rpc_handle, &ho);
    }
    if (rc == 0)
        rc = reflection_register(s);
    if (rc < 0) {
        fprintf(stderr, "kdiag-manager: registering methods: %s\n", strerror(-rc));
        goto out;
    }
    int port = 0;
    if ((rc = rpc_server_start(s, &port)) < 0) {
        fprintf(stderr,
                "kdiag-manager: cannot listen on %s: the address is not local or the port is "
                "taken; pick another with --bind\n",
                o.bind);
        goto out;
    }
    if (rm)
        redirect_mgr_reserve_port(rm, (uint16_t)port);
    atomic_store(&ho.grpc_port, port);
    atomic_store(&co.grpc_port, port);
    contract_banner banner = {.grpc_port = port};
    snprintf(banner.host, sizeof banner.host, "%s", o.host);
    if (!o.no_auth)
        memcpy(banner.token, token, sizeof banner.token);
    if (rm)
        banner.tunnel_port = redirect_mgr_tunnel_port(rm);
    if ((rc = print_banner(&banner, secret)) < 0) {
        fprintf(stderr, "kdiag-manager: cannot print the start-up lines: %s\n", strerror(-rc));
        goto out;
    }
    if (o.no_auth)
        fprintf(stderr, "kdiag-manager: --no-auth: calls are not authenticated\n");

    /* Between signals, give freed memory back to the kernel once a second:
     * gRPC 1.51 reads a message in full before rejecting it as too large, and
     * glibc would keep those pages (per thread arena) for good. */
    int sig;
    const struct timespec tick = {1, 0};
    while ((sig = sigtimedwait(&stop, NULL, &tick)) < 0)
        if (errno == EAGAIN)
            malloc_trim(0);
    if (o.verbose)
        fprintf(stderr, "kdiag-manager: %s, stopping\n", strsignal(sig));
    exit_code = 0;
out:
    rpc_server_free(s); /* cancels in-flight calls and waits for their handlers */
    if (rm)
        redirect_mgr_free(rm);
    return exit_code;
}
