#include "podwatch-internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <jansson.h>

#include "basic/dynbuf.h"
#include "basic/signal-util.h"
#include "basic/text-util.h"
#include "basic/time-util.h"
#include "kerr.h"

#define PODWATCH_RETRY_MAX_MS 2000 /* the slowest restart pace while the watch keeps failing */
#define PODWATCH_LINE_MAX (8u << 20)
/* A selector in the retry line: its first and last bytes, the cause after it whole. */
#define PODWATCH_SHOWN_HEAD 64
#define PODWATCH_SHOWN_TAIL 64

struct podwatch {
    kube k;
    char ns[256];
    char *selector;
    podwatch_fn fn;
    void *ud;
    pthread_t th;
    bool started;
    int stop_efd;
    char rv[64]; /* the watch thread's: where the next child resumes */
};

int podwatch_parse_line(const char *line, podwatch_event *ev, char *rv, size_t rvlen)
{
    static const char *const types[] = {
        [PODWATCH_ADDED] = "ADDED", [PODWATCH_MODIFIED] = "MODIFIED", [PODWATCH_DELETED] = "DELETED"};
    int rc = PODWATCH_LINE_SKIP;
    memset(ev, 0, sizeof *ev);
    json_t *root = json_loads(line, 0, NULL);
    const char *type = json_string_value(json_object_get(root, "type"));
    json_t *obj = json_object_get(root, "object");
    if (!type || !json_is_object(obj))
        goto out;
    if (strcmp(type, "ERROR") == 0) {
        if (json_integer_value(json_object_get(obj, "code")) == 410)
            rc = PODWATCH_LINE_EXPIRED;
        goto out;
    }
    const char *v = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    if (v)
        snprintf(rv, rvlen, "%s", v);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(type, types[i]) == 0 && pod_parse(obj, &ev->pod) == 0) {
            if (!ev->pod.name) { /* not a pod we could name */
                pod_free(&ev->pod);
                break;
            }
            ev->type = (podwatch_type)i;
            ev->ready = pod_is_ready(&ev->pod);
            rc = PODWATCH_LINE_EVENT;
        }
out:
    json_decref(root);
    return rc;
}

int podwatch_path(char *buf, size_t n, const char *ns, const char *selector, const char *rv)
{
    static const char hex[] = "0123456789ABCDEF";
    char sel[3 * PODWATCH_SELECTOR_MAX + 1]; /* each byte at most %XX */
    size_t j = 0;
    if (strlen(selector) > PODWATCH_SELECTOR_MAX)
        return -E2BIG;
    for (const unsigned char *s = (const unsigned char *)selector; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("-._~", *s)) {
            sel[j++] = (char)*s;
        } else {
            sel[j++] = '%';
            sel[j++] = hex[*s >> 4];
            sel[j++] = hex[*s & 15];
        }
    }
    sel[j] = '\0';
    int w = snprintf(buf, n, "/api/v1/namespaces/%s/pods?watch=1&allowWatchBookmarks=true&labelSelector=%s%s%s",
                     ns, sel, *rv ? "&resourceVersion=" : "", rv);
    return w < 0 || (size_t)w >= n ? -E2BIG : 0;
}

/* Hands each complete line of b to the callback. false when the watch expired. */
static bool take_lines(podwatch *w, dynbuf *b)
{
    bool expired = false;
    char *start = b->p, *nl;
    while (start && (nl = strchr(start, '\n'))) {
        *nl = '\0';
        podwatch_event ev;
        int rc = podwatch_parse_line(start, &ev, w->rv, sizeof w->rv);
        if (rc == PODWATCH_LINE_EVENT) {
            w->fn(w->ud, &ev);
            pod_free(&ev.pod);
        }
        expired |= rc == PODWATCH_LINE_EXPIRED;
        start = nl + 1;
    }
    if (start)
        dynbuf_consume(b, (size_t)(start - b->p));
    return !expired;
}

