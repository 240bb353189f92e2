/* ephem — the debug (ephemeral) container that runs kdiag-manager in a pod.
 *
 * Name dbg-tools-<8 hex of a hash of the version>; the oldest running (else
 * a starting) one with the same image, target and enough capabilities is
 * reused; when none fits, a new one is added with a numeric suffix (-2, -3,
 * ...) and the union of the capabilities of the ones it supersedes. Created with
 * `kubectl get --raw …/ephemeralcontainers` + `kubectl replace --raw … -f -`,
 * which works on every kubectl from 1.23 (patch --subresource needs 1.32). */
#ifndef KDIAG_CLI_EPHEM_H
#define KDIAG_CLI_EPHEM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube.h"
#include "pod.h"

enum {
    EPHEM_NET_ADMIN = 1u,
    EPHEM_SYS_PTRACE = 2u,
    EPHEM_SYS_ADMIN = 4u,
    EPHEM_SYS_CHROOT = 8u,
    EPHEM_CAPS_SHELL = EPHEM_SYS_PTRACE | EPHEM_SYS_ADMIN | EPHEM_SYS_CHROOT,
    EPHEM_CAPS_ALL = 15u,
};

typedef struct {
    char name[64];
    bool create;    /* false: reuse `name` (running or starting) */
    unsigned caps;  /* capabilities to add when creating */
} ephem_plan;

typedef struct {
    char container[64];
    int grpc_port;
    int tunnel_port;
    char token[33];
} ephem_manager;

typedef struct {
    const char *version;     /* names the container */
    const char *image;
    const char *pull_policy; /* NULL: the cluster's default */
    const char *target;      /* targetContainerName */
    unsigned caps;           /* EPHEM_* the command needs */
    unsigned extra_caps;     /* EPHEM_* also given to a new container (a later step may need them) */
    bool privileged;
    int64_t timeout_ms;      /* for the container to run and print its ports */
} ephem_opts;

/* "dbg-tools-" + 8 hex of FNV-1a(version). */
void ephem_base_name(const char *version, char *out, size_t n);
/* EPHEM_* bits of a container's added capabilities (all when privileged). */
unsigned ephem_caps_of(const pod_container *c);
/* Decides whether to reuse or create; pure, for tests. */
int ephem_plan_for(const pod_info *p, const ephem_opts *o, ephem_plan *plan);
/* The container object to append to spec.ephemeralContainers (new reference). */
json_t *ephem_container_json(const char *name, const ephem_opts *o, unsigned caps);
/* Port and token from the manager's log: 0 when all three lines are there,
 * -EAGAIN when some are still missing. */
int ephem_parse_logs(const char *logs, ephem_manager *m);

/* Makes sure a suitable manager runs in pod p, waiting (with progress on
 * stderr) until it runs and has printed its ports. err gets an actionable
 * message on failure. */
int ephem_ensure(const kube *k, const pod_info *p, const ephem_opts *o, ephem_manager *out, char *err,
                 size_t errlen);

#endif
