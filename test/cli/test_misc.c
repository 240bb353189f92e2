/* Unit tests: kubectl error translation (kerr.c), the child's environment
 * (kube.c), port-forward output (portfwd.c), log timestamps and colours (logs.c), ps output (ps.c), shell
 * target selection (shell.c), session record keys (remember.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kerr.h"
#include "kube.h"
#include "logs-internal.h"
#include "portfwd-internal.h"
#include "ps.h"
#include "remember.h"
#include "shell-internal.h"

static void rbac(void **state)
{
    (void)state;
    char buf[1024];
    const char *e = "Error from server (Forbidden): pods \"web\" is forbidden: User \"dev\" cannot create resource "
                    "\"pods/portforward\" in API group \"\" in the namespace \"prod\"\n";
    assert_int_equal(kerr_explain("port-forward to pod/web", e, "prod", buf, sizeof(buf)), KERR_RBAC);
    assert_non_null(strstr(buf, "\"create\"") ? strstr(buf, "\"create\"") : strstr(buf, "'create'"));
    assert_non_null(strstr(buf, "pods/portforward"));
    assert_non_null(strstr(buf, "\"prod\""));
    assert_non_null(strstr(buf, "kubectl auth can-i create pods --subresource=portforward -n prod"));
}

static void podsecurity(void **state)
{
    (void)state;
    char buf[1024];
    const char *e = "Error from server (Forbidden): pods \"web\" is forbidden: violates PodSecurity "
                    "\"baseline:latest\": non-default capabilities (container \"dbg-tools-1\" must not include "
                    "\"NET_ADMIN\" in securityContext.capabilities.add)\n";
    assert_int_equal(kerr_explain("create the debug container dbg-tools-1 in pod/web", e, "team", buf, sizeof(buf)),
                     KERR_PODSECURITY);
    assert_non_null(strstr(buf, "\"baseline\""));
    assert_non_null(strstr(buf, "NET_ADMIN"));
    assert_non_null(strstr(buf, "kubectl label namespace team pod-security.kubernetes.io/enforce=privileged"));
}

static void other_errors(void **state)
{
    (void)state;
    char buf[1024];
    assert_int_equal(kerr_explain("get pod/x", "Error from server (NotFound): pods \"x\" not found\n", NULL, buf,
                                  sizeof(buf)),
                     KERR_NOT_FOUND);
    /* no -n given: the context's namespace, whatever its name */
    assert_non_null(strstr(buf, "not found in the current namespace. List pods with: kubectl get pods"));
    assert_null(strstr(buf, "default"));
    assert_null(strstr(buf, " -n "));
    kerr_explain("get pod/x", "Error from server (NotFound): pods \"x\" not found\n", "team", buf, sizeof(buf));
    assert_non_null(strstr(buf, "not found in namespace \"team\". List pods with: kubectl get pods -n team"));
    /* an RBAC denial names its namespace itself */
    kerr_explain("port-forward to pod/web",
                 "Error from server (Forbidden): pods \"web\" is forbidden: User \"dev\" cannot create resource "
                 "\"pods/portforward\" in API group \"\" in the namespace \"team\"\n",
                 NULL, buf, sizeof(buf));
    assert_non_null(strstr(buf, "in namespace \"team\""));
    assert_non_null(strstr(buf, "kubectl auth can-i create pods --subresource=portforward -n team"));
    assert_int_equal(kerr_explain("create the debug container d in pod/x",
                                  "Error from server (NotFound): the server could not find the requested resource\n",
                                  "ns", buf, sizeof(buf)),
                     KERR_NO_EPHEMERAL);
    assert_non_null(strstr(buf, "1.23"));
    assert_int_equal(kerr_explain("get pod/x",
                                  "E1125 21:36:23.033628 21283 memcache.go:265] \"Unhandled Error\" err=\"dial tcp "
                                  "127.0.0.1:6443: connect: connection refused\"\n"
                                  "The connection to the server 127.0.0.1:6443 was refused - did you specify the right "
                                  "host or port?\n",
                                  "ns", buf, sizeof(buf)),
                     KERR_UNREACHABLE);
    assert_non_null(strstr(buf, "--context"));
    assert_non_null(strstr(buf, "(The connection to the server 127.0.0.1:6443 was refused")); /* the summary, not klog */
    assert_int_equal(kerr_explain("get pod/x", "error: You must be logged in to the server (Unauthorized)\n", "ns",
                                  buf, sizeof(buf)),
                     KERR_UNAUTHORIZED);
    assert_int_equal(kerr_explain("create the debug container d in pod/x", "error: unknown flag: --raw\n", "ns",
                                  buf, sizeof(buf)),
                     KERR_TOO_OLD);
    assert_non_null(strstr(buf, "--kubectl"));
    assert_int_equal(kerr_explain("create the debug container d in pod/p",
                                  "The Pod \"p\" is invalid: \n* spec.ephemeralContainers[0].ports: Forbidden: cannot "
                                  "be set for an Ephemeral Container\n",
                                  "ns", buf, sizeof(buf)),
                     KERR_INVALID);
    assert_non_null(strstr(buf, "spec.ephemeralContainers[0].ports"));
    assert_int_equal(kerr_explain("x", "error: something odd\nmore\n", "ns", buf, sizeof(buf)), KERR_OTHER);
    assert_string_equal(buf, "cannot x: something odd");
}

