/* capture-internal — test seams of manager/capture.c: the pure parts. */
#ifndef KDIAG_CAPTURE_INTERNAL_H
#define KDIAG_CAPTURE_INTERNAL_H

#include <linux/filter.h>
#include <linux/if_packet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture.h"

#define CAPTURE_SNAPLEN_MAX 262144u /* tcpdump's default and libpcap's maximum */
#define CAPTURE_SLL2_LEN 20u        /* the LINKTYPE_LINUX_SLL2 header */
#define CAPTURE_LINKTYPE_ETHERNET 1u
#define CAPTURE_LINKTYPE_SLL2 276u

/* Makes a program compiled for linktype LINUX_SLL2 run on a SOCK_DGRAM packet
 * socket, where the kernel filter sees the packet from its network header
 * and the link-layer fields only as SKF_AD_* loads (what libpcap does for
 * "any"): payload offsets drop the header's length, the protocol, ifindex and
 * packet type fields become SKF_AD_PROTOCOL, _IFINDEX, _PKTTYPE. With cooked
 * false (a SOCK_RAW socket on one Ethernet interface) offsets stay. Either
 * way every non-zero constant return becomes snap, the bytes the kernel
 * keeps. -EINVAL when the program reads another header field (the kernel
 * cannot give it). */
int capture_fix_program(struct sock_filter *f, size_t n, bool cooked, uint32_t snap);

/* The LINKTYPE_LINUX_SLL2 header of a packet the kernel described with sll. */
void capture_sll2_header(uint8_t out[CAPTURE_SLL2_LEN], const struct sockaddr_ll *sll);

#endif
