/* ps_rpc — Ps over gRPC: decode PsRequest, collect, encode PsResponse. */
#include "ps_rpc-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "kdiag.pb-c.h"

typedef struct {
    Kdiag__Solo__Io__Address a;
    char ip[INET6_ADDRSTRLEN];
} enc_addr;

typedef struct {
    Kdiag__Solo__Io__ProcessInfo pi;
    char state[2];
    char *cut; /* the command line cut to fit, when it was */
} enc_proc;

/* Cuts the command lines longer than cap bytes (at a character's start) until
 * the response fits the client's RPC_CLIENT_MAX_MSG: thousands of processes
 * with long command lines came to more, and the client refused the whole
 * listing. Returns the packed size. */
static size_t fit(Kdiag__Solo__Io__PsResponse *resp, enc_proc *procs, size_t n)
{
    size_t size = kdiag__solo__io__ps_response__get_packed_size(resp);
    for (size_t cap = PROCFS_CMDLINE_MAX / 4; size > RPC_CLIENT_MAX_MSG && cap >= 64; cap /= 4) {
        for (size_t i = 0; i < n; i++) {
            const char *cmd = procs[i].pi.cmdline;
            if (strlen(cmd) <= cap)
                continue;
            size_t len = cap;
            while (len > 0 && ((unsigned char)cmd[len] & 0xc0) == 0x80)
                len--;
            char *c = strndup(cmd, len);
            if (!c)
                continue;
            free(procs[i].cut);
            procs[i].cut = c;
            procs[i].pi.cmdline = c;
        }
        size = kdiag__solo__io__ps_response__get_packed_size(resp);
    }
    return size;
}

int ps_rpc_encode(const ps_list *l, uint8_t **buf, size_t *len)
{
    Kdiag__Solo__Io__PsResponse resp = KDIAG__SOLO__IO__PS_RESPONSE__INIT;
    size_t nsocks = 0;
    for (size_t i = 0; i < l->n; i++)
        nsocks += l->procs[i].n_socks;

    /* All message structs live in a few arrays freed together below; strings
     * point into l, which outlives the packing. */
    enc_proc *procs = calloc(l->n ? l->n : 1, sizeof(*procs));
    Kdiag__Solo__Io__ProcessInfo **pptrs = calloc(l->n ? l->n : 1, sizeof(*pptrs));
    enc_addr *addrs = calloc(nsocks ? nsocks : 1, sizeof(*addrs));
    Kdiag__Solo__Io__Address **aptrs = calloc(nsocks ? nsocks : 1, sizeof(*aptrs));
    uint8_t *out = NULL;
    int rc = -ENOMEM;
    if (!procs || !pptrs || !addrs || !aptrs)
        goto out;

    size_t ai = 0;
    for (size_t i = 0; i < l->n; i++) {
        const ps_proc *p = &l->procs[i];
        Kdiag__Solo__Io__ProcessInfo *pi = &procs[i].pi;
        kdiag__solo__io__process_info__init(pi);
        pi->pid = (uint64_t)p->info.pid;
        pi->ppid = (uint64_t)p->info.ppid;
        pi->name = (char *)p->info.name;
        pi->cmdline = p->info.cmdline ? p->info.cmdline : (char *)"";
        pi->uid = p->info.uid;
        procs[i].state[0] = p->info.state;
        pi->state = procs[i].state;
        pi->rss_bytes = p->info.rss_bytes;
        pi->start_time_unix_ms = p->info.start_time_unix_ms;
        /* TCP first then UDP, each a contiguous run of aptrs. */
        for (int pass = 0; pass < 2; pass++) {
            uint8_t proto = pass == 0 ? IPPROTO_TCP : IPPROTO_UDP;
            size_t first = ai;
            for (size_t k = 0; k < p->n_socks; k++) {
                const sockdiag_sock *s = &p->socks[k];
                if (s->protocol != proto)
                    continue;
                enc_addr *e = &addrs[ai];
                kdiag__solo__io__address__init(&e->a);
                e->a.ip = (char *)sockdiag_addr_str(s, e->ip, sizeof(e->ip));
                e->a.port = s->port;
                e->a.protocol = proto == IPPROTO_TCP ? (char *)"tcp" : (char *)"udp";
                aptrs[ai++] = &e->a;
            }
            if (pass == 0) {
                pi->n_listen_addresses = ai - first;
                pi->listen_addresses = ai > first ? &aptrs[first] : NULL;
            } else {
                pi->n_bound_addresses = ai - first;
                pi->bound_addresses = ai > first ? &aptrs[first] : NULL;
            }
        }
        pptrs[i] = pi;
    }
    resp.n_processes = l->n;
    resp.processes = l->n ? pptrs : NULL;

    size_t n = fit(&resp, procs, l->n);
    out = malloc(n ? n : 1);
    if (!out)
        goto out;
    *len = kdiag__solo__io__ps_response__pack(&resp, out);
    *buf = out;
    out = NULL;
    rc = 0;
out:
    free(out);
    free(aptrs);
    free(addrs);
    free(pptrs);
    for (size_t i = 0; procs && i < l->n; i++)
        free(procs[i].cut);
    free(procs);
    return rc;
}

grpc_status_code ps_rpc_handle(rpc_call *call, void *ud)
{
    const ps_opts *opts = ud;
    uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    ps_list l = {0};
    grpc_status_code code = GRPC_STATUS_OK;

    int rc = rpc_call_recv(call, &req, &req_len);
    if (rc == -ECANCELED) {
        code = GRPC_STATUS_CANCELLED;
        goto out;
    }
    if (rc == -EMSGSIZE) {
        rpc_call_set_message(call, "Ps: request too large; PsRequest has no fields, send an empty message");
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    if (rc < 0) {
        rpc_call_set_message(call, "Ps: no request message (%s); send one empty PsRequest", strerror(-rc));
        code = rc == -ENODATA ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_INTERNAL;
        goto out;
    }
    Kdiag__Solo__Io__PsRequest *r = kdiag__solo__io__ps_request__unpack(NULL, req_len, req);
    if (!r) {
        rpc_call_set_message(call, "Ps: request (%zu bytes) is not a valid kdiag.solo.io.PsRequest", req_len);
        code = GRPC_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    kdiag__solo__io__ps_request__free_unpacked(r, NULL);

    rc = ps_collect(opts, &l);
    if (rc < 0) {
        rpc_call_set_message(call, "Ps: listing processes from %s failed: %s",
                             opts && opts->proc_root ? opts->proc_root : "/proc", strerror(-rc));
        code = GRPC_STATUS_INTERNAL;
        goto out;
    }
    rc = ps_rpc_encode(&l, &resp, &resp_len);
    if (rc < 0) {
        rpc_call_set_message(call, "Ps: encoding the response failed: %s", strerror(-rc));
        code = GRPC_STATUS_INTERNAL;
        goto out;
    }
    rc = rpc_call_send(call, resp, resp_len);
    if (rc < 0) {
        code = rpc_call_cancelled(call) ? GRPC_STATUS_CANCELLED : GRPC_STATUS_INTERNAL;
        if (code == GRPC_STATUS_INTERNAL)
            rpc_call_set_message(call, "Ps: sending the response failed: %s", strerror(-rc));
    }
out:
    free(req);
    free(resp);
    ps_list_free(&l);
    return code;
}