/* kubectl's texts when the API server answers but cannot reach the kubelet
 * (logs and exec / port-forward), next to the one when kubectl cannot reach the
 * API server at all: both say "dial tcp ... i/o timeout". */
static void kubelet_unreachable_is_not_an_unreachable_cluster(void **state)
{
    (void)state;
    char buf[1024];
    const char *logs = "Error from server: Get \"https://10.0.0.5:10250/containerLogs/default/web/app?follow=true\": "
                       "dial tcp 10.0.0.5:10250: i/o timeout\n";
    assert_int_equal(kerr_explain("follow the logs of web/app", logs, "default", buf, sizeof(buf)),
                     KERR_KUBELET_UNREACHABLE);
    assert_non_null(strstr(buf, "the API server answered, but it cannot reach the kubelet of the pod's node at "
                                "10.0.0.5:10250 (i/o timeout)"));
    assert_null(strstr(buf, "cluster is not reachable"));
    const char *exec = "Error from server: error dialing backend: dial tcp 10.240.0.22:10250: i/o timeout\n";
    assert_int_equal(kerr_explain("exec in pod/web", exec, "default", buf, sizeof(buf)), KERR_KUBELET_UNREACHABLE);
    assert_non_null(strstr(buf, "kubelet of the pod's node at 10.240.0.22:10250"));
    const char *pf = "error: error upgrading connection: error dialing backend: dial tcp 10.0.0.5:10250: connect: "
                     "connection refused\n";
    assert_int_equal(kerr_explain("port-forward to pod/web", pf, "default", buf, sizeof(buf)),
                     KERR_KUBELET_UNREACHABLE);
    assert_non_null(strstr(buf, "(connect: connection refused)"));

    const char *cluster = "Unable to connect to the server: dial tcp 10.0.0.1:6443: i/o timeout\n";
    assert_int_equal(kerr_explain("get pod/web", cluster, "default", buf, sizeof(buf)), KERR_UNREACHABLE);
    assert_non_null(strstr(buf, "the cluster is not reachable (Unable to connect to the server: dial tcp "
                                "10.0.0.1:6443: i/o timeout)"));
    assert_null(strstr(buf, "kubelet"));
}

static void forward_lines(void **state)
{
    (void)state;
    int l, r;
    assert_int_equal(portfwd_parse_line("Forwarding from 127.0.0.1:41235 -> 5000", &l, &r), 0);
    assert_int_equal(l, 41235);
    assert_int_equal(r, 5000);
    assert_int_equal(portfwd_parse_line("Forwarding from [::1]:41235 -> 5000", &l, &r), -EINVAL);
    assert_int_equal(portfwd_parse_line("Handling connection for 41235", &l, &r), -EINVAL);
    assert_int_equal(portfwd_parse_line("Forwarding from 127.0.0.1:0 -> 5000", &l, &r), -EINVAL);
}

