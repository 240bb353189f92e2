#include "portfwd-internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "kerr.h"
#include "pod.h"
#include "podsel.h"

enum pf_state { PF_STARTING, PF_UP, PF_DOWN, PF_GONE, PF_FAILED };
/* What the supervisor last said while the forward was down. */
enum pf_note { PF_NOTE_NONE, PF_NOTE_ENDED, PF_NOTE_API_DOWN, PF_NOTE_FAILING };

#define PF_RETRY_MAX_MS 2000 /* the slowest restart pace while the forward stays down */

/* The protocol kubectl port-forward speaks to the API server (kubectl 1.30+
 * reads KUBECTL_PORT_FORWARD_WEBSOCKETS; older ones speak SPDY alone). SPDY
 * first: the API server passes it to the kubelet as it is, and it costs
 * kubectl and the server less per byte than SPDY inside WebSocket messages
 * (docs/cp.md). WebSockets when the SPDY upgrade is refused (a proxy that
 * passes only WebSockets; an API server without SPDY), or when the user
 * chose by setting the variable. */
enum pf_proto { PF_PROTO_USER, PF_PROTO_SPDY, PF_PROTO_WEBSOCKET };
#define PF_PROTO_ENV "KUBECTL_PORT_FORWARD_WEBSOCKETS"
/* One API server per process: once refused, later forwards (redir's tunnel
 * pool) start with WebSockets. */
static atomic_bool spdy_refused;

struct portfwd {
    kube k;
    char pod[256];
    char container[64];
    int rgrpc, rtunnel;
    int64_t timeout_ms;
    pthread_t th;
    bool started; /* th runs */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum pf_state state;
    bool stopping;
    unsigned gen;
    int lgrpc, ltunnel;
    kube_proc child; /* pid -1 while none */
    int stop_efd, gone_efd;
    int kick_efd;         /* portfwd_kick of the adopted forward */
    int adopt_g, adopt_t; /* local ports of a forward someone else runs (portfwd_adopt); 0: none */
    char reason[1024];
    bool pod_went;       /* gone because the pod went, not only its debug container */
    enum pf_note said;   /* the supervisor thread's own */
    atomic_bool quiet;   /* portfwd_quiet: no notes from here on */
    enum pf_proto proto; /* the supervisor thread's own once started */
};

int portfwd_parse_line(const char *line, int *local, int *remote)
{
    unsigned l, r;
    char tail;
    if (sscanf(line, "Forwarding from 127.0.0.1:%u -> %u%c", &l, &r, &tail) < 2)
        return -EINVAL;
    if (l < 1 || l > 65535 || r < 1 || r > 65535)
        return -EINVAL;
    *local = (int)l;
    *remote = (int)r;
    return 0;
}

struct linebuf {
    char d[2048];
    size_t len;
};

/* Reads what is available; calls fn for each complete line. 0 at EOF. */
static int read_lines(int fd, struct linebuf *b, void (*fn)(portfwd *, const char *, bool), portfwd *pf, bool err)
{
    ssize_t n = read(fd, b->d + b->len, sizeof(b->d) - 1 - b->len);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -errno;
    if (n == 0) {
        if (b->len) {
            b->d[b->len] = '\0';
            fn(pf, b->d, err);
            b->len = 0;
        }
        return 0;
    }
    b->len += (size_t)n;
    b->d[b->len] = '\0';
    char *start = b->d, *nl;
    while ((nl = strchr(start, '\n'))) {
        *nl = '\0';
        fn(pf, start, err);
        start = nl + 1;
    }
    size_t rest = b->len - (size_t)(start - b->d);
    if (rest == sizeof(b->d) - 1) { /* a line longer than the buffer: take it as is */
        fn(pf, b->d, err);
        rest = 0;
    }
    memmove(b->d, start, rest);
    b->len = rest;
    return 1;
}

struct attempt {
    int lg, lt;
    bool seen_g, seen_t;
};

static __thread struct attempt *cur_attempt;

