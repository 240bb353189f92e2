/* ps — the process listing behind the Ps call: /proc joined with sock_diag. */
#ifndef KDIAG_PS_H
#define KDIAG_PS_H

#include <stddef.h>

#include "procfs.h"
#include "sockdiag.h"

typedef struct {
    procfs_proc info;
    sockdiag_sock *socks; /* TCP LISTEN and bound UDP sockets it holds, each once */
    size_t n_socks;
} ps_proc;

typedef struct {
    ps_proc *procs; /* ascending pid */
    size_t n;
} ps_list;

typedef struct {
    const char *proc_root; /* NULL = "/proc" */
    int exclude_pid;       /* 0 = the caller itself, as proc_root numbers it; -1 = none */
} ps_opts;

/* Lists every process in opts->proc_root except the excluded one, with the
 * sockets of the caller's network namespace each holds. Processes that exit
 * during the scan are left out. opts may be NULL. */
int ps_collect(const ps_opts *opts, ps_list *out);
void ps_list_free(ps_list *l);

#endif
