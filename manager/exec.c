/* exec — see exec.h and docs/exec.md. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "basic/fd-util.h"
#include "basic/time-util.h"
#include "contract.h"
#include "exec-internal.h"
#include "kdiag.pb-c.h"
#include "nsjoin.h"
#include "procfs.h"
#include "proto_check.h"
#include "target.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* How long output is still read after the program exited and its session was
 * killed: a process that left it (setsid) may hold the pipe. */
#define DRAIN_MS 500
/* Stdin queued for a program, at most: the client's window (EXEC_CLIENT_WINDOW)
 * and the message that crossed it; and at most so many messages, which also
 * bounds what small chunks cost beside their bytes. */
#define STDIN_QUEUE_MAX (CONTRACT_EXEC_STDIN_WINDOW + CONTRACT_EXEC_CHUNK)
#define STDIN_QUEUE_MESSAGES 1024
/* Stdin queued in all calls together, at most (and each call's first message
 * beyond it, so that none waits for another's program to read): without it a
 * client that ignores its windows holds 4 MiB per call, 256 calls at once. */
#define STDIN_BUDGET (32u << 20)
/* The program's stdout and stderr pipes: two chunks. */
#define PIPE_SIZE (2 * CONTRACT_EXEC_CHUNK)
/* How long (10 ms rounds) the keeper reaps the program's orphans after its exit. */
#define REAP_ROUNDS 100
/* Rounds (2 ms apart) of killing the program's descendants. */
#define KILL_ROUNDS 500

/* Records on the report pipe, one write each (atomic: smaller than PIPE_BUF). */
enum { REPORT_JOIN_FAILED = 1, REPORT_STARTED, REPORT_EXEC_FAILED, REPORT_EXITED };
enum { FAILED_EXEC, FAILED_WORKDIR, FAILED_USER, FAILED_INTERP };
typedef struct {
    int kind;
    int err;        /* JOIN_FAILED, EXEC_FAILED: errno */
    int what;       /* JOIN_FAILED: enum nsjoin_step (NONE: fork failed); EXEC_FAILED: FAILED_* */
    int status;     /* EXITED: the wait status */
    pid_t pid;      /* STARTED: the program, in our PID namespace */
    const char *ns; /* JOIN_FAILED: nsjoin's static name (same address space after fork) */
} exec_report;

/* What the children need, all made before the fork: after it they make only
 * system calls (the manager's other threads may hold malloc's locks). */
typedef struct {
    struct nsjoin j;
    pid_t pid; /* the target */
    char **argv, **envp, **tenv;
    const char *path;    /* PATH for an argv[0] without '/' */
    const char *workdir; /* NULL: the target's cwd */
    int toolfd;          /* busybox (O_PATH) or -1 */
    int ptsfd;           /* tty: nsjoin_pts_clone(), or -1 */
    char ptyname[64];    /* tty: the slave's name */
    int child_fd[3];     /* the program's stdin, stdout, stderr (tty: the slave) */
    int report;          /* write end of the report pipe */
    pid_t manager;
    bool as_target; /* run with the target's ids instead of root's */
    exec_ids ids;   /* as_target: the target's */
} exec_plan;

/* The client's messages, on a thread of their own (recv and send block).
 * When the client keeps to a stdin window (ack_bytes), stdin goes through a
 * queue to a thread of its own too, so that a signal or a resize never waits
 * behind stdin the program does not read; the queue holds what the window
 * lets in, at most STDIN_QUEUE_MAX bytes in STDIN_QUEUE_MESSAGES messages,
 * and all calls' queues together STDIN_BUDGET (a client that sends more
 * waits as if it had no window). */
typedef struct {
    rpc_call *call;
    int in_fd; /* stdin pipe, or a dup of the pty master; this thread's */
    bool tty;
    int stop_fd;            /* eventfd: the call is ending, drop stdin */
    int bad_fd;             /* eventfd: a message did not decode, the call ends (INVALID_ARGUMENT) */
    uint32_t ack_bytes;     /* ExecStart.stdin_ack_bytes: answer each time this many more were taken */
    int taken_fd;           /* eventfd: answer now (-1 when ack_bytes is 0) */
    uint64_t acked;         /* this thread's: taken when it last asked for an answer */
    _Atomic uint64_t taken; /* stdin bytes written to the program or dropped */
    pthread_mutex_t qmu;    /* the queue (ack_bytes): */
    pthread_cond_t qcv;
    Kdiag__Solo__Io__ExecRequest *ring[STDIN_QUEUE_MESSAGES]; /* stdin chunks and stdin_close */
    size_t first, count;
    size_t queued;        /* bytes of the chunks in it */
    size_t held;          /* of the budget: this call's share (budget_mu) */
    bool qclosed;         /* no more items: the input thread ended */
    atomic_int pgid;      /* the program's session and process group, 0 before it started */
    atomic_int early_sig; /* a signal that came before the program started: sent when it does */
} exec_input;

/* The handler's side of one call. */
typedef struct {
    rpc_call *call;
    exec_input in;
    int out_fd, err_fd, report; /* -1 once at EOF */
    pid_t keeper;
    bool exited, join_failed;
    int status;
    exec_report failed; /* the JOIN_FAILED or EXEC_FAILED record */
    uint64_t answered;  /* stdin taken, as the last answer told */
    uint8_t buf[CONTRACT_EXEC_CHUNK], msg[CONTRACT_EXEC_CHUNK + 16];
} exec_run;

/* ------------------------------------------------ the children (no malloc) */

