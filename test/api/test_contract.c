/* Unit tests of api/contract.c: the manager's start-up lines, their one
 * formatter and parser, and the proof that ties them to the secret. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "contract.h"

#define SECRET "00112233445566778899aabbccddeeff"
#define OTHER_SECRET "ffeeddccbbaa99887766554433221100"
#define TOKEN "0123456789abcdef0123456789abcdef"

static contract_banner sample(void)
{
    contract_banner b = {.grpc_port = 41234, .tunnel_port = 41235};
    snprintf(b.host, sizeof b.host, "127.0.0.1");
    snprintf(b.token, sizeof b.token, TOKEN);
    return b;
}

static void find(const char *text, const char *secret, contract_banner *b, contract_find_result *r)
{
    assert_int_equal(contract_banner_find(text, strlen(text), secret, b, r), 0);
}

static void format_prints_the_lines_in_order(void **state)
{
    (void)state;
    contract_banner b = sample();
    char out[512];
    assert_int_equal(contract_banner_format(&b, NULL, out, sizeof out), 0);
    assert_string_equal(out, "Listening on 127.0.0.1:41234\nToken: " TOKEN "\nTunnel on 127.0.0.1:41235\n");
    b.token[0] = '\0';
    b.tunnel_port = 0;
    assert_int_equal(contract_banner_format(&b, NULL, out, sizeof out), 0);
    assert_string_equal(out, "Listening on 127.0.0.1:41234\n");
    assert_int_equal(contract_banner_format(&b, SECRET, out, sizeof out), 0);
    /* known answer, from an independent HMAC: printf 'kdiag-manager start-up lines v1\n'
     * 'Listening on 127.0.0.1:41234\n' | openssl dgst -sha256 -hmac SECRET */
    assert_string_equal(out, "Listening on 127.0.0.1:41234\n"
                             "Proof: 41c6bf153b40acead7e37e5fd0b2970fe6b67c1abe0ad68601982dc78fe5ed71\n");
    assert_int_equal(contract_banner_format(&b, "short", out, sizeof out), -EINVAL);
    assert_int_equal(contract_banner_format(&b, SECRET, out, 40), -ENOSPC);
}

static void round_trip_proves_the_secret(void **state)
{
    (void)state;
    contract_banner in = sample(), out;
    contract_find_result r;
    char text[512];
    assert_int_equal(contract_banner_format(&in, SECRET, text, sizeof text), 0);
    find(text, SECRET, &out, &r);
    assert_true(r.found && r.proven);
    assert_int_equal(r.rejected, 0);
    assert_string_equal(out.host, "127.0.0.1");
    assert_int_equal(out.grpc_port, 41234);
    assert_int_equal(out.tunnel_port, 41235);
    assert_string_equal(out.token, TOKEN);

    /* without a tunnel (redirect unavailable) the proven banner says so */
    in.tunnel_port = 0;
    assert_int_equal(contract_banner_format(&in, SECRET, text, sizeof text), 0);
    find(text, SECRET, &out, &r);
    assert_true(r.found && r.proven);
    assert_int_equal(out.tunnel_port, 0);
    assert_string_equal(out.token, TOKEN);
}

static void wrong_secret_is_rejected(void **state)
{
    (void)state;
    contract_banner in = sample(), out;
    contract_find_result r;
    char text[512];
    assert_int_equal(contract_banner_format(&in, OTHER_SECRET, text, sizeof text), 0);
    find(text, SECRET, &out, &r);
    assert_false(r.found);
    assert_false(r.proven);
    assert_int_equal(r.rejected, 1);
    assert_int_equal(out.grpc_port, 0);
}

/* What a workload can write into the manager's log: lines that look like a
 * banner, with or without a Proof line, before or after the genuine one. */
