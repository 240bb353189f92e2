#include "remember.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/hash.h"

#ifndef KDIAG_VERSION
#define KDIAG_VERSION "0.0.0"
#endif

#define RECORD_FMT "%d %d %63s %u %d %d %32s %32s %255s %255s %255s %255s %511s"

/* The sessions directory ("" when there is neither $XDG_CACHE_HOME nor
 * $HOME, or its path would not fit: then ENAMETOOLONG); with make, it and
 * its missing parents are made (0700): 0, or the errno of the first that
 * could not be. A relative one is ignored, as the XDG spec says (a keeper
 * leaves the directory it started in, cli/keep.c). */
static int dir_path(char *buf, size_t n, bool make)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[1024];
    int w = -1;
    if (xdg && xdg[0] == '/')
        w = snprintf(base, sizeof base, "%s", xdg);
    else if (home && home[0] == '/')
        w = snprintf(base, sizeof base, "%s/.cache", home);
    /* a path cut short would be another directory: none then */
    if (w < 0 || (size_t)w >= sizeof base || (size_t)snprintf(buf, n, "%s/kdiag/sessions", base) >= n) {
        buf[0] = '\0';
        return w < 0 ? 0 : ENAMETOOLONG;
    }
    char kd[1100];
    snprintf(kd, sizeof kd, "%s/kdiag", base);
    const char *dirs[] = {base, kd, buf};
    for (size_t i = 0; make && i < sizeof dirs / sizeof *dirs; i++)
        if (mkdir(dirs[i], 0700) < 0 && errno != EEXIST)
            return errno;
    return 0;
}

/* Appends s to buf (n bytes, *used so far) with '%', '|' and control
 * characters as %XX: whatever a kubeconfig path or context name holds, the
 * fields stay apart ("a|b" then "c" is not "a" then "b|c") and the key one
 * line. */
static void put_field(char *buf, size_t n, size_t *used, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p && *used < n; p++) {
        int w = *p == '%' || *p == '|' || *p < 0x20 || *p == 0x7f
                    ? snprintf(buf + *used, n - *used, "%%%02X", *p)
                    : snprintf(buf + *used, n - *used, "%c", *p);
        *used += (size_t)w;
    }
}

/* The key: "VERSION|KC|KCENV|--context|-n|POD\n", KC and KCENV the 64-bit
 * FNV-1a of --kubeconfig (and of kubectl's connection flags after it, one
 * "\n" before each: another --as or --server is another session) and of
 * $KUBECONFIG, in hex (a list of many files is long), the others as
 * put_field writes them. false when it does not fit in n bytes (then
 * nothing is remembered for it). */
static bool key_of(const kube *k, const char *pod, char *buf, size_t n)
{
    const char *env = getenv("KUBECONFIG");
    const char *f[] = {k->context ? k->context : "", k->ns ? k->ns : "", pod};
    uint64_t kc = fnv1a64(FNV1A64_INIT, k->kubeconfig);
    for (size_t i = 0; k->conn && k->conn[i]; i++)
        kc = fnv1a64(fnv1a64(kc, "\n"), k->conn[i]);
    size_t used = (size_t)snprintf(buf, n, "%s" CONTRACT_REVISION_TAG "|%016llx|%016llx", KDIAG_VERSION,
                                   (unsigned long long)kc, (unsigned long long)fnv1a64(FNV1A64_INIT, env));
    for (size_t i = 0; i < sizeof f / sizeof *f && used < n; i++) {
        used += (size_t)snprintf(buf + used, n - used, "|");
        put_field(buf, n, &used, f[i]);
    }
    if (used < n)
        used += (size_t)snprintf(buf + used, n - used, "\n");
    return used < n;
}

/* dir/<8 hex of FNV-1a(key)>: a collision only makes two pods share a file,
 * and the key inside tells them apart. */
static void file_path(const char *dir, const char *key, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%08x", dir, fnv1a32(FNV1A32_INIT, key));
}

/* The file holds "-" for an empty string (fields are space-separated). */
static const char *dash(const char *s)
{
    return *s ? s : "-";
}

static void undash(char *s)
{
    if (strcmp(s, "-") == 0)
        s[0] = '\0';
}

/* Field f (len bytes, as put_field wrote it) into out (n bytes), "-" when
 * empty; %XX of a printable byte is decoded, a control character stays
 * %XX (the caller prints it). */
static void get_field(const char *f, size_t len, char *out, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        char hex[3] = {0};
        unsigned x = 0;
        if (f[i] == '%' && i + 2 < len && isxdigit((unsigned char)f[i + 1]) && isxdigit((unsigned char)f[i + 2])) {
            memcpy(hex, f + i + 1, 2);
            x = (unsigned)strtoul(hex, NULL, 16);
        }
        if (x >= 0x20 && x != 0x7f) {
            out[o++] = (char)x;
            i += 2;
        } else
            out[o++] = f[i];
    }
    out[o] = '\0';
    if (o == 0)
        snprintf(out, n, "-");
}