static void report(int fd, const exec_report *r)
{
    ssize_t n = write(fd, r, sizeof *r);
    (void)n; /* the handler sees the EOF either way */
}

/* fork(2) without glibc's atfork handlers (gRPC's): the child only makes system calls. */
static pid_t raw_fork(void)
{
    return (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
}

/* execve, then: ENOENT of a file that is there means its #! interpreter or
 * ELF loader is missing (FAILED_INTERP in *what); EACCES of a directory is
 * EISDIR, as bash says; the errno to report. */
static int exec_one(const char *path, const exec_plan *p, int *what)
{
    struct stat st;
    execve(path, p->argv, p->envp);
    int err = errno;
    if (err == ENOENT && access(path, F_OK) == 0)
        *what = FAILED_INTERP;
    if (err == EACCES && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        err = EISDIR;
    return err;
}

/* execvp's search through p->path; the errno to report. */
static int exec_path(const exec_plan *p, int *what)
{
    char buf[PATH_MAX];
    size_t al = strlen(p->argv[0]);
    int err = ENOENT;
    for (const char *d = p->path;; d++) {
        const char *end = strchrnul(d, ':');
        size_t dl = (size_t)(end - d);
        if (dl + al + 2 <= sizeof buf) {
            memcpy(buf, dl ? d : ".", dl ? dl : 1);
            dl = dl ? dl : 1;
            buf[dl] = '/';
            memcpy(buf + dl + 1, p->argv[0], al + 1);
            int e = exec_one(buf, p, what);
            if (e != ENOENT && e != ENOTDIR)
                err = e;
        }
        if (!*end)
            break;
        d = end;
    }
    return err;
}

/* The target's uid, gid and groups; the terminal becomes the user's, as login
 * does. Raw system calls: glibc's wrappers would signal the manager's threads,
 * which this child does not have. */
static int program_drop(const exec_plan *p, int tty)
{
    if (p->ptyname[0])
        (void)fchown(tty, p->ids.uid, (gid_t)-1);
    if (syscall(SYS_setgroups, p->ids.ngroups, p->ids.groups) < 0 ||
        syscall(SYS_setresgid, p->ids.gid, p->ids.gid, p->ids.gid) < 0 ||
        syscall(SYS_setresuid, p->ids.uid, p->ids.uid, p->ids.uid) < 0)
        return -1;
    return 0;
}

static void __attribute__((noreturn)) program_exec(const exec_plan *p)
{
    exec_report r = {.kind = REPORT_EXEC_FAILED, .what = FAILED_EXEC};
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;
    int in = p->child_fd[0], out = p->child_fd[1], err = p->child_fd[2];

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setsid();
    if (p->ptyname[0]) {
        /* by name: under the target's /dev/pts once nsjoin_pts_attach put ours there */
        int fd = open(p->ptyname, O_RDWR | O_NOCTTY);
        if (fd >= 0)
            in = out = err = fd;
        ioctl(in, TIOCSCTTY, 0);
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* exec keeps what is ignored: SIGPIPE by the manager, and whatever its own
     * parent ignored (SIGQUIT in a shell's background job, SIGXFSZ by Python) */
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* EINVAL for SIGKILL, SIGSTOP and libc's own: nothing to do */
    if (p->as_target && program_drop(p, in) < 0) {
        r.what = FAILED_USER;
        r.err = errno;
    } else if (p->workdir && chdir(p->workdir) < 0) {
        r.what = FAILED_WORKDIR;
        r.err = errno;
    } else if (p->toolfd >= 0) {
        syscall(SYS_execveat, p->toolfd, "", p->argv, p->envp, AT_EMPTY_PATH);
        r.err = errno;
    } else if (strchr(p->argv[0], '/')) {
        r.err = exec_one(p->argv[0], p, &r.what);
    } else {
        r.err = exec_path(p, &r.what);
    }
    report(p->report, &r);
    _exit(r.err == ENOENT && r.what == FAILED_EXEC ? CONTRACT_EXEC_NOT_FOUND : CONTRACT_EXEC_NOT_EXECUTABLE);
}

/* The keeper: joins the target, forks the program into its PID namespace,
 * reports its PID and wait status, then reaps for a while what the program
 * left (it is their subreaper) while the handler kills the program's session. */
static void __attribute__((noreturn)) keeper_main(exec_plan *p)
{
    exec_report r = {.kind = REPORT_JOIN_FAILED};
    struct nsjoin_err je;
    const char *why;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != p->manager)
        _exit(1);
    int rc = nsjoin_enter(&p->j, &je);
    if (rc < 0) {
        r.err = -rc;
        r.what = (int)je.step;
        r.ns = je.ns;
        report(p->report, &r);
        _exit(1);
    }
    if (p->ptsfd >= 0)
        (void)nsjoin_pts_attach(p->ptsfd, &why); /* else the terminal has no name in the target */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t pid = raw_fork();
    if (pid == 0)
        program_exec(p);
    if (pid < 0) {
        r.err = errno;
        r.what = NSJOIN_STEP_NONE;
        report(p->report, &r);
        _exit(1);
    }
    report(p->report, &(exec_report){.kind = REPORT_STARTED, .pid = pid});
    /* only the report pipe stays open: the program's stdin must see EOF */
    if (p->report > 0)
        syscall(SYS_close_range, 0, p->report - 1, 0);
    syscall(SYS_close_range, p->report + 1, ~0U, 0);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    report(p->report, &(exec_report){.kind = REPORT_EXITED, .status = st});
    for (int i = 0; i < REAP_ROUNDS; i++) {
        const struct timespec tick = {0, 10 * 1000 * 1000};
        pid_t w;
        while ((w = waitpid(-1, NULL, WNOHANG)) > 0)
            ;
        if (w < 0 && errno == ECHILD)
            break;
        nanosleep(&tick, NULL);
    }
    _exit(0);
}

/* ------------------------------------------------------ preparing the plan */

static void plan_init(exec_plan *p)
{
    memset(p, 0, sizeof *p);
    nsjoin_init(&p->j);
    p->toolfd = p->ptsfd = p->report = -1;
    for (int i = 0; i < 3; i++)
        p->child_fd[i] = -1;
}

/* Releases what the handler no longer needs once the keeper has forked. */
static void plan_free(exec_plan *p)
{
    nsjoin_close(&p->j);
    fd_close(&p->toolfd);
    fd_close(&p->ptsfd);
    fd_close(&p->report);
    for (int i = 0; i < 3; i++)
        if (p->child_fd[i] >= 0 && (i == 0 || p->child_fd[i] != p->child_fd[i - 1]))
            close(p->child_fd[i]);
    for (int i = 0; i < 3; i++)
        p->child_fd[i] = -1;
    free(p->argv);
    free(p->envp);
    target_env_free(p->tenv);
    p->argv = p->envp = p->tenv = NULL;
}

static grpc_status_code fail(rpc_call *call, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static grpc_status_code fail(rpc_call *call, grpc_status_code code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rpc_call_set_message(call, "%s", msg);
    return code;
}

/* The status for a failure to reach the target, naming what the debug container lacks. */
static grpc_status_code join_status(rpc_call *call, pid_t pid, int step, const char *ns, int err)
{
    grpc_status_code code = err == EPERM || err == EACCES ? GRPC_STATUS_PERMISSION_DENIED : GRPC_STATUS_FAILED_PRECONDITION;
    const char *why = strerror(err);
    switch (step) {
    case NSJOIN_STEP_PROCESS:
        return fail(call, GRPC_STATUS_NOT_FOUND, "no process with PID %d (it exited): is the target running?",
                    (int)pid);
    case NSJOIN_STEP_ROOT:
        return fail(call, code, "cannot open /proc/%d/root: %s: the manager needs SYS_PTRACE", (int)pid, why);
    case NSJOIN_STEP_NSOPEN:
        return fail(call, code, "cannot open /proc/%d/ns/%s: %s: the manager needs SYS_PTRACE", (int)pid,
                    ns ? ns : "?", why);
    case NSJOIN_STEP_SETNS:
        return fail(call, code, "cannot join the %s namespace of PID %d: %s: the manager needs SYS_ADMIN",
                    ns ? ns : "?", (int)pid, why);
    case NSJOIN_STEP_CHROOT:
        return fail(call, code, "cannot change into the root of PID %d: %s: the manager needs SYS_CHROOT",
                    (int)pid, why);
    default: return fail(call, code, "cannot start a process in the namespaces of PID %d: %s", (int)pid, why);
    }
}

static grpc_status_code target_pid(rpc_call *call, const Kdiag__Solo__Io__Target *t, pid_t *pid)
{
    int rc = target_resolve("/proc", t ? t->container_id : NULL, t ? t->pid : 0, getpid(), pid);
    if (rc == -EINVAL)
        return fail(call, GRPC_STATUS_INVALID_ARGUMENT, "'%s' is not a container id", t->container_id);
    if (rc == -ERANGE)
        return fail(call, GRPC_STATUS_INVALID_ARGUMENT, "PID %llu is out of range", (unsigned long long)t->pid);
    if (rc < 0)
        return fail(call, GRPC_STATUS_NOT_FOUND,
                    "no process of container %s: is it running, and does the manager share its PID namespace?",
                    target_normalize_id(t->container_id));
    return GRPC_STATUS_OK;
}

int exec_parse_status_ids(const char *buf, exec_ids *out)
{
    const char *u = strstr(buf, "\nUid:"), *g = strstr(buf, "\nGid:"), *gs = strstr(buf, "\nGroups:");
    unsigned long ru, eu, rg, eg;
    char *end;
    /* Uid:/Gid: real effective saved fs; the effective ids are the ones the process acts with */
    if (!u || !g || !gs || sscanf(u + 5, "%lu %lu", &ru, &eu) != 2 || sscanf(g + 5, "%lu %lu", &rg, &eg) != 2 ||
        eu > UINT32_MAX - 1 || eg > UINT32_MAX - 1)
        return -EBADMSG;
    out->uid = (uint32_t)eu;
    out->gid = (uint32_t)eg;
    out->ngroups = 0;
    for (const char *q = gs + 8; *q && *q != '\n'; q = end) {
        while (*q == ' ' || *q == '\t')
            q++;
        if (!*q || *q == '\n')
            break;
        errno = 0;
        unsigned long v = strtoul(q, &end, 10);
        if (errno || end == q || v > UINT32_MAX - 1)
            return -EBADMSG;
        if (out->ngroups == EXEC_GROUPS_MAX)
            return -E2BIG;
        out->groups[out->ngroups++] = (uint32_t)v;
    }
    return 0;
}

/* The target's ids from its /proc/PID/status. */
static int read_ids(pid_t pid, exec_ids *ids)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf + 1, sizeof buf - 2);
    rc = n < 0 ? -errno : 0;
    close(fd);
    if (rc < 0)
        return rc;
    buf[0] = '\n'; /* every field, the first too, after a newline */
    buf[n + 1] = 0;
    return exec_parse_status_ids(buf, ids);
}

/* ExecStart.env over the target's environment; p->path from the result. */
static int plan_env(exec_plan *p, const Kdiag__Solo__Io__ExecStart *s)
{
    size_t nt = 0, k = 0;
    while (p->tenv[nt])
        nt++;
    p->envp = calloc(s->n_env + nt + 1, sizeof *p->envp);
    if (!p->envp)
        return -ENOMEM;
    for (size_t i = 0; i < s->n_env; i++)
        if (strchr(s->env[i], '='))
            p->envp[k++] = s->env[i];
    size_t given = k;
    for (size_t i = 0; i < nt; i++) {
        size_t nl = strcspn(p->tenv[i], "=") + 1;
        bool over = false;
        for (size_t g = 0; g < given && !over; g++)
            over = strncmp(p->envp[g], p->tenv[i], nl) == 0;
        if (!over)
            p->envp[k++] = p->tenv[i];
    }
    p->path = DEFAULT_PATH;
    for (size_t i = 0; i < k; i++)
        if (strncmp(p->envp[i], "PATH=", 5) == 0) {
            p->path = p->envp[i] + 5;
            break;
        }
    return 0;
}

/* The program's terminal: the master for the handler (out) and a dup for
 * stdin (in), the slave for the child. */
static int plan_pty(exec_plan *p, const Kdiag__Solo__Io__ExecStart *s, int *in, int *out)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    struct winsize ws = {.ws_row = (unsigned short)s->rows, .ws_col = (unsigned short)s->cols};
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, p->ptyname, sizeof p->ptyname) != 0 ||
        (s->rows && s->cols && ioctl(m, TIOCSWINSZ, &ws) < 0) ||
        (p->child_fd[0] = open(p->ptyname, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 ||
        (*in = fcntl(m, F_DUPFD_CLOEXEC, 0)) < 0 || fd_nonblock(m) < 0) {
        int e = errno;
        close(m);
        return -e;
    }
    p->child_fd[1] = p->child_fd[2] = p->child_fd[0];
    *out = m;
    p->ptsfd = nsjoin_pts_clone(); /* -errno: the terminal has no name in the target */
    return 0;
}

/* Pipes: the child's ends in p->child_fd, ours (non-blocking) in in/out/err. */
static int plan_pipes(exec_plan *p, int *in, int *out, int *err)
{
    int fds[3][2];
    for (int i = 0; i < 3; i++) {
        if (pipe2(fds[i], O_CLOEXEC) < 0) {
            int e = errno;
            for (int k = 0; k < i; k++) {
                close(fds[k][0]);
                close(fds[k][1]);
            }
            return -e;
        }
    }
    p->child_fd[0] = fds[0][0];
    *in = fds[0][1];
    p->child_fd[1] = fds[1][1];
    *out = fds[1][0];
    p->child_fd[2] = fds[2][1];
    *err = fds[2][0];
    /* room for a whole chunk per read (best effort: the default is 64 KiB) */
    (void)fcntl(*out, F_SETPIPE_SZ, PIPE_SIZE);
    (void)fcntl(*err, F_SETPIPE_SZ, PIPE_SIZE);
    return fd_nonblock(*in) < 0 || fd_nonblock(*out) < 0 || fd_nonblock(*err) < 0 ? -errno : 0;
}

/* Everything but the fork; on failure the call's status. */
static grpc_status_code plan_make(exec_plan *p, const Kdiag__Solo__Io__ExecStart *s, const exec_opts *o, exec_run *r)
{
    struct nsjoin_err je;
    grpc_status_code code;
    if (s->n_argv == 0 || !s->argv[0][0])
        return fail(r->call, GRPC_STATUS_INVALID_ARGUMENT, "ExecStart.argv is empty: nothing to run");
    if ((code = target_pid(r->call, s->target, &p->pid)) != GRPC_STATUS_OK)
        return code;
    int rc = nsjoin_open(&p->j, "/proc", p->pid, &je);
    if (rc < 0)
        return join_status(r->call, p->pid, (int)je.step, je.ns, -rc);
    rc = target_read_environ("/proc", p->pid, NULL, &p->tenv);
    if (rc < 0)
        return join_status(r->call, p->pid, rc == -ENOENT || rc == -ESRCH ? NSJOIN_STEP_PROCESS : NSJOIN_STEP_ROOT,
                           NULL, -rc);
    if (plan_env(p, s) < 0 || !(p->argv = calloc(s->n_argv + 1, sizeof *p->argv)))
        return fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(p->argv, s->argv, s->n_argv * sizeof *p->argv);
    p->workdir = s->workdir && *s->workdir ? s->workdir : NULL;
    p->as_target = !s->root;
    if (p->as_target && (rc = read_ids(p->pid, &p->ids)) < 0)
        return rc == -ENOENT || rc == -ESRCH
                   ? join_status(r->call, p->pid, NSJOIN_STEP_PROCESS, NULL, -rc)
                   : fail(r->call, GRPC_STATUS_FAILED_PRECONDITION,
                          "cannot read the user of PID %d from /proc/%d/status: %s", (int)p->pid, (int)p->pid,
                          strerror(-rc));
    if (s->tools && (p->toolfd = open(o->busybox, O_PATH | O_CLOEXEC)) < 0)
        return fail(r->call, GRPC_STATUS_FAILED_PRECONDITION, "the debug image has no busybox at %s: %s",
                    o->busybox, strerror(errno));
    rc = s->tty ? plan_pty(p, s, &r->in.in_fd, &r->out_fd) : plan_pipes(p, &r->in.in_fd, &r->out_fd, &r->err_fd);
    if (rc < 0)
        return fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot make the program's %s: %s",
                    s->tty ? "terminal" : "pipes", strerror(-rc));
    return GRPC_STATUS_OK;
}