static void forged_banner_is_skipped(void **state)
{
    (void)state;
    contract_banner genuine = sample(), forged = sample(), out;
    contract_find_result r;
    forged.grpc_port = 6666;
    forged.tunnel_port = 6667;
    snprintf(forged.token, sizeof forged.token, "%s", "ffffffffffffffffffffffffffffffff");
    char g[512], f_proofless[512], f_wrong[512], text[2048];
    assert_int_equal(contract_banner_format(&genuine, SECRET, g, sizeof g), 0);
    assert_int_equal(contract_banner_format(&forged, NULL, f_proofless, sizeof f_proofless), 0);
    assert_int_equal(contract_banner_format(&forged, OTHER_SECRET, f_wrong, sizeof f_wrong), 0);

    /* forged ones first (a rotated log), then the genuine one */
    snprintf(text, sizeof text, "%s%s%s", f_proofless, f_wrong, g);
    find(text, SECRET, &out, &r);
    assert_true(r.found && r.proven);
    assert_int_equal(r.rejected, 2);
    assert_int_equal(out.grpc_port, 41234);
    assert_string_equal(out.token, TOKEN);

    /* only forged ones: nothing is taken */
    snprintf(text, sizeof text, "%s%s", f_wrong, f_proofless);
    find(text, SECRET, &out, &r);
    assert_false(r.found);
    assert_int_equal(r.rejected, 1);
    assert_true(r.pending); /* the proofless one at the end might still get its proof */
    assert_int_equal(out.grpc_port, 0);
    assert_string_equal(out.token, "");

    /* the genuine Proof line replayed under forged lines proves nothing */
    const char *proof = strstr(g, "Proof: ");
    snprintf(text, sizeof text, "%s%s", f_proofless, proof);
    find(text, SECRET, &out, &r);
    assert_false(r.found);
    assert_int_equal(r.rejected, 1);

    /* one changed digit in a genuine banner breaks its proof */
    snprintf(text, sizeof text, "%s", g);
    *strstr(text, "41235") = '5';
    find(text, SECRET, &out, &r);
    assert_false(r.found);
    assert_int_equal(r.rejected, 1);
}

static void interleaved_and_partial_lines(void **state)
{
    (void)state;
    contract_banner out;
    contract_find_result r;
    /* stderr lines interleaved before and between (secret NULL: a test's own manager) */
    find("warning: something\nListening on 127.0.0.1:5000\nnoise Token: zz\n"
         "Token: ffffffffffffffffffffffffffffffff\nTunnel on 127.0.0.1:5001\n",
         NULL, &out, &r);
    assert_true(r.found);
    assert_false(r.proven);
    assert_int_equal(out.grpc_port, 5000);
    assert_int_equal(out.tunnel_port, 5001);
    assert_string_equal(out.token, "ffffffffffffffffffffffffffffffff");

    /* the same with a proof: interleaved lines are not part of what it signs */
    contract_banner in = sample();
    char g[512], text[1024];
    assert_int_equal(contract_banner_format(&in, SECRET, g, sizeof g), 0);
    char *nl = strchr(g, '\n');
    snprintf(text, sizeof text, "%.*sE1202 grpc says something\n%s", (int)(nl + 1 - g), g, nl + 1);
    find(text, SECRET, &out, &r);
    assert_true(r.found && r.proven);

    /* a last line without its newline is still being written */
    size_t glen = strlen(g);
    assert_int_equal(contract_banner_find(g, glen - 1, SECRET, &out, &r), 0);
    assert_false(r.found);
    assert_true(r.pending);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(contract_banner_find("", 0, SECRET, &out, &r), 0);
    assert_false(r.found || r.pending);
}

/* The assertions of the CLI's former log parser, kept. */
static void values_out_of_range_are_not_taken(void **state)
{
    (void)state;
    contract_banner out;
    contract_find_result r;
    find("Listening on 127.0.0.1:41234\nToken: 0123456789abcdef0123456789ABCDEF\n"
         "Tunnel on 127.0.0.1:41235\nredirect: port 80 ready\n",
         NULL, &out, &r);
    assert_true(r.found);
    assert_int_equal(out.grpc_port, 41234);
    assert_int_equal(out.tunnel_port, 41235);
    assert_string_equal(out.token, "0123456789abcdef0123456789ABCDEF");

    find("Listening on 127.0.0.1:5000\n", NULL, &out, &r);
    assert_true(r.found);
    assert_string_equal(out.token, "");
    assert_int_equal(out.tunnel_port, 0);
    find("", NULL, &out, &r);
    assert_false(r.found);
    find("Listening on 127.0.0.1:99999\nToken: 0123456789abcdef0123456789abcdef\nTunnel on 127.0.0.1:1\n", NULL,
         &out, &r);
    assert_false(r.found);
    find("Listening on 127.0.0.1:80\nToken: 0123\nTunnel on 127.0.0.1:1\n", NULL, &out, &r);
    assert_true(r.found);
    assert_string_equal(out.token, "");
    assert_int_equal(out.tunnel_port, 0);
    find("Listening on 127.0.0.1:0\nListening on :80\nListening on a b:80\nListening on 127.0.0.1:8x\n", NULL,
         &out, &r);
    assert_false(r.found);
    /* IPv6 hosts keep their brackets */
    find("Listening on [::1]:443\n", NULL, &out, &r);
    assert_true(r.found);
    assert_string_equal(out.host, "[::1]");
    assert_int_equal(out.grpc_port, 443);
}

