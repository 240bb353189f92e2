/* keep — a port-forward kept for the next commands (--keep-forward DURATION,
 * $KDIAG_KEEP_FORWARD; off by default).
 *
 * Each command otherwise starts its own `kubectl port-forward`, which reads
 * the pod and upgrades a connection to the API server before it listens:
 * round trips that dominate a short command when the API server is far away
 * (bench/README.md). With a keep duration, a command that opened a session
 * to a named pod starts a keeper as it ends: a background process (the
 * hidden command `__keep`, in a session of its own, stdin/stdout/stderr on
 * /dev/null) that runs its own forward (cli/portfwd.h) to the same debug
 * container and ends it once no command used it for the keep duration, or
 * as soon as it ends by itself (pod gone). The next command that names the
 * pod with the same key takes that forward instead of starting one, and
 * still proves the manager with Hello before it sends the token
 * (docs/contract.md, "Kept forwards"). The keeper also holds a spare
 * connection through its forward, made ahead, and hands it to the next
 * command (keep_spare).
 *
 * The keeper's file sits beside the pod's session record (record + ".fwd",
 * 0600): the record's key, then "KEEPER_PID" alone while its kubectl starts,
 * then "KEEPER_PID KUBECTL_PID CONTAINER GRPC
 * TUNNEL LOCAL_GRPC LOCAL_TUNNEL KUBECONFIG_STAMP KEEP_MS" (the kubeconfig
 * files' device, inode, mtime and size when the keeper started: a command
 * does not take a forward started before they changed, and ends it; the
 * duration, for `kubectl diag forwards`). The keeper holds an OFD lock on its
 * first byte for its life (what tells a live keeper's file from a killed
 * one's, zombie or not). A command holds a shared flock on it while
 * it uses the forward and sets its mtime (the last use) when it lets go; the
 * keeper ends the forward only under an exclusive lock, and unlinks the file
 * first. Told to end (SIGTERM, SIGINT, SIGHUP, or its file unlinked), it
 * unlinks the file at once (no command takes the forward from then on) and
 * ends the forward once the commands that hold it let go. */
#ifndef KDIAG_CLI_KEEP_H
#define KDIAG_CLI_KEEP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kube.h"

#define KEEP_MAX_MS (24LL * 3600 * 1000) /* --keep-forward at most a day */

typedef struct {
    int fd;     /* the keeper's file, shared-locked; -1: none held */
    int keeper; /* its PID */
    int lgrpc, ltunnel;
} keep_lease;

#define KEEP_LEASE_NONE ((keep_lease){.fd = -1})

/* A kept forward to container's ports grpc and tunnel in pod (under k's
 * key): true and *l holds it, or false (none, busy starting, another
 * container or ports, its keeper gone). */
bool keep_take(const kube *k, const char *pod, const char *container, int grpc, int tunnel, keep_lease *l);
/* The keeper's spare connection to its local gRPC port (made ahead: its
 * streams through kubectl and the manager's accept are done), which is the
 * caller's from then on; -1 when it has none ready (make your own). Only
 * the keeper l's lock proves alive hands one out (SO_PEERCRED). */
int keep_spare(const keep_lease *l);
/* Marks the kept forward used now and lets go of it; no-op without one. */
void keep_release(keep_lease *l);
/* Lets go of a kept forward that did not work (no answer through it, or
 * another manager behind it) and tells its keeper to end (SIGTERM), so that
 * the next command does not take it again and a new keeper can start; no-op
 * without one. */
void keep_discard(keep_lease *l);
/* Starts a keeper for pod in the background, unless one runs; failures are
 * silent (the next command starts its own forward). */
void keep_start(const kube *k, const char *pod, const char *container, int grpc, int tunnel, int64_t keep_ms);
/* The keeper: `kubectl-diag __keep KEEP_MS POD CONTAINER GRPC TUNNEL
 * KUBECTL KUBECONFIG CONTEXT NAMESPACE` ("" for an unset one: KEEP_ARGC
 * words), then kubectl's connection flags as the command had them
 * (--as=…). Exit code 0 when it ended the forward or the forward ended, 1
 * when it could not start, 2 on bad arguments. */
#define KEEP_ARGC 11
int keep_main(int argc, char **argv);
/* `kubectl diag forwards [--stop] [pod/NAME] [-n NS] [--context CTX]`: the
 * kept forwards under the cache directory whose keeper lives (of any
 * kubeconfig; only those to pod when not NULL, in k->ns (the pod's
 * namespace; with pod and no k->ns, the current context's, as kubectl
 * takes pod/NAME) and started with --context k->context when set), as a table
 * on out; with stop,
 * each keeper is sent SIGTERM and waited for (it ends its kubectl first),
 * unless a command uses its forward: that one is no longer offered and ends
 * with the last command using it (said on out). 0, or -errno with err
 * filled: -ETIMEDOUT when a keeper did not end, -ENOENT when stop narrows
 * to none. */
int keep_forwards(FILE *out, const kube *k, const char *pod, bool stop, char *err, size_t errlen);

#endif
