#include "shell-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "basic/fd-util.h"
#include "contract.h"
#include "exec_client.h"
#include "exitcode.h"
#include "session.h"

/* Signals of this process that go to the program (SIGWINCH: the new size;
 * SIGCONT: the terminal made raw again, as the shell that continued this
 * process gave it back cooked, and the size it has now). */
static const int forwarded[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGWINCH, SIGCONT};

/* A call in progress: the reader thread writes the output, the main thread
 * sends stdin, sizes and signals. */
typedef struct {
    exec_client *ec;
    int done[2];          /* the reader ended */
    int wake[2];          /* the signal thread left something in pending */
    atomic_uint pending;  /* 1 << signal, for the main thread to send */
    int code;             /* the program's exit code */
    bool failed;          /* the call ended without an exit: err says why */
    bool heard;           /* the program's output came: it ran */
    bool raw;             /* this terminal's keys go to the program: it owns the terminal */
    struct termios raw_t; /* the terminal's settings while raw */
    struct termios saved; /* and before: restored at the end */
    atomic_int cancelled; /* by this signal: a second Ctrl-C, or SIGTERM/SIGHUP when raw */
    int out_errno;        /* writing the output failed (EPIPE: its reader went): the call was cancelled */
    rpc_status st;
    char error[512]; /* why the program did not start */
} shell_run;

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int e = errno;
    unsigned char c = (unsigned char)sig;
    ssize_t n = write(sig_pipe[1], &c, 1);
    (void)n; /* a full pipe already holds enough wake-ups */
    errno = e;
}

const char *shell_target_id(bool share_pid, const char *container_id)
{
    return share_pid && container_id && *container_id ? container_id : NULL;
}

static void *reader_main(void *arg)
{
    shell_run *r = arg;
    exec_client_event ev;
    int rc;
    while ((rc = exec_client_read(r->ec, &ev, &r->st)) == 0) {
        if (ev.kind == EXEC_CLIENT_EXIT) {
            r->code = ev.code;
            snprintf(r->error, sizeof r->error, "%s", ev.error);
            break;
        }
        r->heard = true;
        int w = fd_write_all(ev.kind == EXEC_CLIENT_STDOUT ? STDOUT_FILENO : STDERR_FILENO, ev.data, ev.len);
        if (w < 0) { /* as kubectl exec dies of SIGPIPE: the program is stopped, not left writing into nothing */
            r->out_errno = -w;
            exec_client_cancel(r->ec);
            break;
        }
    }
    if (rc != 0) {
        r->failed = true;
        if (rc < 0)
            snprintf(r->st.message, sizeof r->st.message, "%s", strerror(-rc));
    }
    ssize_t n = write(r->done[1], "x", 1);
    (void)n;
    return NULL;
}

static void send_size(exec_client *ec)
{
    struct winsize ws;
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
        exec_client_resize(ec, ws.ws_row, ws.ws_col);
}

#define GIVE_UP_MS 1000

/* The call is cancelled by sig. The reader ends at once, unless it waits to
 * write output nobody reads (a pager left open, a stuck reader): then, a
 * second later, this process ends here, as kubectl exec does on Ctrl-C (the
 * manager stops the program when the connection goes). It waited until the
 * reader read. */
static void give_up(shell_run *r, int sig)
{
    r->cancelled = sig;
    exec_client_cancel(r->ec);
    struct pollfd pf = {r->done[0], POLLIN, 0};
    if (poll(&pf, 1, GIVE_UP_MS) != 0)
        return;
    if (r->raw)
        tcsetattr(STDIN_FILENO, TCSADRAIN, &r->saved);
    _exit(EXITCODE_SIGNALED(sig));
}

/* The signal thread: a second Ctrl-C cancels the call at once (the main
 * thread may be blocked sending, where gRPC's flow control holds back any
 * message behind it), and so does SIGTERM or SIGHUP when the program owns the
 * terminal: they are for this process, as for kubectl exec -it and ssh (the
 * remote terminal's foreground job, not its shell, would get them, and an
 * interactive shell ignores SIGTERM). Anything else is left in r->pending for
 * the main thread, the call's one writer, woken through r->wake. */
static void *signals_main(void *arg)
{
    shell_run *r = arg;
    int interrupts = 0;
    for (;;) {
        struct pollfd pf[2] = {{r->done[0], POLLIN, 0}, {sig_pipe[0], POLLIN, 0}};
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            return NULL;
        if (pf[0].revents)
            return NULL;
        unsigned char sig;
        if (!pf[1].revents || read(sig_pipe[0], &sig, 1) != 1)
            continue;
        if ((sig == SIGINT && ++interrupts > 1) || /* it ignored the first: give up */
            (r->raw && (sig == SIGTERM || sig == SIGHUP))) {
            give_up(r, sig);
            continue;
        }
        atomic_fetch_or(&r->pending, 1u << sig);
        ssize_t n = write(r->wake[1], "x", 1);
        (void)n; /* a full pipe already holds enough wake-ups */
    }
}

