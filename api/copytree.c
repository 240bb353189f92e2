/* copytree — see copytree.h and docs/cp.md. */
#include "copytree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "basic/fd-util.h"
#include "basic/hex-util.h"
#include "basic/text-util.h"
#include "contract.h"
#include "copyz.h"

/* Deeper trees are refused: each level holds a directory stream open. */
#define COPYTREE_DEPTH_MAX 256
/* The longest entry path (relative to the copied root). */
#define COPYTREE_PATH_MAX PATH_MAX
/* A named file of procfs, sysfs or cgroupfs is read whole before it is sent,
 * at most this much. */
#define COPYTREE_PSEUDO_MAX (8u << 20)
/* The most symlinks followed to a destination: the kernel's MAXSYMLINKS. */
#define COPYTREE_LINK_HOPS 40

const char *copytree_strerror(int rc, char *buf, size_t len)
{
    int e = rc < 0 ? -rc : rc;
    const char *name = strerrorname_np(e);
    snprintf(buf, len, "%s (%s)", strerror(e), name ? name : "?");
    return buf;
}

/* A path in a message: at most COPYTREE_SHOWN_HEAD bytes of its start and
 * COPYTREE_SHOWN_TAIL of its end, "…" between, so that the cause still fits
 * after the deepest path (the CLI's err is 2048 bytes, the manager's 1024). */
#define COPYTREE_SHOWN_HEAD 128
#define COPYTREE_SHOWN_TAIL 256
#define COPYTREE_SHOWN_MAX TEXT_SHOWN_SIZE(COPYTREE_SHOWN_HEAD, COPYTREE_SHOWN_TAIL)

/* path for a message, into out: one line, bounded (text_shown). Every path
 * that goes into err passes here. */
static const char *msg_path(char out[COPYTREE_SHOWN_MAX], const char *path)
{
    return text_shown(out, path, COPYTREE_SHOWN_HEAD, COPYTREE_SHOWN_TAIL);
}

/* err = fmt + ": " + the cause; returns rc. The cause is kept whatever the
 * length of the text before it (that is cut instead). */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    char cause[128];
    size_t cl = strlen(copytree_strerror(rc, cause, sizeof cause)) + 2, head = errlen > cl + 1 ? errlen - cl : 1;
    if (errlen == 0)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, head, fmt, ap);
    va_end(ap);
    size_t at = n < 0 ? 0 : (size_t)n < head ? (size_t)n : head - 1;
    snprintf(err + at, errlen - at, ": %s", cause);
    return rc;
}

static int openat2_fd(int dirfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC, .resolve = resolve};
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

/* Splits a user path into its directory and last component, trailing slashes
 * dropped: "/a/b/" → "/a", "b"; "b" → ".", "b"; "/" → "/", "". The last
 * component is "" when the path names a directory's contents ("/", "x/.",
 * "x/.."): then dir is the whole path. What a trailing slash means is the
 * caller's (names_dir). */
static int split_path(const char *path, char *dir, size_t dirlen, char *base, size_t baselen)
{
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    if (n >= dirlen || n >= baselen)
        return -ENAMETOOLONG;
    while (n > 1 && path[n - 1] == '/')
        n--;
    const char *slash = memrchr(path, '/', n);
    const char *b = slash ? slash + 1 : path;
    size_t bl = n - (size_t)(b - path);
    if (bl == 0 || (bl == 1 && b[0] == '.') || (bl == 2 && b[0] == '.' && b[1] == '.')) {
        snprintf(dir, dirlen, "%.*s", (int)n, path);
        base[0] = '\0';
        return 0;
    }
    if (!slash)
        snprintf(dir, dirlen, ".");
    else if (slash == path)
        snprintf(dir, dirlen, "/");
    else
        snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
    snprintf(base, baselen, "%.*s", (int)bl, b);
    return 0;
}

/* A path that can only name a directory: one whose last component is "."
 * or "..", or "/", and (POSIX) one with a trailing '/', which resolves its
 * last component, a symlink followed, and must find a directory. */
static bool names_dir(const char *path)
{
    size_t n = strlen(path);
    const char *last = memrchr(path, '/', n);
    last = last ? last + 1 : path;
    return n && (path[n - 1] == '/' || !strcmp(last, ".") || !strcmp(last, ".."));
}

static bool name_ok(const char *n);

/* ---- sending ---- */

typedef struct {
    copytree_emit_fn emit;
    void *ud;
    copytree_stats stats;
    char rel[COPYTREE_PATH_MAX]; /* entry path */
    /* the same as the user sees it, for messages: the user's path (shorter
     * than PATH_MAX), the rest of rel and one more name always fit */
    char shown[COPYTREE_PATH_MAX * 2 + NAME_MAX + 2];
    char quoted[COPYTREE_SHOWN_MAX]; /* shown as it goes into a message */
    uint8_t *buf;
    char *err;
    size_t errlen;
} sender;

static const char *sender_shown(sender *s)
{
    return msg_path(s->quoted, s->shown);
}

static int emit_entry(sender *s, const struct stat *st, const char *link)
{
    Kdiag__Solo__Io__CopyEntry e = KDIAG__SOLO__IO__COPY_ENTRY__INIT;
    Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
    e.path = s->rel;
    e.mode = st->st_mode;
    e.uid = st->st_uid;
    e.gid = st->st_gid;
    e.mtime_sec = st->st_mtim.tv_sec;
    e.mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    e.size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
    e.link_target = link ? (char *)link : (char *)"";
    c.entry = &e;
    s->stats.entries++;
    return s->emit(s->ud, &c);
}

