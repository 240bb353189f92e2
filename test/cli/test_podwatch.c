/* Unit tests: podwatch's event lines and watch path (podwatch.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "podwatch-internal.h"

#define POD(phase, extra) \
    "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-1\",\"namespace\":\"default\",\"resourceVersion\":\"42\"" extra \
    "},\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx\"}]},\"status\":{\"phase\":\"" phase "\""

static void added_running_pod_is_ready(void **state)
{
    (void)state;
    podwatch_event ev;
    char rv[64] = "";
    const char *line = "{\"type\":\"ADDED\",\"object\":" POD("Running", "") "}}}";
    assert_int_equal(podwatch_parse_line(line, &ev, rv, sizeof rv), PODWATCH_LINE_EVENT);
    assert_int_equal(ev.type, PODWATCH_ADDED);
    assert_string_equal(ev.pod.name, "web-1");
    assert_true(ev.ready);
    assert_string_equal(rv, "42");
    pod_free(&ev.pod);
}

static void ready_false_deleting_or_pending_is_not_ready(void **state)
{
    (void)state;
    podwatch_event ev;
    char rv[64] = "";
    const char *lines[] = {
        "{\"type\":\"MODIFIED\",\"object\":" POD("Running", "") ",\"conditions\":[{\"type\":\"Ready\",\"status\":"
                                                                "\"False\"}]}}}",
        "{\"type\":\"MODIFIED\",\"object\":" POD("Running", ",\"deletionTimestamp\":\"2026-12-02T09:00:00Z\"") "}}}",
        "{\"type\":\"MODIFIED\",\"object\":" POD("Pending", "") "}}}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        assert_int_equal(podwatch_parse_line(lines[i], &ev, rv, sizeof rv), PODWATCH_LINE_EVENT);
        assert_int_equal(ev.type, PODWATCH_MODIFIED);
        assert_false(ev.ready);
        pod_free(&ev.pod);
    }
}

static void deleted_bookmark_expired_and_garbage(void **state)
{
    (void)state;
    podwatch_event ev;
    char rv[64] = "";
    assert_int_equal(podwatch_parse_line("{\"type\":\"DELETED\",\"object\":" POD("Running", "") "}}}", &ev, rv,
                                         sizeof rv),
                     PODWATCH_LINE_EVENT);
    assert_int_equal(ev.type, PODWATCH_DELETED);
    pod_free(&ev.pod);
    const char *bookmark = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":"
                           "\"77\"}}}";
    assert_int_equal(podwatch_parse_line(bookmark, &ev, rv, sizeof rv), PODWATCH_LINE_SKIP);
    assert_string_equal(rv, "77");
    const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}}";
    assert_int_equal(podwatch_parse_line(gone, &ev, rv, sizeof rv), PODWATCH_LINE_EXPIRED);
    assert_int_equal(podwatch_parse_line("not json", &ev, rv, sizeof rv), PODWATCH_LINE_SKIP);
    assert_int_equal(podwatch_parse_line("{\"type\":\"ADDED\"}", &ev, rv, sizeof rv), PODWATCH_LINE_SKIP);
    assert_string_equal(rv, "77");
}

static void path_encodes_the_selector_and_resumes(void **state)
{
    (void)state;
    char buf[512];
    assert_int_equal(podwatch_path(buf, sizeof buf, "prod", "app=web,tier in (a b)", ""), 0);
    assert_string_equal(buf, "/api/v1/namespaces/prod/pods?watch=1&allowWatchBookmarks=true"
                             "&labelSelector=app%3Dweb%2Ctier%20in%20%28a%20b%29");
    assert_int_equal(podwatch_path(buf, sizeof buf, "prod", "app=web", "1234"), 0);
    assert_non_null(strstr(buf, "&labelSelector=app%3Dweb&resourceVersion=1234"));
    assert_int_equal(podwatch_path(buf, 40, "prod", "app=web", ""), -E2BIG);
    /* PODWATCH_SELECTOR_MAX characters fit however many need encoding; one more does not */
    char sel[PODWATCH_SELECTOR_MAX + 2], path[4096];
    memset(sel, '=', PODWATCH_SELECTOR_MAX);
    sel[PODWATCH_SELECTOR_MAX] = '\0';
    assert_int_equal(podwatch_path(path, sizeof path, "prod", sel, "1234"), 0);
    strcat(sel, "=");
    assert_int_equal(podwatch_path(path, sizeof path, "prod", sel, "1234"), -E2BIG);
    char err[512];
    assert_int_equal(podwatch_check_selector(sel, "-l", err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "1025 characters long, more than the 1024"));
    sel[PODWATCH_SELECTOR_MAX] = '\0';
    assert_int_equal(podwatch_check_selector(sel, "-l", err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(added_running_pod_is_ready),
        cmocka_unit_test(ready_false_deleting_or_pending_is_not_ready),
        cmocka_unit_test(deleted_bookmark_expired_and_garbage),
        cmocka_unit_test(path_encodes_the_selector_and_resumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
