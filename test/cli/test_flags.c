/* Unit tests: command line parsing (flags.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flags-internal.h"

static int parse(flags *f, char *err, const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "kubectl-diag";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return flags_parse(argc, argv, f, err, 512);
}

static void port_pairs(void **state)
{
    (void)state;
    flags_portpair pp;
    char err[256];
    assert_int_equal(flags_parse_port_pair("80", &pp, err, sizeof(err)), 0);
    assert_int_equal(pp.pod_port, 80);
    assert_int_equal(pp.local_port, 80);
    assert_int_equal(flags_parse_port_pair("80:8080", &pp, err, sizeof(err)), 0);
    assert_int_equal(pp.pod_port, 80);
    assert_int_equal(pp.local_port, 8080);
    assert_int_equal(flags_parse_port_pair("65535:1", &pp, err, sizeof(err)), 0);
    /* a port's name, as kubectl port-forward takes one: resolved on the pod */
    assert_int_equal(flags_parse_port_pair("http:8080", &pp, err, sizeof(err)), 0);
    assert_true(pp.pod_port == 0 && pp.local_port == 8080 && strcmp(pp.pod_name, "http") == 0);
    assert_int_equal(flags_parse_port_pair("metrics-2", &pp, err, sizeof(err)), 0);
    assert_true(pp.pod_port == 0 && pp.local_port == 0 && strcmp(pp.pod_name, "metrics-2") == 0);
    assert_int_equal(flags_parse_port_pair("80", &pp, err, sizeof(err)), 0);
    assert_string_equal(pp.pod_name, "");
    static const char *const not_names[] = {
        "Http", "-http", "http-", "web_1", "h.t", "http:0", "a123456789b123456789c123456789d123456789e123456789f123456789abcd"};
    for (size_t i = 0; i < sizeof not_names / sizeof *not_names; i++)
        if (flags_parse_port_pair(not_names[i], &pp, err, sizeof(err)) != -EINVAL)
            fail_msg("\"%s\" taken as a port", not_names[i]);

    assert_int_equal(flags_parse_port_pair("0", &pp, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "\"0\""));
    assert_non_null(strstr(err, "1-65535"));
    assert_int_equal(flags_parse_port_pair("70000", &pp, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "70000"));
    assert_non_null(strstr(err, "1-65535"));
    assert_int_equal(flags_parse_port_pair("a:b", &pp, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "\"a:b\""));
    assert_non_null(strstr(err, "80:8080")); /* says how it should look */
    assert_int_equal(flags_parse_port_pair("80:", &pp, err, sizeof(err)), -EINVAL);
    assert_int_equal(flags_parse_port_pair(":80", &pp, err, sizeof(err)), -EINVAL);
    assert_int_equal(flags_parse_port_pair("80:0", &pp, err, sizeof(err)), -EINVAL);
    assert_int_equal(flags_parse_port_pair("-1", &pp, err, sizeof(err)), -EINVAL);
    assert_int_equal(flags_parse_port_pair("123456", &pp, err, sizeof(err)), -EINVAL);
    assert_int_equal(flags_parse_port_pair("", &pp, err, sizeof(err)), -EINVAL);
}

static void selectors(void **state)
{
    (void)state;
    flags_selector s;
    char err[256];
    assert_int_equal(flags_parse_selector("app=nginx", &s, err, sizeof(err)), 0);
    assert_string_equal(s.value, "app=nginx");
    assert_null(s.container);
    free(s.value);
    assert_int_equal(flags_parse_selector("app=nginx,tier in (web,api):proxy", &s, err, sizeof(err)), 0);
    assert_string_equal(s.value, "app=nginx,tier in (web,api)");
    assert_string_equal(s.container, "proxy");
    free(s.value);
    free(s.container);
    assert_int_equal(flags_parse_selector("example.com/app=x:c", &s, err, sizeof(err)), 0);
    assert_string_equal(s.value, "example.com/app=x");
    assert_string_equal(s.container, "c");
    free(s.value);
    free(s.container);
    assert_int_equal(flags_parse_selector("app=x:", &s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "app=x:"));
    free(s.value);
    assert_int_equal(flags_parse_selector(":c", &s, err, sizeof(err)), -EINVAL);
}