static void secrets(void **state)
{
    (void)state;
    char a[CONTRACT_SECRET_HEX_LEN + 1], b[CONTRACT_SECRET_HEX_LEN + 1];
    assert_int_equal(contract_secret_new(a), 0);
    assert_int_equal(contract_secret_new(b), 0);
    assert_true(contract_secret_valid(a));
    assert_string_not_equal(a, b);
    assert_true(contract_secret_valid(SECRET));
    assert_false(contract_secret_valid(NULL));
    assert_false(contract_secret_valid(""));
    assert_false(contract_secret_valid("0011223344556677889900aabbccddeeff"));
    assert_false(contract_secret_valid("0011223344556677889900aabbccddeg"));
}

/* Hello: the proof covers the nonce and every field; another secret, nonce or
 * field does not check; the proof is never the same as a Proof line's. */
static void hello_proof_covers_every_field(void **state)
{
    (void)state;
    uint8_t nonce[CONTRACT_HELLO_NONCE_LEN], other[CONTRACT_HELLO_NONCE_LEN], proof[CONTRACT_HELLO_PROOF_LEN];
    for (int i = 0; i < CONTRACT_HELLO_NONCE_LEN; i++) {
        nonce[i] = (uint8_t)i;
        other[i] = (uint8_t)(i + 1);
    }
    const contract_hello h = {.target_found = true, .grpc_port = 40123, .tunnel_port = 40124};
    assert_int_equal(contract_hello_proof(SECRET, nonce, &h, proof), 0);
    assert_true(contract_hello_check(SECRET, nonce, &h, proof, sizeof proof));
    assert_false(contract_hello_check(OTHER_SECRET, nonce, &h, proof, sizeof proof));
    assert_false(contract_hello_check(SECRET, other, &h, proof, sizeof proof));
    assert_false(contract_hello_check(SECRET, nonce, &h, proof, sizeof proof - 1));
    contract_hello v[] = {h, h, h};
    v[0].target_found = false;
    v[1].grpc_port = 40124;
    v[2].tunnel_port = 0;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        assert_false(contract_hello_check(SECRET, nonce, &v[i], proof, sizeof proof));
    uint8_t flipped[CONTRACT_HELLO_PROOF_LEN];
    memcpy(flipped, proof, sizeof proof);
    flipped[31] ^= 1;
    assert_false(contract_hello_check(SECRET, nonce, &h, flipped, sizeof flipped));
    const contract_hello bad_port = {.grpc_port = 0}, bad_tunnel = {.grpc_port = 1, .tunnel_port = 65536};
    assert_int_equal(contract_hello_proof(SECRET, nonce, &bad_port, proof), -EINVAL);
    assert_int_equal(contract_hello_proof(SECRET, nonce, &bad_tunnel, proof), -EINVAL);
    assert_int_equal(contract_hello_proof("not-a-secret", nonce, &h, proof), -EINVAL);
    assert_false(contract_hello_check("not-a-secret", nonce, &h, proof, sizeof proof));

    /* the token proof: another token, secret or nonce does not check, and it is not the proof */
    const char *token = "0123456789abcdef0123456789abcdef";
    uint8_t tp[CONTRACT_HELLO_PROOF_LEN];
    assert_int_equal(contract_hello_token_proof(SECRET, nonce, token, tp), 0);
    assert_true(contract_hello_token_check(SECRET, nonce, token, tp, sizeof tp));
    assert_false(contract_hello_token_check(SECRET, nonce, "0123456789abcdef0123456789abcdee", tp, sizeof tp));
    assert_false(contract_hello_token_check(SECRET, nonce, "0123456789abcdef0123456789abcde", tp, sizeof tp));
    assert_false(contract_hello_token_check(OTHER_SECRET, nonce, token, tp, sizeof tp));
    assert_false(contract_hello_token_check(SECRET, other, token, tp, sizeof tp));
    assert_false(contract_hello_token_check(SECRET, nonce, token, tp, 0));
    assert_int_equal(contract_hello_token_proof(SECRET, nonce, "", tp), -EINVAL);
    assert_int_equal(contract_hello_token_proof(SECRET, nonce, NULL, tp), -EINVAL);
    assert_int_equal(memcmp(tp, proof, sizeof tp) != 0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(format_prints_the_lines_in_order),
        cmocka_unit_test(round_trip_proves_the_secret),
        cmocka_unit_test(wrong_secret_is_rejected),
        cmocka_unit_test(forged_banner_is_skipped),
        cmocka_unit_test(interleaved_and_partial_lines),
        cmocka_unit_test(values_out_of_range_are_not_taken),
        cmocka_unit_test(secrets),
        cmocka_unit_test(hello_proof_covers_every_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
