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
/* The pod named `name`, or the newest Running pod matching `selector`;
 * it must be Running. -EINVAL (a usage error) when neither is given. */
int podsel_one(const kube *k, const char *name, const char *selector, int64_t timeout_ms, pod_info *p, char *err,
               size_t errlen);
/* The container called want (first container when NULL); err lists the
 * pod's containers when it is unknown. */
int podsel_target(const pod_info *p, const char *want, const pod_container **c, char *err, size_t errlen);

#endif
