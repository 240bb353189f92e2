/* pod — the parts of a Pod object (kubectl -o json) that kubectl-diag needs. */
#ifndef KDIAG_CLI_POD_H
#define KDIAG_CLI_POD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { POD_STATE_NONE = 0, POD_STATE_WAITING, POD_STATE_RUNNING, POD_STATE_TERMINATED } pod_state;

/* A container port that has a name (spec.containers[].ports[]). */
typedef struct {
    char *name;
    uint16_t port;
} pod_named_port;

typedef struct {
    char *name;
    char *image;
    char *target; /* ephemeral: targetContainerName */
    char *secret; /* ephemeral: env CONTRACT_SECRET_ENV (a debug container's), or NULL */
    char **caps;  /* securityContext.capabilities.add */
    size_t ncaps;
    bool privileged;
    pod_named_port *ports; /* its named ports (a Service's targetPort may name one) */
    size_t nports;
    /* from the matching status, when there is one */
    bool has_status;
    pod_state state;
    char *reason;   /* waiting/terminated reason */
    char *message;  /* waiting/terminated message */
    char *id;       /* containerID without "<runtime>://" */
    char *started;  /* running.startedAt or terminated.startedAt */
    char *finished; /* terminated.finishedAt */
    int exit_code;
    int restarts;
} pod_container;

#define POD_HOST_IPS_MAX 4

typedef struct {
    char *name;
    char *ns;
    char *phase;
    char *ip;
    char *host_ips[POD_HOST_IPS_MAX]; /* status.hostIPs (else hostIP): the node, source of kubelet probes */
    size_t nhost_ips;
    char *created;     /* metadata.creationTimestamp */
    char *uid;         /* metadata.uid: a pod made again under the same name has another */
    bool deleting;     /* metadata.deletionTimestamp set */
    bool share_pid;    /* spec.shareProcessNamespace */
    bool host_net;     /* spec.hostNetwork: the node's network namespace, not one of its own */
    bool unready;      /* status.conditions: Ready is "False" */
    char *unready_why; /* then its reason and message ("REASON: MESSAGE"), or NULL */
    pod_container *containers;
    size_t ncontainers;
    pod_container *ephemeral;
    size_t nephemeral;
} pod_info;

/* Parses one Pod object. 0 or -EINVAL (not a pod) / -ENOMEM. */
int pod_parse(const json_t *obj, pod_info *p);
int pod_parse_str(const char *json, pod_info *p);
/* Parses a PodList (or a single Pod) into an array. */
int pod_list_parse(const char *json, pod_info **pods, size_t *n);
void pod_free(pod_info *p);
void pod_list_free(pod_info *pods, size_t n);

bool pod_is_running(const pod_info *p);
/* Running, not being deleted, and no Ready condition saying False (a pod
 * without one, as kubesim's, is ready when running). */
bool pod_is_ready(const pod_info *p);
const pod_container *pod_container_find(const pod_info *p, const char *name);
const pod_container *pod_ephemeral_find(const pod_info *p, const char *name);
/* The number of the port called name in one of the pod's containers, or 0. */
uint16_t pod_port_by_name(const pod_info *p, const char *name);
/* Newest (creationTimestamp) pod in phase Running and not being deleted, or NULL. */
const pod_info *pod_newest_running(const pod_info *pods, size_t n);
/* The same among the ready ones (pod_is_ready), or NULL. */
const pod_info *pod_newest_ready(const pod_info *pods, size_t n);
/* Seconds since an RFC 3339 timestamp ("2026-11-25T21:00:00Z"), or -1. */
long pod_age_seconds(const char *rfc3339);
/* "5s", "3m", "2h", "4d" */
void pod_format_age(long secs, char *buf, size_t n);
const char *pod_state_name(pod_state s);

#endif
