#include "basic/addr-util.h"

#include <arpa/inet.h>
#include <net/if.h>
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
