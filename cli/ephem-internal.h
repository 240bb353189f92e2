/* ephem-internal — test seams of cli/ephem.c: its pure parts (naming,
 * planning, the container object, reading the start-up lines). */
#ifndef KDIAG_CLI_EPHEM_INTERNAL_H
#define KDIAG_CLI_EPHEM_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ephem.h"

typedef struct {
    char name[64];
    bool create;                              /* false: reuse `name` (running or starting) */
    unsigned caps;                            /* capabilities to add when creating */
    char secret[CONTRACT_SECRET_HEX_LEN + 1]; /* reuse: the container's; create: set by ephem_ensure */
} ephem_plan;

/* Decides whether to reuse or create; -EPERM (err says why and what to do)
 * when the pod's container lacks what the command needs and o->new_container
 * is not set, or when o->profile does not give it. */
int ephem_plan_for(const pod_info *p, const ephem_opts *o, ephem_plan *plan, char *err, size_t errlen);
/* The container object to append to spec.ephemeralContainers (new reference). */
json_t *ephem_container_json(const char *name, const ephem_opts *o, unsigned caps, const char *secret);
/* Ports and token from the log of debug container `name` in pod/pod, taken
 * only from start-up lines that prove `secret`: 0 when they are there with
 * what the command needs; -EAGAIN while they may still come (err: what is
 * there so far); -EKEYREJECTED when the log holds only lines that do not
 * prove it (forged, or the genuine ones rotated away); -ENOTSUP when a tunnel
 * is needed and this manager has none. err says which (on -EAGAIN for the
 * caller that gives up). */
int ephem_read_banner(const char *log, const char *secret, bool need_tunnel, const char *pod, const char *name,
                      ephem_manager *m, char *err, size_t errlen);

#endif