/* ------------------------------------------------- the client's messages */

/* Writes all of buf to the program's stdin, blocking (the client's stream
 * waits meanwhile: flow control) until it is gone or the call ends. */
static void input_write(exec_input *in, const uint8_t *buf, size_t n)
{
    while (n > 0 && in->in_fd >= 0) {
        ssize_t w = write(in->in_fd, buf, n);
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pf[3] = {{in->in_fd, POLLOUT, 0},
                                   {in->stop_fd, POLLIN, 0},
                                   {rpc_call_cancel_fd(in->call), POLLIN, 0}};
            if ((poll(pf, 3, -1) < 0 && errno != EINTR) || pf[1].revents || pf[2].revents)
                return;
        } else if (w < 0 && errno != EINTR) {
            if (!in->tty)
                fd_close(&in->in_fd); /* EPIPE: nobody reads stdin any more */
            return;
        }
    }
}

/* To the process group pg; before the program's setsid (the keeper has
 * reported its PID, the program has not run far yet) there is no such group:
 * then to the process itself, which keeps the signal blocked until it starts. */
static void signal_group(pid_t pg, int sig)
{
    if (kill(-pg, sig) < 0 && errno == ESRCH)
        kill(pg, sig);
}

/* Sends the signal kept by input_signal, once, whichever thread comes second. */
static void send_early_signal(exec_input *in)
{
    pid_t pg = atomic_load(&in->pgid);
    int sig = pg ? atomic_exchange(&in->early_sig, 0) : 0;
    if (sig)
        signal_group(pg, sig);
}

