#include "ps.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/addr-util.h"

int ps_fetch(session *s, Kdiag__Solo__Io__PsResponse **resp, char *err, size_t errlen)
{
    Kdiag__Solo__Io__PsRequest req = KDIAG__SOLO__IO__PS_REQUEST__INIT;
    uint8_t reqbuf[16];
    size_t reqlen = kdiag__solo__io__ps_request__pack(&req, reqbuf);
    *resp = NULL;
    int rc = -EIO;
    /* a forward that just restarted may refuse the first call: retry once on a fresh one */
    for (int attempt = 0; attempt < 2; attempt++) {
        unsigned gen;
        rpc_client *cl;
        if ((rc = session_client(s, &cl, &gen, err, errlen)) < 0)
            return rc;
        uint8_t *out = NULL;
        size_t outlen = 0;
        rpc_status st = {0};
        rc = rpc_client_unary(cl, CONTRACT_METHOD_PS, reqbuf, reqlen, &out, &outlen, (int)s->timeout_ms, &st);
        rpc_client_free(cl);
        if (rc == 0) {
            *resp = kdiag__solo__io__ps_response__unpack(NULL, outlen, out);
            free(out);
            if (!*resp) {
                snprintf(err, errlen, "the manager in pod/%s answered Ps with an undecodable message", s->pod.name);
                return -EPROTO;
            }
            return 0;
        }
        free(out);
        snprintf(err, errlen, "Ps call to the manager (%s in pod/%s) failed: %s (gRPC status %d)",
                 s->mgr.container, s->pod.name, *st.message ? st.message : "no message", (int)st.code);
        if (st.code != GRPC_STATUS_UNAVAILABLE)
            return rc;
        portfwd_quiet(s->pf); /* the restart is ps's own, and its error says why */
        portfwd_kick(s->pf, gen);
        int lg, lt;
        char werr[512];
        if (portfwd_wait(s->pf, gen, s->timeout_ms, &lg, &lt, werr, sizeof(werr)) < 0) {
            snprintf(err, errlen, "%s", werr);
            return -EIO;
        }
    }
    return rc;
}

/* Length of the character at s: a well-formed UTF-8 sequence (not overlong,
 * not a surrogate), else 1 (a stray byte). *ok: it is printable (not C0, DEL,
 * C1, not a stray byte). */
static size_t char_len(const unsigned char *s, bool *ok)
{
    *ok = s[0] >= 0x20 && s[0] < 0x7f;
    size_t len = s[0] >= 0xf0 && s[0] < 0xf5   ? 4
                 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
                 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2
                                               : 1;
    if (len == 1)
        return 1;
    uint32_t cp = len == 2 ? s[0] & 0x1fu : len == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 1;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 1;
    *ok = cp >= 0xa0;
    return len;
}

/* s with every character that is not kept replaced by repl (malloc'd, NUL-
 * terminated; *n its length). keep_controls: only bytes that are not UTF-8
 * are replaced, else control characters too. */
static char *recode(const char *s, bool keep_controls, const char *repl, size_t *n)
{
    size_t rlen = strlen(repl);
    char *out = malloc(strlen(s) * (rlen > 1 ? rlen : 1) + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    if (!out)
        return NULL;
    while (*p) {
        bool ok;
        size_t len = char_len(p, &ok);
        bool keep = ok || (keep_controls && !(len == 1 && *p >= 0x80));
        memcpy(o, keep ? (const char *)p : repl, keep ? len : rlen);
        o += keep ? len : rlen;
        p += len;
    }
    *o = '\0';
    *n = (size_t)(o - out);
    return out;
}

/* s for a terminal, the way procps ps shows names and command lines: every
 * control character (escape sequences, newlines, C1) and every byte that is not
 * UTF-8 becomes one '?', so a process cannot forge rows or drive the
 * operator's terminal. The caller frees it. */
static char *printable(const char *s)
{
    size_t n;
    return recode(s, false, "?", &n);
}

/* s as a JSON string: the exact text, except that bytes which are not UTF-8
 * (JSON cannot carry them; jansson refuses them) become U+FFFD. */
static json_t *json_text(const char *s)
{
    size_t n;
    char *out = recode(s, true, "\xef\xbf\xbd", &n);
    json_t *j = out ? json_stringn(out, n) : NULL;
    free(out);
    return j;
}

static void listen_str(const Kdiag__Solo__Io__ProcessInfo *p, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < p->n_listen_addresses && used < n; i++) {
        char a[ADDR_STR_MAX];
        addr_format_ip(p->listen_addresses[i]->ip, p->listen_addresses[i]->port, a, sizeof a);
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? "," : "", a);
    }
    if (!buf[0])
        snprintf(buf, n, "-");
}

