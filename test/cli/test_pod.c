/* Unit tests: pod JSON (pod.c), debug-container planning and manager log
 * parsing (ephem.c), the list table (list.c). Fixtures in fixtures/. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "basic/hash.h"
#include "ephem-internal.h"
#include "list-internal.h"
#include "pod.h"
#include "podsel.h"

#ifndef FIXTURES
#error FIXTURES must name the fixtures directory
#endif

static char *slurp(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FIXTURES, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void pod_fields(void **state)
{
    (void)state;
    pod_info p;
    assert_int_equal(pod_parse_str(slurp("pod_nginx.json"), &p), 0);
    assert_string_equal(p.name, "nginx-7c5f");
    assert_string_equal(p.ns, "default");
    assert_string_equal(p.phase, "Running");
    assert_string_equal(p.ip, "10.244.0.7");
    assert_int_equal(p.nhost_ips, 2); /* hostIPs (dual stack); hostIP alone only without them */
    assert_string_equal(p.host_ips[0], "172.18.0.2");
    assert_string_equal(p.host_ips[1], "fc00:f853:ccd:e793::2");
    assert_true(p.share_pid);
    assert_true(pod_is_running(&p));
    assert_int_equal(p.ncontainers, 2);
    const pod_container *n = pod_container_find(&p, "nginx");
    assert_non_null(n);
    assert_int_equal(n->state, POD_STATE_RUNNING);
    assert_string_equal(n->id, "0123456789abcdef"); /* runtime prefix stripped */
    assert_int_equal(n->restarts, 3);
    assert_string_equal(n->started, "2026-11-25T20:00:05Z");
    const pod_container *s = pod_container_find(&p, "sidecar");
    assert_int_equal(s->state, POD_STATE_WAITING);
    assert_string_equal(s->reason, "CrashLoopBackOff");
    assert_null(pod_container_find(&p, "nope"));
    assert_int_equal(p.nephemeral, 2);
    const pod_container *e = pod_ephemeral_find(&p, "dbg-tools-0a1b2c3d");
    assert_string_equal(e->target, "nginx");
    assert_int_equal(e->ncaps, 3);
    assert_int_equal(ephem_caps_of(e), EPHEM_CAPS_SHELL);
    const pod_container *e2 = pod_ephemeral_find(&p, "dbg-tools-0a1b2c3d-2");
    assert_true(e2->privileged);
    assert_int_equal(ephem_caps_of(e2), EPHEM_CAPS_ALL);
    assert_int_equal(e2->state, POD_STATE_TERMINATED);
    assert_int_equal(e2->exit_code, 137);
    pod_free(&p);

    assert_int_equal(
        pod_parse_str("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"old\"},\"status\":{\"hostIP\":\"10.1.2.3\"}}", &p),
        0);
    assert_int_equal(p.nhost_ips, 1); /* before 1.28: hostIP only */
    assert_string_equal(p.host_ips[0], "10.1.2.3");
    pod_free(&p);

    assert_int_equal(pod_parse_str("{\"kind\":\"Service\",\"metadata\":{\"name\":\"x\"}}", &p), -EINVAL);
    assert_int_equal(pod_parse_str("not json", &p), -EINVAL);
    assert_int_equal(pod_parse_str("{\"kind\":\"Pod\",\"metadata\":{}}", &p), -EINVAL);
}

static void newest_running(void **state)
{
    (void)state;
    pod_info *pods;
    size_t n;
    assert_int_equal(pod_list_parse(slurp("podlist.json"), &pods, &n), 0);
    assert_int_equal(n, 4);
    const pod_info *best = pod_newest_running(pods, n);
    assert_non_null(best);
    /* newer ones are Pending or being deleted */
    assert_string_equal(best->name, "web-new");
    assert_false(pod_is_running(&pods[3]));
    pod_list_free(pods, n);
    assert_int_equal(pod_list_parse("{\"kind\":\"PodList\",\"items\":[]}", &pods, &n), 0);
    assert_int_equal(n, 0);
    assert_null(pod_newest_running(pods, n));
    pod_list_free(pods, n);
}

/* Ready: running, not being deleted, and no Ready condition saying False;
 * a pod without conditions (kubesim) is ready when running. An unready pod's
 * why: its Ready condition's "REASON: MESSAGE", either alone, or none. */
