/* portfwd — one supervised `kubectl port-forward pod/P :GRPC :TUNNEL` child
 * per manager.
 *
 * A supervisor thread owns the child: it parses the "Forwarding from
 * 127.0.0.1:X -> Y" lines, drains kubectl's output, and when the child dies
 * it checks the pod: still running → restart on the same local ports
 * (generation + 1); pod or debug container gone → state GONE with a reason. */
#ifndef KDIAG_CLI_PORTFWD_H
#define KDIAG_CLI_PORTFWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kube.h"

typedef struct portfwd portfwd;

/* Starts the forward and waits until it is up. 0 and *ret, or a negative
 * errno with err saying why. tunnel_port 0 forwards the gRPC port alone. */
int portfwd_new(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                int tunnel_port, int64_t timeout_ms, char *err, size_t errlen);
/* portfwd_new without the wait: portfwd_wait(pf, 0, …) tells when it is up. */
int portfwd_start(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                  int tunnel_port, int64_t timeout_ms, char *err, size_t errlen);
/* portfwd_start whose first generation is a forward another process runs
 * (a kept one, cli/keep.h) on local_grpc and local_tunnel: up at once. When
 * kicked it is left alone and the supervisor runs kubectl port-forward of its
 * own from then on, on ports kubectl picks. */
int portfwd_adopt(portfwd **ret, const kube *k, const char *pod, const char *container, int grpc_port,
                  int tunnel_port, int local_grpc, int local_tunnel, int64_t timeout_ms, char *err, size_t errlen);
/* Waits for a generation newer than `after` (0: any). Returns it (> 0) with
 * the local ports, -ENOENT when the pod is gone (err says why), -ECANCELED
 * after portfwd_cancel, -ETIMEDOUT; err is filled on every failure. */
int portfwd_wait(portfwd *pf, unsigned after, int64_t timeout_ms, int *local_grpc, int *local_tunnel, char *err,
                 size_t errlen);
/* Current generation and ports without waiting (generation 0 while down). */
unsigned portfwd_current(portfwd *pf, int *local_grpc, int *local_tunnel);
/* The current kubectl port-forward's PID (-1 while none or adopted); NULL: -1. */
pid_t portfwd_child_pid(portfwd *pf);
/* Whether the forward is gone because the pod went (deleted, finished or
 * recreated under its name), not only its debug container. */
bool portfwd_pod_went(portfwd *pf);
/* An fd that turns readable once the pod is gone (for poll loops). */
int portfwd_gone_fd(portfwd *pf);
/* Kills the child and makes every portfwd_wait return -ECANCELED; pf stays
 * valid until portfwd_free. */
void portfwd_cancel(portfwd *pf);
/* Cancels, joins the supervisor and frees pf; NULL: nothing. */
void portfwd_free(portfwd *pf);
/* From now on the supervisor tells the user nothing (that the forward ended
 * and restarts, or does not come up): the caller reports its own failure. */
void portfwd_quiet(portfwd *pf);
/* Calls over generation gen fail: kill that child (SIGKILL: one that is
 * stopped or wedged would never act on SIGTERM) so the supervisor checks the
 * pod and restarts it (no-op when gen is not current). */
void portfwd_kick(portfwd *pf, unsigned gen);

#endif
