#include "podsel.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kerr.h"

int podsel_fetch(const kube *k, const char *name, int64_t timeout_ms, pod_info *p, char *err, size_t errlen)
{
    const char *args[] = {"get", "pod", "-o", "json", "--", name, NULL};
    kube_result r;
    char what[300];
    memset(p, 0, sizeof(*p));
    snprintf(what, sizeof(what), "get pod/%s", name);
    int rc = kube_run(k, what, args, NULL, 0, timeout_ms, &r, err, errlen);
    if (rc == 0 && pod_parse_str(r.out, p) < 0) {
        snprintf(err, errlen, "cannot %s: kubectl printed something that is not a Pod", what);
        rc = -EPROTO;
    }
    kube_result_free(&r);
    return rc;
}

int podsel_list(const kube *k, const char *selector, int64_t timeout_ms, pod_info **pods, size_t *n, char *err,
                size_t errlen)
{
    return podsel_list_in(k, selector, false, timeout_ms, pods, n, err, errlen);
}

int podsel_list_in(const kube *k, const char *selector, bool all_namespaces, int64_t timeout_ms, pod_info **pods,
                   size_t *n, char *err, size_t errlen)
{
    char *sel = NULL; /* whole, however long: a selector cut short matches other pods */
    kube_result r;
    char what[300];
    *pods = NULL;
    *n = 0;
    if (selector && asprintf(&sel, "--selector=%s", selector) < 0) {
        snprintf(err, errlen, "cannot list pods: out of memory");
        return -ENOMEM;
    }
    const char *args[7] = {"get", "pods", "-o", "json"};
    size_t na = 4;
    if (all_namespaces)
        args[na++] = "--all-namespaces";
    args[na] = sel; /* NULL: the end */
    snprintf(what, sizeof(what), "list pods%s%s%s", selector ? " matching " : "", selector ? selector : "",
             all_namespaces ? " in all namespaces" : "");
    int rc = kube_run(k, what, args, NULL, 0, timeout_ms, &r, err, errlen);
    free(sel);
    if (rc == 0 && pod_list_parse(r.out, pods, n) < 0) {
        snprintf(err, errlen, "cannot %s: kubectl printed something that is not a PodList", what);
        rc = -EPROTO;
    }
    kube_result_free(&r);
    return rc;
}

/* Why no pod of selector (listed: pods, n) can be used. */
static void none_running(const kube *k, const char *selector, const char *workload, const pod_info *pods, size_t n,
                         char *err, size_t errlen)
{
    const char *ns = k->ns ? k->ns : "the current namespace";
    char what[600];
    if (workload)
        snprintf(what, sizeof(what), "%s (selector %s)", workload, selector);
    else
        snprintf(what, sizeof(what), "-l %s", selector);
    if (n == 0 && workload)
        snprintf(err, errlen, "no pod matches %s in %s: check with kubectl get pods%s -l '%s'", what, ns,
                 kerr_identity(), selector);
    else if (n == 0)
        snprintf(err, errlen, "no pod matches %s in %s: check the labels with kubectl get pods%s --show-labels",
                 what, ns, kerr_identity());
    else
        snprintf(err, errlen, "%zu pod(s) match %s in %s but none is running (e.g. pod/%s is %s%s)", n, what, ns,
                 pods[0].name, pods[0].phase ? pods[0].phase : "unknown", pods[0].deleting ? ", being deleted" : "");
}

int podsel_one(const kube *k, const char *name, const char *selector, const char *workload, int64_t timeout_ms,
               pod_info *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (!name && !selector) {
        snprintf(err, errlen,
                 "no pod given: name one with --pod NAME (or pod/NAME), name a workload (deploy/NAME, "
                 "sts/NAME, rs/NAME, svc/NAME) or select with -l LABEL=VALUE");
        return -EINVAL;
    }
    if (name) {
        int rc = podsel_fetch(k, name, timeout_ms, p, err, errlen);
        if (rc < 0)
            return rc;
        bool ended = p->phase && (!strcmp(p->phase, "Succeeded") || !strcmp(p->phase, "Failed"));
        if (!pod_is_running(p) && (ended || p->deleting)) { /* it will not run again */
            snprintf(err, errlen, "pod/%s is not running (phase %s%s) and will not run again: pick another pod",
                     name, p->phase ? p->phase : "unknown", p->deleting ? ", being deleted" : "");
            pod_free(p);
            return -ENOENT;
        }
        if (!pod_is_running(p)) {
            snprintf(err, errlen,
                     "pod/%s is not running (phase %s): wait for it (kubectl get pod %s%s -w) or pick another pod",
                     name, p->phase ? p->phase : "unknown", name, kerr_identity());
            pod_free(p);
            return -ENOENT;
        }
        return 0;
    }
    pod_info *pods;
    size_t n;
    int rc = podsel_list(k, selector, timeout_ms, &pods, &n, err, errlen);
    if (rc < 0)
        return rc;
    const pod_info *best = pod_newest_running(pods, n);
    if (!best) {
        none_running(k, selector, workload, pods, n, err, errlen);
        pod_list_free(pods, n);
        return -ENOENT;
    }
    /* move the chosen pod out of the array */
    *p = *best;
    memset((pod_info *)best, 0, sizeof(*best));
    pod_list_free(pods, n);
    return 0;
}

