/* tmute — a gRPC server whose one bidi method takes every message and never
 * answers: what a client that keeps to a window of its own sends before it
 * waits for answers (CopyTo's and Exec's windows, test_copy and test_exec). */
#ifndef KDIAG_TEST_TMUTE_H
#define KDIAG_TEST_TMUTE_H

#include <stddef.h>

typedef struct tmute tmute;

/* Serves method on 127.0.0.1; *addr receives "127.0.0.1:PORT". 0 or -errno. */
int tmute_start(tmute **ret, const char *method, char *addr, size_t addrlen);
/* The bytes of the messages after each call's first, once nothing more came
 * for half a second (at most 20 s). */
size_t tmute_settled(tmute *m);
/* Stops the server (cancels its calls) and frees it. */
void tmute_free(tmute *m);

#endif