bool remember_key_fields(const char *key, char *ctx, char *ns, char *pod, size_t n)
{
    const char *f[6];
    size_t len[6], nf = 0;
    for (const char *p = key; nf < 6; nf++) { /* key_of's fields, the last ended by its newline */
        const char *end = nf < 5 ? strchr(p, '|') : strchr(p, '\n');
        if (!end)
            return false;
        f[nf] = p;
        len[nf] = (size_t)(end - p);
        p = end + 1;
    }
    char *out[3] = {ctx, ns, pod};
    for (int i = 0; i < 3; i++)
        get_field(f[i + 3], len[i + 3], out[i], n);
    return true;
}

bool remember_dir(char *buf, size_t n)
{
    dir_path(buf, n, false);
    return *buf != '\0';
}

bool remember_path(const kube *k, const char *pod, const char *suffix, bool make, char *path, size_t n, char *key,
                   size_t keylen)
{
    char dir[1100], rec[1200];
    dir_path(dir, sizeof dir, make);
    if (!*dir)
        return false;
    if (!key_of(k, pod, key, keylen))
        return false;
    file_path(dir, key, rec, sizeof rec);
    snprintf(path, n, "%s%s", rec, suffix);
    return true;
}

bool remember_read(const kube *k, const char *pod, remembered *r)
{
    char dir[1100], path[1200], key[REMEMBER_KEY_MAX];
    dir_path(dir, sizeof dir, false);
    if (!*dir)
        return false;
    if (!key_of(k, pod, key, sizeof key))
        return false;
    file_path(dir, key, path, sizeof path);
    return remember_read_at(path, key, r);
}

bool remember_read_at(const char *path, const char *key, remembered *r)
{
    char line[REMEMBER_KEY_MAX];
    bool hit = false;
    /* a regular file of ours that no one else may read: never a FIFO to
     * block on, a symlink elsewhere, or a token others could have read */
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    FILE *f = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 077)
                  ? fdopen(fd, "r")
                  : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    memset(r, 0, sizeof *r);
    if (fgets(line, sizeof line, f) && strcmp(line, key) == 0 && fgets(line, sizeof line, f))
        hit = sscanf(line, RECORD_FMT, &r->grpc, &r->tunnel, r->container, &r->caps, &r->privileged, &r->share_pid,
                     r->token, r->secret, r->ns, r->req_target, r->target, r->target_id, r->image) == 13 &&
              r->grpc > 0 && r->grpc <= 65535 && r->tunnel >= 0 && r->tunnel <= 65535;
    fclose(f);
    char *strs[] = {r->container, r->token, r->secret, r->ns, r->req_target, r->target, r->target_id, r->image};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        undash(strs[i]);
    return hit;
}

/* Removes the records (and leftover temporaries) not written for max_age. */
static void prune(const char *dir, time_t max_age)
{
    DIR *d = opendir(dir);
    struct stat st;
    time_t now = time(NULL);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && now - st.st_mtime > max_age)
            unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
}

/* Says why a record could not be written (where, the cause, the fix; where
 * NULL: there is no cache directory, or with E2BIG no key), once per process:
 * the command goes on, but every command on the pod reads it again (and
 * keeps no forward) until the record can be written. */
static void say_unsaved(const char *where, int err)
{
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&said))
        return;
    const char *fix = err == EISDIR ? "remove that directory" : "set $XDG_CACHE_HOME to a directory you can write";
    if (!where && err == E2BIG)
        fprintf(stderr,
                "warning: cannot remember the session: its key (the --context, namespace and pod names; %%, | and "
                "control characters count 3 bytes each) is over %d bytes; each command reads the pod again until it "
                "can: use a context with a shorter name (kubectl config rename-context)\n",
                REMEMBER_KEY_MAX);
    else if (!where)
        fprintf(stderr,
                "warning: cannot remember the session: %s; each command reads the pod again until it can: set "
                "$XDG_CACHE_HOME (or $HOME) to the absolute path of a directory you can write\n",
                err == ENAMETOOLONG ? "the path of the cache directory ($XDG_CACHE_HOME, else $HOME/.cache) is too long"
                                    : "neither $XDG_CACHE_HOME nor $HOME is an absolute path");
    else
        fprintf(stderr,
                "warning: cannot remember the session in %s: %s; each command reads the pod again until it can: %s\n",
                where, strerror(err), fix);
}

bool remember_save(const kube *k, const char *pod, const remembered *r)
{
    char dir[1100], path[1200], tmp[1300], key[REMEMBER_KEY_MAX];
    int merr = dir_path(dir, sizeof dir, true);
    if (!*dir) {
        say_unsaved(NULL, merr);
        return false;
    }
    if (!key_of(k, pod, key, sizeof key)) {
        say_unsaved(NULL, E2BIG);
        return false;
    }
    file_path(dir, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        say_unsaved(dir, merr ? merr : errno);
        if (fd >= 0)
            close(fd);
        return false;
    }
    fprintf(f, "%s%d %d %s %u %d %d %s %s %s %s %s %s %s\n", key, r->grpc, r->tunnel, dash(r->container), r->caps,
            r->privileged, r->share_pid, dash(r->token), dash(r->secret), dash(r->ns), dash(r->req_target),
            dash(r->target), dash(r->target_id), dash(r->image));
    bool saved = fclose(f) == 0 && rename(tmp, path) == 0;
    if (!saved) {
        say_unsaved(path, errno);
        unlink(tmp);
    }
    prune(dir, (time_t)REMEMBER_MAX_AGE_DAYS * 24 * 3600);
    return saved;
}
