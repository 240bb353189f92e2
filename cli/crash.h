/* crash — a report on stderr when kubectl-diag dies of a fatal signal. */
#ifndef KDIAG_CLI_CRASH_H
#define KDIAG_CLI_CRASH_H

/* From now on SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT print one line
 * saying what happened and the stack of the thread that took the signal,
 * then take their default action: the exit status and any core dump stay
 * what they would have been. Not in sanitizer builds, whose own report is
 * better. */
void crash_report_init(void);

#endif
