#include "logs-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/dynbuf.h"
#include "basic/hash.h"
#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "exitcode.h"
#include "kerr.h"
#include "pod.h"
#include "podsel.h"

#define MAX_STREAMS 256
#define TAIL_LINES 10L
#define NO_CONTAINER_SAID 32
#define RETRY_MS 10000 /* before following a container again whose kubectl logs failed */

static const char *const palette[] = {"32", "33", "34", "35", "36", "31", "92", "93", "94", "95", "96", "91"};

const char *logs_color_for(const char *pod, const char *container)
{
    uint32_t h = fnv1a32(fnv1a32(fnv1a32(FNV1A32_INIT, pod), "/"), container);
    return palette[h % (sizeof(palette) / sizeof(palette[0]))];
}

int logs_parse_ts(const char *line, logs_ts *ts, const char **text)
{
    struct tm tm = {0};
    const char *p = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -EINVAL;
    int32_t ns = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (digits++ < 9)
                ns = ns * 10 + (*p - '0');
        for (; digits < 9; digits++)
            ns *= 10;
    }
    if (*p != 'Z')
        return -EINVAL; /* kubectl prints UTC */
    p++;
    if (*p == ' ')
        p++;
    else if (*p != '\0')
        return -EINVAL;
    ts->sec = (int64_t)timegm(&tm);
    ts->nsec = ns;
    *text = p;
    return 0;
}

int logs_ts_cmp(const logs_ts *a, const logs_ts *b)
{
    if (a->sec != b->sec)
        return a->sec < b->sec ? -1 : 1;
    if (a->nsec != b->nsec)
        return a->nsec < b->nsec ? -1 : 1;
    return 0;
}

/* What the user selected: --all, -l SEL[:C], --pod NAME[:C], or a workload's
 * selector (deploy/NAME[:C] …, resolved once at the start). */
struct spec {
    enum { SPEC_ALL, SPEC_LABEL, SPEC_POD } kind;
    const char *value;
    const char *container; /* NULL: all (or -c) */
    char *owned;           /* value when it is a workload's selector */
};

struct stream {
    char pod[256];
    char container[256];
    char cid[256]; /* container id this stream follows */
    char from[40]; /* RFC 3339: where a follower that printed nothing starts again ("": all of it) */
    const char *color;
    kube_proc proc; /* pid > 0 while a follower runs */
    dynbuf out;     /* the follower's output; complete lines are consumed */
    dynbuf err;     /* the follower's stderr, for the message when it fails */
    bool have_ts;
    logs_ts last;           /* newest line printed */
    int at_last;            /* lines printed with exactly that time */
    int skip_at_last;       /* on resume: lines at `last` to drop again */
    bool skip_older;        /* on resume: drop lines older than `last` */
    int64_t retry_after_ms; /* after a failing follower */
    bool listed;            /* its container was in this poll's listing */
};

struct logs {
    kube k;
    bool color;
    struct spec *specs;
    size_t nspecs;
    const char *container; /* -c */
    struct stream streams[MAX_STREAMS];
    size_t nstreams;
    int64_t timeout_ms; /* --timeout: for each pod listing */
    bool cmd_mode;
    char start_time[40]; /* RFC 3339: followers present at start show lines from here */
    char first[2][80];   /* without a command: kubectl logs' --tail, --since-time ("": none) of those */
    bool first_poll_done;
    char said[NO_CONTAINER_SAID][256]; /* pods say_no_container named */
    size_t nsaid;
    bool out_gone;  /* writing stdout failed (its reader went): nothing more is written */
    bool said_over; /* say_over_limit said it */
};

/* One spec's pods in one poll. */
struct listing {
    pod_info *pods;
    size_t n;
};

