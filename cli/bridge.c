#include "bridge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/signal-util.h"
#include "redirect_client.h"

_Static_assert(BRIDGE_TOKEN_LEN == REDIRECT_CLIENT_TOKEN_LEN, "tunnel token length");

struct bridge {
    int tunnel_port;
    uint16_t local_port;
    uint8_t token[BRIDGE_TOKEN_LEN];
    bridge_done_fn done;
    void *ud;
};

static atomic_int active;

int bridge_active(void)
{
    return atomic_load(&active);
}

static int connect_tcp(int family, const char *ip, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, ip, &a->sin_addr);
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &a->sin6_addr);
        len = sizeof(*a);
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void *run(void *arg)
{
    struct bridge *b = arg;
    bridge_result r = {0};
    sig_block_stop(NULL); /* signals belong to the main thread */

    /* "localhost": IPv4 first, then IPv6 */
    int local = connect_tcp(AF_INET, "127.0.0.1", b->local_port);
    if (local == -ECONNREFUSED)
        local = connect_tcp(AF_INET6, "::1", b->local_port);
    int tunnel = connect_tcp(AF_INET, "127.0.0.1", (uint16_t)b->tunnel_port);
    if (tunnel < 0) {
        r.err = tunnel;
        r.where = "tunnel";
        if (local >= 0)
            close(local);
        goto out;
    }
    r.err = redirect_client_tunnel_hello(tunnel, b->token, local >= 0);
    if (r.err < 0 || local < 0) {
        r.where = r.err < 0 ? "tunnel" : "local target";
        if (r.err == 0)
            r.err = local;
        close(tunnel);
        if (local >= 0)
            close(local);
        goto out;
    }
    r.err = redirect_client_bridge(tunnel, local); /* closes both */
    r.where = "connection";
out:
    if (b->done)
        b->done(b->ud, &r);
    free(b);
    atomic_fetch_sub(&active, 1);
    return NULL;
}

int bridge_start(int tunnel_port, uint16_t local_port, const uint8_t token[BRIDGE_TOKEN_LEN], bridge_done_fn done,
                 void *ud)
{
    struct bridge *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->tunnel_port = tunnel_port;
    b->local_port = local_port;
    memcpy(b->token, token, BRIDGE_TOKEN_LEN);
    b->done = done;
    b->ud = ud;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
    pthread_t th;
    atomic_fetch_add(&active, 1);
    int rc = pthread_create(&th, &at, run, b);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        atomic_fetch_sub(&active, 1);
        free(b);
        return -rc;
    }
    return 0;
}
