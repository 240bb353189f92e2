#include "pod.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract.h"

static char *dup_str(const json_t *j)
{
    const char *s = json_string_value(j);
    return s ? strdup(s) : NULL;
}

static const json_t *get(const json_t *o, const char *k)
{
    return json_object_get(o, k);
}

static void container_free(pod_container *c)
{
    free(c->name);
    free(c->image);
    free(c->target);
    free(c->secret);
    for (size_t i = 0; i < c->ncaps; i++)
        free(c->caps[i]);
    free(c->caps);
    for (size_t i = 0; i < c->nports; i++)
        free(c->ports[i].name);
    free(c->ports);
    free(c->reason);
    free(c->message);
    free(c->id);
    free(c->started);
    free(c->finished);
}

static int parse_named_ports(const json_t *ports, pod_container *c)
{
    size_t i;
    const json_t *pt;
    json_array_foreach(ports, i, pt)
    {
        const char *name = json_string_value(get(pt, "name"));
        json_int_t port = json_integer_value(get(pt, "containerPort"));
        if (!name || port < 1 || port > 65535)
            continue;
        pod_named_port *np = realloc(c->ports, (c->nports + 1) * sizeof(*np));
        if (!np)
            return -ENOMEM;
        c->ports = np;
        if (!(np[c->nports].name = strdup(name)))
            return -ENOMEM;
        np[c->nports++].port = (uint16_t)port;
    }
    return 0;
}

static int parse_spec(const json_t *j, pod_container *c)
{
    c->name = dup_str(get(j, "name"));
    c->image = dup_str(get(j, "image"));
    c->target = dup_str(get(j, "targetContainerName"));
    const json_t *env = get(j, "env");
    for (size_t i = 0; i < json_array_size(env) && !c->secret; i++) {
        const json_t *e = json_array_get(env, i);
        if (json_is_string(get(e, "name")) && strcmp(json_string_value(get(e, "name")), CONTRACT_SECRET_ENV) == 0)
            c->secret = dup_str(get(e, "value"));
    }
    const json_t *sc = get(j, "securityContext");
    c->privileged = json_is_true(get(sc, "privileged"));
    const json_t *add = get(get(sc, "capabilities"), "add");
    size_t n = json_array_size(add);
    if (n) {
        c->caps = calloc(n, sizeof(char *));
        if (!c->caps)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(add, i));
            if (s && (c->caps[c->ncaps] = strdup(s)))
                c->ncaps++;
        }
    }
    if (parse_named_ports(get(j, "ports"), c) < 0)
        return -ENOMEM;
    return c->name ? 0 : -EINVAL;
}

static void parse_status(const json_t *st, pod_container *c)
{
    c->has_status = true;
    const char *id = json_string_value(get(st, "containerID"));
    if (id && *id) {
        const char *sep = strstr(id, "://");
        c->id = strdup(sep ? sep + 3 : id);
    }
    c->restarts = (int)json_integer_value(get(st, "restartCount"));
    const json_t *state = get(st, "state");
    const json_t *s;
    if ((s = get(state, "running"))) {
        c->state = POD_STATE_RUNNING;
        c->started = dup_str(get(s, "startedAt"));
    } else if ((s = get(state, "terminated"))) {
        c->state = POD_STATE_TERMINATED;
        c->reason = dup_str(get(s, "reason"));
        c->message = dup_str(get(s, "message"));
        c->started = dup_str(get(s, "startedAt"));
        c->finished = dup_str(get(s, "finishedAt"));
        c->exit_code = (int)json_integer_value(get(s, "exitCode"));
    } else if ((s = get(state, "waiting"))) {
        c->state = POD_STATE_WAITING;
        c->reason = dup_str(get(s, "reason"));
        c->message = dup_str(get(s, "message"));
    }
}

