/* tmute — see tmute.h. */
#include "tmute.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "basic/time-util.h"
#include "rpc.h"

struct tmute {
    rpc_server *srv;
    pthread_mutex_t mu;
    size_t got;
};

static grpc_status_code h_mute(rpc_call *call, void *ud)
{
    tmute *m = ud;
    uint8_t *buf;
    size_t len;
    for (bool first = true; rpc_call_recv(call, &buf, &len) == 0; first = false) {
        free(buf);
        pthread_mutex_lock(&m->mu);
        m->got += first ? 0 : len;
        pthread_mutex_unlock(&m->mu);
    }
    return GRPC_STATUS_CANCELLED;
}

int tmute_start(tmute **ret, const char *method, char *addr, size_t addrlen)
{
    rpc_server_opts so = {.bind = "127.0.0.1:0"};
    int port, rc;
    tmute *m = calloc(1, sizeof *m);
    *ret = NULL;
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    if ((rc = rpc_server_new(&m->srv, &so)) < 0) {
        free(m);
        return rc;
    }
    if ((rc = rpc_server_add(m->srv, method, RPC_BIDI_STREAM, h_mute, m)) < 0 ||
        (rc = rpc_server_start(m->srv, &port)) < 0) {
        tmute_free(m);
        return rc;
    }
    snprintf(addr, addrlen, "127.0.0.1:%d", port);
    *ret = m;
    return 0;
}

size_t tmute_settled(tmute *m)
{
    size_t got = SIZE_MAX;
    for (int64_t since = time_now_ms(), deadline = since + 20000;
         time_now_ms() < deadline && time_now_ms() - since < 500;) {
        usleep(20000);
        pthread_mutex_lock(&m->mu);
        if (m->got != got)
            since = time_now_ms();
        got = m->got;
        pthread_mutex_unlock(&m->mu);
    }
    return got;
}

void tmute_free(tmute *m)
{
    if (!m)
        return;
    rpc_server_free(m->srv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