static void ready_condition(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"\"Running\"}", "1", NULL},
        {"\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"X\"}]}", "1", NULL},
        {"\"Running\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"True\"},{\"type\":\"Ready\","
         "\"status\":\"False\"}]}",
         "0", NULL},
        {"\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"ContainersNotReady\","
         "\"message\":\"containers with unready status: [c]\"}]}",
         "0", "ContainersNotReady: containers with unready status: [c]"},
        {"\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"R\"}]}", "0", "R"},
        {"\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"message\":\"M\"}]}", "0", "M"},
        {"\"Pending\"}", "0", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[512];
        pod_info p;
        snprintf(json, sizeof json, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"w\"},\"status\":{\"phase\":%s}",
                 cases[i][0]);
        assert_int_equal(pod_parse_str(json, &p), 0);
        assert_int_equal(pod_is_ready(&p), cases[i][1][0] == '1');
        if (cases[i][2])
            assert_string_equal(p.unready_why, cases[i][2]);
        else
            assert_null(p.unready_why);
        pod_free(&p);
    }
}

static pod_info fixture_pod(void)
{
    pod_info p;
    assert_int_equal(pod_parse_str(slurp("pod_nginx.json"), &p), 0);
    return p;
}

/* Capability names both ways: the spec's names (with or without CAP_) to
 * bits, bits to the names a message shows. */
static void caps_names(void **state)
{
    (void)state;
    char *names[] = {"CAP_NET_RAW", "MKNOD", "SYS_PTRACE", "NET_BIND_SERVICE"};
    pod_container c = {.caps = names, .ncaps = 4};
    assert_int_equal(ephem_caps_of(&c), EPHEM_NET_RAW | EPHEM_MKNOD | EPHEM_SYS_PTRACE);
    /* what it has also counts the runtime's default set (KILL) */
    assert_true(ephem_container_has(&c, EPHEM_SYS_PTRACE | EPHEM_KILL));
    assert_false(ephem_container_has(&c, EPHEM_NET_ADMIN | EPHEM_KILL));
    char out[256];
    ephem_caps_format(EPHEM_NET_ADMIN | EPHEM_NET_RAW | EPHEM_MKNOD, out, sizeof out);
    assert_string_equal(out, "NET_ADMIN, NET_RAW, MKNOD");
    ephem_caps_format(0, out, sizeof out);
    assert_string_equal(out, "");
    ephem_caps_format(EPHEM_CAPS_ALL, out, 12); /* truncated, terminated */
    assert_string_equal(out, "NET_ADMIN, ");
}

static ephem_opts opts_for(const char *version, unsigned caps)
{
    return (ephem_opts){.version = version,
                        .image = "ghcr.io/kdiag-c/kdiag-manager:0.1.0",
                        .target = "nginx",
                        .caps = caps,
                        .timeout_ms = 1000};
}

static void naming(void **state)
{
    (void)state;
    char a[32], b[32];
    ephem_base_name("0.1.0", a, sizeof(a));
    ephem_base_name("0.1.0", b, sizeof(b));
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), strlen("dbg-tools-") + 8);
    assert_memory_equal(a, "dbg-tools-", 10);
    for (const char *p = a + 10; *p; p++)
        assert_non_null(strchr("0123456789abcdef", *p));
    ephem_base_name("0.1.1", b, sizeof(b));
    assert_string_not_equal(a, b);
    /* the contract's revision is in the name: not the name of the version alone (revision 1's) */
    snprintf(b, sizeof(b), "dbg-tools-%08x", fnv1a32(FNV1A32_INIT, "0.1.0"));
    assert_string_not_equal(a, b);
    snprintf(b, sizeof(b), "dbg-tools-%08x", fnv1a32(FNV1A32_INIT, "0.1.0+contract" CONTRACT_REVISION));
    assert_string_equal(a, b);
}

/* Rewrites the fixture's container names to this version's base name. */
static void rename_ours(pod_info *p, const char *version)
{
    char base[32];
    ephem_base_name(version, base, sizeof(base));
    free(p->ephemeral[0].name);
    p->ephemeral[0].name = strdup(base);
    char n2[48];
    snprintf(n2, sizeof(n2), "%s-2", base);
    free(p->ephemeral[1].name);
    p->ephemeral[1].name = strdup(n2);
}

/* One debug container per pod: the running one is reused when it has what the
 * command needs; when it lacks something the command fails with what and how
 * instead of adding another, unless --new-container asks for one. */