static void on_line(portfwd *pf, const char *line, bool is_err)
{
    if (is_err) {
        if (*line) {
            pthread_mutex_lock(&pf->mu);
            snprintf(pf->reason, sizeof(pf->reason), "%s", line);
            pthread_mutex_unlock(&pf->mu);
        }
        if (pf->k.verbose)
            fprintf(stderr, "port-forward: %s\n", line);
        return;
    }
    int l, r;
    if (portfwd_parse_line(line, &l, &r) < 0)
        return; /* "Handling connection for N" and the [::1] lines */
    struct attempt *a = cur_attempt;
    if (r == pf->rgrpc && !a->seen_g) {
        a->lg = l;
        a->seen_g = true;
    } else if (r == pf->rtunnel && !a->seen_t) {
        a->lt = l;
        a->seen_t = true;
    }
    if (a->seen_g && a->seen_t) {
        pthread_mutex_lock(&pf->mu);
        if (pf->state != PF_UP) {
            if (pf->said == PF_NOTE_API_DOWN || pf->said == PF_NOTE_FAILING)
                fprintf(stderr, "kubectl port-forward to pod/%s is up again\n", pf->pod);
            pf->said = PF_NOTE_NONE;
            pf->lgrpc = a->lg;
            pf->ltunnel = a->lt;
            pf->gen++;
            pf->state = PF_UP;
            pthread_cond_broadcast(&pf->cv);
        }
        pthread_mutex_unlock(&pf->mu);
    }
}

/* Reads the child's output until both pipes end; kills it (the whole group) when
 * it is not up within --timeout or when pf is stopped. */
static void watch_child(portfwd *pf, kube_proc *p, const struct attempt *a)
{
    struct linebuf ob = {.len = 0}, eb = {.len = 0};
    int64_t up_deadline = time_now_ms() + pf->timeout_ms;
    bool killed = false;
    while (p->out_fd >= 0 || p->err_fd >= 0) {
        struct pollfd fds[4] = {
            {p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}, {pf->stop_efd, POLLIN, 0}, {kube_stop_fd(), POLLIN, 0}};
        int wait = (a->seen_g && a->seen_t) || killed ? -1 : (int)(up_deadline - time_now_ms());
        if (wait < -1)
            wait = 0;
        int n = poll(fds, killed ? 3 : 4, wait);
        if (n == 0 && !killed) { /* never came up */
            kube_proc_kill(p, SIGTERM);
            killed = true;
            continue;
        }
        if (n < 0)
            continue;
        if (fds[0].revents && read_lines(p->out_fd, &ob, on_line, pf, false) <= 0) {
            close(p->out_fd);
            p->out_fd = -1;
        }
        if (fds[1].revents && read_lines(p->err_fd, &eb, on_line, pf, true) <= 0) {
            close(p->err_fd);
            p->err_fd = -1;
        }
        if ((fds[2].revents || fds[3].revents) && !killed) {
            kube_proc_kill(p, SIGKILL); /* see portfwd_cancel; or the process stops */
            killed = true;
        }
    }
}