static int emit_hole(sender *s, uint64_t n)
{
    Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
    c.hole = n;
    return n ? s->emit(s->ud, &c) : 0;
}

/* The file at fd ended at off, before size, the end its entry announced: it
 * shrank while it was read (truncated, rewritten). Padding it with zeros (as
 * tar does, with a warning) would make a copy that looks whole and is not:
 * the copy fails instead, and nothing of it is left (docs/cp.md). */
static int shrank(sender *s, int fd, off_t from, off_t size, off_t off)
{
    struct stat st;
    off_t now = fstat(fd, &st) == 0 && st.st_size < size ? st.st_size : off;
    return fail(s->err, s->errlen, -ENODATA,
                "cannot copy %s: it shrank from %lld to %lld bytes while it was read (truncated or rewritten "
                "meanwhile); copy it again once it is not being written",
                sender_shown(s), (long long)(size - from), (long long)(now > from ? now - from : 0));
}

/* The content of a regular file from offset from to size: its data ranges as
 * data, its holes as holes. A file that grew meanwhile is cut at size; one
 * that shrank fails the copy (shrank). */
static int send_content(sender *s, int fd, off_t from, off_t size)
{
    off_t off = from;
    while (off < size) {
        off_t data = lseek(fd, off, SEEK_DATA);
        struct stat st;
        if (data < 0 && errno == ENXIO && fstat(fd, &st) == 0 && st.st_size < size)
            return shrank(s, fd, from, size, off); /* past its end now, not in a last hole */
        if (data < 0 && errno == ENXIO)
            data = size;
        else if (data < 0)
            data = off; /* no SEEK_DATA here: read it all */
        if (data > size)
            data = size;
        if (data > off) {
            int rc = emit_hole(s, (uint64_t)(data - off));
            if (rc < 0)
                return rc;
            off = data;
            continue;
        }
        off_t end = lseek(fd, off, SEEK_HOLE);
        if (end < 0 || end > size)
            end = size;
        while (off < end) {
            size_t want = (size_t)(end - off) < CONTRACT_COPY_DATA_MAX ? (size_t)(end - off) : CONTRACT_COPY_DATA_MAX;
            ssize_t n = pread(fd, s->buf, want, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return fail(s->err, s->errlen, -errno, "cannot read %s", sender_shown(s));
            if (n == 0)
                return shrank(s, fd, from, size, off);
            Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
            c.data.data = s->buf;
            c.data.len = (size_t)n;
            int rc = s->emit(s->ud, &c);
            if (rc < 0)
                return rc;
            off += n;
            s->stats.bytes += (uint64_t)n;
        }
    }
    return 0;
}

static int send_at(sender *s, int dirfd, const char *name, int depth);

/* On a kernel filesystem: a file whose st_size says nothing of its content
 * (procfs says 0 for /proc/1/environ, sysfs 4096 for /sys/.../address,
 * cgroupfs 0), a directory that holds the kernel's view, not files. */
static bool pseudo_fs(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0)
        return false;
    switch ((unsigned long)sf.f_type) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC: return true;
    default: return false;
    }
}

/* A pseudo file: read to its end (at most COPYTREE_PSEUDO_MAX), then its
 * entry with the size read and its content, as it was when read. */