int podsel_running(const kube *k, const char *selector, const char *workload, size_t max, int64_t timeout_ms,
                   pod_info **pods, size_t *n, char *err, size_t errlen)
{
    size_t all, kept = 0;
    int rc = podsel_list(k, selector, timeout_ms, pods, &all, err, errlen);
    *n = 0;
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < all && kept < max; i++)
        if (pod_is_running(&(*pods)[i])) {
            pod_info keep = (*pods)[i];
            memset(&(*pods)[i], 0, sizeof keep);
            (*pods)[kept++] = keep;
        }
    if (kept == 0)
        none_running(k, selector, workload, *pods, all, err, errlen);
    for (size_t i = kept; i < all; i++)
        pod_free(&(*pods)[i]);
    if (kept == 0) {
        free(*pods);
        *pods = NULL;
        return -ESRCH;
    }
    *n = kept;
    return 0;
}

int podsel_target(const pod_info *p, const char *want, const pod_container **c, char *err, size_t errlen)
{
    *c = NULL;
    if (p->ncontainers == 0) {
        snprintf(err, errlen, "pod/%s has no containers", p->name);
        return -ENOENT;
    }
    if (!want) {
        *c = &p->containers[0];
        return 0;
    }
    *c = pod_container_find(p, want);
    if (*c)
        return 0;
    char names[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < p->ncontainers && used < sizeof(names); i++)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "", p->containers[i].name);
    snprintf(err, errlen, "pod/%s has no container \"%s\": use -t with one of: %s", p->name, want, names);
    return -ENOENT;
}

static const struct {
    const char *prefix;
    const char *kind;
} workload_prefixes[] = {
    {"deploy/", "deployment"},
    {"deployment/", "deployment"},
    {"deployments/", "deployment"},
    {"deployment.apps/", "deployment"},
    {"sts/", "statefulset"},
    {"statefulset/", "statefulset"},
    {"statefulsets/", "statefulset"},
    {"statefulset.apps/", "statefulset"},
    {"rs/", "replicaset"},
    {"replicaset/", "replicaset"},
    {"replicasets/", "replicaset"},
    {"replicaset.apps/", "replicaset"},
    {"svc/", "service"},
    {"service/", "service"},
    {"services/", "service"},
};

const char *podsel_workload_ref(const char *arg, const char **kind)
{
    for (size_t i = 0; i < sizeof(workload_prefixes) / sizeof(workload_prefixes[0]); i++) {
        size_t n = strlen(workload_prefixes[i].prefix);
        if (strncmp(arg, workload_prefixes[i].prefix, n) == 0) {
            *kind = workload_prefixes[i].kind;
            return arg + n;
        }
    }
    return NULL;
}

/* A selector being written into a fixed buffer; ok turns false when it is full. */
struct selbuf {
    char s[4096];
    size_t used;
    bool ok;
};

static void sel_add(struct selbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sel_add(struct selbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = b->ok ? vsnprintf(b->s + b->used, sizeof(b->s) - b->used, fmt, ap) : -1;
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(b->s) - b->used)
        b->ok = false;
    else
        b->used += (size_t)n;
}

/* One matchExpressions entry as kubectl -l says it: k in (a,b), k notin (a,b), k, !k. */
static void sel_expression(struct selbuf *b, const json_t *e)
{
    const char *key = json_string_value(json_object_get(e, "key"));
    const char *op = json_string_value(json_object_get(e, "operator"));
    const char *sep = b->used ? "," : "";
    if (!key || !op) {
        b->ok = false;
    } else if (strcmp(op, "Exists") == 0) {
        sel_add(b, "%s%s", sep, key);
    } else if (strcmp(op, "DoesNotExist") == 0) {
        sel_add(b, "%s!%s", sep, key);
    } else if (strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0) {
        sel_add(b, "%s%s %s (", sep, key, strcmp(op, "In") == 0 ? "in" : "notin");
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(e, "values"), i, v)
        {
            if (!json_is_string(v))
                b->ok = false;
            sel_add(b, "%s%s", i ? "," : "", json_string_value(v));
        }
        sel_add(b, ")");
    } else {
        b->ok = false;
    }
}

