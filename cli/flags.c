#include "flags-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "ephem.h"
#include "keep.h"
#include "podsel.h"

#ifndef KDIAG_DEFAULT_IMAGE
#define KDIAG_DEFAULT_IMAGE "ghcr.io/kdiag-c/kdiag-manager:0.1.0"
#endif

/* Which commands a flag belongs to (bit per flags_cmd); 0 = global. */
#define ONLY(c) (1u << (c))

enum opt_id {
    O_NS,
    O_CONTEXT,
    O_KUBECONFIG,
    O_LABELS,
    O_POD,
    O_TARGET,
    O_IMAGE,
    O_PULL,
    O_KUBECTL,
    O_TIMEOUT,
    O_VERBOSE,
    O_HELP,
    O_NOCOLOR,
    O_PRIV,
    O_PROFILE,
    O_NEWCTR,
    O_OUTGOING,
    O_OUTPUT,
    O_ALL,
    O_CONTAINER,
    O_DRAIN,
    O_INC_PROBES,
    O_INC_LOOPBACK,
    O_IFACE,
    O_FILTER,
    O_SNAPLEN,
    O_COUNT,
    O_DURATION,
    O_WRITE,
    O_STDIN,
    O_TTY,
    O_TOOLS,
    O_ALL_PODS,
    O_FORMAT,
    O_KEEP,
    O_STOP,
    O_FOLLOW,
    O_ALL_NS,
    O_TAIL,
    O_SINCE,
    O_CONN, /* kubectl's own: passed to every kubectl run (flags.conn) */
};

struct opt {
    enum opt_id id;
    const char *lng;
    char shrt;
    bool arg;
    unsigned only;
};

static const struct opt opts[] = {
    {O_NS, "namespace", 'n', true, 0},
    {O_CONTEXT, "context", 0, true, 0},
    {O_KUBECONFIG, "kubeconfig", 0, true, 0},
    {O_LABELS, "labels", 'l', true, 0},
    {O_LABELS, "selector", 0, true, 0},
    {O_POD, "pod", 0, true, 0},
    {O_TARGET, "target", 't', true, 0},
    {O_IMAGE, "dbg-image", 0, true, 0},
    {O_PULL, "pull-policy", 0, true, 0},
    {O_KUBECTL, "kubectl", 0, true, 0},
    {O_TIMEOUT, "timeout", 0, true, 0},
    {O_KEEP, "keep-forward", 0, true, 0},
    {O_VERBOSE, "verbose", 'v', false, 0},
    {O_HELP, "help", 'h', false, 0},
    {O_NOCOLOR, "no-color", 0, false, 0},
    {O_PRIV, "privileged", 0, false, 0},
    {O_PROFILE, "profile", 0, true, 0},
    {O_NEWCTR, "new-container", 0, false, 0},
    {O_OUTGOING, "outgoing", 0, false, ONLY(FLAGS_CMD_REDIR)},
    {O_INC_PROBES, "include-probes", 0, false, ONLY(FLAGS_CMD_REDIR)},
    {O_INC_LOOPBACK, "include-loopback", 0, false, ONLY(FLAGS_CMD_REDIR)},
    {O_ALL_PODS, "all-pods", 0, false, ONLY(FLAGS_CMD_REDIR) | ONLY(FLAGS_CMD_CAPTURE)},
    {O_OUTPUT, "output", 'o', true, ONLY(FLAGS_CMD_PS)},
    {O_ALL, "all", 0, false, ONLY(FLAGS_CMD_LOGS)},
    {O_CONTAINER, "container", 'c', true, ONLY(FLAGS_CMD_LOGS)},
    {O_DRAIN, "drain-duration", 'd', true, ONLY(FLAGS_CMD_LOGS)},
    {O_IFACE, "interface", 'i', true, ONLY(FLAGS_CMD_CAPTURE)},
    {O_FILTER, "filter", 'f', true, ONLY(FLAGS_CMD_CAPTURE)},
    {O_SNAPLEN, "snaplen", 's', true, ONLY(FLAGS_CMD_CAPTURE)},
    {O_COUNT, "count", 'c', true, ONLY(FLAGS_CMD_CAPTURE)},
    {O_DURATION, "duration", 'd', true, ONLY(FLAGS_CMD_CAPTURE)},
    {O_WRITE, "write", 'w', true, ONLY(FLAGS_CMD_CAPTURE)},
    {O_FORMAT, "format", 0, true, ONLY(FLAGS_CMD_CAPTURE)},
    /* shell takes them as kubectl exec -it: it forwards stdin, with a terminal when stdin is one */
    {O_STDIN, "stdin", 'i', false, ONLY(FLAGS_CMD_EXEC) | ONLY(FLAGS_CMD_SHELL)},
    {O_TTY, "tty", 0, false, ONLY(FLAGS_CMD_EXEC) | ONLY(FLAGS_CMD_SHELL)},
    {O_TOOLS, "tools", 0, false, ONLY(FLAGS_CMD_EXEC)},
    {O_STOP, "stop", 0, false, ONLY(FLAGS_CMD_FORWARDS)},
    {O_FOLLOW, "follow", 'f', false, ONLY(FLAGS_CMD_LOGS)}, /* kubectl logs -f: logs always follows */
    {O_ALL_NS, "all-namespaces", 'A', false, ONLY(FLAGS_CMD_LIST)},
    {O_TAIL, "tail", 0, true, ONLY(FLAGS_CMD_LOGS)},
    {O_SINCE, "since", 0, true, ONLY(FLAGS_CMD_LOGS)},
    /* who kubectl is and how it reaches the API server, as kubectl takes them */
    {O_CONN, "as", 0, true, 0},
    {O_CONN, "as-group", 0, true, 0},
    {O_CONN, "as-uid", 0, true, 0},
    {O_CONN, "user", 0, true, 0},
    {O_CONN, "cluster", 0, true, 0},
    {O_CONN, "server", 0, true, 0},
    {O_CONN, "token", 0, true, 0},
    {O_CONN, "certificate-authority", 0, true, 0},
    {O_CONN, "client-certificate", 0, true, 0},
    {O_CONN, "client-key", 0, true, 0},
    {O_CONN, "tls-server-name", 0, true, 0},
    {O_CONN, "insecure-skip-tls-verify", 0, false, 0},
    {O_CONN, "request-timeout", 0, true, 0},
    {O_CONN, "cache-dir", 0, true, 0},
};

