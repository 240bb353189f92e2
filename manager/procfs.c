/* procfs — process facts for Ps from a proc filesystem (see procfs.h). */
#include "procfs-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "basic/alloc-util.h"

struct procfs {
    int rootfd;
    uint64_t btime_ms; /* boot time, ms since the epoch */
    long ticks;        /* clock ticks per second (stat's starttime unit) */
    long pagesize;     /* stat's rss unit */
};

/* A vanished process shows as ENOENT or ESRCH depending on the moment. */
static int gone_or(int err)
{
    return err == ENOENT || err == ESRCH ? -ENOENT : -err;
}

/* Reads up to cap-1 bytes of dirfd/name and NUL-terminates; returns the length.
 * proc files produce all they have in one read, so a short read is the end
 * (saves the extra read per file that waiting for 0 would cost). */
static ssize_t read_at(int dirfd, const char *name, char *buf, size_t cap)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gone_or(errno);
    size_t n = 0;
    ssize_t rc = 0;
    while (n < cap - 1) {
        size_t want = cap - 1 - n;
        rc = read(fd, buf + n, want);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        n += (size_t)rc;
        if ((size_t)rc < want)
            break;
    }
    int err = errno;
    close(fd);
    buf[n] = '\0';
    return rc < 0 ? gone_or(err) : (ssize_t)n;
}

/* btime from root/stat; the file grows with the CPU and interrupt count, so it
 * is read whole. */
static int read_btime(int rootfd, uint64_t *btime_s)
{
    size_t cap = 16384;
    char *buf = NULL;
    int rc = -EBADMSG;

    for (;;) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            rc = -ENOMEM;
            goto out;
        }
        buf = nb;
        ssize_t n = read_at(rootfd, "stat", buf, cap);
        if (n < 0) {
            rc = (int)n;
            goto out;
        }
        if ((size_t)n < cap - 1)
            break;
        cap *= 2;
    }
    const char *p = strstr(buf, "\nbtime ");
    if (!p)
        goto out;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p + 7, &end, 10);
    if (errno || end == p + 7)
        goto out;
    *btime_s = v;
    rc = 0;
out:
    free(buf);
    return rc;
}

int procfs_open(const char *root, procfs **out)
{
    procfs *p = calloc(1, sizeof(*p));
    uint64_t btime = 0;
    int rc;

    if (!p)
        return -ENOMEM;
    p->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p->rootfd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = read_btime(p->rootfd, &btime);
    if (rc < 0)
        goto fail;
    p->btime_ms = btime * 1000;
    p->ticks = sysconf(_SC_CLK_TCK);
    p->pagesize = sysconf(_SC_PAGESIZE);
    if (p->ticks <= 0)
        p->ticks = 100;
    *out = p;
    return 0;
fail:
    procfs_close(p);
    return rc;
}

void procfs_close(procfs *p)
{
    if (!p)
        return;
    if (p->rootfd >= 0)
        close(p->rootfd);
    free(p);
}

static int parse_pid(const char *s)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v <= 0 || v > 0x7fffffff)
        return -EINVAL;
    return (int)v;
}

int procfs_self_pid(const procfs *p)
{
    char buf[32];
    ssize_t n = readlinkat(p->rootfd, "self", buf, sizeof(buf) - 1);
    if (n <= 0)
        return -ENOENT;
    buf[n] = '\0';
    int pid = parse_pid(buf);
    return pid > 0 ? pid : -ENOENT;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int procfs_list_pids(const procfs *p, int **pids, size_t *n)
{
    int fd = openat(p->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = errno;
        close(fd);
        return -err;
    }
    int *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid = parse_pid(de->d_name);
        if (pid < 0)
            continue;
        if (GROW_ARRAY(v, cap, cnt + 1, 256) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        v[cnt++] = pid;
    }
    if (cnt) /* qsort(NULL, 0, ...) is undefined */
        qsort(v, cnt, sizeof(*v), cmp_int);
out:
    closedir(d);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *pids = v;
    *n = cnt;
    return 0;
}

/* "pid (comm) S ppid ...": comm may hold spaces and ')', so it ends at the
 * last ')'. Fields are numbered as in proc(5). */
int procfs_parse_stat(const char *buf, procfs_proc *out, uint64_t *start_ticks, uint64_t *rss_pages)
{
    const char *lp = strchr(buf, '(');
    const char *rp = strrchr(buf, ')');
    if (!lp || !rp || rp < lp)
        return -EBADMSG;
    char *end;
    errno = 0;
    long pid = strtol(buf, &end, 10);
    if (errno || end == buf || pid <= 0 || pid > 0x7fffffff)
        return -EBADMSG;
    size_t nlen = (size_t)(rp - lp - 1);
    if (nlen >= sizeof(out->name))
        nlen = sizeof(out->name) - 1;
    memcpy(out->name, lp + 1, nlen);
    out->name[nlen] = '\0';
    out->pid = (int)pid;

    int seen = 0;
    const char *s = rp + 1;
    for (int field = 3; field <= 24; field++) {
        while (*s == ' ')
            s++;
        if (!*s || *s == '\n')
            return -EBADMSG;
        const char *tok = s;
        while (*s && *s != ' ' && *s != '\n')
            s++;
        if (field == 3) {
            if (s - tok != 1)
                return -EBADMSG;
            out->state = *tok;
            /* A task being reaped (X, dead) reads ppid 0 and session -1:
             * it is gone, like one whose files have vanished. */
            if (*tok == 'X')
                return -ENOENT;
            seen++;
            continue;
        }
        if (field != 4 && field != 6 && field != 22 && field != 24)
            continue;
        errno = 0;
        unsigned long long v = strtoull(tok, &end, 10);
        if (errno || end != s || *tok == '-')
            return -EBADMSG;
        if (field == 4 || field == 6) {
            if (v > 0x7fffffff)
                return -EBADMSG;
            *(field == 4 ? &out->ppid : &out->sid) = (int)v;
        } else if (field == 22) {
            *start_ticks = v;
        } else {
            *rss_pages = v;
        }
        seen++;
    }
    return seen == 5 ? 0 : -EBADMSG;
}

int procfs_parse_status_uid(const char *buf, uint32_t *uid)
{
    const char *p = strncmp(buf, "Uid:", 4) == 0 ? buf : strstr(buf, "\nUid:");
    if (!p)
        return -EBADMSG;
    p += *p == '\n' ? 5 : 4;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno || end == p || v > UINT32_MAX)
        return -EBADMSG;
    *uid = (uint32_t)v;
    return 0;
}

