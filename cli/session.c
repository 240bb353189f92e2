#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hello_client.h"
#include "podsel.h"
#include "remember.h"

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
        .keep_ms = f->keep_ms,
        .quick = true,
    };
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* The record of s for remember_save. */
static void remembered_of(const session *s, const session_opts *o, remembered *r)
{
    const ephem_manager *m = &s->mgr;
    *r = (remembered){.grpc = m->grpc_port,
                      .tunnel = m->tunnel_port,
                      .caps = m->caps,
                      .privileged = m->privileged,
                      .share_pid = s->pod.share_pid};
    snprintf(r->container, sizeof r->container, "%s", m->container);
    memcpy(r->token, m->token, sizeof r->token);
    memcpy(r->secret, m->secret, sizeof r->secret);
    snprintf(r->ns, sizeof r->ns, "%s", or_empty(s->pod.ns));
    snprintf(r->req_target, sizeof r->req_target, "%s", or_empty(o->target));
    snprintf(r->target, sizeof r->target, "%s", s->target);
    snprintf(r->target_id, sizeof r->target_id, "%s", s->target_id);
    snprintf(r->image, sizeof r->image, "%s", or_empty(o->image));
}

/* Could the full path pick the remembered container for o? (ephem_plan_for's
 * rules: the target and image as asked, what the command needs.) */
static bool remembered_fits(const remembered *r, const session_opts *o)
{
    unsigned need = o->privileged ? EPHEM_CAPS_ALL : o->caps;
    return o->quick && !o->new_container && strcmp(r->image, or_empty(o->image)) == 0 &&
           contract_secret_valid(r->secret) && r->token[0] && r->ns[0] &&
           strcmp(r->req_target, or_empty(o->target)) == 0 && (r->caps & need) == need &&
           (!o->privileged || r->privileged) && (!o->tunnel || r->tunnel > 0);
}

#define QUICK_WAIT_MS 5000 /* for the remembered port-forward to listen */
#define HELLO_TIMEOUT_MS 3000

/* The remembered session alone: its port-forward, then Hello. 0 with s
 * filled, or -errno with why (for -v) in err; the caller then takes the
 * full path. */
