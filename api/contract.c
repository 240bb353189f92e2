#include "contract.h"

#include <errno.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "basic/hex-util.h"

#define LISTEN_PREFIX "Listening on "
#define TOKEN_PREFIX "Token: "
#define TUNNEL_PREFIX "Tunnel on "
#define PROOF_PREFIX "Proof: "
/* Bound into every proof, so a proof is never valid for anything else the
 * secret might one day sign. */
#define PROOF_CONTEXT "kdiag-manager start-up lines v1\n"

typedef struct {
    const char *p; /* line start */
    size_t n;      /* length without the '\n' */
} line;

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

bool contract_secret_valid(const char *s)
{
    return s && strlen(s) == CONTRACT_SECRET_HEX_LEN && is_hex(s, CONTRACT_SECRET_HEX_LEN);
}

int contract_secret_new(char out[CONTRACT_SECRET_HEX_LEN + 1])
{
    return hex_random(out, CONTRACT_SECRET_HEX_LEN / 2);
}

/* Hex of HMAC-SHA256(secret, PROOF_CONTEXT + lines[0..n)). The lines are a
 * few hundred bytes at most (parse_addr bounds them). */
static int proof_of(const char *secret, const char *lines, size_t n, char out[CONTRACT_PROOF_HEX_LEN + 1])
{
    unsigned char msg[1024], mac[SHA256_DIGEST_SIZE];
    size_t cl = strlen(PROOF_CONTEXT);
    if (n > sizeof msg - cl)
        return -E2BIG;
    memcpy(msg, PROOF_CONTEXT, cl);
    memcpy(msg + cl, lines, n);
    _Static_assert(sizeof mac * 2 == CONTRACT_PROOF_HEX_LEN, "a proof is the hex of one SHA-256");
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, strlen(secret), (const uint8_t *)secret);
    hmac_sha256_update(&ctx, cl + n, msg);
    hmac_sha256_digest(&ctx, sizeof mac, mac);
    hex_of(mac, sizeof mac, out);
    return 0;
}

/* HMAC-SHA256 with the secret (its hex characters as the key) over context,
 * the nonce and tail[0..n): the Hello answers' MAC. */
static void hello_mac(const char *secret, const char *context, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                      const uint8_t *tail, size_t n, uint8_t out[CONTRACT_HELLO_PROOF_LEN])
{
    _Static_assert(CONTRACT_HELLO_PROOF_LEN == SHA256_DIGEST_SIZE, "a hello proof is one SHA-256");
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, strlen(secret), (const uint8_t *)secret);
    hmac_sha256_update(&ctx, strlen(context), (const uint8_t *)context);
    hmac_sha256_update(&ctx, CONTRACT_HELLO_NONCE_LEN, nonce);
    hmac_sha256_update(&ctx, n, tail);
    hmac_sha256_digest(&ctx, CONTRACT_HELLO_PROOF_LEN, out);
}

/* Is proof[0..len) want, made with result rc? Constant time over the proof. */
static bool hello_proof_matches(int rc, const uint8_t want[CONTRACT_HELLO_PROOF_LEN], const uint8_t *proof, size_t len)
{
    return rc == 0 && len == CONTRACT_HELLO_PROOF_LEN && memeql_sec(want, proof, len) != 0;
}

int contract_hello_proof(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                         const contract_hello *h, uint8_t out[CONTRACT_HELLO_PROOF_LEN])
{
    if (!contract_secret_valid(secret) || h->grpc_port < 1 || h->grpc_port > 65535 || h->tunnel_port < 0 ||
        h->tunnel_port > 65535)
        return -EINVAL;
    uint8_t q[5] = {h->target_found ? 1 : 0, (uint8_t)(h->grpc_port >> 8), (uint8_t)h->grpc_port,
                    (uint8_t)(h->tunnel_port >> 8), (uint8_t)h->tunnel_port};
    hello_mac(secret, CONTRACT_HELLO_CONTEXT, nonce, q, sizeof q, out);
    return 0;
}

bool contract_hello_check(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                          const contract_hello *h, const uint8_t *proof, size_t len)
{
    uint8_t want[CONTRACT_HELLO_PROOF_LEN];
    return hello_proof_matches(contract_hello_proof(secret, nonce, h, want), want, proof, len);
}

