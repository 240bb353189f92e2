/* nsjoin: joining a target's namespaces and root. */
#include "nsjoin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/mount.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* Join order for the /proc fallback: mnt last, since joining it resets our
 * root and cwd (every fd is already open, so nothing else depends on them);
 * pid only affects children, so its place does not matter. */
static const struct {
    const char *name;
    int flag;
} ns_table[NSJOIN_NS_COUNT] = {
    {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
    {"net", CLONE_NEWNET},       {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},
};

void nsjoin_init(struct nsjoin *j)
{
    j->pid = 0;
    j->pidfd = j->rootfd = j->cwdfd = -1;
    j->used_pidfd = 0;
    for (int i = 0; i < NSJOIN_NS_COUNT; i++)
        j->nsfd[i] = -1;
}

static int same_ns(int fd, const char *name)
{
    char path[64];
    struct stat a, b;

    snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
    if (stat(path, &a) < 0 || fstat(fd, &b) < 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int proc_gone(int err)
{
    return err == ENOENT || err == ESRCH;
}

int nsjoin_open(struct nsjoin *j, const char *proc_root, pid_t pid, struct nsjoin_err *err)
{
    char path[PATH_MAX];

    err->step = NSJOIN_STEP_NONE;
    err->ns = NULL;
    j->pid = pid;
    j->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (j->pidfd < 0 && errno == ESRCH) {
        err->step = NSJOIN_STEP_PROCESS;
        return -ESRCH;
    }
    if (j->pidfd >= 0)
        (void)fcntl(j->pidfd, F_SETFD, FD_CLOEXEC);

    snprintf(path, sizeof(path), "%s/%d/root", proc_root, (int)pid);
    j->rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (j->rootfd < 0) {
        int e = errno;
        err->step = proc_gone(e) ? NSJOIN_STEP_PROCESS : NSJOIN_STEP_ROOT;
        return -e;
    }
    snprintf(path, sizeof(path), "%s/%d/cwd", proc_root, (int)pid);
    j->cwdfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);

    for (int i = 0; i < NSJOIN_NS_COUNT; i++) {
        snprintf(path, sizeof(path), "%s/%d/ns/%s", proc_root, (int)pid, ns_table[i].name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s/%d", proc_root, (int)pid);
            if (e == ENOENT && access(dir, F_OK) == 0)
                continue; /* the kernel lacks this namespace type (cgroup < 4.6) */
            err->step = proc_gone(e) ? NSJOIN_STEP_PROCESS : NSJOIN_STEP_NSOPEN;
            err->ns = ns_table[i].name;
            return -e;
        }
        if (same_ns(fd, ns_table[i].name)) {
            close(fd);
            continue;
        }
        j->nsfd[i] = fd;
    }

    /* The /proc handles above are only trustworthy if the PID was not reused
     * while we opened them: the pidfd pins the original process. */
    if (j->pidfd >= 0 && syscall(SYS_pidfd_send_signal, j->pidfd, 0, NULL, 0) < 0 && errno == ESRCH) {
        err->step = NSJOIN_STEP_PROCESS;
        return -ESRCH;
    }
    return 0;
}

static int enter_with_fds(struct nsjoin *j, struct nsjoin_err *err)
{
    for (int i = 0; i < NSJOIN_NS_COUNT; i++) {
        if (j->nsfd[i] < 0)
            continue;
        if (setns(j->nsfd[i], ns_table[i].flag) < 0) {
            err->step = NSJOIN_STEP_SETNS;
            err->ns = ns_table[i].name;
            return -errno;
        }
    }
    return 0;
}

int nsjoin_enter(struct nsjoin *j, struct nsjoin_err *err)
{
    int flags = 0, ret;

    err->step = NSJOIN_STEP_NONE;
    err->ns = NULL;
    j->used_pidfd = 0;
    for (int i = 0; i < NSJOIN_NS_COUNT; i++)
        if (j->nsfd[i] >= 0)
            flags |= ns_table[i].flag;

    /* setns(pidfd) joins all at once or nothing; on any failure (old kernel:
     * EINVAL, or a permission problem) the per-namespace path runs and tells
     * exactly which namespace refused. */
    if (flags && j->pidfd >= 0 && setns(j->pidfd, flags) == 0)
        j->used_pidfd = 1;
    else if (flags && (ret = enter_with_fds(j, err)) < 0)
        return ret;

    if (fchdir(j->rootfd) < 0 || chroot(".") < 0) {
        err->step = NSJOIN_STEP_CHROOT;
        return -errno;
    }
    if (j->cwdfd < 0 || fchdir(j->cwdfd) < 0) {
        if (chdir("/") < 0) {
            err->step = NSJOIN_STEP_CHROOT;
            return -errno;
        }
    }
    return 0;
}

void nsjoin_close(struct nsjoin *j)
{
    if (j->pidfd >= 0)
        close(j->pidfd);
    if (j->rootfd >= 0)
        close(j->rootfd);
    if (j->cwdfd >= 0)
        close(j->cwdfd);
    for (int i = 0; i < NSJOIN_NS_COUNT; i++)
        if (j->nsfd[i] >= 0)
            close(j->nsfd[i]);
    nsjoin_init(j);
}

int nsjoin_pts_clone(void)
{
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/dev/pts", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int nsjoin_pts_attach(int ptsfd, const char **what)
{
    int rc = 0;

    *what = NULL;
    if (unshare(CLONE_NEWNS) < 0)
        *what = "unshare";
    else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        *what = "mount --make-rprivate /";
    else if (syscall(SYS_move_mount, ptsfd, "", AT_FDCWD, "/dev/pts", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        *what = "move_mount /dev/pts";
    if (*what)
        rc = -errno;
    close(ptsfd);
    return rc;
}
