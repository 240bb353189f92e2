/* ephem — the debug (ephemeral) container that runs kdiag-manager in a pod.
 *
 * Name dbg-tools-<8 hex of a hash of the version>; the oldest running (else
 * a starting) one with the same image, target and enough capabilities is
 * reused; when none fits, a new one is added with a numeric suffix (-2, -3,
 * ...) and the union of the capabilities of the ones it supersedes. Created with
 * `kubectl get --raw …/ephemeralcontainers` + `kubectl replace --raw … -f -`,
 * which works on every kubectl from 1.23 (patch --subresource needs 1.32);
 * on a conflict (another run changed the pod) the plan is made again on the
 * fresh pod, so a container that run just added is reused.
 *
 * Each container gets a random secret in its environment (CONTRACT_SECRET_ENV);
 * its manager's start-up lines are accepted only with a proof of that secret
 * (api/contract.h), so lines a workload writes into the log are never taken.
 * Containers without a secret are not reused. */
#ifndef KDIAG_CLI_EPHEM_H
#define KDIAG_CLI_EPHEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contract.h"
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
    char container[64];
    int grpc_port;
    int tunnel_port; /* 0: this manager has no tunnel (redirect unavailable) */
    char token[CONTRACT_TOKEN_HEX_LEN + 1];
} ephem_manager;

typedef struct {
    const char *version; /* names the container */
    const char *image;
    const char *pull_policy; /* NULL: the cluster's default */
    const char *target;      /* targetContainerName */
    unsigned caps;           /* EPHEM_* the command needs */
    unsigned extra_caps;     /* EPHEM_* also given to a new container (a later step may need them) */
    bool privileged;
    bool need_tunnel;   /* the command redirects: the manager's tunnel must be up */
    int64_t timeout_ms; /* for the container to run and print its ports */
} ephem_opts;

/* EPHEM_* bits of a container's added capabilities (all when privileged). */
unsigned ephem_caps_of(const pod_container *c);

/* Makes sure a suitable manager runs in pod p, waiting (with progress on
 * stderr) until it runs and has printed its ports. err gets an actionable
 * message on failure. */
int ephem_ensure(const kube *k, const pod_info *p, const ephem_opts *o, ephem_manager *out, char *err, size_t errlen);

#endif
