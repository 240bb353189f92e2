#include "kube.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/dynbuf.h"
#include "basic/fd-util.h"
#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "kerr.h"

#define MAX_ARGS 96 /* kubectl, 3 of ours, FLAGS_CONN_MAX of kubectl's, the call's */

static int build_argv(const kube *k, const char *const *args, char **argv, char *storage, size_t slen)
{
    int n = 0;
    size_t used = 0;
    argv[n++] = (char *)k->kubectl;
    const char *names[] = {"--kubeconfig=", "--context=", "--namespace="};
    const char *vals[] = {k->kubeconfig, k->context, k->ns};
    for (int i = 0; i < 3; i++) {
        if (!vals[i] || !*vals[i])
            continue;
        int w = snprintf(storage + used, slen - used, "%s%s", names[i], vals[i]);
        if (w < 0 || (size_t)w >= slen - used)
            return -E2BIG;
        argv[n++] = storage + used;
        used += (size_t)w + 1;
    }
    for (int i = 0; k->conn && k->conn[i]; i++)
        argv[n++] = k->conn[i]; /* at most FLAGS_CONN_MAX: MAX_ARGS has room */
    for (int i = 0; args[i]; i++) {
        if (n >= MAX_ARGS - 1)
            return -E2BIG;
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    return n;
}

static int args_count(const char *const *args)
{
    int n = 0;
    while (args[n])
        n++;
    return n;
}

static void trace(const kube *k, const char *const *env, char **argv)
{
    if (k->verbose <= 0)
        return;
    fputs("+", stderr);
    for (int i = 0; env && env[i]; i++)
        fprintf(stderr, " %s", env[i]);
    for (int i = 0; argv[i]; i++)
        fprintf(stderr, " %s", argv[i]);
    fputc('\n', stderr);
}

/* Message for a failure to start kubectl (e: the errno of pipe/fork/exec). */
static void spawn_error(const kube *k, int e, bool exec, char *buf, size_t n)
{
    if (exec && e == ENOENT)
        snprintf(buf, n,
                 "kubectl not found: \"%s\" is not an executable in PATH. Install kubectl 1.23 or newer, or pass "
                 "--kubectl PATH (or set $KUBECTL)",
                 k->kubectl);
    else if (exec && e == EACCES)
        snprintf(buf, n, "cannot execute kubectl \"%s\": permission denied; check --kubectl / $KUBECTL", k->kubectl);
    else
        snprintf(buf, n, "cannot run kubectl \"%s\": %s", k->kubectl, strerror(e));
}

/* environ with each NAME=VALUE of set in place of any variable of that name: a new array of
 * environ's and set's strings (free the array alone), or NULL without memory. */
static char **env_with(const char *const *set)
{
    size_t n = 0, m = 0, k = 0;
    while (environ[n])
        n++;
    while (set[m])
        m++;
    char **e = calloc(n + m + 1, sizeof(*e));
    if (!e)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < m && !replaced; j++) {
            size_t len = strcspn(set[j], "=");
            replaced = strncmp(environ[i], set[j], len) == 0 && environ[i][len] == '=';
        }
        if (!replaced)
            e[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        e[k++] = (char *)set[j];
    return e;
}

/* The forked child: only async-signal-safe calls until exec; reports exec's errno on ex. */
static void __attribute__((noreturn))
child_exec(char **argv, char **envp, unsigned flags, pid_t parent, const int *in, const int *out, const int *err, int ex)
{
    sig_unblock_all();
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    if (flags & KUBE_OWN_PGRP)
        setpgid(0, 0);
    if (in[0] >= 0)
        dup2(in[0], 0);
    if (out[1] >= 0)
        dup2(out[1], 1);
    if (err[1] >= 0)
        dup2(err[1], 2);
    else if (flags & KUBE_ERR_TO_OUT)
        dup2(out[1], 2);
    execvpe(argv[0], argv, envp);
    int e = errno;
    (void)!write(ex, &e, sizeof(e));
    _exit(127);
}

int kube_spawn(const kube *k, const char *const *args, unsigned flags, kube_proc *p, char *errbuf, size_t errlen)
{
    return kube_spawn_env(k, args, NULL, flags, p, errbuf, errlen);
}

int kube_spawn_env(const kube *k, const char *const *args, const char *const *env, unsigned flags, kube_proc *p,
                   char *errbuf, size_t errlen)
{
    char *argv[MAX_ARGS];
    char **envp = environ;
    char storage[4096];
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ex[2] = {-1, -1};
    int rc = build_argv(k, args, argv, storage, sizeof(storage));
    p->pid = -1;
    p->in_fd = p->out_fd = p->err_fd = -1;
    p->own_pgrp = false;
    if (rc < 0) {
        snprintf(errbuf, errlen, "cannot run kubectl: %s",
                 rc == -E2BIG && args_count(args) < MAX_ARGS - 4
                     ? "--kubeconfig, --context and --namespace are too long (4 KiB at most together)"
                     : "too many arguments");
        goto out;
    }
    trace(k, env, argv);
    if (env && !(envp = env_with(env))) {
        rc = -ENOMEM;
        spawn_error(k, ENOMEM, false, errbuf, errlen);
        goto out;
    }
    if (((flags & KUBE_PIPE_IN) && pipe2(in, O_CLOEXEC) < 0) ||
        ((flags & (KUBE_PIPE_OUT | KUBE_ERR_TO_OUT)) && pipe2(out, O_CLOEXEC) < 0) ||
        ((flags & KUBE_PIPE_ERR) && !(flags & KUBE_ERR_TO_OUT) && pipe2(err, O_CLOEXEC) < 0) ||
        pipe2(ex, O_CLOEXEC) < 0) {
        rc = -errno;
        spawn_error(k, -rc, false, errbuf, errlen);
        goto out;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        spawn_error(k, -rc, false, errbuf, errlen);
        goto out;
    }
    if (pid == 0)
        child_exec(argv, envp, flags, parent, in, out, err, ex[1]);
    if (flags & KUBE_OWN_PGRP)
        setpgid(pid, pid); /* also here: a kill of the group right after fork must reach it */
    fd_close(&ex[1]);
    int e = 0;
    ssize_t got;
    do
        got = read(ex[0], &e, sizeof(e));
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof(e)) {
        waitpid(pid, NULL, 0);
        spawn_error(k, e, true, errbuf, errlen);
        rc = -ENOEXEC;
        goto out;
    }
    p->pid = pid;
    p->own_pgrp = (flags & KUBE_OWN_PGRP) != 0;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->err_fd = err[0];
    in[1] = out[0] = err[0] = -1;
    rc = 0;
out:
    if (envp != environ)
        free(envp);
    fd_close(&in[0]);
    fd_close(&in[1]);
    fd_close(&out[0]);
    fd_close(&out[1]);
    fd_close(&err[0]);
    fd_close(&err[1]);
    fd_close(&ex[0]);
    fd_close(&ex[1]);
    return rc;
}

