/* ps — /proc joined with sock_diag by socket inode (see ps.h). */
#include "ps.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc-util.h"

/* Open-addressing table inode -> index into the socket list; key 0 = empty
 * (sockdiag never returns inode 0). */
typedef struct {
    uint64_t key;
    size_t idx;
} ps_slot;

typedef struct {
    ps_slot *tab;
    size_t mask;
    const sockdiag_list *socks;
    ps_proc *cur;
    size_t cur_cap;
} ps_ctx;

static size_t slot_of(uint64_t ino, size_t mask)
{
    return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static int index_build(ps_ctx *c)
{
    size_t size = 16;
    while (size < c->socks->n * 2)
        size *= 2;
    c->tab = calloc(size, sizeof(*c->tab));
    if (!c->tab)
        return -ENOMEM;
    c->mask = size - 1;
    for (size_t i = 0; i < c->socks->n; i++) {
        uint64_t ino = c->socks->v[i].inode;
        size_t s = slot_of(ino, c->mask);
        while (c->tab[s].key && c->tab[s].key != ino)
            s = (s + 1) & c->mask;
        c->tab[s].key = ino;
        c->tab[s].idx = i;
    }
    return 0;
}

static int on_sock(uint64_t ino, void *ud)
{
    ps_ctx *c = ud;
    size_t s = slot_of(ino, c->mask);
    while (c->tab[s].key && c->tab[s].key != ino)
        s = (s + 1) & c->mask;
    if (!c->tab[s].key)
        return 0; /* not a listening/bound inet socket */
    ps_proc *p = c->cur;
    for (size_t i = 0; i < p->n_socks; i++)
        if (p->socks[i].inode == ino)
            return 0; /* the same socket on another fd (dup) */
    if (GROW_ARRAY(p->socks, c->cur_cap, p->n_socks + 1, 4) < 0)
        return -ENOMEM;
    p->socks[p->n_socks++] = c->socks->v[c->tab[s].idx];
    return 0;
}

int ps_collect(const ps_opts *opts, ps_list *out)
{
    const char *root = opts && opts->proc_root ? opts->proc_root : "/proc";
    int exclude = opts ? opts->exclude_pid : 0;
    procfs *pfs = NULL;
    sockdiag_list socks = {0};
    ps_ctx ctx = {.socks = &socks};
    ps_list l = {0};
    int *pids = NULL;
    size_t npids = 0;
    int rc;

    rc = procfs_open(root, &pfs);
    if (rc < 0)
        goto out;
    if (exclude == 0)
        exclude = procfs_self_pid(pfs); /* -ENOENT: we are not in this /proc */
    rc = sockdiag_dump_all(&socks);
    if (rc < 0)
        goto out;
    rc = index_build(&ctx);
    if (rc < 0)
        goto out;
    rc = procfs_list_pids(pfs, &pids, &npids);
    if (rc < 0)
        goto out;
    l.procs = calloc(npids ? npids : 1, sizeof(*l.procs));
    if (!l.procs) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < npids; i++) {
        if (pids[i] == exclude)
            continue;
        ps_proc *p = &l.procs[l.n];
        ctx.cur = p;
        ctx.cur_cap = 0;
        rc = procfs_read(pfs, pids[i], &p->info, on_sock, &ctx);
        if (rc < 0) {
            free(p->socks);
            memset(p, 0, sizeof(*p));
            /* Exited during the scan, or hidden from us: not in the listing. */
            if (rc == -ENOENT || rc == -EACCES)
                continue;
            goto out;
        }
        l.n++;
    }
    rc = 0;
out:
    if (rc < 0)
        ps_list_free(&l);
    else
        *out = l;
    free(pids);
    free(ctx.tab);
    sockdiag_list_free(&socks);
    procfs_close(pfs);
    return rc;
}

void ps_list_free(ps_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        procfs_proc_free(&l->procs[i].info);
        free(l->procs[i].socks);
    }
    free(l->procs);
    l->procs = NULL;
    l->n = 0;
}