static void timestamps(void **state)
{
    (void)state;
    logs_ts a, b;
    const char *text;
    assert_int_equal(logs_parse_ts("2026-11-25T21:00:00.1Z hello world", &a, &text), 0);
    assert_string_equal(text, "hello world");
    assert_int_equal(a.nsec, 100000000);
    assert_int_equal(logs_parse_ts("2026-11-25T21:00:00.12Z x", &b, &text), 0);
    /* as strings ".1Z" > ".12Z"; as times 0.1 < 0.12 */
    assert_int_equal(logs_ts_cmp(&a, &b), -1);
    assert_int_equal(logs_parse_ts("2026-11-25T21:00:01Z ", &b, &text), 0);
    assert_string_equal(text, "");
    assert_int_equal(b.sec - a.sec, 1);
    assert_int_equal(logs_ts_cmp(&b, &b), 0);
    assert_int_equal(logs_parse_ts("2026-11-25T21:00:00.123456789Z", &a, &text), 0);
    assert_int_equal(a.nsec, 123456789);
    assert_int_equal(logs_parse_ts("no timestamp here", &a, &text), -EINVAL);
    assert_int_equal(logs_parse_ts("2026-11-25T21:00:00+02:00 x", &a, &text), -EINVAL);
}

static void colours(void **state)
{
    (void)state;
    /* stable for a container, across calls (and runs: no randomness) */
    assert_string_equal(logs_color_for("nginx-1", "nginx"), logs_color_for("nginx-1", "nginx"));
    assert_string_equal(logs_color_for("a", "bc"), logs_color_for("a", "bc"));
    /* "a"/"bc" and "ab"/"c" are different containers */
    int distinct = 0;
    const char *seen[64];
    for (int i = 0; i < 64; i++) {
        char pod[16];
        snprintf(pod, sizeof(pod), "pod-%d", i);
        const char *c = logs_color_for(pod, "main");
        assert_int_equal(strlen(c), 2);
        bool dup = false;
        for (int j = 0; j < distinct; j++)
            dup |= strcmp(seen[j], c) == 0;
        if (!dup)
            seen[distinct++] = c;
    }
    assert_true(distinct >= 8); /* spread over the palette */
}

static Kdiag__Solo__Io__PsResponse *fake_ps(void)
{
    static Kdiag__Solo__Io__Address a1 = KDIAG__SOLO__IO__ADDRESS__INIT, a2 = KDIAG__SOLO__IO__ADDRESS__INIT,
                                    a3 = KDIAG__SOLO__IO__ADDRESS__INIT, a4 = KDIAG__SOLO__IO__ADDRESS__INIT;
    a1.ip = "0.0.0.0", a1.port = 80, a1.protocol = "tcp";
    a2.ip = "::", a2.port = 80, a2.protocol = "tcp";
    a3.ip = "127.0.0.1", a3.port = 9000, a3.protocol = "tcp";
    a4.ip = "10.244.0.7", a4.port = 8443;
    static Kdiag__Solo__Io__Address *l1[] = {&a1, &a2, &a3};
    static Kdiag__Solo__Io__Address *l2[] = {&a4};
    static Kdiag__Solo__Io__ProcessInfo p1 = KDIAG__SOLO__IO__PROCESS_INFO__INIT,
                                        p2 = KDIAG__SOLO__IO__PROCESS_INFO__INIT;
    p1.pid = 12, p1.ppid = 1, p1.name = "httpd", p1.listen_addresses = l1, p1.n_listen_addresses = 3;
    p1.cmdline = "httpd -f -p 80", p1.uid = 101, p1.state = "S", p1.rss_bytes = 4 << 20;
    p1.start_time_unix_ms = 1764104400000ull;
    p2.pid = 1, p2.ppid = 0, p2.name = "server", p2.listen_addresses = l2, p2.n_listen_addresses = 1;
    static Kdiag__Solo__Io__ProcessInfo *ps[] = {&p1, &p2};
    static Kdiag__Solo__Io__PsResponse r = KDIAG__SOLO__IO__PS_RESPONSE__INIT;
    r.processes = ps;
    r.n_processes = 2;
    return &r;
}

