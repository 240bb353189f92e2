#include "ephem-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/hash.h"
#include "basic/time-util.h"
#include "kerr.h"
#include "podsel.h"

/* Indexed by bit number of the EPHEM_* capabilities. */
static const char *const cap_names[EPHEM_NCAPS] = {
    "NET_ADMIN", "SYS_PTRACE",   "SYS_ADMIN",       "SYS_CHROOT", "NET_RAW", "SETUID", "SETGID",
    "KILL",      "DAC_OVERRIDE", "DAC_READ_SEARCH", "CHOWN",      "FOWNER",  "FSETID", "MKNOD",
};

void ephem_caps_format(unsigned caps, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned b = 0; b < EPHEM_NCAPS; b++)
        if (caps & (1u << b) && len < n)
            len += (size_t)snprintf(out + len, n - len, "%s%s", len ? ", " : "", cap_names[b]);
}

void ephem_base_name(const char *version, char *out, size_t n)
{
    snprintf(out, n, EPHEM_NAME_PREFIX "%08x", fnv1a32(fnv1a32(FNV1A32_INIT, version), CONTRACT_REVISION_TAG));
}

unsigned ephem_caps_of(const pod_container *c)
{
    if (c->privileged)
        return EPHEM_CAPS_ALL;
    unsigned caps = 0;
    for (size_t i = 0; i < c->ncaps; i++) {
        const char *s = c->caps[i];
        if (strncmp(s, "CAP_", 4) == 0)
            s += 4;
        for (unsigned b = 0; b < EPHEM_NCAPS; b++)
            if (strcmp(s, cap_names[b]) == 0)
                caps |= 1u << b;
    }
    return caps;
}

bool ephem_container_has(const pod_container *c, unsigned caps)
{
    return ((ephem_caps_of(c) | EPHEM_CAPS_RUNTIME_DEFAULT) & caps) == caps;
}

/* Suffix of name after base: 1 for base itself, N for base-N, 0 when not ours. */
static int suffix_of(const char *name, const char *base)
{
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0)
        return 0;
    if (name[bl] == '\0')
        return 1;
    if (name[bl] != '-')
        return 0;
    char *end;
    long v = strtol(name + bl + 1, &end, 10);
    return (*end == '\0' && v >= 2 && v < 100000) ? (int)v : 0;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Seconds since an RFC 3339 timestamp; 0 for none or one that does not
 * parse (then it counts as just now: never as long ago). */
static long since(const char *ts)
{
    long age = pod_age_seconds(ts);
    return age < 0 ? 0 : age;
}

/* Whether c is one of ours (named from base) at target that ended within
 * window_s seconds (by its finishedAt; 0: at any time). */
static bool ended_within(const pod_container *c, const char *base, const char *target, long window_s)
{
    return suffix_of(c->name, base) && c->has_status && c->state == POD_STATE_TERMINATED &&
           same(c->target, target) && (!window_s || since(c->finished) <= window_s);
}

long ephem_ended_wait(const pod_info *p, const char *version, const char *target, long window_s)
{
    const pod_container *t = pod_container_find(p, target);
    if (!t || t->state != POD_STATE_RUNNING)
        return -1;
    char base[32];
    ephem_base_name(version, base, sizeof base);
    long quiet = since(t->started); /* since its last start, and since the last of ours at it ended */
    for (size_t i = 0; i < p->nephemeral; i++)
        if (ended_within(&p->ephemeral[i], base, target, 0) && since(p->ephemeral[i].finished) < quiet)
            quiet = since(p->ephemeral[i].finished);
    return quiet > window_s ? 0 : window_s - quiet + 1;
}

/* "15 min", "20 s": a window for people. */
static void format_window(long s, char *buf, size_t n)
{
    if (s % 60 == 0)
        snprintf(buf, n, "%ld min", s / 60);
    else
        snprintf(buf, n, "%ld s", s);
}