static void plan(void **state)
{
    (void)state;
    char base[32], want[48], err[1024] = "";
    ephem_base_name("9.9.9", base, sizeof(base));
    snprintf(want, sizeof(want), "%s-3", base);
    pod_info p = fixture_pod();
    rename_ours(&p, "9.9.9");
    ephem_plan pl;

    /* a running one with the shell capabilities serves ps/shell, with its secret */
    ephem_opts o = opts_for("9.9.9", EPHEM_CAPS_SHELL);
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_false(pl.create);
    assert_string_equal(pl.name, base);
    assert_string_equal(pl.secret, "00112233445566778899aabbccddeeff");

    /* what the runtime gives every container counts (capture: NET_RAW) */
    o = opts_for("9.9.9", EPHEM_CAPS_CAPTURE);
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_false(pl.create);

    /* one whose manager cannot prove a secret (none in its spec) is neither
     * reused nor counted: a new one with the profile's capabilities */
    char *secret = p.ephemeral[0].secret;
    p.ephemeral[0].secret = NULL;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    assert_string_equal(pl.name, want);
    assert_int_equal(pl.caps, EPHEM_CAPS_GENERAL);
    p.ephemeral[0].secret = secret;

    /* redir needs NET_ADMIN, which it lacks: no second container, one line
     * naming what is missing and the fix */
    o = opts_for("9.9.9", EPHEM_CAPS_REDIR);
    o.command = "redir";
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, base));
    assert_non_null(strstr(err, "lacks NET_ADMIN, which redir needs"));
    assert_non_null(strstr(err, "--profile general"));
    assert_non_null(strstr(err, "--new-container"));
    assert_null(strchr(err, '\n'));

    /* --new-container adds one after -2 that supersedes it: the union of
     * capabilities, also under the least-privilege profile */
    o.new_container = true;
    o.profile = EPHEM_PROFILE_RESTRICTED;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    assert_string_equal(pl.name, want);
    assert_int_equal(pl.caps, EPHEM_NET_ADMIN | EPHEM_CAPS_SHELL);

    /* --privileged needs a privileged one */
    o = opts_for("9.9.9", EPHEM_CAPS_PS);
    o.privileged = true;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "lacks privileged mode"));
    assert_non_null(strstr(err, "--profile sysadmin"));

    /* the running one has stopped: never reuse a terminated container; a new
     * one gets what every command needs, or (restricted) what this one does
     * beyond the runtime's default set */
    p.ephemeral[0].state = POD_STATE_TERMINATED;
    o = opts_for("9.9.9", EPHEM_CAPS_SHELL);
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    assert_string_equal(pl.name, want);
    assert_int_equal(pl.caps, EPHEM_CAPS_GENERAL);
    o.profile = EPHEM_PROFILE_RESTRICTED;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_int_equal(pl.caps, EPHEM_SYS_PTRACE | EPHEM_SYS_ADMIN);

    /* a cap on ours that ended (redir -l on a restarting target): none added
     * at it, with how many and what to do; one below it */
    o.max_ended = 2; /* both of ours ended: -2 on 2026-11-25, the first without a finishedAt (counts as now) */
    o.ended_window_s = 900;
    o.command = "redir";
    /* the cap is a rate: one that ended longer ago than the window does not count */
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    o.ended_window_s = 100L * 365 * 24 * 3600;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), -EMLINK);
    o.ended_window_s = 900;
    free(p.ephemeral[1].finished);
    p.ephemeral[1].finished = NULL;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), -EMLINK);
    assert_non_null(strstr(err, "has 2 debug containers of kubectl diag that ended within 15 min"));
    assert_non_null(strstr(err, "redir adds no more by itself until nginx has run 15 min without a restart"));
    /* nginx started on 2026-11-25, but ours ended just now: tried again a window from now */
    assert_int_equal(ephem_ended_wait(&p, "9.9.9", "nginx", 900), 901);
    assert_int_equal(ephem_ended_wait(&p, "9.9.9", "sidecar", 900), -1); /* not running: no time told */
    o.max_ended = 3;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    o.max_ended = 2; /* ours at another target ended with its restarts, not this one's */
    o.target = "sidecar";
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);

    /* another image or target is another manager */
    p.ephemeral[0].state = POD_STATE_RUNNING;
    o = opts_for("9.9.9", EPHEM_CAPS_SHELL);
    o.image = "other:1";
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    o = opts_for("9.9.9", EPHEM_CAPS_SHELL);
    o.target = "sidecar";
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);

    /* a still-starting one is waited for, not duplicated */
    p.ephemeral[0].state = POD_STATE_WAITING;
    o = opts_for("9.9.9", EPHEM_SYS_PTRACE);
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_false(pl.create);
    assert_string_equal(pl.name, base);

    /* another version's containers are not ours: plain base name */
    o = opts_for("1.0.0", EPHEM_CAPS_SHELL);
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_true(pl.create);
    ephem_base_name("1.0.0", base, sizeof(base));
    assert_string_equal(pl.name, base);
    pod_free(&p);
}

