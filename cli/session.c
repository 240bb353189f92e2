#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "podsel.h"

#ifndef KDIAG_VERSION
#define KDIAG_VERSION "0.0.0"
#endif

session_opts session_opts_from_flags(const flags *f, unsigned caps, bool forward)
{
    ephem_profile profile = EPHEM_PROFILE_GENERAL;
    if (f->profile)
        ephem_profile_parse(f->profile, &profile); /* flags_parse checked it */
    return (session_opts){
        .pod = f->npods ? f->pods[0].value : NULL,
        .selector = f->nlabels ? f->labels[0].value : NULL,
        .workload = f->nworkloads ? f->workloads[0].value : NULL,
        .target = f->target,
        .image = f->dbg_image,
        .pull_policy = f->pull_policy,
        .privileged = f->privileged || profile == EPHEM_PROFILE_SYSADMIN,
        .profile = profile,
        .new_container = f->new_container,
        .command = flags_cmd_name(f->cmd),
        .timeout_ms = f->timeout_ms,
        .caps = caps,
        .forward = forward,
    };
}

/* The pod and manager ports of the last session opened with a pod named on
 * the command line: the next session to that pod starts its port-forward
 * with them while it reads the pod and the log. Only a guess (a cache, not
 * shared with anything that trusts it): the forward is used only when the
 * manager's proven start-up lines give the same ports; nothing goes through
 * it before. */
static void last_path(char *buf, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, n, "%s/kdiag-last-session", xdg);
    else if (home && *home)
        snprintf(buf, n, "%s/.cache/kdiag-last-session", home);
    else
        buf[0] = '\0';
}

static void last_key(const kube *k, const char *pod, char *buf, size_t n)
{
    const char *env = getenv("KUBECONFIG");
    snprintf(buf, n, "%s|%s|%s|%s|%s|%s\n", KDIAG_VERSION, k->kubeconfig ? k->kubeconfig : "", env ? env : "",
             k->context ? k->context : "", k->ns ? k->ns : "", pod);
}

static bool last_ports(const kube *k, const char *pod, int *grpc, int *tunnel)
{
    char path[1024], key[2048], line[2048];
    bool hit = false;
    last_path(path, sizeof(path));
    FILE *f = *path ? fopen(path, "re") : NULL;
    if (!f)
        return false;
    last_key(k, pod, key, sizeof(key));
    if (fgets(line, sizeof(line), f) && strcmp(line, key) == 0 && fgets(line, sizeof(line), f))
        hit = sscanf(line, "%d %d", grpc, tunnel) == 2 && *grpc > 0;
    fclose(f);
    return hit;
}

static void last_save(const kube *k, const char *pod, int grpc, int tunnel)
{
    char path[1024], tmp[1100], key[2048];
    last_path(path, sizeof(path));
    if (!*path)
        return;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700); /* ~/.cache, when it is not there */
    *slash = '/';
    snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "we");
    if (!f)
        return;
    last_key(k, pod, key, sizeof(key));
    fprintf(f, "%s%d %d\n", key, grpc, tunnel);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        unlink(tmp);
}

int session_open(const kube *k, const session_opts *o, session *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->k = *k;
    s->timeout_ms = o->timeout_ms;
    char *sel = NULL;
    /* a named pod: its manager's log is read while the pod is */
    kube_proc pre = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    bool named = o->pod && !o->workload && !o->pod_read;
    portfwd *guess = NULL; /* started with last_ports */
    int gg = 0, gt = 0;
    char base[32], ignored[256];
    ephem_base_name(KDIAG_VERSION, base, sizeof(base));
    if (named)
        ephem_log_prefetch(k, o->pod, KDIAG_VERSION, &pre);
    if (named && o->forward && last_ports(k, o->pod, &gg, &gt))
        portfwd_start(&guess, k, o->pod, base, gg, gt, o->timeout_ms, ignored, sizeof(ignored));
    int rc = o->workload ? podsel_workload(k, o->workload, o->timeout_ms, &sel, err, errlen) : 0;
    if (o->pod_read) {
        s->pod = *o->pod_read;
        memset(o->pod_read, 0, sizeof(*o->pod_read));
    } else if (rc == 0)
        rc = podsel_one(k, o->pod, sel ? sel : o->selector, o->workload, o->timeout_ms, &s->pod, err, errlen);
    free(sel);
    if (rc < 0)
        goto fail;
    /* later kubectl calls name the pod's namespace explicitly */
    if (!s->k.ns && s->pod.ns)
        s->k.ns = s->pod.ns;
    const pod_container *t;
    rc = podsel_target(&s->pod, o->target, &t, err, errlen);
    if (rc < 0)
        goto fail;
    snprintf(s->target, sizeof(s->target), "%s", t->name);
    snprintf(s->target_id, sizeof(s->target_id), "%s", t->id ? t->id : "");
    if (t->has_status && t->state != POD_STATE_RUNNING) {
        snprintf(err, errlen,
                 "container \"%s\" of pod/%s is not running (%s%s%s): a debug container needs a running target",
                 t->name, s->pod.name, pod_state_name(t->state), t->reason ? ": " : "", t->reason ? t->reason : "");
        rc = -ENOENT;
        goto fail;
    }
    ephem_opts eo = {
        .version = KDIAG_VERSION,
        .image = o->image,
        .pull_policy = o->pull_policy,
        .target = s->target,
        .command = o->command,
        .caps = o->caps,
        .extra_caps = o->extra_caps,
        .profile = o->profile,
        .privileged = o->privileged,
        .new_container = o->new_container,
        .need_tunnel = o->tunnel,
        .timeout_ms = o->timeout_ms,
        .prefetch = &pre,
    };
    rc = ephem_ensure(&s->k, &s->pod, &eo, &s->mgr, err, errlen);
    kube_abandon(&pre);
    if (rc < 0)
        goto fail;
    if (o->forward && guess && strcmp(s->mgr.container, base) == 0 && s->mgr.grpc_port == gg &&
        s->mgr.tunnel_port == gt) {
        int lg, lt;
        s->pf = guess;
        guess = NULL;
        rc = portfwd_wait(s->pf, 0, o->timeout_ms, &lg, &lt, err, errlen);
        if (rc < 0)
            goto fail;
    } else if (o->forward) {
        rc = portfwd_new(&s->pf, &s->k, s->pod.name, s->mgr.container, s->mgr.grpc_port, s->mgr.tunnel_port,
                         o->timeout_ms, err, errlen);
        if (rc < 0)
            goto fail;
        if (named)
            last_save(k, o->pod, s->mgr.grpc_port, s->mgr.tunnel_port);
    }
    portfwd_free(guess);
    return 0;
fail:
    kube_abandon(&pre);
    portfwd_free(guess);
    session_close(s);
    return rc;
}

void session_close(session *s)
{
    portfwd_free(s->pf);
    s->pf = NULL;
    pod_free(&s->pod);
}

int session_client_at(const session *s, int lport, rpc_client **ret)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", lport);
    return rpc_client_new(ret, target, s->mgr.token);
}

int session_client(session *s, rpc_client **ret, unsigned *gen, char *err, size_t errlen)
{
    int lg, lt;
    *ret = NULL;
    *gen = s->pf ? portfwd_current(s->pf, &lg, &lt) : 0;
    if (!*gen) {
        snprintf(err, errlen, "no port-forward to pod/%s", s->pod.name);
        return -ENOTCONN;
    }
    int rc = session_client_at(s, lg, ret);
    if (rc < 0)
        snprintf(err, errlen, "cannot make a gRPC client for pod/%s: %s", s->pod.name, strerror(-rc));
    return rc;
}