static int parse_containers(const json_t *specs, const json_t *statuses, pod_container **out, size_t *n)
{
    size_t cnt = json_array_size(specs);
    *out = NULL;
    *n = 0;
    if (!cnt)
        return 0;
    pod_container *cs = calloc(cnt, sizeof(*cs));
    if (!cs)
        return -ENOMEM;
    *out = cs;
    for (size_t i = 0; i < cnt; i++) {
        int rc = parse_spec(json_array_get(specs, i), &cs[i]);
        (*n)++;
        if (rc < 0)
            return rc;
        size_t k;
        const json_t *st;
        json_array_foreach(statuses, k, st)
        {
            const char *nm = json_string_value(get(st, "name"));
            if (nm && strcmp(nm, cs[i].name) == 0) {
                parse_status(st, &cs[i]);
                break;
            }
        }
    }
    return 0;
}

/* status.hostIPs (1.28+), else status.hostIP: the node's addresses. */
static void parse_host_ips(const json_t *status, pod_info *p)
{
    const json_t *list = get(status, "hostIPs"), *e;
    size_t i;
    json_array_foreach(list, i, e)
    {
        if (p->nhost_ips < POD_HOST_IPS_MAX && (p->host_ips[p->nhost_ips] = dup_str(get(e, "ip"))))
            p->nhost_ips++;
    }
    if (p->nhost_ips == 0 && (p->host_ips[0] = dup_str(get(status, "hostIP"))))
        p->nhost_ips = 1;
}

/* The Ready condition says "False": p->unready, and why in p->unready_why
 * ("REASON: MESSAGE", either alone, or NULL). */
static void parse_unready(const json_t *status, pod_info *p)
{
    const json_t *c;
    size_t i;
    json_array_foreach(get(status, "conditions"), i, c)
    {
        const char *type = json_string_value(get(c, "type")), *st = json_string_value(get(c, "status"));
        if (!type || !st || strcmp(type, "Ready") != 0)
            continue;
        p->unready = strcmp(st, "False") == 0;
        const char *reason = json_string_value(get(c, "reason")), *msg = json_string_value(get(c, "message"));
        if (p->unready && (reason || msg) &&
            asprintf(&p->unready_why, "%s%s%s", reason ? reason : "", reason && msg ? ": " : "", msg ? msg : "") < 0)
            p->unready_why = NULL;
        return;
    }
}

int pod_parse(const json_t *obj, pod_info *p)
{
    memset(p, 0, sizeof(*p));
    const char *kind = json_string_value(get(obj, "kind"));
    if (!json_is_object(obj) || (kind && strcmp(kind, "Pod") != 0))
        return -EINVAL;
    const json_t *md = get(obj, "metadata"), *spec = get(obj, "spec"), *status = get(obj, "status");
    p->name = dup_str(get(md, "name"));
    p->ns = dup_str(get(md, "namespace"));
    p->created = dup_str(get(md, "creationTimestamp"));
    p->uid = dup_str(get(md, "uid"));
    p->deleting = get(md, "deletionTimestamp") != NULL && !json_is_null(get(md, "deletionTimestamp"));
    p->phase = dup_str(get(status, "phase"));
    p->ip = dup_str(get(status, "podIP"));
    parse_host_ips(status, p);
    p->share_pid = json_is_true(get(spec, "shareProcessNamespace"));
    p->host_net = json_is_true(get(spec, "hostNetwork"));
    parse_unready(status, p);
    if (!p->name) {
        pod_free(p);
        return -EINVAL;
    }
    int rc = parse_containers(get(spec, "containers"), get(status, "containerStatuses"), &p->containers,
                              &p->ncontainers);
    if (rc == 0)
        rc = parse_containers(get(spec, "ephemeralContainers"), get(status, "ephemeralContainerStatuses"),
                              &p->ephemeral, &p->nephemeral);
    if (rc < 0)
        pod_free(p);
    return rc;
}

int pod_parse_str(const char *json, pod_info *p)
{
    json_t *j = json_loads(json, 0, NULL);
    if (!j) {
        memset(p, 0, sizeof(*p));
        return -EINVAL;
    }
    int rc = pod_parse(j, p);
    json_decref(j);
    return rc;
}