/* What a new container gets under each profile, and a profile that does not
 * give what the command needs refused before anything is added. */
static void plan_profiles(void **state)
{
    (void)state;
    char err[1024] = "";
    pod_info p = fixture_pod(); /* no containers of version 1.2.3 */
    ephem_plan pl;
    ephem_opts o = opts_for("1.2.3", EPHEM_CAPS_PS);
    o.command = "ps";
    o.profile = EPHEM_PROFILE_NETADMIN;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "--profile netadmin does not give SYS_PTRACE, which ps needs"));
    o.caps = EPHEM_CAPS_REDIR;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_int_equal(pl.caps, EPHEM_NET_ADMIN | EPHEM_NET_RAW);

    /* baseline: capture works on the runtime's NET_RAW, and nothing Pod
     * Security baseline refuses is added */
    o.caps = EPHEM_CAPS_CAPTURE;
    o.profile = EPHEM_PROFILE_BASELINE;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_int_equal(pl.caps & ~EPHEM_CAPS_BASELINE, 0);
    assert_true(pl.caps & EPHEM_SYS_CHROOT);
    o.caps = EPHEM_CAPS_SHELL;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "SYS_PTRACE, SYS_ADMIN"));

    /* restricted: redir without ports also gets what listing them needs */
    o = opts_for("1.2.3", EPHEM_CAPS_REDIR);
    o.extra_caps = EPHEM_CAPS_PS;
    o.profile = EPHEM_PROFILE_RESTRICTED;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_int_equal(pl.caps, EPHEM_NET_ADMIN | EPHEM_SYS_PTRACE);
    o.caps = EPHEM_CAPS_CAPTURE; /* in the default set: nothing added */
    o.extra_caps = 0;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_int_equal(pl.caps, 0);

    /* every command's row is in the general set */
    const unsigned rows[] = {EPHEM_CAPS_PS, EPHEM_CAPS_REDIR,   EPHEM_CAPS_SHELL, EPHEM_CAPS_EXEC,
                             EPHEM_CAPS_CP, EPHEM_CAPS_CAPTURE, EPHEM_CAPS_LOGS};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        assert_int_equal(rows[i] & ~EPHEM_CAPS_GENERAL, 0);
    ephem_profile prof;
    assert_int_equal(ephem_profile_parse("restricted", &prof), 0);
    assert_int_equal(prof, EPHEM_PROFILE_RESTRICTED);
    assert_int_equal(ephem_profile_parse("legacy", &prof), -EINVAL);
    pod_free(&p);
}

/* A pod with debug containers base (NET_ADMIN), base-2 (NET_ADMIN + shell
 * capabilities) and base-3 (all, still starting): what redir, ps, redir leave;
 * each with a secret in its spec, as the CLI makes them. */
#define ENV_SECRET "\"env\":[{\"name\":\"KDIAG_SECRET\",\"value\":\"00112233445566778899aabbccddeeff\"}],"
static pod_info three_managers(const char *base, const char *state1)
{
    char json[4096];
    pod_info p;
    snprintf(json, sizeof(json),
             "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"web\",\"namespace\":\"default\"},"
             "\"spec\":{\"containers\":[{\"name\":\"nginx\",\"image\":\"nginx\"}],\"ephemeralContainers\":["
             "{\"name\":\"%s\",\"image\":\"img\",\"targetContainerName\":\"nginx\"," ENV_SECRET
             "\"securityContext\":{\"capabilities\":{\"add\":[\"NET_ADMIN\"]}}},"
             "{\"name\":\"%s-2\",\"image\":\"img\",\"targetContainerName\":\"nginx\"," ENV_SECRET "\"securityContext\":"
             "{\"capabilities\":{\"add\":[\"NET_ADMIN\",\"SYS_PTRACE\",\"SYS_ADMIN\",\"SYS_CHROOT\"]}}},"
             "{\"name\":\"%s-3\",\"image\":\"img\",\"targetContainerName\":\"nginx\"," ENV_SECRET
             "\"securityContext\":{\"privileged\":true}}]},"
             "\"status\":{\"phase\":\"Running\",\"ephemeralContainerStatuses\":["
             "{\"name\":\"%s\",\"state\":{\"%s\":{}}},{\"name\":\"%s-2\",\"state\":{\"running\":{}}},"
             "{\"name\":\"%s-3\",\"state\":{\"waiting\":{\"reason\":\"ContainerCreating\"}}}]}}",
             base, base, base, base, state1, base, base);
    assert_int_equal(pod_parse_str(json, &p), 0);
    return p;
}

