/* podsel — finds the pod (and target container) a command works on. */
#ifndef KDIAG_CLI_PODSEL_H
#define KDIAG_CLI_PODSEL_H

#include <stddef.h>

#include "kube.h"
#include "pod.h"

/* kubectl get pod NAME -o json. 0; -ENOENT when there is no such pod;
 * -EIO on other kubectl failures (err says what to do). */
int podsel_fetch(const kube *k, const char *name, pod_info *p, char *err, size_t errlen);
/* kubectl get pods [-l SELECTOR] -o json (all pods when selector is NULL). */
int podsel_list(const kube *k, const char *selector, pod_info **pods, size_t *n, char *err, size_t errlen);
/* The pod named `name`, or the newest Running pod matching `selector`;
 * it must be Running. -EINVAL when neither is given. */
int podsel_one(const kube *k, const char *name, const char *selector, pod_info *p, char *err, size_t errlen);
/* The container called want (first container when NULL); err lists the
 * pod's containers when it is unknown. */
int podsel_target(const pod_info *p, const char *want, const pod_container **c, char *err, size_t errlen);

#endif
