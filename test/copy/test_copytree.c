/* copytree_recv against hostile streams (a manager, or a client, that lies):
 * names that climb, entries outside the tree, entries through a symlink the
 * stream itself made, more or less content than announced. Each is refused
 * (-EPROTO, or the error making the entry met) and leaves nothing, inside the
 * destination or beside it. And copytree_send of special files: named, they
 * are refused with what they are; in a tree, passed over. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "copytree.h"
#include "tshell.h"

static char top[64], dst[128];

/* One chunk of a test stream. */
typedef struct {
    char kind; /* 'e' entry, 'd' data, 'h' hole */
    const char *path;
    unsigned mode;
    unsigned long long n; /* size (entry), bytes (data), length (hole) */
    const char *link;
} step;

/* Feeds the steps into r and frees it; returns the first failure, or finish's result. */
static int feed_into(copytree_recv *r, const step *s, size_t n, char *err, size_t errlen)
{
    int rc = 0;
    static uint8_t data[4096];
    memset(data, 'z', sizeof data);
    for (size_t i = 0; i < n && rc == 0; i++) {
        Kdiag__Solo__Io__CopyEntry e = KDIAG__SOLO__IO__COPY_ENTRY__INIT;
        Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
        if (s[i].kind == 'e') {
            e.path = (char *)s[i].path;
            e.mode = s[i].mode;
            e.size = s[i].n;
            e.link_target = (char *)(s[i].link ? s[i].link : "");
            e.mtime_sec = 1500000000;
            c.entry = &e;
        } else if (s[i].kind == 'd') {
            c.data.data = data;
            c.data.len = (size_t)s[i].n;
        } else {
            c.hole = s[i].n;
        }
        rc = copytree_recv_chunk(r, &c, err, errlen);
    }
    if (rc == 0)
        rc = copytree_recv_finish(r, err, errlen);
    copytree_recv_free(r);
    return rc;
}

/* Feeds the steps into dest. */
static int feed_to(const char *dest, const step *s, size_t n, char *err, size_t errlen)
{
    copytree_recv *r;
    int rc = copytree_recv_new(&r, AT_FDCWD, dest, 0, 0, err, errlen);
    return rc < 0 ? rc : feed_into(r, s, n, err, errlen);
}

/* Feeds the steps to a stream into a new unnamed file; its content in out
 * (at most len bytes), its length in *got. */
static int feed_stream(const step *s, size_t n, char *out, size_t len, size_t *got, char *err, size_t errlen)
{
    copytree_recv *r;
    int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    int rc = copytree_recv_new_stream(&r, fd, "stdout", err, errlen);
    if (rc == 0)
        rc = feed_into(r, s, n, err, errlen);
    ssize_t k = pread(fd, out, len, 0);
    *got = k > 0 ? (size_t)k : 0;
    assert_int_equal(fcntl(fd, F_GETFD), FD_CLOEXEC); /* still open: the caller's */
    close(fd);
    return rc;
}

static int feed(const step *s, size_t n, char *err, size_t errlen)
{
    char dest[sizeof dst];
    snprintf(dest, sizeof dest, "%s", dst);
    return feed_to(dest, s, n, err, errlen);
}

static int count_entries(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "find %s -mindepth 1 | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* Refused (-EPROTO, or the error that making the entry met); nothing in dst,
 * nothing but dst beside it. */
static void refused(const step *s, size_t n)
{
    char err[512] = "";
    int rc = feed(s, n, err, sizeof err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, rc == -EPROTO ? "(EPROTO)" : "(E"));
    assert_int_equal(count_entries(dst), 0);
    assert_int_equal(count_entries(top), 1);
}

#define REFUSED(...) \
    do { \
        const step s_[] = {__VA_ARGS__}; \
        refused(s_, sizeof s_ / sizeof s_[0]); \
    } while (0)

static int setup(void **state)
{
    (void)state;
    snprintf(top, sizeof top, "/tmp/kdiag-copytree-XXXXXX");
    if (!mkdtemp(top))
        return -1;
    snprintf(dst, sizeof dst, "%s/dst", top);
    return mkdir(dst, 0755);
}

static int teardown(void **state)
{
    (void)state;
    return tshell("rm -rf %s", top) == 0 ? 0 : -1;
}

static void test_names_that_climb(void **state)
{
    (void)state;
    REFUSED({'e', "..", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', ".", S_IFDIR | 0755, 0, NULL}, {'e', "x", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', "a/b", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "a/../x", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "a/", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "/etc", S_IFREG | 0644, 0, NULL});
}