static void durations(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(flags_parse_duration("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(flags_parse_duration("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(flags_parse_duration("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(flags_parse_duration("1.5s", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(flags_parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(flags_parse_duration("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(flags_parse_duration("90", &ms), -EINVAL);
    assert_int_equal(flags_parse_duration("-5s", &ms), -EINVAL);
    assert_int_equal(flags_parse_duration("5x", &ms), -EINVAL);
    assert_int_equal(flags_parse_duration("", &ms), -EINVAL);
    assert_int_equal(flags_parse_duration("0x10s", &ms), -EINVAL); /* strtod's forms are not Go's */
    assert_int_equal(flags_parse_duration("1e2s", &ms), -EINVAL);
    /* each term in range, the sum not: refused, not wrapped */
    assert_int_equal(flags_parse_duration("200000000000s200000000000s200000000000s200000000000s200000000000s"
                                          "200000000000s",
                                          &ms),
                     -ERANGE);
}

static void globals_anywhere(void **state)
{
    (void)state;
    flags f;
    char err[512];
    unsetenv("NO_COLOR");
    unsetenv("KUBECTL");
    assert_int_equal(parse(&f, err, "-n", "prod", "--context=kind", "redir", "pod/web", "80:8080", "--kubeconfig",
                           "/tmp/kc", "-t", "app", "443", "--outgoing", "-v", NULL),
                     0);
    assert_int_equal(f.cmd, FLAGS_CMD_REDIR);
    assert_string_equal(f.ns, "prod");
    assert_string_equal(f.context, "kind");
    assert_string_equal(f.kubeconfig, "/tmp/kc");
    assert_string_equal(f.target, "app");
    assert_true(f.outgoing);
    assert_int_equal(f.verbose, 1);
    assert_int_equal(f.npods, 1);
    assert_string_equal(f.pods[0].value, "web");
    assert_int_equal(f.nports, 2);
    assert_int_equal(f.ports[0].pod_port, 80);
    assert_int_equal(f.ports[0].local_port, 8080);
    assert_int_equal(f.ports[1].pod_port, 443);
    assert_int_equal(f.ports[1].local_port, 443);
    assert_string_equal(f.kubectl, "kubectl");
    assert_int_equal(f.timeout_ms, 120000);
    assert_false(f.no_color);
    flags_free(&f);

    assert_int_equal(parse(&f, err, "ps", "-nprod", "-o", "wide", "-l", "app=web", "--timeout", "30s", NULL), 0);
    assert_string_equal(f.ns, "prod");
    assert_string_equal(f.output, "wide");
    assert_int_equal(f.nlabels, 1);
    assert_int_equal(f.timeout_ms, 30000);
    flags_free(&f);

    setenv("KUBECTL", "/opt/kubectl-1.27", 1);
    setenv("NO_COLOR", "1", 1);
    assert_int_equal(parse(&f, err, "list", NULL), 0);
    assert_string_equal(f.kubectl, "/opt/kubectl-1.27");
    assert_true(f.no_color);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "list", "--kubectl", "/usr/bin/kubectl", NULL), 0);
    assert_string_equal(f.kubectl, "/usr/bin/kubectl");
    flags_free(&f);
    unsetenv("KUBECTL");
    unsetenv("NO_COLOR");

    /* the debug image: --dbg-image, else $KDIAG_DBG_IMAGE, else the default */
    assert_int_equal(parse(&f, err, "list", NULL), 0);
    assert_string_equal(f.dbg_image, KDIAG_DEFAULT_IMAGE);
    flags_free(&f);
    setenv("KDIAG_DBG_IMAGE", "registry.example/kdiag-manager:dev", 1);
    assert_int_equal(parse(&f, err, "list", NULL), 0);
    assert_string_equal(f.dbg_image, "registry.example/kdiag-manager:dev");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "list", "--dbg-image", "other:1", NULL), 0);
    assert_string_equal(f.dbg_image, "other:1");
    flags_free(&f);
    unsetenv("KDIAG_DBG_IMAGE");
}