/* Runs one kubectl port-forward until it exits. true when it came up. */
static bool run_child(portfwd *pf, int lg, int lt)
{
    char pod[300], a1[32], a2[32];
    snprintf(pod, sizeof(pod), "pod/%s", pf->pod);
    snprintf(a1, sizeof(a1), "%d:%d", lg, pf->rgrpc);
    snprintf(a2, sizeof(a2), "%d:%d", lt, pf->rtunnel);
    if (lg == 0)
        snprintf(a1, sizeof(a1), ":%d", pf->rgrpc);
    if (lt == 0)
        snprintf(a2, sizeof(a2), ":%d", pf->rtunnel);
    /* a manager without a tunnel (tunnel port 0): the gRPC port alone */
    const char *args[] = {"port-forward", "--address", "127.0.0.1", pod, a1, pf->rtunnel ? a2 : NULL, NULL};
    struct attempt a = {.seen_t = !pf->rtunnel};
    kube_proc p;
    char err[sizeof(pf->reason)];
    const char *spdy[] = {PF_PROTO_ENV "=false", NULL}, *ws[] = {PF_PROTO_ENV "=true", NULL};
    const char *const *env = pf->proto == PF_PROTO_SPDY ? spdy : pf->proto == PF_PROTO_WEBSOCKET ? ws : NULL;
    int rc = kube_spawn_env(&pf->k, args, env, KUBE_PIPE_OUT | KUBE_PIPE_ERR | KUBE_OWN_PGRP, &p, err, sizeof(err));
    pthread_mutex_lock(&pf->mu);
    if (rc < 0)
        snprintf(pf->reason, sizeof(pf->reason), "%s", err);
    else
        pf->child = p;
    bool stop = pf->stopping;
    pthread_mutex_unlock(&pf->mu);
    if (rc < 0)
        return false;
    if (stop)
        kube_proc_kill(&p, SIGKILL);
    cur_attempt = &a;
    watch_child(pf, &p, &a);
    cur_attempt = NULL;
    kube_wait(p.pid);
    kube_proc_close(&p);
    pthread_mutex_lock(&pf->mu);
    pf->child.pid = -1;
    pthread_mutex_unlock(&pf->mu);
    return a.seen_g && a.seen_t;
}

/* The ended debug container's target is down, or started again after the
 * debug container did: its end ended the debug container, which lives in the
 * target's PID namespace. Times have 1 s resolution: in the second the debug
 * container started, only a target that has restarted at all (a manager
 * killed there, its target untouched, is not a restart). */
static bool target_restarted(const pod_info *p, const pod_container *dbg)
{
    const pod_container *t = dbg->target ? pod_container_find(p, dbg->target) : NULL;
    if (!t || t->state != POD_STATE_RUNNING)
        return t != NULL;
    int later = t->started && dbg->started ? strcmp(t->started, dbg->started) : -1;
    return later > 0 || (later == 0 && t->restarts > 0);
}

/* After the child died: is the pod (and our manager) still there? 0 yes;
 * -ENOENT the pod went, -ESRCH our debug container exited (why says how);
 * -EAGAIN the API server did not answer (why says what kubectl said). */
static int pod_check(portfwd *pf, char *why, size_t n)
{
    pod_info p;
    int rc = podsel_fetch(&pf->k, pf->pod, pf->timeout_ms, &p, why, n);
    if (rc == -ENOENT) {
        snprintf(why, n, "pod/%s is gone (deleted)", pf->pod);
        return -ENOENT;
    }
    if (rc < 0)
        return -EAGAIN;
    const pod_container *c = pod_ephemeral_find(&p, pf->container);
    if (p.deleting) {
        snprintf(why, n, "pod/%s is being deleted", pf->pod);
        rc = -ENOENT;
    } else if (!pod_is_running(&p)) {
        snprintf(why, n, "pod/%s is no longer running (phase %s)", pf->pod, p.phase ? p.phase : "unknown");
        rc = -ENOENT;
    } else if (!c) { /* a pod of the same name (a StatefulSet's), not ours */
        snprintf(why, n, "pod/%s was recreated: the debug container %s went with the old one", pf->pod, pf->container);
        rc = -ENOENT;
    } else if (c->state == POD_STATE_TERMINATED && target_restarted(&p, c)) {
        snprintf(why, n,
                 "the debug container %s in pod/%s ended (code %d) when its target container %s stopped or "
                 "restarted: it lives in the target's process namespace",
                 pf->container, pf->pod, c->exit_code, c->target);
        rc = -ESRCH;
    } else if (c->state == POD_STATE_TERMINATED) {
        snprintf(why, n, "the debug container %s in pod/%s exited (code %d); see kubectl logs %s -c %s",
                 pf->container, pf->pod, c->exit_code, pf->pod, pf->container);
        rc = -ESRCH;
    }
    pod_free(&p);
    return rc;
}

/* Tells the user what the down forward waits for, once per change of state:
 * `kubectl diag redir` keeps retrying for as long as the pod exists. */
