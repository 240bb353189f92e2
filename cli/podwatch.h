/* podwatch — follows the pods a selector matches: one `kubectl get --raw
 * /api/v1/namespaces/NS/pods?watch=1&labelSelector=...` child at a time,
 * resumed from the last resourceVersion when it ends (the API server closes
 * watches every 30-60 min; kubectl may die), listed afresh when that version
 * is too old (410 Expired). Each event reaches the callback on the watch's
 * own thread, in order. */
#ifndef KDIAG_CLI_PODWATCH_H
#define KDIAG_CLI_PODWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube.h"
#include "pod.h"

typedef enum { PODWATCH_ADDED, PODWATCH_MODIFIED, PODWATCH_DELETED } podwatch_type;

typedef struct {
    podwatch_type type;
    pod_info pod; /* the callback may take it (zero it then); freed after the call otherwise */
    bool ready;   /* pod_is_ready(&pod) */
} podwatch_event;

typedef void (*podwatch_fn)(void *ud, podwatch_event *ev);

typedef struct podwatch podwatch;

/* The longest selector the watch takes (its URL-encoded form, at most 3
 * times as long, goes into the path of kubectl get --raw). */
#define PODWATCH_SELECTOR_MAX 1024

/* 0 when selector (given by from: "-l", "deploy/web") is short enough to
 * watch; -EINVAL with err saying its length, the limit and the fix. Commands
 * that will watch call it before they change anything. */
int podwatch_check_selector(const char *selector, const char *from, char *err, size_t errlen);
/* Starts watching pods matching selector in ns (NULL: the context's
 * namespace). 0, or a negative errno with err saying why (-EINVAL: the
 * selector is too long, as podwatch_check_selector says). */
int podwatch_new(podwatch **ret, const kube *k, const char *ns, const char *selector, podwatch_fn fn, void *ud,
                 char *err, size_t errlen);
/* Stops the child, joins the thread; NULL: nothing. No callback runs after. */
void podwatch_free(podwatch *w);

#endif