_Static_assert(sizeof opts / sizeof opts[0] <= 64, "flags_parse marks the flags given in a uint64_t");

static const char *const cmd_names[] = {
    [FLAGS_CMD_NONE] = "",         [FLAGS_CMD_REDIR] = "redir",         [FLAGS_CMD_PS] = "ps",
    [FLAGS_CMD_SHELL] = "shell",   [FLAGS_CMD_LOGS] = "logs",           [FLAGS_CMD_LIST] = "list",
    [FLAGS_CMD_MANAGE] = "manage", [FLAGS_CMD_VERSION] = "version",     [FLAGS_CMD_COMPLETION] = "completion",
    [FLAGS_CMD_HELP] = "help",     [FLAGS_CMD_COMPLETE] = "__complete", [FLAGS_CMD_CAPTURE] = "capture",
    [FLAGS_CMD_CP] = "cp",         [FLAGS_CMD_EXEC] = "exec",           [FLAGS_CMD_FORWARDS] = "forwards",
};

const char *flags_cmd_name(flags_cmd c)
{
    if ((size_t)c >= sizeof(cmd_names) / sizeof(cmd_names[0]))
        return "";
    return cmd_names[c];
}

const char *flags_long_name(unsigned i)
{
    return i < sizeof opts / sizeof opts[0] ? opts[i].lng : NULL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -ERANGE;
    *out = (uint16_t)v;
    return 0;
}

/* A port's name as Kubernetes writes one (a DNS label: a-z, 0-9 and inner
 * '-'), with a letter, so that it is no number. */
static bool port_name_ok(const char *s, size_t n)
{
    bool letter = false;
    if (n == 0 || n >= FLAGS_PORT_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        bool lower = s[i] >= 'a' && s[i] <= 'z';
        if (!lower && !(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
            return false;
        letter |= lower;
    }
    return letter;
}

int flags_parse_port_pair(const char *s, flags_portpair *pp, char *err, size_t errlen)
{
    const char *colon = strchr(s, ':');
    size_t n1 = colon ? (size_t)(colon - s) : strlen(s);
    memset(pp, 0, sizeof *pp);
    int rc = parse_port(s, n1, &pp->pod_port);
    if (rc == -EINVAL && port_name_ok(s, n1)) { /* resolved on the pod */
        memcpy(pp->pod_name, s, n1);
        rc = 0;
    }
    if (rc == 0 && colon)
        rc = parse_port(colon + 1, strlen(colon + 1), &pp->local_port);
    else if (rc == 0)
        pp->local_port = pp->pod_port;
    if (rc == -ERANGE)
        return fail(err, errlen, "port out of range in \"%s\": ports are 1-65535", s);
    if (rc < 0)
        return fail(err, errlen,
                    "invalid port \"%s\": use PODPORT or PODPORT:LOCALPORT, e.g. 80, 80:8080 or http:8080 (a port's "
                    "name)",
                    s);
    return 0;
}

void flags_port_shown(const flags_portpair *pp, char *buf, size_t n)
{
    if (pp->pod_name[0])
        snprintf(buf, n, "%s", pp->pod_name);
    else
        snprintf(buf, n, "%u", pp->pod_port);
}

int flags_parse_duration(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -EINVAL;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (errno || end == p)
            return -EINVAL;
        for (const char *q = p; q < end; q++) /* digits and a '.': no 0x10, no 1e2 */
            if (*q != '.' && (*q < '0' || *q > '9'))
                return -EINVAL;
        double mul;
        if (strncmp(end, "ms", 2) == 0) {
            mul = 1;
            end += 2;
        } else if (*end == 's') {
            mul = 1000;
            end++;
        } else if (*end == 'm') {
            mul = 60000;
            end++;
        } else if (*end == 'h') {
            mul = 3600000;
            end++;
        } else {
            return -EINVAL;
        }
        double add = v * mul;
        if (add > 1e15 || (double)total + add > 1e15)
            return -ERANGE;
        total += (int64_t)add;
        p = end;
    }
    *ms = total;
    return 0;
}

static int parse_keep(flags *f, const char *val, const char *what, char *err, size_t errlen)
{
    if (flags_parse_duration(val, &f->keep_ms) < 0 || f->keep_ms < 0 || f->keep_ms > KEEP_MAX_MS)
        return fail(err, errlen, "invalid %s \"%s\": use a duration up to 24h such as 10m, or 0 for none", what, val);
    return 0;
}

int flags_parse_selector(const char *s, flags_selector *sel, char *err, size_t errlen)
{
    sel->value = NULL;
    sel->container = NULL;
    const char *colon = strrchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n == 0)
        return fail(err, errlen, "empty selector in \"%s\": use VALUE or VALUE:CONTAINER", s);
    if (colon && colon[1] == '\0')
        return fail(err, errlen, "empty container name in \"%s\": drop the ':' or name a container", s);
    sel->value = strndup(s, n);
    if (colon)
        sel->container = strdup(colon + 1);
    if (!sel->value || (colon && !sel->container))
        return -ENOMEM;
    return 0;
}