static int send_pseudo(sender *s, int fd, struct stat *st)
{
    size_t len = 0, cap = CONTRACT_COPY_DATA_MAX;
    uint8_t *buf = malloc(cap);
    int rc = buf ? 0 : fail(s->err, s->errlen, -ENOMEM, "cannot read %s", sender_shown(s));
    while (rc == 0) {
        if (len == cap) {
            uint8_t *nb = cap < COPYTREE_PSEUDO_MAX ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                rc = cap < COPYTREE_PSEUDO_MAX
                         ? fail(s->err, s->errlen, -ENOMEM, "cannot read %s", sender_shown(s))
                         : fail(s->err, s->errlen, -EFBIG,
                                "cannot copy %s: a kernel file (procfs, sysfs, cgroupfs) is read whole first, and this one has more "
                                "than %u MiB",
                                sender_shown(s), COPYTREE_PSEUDO_MAX >> 20);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = fail(s->err, s->errlen, -errno, "cannot read %s", sender_shown(s));
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    if (rc == 0) {
        st->st_size = (off_t)len;
        rc = emit_entry(s, st, NULL);
    }
    for (size_t off = 0; rc == 0 && off < len;) {
        Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
        c.data.data = buf + off;
        c.data.len = len - off < CONTRACT_COPY_DATA_MAX ? len - off : CONTRACT_COPY_DATA_MAX;
        rc = s->emit(s->ud, &c);
        off += c.data.len;
        s->stats.bytes += c.data.len;
    }
    free(buf);
    return rc;
}

static const char *special_kind(mode_t m)
{
    return S_ISCHR(m)    ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

/* The entries of the open directory fd, after its own entry. */
static int send_dir_entries(sender *s, int fd, int depth)
{
    if (depth >= COPYTREE_DEPTH_MAX)
        return fail(s->err, s->errlen, -ELOOP, "cannot copy %s: more than %d levels deep", sender_shown(s),
                    COPYTREE_DEPTH_MAX);
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        int rc = fail(s->err, s->errlen, -errno, "cannot list %s", sender_shown(s));
        if (dfd >= 0)
            close(dfd);
        return rc;
    }
    size_t rl = strlen(s->rel), sl = strlen(sender_shown(s));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        /* shown first, whole, so that a path too long names the entry */
        snprintf(s->shown + sl, sizeof s->shown - sl, "%s%s", sl && s->shown[sl - 1] == '/' ? "" : "/", de->d_name);
        if (rl + 1 + strlen(de->d_name) >= sizeof s->rel) {
            rc = fail(s->err, s->errlen, -ENAMETOOLONG, "cannot copy %s", sender_shown(s));
        } else {
            snprintf(s->rel + rl, sizeof s->rel - rl, "%s%s", rl ? "/" : "", de->d_name);
            rc = send_at(s, fd, de->d_name, depth + 1);
        }
        s->rel[rl] = '\0';
        s->shown[sl] = '\0';
    }
    if (rc == 0 && errno)
        rc = fail(s->err, s->errlen, -errno, "cannot list %s", sender_shown(s));
    closedir(d);
    return rc;
}

/* name in dirfd (a single component, never followed): its entry, then its
 * content or what it holds. */
static int send_at(sender *s, int dirfd, const char *name, int depth)
{
    struct stat st;
    int fd = -1, rc = 0;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fail(s->err, s->errlen, -errno, "cannot copy %s", sender_shown(s));
    if (S_ISLNK(st.st_mode)) {
        char link[PATH_MAX];
        ssize_t n = readlinkat(dirfd, name, link, sizeof link - 1);
        if (n < 0)
            return fail(s->err, s->errlen, -errno, "cannot read the symlink %s", sender_shown(s));
        link[n] = '\0';
        return emit_entry(s, &st, link);
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) { /* FIFOs, sockets, devices: passed over in a tree */
        if (depth > 0)
            return 0;
        snprintf(s->err, s->errlen, "cannot copy %s: it is %s; cp copies regular files, directories and symbolic links",
                 sender_shown(s), special_kind(st.st_mode));
        return -EINVAL;
    }
    /* Opened without following, then described by the fd: what is sent is
     * what was opened, even if the name changed since the fstatat. */
    int flags = S_ISDIR(st.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_NONBLOCK | O_NOCTTY;
    fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = fail(s->err, s->errlen, -errno, "cannot open %s", sender_shown(s));
        goto out;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        goto out;
    if (depth == 0 && S_ISREG(st.st_mode) && pseudo_fs(fd)) { /* named: in a tree, as its size says */
        rc = send_pseudo(s, fd, &st);
        goto out;
    }
    rc = emit_entry(s, &st, NULL);
    /* a kernel filesystem mounted in the tree (/proc, /sys of "/") arrives
     * empty, as its mount point: what it holds is not the container's files,
     * and some of it cannot be read at all */
    if (rc == 0 && S_ISDIR(st.st_mode) && depth > 0 && pseudo_fs(fd) && !pseudo_fs(dirfd))
        goto out;
    if (rc == 0)
        rc = S_ISDIR(st.st_mode) ? send_dir_entries(s, fd, depth) : send_content(s, fd, 0, st.st_size);
out:
    fd_close(&fd);
    return rc;
}

int copytree_send(int rootfd, const char *path, uint64_t resolve, copytree_emit_fn emit, void *ud,
                  copytree_stats *stats, char *err, size_t errlen)
{
    sender *s = calloc(1, sizeof *s);
    char dir[COPYTREE_PATH_MAX], base[NAME_MAX + 1], q[COPYTREE_SHOWN_MAX];
    int fd = -1, rc;
    if (!s || !(s->buf = malloc(CONTRACT_COPY_DATA_MAX))) {
        rc = fail(err, errlen, -ENOMEM, "cannot copy %s", msg_path(q, path));
        goto out;
    }
    *s = (sender){.emit = emit, .ud = ud, .buf = s->buf, .err = err, .errlen = errlen};
    rc = split_path(path, dir, sizeof dir, base, sizeof base);
    if (rc < 0) {
        rc = fail(err, errlen, rc, "cannot copy %s", msg_path(q, path));
        goto out;
    }
    snprintf(s->shown, sizeof s->shown, "%s", path);
    snprintf(s->rel, sizeof s->rel, "%s", base);
    if (names_dir(path)) {
        /* A directory, a final symlink followed (as the kernel does for
         * "x/"): named "" for its contents, else by its last component. */
        fd = openat2_fd(rootfd, path, O_RDONLY | O_DIRECTORY, resolve);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            rc = fail(err, errlen, fd < 0 ? fd : -errno, "cannot copy %s", sender_shown(s));
            goto out;
        }
        rc = emit_entry(s, &st, NULL);
        if (rc == 0)
            rc = send_dir_entries(s, fd, 0);
        goto out;
    }
    fd = openat2_fd(rootfd, dir, O_PATH | O_DIRECTORY, resolve);
    if (fd < 0) {
        rc = fail(err, errlen, fd, "cannot copy %s", sender_shown(s));
        goto out;
    }
    rc = send_at(s, fd, base, 0);
out:
    if (rc == 0 && stats)
        *stats = s->stats;
    fd_close(&fd);
    if (s)
        free(s->buf);
    free(s);
    return rc;
}

int copytree_send_file(int fd, off_t from, const char *name, const char *shown, copytree_emit_fn emit, void *ud,
                       copytree_stats *stats, char *err, size_t errlen)
{
    sender *s = calloc(1, sizeof *s);
    struct stat st;
    int rc = 0;
    if (!s || !(s->buf = malloc(CONTRACT_COPY_DATA_MAX))) {
        rc = fail(err, errlen, -ENOMEM, "cannot copy %s", shown);
        goto out;
    }
    *s = (sender){.emit = emit, .ud = ud, .buf = s->buf, .err = err, .errlen = errlen};
    snprintf(s->shown, sizeof s->shown, "%s", shown);
    if (!name_ok(name) || strlen(name) > NAME_MAX)
        rc = fail(err, errlen, -EINVAL, "cannot copy %s under the name \"%s\"", sender_shown(s), name);
    else if (fstat(fd, &st) < 0)
        rc = fail(err, errlen, -errno, "cannot copy %s", sender_shown(s));
    else if (!S_ISREG(st.st_mode))
        rc = fail(err, errlen, -EINVAL, "cannot copy %s: it is not a regular file", sender_shown(s));
    if (rc < 0)
        goto out;
    snprintf(s->rel, sizeof s->rel, "%s", name);
    if (pseudo_fs(fd)) { /* its size says nothing (< /proc/1/environ): read to its end first */
        rc = send_pseudo(s, fd, &st);
        goto done;
    }
    if (from > st.st_size)
        from = st.st_size;
    st.st_size -= from;
    rc = emit_entry(s, &st, NULL);
    if (rc == 0)
        rc = send_content(s, fd, from, from + st.st_size);
    if (rc == 0) /* read, as cat leaves it */
        lseek(fd, from + st.st_size, SEEK_SET);
done:
    if (rc == 0 && stats)
        *stats = s->stats;
out:
    if (s)
        free(s->buf);
    free(s);
    return rc;
}

/* ---- receiving ---- */

#define TMP_NAME_LEN 32

/* A directory being written: where it goes and, when new, its temporary name
 * and the attributes it gets once its entries are in. */
typedef struct {
    int fd;                 /* O_PATH when it existed; a new one readable: its attributes go through it */
    int parentfd;           /* borrowed: the level below, or the destination directory */
    char tmp[TMP_NAME_LEN]; /* "" when it existed (merged into, left as it was) */
    char *name;
    char *rel; /* its entry path */
    Kdiag__Solo__Io__CopyEntry meta;
} recv_level;

struct copytree_recv {
    int destfd;      /* O_PATH directory the root goes into */
    char *root_name; /* its name there; NULL: dest is an existing directory, named by the root entry */
    char *dest;      /* as the user gave it */
    unsigned keep;   /* COPYTREE_KEEP_* */
    bool started, finished;
    bool root_unnamed; /* the root entry is "" (a directory's contents) */
    bool stream;       /* copytree_recv_new_stream: one file's content to fd, no names made */
    recv_level *levels;
    size_t depth;
    /* the regular file being written (fd -1: none) */
    int fd, file_parent;
    char file_tmp[TMP_NAME_LEN];
    char *file_name;
    Kdiag__Solo__Io__CopyEntry file_meta;
    uint64_t off;
    copytree_stats stats;
    char shown[COPYTREE_PATH_MAX * 2];
    char quoted[COPYTREE_SHOWN_MAX]; /* what shown() returns */
    copyz *z;                        /* made at the first zstd chunk */
};

static int tmp_name(char out[TMP_NAME_LEN])
{
    char hex[17];
    int rc = hex_random(hex, 8);
    if (rc == 0)
        snprintf(out, TMP_NAME_LEN, ".kdiag-cp-%s", hex);
    return rc;
}

/* Removes name in dirfd and, for a directory, everything under it. */
static void remove_tree(int dirfd, const char *name, int depth)
{
    if (unlinkat(dirfd, name, 0) == 0 || (errno != EISDIR && errno != EPERM) || depth > COPYTREE_DEPTH_MAX)
        return;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                remove_tree(fd, de->d_name, depth + 1);
        closedir(d);
    } else if (fd >= 0) {
        close(fd);
    }
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* The user's view of entry path rel: under dest, or in place of the root. */
static const char *shown(copytree_recv *r, const char *rel)
{
    const char *tail = rel;
    if (r->root_name && !r->root_unnamed) { /* the root's own name is replaced by dest */
        tail = strchr(rel, '/');
        tail = tail ? tail + 1 : "";
    }
    size_t dl = strlen(r->dest);
    snprintf(r->shown, sizeof r->shown, "%s%s%s", r->dest, tail[0] && dl && r->dest[dl - 1] != '/' ? "/" : "", tail);
    return msg_path(r->quoted, r->shown);
}

/* The refusal of a destination cp does not write over (the sender's
 * refusal of such a source, turned round). */
static int refuse_special(char *err, size_t errlen, const char *shown_path, mode_t m)
{
    snprintf(err, errlen, "cannot copy to %s: it is %s; cp writes regular files, directories and symbolic links",
             shown_path, special_kind(m));
    return -EINVAL;
}

/* Where a dest that is not a directory goes: r->destfd, its directory, and
 * r->root_name, the name there that the tree replaces or creates. A final
 * symlink is written through, as cp does: followed hop by hop, each target
 * resolved like dest (under rootfd with resolve, a relative one against the
 * link's directory), to the name it ends at. A dangling one is refused, as
 * GNU cp does, rather than create a file wherever a link points. */
static int recv_dest_name(copytree_recv *r, int rootfd, uint64_t resolve, char *err, size_t errlen)
{
    char path[COPYTREE_PATH_MAX], dir[COPYTREE_PATH_MAX], base[NAME_MAX + 1], target[COPYTREE_PATH_MAX];
    char q[COPYTREE_SHOWN_MAX], qt[COPYTREE_SHOWN_MAX];
    size_t dl = strlen(r->dest);
    int rc = dl < sizeof path ? 0 : -ENAMETOOLONG, hops = 0;
    if (rc == 0)
        memcpy(path, r->dest, dl + 1);
    for (; rc == 0; hops++) {
        rc = split_path(path, dir, sizeof dir, base, sizeof base);
        if (rc == 0 && !base[0]) /* a link to "x/.": x is missing, or the caller had taken it */
            rc = -ENOENT;
        if (rc < 0)
            break;
        fd_close(&r->destfd);
        if ((r->destfd = openat2_fd(rootfd, dir, O_PATH | O_DIRECTORY, resolve)) < 0) {
            rc = r->destfd;
            break;
        }
        ssize_t n = readlinkat(r->destfd, base, target, sizeof target);
        if (n < 0 && (errno == EINVAL || (errno == ENOENT && hops == 0)))
            break; /* a file, or nothing yet: that name is the tree's */
        rc = n < 0 ? -errno : (size_t)n == sizeof target ? -ENAMETOOLONG : hops == COPYTREE_LINK_HOPS ? -ELOOP : 0;
        if (rc == 0) {
            target[n] = '\0';
            int k = target[0] == '/' ? snprintf(path, sizeof path, "%s", target)
                                     : snprintf(path, sizeof path, "%s/%s", dir, target);
            rc = k < 0 || (size_t)k >= sizeof path ? -ENAMETOOLONG : 0;
        }
    }
    if (rc == -ENOENT && hops > 0)
        return fail(err, errlen, rc, "cannot copy to %s: not writing through the dangling symlink to %s",
                    msg_path(q, r->dest), msg_path(qt, target));
    if (rc < 0)
        return fail(err, errlen, rc, "cannot copy to %s", msg_path(q, r->dest));
    if (!(r->root_name = strdup(base)))
        return fail(err, errlen, -ENOMEM, "cannot copy to %s", msg_path(q, r->dest));
    return 0;
}

int copytree_recv_new(copytree_recv **ret, int rootfd, const char *dest, uint64_t resolve, unsigned keep,
                      char *err, size_t errlen)
{
    copytree_recv *r = calloc(1, sizeof *r);
    char q[COPYTREE_SHOWN_MAX];
    int rc = -ENOMEM, fd = -1;
    struct stat st;
    *ret = NULL;
    if (!r || !(r->dest = strdup(dest))) {
        fail(err, errlen, rc, "cannot copy to %s", msg_path(q, dest));
        goto out;
    }
    r->destfd = r->fd = -1;
    r->keep = keep;
    fd = openat2_fd(rootfd, dest, O_PATH, resolve);
    rc = fd < 0 ? fd : fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0 && S_ISDIR(st.st_mode)) {
        r->destfd = fd; /* into it */
        fd = -1;
    } else if (rc == 0 && !S_ISREG(st.st_mode)) {
        rc = refuse_special(err, errlen, msg_path(q, dest), st.st_mode);
    } else if ((rc == 0 || rc == -ENOENT) && !names_dir(dest)) {
        rc = recv_dest_name(r, rootfd, resolve, err, errlen);
    } else {
        rc = fail(err, errlen, rc < 0 ? rc : -ENOTDIR, "cannot copy to %s", msg_path(q, dest));
    }
    if (rc < 0)
        goto out;
    *ret = r;
    r = NULL;
out:
    fd_close(&fd);
    copytree_recv_free(r);
    return rc;
}

