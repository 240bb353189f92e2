/* enter: run PROGRAM inside the namespaces and root filesystem of a target
 * process: a shell into a container that has none. `kubectl diag shell` no longer
 * uses it (the manager's Exec joins the target with the same nsjoin/target code);
 * it stays in the debug image for use by hand (run in the debug container by
 * kubectl exec, where pods/exec is allowed) and is tested on its own
 * (test/scratch-shell). PROGRAM is opened (O_PATH) in our own filesystem before we leave it and
 * executed from that fd after the switch, so it never has to exist in the
 * target's image.
 *
 *   enter [-v] PID PROGRAM [ARGS...]
 *   enter [-v] --container-id ID PROGRAM [ARGS...]
 *
 * PROGRAM runs with the target's environment (/proc/PID/environ), except TERM,
 * which describes the caller's terminal and so comes from the caller (absent if
 * the caller has none); its cwd is the target's cwd (/ if unreadable).
 * A terminal on stdin from this container's devpts (kubectl exec -it) keeps its
 * name in the target: PROGRAM runs in a private copy of the target's mount
 * namespace where this container's /dev/pts covers the target's.
 * -v reports on stderr whether setns(pidfd) or /proc/PID/ns did the work.
 *
 * Exit status: PROGRAM's status (128+N if it died of signal N); 2 for a usage
 * error; 125 when enter itself cannot reach the target; 126 when PROGRAM
 * cannot be executed; 127 when PROGRAM does not exist. Errors are one line on
 * stderr that names the cause and the fix.
 *
 * Test knob: KDIAG_ENTER_FORCE_PROC_NS=1 skips setns(pidfd) so the
 * /proc/PID/ns fallback of pre-5.8 kernels is exercised on new ones. */
#include "nsjoin.h"
#include "target.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

enum {
    EXIT_USAGE = 2,
    EXIT_ENTER = 125,
    EXIT_NOEXEC = 126,
    EXIT_NOTFOUND = 127,
};

static const char usage_line[] = "usage: enter [-v] PID PROGRAM [ARGS...] | enter [-v] --container-id ID PROGRAM [ARGS...]";

/* The one line for people: "enter: <cause>: <fix>", written with a single
 * write(2) so it never interleaves with the other process's output. */
static void __attribute__((noreturn, format(printf, 2, 3))) fail(int code, const char *fmt, ...)
{
    char line[1024] = "enter: ";
    size_t pre = strlen(line), max = sizeof(line) - 1; /* room for '\n' */
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line + pre, max - pre, fmt, ap);
    va_end(ap);
    size_t len = pre + (n < 0 ? 0 : (size_t)n);
    if (len > max - 1)
        len = max - 1;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nothing better to do if stderr is gone */
    _exit(code);
}

static void usage_fail(const char *what)
{
    fail(EXIT_USAGE, "%s; %s", what, usage_line);
}

static pid_t parse_pid(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v <= 0 || v > 4194304)
        fail(EXIT_USAGE,
             "'%s' is not a PID: give the target's process id (a positive number) "
             "or --container-id ID; %s",
             s, usage_line);
    return (pid_t)v;
}

static const char *cap_hint(const char *ns)
{
    if (ns && strcmp(ns, "mnt") == 0)
        return "add capabilities SYS_ADMIN and SYS_CHROOT to this container";
    return "add capability SYS_ADMIN to this container";
}