static void note_down(portfwd *pf, enum pf_note note, const char *last, const char *why)
{
    if ((note == pf->said && note != PF_NOTE_ENDED) || atomic_load(&pf->quiet))
        return;
    pf->said = note;
    if (note == PF_NOTE_ENDED)
        fprintf(stderr, "kubectl port-forward to pod/%s ended%s%s%s; restarting it\n", pf->pod, *last ? " (" : "",
                last, *last ? ")" : "");
    else if (note == PF_NOTE_API_DOWN)
        fprintf(stderr,
                "kubectl port-forward to pod/%s is down and the pod cannot be checked: %s\n"
                "waiting for the API server to answer; retrying every %d s\n",
                pf->pod, why, PF_RETRY_MAX_MS / 1000);
    else
        fprintf(stderr, "kubectl port-forward to pod/%s does not come up (%s); retrying every %d s\n", pf->pod,
                *last ? last : "no message", PF_RETRY_MAX_MS / 1000);
}

/* kubectl said the API server (or a proxy) refused the port-forward's upgrade. */
static bool upgrade_refused(const portfwd *pf, const char *said)
{
    char what[300], msg[1024];
    snprintf(what, sizeof(what), "port-forward to pod/%s", pf->pod);
    return kerr_explain(what, said, pf->k.ns, msg, sizeof(msg)) == KERR_UPGRADE;
}

/* The supervisor gave up on pf: state (PF_FAILED or PF_GONE) with reason;
 * pod_went: gone because the pod went, not only its debug container. */
static void finish(portfwd *pf, enum pf_state state, const char *reason, bool pod_went)
{
    pthread_mutex_lock(&pf->mu);
    pf->pod_went = pod_went;
    if (reason)
        snprintf(pf->reason, sizeof(pf->reason), "%s", reason);
    pf->state = state;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    uint64_t one = 1;
    if (state == PF_GONE)
        (void)!write(pf->gone_efd, &one, sizeof(one));
}

/* The first generation is a forward another process runs (cli/keep.h):
 * up at once on its ports until kicked or stopped. */
static bool run_adopted(portfwd *pf)
{
    pthread_mutex_lock(&pf->mu);
    pf->lgrpc = pf->adopt_g;
    pf->ltunnel = pf->adopt_t;
    pf->gen++;
    pf->state = PF_UP;
    pf->adopt_g = pf->adopt_t = 0;
    pf->reason[0] = '\0';
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    struct pollfd fds[2] = {{pf->stop_efd, POLLIN, 0}, {pf->kick_efd, POLLIN, 0}};
    while (poll(fds, 2, -1) < 0)
        ;
    return true;
}

static void *supervise(void *arg)
{
    portfwd *pf = arg;
    int lg = 0, lt = 0, failures = 0;
    bool ever_up = false;
    char last[1024], why[1024];
    sig_block_stop(NULL); /* signals belong to the main thread */
    for (;;) {
        bool adopted = pf->adopt_g != 0;
        bool up = adopted ? run_adopted(pf) : run_child(pf, lg, lt);
        pthread_mutex_lock(&pf->mu);
        bool stop = pf->stopping;
        if (up && !adopted) {
            lg = pf->lgrpc; /* come back on the same local ports */
            lt = pf->ltunnel;
        }
        snprintf(last, sizeof(last), "%s", pf->reason);
        if (!stop && (ever_up || up))
            pf->state = PF_DOWN;
        pthread_mutex_unlock(&pf->mu);
        if (stop)
            break;
        if (!up && pf->proto == PF_PROTO_SPDY && upgrade_refused(pf, last)) {
            pf->proto = PF_PROTO_WEBSOCKET; /* for good: the same server refuses it again */
            atomic_store(&spdy_refused, true);
            if (pf->k.verbose)
                fprintf(stderr, "port-forward: the SPDY upgrade was refused; WebSockets from now on\n");
            continue;
        }
        ever_up |= up;
        failures = up ? 0 : failures + 1;
        if (!ever_up) {
            finish(pf, PF_FAILED, NULL, false);
            break;
        }
        int rc = pod_check(pf, why, sizeof(why));
        if (rc == -ENOENT || rc == -ESRCH) {
            finish(pf, PF_GONE, why, rc == -ENOENT);
            break;
        }
        note_down(pf, rc == -EAGAIN ? PF_NOTE_API_DOWN : up ? PF_NOTE_ENDED : PF_NOTE_FAILING, last, why);
        if (failures >= 2) /* the old local ports may be taken: let kubectl pick */
            lg = lt = 0;
        int backoff = failures ? (failures > 5 ? PF_RETRY_MAX_MS : 200 * failures) : 0;
        struct pollfd sp[2] = {{pf->stop_efd, POLLIN, 0}, {kube_stop_fd(), POLLIN, 0}};
        if (kube_stopping()) {
            finish(pf, PF_FAILED, "stopped", false);
            break;
        }
        if (backoff && poll(sp, 2, backoff) > 0)
            break;
    }
    return NULL;
}

