/* nsjoin: move the calling (single-threaded) process into the namespaces and
 * root of another process: pidfd + setns when the kernel has them (5.8+),
 * /proc/PID/ns/NS otherwise. Every handle is opened before any namespace is
 * joined, because after joining the target's mount namespace our /proc no
 * longer shows the same PIDs. */
#ifndef KDIAG_SCRATCH_NSJOIN_H
#define KDIAG_SCRATCH_NSJOIN_H

#include <sys/types.h>

enum { NSJOIN_NS_COUNT = 6 };

struct nsjoin {
    pid_t pid;
    int pidfd;                 /* -1 when pidfd_open is unavailable */
    int nsfd[NSJOIN_NS_COUNT]; /* -1: kernel lacks it, or we already share it */
    int rootfd;                /* /proc/PID/root */
    int cwdfd;                 /* /proc/PID/cwd, -1 if unreadable (then "/") */
    int used_pidfd;            /* set by nsjoin_enter: setns(pidfd) did the work */
};

/* Where a failure happened, so the edge can name the cause and the fix. */
enum nsjoin_step {
    NSJOIN_STEP_NONE,
    NSJOIN_STEP_PROCESS, /* the process is gone */
    NSJOIN_STEP_ROOT,    /* opening /proc/PID/root (ptrace access) */
    NSJOIN_STEP_NSOPEN,  /* opening /proc/PID/ns/<ns> (ptrace access) */
    NSJOIN_STEP_SETNS,   /* setns into <ns> */
    NSJOIN_STEP_CHROOT,  /* chroot into the target's root */
};

struct nsjoin_err {
    enum nsjoin_step step;
    const char *ns; /* "mnt", "pid", ... for NSOPEN / SETNS */
};

void nsjoin_init(struct nsjoin *j);

/* Opens the target's pidfd, namespace fds, root and cwd. 0 / -errno. */
int nsjoin_open(struct nsjoin *j, const char *proc_root, pid_t pid, struct nsjoin_err *err);

/* Joins every namespace that differs from ours, then chroots into the target's
 * root and changes to its cwd. Children forked afterwards live in the target's
 * PID namespace. 0 / -errno. */
int nsjoin_enter(struct nsjoin *j, struct nsjoin_err *err);

void nsjoin_close(struct nsjoin *j);

/* A pty of our own devpts (kubectl exec -it into this container, or one the
 * manager made) is not under the target's /dev/pts: tty(1), ttyname(3) and a
 * shell's job control would say "not a tty". nsjoin_pts_clone, before
 * nsjoin_enter, takes a detached copy of our /dev/pts (an fd, or -errno: the
 * kernel lacks open_tree). nsjoin_pts_attach, after it, puts that copy over
 * the target's /dev/pts in a private copy of the target's mount namespace
 * (the target never sees it) and closes ptsfd; 0, or -errno with *what naming
 * the step that failed. Only system calls: safe in a child forked from a
 * multi-threaded process, as nsjoin_enter is. */
int nsjoin_pts_clone(void);
int nsjoin_pts_attach(int ptsfd, const char **what);

#endif