/* Every redirect of a pod goes to one manager: the oldest running one with
 * NET_ADMIN, which in pods from before per-manager tables owns `inet kdiag`. */
static void plan_oldest_running(void **state)
{
    (void)state;
    char base[32], want[48], err[1024];
    ephem_base_name("9.9.9", base, sizeof(base));
    pod_info p = three_managers(base, "running");
    ephem_plan pl;
    ephem_opts o = opts_for("9.9.9", EPHEM_NET_ADMIN);
    o.image = "img";
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_false(pl.create);
    assert_string_equal(pl.name, base);

    /* ps needs the shell capabilities: the oldest that has them */
    o.caps = EPHEM_CAPS_SHELL;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    snprintf(want, sizeof(want), "%s-2", base);
    assert_string_equal(pl.name, want);
    pod_free(&p);

    /* the oldest has exited: the next running one, never the starting -3 */
    p = three_managers(base, "terminated");
    o.caps = EPHEM_NET_ADMIN;
    assert_int_equal(ephem_plan_for(&p, &o, &pl, err, sizeof err), 0);
    assert_false(pl.create);
    assert_string_equal(pl.name, want);
    pod_free(&p);
}

static void container_json(void **state)
{
    (void)state;
    ephem_opts o = opts_for("0.1.0", EPHEM_NET_ADMIN);
    o.pull_policy = "IfNotPresent";
    json_t *c = ephem_container_json("dbg-tools-12345678", &o, EPHEM_NET_ADMIN | EPHEM_SYS_PTRACE,
                                     "00112233445566778899aabbccddeeff");
    assert_string_equal(json_string_value(json_object_get(c, "name")), "dbg-tools-12345678");
    assert_string_equal(json_string_value(json_object_get(c, "image")), o.image);
    assert_string_equal(json_string_value(json_object_get(c, "imagePullPolicy")), "IfNotPresent");
    assert_string_equal(json_string_value(json_object_get(c, "targetContainerName")), "nginx");
    json_t *add = json_object_get(json_object_get(json_object_get(c, "securityContext"), "capabilities"), "add");
    assert_int_equal(json_array_size(add), 2);
    assert_string_equal(json_string_value(json_array_get(add, 0)), "NET_ADMIN");
    assert_string_equal(json_string_value(json_array_get(add, 1)), "SYS_PTRACE");
    /* the secret its manager proves, in the environment only */
    json_t *env = json_object_get(c, "env");
    assert_int_equal(json_array_size(env), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(env, 0), "name")), "KDIAG_SECRET");
    assert_string_equal(json_string_value(json_object_get(json_array_get(env, 0), "value")),
                        "00112233445566778899aabbccddeeff");
    /* fields the API forbids on ephemeral containers are never set */
    assert_null(json_object_get(c, "ports"));
    assert_null(json_object_get(c, "resources"));
    assert_null(json_object_get(c, "livenessProbe"));
    json_decref(c);
    o.privileged = true;
    c = ephem_container_json("x", &o, 0, "00112233445566778899aabbccddeeff");
    assert_true(json_is_true(json_object_get(json_object_get(c, "securityContext"), "privileged")));
    json_decref(c);
}

#define SECRET "00112233445566778899aabbccddeeff"

static void banner(const char *secret, bool tunnel, char *out, size_t n)
{
    contract_banner b = {.grpc_port = 41234, .tunnel_port = tunnel ? 41235 : 0};
    snprintf(b.host, sizeof b.host, "127.0.0.1");
    snprintf(b.token, sizeof b.token, "0123456789abcdef0123456789abcdef");
    assert_int_equal(contract_banner_format(&b, secret, out, n), 0);
}

