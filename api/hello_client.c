#include "hello_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kdiag.pb-c.h"

int hello_call(rpc_client *cl, const char *secret, const char *token, const char *container_id, int timeout_ms,
               contract_hello *h, rpc_status *st)
{
    uint8_t nonce[CONTRACT_HELLO_NONCE_LEN], *req = NULL, *resp = NULL;
    size_t resp_len = 0;
    memset(h, 0, sizeof *h);
    memset(st, 0, sizeof *st);
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
        return errno ? -errno : -EIO;
    Kdiag__Solo__Io__HelloRequest m = KDIAG__SOLO__IO__HELLO_REQUEST__INIT;
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    m.nonce.data = nonce;
    m.nonce.len = sizeof nonce;
    if (container_id && *container_id) {
        t.container_id = (char *)container_id;
        m.target = &t;
    }
    size_t len = kdiag__solo__io__hello_request__get_packed_size(&m);
    if (!(req = malloc(len)))
        return -ENOMEM;
    kdiag__solo__io__hello_request__pack(&m, req);
    int rc = rpc_client_unary(cl, CONTRACT_METHOD_HELLO, req, len, &resp, &resp_len, timeout_ms, st);
    free(req);
    if (rc < 0)
        return rc;
    Kdiag__Solo__Io__HelloResponse *r = kdiag__solo__io__hello_response__unpack(NULL, resp_len, resp);
    free(resp);
    if (!r)
        return -EBADMSG;
    contract_hello got = {.target_found = r->target_found,
                          .grpc_port = r->grpc_port <= 65535 ? (int)r->grpc_port : -1,
                          .tunnel_port = r->tunnel_port <= 65535 ? (int)r->tunnel_port : -1};
    rc = !contract_hello_check(secret, nonce, &got, r->proof.data, r->proof.len) ? -EPERM
         : !contract_hello_token_check(secret, nonce, token, r->token_proof.data, r->token_proof.len)
             ? -EACCES
             : 0;
    kdiag__solo__io__hello_response__free_unpacked(r, NULL);
    if (rc == 0)
        *h = got;
    return rc;
}
