/* sockdiag — the inet sockets a Ps listing shows, from NETLINK_SOCK_DIAG.
 *
 * One dump per family/protocol: TCP sockets in LISTEN and UDP sockets that are
 * bound but not connected (what `ss -lu` calls UNCONN), IPv4 and IPv6.
 * Parsing (sockdiag-internal.h) is separate from the I/O (sockdiag_dump_all)
 * so it can be fed crafted netlink buffers. */
#ifndef KDIAG_SOCKDIAG_H
#define KDIAG_SOCKDIAG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t inode;   /* matches "socket:[inode]" in /proc/PID/fd */
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t protocol; /* IPPROTO_TCP or IPPROTO_UDP */
    uint16_t port;    /* host byte order */
    uint8_t addr[16]; /* 4 bytes used for AF_INET */
} sockdiag_sock;

typedef struct {
    sockdiag_sock *v;
    size_t n, cap;
} sockdiag_list;

/* Dumps TCP LISTEN and bound UDP sockets of both families in the caller's
 * network namespace into out (which it empties first). */
int sockdiag_dump_all(sockdiag_list *out);

/* Formats s's address ("0.0.0.0", "::1"); buf must hold 46 bytes. */
const char *sockdiag_addr_str(const sockdiag_sock *s, char *buf, size_t len);

void sockdiag_list_free(sockdiag_list *l);

#endif