int portfwd_new(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                int tunnel_port, int64_t timeout_ms, char *err, size_t errlen)
{
    int lg, lt;
    int rc = portfwd_start(ret, k, pod, container, grpc_port, tunnel_port, timeout_ms, err, errlen);
    if (rc == 0 && (rc = portfwd_wait(*ret, 0, timeout_ms, &lg, &lt, err, errlen)) < 0) {
        portfwd_free(*ret);
        *ret = NULL;
    }
    return rc < 0 ? rc : 0;
}

static int start(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                 int tunnel_port, int adopt_g, int adopt_t, int64_t timeout_ms, char *err, size_t errlen)
{
    int rc;
    portfwd *pf = calloc(1, sizeof(*pf));
    *ret = NULL;
    if (!pf) {
        snprintf(err, errlen, "cannot port-forward to pod/%s: out of memory", pod);
        return -ENOMEM;
    }
    pf->k = *k;
    snprintf(pf->pod, sizeof(pf->pod), "%s", pod);
    snprintf(pf->container, sizeof(pf->container), "%s", container);
    pf->rgrpc = grpc_port;
    pf->rtunnel = tunnel_port;
    pf->timeout_ms = timeout_ms;
    pf->proto = getenv(PF_PROTO_ENV)         ? PF_PROTO_USER
                : atomic_load(&spdy_refused) ? PF_PROTO_WEBSOCKET
                                             : PF_PROTO_SPDY;
    pf->child.pid = -1;
    pf->adopt_g = adopt_g;
    pf->adopt_t = adopt_t;
    pthread_mutex_init(&pf->mu, NULL);
    time_cond_init_monotonic(&pf->cv);
    pf->stop_efd = eventfd(0, EFD_CLOEXEC);
    pf->gone_efd = pf->stop_efd < 0 ? -1 : eventfd(0, EFD_CLOEXEC);
    pf->kick_efd = pf->gone_efd < 0 ? -1 : eventfd(0, EFD_CLOEXEC);
    if (pf->kick_efd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot port-forward to pod/%s: eventfd: %s", pod, strerror(-rc));
        goto fail;
    }
    rc = -pthread_create(&pf->th, NULL, supervise, pf);
    if (rc < 0) {
        snprintf(err, errlen, "cannot port-forward to pod/%s: cannot start a thread: %s", pod, strerror(-rc));
        goto fail;
    }
    pf->started = true;
    *ret = pf;
    return 0;
fail:
    portfwd_free(pf);
    return rc;
}

int portfwd_start(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                  int tunnel_port, int64_t timeout_ms, char *err, size_t errlen)
{
    return start(ret, k, pod, container, grpc_port, tunnel_port, 0, 0, timeout_ms, err, errlen);
}

int portfwd_adopt(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                  int tunnel_port, int local_grpc, int local_tunnel, int64_t timeout_ms, char *err, size_t errlen)
{
    return start(ret, k, pod, container, grpc_port, tunnel_port, local_grpc, local_tunnel, timeout_ms, err, errlen);
}