static void test_entries_outside_the_tree(void **state)
{
    (void)state;
    /* A second root, and a child of a file. */
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "b", S_IFDIR | 0755, 0, NULL});
    REFUSED({'e', "f", S_IFREG | 0644, 0, NULL}, {'e', "f/x", S_IFREG | 0644, 0, NULL});
    /* A child before its directory. */
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "a/b/c", S_IFREG | 0644, 0, NULL});
}

static void test_no_entry_through_a_symlink(void **state)
{
    (void)state;
    /* The stream makes a/l -> / (or ..), then writes "through" it. */
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "a/l", S_IFLNK | 0777, 0, "/"},
            {'e', "a/l/x", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "a/l", S_IFLNK | 0777, 0, ".."},
            {'e', "a/l", S_IFDIR | 0755, 0, NULL}, {'e', "a/l/x", S_IFREG | 0644, 0, NULL});
}

static void test_content_must_match_size(void **state)
{
    (void)state;
    REFUSED({'d', NULL, 0, 10, NULL});
    REFUSED({'e', "f", S_IFREG | 0644, 5, NULL}, {'d', NULL, 0, 10, NULL});
    REFUSED({'e', "f", S_IFREG | 0644, 5, NULL}, {'h', NULL, 0, 6, NULL});
    REFUSED({'e', "f", S_IFREG | 0644, 100, NULL}, {'d', NULL, 0, 10, NULL});
    REFUSED({'e', "a", S_IFDIR | 0755, 0, NULL}, {'e', "a/f", S_IFREG | 0644, 100, NULL},
            {'e', "a/g", S_IFREG | 0644, 0, NULL});
    REFUSED({'e', "d", S_IFDIR | 0755, 0, NULL}, {'d', NULL, 0, 1, NULL});
    REFUSED({'e', "x", S_IFIFO | 0644, 0, NULL});
    REFUSED({'e', "l", S_IFLNK | 0777, 0, ""});
}

/* The same machinery accepts a well-formed stream. */
static void test_valid_stream_lands(void **state)
{
    (void)state;
    const step s[] = {
        {'e', "a", S_IFDIR | 0755, 0, NULL},
        {'e', "a/f", S_IFREG | 0640, 8192 + 10, NULL},
        {'d', NULL, 0, 10, NULL},
        {'h', NULL, 0, 8192, NULL},
        {'e', "a/l", S_IFLNK | 0777, 0, "f"},
        {'e', "a/sub", S_IFDIR | 0700, 0, NULL},
        {'e', "a/sub/g", S_IFREG | 0600, 0, NULL},
    };
    char err[512] = "", p[256];
    assert_int_equal(feed(s, sizeof s / sizeof s[0], err, sizeof err), 0);
    struct stat st;
    snprintf(p, sizeof p, "%s/a/f", dst);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 8192 + 10);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_mtime, 1500000000);
    assert_int_equal(count_entries(dst), 5);
}

static int count_emit(void *ud, const Kdiag__Solo__Io__CopyChunk *c)
{
    if (c->entry)
        ++*(int *)ud;
    return 0;
}

static void test_send_special_files(void **state)
{
    (void)state;
    char p[256], err[512] = "";
    int entries = 0;
    snprintf(p, sizeof p, "%s/fifo", dst);
    assert_int_equal(mkfifo(p, 0644), 0);
    /* named: refused, nothing sent */
    int rc = copytree_send(AT_FDCWD, p, 0, count_emit, &entries, NULL, err, sizeof err);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(entries, 0);
    assert_non_null(strstr(err, "/fifo: it is a FIFO; cp copies regular files, directories and symbolic links"));
    rc = copytree_send(AT_FDCWD, "/dev/null", 0, count_emit, &entries, NULL, err, sizeof err);
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(err, "cannot copy /dev/null: it is a character device; cp copies regular files, "
                             "directories and symbolic links");
    /* in a tree: the directory and its regular file, not the FIFO */
    snprintf(p, sizeof p, "%s/f", dst);
    assert_int_equal(tshell("echo x > %s", p), 0);
    rc = copytree_send(AT_FDCWD, dst, 0, count_emit, &entries, NULL, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(entries, 2);
}

/* The first entry sent, and how many. */
typedef struct {
    int entries;
    char root[64];
    unsigned mode;
} sent;

static int record_emit(void *ud, const Kdiag__Solo__Io__CopyChunk *c)
{
    sent *t = ud;
    if (c->entry && t->entries++ == 0) {
        snprintf(t->root, sizeof t->root, "%s", c->entry->path);
        t->mode = c->entry->mode;
    }
    return 0;
}

/* A file "x" of 3 bytes ("zzz"). */
static const step one_file[] = {{'e', "x", S_IFREG | 0644, 3, NULL}, {'d', NULL, 0, 3, NULL}};
#define ONE_FILE one_file, sizeof one_file / sizeof one_file[0]

static char *path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dst, name);
    return buf;
}

