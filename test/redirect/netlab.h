/* netlab — the test bed of the redirect tests and benchmark: network
 * namespaces "peer" and "pod" joined by a veth, the real kdiag-manager in
 * "pod", and the CLI's role played in this process.
 *
 * The namespaces are anonymous (held by child processes that die with this
 * one), so nothing is left behind even when a test crashes. Every thread of
 * the process lives in "pod" (as kubectl port-forward's connections do);
 * sockets for "peer" and for the test's own namespace ("home", where the local
 * targets listen on 127.0.0.1) are made with netlab_socket().
 */
#ifndef KDIAG_TEST_NETLAB_H
#define KDIAG_TEST_NETLAB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "bridge.h"
#include "bridge-internal.h"
#include "redirect_client.h"

#define PEER_IP4 "10.213.0.1"
#define POD_IP4 "10.213.0.2"
#define PEER_IP6 "fd00:6b64::1"
#define POD_IP6 "fd00:6b64::2"

#define CHECK(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
            exit(1); \
        } \
    } while (0)

#define NETLAB_TUNNEL_SINK (-1)
#define NETLAB_IGNORE (-2) /* the CLI never opens the tunnel connection */

typedef enum { NS_HOME, NS_PEER, NS_POD } netlab_ns;

typedef struct {
    pid_t pid;
    int grpc_port, tunnel_port;
    char token[64];
    rpc_client *client;
} netlab_mgr;

/* Creates the namespaces and the veth; moves the calling (main) thread into "pod". */
void netlab_init(void);
/* Starts the manager in "pod" (without CAP_NET_ADMIN when asked) and a gRPC client to it. */
void netlab_mgr_start(netlab_mgr *m, const char *bin, bool drop_net_admin);
/* The next netlab_mgr_start writes the manager's stderr to path (truncated) instead of ours. */
void netlab_mgr_stderr_to(const char *path);
void netlab_mgr_kill(netlab_mgr *m);
/* SIGTERM; fails the test unless the manager exits 0 within 10 s. */
void netlab_mgr_stop(netlab_mgr *m);
int netlab_mgr_fd_count(const netlab_mgr *m);
long netlab_mgr_rss_kb(const netlab_mgr *m);

int netlab_socket(netlab_ns ns, int family);
/* The same with another type (SOCK_DGRAM). */
int netlab_socket_type(netlab_ns ns, int family, int type);
/* Blocking connect from a namespace; fd or -errno. */
int netlab_connect(netlab_ns ns, const char *ip, int port);
/* Listener on ip:0 in a namespace; *port receives its port. */
int netlab_listen(netlab_ns ns, const char *ip, int *port);
/* Output of a shell command run in "pod" (e.g. nft list tables); malloc'd. */
char *netlab_pod_sh(const char *cmd);

/* ---- the CLI's role: redirect_client and the CLI's own bridge (cli/bridge.c) ---- */
typedef struct netlab_cli {
    redirect_client *rc;
    bridge *br;
    pthread_t thread;
    int local_port; /* local target on home 127.0.0.1; a closed port plays "refused";
                       NETLAB_TUNNEL_SINK: no bridge, the tunnel connection is drained here */
    int run_rc;
    rpc_status st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, ended;
    uint32_t tunnel_port;
    int nconns;
    char last_peer[80], last_orig[80];
    uint8_t last_token[CONTRACT_TUNNEL_TOKEN_LEN];
    int bridges_running;
    int refused_at_limit; /* connections the bridge refused at its limit */
    int64_t last_event_us;
    rpc_client *client; /* the manager's, for HalfClose */
    bool half_close;    /* the stream carries half-closes out of band (bridging only) */
    /* Spare tunnel connections, as the CLI parks them (bridging only) */
    int spares;         /* how many to keep parked: 1, 0 with netlab_cli_start_nospares */
    bool offered_spare; /* the ready message had a spare_token */
    bool has_spare;     /* ... and this client parks spares */
    uint8_t spare_token[CONTRACT_TUNNEL_TOKEN_LEN];
    int parked;    /* parked, not yet announced nor ended */
    int on_spares; /* connections announced on a spare (the rest came on the stream) */
} netlab_cli;

void netlab_cli_start(netlab_cli *c, netlab_mgr *m, uint32_t port, bool outgoing, int local_port);
/* Same, with a bridge limited to max_conns connections at once (0: the default). */
void netlab_cli_start_capped(netlab_cli *c, netlab_mgr *m, uint32_t port, bool outgoing, int local_port, int max_conns);
/* Same, with a whole request (session id, skips) and the default bridge. */
void netlab_cli_start_req(netlab_cli *c, netlab_mgr *m, const redirect_client_req *req, int local_port);
/* Same as netlab_cli_start, parking no spares: every connection comes on the stream. */
void netlab_cli_start_nospares(netlab_cli *c, netlab_mgr *m, uint32_t port, bool outgoing, int local_port);
/* true once ready; false if the stream ended first (c->st holds why). */
bool netlab_cli_wait_ready(netlab_cli *c, int timeout_ms);
/* Cancels the stream and waits for its thread (bridged connections keep running). */
void netlab_cli_stop(netlab_cli *c);
/* Connections announced on a spare so far (c->on_spares, read under c->mu). */
int netlab_cli_on_spares(netlab_cli *c);
/* Waits until no bridged connection runs. */
bool netlab_cli_wait_idle(netlab_cli *c, int timeout_ms);
/* Stops the stream if running and frees the bridge (ends what still runs). */
void netlab_cli_free(netlab_cli *c);

/* ---- local targets in "home" ---- */
/* Echo server: echoes every byte, passes the client's FIN back after the echo. */
typedef struct netlab_echo netlab_echo;
netlab_echo *netlab_echo_start(int *port);
void netlab_echo_stop(netlab_echo *e);

/* Deterministic data streams for bulk transfers, verified block by block. */
/* Sends n bytes of stream seed; 0 or -errno. */
int netlab_send_stream(int fd, uint64_t seed, uint64_t n);
/* Reads to EOF; returns bytes read that matched the stream, -EBADMSG at the
 * first mismatch, -errno on error. */
int64_t netlab_recv_stream(int fd, uint64_t seed);

#endif
