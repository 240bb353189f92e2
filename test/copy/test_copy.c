/* copy — CopyFrom and CopyTo against the real kdiag-manager, through the
 * client the CLI uses (api/copy_client). The target is a real process
 * chrooted into a directory (its /proc/PID/root), everything on a tmpfs in
 * the test's own mount namespace, so the mounts (and the small tmpfs of the
 * disk-full tests) vanish with the test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "basic/time-util.h"
#include "contract.h"
#include "copy_client.h"
#include "mgr.h"
#include "mgrproc.h"
#include "rpc_server.h"
#include "tmute.h"
#include "tsan.h"

static char base[64];   /* a tmpfs */
static char root[128];  /* the target's root */
static char local[128]; /* the CLI's side */
static pid_t target_pid;
static mgr_proc mgr;
static rpc_client *cl;
static copy_client_target tgt;

/* n random bytes into a new file. */
static void write_random(const char *path, size_t n)
{
    static uint8_t buf[1 << 20];
    assert_true(n <= sizeof buf);
    assert_int_equal(getrandom(buf, n, 0), (ssize_t)n);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);
}

static void write_file(const char *path, const char *content, mode_t mode, uid_t uid, gid_t gid, time_t mtime)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchown(fd, uid, gid), 0);
    assert_int_equal(fchmod(fd, mode), 0);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 123456789}};
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

static void set_attrs(const char *path, mode_t mode, uid_t uid, gid_t gid, time_t mtime)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(lchown(path, uid, gid), 0);
    if (!S_ISLNK(st.st_mode))
        assert_int_equal(chmod(path, mode), 0);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 987654321}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory, sorted (NULL-terminated, one allocation each). */
