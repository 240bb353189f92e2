/* sockdiag: request building and parsing of crafted netlink buffers, and one
 * live dump that must find sockets this test opens. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockdiag-internal.h"

#define SEQ 7

/* Appends one netlink message with payload to buf at *off. */
static void put_msg(uint8_t *buf, size_t *off, uint16_t type, uint32_t seq, const void *payload, size_t plen)
{
    struct nlmsghdr *h = (struct nlmsghdr *)(buf + *off);
    memset(h, 0, NLMSG_SPACE(plen));
    h->nlmsg_len = (uint32_t)NLMSG_LENGTH(plen);
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_MULTI;
    h->nlmsg_seq = seq;
    memcpy(NLMSG_DATA(h), payload, plen);
    *off += NLMSG_SPACE(plen);
}

static struct inet_diag_msg diag_msg(uint8_t family, const char *ip, uint16_t port, uint32_t inode)
{
    struct inet_diag_msg m;
    memset(&m, 0, sizeof(m));
    m.idiag_family = family;
    m.idiag_state = 10;
    m.id.idiag_sport = htons(port);
    m.id.idiag_dport = htons(9); /* must not be confused with the local port */
    inet_pton(family, ip, m.id.idiag_src);
    m.idiag_inode = inode;
    return m;
}

static void test_request(void **state)
{
    (void)state;
    uint8_t buf[SOCKDIAG_REQ_SIZE];
    int n = sockdiag_build_request(buf, sizeof(buf), AF_INET6, IPPROTO_UDP, 42);
    assert_int_equal(n, NLMSG_LENGTH(sizeof(struct inet_diag_req_v2)));
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    assert_int_equal(h->nlmsg_type, SOCK_DIAG_BY_FAMILY);
    assert_int_equal(h->nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
    assert_int_equal(h->nlmsg_seq, 42);
    struct inet_diag_req_v2 *r = NLMSG_DATA(h);
    assert_int_equal(r->sdiag_family, AF_INET6);
    assert_int_equal(r->sdiag_protocol, IPPROTO_UDP);
    assert_int_equal(r->idiag_states, 1u << 7); /* unconnected UDP only */
    sockdiag_build_request(buf, sizeof(buf), AF_INET, IPPROTO_TCP, 1);
    assert_int_equal(r->idiag_states, 1u << 10); /* TCP LISTEN only */

    assert_int_equal(sockdiag_build_request(buf, 10, AF_INET, IPPROTO_TCP, 1), -EINVAL);
    assert_int_equal(sockdiag_build_request(buf, sizeof(buf), AF_UNIX, IPPROTO_TCP, 1), -EINVAL);
    assert_int_equal(sockdiag_build_request(buf, sizeof(buf), AF_INET, IPPROTO_SCTP, 1), -EINVAL);
}

static void test_parse_dump(void **state)
{
    (void)state;
    uint8_t buf[4096] __attribute__((aligned(4)));
    size_t off = 0;
    sockdiag_list l = {0};
    struct inet_diag_msg m1 = diag_msg(AF_INET, "10.1.2.3", 8080, 1001);
    struct inet_diag_msg m2 = diag_msg(AF_INET6, "fd00::1", 443, 1002);
    struct inet_diag_msg m0 = diag_msg(AF_INET, "0.0.0.0", 1, 0); /* no inode: skipped */
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, &m1, sizeof(m1));
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, &m0, sizeof(m0));
    /* First datagram: no DONE yet, more to come. */
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), 0);
    assert_int_equal(l.n, 1);

    off = 0;
    /* Messages may carry attributes after inet_diag_msg. */
    uint8_t big[sizeof(m2) + 8];
    memcpy(big, &m2, sizeof(m2));
    memset(big + sizeof(m2), 0xab, 8);
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, big, sizeof(big));
    int done = 0;
    put_msg(buf, &off, NLMSG_DONE, SEQ, &done, sizeof(done));
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_UDP, &l), 1);
    assert_int_equal(l.n, 2);

    char ip[64];
    assert_int_equal(l.v[0].inode, 1001);
    assert_int_equal(l.v[0].family, AF_INET);
    assert_int_equal(l.v[0].protocol, IPPROTO_TCP);
    assert_int_equal(l.v[0].port, 8080);
    assert_string_equal(sockdiag_addr_str(&l.v[0], ip, sizeof(ip)), "10.1.2.3");
    assert_int_equal(l.v[1].inode, 1002);
    assert_int_equal(l.v[1].family, AF_INET6);
    assert_int_equal(l.v[1].protocol, IPPROTO_UDP);
    assert_int_equal(l.v[1].port, 443);
    assert_string_equal(sockdiag_addr_str(&l.v[1], ip, sizeof(ip)), "fd00::1");
    sockdiag_list_free(&l);

    /* A last message without its alignment padding is still whole. */
    off = 0;
    uint8_t odd[sizeof(m1) + 1];
    memcpy(odd, &m1, sizeof(m1));
    odd[sizeof(m1)] = 1;
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, odd, sizeof(odd));
    assert_int_equal(sockdiag_parse(buf, NLMSG_LENGTH(sizeof(odd)), SEQ, IPPROTO_TCP, &l), 0);
    assert_int_equal(l.n, 1);
    sockdiag_list_free(&l);
}

