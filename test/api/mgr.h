/* mgr — start and stop the real kdiag-manager binary for tests. */
#ifndef KDIAG_TEST_MGR_H
#define KDIAG_TEST_MGR_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;      /* the manager (signals, /proc) */
    pid_t wait_pid; /* what to wait for: the manager or its unshare wrapper */
    int port, tunnel_port;
    char token[64];
    char target[64];
    char lines[4][256]; /* stdout lines as printed */
    char text[1024];    /* the same, joined with their newlines */
    int n_lines;
    int out_fd; /* rest of stdout */
} mgr_proc;

/* Starts KDIAG_MANAGER_PATH with args (NULL-terminated, may be NULL) and
 * reads its start-up lines (Listening, Token unless --no-auth, Tunnel when
 * built with redirect, Proof when CONTRACT_SECRET_ENV is set) with
 * api/contract's parser. 0, or -1 when it did not print them within 10 s. */
int mgr_start(mgr_proc *m, const char *const *args);
/* The same with the manager in fresh PID and mount namespaces (its own
 * /proc), so Ps lists only what the test starts there: run through
 * util-linux unshare --pid --fork --mount-proc --kill-child. */
int mgr_start_isolated(mgr_proc *m, const char *const *args);
/* Sends sig, waits up to timeout_ms, then SIGKILLs. Returns the wait status. */
int mgr_stop(mgr_proc *m, int sig, int timeout_ms);
/* Runs the manager with args to completion (it must exit within 10 s);
 * returns the exit code, stderr in err. */
int mgr_run(const char *const *args, char *err, size_t errsz);

#endif
