#include "hello.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdiag.pb-c.h"
#include "proto_check.h"
#include "target.h"

/* Whether the target a later call would work on has a process: the lookup
 * Exec and the Copy calls make (target_resolve). */
static bool target_found(const Kdiag__Solo__Io__Target *t)
{
    pid_t pid;
    if (target_resolve("/proc", t ? t->container_id : NULL, t ? t->pid : 0, getpid(), &pid) < 0)
        return false;
    return kill(pid, 0) == 0 || errno == EPERM;
}

grpc_status_code hello_rpc_handle(rpc_call *call, void *ud)
{
    const hello_opts *o = ud;
    uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0;
    Kdiag__Solo__Io__HelloRequest *r = NULL;
    grpc_status_code code = GRPC_STATUS_OK;

    int rc = rpc_call_recv(call, &req, &req_len);
    if (rc == -ECANCELED)
        return GRPC_STATUS_CANCELLED;
    if (rc < 0) {
        rpc_call_set_message(call, "Hello: no request message (%s)", strerror(-rc));
        return rc == -EMSGSIZE ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (proto_has_nul_string(&kdiag__solo__io__hello_request__descriptor, req, req_len)) {
        rpc_call_set_message(call, "Hello: the container id has a NUL byte");
        code = GRPC_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    if (!(r = kdiag__solo__io__hello_request__unpack(NULL, req_len, req))) {
        rpc_call_set_message(call, "Hello: the request (%zu bytes) is not a kdiag.solo.io.HelloRequest", req_len);
        code = GRPC_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    if (r->nonce.len != CONTRACT_HELLO_NONCE_LEN) {
        rpc_call_set_message(call, "Hello: the nonce has %zu bytes, it must have %d", r->nonce.len,
                             CONTRACT_HELLO_NONCE_LEN);
        code = GRPC_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    contract_hello h = {.target_found = target_found(r->target),
                        .grpc_port = atomic_load(&o->grpc_port),
                        .tunnel_port = o->tunnel_port};
    uint8_t proof[CONTRACT_HELLO_PROOF_LEN], token_proof[CONTRACT_HELLO_PROOF_LEN];
    if (!h.grpc_port) {
        rpc_call_set_message(call, "Hello: the manager is starting");
        code = GRPC_STATUS_UNAVAILABLE;
        goto out;
    }
    if (contract_hello_proof(o->secret, r->nonce.data, &h, proof) < 0) {
        rpc_call_set_message(call, "Hello: this manager has no secret to prove");
        code = GRPC_STATUS_FAILED_PRECONDITION;
        goto out;
    }
    Kdiag__Solo__Io__HelloResponse m = KDIAG__SOLO__IO__HELLO_RESPONSE__INIT;
    m.proof.data = proof;
    m.proof.len = sizeof proof;
    if (contract_hello_token_proof(o->secret, r->nonce.data, o->token, token_proof) == 0) {
        m.token_proof.data = token_proof;
        m.token_proof.len = sizeof token_proof;
    }
    m.target_found = h.target_found;
    m.grpc_port = (uint32_t)h.grpc_port;
    m.tunnel_port = (uint32_t)h.tunnel_port;
    size_t len = kdiag__solo__io__hello_response__get_packed_size(&m);
    if (!(resp = malloc(len))) {
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    kdiag__solo__io__hello_response__pack(&m, resp);
    if (rpc_call_send(call, resp, len) < 0)
        code = GRPC_STATUS_CANCELLED;
out:
    if (r)
        kdiag__solo__io__hello_request__free_unpacked(r, NULL);
    free(req);
    free(resp);
    return code;
}