static int push_selector(flags_selector **arr, size_t *n, const char *s, char *err, size_t errlen)
{
    flags_selector *a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!a)
        return -ENOMEM;
    *arr = a;
    int rc = flags_parse_selector(s, &a[*n], err, errlen);
    (*n)++; /* counted even on failure so flags_free releases a partial entry */
    return rc;
}

/* A pod's name as given (pod/NAME, --pod NAME): kubectl cp's NAMESPACE/POD
 * and an empty name are usage errors that say what to write. */
static int push_pod(flags *f, const char *given, const char *name, char *err, size_t errlen)
{
    const char *slash = strchr(name, '/');
    if (!*name || *name == ':')
        return fail(err, errlen, "no pod name in \"%s\": write pod/NAME", given);
    if (slash)
        return fail(err, errlen, "a pod name has no '/' (\"%s\"): for pod %s in namespace %.*s write -n %.*s pod/%s",
                    given, slash + 1, (int)(slash - name), name, (int)(slash - name), name, slash + 1);
    return push_selector(&f->pods, &f->npods, name, err, errlen);
}

static const struct opt *find_long(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        if (strlen(opts[i].lng) == n && strncmp(opts[i].lng, name, n) == 0)
            return &opts[i];
    return NULL;
}

/* A letter may mean one flag per command (-c: logs' --container, capture's
 * --count): the command's own flag first, else the first with the letter. */
static const struct opt *find_short(char c, flags_cmd cmd)
{
    const struct opt *first = NULL;
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (opts[i].shrt != c)
            continue;
        if (opts[i].only & ONLY(cmd))
            return &opts[i];
        if (!first)
            first = &opts[i];
    }
    return first;
}

flags_cmd flags_cmd_of(const char *s)
{
    for (size_t i = 1; i < sizeof(cmd_names) / sizeof(cmd_names[0]); i++)
        if (strcmp(cmd_names[i], s) == 0)
            return (flags_cmd)i;
    return FLAGS_CMD_NONE;
}

/* The flag the word w ("--timeout", "-c") is for command cmd, or NULL. */
static const struct opt *flag_word(const char *w, flags_cmd cmd)
{
    if (w[0] != '-' || !w[1])
        return NULL;
    if (w[1] == '-')
        return find_long(w + 2, strlen(w + 2));
    return w[2] ? NULL : find_short(w[1], cmd);
}

bool flags_takes_value(const char *w, flags_cmd cmd)
{
    const struct opt *o = flag_word(w, cmd);
    return o && o->arg;
}

/* The commands with a target container, which -c names as kubectl exec and cp take it. */
#define HAS_TARGET (ONLY(FLAGS_CMD_EXEC) | ONLY(FLAGS_CMD_SHELL) | ONLY(FLAGS_CMD_CP) | ONLY(FLAGS_CMD_PS))

/* Whether o names a container for cmd. */
static bool names_container(const struct opt *o, flags_cmd cmd)
{
    return o->id == O_TARGET || (o->id == O_CONTAINER && (ONLY(cmd) & (HAS_TARGET | ONLY(FLAGS_CMD_LOGS))));
}

int flags_container_at(const char *w, flags_cmd cmd)
{
    if (w[0] != '-' || !w[1] || !strcmp(w, "-it") || !strcmp(w, "-ti")) /* -it, -ti: stdin and tty (one_flag) */
        return -1;
    if (w[1] == '-') {
        const char *eq = strchr(w, '=');
        const struct opt *o = find_long(w + 2, eq ? (size_t)(eq - w - 2) : strlen(w + 2));
        return !o || !names_container(o, cmd) ? -1 : eq ? (int)(eq + 1 - w) : 0;
    }
    for (const char *p = w + 1; *p; p++) { /* switches first, as one_flag reads -vt */
        const struct opt *o = find_short(*p, cmd);
        if (!o || (o->arg && !names_container(o, cmd)) || (!o->arg && p[1] == '='))
            return -1;
        if (o->arg)
            return !p[1] ? 0 : (int)(p + 1 + (p[1] == '=') - w);
    }
    return -1;
}