int copytree_recv_new_stream(copytree_recv **ret, int fd, const char *name, char *err, size_t errlen)
{
    copytree_recv *r = calloc(1, sizeof *r);
    *ret = NULL;
    if (!r || !(r->dest = strdup(name)) || !(r->root_name = strdup(""))) {
        copytree_recv_free(r);
        return fail(err, errlen, -ENOMEM, "cannot write to %s", name);
    }
    r->stream = true;
    r->destfd = fd;
    r->fd = -1;
    *ret = r;
    return 0;
}

/* A single name: not empty, no '/', not "." or "..". */
static bool name_ok(const char *n)
{
    return n[0] && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..");
}

static void level_close(recv_level *l)
{
    fd_close(&l->fd);
    free(l->name);
    free(l->rel);
}

/* Owner, mode, mtime of name in dirfd (owner first: chown clears set-id bits). */
static int set_attrs(copytree_recv *r, int dirfd, const char *name, int fd, const Kdiag__Solo__Io__CopyEntry *m)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, {m->mtime_sec, m->mtime_nsec}};
    bool link = S_ISLNK(m->mode);
    int rc = 0;
    mode_t mode = m->mode & (r->keep & COPYTREE_KEEP_SETID ? 07777 : 01777);
    if (r->keep & COPYTREE_KEEP_OWNER) {
        rc = fd >= 0 ? fchown(fd, m->uid, m->gid) : fchownat(dirfd, name, m->uid, m->gid, AT_SYMLINK_NOFOLLOW);
        if (rc < 0 && errno != EPERM && errno != EINVAL) /* no CAP_CHOWN, or an id unmapped here */
            return -errno;
    }
    if (!link && (fd >= 0 ? fchmod(fd, mode) : fchmodat(dirfd, name, mode, 0)) < 0)
        return -errno;
    rc = fd >= 0 ? futimens(fd, ts) : utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
    return rc < 0 ? -errno : 0;
}

