/* ephem — the debug (ephemeral) container that runs kdiag-manager in a pod.
 *
 * One per pod (and target, image, version): ephemeral containers can be
 * neither changed nor removed, so every command reuses the pod's running (else
 * starting) one — the oldest running one that has what the command needs.
 * The first gets the capabilities of its --profile (default general: what
 * every command needs). When the pod's containers lack what a command needs,
 * the command fails with a message that names the missing capabilities and
 * the fix, unless --new-container asks for another one (name -2, -3, ...; the
 * union of the capabilities of the ones it supersedes and the profile's).
 * Created with `kubectl get --raw …/ephemeralcontainers` + `kubectl replace
 * --raw … -f -`, which works on every kubectl from 1.23 (patch --subresource
 * needs 1.32); on a conflict (another run changed the pod) the plan is made
 * again on the fresh pod, so a container that run just added is reused.
 *
 * Each container gets a random secret in its environment (CONTRACT_SECRET_ENV);
 * its manager's start-up lines are accepted only with a proof of that secret
 * (api/contract.h), so lines a workload writes into the log are never taken.
 * Containers without a secret (none in their spec) are not ours to talk to:
 * they are neither reused nor counted, so a pod holding only such a container
 * gets one of ours beside it. */
#ifndef KDIAG_CLI_EPHEM_H
#define KDIAG_CLI_EPHEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contract.h"
#include "kube.h"
#include "pod.h"

/* Capabilities a debug container can be given, one bit each; their names
 * (NET_ADMIN, ...) come from ephem_caps_format. */
enum {
    EPHEM_NET_ADMIN = 1u << 0,
    EPHEM_SYS_PTRACE = 1u << 1,
    EPHEM_SYS_ADMIN = 1u << 2,
    EPHEM_SYS_CHROOT = 1u << 3,
    EPHEM_NET_RAW = 1u << 4,
    EPHEM_SETUID = 1u << 5,
    EPHEM_SETGID = 1u << 6,
    EPHEM_KILL = 1u << 7,
    EPHEM_DAC_OVERRIDE = 1u << 8,
    EPHEM_DAC_READ_SEARCH = 1u << 9,
    EPHEM_CHOWN = 1u << 10,
    EPHEM_FOWNER = 1u << 11,
    EPHEM_FSETID = 1u << 12,
    EPHEM_MKNOD = 1u << 13,
    EPHEM_NCAPS = 14,
    EPHEM_CAPS_ALL = (1u << EPHEM_NCAPS) - 1,
    /* containerd's default set (as far as these bits go): every container
     * has them unless it drops them; Pod Security baseline allows adding all
     * of them but NET_RAW */
    EPHEM_CAPS_RUNTIME_DEFAULT = EPHEM_NET_RAW | EPHEM_CHOWN | EPHEM_DAC_OVERRIDE | EPHEM_FOWNER | EPHEM_FSETID |
                                 EPHEM_KILL | EPHEM_SETGID | EPHEM_SETUID | EPHEM_SYS_CHROOT | EPHEM_MKNOD,
    /* what Pod Security baseline lets a container add */
    EPHEM_CAPS_BASELINE = EPHEM_CAPS_RUNTIME_DEFAULT & ~EPHEM_NET_RAW,
};

/* What each command needs of the debug container: the one table (README's
 * "Capabilities" says why). Commands pass their row to session_opts.caps. */
enum {
    /* other processes' /proc/PID/fd and sockets */
    EPHEM_CAPS_PS = EPHEM_SYS_PTRACE,
    /* nftables rules in the pod's network namespace */
    EPHEM_CAPS_REDIR = EPHEM_NET_ADMIN,
    /* the target's namespaces (setns) and root (chroot), via /proc/PID */
    EPHEM_CAPS_SHELL = EPHEM_SYS_PTRACE | EPHEM_SYS_ADMIN | EPHEM_SYS_CHROOT,
    /* as shell, plus the target's user and signals to what it runs */
    EPHEM_CAPS_EXEC = EPHEM_CAPS_SHELL | EPHEM_SETUID | EPHEM_SETGID | EPHEM_KILL,
    /* the target's /proc/PID/root (nothing joined or chrooted), files of any
     * owner read and written, owners, modes and set-id bits kept (docs/cp.md) */
    EPHEM_CAPS_CP = EPHEM_SYS_PTRACE | EPHEM_DAC_OVERRIDE | EPHEM_DAC_READ_SEARCH | EPHEM_CHOWN | EPHEM_FOWNER |
                    EPHEM_FSETID,
    /* AF_PACKET sockets */
    EPHEM_CAPS_CAPTURE = EPHEM_NET_RAW,
    /* kubectl logs only: no debug container */
    EPHEM_CAPS_LOGS = 0,
    /* every command: the default profile's set (--profile general) */
    EPHEM_CAPS_GENERAL = EPHEM_CAPS_PS | EPHEM_CAPS_REDIR | EPHEM_CAPS_SHELL | EPHEM_CAPS_EXEC | EPHEM_CAPS_CP |
                         EPHEM_CAPS_CAPTURE | EPHEM_CAPS_LOGS,
};