int pod_list_parse(const char *json, pod_info **pods, size_t *n)
{
    *pods = NULL;
    *n = 0;
    json_t *j = json_loads(json, 0, NULL);
    if (!j)
        return -EINVAL;
    int rc = 0;
    const json_t *items = get(j, "items");
    if (!items) {
        pod_info *one = calloc(1, sizeof(*one));
        rc = one ? pod_parse(j, one) : -ENOMEM;
        if (rc == 0) {
            *pods = one;
            *n = 1;
        } else {
            free(one);
        }
        goto out;
    }
    size_t cnt = json_array_size(items);
    if (!cnt)
        goto out;
    *pods = calloc(cnt, sizeof(pod_info));
    if (!*pods) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < cnt; i++) {
        rc = pod_parse(json_array_get(items, i), &(*pods)[*n]);
        if (rc < 0)
            break;
        (*n)++;
    }
    if (rc < 0) {
        pod_list_free(*pods, *n);
        *pods = NULL;
        *n = 0;
    }
out:
    json_decref(j);
    return rc;
}

void pod_free(pod_info *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->ns);
    free(p->phase);
    free(p->ip);
    for (size_t i = 0; i < p->nhost_ips; i++)
        free(p->host_ips[i]);
    free(p->created);
    free(p->uid);
    free(p->unready_why);
    for (size_t i = 0; i < p->ncontainers; i++)
        container_free(&p->containers[i]);
    for (size_t i = 0; i < p->nephemeral; i++)
        container_free(&p->ephemeral[i]);
    free(p->containers);
    free(p->ephemeral);
    memset(p, 0, sizeof(*p));
}

void pod_list_free(pod_info *pods, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pod_free(&pods[i]);
    free(pods);
}

bool pod_is_running(const pod_info *p)
{
    return p->phase && strcmp(p->phase, "Running") == 0 && !p->deleting;
}

bool pod_is_ready(const pod_info *p)
{
    return pod_is_running(p) && !p->unready;
}

static const pod_container *find(const pod_container *cs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (cs[i].name && strcmp(cs[i].name, name) == 0)
            return &cs[i];
    return NULL;
}

const pod_container *pod_container_find(const pod_info *p, const char *name)
{
    return find(p->containers, p->ncontainers, name);
}

const pod_container *pod_ephemeral_find(const pod_info *p, const char *name)
{
    return find(p->ephemeral, p->nephemeral, name);
}

uint16_t pod_port_by_name(const pod_info *p, const char *name)
{
    for (size_t i = 0; i < p->ncontainers; i++)
        for (size_t j = 0; j < p->containers[i].nports; j++)
            if (strcmp(p->containers[i].ports[j].name, name) == 0)
                return p->containers[i].ports[j].port;
    return 0;
}

static const pod_info *newest(const pod_info *pods, size_t n, bool (*ok)(const pod_info *))
{
    const pod_info *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!ok(&pods[i]))
            continue;
        /* RFC 3339 UTC timestamps compare as strings; name breaks ties for stability */
        const char *c = pods[i].created ? pods[i].created : "";
        const char *b = best && best->created ? best->created : "";
        int cmp = best ? strcmp(c, b) : 1;
        if (!best || cmp > 0 || (cmp == 0 && strcmp(pods[i].name, best->name) > 0))
            best = &pods[i];
    }
    return best;
}

const pod_info *pod_newest_running(const pod_info *pods, size_t n)
{
    return newest(pods, n, pod_is_running);
}

const pod_info *pod_newest_ready(const pod_info *pods, size_t n)
{
    return newest(pods, n, pod_is_ready);
}

long pod_age_seconds(const char *ts)
{
    struct tm tm = {0};
    if (!ts)
        return -1;
    const char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    time_t t = timegm(&tm);
    long age = (long)(time(NULL) - t);
    return age < 0 ? 0 : age;
}

void pod_format_age(long s, char *buf, size_t n)
{
    if (s < 0)
        snprintf(buf, n, "<unknown>");
    else if (s < 120)
        snprintf(buf, n, "%lds", s);
    else if (s < 7200)
        snprintf(buf, n, "%ldm", s / 60);
    else if (s < 172800)
        snprintf(buf, n, "%ldh", s / 3600);
    else
        snprintf(buf, n, "%ldd", s / 86400);
}

const char *pod_state_name(pod_state s)
{
    switch (s) {
    case POD_STATE_WAITING: return "Waiting";
    case POD_STATE_RUNNING: return "Running";
    case POD_STATE_TERMINATED: return "Terminated";
    default: return "Unknown";
    }
}