int contract_hello_token_proof(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                               const char *token, uint8_t out[CONTRACT_HELLO_PROOF_LEN])
{
    if (!contract_secret_valid(secret) || !token || strlen(token) != CONTRACT_TOKEN_HEX_LEN)
        return -EINVAL;
    hello_mac(secret, CONTRACT_HELLO_TOKEN_CONTEXT, nonce, (const uint8_t *)token, CONTRACT_TOKEN_HEX_LEN, out);
    return 0;
}

bool contract_hello_token_check(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                                const char *token, const uint8_t *proof, size_t len)
{
    uint8_t want[CONTRACT_HELLO_PROOF_LEN];
    return hello_proof_matches(contract_hello_token_proof(secret, nonce, token, want), want, proof, len);
}

int contract_banner_format(const contract_banner *b, const char *secret, char *out, size_t outlen)
{
    if (secret && !contract_secret_valid(secret))
        return -EINVAL;
    int n = snprintf(out, outlen, LISTEN_PREFIX "%s:%d\n", b->host, b->grpc_port);
    if (n >= 0 && (size_t)n < outlen && b->token[0])
        n += snprintf(out + n, outlen - (size_t)n, TOKEN_PREFIX "%s\n", b->token);
    if (n >= 0 && (size_t)n < outlen && b->tunnel_port)
        n += snprintf(out + n, outlen - (size_t)n, TUNNEL_PREFIX "127.0.0.1:%d\n", b->tunnel_port);
    if (n < 0 || (size_t)n >= outlen)
        return -ENOSPC;
    if (!secret)
        return 0;
    char proof[CONTRACT_PROOF_HEX_LEN + 1];
    if (proof_of(secret, out, (size_t)n, proof) < 0)
        return -EIO;
    int m = snprintf(out + n, outlen - (size_t)n, PROOF_PREFIX "%s\n", proof);
    return m < 0 || (size_t)m >= outlen - (size_t)n ? -ENOSPC : 0;
}

/* The complete line at *pos (ending in '\n'); false at the end of text or
 * before an unterminated last line (it may still be being written). */
static bool next_line(const char *text, size_t len, size_t *pos, line *l)
{
    if (*pos >= len)
        return false;
    const char *nl = memchr(text + *pos, '\n', len - *pos);
    if (!nl)
        return false;
    l->p = text + *pos;
    l->n = (size_t)(nl - l->p);
    *pos += l->n + 1;
    return true;
}

static bool has_prefix(const line *l, const char *prefix, const char **rest, size_t *restn)
{
    size_t pl = strlen(prefix);
    if (l->n < pl || memcmp(l->p, prefix, pl) != 0)
        return false;
    *rest = l->p + pl;
    *restn = l->n - pl;
    return true;
}

/* "<host>:<port>": host non-empty, printable, no spaces, fits host[hostlen];
 * port 1-65535 in at most 5 digits. */