/* Runs one kubectl watch until it ends. true when it ended by podwatch_free. */
static bool run_child(podwatch *w, bool *got, char *last, size_t lastlen)
{
    char path[4096]; /* the encoded selector (3 KiB at most), the namespace (255) and rv fit */
    if (podwatch_path(path, sizeof path, w->ns, w->selector, w->rv) < 0) {
        snprintf(last, lastlen, "the watch's path is too long");
        return false;
    }
    const char *args[] = {"get", "--raw", path, NULL};
    kube_proc p;
    if (kube_spawn(&w->k, args, KUBE_PIPE_OUT | KUBE_PIPE_ERR | KUBE_OWN_PGRP, &p, last, lastlen) < 0)
        return false;
    dynbuf out = {0}, errb = {0};
    bool stop = false;
    while (p.out_fd >= 0 || p.err_fd >= 0) {
        struct pollfd fds[3] = {{p.out_fd, POLLIN, 0}, {p.err_fd, POLLIN, 0}, {w->stop_efd, POLLIN, 0}};
        if (poll(fds, 3, -1) < 0)
            continue;
        if (fds[2].revents && !stop) {
            kube_proc_kill(&p, SIGTERM);
            stop = true;
        }
        size_t had = out.len;
        if (fds[0].revents && (dynbuf_read(&out, p.out_fd) <= 0 || out.len > PODWATCH_LINE_MAX)) {
            close(p.out_fd);
            p.out_fd = -1;
        }
        if (fds[1].revents && dynbuf_read(&errb, p.err_fd) <= 0) {
            close(p.err_fd);
            p.err_fd = -1;
        }
        *got |= out.len > had;
        if (!stop && !take_lines(w, &out)) {
            w->rv[0] = '\0'; /* too old: list afresh */
            kube_proc_kill(&p, SIGTERM);
        }
    }
    kube_wait(p.pid);
    kube_proc_close(&p);
    kube_first_line(errb.p ? errb.p : "", last, lastlen);
    dynbuf_free(&out);
    dynbuf_free(&errb);
    return stop;
}

static void *watch_main(void *arg)
{
    podwatch *w = arg;
    int failures = 0;
    bool said = false;
    char last[512];
    sig_block_stop(NULL);
    for (;;) {
        bool got = false;
        last[0] = '\0';
        if (run_child(w, &got, last, sizeof last))
            break;
        failures = got ? 0 : failures + 1;
        if (failures >= 3 && !said) {
            char why[1024];
            if (!*last || kerr_explain("watch the pods", last, w->ns, why, sizeof why) == KERR_OTHER)
                snprintf(why, sizeof why, "%s", *last ? last : "kubectl ended");
            char sel[TEXT_SHOWN_SIZE(PODWATCH_SHOWN_HEAD, PODWATCH_SHOWN_TAIL)];
            fprintf(stderr, "watching the pods matching -l %s fails; retrying every %d s: %s\n",
                    text_shown(sel, w->selector, PODWATCH_SHOWN_HEAD, PODWATCH_SHOWN_TAIL),
                    PODWATCH_RETRY_MAX_MS / 1000, why);
        }
        said = failures >= 3;
        int backoff = failures ? (failures > 5 ? PODWATCH_RETRY_MAX_MS : 200 * failures) : 0;
        struct pollfd sp = {w->stop_efd, POLLIN, 0};
        if (poll(&sp, 1, backoff) > 0)
            break;
    }
    return NULL;
}

int podwatch_check_selector(const char *selector, const char *from, char *err, size_t errlen)
{
    size_t len = strlen(selector);
    if (len <= PODWATCH_SELECTOR_MAX)
        return 0;
    snprintf(err, errlen,
             "%s: the selector is %zu characters long, more than the %d kubectl diag can watch the pods of: shorten "
             "it (match fewer labels, or one label the pods share), or name one pod (pod/NAME)",
             from, len, PODWATCH_SELECTOR_MAX);
    return -EINVAL;
}

int podwatch_new(podwatch **ret, const kube *k, const char *ns, const char *selector, podwatch_fn fn, void *ud,
                 char *err, size_t errlen)
{
    int rc;
    *ret = NULL;
    if ((rc = podwatch_check_selector(selector, "-l", err, errlen)) < 0)
        return rc;
    podwatch *w = calloc(1, sizeof *w);
    if (w)
        w->stop_efd = -1;
    if (!w || !(w->selector = strdup(selector))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "cannot watch pods: out of memory");
        goto fail;
    }
    w->k = *k;
    w->fn = fn;
    w->ud = ud;
    if (ns)
        snprintf(w->ns, sizeof w->ns, "%s", ns);
    else
        kube_context_ns(k, w->ns, sizeof w->ns);
    w->stop_efd = eventfd(0, EFD_CLOEXEC);
    if (w->stop_efd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot watch pods: eventfd: %s", strerror(-rc));
        goto fail;
    }
    rc = -pthread_create(&w->th, NULL, watch_main, w);
    if (rc < 0) {
        snprintf(err, errlen, "cannot watch pods: cannot start a thread: %s", strerror(-rc));
        goto fail;
    }
    w->started = true;
    *ret = w;
    return 0;
fail:
    podwatch_free(w);
    return rc;
}

void podwatch_free(podwatch *w)
{
    if (!w)
        return;
    if (w->started) {
        uint64_t one = 1;
        (void)!write(w->stop_efd, &one, sizeof one);
        pthread_join(w->th, NULL);
    }
    if (w->stop_efd >= 0)
        close(w->stop_efd);
    free(w->selector);
    free(w);
}
