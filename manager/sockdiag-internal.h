/* sockdiag internals: the request builder and the reply parser, apart from
 * the I/O so that the unit tests feed them crafted netlink buffers. */
#ifndef KDIAG_SOCKDIAG_INTERNAL_H
#define KDIAG_SOCKDIAG_INTERNAL_H

#include "sockdiag.h"

/* Size of a dump request built by sockdiag_build_request. */
#define SOCKDIAG_REQ_SIZE 128

/* Writes the dump request for family/protocol into buf (len >= SOCKDIAG_REQ_SIZE).
 * Returns the request length or -EINVAL. */
int sockdiag_build_request(void *buf, size_t len, uint8_t family, uint8_t protocol, uint32_t seq);

/* Parses one datagram of replies to the request with sequence seq, appending
 * the sockets to out (protocol is recorded on each). Returns 1 once the dump
 * is done, 0 when more datagrams follow, the kernel's negative errno for an
 * error reply, -EBADMSG for a malformed or truncated buffer, -ENOMEM. */
int sockdiag_parse(const void *buf, size_t len, uint32_t seq, uint8_t protocol, sockdiag_list *out);

#endif
