/* exitcode — the process exit code of a command, decided in one place.
 *
 * Functions return 0 or a negative errno and fill the caller's message; the
 * command hands both to exitcode_report at its end:
 *   0  ok (also after Ctrl-C)
 *   2  usage error: -EINVAL (bad flags, no pod named, ...)
 *   1  any other failure: the message says what to do
 *  130 (128 + SIGINT) shell/exec: a second Ctrl-C gave up on a program that
 *      ignored the first; 143 and 129 (SIGTERM, SIGHUP) on a terminal that
 *      was raw for the program: the call was ended
 *  141 (128 + SIGPIPE) shell/exec/logs: the reader of our output went (SIGPIPE
 *      is ignored, so the write fails instead), silently
 * shell and `logs -- CMD` return the remote shell's / the command's code
 * instead of a result of their own. */
#ifndef KDIAG_CLI_EXITCODE_H
#define KDIAG_CLI_EXITCODE_H

#include <stdio.h>

enum { EXITCODE_OK = 0, EXITCODE_FAILURE = 1, EXITCODE_USAGE = 2, EXITCODE_PIPE = 141 };

/* What a shell says of a program that sig ended: 128 + sig. */
#define EXITCODE_SIGNALED(sig) (128 + (sig))

/* The exit code for rc (0 or a negative errno). */
int exitcode_of(int rc);
/* Prints "error: MSG" on out when rc < 0 and returns exitcode_of(rc). Debug
 * builds (NDEBUG unset: Debug and the ASan build) assert that a failure comes
 * with a message, so no path can print an empty or uninitialised one. */
int exitcode_report(FILE *out, int rc, const char *err);

#endif
