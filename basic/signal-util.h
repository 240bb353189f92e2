/* signal-util — which thread gets a signal.
 *
 * The pattern throughout: the stop signals (SIGINT from Ctrl-C, SIGTERM from
 * the kubelet or a supervisor, SIGHUP from a closed terminal or ssh session)
 * are blocked before any thread starts, so every
 * thread inherits the block, and one thread takes them with sigwait or a
 * signalfd. Worker threads block them (or everything) too; a child process
 * clears the mask before exec, since the mask survives exec. */
#ifndef KDIAG_BASIC_SIGNAL_UTIL_H
#define KDIAG_BASIC_SIGNAL_UTIL_H

#include <signal.h>

/* Blocks the signals listed (ended by -1) in the calling thread and fills set
 * (may be NULL) with them, for sigwait or signalfd. 0 or -errno (-EINVAL for
 * a number that is not a signal; nothing is blocked then). */
int sig_block(sigset_t *set, ...);

/* sig_block(set, SIGINT, SIGTERM, SIGHUP, SIGQUIT, -1): the stop signals.
 * Ctrl-\ is one too: its default end, a core dump, would leave what a
 * command cleans up on a stop (cp's and capture's temporary files). */
int sig_block_stop(sigset_t *set);

/* Blocks every signal in the calling thread: a worker whose signals belong to
 * the main thread (a SIGPIPE raised by a write to a dead socket then stays
 * pending instead of killing the process). 0 or -errno. */
int sig_block_all(void);

/* Unblocks everything: for a child between fork and exec (async-signal-safe). */
int sig_unblock_all(void);

#endif
