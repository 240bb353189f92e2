/* addr_format / addr_format_ip: the text every message and table shows for a
 * socket address. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "basic/addr-util.h"

static const char *fmt4(const char *ip, uint16_t port, char *buf, size_t n)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
    assert_int_equal(inet_pton(AF_INET, ip, &s.sin_addr), 1);
    return addr_format((struct sockaddr *)&s, buf, n);
}

static const char *fmt6(const char *ip, uint16_t port, uint32_t scope, char *buf, size_t n)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_scope_id = scope};
    assert_int_equal(inet_pton(AF_INET6, ip, &s.sin6_addr), 1);
    return addr_format((struct sockaddr *)&s, buf, n);
}

static void v4_is_ip_colon_port(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX];
    assert_string_equal(fmt4("192.0.2.1", 80, buf, sizeof buf), "192.0.2.1:80");
    assert_string_equal(fmt4("0.0.0.0", 0, buf, sizeof buf), "0.0.0.0:0");
    assert_string_equal(fmt4("255.255.255.255", 65535, buf, sizeof buf), "255.255.255.255:65535");
}

static void v6_is_bracketed(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX];
    assert_string_equal(fmt6("2001:db8::1", 443, 0, buf, sizeof buf), "[2001:db8::1]:443");
    assert_string_equal(fmt6("::", 8080, 0, buf, sizeof buf), "[::]:8080");
    assert_string_equal(fmt6("::ffff:192.0.2.1", 80, 0, buf, sizeof buf), "[::ffff:192.0.2.1]:80");
}

static void v6_scope_is_the_interface_name(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX], want[ADDR_STR_MAX], ifname[IF_NAMESIZE];
    unsigned lo = if_nametoindex("lo");
    assert_true(lo > 0);
    assert_non_null(if_indextoname(lo, ifname));
    snprintf(want, sizeof want, "[fe80::1%%%s]:22", ifname);
    assert_string_equal(fmt6("fe80::1", 22, lo, buf, sizeof buf), want);
}

static void v6_scope_without_interface_is_a_number(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX], ifname[IF_NAMESIZE];
    uint32_t idx = 4000000000u;
    assert_null(if_indextoname(idx, ifname));
    assert_string_equal(fmt6("fe80::1", 22, idx, buf, sizeof buf), "[fe80::1%4000000000]:22");
}

static void longest_text_fits(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX];
    fmt6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 4294967295u, buf, sizeof buf);
    assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535");
    assert_true(strlen(buf) < sizeof buf);
}

static void short_buffer_is_cut_and_terminated(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof buf);
    assert_string_equal(fmt4("192.0.2.1", 80, buf, sizeof buf), "192.0.2");
}

static void other_family_is_a_question_mark(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX];
    struct sockaddr sa = {.sa_family = AF_UNIX};
    assert_string_equal(addr_format(&sa, buf, sizeof buf), "?");
}

static void text_ip_is_bracketed_when_v6(void **state)
{
    (void)state;
    char buf[ADDR_STR_MAX];
    assert_string_equal(addr_format_ip("10.0.0.7", 53, buf, sizeof buf), "10.0.0.7:53");
    assert_string_equal(addr_format_ip("::1", 53, buf, sizeof buf), "[::1]:53");
}

static void listen_address_parses_v4_v6_and_localhost(void **state)
{
    (void)state;
    char ip[64];
    unsigned port = 1;
    assert_int_equal(addr_parse_listen("127.0.0.1:0", ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(port, 0);
    assert_int_equal(addr_parse_listen("[::1]:65535", ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(addr_parse_listen("localhost:80", ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "localhost");
    assert_int_equal(port, 80);
}

static void listen_address_refuses_the_malformed(void **state)
{
    (void)state;
    char ip[64];
    unsigned port;
    const char *bad[] = {"nonsense",     "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:123456",
                         "127.0.0.1:+1", "[::1:0",     "::1:0",           "[127.0.0.1]:0",
                         "[]:0",         ":80",        "host:80",         "1.2.3.4:8a"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(addr_parse_listen(bad[i], ip, sizeof ip, &port), -EINVAL);
    char small[4];
    assert_int_equal(addr_parse_listen("10.0.0.1:1", small, sizeof small, &port), -EINVAL); /* does not fit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v4_is_ip_colon_port),
        cmocka_unit_test(v6_is_bracketed),
        cmocka_unit_test(v6_scope_is_the_interface_name),
        cmocka_unit_test(v6_scope_without_interface_is_a_number),
        cmocka_unit_test(longest_text_fits),
        cmocka_unit_test(short_buffer_is_cut_and_terminated),
        cmocka_unit_test(other_family_is_a_question_mark),
        cmocka_unit_test(listen_address_parses_v4_v6_and_localhost),
        cmocka_unit_test(listen_address_refuses_the_malformed),
        cmocka_unit_test(text_ip_is_bracketed_when_v6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