static void manager_logs(void **state)
{
    (void)state;
    ephem_manager m;
    char log[2048], g[512], err[512];
    memset(&m, 0, sizeof(m));
    banner(SECRET, true, g, sizeof g);
    snprintf(log, sizeof log, "warning: something\n%sredirect: port 80 ready\n", g);
    assert_int_equal(ephem_read_banner(log, SECRET, true, "nginx", "dbg", &m, err, sizeof err), 0);
    assert_int_equal(m.grpc_port, 41234);
    assert_int_equal(m.tunnel_port, 41235);
    assert_string_equal(m.token, "0123456789abcdef0123456789abcdef");

    /* a manager without a tunnel serves ps at once; redir is told why not */
    memset(&m, 0, sizeof(m));
    banner(SECRET, false, g, sizeof g);
    snprintf(log, sizeof log, "kdiag-manager: redirect unavailable: Too many open files\n%s", g);
    assert_int_equal(ephem_read_banner(log, SECRET, false, "nginx", "dbg", &m, err, sizeof err), 0);
    assert_int_equal(m.grpc_port, 41234);
    assert_int_equal(m.tunnel_port, 0);
    assert_int_equal(ephem_read_banner(log, SECRET, true, "nginx", "dbg", &m, err, sizeof err), -ENOTSUP);
    assert_non_null(strstr(err, "runs without its redirect tunnel"));
    assert_non_null(strstr(err, "kubectl logs nginx -c dbg"));

    /* lines forged with another secret (or none) are refused, not guessed */
    banner("ffeeddccbbaa99887766554433221100", true, g, sizeof g);
    assert_int_equal(ephem_read_banner(g, SECRET, false, "nginx", "dbg", &m, err, sizeof err), -EKEYREJECTED);
    assert_non_null(strstr(err, "do not prove the secret"));
    banner(NULL, true, g, sizeof g);
    snprintf(log, sizeof log, "%s%s", g, g);
    assert_int_equal(ephem_read_banner(log, SECRET, false, "nginx", "dbg", &m, err, sizeof err), -EAGAIN);
    assert_non_null(strstr(err, "do not prove the secret")); /* the last one may still get a proof */

    /* not there yet */
    memset(&m, 0, sizeof(m));
    assert_int_equal(ephem_read_banner("", SECRET, false, "nginx", "dbg", &m, err, sizeof err), -EAGAIN);
    assert_non_null(strstr(err, "did not print its ports"));
    assert_int_equal(ephem_read_banner(g, SECRET, false, "nginx", "dbg", &m, err, sizeof err), -EAGAIN);
    assert_int_equal(m.grpc_port, 0);
}

static void list_table(void **state)
{
    (void)state;
    pod_info p = fixture_pod();
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_int_equal(list_print(f, &p, 1, false), 2);
    fclose(f);
    assert_non_null(strstr(out, "POD"));
    assert_non_null(strstr(out, "nginx-7c5f"));
    assert_non_null(strstr(out, "dbg-tools-0a1b2c3d "));
    assert_non_null(strstr(out, "Running"));
    assert_non_null(strstr(out, "Exited(137)"));
    assert_null(strstr(out, "NAMESPACE"));
    free(out);
    out = NULL;
    f = open_memstream(&out, &len);
    assert_int_equal(list_print(f, &p, 1, true), 2);
    fclose(f);
    assert_int_equal(strncmp(out, "NAMESPACE ", 10), 0);
    assert_non_null(strstr(out, "\ndefault "));
    free(out);
    pod_free(&p);
}

static void ages(void **state)
{
    (void)state;
    char b[16];
    pod_format_age(5, b, sizeof(b));
    assert_string_equal(b, "5s");
    pod_format_age(600, b, sizeof(b));
    assert_string_equal(b, "10m");
    pod_format_age(3 * 3600, b, sizeof(b));
    assert_string_equal(b, "3h");
    pod_format_age(3 * 86400, b, sizeof(b));
    assert_string_equal(b, "3d");
    assert_true(pod_age_seconds("2000-01-01T00:00:00Z") > 86400L * 365 * 20);
    assert_int_equal(pod_age_seconds("garbage"), -1);
}