static char **names(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **v = NULL;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        v = realloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    if (v)
        qsort(v, *n, sizeof *v, cmp_names);
    return v;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool same_content(const char *a, const char *b)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* a and b are the same tree: names, types, modes, owners, mtimes (to the
 * nanosecond), sizes, contents and link targets. */
static void assert_same_tree(const char *a, const char *b)
{
    struct stat sa, sb;
    assert_int_equal(lstat(a, &sa), 0);
    if (lstat(b, &sb) != 0)
        fail_msg("%s is missing (copy of %s)", b, a);
    if (sa.st_mode != sb.st_mode || sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)
        fail_msg("%s: mode %o uid %d gid %d, but %s: mode %o uid %d gid %d", a, sa.st_mode, (int)sa.st_uid,
                 (int)sa.st_gid, b, sb.st_mode, (int)sb.st_uid, (int)sb.st_gid);
    if (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)
        fail_msg("%s: mtime %lld.%09ld, but %s: %lld.%09ld", a, (long long)sa.st_mtim.tv_sec, sa.st_mtim.tv_nsec,
                 b, (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    if (S_ISLNK(sa.st_mode)) {
        char la[256] = "", lb[256] = "";
        assert_true(readlink(a, la, sizeof la - 1) > 0);
        assert_true(readlink(b, lb, sizeof lb - 1) > 0);
        assert_string_equal(la, lb);
    } else if (S_ISREG(sa.st_mode)) {
        assert_int_equal(sa.st_size, sb.st_size);
        if (!same_content(a, b))
            fail_msg("%s and %s differ", a, b);
    } else if (S_ISDIR(sa.st_mode)) {
        size_t na, nb;
        char **va = names(a, &na), **vb = names(b, &nb);
        if (na != nb)
            fail_msg("%s has %zu entries, %s has %zu", a, na, b, nb);
        for (size_t i = 0; i < na; i++) {
            assert_string_equal(va[i], vb[i]);
            char pa[512], pb[512];
            snprintf(pa, sizeof pa, "%s/%s", a, va[i]);
            snprintf(pb, sizeof pb, "%s/%s", b, vb[i]);
            assert_same_tree(pa, pb);
        }
        free_names(va, na);
        free_names(vb, nb);
    }
}

/* Nothing but the names given (NULL-terminated) in dir: no temporaries. */
static void assert_dir_holds(const char *dir, const char *const *want)
{
    size_t n, k = 0;
    char **v = names(dir, &n);
    for (; want[k]; k++)
        ;
    for (size_t i = 0; i < n; i++) {
        bool ok = false;
        for (size_t j = 0; j < k; j++)
            ok |= !strcmp(v[i], want[j]);
        if (!ok)
            fail_msg("unexpected \"%s\" in %s", v[i], dir);
    }
    assert_int_equal(n, k);
    free_names(v, n);
}

static char *slurp(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

static bool no_zstd; /* the copies below send file content as it is */

static int copy_from(const char *remote, const char *to, char *err, size_t errlen)
{
    copy_client_opts o = {.timeout_ms = 60000, .no_zstd = no_zstd};
    return copy_client_from(cl, &tgt, remote, to, &o, err, errlen);
}

static int copy_to(const char *from, const char *remote, char *err, size_t errlen)
{
    copy_client_opts o = {.timeout_ms = 60000, .no_zstd = no_zstd};
    return copy_client_to(cl, from, &tgt, remote, &o, err, errlen);
}

/* The same, failing the test with the client's message. */
static void copy_from_ok(const char *remote, const char *to)
{
    char err[1024];
    if (copy_from(remote, to, err, sizeof err) < 0)
        fail_msg("CopyFrom %s: %s", remote, err);
}

static void copy_to_ok(const char *from, const char *remote)
{
    char err[1024];
    if (copy_to(from, remote, err, sizeof err) < 0)
        fail_msg("CopyTo %s: %s", remote, err);
}

/* A target: a child sleeping with its root at `root`; when nobody, as uid
 * and gid 65534 and still dumpable (so its /proc/PID/root opens to such a
 * manager). Its pid once it chrooted, or -1. */
static pid_t target_start(bool nobody)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (chroot(root) < 0 || chdir("/") < 0)
            _exit(1);
        if (nobody &&
            (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0 || prctl(PR_SET_DUMPABLE, 1) < 0))
            _exit(1);
        close(ready[1]);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c;
    ssize_t r = pid > 0 ? read(ready[0], &c, 1) : -1; /* EOF once it chrooted (or died) */
    close(ready[0]);
    return r == 0 ? pid : -1;
}

static int setup(void **state)
{
    (void)state;
    /* Our own mount namespace: the tmpfs mounts below are nobody else's. */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        fprintf(stderr, "test_copy: needs root (a mount namespace): %s\n", strerror(errno));
        return -1;
    }
    snprintf(base, sizeof base, "/tmp/kdiag-cp-test-XXXXXX");
    if (!mkdtemp(base) || mount("tmpfs", base, "tmpfs", 0, "size=1g") < 0)
        return -1;
    snprintf(root, sizeof root, "%s/root", base);
    snprintf(local, sizeof local, "%s/local", base);
    if (mkdir(root, 0755) < 0 || mkdir(local, 0755) < 0)
        return -1;
    /* The target: a process whose root is `root`. */
    target_pid = target_start(false);
    if (target_pid < 0)
        return -1;
    tgt.pid = (uint64_t)target_pid;
    if (mgr_start(&mgr, NULL) < 0)
        return -1;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", mgr.port);
    return rpc_client_new(&cl, addr, mgr.token);
}

static int teardown(void **state)
{
    (void)state;
    rpc_client_free(cl);
    mgr_stop(&mgr, SIGTERM, 5000);
    if (target_pid > 0) {
        kill(target_pid, SIGKILL);
        waitpid(target_pid, NULL, 0);
    }
    umount2(base, MNT_DETACH);
    rmdir(base);
    return 0;
}

/* A tree with files, an empty file, a set-uid file, a read-only directory,
 * relative and absolute symlinks, all with their own owners and mtimes. */
static void make_tree(const char *top)
{
    char p[512];
    assert_int_equal(mkdir(top, 0700), 0);
    snprintf(p, sizeof p, "%s/file", top);
    write_file(p, "hello\n", 0640, 2000, 2001, 1600000000);
    snprintf(p, sizeof p, "%s/suid", top);
    write_file(p, "#!/bin/sh\n", 04755, 0, 0, 1600000001);
    snprintf(p, sizeof p, "%s/empty", top);
    write_file(p, "", 0600, 3000, 3000, 1600000002);
    snprintf(p, sizeof p, "%s/sub", top);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/deeper", top);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/deeper/note.txt", top);
    write_file(p, "deep\n", 0444, 4000, 4001, 1600000003);
    set_attrs(p, 0444, 4000, 4001, 1600000003);
    snprintf(p, sizeof p, "%s/sub/deeper", top);
    set_attrs(p, 0750, 4000, 4001, 1600000004);
    snprintf(p, sizeof p, "%s/link", top);
    assert_int_equal(symlink("file", p), 0);
    set_attrs(p, 0, 5000, 5001, 1600000005);
    snprintf(p, sizeof p, "%s/abs", top);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    set_attrs(p, 0, 0, 0, 1600000006);
    snprintf(p, sizeof p, "%s/sub", top);
    set_attrs(p, 0555, 6000, 6001, 1600000007); /* read-only: its entries must go in before its mode */
    set_attrs(top, 0751, 7000, 7001, 1600000008);
}

/* cp POD:/src LOCAL/out then cp LOCAL/out POD:/back: both copies are the
 * original, to the nanosecond, but for the set-uid bit, which the pod's
 * file does not get here (a set-uid root program from a pod is no program
 * of this machine's) and the pod's keeps. */
static void test_round_trip_keeps_tree(void **state)
{
    (void)state;
    char src[256], out[256], back[256], suid[300];
    struct stat st;
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(out, sizeof out, "%s/out", local);
    snprintf(back, sizeof back, "%s/back", root);
    make_tree(src);
    copy_from_ok("/src", out);
    snprintf(suid, sizeof suid, "%s/suid", out);
    assert_int_equal(lstat(suid, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(chmod(suid, 04755), 0); /* its mtime stays */
    assert_same_tree(src, out);
    copy_to_ok(out, "/back");
    assert_same_tree(src, back);
    const char *const only[] = {"src", "back", NULL};
    assert_dir_holds(root, only);
}

/* An existing directory receives the copy under its name; a file name is
 * replaced; a directory's contents (dir/.) merge into an existing one. */
static void test_existing_directory_receives(void **state)
{
    (void)state;
    char p[256];
    snprintf(p, sizeof p, "%s/in", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/in/old", root);
    write_file(p, "old\n", 0644, 0, 0, 1500000000);
    snprintf(p, sizeof p, "%s/one", local);
    write_file(p, "one\n", 0644, 0, 0, 1500000000);
    copy_to_ok(p, "/in");
    snprintf(p, sizeof p, "%s/in/one", root);
    assert_string_equal(slurp(p), "one\n");
    snprintf(p, sizeof p, "%s/one", local);
    copy_to_ok(p, "/in/old"); /* replaces */
    snprintf(p, sizeof p, "%s/in/old", root);
    assert_string_equal(slurp(p), "one\n");
    snprintf(p, sizeof p, "%s/merged", local);
    assert_int_equal(mkdir(p, 0755), 0);
    copy_from_ok("/in/.", p);
    const char *const want[] = {"one", "old", NULL};
    assert_dir_holds(p, want);
}

/* "..", absolute symlinks and symlinks that climb all resolve inside the
 * target's root; a symlink loop is refused with ELOOP. */
static void test_paths_stay_inside_root(void **state)
{
    (void)state;
    char p[256], err[1024];
    snprintf(p, sizeof p, "%s/etc", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/etc/passwd", root);
    write_file(p, "inside\n", 0644, 0, 0, 1500000000);
    snprintf(p, sizeof p, "%s/abs", root);
    assert_int_equal(symlink("/", p), 0);
    snprintf(p, sizeof p, "%s/up", root);
    assert_int_equal(symlink("../../../../..", p), 0);
    snprintf(p, sizeof p, "%s/loop", root);
    assert_int_equal(symlink("loop", p), 0);

    const char *escapes[] = {"../../etc/passwd", "/../../../etc/passwd", "/abs/etc/passwd", "/up/etc/passwd"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        snprintf(p, sizeof p, "%s/esc%zu", local, i);
        copy_from_ok(escapes[i], p);
        assert_string_equal(slurp(p), "inside\n");
    }
    snprintf(p, sizeof p, "%s/looped", local);
    err[0] = '\0';
    assert_int_equal(copy_from("/loop/x", p, err, sizeof err), copy_client_errno(GRPC_STATUS_INVALID_ARGUMENT));
    assert_non_null(strstr(err, "ELOOP"));
    assert_int_equal(access(p, F_OK), -1);

    /* Writes: through the absolute symlink and up with "..", still inside. */
    snprintf(p, sizeof p, "%s/esc0", local);
    copy_to_ok(p, "/abs/kdiag-cp-escaped");
    copy_to_ok(p, "../../../kdiag-cp-escaped2");
    assert_int_equal(access("/kdiag-cp-escaped", F_OK), -1);
    assert_int_equal(access("/kdiag-cp-escaped2", F_OK), -1);
    snprintf(p, sizeof p, "%s/kdiag-cp-escaped", root);
    assert_string_equal(slurp(p), "inside\n");
    snprintf(p, sizeof p, "%s/kdiag-cp-escaped2", root);
    assert_string_equal(slurp(p), "inside\n");

    /* The symlink itself is copied as a link, not followed. */
    snprintf(p, sizeof p, "%s/abslink", local);
    copy_from_ok("/abs", p);
    char l[64] = "";
    assert_true(readlink(p, l, sizeof l - 1) > 0);
    assert_string_equal(l, "/");
}

/* Missing paths, a missing parent, a directory onto a file: one line naming
 * the path and the cause, nothing written. */
static void test_errors_name_path_and_cause(void **state)
{
    (void)state;
    char p[256], err[1024];
    snprintf(p, sizeof p, "%s/never", local);
    assert_int_equal(copy_from("/no/such/file", p, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "cannot copy /no/such/file: No such file or directory (ENOENT)"));
    assert_non_null(strstr(err, "(ENOENT)"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(access(p, F_OK), -1);

    snprintf(p, sizeof p, "%s/small", local);
    write_file(p, "x\n", 0644, 0, 0, 1500000000);
    assert_int_equal(copy_to(p, "/nodir/x", err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "/nodir"));
    assert_non_null(strstr(err, "(ENOENT)"));

    snprintf(p, sizeof p, "%s/afile", root);
    write_file(p, "a\n", 0644, 0, 0, 1500000000);
    assert_int_equal(copy_to(local, "/afile", err, sizeof err), -ENOTDIR);
    assert_non_null(strstr(err, "/afile"));
    assert_non_null(strstr(err, "(ENOTDIR)"));
    assert_string_equal(slurp(p), "a\n");

    snprintf(p, sizeof p, "%s/missing", local);
    assert_int_equal(copy_to(p, "/x", err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, p));

    /* A file of the tree where the destination has a directory. */
    snprintf(p, sizeof p, "%s/clash", local);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/clash/x", local);
    write_file(p, "x\n", 0644, 0, 0, 1500000000);
    snprintf(p, sizeof p, "%s/clash", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/clash/x", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/clash", local);
    assert_int_equal(copy_to(p, "/", err, sizeof err), -ENOTDIR); /* EISDIR: FAILED_PRECONDITION too */
    assert_non_null(strstr(err, "cannot overwrite the directory /clash/x with a file"));
    assert_non_null(strstr(err, "(EISDIR)"));
    snprintf(p, sizeof p, "%s/clash", root);
    const char *const only_x[] = {"x", NULL};
    assert_dir_holds(p, only_x);
}

/* In the target's root, as docs/cp.md says for any destination: a symlink
 * is written through to its file (an absolute target from the target's
 * root), the link kept; a device or a FIFO is refused and left as it was;
 * "dir/" must be an existing directory; "ld/" (ld -> a directory) sends the
 * directory. */
static void test_destination_rules_in_root(void **state)
{
    (void)state;
    char p[256], f[256], err[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/wt", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/wt/t.conf", root);
    write_file(p, "old\n", 0644, 0, 0, 1500000000);
    snprintf(p, sizeof p, "%s/wt/l.conf", root);
    assert_int_equal(symlink("t.conf", p), 0);
    snprintf(p, sizeof p, "%s/wt/abs.conf", root);
    assert_int_equal(symlink("/wt/t.conf", p), 0); /* outside the root: nothing */
    snprintf(f, sizeof f, "%s/new.conf", local);
    write_file(f, "new\n", 0600, 0, 0, 1500000000);

    copy_to_ok(f, "/wt/l.conf");
    snprintf(p, sizeof p, "%s/wt/t.conf", root);
    assert_string_equal(slurp(p), "new\n");
    write_file(p, "old\n", 0644, 0, 0, 1500000000);
    copy_to_ok(f, "/wt/abs.conf");
    assert_string_equal(slurp(p), "new\n");
    snprintf(p, sizeof p, "%s/wt/abs.conf", root);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(access("/wt/t.conf", F_OK), -1);

    snprintf(p, sizeof p, "%s/wt/mynull", root);
    assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
    assert_int_equal(copy_to(f, "/wt/mynull", err, sizeof err), copy_client_errno(GRPC_STATUS_INVALID_ARGUMENT));
    assert_string_equal(err, "cannot copy to /wt/mynull: it is a character device; cp writes regular files, "
                             "directories and symbolic links");
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISCHR(st.st_mode));

    assert_int_equal(copy_to(f, "/wt/newdir/", err, sizeof err), -ENOENT);
    assert_string_equal(err, "cannot copy to /wt/newdir/: No such file or directory (ENOENT)");
    assert_int_equal(copy_to(f, "/wt/t.conf/", err, sizeof err), -ENOTDIR);
    assert_non_null(strstr(err, "(ENOTDIR)"));
    const char *const wt[] = {"t.conf", "l.conf", "abs.conf", "mynull", NULL};
    snprintf(p, sizeof p, "%s/wt", root);
    assert_dir_holds(p, wt);

    snprintf(p, sizeof p, "%s/wt/sub", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/wt/ld", root);
    assert_int_equal(symlink("sub", p), 0);
    snprintf(p, sizeof p, "%s/ld-copy", local);
    copy_from_ok("/wt/ld/", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(copy_from("/wt/t.conf/", p, err, sizeof err), -ENOTDIR);
    assert_string_equal(err, "cannot copy /wt/t.conf/: Not a directory (ENOTDIR)");
}

/* A name from the target that meets an error is escaped in the message: one
 * line, no escape sequence for the user's terminal. */
static void test_names_from_target_escaped(void **state)
{
    (void)state;
    char p[256], err[1024];
    const char *evil = "x\n\033[1A\033[2Kall good";
    snprintf(p, sizeof p, "%s/esc", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/esc/%s", root, evil);
    write_file(p, "x\n", 0644, 0, 0, 1500000000);
    snprintf(p, sizeof p, "%s/esc", local);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/esc/%s", local, evil);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/esc", local);
    assert_int_equal(copy_from("/esc/.", p, err, sizeof err), -EISDIR);
    assert_null(strchr(err, '\n'));
    assert_null(strchr(err, '\033'));
    assert_non_null(strstr(err, "/esc/x\\n\\e[1A\\e[2Kall good with a file: Is a directory (EISDIR)"));
}

/* A manager without privilege over the target's files (uid 65534, no
 * capabilities): EACCES named with the path, both ways, nothing written. */
static void test_permission_denied_names_path(void **state)
{
    (void)state;
    char p[256], err[1024], wrapper[256];
    snprintf(p, sizeof p, "%s/secret", root);
    write_file(p, "secret\n", 0600, 0, 0, 1500000000);
    snprintf(p, sizeof p, "%s/locked", root);
    assert_int_equal(mkdir(p, 0755), 0);
    /* The target runs as 65534 too (and stays dumpable), so its /proc/PID/root opens. */
    pid_t t = target_start(true);
    assert_true(t > 0);
    snprintf(wrapper, sizeof wrapper, "%s/nobody-manager", base);
    FILE *f = fopen(wrapper, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups %s\n", KDIAG_MANAGER_PATH);
    fclose(f);
    assert_int_equal(chmod(wrapper, 0755), 0);
    mgrproc m;
    assert_int_equal(mgrproc_start(wrapper, &m), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", m.port);
    rpc_client *ncl;
    assert_int_equal(rpc_client_new(&ncl, addr, m.token), 0);
    copy_client_target nt = {.pid = (uint64_t)t};
    copy_client_opts o = {.timeout_ms = 60000};

    snprintf(p, sizeof p, "%s/got-secret", local);
    assert_int_equal(copy_client_from(ncl, &nt, "/secret", p, &o, err, sizeof err), -EACCES);
    assert_non_null(strstr(err, "/secret"));
    assert_non_null(strstr(err, "(EACCES)"));
    assert_int_equal(access(p, F_OK), -1);

    snprintf(p, sizeof p, "%s/for-locked", local);
    write_file(p, "in\n", 0644, 0, 0, 1500000000);
    assert_int_equal(copy_client_to(ncl, p, &nt, "/locked/in", &o, err, sizeof err), -EACCES);
    assert_non_null(strstr(err, "/locked/in"));
    assert_non_null(strstr(err, "(EACCES)"));
    snprintf(p, sizeof p, "%s/locked", root);
    const char *const none[] = {NULL};
    assert_dir_holds(p, none);

    rpc_client_free(ncl);
    mgrproc_stop(&m);
    kill(t, SIGKILL);
    waitpid(t, NULL, 0);
}

static long vm_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)))
            v = atol(line + strlen(key));
    if (f)
        fclose(f);
    return v;
}

#define GIB (1024LL * 1024 * 1024)
#define MIB (1024LL * 1024)

/* A 4 GiB file with 64 MiB of data in four places: the copy in both
 * directions stays sparse (only the data is stored, and streamed), its
 * content is the original's, and the manager's peak RSS grows by less than
 * the data it moved. */
static void test_sparse_file_stays_sparse(void **state)
{
    (void)state;
    char p[256], out[256], back[256];
    snprintf(p, sizeof p, "%s/sparse", root);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4 * GIB), 0);
    char *block = malloc(MIB);
    for (int i = 0; i < 4; i++) {
        for (long long k = 0; k < 16; k++) {
            memset(block, 'a' + i * 16 + (int)k, MIB);
            off_t at = (off_t)(i * (GIB - 16 * MIB / 3) + k * MIB);
            assert_int_equal(pwrite(fd, block, MIB, at), MIB);
        }
    }
    free(block);
    close(fd);
    long hwm0 = vm_kb(mgr.pid, "VmHWM:");
    long long t0 = time_now_ms();
    snprintf(out, sizeof out, "%s/sparse", local);
    copy_from_ok("/sparse", out);
    snprintf(back, sizeof back, "%s/sparse-back", root);
    copy_to_ok(out, "/sparse-back");
    long long ms = time_now_ms() - t0;
    long hwm1 = vm_kb(mgr.pid, "VmHWM:");
    const char *paths[] = {out, back};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        assert_int_equal(stat(paths[i], &st), 0);
        assert_int_equal(st.st_size, 4 * GIB);
        if ((long long)st.st_blocks * 512 > 80 * MIB)
            fail_msg("%s takes %lld MiB: not sparse", paths[i], (long long)st.st_blocks * 512 / MIB);
        if (!same_content(p, paths[i]))
            fail_msg("%s differs from the original", paths[i]);
    }
    fprintf(stderr, "sparse 4 GiB (64 MiB data) both ways: %lld ms, manager peak RSS %ld → %ld KiB\n", ms, hwm0, hwm1);
#ifndef UNDER_ASAN /* ASan's quarantine keeps freed memory: that build checks leaks, not RSS */
    if (hwm1 - hwm0 > 32 * 1024)
        fail_msg("the manager's peak RSS grew by %ld KiB copying 2 x 64 MiB", hwm1 - hwm0);
#endif
}

/* What crossed the manager's TCP connections so far, as the kernel counts it
 * (ss's bytes_received and bytes_sent of every socket on the manager's port;
 * bytes_sent, unlike bytes_acked, does not wait for the peer's last ACK, but
 * counts retransmissions, which happen on a loaded machine even on loopback:
 * bytes_retrans is taken off): into the manager in *in, out of it in *out. */
static void wire_bytes(long long *in, long long *out)
{
    char cmd[128], word[256];
    snprintf(cmd, sizeof cmd, "ss -Htin 'sport = :%d'", mgr.port);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    *in = *out = 0;
    while (fscanf(f, "%255s", word) == 1) {
        if (!strncmp(word, "bytes_received:", 15))
            *in += atoll(word + 15);
        else if (!strncmp(word, "bytes_sent:", 11))
            *out += atoll(word + 11);
        else if (!strncmp(word, "bytes_retrans:", 14))
            *out -= atoll(word + 14);
    }
    assert_int_equal(pclose(f), 0);
}

/* 8 MiB of log-like text (compresses) or of random bytes (does not). */
static void write_payload(const char *path, bool text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    char line[128];
    uint8_t rnd[4096];
    for (long long done = 0; done < 8 * MIB;) {
        size_t n;
        if (text) {
            n = (size_t)snprintf(line, sizeof line,
                                 "2026-12-02T19:%02lld:%02lld.%06lld level=info msg=\"request %lld done\"\n",
                                 done / 60000 % 60, done / 1000 % 60, done % 1000000, done / 64);
        } else {
            assert_int_equal(getrandom(rnd, sizeof rnd, 0), (ssize_t)sizeof rnd);
            n = sizeof rnd;
        }
        n = (size_t)(8 * MIB - done) < n ? (size_t)(8 * MIB - done) : n;
        assert_int_equal(write(fd, text ? (void *)line : rnd, n), (ssize_t)n);
        done += (long long)n;
    }
    close(fd);
}

/* What crossed the manager's socket, counted by the kernel: text goes as
 * zstd both ways (less than a quarter of its size), random bytes as they are
 * (no more than a chunk's framing over), and text as it is when the client
 * asks for that (no_zstd). Every copy arrives intact. */
static void test_zstd_on_the_wire(void **state)
{
    (void)state;
    static const struct {
        bool text, plain;
        double at_most; /* of the file's size */
    } cases[] = {{true, false, 0.25}, {false, false, 1.01}, {true, true, 1.01}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char src[256], in[256], out[256], remote[64];
        snprintf(src, sizeof src, "%s/payload%zu", local, i);
        snprintf(remote, sizeof remote, "/payload%zu", i);
        snprintf(in, sizeof in, "%s%s", root, remote);
        snprintf(out, sizeof out, "%s/payload%zu-back", local, i);
        write_payload(src, cases[i].text);
        no_zstd = cases[i].plain;
        long long in0, out0, in1, out1, in2, out2;
        wire_bytes(&in0, &out0);
        copy_to_ok(src, remote);
        wire_bytes(&in1, &out1);
        copy_from_ok(remote, out);
        wire_bytes(&in2, &out2);
        no_zstd = false;
        long long to_wire = in1 - in0, from_wire = out2 - out1;
        fprintf(stderr, "%s%s, 8 MiB: %lld bytes on the wire to the manager, %lld from it\n",
                cases[i].text ? "text" : "random", cases[i].plain ? " (no_zstd)" : "", to_wire, from_wire);
        if (!same_content(src, in) || !same_content(src, out))
            fail_msg("case %zu: a copy differs from the original", i);
        long long most = (long long)(cases[i].at_most * 8 * MIB);
        if (to_wire > most || from_wire > most)
            fail_msg("case %zu: %lld and %lld bytes crossed the socket, more than %lld", i, to_wire, from_wire, most);
        if (cases[i].at_most > 1 && (to_wire < 8 * MIB || from_wire < 8 * MIB))
            fail_msg("case %zu: %lld and %lld bytes crossed the socket, less than the file", i, to_wire, from_wire);
        unlink(src);
        unlink(in);
        unlink(out);
    }
}

/* A full disk on the writing side: ENOSPC named with the path, nothing under
 * the final name, no temporary left; both directions. */
static void test_disk_full_leaves_nothing(void **state)
{
    (void)state;
    char small[256], big[256], err[1024];
    snprintf(small, sizeof small, "%s/small", root);
    assert_int_equal(mkdir(small, 0755), 0);
    assert_int_equal(mount("tmpfs", small, "tmpfs", 0, "size=256k"), 0);
    snprintf(big, sizeof big, "%s/big", local);
    write_random(big, 1 << 20);
    err[0] = '\0';
    assert_int_equal(copy_to(big, "/small", err, sizeof err), -ENOSPC);
    assert_non_null(strstr(err, "/small/big"));
    assert_non_null(strstr(err, "(ENOSPC)"));
    const char *const none[] = {NULL};
    assert_dir_holds(small, none);
    umount2(small, MNT_DETACH);

    /* The local side full: CopyFrom into a small tmpfs. */
    snprintf(small, sizeof small, "%s/lsmall", local);
    assert_int_equal(mkdir(small, 0755), 0);
    assert_int_equal(mount("tmpfs", small, "tmpfs", 0, "size=256k"), 0);
    snprintf(big, sizeof big, "%s/bigdir", root);
    assert_int_equal(mkdir(big, 0755), 0);
    snprintf(big, sizeof big, "%s/bigdir/a", root);
    write_random(big, 10);
    snprintf(big, sizeof big, "%s/bigdir/big", root);
    write_random(big, 1 << 20);
    err[0] = '\0';
    assert_int_equal(copy_from("/bigdir", small, err, sizeof err), -ENOSPC);
    assert_non_null(strstr(err, "bigdir/big"));
    assert_non_null(strstr(err, "(ENOSPC)"));
    assert_dir_holds(small, none);
    umount2(small, MNT_DETACH);
}

static bool has_temp(const char *dir)
{
    size_t n;
    char **v = names(dir, &n);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= !strncmp(v[i], ".kdiag-cp-", 10);
    free_names(v, n);
    return found;
}

/* A client gone mid-file: the manager removes the half-written temporary. */
static void test_cancel_leaves_no_temp(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/cancel", root);
    assert_int_equal(mkdir(dir, 0755), 0);
    rpc_stream *s;
    assert_int_equal(rpc_client_bidi_open(&s, cl, CONTRACT_METHOD_COPY_TO, 60000), 0);
    uint8_t buf[CONTRACT_COPY_DATA_MAX + 512];
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    t.pid = (uint64_t)target_pid;
    Kdiag__Solo__Io__CopyToRequest m = KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT;
    m.target = &t;
    m.path = (char *)"/cancel/file";
    assert_int_equal(rpc_stream_write(s, buf, kdiag__solo__io__copy_to_request__pack(&m, buf)), 0);
    Kdiag__Solo__Io__CopyEntry e = KDIAG__SOLO__IO__COPY_ENTRY__INIT;
    e.path = (char *)"file";
    e.mode = S_IFREG | 0644;
    e.size = 100 * MIB;
    Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
    c.entry = &e;
    m = (Kdiag__Solo__Io__CopyToRequest)KDIAG__SOLO__IO__COPY_TO_REQUEST__INIT;
    m.chunk = &c;
    assert_int_equal(rpc_stream_write(s, buf, kdiag__solo__io__copy_to_request__pack(&m, buf)), 0);
    static uint8_t data[CONTRACT_COPY_DATA_MAX];
    c = (Kdiag__Solo__Io__CopyChunk)KDIAG__SOLO__IO__COPY_CHUNK__INIT;
    c.data.data = data;
    c.data.len = sizeof data;
    assert_int_equal(rpc_stream_write(s, buf, kdiag__solo__io__copy_to_request__pack(&m, buf)), 0);
    long long deadline = time_now_ms() + 10000;
    while (!has_temp(dir) && time_now_ms() < deadline)
        usleep(10000);
    assert_true(has_temp(dir)); /* the manager is writing */
    rpc_stream_free(s);         /* cancels the call */
    while (has_temp(dir) && time_now_ms() < deadline)
        usleep(10000);
    const char *const none[] = {NULL};
    assert_dir_holds(dir, none);
}

/* ---- CopyTo's window (docs/cp.md "Memory and flow control") ---- */

struct copy_run {
    rpc_client *cl;
    const char *src;
    copy_client_opts o;
    int rc;
    char err[1024];
};

static void *copy_thread(void *arg)
{
    struct copy_run *r = arg;
    r->rc = copy_client_to(r->cl, r->src, &tgt, "/windowed", &r->o, r->err, sizeof r->err);
    return NULL;
}

/* The client keeps at most its window in flight: against a manager that does
 * not answer it stops there (what the manager's gRPC holds for the copy,
 * however large core's windows grew), and against the real one, which
 * answers as it writes, a copy 8 times the window arrives whole. */
static void test_copy_to_keeps_to_its_window(void **state)
{
    (void)state;
    const long long window = MIB;
    char src[256], dst[256];
    snprintf(src, sizeof src, "%s/windowed", local);
    snprintf(dst, sizeof dst, "%s/windowed", root);
    write_payload(src, false); /* 8 MiB of random bytes */

    tmute *mute;
    char addr[64];
    assert_int_equal(tmute_start(&mute, CONTRACT_METHOD_COPY_TO, addr, sizeof addr), 0);
    copy_client_cancel cancel = COPY_CLIENT_CANCEL_INIT;
    struct copy_run run = {.src = src,
                           .o = {.timeout_ms = 60000, .no_zstd = true, .window = window, .cancel = &cancel}};
    assert_int_equal(rpc_client_new(&run.cl, addr, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, copy_thread, &run), 0);
    long long got = (long long)tmute_settled(mute);
    copy_client_cancel_now(&cancel);
    pthread_join(th, NULL);
    rpc_client_free(run.cl);
    tmute_free(mute);
    fprintf(stderr, "a manager that does not answer got %lld bytes of an 8 MiB copy (window %lld)\n", got, window);
    assert_true(got >= window);
    assert_true(got <= window + CONTRACT_COPY_DATA_MAX + 1024); /* the window, and the message that crossed it */
    assert_true(run.rc < 0);

    run = (struct copy_run){.cl = cl, .src = src, .o = {.timeout_ms = 60000, .no_zstd = true, .window = window}};
    copy_thread(&run);
    if (run.rc < 0)
        fail_msg("CopyTo with a %lld-byte window: %s", window, run.err);
    assert_true(same_content(src, dst));
    unlink(src);
    unlink(dst);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_keeps_tree),     cmocka_unit_test(test_existing_directory_receives),
        cmocka_unit_test(test_paths_stay_inside_root),    cmocka_unit_test(test_errors_name_path_and_cause),
        cmocka_unit_test(test_sparse_file_stays_sparse),  cmocka_unit_test(test_disk_full_leaves_nothing),
        cmocka_unit_test(test_cancel_leaves_no_temp),     cmocka_unit_test(test_permission_denied_names_path),
        cmocka_unit_test(test_zstd_on_the_wire),          cmocka_unit_test(test_copy_to_keeps_to_its_window),
        cmocka_unit_test(test_names_from_target_escaped), cmocka_unit_test(test_destination_rules_in_root),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
