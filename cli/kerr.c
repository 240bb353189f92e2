#include "kerr.h"

#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* What a rule's message is made from: the action, kubectl's stderr, the
 * namespace (NULL when the command named none: the context's) and the regex's submatches. */
struct kctx {
    const char *what;
    const char *e;
    const char *ns;
    const regmatch_t *m;
};

/* Copies submatch i of the stderr into out ("" when absent). */
static const char *sub(const struct kctx *c, int i, char *out, size_t n)
{
    out[0] = '\0';
    if (c->m[i].rm_so < 0)
        return out;
    size_t len = (size_t)(c->m[i].rm_eo - c->m[i].rm_so);
    if (len >= n)
        len = n - 1;
    memcpy(out, c->e + c->m[i].rm_so, len);
    out[len] = '\0';
    return out;
}

static void first_line(const char *s, char *out, size_t n)
{
    while (*s == '\n' || *s == ' ')
        s++;
    if (strncmp(s, "error: ", 7) == 0)
        s += 7;
    size_t len = strcspn(s, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

/* kubectl's summary comes last, after klog lines ("E1125 ... memcache.go ..."). */
static void last_line(const char *s, char *out, size_t n)
{
    const char *end = s + strlen(s);
    while (end > s && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > s && start[-1] != '\n')
        start--;
    char tmp[1024];
    size_t len = (size_t)(end - start) < sizeof(tmp) - 1 ? (size_t)(end - start) : sizeof(tmp) - 1;
    memcpy(tmp, start, len);
    tmp[len] = '\0';
    first_line(tmp, out, n);
}

/* " --context=C --user=U": the flags of kerr_set_identity, for the kubectl
 * commands the messages suggest (set once, before any thread runs). */
static char identity[1024];

const char *kerr_identity(void)
{
    return identity;
}

/* "namespace "x"", or the context's when the command named none. */
static const char *ns_words(const char *ns, char *buf, size_t n)
{
    if (ns)
        snprintf(buf, n, "namespace \"%s\"", ns);
    else
        snprintf(buf, n, "the current namespace");
    return buf;
}

/* " -n x" for the suggested commands, "" when the command named none. */
static const char *ns_flag(const char *ns, char *buf, size_t n)
{
    if (ns)
        snprintf(buf, n, " -n %s", ns);
    else
        buf[0] = '\0';
    return buf;
}


void kerr_set_identity(const char *kubeconfig, const char *context, char *const *conn)
{
    size_t used = 0;
    const char *v[] = {kubeconfig, context};
    const char *names[] = {"--kubeconfig", "--context"};
    identity[0] = '\0';
    for (int i = 0; i < 2; i++)
        if (v[i] && *v[i] && used < sizeof identity)
            used += (size_t)snprintf(identity + used, sizeof identity - used, " %s=%s", names[i], v[i]);
    for (size_t i = 0; conn && conn[i] && used < sizeof identity; i++) /* the token is the user's to fill in */
        used += (size_t)snprintf(identity + used, sizeof identity - used, " %s",
                                 strncmp(conn[i], "--token=", 8) == 0 ? "--token=TOKEN" : conn[i]);
    if (used >= sizeof identity)
        identity[0] = '\0'; /* a check cut short would ask about someone else */
}

/* kerr_denied; cluster: denied at the cluster scope (list -A), where a Role of
 * one namespace does not reach. */
static void denied(const char *what, const char *user, const char *verb, const char *resource, const char *ns,
                   bool cluster, char *buf, size_t n)
{
    char in[300], flag[300];
    /* can-i reads "pods/portforward" as the pod named "portforward" */
    char check[320];
    const char *slash = strchr(resource, '/');
    if (slash)
        snprintf(check, sizeof(check), "%.*s --subresource=%s", (int)(slash - resource), resource, slash + 1);
    else
        snprintf(check, sizeof(check), "%s", resource);
    char who[300];
    if (user)
        snprintf(who, sizeof(who), "user \"%s\" may not", user);
    else
        snprintf(who, sizeof(who), "you may not");
    snprintf(buf, n,
             "cannot %s: permission denied — %s '%s' the resource \"%s\" in %s%s.\n"
             "Ask a cluster administrator for a %s granting verb \"%s\" on \"%s\" (check with: kubectl auth "
             "can-i %s %s%s%s)%s.",
             what, who, verb, resource,
             cluster ? "all namespaces (at the cluster scope)" : ns_words(ns, in, sizeof(in)),
             user ? "" : ", so no debug container was added", cluster ? "ClusterRole" : "Role", verb, resource,
             verb, check, identity, cluster ? " -A" : ns_flag(ns, flag, sizeof(flag)),
             cluster ? ", or name one namespace with -n instead of -A" : "");
}

void kerr_denied(const char *what, const char *user, const char *verb, const char *resource, const char *ns,
                 char *buf, size_t n)
{
    denied(what, user, verb, resource, ns, false, buf, n);
}

static void say_rbac(const struct kctx *c, char *buf, size_t n)
{
    char user[256], verb[64], res[256];
    sub(c, 1, user, sizeof(user));
    sub(c, 2, verb, sizeof(verb));
    sub(c, 3, res, sizeof(res));
    /* kubectl names the namespace ("... in the namespace "team"") */
    char ns[256];
    const char *at = strstr(c->e, "in the namespace \"");
    if (at && sscanf(at, "in the namespace \"%255[^\"]\"", ns) == 1)
        kerr_denied(c->what, user, verb, res, ns, buf, n);
    else
        denied(c->what, user, verb, res, c->ns, strstr(c->e, "at the cluster scope") != NULL, buf, n);
}

static void say_podsecurity(const struct kctx *c, char *buf, size_t n)
{
    char level[64], detail[512], in[300];
    sub(c, 1, level, sizeof(level));
    sub(c, 3, detail, sizeof(detail));
    snprintf(buf, n,
             "cannot %s: %s enforces the Pod Security \"%s\" profile, which rejects the debug "
             "container (%s).\n"
             "The debug container needs added capabilities (and --privileged needs more; capture and logs work "
             "with --profile baseline). Use a namespace "
             "whose profile allows it, or ask an administrator to relax it, e.g.: kubectl label namespace %s "
             "pod-security.kubernetes.io/enforce=privileged --overwrite",
             c->what, ns_words(c->ns, in, sizeof(in)), level, detail, c->ns ? c->ns : "NAMESPACE");
}

static void say_no_ephemeral(const struct kctx *c, char *buf, size_t n)
{
    snprintf(buf, n,
             "cannot %s: this cluster does not serve pods/ephemeralcontainers. kubectl diag needs "
             "Kubernetes 1.23 or newer with ephemeral containers enabled (EphemeralContainers feature gate).",
             c->what);
}

static void say_not_found(const struct kctx *c, char *buf, size_t n)
{
    char pod[256], in[300], flag[300];
    snprintf(buf, n, "cannot %s: pod \"%s\" not found in %s. List pods with: kubectl get pods%s%s", c->what,
             sub(c, 2, pod, sizeof(pod)), ns_words(c->ns, in, sizeof(in)), identity,
             ns_flag(c->ns, flag, sizeof(flag)));
}

/* kubectl asks for the namespace after a 404 and says it is missing */
static void say_no_namespace(const struct kctx *c, char *buf, size_t n)
{
    char ns[256];
    snprintf(buf, n, "cannot %s: namespace \"%s\" does not exist. List namespaces with: kubectl get namespaces%s",
             c->what, sub(c, 1, ns, sizeof(ns)), identity);
}

static void say_object_not_found(const struct kctx *c, char *buf, size_t n)
{
    char res[64], name[256], in[300], flag[300];
    sub(c, 1, res, sizeof(res));
    snprintf(buf, n, "cannot %s: %s \"%s\" not found in %s. List them with: kubectl get %s%s%s", c->what, res,
             sub(c, 2, name, sizeof(name)), ns_words(c->ns, in, sizeof(in)), res, identity,
             ns_flag(c->ns, flag, sizeof(flag)));
}

/* The API server answered, but could not reach the kubelet of the pod's node
 * (logs, exec and port-forward go through it). */
static void say_kubelet_unreachable(const struct kctx *c, char *buf, size_t n)
{
    char addr[128], why[256];
    sub(c, 2, addr, sizeof(addr));
    sub(c, 3, why, sizeof(why));
    snprintf(buf, n,
             "cannot %s: the API server answered, but it cannot reach the kubelet of the pod's node at %s (%s).\n"
             "The cluster is reachable; the node is not, from the control plane: check the node (kubectl get "
             "nodes) and that the API server may connect to the kubelet port on it.",
             c->what, addr, why);
}

static void say_unreachable(const struct kctx *c, char *buf, size_t n)
{
    char last[512];
    last_line(c->e, last, sizeof(last));
    snprintf(buf, n,
             "cannot %s: the cluster is not reachable (%s).\nCheck KUBECONFIG, --kubeconfig and --context "
             "(kubectl config current-context).",
             c->what, last);
}

static void say_unauthorized(const struct kctx *c, char *buf, size_t n)
{
    snprintf(buf, n,
             "cannot %s: the cluster rejected your credentials. Log in again or check the user of "
             "your kubeconfig context.",
             c->what);
}

static void say_conflict(const struct kctx *c, char *buf, size_t n)
{
    snprintf(buf, n, "cannot %s: the pod changed while it was being updated; try again.", c->what);
}

static void say_too_old(const struct kctx *c, char *buf, size_t n)
{
    char first[512];
    first_line(c->e, first, sizeof(first));
    snprintf(buf, n,
             "cannot %s: kubectl does not understand a flag kubectl diag uses (%s). Install kubectl 1.23 or "
             "newer, or point --kubectl / $KUBECTL at one.",
             c->what, first);
}

static void say_upgrade(const struct kctx *c, char *buf, size_t n)
{
    char first[512];
    first_line(c->e, first, sizeof(first));
    snprintf(buf, n,
             "cannot %s: %s (the API server, or a proxy in front of it, refused the protocol; kubectl diag "
             "tries SPDY, then WebSockets, unless KUBECTL_PORT_FORWARD_WEBSOCKETS is set; WebSockets need "
             "kubectl 1.30 or newer)",
             c->what, first);
}

/* kubectl's "* field: message" lines are precise: keep them. */
static void say_invalid(const struct kctx *c, char *buf, size_t n)
{
    size_t len = strlen(c->e);
    if (len && c->e[len - 1] == '\n')
        len--;
    snprintf(buf, n, "cannot %s: the API server rejected the change:\n%.*s", c->what, (int)len, c->e);
}

struct rule {
    const char *re;
    kerr_kind kind;
    const char *only_for; /* NULL, or a word `what` must contain */
    void (*say)(const struct kctx *c, char *buf, size_t n);
};

/* Tried in order; the first match decides. The kubelet rule precedes the
 * unreachable one: both carry "dial tcp ... i/o timeout". */
static const struct rule rules[] = {
    {"User \"([^\"]*)\" cannot ([a-z]+) resource \"([^\"]+)\"", KERR_RBAC, NULL, say_rbac},
    {"violates PodSecurity \"([a-z]+):?([^\"]*)\": ?([^\n]*)", KERR_PODSECURITY, NULL, say_podsecurity},
    {"(the server could not find the requested resource|unknown subresource|"
     "ephemeralcontainers[^\n]*not found|404 page not found)",
     KERR_NO_EPHEMERAL, "debug container", say_no_ephemeral},
    {"(pods?|Pod) \"([^\"]+)\" not found", KERR_NOT_FOUND, NULL, say_not_found},
    {"namespaces \"([^\"]+)\" not found", KERR_NOT_FOUND, NULL, say_no_namespace},
    {"(deployments\\.apps|statefulsets\\.apps|replicasets\\.apps|services) \"([^\"]+)\" not found", KERR_NOT_FOUND,
     NULL, say_object_not_found},
    {"(error dialing backend|/containerLogs/)[^\n]*dial tcp ([^ \n]+): ([^\n]*)", KERR_KUBELET_UNREACHABLE, NULL,
     say_kubelet_unreachable},
    {"(Unable to connect to the server|connection refused|no such host|i/o timeout|"
     "dial tcp|The connection to the server [^ ]+ was refused)",
     KERR_UNREACHABLE, NULL, say_unreachable},
    {"(You must be logged in|Unauthorized|the server has asked for the client to provide credentials)",
     KERR_UNAUTHORIZED, NULL, say_unauthorized},
    {"the object has been modified|Operation cannot be fulfilled", KERR_CONFLICT, NULL, say_conflict},
    {"unknown flag|unknown command|unknown shorthand flag", KERR_TOO_OLD, NULL, say_too_old},
    {"error upgrading connection", KERR_UPGRADE, "port-forward", say_upgrade},
    {"is invalid:", KERR_INVALID, NULL, say_invalid},
};

#define NRULES (sizeof(rules) / sizeof(rules[0]))
#define MAX_SUB 4 /* the most groups any rule has, plus the whole match */

static regex_t compiled[NRULES];
static bool compiled_ok[NRULES];
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;

static void compile_rules(void)
{
    for (size_t i = 0; i < NRULES; i++)
        compiled_ok[i] = regcomp(&compiled[i], rules[i].re, REG_EXTENDED) == 0;
}

kerr_kind kerr_explain(const char *what, const char *e, const char *ns, char *buf, size_t n)
{
    regmatch_t m[MAX_SUB];
    struct kctx c = {what, e ? e : "", ns && *ns ? ns : NULL, m};
    pthread_once(&compile_once, compile_rules);
    for (size_t i = 0; i < NRULES; i++) {
        if (!compiled_ok[i] || (rules[i].only_for && !strstr(what, rules[i].only_for)))
            continue;
        if (regexec(&compiled[i], c.e, MAX_SUB, m, 0) != 0)
            continue;
        rules[i].say(&c, buf, n);
        return rules[i].kind;
    }
    char first[512];
    first_line(c.e, first, sizeof(first));
    snprintf(buf, n, "cannot %s: %s", what, *first ? first : "kubectl failed without a message");
    return KERR_OTHER;
}