/* Indexed by ephem_profile: what a new container adds. */
static const struct {
    const char *name;
    unsigned caps;
} profiles[] = {
    [EPHEM_PROFILE_GENERAL] = {"general", EPHEM_CAPS_GENERAL},
    [EPHEM_PROFILE_NETADMIN] = {"netadmin", EPHEM_NET_ADMIN | EPHEM_NET_RAW},
    [EPHEM_PROFILE_BASELINE] = {"baseline", (EPHEM_CAPS_GENERAL & EPHEM_CAPS_BASELINE)},
    [EPHEM_PROFILE_RESTRICTED] = {"restricted", 0}, /* what the command needs: profile_caps */
    [EPHEM_PROFILE_SYSADMIN] = {"sysadmin", EPHEM_CAPS_ALL},
};

int ephem_profile_parse(const char *name, ephem_profile *out)
{
    for (size_t i = 0; i < sizeof profiles / sizeof *profiles; i++)
        if (strcmp(name, profiles[i].name) == 0) {
            *out = (ephem_profile)i;
            return 0;
        }
    return -EINVAL;
}

const char *ephem_profile_name(unsigned p)
{
    return p < sizeof profiles / sizeof *profiles ? profiles[p].name : NULL;
}

/* What a new container adds under o's profile. */
static unsigned profile_caps(const ephem_opts *o)
{
    if (o->privileged)
        return EPHEM_CAPS_ALL;
    if (o->profile == EPHEM_PROFILE_RESTRICTED)
        return (o->caps | o->extra_caps) & ~EPHEM_CAPS_RUNTIME_DEFAULT;
    return profiles[o->profile].caps;
}

/* The one line for a pod whose debug container c lacks what the command needs. */
static int say_lacks(const pod_info *p, const ephem_opts *o, const pod_container *c, char *err, size_t errlen)
{
    char missing[256];
    unsigned have = ephem_caps_of(c) | EPHEM_CAPS_RUNTIME_DEFAULT;
    if (o->privileged && !c->privileged)
        snprintf(missing, sizeof missing, "privileged mode");
    else
        ephem_caps_format(o->caps & ~have, missing, sizeof missing);
    snprintf(err, errlen,
             "the debug container %s of pod/%s lacks %s, which %s needs, and a pod's debug containers can be neither "
             "changed nor removed: recreate the pod and run kubectl diag with %s, or add a second debug container "
             "with --new-container",
             c->name, p->name, missing, o->command ? o->command : "this command",
             o->privileged ? "--profile sysadmin" : "--profile general (the default)");
    return -EPERM;
}

