#include "shell-internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "exitcode.h"
#include "session.h"

#define ENTER_PATH "/usr/local/bin/enter"
#define ASH_PATH "/usr/local/bin/ash"

int shell_target_args(bool share_pid, const char *container_id, const char **argv)
{
    if (share_pid && container_id && *container_id) {
        argv[0] = "--container-id";
        argv[1] = container_id;
        return 2;
    }
    argv[0] = "1";
    return 1;
}

/* kubectl exec -i[t] pod/P -c MANAGER -- enter TARGET ash ARGS...: args[] gets at most max-1 words. */
static int exec_args(const flags *f, const session *s, const char *pod, const char **args, int max, char *err,
                     size_t errlen)
{
    int n = 0;
    args[n++] = "exec";
    args[n++] = isatty(0) ? "-it" : "-i";
    args[n++] = pod;
    args[n++] = "-c";
    args[n++] = s->mgr.container;
    args[n++] = "--";
    args[n++] = ENTER_PATH;
    n += shell_target_args(s->pod.share_pid, s->target_id, args + n);
    args[n++] = ASH_PATH;
    if (f->nrest > max - n - 1) {
        snprintf(err, errlen, "too many shell arguments (%d); pass a script with -c instead", f->nrest);
        return -E2BIG;
    }
    for (int i = 0; i < f->nrest; i++)
        args[n++] = f->rest[i];
    args[n] = NULL;
    return 0;
}

/* Runs kubectl in the foreground; like system(), the terminal's signals are for the remote shell. */
static int run_foreground(const kube *k, const char *const *args, int *code, char *err, size_t errlen)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, oint, oquit;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, &oint);
    sigaction(SIGQUIT, &ign, &oquit);
    kube_proc p;
    int rc = kube_spawn(k, args, 0, &p, err, errlen);
    if (rc == 0) {
        *code = kube_wait(p.pid);
        if (*code < 0)
            *code = EXITCODE_FAILURE;
    }
    sigaction(SIGINT, &oint, NULL);
    sigaction(SIGQUIT, &oquit, NULL);
    return rc;
}

int shell_main(const flags *f, const kube *k)
{
    session s;
    char err[2048] = "", pod[300];
    const char *args[64];
    int code = EXITCODE_FAILURE;
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_SHELL, false);
    int rc = session_open(k, &so, &s, err, sizeof(err));
    if (rc < 0)
        return exitcode_report(stderr, rc, err);
    snprintf(pod, sizeof(pod), "pod/%s", s.pod.name);
    rc = exec_args(f, &s, pod, args, 64, err, sizeof(err));
    if (rc == 0)
        rc = run_foreground(&s.k, args, &code, err, sizeof(err));
    session_close(&s);
    return rc < 0 ? exitcode_report(stderr, rc, err) : code;
}
