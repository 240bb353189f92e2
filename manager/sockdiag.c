/* sockdiag — inet socket dumps over NETLINK_SOCK_DIAG (see sockdiag.h). */
#include "sockdiag-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/alloc-util.h"

/* The kernel never builds dump datagrams larger than this (netlink_recvmsg caps
 * max_recvmsg_len at 32 KiB), so one buffer of this size takes any of them. */
#define SOCKDIAG_RECV_SIZE 32768

/* Socket states as the kernel numbers them (include/net/tcp_states.h). */
enum { SOCKDIAG_TCP_LISTEN = 10, SOCKDIAG_TCP_CLOSE = 7 };

int sockdiag_build_request(void *buf, size_t len, uint8_t family, uint8_t protocol, uint32_t seq)
{
    if (len < SOCKDIAG_REQ_SIZE || (family != AF_INET && family != AF_INET6) ||
        (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP))
        return -EINVAL;
    memset(buf, 0, SOCKDIAG_REQ_SIZE);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
    req->sdiag_family = family;
    req->sdiag_protocol = protocol;
    /* Listening TCP; for UDP only unconnected sockets (connected ones are clients). */
    req->idiag_states = protocol == IPPROTO_TCP ? 1u << SOCKDIAG_TCP_LISTEN : 1u << SOCKDIAG_TCP_CLOSE;
    return (int)nlh->nlmsg_len;
}

static int list_push(sockdiag_list *l, const sockdiag_sock *s)
{
    if (GROW_ARRAY(l->v, l->cap, l->n + 1, 64) < 0)
        return -ENOMEM;
    l->v[l->n++] = *s;
    return 0;
}

int sockdiag_parse(const void *buf, size_t len, uint32_t seq, uint8_t protocol, sockdiag_list *out)
{
    const struct nlmsghdr *nlh = buf;
    int left = len > INT32_MAX ? INT32_MAX : (int)len;

    if (len == 0)
        return -EBADMSG;
    for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_seq != seq)
            return -EBADMSG;
        size_t plen = mnl_nlmsg_get_payload_len(nlh);
        const void *payload = mnl_nlmsg_get_payload(nlh);
        switch (nlh->nlmsg_type) {
        case NLMSG_NOOP: continue;
        case NLMSG_DONE: {
            /* A dump's DONE carries the dump's status as an int. */
            int err = 0;
            if (plen >= sizeof(err))
                memcpy(&err, payload, sizeof(err));
            return err < 0 ? err : 1;
        }
        case NLMSG_ERROR: {
            struct nlmsgerr e;
            if (plen < sizeof(e))
                return -EBADMSG;
            memcpy(&e, payload, sizeof(e));
            if (e.error == 0)
                continue; /* an ack */
            return e.error < 0 ? e.error : -EBADMSG;
        }
        case SOCK_DIAG_BY_FAMILY: {
            struct inet_diag_msg m;
            if (plen < sizeof(m))
                return -EBADMSG;
            memcpy(&m, payload, sizeof(m));
            sockdiag_sock s = {.inode = m.idiag_inode,
                               .family = m.idiag_family,
                               .protocol = protocol,
                               .port = ntohs(m.id.idiag_sport)};
            if (s.family == AF_INET)
                memcpy(s.addr, m.id.idiag_src, 4);
            else if (s.family == AF_INET6)
                memcpy(s.addr, m.id.idiag_src, 16);
            else
                return -EBADMSG;
            if (s.inode == 0)
                continue; /* not owned by any file: no process to match it to */
            int rc = list_push(out, &s);
            if (rc < 0)
                return rc;
            continue;
        }
        default: return -EBADMSG;
        }
    }
    /* Datagrams hold whole messages; anything left over is a truncated one
     * (left < 0: the last message merely lacks its alignment padding). */
    return left <= 0 ? 0 : -EBADMSG;
}

static int dump_one(struct mnl_socket *nl, uint8_t *buf, uint8_t family, uint8_t protocol, uint32_t seq,
                    sockdiag_list *out)
{
    int n = sockdiag_build_request(buf, SOCKDIAG_RECV_SIZE, family, protocol, seq);
    if (n < 0)
        return n;
    if (mnl_socket_sendto(nl, buf, (size_t)n) < 0)
        return -errno;
    for (;;) {
        ssize_t got = mnl_socket_recvfrom(nl, buf, SOCKDIAG_RECV_SIZE);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int rc = sockdiag_parse(buf, (size_t)got, seq, protocol, out);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
}

int sockdiag_dump_all(sockdiag_list *out)
{
    static const struct {
        uint8_t family, protocol;
    } dumps[] = {
        {AF_INET, IPPROTO_TCP},
        {AF_INET6, IPPROTO_TCP},
        {AF_INET, IPPROTO_UDP},
        {AF_INET6, IPPROTO_UDP},
    };
    struct mnl_socket *nl = NULL;
    uint8_t *buf = NULL;
    int rc = 0;

    out->n = 0;
    buf = malloc(SOCKDIAG_RECV_SIZE);
    nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
    if (!buf || !nl) {
        rc = !buf ? -ENOMEM : -errno;
        goto out;
    }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        rc = -errno;
        goto out;
    }
    for (size_t i = 0; i < sizeof(dumps) / sizeof(dumps[0]); i++) {
        rc = dump_one(nl, buf, dumps[i].family, dumps[i].protocol, (uint32_t)i + 1, out);
        /* A kernel without IPv6 or UDP diag support just has none of those. */
        if (rc == -ENOENT || rc == -EAFNOSUPPORT || rc == -EPROTONOSUPPORT)
            rc = 0;
        if (rc < 0)
            goto out;
    }
out:
    if (nl)
        mnl_socket_close(nl);
    free(buf);
    return rc;
}

const char *sockdiag_addr_str(const sockdiag_sock *s, char *buf, size_t len)
{
    if (!inet_ntop(s->family == AF_INET ? AF_INET : AF_INET6, s->addr, buf, (socklen_t)len))
        snprintf(buf, len, "?");
    return buf;
}

void sockdiag_list_free(sockdiag_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}
