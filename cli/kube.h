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
    char *const *conn; /* kubectl's connection flags as given (--as=…, --server=…), NULL-terminated, or NULL */
} kube;

typedef struct {
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
    int status; /* exit code; 128+N when killed by signal N */
} kube_result;

/* Runs kubectl ARGS... to completion, feeding in (may be NULL) on stdin and
 * capturing stdout and stderr (NUL-terminated) into r. timeout_ms <= 0: none.
 * what names the action for messages ("get pod/x").
 * 0 when kubectl exited 0. Otherwise a negative errno, and err says what
 * failed and what to do (kerr_explain of kubectl's stderr):
 *   -ENOEXEC     kubectl cannot be executed (missing, not executable)
 *   -ETIMEDOUT   killed at the deadline
 *   -ENOENT      kubectl said the object is not found
 *   -EAGAIN      a conflict (the object changed meanwhile): try again
 *   -EACCES      RBAC denial or rejected credentials
 *   -EHOSTUNREACH the API server is not reachable
 *   -EIO         any other kubectl failure
 * r is filled (or zeroed) whatever the result: free it with kube_result_free. */
int kube_run(const kube *k, const char *what, const char *const *args, const char *in, size_t in_len,
             int64_t timeout_ms, kube_result *r, char *err, size_t errlen);
void kube_result_free(kube_result *r);

enum {
    KUBE_PIPE_IN = 1,    /* give the caller a pipe to the child's stdin */
    KUBE_PIPE_OUT = 2,   /* ... from its stdout */
    KUBE_PIPE_ERR = 4,   /* ... from its stderr */
    KUBE_OWN_PGRP = 8,   /* own process group: the terminal's Ctrl-C does not reach it, and
                          * kube_proc_kill reaches the whole group (kubectl behind a wrapper) */
    KUBE_ERR_TO_OUT = 16 /* stderr joins the stdout pipe */
};

typedef struct {
    pid_t pid;                 /* -1 when none (kube_finish and kube_abandon set it) */
    int in_fd, out_fd, err_fd; /* -1 when not piped; owned by the caller */
    bool own_pgrp;             /* pid leads its own process group */
} kube_proc;

/* Starts kubectl ARGS... without waiting. The child gets SIGTERM if this
 * thread's process dies. 0, or a negative errno (-ENOEXEC: kubectl cannot be
 * executed) with the message in err. */
int kube_spawn(const kube *k, const char *const *args, unsigned flags, kube_proc *p, char *err, size_t errlen);
/* kube_spawn with env's NAME=VALUE strings (NULL-terminated) in the child's
 * environment, in place of the variables of those names. */
int kube_spawn_env(const kube *k, const char *const *args, const char *const *env, unsigned flags, kube_proc *p,
                   char *err, size_t errlen);
/* Sends sig to the child, and to its whole process group when it has its own
 * (a wrapper script's kubectl grandchildren too). No-op when p->pid <= 0. */
void kube_proc_kill(const kube_proc *p, int sig);
/* Closes the proc's fds (not waiting). */
void kube_proc_close(kube_proc *p);
/* waitpid wrapper: exit code, or 128+signal. */
int kube_wait(pid_t pid);

/* kube_run in two steps, so that kubectl calls that do not depend on each
 * other overlap: kube_start spawns kubectl ARGS... (0, or as kube_spawn);
 * kube_finish feeds in, collects and waits as kube_run does; kube_abandon
 * kills and reaps instead. Every started proc ends in one of the two.
 * Until then the output waits in the pipes: for small outputs only
 * (a pipe holds 64 KiB). */
int kube_start(const kube *k, const char *const *args, kube_proc *p, char *err, size_t errlen);
int kube_finish(const kube *k, const char *what, kube_proc *p, const char *in, size_t in_len, int64_t timeout_ms,
                kube_result *r, char *err, size_t errlen);
void kube_abandon(kube_proc *p);

/* The process is stopping (a stop signal): kubectl calls still running and
 * every later one end at once with -ECANCELED ("stopped"), and waits in
 * kube_sleep_ms end, so that threads blocked in them can be joined. Any
 * thread, once; for good. */
void kube_stop_all(void);
bool kube_stopping(void);
/* Readable once kube_stop_all ran: for the poll loops of other modules. */
int kube_stop_fd(void);
/* Sleeps ms unless stopping; false when stopping (before or during). */
bool kube_sleep_ms(int ms);

/* Where a pod finds its service account's token and namespace. */
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* The namespace kubectl uses without -n (n bytes at most): the current
 * context's (k's --kubeconfig and --context), else, inside a pod, the pod's
 * (as kubectl's in-cluster configuration takes it), else "default". Runs
 * `kubectl config view --minify`. */
void kube_context_ns(const kube *k, char *ns, size_t n);

/* First line of s (for messages), trimmed, at most n-1 bytes. */
void kube_first_line(const char *s, char *buf, size_t n);

#endif