bool flags_bare_pod(flags_cmd cmd)
{
    return ONLY(cmd) &
           (ONLY(FLAGS_CMD_PS) | ONLY(FLAGS_CMD_SHELL) | ONLY(FLAGS_CMD_EXEC) | ONLY(FLAGS_CMD_LOGS) |
            ONLY(FLAGS_CMD_CAPTURE) | ONLY(FLAGS_CMD_FORWARDS) | ONLY(FLAGS_CMD_LIST) | ONLY(FLAGS_CMD_REDIR));
}

const char *flags_pod_ref(const char *s)
{
    static const char *const prefixes[] = {"pod/", "pods/", "po/"};
    for (size_t i = 0; i < 3; i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return s + strlen(prefixes[i]);
    return NULL;
}

/* "CWD/" when o is one of kubectl's connection flags that names a file
 * (--client-key=key.pem) and val is relative: a port-forward's keeper
 * (cli/keep.c) runs kubectl from another directory. Else "". */
static const char *conn_dir(const struct opt *o, const char *val)
{
    static const char *const files[] = {"certificate-authority", "client-certificate", "client-key", "cache-dir"};
    static char cwd[PATH_MAX + 1];
    for (size_t i = 0; val && *val && *val != '/' && i < sizeof files / sizeof *files; i++)
        if (strcmp(o->lng, files[i]) == 0 && getcwd(cwd, PATH_MAX))
            return strcat(cwd, "/");
    return "";
}

/* Sets what flag o says; arg is how it was given (--count=5, -c5, -c), for
 * messages that name the flag without its value. */
static int apply(flags *f, const struct opt *o, const char *arg, const char *val, char *err, size_t errlen)
{
    char flagname[40];
    if (arg[1] == '-')
        snprintf(flagname, sizeof flagname, "--%s", o->lng);
    else
        snprintf(flagname, sizeof flagname, "-%c", o->shrt);
    switch (o->id) {
    case O_CONN:
        if (f->nconn >= FLAGS_CONN_MAX)
            return fail(err, errlen, "too many of kubectl's connection flags (--%s): at most %d", o->lng,
                        FLAGS_CONN_MAX);
        if (asprintf(&f->conn[f->nconn], "--%s%s%s%s", o->lng, val ? "=" : "", conn_dir(o, val), val ? val : "") < 0)
            return -ENOMEM;
        f->nconn++;
        break;
    case O_NS: f->ns = val; break;
    case O_CONTEXT: f->context = val; break;
    case O_KUBECONFIG: f->kubeconfig = val; break;
    case O_LABELS: return push_selector(&f->labels, &f->nlabels, val, err, errlen);
    case O_POD: return push_pod(f, val, flags_pod_ref(val) ? flags_pod_ref(val) : val, err, errlen);
    case O_TARGET:
        if (val[0] == '-' || strchr(val, '/')) /* kubectl's -t is --tty: "-t pod/web", "-i -t pod/web" */
            return fail(err, errlen,
                        "-t is --target here and takes a container name, not \"%s\"; for a terminal write -it or "
                        "--tty",
                        val);
        f->target = val;
        break;
    case O_IMAGE:
        if (!*val)
            return fail(err, errlen, "--dbg-image needs an image, e.g. --dbg-image %s", KDIAG_DEFAULT_IMAGE);
        f->dbg_image = val;
        break;
    case O_PULL:
        if (strcmp(val, "Always") && strcmp(val, "IfNotPresent") && strcmp(val, "Never"))
            return fail(err, errlen, "invalid --pull-policy \"%s\": use Always, IfNotPresent or Never", val);
        f->pull_policy = val;
        break;
    case O_KUBECTL: f->kubectl = val; break;
    case O_TIMEOUT:
        if (flags_parse_duration(val, &f->timeout_ms) < 0 || f->timeout_ms <= 0)
            return fail(err, errlen, "invalid --timeout \"%s\": use a duration such as 30s, 2m or 1m30s", val);
        break;
    case O_KEEP: return parse_keep(f, val, "--keep-forward", err, errlen);
    case O_VERBOSE: f->verbose++; break;
    case O_HELP: f->help = true; break;
    case O_NOCOLOR: f->no_color = true; break;
    case O_PRIV: f->privileged = true; break;
    case O_PROFILE: {
        ephem_profile prof;
        if (ephem_profile_parse(val, &prof) < 0)
            return fail(err, errlen,
                        "invalid --profile \"%s\": use general, netadmin, baseline, restricted or sysadmin", val);
        f->profile = val;
        break;
    }
    case O_NEWCTR: f->new_container = true; break;
    case O_OUTGOING: f->outgoing = true; break;
    case O_INC_PROBES: f->include_probes = true; break;
    case O_INC_LOOPBACK: f->include_loopback = true; break;
    case O_ALL_PODS: f->all_pods = true; break;
    case O_OUTPUT:
        if (strcmp(val, "wide") && strcmp(val, "json"))
            return fail(err, errlen, "invalid %s \"%s\": use -o wide or -o json", flagname, val);
        f->output = val;
        break;
    case O_ALL: f->all = true; break;
    case O_CONTAINER: f->container = val; break;
    case O_DRAIN:
        if (flags_parse_duration(val, &f->drain_ms) < 0)
            return fail(err, errlen, "invalid %s \"%s\": use a duration such as 500ms or 2s", flagname, val);
        break;
    case O_IFACE: f->iface = val; break;
    case O_FILTER: f->filter = val; break;
    case O_SNAPLEN:
    case O_COUNT: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(val, &end, 10);
        bool snap = o->id == O_SNAPLEN;
        if (errno || end == val || *end || val[0] == '-' || v == 0 || (snap && v > 262144))
            return fail(err, errlen, "invalid %s \"%s\": use %s", flagname, val,
                        snap ? "a snap length of 1-262144 bytes" : "a packet count of 1 or more");
        if (snap)
            f->snaplen = (uint32_t)v;
        else
            f->count = v;
        break;
    }
    case O_DURATION:
        if (flags_parse_duration(val, &f->duration_ms) < 0 || f->duration_ms <= 0 || f->duration_ms > UINT32_MAX)
            return fail(err, errlen, "invalid %s \"%s\": use a duration such as 10s or 2m, at most 1193h",
                        flagname, val);
        break;
    case O_WRITE:
        if (!val[0]) /* it was written as "..kdiag-<hex>" in the working directory */
            return fail(err, errlen, "invalid %s \"\": give a file name, or - for stdout", flagname);
        f->write = val;
        break;
    case O_FORMAT:
        if (strcmp(val, "pcap") && strcmp(val, "pcapng"))
            return fail(err, errlen, "invalid --format \"%s\": use pcap or pcapng", val);
        f->format = val;
        break;
    case O_STDIN: f->stdin_open = true; break;
    case O_TTY: f->tty = true; break;
    case O_TOOLS: f->tools = true; break;
    case O_STOP: f->stop = true; break;
    case O_FOLLOW: break;
    case O_ALL_NS: f->all_namespaces = true; break;
    case O_TAIL: {
        char *end;
        errno = 0;
        long n = strtol(val, &end, 10);
        if (!*val || *end || errno || n < -1 || n > INT32_MAX)
            return fail(err, errlen, "invalid %s \"%s\": give a number of lines, or -1 for all", flagname, val);
        f->tail = n;
        f->tail_given = true;
        break;
    }
    case O_SINCE:
        if (flags_parse_duration(val, &f->since_ms) < 0 || f->since_ms <= 0)
            return fail(err, errlen, "invalid %s \"%s\": use a duration such as 30s, 5m or 2h", flagname, val);
        break;
    }
    return 0;
}

