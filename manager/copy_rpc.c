/* copy_rpc — see copy_rpc.h. */
#include "copy_rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy_client.h"
#include "contract.h"
#include "copytree.h"
#include "copyz.h"
#include "kdiag.pb-c.h"
#include "proto_check.h"
#include "target.h"

#define COPY_RESOLVE (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)

/* The root of the target process: container id → its lowest PID, else the
 * PID, else 1 (the debug container's target). */
static int target_root(const Kdiag__Solo__Io__Target *t, int *rootfd, char *err, size_t errlen)
{
    pid_t pid;
    char cause[128], path[64];
    int rc = target_resolve("/proc", t ? t->container_id : NULL, t ? t->pid : 0, getpid(), &pid);
    if (rc == -EINVAL) {
        snprintf(err, errlen, "invalid container id \"%s\"", t->container_id);
        return -EINVAL;
    }
    if (rc == -ERANGE) {
        snprintf(err, errlen, "PID %llu is out of range", (unsigned long long)t->pid);
        return -EINVAL;
    }
    if (rc < 0) {
        snprintf(err, errlen, "no process of container %s in the manager's PID namespace: %s",
                 target_normalize_id(t->container_id),
                 copytree_strerror(rc == -ESRCH ? -ENOENT : rc, cause, sizeof cause));
        return rc == -ESRCH ? -ENOENT : rc;
    }
    snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
    *rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*rootfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s (the target's root)%s: %s", path,
                 rc == -EACCES || rc == -EPERM ? ", the debug container needs SYS_PTRACE" : "",
                 copytree_strerror(rc, cause, sizeof cause));
        return rc;
    }
    return 0;
}

/* The first request message, unpacked as d. */
static int recv_first(rpc_call *call, const ProtobufCMessageDescriptor *d, ProtobufCMessage **m, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = rpc_call_recv(call, &buf, &len);
    if (rc == 0 && !(*m = protobuf_c_message_unpack(d, NULL, len, buf)))
        rc = -EPROTO;
    if (rc == 0 && proto_has_nul_string(d, buf, len)) {
        snprintf(err, errlen, "%s: the path has a NUL byte", rpc_call_method(call));
        rc = -EINVAL;
    }
    if (rc < 0 && rc != -ECANCELED && !err[0])
        snprintf(err, errlen, "%s: no valid %s as the first message (%s)", rpc_call_method(call), d->name,
                 strerror(-rc));
    free(buf);
    return rc == -ENODATA || rc == -EMSGSIZE ? -EPROTO : rc;
}

static grpc_status_code finish(rpc_call *call, int rc, const char *err)
{
    if (rc == 0)
        return GRPC_STATUS_OK;
    if (rc == -ECANCELED && rpc_call_cancelled(call))
        return GRPC_STATUS_CANCELLED;
    rpc_call_set_message(call, "%s", err[0] ? err : strerror(-rc));
    return copy_client_status(rc);
}

typedef struct {
    rpc_call *call;
    uint8_t *buf;
    copyz *z; /* the client takes zstd */
} from_state;

static int from_emit(void *ud, const Kdiag__Solo__Io__CopyChunk *c)
{
    from_state *fs = ud;
    Kdiag__Solo__Io__CopyChunk zc;
    if (fs->z) {
        copyz_pack(fs->z, c, &zc);
        c = &zc;
    }
    size_t len = kdiag__solo__io__copy_chunk__pack(c, fs->buf);
    return rpc_call_send(fs->call, fs->buf, len) < 0 ? -ECANCELED : 0;
}

grpc_status_code copy_rpc_from(rpc_call *call, void *ud)
{
    (void)ud;
    char err[1024] = "";
    ProtobufCMessage *pm = NULL;
    from_state fs = {.call = call};
    int rootfd = -1;
    int rc = recv_first(call, &kdiag__solo__io__copy_from_request__descriptor, &pm, err, sizeof err);
    if (rc < 0)
        goto out;
    Kdiag__Solo__Io__CopyFromRequest *m = (Kdiag__Solo__Io__CopyFromRequest *)pm;
    rc = target_root(m->target, &rootfd, err, sizeof err);
    if (rc < 0)
        goto out;
    /* The largest chunk: CONTRACT_COPY_DATA_MAX of data, or an entry with two paths. */
    rc = -ENOMEM;
    if (!(fs.buf = malloc(CONTRACT_COPY_DATA_MAX + 3 * PATH_MAX)) || (m->zstd && copyz_new(&fs.z) < 0))
        goto out;
    rc = copytree_send(rootfd, m->path, COPY_RESOLVE, from_emit, &fs, NULL, err, sizeof err);
out:
    if (pm)
        protobuf_c_message_free_unpacked(pm, NULL);
    if (rootfd >= 0)
        close(rootfd);
    free(fs.buf);
    copyz_free(fs.z);
    return finish(call, rc, err);
}

