#include "kerr.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>

/* Copies submatch i of s into out ("" when absent). */
static void sub(const char *s, const regmatch_t *m, int i, char *out, size_t n)
{
    out[0] = '\0';
    if (m[i].rm_so < 0)
        return;
    size_t len = (size_t)(m[i].rm_eo - m[i].rm_so);
    if (len >= n)
        len = n - 1;
    memcpy(out, s + m[i].rm_so, len);
    out[len] = '\0';
}

static int match(const char *re, const char *s, regmatch_t *m, size_t nm)
{
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED) != 0)
        return 0;
    int ok = regexec(&r, s, nm, m, 0) == 0;
    regfree(&r);
    return ok;
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

kerr_kind kerr_explain(const char *what, const char *e, const char *ns, char *buf, size_t n)
{
    regmatch_t m[8];
    char a[256], b[256], c[256], d[512];
    const char *nsv = ns && *ns ? ns : "default";
    if (!e)
        e = "";

    if (match("User \"([^\"]*)\" cannot ([a-z]+) resource \"([^\"]+)\"", e, m, 8)) {
        sub(e, m, 1, a, sizeof(a));
        sub(e, m, 2, b, sizeof(b));
        sub(e, m, 3, c, sizeof(c));
        snprintf(buf, n,
                 "cannot %s: permission denied — user \"%s\" may not '%s' the resource \"%s\" in namespace \"%s\".\n"
                 "Ask a cluster administrator for a Role granting verb \"%s\" on \"%s\" (check with: kubectl auth "
                 "can-i %s %s -n %s).",
                 what, a, b, c, nsv, b, c, b, c, nsv);
        return KERR_RBAC;
    }
    if (match("violates PodSecurity \"([a-z]+):?([^\"]*)\": ?([^\n]*)", e, m, 8)) {
        sub(e, m, 1, a, sizeof(a));
        sub(e, m, 3, d, sizeof(d));
        snprintf(buf, n,
                 "cannot %s: namespace \"%s\" enforces the Pod Security \"%s\" profile, which rejects the debug "
                 "container (%s).\n"
                 "The debug container needs added capabilities (and --privileged needs more). Use a namespace "
                 "whose profile allows it, or ask an administrator to relax it, e.g.: kubectl label namespace %s "
                 "pod-security.kubernetes.io/enforce=privileged --overwrite",
                 what, nsv, a, d, nsv);
        return KERR_PODSECURITY;
    }
    if (match("(the server could not find the requested resource|unknown subresource|"
              "ephemeralcontainers[^\n]*not found|404 page not found)",
              e, m, 2) &&
        strstr(what, "debug container")) {
        snprintf(buf, n,
                 "cannot %s: this cluster does not serve pods/ephemeralcontainers. kubectl diag needs "
                 "Kubernetes 1.23 or newer with ephemeral containers enabled (EphemeralContainers feature gate).",
                 what);
        return KERR_NO_EPHEMERAL;
    }
    if (match("(pods?|Pod) \"([^\"]+)\" not found", e, m, 3)) {
        sub(e, m, 2, a, sizeof(a));
        snprintf(buf, n,
                 "cannot %s: pod \"%s\" not found in namespace \"%s\". List pods with: kubectl get pods -n %s",
                 what, a, nsv, nsv);
        return KERR_NOT_FOUND;
    }
    if (match("(Unable to connect to the server|connection refused|no such host|i/o timeout|"
              "dial tcp|The connection to the server [^ ]+ was refused)",
              e, m, 2)) {
        last_line(e, d, sizeof(d));
        snprintf(buf, n,
                 "cannot %s: the cluster is not reachable (%s).\nCheck KUBECONFIG, --kubeconfig and --context "
                 "(kubectl config current-context).",
                 what, d);
        return KERR_UNREACHABLE;
    }
    if (match("(You must be logged in|Unauthorized|the server has asked for the client to provide credentials)",
              e, m, 2)) {
        snprintf(buf, n,
                 "cannot %s: the cluster rejected your credentials. Log in again or check the user of "
                 "your kubeconfig context.",
                 what);
        return KERR_UNAUTHORIZED;
    }
    if (match("the object has been modified|Operation cannot be fulfilled", e, m, 1)) {
        snprintf(buf, n, "cannot %s: the pod changed while it was being updated; try again.", what);
        return KERR_CONFLICT;
    }
    if (match("unknown flag|unknown command|unknown shorthand flag", e, m, 1)) {
        first_line(e, d, sizeof(d));
        snprintf(buf, n,
                 "cannot %s: kubectl does not understand a flag kubectl diag uses (%s). Install kubectl 1.23 or "
                 "newer, or point --kubectl / $KUBECTL at one.",
                 what, d);
        return KERR_TOO_OLD;
    }
    if (match("is invalid:", e, m, 1)) {
        /* keep kubectl's "* field: message" lines, they are precise */
        snprintf(buf, n, "cannot %s: the API server rejected the change:\n%.*s", what,
                 (int)strcspn(e, "") - (e[strlen(e) - 1] == '\n' ? 1 : 0), e);
        return KERR_INVALID;
    }
    first_line(e, d, sizeof(d));
    snprintf(buf, n, "cannot %s: %s", what, *d ? d : "kubectl failed without a message");
    return KERR_OTHER;
}