static int positional(flags *f, char *a, char *err, size_t errlen)
{
    if (f->cmd == FLAGS_CMD_CP) { /* SOURCE DEST: "pod/NAME:/path" is an operand, not --pod */
        if (f->ncp_args == 2)
            return fail(err, errlen, "cp takes two paths, SOURCE and DEST; \"%s\" is a third", a);
        f->cp_args[f->ncp_args++] = a;
        return 0;
    }
    const char *pod = flags_pod_ref(a), *kind;
    if (pod)
        return push_pod(f, a, pod, err, errlen);
    const char *name = podsel_workload_ref(a, &kind);
    if (name) {
        char ref[512];
        if (!*name || *name == ':')
            return fail(err, errlen, "no name in \"%s\": use e.g. deploy/NAME", a);
        snprintf(ref, sizeof(ref), "%s/%s", kind, name);
        return push_selector(&f->workloads, &f->nworkloads, ref, err, errlen);
    }
    if (f->cmd == FLAGS_CMD_NONE) {
        f->cmd = flags_cmd_of(a);
        if (f->cmd == FLAGS_CMD_NONE)
            return fail(err, errlen, "unknown command \"%s\": run 'kubectl diag --help' for the list", a);
        return 0;
    }
    bool has_pod = f->npods || f->nlabels || f->nworkloads;
    /* a bare pod name, as kubectl exec, logs and port-forward take it: redir's first word that is no port */
    if (f->cmd == FLAGS_CMD_REDIR && !has_pod && a[strspn(a, "0123456789")] && !strpbrk(a, "/:"))
        return push_pod(f, a, a, err, errlen);
    if (f->cmd == FLAGS_CMD_REDIR && !strchr(a, '/')) {
        flags_portpair *p = realloc(f->ports, (f->nports + 1) * sizeof(*p));
        if (!p)
            return -ENOMEM;
        f->ports = p;
        int rc = flags_parse_port_pair(a, &p[f->nports], err, errlen);
        for (size_t i = 0; rc == 0 && i < f->nports; i++)
            if (p[i].pod_port == p[f->nports].pod_port && /* two streams of one session would take it over in turn */
                strcmp(p[i].pod_name, p[f->nports].pod_name) == 0) {
                char shown[FLAGS_PORT_NAME_MAX];
                flags_port_shown(&p[i], shown, sizeof shown);
                return fail(err, errlen, "pod port %s is given twice (\"%s\"): redirect each pod port once", shown, a);
            }
        if (rc == 0)
            f->nports++;
        return rc;
    }
    if ((f->cmd == FLAGS_CMD_COMPLETION || f->cmd == FLAGS_CMD_HELP) && !f->topic) {
        f->topic = a;
        return 0;
    }
    if (has_pod && f->cmd == FLAGS_CMD_EXEC)
        return fail(err, errlen,
                    "unexpected argument \"%s\" for 'exec': the command goes after '--', e.g. "
                    "kubectl diag exec pod/NAME -- %s",
                    a, a);
    if (has_pod && f->cmd == FLAGS_CMD_SHELL)
        return fail(err, errlen,
                    "unexpected argument \"%s\" for 'shell': ash's arguments go after '--', e.g. "
                    "kubectl diag shell pod/NAME -- -c '%s'",
                    a, a);
    const char *slash = strchr(a, '/');
    if (slash) /* not pod/ nor a workload kind */
        return fail(err, errlen,
                    "unknown kind \"%.*s\" in \"%s\": give a pod as pod/NAME (-n NAMESPACE for another "
                    "namespace), a workload as deploy/, sts/, rs/ or svc/NAME, or pods by label with -l",
                    (int)(slash - a), a, a);
    /* a bare pod name, NAME:CONTAINER for logs as pod/NAME:CONTAINER (one pod but for logs: flags_parse says) */
    if (flags_bare_pod(f->cmd) && !strpbrk(a, "/="))
        return push_pod(f, a, a, err, errlen);
    return fail(err, errlen, "unexpected argument \"%s\" for '%s': run 'kubectl diag %s --help'", a,
                flags_cmd_name(f->cmd), flags_cmd_name(f->cmd));
}

