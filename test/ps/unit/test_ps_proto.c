/* A PsResponse with every field survives encode (ps_rpc_encode) and decode
 * (protobuf-c's generated unpack). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "kdiag.pb-c.h"
#include "ps_rpc-internal.h"

static sockdiag_sock mk(uint8_t family, uint8_t proto, const char *ip, uint16_t port, uint64_t ino)
{
    sockdiag_sock s = {.inode = ino, .family = family, .protocol = proto, .port = port};
    assert_int_equal(inet_pton(family, ip, s.addr), 1);
    return s;
}

static void test_round_trip(void **state)
{
    (void)state;
    sockdiag_sock socks[] = {
        mk(AF_INET6, IPPROTO_UDP, "fe80::1", 5353, 1),
        mk(AF_INET, IPPROTO_TCP, "0.0.0.0", 80, 2),
        mk(AF_INET6, IPPROTO_TCP, "::", 443, 3),
        mk(AF_INET, IPPROTO_UDP, "127.0.0.1", 53, 4),
    };
    ps_proc procs[2];
    memset(procs, 0, sizeof(procs));
    procs[0].info = (procfs_proc){
        .pid = 4194304,
        .ppid = 1,
        .name = "web (x)",
        .state = 'S',
        .uid = 4294967294u,
        .rss_bytes = 123456789012ull,
        .start_time_unix_ms = 1764100000123ull,
        .cmdline = "nginx -g daemon off;"};
    procs[0].socks = socks;
    procs[0].n_socks = 4;
    procs[1].info = (procfs_proc){.pid = 2, .ppid = 0, .name = "idle", .state = 'Z', .cmdline = ""};
    ps_list l = {.procs = procs, .n = 2};

    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ps_rpc_encode(&l, &buf, &len), 0);
    Kdiag__Solo__Io__PsResponse *r = kdiag__solo__io__ps_response__unpack(NULL, len, buf);
    assert_non_null(r);
    assert_int_equal(r->n_processes, 2);

    Kdiag__Solo__Io__ProcessInfo *p = r->processes[0];
    assert_int_equal(p->pid, 4194304);
    assert_int_equal(p->ppid, 1);
    assert_string_equal(p->name, "web (x)");
    assert_string_equal(p->cmdline, "nginx -g daemon off;");
    assert_int_equal(p->uid, 4294967294u);
    assert_string_equal(p->state, "S");
    assert_int_equal(p->rss_bytes, 123456789012ull);
    assert_int_equal(p->start_time_unix_ms, 1764100000123ull);
    assert_int_equal(p->n_listen_addresses, 2);
    assert_string_equal(p->listen_addresses[0]->ip, "0.0.0.0");
    assert_int_equal(p->listen_addresses[0]->port, 80);
    assert_string_equal(p->listen_addresses[0]->protocol, "tcp");
    assert_string_equal(p->listen_addresses[1]->ip, "::");
    assert_int_equal(p->listen_addresses[1]->port, 443);
    assert_string_equal(p->listen_addresses[1]->protocol, "tcp");
    assert_int_equal(p->n_bound_addresses, 2);
    assert_string_equal(p->bound_addresses[0]->ip, "fe80::1");
    assert_int_equal(p->bound_addresses[0]->port, 5353);
    assert_string_equal(p->bound_addresses[0]->protocol, "udp");
    assert_string_equal(p->bound_addresses[1]->ip, "127.0.0.1");
    assert_int_equal(p->bound_addresses[1]->port, 53);

    p = r->processes[1];
    assert_int_equal(p->pid, 2);
    assert_string_equal(p->name, "idle");
    assert_string_equal(p->state, "Z");
    assert_string_equal(p->cmdline, "");
    assert_int_equal(p->n_listen_addresses, 0);
    assert_int_equal(p->n_bound_addresses, 0);
    kdiag__solo__io__ps_response__free_unpacked(r, NULL);
    free(buf);

    /* Field numbers of the original kdiag are on the wire where it expects
     * them: pid = field 1 varint (tag 0x08) inside processes = field 1 (0x0a). */
    ps_list one = {.procs = &procs[1], .n = 1};
    assert_int_equal(ps_rpc_encode(&one, &buf, &len), 0);
    assert_true(len > 4);
    assert_int_equal(buf[0], 0x0a);
    assert_int_equal(buf[2], 0x08);
    assert_int_equal(buf[3], 2);
    free(buf);

    /* An empty listing encodes as an empty message. */
    ps_list none = {0};
    assert_int_equal(ps_rpc_encode(&none, &buf, &len), 0);
    assert_int_equal(len, 0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