static bool parse_addr(const char *s, size_t n, char *host, size_t hostlen, int *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~')
            return false;
        if (s[i] == ':')
            colon = s + i;
    }
    if (!colon || colon == s)
        return false;
    size_t hl = (size_t)(colon - s), pl = n - hl - 1;
    if (hl >= hostlen || pl < 1 || pl > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            return false;
        v = v * 10 + (colon[1 + i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    if (host) {
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    *port = v;
    return true;
}

static bool parse_listen(const line *l, contract_banner *b)
{
    const char *r;
    size_t rn;
    return has_prefix(l, LISTEN_PREFIX, &r, &rn) && parse_addr(r, rn, b->host, sizeof b->host, &b->grpc_port);
}

static bool parse_token(const line *l, contract_banner *b)
{
    const char *r;
    size_t rn;
    if (!has_prefix(l, TOKEN_PREFIX, &r, &rn) || rn != CONTRACT_TOKEN_HEX_LEN || !is_hex(r, rn))
        return false;
    memcpy(b->token, r, rn);
    b->token[rn] = '\0';
    return true;
}

static bool parse_tunnel(const line *l, contract_banner *b)
{
    const char *r;
    size_t rn;
    char host[64];
    return has_prefix(l, TUNNEL_PREFIX, &r, &rn) && parse_addr(r, rn, host, sizeof host, &b->tunnel_port);
}

static bool parse_proof(const line *l, char proof[CONTRACT_PROOF_HEX_LEN + 1])
{
    const char *r;
    size_t rn;
    if (!has_prefix(l, PROOF_PREFIX, &r, &rn) || rn != CONTRACT_PROOF_HEX_LEN || !is_hex(r, rn))
        return false;
    memcpy(proof, r, rn);
    proof[rn] = '\0';
    return true;
}

/* A banner being read: the lines taken so far, in order. */
typedef struct {
    line taken[3]; /* Listening, Token, Tunnel (as found) */
    int ntaken;
    int next_step;                          /* index into steps of the next kind that may come */
    char proof[CONTRACT_PROOF_HEX_LEN + 1]; /* "" until a Proof line ends it */
} candidate;

static bool (*const steps[])(const line *, contract_banner *) = {parse_token, parse_tunnel};
#define NSTEPS (int)(sizeof steps / sizeof *steps)

static bool is_banner_line(const line *l)
{
    static const char *const prefixes[] = {LISTEN_PREFIX, TOKEN_PREFIX, TUNNEL_PREFIX, PROOF_PREFIX};
    const char *r;
    size_t rn;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (has_prefix(l, prefixes[i], &r, &rn))
            return true;
    return false;
}

/* Reads the rest of a banner after its Listening line: the optional lines in
 * their order, then a Proof line. Lines that look like no banner line (stderr
 * interleaved by the container runtime) are skipped; any other banner-looking
 * line ends the banner and is left for the caller. *pos ends after the last
 * line consumed. */
static void parse_rest(const char *text, size_t len, size_t *pos, contract_banner *b, candidate *c)
{
    line l;
    size_t q = *pos;
    while (!c->proof[0] && next_line(text, len, &q, &l)) {
        if (!is_banner_line(&l)) {
            *pos = q;
            continue;
        }
        int i = c->next_step;
        while (i < NSTEPS && !steps[i](&l, b))
            i++;
        if (i < NSTEPS) {
            c->taken[c->ntaken++] = l;
            c->next_step = i + 1;
        } else if (!parse_proof(&l, c->proof)) {
            break;
        }
        *pos = q;
    }
}

static bool proof_matches(const char *secret, const candidate *c)
{
    char lines[512], want[CONTRACT_PROOF_HEX_LEN + 1], got[CONTRACT_PROOF_HEX_LEN + 1];
    size_t n = 0;
    if (!c->proof[0])
        return false;
    for (int i = 0; i < c->ntaken; i++) {
        if (n + c->taken[i].n + 1 > sizeof lines)
            return false;
        memcpy(lines + n, c->taken[i].p, c->taken[i].n);
        n += c->taken[i].n;
        lines[n++] = '\n';
    }
    if (proof_of(secret, lines, n, want) < 0)
        return false;
    /* the manager writes lowercase; compare in constant time */
    for (size_t i = 0; i <= CONTRACT_PROOF_HEX_LEN; i++)
        got[i] = (char)(c->proof[i] >= 'A' && c->proof[i] <= 'F' ? c->proof[i] - 'A' + 'a' : c->proof[i]);
    return memeql_sec(got, want, CONTRACT_PROOF_HEX_LEN) != 0;
}

int contract_banner_find(const char *text, size_t len, const char *secret, contract_banner *b, contract_find_result *r)
{
    size_t pos = 0;
    line l;
    *r = (contract_find_result){0};
    memset(b, 0, sizeof *b);
    while (next_line(text, len, &pos, &l)) {
        contract_banner cb = {0};
        if (!parse_listen(&l, &cb))
            continue;
        candidate c = {.taken = {l}, .ntaken = 1};
        parse_rest(text, len, &pos, &cb, &c);
        if (!secret || proof_matches(secret, &c)) {
            *b = cb;
            r->found = true;
            r->proven = secret != NULL;
            break;
        }
        /* Without a Proof line at the end of the text it may still come. */
        line rest;
        size_t q = pos;
        bool more = false;
        while (!more && next_line(text, len, &q, &rest))
            more = is_banner_line(&rest);
        if (c.proof[0] || more)
            r->rejected++;
        else
            r->pending = true;
    }
    return 0;
}
