/* nft — the manager's nftables rules, spoken over netlink (libnftnl + libmnl).
 *
 * Everything lives in one table per manager, `inet kdiag-<tunnel port>`
 * (nft_table_name): several managers in one pod (one per debug container) never
 * share a table, and the tunnel port is unique in the pod's network namespace
 * while its manager lives. Managers before this naming all used `inet kdiag`;
 * the first of them to redirect owned it for good, which locked every later
 * one out (docs/notes.md). The table is created with NFT_TABLE_F_OWNER: the
 * kernel deletes it when the netlink socket that created it closes, so a
 * crashed manager leaves no rule behind. The table is made with the first
 * redirect and then stays, empty chains included, until the socket closes:
 * the NAT of connections already redirected needs conntrack and the nat hooks
 * of these base chains, so deleting them would cut the connections a stream
 * leaves running.
 *   chain prerouting { type nat hook prerouting priority dstnat - 1; }
 *       ct state   (no verdict: holds conntrack on while the table exists)
 *       meta nfproto ipv4 meta l4proto tcp tcp dport P ip saddr NODE return   (per skipped source)
 *       meta l4proto tcp tcp dport P redirect to :L              (incoming)
 *   chain output { type nat hook output priority dstnat - 1; }
 *       meta oiftype loopback meta l4proto tcp tcp dport P return            (skip loopback)
 *       meta nfproto ipv4 meta l4proto tcp tcp dport P dnat ip to 127.0.0.1:L
 *       meta nfproto ipv6 meta l4proto tcp tcp dport P dnat ip6 to [::1]:L   (outgoing)
 * A return ends the table's evaluation for that packet: conntrack then keeps
 * the whole connection un-NATed.
 *
 * Functions return 0 or a negative errno as the kernel reported it (-EPERM
 * without CAP_NET_ADMIN). A nft_conn is safe to use from several threads.
 */
#ifndef KDIAG_NFT_H
#define KDIAG_NFT_H

#include <stdbool.h>
#include <stdint.h>

#define NFT_TABLE_PREFIX "kdiag-" /* + the manager's tunnel port */
#define NFT_TABLE_NAME_MAX 32

#define NFT_SKIP_SOURCES_MAX 4                   /* the node's addresses: one per family, and spares */
#define NFT_RULES_MAX (NFT_SKIP_SOURCES_MAX + 2) /* skips + one redirect rule per family */

typedef struct nft_conn nft_conn;

typedef struct {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
} nft_addr;

/* What one redirect catches: tcp port `port` to the manager's listener on
 * `to_port`, except what it leaves alone. */
typedef struct {
    bool outgoing;
    uint16_t port;
    uint16_t to_port;
    /* incoming: connections from these sources (the node: kubelet probes) pass untouched */
    nft_addr skip_src[NFT_SKIP_SOURCES_MAX];
    int nskip_src;
    /* outgoing: connections to the pod itself (routed through loopback) pass untouched */
    bool skip_loopback;
} nft_redirect;

/* The rules of one redirect, as handles the kernel assigned. */
typedef struct {
    bool outgoing;
    int n;
    uint64_t handle[NFT_RULES_MAX];
} nft_rules;

/* The table name of the manager whose tunnel listens on tunnel_port. */
void nft_table_name(uint16_t tunnel_port, char out[NFT_TABLE_NAME_MAX]);
/* Opens the netlink socket for rules in `inet <table>`. Changes nothing in the kernel. */
int nft_conn_open(nft_conn **out, const char *table);
/* Deletes a table of our name left behind (one created by hand, or on a kernel
 * that ignored the owner flag). 0 also when there is none; -EPERM when another
 * live process owns it. */
int nft_clear_leftover(nft_conn *c);
/* Installs one redirect: its skip rules (verdict return), then its redirect
 * rules, in one batch. */
int nft_redirect_add(nft_conn *c, const nft_redirect *rd, nft_rules *out);
/* Removes the rules of one redirect (table and chains stay). */
int nft_redirect_del(nft_conn *c, const nft_rules *r);
/* Closes the socket: the kernel drops the owned table with it. */
void nft_conn_close(nft_conn *c);

#endif