static void input_signal(exec_input *in, int sig)
{
    if (sig <= 0 || sig >= NSIG)
        return;
    pid_t pg = atomic_load(&in->pgid);
    if (!pg) { /* a Ctrl-C right behind the start: kept for the program */
        atomic_store(&in->early_sig, sig);
        send_early_signal(in);
        return;
    }
    if (in->tty && in->in_fd >= 0) { /* the terminal's foreground job, as Ctrl-C would */
        pid_t fg = tcgetpgrp(in->in_fd);
        if (fg > 0)
            pg = fg;
    }
    signal_group(pg, sig);
}

/* n more bytes of stdin are gone (written, or dropped with the closed
 * stdin): the handler answers when ack_bytes more went since its last answer. */
static void input_took(exec_input *in, size_t n)
{
    uint64_t taken = atomic_fetch_add(&in->taken, n) + n;
    if (in->taken_fd >= 0 && taken - in->acked >= in->ack_bytes) {
        in->acked = taken;
        eventfd_write(in->taken_fd, 1);
    }
}

/* A stdin chunk or the end of stdin, to the program. */
static void input_stdin(exec_input *in, const Kdiag__Solo__Io__ExecRequest *m)
{
    if (m->msg_case == KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CHUNK) {
        input_write(in, m->stdin_chunk.data, m->stdin_chunk.len);
        input_took(in, m->stdin_chunk.len);
    } else if (in->tty && in->in_fd >= 0) { /* a terminal's end of input is its EOF character */
        struct termios t;
        uint8_t eof = tcgetattr(in->in_fd, &t) == 0 ? t.c_cc[VEOF] : 4;
        input_write(in, &eof, 1);
    } else {
        fd_close(&in->in_fd);
    }
}