/* Turns an nsjoin failure into the one line a person can act on. */
static void __attribute__((noreturn)) join_fail(pid_t pid, const struct nsjoin_err *e, int err)
{
    const char *why = strerror(err);

    switch (e->step) {
    case NSJOIN_STEP_PROCESS:
        fail(EXIT_ENTER, "no process with PID %d (it exited): is the target container running?", (int)pid);
    case NSJOIN_STEP_ROOT:
        fail(EXIT_ENTER,
             "cannot open /proc/%d/root: %s: add capability SYS_PTRACE to this "
             "container (and run as root)",
             (int)pid, why);
    case NSJOIN_STEP_NSOPEN:
        fail(EXIT_ENTER,
             "cannot open /proc/%d/ns/%s: %s: add capability SYS_PTRACE to this "
             "container (and run as root)",
             (int)pid, e->ns, why);
    case NSJOIN_STEP_SETNS:
        if (err == EPERM)
            fail(EXIT_ENTER, "cannot join the %s namespace of PID %d: %s: %s", e->ns, (int)pid, why, cap_hint(e->ns));
        if (err == EINVAL && strcmp(e->ns, "pid") == 0)
            fail(EXIT_ENTER,
                 "cannot join the pid namespace of PID %d: %s: it is not below this "
                 "container's PID namespace; start this container in the target's PID "
                 "namespace (kubectl debug --target / targetContainerName)",
                 (int)pid, why);
        fail(EXIT_ENTER,
             "cannot join the %s namespace of PID %d: %s: run enter as root with "
             "SYS_ADMIN in the target's user namespace",
             e->ns, (int)pid, why);
    case NSJOIN_STEP_CHROOT:
        if (err == EPERM)
            fail(EXIT_ENTER,
                 "cannot chroot into the root of PID %d: %s: add capability "
                 "SYS_CHROOT to this container",
                 (int)pid, why);
        fail(EXIT_ENTER, "cannot change into the root of PID %d: %s", (int)pid, why);
    case NSJOIN_STEP_NONE: break;
    }
    fail(EXIT_ENTER, "cannot enter PID %d: %s", (int)pid, why);
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_ENTER;
}

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGCONT};

/* The child runs PROGRAM; we stay as its parent, pass on signals that a
 * process sent us (kubectl/runtime stopping the exec) and exit with its status.
 * Signals the terminal generates (Ctrl-C, resize) are not forwarded: the
 * kernel already delivers them to the foreground process group, which is the
 * child's (or the child's job's when the shell does job control). */
/* A terminal from `kubectl exec -it` is a pty of the debug container's devpts,
 * which the target's /dev/pts does not show (nsjoin_pts_clone): -1 when stdin
 * is no such pty or the kernel cannot copy the mount. */
static int pts_clone(void)
{
    char *name = ttyname(0);

    if (!name || strncmp(name, "/dev/pts/", 9) != 0)
        return -1;
    return nsjoin_pts_clone();
}

/* Best effort: on any failure the shell still runs, only without a named terminal. */
static void pts_attach(int ptsfd, int verbose)
{
    const char *why;

    if (ptsfd < 0)
        return;
    int rc = nsjoin_pts_attach(ptsfd, &why);
    if (rc < 0 && verbose)
        fprintf(stderr, "enter: the terminal keeps no name in the target (%s: %s)\n", why, strerror(-rc));
}

static int run_child(int progfd, const char *prog, char **argv, char **envp)
{
    sigset_t set, old;
    pid_t child;

    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&set, forwarded[i]);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);

    child = fork();
    if (child < 0)
        fail(EXIT_ENTER,
             "cannot fork into the PID namespace of the target: %s: has its PID 1 "
             "exited, or is the pids limit reached?",
             strerror(errno));
    if (child == 0) {
        /* A shell must not outlive an enter that was killed (exec session gone). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
            signal(forwarded[i], SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        syscall(SYS_execveat, progfd, "", argv, envp, AT_EMPTY_PATH);
        int e = errno;
        if (e == ENOENT)
            fail(EXIT_NOTFOUND,
                 "cannot execute '%s' in the target: %s: PROGRAM must be a "
                 "static binary (scripts and dynamic binaries need files the "
                 "target does not have)",
                 prog, strerror(e));
        fail(EXIT_NOEXEC,
             "cannot execute '%s' in the target: %s: PROGRAM must be a static "
             "binary for this machine",
             prog, strerror(e));
    }
    close(progfd);

    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);

        if (sig < 0)
            continue; /* EINTR from a stop/continue */
        if (sig == SIGCHLD) {
            int status;
            pid_t r = waitpid(child, &status, WNOHANG);
            if (r == child)
                return exit_code_of(status);
            continue;
        }
        if (si.si_code <= 0) /* SI_USER, SI_QUEUE, SI_TKILL: sent by a process */
            kill(child, sig);
    }
}

