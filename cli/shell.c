#include "shell-internal.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

int shell_main(const flags *f, const kube *k)
{
    session s;
    char err[2048];
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_SHELL, false);
    if (session_open(k, &so, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return so.pod || so.selector ? 1 : 2;
    }
    const char *args[64];
    int n = 0;
    bool tty = isatty(0);
    args[n++] = "exec";
    args[n++] = tty ? "-it" : "-i";
    args[n++] = s.pod.name;
    args[n++] = "-c";
    args[n++] = s.mgr.container;
    args[n++] = "--";
    args[n++] = ENTER_PATH;
    n += shell_target_args(s.pod.share_pid, s.target_id, args + n);
    args[n++] = ASH_PATH;
    int code = 1;
    if (f->nrest > 64 - n - 1) {
        fprintf(stderr, "error: too many shell arguments (%d); pass a script with -c instead\n", f->nrest);
        goto out;
    }
    for (int i = 0; i < f->nrest; i++)
        args[n++] = f->rest[i];
    args[n] = NULL;
    /* like system(): the terminal's signals are for the remote shell */
    struct sigaction ign = {.sa_handler = SIG_IGN}, oint, oquit;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, &oint);
    sigaction(SIGQUIT, &ign, &oquit);
    kube_proc p;
    int rc = kube_spawn(&s.k, args, 0, &p);
    if (rc < 0) {
        kube_strerror(&s.k, rc, err, sizeof(err));
        fprintf(stderr, "error: %s\n", err);
    } else {
        code = kube_wait(p.pid);
        if (code < 0)
            code = 1;
    }
    sigaction(SIGINT, &oint, NULL);
    sigaction(SIGQUIT, &oquit, NULL);
out:
    session_close(&s);
    return code;
}