static size_t stdin_len(const Kdiag__Solo__Io__ExecRequest *m)
{
    return m->msg_case == KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CHUNK ? m->stdin_chunk.len : 0;
}

static pthread_mutex_t budget_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t budget_cv = PTHREAD_COND_INITIALIZER;
static size_t budget_used; /* stdin queued in all calls (budget_mu) */

/* Counts n queued bytes against STDIN_BUDGET; waits while the call already
 * holds some and n more would pass it. */
static void budget_take(exec_input *in, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&budget_mu);
    while (in->held && budget_used + n > STDIN_BUDGET)
        pthread_cond_wait(&budget_cv, &budget_mu);
    budget_used += n;
    in->held += n;
    pthread_mutex_unlock(&budget_mu);
}

static void budget_give(exec_input *in, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&budget_mu);
    budget_used -= n;
    in->held -= n;
    pthread_cond_broadcast(&budget_cv);
    pthread_mutex_unlock(&budget_mu);
}

/* Queues m for the stdin thread, which frees it; waits while the queue is
 * full (the client broke its window, or sends it in very small chunks). */
static void stdin_push(exec_input *in, Kdiag__Solo__Io__ExecRequest *m)
{
    budget_take(in, stdin_len(m));
    pthread_mutex_lock(&in->qmu);
    while (in->queued > STDIN_QUEUE_MAX || in->count == STDIN_QUEUE_MESSAGES)
        pthread_cond_wait(&in->qcv, &in->qmu);
    in->ring[(in->first + in->count++) % STDIN_QUEUE_MESSAGES] = m;
    in->queued += stdin_len(m);
    pthread_cond_broadcast(&in->qcv);
    pthread_mutex_unlock(&in->qmu);
}