/* text: tl bytes, NULs and all, as kubectl logs passes them. */
static void emit(struct logs *L, struct stream *s, const char *text, size_t tl)
{
    char prefix[600];
    if (L->out_gone)
        return;
    if (L->color)
        snprintf(prefix, sizeof(prefix), "\033[%sm[%s/%s]\033[0m ", s->color, s->pod, s->container);
    else
        snprintf(prefix, sizeof(prefix), "[%s/%s] ", s->pod, s->container);
    /* one write per line keeps lines whole next to the command's own output */
    size_t pl = strlen(prefix);
    char *line = malloc(pl + tl + 2);
    if (!line)
        return;
    memcpy(line, prefix, pl);
    memcpy(line + pl, text, tl);
    line[pl + tl] = '\n';
    /* SIGPIPE is ignored: a reader that went (logs ... | head) is an error here */
    if (fwrite(line, 1, pl + tl + 1, stdout) != pl + tl + 1 || fflush(stdout) != 0)
        L->out_gone = true;
    free(line);
}

/* One line of kubectl logs --timestamps (len bytes, a NUL after them). */
static void on_line(struct logs *L, struct stream *s, const char *line, size_t len)
{
    logs_ts ts;
    const char *text;
    if (logs_parse_ts(line, &ts, &text) < 0) {
        emit(L, s, line, len);
        return;
    }
    if (s->skip_older && s->have_ts) {
        int c = logs_ts_cmp(&ts, &s->last);
        if (c < 0)
            return;
        if (c == 0 && s->skip_at_last > 0) {
            s->skip_at_last--;
            return;
        }
        s->skip_older = false;
    }
    if (s->have_ts && logs_ts_cmp(&ts, &s->last) == 0) {
        s->at_last++;
    } else {
        s->last = ts;
        s->at_last = 1;
        s->have_ts = true;
    }
    emit(L, s, text, len - (size_t)(text - line));
}

static int read_stream(struct logs *L, struct stream *s)
{
    int rc = dynbuf_read(&s->out, s->proc.out_fd);
    if (rc <= 0) {
        if (rc == 0 && s->out.len) /* the last line, without its newline */
            on_line(L, s, s->out.p, s->out.len);
        dynbuf_consume(&s->out, s->out.len);
        return rc;
    }
    /* memchr, not strchr: a NUL in a line (printf '\0') hid every newline after it */
    char *start = s->out.p, *end = s->out.p + s->out.len, *nl;
    while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
        *nl = '\0';
        on_line(L, s, start, (size_t)(nl - start));
        start = nl + 1;
    }
    dynbuf_consume(&s->out, (size_t)(start - s->out.p));
    return 1;
}

static void read_err(struct stream *s)
{
    if (dynbuf_read(&s->err, s->proc.err_fd) <= 0) {
        close(s->proc.err_fd);
        s->proc.err_fd = -1;
    }
}

/* mode_arg, and mode_arg2 unless NULL: where kubectl logs starts. */
static void start_follower(struct logs *L, struct stream *s, const char *mode_arg, const char *mode_arg2)
{
    char pod[300], msg[512];
    snprintf(pod, sizeof(pod), "pod/%s", s->pod);
    const char *args[] = {"logs", "-f", "--timestamps", pod, "-c", s->container, mode_arg, mode_arg2, NULL};
    dynbuf_free(&s->err);
    dynbuf_consume(&s->out, s->out.len);
    int rc = kube_spawn(&L->k, args, KUBE_PIPE_OUT | KUBE_PIPE_ERR | KUBE_OWN_PGRP, &s->proc, msg, sizeof(msg));
    if (rc < 0) {
        fprintf(stderr, "error: %s\n", msg);
        s->proc.pid = -1;
        s->retry_after_ms = time_now_ms() + RETRY_MS;
    }
}

