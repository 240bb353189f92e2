#include "fwdpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "portfwd.h"

#define FWDPOOL_IDLE_MS 30000     /* a forward beyond the warm ones ends after this long without a connection */
#define FWDPOOL_RETRY_MS 1000     /* a forward that failed to start: tried again after this, times the failures */
#define FWDPOOL_RETRY_MAX_MS 5000 /* ... at most */

struct fwdpool {
    kube k;
    char *pod, *container;
    int port;
    size_t max;
    int64_t timeout_ms;
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t grow; /* the thread waits on it for want */
    /* guarded by mu */
    portfwd *fwd[FWDPOOL_MAX];
    int load[FWDPOOL_MAX];           /* bridged connections per member */
    int64_t idle_since[FWDPOOL_MAX]; /* when its load last fell to 0 */
    size_t n, want;
    bool stopping;
};

int fwdpool_pick(fwdpool *p, uint16_t *port)
{
    int best = -1, lg, lt;
    size_t busy = 1; /* the spare */
    if (!p)
        return -1;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        if ((best < 0 || p->load[i] < p->load[best]) && portfwd_current(p->fwd[i], &lg, &lt)) {
            best = (int)i;
            *port = (uint16_t)lg;
        }
    if (best >= 0)
        p->load[best]++;
    for (size_t i = 0; i < p->n; i++)
        busy += (size_t)p->load[i];
    busy += best < 0; /* this one, on the gRPC forward */
    if (busy > p->want && p->want < p->max) {
        p->want = busy < p->max ? busy : p->max;
        pthread_cond_signal(&p->grow);
    }
    pthread_mutex_unlock(&p->mu);
    return best;
}

void fwdpool_release(fwdpool *p, int slot)
{
    if (!p || slot < 0)
        return;
    pthread_mutex_lock(&p->mu);
    if (--p->load[slot] == 0)
        p->idle_since[slot] = time_now_ms();
    pthread_mutex_unlock(&p->mu);
}

/* mu held: ends the last extra forwards while idle for FWDPOOL_IDLE_MS
 * (the last only: a connection's slot stays valid). */
static void shrink(fwdpool *p)
{
    while (p->n > FWDPOOL_WARM && p->load[p->n - 1] == 0 && time_now_ms() - p->idle_since[p->n - 1] >= FWDPOOL_IDLE_MS) {
        portfwd *pf = p->fwd[--p->n];
        p->want = p->n;
        pthread_mutex_unlock(&p->mu);
        portfwd_free(pf);
        pthread_mutex_lock(&p->mu);
    }
}

/* Starts forwards up to want, ends idle extra ones. A forward that fails to
 * start (the API server or the pod slow for a moment) is tried again after
 * FWDPOOL_RETRY_MS times the failures in a row, at most FWDPOOL_RETRY_MAX_MS;
 * meanwhile connections share the members, or take the gRPC forward. */
static void *pool_main(void *arg)
{
    fwdpool *p = arg;
    int failures = 0;
    int64_t retry_at = 0;
    char err[1024];
    sig_block_stop(NULL);
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        int64_t now = time_now_ms();
        if (p->n >= p->want || now < retry_at) {
            bool idle = p->n >= p->want;
            struct timespec dl = time_deadline_ts(CLOCK_MONOTONIC, idle ? FWDPOOL_IDLE_MS / 4 : retry_at - now);
            if (pthread_cond_timedwait(&p->grow, &p->mu, &dl) == ETIMEDOUT && idle)
                shrink(p);
            continue;
        }
        pthread_mutex_unlock(&p->mu);
        portfwd *pf;
        int rc = portfwd_new(&pf, &p->k, p->pod, p->container, p->port, 0, p->timeout_ms, err, sizeof(err));
        pthread_mutex_lock(&p->mu);
        failures = rc == 0 ? 0 : failures + 1;
        int64_t pause = (int64_t)failures * FWDPOOL_RETRY_MS;
        retry_at = time_now_ms() + (pause < FWDPOOL_RETRY_MAX_MS ? pause : FWDPOOL_RETRY_MAX_MS);
        if (rc == 0) {
            p->idle_since[p->n] = time_now_ms();
            p->fwd[p->n++] = pf;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int fwdpool_new(fwdpool **ret, const kube *k, const char *pod, const char *container, int port, size_t max,
                int64_t timeout_ms)
{
    int rc = -ENOMEM;
    fwdpool *p = calloc(1, sizeof(*p));
    *ret = NULL;
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    time_cond_init_monotonic(&p->grow);
    p->k = *k;
    p->port = port;
    p->max = max < FWDPOOL_MAX ? max : FWDPOOL_MAX;
    p->want = p->max < FWDPOOL_WARM ? p->max : FWDPOOL_WARM;
    p->timeout_ms = timeout_ms;
    if (!(p->pod = strdup(pod)) || !(p->container = strdup(container)))
        goto fail;
    if ((rc = -pthread_create(&p->th, NULL, pool_main, p)) < 0)
        goto fail;
    p->started = true;
    *ret = p;
    return 0;
fail:
    fwdpool_free(p);
    return rc;
}

void fwdpool_free(fwdpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->grow);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->th, NULL);
    for (size_t i = 0; i < p->n; i++)
        portfwd_free(p->fwd[i]);
    pthread_cond_destroy(&p->grow);
    pthread_mutex_destroy(&p->mu);
    free(p->pod);
    free(p->container);
    free(p);
}