/* The stdin thread: the queue to the program until the input thread ended
 * and the queue is empty. When the call ends, input_write returns at once. */
static void *stdin_main(void *arg)
{
    exec_input *in = arg;
    for (;;) {
        pthread_mutex_lock(&in->qmu);
        while (!in->count && !in->qclosed)
            pthread_cond_wait(&in->qcv, &in->qmu);
        Kdiag__Solo__Io__ExecRequest *m = in->count ? in->ring[in->first] : NULL;
        pthread_mutex_unlock(&in->qmu);
        if (!m)
            return NULL;
        input_stdin(in, m); /* still in the queue: it counts until written */
        pthread_mutex_lock(&in->qmu);
        in->first = (in->first + 1) % STDIN_QUEUE_MESSAGES;
        in->count--;
        size_t n = stdin_len(m);
        in->queued -= n;
        pthread_cond_broadcast(&in->qcv);
        pthread_mutex_unlock(&in->qmu);
        kdiag__solo__io__exec_request__free_unpacked(m, NULL);
        budget_give(in, n);
    }
}

/* Carries out m; true when it kept m (queued for the stdin thread). */
static bool input_apply(exec_input *in, Kdiag__Solo__Io__ExecRequest *m, bool queue)
{
    switch (m->msg_case) {
    case KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CHUNK:
    case KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CLOSE:
        if (queue) {
            stdin_push(in, m);
            return true;
        }
        input_stdin(in, m);
        break;
    case KDIAG__SOLO__IO__EXEC_REQUEST__MSG_RESIZE:
        if (in->tty && in->in_fd >= 0 && m->resize) {
            struct winsize ws = {.ws_row = (unsigned short)m->resize->rows, .ws_col = (unsigned short)m->resize->cols};
            ioctl(in->in_fd, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH */
        }
        break;
    case KDIAG__SOLO__IO__EXEC_REQUEST__MSG_SIGNAL: input_signal(in, m->signal); break;
    default: break; /* a second start: ignored */
    }
    return false;
}

static void *input_main(void *arg)
{
    exec_input *in = arg;
    uint8_t *buf;
    size_t len;
    pthread_t th;
    bool queue = in->ack_bytes && pthread_create(&th, NULL, stdin_main, in) == 0;
    while (rpc_call_recv(in->call, &buf, &len) == 0) {
        Kdiag__Solo__Io__ExecRequest *m = kdiag__solo__io__exec_request__unpack(NULL, len, buf);
        free(buf);
        if (!m) {
            eventfd_write(in->bad_fd, 1);
            break;
        }
        if (!input_apply(in, m, queue))
            kdiag__solo__io__exec_request__free_unpacked(m, NULL);
    }
    if (queue) {
        pthread_mutex_lock(&in->qmu);
        in->qclosed = true;
        pthread_cond_broadcast(&in->qcv);
        pthread_mutex_unlock(&in->qmu);
        pthread_join(th, NULL);
    }
    fd_close(&in->in_fd);
    return NULL;
}

/* ------------------------------------------------------------ the handler */

/* What the tree walk keeps of a process's stat (small: the walk runs in many
 * threads at once when many calls end together). */
typedef struct {
    int pid, ppid, sid;
    char state;
} exec_ps;

static int ps_cmp(const void *a, const void *b)
{
    return ((const exec_ps *)a)->pid - ((const exec_ps *)b)->pid;
}

/* Every process of pf, sorted by pid (procfs_list_pids' order); those that
 * exit meanwhile are left out. NULL when out of memory. */
static exec_ps *ps_list(const procfs *pf, size_t *n)
{
    int *pids = NULL;
    size_t np = 0;
    exec_ps *v = NULL;
    procfs_proc p;
    *n = 0;
    if (procfs_list_pids(pf, &pids, &np) == 0 && (v = malloc((np ? np : 1) * sizeof *v)))
        for (size_t i = 0; i < np; i++)
            if (procfs_read_stat(pf, pids[i], &p) == 0)
                v[(*n)++] = (exec_ps){p.pid, p.ppid, p.sid, p.state};
    free(pids);
    return v;
}

/* Whether e descends from root (the ppid chain, at most 64 steps up). */
static bool ps_descends(const exec_ps *v, size_t n, const exec_ps *e, pid_t root)
{
    for (int depth = 0; e && depth < 64; depth++) {
        if (e->ppid == root)
            return true;
        exec_ps key = {.pid = e->ppid};
        e = bsearch(&key, v, n, sizeof *v, ps_cmp);
    }
    return false;
}

/* SIGKILL to what the program leaves: its session sid (0: not started), and
 * every live descendant of the keeper, in rounds until there is none, for
 * what left the session (setsid) or forked meanwhile. The keeper is their
 * subreaper (same PID namespace), so the children of a killed process become
 * its own and the next round finds them. */
static void kill_rest(pid_t sid, pid_t keeper)
{
    procfs *pf = NULL;
    if (sid)
        kill(-sid, SIGKILL);
    if (procfs_open("/proc", &pf) < 0)
        return;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        size_t n, live = 0;
        exec_ps *v = ps_list(pf, &n);
        for (size_t i = 0; v && i < n; i++)
            if (v[i].state != 'Z' && ((sid && v[i].sid == sid) || ps_descends(v, n, &v[i], keeper))) {
                kill(v[i].pid, SIGKILL);
                live++;
            }
        free(v);
        if (!live)
            break;
        nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
    }
    procfs_close(pf);
}

