#include "basic/addr-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

_Static_assert(ADDR_IFNAME_MAX == IF_NAMESIZE, "ADDR_IFNAME_MAX is IF_NAMESIZE");

const char *addr_format_ip(const char *ip, unsigned port, char *buf, size_t n)
{
    snprintf(buf, n, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
    return buf;
}

const char *addr_format(const struct sockaddr *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN + 1 + IF_NAMESIZE] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        return addr_format_ip(ip, ntohs(s->sin_port), buf, n);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        if (s->sin6_scope_id) {
            char ifname[IF_NAMESIZE];
            size_t len = strlen(ip);
            if (if_indextoname(s->sin6_scope_id, ifname))
                snprintf(ip + len, sizeof ip - len, "%%%s", ifname);
            else
                snprintf(ip + len, sizeof ip - len, "%%%u", s->sin6_scope_id);
        }
        return addr_format_ip(ip, ntohs(s->sin6_port), buf, n);
    }
    snprintf(buf, n, "?");
    return buf;
}

int addr_parse_listen(const char *s, char *ip, size_t n, unsigned *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5)
        return -EINVAL;
    unsigned long v = 0;
    for (const char *d = colon + 1; *d; d++) {
        if (*d < '0' || *d > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*d - '0');
    }
    size_t hl = (size_t)(colon - s);
    bool bracketed = hl >= 2 && s[0] == '[' && s[hl - 1] == ']';
    size_t len = bracketed ? hl - 2 : hl;
    if (v > 65535 || len >= n)
        return -EINVAL;
    memcpy(ip, bracketed ? s + 1 : s, len);
    ip[len] = '\0';
    unsigned char a[sizeof(struct in6_addr)];
    if (bracketed ? inet_pton(AF_INET6, ip, a) != 1 : inet_pton(AF_INET, ip, a) != 1 && strcmp(ip, "localhost") != 0)
        return -EINVAL;
    *port = (unsigned)v;
    return 0;
}