/* Completes the file being written: size, attributes, rename into place. */
static int file_finish(copytree_recv *r, char *err, size_t errlen)
{
    if (r->fd < 0)
        return 0;
    const char *rel = r->file_meta.path;
    int rc = 0;
    if (r->off != r->file_meta.size) {
        rc = -EPROTO;
        fail(err, errlen, rc, "the stream ended %s after %llu of its %llu bytes", shown(r, rel),
             (unsigned long long)r->off, (unsigned long long)r->file_meta.size);
    } else if (!r->stream &&
               (ftruncate(r->fd, (off_t)r->off) < 0 || (rc = set_attrs(r, -1, NULL, r->fd, &r->file_meta)) < 0)) {
        rc = fail(err, errlen, rc < 0 ? rc : -errno, "cannot write %s", shown(r, rel));
    }
    int fd = r->fd;
    r->fd = -1;
    if (r->stream) { /* the caller's fd stays open */
        free(r->file_meta.path);
        r->file_meta.path = NULL;
        return rc;
    }
    if (close(fd) < 0 && rc == 0)
        rc = fail(err, errlen, -errno, "cannot write %s", shown(r, rel));
    if (rc == 0 && renameat(r->file_parent, r->file_tmp, r->file_parent, r->file_name) < 0)
        rc = fail(err, errlen, -errno, "cannot rename into place %s", shown(r, rel));
    if (rc < 0)
        unlinkat(r->file_parent, r->file_tmp, 0);
    free(r->file_name);
    free(r->file_meta.path);
    r->file_name = r->file_meta.path = NULL;
    return rc;
}

