/* kube — runs the kubectl binary as a child (argv, never a shell).
 *
 * Every invocation gets the user's connection flags (--kubeconfig, --context,
 * --namespace) so kubeconfigs, contexts and auth plugins work as with kubectl
 * itself. */
#ifndef KDIAG_CLI_KUBE_H
#define KDIAG_CLI_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    const char *kubectl; /* path or name looked up in PATH */
    const char *kubeconfig;
    const char *context;
    const char *ns;
    int verbose;
} kube;

typedef struct {
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
    int status; /* exit code; 128+N when killed by signal N */
} kube_result;

/* Runs kubectl ARGS... to completion, feeding in (may be NULL) on stdin and
 * capturing stdout and stderr (NUL-terminated). timeout_ms <= 0: none.
 * 0 when kubectl ran (whatever its exit status), -ENOENT/-EACCES when it
 * cannot be executed, -ETIMEDOUT when killed at the deadline. */
int kube_run(const kube *k, const char *const *args, const char *in, size_t in_len, int64_t timeout_ms,
             kube_result *r);
void kube_result_free(kube_result *r);

enum {
    KUBE_PIPE_IN = 1,    /* give the caller a pipe to the child's stdin */
    KUBE_PIPE_OUT = 2,   /* ... from its stdout */
    KUBE_PIPE_ERR = 4,   /* ... from its stderr */
    KUBE_OWN_PGRP = 8,   /* own process group: the terminal's Ctrl-C does not reach it */
    KUBE_ERR_TO_OUT = 16 /* stderr joins the stdout pipe */
};

typedef struct {
    pid_t pid;
    int in_fd, out_fd, err_fd; /* -1 when not piped; owned by the caller */
} kube_proc;

/* Starts kubectl ARGS... without waiting. The child gets SIGTERM if this
 * thread's process dies. Same errors as kube_run. */
int kube_spawn(const kube *k, const char *const *args, unsigned flags, kube_proc *p);
/* Closes the proc's fds (not waiting). */
void kube_proc_close(kube_proc *p);
/* waitpid wrapper: exit code, or 128+signal. */
int kube_wait(pid_t pid);

/* kubectl's client version (major*100+minor, e.g. 132), or negative errno. */
int kube_client_version(const kube *k, int *version);

/* Message for a negative return of kube_run/kube_spawn (kubectl missing, not
 * executable, timed out). */
void kube_strerror(const kube *k, int rc, char *buf, size_t n);

/* First line of s (for messages), trimmed, at most n-1 bytes. */
void kube_first_line(const char *s, char *buf, size_t n);

#endif
