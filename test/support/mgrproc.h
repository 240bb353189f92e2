/* mgrproc — starts a kdiag-manager child for tests and benchmarks and reads
 * its gRPC port and token from the first lines it prints. */
#ifndef KDIAG_MGRPROC_H
#define KDIAG_MGRPROC_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char token[128];
    int out_fd; /* its stdout; kept open so its later lines have a reader */
} mgrproc;

/* Runs `path` (no arguments), killed with the caller (PDEATHSIG). 0, or a
 * negative errno: -ETIMEDOUT when port and token did not come within 10 s. */
int mgrproc_start(const char *path, mgrproc *m);
/* SIGTERM, wait, close. Returns its wait status (or -errno). */
int mgrproc_stop(mgrproc *m);

#endif
