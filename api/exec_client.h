/* exec_client — the client's side of Exec (docs/exec.md), used by the CLI
 * (cli/shell.c: shell and exec) and the Exec tests.
 *
 *   exec_client_start st = {.argv = argv, .argc = 2, .tools = true};
 *   exec_client *ec;
 *   exec_client_new(&ec, cl, &st);
 *   writer thread: exec_client_stdin / _resize / _signal / _stdin_close
 *   reader thread: exec_client_read until the EXEC_CLIENT_EXIT event,
 *                  then exec_client_finish (half-closes, reads the status)
 *
 * One writer and one reader thread at most. Functions return 0 or a negative
 * errno unless they say otherwise.
 *
 * Stdin keeps to a window (docs/exec.md "Flow control"): at most the window
 * sent and not yet taken by the program, as the manager's answers tell, which
 * exec_client_read takes in passing. A writer past the window waits for the
 * reader thread to read them: writing more than the window needs one. */
#ifndef KDIAG_EXEC_CLIENT_H
#define KDIAG_EXEC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contract.h"
#include "rpc.h"

/* An ExecStart (api/kdiag.proto). */
typedef struct {
    const char *const *argv;
    size_t argc;
    const char *const *env; /* NAME=VALUE over the target's environment */
    size_t nenv;
    const char *workdir; /* NULL: the target's cwd */
    bool tty;
    uint32_t rows, cols;
    const char *container_id; /* the target: a container id, */
    uint64_t pid;             /* or a PID; neither: the manager's PID 1 */
    bool tools;               /* argv is a busybox applet of the debug image */
    bool root;                /* as root, not as the target's uid, gid and groups */
    size_t stdin_window;      /* 0: EXEC_CLIENT_WINDOW */
} exec_client_start;

/* Stdin sent and not yet taken by the program, at most: what the manager
 * may hold of one Exec's stdin whatever its HTTP/2 windows grew to (they
 * share its memory quota, docs/rpc.md), and what it queues so that signals
 * go past stdin. Stdin is seldom bulk; this still carries 40 MB/s with a
 * round trip of 100 ms. */
#define EXEC_CLIENT_WINDOW ((size_t)CONTRACT_EXEC_STDIN_WINDOW)

typedef enum { EXEC_CLIENT_STDOUT, EXEC_CLIENT_STDERR, EXEC_CLIENT_EXIT } exec_client_kind;

/* Valid until the next exec_client_read. */
typedef struct {
    exec_client_kind kind;
    const uint8_t *data; /* STDOUT, STDERR */
    size_t len;
    int code;          /* EXIT: exit status, 128+N for signal N, 127/126 when it did not start */
    int signal;        /* EXIT: N when killed by signal N */
    const char *error; /* EXIT: why it did not start, "" when it ran */
} exec_client_event;

typedef struct exec_client exec_client;

/* Opens the call (no deadline) and sends the start message. */
int exec_client_new(exec_client **ret, rpc_client *cl, const exec_client_start *st);
/* Sends buf as stdin (in chunks of CONTRACT_EXEC_CHUNK); blocks while the
 * program does not read (flow control). -EPIPE once the call ended. */
int exec_client_stdin(exec_client *ec, const void *buf, size_t len);
int exec_client_stdin_close(exec_client *ec);
/* Whether exec_client_stdin of one chunk would go without waiting for the
 * window (or fail at once: the call ended). A writer that must stay free to
 * send signals polls exec_client_window_fd instead of stdin while it is not. */
bool exec_client_stdin_ready(exec_client *ec);
/* Readable once the window moved or the call ended since it was last
 * drained (an eventfd: read it, then ask exec_client_stdin_ready again). */
int exec_client_window_fd(exec_client *ec);
int exec_client_resize(exec_client *ec, uint32_t rows, uint32_t cols);
/* A Linux signal number, for the program's (foreground) process group. */
int exec_client_signal(exec_client *ec, int sig);
/* Next event: 0 = an event, 1 = the call ended without an exit (its status
 * in *st: the manager could not start the program, or the call broke),
 * -EBADMSG for an undecodable message. */
int exec_client_read(exec_client *ec, exec_client_event *ev, rpc_status *st);
/* After the exit: half-closes and reads the call's status (0 when OK, else
 * -EPROTO with *st). */
int exec_client_finish(exec_client *ec, rpc_status *st);
/* Thread-safe: ends the call (a writer waiting for the window returns
 * -EPIPE); the manager kills the program and what it started. */
void exec_client_cancel(exec_client *ec);
void exec_client_free(exec_client *ec);

#endif