static void assert_content(const char *name, const char *want)
{
    char p[256], got[64] = "";
    int fd = open(path_in(p, sizeof p, name), O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, got, sizeof got - 1);
    close(fd);
    got[n < 0 ? 0 : n] = '\0';
    assert_string_equal(got, want);
}

/* copytree_send of path straight into a copytree_recv at dest. */
typedef struct {
    copytree_recv *r;
    char *err;
    size_t errlen;
} piped;

static int recv_emit(void *ud, const Kdiag__Solo__Io__CopyChunk *c)
{
    piped *x = ud;
    return copytree_recv_chunk(x->r, c, x->err, x->errlen);
}

static int send_into(const char *path, const char *dest, char *err, size_t errlen)
{
    piped x = {NULL, err, errlen};
    int rc = copytree_recv_new(&x.r, AT_FDCWD, dest, 0, 0, err, errlen);
    if (rc == 0)
        rc = copytree_send(AT_FDCWD, path, 0, recv_emit, &x, NULL, err, errlen);
    if (rc == 0)
        rc = copytree_recv_finish(x.r, err, errlen);
    copytree_recv_free(x.r);
    return rc;
}

/* A named file of procfs or sysfs, whose size says 0 or 4096, arrives with
 * its content (it arrived empty, or padded with zeros to 4096 bytes). */
static void test_pseudo_files_arrive_whole(void **state)
{
    (void)state;
    char p[256], err[512] = "", want[4096];
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, want, sizeof want);
    close(fd);
    assert_true(n > 0);
    assert_int_equal(send_into("/proc/self/cmdline", path_in(p, sizeof p, "cmdline"), err, sizeof err), 0);
    char got[4096];
    fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, got, sizeof got), n);
    close(fd);
    assert_memory_equal(got, want, (size_t)n);
    assert_int_equal(send_into("/proc/sys/kernel/ostype", path_in(p, sizeof p, "ostype"), err, sizeof err), 0);
    assert_content("ostype", "Linux\n");
    struct stat st;
    if (stat("/sys/devices/system/cpu/online", &st) == 0 && st.st_size == 4096) { /* sysfs says 4096 */
        assert_int_equal(send_into("/sys/devices/system/cpu/online", path_in(p, sizeof p, "online"), err, sizeof err),
                         0);
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 0 && st.st_size < 64);
    }
}

/* A device, FIFO or socket as the destination (or reached through a
 * symlink), or as the existing name of an entry in a directory merged into,
 * is refused with what it is, before any data, and left as it was: cp writes
 * regular files. */
static void test_recv_refuses_special_destination(void **state)
{
    (void)state;
    char p[256], l[256], want[512], err[512] = "";
    copytree_recv *r = NULL;
    struct stat st;
    path_in(p, sizeof p, "mynull");
    assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
    assert_int_equal(copytree_recv_new(&r, AT_FDCWD, p, 0, 0, err, sizeof err), -EINVAL);
    assert_null(r);
    snprintf(want, sizeof want,
             "cannot copy to %s: it is a character device; cp writes regular files, directories and symbolic links",
             p);
    assert_string_equal(err, want);
    assert_int_equal(symlink("mynull", path_in(l, sizeof l, "tonull")), 0);
    assert_int_equal(feed_to(l, ONE_FILE, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "it is a character device"));
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISCHR(st.st_mode));

    assert_int_equal(mkfifo(path_in(p, sizeof p, "x"), 0644), 0);
    assert_int_equal(feed(ONE_FILE, err, sizeof err), -EINVAL); /* into dst: x is its FIFO */
    snprintf(want, sizeof want,
             "cannot copy to %s/x: it is a FIFO; cp writes regular files, directories and symbolic links", dst);
    assert_string_equal(err, want);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(count_entries(dst), 3);
}

/* A trailing '/' (POSIX): the path must resolve, a final symlink followed,
 * to a directory. Sent, "file/" is ENOTDIR and "ld/" (ld -> d) the directory
 * under the name ld; received into, "newdir/" (missing) is ENOENT and
 * "file/" ENOTDIR, nothing made or changed. "nosuchdir/." is ENOENT. */