static void test_parse_errors(void **state)
{
    (void)state;
    uint8_t buf[4096] __attribute__((aligned(4)));
    size_t off = 0;
    sockdiag_list l = {0};
    struct inet_diag_msg m = diag_msg(AF_INET, "127.0.0.1", 80, 5);

    /* Kernel error reply. */
    struct nlmsgerr e = {.error = -EPERM};
    put_msg(buf, &off, NLMSG_ERROR, SEQ, &e, sizeof(e));
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EPERM);

    /* DONE carrying an error. */
    off = 0;
    int err = -EINTR;
    put_msg(buf, &off, NLMSG_DONE, SEQ, &err, sizeof(err));
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EINTR);

    /* Truncated: the datagram ends inside a message. */
    off = 0;
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, &m, sizeof(m));
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, &m, sizeof(m));
    assert_int_equal(sockdiag_parse(buf, off - 20, SEQ, IPPROTO_TCP, &l), -EBADMSG);
    sockdiag_list_free(&l);
    assert_int_equal(sockdiag_parse(buf, 10, SEQ, IPPROTO_TCP, &l), -EBADMSG);

    /* A message too short for inet_diag_msg. */
    off = 0;
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, &m, 20);
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EBADMSG);

    /* Short error reply, wrong sequence, unknown type, unknown family, empty. */
    off = 0;
    put_msg(buf, &off, NLMSG_ERROR, SEQ, &e, 2);
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EBADMSG);
    off = 0;
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ + 1, &m, sizeof(m));
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EBADMSG);
    off = 0;
    put_msg(buf, &off, 0x77, SEQ, &m, sizeof(m));
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EBADMSG);
    off = 0;
    struct inet_diag_msg bad = m;
    bad.idiag_family = AF_UNIX;
    put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, SEQ, &bad, sizeof(bad));
    assert_int_equal(sockdiag_parse(buf, off, SEQ, IPPROTO_TCP, &l), -EBADMSG);
    assert_int_equal(sockdiag_parse(buf, 0, SEQ, IPPROTO_TCP, &l), -EBADMSG);

    /* Garbage: an nlmsg_len larger than the buffer. */
    memset(buf, 0xff, 64);
    assert_int_equal(sockdiag_parse(buf, 64, SEQ, IPPROTO_TCP, &l), -EBADMSG);
    assert_int_equal(l.n, 0);

    /* Random bytes behind a plausible header: any verdict, never a crash (ASan). */
    srand(1234);
    for (int i = 0; i < 2000; i++) {
        size_t len = (size_t)(rand() % 300) + 1;
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)rand();
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (len >= sizeof(*h) && (i & 1)) {
            h->nlmsg_len = (uint32_t)(rand() % (int)(len + 8));
            h->nlmsg_seq = SEQ;
            h->nlmsg_type = (uint16_t)(i % 4 == 1 ? SOCK_DIAG_BY_FAMILY : NLMSG_ERROR);
        }
        int rc = sockdiag_parse(buf, len, SEQ, IPPROTO_TCP, &l);
        assert_true(rc <= 1);
        sockdiag_list_free(&l);
    }
}

static uint64_t sock_inode(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return st.st_ino;
}

/* The live dump finds a TCP listener and an unconnected UDP socket, and not a
 * TCP socket that only is bound. */
static void test_dump_live(void **state)
{
    (void)state;
    int lt = socket(AF_INET, SOCK_STREAM, 0);
    int lu = socket(AF_INET6, SOCK_DGRAM, 0);
    int bt = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    assert_int_equal(bind(lt, (struct sockaddr *)&a4, sizeof(a4)), 0);
    assert_int_equal(listen(lt, 4), 0);
    assert_int_equal(bind(bt, (struct sockaddr *)&a4, sizeof(a4)), 0);
    assert_int_equal(bind(lu, (struct sockaddr *)&a6, sizeof(a6)), 0);
    socklen_t sl = sizeof(a4);
    getsockname(lt, (struct sockaddr *)&a4, &sl);
    sl = sizeof(a6);
    getsockname(lu, (struct sockaddr *)&a6, &sl);

    sockdiag_list l = {0};
    assert_int_equal(sockdiag_dump_all(&l), 0);
    int found_t = 0, found_u = 0;
    char ip[64];
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].inode == sock_inode(lt)) {
            found_t++;
            assert_int_equal(l.v[i].protocol, IPPROTO_TCP);
            assert_int_equal(l.v[i].port, ntohs(a4.sin_port));
            assert_string_equal(sockdiag_addr_str(&l.v[i], ip, sizeof(ip)), "127.0.0.1");
        }
        if (l.v[i].inode == sock_inode(lu)) {
            found_u++;
            assert_int_equal(l.v[i].protocol, IPPROTO_UDP);
            assert_int_equal(l.v[i].family, AF_INET6);
            assert_int_equal(l.v[i].port, ntohs(a6.sin6_port));
            assert_string_equal(sockdiag_addr_str(&l.v[i], ip, sizeof(ip)), "::1");
        }
        assert_int_not_equal(l.v[i].inode, sock_inode(bt));
    }
    assert_int_equal(found_t, 1);
    assert_int_equal(found_u, 1);
    sockdiag_list_free(&l);
    close(lt);
    close(lu);
    close(bt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_parse_dump),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_dump_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