static void shell_and_logs_rest(void **state)
{
    (void)state;
    flags f;
    char err[512];
    assert_int_equal(parse(&f, err, "shell", "--pod", "distroless", "--", "-c", "top -n 1", NULL), 0);
    assert_int_equal(f.cmd, FLAGS_CMD_SHELL);
    assert_int_equal(f.nrest, 2);
    assert_string_equal(f.rest[0], "-c");
    assert_string_equal(f.rest[1], "top -n 1");
    flags_free(&f);

    assert_int_equal(parse(&f, err, "logs", "-l", "app=a:c1", "-l", "app=b", "--pod", "p:c2", "pod/q", "-d", "2s",
                           "-c", "main", "--", "sleep", "1", NULL),
                     0);
    assert_int_equal(f.nlabels, 2);
    assert_string_equal(f.labels[0].value, "app=a");
    assert_string_equal(f.labels[0].container, "c1");
    assert_null(f.labels[1].container);
    assert_int_equal(f.npods, 2);
    assert_string_equal(f.pods[0].value, "p");
    assert_string_equal(f.pods[0].container, "c2");
    assert_string_equal(f.pods[1].value, "q");
    assert_int_equal(f.drain_ms, 2000);
    assert_string_equal(f.container, "main");
    assert_int_equal(f.nrest, 2);
    flags_free(&f);
    /* --tail and --since: numbers and durations, only without a command */
    assert_int_equal(parse(&f, err, "logs", "web", "--tail=-1", "--since", "90s", NULL), 0);
    assert_true(f.tail_given && f.tail == -1 && f.since_ms == 90000);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "logs", "web", "--tail", "-2", NULL), -EINVAL);
    assert_string_equal(err, "invalid --tail \"-2\": give a number of lines, or -1 for all");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "logs", "web", "--since=0s", NULL), -EINVAL);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "logs", "web", "--since=1m", "--", "true", NULL), -EINVAL);
    assert_non_null(strstr(err, "--since is for logs without a command"));
    flags_free(&f);
    /* an unknown flag points to the command's own help */
    assert_int_equal(parse(&f, err, "redir", "pod/web", "80", "--nope", NULL), -EINVAL);
    assert_string_equal(err, "unknown flag \"--nope\": run 'kubectl diag redir --help'");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "-q", "ps", "pod/web", NULL), -EINVAL);
    assert_string_equal(err, "unknown flag \"-q\" in \"-q\": run 'kubectl diag ps --help'");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "--nope", NULL), -EINVAL);
    assert_string_equal(err, "unknown flag \"--nope\": run 'kubectl diag --help'");
    flags_free(&f);
    /* shell -it, as kubectl exec -it */
    assert_int_equal(parse(&f, err, "shell", "-it", "web", NULL), 0);
    assert_true(f.tty && f.stdin_open && f.npods == 1);
    flags_free(&f);
    /* kubectl logs -f: logs always follows; capture's -f stays its filter */
    /* a bare NAME:CONTAINER, as pod/NAME:CONTAINER (was: unexpected argument); elsewhere said to be logs' */
    assert_int_equal(parse(&f, err, "logs", "web:app", NULL), 0);
    assert_true(f.npods == 1 && !strcmp(f.pods[0].value, "web") && !strcmp(f.pods[0].container, "app"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "web:app", NULL), -EINVAL);
    assert_string_equal(err, "':CONTAINER' in a pod or selector is for logs; use -t/--target CONTAINER");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "logs", "-f", "web", "--follow", NULL), 0);
    assert_true(f.npods == 1 && !f.filter);
    flags_free(&f);
}