static void ps_output(void **state)
{
    (void)state;
    Kdiag__Solo__Io__PsResponse *r = fake_ps();
    uint16_t ports[8];
    size_t n = ps_public_tcp_ports(r, ports, 8);
    assert_int_equal(n, 2); /* 80 once, 8443; not the loopback-only 9000 */
    assert_int_equal(ports[0], 80);
    assert_int_equal(ports[1], 8443);

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ps_print(f, r, PS_TABLE, "nginx", "default", "nginx");
    fclose(f);
    assert_non_null(strstr(out, "PID"));
    assert_non_null(strstr(out, "LISTEN"));
    assert_null(strstr(out, "CMDLINE"));
    assert_non_null(strstr(out, "0.0.0.0:80,[::]:80,127.0.0.1:9000"));
    assert_true(strstr(out, "server") < strstr(out, "httpd")); /* sorted by pid */
    free(out);

    f = open_memstream(&out, &len);
    ps_print(f, r, PS_WIDE, "nginx", "default", "nginx");
    fclose(f);
    assert_non_null(strstr(out, "CMDLINE"));
    assert_non_null(strstr(out, "httpd -f -p 80"));
    assert_non_null(strstr(out, "4096K"));
    free(out);

    f = open_memstream(&out, &len);
    ps_print(f, r, PS_JSON, "nginx", "default", "nginx");
    fclose(f);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "pod")), "nginx");
    json_t *procs = json_object_get(j, "processes");
    assert_int_equal(json_array_size(procs), 2);
    json_t *h = json_array_get(procs, 1);
    assert_int_equal(json_integer_value(json_object_get(h, "pid")), 12);
    assert_int_equal(json_integer_value(json_object_get(h, "uid")), 101);
    assert_int_equal(json_integer_value(json_object_get(h, "rssBytes")), 4 << 20);
    assert_string_equal(json_string_value(json_object_get(h, "startTime")), "2025-11-25T21:00:00Z");
    json_t *l = json_object_get(h, "listen");
    assert_int_equal(json_array_size(l), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "ip")), "::");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "protocol")), "tcp");
    assert_true(json_is_array(json_object_get(h, "bound")));
    assert_true(json_is_null(json_object_get(json_array_get(procs, 0), "startTime")));
    json_decref(j);
    free(out);
}

static char *print_ps(const Kdiag__Solo__Io__PsResponse *r, ps_format fmt)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ps_print(f, r, fmt, "evil", "default", "app");
    fclose(f);
    return out;
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* A process's name and command line cannot forge rows or reach the operator's
 * terminal: control characters become '?' in the table and wide views; JSON
 * keeps the exact text. */