static void test_trailing_slash_names_a_directory(void **state)
{
    (void)state;
    char p[256], want[512], err[512] = "";
    copytree_recv *r = NULL;
    sent t = {0};
    assert_int_equal(mkdir(path_in(p, sizeof p, "d"), 0755), 0);
    assert_int_equal(tshell("echo x > %s/d/f && echo old > %s/file", dst, dst), 0);
    assert_int_equal(symlink("d", path_in(p, sizeof p, "ld")), 0);

    snprintf(p, sizeof p, "%s/file/", dst);
    assert_int_equal(copytree_send(AT_FDCWD, p, 0, record_emit, &t, NULL, err, sizeof err), -ENOTDIR);
    snprintf(want, sizeof want, "cannot copy %s: Not a directory (ENOTDIR)", p);
    assert_string_equal(err, want);
    assert_int_equal(t.entries, 0);
    snprintf(p, sizeof p, "%s/ld/", dst);
    assert_int_equal(copytree_send(AT_FDCWD, p, 0, record_emit, &t, NULL, err, sizeof err), 0);
    assert_int_equal(t.entries, 2); /* ld (the directory) and ld/f */
    assert_string_equal(t.root, "ld");
    assert_true(S_ISDIR(t.mode));

    snprintf(p, sizeof p, "%s/newdir/", dst);
    assert_int_equal(feed_to(p, ONE_FILE, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "cannot copy to %s: No such file or directory (ENOENT)", p);
    assert_string_equal(err, want);
    snprintf(p, sizeof p, "%s/file/", dst);
    assert_int_equal(copytree_recv_new(&r, AT_FDCWD, p, 0, 0, err, sizeof err), -ENOTDIR);
    assert_non_null(strstr(err, "(ENOTDIR)"));
    snprintf(p, sizeof p, "%s/nosuchdir/.", dst);
    assert_int_equal(copytree_recv_new(&r, AT_FDCWD, p, 0, 0, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "cannot copy to %s: No such file or directory (ENOENT)", p);
    assert_string_equal(err, want);
    assert_null(r);
    assert_content("file", "old\n");
    assert_int_equal(count_entries(dst), 4); /* d, d/f, ld, file */

    snprintf(p, sizeof p, "%s/ld/", dst); /* an existing directory (through ld) receives */
    assert_int_equal(feed_to(p, ONE_FILE, err, sizeof err), 0);
    assert_content("d/x", "zzz");
}

/* A symlink as the destination is written through to the file it names,
 * replaced under its own name (relative targets against the link's
 * directory, absolute ones, chains); the links stay. A dangling one is
 * refused and nothing made; a loop is ELOOP. */
static void test_recv_writes_through_symlink(void **state)
{
    (void)state;
    char p[256], abs[256], want[512], err[512] = "";
    char target[PATH_MAX] = "";
    assert_int_equal(mkdir(path_in(p, sizeof p, "sub"), 0755), 0);
    assert_int_equal(tshell("cd %s && for f in t1 t2 t3 t4; do echo old > $f; done", dst), 0);
    assert_int_equal(symlink("t1", path_in(p, sizeof p, "l1")), 0);
    assert_int_equal(symlink(path_in(abs, sizeof abs, "t2"), path_in(p, sizeof p, "l2")), 0);
    assert_int_equal(symlink("c3", path_in(p, sizeof p, "l3")), 0);
    assert_int_equal(symlink("sub/../t3", path_in(p, sizeof p, "c3")), 0);
    assert_int_equal(symlink("../t4", path_in(p, sizeof p, "sub/l4")), 0);
    const char *links[] = {"l1", "l2", "l3", "sub/l4"};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        char t[8];
        snprintf(t, sizeof t, "t%zu", i + 1);
        assert_int_equal(feed_to(path_in(p, sizeof p, links[i]), ONE_FILE, err, sizeof err), 0);
        assert_content(t, "zzz");
        assert_true(readlink(p, target, sizeof target - 1) > 0);
    }
    assert_int_equal(count_entries(dst), 10); /* no temporary left, no link replaced */

    assert_int_equal(symlink("nothere", path_in(p, sizeof p, "dangling")), 0);
    assert_int_equal(feed_to(p, ONE_FILE, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want,
             "cannot copy to %s: not writing through the dangling symlink to nothere: No such file or directory "
             "(ENOENT)",
             p);
    assert_string_equal(err, want);
    assert_int_equal(symlink("loop", path_in(p, sizeof p, "loop")), 0);
    assert_int_equal(feed_to(p, ONE_FILE, err, sizeof err), -ELOOP);
    assert_non_null(strstr(err, "(ELOOP)"));
    assert_int_equal(count_entries(dst), 12);
}

/* Names in messages are escaped: one line, no escape sequence reaches the
 * terminal, a backslash doubled. */
static void test_error_names_are_escaped(void **state)
{
    (void)state;
    char p[256], want[512], err[512] = "";
    const char *evil = "x\n\033[1A\033[2Kall good";
    assert_int_equal(mkdir(path_in(p, sizeof p, evil), 0755), 0);
    const step s[] = {{'e', evil, S_IFREG | 0644, 0, NULL}};
    assert_int_equal(feed(s, 1, err, sizeof err), -EISDIR);
    snprintf(want, sizeof want,
             "cannot overwrite the directory %s/x\\n\\e[1A\\e[2Kall good with a file: Is a directory (EISDIR)", dst);
    assert_string_equal(err, want);
    const step bad[] = {{'e', "a\\\t\x01/b", S_IFREG | 0644, 0, NULL}};
    assert_int_equal(feed(bad, 1, err, sizeof err), -EPROTO);
    assert_non_null(strstr(err, "invalid name \"a\\\\\\t\\x01/b\""));
}

/* A tree deeper than PATH_MAX: the message names the entry, its middle cut
 * ("…"), and ends with the cause, even in a small buffer. */
static void test_long_path_keeps_cause(void **state)
{
    (void)state;
    char name[201], p[256], err[2048] = "";
    memset(name, 'n', 200);
    name[200] = '\0';
    assert_int_equal(mkdir(path_in(p, sizeof p, "deep"), 0755), 0);
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; i < 22; i++) {
        assert_int_equal(mkdirat(fd, name, 0755), 0);
        int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        close(fd);
        fd = next;
        assert_true(fd >= 0);
    }
    close(fd);
    sent t = {0};
    const char *cause = ": File name too long (ENAMETOOLONG)";
    size_t sizes[] = {sizeof err, 1024, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        assert_int_equal(copytree_send(AT_FDCWD, p, 0, record_emit, &t, NULL, err, sizes[i]), -ENAMETOOLONG);
        size_t n = strlen(err);
        assert_true(n < 1024);
        assert_true(n > strlen(cause));
        assert_string_equal(err + n - strlen(cause), cause);
        if (i == 0) {
            assert_true(!strncmp(err, "cannot copy ", 12) && !strncmp(err + 12, p, strlen(p)));
            if (!strstr(err, "/deep/nnnn") || !strstr(err, "n…n") || !strstr(err, "n/n"))
                fail_msg("%s", err);
        }
    }
}

/* A stream to an fd: one regular file's content in order, a hole as zeros;
 * anything else is refused, and nothing is named or left anywhere. */
static void test_stream_takes_one_regular_file(void **state)
{
    (void)state;
    char out[8192], want[8192], err[512] = "";
    size_t got;
    static const step holey[] = {{'e', "f", S_IFREG | 0600, 4096 + 100 + 10, NULL},
                                 {'d', NULL, 0, 4096, NULL},
                                 {'h', NULL, 0, 100, NULL},
                                 {'d', NULL, 0, 10, NULL}};
    assert_int_equal(feed_stream(holey, 4, out, sizeof out, &got, err, sizeof err), 0);
    memset(want, 'z', sizeof want);
    memset(want + 4096, 0, 100);
    assert_int_equal(got, 4206);
    assert_memory_equal(out, want, got);
    static const step dir[] = {{'e', "etc", S_IFDIR | 0755, 0, NULL}};
    assert_int_equal(feed_stream(dir, 1, out, sizeof out, &got, err, sizeof err), -EISDIR);
    assert_string_equal(err, "cannot write etc to stdout: only one regular file's content goes there; name a local "
                             "directory instead: Is a directory (EISDIR)");
    static const step link[] = {{'e', "l", S_IFLNK | 0777, 0, "/etc/passwd"}};
    assert_int_equal(feed_stream(link, 1, out, sizeof out, &got, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "it is a symbolic link to /etc/passwd; name that file instead"));
    static const step two[] = {{'e', "x", S_IFREG | 0644, 3, NULL},
                               {'d', NULL, 0, 3, NULL},
                               {'e', "x/y", S_IFREG, 0, NULL}};
    assert_int_equal(feed_stream(two, 3, out, sizeof out, &got, err, sizeof err), -EPROTO);
    static const step more[] = {{'e', "x", S_IFREG | 0644, 3, NULL}, {'d', NULL, 0, 4, NULL}};
    assert_int_equal(feed_stream(more, 2, out, sizeof out, &got, err, sizeof err), -EPROTO);
    assert_int_equal(got, 0);
    static const step less[] = {{'e', "x", S_IFREG | 0644, 3, NULL}, {'d', NULL, 0, 2, NULL}};
    assert_int_equal(feed_stream(less, 2, out, sizeof out, &got, err, sizeof err), -EPROTO);
    assert_non_null(strstr(err, "after 2 of its 3 bytes"));
    assert_int_equal(count_entries(dst), 0);
}

/* copytree_send_file: an open regular file as one entry of the given name. */
static void test_send_file_under_a_name(void **state)
{
    (void)state;
    char err[512] = "";
    sent t = {0};
    int fd = open(dst, O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    assert_int_equal(copytree_send_file(fd, 0, "stdin", "stdin", record_emit, &t, NULL, err, sizeof err), 0);
    assert_int_equal(t.entries, 1);
    assert_string_equal(t.root, "stdin");
    assert_int_equal(t.mode, S_IFREG | 0640);
    assert_int_equal(copytree_send_file(fd, 0, "a/b", "stdin", record_emit, &t, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(copytree_send_file(fd, 0, "..", "stdin", record_emit, &t, NULL, err, sizeof err), -EINVAL);
    close(fd);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(copytree_send_file(p[0], 0, "stdin", "stdin", record_emit, &t, NULL, err, sizeof err), -EINVAL);
    assert_string_equal(err, "cannot copy stdin: it is not a regular file: Invalid argument (EINVAL)");
    close(p[0]);
    close(p[1]);
    /* through a receiver: the content, under the destination's name */
    fd = open(dst, O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "zzz", 3), 3);
    char dest[256];
    piped x = {NULL, err, sizeof err};
    assert_int_equal(copytree_recv_new(&x.r, AT_FDCWD, path_in(dest, sizeof dest, "new"), 0, 0, err, sizeof err), 0);
    assert_int_equal(copytree_send_file(fd, 0, "stdin", "stdin", recv_emit, &x, NULL, err, sizeof err), 0);
    assert_int_equal(copytree_recv_finish(x.r, err, sizeof err), 0);
    copytree_recv_free(x.r);
    close(fd);
    assert_content("new", "zzz");
}

/* Truncates the file named by ud to 2 KiB at the first data chunk. */
static int shrink_emit(void *ud, const Kdiag__Solo__Io__CopyChunk *c)
{
    if (c->data.len)
        assert_int_equal(truncate(ud, 2048), 0);
    return 0;
}

/* A sparse file truncated while it is sent (the sender's SEEK_DATA then
 * finds nothing, as at a last hole) fails the copy, with both sizes; one
 * that ends in a hole and stays whole is sent as it is. */
static void test_send_file_that_shrinks(void **state)
{
    (void)state;
    char p[256], err[512] = "", want[512];
    static const char block[4096];
    int fd = open(path_in(p, sizeof p, "sparse"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, block, sizeof block, 0), (ssize_t)sizeof block);
    assert_int_equal(pwrite(fd, block, sizeof block, 1 << 20), (ssize_t)sizeof block);
    close(fd);
    assert_int_equal(copytree_send(AT_FDCWD, p, 0, shrink_emit, p, NULL, err, sizeof err), -ENODATA);
    snprintf(want, sizeof want,
             "cannot copy %s: it shrank from %d to 2048 bytes while it was read (truncated or rewritten meanwhile); "
             "copy it again once it is not being written: No data available (ENODATA)",
             p, (1 << 20) + 4096);
    assert_string_equal(err, want);
    assert_int_equal(truncate(p, 1 << 20), 0); /* a block of data, then a hole to its end */
    copytree_stats st;
    assert_int_equal(copytree_send(AT_FDCWD, p, 0, record_emit, &(sent){0}, &st, err, sizeof err), 0);
    assert_true(st.bytes > 0 && st.bytes <= 4096); /* the rest went as a hole */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names_that_climb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_file_that_shrinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entries_outside_the_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_entry_through_a_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_must_match_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_stream_lands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_special_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_refuses_special_destination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_slash_names_a_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_writes_through_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_names_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_path_keeps_cause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pseudo_files_arrive_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_takes_one_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_file_under_a_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