static void follower_ended(struct logs *L, struct stream *s)
{
    int st = kube_wait(s->proc.pid);
    kube_proc_close(&s->proc);
    s->proc.pid = -1;
    if (st != 0 && s->err.p) {
        char what[600], msg[2048];
        snprintf(what, sizeof(what), "follow the logs of %s/%s", s->pod, s->container);
        kerr_explain(what, s->err.p, L->k.ns, msg, sizeof(msg));
        fprintf(stderr, "error: %s\n", msg);
        s->retry_after_ms = time_now_ms() + RETRY_MS;
    }
}

static struct stream *find_stream(struct logs *L, const char *pod, const char *container)
{
    for (size_t i = 0; i < L->nstreams; i++)
        if (!strcmp(L->streams[i].pod, pod) && !strcmp(L->streams[i].container, container))
            return &L->streams[i];
    return NULL;
}

/* Starts, resumes or restarts the follower of one running container. */
static void consider(struct logs *L, const pod_info *p, const pod_container *c)
{
    struct stream *s = find_stream(L, p->name, c->name);
    if (s)
        s->listed = true;
    if (c->state != POD_STATE_RUNNING)
        return;
    const char *cid = c->id ? c->id : "";
    char arg[64];
    if (!s) {
        if (L->nstreams == MAX_STREAMS)
            return; /* say_over_limit said so */
        s = &L->streams[L->nstreams++];
        memset(s, 0, sizeof(*s));
        s->proc.pid = -1;
        s->listed = true;
        snprintf(s->pod, sizeof(s->pod), "%s", p->name);
        snprintf(s->container, sizeof(s->container), "%s", c->name);
        snprintf(s->cid, sizeof(s->cid), "%s", cid);
        s->color = logs_color_for(p->name, c->name);
        if (!L->first_poll_done) /* before the start: for --tail, --since or the command to say */
            snprintf(s->from, sizeof(s->from), "%s", L->start_time);
        if (!L->first_poll_done && L->cmd_mode)
            snprintf(arg, sizeof(arg), "--since-time=%s", L->start_time);
        else if (!L->first_poll_done) {
            start_follower(L, s, L->first[0], L->first[1][0] ? L->first[1] : NULL);
            return;
        } else
            snprintf(arg, sizeof(arg), "--tail=-1"); /* a new pod: all of it */
        start_follower(L, s, arg, NULL);
        return;
    }
    if (s->proc.pid > 0 || time_now_ms() < s->retry_after_ms)
        return;
    if (strcmp(s->cid, cid) != 0) { /* restarted: the new container from its start */
        snprintf(s->cid, sizeof(s->cid), "%s", cid);
        s->from[0] = '\0';
        s->have_ts = false;
        s->skip_older = false;
        start_follower(L, s, "--tail=-1", NULL);
        return;
    }
    if (!s->have_ts) { /* nothing printed: from the start again (--tail=-1 replayed what --tail 0 left out) */
        snprintf(arg, sizeof(arg), "--since-time=%s", s->from);
        start_follower(L, s, s->from[0] ? arg : "--tail=-1", NULL);
        return;
    }
    /* same container, stream ended: resume; sinceTime has 1 s resolution */
    time_t t = (time_t)s->last.sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[40];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(arg, sizeof(arg), "--since-time=%s", ts);
    s->skip_older = true;
    s->skip_at_last = s->at_last;
    start_follower(L, s, arg, NULL);
}

/* A pod without the container asked for (-c, POD:C): said once per pod,
 * for the first NO_CONTAINER_SAID pods, so that a name that matches nothing
 * does not follow nothing in silence. */
static void say_no_container(struct logs *L, const pod_info *p, const char *want)
{
    for (size_t i = 0; i < L->nsaid; i++)
        if (!strcmp(L->said[i], p->name))
            return;
    if (L->nsaid == NO_CONTAINER_SAID)
        return;
    snprintf(L->said[L->nsaid++], sizeof(L->said[0]), "%s", p->name);
    fprintf(stderr, "pod/%s has no container \"%s\"; its containers:", p->name, want);
    for (size_t c = 0; c < p->ncontainers; c++)
        fprintf(stderr, "%s %s", c ? "," : "", p->containers[c].name);
    fputc('\n', stderr);
}

