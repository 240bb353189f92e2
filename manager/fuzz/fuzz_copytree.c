/* fuzz_copytree — libFuzzer target for the receiving side of a copy
 * (api/copytree.c), which writes what the peer streams: the manager for
 * CopyTo, the CLI for CopyFrom (a manager in a pod the user does not trust).
 * Input: CopyChunk messages (zstd ones too), each after a 2-byte big-endian
 * length, fed to one copytree_recv into an existing directory. Properties
 * beyond "no crash, no leak, no UB":
 *   - nothing is ever created beside the destination directory;
 *   - a refused stream leaves no temporary (.kdiag-cp-*) anywhere under the
 *     destination, and nothing at all unless its root entry was "" (a
 *     directory's contents merged into the existing destination: entries
 *     completed before the refusal stay, as with cp -r; docs/cp.md). */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copytree.h"

static char top[64], dst[96];

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    if (!d)
        abort();
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

/* A .kdiag-cp-* name anywhere under dir. */
static int temporaries(const char *dir)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "find %s -name '.kdiag-cp-*' | grep -q .", dir);
    return system(cmd) == 0;
}

/* Every name in dir: "..x" too, which neither * nor .[!.]* matches (a stream
 * may make it; left behind, it failed the next input's "nothing left"). */
static void empty(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s/* %s/.[!.]* %s/..?* 2>/dev/null", dir, dir, dir);
    if (system(cmd) < 0)
        abort();
}

static void cleanup(void)
{
    empty(dst);
    rmdir(dst);
    rmdir(top);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (!top[0]) {
        snprintf(top, sizeof top, "/tmp/kdiag-fuzz-copytree-%d", (int)getpid());
        snprintf(dst, sizeof dst, "%s/dst", top);
        if (mkdir(top, 0700) < 0 || mkdir(dst, 0700) < 0)
            abort();
        atexit(cleanup);
    }
    char err[1024];
    copytree_recv *r;
    if (copytree_recv_new(&r, AT_FDCWD, dst, 0, 0, err, sizeof err) < 0)
        abort();
    int rc = 0, first = 1, merge = 0;
    while (rc == 0 && n >= 2) {
        size_t len = (size_t)d[0] << 8 | d[1];
        d += 2;
        n -= 2;
        if (len > n)
            len = n;
        Kdiag__Solo__Io__CopyChunk *c = kdiag__solo__io__copy_chunk__unpack(NULL, len, d);
        d += len;
        n -= len;
        if (!c)
            break;
        if (first && c->entry)
            merge = !c->entry->path || !*c->entry->path;
        first = 0;
        rc = copytree_recv_chunk(r, c, err, sizeof err);
        kdiag__solo__io__copy_chunk__free_unpacked(c, NULL);
    }
    if (rc == 0)
        rc = copytree_recv_finish(r, err, sizeof err);
    copytree_recv_free(r);
    if (entries(top) != 1 || (rc < 0 && (temporaries(dst) || (!merge && entries(dst) != 0))))
        abort();
    empty(dst);
    return 0;
}
