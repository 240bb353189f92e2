#include "mgrproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "contract.h"

int mgrproc_start(const char *path, mgrproc *m)
{
    int out[2];
    *m = (mgrproc){.pid = -1, .out_fd = -1};
    if (pipe2(out, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(out[0]);
        close(out[1]);
        return e;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    m->pid = pid;
    m->out_fd = out[0];

    char buf[512];
    size_t n = 0;
    contract_banner b = {0};
    while (!b.token[0] && n < sizeof(buf) - 1) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        if (poll(&pfd, 1, 10000) != 1)
            break;
        ssize_t r = read(out[0], buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        contract_find_result fr;
        contract_banner_find(buf, n, NULL, &b, &fr);
    }
    m->port = b.grpc_port;
    snprintf(m->token, sizeof m->token, "%s", b.token);
    if (!m->port || !m->token[0]) {
        fprintf(stderr, "mgrproc: %s printed no port/token: \"%.*s\"\n", path, (int)n, buf);
        mgrproc_stop(m);
        return -ETIMEDOUT;
    }
    return 0;
}

int mgrproc_stop(mgrproc *m)
{
    int status = -ECHILD;
    if (m->pid > 0) {
        kill(m->pid, SIGTERM);
        if (waitpid(m->pid, &status, 0) < 0)
            status = -errno;
        m->pid = -1;
    }
    if (m->out_fd >= 0)
        close(m->out_fd);
    m->out_fd = -1;
    return status;
}