/* Stdin, signals and resizes to the program until the reader ends. Stdin is
 * read only while its window has room, so that a program that stopped reading
 * it still gets its signals (stdin waits, they go past it). */
static void send_input(shell_run *r, bool forward_stdin)
{
    bool in_open = forward_stdin;
    if (!forward_stdin)
        exec_client_stdin_close(r->ec);
    for (;;) {
        bool room = in_open && exec_client_stdin_ready(r->ec);
        struct pollfd pf[4] = {{r->done[0], POLLIN, 0},
                               {r->wake[0], POLLIN, 0},
                               {room ? STDIN_FILENO : -1, POLLIN, 0},
                               {in_open && !room ? exec_client_window_fd(r->ec) : -1, POLLIN, 0}};
        if (poll(pf, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (pf[0].revents)
            return;
        if (pf[1].revents) {
            char drain[64];
            ssize_t n = read(r->wake[0], drain, sizeof drain);
            (void)n;
            unsigned sigs = atomic_exchange(&r->pending, 0);
            for (int sig = 1; sig < 32; sig++) {
                if (!(sigs & (1u << sig)))
                    continue;
                if (sig == SIGCONT && r->raw)
                    tcsetattr(STDIN_FILENO, TCSADRAIN, &r->raw_t);
                if (sig == SIGWINCH || sig == SIGCONT)
                    send_size(r->ec);
                else
                    exec_client_signal(r->ec, sig);
            }
        }
        if (pf[2].revents) {
            uint8_t buf[CONTRACT_EXEC_CHUNK];
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n > 0 && exec_client_stdin(r->ec, buf, (size_t)n) == 0)
                continue;
            /* EAGAIN: a non-blocking stdin whose bytes another reader took first */
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            in_open = false; /* EOF (Ctrl-D of a cooked terminal, end of a pipe) */
            exec_client_stdin_close(r->ec);
        }
        if (pf[3].revents) {
            eventfd_t moved;
            eventfd_read(pf[3].fd, &moved); /* then room is asked again */
        }
    }
}

/* Runs st over the session's forward; returns the exit code. */
static int run(session *s, exec_client_start *st, bool forward_stdin)
{
    unsigned gen;
    struct sigaction sa = {.sa_handler = on_signal}, old[sizeof forwarded / sizeof *forwarded];
    shell_run r = {.done = {-1, -1}, .wake = {-1, -1}};
    char err[1024] = "", why[900];
    pthread_t th;
    bool raw = false, threaded = false;
    int rc = -EIO;

    rpc_client *cl;
    if ((rc = session_client(s, &cl, &gen, err, sizeof err)) < 0)
        return exitcode_report(stderr, rc, err);
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(r.done, O_CLOEXEC) < 0 ||
        pipe2(r.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, sizeof err, "cannot make a pipe: %s", strerror(errno));
        goto out;
    }
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
        sigaction(forwarded[i], &sa, &old[i]);
    struct winsize ws;
    if (st->tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
        st->rows = ws.ws_row;
        st->cols = ws.ws_col;
    }
    /* Raw only when the keys go to the program: without stdin (--tty
     * without -i) they stay this terminal's, and Ctrl-C is a signal, sent on. */
    if (st->tty && forward_stdin && tcgetattr(STDIN_FILENO, &r.saved) == 0) {
        r.raw_t = r.saved;
        cfmakeraw(&r.raw_t);
        raw = tcsetattr(STDIN_FILENO, TCSADRAIN, &r.raw_t) == 0;
    }
    r.raw = raw;
    if ((rc = exec_client_new(&r.ec, cl, st)) < 0) {
        snprintf(err, sizeof err, "cannot start the Exec call: %s", strerror(-rc));
        goto restore;
    }
    threaded = pthread_create(&th, NULL, reader_main, &r) == 0;
    if (threaded) {
        pthread_t sig_th;
        bool sig_threaded = pthread_create(&sig_th, NULL, signals_main, &r) == 0;
        if (sig_threaded)
            send_input(&r, forward_stdin);
        else
            exec_client_cancel(r.ec);
        pthread_join(th, NULL);
        if (sig_threaded)
            pthread_join(sig_th, NULL);
        threaded = sig_threaded;
    }
    if (threaded && !r.failed)
        exec_client_finish(r.ec, &r.st);
restore:
    if (raw)
        tcsetattr(STDIN_FILENO, TCSADRAIN, &r.saved);
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
        sigaction(forwarded[i], &old[i], NULL);
    if (rc == 0 && !threaded) {
        snprintf(err, sizeof err, "cannot start a thread: out of resources");
        rc = -EAGAIN;
    } else if (rc == 0 && r.cancelled) {
        rc = EXITCODE_SIGNALED(r.cancelled);
    } else if (rc == 0 && r.out_errno == EPIPE) {
        rc = EXITCODE_PIPE;
    } else if (rc == 0 && r.out_errno) {
        snprintf(err, sizeof err, "cannot write the command's output: %s; the command was stopped",
                 strerror(r.out_errno));
        rc = -EIO;
    } else if (rc == 0 && r.failed && r.st.code == GRPC_STATUS_UNAVAILABLE &&
               session_gone(s, gen, SESSION_GONE_WAIT_MS, why, sizeof why) == -ENOENT) {
        snprintf(err, sizeof err, "the command ended: %s", why);
        rc = -EIO;
    } else if (rc == 0 && r.failed && r.st.code == GRPC_STATUS_UNAVAILABLE && r.heard) {
        snprintf(err, sizeof err,
                 "the connection to the manager (%s in pod/%s) was lost during the command: %s (gRPC status %d); the "
                 "%s it went through ended, and the command with it: run it again",
                 s->mgr.container, s->pod.name, r.st.message, (int)r.st.code,
                 s->lease.fd >= 0 ? "kept port-forward" : "kubectl port-forward");
        rc = -EIO;
    } else if (rc == 0 && r.failed) {
        snprintf(err, sizeof err, "Exec call to the manager (%s in pod/%s) failed: %s (gRPC status %d)%s",
                 s->mgr.container, s->pod.name, *r.st.message ? r.st.message : "no message", (int)r.st.code,
                 r.st.code == GRPC_STATUS_UNIMPLEMENTED
                     ? ": its debug image predates Exec; use a newer --dbg-image in a new pod (or --new-container)"
                     : "");
        rc = -EIO;
    } else if (rc == 0) {
        if (*r.error)
            fprintf(stderr, "error: %s\n", r.error);
        rc = r.code;
    }
out:
    exec_client_free(r.ec);
    rpc_client_free(cl);
    for (int i = 0; i < 2; i++) {
        if (r.done[i] >= 0)
            close(r.done[i]);
        if (r.wake[i] >= 0)
            close(r.wake[i]);
        if (sig_pipe[i] >= 0)
            close(sig_pipe[i]);
        sig_pipe[i] = -1;
    }
    return rc < 0 ? exitcode_report(stderr, rc, err) : rc;
}