static void workload_selectors(void **state)
{
    (void)state;
    char err[512], *sel;
    assert_int_equal(podsel_selector_of("deployment/web",
                                        "{\"kind\":\"Deployment\",\"spec\":{\"selector\":{\"matchLabels\":"
                                        "{\"app\":\"web\",\"tier\":\"front\"}}}}",
                                        &sel, err, sizeof(err)),
                     0);
    assert_string_equal(sel, "app=web,tier=front");
    free(sel);
    assert_int_equal(podsel_selector_of("statefulset/db",
                                        "{\"kind\":\"StatefulSet\",\"spec\":{\"selector\":{\"matchLabels\":{\"a\":"
                                        "\"1\"},\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":"
                                        "[\"x\",\"y\"]},{\"key\":\"u\",\"operator\":\"NotIn\",\"values\":[\"z\"]},"
                                        "{\"key\":\"v\",\"operator\":\"Exists\"},{\"key\":\"w\",\"operator\":"
                                        "\"DoesNotExist\"}]}}}",
                                        &sel, err, sizeof(err)),
                     0);
    assert_string_equal(sel, "a=1,t in (x,y),u notin (z),v,!w");
    free(sel);
    assert_int_equal(podsel_selector_of("service/web", "{\"kind\":\"Service\",\"spec\":{\"selector\":{\"app\":\"web\"}}}",
                                        &sel, err, sizeof(err)),
                     0);
    assert_string_equal(sel, "app=web");
    free(sel);

    assert_int_equal(podsel_selector_of("service/ext", "{\"kind\":\"Service\",\"spec\":{\"ports\":[]}}", &sel, err,
                                        sizeof(err)),
                     -ENOENT);
    assert_null(sel);
    assert_non_null(strstr(err, "service/ext has no selector"));
    assert_int_equal(podsel_selector_of("deployment/x",
                                        "{\"kind\":\"Deployment\",\"spec\":{\"selector\":{\"matchExpressions\":"
                                        "[{\"key\":\"t\",\"operator\":\"Near\"}]}}}",
                                        &sel, err, sizeof(err)),
                     -ENOTSUP);
    assert_non_null(strstr(err, "cannot use the selector of deployment/x"));
    assert_int_equal(podsel_selector_of("deployment/x", "not json", &sel, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "not a Kubernetes object"));
}

/* A Service's TCP ports and their targetPorts: a number, a container port's
 * name, or none (the port itself); UDP ones and other kinds are left out. */
static void service_ports(void **state)
{
    (void)state;
    podsel_svc_port *sp;
    size_t n;
    assert_int_equal(podsel_service_ports("{\"kind\":\"Service\",\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":8080},"
                                          "{\"port\":53,\"protocol\":\"UDP\"},{\"port\":443,\"targetPort\":\"https\"},"
                                          "{\"port\":9090,\"protocol\":\"TCP\"}]}}",
                                          &sp, &n),
                     0);
    assert_int_equal(n, 3);
    assert_int_equal(sp[0].port, 80);
    assert_int_equal(sp[0].target, 8080);
    assert_int_equal(sp[1].port, 443);
    assert_int_equal(sp[1].target, 0);
    assert_string_equal(sp[1].target_name, "https");
    assert_int_equal(sp[2].port, 9090);
    assert_int_equal(sp[2].target, 9090);
    free(sp);
    assert_int_equal(podsel_service_ports("{\"kind\":\"Deployment\",\"spec\":{\"ports\":[{\"port\":80}]}}", &sp, &n),
                     0);
    assert_int_equal(n, 0);
    assert_null(sp);

    pod_info p;
    assert_int_equal(pod_parse_str("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"w\"},\"spec\":{\"containers\":[{\"name\":"
                                   "\"a\",\"ports\":[{\"containerPort\":81},{\"name\":\"http\",\"containerPort\":80}]}]}}",
                                   &p),
                     0);
    assert_int_equal(pod_port_by_name(&p, "http"), 80);
    assert_int_equal(pod_port_by_name(&p, "https"), 0);
    pod_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pod_fields),
        cmocka_unit_test(caps_names),
        cmocka_unit_test(newest_running),
        cmocka_unit_test(ready_condition),
        cmocka_unit_test(naming),
        cmocka_unit_test(plan),
        cmocka_unit_test(plan_profiles),
        cmocka_unit_test(plan_oldest_running),
        cmocka_unit_test(container_json),
        cmocka_unit_test(manager_logs),
        cmocka_unit_test(list_table),
        cmocka_unit_test(ages),
        cmocka_unit_test(workload_selectors),
        cmocka_unit_test(service_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