static void read_report(exec_run *r)
{
    exec_report rec;
    ssize_t n = read(r->report, &rec, sizeof rec);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n != (ssize_t)sizeof rec) { /* EOF: the keeper is gone */
        fd_close(&r->report);
        return;
    }
    switch (rec.kind) {
    case REPORT_STARTED:
        atomic_store(&r->in.pgid, rec.pid);
        send_early_signal(&r->in);
        break;
    case REPORT_EXITED:
        r->exited = true;
        r->status = rec.status;
        kill_rest(atomic_load(&r->in.pgid), r->keeper);
        break;
    case REPORT_JOIN_FAILED:
        r->join_failed = true;
        r->failed = rec;
        break;
    case REPORT_EXEC_FAILED: r->failed = rec; break;
    }
}

/* One read of the program's output into a message. -ECANCELED when the call ended. */
static int pump_output(exec_run *r, int *fd, bool err)
{
    ssize_t n = read(*fd, r->buf, sizeof r->buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) { /* EOF, or EIO: the terminal's last slave closed */
        fd_close(fd);
        return 0;
    }
    Kdiag__Solo__Io__ExecResponse m;
    kdiag__solo__io__exec_response__init(&m);
    m.msg_case = err ? KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDERR_CHUNK
                     : KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDOUT_CHUNK;
    ProtobufCBinaryData *b = err ? &m.stderr_chunk : &m.stdout_chunk;
    b->data = r->buf;
    b->len = (size_t)n;
    size_t len = kdiag__solo__io__exec_response__pack(&m, r->msg);
    return rpc_call_send(r->call, r->msg, len); /* blocks: a stalled client stalls the program */
}

/* The client's window moves: how much of its stdin was taken so far. */
static int send_taken(exec_run *r)
{
    eventfd_t ignored;
    eventfd_read(r->in.taken_fd, &ignored);
    Kdiag__Solo__Io__ExecResponse m;
    kdiag__solo__io__exec_response__init(&m);
    m.msg_case = KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDIN_TAKEN;
    m.stdin_taken = atomic_load(&r->in.taken);
    if (m.stdin_taken == r->answered) /* told already, with an earlier wake-up */
        return 0;
    r->answered = m.stdin_taken;
    size_t len = kdiag__solo__io__exec_response__pack(&m, r->msg);
    return rpc_call_send(r->call, r->msg, len);
}

/* Until the keeper is gone and the output is read (or DRAIN_MS after).
 * -ECANCELED when the call was cancelled, -EPROTO when a client message did
 * not decode. */
static int pump(exec_run *r)
{
    int64_t drain_until = 0;
    int cancel = rpc_call_cancel_fd(r->call);
    while (r->report >= 0 || r->out_fd >= 0 || r->err_fd >= 0) {
        int timeout = -1;
        if (r->report < 0) {
            if (!drain_until)
                drain_until = time_now_ms() + DRAIN_MS;
            timeout = (int)(drain_until - time_now_ms());
            if (timeout <= 0)
                break;
        }
        struct pollfd pf[6] = {{r->out_fd, POLLIN, 0}, {r->err_fd, POLLIN, 0},    {r->report, POLLIN, 0},
                               {cancel, POLLIN, 0},    {r->in.bad_fd, POLLIN, 0}, {r->in.taken_fd, POLLIN, 0}};
        if (poll(pf, 6, timeout) < 0 && errno != EINTR)
            return -errno;
        if (pf[3].revents)
            return -ECANCELED;
        if (pf[4].revents)
            return -EPROTO;
        if (pf[2].revents)
            read_report(r);
        if (pf[0].revents && pump_output(r, &r->out_fd, false) < 0)
            return -ECANCELED;
        if (pf[1].revents && pump_output(r, &r->err_fd, true) < 0)
            return -ECANCELED;
        if (pf[5].revents && send_taken(r) < 0)
            return -ECANCELED;
    }
    return 0;
}

/* The ExecExit message: the status, or why the program did not start. */
static int send_exit(exec_run *r, const Kdiag__Solo__Io__ExecStart *s)
{
    Kdiag__Solo__Io__ExecResponse m;
    Kdiag__Solo__Io__ExecExit x = KDIAG__SOLO__IO__EXEC_EXIT__INIT;
    kdiag__solo__io__exec_response__init(&m);
    char err[512] = "";
    m.msg_case = KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_EXIT;
    m.exit = &x;
    if (WIFSIGNALED(r->status)) {
        x.signal = WTERMSIG(r->status);
        x.code = 128 + x.signal;
    } else {
        x.code = WEXITSTATUS(r->status);
    }
    if (r->failed.kind == REPORT_EXEC_FAILED) {
        const char *a0 = s->argv[0];
        if (r->failed.what == FAILED_USER)
            snprintf(err, sizeof err,
                     "cannot take the target's uid, gid and groups: %s: the manager needs SETUID, "
                     "SETGID",
                     strerror(r->failed.err));
        else if (r->failed.what == FAILED_WORKDIR)
            snprintf(err, sizeof err, "cannot change to the working directory %s: %s", s->workdir,
                     strerror(r->failed.err));
        else if (r->failed.what == FAILED_INTERP && r->failed.err == ENOENT)
            snprintf(err, sizeof err,
                     "%s: cannot execute in the target: its #! interpreter or ELF loader (ld.so) is missing: %s",
                     a0, strerror(r->failed.err));
        else if (r->failed.err == ENOENT && !strchr(a0, '/'))
            snprintf(err, sizeof err, "%s: command not found in the target's PATH", a0);
        else
            snprintf(err, sizeof err, "%s: cannot execute in the target: %s", a0, strerror(r->failed.err));
        x.error = err;
    }
    uint8_t buf[1024];
    size_t len = kdiag__solo__io__exec_response__pack(&m, buf);
    return rpc_call_send(r->call, buf, len);
}

