/* addr-util — socket addresses as text, the one way every message and table
 * of kdiag writes them: "192.0.2.1:80", "[2001:db8::1]:80" and, for a
 * link-local address, "[fe80::1%eth0]:80" (the scope's interface name, or its
 * number when no interface has it). */
#ifndef KDIAG_BASIC_ADDR_UTIL_H
#define KDIAG_BASIC_ADDR_UTIL_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

/* IF_NAMESIZE, which comes with <net/if.h>: that header clashes with
 * <linux/if.h>, which netlink users include. */
#define ADDR_IFNAME_MAX 16
/* Room for the longest text: "[" address "%" interface "]:" port, and NUL. */
#define ADDR_STR_MAX (1 + INET6_ADDRSTRLEN + 1 + ADDR_IFNAME_MAX + 2 + 5 + 1)

/* Formats an AF_INET or AF_INET6 address with its port into buf ("?" for any
 * other family), cut to n - 1 bytes. Returns buf. */
const char *addr_format(const struct sockaddr *sa, char *buf, size_t n);

/* The same for an address already in text (as a Ps response carries it):
 * bracketed when it holds a ':'. Returns buf. */
const char *addr_format_ip(const char *ip, unsigned port, char *buf, size_t n);

/* Parses a listener's "ADDR:PORT": an IPv4 literal, a bracketed IPv6 literal
 * ("[::1]:0") or "localhost", then a port of 0-65535 in digits (0: a free
 * one). The address goes to ip without brackets. 0, or -EINVAL for anything
 * else (also an address longer than n - 1). */
int addr_parse_listen(const char *s, char *ip, size_t n, unsigned *port);

#endif
