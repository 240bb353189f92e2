/* tshell — shell commands for test set-up and clean-up. */
#ifndef KDIAG_TEST_TSHELL_H
#define KDIAG_TEST_TSHELL_H

/* Runs the formatted command with sh -c: its system() status (0 when it
 * exited 0). Any other result is also told on stderr with the command. */
int tshell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