/* Frees the slots of containers that are gone: the follower ended and the
 * container was not in a listing that succeeded in full. Pods come and go
 * (a rollout, jobs); without this the slots of the gone ones filled
 * MAX_STREAMS and new pods were never followed. */
static void forget_gone(struct logs *L)
{
    for (size_t i = 0; i < L->nstreams;) {
        struct stream *s = &L->streams[i];
        if (s->listed || s->proc.pid > 0) {
            i++;
            continue;
        }
        dynbuf_free(&s->out);
        dynbuf_free(&s->err);
        *s = L->streams[--L->nstreams];
    }
}

/* Lists the pods of one spec (pods, n; none when the listing failed). A pod
 * that does not exist (yet) is no failure: it is followed once it appears. */
static int list_spec(struct logs *L, const struct spec *sp, pod_info **pods, size_t *n, char *err, size_t errlen)
{
    int rc;
    *pods = NULL;
    *n = 0;
    if (sp->kind == SPEC_POD) {
        if (!(*pods = calloc(1, sizeof(**pods)))) {
            snprintf(err, errlen, "cannot follow logs: out of memory");
            return -ENOMEM;
        }
        rc = podsel_fetch(&L->k, sp->value, L->timeout_ms, *pods, err, errlen);
        *n = rc == 0 ? 1 : 0; /* pod_list_free frees the array either way */
        if (rc == -ENOENT && !L->first_poll_done)
            fprintf(stderr, "pod/%s does not exist (yet): following it once it appears\n", sp->value);
        return rc == -ENOENT ? 0 : rc;
    }
    rc = podsel_list(&L->k, sp->kind == SPEC_LABEL ? sp->value : NULL, L->timeout_ms, pods, n, err, errlen);
    if (rc == 0 && *n == 0 && !L->first_poll_done) {
        if (sp->kind == SPEC_LABEL)
            fprintf(stderr, "no pod matches %s%s (yet): following the pods that appear\n", sp->owned ? "" : "-l ",
                    sp->value);
        else if (L->k.ns)
            fprintf(stderr, "no pods in namespace %s (yet): following the pods that appear\n", L->k.ns);
        else
            fprintf(stderr, "no pods in the current namespace (yet): following the pods that appear\n");
    }
    return rc;
}

/* Whether spec sp follows container c of pod p. */
static bool spec_selects(const struct logs *L, const struct spec *sp, const pod_info *p, const pod_container *c)
{
    const char *want = sp->container ? sp->container : L->container;
    return !p->deleting && c && (!want || !strcmp(want, c->name));
}

/* Whether a spec before i selects container ctr of pod in this poll's listing. */
static bool selected_before(const struct logs *L, const struct listing *ls, size_t i, const char *pod, const char *ctr)
{
    for (size_t k = 0; k < i; k++)
        for (size_t j = 0; j < ls[k].n; j++)
            if (!strcmp(ls[k].pods[j].name, pod) &&
                spec_selects(L, &L->specs[k], &ls[k].pods[j], pod_container_find(&ls[k].pods[j], ctr)))
                return true;
    return false;
}

/* Says once, before their followers start, when more containers are selected
 * (running, or followed already) than MAX_STREAMS: the rest would be left out
 * in silence. The followers of deleted pods whose containers still run count
 * too: they hold their slots until the containers end. */