static int quick_open(const kube *k, const session_opts *o, const remembered *r, session *s, char *err, size_t errlen)
{
    int lg, lt;
    int64_t wait = o->timeout_ms > 0 && o->timeout_ms < QUICK_WAIT_MS ? o->timeout_ms : QUICK_WAIT_MS;
    bool share_pid = r->share_pid != 0;
    const char *tid = r->target_id;
    int rc, spare = -1;
    if (o->keep_ms > 0 && keep_take(k, o->pod, r->container, r->grpc, r->tunnel, &s->lease)) {
        spare = keep_spare(&s->lease);
        if (k->verbose > 0)
            fprintf(stderr, "kubectl-diag: taking the kept port-forward to pod/%s (127.0.0.1:%d)%s\n", o->pod,
                    s->lease.lgrpc, spare >= 0 ? " and its keeper's ready connection" : "");
        rc = portfwd_adopt(&s->pf, k, o->pod, r->container, r->grpc, r->tunnel, s->lease.lgrpc, s->lease.ltunnel,
                           o->timeout_ms, err, errlen);
    } else
        rc = portfwd_start(&s->pf, k, o->pod, r->container, r->grpc, r->tunnel, o->timeout_ms, err, errlen);
    unsigned gen = rc < 0 ? (unsigned)rc : (unsigned)portfwd_wait(s->pf, 0, wait, &lg, &lt, err, errlen);
    if ((int)gen < 0) {
        if (spare >= 0)
            close(spare);
        return (int)gen;
    }
    contract_hello h;
    rpc_status st;
    /* the target as Exec finds it: by id in a pod that shares one PID namespace, else PID 1; on
     * the keeper's connection, or on a new one when there is none or it failed */
    for (bool own = spare < 0;; own = true) {
        rc = own ? session_client_at(s, lg, &s->client) : rpc_client_new_fd(&s->client, spare, NULL);
        if (rc < 0) {
            snprintf(err, errlen, "cannot make a gRPC client: %s", strerror(-rc));
            return rc;
        }
        rc = hello_call(s->client, r->secret, r->token, share_pid ? tid : NULL, HELLO_TIMEOUT_MS, &h, &st);
        /* no answer on the keeper's connection: its forward is stuck, and a
         * new connection through it would wait as long */
        if (own || rc == 0 || rc == -EPERM || rc == -EACCES ||
            (rc == -EPROTO && st.code == GRPC_STATUS_DEADLINE_EXCEEDED))
            break;
        if (k->verbose > 0)
            fprintf(stderr, "kubectl-diag: the keeper's connection failed (%s); making one\n",
                    rc == -EPROTO ? st.message : strerror(-rc));
        rpc_client_free(s->client);
        s->client = NULL;
    }
    if (rc == -EPROTO)
        snprintf(err, errlen, "Hello failed: status %d: %.400s", (int)st.code, st.message);
    else if (rc == -EPERM)
        snprintf(err, errlen, "the answer to Hello does not prove the remembered secret");
    else if (rc == -EACCES)
        snprintf(err, errlen, "the manager proved its secret but not the remembered token");
    else if (rc < 0)
        snprintf(err, errlen, "Hello: %s", strerror(-rc));
    if (rc < 0)
        return rc;
    if (h.grpc_port != r->grpc || h.tunnel_port != r->tunnel || !h.target_found) {
        snprintf(err, errlen, "the manager's ports (%d, %d) or its target (%s) changed", h.grpc_port,
                 h.tunnel_port, h.target_found ? "found" : "not found");
        return -ESTALE;
    }
    if ((rc = rpc_client_set_token(s->client, r->token)) < 0) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    s->client_gen = gen;
    s->pod.name = strdup(o->pod);
    s->pod.ns = strdup(r->ns);
    s->pod.share_pid = share_pid;
    if (!s->pod.name || !s->pod.ns) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!s->k.ns)
        s->k.ns = s->pod.ns;
    snprintf(s->target, sizeof(s->target), "%s", r->target);
    snprintf(s->target_id, sizeof(s->target_id), "%s", tid);
    ephem_manager *m = &s->mgr;
    snprintf(m->container, sizeof(m->container), "%s", r->container);
    m->grpc_port = r->grpc;
    m->tunnel_port = r->tunnel;
    memcpy(m->token, r->token, sizeof(m->token));
    memcpy(m->secret, r->secret, sizeof(m->secret));
    m->caps = r->caps;
    m->privileged = r->privileged != 0;
    s->keep_ms = o->keep_ms;
    s->keep_k = *k;
    return 0;
}