static int cmp_pid(const void *a, const void *b)
{
    const Kdiag__Solo__Io__ProcessInfo *x = *(Kdiag__Solo__Io__ProcessInfo *const *)a;
    const Kdiag__Solo__Io__ProcessInfo *y = *(Kdiag__Solo__Io__ProcessInfo *const *)b;
    return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void rss_str(uint64_t b, char *buf, size_t n)
{
    if (b >= 10ull << 30)
        snprintf(buf, n, "%lluG", (unsigned long long)(b >> 30));
    else if (b >= 10ull << 20)
        snprintf(buf, n, "%lluM", (unsigned long long)(b >> 20));
    else
        snprintf(buf, n, "%lluK", (unsigned long long)(b >> 10));
}

static json_t *addrs_json(Kdiag__Solo__Io__Address **a, size_t n, const char *dflt)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:i, s:s}", "ip", a[i]->ip, "port", (json_int_t)a[i]->port,
                                             "protocol", *a[i]->protocol ? a[i]->protocol : dflt));
    return arr;
}

static void print_json(FILE *out, Kdiag__Solo__Io__ProcessInfo **ps, size_t n, const char *pod, const char *ns,
                       const char *container)
{
    json_t *procs = json_array();
    for (size_t i = 0; i < n; i++) {
        const Kdiag__Solo__Io__ProcessInfo *p = ps[i];
        json_t *start = json_null();
        if (p->start_time_unix_ms) {
            char ts[40];
            time_t t = (time_t)(p->start_time_unix_ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
            start = json_string(ts);
        }
        json_t *o =
            json_pack("{s:I, s:I, s:o, s:o, s:I, s:o, s:I, s:o, s:o, s:o}", "pid", (json_int_t)p->pid, "ppid",
                      (json_int_t)p->ppid, "name", json_text(p->name), "cmdline", json_text(p->cmdline), "uid",
                      (json_int_t)p->uid, "state", json_text(p->state), "rssBytes", (json_int_t)p->rss_bytes,
                      "startTime", start, "listen", addrs_json(p->listen_addresses, p->n_listen_addresses, "tcp"),
                      "bound", addrs_json(p->bound_addresses, p->n_bound_addresses, "udp"));
        json_array_append_new(procs, o);
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:o}", "pod", pod ? pod : "", "namespace", ns ? ns : "", "container",
                             container ? container : "", "processes", procs);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s)
        fprintf(out, "%s\n", s);
    free(s);
    json_decref(root);
}

void ps_print(FILE *out, const Kdiag__Solo__Io__PsResponse *r, ps_format fmt, const char *pod, const char *ns,
              const char *container)
{
    size_t n = r->n_processes;
    Kdiag__Solo__Io__ProcessInfo **ps = calloc(n ? n : 1, sizeof(*ps));
    if (!ps)
        return;
    memcpy(ps, r->processes, n * sizeof(*ps));
    qsort(ps, n, sizeof(*ps), cmp_pid);
    if (fmt == PS_JSON) {
        print_json(out, ps, n, pod, ns, container);
        free(ps);
        return;
    }
    if (fmt == PS_WIDE)
        fprintf(out, "%-7s %-7s %-16s %-24s %-6s %-7s %-5s %s\n", "PID", "PPID", "NAME", "LISTEN", "USER", "RSS",
                "STATE", "CMDLINE");
    else
        fprintf(out, "%-7s %-7s %-16s %s\n", "PID", "PPID", "NAME", "LISTEN");
    for (size_t i = 0; i < n; i++) {
        const Kdiag__Solo__Io__ProcessInfo *p = ps[i];
        char l[512];
        listen_str(p, l, sizeof(l));
        char *name = printable(p->name), *cmd = printable(*p->cmdline ? p->cmdline : "-");
        char *state = printable(*p->state ? p->state : "-");
        if (fmt == PS_WIDE) {
            char rss[32];
            rss_str(p->rss_bytes, rss, sizeof(rss));
            fprintf(out, "%-7llu %-7llu %-16s %-24s %-6u %-7s %-5s %s\n", (unsigned long long)p->pid,
                    (unsigned long long)p->ppid, name ? name : "?", l, p->uid, rss, state ? state : "?",
                    cmd ? cmd : "?");
        } else {
            fprintf(out, "%-7llu %-7llu %-16s %s\n", (unsigned long long)p->pid, (unsigned long long)p->ppid,
                    name ? name : "?", l);
        }
        free(name);
        free(cmd);
        free(state);
    }
    free(ps);
}

static bool loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 || strncmp(ip, "::ffff:127.", 11) == 0;
}

size_t ps_public_tcp_ports(const Kdiag__Solo__Io__PsResponse *r, uint16_t *ports, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_processes; i++) {
        const Kdiag__Solo__Io__ProcessInfo *p = r->processes[i];
        for (size_t j = 0; j < p->n_listen_addresses; j++) {
            const Kdiag__Solo__Io__Address *a = p->listen_addresses[j];
            if (loopback(a->ip) || (*a->protocol && strcmp(a->protocol, "tcp") != 0) || a->port == 0 || a->port > 65535)
                continue;
            size_t k = 0;
            while (k < n && ports[k] < a->port)
                k++;
            if ((k < n && ports[k] == a->port) || n == max)
                continue;
            memmove(ports + k + 1, ports + k, (n - k) * sizeof(*ports));
            ports[k] = (uint16_t)a->port;
            n++;
        }
    }
    return n;
}