/* One CopyToResponse: what was written so far. */
static int to_answer(rpc_call *call, const copytree_recv *r, uint64_t taken)
{
    const copytree_stats *st = copytree_recv_stats(r);
    Kdiag__Solo__Io__CopyToResponse resp = KDIAG__SOLO__IO__COPY_TO_RESPONSE__INIT;
    uint8_t buf[48];
    resp.entries = st->entries;
    resp.bytes = st->bytes;
    resp.taken = taken;
    return rpc_call_send(call, buf, kdiag__solo__io__copy_to_response__pack(&resp, buf)) < 0 ? -ECANCELED : 0;
}

/* The chunks after the first message, until the client half-closes; an
 * answer each time ack_bytes more were taken (0: none), which a client waits
 * for to keep at most its window in flight: what gRPC holds for this call,
 * whatever core's own windows grew to (docs/cp.md "Memory and flow control"). */
static int to_chunks(rpc_call *call, copytree_recv *r, uint32_t ack_bytes, uint64_t *taken, char *err, size_t errlen)
{
    uint64_t acked = 0;
    for (;;) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = rpc_call_recv(call, &buf, &len);
        if (rc == -ENODATA)
            return copytree_recv_finish(r, err, errlen);
        if (rc < 0) {
            snprintf(err, errlen, "CopyTo: receiving: %s", strerror(-rc));
            return rc == -EMSGSIZE ? -EPROTO : rc;
        }
        Kdiag__Solo__Io__CopyToRequest *m = kdiag__solo__io__copy_to_request__unpack(NULL, len, buf);
        bool nul = proto_has_nul_string(&kdiag__solo__io__copy_to_request__descriptor, buf, len);
        free(buf);
        if (!m || !m->chunk) {
            snprintf(err, errlen, "CopyTo: a message after the first is not a CopyToRequest with a chunk");
            rc = -EPROTO;
        } else if (nul) {
            snprintf(err, errlen, "CopyTo: an entry's name or link target has a NUL byte");
            rc = -EPROTO;
        } else {
            rc = copytree_recv_chunk(r, m->chunk, err, errlen);
        }
        if (m)
            kdiag__solo__io__copy_to_request__free_unpacked(m, NULL);
        if (rc < 0)
            return rc;
        *taken += len;
        if (ack_bytes && *taken - acked >= ack_bytes) {
            if (to_answer(call, r, *taken) < 0)
                return -ECANCELED;
            acked = *taken;
        }
    }
}

grpc_status_code copy_rpc_to(rpc_call *call, void *ud)
{
    (void)ud;
    char err[1024] = "";
    ProtobufCMessage *pm = NULL;
    copytree_recv *r = NULL;
    int rootfd = -1;
    int rc = recv_first(call, &kdiag__solo__io__copy_to_request__descriptor, &pm, err, sizeof err);
    if (rc < 0)
        goto out;
    Kdiag__Solo__Io__CopyToRequest *m = (Kdiag__Solo__Io__CopyToRequest *)pm;
    if (m->chunk) {
        snprintf(err, sizeof err, "CopyTo: the first message names the destination (target, path), not a chunk");
        rc = -EPROTO;
        goto out;
    }
    rc = target_root(m->target, &rootfd, err, sizeof err);
    if (rc == 0)
        rc = copytree_recv_new(&r, rootfd, m->path, COPY_RESOLVE, COPYTREE_KEEP_OWNER | COPYTREE_KEEP_SETID, err,
                               sizeof err);
    uint64_t taken = 0;
    if (rc == 0)
        rc = to_chunks(call, r, m->ack_bytes, &taken, err, sizeof err);
    if (rc == 0)
        rc = to_answer(call, r, taken);
out:
    copytree_recv_free(r); /* an unfinished copy: its temporary names go */
    if (pm)
        protobuf_c_message_free_unpacked(pm, NULL);
    if (rootfd >= 0)
        close(rootfd);
    return finish(call, rc, err);
}
