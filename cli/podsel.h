/* podsel — finds the pod (and target container) a command works on. */
#ifndef KDIAG_CLI_PODSEL_H
#define KDIAG_CLI_PODSEL_H

#include <stddef.h>
#include <stdint.h>

#include "kube.h"
#include "pod.h"

/* Every function fills err on failure. timeout_ms: how long kubectl may take
 * (--timeout). */

/* kubectl get pod -o json -- NAME. 0; -ENOENT when there is no such pod;
 * another kube_run error otherwise. */
int podsel_fetch(const kube *k, const char *name, int64_t timeout_ms, pod_info *p, char *err, size_t errlen);
/* kubectl get pods [--selector=SELECTOR] -o json (all pods when selector is NULL). */
int podsel_list(const kube *k, const char *selector, int64_t timeout_ms, pod_info **pods, size_t *n, char *err,
                size_t errlen);
/* The same, with all_namespaces: of every namespace (--all-namespaces). */
int podsel_list_in(const kube *k, const char *selector, bool all_namespaces, int64_t timeout_ms, pod_info **pods,
                   size_t *n, char *err, size_t errlen);
/* The pod named `name`, or the newest Running pod matching `selector`;
 * it must be Running. -EINVAL (a usage error) when neither is given.
 * workload: the KIND/NAME the selector came from (podsel_workload), named in
 * the messages instead of -l; NULL for -l. */
int podsel_one(const kube *k, const char *name, const char *selector, const char *workload, int64_t timeout_ms,
               pod_info *p, char *err, size_t errlen);
/* --all-pods, and commands that follow a selector: the Running pods matching
 * selector, at most max, in a malloc'd array (pod_list_free(*pods, *n)).
 * -ESRCH when the list has none that runs (no failure for a command that
 * waits for one), err saying why as podsel_one does; workload as there. */
int podsel_running(const kube *k, const char *selector, const char *workload, size_t max, int64_t timeout_ms,
                   pod_info **pods, size_t *n, char *err, size_t errlen);

/* Workload targets: an object whose selector picks the pods. */

/* The workload an argument names: deploy/, deployment/, deployments/,
 * deployment.apps/, sts/, statefulset/…, rs/, replicaset/…, svc/, service/,
 * services/ followed by NAME. *kind is then "deployment", "statefulset",
 * "replicaset" or "service"; returns NAME (inside arg), or NULL when arg names
 * no workload. */
const char *podsel_workload_ref(const char *arg, const char **kind);
/* The label selector, in kubectl -l syntax, of a workload object (kubectl
 * get -o json): spec.selector's matchLabels and matchExpressions, or a
 * Service's spec.selector map. ref ("deployment/web") names it in messages.
 * 0 and a malloc'd *sel; -ENOENT when it selects no pods (a Service without a
 * selector); -EINVAL when json is not such an object. */
int podsel_selector_of(const char *ref, const char *json, char **sel, char *err, size_t errlen);
/* kubectl get KIND -o json -- NAME for ref "KIND/NAME", then
 * podsel_selector_of. -ENOENT also when the object does not exist. */
int podsel_workload(const kube *k, const char *ref, int64_t timeout_ms, char **sel, char *err, size_t errlen);
/* podsel_workload that also hands over the object as kubectl printed it:
 * *json, malloc'd, when it returns 0 (json NULL: not wanted). */
int podsel_workload_json(const kube *k, const char *ref, int64_t timeout_ms, char **sel, char **json, char *err,
                         size_t errlen);

/* A TCP port of a Service (name: its name, or "") and where it goes in its
 * pods: target, or, when that is 0, the container port called target_name
 * (spec.ports[].targetPort). */
typedef struct {
    uint16_t port, target;
    char target_name[64];
    char name[64];
} podsel_svc_port;
/* The TCP ports of the Service in json (kubectl get svc -o json) into a
 * malloc'd *out; none for another kind of object. 0 or -ENOMEM. */
int podsel_service_ports(const char *json, podsel_svc_port **out, size_t *n);
/* The container called want (first container when NULL); err lists the
 * pod's containers when it is unknown. */
int podsel_target(const pod_info *p, const char *want, const pod_container **c, char *err, size_t errlen);

#endif