static void usage_errors(void **state)
{
    (void)state;
    flags f;
    char err[512];
    assert_int_equal(parse(&f, err, "frobnicate", NULL), -EINVAL);
    assert_non_null(strstr(err, "frobnicate"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--bogus", NULL), -EINVAL);
    assert_non_null(strstr(err, "--bogus"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "-o", "json", NULL), -EINVAL);
    assert_non_null(strstr(err, "'ps'"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "a:b", NULL), -EINVAL);
    assert_non_null(strstr(err, "a:b"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "-l", "a=1", "-l", "b=2", NULL), -EINVAL);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--pod", "x", "-l", "b=2", NULL), -EINVAL);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--pod", "x:c", NULL), -EINVAL);
    assert_non_null(strstr(err, "--target"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "-n", NULL), -EINVAL);
    assert_non_null(strstr(err, "needs a value"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--timeout", "soon", NULL), -EINVAL);
    assert_non_null(strstr(err, "soon"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--pull-policy", "Sometimes", NULL), -EINVAL);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--", "x", NULL), -EINVAL);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "completion", "fish", NULL), -EINVAL);
    assert_non_null(strstr(err, "fish"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "logs", "--all", "-l", "a=b", NULL), -EINVAL);
    flags_free(&f);
    /* the usual slips get a usage error that says what to write */
    const char *slips[][5] = {
        {"exec", "pod/x", "ls", NULL, "the command goes after '--'"},
        {"shell", "pod/x", "ls", NULL, "ash's arguments go after '--'"},
        {"ps", "pod/web", "db", NULL, "more than one pod given (web, db): 'ps' works on one pod"},
        {"ps", "-l", "app=web", "db", "both a pod (db) and a selector (app=web) given"},
        {"redir", "nginx", "80", "web_1", "invalid port \"web_1\": use PODPORT or PODPORT:LOCALPORT"},
        {"ps", "default/nginx", NULL, NULL, "unknown kind \"default\""},
        {"ps", "ds/x", NULL, NULL, "deploy/, sts/, rs/ or svc/NAME"},
        {"ps", "pod/default/nginx", NULL, NULL, "write -n default pod/nginx"},
        {"ps", "--pod", "default/nginx", NULL, "write -n default pod/nginx"},
        {"ps", "pod/", NULL, NULL, "no pod name in \"pod/\""},
        {"ps", "-n=", "pod/x", NULL, "-n= has no value"},
        {"ps", "-v=6", "pod/x", NULL, "flag -v takes no value (got \"-v=6\"): write -v, or -vv"},
        {"exec", "-i=1", "pod/x", NULL, "flag -i takes no value (got \"-i=1\")"},
        /* kubectl's -v 6 and --v=6: not a pod named "6", nor an unknown flag */
        {"ps", "-v", "6", NULL, "flag -v takes no value (got \"-v 6\"): write -v, or -vv for more"},
        {"logs", "pod/x", "--verbose", "6", "flag --verbose takes no value (got \"--verbose 6\")"},
        {"redir", "-vv", "4", "web", "flag -v takes no value (got \"-vv 4\")"},
        {"ps", "--v=6", "pod/x", NULL, "unknown flag \"--v=6\": kubectl diag's -v takes no level"},
        {"ps", "--dbg-image", "", NULL, "--dbg-image needs an image"},
    };
    for (size_t i = 0; i < sizeof(slips) / sizeof(slips[0]); i++) {
        assert_int_equal(parse(&f, err, slips[i][0], slips[i][1], slips[i][2], slips[i][3], NULL), -EINVAL);
        if (!strstr(err, slips[i][4]))
            fail_msg("%s %s: %s", slips[i][0], slips[i][1], err);
        flags_free(&f);
    }
    /* a number after -v is redir's port once the pod is given */
    assert_int_equal(parse(&f, err, "redir", "web", "-v", "80", NULL), 0);
    assert_true(f.verbose == 1 && f.npods == 1 && f.nports == 1 && f.ports[0].pod_port == 80);
    flags_free(&f);
    /* help wins over incomplete commands */
    assert_int_equal(parse(&f, err, "redir", "-h", NULL), 0);
    assert_true(f.help);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "__complete", "redir", "--po", NULL), 0);
    assert_int_equal(f.cmd, FLAGS_CMD_COMPLETE);
    assert_int_equal(f.nwords, 2);
    flags_free(&f);
}

