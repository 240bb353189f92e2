/* procfs parsing and ps_collect's join, on a fixture proc tree this test
 * writes (and removes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "procfs-internal.h"
#include "ps.h"

#define BTIME 1700000000ull

static char root[64];

static void put(const char *rel, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void putstr(const char *rel, const char *s)
{
    put(rel, s, strlen(s));
}

static void mkd(const char *rel)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void lnk(const char *target, const char *rel)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    assert_int_equal(symlink(target, path), 0);
}

/* A stat line with the fields procfs reads: state, ppid, starttime, rss. */
static void put_stat(int pid, const char *comm, char state, int ppid, unsigned long long start, unsigned long long rss)
{
    char rel[32], buf[512];
    snprintf(rel, sizeof(rel), "%d/stat", pid);
    snprintf(buf, sizeof(buf),
             "%d (%s) %c %d %d %d 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 %llu 12345678 %llu "
             "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
             pid, comm, state, ppid, pid, pid, start, rss);
    putstr(rel, buf);
}

static void put_status(int pid, unsigned uid)
{
    char rel[32], buf[512];
    snprintf(rel, sizeof(rel), "%d/status", pid);
    snprintf(buf, sizeof(buf),
             "Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nNgid:\t0\nPid:\t%d\n"
             "PPid:\t1\nTracerPid:\t0\nUid:\t%u\t%u\t%u\t%u\nGid:\t0\t0\t0\t0\n",
             pid, pid, uid, uid + 1, uid + 2, uid + 3);
    putstr(rel, buf);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int tree_down(void **state)
{
    (void)state;
    if (root[0])
        nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* 100: comm with spaces and parentheses, sockets (one dup'd), a pipe
 * 101: zombie without fd dir and with empty cmdline
 * 102: status missing -> skipped      103: empty dir (vanished) -> skipped
 * 104: cmdline missing -> empty       105: not a pid: ignored
 * "self" -> 104. tcp_inode is the inode of a real listener (0 = none). */
static void tree_build(uint64_t tcp_inode)
{
    char buf[64];
    tree_down(NULL);
    snprintf(root, sizeof(root), "/tmp/kdiag-procfs-%d", getpid());
    assert_int_equal(mkdir(root, 0755), 0);
    putstr("stat", "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 0 0 0\nctxt 5\nbtime 1700000000\nprocesses 9\n");
    mkd("100");
    put_stat(100, "my (odd) name) x", 'S', 1, 250, 3);
    put_status(100, 1234);
    put("100/cmdline", "/bin/srv\0-c\0a b\0", 16);
    mkd("100/fd");
    lnk("/dev/null", "100/fd/0");
    snprintf(buf, sizeof(buf), "socket:[%llu]", (unsigned long long)(tcp_inode ? tcp_inode : 4242));
    lnk(buf, "100/fd/3");
    lnk(buf, "100/fd/4");
    lnk("pipe:[99]", "100/fd/5");
    lnk("socket:[", "100/fd/6");
    lnk("/very/long/path/that/is/longer/than/the/link/buffer/of/sixty/four/bytes/x", "100/fd/7");
    mkd("101");
    put_stat(101, "zomb", 'Z', 100, 300, 0);
    put_status(101, 0);
    putstr("101/cmdline", "");
    mkd("102");
    put_stat(102, "nostatus", 'S', 1, 1, 1);
    mkd("103");
    mkd("104");
    put_stat(104, "nocmd", 'R', 1, 0, 1);
    put_status(104, 65534);
    mkd("105x");
    lnk("104", "self");
}

static void test_parse_stat(void **state)
{
    (void)state;
    procfs_proc p;
    uint64_t st = 0, rss = 0;
    memset(&p, 0, sizeof(p));
    assert_int_equal(procfs_parse_stat("42 (a) b (c)) D 7 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 "
                                       "99 100 5 0\n",
                                       &p, &st, &rss),
                     0);
    assert_int_equal(p.pid, 42);
    assert_string_equal(p.name, "a) b (c)");
    assert_int_equal(p.state, 'D');
    assert_int_equal(p.ppid, 7);
    assert_int_equal(p.sid, 1);
    assert_int_equal(st, 99);
    assert_int_equal(rss, 5);

    /* A comm longer than the buffer is cut, not overflowed. */
    char longline[400];
    snprintf(longline, sizeof(longline), "5 (%0100d) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 9 9\n", 0);
    assert_int_equal(procfs_parse_stat(longline, &p, &st, &rss), 0);
    assert_int_equal(strlen(p.name), sizeof(p.name) - 1);

    assert_int_equal(procfs_parse_stat("", &p, &st, &rss), -EBADMSG);
    assert_int_equal(procfs_parse_stat("1 (x S 1", &p, &st, &rss), -EBADMSG);
    assert_int_equal(procfs_parse_stat("1 (x) S 1 1\n", &p, &st, &rss), -EBADMSG);
    assert_int_equal(procfs_parse_stat("1 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 9 9", &p, &st, &rss),
                     -EBADMSG);
    assert_int_equal(procfs_parse_stat("1 (x) S -1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 9 9", &p, &st, &rss),
                     -EBADMSG);
    assert_int_equal(procfs_parse_stat("x (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 9 9", &p, &st, &rss), -EBADMSG);

    /* As the kernel shows a task it is reaping (seen in a fork loop): gone, not malformed. */
    assert_int_equal(procfs_parse_stat("6020 (churn) X 0 -1 -1 0 -1 4227148 17 0 0 0 0 0 0 0 20 0 0 0 820942 0 0 0\n",
                                       &p, &st, &rss),
                     -ENOENT);

    uint32_t uid = 0;
    assert_int_equal(procfs_parse_status_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n", &uid), 0);
    assert_int_equal(uid, 1000);
    assert_int_equal(procfs_parse_status_uid("Uid:\t7\t0\t0\t0\n", &uid), 0);
    assert_int_equal(uid, 7);
    assert_int_equal(procfs_parse_status_uid("Name:\tx\nGid:\t1\n", &uid), -EBADMSG);
    assert_int_equal(procfs_parse_status_uid("Uid:\tx\n", &uid), -EBADMSG);
}

static int collect_sock(uint64_t ino, void *ud)
{
    uint64_t *v = ud;
    v[++v[0]] = ino;
    return 0;
}

/* A proc root with no process at all (the fuzzer found qsort(NULL, 0) here). */
static void test_empty_root(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/kdiag-procfs-%d", getpid());
    assert_int_equal(mkdir(root, 0755), 0);
    putstr("stat", "cpu  1 2 3 4\nbtime 1700000000\n");
    lnk("1", "self"); /* the reader itself, already gone */
    procfs *pfs = NULL;
    assert_int_equal(procfs_open(root, &pfs), 0);
    int *pids = NULL;
    size_t n = 1;
    assert_int_equal(procfs_list_pids(pfs, &pids, &n), 0);
    assert_int_equal(n, 0);
    free(pids);
    procfs_close(pfs);
}

static void test_read_fixture(void **state)
{
    (void)state;
    tree_build(0);
    procfs *pfs = NULL;
    assert_int_equal(procfs_open(root, &pfs), 0);
    assert_int_equal(procfs_self_pid(pfs), 104);

    int *pids = NULL;
    size_t n = 0;
    assert_int_equal(procfs_list_pids(pfs, &pids, &n), 0);
    assert_int_equal(n, 5);
    int want[] = {100, 101, 102, 103, 104};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pids[i], want[i]);
    free(pids);

    long ticks = sysconf(_SC_CLK_TCK);
    procfs_proc p;
    uint64_t socks[16] = {0};
    assert_int_equal(procfs_read(pfs, 100, &p, collect_sock, socks), 0);
    assert_int_equal(p.pid, 100);
    assert_int_equal(p.ppid, 1);
    assert_string_equal(p.name, "my (odd) name) x");
    assert_int_equal(p.state, 'S');
    assert_int_equal(p.uid, 1234);
    assert_int_equal(p.rss_bytes, 3 * (uint64_t)sysconf(_SC_PAGESIZE));
    assert_int_equal(p.start_time_unix_ms, BTIME * 1000 + 250 * 1000 / (uint64_t)ticks);
    assert_string_equal(p.cmdline, "/bin/srv -c a b");
    assert_int_equal(socks[0], 2); /* fd 3 and its dup fd 4; ps dedups */
    assert_int_equal(socks[1], 4242);
    assert_int_equal(socks[2], 4242);
    procfs_proc_free(&p);

    /* the stat alone (exec's process-tree walk): no uid, no cmdline */
    assert_int_equal(procfs_read_stat(pfs, 100, &p), 0);
    assert_int_equal(p.ppid, 1);
    assert_int_equal(p.state, 'S');
    assert_int_equal(p.uid, 0);
    assert_null(p.cmdline);
    assert_int_equal(procfs_read_stat(pfs, 999, &p), -ENOENT);

    memset(socks, 0, sizeof(socks));
    assert_int_equal(procfs_read(pfs, 101, &p, collect_sock, socks), 0);
    assert_int_equal(p.state, 'Z');
    assert_int_equal(p.ppid, 100);
    assert_string_equal(p.cmdline, "");
    assert_int_equal(socks[0], 0);
    procfs_proc_free(&p);

    assert_int_equal(procfs_read(pfs, 102, &p, collect_sock, socks), -ENOENT);
    assert_null(p.cmdline);
    assert_int_equal(procfs_read(pfs, 103, &p, collect_sock, socks), -ENOENT);
    assert_int_equal(procfs_read(pfs, 999, &p, collect_sock, socks), -ENOENT);

    assert_int_equal(procfs_read(pfs, 104, &p, NULL, NULL), 0);
    assert_string_equal(p.cmdline, "");
    assert_int_equal(p.uid, 65534);
    procfs_proc_free(&p);

    /* Garbage in stat is an error, not a crash. */
    putstr("104/stat", "garbage");
    assert_int_equal(procfs_read(pfs, 104, &p, NULL, NULL), -EBADMSG);
    procfs_close(pfs);

    /* A root without stat/btime, and a root that does not exist. */
    char path[128];
    snprintf(path, sizeof(path), "%s/stat", root);
    assert_int_equal(remove(path), 0);
    assert_int_equal(procfs_open(root, &pfs), -ENOENT);
    assert_int_equal(procfs_open("/nonexistent-kdiag-proc", &pfs), -ENOENT);
    tree_down(NULL);
}

/* ps_collect on the fixture: vanished entries skipped, the excluded pid left
 * out, a real listener's inode matched to its fixture process once. */
static void test_collect_fixture(void **state)
{
    (void)state;
    int lt = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lt, (struct sockaddr *)&a4, sizeof(a4)), 0);
    assert_int_equal(listen(lt, 4), 0);
    socklen_t sl = sizeof(a4);
    getsockname(lt, (struct sockaddr *)&a4, &sl);
    struct stat st;
    assert_int_equal(fstat(lt, &st), 0);
    tree_build(st.st_ino);

    ps_list l = {0};
    ps_opts o = {.proc_root = root, .exclude_pid = -1};
    assert_int_equal(ps_collect(&o, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.procs[0].info.pid, 100);
    assert_int_equal(l.procs[1].info.pid, 101);
    assert_int_equal(l.procs[2].info.pid, 104);
    assert_int_equal(l.procs[0].n_socks, 1);
    assert_int_equal(l.procs[0].socks[0].port, ntohs(a4.sin_port));
    assert_int_equal(l.procs[0].socks[0].protocol, IPPROTO_TCP);
    assert_int_equal(l.procs[1].n_socks, 0);
    ps_list_free(&l);

    /* Default exclusion is "self" of that root (104 here). */
    o.exclude_pid = 0;
    assert_int_equal(ps_collect(&o, &l), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.procs[1].info.pid, 101);
    ps_list_free(&l);

    o.exclude_pid = 100;
    assert_int_equal(ps_collect(&o, &l), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.procs[0].info.pid, 101);
    ps_list_free(&l);

    o.proc_root = "/nonexistent-kdiag-proc";
    assert_int_equal(ps_collect(&o, &l), -ENOENT);
    assert_null(l.procs);
    close(lt);
    tree_down(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test_teardown(test_empty_root, tree_down),
        cmocka_unit_test_teardown(test_read_fixture, tree_down),
        cmocka_unit_test_teardown(test_collect_fixture, tree_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
