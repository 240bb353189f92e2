/* test_tunnel — manager/tunnel.c on its own (no root, no nftables): a peer
 * whose tunnel connection has sent its token but not yet its status byte
 * (claimed, not paired) still belongs to its stream, so the stream ending
 * (tunnel_drop_owner) or being taken over (tunnel_move_owner) reaches it. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tsock.h"
#include "tunnel.h"

#define WAIT_MS 5000

static int tunnel_dial(tunnel *t, const uint8_t *token)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)tunnel_port(t))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, token, CONTRACT_TUNNEL_TOKEN_LEN), CONTRACT_TUNNEL_TOKEN_LEN);
    return fd;
}

static bool readable(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, WAIT_MS) == 1;
}

/* Hands a peer of owner to the tunnel and has a tunnel connection claim it
 * with its token, without the status byte. Two connections present the token:
 * the one the tunnel closes (used token) shows the other holds the claim.
 * *peer is the peer's far end; returns the claiming tunnel connection. */
static int claimed_peer(tunnel *t, const void *owner, int report_fd, int *peer, uint8_t *token)
{
    int near;
    assert_int_equal(tsock_loopback_pair(peer, &near, SOCK_NONBLOCK), 0);
    assert_int_equal(tunnel_add_peer(t, near, owner, report_fd, token), 0);
    int c[2] = {tunnel_dial(t, token), tunnel_dial(t, token)};
    struct pollfd pf[2] = {{.fd = c[0], .events = POLLIN}, {.fd = c[1], .events = POLLIN}};
    assert_int_equal(poll(pf, 2, WAIT_MS), 1);
    int loser = pf[0].revents ? 0 : 1;
    char b;
    assert_int_equal(read(c[loser], &b, 1), 0);
    close(c[loser]);
    return c[!loser];
}

static void send_status_ok(int tun)
{
    uint8_t ok = CONTRACT_TUNNEL_STATUS_OK;
    assert_int_equal(write(tun, &ok, 1), 1);
}

/* The stream ends while its peer is claimed, its report pipe is closed and the
 * fd number reused: the pair's half-close is a FIN on the tunnel connection,
 * nothing is written to the reused fd. */
static void test_drop_owner_reaches_claimed_peer(void **state)
{
    (void)state;
    tunnel *t;
    tunnel_opts o = {0};
    int owner, report[2], victim[2], peer;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    assert_int_equal(tunnel_new(&t, &o), 0);
    assert_int_equal(pipe2(report, O_NONBLOCK | O_CLOEXEC), 0);

    int tun = claimed_peer(t, &owner, report[1], &peer, token);
    tunnel_drop_owner(t, &owner);
    close(report[0]);
    close(report[1]);
    assert_int_equal(pipe2(victim, O_NONBLOCK | O_CLOEXEC), 0);
    if (victim[1] != report[1]) { /* the number the tunnel was given now belongs to someone else */
        assert_int_equal(dup2(victim[1], report[1]), report[1]);
        close(victim[1]);
        victim[1] = report[1];
    }
    send_status_ok(tun);
    assert_int_equal(shutdown(peer, SHUT_WR), 0);

    char b;
    assert_true(readable(tun));
    assert_int_equal(read(tun, &b, 1), 0); /* the FIN */
    tunnel_report r;
    assert_int_equal(read(victim[0], &r, sizeof r), -1);

    tunnel_free(t);
    close(tun);
    close(peer);
    close(victim[0]);
    close(victim[1]);
}

/* A takeover while the peer is claimed: its half-close is reported on the new
 * stream's pipe, after the old stream ended and closed its own. */
static void test_move_owner_reaches_claimed_peer(void **state)
{
    (void)state;
    tunnel *t;
    tunnel_opts o = {0};
    int old, heir, old_report[2], heir_report[2], peer;
    uint8_t token[CONTRACT_TUNNEL_TOKEN_LEN];
    assert_int_equal(tunnel_new(&t, &o), 0);
    assert_int_equal(pipe2(old_report, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(heir_report, O_NONBLOCK | O_CLOEXEC), 0);

    int tun = claimed_peer(t, &old, old_report[1], &peer, token);
    tunnel_move_owner(t, &old, &heir, heir_report[1]);
    tunnel_drop_owner(t, &old);
    close(old_report[0]);
    close(old_report[1]);
    send_status_ok(tun);
    assert_int_equal(shutdown(peer, SHUT_WR), 0);

    tunnel_report r;
    assert_true(readable(heir_report[0]));
    assert_int_equal(read(heir_report[0], &r, sizeof r), sizeof r);
    assert_memory_equal(r.token, token, sizeof r.token);
    assert_int_equal(r.bytes, 0);

    tunnel_free(t);
    close(tun);
    close(peer);
    close(heir_report[0]);
    close(heir_report[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drop_owner_reaches_claimed_peer),
        cmocka_unit_test(test_move_owner_reaches_claimed_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
