/* contract — everything kubectl-diag and kdiag-manager must agree on besides
 * the messages of api/kdiag.proto: the method paths, the tunnel hello, the
 * start-up lines the manager prints and how a client checks that they come
 * from the manager it created. Specified in docs/contract.md. */
#ifndef KDIAG_CONTRACT_H
#define KDIAG_CONTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The contract's revision: bumped when a CLI and a manager of different
 * revisions would misunderstand each other, not for what either side ignores
 * safely (a field the other does not know). Part of the debug container's
 * name and of a remembered session's key (cli/ephem.c, cli/remember.c), so a
 * CLI never talks to a manager of another revision, however its version is
 * called. 2: a CopyTo client that asks for answers (ack_bytes) waits for
 * them; a manager before would never send one. 3: so does an Exec client
 * (ExecStart.stdin_ack_bytes). 4: a connection may wait CONTRACT_PREFACE_MS
 * for its HTTP/2 preface (a kept forward's spare). 5: a client that remembers
 * a session sends the token only after HelloResponse.token_proof, which a
 * manager before never sends. */
#define CONTRACT_REVISION "5"
/* How a version string carries it: "0.1.0" CONTRACT_REVISION_TAG. */
#define CONTRACT_REVISION_TAG "+contract" CONTRACT_REVISION

/* gRPC method paths of the Manager service. */
#define CONTRACT_SERVICE "/kdiag.solo.io.Manager/"
#define CONTRACT_METHOD_PS CONTRACT_SERVICE "Ps"
#define CONTRACT_METHOD_REDIRECT CONTRACT_SERVICE "Redirect"
#define CONTRACT_METHOD_PPROF CONTRACT_SERVICE "Pprof"
#define CONTRACT_METHOD_HALF_CLOSE CONTRACT_SERVICE "HalfClose"
#define CONTRACT_METHOD_CAPTURE CONTRACT_SERVICE "Capture"
#define CONTRACT_METHOD_COPY_FROM CONTRACT_SERVICE "CopyFrom"
#define CONTRACT_METHOD_COPY_TO CONTRACT_SERVICE "CopyTo"
#define CONTRACT_METHOD_EXEC CONTRACT_SERVICE "Exec"
#define CONTRACT_METHOD_HELLO CONTRACT_SERVICE "Hello"

/* The manager serves at most this many streaming calls at once, for all its
 * clients together; one more gets RESOURCE_EXHAUSTED. A redir takes one per
 * port, so it refuses more ports than this before it starts. */
#define CONTRACT_STREAMS_MAX 256

/* The manager closes a connection to its gRPC port that has not sent the
 * HTTP/2 client preface within this. A kept forward's keeper holds one such
 * connection ready for the next command (cli/keep.c) and replaces it before
 * then; anyone else's silent connections are bounded by the connection limit
 * (the oldest waiting one makes room, api/rpc_accept.h). */
#define CONTRACT_PREFACE_MS 120000

/* Tunnel hello: the 16-byte tunnel_token of a RedirectResponse, then one
 * status byte; OK = the client reached its local target, anything else
 * (send REFUSED) = it refused, the manager resets the peer. */
#define CONTRACT_TUNNEL_TOKEN_LEN 16
#define CONTRACT_TUNNEL_STATUS_OK 0x00
#define CONTRACT_TUNNEL_STATUS_REFUSED 0x01
#define CONTRACT_TUNNEL_HELLO_LEN (CONTRACT_TUNNEL_TOKEN_LEN + 1)
/* Spare tunnel connections (docs/redirect.md "Spare tunnel connections"): the
 * stream's spare_token then this status parks one; at most SPARES_MAX per
 * stream. The manager announces a connection on a parked one with a 2-byte
 * big-endian length and a RedirectResponse of at most ANNOUNCE_MAX bytes. */
#define CONTRACT_TUNNEL_STATUS_SPARE 0x02
#define CONTRACT_TUNNEL_SPARES_MAX 4
#define CONTRACT_TUNNEL_ANNOUNCE_MAX 512

/* Limits of RedirectRequest fields (api/kdiag.proto): session_id bytes, and
 * skip_sources entries (the node's addresses: one per family, and spares). */
#define CONTRACT_REDIRECT_SESSION_ID_MAX 32
#define CONTRACT_REDIRECT_SKIP_SOURCES_MAX 4

/* Capture (docs/capture.md): the longest CaptureRequest.filter, in bytes. */
#define CONTRACT_CAPTURE_FILTER_MAX 4096u

/* Copy streams (docs/cp.md): CopyChunk.data holds at most this many bytes,
 * well under the 4 MiB message limit of both ends. */
#define CONTRACT_COPY_DATA_MAX (128 * 1024)
/* A chunk's data goes as CopyChunk.zstd only when zstd (this level) makes it at
 * least 1/CONTRACT_COPY_ZSTD_GAIN smaller: less saved costs the receiver more
 * to decompress than the bytes cost to carry (docs/cp.md "Compression"). */
#define CONTRACT_COPY_ZSTD_LEVEL (-1)
#define CONTRACT_COPY_ZSTD_GAIN 8
/* Exec (docs/exec.md): the largest stdin or output chunk one message carries,
 * and the exit codes of a program that did not start (as in POSIX shells). */
#define CONTRACT_EXEC_CHUNK (128 * 1024)
/* Stdin a manager queues for one Exec whose client asked for answers
 * (ExecStart.stdin_ack_bytes), at most, beside the chunk that crossed it: so
 * much a client's window may hold for signals and resizes to go past the
 * stdin a program does not read (docs/exec.md "Flow control"). */
#define CONTRACT_EXEC_STDIN_WINDOW (4 * 1024 * 1024)
#define CONTRACT_EXEC_NOT_FOUND 127
#define CONTRACT_EXEC_NOT_EXECUTABLE 126

/* The bearer token: 32 hex digits (16 random bytes). */
#define CONTRACT_TOKEN_HEX_LEN 32
/* The environment variable of the debug container that carries the secret
 * the CLI chose for it, and the secret's form: 32 hex digits. */
#define CONTRACT_SECRET_ENV "KDIAG_SECRET"
#define CONTRACT_SECRET_HEX_LEN 32
/* Proof line: hex of HMAC-SHA256(secret, CONTRACT_PROOF_CONTEXT + the lines
 * above it, newlines included). */
#define CONTRACT_PROOF_HEX_LEN 64

/* The start-up lines (stdout, one write, in this order):
 *   Listening on <host>:<port>
 *   Token: <32 hex>                  unless --no-auth
 *   Tunnel on 127.0.0.1:<port>       when redirect is available
 *   Proof: <64 hex>                  when started with CONTRACT_SECRET_ENV */
typedef struct {
    char host[64];                          /* as printed: an IPv4 literal, [IPv6] or "localhost" */
    int grpc_port;                          /* 1-65535 */
    char token[CONTRACT_TOKEN_HEX_LEN + 1]; /* "" when the manager runs --no-auth */
    int tunnel_port;                        /* 0: no tunnel (redirect unavailable in this manager) */
} contract_banner;

/* What contract_banner_find saw. */
typedef struct {
    bool found;   /* *b is filled */
    bool proven;  /* ... and its Proof line proves the secret */
    int rejected; /* banners skipped: a wrong proof, or none before the next banner line */
    bool pending; /* the last banner has no Proof line yet (more log may come) */
} contract_find_result;

/* Writes the start-up lines for b into out (NUL-terminated), with the Proof
 * line when secret is not NULL. 0, -EINVAL for a secret of the wrong form,
 * -ENOSPC when out is too small. */
int contract_banner_format(const contract_banner *b, const char *secret, char *out, size_t outlen);

/* Finds the manager's start-up lines in text[0..len) (a container log: other
 * lines around them are skipped). A banner is a run of consecutive lines in
 * the order above, starting at "Listening on"; lines between them that look
 * like none of them (stderr the runtime interleaved) are skipped, and only
 * complete lines (ending in '\n') count. With secret NULL, the first banner
 * is taken as far as it goes (a test reading a manager it started). With a
 * secret, only a banner whose Proof line matches counts; others (forged by a
 * process in the pod, or proofless) are skipped. Pure: no I/O. Always
 * returns 0 and fills *r. */
int contract_banner_find(const char *text, size_t len, const char *secret, contract_banner *b, contract_find_result *r);

/* Hello (docs/contract.md): a client that knows a manager's secret from an
 * earlier session checks, before it sends the token, that the manager behind
 * a port still is that one. The client sends a fresh nonce; the manager
 * answers what it is (its ports, whether the target container runs) and
 * proof = HMAC-SHA256(secret, CONTRACT_HELLO_CONTEXT + nonce + found (1 byte)
 * + grpc port + tunnel port (2 bytes each, big-endian)). The context differs
 * from the start-up lines' so that an answer is never a Proof line. */
#define CONTRACT_HELLO_CONTEXT "kdiag-manager hello v1\n"
#define CONTRACT_HELLO_NONCE_LEN 32
#define CONTRACT_HELLO_PROOF_LEN 32

typedef struct {
    bool target_found; /* the Target of the request has a process */
    int grpc_port;     /* the manager's, as its start-up lines give it */
    int tunnel_port;   /* 0: no tunnel */
} contract_hello;

/* The proof of h for nonce. 0, or -EINVAL for a secret of the wrong form or
 * a port out of range. */
int contract_hello_proof(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                         const contract_hello *h, uint8_t out[CONTRACT_HELLO_PROOF_LEN]);
/* Does proof[0..len) prove h for nonce? Constant time over the proof. */
bool contract_hello_check(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                          const contract_hello *h, const uint8_t *proof, size_t len);

/* token_proof = HMAC-SHA256(secret, CONTRACT_HELLO_TOKEN_CONTEXT + nonce +
 * token (its 32 hex digits)): the manager's token is the one the client
 * remembers, and the token itself stays off the wire until it is. 0, or
 * -EINVAL for a secret or token of the wrong form (a manager without a
 * token sends none). */
#define CONTRACT_HELLO_TOKEN_CONTEXT "kdiag-manager hello token v1\n"
int contract_hello_token_proof(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                               const char *token, uint8_t out[CONTRACT_HELLO_PROOF_LEN]);
/* Does proof[0..len) prove token for nonce? Constant time over the proof. */
bool contract_hello_token_check(const char *secret, const uint8_t nonce[CONTRACT_HELLO_NONCE_LEN],
                                const char *token, const uint8_t *proof, size_t len);

/* Is s a secret of the right form (CONTRACT_SECRET_HEX_LEN hex digits)? */
bool contract_secret_valid(const char *s);
/* A fresh random secret (CONTRACT_SECRET_HEX_LEN hex digits + NUL). */
int contract_secret_new(char out[CONTRACT_SECRET_HEX_LEN + 1]);

#endif