int ephem_plan_for(const pod_info *p, const ephem_opts *o, ephem_plan *plan, char *err, size_t errlen)
{
    char base[32];
    ephem_base_name(o->version, base, sizeof(base));
    unsigned need = o->privileged ? EPHEM_CAPS_ALL : o->caps;
    int max_suffix = 0, best_suffix = 0, ended = 0;
    bool best_running = false;
    unsigned union_caps = 0;
    const pod_container *lacking = NULL; /* the first of ours that lacks what is needed */
    memset(plan, 0, sizeof(*plan));
    for (size_t i = 0; i < p->nephemeral; i++) {
        const pod_container *c = &p->ephemeral[i];
        int sfx = suffix_of(c->name, base);
        if (!sfx)
            continue;
        if (sfx > max_suffix)
            max_suffix = sfx;
        /* of this target: another container's restarts say nothing of this one */
        ended += ended_within(c, base, o->target, o->ended_window_s);
        /* never one whose manager cannot prove a secret (none in its spec) */
        bool alive = c->state == POD_STATE_RUNNING || c->state == POD_STATE_WAITING || !c->has_status;
        if (!alive || !same(c->image, o->image) || !same(c->target, o->target) || !contract_secret_valid(c->secret))
            continue;
        union_caps |= ephem_caps_of(c);
        if (!ephem_container_has(c, need) || (o->privileged && !c->privileged)) {
            if (!lacking)
                lacking = c;
            continue;
        }
        /* The oldest running one, so that every redirect of a pod goes to one
         * manager (and, in pods from before per-manager nftables tables, to the
         * one that owns `inet kdiag`); a starting one only when none runs. */
        bool running = c->state == POD_STATE_RUNNING;
        if (!best_suffix || running > best_running || (running == best_running && sfx < best_suffix)) {
            best_suffix = sfx;
            best_running = running;
            snprintf(plan->name, sizeof(plan->name), "%s", c->name);
            snprintf(plan->secret, sizeof(plan->secret), "%s", c->secret);
        }
    }
    if (best_suffix)
        return 0;
    if (lacking && !o->new_container)
        return say_lacks(p, o, lacking, err, errlen);
    unsigned add = profile_caps(o), want = need | o->extra_caps;
    if (((add | EPHEM_CAPS_RUNTIME_DEFAULT) & want) != want) {
        char missing[256];
        ephem_caps_format(want & ~(add | EPHEM_CAPS_RUNTIME_DEFAULT), missing, sizeof missing);
        snprintf(err, errlen,
                 "--profile %s does not give %s, which %s needs: use --profile general (the default) or --profile "
                 "restricted (only what the command needs)",
                 profiles[o->profile].name, missing, o->command ? o->command : "this command");
        return -EPERM;
    }
    if (o->max_ended && ended >= o->max_ended) { /* a target that keeps restarting: one more each time */
        const char *t = o->target ? o->target : "", *cmd = o->command ? o->command : "this command";
        char w[32];
        format_window(o->ended_window_s, w, sizeof w);
        snprintf(err, errlen,
                 "pod/%s has %d debug containers of kubectl diag that ended within %s (each when its target container "
                 "%s stopped or restarted: it lives in that container's PID namespace), and ephemeral containers can "
                 "never be removed: %s adds no more by itself until %s has run %s without a restart; fix what "
                 "restarts %s, or name the pod (kubectl diag %s pod/%s ...) to add one anyway",
                 p->name, ended, w, t, cmd, t, w, t, cmd, p->name);
        return -EMLINK;
    }
    plan->create = true;
    plan->caps = add | (lacking ? need | union_caps : 0); /* a second one supersedes the first */
    if (max_suffix == 0)
        snprintf(plan->name, sizeof(plan->name), "%s", base);
    else
        snprintf(plan->name, sizeof(plan->name), "%s-%d", base, max_suffix + 1);
    return 0;
}

json_t *ephem_container_json(const char *name, const ephem_opts *o, unsigned caps, const char *secret)
{
    json_t *c = json_object();
    json_object_set_new(c, "name", json_string(name));
    json_object_set_new(c, "image", json_string(o->image));
    if (o->pull_policy)
        json_object_set_new(c, "imagePullPolicy", json_string(o->pull_policy));
    if (o->target)
        json_object_set_new(c, "targetContainerName", json_string(o->target));
    json_t *env = json_array();
    json_array_append_new(env, json_pack("{s:s, s:s}", "name", CONTRACT_SECRET_ENV, "value", secret));
    json_object_set_new(c, "env", env);
    json_object_set_new(c, "stdin", json_false());
    json_object_set_new(c, "tty", json_false());
    json_object_set_new(c, "terminationMessagePolicy", json_string("FallbackToLogsOnError"));
    json_t *sc = json_object();
    if (o->privileged) {
        json_object_set_new(sc, "privileged", json_true());
    } else {
        json_t *add = json_array();
        for (unsigned b = 0; b < EPHEM_NCAPS; b++)
            if (caps & (1u << b))
                json_array_append_new(add, json_string(cap_names[b]));
        json_t *cp = json_object();
        json_object_set_new(cp, "add", add);
        json_object_set_new(sc, "capabilities", cp);
    }
    json_object_set_new(c, "securityContext", sc);
    return c;
}