int session_open(const kube *k, const session_opts *o, session *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->lease = KEEP_LEASE_NONE;
    s->k = *k;
    s->timeout_ms = o->timeout_ms;
    char *sel = NULL;
    /* a named pod: its manager's log is read while the pod is */
    kube_proc pre = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    bool named = o->pod && !o->workload && !o->pod_read;
    portfwd *guess = NULL; /* started from the remembered session */
    int gg = 0, gt = 0;
    char base[32], ignored[256];
    ephem_base_name(KDIAG_VERSION, base, sizeof(base));
    remembered r;
    bool known = named && o->forward && remember_read(k, o->pod, &r);
    if (known && remembered_fits(&r, o)) {
        char why[512] = "";
        int qrc = quick_open(k, o, &r, s, why, sizeof why);
        if (qrc == 0) {
            if (k->verbose > 0)
                fprintf(stderr, "kubectl-diag: the remembered manager (%s in pod/%s) proved its secret\n",
                        r.container, o->pod);
            return 0;
        }
        if (k->verbose > 0)
            fprintf(stderr, "kubectl-diag: not the remembered manager (%s); reading the pod%s\n", why,
                    s->lease.fd >= 0 && qrc != -EACCES ? " and ending the kept port-forward" : "");
        /* a kept forward that failed (stuck, or to a manager that is gone) would be taken again and
         * again, and no new keeper can start while it lives; one to the right manager, whose token
         * the record had wrong, serves the next command once the record is rewritten */
        if (qrc == -EACCES)
            keep_release(&s->lease);
        else
            keep_discard(&s->lease);
        session_close(s);
        memset(s, 0, sizeof(*s));
        s->lease = KEEP_LEASE_NONE;
        s->k = *k;
        s->timeout_ms = o->timeout_ms;
        known = false; /* its ports are no guess either */
    }
    if (named)
        ephem_log_prefetch(k, o->pod, KDIAG_VERSION, &pre);
    if (known && strcmp(r.container, base) == 0) {
        gg = r.grpc;
        gt = r.tunnel;
        portfwd_start(&guess, k, o->pod, base, gg, gt, o->timeout_ms, ignored, sizeof(ignored));
    }
    int rc = o->workload ? podsel_workload(k, o->workload, o->timeout_ms, &sel, err, errlen) : 0;
    if (o->pod_read) {
        s->pod = *o->pod_read;
        memset(o->pod_read, 0, sizeof(*o->pod_read));
    } else if (rc == 0)
        rc = podsel_one(k, o->pod, sel ? sel : o->selector, o->workload, o->timeout_ms, &s->pod, err, errlen);
    free(sel);
    if (rc == -EINVAL && !o->pod && !o->selector && !o->workload && o->target) { /* kubectl exec -i -t POD */
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (-t %s names the target container: for a terminal, give --tty or -it)",
                 o->target);
    }
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
    if (o->tunnel && s->pod.host_net) { /* its rules would go into the node's network namespace */
        snprintf(err, errlen,
                 "pod/%s uses its node's network (hostNetwork: true): a redirect there would catch the port's "
                 "traffic for every pod and process of the node, not this pod's alone; redirect a pod that has a "
                 "network of its own",
                 s->pod.name);
        rc = -EPERM;
        goto fail;
    }
    if (o->check && (rc = o->check(o->check_ud, &s->pod, err, errlen)) < 0)
        goto fail;
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
        .max_ended = o->max_ended,
        .ended_window_s = o->ended_window_s,
        .need_tunnel = o->tunnel,
        .need_forward = o->forward,
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
    }
    if (named && o->forward) {
        remembered rec;
        remembered_of(s, o, &rec);
        /* a kept forward serves only the commands that read the record */
        if (remember_save(k, o->pod, &rec))
            s->keep_ms = o->keep_ms;
        s->keep_k = *k;
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
    rpc_client_free(s->client);
    s->client = NULL;
    portfwd_free(s->pf);
    s->pf = NULL;
    if (s->lease.fd >= 0)
        keep_release(&s->lease);
    else if (s->keep_ms > 0 && s->pod.name)
        keep_start(&s->keep_k, s->pod.name, s->mgr.container, s->mgr.grpc_port, s->mgr.tunnel_port, s->keep_ms);
    s->keep_ms = 0;
    pod_free(&s->pod);
}

int session_client_at(const session *s, int lport, rpc_client **ret)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", lport);
    return rpc_client_new(ret, target, s->mgr.token[0] ? s->mgr.token : NULL); /* none yet: Hello */
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
    if (s->client && s->client_gen == *gen) { /* the one Hello went over: its connection is up */
        *ret = s->client;
        s->client = NULL;
        return 0;
    }
    int rc = session_client_at(s, lg, ret);
    if (rc < 0)
        snprintf(err, errlen, "cannot make a gRPC client for pod/%s: %s", s->pod.name, strerror(-rc));
    return rc;
}

int session_gone(session *s, unsigned gen, int64_t wait_ms, char *why, size_t whylen)
{
    int lg, lt;
    if (!s->pf)
        return 0;
    portfwd_quiet(s->pf); /* the restart below is for the pod check: the caller's call is lost */
    portfwd_kick(s->pf, gen);
    return portfwd_wait(s->pf, gen, wait_ms, &lg, &lt, why, whylen) == -ENOENT ? -ENOENT : 0;
}