int main(int argc, char **argv)
{
    const char *proc = "/proc", *container_id = NULL;
    int i = 1, verbose = 0, progfd, ptsfd, ret;
    struct statfs sfs;
    struct stat st;
    struct nsjoin j;
    struct nsjoin_err jerr;
    char **envp = NULL;
    pid_t pid;

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("%s\n", usage_line);
            return 0;
        } else if (strcmp(a, "-v") == 0) {
            verbose = 1;
        } else if (strcmp(a, "--container-id") == 0) {
            if (i + 1 >= argc)
                usage_fail("--container-id needs a value");
            container_id = argv[++i];
        } else if (strncmp(a, "--container-id=", 15) == 0) {
            container_id = a + 15;
        } else if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else {
            fail(EXIT_USAGE, "unknown option '%s'; %s", a, usage_line);
        }
    }
    if (!container_id && i >= argc)
        usage_fail("missing PID");
    if (argc - i < (container_id ? 1 : 2))
        usage_fail("missing PROGRAM");

    if (statfs(proc, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
        fail(EXIT_ENTER, "/proc is not mounted in this container: mount it (mount -t proc proc "
                         "/proc) or run enter from a container that has it");

    if (container_id) {
        const char *id = target_normalize_id(container_id);
        if (!id)
            fail(EXIT_USAGE,
                 "'%s' is not a container id: give the id from the pod's "
                 "status.containerStatuses[].containerID (containerd://<id> or <id>)",
                 container_id);
        ret = target_find_by_container_id(proc, id, getpid(), &pid);
        if (ret == -ESRCH)
            fail(EXIT_ENTER,
                 "no process whose cgroup path contains container id '%s': is the "
                 "container running, and does this container share its PID namespace "
                 "(shareProcessNamespace or kubectl debug --target)?",
                 id);
        if (ret < 0)
            fail(EXIT_ENTER, "cannot scan %s for container id '%s': %s", proc, id, strerror(-ret));
    } else {
        char path[64];
        pid = parse_pid(argv[i++]);
        snprintf(path, sizeof(path), "%s/%d", proc, (int)pid);
        if (access(path, F_OK) < 0)
            fail(EXIT_ENTER,
                 "no process with PID %d: is the target container running, and does "
                 "this container share its PID namespace (kubectl debug --target)?",
                 (int)pid);
    }
    const char *prog = argv[i];
    char **prog_argv = argv + i;

    progfd = open(prog, O_PATH | O_CLOEXEC);
    if (progfd < 0)
        fail(errno == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC,
             "cannot open PROGRAM '%s': %s: give the path of a static program in this (debug) "
             "image, e.g. /usr/local/bin/ash",
             prog, strerror(errno));
    if (fstat(progfd, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
        fail(EXIT_NOEXEC,
             "PROGRAM '%s' is not an executable file: give the path of a static "
             "program in this (debug) image, e.g. /usr/local/bin/ash",
             prog);

    nsjoin_init(&j);
    ret = nsjoin_open(&j, proc, pid, &jerr);
    if (ret < 0)
        join_fail(pid, &jerr, -ret);
    ret = target_read_environ(proc, pid, getenv("TERM"), &envp);
    if (ret == -EACCES || ret == -EPERM)
        fail(EXIT_ENTER,
             "cannot read /proc/%d/environ: %s: add capability SYS_PTRACE to this "
             "container (and run as root)",
             (int)pid, strerror(-ret));
    if (ret == -ENOENT || ret == -ESRCH)
        join_fail(pid, &(struct nsjoin_err){.step = NSJOIN_STEP_PROCESS}, -ret);
    if (ret < 0)
        fail(EXIT_ENTER, "cannot read /proc/%d/environ: %s", (int)pid, strerror(-ret));
    if (getenv("KDIAG_ENTER_FORCE_PROC_NS") && j.pidfd >= 0) {
        close(j.pidfd);
        j.pidfd = -1;
    }
    ptsfd = pts_clone();
    ret = nsjoin_enter(&j, &jerr);
    if (ret < 0)
        join_fail(pid, &jerr, -ret);
    pts_attach(ptsfd, verbose);
    if (verbose)
        fprintf(stderr, "enter: joined PID %d via %s\n", (int)pid, j.used_pidfd ? "pidfd" : "/proc/PID/ns");
    nsjoin_close(&j);

    ret = run_child(progfd, prog, prog_argv, envp);
    target_env_free(envp);
    return ret;
}