int podsel_selector_of(const char *ref, const char *json, char **sel, char *err, size_t errlen)
{
    struct selbuf b = {.used = 0, .ok = true};
    int rc = -EPROTO; /* what the cluster answered, not the command line: exit 1 */
    *sel = NULL;
    json_t *root = json_loads(json, 0, NULL);
    const char *kind = json_string_value(json_object_get(root, "kind"));
    json_t *s = json_object_get(json_object_get(root, "spec"), "selector");
    if (!kind) {
        snprintf(err, errlen, "cannot get %s: kubectl printed something that is not a Kubernetes object", ref);
        goto out;
    }
    bool service = strcmp(kind, "Service") == 0;
    const char *key;
    json_t *v;
    json_object_foreach(service ? s : json_object_get(s, "matchLabels"), key, v)
    {
        if (!json_is_string(v))
            b.ok = false;
        sel_add(&b, "%s%s=%s", b.used ? "," : "", key, json_string_value(v));
    }
    size_t i;
    json_array_foreach(service ? NULL : json_object_get(s, "matchExpressions"), i, v) sel_expression(&b, v);
    if (!b.ok) {
        snprintf(err, errlen,
                 "cannot use the selector of %s: it is not one kubectl -l can express; select its pods "
                 "with -l",
                 ref);
        rc = -ENOTSUP;
    } else if (b.used == 0) {
        snprintf(err, errlen,
                 service ? "%s has no selector: no pod belongs to it (its endpoints are set by hand); name a pod "
                           "(pod/NAME) or select pods with -l"
                         : "%s has an empty selector: name a pod (pod/NAME) or select pods with -l",
                 ref);
        rc = -ENOENT;
    } else {
        *sel = strdup(b.s);
        rc = *sel ? 0 : -ENOMEM;
        if (!*sel)
            snprintf(err, errlen, "cannot use the selector of %s: out of memory", ref);
    }
out:
    json_decref(root);
    return rc;
}

int podsel_workload_json(const kube *k, const char *ref, int64_t timeout_ms, char **sel, char **json, char *err,
                         size_t errlen)
{
    char kind[32], what[300];
    const char *slash = strchr(ref, '/');
    *sel = NULL;
    if (json)
        *json = NULL;
    if (!slash || slash == ref || (size_t)(slash - ref) >= sizeof(kind) || !slash[1]) {
        snprintf(err, errlen, "\"%s\" names no workload: use deploy/NAME, sts/NAME, rs/NAME or svc/NAME", ref);
        return -EINVAL;
    }
    snprintf(kind, sizeof(kind), "%.*s", (int)(slash - ref), ref);
    snprintf(what, sizeof(what), "get %s", ref);
    const char *args[] = {"get", kind, "-o", "json", "--", slash + 1, NULL};
    kube_result r;
    int rc = kube_run(k, what, args, NULL, 0, timeout_ms, &r, err, errlen);
    if (rc == 0)
        rc = podsel_selector_of(ref, r.out, sel, err, errlen);
    if (rc == 0 && json) {
        *json = r.out;
        r.out = NULL;
    }
    kube_result_free(&r);
    return rc;
}

int podsel_workload(const kube *k, const char *ref, int64_t timeout_ms, char **sel, char *err, size_t errlen)
{
    return podsel_workload_json(k, ref, timeout_ms, sel, NULL, err, errlen);
}

int podsel_service_ports(const char *json, podsel_svc_port **out, size_t *n)
{
    int rc = 0;
    size_t i;
    const json_t *p;
    *out = NULL;
    *n = 0;
    json_t *root = json_loads(json, 0, NULL);
    const char *kind = json_string_value(json_object_get(root, "kind"));
    json_t *ports = kind && strcmp(kind, "Service") == 0 ? json_object_get(json_object_get(root, "spec"), "ports") : NULL;
    json_array_foreach(ports, i, p)
    {
        const char *proto = json_string_value(json_object_get(p, "protocol"));
        const json_t *target = json_object_get(p, "targetPort");
        json_int_t port = json_integer_value(json_object_get(p, "port"));
        const char *name = json_string_value(target), *own = json_string_value(json_object_get(p, "name"));
        if (name && !*name) { /* "": none, as the API server defaults it (fuzz.cluster) */
            target = NULL;
            name = NULL;
        }
        json_int_t to = target ? json_integer_value(target) : port;
        if ((proto && strcmp(proto, "TCP") != 0) || port < 1 || port > 65535 || to < 0 || to > 65535 ||
            (!to && (!name || strlen(name) >= sizeof((*out)->target_name))) ||
            (own && strlen(own) >= sizeof((*out)->name)))
            continue;
        podsel_svc_port *np = realloc(*out, (*n + 1) * sizeof(*np));
        if (!np) {
            rc = -ENOMEM;
            break;
        }
        *out = np;
        np[*n] = (podsel_svc_port){.port = (uint16_t)port, .target = (uint16_t)to};
        if (!to)
            snprintf(np[*n].target_name, sizeof(np[*n].target_name), "%s", name);
        if (own)
            snprintf(np[*n].name, sizeof(np[*n].name), "%s", own);
        (*n)++;
    }
    json_decref(root);
    return rc;
}