/* --include-probes (incoming) and --include-loopback (outgoing): what a redirect leaves alone by default. */
static void redir_includes(void **state)
{
    (void)state;
    flags f;
    char err[512];
    assert_int_equal(parse(&f, err, "redir", "pod/web", "80", NULL), 0);
    assert_false(f.include_probes);
    assert_false(f.include_loopback);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "pod/web", "80", "--include-probes", NULL), 0);
    assert_true(f.include_probes);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "--outgoing", "--include-loopback", "-l", "app=a", "80", NULL), 0);
    assert_true(f.include_loopback);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "--outgoing", "--include-probes", "80", NULL), -EINVAL);
    assert_non_null(strstr(err, "--include-probes"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "--include-loopback", "80", NULL), -EINVAL);
    assert_non_null(strstr(err, "--outgoing"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--include-probes", NULL), -EINVAL);
    assert_non_null(strstr(err, "'redir'"));
    flags_free(&f);
}

/* capture's -c and -d are its own (count, duration), logs' stay container and drain. */
static void capture_flags(void **state)
{
    (void)state;
    flags f;
    char err[512];
    assert_int_equal(parse(&f, err, "capture", "pod/web", "-i", "eth0", "-f", "tcp port 80", "-s", "96", "-c",
                           "10", "-d", "1m30s", "-w", "-", NULL),
                     0);
    assert_int_equal(f.cmd, FLAGS_CMD_CAPTURE);
    assert_string_equal(f.iface, "eth0");
    assert_string_equal(f.filter, "tcp port 80");
    assert_int_equal(f.snaplen, 96);
    assert_int_equal(f.count, 10);
    assert_int_equal(f.duration_ms, 90000);
    assert_string_equal(f.write, "-");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "--count=5", "--duration", "2s", "--snaplen=262144", NULL), 0);
    assert_int_equal(f.count, 5);
    assert_int_equal(f.duration_ms, 2000);
    assert_int_equal(f.snaplen, 262144);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "-s", "262145", NULL), -EINVAL);
    assert_non_null(strstr(err, "snap length"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "-c", "0", NULL), -EINVAL);
    assert_non_null(strstr(err, "packet count"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "-d", "soon", NULL), -EINVAL);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--filter", "tcp", NULL), -EINVAL);
    assert_non_null(strstr(err, "belongs to 'capture'"));
    flags_free(&f);
    /* before the command, a letter means what the command makes it mean: -c and -d are
     * capture's, -i is capture's interface (a value) or exec's stdin (none) */
    assert_int_equal(parse(&f, err, "-c", "5", "-n", "prod", "-d", "2s", "-i", "eth0", "capture", "pod/web", NULL), 0);
    assert_int_equal(f.cmd, FLAGS_CMD_CAPTURE);
    assert_int_equal(f.count, 5);
    assert_int_equal(f.duration_ms, 2000);
    assert_string_equal(f.iface, "eth0");
    assert_string_equal(f.ns, "prod");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "-c", "web", "-d", "1s", "logs", "-l", "app=web", "--", "true", NULL), 0);
    assert_string_equal(f.container, "web");
    assert_int_equal(f.drain_ms, 1000);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "-i", "exec", "pod/web", "--", "cat", NULL), 0);
    assert_int_equal(f.cmd, FLAGS_CMD_EXEC);
    assert_true(f.stdin_open);
    flags_free(&f);
    /* --all-pods belongs to redir and capture, not to the others; --format is pcap or pcapng */
    assert_int_equal(parse(&f, err, "--all-pods", "capture", "-l", "app=web", "--format", "pcapng", NULL), 0);
    assert_true(f.all_pods);
    assert_string_equal(f.format, "pcapng");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "--all-pods", "-l", "app=web", NULL), 0);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--all-pods", "-l", "app=web", NULL), -EINVAL);
    assert_non_null(strstr(err, "flag --all-pods belongs to"));
    flags_free(&f);
    /* --all-pods needs pods to fan out over: -l or a workload, not one pod or none */
    assert_int_equal(parse(&f, err, "redir", "--all-pods", "pod/web", NULL), -EINVAL);
    assert_non_null(strstr(err, "kubectl diag redir --all-pods needs -l SELECTOR or a workload"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "--all-pods", NULL), -EINVAL);
    assert_non_null(strstr(err, "kubectl diag capture --all-pods needs -l SELECTOR or a workload"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "--all-pods", "deploy/web", NULL), 0);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "--format", "pcapx", NULL), -EINVAL);
    assert_non_null(strstr(err, "use pcap or pcapng"));
    flags_free(&f);
}

