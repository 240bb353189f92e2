/* procfs — what Ps shows about a process, read from a proc filesystem.
 *
 * Every function takes the proc root it reads ("/proc", or a fixture tree in
 * tests). A process that exits while it is read reports -ENOENT: callers skip
 * it, it is never an error. */
#ifndef KDIAG_PROCFS_H
#define KDIAG_PROCFS_H

#include <stddef.h>
#include <stdint.h>

/* Longest cmdline kept (bytes); longer ones are cut, so that a response stays
 * small even with thousands of processes. */
#define PROCFS_CMDLINE_MAX 16384

typedef struct {
    int pid;
    int ppid;
    int sid;       /* session id */
    char name[64]; /* comm, as in /proc/PID/stat */
    char state;    /* R, S, D, Z, ... */
    uint32_t uid;  /* real uid */
    uint64_t rss_bytes;
    uint64_t start_time_unix_ms;
    char *cmdline; /* argv joined by spaces; malloc'd, never NULL after procfs_read */
} procfs_proc;

typedef struct procfs procfs;

/* Called for each socket among a process's open files; returns 0, or a
 * negative errno that stops the scan and is returned by procfs_read. */
typedef int (*procfs_sock_fn)(uint64_t inode, void *ud);

/* Opens the proc root and reads the boot time (root/stat "btime"). */
int procfs_open(const char *root, procfs **out);
void procfs_close(procfs *p);

/* The pid "self" resolves to in this proc root, or -ENOENT when the caller is
 * not visible there (another PID namespace's proc). */
int procfs_self_pid(const procfs *p);

/* Numeric entries of the root, ascending. *pids is malloc'd. */
int procfs_list_pids(const procfs *p, int **pids, size_t *n);

/* Reads pid's stat, status and cmdline into out and calls on_sock (may be
 * NULL) for every socket in its fd directory. Returns 0, -ENOENT when the
 * process is gone (or its stat/status is missing), -EBADMSG for unparsable
 * files, -ENOMEM. A missing cmdline reads as empty; an unreadable fd directory
 * (a zombie's, or no permission) as no sockets. On error out holds nothing to free. */
int procfs_read(const procfs *p, int pid, procfs_proc *out, procfs_sock_fn on_sock, void *ud);
void procfs_proc_free(procfs_proc *proc);

/* Only pid's stat: the fields of out that come from it (pid, ppid, sid,
 * name, state, rss, start time); no uid, cmdline NULL. For a walk that needs
 * no more, such as the process tree. Returns 0, -ENOENT, -EBADMSG. */
int procfs_read_stat(const procfs *p, int pid, procfs_proc *out);

#endif
