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

/* Feeds the steps into dest; returns the first failure, or finish's result. */
static int feed_to(const char *dest, const step *s, size_t n, char *err, size_t errlen)
{
    copytree_recv *r;
    int rc = copytree_recv_new(&r, AT_FDCWD, dest, 0, false, err, errlen);
    if (rc < 0)
        return rc;
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

static char *path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dst, name);
    return buf;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names_that_climb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entries_outside_the_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_entry_through_a_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_must_match_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_stream_lands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_special_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_names_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_path_keeps_cause, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
