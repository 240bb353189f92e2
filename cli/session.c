#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int session_open(const kube *k, const session_opts *o, session *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->k = *k;
    s->timeout_ms = o->timeout_ms;
    char *sel = NULL;
    /* a named pod: its manager's log is read while the pod is */
    kube_proc pre = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    if (o->pod && !o->workload && !o->pod_read)
        ephem_log_prefetch(k, o->pod, KDIAG_VERSION, &pre);
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
    if (o->forward) {
        rc = portfwd_new(&s->pf, &s->k, s->pod.name, s->mgr.container, s->mgr.grpc_port, s->mgr.tunnel_port,
                         o->timeout_ms, err, errlen);
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    kube_abandon(&pre);
    session_close(s);
    return rc;
}

void session_close(session *s)
{
    portfwd_free(s->pf);
    s->pf = NULL;
    pod_free(&s->pod);
}

rpc_client *session_client(session *s, unsigned *gen)
{
    int lg, lt;
    *gen = s->pf ? portfwd_current(s->pf, &lg, &lt) : 0;
    if (!*gen)
        return NULL;
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", lg);
    rpc_client *cl;
    rpc_client_new(&cl, target, s->mgr.token); /* NULL on failure */
    return cl;
}
