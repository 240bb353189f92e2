/* nft — see nft.h. One netlink socket per manager; every change is one
 * nf_tables batch (atomic in the kernel), acknowledged message by message. */
#include "nft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/if_arp.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <netinet/in.h>

#define CHAIN_IN "prerouting"
#define CHAIN_OUT "output"
#define PRIO_DSTNAT_MINUS_1 (-101) /* NF_IP_PRI_NAT_DST - 1: before any dstnat rule of the pod */
#define REPLY_TIMEOUT_S 5

struct nft_conn {
    pthread_mutex_t lock;
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    bool table_in; /* created by us and still there (as far as we know) */
    char table[NFT_TABLE_NAME_MAX];
};

/* Replies to one batch. */
typedef struct {
    uint32_t first_seq; /* older replies belong to an earlier, aborted talk */
    int expected;       /* acks still outstanding */
    int err;            /* first error the kernel reported */
    int nechoes;
    struct {
        uint32_t seq;
        uint64_t handle;
    } echo[NFT_RULES_MAX];
} talk_state;

static bool seq_is_old(const talk_state *ts, uint32_t seq)
{
    return (int32_t)(seq - ts->first_seq) < 0;
}

static int on_error(const struct nlmsghdr *nlh, void *data)
{
    talk_state *ts = data;
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

    if (seq_is_old(ts, nlh->nlmsg_seq))
        return MNL_CB_OK;
    ts->expected--;
    if (e->error != 0 && ts->err == 0)
        ts->err = e->error;
    return MNL_CB_OK;
}

static int on_data(const struct nlmsghdr *nlh, void *data)
{
    talk_state *ts = data;

    if (seq_is_old(ts, nlh->nlmsg_seq))
        return MNL_CB_OK;
    if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWRULE && ts->nechoes < NFT_RULES_MAX) {
        struct nftnl_rule *r = nftnl_rule_alloc();
        if (!r)
            return MNL_CB_ERROR;
        if (nftnl_rule_nlmsg_parse(nlh, r) == 0 && nftnl_rule_is_set(r, NFTNL_RULE_HANDLE)) {
            ts->echo[ts->nechoes].seq = nlh->nlmsg_seq;
            ts->echo[ts->nechoes].handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
            ts->nechoes++;
        }
        nftnl_rule_free(r);
    }
    return MNL_CB_OK;
}

/* Sends the batch and reads until every acked message was answered or one failed. */
static int talk(nft_conn *c, struct mnl_nlmsg_batch *b, talk_state *ts)
{
    static mnl_cb_t ctl[NLMSG_MIN_TYPE] = {[NLMSG_ERROR] = on_error};
    char buf[MNL_SOCKET_BUFFER_SIZE];

    if (mnl_socket_sendto(c->nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) < 0)
        return -errno;
    while (ts->expected > 0 && ts->err == 0) {
        ssize_t n = mnl_socket_recvfrom(c->nl, buf, sizeof buf);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        if (mnl_cb_run2(buf, (size_t)n, 0, c->portid, on_data, ts, ctl, NLMSG_MIN_TYPE) < 0)
            return errno ? -errno : -EPROTO;
    }
    return ts->err;
}

static struct nlmsghdr *put_hdr(struct mnl_nlmsg_batch *b, uint16_t type, uint16_t flags, uint32_t seq)
{
    return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), type, NFPROTO_INET, flags, seq);
}

static int put_table(struct mnl_nlmsg_batch *b, const char *table, uint16_t type, uint16_t flags, uint32_t seq)
{
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t)
        return -ENOMEM;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    if (type == NFT_MSG_NEWTABLE)
        nftnl_table_set_u32(t, NFTNL_TABLE_FLAGS, NFT_TABLE_F_OWNER);
    nftnl_table_nlmsg_build_payload(put_hdr(b, type, flags, seq), t);
    nftnl_table_free(t);
    mnl_nlmsg_batch_next(b);
    return 0;
}

static int put_chain(struct mnl_nlmsg_batch *b, const char *table, const char *name, uint32_t hook, uint32_t seq)
{
    struct nftnl_chain *ch = nftnl_chain_alloc();
    if (!ch)
        return -ENOMEM;
    nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, table);
    nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, name);
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, "nat");
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, PRIO_DSTNAT_MINUS_1);
    nftnl_chain_nlmsg_build_payload(put_hdr(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, seq), ch);
    nftnl_chain_free(ch);
    mnl_nlmsg_batch_next(b);
    return 0;
}

/* ---- rule expressions ---- */

/* A rule of table/chain in family inet; NULL when out of memory. */
static struct nftnl_rule *rule_new(const char *table, const char *chain)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r)
        return NULL;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    return r;
}

