/* session — what a command that talks to the manager needs: the pod, its
 * target container, a running manager and (optionally) the port-forward. */
#ifndef KDIAG_CLI_SESSION_H
#define KDIAG_CLI_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ephem.h"
#include "keep.h"
#include "flags.h"
#include "kube.h"
#include "pod.h"
#include "portfwd.h"
#include "rpc.h"

typedef struct {
    const char *pod;      /* --pod / pod/NAME, or NULL */
    const char *selector; /* -l, or NULL */
    const char *workload; /* deploy/NAME …, canonical "deployment/NAME" (podsel_workload_ref), or NULL */
    pod_info *pod_read;   /* the Running pod as just read (a watch's event), or NULL: session_open takes it over */
    const char *target;   /* -t, or NULL: first container */
    const char *image;
    const char *pull_policy;
    bool privileged;
    ephem_profile profile; /* what a new debug container gets */
    bool new_container;    /* may add one when the pod's lacks what is needed */
    int max_ended; /* adds none to a pod with this many of ours at the target ended (ephem_opts); 0: no limit */
    long ended_window_s; /* ... that ended within this many seconds (ephem_opts) */
    const char *command; /* for messages */
    int64_t timeout_ms;
    unsigned caps;       /* EPHEM_* the manager must have (EPHEM_CAPS_<command>) */
    unsigned extra_caps; /* EPHEM_* a later step needs: a new debug container gets them too */
    bool forward;        /* start the port-forward */
    bool tunnel;         /* the command redirects: wait for the manager's tunnel (a hostNetwork pod is refused) */
    int64_t keep_ms;     /* --keep-forward: keep the forward for later commands (cli/keep.h); 0: no */
    bool quick;          /* a named pod may be reached through the remembered session alone (s->pod then
                 * has only the name, namespace and share_pid) */
    /* The command's own check of the pod as read, before a debug container
     * is added to it (redir: that its ports are there), or NULL; a -errno
     * and err refuse the pod. Not run on the quick path. */
    int (*check)(void *ud, const pod_info *p, char *err, size_t errlen);
    void *check_ud;
} session_opts;

typedef struct {
    kube k;
    pod_info pod;
    char target[256];    /* target container name */
    char target_id[256]; /* its container id ("" when unknown) */
    ephem_manager mgr;
    portfwd *pf;
    rpc_client *client;  /* the remembered session's, with the token once Hello proved the secret */
    unsigned client_gen; /* the forward's generation it went over */
    int64_t timeout_ms;
    keep_lease lease; /* the kept forward s->pf adopted, or none */
    int64_t keep_ms;  /* > 0: session_close starts a keeper when none runs (cli/keep.h) */
    kube keep_k;      /* the key's kube (the flags as given, not the pod's namespace) */
} session;

/* A session not opened (yet), which session_close leaves alone. */
#define SESSION_NONE ((session){.lease = KEEP_LEASE_NONE})

/* Resolves the pod and target, ensures the manager, starts the forward.
 * On failure err holds the message for the user. */
/* The options the global flags give, with what the command needs. */
session_opts session_opts_from_flags(const flags *f, unsigned caps, bool forward);
int session_open(const kube *k, const session_opts *o, session *s, char *err, size_t errlen);
void session_close(session *s);
/* A gRPC client for the forward's current generation (*gen): 0, or
 * -ENOTCONN when the forward is down (another -errno when the client cannot
 * be made), err saying so. Caller frees *ret with rpc_client_free. */
int session_client(session *s, rpc_client **ret, unsigned *gen, char *err, size_t errlen);
/* A call over generation gen broke (UNAVAILABLE): did the pod or its debug
 * container go? Restarts the forward, which checks the pod: -ENOENT with the
 * forward's word in why (and portfwd_pod_went tells which went), or 0 when
 * it came back within wait_ms or could not tell (the failure is the call's).
 * The forward says nothing to the user from then on (portfwd_quiet): the
 * caller reports the lost call. */
int session_gone(session *s, unsigned gen, int64_t wait_ms, char *why, size_t whylen);
#define SESSION_GONE_WAIT_MS 5000 /* enough for kubectl port-forward to end and the pod check */
/* A gRPC client to the manager through the forward's local port lport (as
 * portfwd_wait gives it): 0 or -errno, *ret NULL then. */
int session_client_at(const session *s, int lport, rpc_client **ret);

#endif
