/* kubectl-diag — entry point: parses the command line and runs a command. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "basic/fd-util.h"
#include "capture.h"
#include "completion.h"
#include "cp.h"
#include "crash.h"
#include "exitcode.h"
#include "flags.h"
#include "help.h"
#include "keep.h"
#include "kerr.h"
#include "kube.h"
#include "list.h"
#include "logs.h"
#include "ps.h"
#include "redir.h"
#include "rpc.h"
#include "session.h"
#include "shell.h"

#ifndef KDIAG_VERSION
#define KDIAG_VERSION "0.0.0"
#endif
#ifndef KDIAG_DEFAULT_IMAGE
#define KDIAG_DEFAULT_IMAGE "ghcr.io/kdiag-c/kdiag-manager:0.1.0"
#endif

static int ps_main(const flags *f, const kube *k)
{
    session s;
    char err[2048] = "";
    Kdiag__Solo__Io__PsResponse *resp;
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_PS, true);
    int rc = session_open(k, &so, &s, err, sizeof(err));
    if (rc < 0)
        return exitcode_report(stderr, rc, err);
    rc = ps_fetch(&s, &resp, err, sizeof(err));
    if (rc == 0) {
        ps_format fmt = !f->output ? PS_TABLE : strcmp(f->output, "json") == 0 ? PS_JSON : PS_WIDE;
        ps_print(stdout, resp, fmt, s.pod.name, s.pod.ns, s.target);
        kdiag__solo__io__ps_response__free_unpacked(resp, NULL);
    }
    session_close(&s);
    return exitcode_report(stderr, rc, err);
}

static int manage_main(const flags *f, const kube *k)
{
    session s;
    char err[2048] = "";
    session_opts so = session_opts_from_flags(f, 0, false); /* any manager; a new one gets its profile's */
    int rc = session_open(k, &so, &s, err, sizeof(err));
    if (rc < 0)
        return exitcode_report(stderr, rc, err);
    printf("%s %d\n", s.mgr.container, s.mgr.grpc_port);
    if (f->verbose)
        printf("token %s\ntunnel %d\n", s.mgr.token, s.mgr.tunnel_port);
    session_close(&s);
    return EXITCODE_OK;
}

/* The exit code once stdout is flushed: output that did not all reach it
 * (a full disk, a closed stdout) is a failure, as with kubectl; a reader
 * that went (ps | head) ends the command as SIGPIPE would, quietly. */
static int stdout_done(int code)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return code;
    if (errno == EPIPE)
        return EXITCODE_PIPE;
    fprintf(stderr, "error: cannot write the output to stdout: %s\n", errno ? strerror(errno) : "write error");
    return code ? code : EXITCODE_FAILURE;
}

/* Fds 0, 1 and 2 closed by the caller (`<&-`) are /dev/null before anything
 * else opens a file: gRPC's constructors open an eventfd, which a closed stdin
 * became (exec -i read it and hung). .preinit_array runs before any
 * constructor. */
static unsigned stdio_closed; /* bit fd: closed at start (cp - refuses it) */
static void stdio_preinit(void)
{
    if (fd_stdio_open(&stdio_closed) < 0)
        _exit(EXITCODE_FAILURE);
}
__attribute__((section(".preinit_array"), used)) static void (*stdio_at_start)(void) = stdio_preinit;

int main(int argc, char **argv)
{
    flags f;
    char err[1024] = "";
    signal(SIGPIPE, SIG_IGN);
    if (argc >= KEEP_ARGC && strcmp(argv[1], "__keep") == 0) /* the keeper of a port-forward (cli/keep.h) */
        return keep_main(argc, argv);
    crash_report_init();
    /* Every message received is a buffer of its own (up to 128 KiB, 2,048 in a cp of 256 MiB):
     * freed heap is kept for the next one instead of going back to the kernel and faulting in
     * again (docs/cp.md, "Memory and flow control"). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    rpc_client_env(); /* before any thread: it calls setenv */
    int rc = flags_parse(argc, argv, &f, err, sizeof(err));
    if (rc < 0) {
        flags_free(&f);
        return exitcode_report(stderr, rc, err);
    }
    f.stdio_closed = stdio_closed;
    kube k = {f.kubectl, f.kubeconfig, f.context, f.ns, f.verbose, f.conn};
    kerr_set_identity(f.kubeconfig, f.context, f.conn);
    int code = 0;
    if (f.help || f.cmd == FLAGS_CMD_NONE || f.cmd == FLAGS_CMD_HELP) {
        flags_cmd topic = f.cmd;
        if (f.cmd == FLAGS_CMD_HELP && f.topic)
            topic = flags_cmd_of(f.topic);
        help_print(stdout, topic);
        code = f.cmd == FLAGS_CMD_NONE && !f.help ? EXITCODE_USAGE : EXITCODE_OK;
        flags_free(&f);
        return stdout_done(code);
    }
    switch (f.cmd) {
    case FLAGS_CMD_REDIR: code = redir_main(&f, &k); break;
    case FLAGS_CMD_PS: code = ps_main(&f, &k); break;
    case FLAGS_CMD_SHELL: code = shell_main(&f, &k); break;
    case FLAGS_CMD_EXEC: code = exec_main(&f, &k); break;
    case FLAGS_CMD_LOGS: code = logs_main(&f, &k); break;
    case FLAGS_CMD_CAPTURE: code = capture_main(&f, &k); break;
    case FLAGS_CMD_LIST: code = list_main(&f, &k); break;
    case FLAGS_CMD_CP: code = cp_main(&f, &k); break;
    case FLAGS_CMD_FORWARDS:
        code = exitcode_report(stderr,
                               keep_forwards(stdout, &k, f.npods ? f.pods[0].value : NULL, f.stop, err, sizeof(err)),
                               err);
        break;
    case FLAGS_CMD_MANAGE: code = manage_main(&f, &k); break;
    case FLAGS_CMD_VERSION:
        printf("kubectl-diag %s\ncontract %s\nmanager image %s\n", KDIAG_VERSION, CONTRACT_REVISION, f.dbg_image);
        break;
    case FLAGS_CMD_COMPLETION: code = exitcode_of(completion_script(stdout, f.topic)); break;
    case FLAGS_CMD_COMPLETE: code = completion_complete(stdout, &k, f.words, f.nwords); break;
    default: code = EXITCODE_USAGE; break;
    }
    flags_free(&f);
    return stdout_done(code);
}
