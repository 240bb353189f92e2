#include "podsel.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char sel[512];
    const char *args[] = {"get", "pods", "-o", "json", selector ? sel : NULL, NULL};
    kube_result r;
    char what[300];
    snprintf(sel, sizeof(sel), "--selector=%s", selector ? selector : "");
    *pods = NULL;
    *n = 0;
    snprintf(what, sizeof(what), "list pods%s%s", selector ? " matching " : "", selector ? selector : "");
    int rc = kube_run(k, what, args, NULL, 0, timeout_ms, &r, err, errlen);
    if (rc == 0 && pod_list_parse(r.out, pods, n) < 0) {
        snprintf(err, errlen, "cannot %s: kubectl printed something that is not a PodList", what);
        rc = -EPROTO;
    }
    kube_result_free(&r);
    return rc;
}

int podsel_one(const kube *k, const char *name, const char *selector, int64_t timeout_ms, pod_info *p, char *err,
               size_t errlen)
{
    const char *ns = k->ns ? k->ns : "the current namespace";
    memset(p, 0, sizeof(*p));
    if (!name && !selector) {
        snprintf(err, errlen, "no pod given: name one with --pod NAME (or pod/NAME) or select with -l LABEL=VALUE");
        return -EINVAL;
    }
    if (name) {
        int rc = podsel_fetch(k, name, timeout_ms, p, err, errlen);
        if (rc < 0)
            return rc;
        if (!pod_is_running(p)) {
            snprintf(err, errlen,
                     "pod/%s is not running (phase %s%s): wait for it (kubectl get pod %s -w) or pick "
                     "another pod",
                     name, p->phase ? p->phase : "unknown", p->deleting ? ", being deleted" : "", name);
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
        if (n == 0)
            snprintf(err, errlen, "no pod matches -l %s in %s: check the labels with kubectl get pods --show-labels",
                     selector, ns);
        else
            snprintf(err, errlen, "%zu pod(s) match -l %s in %s but none is running (e.g. pod/%s is %s)", n,
                     selector, ns, pods[0].name, pods[0].phase ? pods[0].phase : "unknown");
        pod_list_free(pods, n);
        return -ENOENT;
    }
    /* move the chosen pod out of the array */
    *p = *best;
    memset((pod_info *)best, 0, sizeof(*best));
    pod_list_free(pods, n);
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