int ephem_read_banner(const char *log, const char *secret, bool need_tunnel, const char *pod, const char *name,
                      ephem_manager *m, char *err, size_t errlen)
{
    contract_banner b;
    contract_find_result r;
    int rc = 0;
    contract_banner_find(log, strlen(log), secret, &b, &r);
    if (r.found && b.token[0] && (b.tunnel_port || !need_tunnel)) {
        m->grpc_port = b.grpc_port;
        m->tunnel_port = b.tunnel_port;
        snprintf(m->token, sizeof(m->token), "%s", b.token);
    } else if (r.found && b.token[0]) {
        snprintf(err, errlen,
                 "the manager in the debug container %s of pod/%s runs without its redirect tunnel (its log says "
                 "why: kubectl logs %s -c %s)",
                 name, pod, pod, name);
        rc = -ENOTSUP;
    } else if (r.found) {
        snprintf(err, errlen,
                 "the manager in the debug container %s of pod/%s runs without a token (--no-auth): kubectl-diag "
                 "does not talk to an unauthenticated manager",
                 name, pod);
        rc = -EPROTO;
    } else if (r.rejected || r.pending) {
        /* final unless the last banner may still get its Proof line */
        snprintf(err, errlen,
                 "the log of the debug container %s in pod/%s holds start-up lines that do not prove the secret in "
                 "its spec (%s): a process in the pod wrote them, or the manager's own lines were rotated out of the "
                 "log. Not connecting to a manager that cannot be verified; recreate the pod for a fresh one",
                 name, pod, CONTRACT_SECRET_ENV);
        rc = r.pending ? -EAGAIN : -EKEYREJECTED;
    } else {
        char first[200];
        kube_first_line(log, first, sizeof(first));
        snprintf(err, errlen,
                 "the debug container %s in pod/%s runs but did not print its ports (first log line: \"%s\"); "
                 "is --dbg-image a kdiag-manager image? (A manager that has run for long may have had its log "
                 "rotated: then recreate the pod.)",
                 name, pod, first);
        rc = -EAGAIN;
    }
    return rc;
}

/* The pod as JSON with spec.ephemeralContainers, planned again: another run
 * may have added a container this one can use since `p` was read. Sets
 * *pod (a new reference) and *plan. */
static int get_and_plan(const kube *k, const pod_info *p, const char *path, const ephem_opts *o, json_t **pod,
                        ephem_plan *plan, char *err, size_t errlen)
{
    char what[256];
    kube_result r;
    pod_info fresh;
    const char *get_args[] = {"get", "--raw", path, NULL};
    snprintf(what, sizeof(what), "create the debug container in pod/%s", p->name);
    int rc = kube_run(k, what, get_args, NULL, 0, o->timeout_ms, &r, err, errlen);
    if (rc < 0)
        goto out;
    *pod = json_loads(r.out, 0, NULL);
    if (!*pod || pod_parse(*pod, &fresh) < 0) {
        snprintf(err, errlen, "cannot %s: the API server answered something that is not a Pod", what);
        rc = -EPROTO;
        goto out;
    }
    rc = ephem_plan_for(&fresh, o, plan, err, errlen);
    pod_free(&fresh);
out:
    if (rc < 0 && *pod) {
        json_decref(*pod);
        *pod = NULL;
    }
    kube_result_free(&r);
    return rc;
}

/* What a new debug container needs of the user: adding it, its log, where
 * its ports are read, and a port-forward for a command that talks to it. A
 * container added for a command that then cannot reach it would stay in the
 * pod for good, so kubectl auth can-i is asked first, while the pod is read,
 * and every permission missing is named at once. */
static const struct {
    const char *verb, *resource, *flag;
} NEEDS[] = {
    {"update", "pods/ephemeralcontainers", "--subresource=ephemeralcontainers"},
    {"get", "pods/log", "--subresource=log"},
    {"create", "pods/portforward", "--subresource=portforward"},
};
#define N_NEEDS (sizeof(NEEDS) / sizeof(NEEDS[0]))