static void say_over_limit(struct logs *L, const struct listing *ls)
{
    size_t matched = 0;
    if (L->said_over)
        return;
    for (size_t i = 0; i < L->nspecs; i++)
        for (size_t j = 0; j < ls[i].n; j++)
            for (size_t c = 0; c < ls[i].pods[j].ncontainers; c++) {
                const pod_info *p = &ls[i].pods[j];
                const pod_container *pc = &p->containers[c];
                if (spec_selects(L, &L->specs[i], p, pc) &&
                    (pc->state == POD_STATE_RUNNING || find_stream(L, p->name, pc->name)) &&
                    !selected_before(L, ls, i, p->name, pc->name))
                    matched++;
            }
    for (size_t i = 0; i < L->nstreams; i++)
        if (L->streams[i].proc.pid > 0 &&
            !selected_before(L, ls, L->nspecs, L->streams[i].pod, L->streams[i].container))
            matched++;
    if (matched <= MAX_STREAMS)
        return;
    L->said_over = true;
    fprintf(stderr,
            "warning: %zu containers match; logs follows at most %d at once, so only the first %d are followed: "
            "narrow the pods with -l SELECTOR, or the containers with -c CONTAINER (or -l SELECTOR:CONTAINER)\n",
            matched, MAX_STREAMS, MAX_STREAMS);
}

/* Starts followers for what runs now. The first poll's errors are returned
 * (err): a selector that does not parse or a permission missing will not
 * mend by itself. Later ones are passed over: the next poll tries again. */
static int poll_pods(struct logs *L, char *ferr, size_t ferrlen)
{
    int first_rc = 0;
    bool all_listed = true;
    if (L->out_gone)
        return 0;
    struct listing *ls = calloc(L->nspecs, sizeof(*ls));
    if (!ls) {
        snprintf(ferr, ferrlen, "cannot follow logs: out of memory");
        return L->first_poll_done ? 0 : -ENOMEM;
    }
    for (size_t i = 0; i < L->nstreams; i++)
        L->streams[i].listed = false;
    for (size_t i = 0; i < L->nspecs; i++) {
        char err[1024];
        int rc = list_spec(L, &L->specs[i], &ls[i].pods, &ls[i].n, err, sizeof(err));
        all_listed &= rc == 0;
        if (rc < 0 && !L->first_poll_done && !first_rc) {
            first_rc = rc;
            snprintf(ferr, ferrlen, "%s", err);
        }
    }
    if (!first_rc)
        say_over_limit(L, ls);
    for (size_t i = 0; i < L->nspecs; i++)
        for (size_t j = 0; j < ls[i].n; j++) {
            const pod_info *p = &ls[i].pods[j];
            const char *want = L->specs[i].container ? L->specs[i].container : L->container;
            bool any = false;
            for (size_t c = 0; c < p->ncontainers; c++)
                if (spec_selects(L, &L->specs[i], p, &p->containers[c])) {
                    consider(L, p, &p->containers[c]);
                    any = true;
                }
            if (!any && want && !p->deleting)
                say_no_container(L, p, want);
        }
    for (size_t i = 0; i < L->nspecs; i++)
        pod_list_free(ls[i].pods, ls[i].n);
    free(ls);
    if (all_listed)
        forget_gone(L);
    L->first_poll_done = true;
    return first_rc;
}

/* The command after `--`, with the signals this process blocks unblocked. */
static pid_t run_command(char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        sig_unblock_all();
        execvp(argv[0], argv);
        int e = errno;
        fprintf(stderr, "error: cannot run \"%s\": %s\n", argv[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126); /* as a shell says: not found, or found but not runnable */
    }
    return pid;
}

static void stop_followers(struct logs *L)
{
    for (size_t i = 0; i < L->nstreams; i++) {
        struct stream *s = &L->streams[i];
        if (s->proc.pid > 0) {
            kube_proc_kill(&s->proc, SIGTERM);
            kube_wait(s->proc.pid);
        }
        kube_proc_close(&s->proc);
        dynbuf_free(&s->out);
        dynbuf_free(&s->err);
    }
}

