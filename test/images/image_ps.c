/* image_ps — the CLI's own client code against a manager running in a
 * container: reads the manager's start-up lines on stdin (as `podman logs`
 * gives them), finds them with the contract's parser (api/contract.h), calls Ps over 127.0.0.1 of
 * the network namespace it runs in (the test puts it in the container's with
 * nsenter) and prints the listing with the CLI's printer.
 *
 *   image_ps [--no-token] < startup-lines
 *
 * Exit: 0 and the listing; 3 and "status CODE: MESSAGE" when the call fails;
 * 2 when the lines do not parse. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "kdiag.pb-c.h"
#include "ps.h"
#include "rpc_client.h"

int main(int argc, char **argv)
{
    bool no_token = argc > 1 && strcmp(argv[1], "--no-token") == 0;
    char logs[4096];
    size_t n = fread(logs, 1, sizeof logs - 1, stdin);
    logs[n] = '\0';
    contract_banner m;
    contract_find_result found;
    contract_banner_find(logs, n, NULL, &m, &found);
    if (!found.found || !m.token[0] || !m.tunnel_port) {
        fprintf(stderr, "image_ps: no start-up lines in \"%s\"\n", logs);
        return 2;
    }
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", m.grpc_port);
    rpc_client *cl = NULL;
    rpc_client_new(&cl, target, no_token ? NULL : m.token);
    uint8_t *resp = NULL;
    size_t len = 0;
    rpc_status st;
    int rc = 3;
    if (cl && rpc_client_unary(cl, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &len, 10000, &st) == 0) {
        Kdiag__Solo__Io__PsResponse *r = kdiag__solo__io__ps_response__unpack(NULL, len, resp);
        if (r) {
            ps_print(stdout, r, PS_TABLE, "image", "podman", "manager");
            rc = 0;
        }
        kdiag__solo__io__ps_response__free_unpacked(r, NULL);
    } else if (cl) {
        printf("status %d: %s\n", st.code, st.message);
    }
    free(resp);
    rpc_client_free(cl);
    return rc;
}