/* --profile takes one of the profile names; --new-container is a switch. */
static void profiles(void **state)
{
    (void)state;
    flags f;
    char err[512];
    assert_int_equal(parse(&f, err, "ps", "pod/web", NULL), 0);
    assert_null(f.profile);
    assert_false(f.new_container);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "shell", "--profile", "restricted", "pod/web", "--new-container", NULL), 0);
    assert_string_equal(f.profile, "restricted");
    assert_true(f.new_container);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "--profile=legacy", NULL), -EINVAL);
    assert_non_null(strstr(err, "\"legacy\""));
    assert_non_null(strstr(err, "general, netadmin, baseline, restricted or sysadmin"));
    flags_free(&f);
}

static void workload_targets(void **state)
{
    (void)state;
    flags f;
    char err[512];
    static const char *const same[][2] = {
        {"deploy/web", "deployment/web"},
        {"deployments/web", "deployment/web"},
        {"deployment.apps/web", "deployment/web"},
        {"sts/db", "statefulset/db"},
        {"statefulset/db", "statefulset/db"},
        {"rs/web-5f", "replicaset/web-5f"},
        {"replicaset/web-5f", "replicaset/web-5f"},
        {"svc/web", "service/web"},
        {"service/web", "service/web"},
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        assert_int_equal(parse(&f, err, "ps", same[i][0], NULL), 0);
        assert_int_equal(f.nworkloads, 1);
        assert_string_equal(f.workloads[0].value, same[i][1]);
        assert_int_equal(f.npods + f.nlabels, 0);
        flags_free(&f);
    }
    assert_int_equal(parse(&f, err, "logs", "deploy/web:nginx", "sts/db", "-l", "app=x", NULL), 0);
    assert_int_equal(f.nworkloads, 2);
    assert_string_equal(f.workloads[0].container, "nginx");
    assert_string_equal(f.workloads[1].value, "statefulset/db");
    flags_free(&f);

    assert_int_equal(parse(&f, err, "redir", "deploy/", NULL), -EINVAL);
    assert_non_null(strstr(err, "no name in \"deploy/\""));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "deploy/a", "svc/b", NULL), -EINVAL);
    assert_non_null(strstr(err, "more than one workload given (deployment/a, service/b)"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "deploy/a", "pod/b", NULL), -EINVAL);
    assert_non_null(strstr(err, "both deployment/a and b given"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "-l", "app=a", "sts/b", NULL), -EINVAL);
    assert_non_null(strstr(err, "both statefulset/b and app=a given"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "deploy/a:c", NULL), -EINVAL);
    assert_non_null(strstr(err, "-t/--target"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "logs", "--all", "svc/a", NULL), -EINVAL);
    assert_non_null(strstr(err, "--all selects every pod"));
    flags_free(&f);
}