static int build_specs(struct logs *L, const flags *f, char *err, size_t errlen)
{
    size_t n = f->all ? 1 : f->nlabels + f->npods + f->nworkloads;
    if (n == 0) {
        snprintf(err, errlen,
                 "nothing to follow: give --all, -l SELECTOR[:CONTAINER], --pod NAME[:CONTAINER] or "
                 "deploy/NAME[:CONTAINER] (also sts/, rs/, svc/)");
        return -EINVAL;
    }
    L->specs = calloc(n, sizeof(*L->specs));
    if (!L->specs) {
        snprintf(err, errlen, "cannot follow logs: out of memory");
        return -ENOMEM;
    }
    if (f->all) {
        L->specs[L->nspecs++].kind = SPEC_ALL;
        return 0;
    }
    for (size_t i = 0; i < f->nlabels; i++)
        L->specs[L->nspecs++] = (struct spec){SPEC_LABEL, f->labels[i].value, f->labels[i].container, NULL};
    for (size_t i = 0; i < f->npods; i++)
        L->specs[L->nspecs++] = (struct spec){SPEC_POD, f->pods[i].value, f->pods[i].container, NULL};
    for (size_t i = 0; i < f->nworkloads; i++) {
        char *sel;
        int rc = podsel_workload(&L->k, f->workloads[i].value, L->timeout_ms, &sel, err, errlen);
        if (rc < 0)
            return rc;
        L->specs[L->nspecs++] = (struct spec){SPEC_LABEL, sel, f->workloads[i].container, sel};
    }
    return 0;
}

static void free_specs(struct logs *L)
{
    for (size_t i = 0; i < L->nspecs; i++)
        free(L->specs[i].owned);
    free(L->specs);
}

/* The poll set: the signalfd first, then every running follower's pipes (owner[i] says whose). */
static size_t build_pollset(struct logs *L, int sfd, struct pollfd *pfd, struct stream **owner)
{
    size_t n = 0;
    pfd[n++] = (struct pollfd){sfd, POLLIN, 0};
    for (size_t i = 0; i < L->nstreams; i++) {
        struct stream *s = &L->streams[i];
        if (s->proc.pid <= 0)
            continue;
        if (s->proc.out_fd >= 0) {
            owner[n] = s;
            pfd[n++] = (struct pollfd){s->proc.out_fd, POLLIN, 0};
        }
        if (s->proc.err_fd >= 0) {
            owner[n] = s;
            pfd[n++] = (struct pollfd){s->proc.err_fd, POLLIN, 0};
        }
    }
    return n;
}

/* Reads what the followers wrote; reaps the ones whose pipes both ended. */
static void read_followers(struct logs *L, const struct pollfd *pfd, struct stream *const *owner, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (!pfd[i].revents)
            continue;
        struct stream *s = owner[i];
        if (pfd[i].fd == s->proc.out_fd) {
            if (read_stream(L, s) <= 0) {
                close(s->proc.out_fd);
                s->proc.out_fd = -1;
            }
        } else if (pfd[i].fd == s->proc.err_fd) {
            read_err(s);
        }
        if (s->proc.out_fd < 0 && s->proc.err_fd < 0)
            follower_ended(L, s);
    }
}

/* The run's state between loop turns. */
struct run {
    pid_t cmd;           /* the command after `--`, -1 when none (left) */
    int code;            /* exit code */
    int64_t drain_until; /* >= 0: stop at this time */
    int64_t drain_ms;    /* how long to keep following after the command */
};

/* SIGINT/SIGTERM go to the command when there is one (it decides; we follow its
 * exit), else they end the run. A terminal's Ctrl-C (SI_KERNEL) already went to
 * the whole foreground group, the command included: passed on again it got two.
 * true: stop now. */
static bool handle_signals(int sfd, struct run *run)
{
    struct signalfd_siginfo si;
    bool quit = false;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            continue;
        if (run->cmd > 0 && si.ssi_code != SI_KERNEL)
            kill(run->cmd, (int)si.ssi_signo);
        else
            quit = true;
    }
    int st;
    if (run->cmd > 0 && waitpid(run->cmd, &st, WNOHANG) == run->cmd) {
        run->code = WIFEXITED(st) ? WEXITSTATUS(st) : EXITCODE_SIGNALED(WTERMSIG(st));
        run->cmd = -1;
        run->drain_until = time_now_ms() + run->drain_ms;
    }
    return quit;
}