int portfwd_wait(portfwd *pf, unsigned after, int64_t timeout_ms, int *lg, int *lt, char *err, size_t errlen)
{
    struct timespec dl = time_deadline_ts(CLOCK_MONOTONIC, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        if (pf->stopping) {
            snprintf(err, errlen, "the port-forward to pod/%s was stopped", pf->pod);
            rc = -ECANCELED;
            break;
        }
        if (pf->state == PF_GONE) {
            snprintf(err, errlen, "%s", pf->reason);
            rc = -ENOENT;
            break;
        }
        if (pf->state == PF_FAILED) {
            char what[300];
            snprintf(what, sizeof(what), "port-forward to pod/%s", pf->pod);
            kerr_explain(what, pf->reason, pf->k.ns, err, errlen);
            rc = -EIO;
            break;
        }
        if (pf->state == PF_UP && pf->gen > after) {
            *lg = pf->lgrpc;
            *lt = pf->ltunnel;
            rc = (int)pf->gen;
            break;
        }
        if (pthread_cond_timedwait(&pf->cv, &pf->mu, &dl) == ETIMEDOUT) {
            snprintf(err, errlen, "kubectl port-forward to pod/%s did not come up in time (%s)", pf->pod,
                     *pf->reason ? pf->reason : "no message");
            rc = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&pf->mu);
    return rc;
}

unsigned portfwd_current(portfwd *pf, int *lg, int *lt)
{
    pthread_mutex_lock(&pf->mu);
    unsigned g = pf->state == PF_UP ? pf->gen : 0;
    *lg = pf->lgrpc;
    *lt = pf->ltunnel;
    pthread_mutex_unlock(&pf->mu);
    return g;
}

pid_t portfwd_child_pid(portfwd *pf)
{
    if (!pf)
        return -1;
    pthread_mutex_lock(&pf->mu);
    pid_t pid = pf->child.pid;
    pthread_mutex_unlock(&pf->mu);
    return pid;
}

bool portfwd_pod_went(portfwd *pf)
{
    pthread_mutex_lock(&pf->mu);
    bool went = pf->state == PF_GONE && pf->pod_went;
    pthread_mutex_unlock(&pf->mu);
    return went;
}

int portfwd_gone_fd(portfwd *pf)
{
    return pf->gone_efd;
}

void portfwd_cancel(portfwd *pf)
{
    pthread_mutex_lock(&pf->mu);
    pf->stopping = true;
    /* kubectl port-forward keeps nothing that needs an orderly end (the
     * kernel closes its connections either way); SIGTERM cost Go's runtime
     * 8-10 ms at the end of every command */
    kube_proc_kill(&pf->child, SIGKILL);
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    uint64_t one = 1;
    (void)!write(pf->stop_efd, &one, sizeof(one));
}

void portfwd_free(portfwd *pf)
{
    if (!pf)
        return;
    if (pf->started) {
        portfwd_cancel(pf);
        pthread_join(pf->th, NULL);
    }
    if (pf->stop_efd >= 0)
        close(pf->stop_efd);
    if (pf->gone_efd >= 0)
        close(pf->gone_efd);
    if (pf->kick_efd >= 0)
        close(pf->kick_efd);
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
    free(pf);
}

void portfwd_quiet(portfwd *pf)
{
    atomic_store(&pf->quiet, true);
}

void portfwd_kick(portfwd *pf, unsigned gen)
{
    pthread_mutex_lock(&pf->mu);
    uint64_t one = 1;
    if (pf->state == PF_UP && pf->gen == gen && pf->child.pid > 0) /* SIGKILL: a stopped or wedged */
        kube_proc_kill(&pf->child, SIGKILL);                       /* kubectl never acts on SIGTERM */
    else if (pf->state == PF_UP && pf->gen == gen)                 /* the adopted one: ours from now on */
        (void)!write(pf->kick_efd, &one, sizeof(one));
    pthread_mutex_unlock(&pf->mu);
}