/* The command named after the flags given before it ("kubectl diag -c 5
 * capture"): the first c for which, reading the short flags as c's
 * (capture's -i takes a value, exec's does not), the first operand is c.
 * A letter before the command then means what the command makes it mean. */
static flags_cmd command_ahead(int argc, char **argv)
{
    for (size_t c = 1; c < sizeof(cmd_names) / sizeof(cmd_names[0]); c++)
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
            if (argv[i][0] == '-' && argv[i][1]) {
                i += flags_takes_value(argv[i], (flags_cmd)c);
                continue;
            }
            if (flags_cmd_of(argv[i]) == (flags_cmd)c)
                return (flags_cmd)c;
            break;
        }
    return FLAGS_CMD_NONE;
}

/* Whether the word after argv[i] (-v) is a number, kubectl's -v 6: a level, not
 * a pod named "6"; for redir a port once its pod is given (redir web -v 80). */
static bool level_next(const flags *f, flags_cmd cmd, int argc, char **argv, int i)
{
    const char *next = i + 1 < argc ? argv[i + 1] : "";
    bool has_pod = f->npods || f->nlabels || f->nworkloads;
    return *next && !next[strspn(next, "0123456789")] && !(cmd == FLAGS_CMD_REDIR && has_pod);
}

/* Handles one flag word at argv[*i], its letters read as cmd's; may consume
 * the next word as its value. */
static int one_flag(flags *f, flags_cmd cmd, int argc, char **argv, int *i, uint64_t *seen, char *err, size_t errlen)
{
    char *a = argv[*i];
    if (strcmp(a, "-it") == 0 || strcmp(a, "-ti") == 0) { /* kubectl exec's; -t alone is --target */
        *seen |= 1ull << (find_long("tty", 3) - opts);
        f->stdin_open = f->tty = true;
        return 0;
    }
    if (a[1] == '-') {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = find_long(name, n);
        if (!o && n == 1 && *name == 'v') /* kubectl's --v=6 */
            return fail(err, errlen,
                        "unknown flag \"%s\": kubectl diag's -v takes no level: write -v, or -vv for more", a);
        if (!o)
            return fail(err, errlen, "unknown flag \"%s\": run 'kubectl diag %s%s--help'", a, flags_cmd_name(cmd),
                        cmd ? " " : "");
        const char *val = NULL;
        if (o->arg) {
            if (eq)
                val = eq + 1;
            else if (*i + 1 < argc)
                val = argv[++*i];
            else
                return fail(err, errlen, "flag --%s needs a value", o->lng);
        } else if (eq) {
            return fail(err, errlen, "flag --%s takes no value (got \"%s\")", o->lng, a);
        } else if (o->id == O_VERBOSE && level_next(f, cmd, argc, argv, *i)) {
            return fail(err, errlen, "flag --verbose takes no value (got \"%s %s\"): write -v, or -vv for more", a,
                        argv[*i + 1]);
        }
        *seen |= 1ull << (o - opts);
        return apply(f, o, a, val, err, errlen);
    }
    /* short flags: -n ns, -nns, -n=ns, and clusters of switches like -vv */
    for (const char *p = a + 1; *p; p++) {
        const struct opt *o = find_short(*p, cmd);
        if (!o)
            return fail(err, errlen, "unknown flag \"-%c\" in \"%s\": run 'kubectl diag %s%s--help'", *p, a,
                        flags_cmd_name(cmd), cmd ? " " : "");
        *seen |= 1ull << (o - opts);
        if (!o->arg && p[1] == '=') /* kubectl's -v=6 habit */
            return fail(err, errlen, "flag -%c takes no value (got \"%s\")%s", *p, a,
                        o->id == O_VERBOSE ? ": write -v, or -vv for more" : "");
        if (o->id == O_VERBOSE && !p[1] && level_next(f, cmd, argc, argv, *i))
            return fail(err, errlen, "flag -v takes no value (got \"%s %s\"): write -v, or -vv for more", a,
                        argv[*i + 1]);
        if (!o->arg) {
            int rc = apply(f, o, a, NULL, err, errlen);
            if (rc < 0)
                return rc;
            continue;
        }
        const char *val = p + 1;
        bool eq = *val == '=';
        if (eq)
            val++;
        if (*val == '\0' && eq)
            return fail(err, errlen, "flag -%c= has no value: write -%c VALUE", *p, *p);
        if (*val == '\0') {
            if (*i + 1 >= argc)
                return fail(err, errlen, "flag -%c needs a value", *p);
            val = argv[++*i];
        }
        return apply(f, o, a, val, err, errlen);
    }
    return 0;
}

