/* kerr — turns kubectl's error output into a message that says what to do.
 *
 * Recognised: RBAC denials (which verb on which resource is missing), Pod
 * Security admission (which profile rejected what, and the way out), missing
 * pods and namespaces, clusters without ephemeral containers, unreachable or unauthorised
 * API servers, a kubelet the API server cannot reach, validation errors, a
 * refused port-forward upgrade.
 * Anything else is passed through. The patterns are a table compiled once. */
#ifndef KDIAG_CLI_KERR_H
#define KDIAG_CLI_KERR_H

#include <stddef.h>

typedef enum {
    KERR_OTHER = 0,
    KERR_RBAC,
    KERR_PODSECURITY,
    KERR_NOT_FOUND,
    KERR_NO_EPHEMERAL,
    KERR_UNREACHABLE,         /* kubectl cannot reach the API server */
    KERR_KUBELET_UNREACHABLE, /* the API server answered; the node's kubelet behind it did not */
    KERR_UNAUTHORIZED,
    KERR_INVALID,
    KERR_CONFLICT,
    KERR_TOO_OLD,
    KERR_UPGRADE, /* port-forward: the API server or a proxy refused the streaming upgrade */
} kerr_kind;

/* what: what was being attempted ("create the debug container in pod/x");
 * ns: the namespace, for the suggested commands. Fills buf (one or more
 * lines, no trailing newline) and returns the kind recognised. */
kerr_kind kerr_explain(const char *what, const char *kubectl_stderr, const char *ns, char *buf, size_t n);

/* The RBAC denial's message: "cannot WHAT: permission denied — user "U" may
 * not 'VERB' the resource "RESOURCE" in namespace "NS"." and the kubectl
 * auth can-i command that checks it ("pods/log" as pods --subresource=log).
 * user NULL: asked ahead with kubectl auth can-i (which does not name the
 * user), before a debug container is added: the message says none was. */
void kerr_denied(const char *what, const char *user, const char *verb, const char *resource, const char *ns,
                 char *buf, size_t n);

/* The flags that say which cluster and who (--kubeconfig, --context and
 * kubectl's connection flags; a token only as "--token=TOKEN"), put into the
 * kubectl commands the messages suggest (a denial's kubectl auth can-i), so
 * that they ask as the command did. Called once, before any thread runs. */
void kerr_set_identity(const char *kubeconfig, const char *context, char *const *conn);
/* Those flags as one string, " --context=C …" ("" when none), for the kubectl
 * commands other messages suggest. */
const char *kerr_identity(void);

#endif
