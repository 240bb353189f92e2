/* fuzz_banner — libFuzzer target for the manager's start-up lines as the CLI
 * reads them from a container log the workload can write into
 * (api/contract.c). Properties beyond "no crash, no leak, no UB":
 *   - what the parser takes has values in range and formats back into lines
 *     that parse to the same values;
 *   - with a secret, nothing is taken without a matching proof: a taken banner
 *     formatted with the secret yields exactly the lines' proof again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define SECRET "00112233445566778899aabbccddeeff"

static void check_round_trip(const contract_banner *b, const char *secret)
{
    char text[512];
    contract_banner again;
    contract_find_result r;
    if (b->grpc_port < 1 || b->grpc_port > 65535 || b->tunnel_port < 0 || b->tunnel_port > 65535 ||
        contract_banner_format(b, secret, text, sizeof text) < 0)
        abort();
    contract_banner_find(text, strlen(text), secret, &again, &r);
    if (!r.found || again.grpc_port != b->grpc_port || again.tunnel_port != b->tunnel_port ||
        strcasecmp(again.token, b->token) != 0 || strcmp(again.host, b->host) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    contract_banner b;
    contract_find_result r;
    contract_banner_find((const char *)d, n, NULL, &b, &r);
    if (r.found)
        check_round_trip(&b, NULL);
    contract_banner_find((const char *)d, n, SECRET, &b, &r);
    if (r.found != r.proven)
        abort();
    if (r.found)
        check_round_trip(&b, SECRET);
    return 0;
}