/* The directory on top is complete: its attributes, then its final name. */
static int level_pop(copytree_recv *r, char *err, size_t errlen)
{
    recv_level *l = &r->levels[--r->depth];
    int rc = 0;
    if (l->tmp[0]) {
        /* Through the fd, not the name: whoever can write the destination
         * directory may have put a symlink (or a hard link) at the temporary
         * name, and fchmodat would change the file it names. */
        rc = set_attrs(r, -1, NULL, l->fd, &l->meta);
        if (rc < 0)
            fail(err, errlen, rc, "cannot set the attributes of %s", shown(r, l->rel));
        else if (renameat2(l->parentfd, l->tmp, l->parentfd, l->name, RENAME_NOREPLACE) < 0)
            rc = fail(err, errlen, -errno, "cannot rename into place %s", shown(r, l->rel));
        if (rc < 0)
            remove_tree(l->parentfd, l->tmp, 0);
    }
    level_close(l);
    return rc;
}

static int push_dir(copytree_recv *r, int parentfd, const char *name, const Kdiag__Solo__Io__CopyEntry *e,
                    bool exists, char *err, size_t errlen)
{
    if (r->depth >= COPYTREE_DEPTH_MAX)
        return fail(err, errlen, -ELOOP, "cannot create %s: more than %d levels deep", shown(r, e->path),
                    COPYTREE_DEPTH_MAX);
    recv_level *nl = realloc(r->levels, (r->depth + 1) * sizeof *nl);
    if (!nl)
        return fail(err, errlen, -ENOMEM, "cannot create %s", shown(r, e->path));
    r->levels = nl;
    recv_level *l = &nl[r->depth];
    *l = (recv_level){.fd = -1, .parentfd = parentfd};
    int rc = 0;
    while (!exists) {
        if ((rc = tmp_name(l->tmp)) < 0 || mkdirat(parentfd, l->tmp, 0700) == 0)
            break;
        if (errno != EEXIST) {
            rc = -errno;
            break;
        }
    }
    if (rc < 0)
        return fail(err, errlen, rc, "cannot create %s", shown(r, e->path));
    l->fd = openat(parentfd, exists ? name : l->tmp,
                   (exists ? O_PATH : O_RDONLY) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (l->fd < 0) {
        rc = fail(err, errlen, -errno, "cannot create %s", shown(r, e->path));
        if (!exists)
            unlinkat(parentfd, l->tmp, AT_REMOVEDIR);
        return rc;
    }
    if (exists)
        l->tmp[0] = '\0';
    l->meta = *e; /* the strings are the message's: dropped */
    l->meta.path = l->meta.link_target = NULL;
    l->name = strdup(name);
    l->rel = strdup(e->path);
    r->depth++;
    if (!l->name || !l->rel)
        return fail(err, errlen, -ENOMEM, "cannot create %s", shown(r, e->path));
    r->stats.entries++;
    return 0;
}

static int make_link(copytree_recv *r, int parentfd, const char *name, const Kdiag__Solo__Io__CopyEntry *e,
                     char *err, size_t errlen)
{
    char tmp[TMP_NAME_LEN];
    int rc;
    while ((rc = tmp_name(tmp)) == 0 && symlinkat(e->link_target, parentfd, tmp) < 0)
        if (errno != EEXIST)
            return fail(err, errlen, -errno, "cannot create %s", shown(r, e->path));
    if (rc == 0)
        rc = set_attrs(r, parentfd, tmp, -1, e);
    if (rc == 0 && renameat(parentfd, tmp, parentfd, name) < 0)
        rc = -errno;
    if (rc < 0) {
        unlinkat(parentfd, tmp, 0);
        return fail(err, errlen, rc, "cannot create %s", shown(r, e->path));
    }
    r->stats.entries++;
    return 0;
}

static int open_file(copytree_recv *r, int parentfd, const char *name, const Kdiag__Solo__Io__CopyEntry *e,
                     char *err, size_t errlen)
{
    int rc;
    while ((rc = tmp_name(r->file_tmp)) == 0 &&
           (r->fd = openat(parentfd, r->file_tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
        if (errno != EEXIST)
            return fail(err, errlen, -errno, "cannot create %s", shown(r, e->path));
    if (rc < 0)
        return fail(err, errlen, rc, "cannot create %s", shown(r, e->path));
    r->file_parent = parentfd;
    r->file_meta = *e;
    r->file_meta.link_target = NULL;
    r->file_name = strdup(name);
    r->file_meta.path = strdup(e->path);
    r->off = 0;
    r->stats.entries++;
    if (!r->file_name || !r->file_meta.path)
        return fail(err, errlen, -ENOMEM, "cannot create %s", shown(r, e->path));
    return 0;
}

/* Where entry e goes: the directory fd and the name in it. Closes the
 * directories it is not in. */
static int place(copytree_recv *r, const Kdiag__Solo__Io__CopyEntry *e, int *parentfd, const char **name,
                 char *err, size_t errlen)
{
    if (!r->started) {
        r->started = true;
        r->root_unnamed = !e->path[0];
        *parentfd = r->destfd;
        if (r->root_name) {
            *name = r->root_name;
        } else if (!e->path[0]) { /* a directory's contents: into dest itself */
            *name = ".";
        } else if (!name_ok(e->path)) {
            return fail(err, errlen, -EPROTO, "invalid name \"%s\" in the copy stream", msg_path(r->quoted, e->path));
        } else {
            *name = e->path;
        }
        return 0;
    }
    while (r->depth) {
        const char *top = r->levels[r->depth - 1].rel;
        size_t tl = strlen(top);
        const char *rest = tl == 0 ? e->path
                           : !strncmp(e->path, top, tl) && e->path[tl] == '/'
                               ? e->path + tl + 1
                               : NULL;
        if (rest && name_ok(rest)) {
            *parentfd = r->levels[r->depth - 1].fd;
            *name = rest;
            return 0;
        }
        if (r->depth == 1) /* the root is completed by copytree_recv_finish only */
            break;
        int rc = level_pop(r, err, errlen);
        if (rc < 0)
            return rc;
    }
    return fail(err, errlen, -EPROTO, "entry \"%s\" of the copy stream is outside the copied tree",
                msg_path(r->quoted, e->path));
}

/* Whether name in dirfd is on a mount of its own: a file bind-mounted over
 * (/etc/hosts, a ConfigMap subPath). A rename over it from another mount
 * namespace, as the manager's, is allowed and unmounts it in the container;
 * in its own namespace it is EBUSY. */
static bool mount_point(int dirfd, const char *name)
{
    struct statx in, dir;
    return statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &in) == 0 &&
           statx(dirfd, "", AT_EMPTY_PATH, STATX_MNT_ID, &dir) == 0 &&
           (in.stx_mask & dir.stx_mask & STATX_MNT_ID) && in.stx_mnt_id != dir.stx_mnt_id;
}

/* The root entry of a stream to r->fd: a regular file, whose content follows. */
static int stream_entry(copytree_recv *r, const Kdiag__Solo__Io__CopyEntry *e, char *err, size_t errlen)
{
    r->started = true;
    const char *what = e->path[0] ? msg_path(r->quoted, e->path) : "a directory's contents";
    if (S_ISDIR(e->mode))
        return fail(err, errlen, -EISDIR,
                    "cannot write %s to %s: only one regular file's content goes there; name "
                    "a local directory instead",
                    what, r->dest);
    if (S_ISLNK(e->mode))
        return fail(err, errlen, -EINVAL, "cannot write %s to %s: it is a symbolic link to %s; name that file instead",
                    what, r->dest, e->link_target);
    if (!S_ISREG(e->mode))
        return fail(err, errlen, -EPROTO, "entry \"%s\" of the copy stream has an unknown type (mode %o)", what,
                    e->mode);
    r->file_meta = *e;
    r->file_meta.link_target = NULL;
    r->off = 0;
    r->stats.entries++;
    if (!(r->file_meta.path = strdup(e->path)))
        return fail(err, errlen, -ENOMEM, "cannot write to %s", r->dest);
    r->fd = r->destfd;
    return 0;
}

static int recv_entry(copytree_recv *r, const Kdiag__Solo__Io__CopyEntry *e, char *err, size_t errlen)
{
    if (r->started && !r->depth) /* the root was a file or symlink: nothing follows it */
        return fail(err, errlen, -EPROTO, "entry \"%s\" of the copy stream is outside the copied tree",
                    msg_path(r->quoted, e->path));
    int rc = file_finish(r, err, errlen);
    if (rc < 0)
        return rc;
    if (!e->path || !e->link_target)
        return fail(err, errlen, -EPROTO, "an entry without a path in the copy stream");
    if (r->stream)
        return stream_entry(r, e, err, errlen);
    int parentfd = -1;
    const char *name = NULL;
    rc = place(r, e, &parentfd, &name, err, errlen);
    if (rc < 0)
        return rc;
    struct stat st;
    bool exists = fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT)
        return fail(err, errlen, -errno, "cannot create %s", shown(r, e->path));
    if (exists && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
        return refuse_special(err, errlen, shown(r, e->path), st.st_mode);
    if (exists && !S_ISDIR(st.st_mode) && mount_point(parentfd, name))
        return fail(err, errlen, -EBUSY,
                    "cannot copy to %s: it is a mount point (a file the runtime mounts, as /etc/hosts or a "
                    "ConfigMap subPath), and replacing it would unmount it",
                    shown(r, e->path));
    if (S_ISDIR(e->mode)) {
        if (exists && !S_ISDIR(st.st_mode))
            return fail(err, errlen, -ENOTDIR, "cannot overwrite %s with a directory", shown(r, e->path));
        return push_dir(r, parentfd, name, e, exists, err, errlen);
    }
    if (exists && S_ISDIR(st.st_mode))
        return fail(err, errlen, -EISDIR, "cannot overwrite the directory %s with a %s", shown(r, e->path),
                    S_ISLNK(e->mode) ? "symlink" : "file");
    if (S_ISLNK(e->mode) && e->link_target[0])
        return make_link(r, parentfd, name, e, err, errlen);
    if (S_ISREG(e->mode))
        return open_file(r, parentfd, name, e, err, errlen);
    return fail(err, errlen, -EPROTO, "entry \"%s\" of the copy stream has an unknown type (mode %o)",
                msg_path(r->quoted, e->path), e->mode);
}

/* A chunk's content onto a stream: a hole as zeros, as a pipe has no holes. */
static int stream_write(int fd, const Kdiag__Solo__Io__CopyChunk *c)
{
    static const uint8_t zeros[65536];
    if (!c->hole)
        return fd_write_all_or_signal(fd, c->data.data, c->data.len);
    for (uint64_t left = c->hole; left;) {
        size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
        int rc = fd_write_all_or_signal(fd, zeros, n);
        if (rc < 0)
            return rc;
        left -= n;
    }
    return 0;
}

int copytree_recv_chunk(copytree_recv *r, const Kdiag__Solo__Io__CopyChunk *c, char *err, size_t errlen)
{
    Kdiag__Solo__Io__CopyChunk dc;
    if (c->zstd.len) {
        if (!r->z && copyz_new(&r->z) < 0)
            return fail(err, errlen, -ENOMEM, "cannot decompress the copy stream");
        int rc = copyz_unpack(r->z, c, &dc, err, errlen);
        if (rc < 0)
            return rc;
        c = &dc;
    }
    if (r->finished)
        return fail(err, errlen, -EPROTO, "a chunk after the end of the copy stream");
    if (c->entry)
        return recv_entry(r, c->entry, err, errlen);
    if (r->fd < 0 || (c->data.len && c->hole))
        return fail(err, errlen, -EPROTO, "file content outside a file in the copy stream");
    uint64_t n = c->hole ? c->hole : c->data.len;
    if (n > r->file_meta.size - r->off)
        return fail(err, errlen, -EPROTO, "more content than the %llu bytes of %s in the copy stream",
                    (unsigned long long)r->file_meta.size, shown(r, r->file_meta.path));
    if (r->stream) {
        int rc = stream_write(r->fd, c);
        if (rc < 0)
            return fail(err, errlen, rc, "cannot write to %s", r->dest);
    }
    for (size_t done = 0; !r->stream && !c->hole && done < c->data.len;) {
        ssize_t w = pwrite(r->fd, c->data.data + done, c->data.len - done, (off_t)(r->off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fail(err, errlen, -errno, "cannot write %s", shown(r, r->file_meta.path));
        done += (size_t)w;
    }
    r->off += n;
    if (!c->hole)
        r->stats.bytes += n;
    return 0;
}

int copytree_recv_finish(copytree_recv *r, char *err, size_t errlen)
{
    if (!r->started)
        return fail(err, errlen, -EPROTO, "the copy stream ended before its first entry");
    int rc = file_finish(r, err, errlen);
    while (rc == 0 && r->depth)
        rc = level_pop(r, err, errlen);
    if (rc == 0)
        r->finished = true;
    return rc;
}

const copytree_stats *copytree_recv_stats(const copytree_recv *r)
{
    return &r->stats;
}

void copytree_recv_free(copytree_recv *r)
{
    if (!r)
        return;
    if (r->stream) /* the caller's */
        r->fd = r->destfd = -1;
    if (r->fd >= 0) {
        close(r->fd);
        unlinkat(r->file_parent, r->file_tmp, 0);
    }
    free(r->file_name);
    free(r->file_meta.path);
    while (r->depth) {
        recv_level *l = &r->levels[--r->depth];
        if (l->tmp[0])
            remove_tree(l->parentfd, l->tmp, 0);
        level_close(l);
    }
    free(r->levels);
    copyz_free(r->z);
    fd_close(&r->destfd);
    free(r->root_name);
    free(r->dest);
    free(r);
}