/* The session for a command of kind caps, then run(). */
static int open_and_run(const flags *f, const kube *k, unsigned caps, exec_client_start *st, bool forward_stdin)
{
    session s;
    char err[2048] = "";
    session_opts so = session_opts_from_flags(f, caps, true);
    int rc = session_open(k, &so, &s, err, sizeof(err));
    if (rc < 0)
        return exitcode_report(stderr, rc, err);
    st->container_id = shell_target_id(s.pod.share_pid, s.target_id);
    int code = run(&s, st, forward_stdin);
    session_close(&s);
    return code;
}

/* argv: first, then f's words after `--` (the caller frees). */
static const char **words(const char *first, const flags *f, size_t *argc)
{
    const char **argv = calloc((size_t)f->nrest + 2, sizeof *argv);
    size_t n = 0;
    if (!argv)
        return NULL;
    if (first)
        argv[n++] = first;
    for (int i = 0; i < f->nrest; i++)
        argv[n++] = f->rest[i];
    *argc = n;
    return argv;
}

/* TERM of this terminal, for a program on a remote one. */
static size_t term_env(bool tty, char *buf, size_t len, const char **env)
{
    const char *term = getenv("TERM");
    if (!tty || !term || !*term)
        return 0;
    snprintf(buf, len, "TERM=%s", term);
    env[0] = buf;
    return 1;
}

/* --tty asked for where stdin is no terminal: said, and run without one. */
static bool tty_for(bool asked)
{
    bool tty = isatty(STDIN_FILENO);
    if (asked && !tty)
        fprintf(stderr, "warning: --tty: stdin is not a terminal; running without one\n");
    return tty;
}

int shell_main(const flags *f, const kube *k)
{
    char term[256];
    const char *env[1];
    size_t argc;
    bool tty = tty_for(f->tty); /* -it or not: a terminal when stdin is one */
    const char **argv = words("ash", f, &argc);
    if (!argv)
        return exitcode_report(stderr, -ENOMEM, "out of memory");
    exec_client_start st = {.argv = argv, .argc = argc, .tools = true, .root = true, .tty = tty, .env = env};
    st.nenv = term_env(tty, term, sizeof term, env);
    int code = open_and_run(f, k, EPHEM_CAPS_SHELL, &st, true);
    free(argv);
    return code;
}

int exec_main(const flags *f, const kube *k)
{
    char term[256];
    const char *env[1];
    size_t argc;
    bool tty = f->tty && tty_for(true);
    const char **argv = words(NULL, f, &argc);
    if (!argv)
        return exitcode_report(stderr, -ENOMEM, "out of memory");
    exec_client_start st = {.argv = argv, .argc = argc, .tools = f->tools, .root = f->tools, .tty = tty, .env = env};
    st.nenv = term_env(tty, term, sizeof term, env);
    int code = open_and_run(f, k, EPHEM_CAPS_EXEC, &st, f->stdin_open);
    free(argv);
    return code;
}