static void ps_escapes_control_characters(void **state)
{
    (void)state;
    static Kdiag__Solo__Io__ProcessInfo p = KDIAG__SOLO__IO__PROCESS_INFO__INIT;
    static Kdiag__Solo__Io__ProcessInfo *ps[] = {&p};
    Kdiag__Solo__Io__PsResponse r = KDIAG__SOLO__IO__PS_RESPONSE__INIT;
    r.processes = ps;
    r.n_processes = 1;
    p.pid = 7, p.ppid = 1, p.state = "S";
    p.name = "ev\x1b[2Jil\x7f";
    p.cmdline = "sh -c x \x1b]0;pwned\x07\x1b[2J\n1       0       FORGED  0.0.0.0:22 caf\xc3\xa9 \xc2\x9b \xff";

    char *out = print_ps(&r, PS_TABLE);
    assert_null(strchr(out, '\x1b'));
    assert_int_equal(count_char(out, '\n'), 2); /* header + one row */
    assert_non_null(strstr(out, "ev?[2Jil?"));
    free(out);

    out = print_ps(&r, PS_WIDE);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\x07'));
    assert_int_equal(count_char(out, '\n'), 2);
    /* valid UTF-8 stays; C1 (U+009B, a CSI) and a stray byte do not */
    assert_non_null(strstr(out, "sh -c x ?]0;pwned??[2J?1       0       FORGED  0.0.0.0:22 caf\xc3\xa9 ? ?\n"));
    free(out);

    p.cmdline = "x \x1b]0;pwned\x07\n"; /* jansson takes only UTF-8 */
    out = print_ps(&r, PS_JSON);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    json_t *proc = json_array_get(json_object_get(j, "processes"), 0);
    assert_string_equal(json_string_value(json_object_get(proc, "name")), "ev\x1b[2Jil\x7f");
    assert_string_equal(json_string_value(json_object_get(proc, "cmdline")), "x \x1b]0;pwned\x07\n");
    json_decref(j);

    /* bytes that are not UTF-8 become U+FFFD: the process is still listed */
    p.name = "bad\xff";
    p.cmdline = "caf\xc3\xa9 \xc3 \xed\xa0\x80";
    out = print_ps(&r, PS_JSON);
    j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    proc = json_array_get(json_object_get(j, "processes"), 0);
    assert_non_null(proc);
    assert_string_equal(json_string_value(json_object_get(proc, "name")), "bad\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(proc, "cmdline")),
                        "caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
}

static void shell_target(void **state)
{
    (void)state;
    assert_null(shell_target_id(false, "abc"));
    assert_string_equal(shell_target_id(true, "abc"), "abc");
    assert_null(shell_target_id(true, ""));
    assert_null(shell_target_id(true, NULL));
}

/* A refused port-forward upgrade is its own kind (portfwd falls back to
 * WebSockets on it); an RBAC denial that kubectl words the same stays RBAC. */
static void upgrade_refused(void **state)
{
    (void)state;
    char buf[1024];
    const char *e = "error: error upgrading connection: Upgrade request required\n";
    assert_int_equal(kerr_explain("port-forward to pod/web", e, "prod", buf, sizeof(buf)), KERR_UPGRADE);
    assert_non_null(strstr(buf, "Upgrade request required"));
    assert_non_null(strstr(buf, "WebSockets need kubectl 1.30 or newer"));
    const char *rbac = "error: error upgrading connection: pods \"web\" is forbidden: User \"dev\" cannot create "
                       "resource \"pods/portforward\" in API group \"\" in the namespace \"prod\"\n";
    assert_int_equal(kerr_explain("port-forward to pod/web", rbac, "prod", buf, sizeof(buf)), KERR_RBAC);
}

/* kube_spawn_env: the variable named is replaced (not added twice), the
 * rest of the environment is kept; kube_spawn leaves it alone. */
static void spawn_env(void **state)
{
    (void)state;
    setenv("KDIAG_TEST_PROTO", "user", 1);
    setenv("KDIAG_TEST_KEPT", "yes", 1);
    kube k = {.kubectl = "/usr/bin/env"};
    const char *args[] = {NULL}, *set[] = {"KDIAG_TEST_PROTO=false", "KDIAG_TEST_NEW=1", NULL};
    for (int with = 0; with < 2; with++) {
        kube_proc p;
        char err[256], out[65536];
        int rc = with ? kube_spawn_env(&k, args, set, KUBE_PIPE_OUT, &p, err, sizeof(err))
                      : kube_spawn(&k, args, KUBE_PIPE_OUT, &p, err, sizeof(err));
        assert_int_equal(rc, 0);
        size_t len = 1; /* every variable after a newline, the first too */
        ssize_t n;
        out[0] = '\n';
        while ((n = read(p.out_fd, out + len, sizeof(out) - 1 - len)) > 0)
            len += (size_t)n;
        out[len] = '\0';
        kube_proc_close(&p);
        assert_int_equal(kube_wait(p.pid), 0);
        assert_non_null(strstr(out, "\nKDIAG_TEST_KEPT=yes\n"));
        const char *proto = strstr(out, "\nKDIAG_TEST_PROTO=");
        assert_non_null(proto);
        assert_null(strstr(proto + 1, "\nKDIAG_TEST_PROTO="));
        const char *want = with ? "\nKDIAG_TEST_PROTO=false\n" : "\nKDIAG_TEST_PROTO=user\n";
        assert_true(strncmp(proto, want, strlen(want)) == 0);
        assert_true((strstr(out, "\nKDIAG_TEST_NEW=1\n") != NULL) == with);
    }
    unsetenv("KDIAG_TEST_PROTO");
    unsetenv("KDIAG_TEST_KEPT");
}

/* A session record's key keeps its fields apart whatever they hold: a '|'
 * in a kubeconfig path or context name no longer makes two kubeconfigs
 * share a record, a kubeconfig list of any length is remembered (the key
 * holds its hash), a key too long to hold is not remembered, and the
 * context, namespace and pod come back as given (`kubectl diag forwards`). */
static void remember_keys(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdiag-remember-XXXXXX", cmd[64];
    assert_non_null(mkdtemp(dir));
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("KUBECONFIG");
    remembered r = {.grpc = 4000, .tunnel = 4001, .container = "dbg", .token = "t", .secret = "s", .ns = "ns"}, got;
    kube a = {.kubeconfig = "/k/a|b", .context = "c", .ns = "ns"};
    remember_save(&a, "web", &r);
    assert_true(remember_read(&a, "web", &got));
    assert_int_equal(got.grpc, 4000);
    setenv("KUBECONFIG", "b", 1); /* the same fields joined with '|': "/k/a|b||c" */
    kube b = {.kubeconfig = "/k/a", .context = "|c", .ns = "ns"};
    assert_false(remember_read(&b, "web", &got));
    unsetenv("KUBECONFIG");

    char path[1300], key[2048], ctx[256], ns[256], pod[256];
    kube odd = {.context = "we|ird%ctx\n", .ns = "ns"};
    assert_true(remember_path(&odd, "web", ".fwd", false, path, sizeof path, key, sizeof key));
    assert_ptr_equal(strchr(key, '\n'), key + strlen(key) - 1); /* one line */
    assert_true(remember_key_fields(key, ctx, ns, pod, sizeof ctx));
    assert_string_equal(ctx, "we|ird%ctx%0A");
    assert_string_equal(ns, "ns");
    assert_string_equal(pod, "web");

    static char longpath[3000];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    kube big = {.kubeconfig = longpath}, other = {.kubeconfig = longpath + 1};
    setenv("KUBECONFIG", longpath, 1);
    remember_save(&big, "web", &r);
    assert_true(remember_read(&big, "web", &got));
    assert_false(remember_read(&other, "web", &got));
    unsetenv("KUBECONFIG");
    kube huge = {.context = longpath};
    assert_false(remember_path(&huge, "web", "", false, path, sizeof path, key, sizeof key));
    remember_save(&huge, "web", &r);
    assert_false(remember_read(&huge, "web", &got));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    unsetenv("XDG_CACHE_HOME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rbac),
        cmocka_unit_test(podsecurity),
        cmocka_unit_test(other_errors),
        cmocka_unit_test(kubelet_unreachable_is_not_an_unreachable_cluster),
        cmocka_unit_test(forward_lines),
        cmocka_unit_test(timestamps),
        cmocka_unit_test(colours),
        cmocka_unit_test(ps_output),
        cmocka_unit_test(ps_escapes_control_characters),
        cmocka_unit_test(shell_target),
        cmocka_unit_test(spawn_env),
        cmocka_unit_test(upgrade_refused),
        cmocka_unit_test(remember_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