/* The commands that start a port-forward to a manager, which a kept one can be. */
#define KEEPS \
    (ONLY(FLAGS_CMD_REDIR) | ONLY(FLAGS_CMD_PS) | ONLY(FLAGS_CMD_SHELL) | ONLY(FLAGS_CMD_CAPTURE) | \
     ONLY(FLAGS_CMD_CP) | ONLY(FLAGS_CMD_EXEC))

/* Whether an option of id was given (seen: flags_parse's bits of opts). */
static bool given(uint64_t seen, enum opt_id id)
{
    for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
        if ((seen >> k & 1) && opts[k].id == id)
            return true;
    return false;
}

int flags_parse(int argc, char **argv, flags *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    const char *env_kubectl = getenv("KUBECTL");
    f->kubectl = env_kubectl && *env_kubectl ? env_kubectl : "kubectl";
    const char *env_image = getenv("KDIAG_DBG_IMAGE");
    f->dbg_image = env_image && *env_image ? env_image : KDIAG_DEFAULT_IMAGE;
    f->timeout_ms = 120000;
    f->drain_ms = 500;
    const char *nc = getenv("NO_COLOR");
    f->no_color = nc && *nc;
    if (err && errlen)
        err[0] = '\0';

    uint64_t seen = 0; /* bit k: opts[k] was given */
    flags_cmd ahead = command_ahead(argc, argv);
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        int rc;
        if (f->cmd == FLAGS_CMD_COMPLETE) {
            f->words = argv + i;
            f->nwords = argc - i;
            break;
        }
        if (strcmp(a, "--") == 0 && f->cmd == FLAGS_CMD_CP) { /* operands only: "cp -- -f pod/web:/tmp" */
            for (rc = 0; ++i < argc && rc == 0;)
                rc = positional(f, argv[i], err, errlen);
            if (rc < 0)
                return rc;
            break;
        }
        if (strcmp(a, "--") == 0) {
            f->rest = argv + i + 1;
            f->nrest = argc - i - 1;
            break;
        }
        if (a[0] == '-' && a[1] != '\0')
            rc = one_flag(f, f->cmd ? f->cmd : ahead, argc, argv, &i, &seen, err, errlen);
        else
            rc = positional(f, a, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (f->cmd == FLAGS_CMD_COMPLETE)
        return 0;
    if (f->help)
        return 0;
    /* $KDIAG_KEEP_FORWARD: for the commands that start a forward, and
     * --keep-forward wins (a bad value stops no other command) */
    const char *keep = getenv("KDIAG_KEEP_FORWARD");
    if (keep && *keep && !given(seen, O_KEEP) && (ONLY(f->cmd) & KEEPS) &&
        parse_keep(f, keep, "$KDIAG_KEEP_FORWARD", err, errlen) < 0)
        return -EINVAL;
    /* kubectl exec and cp take the container with -c: the target, for the commands that have one */
    bool has_target = ONLY(f->cmd) & HAS_TARGET;
    if (given(seen, O_CONTAINER) && has_target) {
        if (given(seen, O_TARGET) && strcmp(f->target, f->container))
            return fail(err, errlen, "both -t %s and -c %s given: the container is one of them", f->target,
                        f->container);
        f->target = f->container;
        f->container = NULL;
    }
    for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
        if ((seen >> k & 1) && opts[k].only && !(opts[k].only & ONLY(f->cmd))) {
            if (opts[k].id == O_CONTAINER && has_target)
                continue;
            if (opts[k].id == O_CONTAINER) /* redir and capture have a target all the same */
                return fail(err, errlen, "-c/--container is for logs, ps, shell, exec and cp; '%s' takes %s",
                            f->cmd ? flags_cmd_name(f->cmd) : "(no command)",
                            ONLY(f->cmd) & KEEPS ? "the container with -t/--target CONTAINER" : "no container");
            flags_cmd owner = FLAGS_CMD_NONE;
            for (int c = 1; c < 32; c++)
                if (opts[k].only & (1u << c))
                    owner = (flags_cmd)c;
            return fail(err, errlen, "flag --%s belongs to '%s', not to '%s'", opts[k].lng, flags_cmd_name(owner),
                        f->cmd ? flags_cmd_name(f->cmd) : "(no command)");
        }
    if (f->include_probes && f->outgoing)
        return fail(err, errlen,
                    "--include-probes is for incoming redirects (the node's probes reach the pod); "
                    "drop it or --outgoing");
    if (f->include_loopback && !f->outgoing)
        return fail(err, errlen, "--include-loopback is for --outgoing redirects (the pod's connections to itself)");
    if (f->nrest && f->cmd != FLAGS_CMD_SHELL && f->cmd != FLAGS_CMD_LOGS && f->cmd != FLAGS_CMD_EXEC)
        return fail(err, errlen, "arguments after '--' are only for shell, exec and logs");
    if (f->cmd == FLAGS_CMD_LOGS && given(seen, O_DRAIN) && !f->nrest)
        return fail(err, errlen,
                    "-d/--drain-duration is how long logs follows after the command ends, and none was given: "
                    "add one after '--' (logs ... -d 2s -- CMD) or drop -d");
    if (f->cmd == FLAGS_CMD_LOGS && (given(seen, O_TAIL) || given(seen, O_SINCE)) && f->nrest)
        return fail(err, errlen,
                    "--%s is for logs without a command: with one, logs shows what was logged while it ran",
                    given(seen, O_TAIL) ? "tail" : "since");
    if (f->cmd == FLAGS_CMD_EXEC && !f->nrest)
        return fail(err, errlen, "exec needs a command after '--': kubectl diag exec pod/NAME -- CMD [ARGS...]");
    if (f->cmd == FLAGS_CMD_EXEC && !f->rest[0][0])
        return fail(err, errlen,
                    "the command after '--' is an empty word: kubectl diag exec pod/NAME -- CMD [ARGS...]");
    if (f->cmd != FLAGS_CMD_LOGS) {
        if (f->npods > 1)
            return fail(err, errlen, "more than one pod given (%s, %s): '%s' works on one pod", f->pods[0].value,
                        f->pods[1].value, flags_cmd_name(f->cmd));
        if (f->nlabels > 1)
            return fail(err, errlen, "more than one -l selector: '%s' works on one pod", flags_cmd_name(f->cmd));
        if (f->nworkloads > 1)
            return fail(err, errlen, "more than one workload given (%s, %s): '%s' works on one pod",
                        f->workloads[0].value, f->workloads[1].value, flags_cmd_name(f->cmd));
        if (f->npods && f->nlabels)
            return fail(err, errlen, "both a pod (%s) and a selector (%s) given: use one", f->pods[0].value,
                        f->labels[0].value);
        if (f->nworkloads && (f->npods || f->nlabels))
            return fail(err, errlen, "both %s and %s given: use one", f->workloads[0].value,
                        f->npods ? f->pods[0].value : f->labels[0].value);
        if ((f->npods && f->pods[0].container) || (f->nlabels && f->labels[0].container) ||
            (f->nworkloads && f->workloads[0].container))
            return fail(err, errlen, "':CONTAINER' in a pod or selector is for logs; use -t/--target CONTAINER");
        if (f->all_pods && (f->npods || !(f->nlabels || f->nworkloads)))
            return fail(err, errlen,
                        "kubectl diag %s --all-pods needs -l SELECTOR or a workload instead of one pod, e.g. "
                        "--all-pods -l app=web or --all-pods deploy/web",
                        flags_cmd_name(f->cmd));
    } else if (f->all && (f->npods || f->nlabels || f->nworkloads)) {
        return fail(err, errlen, "--all selects every pod: drop --pod/-l/deploy/…, or drop --all");
    }
    if (f->all_namespaces && (f->npods || f->nworkloads))
        return fail(err, errlen, "-A lists the debug containers of every namespace: drop %s%s, or -A",
                    f->npods ? "pod/" : "", f->npods ? f->pods[0].value : f->workloads[0].value);
    if (f->cmd == FLAGS_CMD_FORWARDS && (f->nlabels || f->nworkloads))
        return fail(err, errlen, "forwards takes one pod (pod/NAME or --pod NAME), not %s",
                    f->nlabels ? "a selector" : "a workload");
    if (f->cmd == FLAGS_CMD_COMPLETION && f->topic && strcmp(f->topic, "bash") && strcmp(f->topic, "zsh"))
        return fail(err, errlen, "unknown shell \"%s\" for completion: use bash or zsh", f->topic);
    if (f->cmd == FLAGS_CMD_CP && f->ncp_args != 2)
        return fail(err, errlen, "cp needs SOURCE and DEST: kubectl diag cp POD:/PATH LOCAL or cp LOCAL POD:/PATH");
    if (f->cmd == FLAGS_CMD_COMPLETION && !f->topic)
        return fail(err, errlen, "completion needs a shell: kubectl diag completion bash|zsh");
    return 0;
}

void flags_free(flags *f)
{
    for (size_t i = 0; i < f->npods; i++) {
        free(f->pods[i].value);
        free(f->pods[i].container);
    }
    for (size_t i = 0; i < f->nlabels; i++) {
        free(f->labels[i].value);
        free(f->labels[i].container);
    }
    for (size_t i = 0; i < f->nworkloads; i++) {
        free(f->workloads[i].value);
        free(f->workloads[i].container);
    }
    free(f->pods);
    free(f->labels);
    free(f->workloads);
    free(f->ports);
    f->pods = NULL;
    f->labels = NULL;
    f->workloads = NULL;
    f->ports = NULL;
    f->npods = f->nlabels = f->nworkloads = f->nports = 0;
    for (size_t i = 0; i < f->nconn; i++) {
        free(f->conn[i]);
        f->conn[i] = NULL;
    }
    f->nconn = 0;
}