/* Follows until Ctrl-C, or until the command ended and the drain time passed. */
static void follow(struct logs *L, int sfd, struct run *run)
{
    struct pollfd pfd[1 + 2 * MAX_STREAMS];
    struct stream *owner[1 + 2 * MAX_STREAMS];
    int64_t next_poll = time_now_ms() + LOGS_POLL_MS;
    for (;;) {
        int64_t t = time_now_ms();
        if (run->drain_until >= 0 && t >= run->drain_until)
            return;
        if (L->out_gone && run->cmd <= 0 && run->drain_until < 0)
            return; /* nothing left to wait for */
        if (t >= next_poll) {
            char ignored[1024];
            poll_pods(L, ignored, sizeof(ignored));
            next_poll = t + LOGS_POLL_MS;
        }
        size_t n = build_pollset(L, sfd, pfd, owner);
        int64_t wait = next_poll - t;
        if (run->drain_until >= 0 && run->drain_until - t < wait)
            wait = run->drain_until - t;
        if (poll(pfd, n, (int)(wait < 0 ? 0 : wait)) < 0 && errno != EINTR)
            return;
        read_followers(L, pfd, owner, n);
        if (pfd[0].revents && handle_signals(sfd, run))
            return;
    }
}

int logs_main(const flags *f, const kube *k)
{
    static struct logs L; /* large: keep it off the stack */
    char err[512] = "";
    memset(&L, 0, sizeof(L));
    L.k = *k;
    L.container = f->container;
    L.color = !f->no_color && isatty(1);
    L.cmd_mode = f->nrest > 0;
    L.timeout_ms = f->timeout_ms;
    int rc = build_specs(&L, f, err, sizeof(err));
    if (rc < 0) {
        free_specs(&L);
        return exitcode_report(stderr, rc, err);
    }
    time_t now = time(NULL), since = now - (time_t)((f->since_ms + 999) / 1000);
    if (since < 0) /* --since 20000000h: before the year 1, which kubectl cannot parse; all of it */
        since = 0;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(L.start_time, sizeof(L.start_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* --since alone: all of that time (kubectl logs --since) */
    snprintf(L.first[0], sizeof(L.first[0]), "--tail=%ld",
             f->tail_given ? f->tail
             : f->since_ms ? -1
                           : TAIL_LINES);
    if (f->since_ms) {
        gmtime_r(&since, &tm);
        strftime(L.first[1], sizeof(L.first[1]), "--since-time=%Y-%m-%dT%H:%M:%SZ", &tm);
    }

    sigset_t ss;
    sig_block(&ss, SIGINT, SIGTERM, SIGCHLD, -1);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);

    char perr[1024] = "";
    rc = poll_pods(&L, perr, sizeof(perr));
    if (rc < 0) {
        stop_followers(&L);
        free_specs(&L);
        if (sfd >= 0)
            close(sfd);
        return exitcode_report(stderr, rc, perr);
    }
    struct run run = {.cmd = -1, .code = EXITCODE_OK, .drain_until = -1, .drain_ms = f->drain_ms};
    if (L.cmd_mode && (run.cmd = run_command(f->rest)) < 0) {
        fprintf(stderr, "error: cannot start \"%s\": %s\n", f->rest[0], strerror(errno));
        run.code = 127;
        run.drain_until = time_now_ms();
    }
    follow(&L, sfd, &run);
    stop_followers(&L);
    free_specs(&L);
    if (run.cmd > 0)
        run.code = kube_wait(run.cmd);
    if (sfd >= 0)
        close(sfd);
    if (L.out_gone && !L.cmd_mode)
        return EXITCODE_PIPE;
    return run.code;
}