/* argv is NUL-separated with a trailing NUL; join with spaces. */
static char *join_cmdline(char *buf, size_t n)
{
    while (n > 0 && buf[n - 1] == '\0')
        n--;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    return strndup(buf, n);
}

/* One linux_dirent64 as getdents64 returns it. */
struct procfs_dirent {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* getdents64 + readlinkat straight on the fd directory: no DIR (its fcntl and
 * fstat would double the syscalls per process). */
static int scan_fds(int dirfd, const char *path, procfs_sock_fn on_sock, void *ud)
{
    int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* gone, zombie or not ours to look at: no sockets */
    char ents[8192] __attribute__((aligned(8)));
    char link[64];
    int rc = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, ents, sizeof(ents));
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct procfs_dirent *de = (struct procfs_dirent *)(ents + off);
            off += de->d_reclen;
            if (de->d_name[0] == '.')
                continue;
            /* Truncation is fine: only "socket:[N]" matters, and it is short. */
            ssize_t l = readlinkat(fd, de->d_name, link, sizeof(link) - 1);
            if (l < 0 && errno == EACCES)
                goto out; /* not allowed to look at this process's files at all */
            if (l < 9 || memcmp(link, "socket:[", 8) != 0)
                continue;
            link[l] = '\0';
            char *end;
            uint64_t ino = strtoull(link + 8, &end, 10);
            if (*end != ']' || ino == 0)
                continue;
            rc = on_sock(ino, ud);
            if (rc)
                goto out;
        }
        /* Room left for a longest entry means the directory is exhausted. */
        if ((size_t)n + sizeof(struct procfs_dirent) + 256 < sizeof(ents))
            break;
    }
out:
    close(fd);
    return rc;
}

/* Paths from the root rather than a pid directory fd: two syscalls fewer per
 * process, and a pid reused within the microseconds of one read is not a
 * concern for a listing. */
int procfs_read_stat(const procfs *p, int pid, procfs_proc *out)
{
    char path[32], buf[4096];
    uint64_t start_ticks = 0, rss_pages = 0;

    memset(out, 0, sizeof(*out));
    snprintf(path, sizeof(path), "%d/stat", pid);
    ssize_t n = read_at(p->rootfd, path, buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    int rc = procfs_parse_stat(buf, out, &start_ticks, &rss_pages);
    if (rc < 0)
        return rc;
    out->rss_bytes = rss_pages * (uint64_t)p->pagesize;
    out->start_time_unix_ms = p->btime_ms + start_ticks * 1000 / (uint64_t)p->ticks;
    return 0;
}

int procfs_read(const procfs *p, int pid, procfs_proc *out, procfs_sock_fn on_sock, void *ud)
{
    char path[32];
    char buf[4096];
    char *cmd = NULL;

    int rc = procfs_read_stat(p, pid, out);
    if (rc < 0)
        return rc; /* out holds nothing to free */
    int plen = snprintf(path, sizeof(path), "%d/", pid);
    char *leaf = path + plen;
    size_t leafcap = sizeof(path) - (size_t)plen;
    ssize_t n;

    /* Only the first lines matter (Uid is the 9th); a short read is fine. */
    snprintf(leaf, leafcap, "status");
    n = read_at(p->rootfd, path, buf, sizeof(buf));
    if (n < 0) {
        rc = (int)n;
        goto out;
    }
    rc = procfs_parse_status_uid(buf, &out->uid);
    if (rc < 0)
        goto out;

    cmd = malloc(PROCFS_CMDLINE_MAX + 1);
    if (!cmd) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(leaf, leafcap, "cmdline");
    n = read_at(p->rootfd, path, cmd, PROCFS_CMDLINE_MAX + 1);
    out->cmdline = join_cmdline(cmd, n < 0 ? 0 : (size_t)n);
    if (!out->cmdline) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(leaf, leafcap, "fd");
    if (on_sock)
        rc = scan_fds(p->rootfd, path, on_sock, ud);
out:
    free(cmd);
    if (rc < 0)
        procfs_proc_free(out);
    return rc;
}

void procfs_proc_free(procfs_proc *proc)
{
    free(proc->cmdline);
    proc->cmdline = NULL;
}