static void may_start(const kube *k, const ephem_opts *o, kube_proc asks[N_NEEDS])
{
    char ignored[256];
    for (size_t i = 0; i < N_NEEDS; i++) {
        asks[i] = (kube_proc){.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
        if (strcmp(NEEDS[i].resource, "pods/portforward") == 0 && !o->need_forward)
            continue;
        const char *args[] = {"auth", "can-i", NEEDS[i].verb, "pods", NEEDS[i].flag, NULL};
        if (kube_start(k, args, &asks[i], ignored, sizeof(ignored)) < 0)
            asks[i].pid = -1;
    }
}

/* 0, or -EACCES with err set when kubectl auth can-i said no. Anything else
 * (an API server that cannot answer) leaves the question to the calls
 * themselves, as before the check. */
static int may_finish(const kube *k, const pod_info *p, const ephem_opts *o, kube_proc asks[N_NEEDS], char *err,
                      size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < N_NEEDS; i++) {
        if (asks[i].pid <= 0)
            continue;
        kube_result r;
        char ignored[256], what[256];
        kube_finish(k, "ask kubectl auth can-i", &asks[i], NULL, 0, o->timeout_ms, &r, ignored, sizeof(ignored));
        bool no = r.status == 1 && r.out && strncmp(r.out, "no", 2) == 0;
        kube_result_free(&r);
        if (!no)
            continue;
        if (rc == 0) {
            snprintf(what, sizeof(what), "%s pod/%s", o->command ? o->command : "debug", p->name);
            kerr_denied(what, NULL, NEEDS[i].verb, NEEDS[i].resource, p->ns ? p->ns : "default", err, errlen);
            rc = -EACCES;
        } else {
            size_t len = strlen(err);
            snprintf(err + len, errlen - len, "\nMissing too: verb \"%s\" on \"%s\".", NEEDS[i].verb,
                     NEEDS[i].resource);
        }
    }
    return rc;
}

static void may_abandon(kube_proc asks[N_NEEDS])
{
    for (size_t i = 0; i < N_NEEDS; i++)
        kube_abandon(&asks[i]);
}

/* get --raw + replace --raw: appends the planned container with a fresh
 * secret. On a conflict (the pod changed since it was read) it reads the pod
 * and plans again: when another run has just added a container this command
 * can use, *plan turns into reusing it. */
static int create(const kube *k, const pod_info *p, const ephem_opts *o, ephem_plan *plan, char *err, size_t errlen)
{
    char path[512], what[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/ephemeralcontainers", p->ns ? p->ns : "default",
             p->name);
    int rc = -EAGAIN;
    kube_proc asks[N_NEEDS];
    may_start(k, o, asks);
    for (int attempt = 0; attempt < 4; attempt++) {
        json_t *pod = NULL;
        kube_result r;
        rc = get_and_plan(k, p, path, o, &pod, plan, err, errlen);
        if (rc == 0 && plan->create)
            rc = may_finish(k, p, o, asks, err, errlen);
        if (rc < 0 || !plan->create) {
            may_abandon(asks);
            json_decref(pod);
            return rc;
        }
        if ((rc = contract_secret_new(plan->secret)) < 0) {
            snprintf(err, errlen, "cannot make a secret for the debug container: getrandom: %s", strerror(-rc));
            json_decref(pod);
            return rc;
        }
        if (k->verbose)
            fprintf(stderr, "creating debug container %s in pod/%s\n", plan->name, p->name);
        snprintf(what, sizeof(what), "create the debug container %s in pod/%s", plan->name, p->name);
        json_t *spec = json_object_get(pod, "spec");
        json_t *list = json_object_get(spec, "ephemeralContainers");
        if (!json_is_array(list)) {
            list = json_array();
            json_object_set_new(spec, "ephemeralContainers", list);
        }
        json_array_append_new(list, ephem_container_json(plan->name, o, plan->caps, plan->secret));
        char *body = json_dumps(pod, JSON_COMPACT);
        json_decref(pod);
        if (!body) {
            snprintf(err, errlen, "cannot %s: out of memory", what);
            return -ENOMEM;
        }
        const char *put_args[] = {"replace", "--raw", path, "-f", "-", NULL};
        rc = kube_run(k, what, put_args, body, strlen(body), o->timeout_ms, &r, err, errlen);
        free(body);
        kube_result_free(&r);
        if (rc != -EAGAIN) /* -EAGAIN: a conflict, err says so */
            break;
        kube_sleep_ms(100 * (attempt + 1));
    }
    may_abandon(asks);
    return rc;
}