/* Runs the plan: fork the keeper, carry the I/O, report the exit. */
static grpc_status_code run(exec_run *r, exec_plan *p, const Kdiag__Solo__Io__ExecStart *s)
{
    int rp[2];
    pthread_t th;
    grpc_status_code code = GRPC_STATUS_OK;
    if (pipe2(rp, O_CLOEXEC) < 0)
        return fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot make a pipe: %s", strerror(errno));
    r->report = rp[0]; /* both closed by the caller, also on failure */
    p->report = rp[1];
    if ((r->in.stop_fd = eventfd(0, EFD_CLOEXEC)) < 0 || (r->in.bad_fd = eventfd(0, EFD_CLOEXEC)) < 0 ||
        (r->in.ack_bytes && (r->in.taken_fd = eventfd(0, EFD_CLOEXEC)) < 0))
        return fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot make an eventfd: %s", strerror(errno));
    p->manager = getpid();
    r->keeper = raw_fork();
    if (r->keeper == 0)
        keeper_main(p);
    int fork_err = errno;
    plan_free(p); /* the child's ends: only the children hold them now */
    if (r->keeper < 0)
        return fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot fork: %s", strerror(fork_err));
    bool threaded = pthread_create(&th, NULL, input_main, &r->in) == 0;
    int rc = pump(r);
    if (rc < 0) {
        pid_t pg = atomic_load(&r->in.pgid);
        kill_rest(pg, r->keeper);
        kill(r->keeper, SIGKILL); /* the program dies with it (PDEATHSIG) */
        code = rc == -EPROTO ? fail(r->call, GRPC_STATUS_INVALID_ARGUMENT,
                                    "an ExecRequest after the start does not decode: the program was killed")
                             : GRPC_STATUS_CANCELLED;
    } else if (r->join_failed) {
        code = join_status(r->call, p->pid, r->failed.what, r->failed.ns, r->failed.err);
    } else if (!r->exited) {
        code = fail(r->call, GRPC_STATUS_INTERNAL, "the program's keeper ended without its exit status");
    } else if (send_exit(r, s) < 0) {
        code = GRPC_STATUS_CANCELLED;
    }
    eventfd_write(r->in.stop_fd, 1);
    while (waitpid(r->keeper, NULL, 0) < 0 && errno == EINTR)
        ;
    /* The answer is complete: the status goes now, not a round trip later
     * when the client has half-closed; the input thread's wait ends with it. */
    rpc_call_end(r->call, code);
    if (threaded)
        pthread_join(th, NULL);
    return code;
}

grpc_status_code exec_rpc_handle(rpc_call *call, void *ud)
{
    const exec_opts *o = ud;
    exec_plan p;
    exec_run *r = calloc(1, sizeof *r);
    Kdiag__Solo__Io__ExecRequest *m = NULL;
    uint8_t *buf = NULL;
    size_t len;
    grpc_status_code code;

    plan_init(&p);
    if (!r)
        return fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    *r = (exec_run){.call = call,
                    .out_fd = -1,
                    .err_fd = -1,
                    .report = -1,
                    .in = {.call = call, .in_fd = -1, .stop_fd = -1, .bad_fd = -1, .taken_fd = -1}};
    pthread_mutex_init(&r->in.qmu, NULL);
    pthread_cond_init(&r->in.qcv, NULL);
    int rc = rpc_call_recv(call, &buf, &len);
    if (rc == -ECANCELED) {
        code = GRPC_STATUS_CANCELLED;
        goto out;
    }
    if (rc < 0) {
        code = fail(call, GRPC_STATUS_INVALID_ARGUMENT, "no ExecRequest (%s): the first must be a start message",
                    strerror(-rc));
        goto out;
    }
    m = kdiag__solo__io__exec_request__unpack(NULL, len, buf);
    if (!m || m->msg_case != KDIAG__SOLO__IO__EXEC_REQUEST__MSG_START || !m->start) {
        code = fail(call, GRPC_STATUS_INVALID_ARGUMENT, "the first ExecRequest must be a start message");
        goto out;
    }
    if (proto_has_nul_string(&kdiag__solo__io__exec_request__descriptor, buf, len)) {
        code = fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                    "ExecStart has a string with a NUL byte (argv, env, workdir or container id): nothing was run");
        goto out;
    }
    r->in.tty = m->start->tty;
    r->in.ack_bytes = m->start->stdin_ack_bytes;
    code = plan_make(&p, m->start, o, r);
    if (code == GRPC_STATUS_OK)
        code = run(r, &p, m->start);
out:
    plan_free(&p);
    fd_close(&r->in.in_fd);
    fd_close(&r->in.stop_fd);
    fd_close(&r->in.bad_fd);
    fd_close(&r->in.taken_fd);
    pthread_cond_destroy(&r->in.qcv);
    pthread_mutex_destroy(&r->in.qmu);
    fd_close(&r->out_fd);
    fd_close(&r->err_fd);
    fd_close(&r->report);
    if (m)
        kdiag__solo__io__exec_request__free_unpacked(m, NULL);
    free(buf);
    free(r);
    return code;
}