/* --profile: what a new debug container gets (README: "Profiles"). */
typedef enum {
    EPHEM_PROFILE_GENERAL = 0, /* EPHEM_CAPS_GENERAL: every command */
    EPHEM_PROFILE_NETADMIN,    /* NET_ADMIN, NET_RAW: redir, capture */
    EPHEM_PROFILE_BASELINE,    /* only what Pod Security baseline allows */
    EPHEM_PROFILE_RESTRICTED,  /* only what the command needs beyond the runtime's default set */
    EPHEM_PROFILE_SYSADMIN,    /* privileged (= --privileged) */
} ephem_profile;

/* 0 and *out for a profile name; -EINVAL for another. */
int ephem_profile_parse(const char *name, ephem_profile *out);
/* The name of profile p; NULL past the last (for listing them). */
const char *ephem_profile_name(unsigned p);

typedef struct {
    char container[64];
    int grpc_port;
    int tunnel_port; /* 0: this manager has no tunnel (redirect unavailable) */
    char token[CONTRACT_TOKEN_HEX_LEN + 1];
    char secret[CONTRACT_SECRET_HEX_LEN + 1]; /* of its spec, which its start-up lines proved */
    unsigned caps;                            /* EPHEM_* it has, the runtime's default set included */
    bool privileged;
} ephem_manager;

typedef struct {
    const char *version; /* names the container */
    const char *image;
    const char *pull_policy; /* NULL: the cluster's default */
    const char *target;      /* targetContainerName */
    const char *command;     /* for messages: "redir" */
    unsigned caps;           /* EPHEM_* the command needs */
    unsigned extra_caps; /* EPHEM_* a new container also gets under the restricted profile (a later step needs them) */
    ephem_profile profile; /* what a new container gets */
    bool privileged;       /* needs a privileged container (--privileged, --profile sysadmin) */
    bool new_container;    /* add one when the pod's lack what the command needs */
    int max_ended; /* add none to a pod that has this many of ours at target that ended (-EMLINK); 0: no limit */
    long ended_window_s; /* max_ended counts those that ended (finishedAt) within this many seconds */
    bool need_tunnel;    /* the command redirects: the manager's tunnel must be up */
    bool need_forward;   /* the command port-forwards to the manager: asked before a container is added */
    int64_t timeout_ms;  /* for the container to run and print its ports */
    kube_proc *prefetch; /* ephem_log_prefetch's, or NULL: ephem_ensure finishes it when it is of use; the
                            * caller abandons it (kube_abandon) in any case */
} ephem_opts;

/* EPHEM_* bits of a container's added capabilities (all when privileged). */
unsigned ephem_caps_of(const pod_container *c);
/* Whether container c has caps: added, or in the runtime's default set. */
bool ephem_container_has(const pod_container *c, unsigned caps);
/* "NET_ADMIN, SYS_PTRACE": the names of the bits in caps, in bit order. */
void ephem_caps_format(unsigned caps, char *out, size_t n);

/* What the names of kubectl diag's debug containers start with. */
#define EPHEM_NAME_PREFIX "dbg-tools-"
/* EPHEM_NAME_PREFIX + 8 hex of FNV-1a(version CONTRACT_REVISION_TAG): the
 * name of a pod's first debug container. */
void ephem_base_name(const char *version, char *out, size_t n);
/* Seconds until pod p's target container has run window_s without a
 * restart and the last of our debug containers at it ended window_s ago
 * (then none of them counts against max_ended): 0 when that holds now, -1
 * while target is not running (no time can be told). */
long ephem_ended_wait(const pod_info *p, const char *version, const char *target, long window_s);
/* Starts reading the log of the debug container pod most likely has (the
 * base name for version) before the pod is read, so that the two kubectl
 * calls overlap. 0, or as kube_start. */
int ephem_log_prefetch(const kube *k, const char *pod, const char *version, kube_proc *p);
/* Makes sure a suitable manager runs in pod p, waiting (with progress on
 * stderr) until it runs and has printed its ports. err gets an actionable
 * message on failure: -EPERM when the pod's debug container lacks what the
 * command needs (or the profile does not give it). */
int ephem_ensure(const kube *k, const pod_info *p, const ephem_opts *o, ephem_manager *out, char *err, size_t errlen);

#endif