struct progress {
    bool tty;
    bool shown;
    char last[256];
};

static void progress(struct progress *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(struct progress *pg, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (pg->tty) {
        fprintf(stderr, "\r\033[K%s", line);
        pg->shown = true;
    } else if (strcmp(line, pg->last) != 0) {
        fprintf(stderr, "%s\n", line);
    }
    snprintf(pg->last, sizeof(pg->last), "%s", line);
}

static void progress_done(struct progress *pg)
{
    if (pg->tty && pg->shown)
        fprintf(stderr, "\r\033[K");
}

/* Waiting reasons of a kubelet that cannot get the image: no use waiting for
 * them to pass (the kubelet retries, but with the same image reference). */
static bool image_pull_failed(const char *reason)
{
    static const char *const reasons[] = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"};
    for (size_t i = 0; reason && i < sizeof reasons / sizeof *reasons; i++)
        if (strcmp(reason, reasons[i]) == 0)
            return true;
    return false;
}

/* Polls the pod until the container runs; errors name the waiting reason,
 * and an image the cluster cannot pull at once. */
static int wait_running(const kube *k, const pod_info *p0, const char *name, const ephem_opts *o, char *err, size_t errlen)
{
    struct progress pg = {.tty = isatty(2)};
    int64_t start = time_now_ms(), deadline = start + o->timeout_ms;
    char reason[256] = "";
    int rc, interval = 100;
    for (;;) {
        pod_info p;
        rc = podsel_fetch(k, p0->name, o->timeout_ms, &p, err, errlen);
        if (rc < 0)
            break;
        const pod_container *c = pod_ephemeral_find(&p, name);
        if (!pod_is_running(&p)) {
            snprintf(err, errlen, "pod/%s stopped running (phase %s) while its debug container was starting",
                     p.name, p.phase ? p.phase : "unknown");
            rc = -ENOENT;
        } else if (!c) {
            snprintf(err, errlen,
                     "the debug container %s was accepted but is not in pod/%s; does this cluster support "
                     "ephemeral containers (Kubernetes 1.23+)?",
                     name, p.name);
            rc = -ENOENT;
        } else if (c->state == POD_STATE_RUNNING) {
            rc = 0;
        } else if (c->state == POD_STATE_TERMINATED) {
            snprintf(err, errlen,
                     "the debug container %s in pod/%s exited (code %d, %s%s%s); see: kubectl logs %s -c %s", name,
                     p.name, c->exit_code, c->reason ? c->reason : "no reason", c->message ? ": " : "",
                     c->message ? c->message : "", p.name, name);
            rc = -ECHILD;
        } else if (image_pull_failed(c->reason)) {
            snprintf(err, errlen,
                     "the cluster cannot pull the debug image %s for pod/%s (%s%s%s). Build it with "
                     "scripts/image.sh and push it to a registry the cluster pulls from, or pass --dbg-image (or set KDIAG_DBG_IMAGE)",
                     o->image, p.name, c->reason, c->message ? ": " : "", c->message ? c->message : "");
            rc = -ENOENT;
        } else {
            snprintf(reason, sizeof(reason), "%s%s%s", c->reason ? c->reason : "Pending", c->message ? ": " : "",
                     c->message ? c->message : "");
            rc = -EAGAIN;
        }
        pod_free(&p);
        if (rc != -EAGAIN)
            break;
        int64_t now = time_now_ms();
        if (now >= deadline) {
            snprintf(err, errlen,
                     "the debug container %s in pod/%s did not start within %gs (%s). Check the image (--dbg-image "
                     "%s), or wait longer with --timeout",
                     name, p0->name, (double)o->timeout_ms / 1000, reason, o->image);
            rc = -ETIMEDOUT;
            break;
        }
        progress(&pg, "waiting for debug container %s in pod/%s: %s (%llds)", name, p0->name, reason,
                 (long long)((now - start) / 1000));
        kube_sleep_ms(interval);
        if (interval < 1000)
            interval *= 2;
    }
    progress_done(&pg);
    return rc;
}

#define LOG_LIMIT "--limit-bytes=16384" /* the start-up lines come first */

int ephem_log_prefetch(const kube *k, const char *pod, const char *version, kube_proc *p)
{
    char ref[300], base[32], err[256];
    ephem_base_name(version, base, sizeof(base));
    snprintf(ref, sizeof(ref), "pod/%s", pod);
    const char *args[] = {"logs", ref, "-c", base, LOG_LIMIT, NULL};
    return kube_start(k, args, p, err, sizeof(err));
}

/* The manager's ports and token from its log; pre: the log as prefetched, or
 * NULL. What pre holds is checked as a fresh read is, and only taken when it
 * proves the manager: anything else reads the log again. */
static int read_ports(const kube *k, const pod_info *p, const ephem_plan *plan, const ephem_opts *o,
                      const char *pre, ephem_manager *m, char *err, size_t errlen)
{
    int64_t deadline = time_now_ms() + o->timeout_ms; /* --timeout, as every wait */
    char pod[300], what[256];
    if (pre && ephem_read_banner(pre, plan->secret, o->need_tunnel, p->name, plan->name, m, err, errlen) == 0)
        return 0;
    snprintf(pod, sizeof(pod), "pod/%s", p->name);
    const char *args[] = {"logs", pod, "-c", plan->name, LOG_LIMIT, NULL};
    snprintf(what, sizeof(what), "read the debug container's log (kubectl logs %s -c %s)", p->name, plan->name);
    for (int delay = 50;; delay = delay < 500 ? delay * 2 : 500) {
        kube_result r;
        int rc = kube_run(k, what, args, NULL, 0, o->timeout_ms, &r, err, errlen);
        if (rc == 0)
            rc = ephem_read_banner(r.out, plan->secret, o->need_tunnel, p->name, plan->name, m, err, errlen);
        kube_result_free(&r);
        if (rc != -EAGAIN || time_now_ms() >= deadline)
            return rc == -EAGAIN ? -ETIMEDOUT : rc;
        kube_sleep_ms(delay);
    }
}

int ephem_ensure(const kube *k, const pod_info *p, const ephem_opts *o, ephem_manager *out, char *err, size_t errlen)
{
    ephem_plan plan;
    memset(out, 0, sizeof(*out));
    int rc = ephem_plan_for(p, o, &plan, err, errlen);
    if (rc < 0)
        return rc;
    if (plan.create) {
        rc = create(k, p, o, &plan, err, errlen);
        if (rc < 0)
            return rc;
    }
    const pod_container *c = pod_ephemeral_find(p, plan.name);
    if (plan.create || !c || c->state != POD_STATE_RUNNING) {
        rc = wait_running(k, p, plan.name, o, err, errlen);
        if (rc < 0)
            return rc;
    }
    /* the prefetched log is of the base name, read before p: of use only
     * when that container already ran then */
    kube_result pre = {0};
    char base[32], ignored[256];
    ephem_base_name(o->version, base, sizeof(base));
    if (o->prefetch && o->prefetch->pid > 0 && !plan.create && c && c->state == POD_STATE_RUNNING &&
        strcmp(plan.name, base) == 0)
        kube_finish(k, "read the log", o->prefetch, NULL, 0, o->timeout_ms, &pre, ignored, sizeof(ignored));
    snprintf(out->container, sizeof(out->container), "%s", plan.name);
    snprintf(out->secret, sizeof(out->secret), "%s", plan.secret);
    out->caps = (plan.create || !c ? plan.caps : ephem_caps_of(c)) | EPHEM_CAPS_RUNTIME_DEFAULT;
    out->privileged = plan.create || !c ? o->privileged : c->privileged;
    rc = read_ports(k, p, &plan, o, pre.status == 0 ? pre.out : NULL, out, err, errlen);
    kube_result_free(&pre);
    return rc;
}