static int expr_add(struct nftnl_rule *r, struct nftnl_expr *e)
{
    if (!e)
        return -ENOMEM;
    nftnl_rule_add_expr(r, e);
    return 0;
}

/* register 1 == data */
static int put_cmp_eq(struct nftnl_rule *r, const void *data, uint32_t len)
{
    struct nftnl_expr *cmp = nftnl_expr_alloc("cmp");
    if (expr_add(r, cmp) < 0)
        return -ENOMEM;
    nftnl_expr_set_u32(cmp, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(cmp, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
    nftnl_expr_set(cmp, NFTNL_EXPR_CMP_DATA, data, len);
    return 0;
}

/* meta KEY == val (len bytes, host order as the kernel stores it) */
static int put_meta_eq(struct nftnl_rule *r, uint32_t key, const void *val, uint32_t len)
{
    struct nftnl_expr *m = nftnl_expr_alloc("meta");
    if (expr_add(r, m) < 0)
        return -ENOMEM;
    nftnl_expr_set_u32(m, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(m, NFTNL_EXPR_META_DREG, NFT_REG_1);
    return put_cmp_eq(r, val, len);
}

static int put_meta_eq8(struct nftnl_rule *r, uint32_t key, uint8_t val)
{
    return put_meta_eq(r, key, &val, sizeof val);
}

/* header field (base, offset, len) == data */
static int put_payload_eq(struct nftnl_rule *r, uint32_t base, uint32_t offset, const void *data, uint32_t len)
{
    struct nftnl_expr *p = nftnl_expr_alloc("payload");
    if (expr_add(r, p) < 0)
        return -ENOMEM;
    nftnl_expr_set_u32(p, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(p, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(p, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(p, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    return put_cmp_eq(r, data, len);
}

/* [meta nfproto F] meta l4proto tcp tcp dport P: how every rule of a redirect starts. */
static int put_match(struct nftnl_rule *r, uint8_t nfproto, uint16_t port)
{
    uint16_t be = htons(port);
    if (nfproto && put_meta_eq8(r, NFT_META_NFPROTO, nfproto) < 0)
        return -ENOMEM;
    if (put_meta_eq8(r, NFT_META_L4PROTO, IPPROTO_TCP) < 0)
        return -ENOMEM;
    return put_payload_eq(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, &be, sizeof be);
}

static int put_imm(struct nftnl_rule *r, uint32_t reg, const void *data, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    if (expr_add(r, e) < 0)
        return -ENOMEM;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, reg);
    nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
    return 0;
}

static void put_newrule(struct mnl_nlmsg_batch *b, struct nftnl_rule *r, uint32_t seq)
{
    nftnl_rule_nlmsg_build_payload(
        put_hdr(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK | NLM_F_ECHO, seq), r);
    mnl_nlmsg_batch_next(b);
}

/* The redirect rule. nfproto: 0 = any (incoming redirect), NFPROTO_IPV4 /
 * NFPROTO_IPV6 (outgoing dnat to loopback). */
static int put_redirect_rule(struct mnl_nlmsg_batch *b, const char *table, uint8_t nfproto, const nft_redirect *rd,
                             uint32_t seq)
{
    uint16_t to_be = htons(rd->to_port);
    int rc = -ENOMEM;
    struct nftnl_rule *r = rule_new(table, nfproto ? CHAIN_OUT : CHAIN_IN);
    if (!r)
        return -ENOMEM;
    if (put_match(r, nfproto, rd->port) < 0)
        goto out;
    if (!nfproto) {
        if (put_imm(r, NFT_REG_1, &to_be, sizeof to_be) < 0)
            goto out;
        struct nftnl_expr *e = nftnl_expr_alloc("redir");
        if (expr_add(r, e) < 0)
            goto out;
        nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
    } else {
        struct in6_addr lo6 = IN6ADDR_LOOPBACK_INIT;
        uint32_t lo4 = htonl(INADDR_LOOPBACK);
        int ra = nfproto == NFPROTO_IPV4 ? put_imm(r, NFT_REG_1, &lo4, sizeof lo4)
                                         : put_imm(r, NFT_REG_1, &lo6, sizeof lo6);
        if (ra < 0 || put_imm(r, NFT_REG_2, &to_be, sizeof to_be) < 0)
            goto out;
        struct nftnl_expr *e = nftnl_expr_alloc("nat");
        if (expr_add(r, e) < 0)
            goto out;
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, nfproto);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
    }
    put_newrule(b, r, seq);
    rc = 0;
out:
    nftnl_rule_free(r);
    return rc;
}

/* A rule that lets a redirect's port pass untouched: from source `src`
 * (incoming), or out through loopback (outgoing, src NULL). */
static int put_skip_rule(struct mnl_nlmsg_batch *b, const char *table, const nft_redirect *rd, const nft_addr *src,
                         uint32_t seq)
{
    static const uint16_t loopback = ARPHRD_LOOPBACK;
    int rc = -ENOMEM;
    struct nftnl_rule *r = rule_new(table, rd->outgoing ? CHAIN_OUT : CHAIN_IN);
    if (!r)
        return -ENOMEM;
    if (src) {
        bool v4 = src->family == AF_INET;
        if (put_match(r, v4 ? NFPROTO_IPV4 : NFPROTO_IPV6, rd->port) < 0 ||
            put_payload_eq(r, NFT_PAYLOAD_NETWORK_HEADER, v4 ? 12 : 8, src->addr, v4 ? 4 : 16) < 0) /* saddr */
            goto out;
    } else if (put_meta_eq(r, NFT_META_OIFTYPE, &loopback, sizeof loopback) < 0 || put_match(r, 0, rd->port) < 0) {
        goto out;
    }
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    if (expr_add(r, e) < 0)
        goto out;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NFT_RETURN);
    put_newrule(b, r, seq);
    rc = 0;
out:
    nftnl_rule_free(r);
    return rc;
}

/* A rule that only loads `ct state`: its expression holds a conntrack
 * reference for the namespace (nf_ct_netns_get). Without it, removing a
 * stream's last redir/dnat rule would switch conntrack off in the pod, and with
 * it the NAT of the connections that stream leaves running. */
static int put_ct_hold(struct mnl_nlmsg_batch *b, const char *table, uint32_t seq)
{
    static const char comment[] = "kdiag: keeps conntrack on for redirected connections";
    int rc = -ENOMEM;
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 8);
    struct nftnl_rule *r = rule_new(table, CHAIN_IN);
    struct nftnl_expr *e = nftnl_expr_alloc("ct");
    if (!ud || !r || !e || !nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, comment))
        goto out;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    nftnl_rule_add_expr(r, e);
    e = NULL;
    nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
    nftnl_rule_nlmsg_build_payload(put_hdr(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, seq), r);
    mnl_nlmsg_batch_next(b);
    rc = 0;
out:
    if (e)
        nftnl_expr_free(e);
    nftnl_rule_free(r);
    if (ud)
        nftnl_udata_buf_free(ud);
    return rc;
}

static int put_delrule(struct mnl_nlmsg_batch *b, const char *table, bool outgoing, uint64_t handle, uint32_t seq)
{
    struct nftnl_rule *r = rule_new(table, outgoing ? CHAIN_OUT : CHAIN_IN);
    if (!r)
        return -ENOMEM;
    nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, handle);
    nftnl_rule_nlmsg_build_payload(put_hdr(b, NFT_MSG_DELRULE, NLM_F_ACK, seq), r);
    nftnl_rule_free(r);
    mnl_nlmsg_batch_next(b);
    return 0;
}

/* ---- public ---- */

void nft_table_name(uint16_t tunnel_port, char out[NFT_TABLE_NAME_MAX])
{
    snprintf(out, NFT_TABLE_NAME_MAX, NFT_TABLE_PREFIX "%u", tunnel_port);
}

int nft_conn_open(nft_conn **out, const char *table)
{
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    if (strlen(table) >= NFT_TABLE_NAME_MAX)
        return -ENAMETOOLONG;
    nft_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    snprintf(c->table, sizeof c->table, "%s", table);
    c->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!c->nl) {
        int e = -errno;
        free(c);
        return e;
    }
    if (mnl_socket_bind(c->nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
        setsockopt(mnl_socket_get_fd(c->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        int e = -errno;
        mnl_socket_close(c->nl);
        free(c);
        return e;
    }
    c->portid = mnl_socket_get_portid(c->nl);
    c->seq = (uint32_t)time(NULL);
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

int nft_clear_leftover(nft_conn *c)
{
    char buf[4096];
    talk_state ts = {0};
    int rc;

    pthread_mutex_lock(&c->lock);
    struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof buf);
    ts.first_seq = c->seq;
    nftnl_batch_begin(mnl_nlmsg_batch_current(b), c->seq++);
    mnl_nlmsg_batch_next(b);
    rc = put_table(b, c->table, NFT_MSG_DELTABLE, NLM_F_ACK, c->seq++);
    if (rc == 0) {
        nftnl_batch_end(mnl_nlmsg_batch_current(b), c->seq++);
        mnl_nlmsg_batch_next(b);
        ts.expected = 1;
        rc = talk(c, b, &ts);
        if (rc == -ENOENT)
            rc = 0;
        if (rc == 0)
            c->table_in = false;
    }
    mnl_nlmsg_batch_stop(b);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* The redirect's rules, skips first, into batch b; their sequence numbers
 * into seq[]. The number of rules, or -errno. */
static int put_redirect(nft_conn *c, struct mnl_nlmsg_batch *b, const nft_redirect *rd, uint32_t seq[NFT_RULES_MAX])
{
    static const uint8_t out_protos[2] = {NFPROTO_IPV4, NFPROTO_IPV6};
    int n = 0, rc = 0;

    for (int i = 0; i < rd->nskip_src && rc == 0; i++) {
        seq[n] = c->seq++;
        rc = put_skip_rule(b, c->table, rd, &rd->skip_src[i], seq[n++]);
    }
    if (rc == 0 && rd->skip_loopback) {
        seq[n] = c->seq++;
        rc = put_skip_rule(b, c->table, rd, NULL, seq[n++]);
    }
    for (int i = 0; i < (rd->outgoing ? 2 : 1) && rc == 0; i++) {
        seq[n] = c->seq++;
        rc = put_redirect_rule(b, c->table, rd->outgoing ? out_protos[i] : 0, rd, seq[n++]);
    }
    return rc < 0 ? rc : n;
}

static bool redirect_valid(const nft_redirect *rd)
{
    return rd->port && rd->to_port && rd->nskip_src >= 0 && rd->nskip_src <= NFT_SKIP_SOURCES_MAX &&
           !(rd->outgoing && rd->nskip_src) && !(!rd->outgoing && rd->skip_loopback);
}

int nft_redirect_add(nft_conn *c, const nft_redirect *rd, nft_rules *out)
{
    char buf[16384];
    talk_state ts = {0};
    uint32_t rule_seq[NFT_RULES_MAX];
    int rc = 0, nrules = 0;

    if (!redirect_valid(rd))
        return -EINVAL;
    pthread_mutex_lock(&c->lock);
    struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof buf);
    ts.first_seq = c->seq;
    nftnl_batch_begin(mnl_nlmsg_batch_current(b), c->seq++);
    mnl_nlmsg_batch_next(b);
    if (!c->table_in) {
        /* NLM_F_CREATE without EXCL: harmless when the table is still there. */
        rc = put_table(b, c->table, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK, c->seq++);
        if (rc == 0)
            rc = put_chain(b, c->table, CHAIN_IN, NF_INET_PRE_ROUTING, c->seq++);
        if (rc == 0)
            rc = put_chain(b, c->table, CHAIN_OUT, NF_INET_LOCAL_OUT, c->seq++);
        if (rc == 0)
            rc = put_ct_hold(b, c->table, c->seq++);
        ts.expected += 4;
    }
    if (rc == 0) {
        nrules = put_redirect(c, b, rd, rule_seq);
        rc = nrules < 0 ? nrules : 0;
    }
    if (rc == 0) {
        ts.expected += nrules;
        nftnl_batch_end(mnl_nlmsg_batch_current(b), c->seq++);
        mnl_nlmsg_batch_next(b);
        rc = talk(c, b, &ts);
    }
    mnl_nlmsg_batch_stop(b);
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        out->outgoing = rd->outgoing;
        for (int i = 0; i < nrules; i++)
            for (int j = 0; j < ts.nechoes; j++)
                if (ts.echo[j].seq == rule_seq[i]) {
                    out->handle[out->n++] = ts.echo[j].handle;
                    break;
                }
        c->table_in = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (rc == 0 && out->n != nrules) {
        nft_redirect_del(c, out); /* no handle echoed for some: the rules are in, but not removable one by one */
        rc = -EPROTO;
    }
    return rc;
}

int nft_redirect_del(nft_conn *c, const nft_rules *r)
{
    char buf[4096];
    talk_state ts = {0};
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof buf);
    ts.first_seq = c->seq;
    nftnl_batch_begin(mnl_nlmsg_batch_current(b), c->seq++);
    mnl_nlmsg_batch_next(b);
    for (int i = 0; i < r->n && rc == 0; i++) {
        rc = put_delrule(b, c->table, r->outgoing, r->handle[i], c->seq++);
        ts.expected++;
    }
    if (rc == 0 && r->n > 0) {
        nftnl_batch_end(mnl_nlmsg_batch_current(b), c->seq++);
        mnl_nlmsg_batch_next(b);
        rc = talk(c, b, &ts);
    }
    mnl_nlmsg_batch_stop(b);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void nft_conn_close(nft_conn *c)
{
    if (!c)
        return;
    mnl_socket_close(c->nl);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