/* exec: -i, --tty, -it (kubectl exec's; -t alone stays --target), --tools, a command required. */
static void exec_flags(void **state)
{
    (void)state;
    flags f;
    char err[512];
    assert_int_equal(parse(&f, err, "exec", "-it", "pod/web", "-t", "app", "--", "sh", "-c", "tty", NULL), 0);
    assert_int_equal(f.cmd, FLAGS_CMD_EXEC);
    assert_true(f.stdin_open && f.tty && !f.tools);
    assert_string_equal(f.target, "app");
    assert_int_equal(f.nrest, 3);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "exec", "-i", "--tools", "pod/web", "--", "ls", NULL), 0);
    assert_true(f.stdin_open && !f.tty && f.tools);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "exec", "pod/web", NULL), -EINVAL);
    assert_non_null(strstr(err, "exec needs a command after '--'"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "-it", "pod/web", NULL), -EINVAL);
    assert_non_null(strstr(err, "belongs to 'exec'"));
    flags_free(&f);
    /* a pod port twice: a usage error, not two streams taking it over in turn */
    assert_int_equal(parse(&f, err, "redir", "pod/web", "80", "80:18080", NULL), -EINVAL);
    assert_string_equal(err, "pod port 80 is given twice (\"80:18080\"): redirect each pod port once");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "pod/web", "80", "81:80", NULL), 0); /* one local port twice is fine */
    assert_int_equal(f.nports, 2);
    flags_free(&f);
    /* kubectl's -t (--tty) swallowing the pod: said so */
    assert_int_equal(parse(&f, err, "exec", "-i", "-t", "pod/web", "--", "ls", NULL), -EINVAL);
    assert_string_equal(err, "-t is --target here and takes a container name, not \"pod/web\"; for a terminal "
                             "write -it or --tty");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "exec", "-t", "-i", "pod/web", "--", "ls", NULL), -EINVAL);
    assert_non_null(strstr(err, "not \"-i\""));
    flags_free(&f);
    /* a bare pod name, as kubectl exec takes it; redir's ports stay ports */
    assert_int_equal(parse(&f, err, "exec", "web", "--", "ls", NULL), 0);
    assert_int_equal(f.npods, 1);
    assert_string_equal(f.pods[0].value, "web");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "redir", "web", "80", "8080:9090", NULL), 0);
    assert_true(f.npods == 1 && f.nports == 2);
    assert_string_equal(f.pods[0].value, "web");
    flags_free(&f);
    /* an empty command word */
    assert_int_equal(parse(&f, err, "exec", "pod/web", "--", "", NULL), -EINVAL);
    assert_non_null(strstr(err, "the command after '--' is an empty word"));
    flags_free(&f);
    /* kubectl exec's and cp's -c: the target container; capture's -c stays its count */
    assert_int_equal(parse(&f, err, "exec", "-c", "app", "pod/web", "--", "ls", NULL), 0);
    assert_true(f.target && !strcmp(f.target, "app") && !f.container);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "cp", "--container=app", "web:/etc/hosts", "h", NULL), 0);
    assert_true(f.target && !strcmp(f.target, "app"));
    flags_free(&f);
    assert_int_equal(parse(&f, err, "shell", "-t", "app", "-c", "app", "web", NULL), 0);
    flags_free(&f);
    assert_int_equal(parse(&f, err, "ps", "-t", "app", "-c", "side", "web", NULL), -EINVAL);
    assert_string_equal(err, "both -t app and -c side given: the container is one of them");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "--container", "app", "web", NULL), -EINVAL);
    assert_string_equal(err, "-c/--container is for logs, ps, shell, exec and cp; 'capture' takes the container "
                             "with -t/--target CONTAINER");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "list", "-c", "app", NULL), -EINVAL);
    assert_string_equal(err, "-c/--container is for logs, ps, shell, exec and cp; 'list' takes no container");
    flags_free(&f);
    assert_int_equal(parse(&f, err, "capture", "-i", "eth0", "pod/web", NULL), 0); /* -i stays capture's */
    assert_string_equal(f.iface, "eth0");
    flags_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(port_pairs),       cmocka_unit_test(selectors),           cmocka_unit_test(durations),
        cmocka_unit_test(globals_anywhere), cmocka_unit_test(shell_and_logs_rest), cmocka_unit_test(usage_errors),
        cmocka_unit_test(redir_includes),   cmocka_unit_test(capture_flags),       cmocka_unit_test(profiles),
        cmocka_unit_test(workload_targets), cmocka_unit_test(exec_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
