/* Unit tests: the pure parts of manager/capture.c (capture-internal.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "capture-internal.h"

#define AD(x) ((uint32_t)(SKF_AD_OFF + (x)))

/* A cooked socket's filter sees the packet from its network header: payload
 * loads move back by the SLL2 header, its fields become the kernel's
 * ancillary loads, accepting returns become the snap length. */
static void fix_cooked(void **state)
{
    (void)state;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0),                   /* SLL2 protocol */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4),                   /* SLL2 ifindex */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 10),                  /* SLL2 packet type */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20 + 9),              /* the IP protocol */
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 20),                 /* the IP header length */
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, 20 + 2),              /* the UDP destination port */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, AD(SKF_AD_VLAN_TAG)), /* already ancillary: kept */
        BPF_STMT(BPF_RET | BPF_K, 262144),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    assert_int_equal(capture_fix_program(f, sizeof f / sizeof *f, true, 44), 0);
    assert_int_equal(f[0].k, AD(SKF_AD_PROTOCOL));
    assert_int_equal(f[1].k, AD(SKF_AD_IFINDEX));
    assert_int_equal(f[2].k, AD(SKF_AD_PKTTYPE));
    assert_int_equal(f[3].k, 9);
    assert_int_equal(f[4].k, 0);
    assert_int_equal(f[5].k, 2);
    assert_int_equal(f[6].k, AD(SKF_AD_VLAN_TAG));
    assert_int_equal(f[7].k, 44);
    assert_int_equal(f[8].k, 0);
}

/* Other SLL2 header fields (the link-layer address) have no ancillary load. */
static void fix_cooked_refuses_header_fields(void **state)
{
    (void)state;
    struct sock_filter f[] = {BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 12), BPF_STMT(BPF_RET | BPF_K, 1)};
    assert_int_equal(capture_fix_program(f, 2, true, 100), -EINVAL);
}

/* A raw (Ethernet) socket's filter keeps its offsets; only the snap length changes. */
static void fix_raw(void **state)
{
    (void)state;
    struct sock_filter f[] = {BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12), BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 4),
                              BPF_STMT(BPF_RET | BPF_K, 262144)};
    assert_int_equal(capture_fix_program(f, 3, false, 96), 0);
    assert_int_equal(f[0].k, 12);
    assert_int_equal(f[1].k, 4);
    assert_int_equal(f[2].k, 96);
}

/* The LINKTYPE_LINUX_SLL2 header as tcpdump reads it. */
static void sll2_header(void **state)
{
    (void)state;
    struct sockaddr_ll sll = {.sll_protocol = htons(0x0800),
                              .sll_ifindex = 7,
                              .sll_hatype = 1,
                              .sll_pkttype = PACKET_OUTGOING,
                              .sll_halen = 6,
                              .sll_addr = {0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0xee, 0xee}};
    uint8_t h[CAPTURE_SLL2_LEN];
    const uint8_t want[CAPTURE_SLL2_LEN] = {0x08, 0x00, 0,    0,    0,    0,    0,    7, 0, 1, PACKET_OUTGOING,
                                            6,    0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0, 0};
    capture_sll2_header(h, &sll);
    assert_memory_equal(h, want, sizeof want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fix_cooked),
        cmocka_unit_test(fix_cooked_refuses_header_fields),
        cmocka_unit_test(fix_raw),
        cmocka_unit_test(sll2_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
