#include "mgr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/time-util.h"
#include "contract.h"

static pid_t spawn_argv(const char **argv, int *out, int *err);

static pid_t spawn(const char *const *args, int *out, int *err)
{
    const char *argv[16] = {KDIAG_MANAGER_PATH};
    int n = 1;
    for (; args && args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    return spawn_argv(argv, out, err);
}

static pid_t spawn_argv(const char **argv, int *out, int *err)
{
    int po[2], pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) < 0 || (err && pipe2(pe, O_CLOEXEC) < 0))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        dup2(po[1], 1);
        if (err)
            dup2(pe[1], 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    *out = po[0];
    if (err) {
        close(pe[1]);
        *err = pe[0];
    }
    return pid;
}

/* Reads one line from fd (byte by byte: the rest stays in the pipe). */
static int read_line(int fd, char *buf, size_t sz, long long deadline)
{
    size_t n = 0;
    while (n + 1 < sz) {
        struct pollfd p = {fd, POLLIN, 0};
        long long left = deadline - time_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            return -1;
        char c;
        if (read(fd, &c, 1) != 1)
            return -1;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return 0;
}

static int start(mgr_proc *m, const char *const *args, bool isolated)
{
    memset(m, 0, sizeof *m);
    bool no_auth = false;
    for (int i = 0; args && args[i]; i++)
        no_auth |= !strcmp(args[i], "--no-auth");
    /* Listening, Token, Tunnel, Proof */
    int want = 1 + !no_auth + 1 + contract_secret_valid(getenv(CONTRACT_SECRET_ENV));
    if (isolated) {
        const char *argv[20] = {"unshare", "--pid", "--fork", "--mount-proc", "--kill-child", KDIAG_MANAGER_PATH};
        for (int i = 0; args && args[i] && i < 13; i++)
            argv[6 + i] = args[i];
        m->wait_pid = spawn_argv(argv, &m->out_fd, NULL);
    } else {
        m->wait_pid = spawn(args, &m->out_fd, NULL);
    }
    if (m->wait_pid < 0)
        return -1;
    m->pid = m->wait_pid;
    long long deadline = time_now_ms() + 10000;
    size_t tn = 0;
    for (; m->n_lines < want; m->n_lines++) {
        if (read_line(m->out_fd, m->lines[m->n_lines], sizeof m->lines[0], deadline) < 0)
            return -1;
        tn += (size_t)snprintf(m->text + tn, sizeof m->text - tn, "%s\n", m->lines[m->n_lines]);
    }
    contract_banner b;
    contract_find_result r;
    contract_banner_find(m->text, tn, NULL, &b, &r);
    if (!r.found)
        return -1;
    m->port = b.grpc_port;
    snprintf(m->target, sizeof m->target, "127.0.0.1:%d", m->port);
    if (isolated) { /* the manager is unshare's only child */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)m->wait_pid, (int)m->wait_pid);
        FILE *f = fopen(path, "r");
        int child = 0;
        if (!f || fscanf(f, "%d", &child) != 1)
            child = 0;
        if (f)
            fclose(f);
        if (child <= 0)
            return -1;
        m->pid = child;
    }
    snprintf(m->token, sizeof m->token, "%s", b.token);
    m->tunnel_port = b.tunnel_port;
    return (!no_auth && !m->token[0]) || !m->tunnel_port ? -1 : 0;
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    long long deadline = time_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (time_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(10000);
    }
}

int mgr_start(mgr_proc *m, const char *const *args)
{
    return start(m, args, false);
}

int mgr_start_isolated(mgr_proc *m, const char *const *args)
{
    return start(m, args, true);
}

int mgr_stop(mgr_proc *m, int sig, int timeout_ms)
{
    if (m->pid <= 0)
        return -1;
    kill(m->pid, sig);
    int st = wait_exit(m->wait_pid, timeout_ms);
    close(m->out_fd);
    m->pid = 0;
    return st;
}

int mgr_run(const char *const *args, char *err, size_t errsz)
{
    int out, efd;
    pid_t pid = spawn(args, &out, &efd);
    if (pid < 0)
        return -1;
    size_t n = 0;
    long long deadline = time_now_ms() + 10000;
    for (;;) {
        struct pollfd p = {efd, POLLIN, 0};
        long long left = deadline - time_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            break;
        ssize_t r = read(efd, err + n, errsz - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    err[n] = 0;
    close(out);
    close(efd);
    int st = wait_exit(pid, 10000);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