void kube_proc_kill(const kube_proc *p, int sig)
{
    if (p->pid <= 0)
        return;
    if (!p->own_pgrp || kill(-p->pid, sig) < 0)
        kill(p->pid, sig);
}

void kube_proc_close(kube_proc *p)
{
    fd_close(&p->in_fd);
    fd_close(&p->out_fd);
    fd_close(&p->err_fd);
}

int kube_wait(pid_t pid)
{
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 1;
}

/* The errno for a kubectl failure kerr recognised. */
static int kerr_errno(kerr_kind kind)
{
    switch (kind) {
    case KERR_NOT_FOUND: return -ENOENT;
    case KERR_CONFLICT: return -EAGAIN;
    case KERR_RBAC:
    case KERR_UNAUTHORIZED: return -EACCES;
    case KERR_UNREACHABLE:
    case KERR_KUBELET_UNREACHABLE: return -EHOSTUNREACH;
    default: return -EIO;
    }
}

/* Feeds in to the child and collects its stdout and stderr until both end or the deadline. */
/* kube_stop_all's: an eventfd that becomes readable for good. */
static int stop_efd = -1;
static atomic_bool stopped;
static pthread_once_t stop_once = PTHREAD_ONCE_INIT;

static void stop_init(void)
{
    stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

int kube_stop_fd(void)
{
    pthread_once(&stop_once, stop_init);
    return stop_efd;
}

void kube_stop_all(void)
{
    atomic_store(&stopped, true);
    uint64_t one = 1;
    int fd = kube_stop_fd();
    if (fd >= 0)
        (void)!write(fd, &one, sizeof(one));
}

bool kube_stopping(void)
{
    return atomic_load(&stopped);
}

bool kube_sleep_ms(int ms)
{
    struct pollfd p = {kube_stop_fd(), POLLIN, 0};
    if (!kube_stopping())
        poll(&p, 1, ms);
    return !kube_stopping();
}

static int pump(kube_proc *p, const char *in, size_t in_len, int64_t timeout_ms, dynbuf *out, dynbuf *err)
{
    size_t in_off = 0;
    if (!in || in_len == 0)
        fd_close(&p->in_fd);
    else
        fcntl(p->in_fd, F_SETFL, O_NONBLOCK);
    int64_t deadline = timeout_ms > 0 ? time_now_ms() + timeout_ms : -1;
    while (p->out_fd >= 0 || p->err_fd >= 0) {
        struct pollfd pf[4] = {
            {p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}, {p->in_fd, POLLOUT, 0}, {kube_stop_fd(), POLLIN, 0}};
        if (kube_stopping())
            return -ECANCELED;
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - time_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            wait = (int)left;
        }
        int n = poll(pf, 4, wait);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n <= 0)
            continue;
        if (pf[0].revents && dynbuf_read(out, p->out_fd) <= 0)
            fd_close(&p->out_fd);
        if (pf[1].revents && dynbuf_read(err, p->err_fd) <= 0)
            fd_close(&p->err_fd);
        if (pf[2].revents) {
            ssize_t w = write(p->in_fd, in + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == in_len)
                fd_close(&p->in_fd);
        }
    }
    return 0;
}

int kube_start(const kube *k, const char *const *args, kube_proc *p, char *err, size_t errlen)
{
    return kube_spawn(k, args, KUBE_PIPE_IN | KUBE_PIPE_OUT | KUBE_PIPE_ERR | KUBE_OWN_PGRP, p, err, errlen);
}

void kube_abandon(kube_proc *p)
{
    if (p->pid > 0) {
        kube_proc_kill(p, SIGKILL);
        kube_wait(p->pid);
    }
    kube_proc_close(p);
    p->pid = -1;
}

int kube_run(const kube *k, const char *what, const char *const *args, const char *in, size_t in_len,
             int64_t timeout_ms, kube_result *r, char *err, size_t errlen)
{
    kube_proc p;
    memset(r, 0, sizeof(*r));
    int rc = kube_start(k, args, &p, err, errlen);
    if (rc < 0)
        return rc;
    return kube_finish(k, what, &p, in, in_len, timeout_ms, r, err, errlen);
}

int kube_finish(const kube *k, const char *what, kube_proc *p, const char *in, size_t in_len, int64_t timeout_ms,
                kube_result *r, char *err, size_t errlen)
{
    dynbuf ob = {0}, eb = {0};
    memset(r, 0, sizeof(*r));
    int rc = pump(p, in, in_len, timeout_ms, &ob, &eb);
    if (rc < 0)
        kube_proc_kill(p, SIGKILL);
    int st = kube_wait(p->pid);
    kube_proc_close(p);
    p->pid = -1;
    r->out_len = ob.len;
    r->out = dynbuf_steal(&ob);
    r->err_len = eb.len;
    r->err = dynbuf_steal(&eb);
    r->status = st < 0 ? 1 : st;
    if (k->verbose > 1 && r->err_len)
        fprintf(stderr, "  kubectl stderr: %s", r->err);
    if (!r->out || !r->err) {
        kube_result_free(r);
        rc = -ENOMEM;
        snprintf(err, errlen, "cannot %s: out of memory reading kubectl's output", what);
    } else if (rc == -ECANCELED) {
        snprintf(err, errlen, "cannot %s: stopped", what);
    } else if (rc == -ETIMEDOUT) {
        snprintf(err, errlen,
                 "cannot %s: kubectl did not answer within %gs; is the cluster reachable? (raise --timeout if it "
                 "is slow)",
                 what, (double)timeout_ms / 1000);
    } else if (rc < 0) {
        snprintf(err, errlen, "cannot %s: waiting for kubectl failed: %s", what, strerror(-rc));
    } else if (r->status != 0 && !*r->err) {
        snprintf(err, errlen, "cannot %s: kubectl exited with status %d and no message", what, r->status);
        rc = -EIO;
    } else if (r->status != 0) {
        rc = kerr_errno(kerr_explain(what, r->err, k->ns, err, errlen));
    }
    return rc;
}

void kube_result_free(kube_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

/* Inside a pod, a kubeconfig that names no namespace (or none at all) gives
 * kubectl the pod's: client-go's in-cluster rule when the API server's
 * address is in the environment and a service account token is mounted
 * ($POD_NAMESPACE, else the token's namespace file, else "default").
 * false outside a pod. */
static bool in_cluster_ns(char *ns, size_t n)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *env = getenv("POD_NAMESPACE");
    struct stat st;
    char buf[256];
    if (!host || !*host || !port || !*port || stat(KUBE_SA_DIR "/token", &st) < 0 || S_ISDIR(st.st_mode))
        return false;
    if (env && *env) {
        snprintf(ns, n, "%s", env);
        return true;
    }
    int fd = open(KUBE_SA_DIR "/namespace", O_RDONLY | O_CLOEXEC);
    ssize_t len = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    buf[len > 0 ? len : 0] = '\0';
    const char *b = buf + strspn(buf, " \t\r\n");
    size_t bl = strcspn(b, " \t\r\n");
    if (bl)
        snprintf(ns, n, "%.*s", (int)bl, b);
    return true;
}

void kube_context_ns(const kube *k, char *ns, size_t n)
{
    const char *args[] = {"config", "view", "--minify", "-o", "jsonpath={..namespace}", NULL};
    kube_result r;
    char err[512];
    snprintf(ns, n, "default");
    if (kube_run(k, "read the context's namespace", args, NULL, 0, 10000, &r, err, sizeof err) == 0 && r.out &&
        r.out[0] && !strchr(r.out, ' '))
        snprintf(ns, n, "%s", r.out);
    else
        in_cluster_ns(ns, n);
    kube_result_free(&r);
}

void kube_first_line(const char *s, char *buf, size_t n)
{
    if (!n)
        return;
    while (*s == ' ' || *s == '\n' || *s == '\t')
        s++;
    size_t len = strcspn(s, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
}
