#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/hex-util.h"
#include "basic/signal-util.h"
#include "basic/text-util.h"
#include "basic/time-util.h"
#include "capture_client.h"
#include "exitcode.h"
#include "podsel.h"
#include "podwatch.h"
#include "session.h"

#define CAPTURE_PODS_MAX 64

typedef struct capture_cli capture_cli;

/* One pod's capture, on its own thread. */
typedef struct {
    capture_cli *cli;
    session sess;
    bool opened;  /* sess is open (on the pod's thread) */
    pod_info pod; /* --all-pods: the pod as listed, until the thread's session takes it */
    rpc_client *cl;
    capture_client *cc;
    pthread_t th;
    bool started; /* th runs */
    bool counting;
    int64_t last_count_ms;
    int rc;
    bool cut; /* its start was ended by a stop signal: not a failure */
    capture_client_stats s;
    rpc_status st;
    char err[1024];    /* why the session or the call did not start */
    uint32_t duration; /* ms; -d, or what is left of it for a pod that joined later */
    char name[256];    /* --all-pods: the pod's, for the watch (sess and pod belong to the thread) */
    bool deleted;      /* --all-pods: it went, seen by the watch or its forward (under cli->mu) */
    unsigned gen;      /* the forward's generation the call went over */
    char gone[1024];   /* the stream broke: the forward's word on why the pod or its debug container went */
} capture_pod;

struct capture_cli {
    const flags *f;
    const kube *k;
    int out_fd;
    capture_pcapng *ng; /* pcapng output, or NULL: pcap */
    int done_efd;       /* written once by each pod's thread when its stream ended */
    bool tty;           /* stderr is a terminal: a live packet count (one pod) */
    const char *iface;
    pthread_mutex_t mu; /* stopping, npods and started once the watch runs, each pod's cc while they start */
    bool stopping;
    bool interrupted;  /* a stop signal came */
    capture_pod *pods; /* --all-pods: room for CAPTURE_PODS_MAX */
    size_t npods;
    size_t started;   /* threads started */
    int64_t start_ms; /* when the first streams started: -d counts from here */
    char *selector;   /* --all-pods: what the watch follows */
    podwatch *watch;  /* --all-pods: pods that start running later */
    char none[1024];  /* --all-pods: why no pod runs at the start, or "": said once the watch waits for one */
    bool full_said;
    const char *path; /* -w FILE */
    char *tmp;        /* what FILE is written as until the first pod is ready, or NULL */
    bool placed;      /* tmp renamed to path (under mu) */
    bool kept;        /* tmp could not be renamed: the capture stays in tmp (under mu) */
};

/* -w's path for people: "stdout" for "-". */
static const char *output_name(const char *path)
{
    return strcmp(path, "-") ? path : "stdout";
}

#define CAPTURE_NOT_A_TERMINAL \
    "capture writes pcap, not to a terminal: give -w FILE, or pipe stdout to a reader " \
    "(-w - | tcpdump -r -, or | wireshark -k -i -)"

static const char *linktype_name(uint32_t lt)
{
    return lt == 1 ? "Ethernet" : lt == 276 ? "LINUX_SLL2" : "another link type";
}

/* The first pod captures: FILE takes the place of what was there. Until now
 * a usage error (a filter or interface the manager refused) left it alone. */
static void place_output(capture_cli *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->tmp && !c->placed) {
        if (rename(c->tmp, c->path) == 0)
            c->placed = true;
        else if (!c->kept)
            fprintf(stderr, "warning: cannot name the capture %s (%s): it is written as %s\n", c->path,
                    strerror(errno), c->tmp);
        c->kept = !c->placed;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Whether path is a link of /proc (/dev/stdout, /dev/fd/N, /proc/self/fd/N):
 * an fd of this process, written as it is. */
static bool proc_link(const char *path)
{
    char text[7] = "", *copy = strdup(path);
    (void)!readlink(path, text, sizeof text - 1);
    char *rd = copy ? realpath(dirname(copy), NULL) : NULL;
    bool in_proc = rd && strncmp(rd, "/proc/", 6) == 0;
    free(rd);
    free(copy);
    return in_proc || strcmp(text, "/proc/") == 0;
}

/* The file -w FILE names: a symlink's regular file (*real, the caller frees),
 * which is then replaced as FILE would be (the link was followed at once and
 * its file truncated, also when the capture was then refused); else FILE. */
static const char *output_file(const char *path, char **real)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode) || proc_link(path) || !(*real = realpath(path, NULL)))
        return path;
    return stat(*real, &st) == 0 && S_ISREG(st.st_mode) ? *real : path;
}

/* Where -w FILE is written: a regular file, or none yet, through a new file
 * beside it (".NAME.kdiag-<hex>", *tmp) with FILE's mode and owner, renamed
 * over it once a pod captures (place_output); anything else (a FIFO,
 * /dev/stdout, a symlink output_file left), or a FILE beside which we may not make a file, as
 * it is, as before. The fd, or -errno (with the message in err when it is not
 * "cannot write FILE: <errno's text>"). */
static int open_output(const char *path, char **tmp, char *err, size_t errlen)
{
    struct stat st;
    *tmp = NULL;
    bool exists = lstat(path, &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            return -EISDIR;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        return fd < 0 ? -errno : fd;
    }
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    int dl = slash ? (int)(slash - path + 1) : 0;
    for (int i = 0; i < 100; i++) {
        char hex[13];
        if (hex_random(hex, 6) < 0)
            return -EIO;
        free(*tmp);
        if (asprintf(tmp, "%.*s.%s.kdiag-%s", dl, path, base, hex) < 0) {
            *tmp = NULL;
            return -ENOMEM;
        }
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 && exists) { /* a capture is private when FILE was (0600) */
            (void)!fchown(fd, st.st_uid, st.st_gid);
            (void)!fchmod(fd, st.st_mode & 07777);
        }
        if (fd < 0 && exists && (errno == EACCES || errno == EPERM)) {
            /* no new file beside FILE (a directory we may not write in): FILE itself, as before */
            free(*tmp);
            *tmp = NULL;
            fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
            return fd < 0 ? -errno : fd;
        }
        if (fd >= 0 || errno != EEXIST) {
            int rc = fd >= 0 ? fd : -errno;
            if (fd < 0) {
                free(*tmp);
                *tmp = NULL;
            }
            if (rc < 0 && exists) /* /proc/version: its directory's ENOENT read as if FILE were missing */
                snprintf(err, errlen, "cannot write %s: no new file can be made in %.*s to replace it (%s)", path,
                         dl > 1 ? dl - 1 : 1, dl ? path : ".", strerror(-rc));
            return rc;
        }
    }
    free(*tmp);
    *tmp = NULL;
    return -EEXIST;
}

/* An interface's name as a line shows it: the pod names its own, and one
 * with an escape sequence (NET_ADMIN in the pod can make it) must not reach
 * the terminal raw (text_shown). */
#define IFACE_SHOWN 24u
typedef char iface_shown_buf[TEXT_SHOWN_SIZE(IFACE_SHOWN, IFACE_SHOWN)];
static const char *iface_shown(const capture_client_iface *i, iface_shown_buf out)
{
    return text_shown(out, i->name, IFACE_SHOWN, IFACE_SHOWN);
}

static int on_progress(void *ud, const capture_client_stats *s)
{
    capture_pod *p = ud;
    capture_cli *c = p->cli;
    if (s->ready && s->packets == 0 && !p->counting) {
        place_output(c);
        char line[1024];
        iface_shown_buf shown;
        int n = snprintf(line, sizeof line, "capturing on %s in pod/%s (", c->iface, p->sess.pod.name);
        for (size_t i = 0; i < s->nifaces && n > 0 && (size_t)n < sizeof line; i++)
            n += snprintf(line + n, sizeof line - (size_t)n, "%s%s", i ? ", " : "", iface_shown(&s->ifaces[i], shown));
        if (n > 0 && (size_t)n < sizeof line)
            snprintf(line + n, sizeof line - (size_t)n, "), %s, snaplen %u; Ctrl-C to stop\n",
                     linktype_name(s->linktype), s->snaplen);
        fputs(line, stderr); /* one write: several pods print theirs at once */
        p->counting = true;
        return 0;
    }
    int64_t now = time_now_ms();
    if (c->tty && c->npods == 1 && now - p->last_count_ms >= 1000) {
        fprintf(stderr, "\r%llu packets", (unsigned long long)s->packets);
        p->last_count_ms = now;
    }
    return 0;
}

/* Opens the pod's session and client, unless Ctrl-C came first (a stop
 * signal while they open ends their kubectl calls: kube_stop_all). */
static int pod_start(capture_pod *p)
{
    capture_cli *c = p->cli;
    session_opts so = session_opts_from_flags(c->f, EPHEM_CAPS_CAPTURE, true);
    if (c->selector) { /* --all-pods: the pod as listed or watched */
        so.pod = NULL;
        so.selector = so.workload = NULL;
        so.pod_read = &p->pod;
    }
    int rc = session_open(c->k, &so, &p->sess, p->err, sizeof p->err);
    if (rc < 0)
        return rc;
    p->opened = true;
    rc = session_client(&p->sess, &p->cl, &p->gen, p->err, sizeof p->err);
    if (rc < 0)
        return rc;
    capture_client_req req = {.interface = c->f->iface,
                              .filter = c->f->filter,
                              .snaplen = c->f->snaplen,
                              .count = c->f->count,
                              .duration_ms = p->duration};
    char name[300];
    snprintf(name, sizeof name, "pod/%s", p->sess.pod.name);
    pthread_mutex_lock(&c->mu);
    rc = c->stopping ? 0 : capture_client_new(&p->cc, p->cl, &req);
    if (rc == 0 && p->cc && c->ng)
        rc = capture_client_set_pcapng(p->cc, c->ng, name);
    pthread_mutex_unlock(&c->mu);
    if (rc < 0)
        snprintf(p->err, sizeof p->err, "cannot start the Capture call: %s", strerror(-rc));
    return rc;
}

/* A started stream broke (UNAVAILABLE: the connection went): was it the pod
 * going? The watch may not have seen that yet; the forward's pod check tells. */
static void stream_broke(capture_pod *p)
{
    capture_cli *c = p->cli;
    char why[1024];
    pthread_mutex_lock(&c->mu);
    bool stopping = c->stopping;
    pthread_mutex_unlock(&c->mu);
    if (stopping || !p->s.ready || p->st.code != GRPC_STATUS_UNAVAILABLE ||
        session_gone(&p->sess, p->gen, SESSION_GONE_WAIT_MS, why, sizeof why) != -ENOENT)
        return;
    snprintf(p->gone, sizeof p->gone, "%s", why);
    if (!c->selector || !portfwd_pod_went(p->sess.pf)) /* one pod, or its debug container exited: a failure */
        return;
    pthread_mutex_lock(&c->mu);
    if (!p->deleted)
        fprintf(stderr, "%s: its capture ends with it\n", why);
    p->deleted = true;
    pthread_mutex_unlock(&c->mu);
}

static void *capture_thread(void *arg)
{
    capture_pod *p = arg;
    p->rc = pod_start(p);
    pthread_mutex_lock(&p->cli->mu);
    p->cut = p->rc < 0 && p->cli->interrupted;
    if (p->rc < 0 && !p->cut && !p->cli->stopping && p->cli->selector) /* --all-pods: the others go on */
        fprintf(stderr, "pod/%s: cannot capture: %s; the other pods' captures go on\n", p->name, p->err);
    pthread_mutex_unlock(&p->cli->mu);
    if (p->rc == 0 && p->cc)
        p->rc = capture_client_run(p->cc, p->cli->out_fd, on_progress, p, &p->s, &p->st);
    if (p->rc < 0 && p->rc != -EPIPE)
        stream_broke(p);
    uint64_t one = 1;
    (void)!write(p->cli->done_efd, &one, sizeof one);
    return NULL;
}

/* The end: packets captured and dropped, per interface; "pod/NAME: " first with several pods. */
static void print_summary(const capture_cli *c, const capture_pod *p, const char *path)
{
    const capture_client_stats *s = &p->s;
    if (c->tty && p->last_count_ms)
        fputc('\n', stderr);
    char line[2048];
    int n = snprintf(line, sizeof line,
                     "%s%s%s%llu packets captured (%llu bytes written to %s), %llu dropped by the kernel, %llu "
                     "lost in the stream",
                     c->npods > 1 ? "pod/" : "", c->npods > 1 ? p->sess.pod.name : "", c->npods > 1 ? ": " : "",
                     (unsigned long long)s->packets, (unsigned long long)s->bytes, output_name(path),
                     (unsigned long long)s->kernel_drops,
                     (unsigned long long)(s->captured > s->packets ? s->captured - s->packets : 0));
    const char *sep = "; ";
    iface_shown_buf shown;
    for (size_t i = 0; i < s->nifaces && n > 0 && (size_t)n < sizeof line; i++)
        if (s->ifaces[i].packets) {
            n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %llu", sep, iface_shown(&s->ifaces[i], shown),
                          (unsigned long long)s->ifaces[i].packets);
            sep = ", ";
        }
    fprintf(stderr, "%s\n", line);
}

/* Caller holds c->mu: starts p's thread. */
static void start_locked(capture_cli *c, capture_pod *p)
{
    if ((p->started = pthread_create(&p->th, NULL, capture_thread, p) == 0)) {
        c->started++;
        return;
    }
    p->rc = -EAGAIN;
    snprintf(p->err, sizeof p->err, "cannot start a thread");
}

/* What is left of -d since the start (ms); INT64_MAX without -d. */
static int64_t duration_left(const capture_cli *c)
{
    return c->f->duration_ms > 0 ? c->f->duration_ms - (time_now_ms() - c->start_ms) : INT64_MAX;
}

/* The watch's thread: a pod of the selector that runs and is not captured
 * yet joins (what is left of -d is its duration); a pod that goes is noted. */
static void on_pod(void *ud, podwatch_event *ev)
{
    capture_cli *c = ud;
    pod_info *pod = &ev->pod;
    pthread_mutex_lock(&c->mu);
    capture_pod *known = NULL;
    for (size_t i = 0; i < c->npods && !known; i++) /* a deleted one's name may come back (a StatefulSet) */
        if (strcmp(c->pods[i].name, pod->name) == 0 && !c->pods[i].deleted)
            known = &c->pods[i];
    if (ev->type == PODWATCH_DELETED || pod->deleting) {
        if (known && !known->deleted)
            fprintf(stderr, "pod/%s is being deleted: its capture ends with it\n", known->name);
        if (known)
            known->deleted = true;
    } else if (!known && pod_is_running(pod) && !c->stopping && duration_left(c) > 0) {
        if (c->npods == CAPTURE_PODS_MAX) {
            if (!c->full_said)
                fprintf(stderr, "pod/%s is not captured: %d pods are (the most)\n", pod->name, CAPTURE_PODS_MAX);
            c->full_said = true;
        } else {
            capture_pod *p = &c->pods[c->npods++];
            p->cli = c;
            snprintf(p->name, sizeof p->name, "%s", pod->name);
            p->pod = *pod;
            memset(pod, 0, sizeof(*pod)); /* taken over */
            if (c->f->duration_ms > 0)
                p->duration = (uint32_t)duration_left(c);
            fprintf(stderr, "pod/%s started: capturing it%s\n", p->name, c->npods > 1 ? " too" : "");
            start_locked(c, p);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* Whether the command is done once ended streams have ended: every stream
 * started ended, and (following pods) -c or -d said when to stop (-c alone:
 * once a pod was captured; until then it waits for one). */
static bool all_done(capture_cli *c, size_t ended)
{
    pthread_mutex_lock(&c->mu);
    bool done = ended >= c->started &&
                (!c->watch || (c->f->duration_ms > 0 ? duration_left(c) <= 0 : c->f->count > 0 && c->started));
    pthread_mutex_unlock(&c->mu);
    return done;
}

/* Runs every pod's stream (and, with --all-pods, those of pods that start
 * later) until they end or a stop signal (sfd) cancels them. -errno when
 * there is no pod to capture and no watch to wait for one (err says why). */
static int run_until_end(capture_cli *c, int sfd, char *err, size_t errlen)
{
    c->start_ms = time_now_ms();
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->npods; i++) {
        c->pods[i].duration = (uint32_t)c->f->duration_ms;
        start_locked(c, &c->pods[i]);
    }
    pthread_mutex_unlock(&c->mu);
    int rc = c->selector ? podwatch_new(&c->watch, c->k, c->k->ns, c->selector, on_pod, c, err, errlen) : 0;
    if (rc < 0 && c->npods == 0)
        return rc;
    if (rc < 0)
        fprintf(stderr, "pods that start later are not captured: %s\n", err);
    if (c->none[0])
        fprintf(stderr, "%s; waiting for one to run (Ctrl-C to stop)\n", c->none);
    for (size_t ended = 0; !all_done(c, ended);) {
        int64_t left = duration_left(c); /* wake at the end of -d: it ends the following */
        int wait = c->watch && left > 0 && left < INT64_MAX ? (int)left : -1;
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = c->done_efd, .events = POLLIN}};
        if (poll(pf, 2, wait) < 0 && errno != EINTR)
            break;
        uint64_t n;
        if (pf[1].revents && read(c->done_efd, &n, sizeof n) == sizeof n)
            ended += n;
        if (pf[0].revents) {
            struct signalfd_siginfo si;
            (void)!read(sfd, &si, sizeof si);
            bool opening = false;
            pthread_mutex_lock(&c->mu);
            c->stopping = c->interrupted = true; /* pods still opening their session capture nothing */
            for (size_t i = 0; i < c->npods; i++)
                if (c->pods[i].cc)
                    capture_client_cancel(c->pods[i].cc); /* the batch being written is finished first */
                else
                    opening |= c->pods[i].started;
            pthread_mutex_unlock(&c->mu);
            /* an opener may wait for a debug container up to --timeout: a stop means now */
            if (opening)
                kube_stop_all();
            break;
        }
    }
    pthread_mutex_lock(&c->mu);
    c->stopping = true; /* no pod joins any more */
    pthread_mutex_unlock(&c->mu);
    podwatch_free(c->watch); /* without c->mu: its callback takes it */
    c->watch = NULL;
    for (size_t i = 0; i < c->npods; i++)
        if (c->pods[i].started)
            pthread_join(c->pods[i].th, NULL);
    return 0;
}

/* The exit code of how one pod's capture ended; the message for the user in err. */
static int capture_result(const capture_pod *p, const char *path, char *err, size_t errlen)
{
    if (p->rc == 0 || p->rc == -EPIPE || p->cut) /* -EPIPE: the reader of stdout went away */
        return 0;
    if (p->deleted) /* its stream ended with it (said when the watch saw it): no failure */
        return 0;
    if (p->rc == -ECANCELED && p->cli->interrupted) /* gave up on an output nobody read: capture_results says so */
        return 0;
    if (!p->s.ready && p->err[0]) {
        snprintf(err, errlen, "%s", p->err);
        return p->rc;
    }
    if (p->gone[0]) { /* the stream broke as the pod or its debug container went */
        snprintf(err, errlen, "the capture ended: %s%s%s", p->gone,
                 p->s.bytes ? "; what was captured until then is in " : "", p->s.bytes ? output_name(path) : "");
        return p->rc;
    }
    if (p->rc == -EPROTO && p->st.code == GRPC_STATUS_INVALID_ARGUMENT) {
        snprintf(err, errlen, "%s", p->st.message);
        return -EINVAL;
    }
    /* refused: the pod runs as many captures as its manager takes */
    if (p->rc == -EPROTO && p->st.code == GRPC_STATUS_RESOURCE_EXHAUSTED && !p->s.ready) {
        snprintf(err, errlen, "%s", p->st.message);
        return -EBUSY;
    }
    if (p->rc == -EPROTO || p->rc == -EBADMSG) {
        snprintf(err, errlen, "%s (gRPC status %d)%s%s", p->st.message, (int)p->st.code,
                 p->s.bytes ? "; what was captured until then is in " : "", p->s.bytes ? output_name(path) : "");
        return -EPROTO;
    }
    if (p->st.code == GRPC_STATUS_OK && p->rc != -ENOMEM) { /* the stream was fine: our write failed */
        snprintf(err, errlen, "cannot write %s: %s%s", output_name(path), strerror(-p->rc),
                 p->s.bytes ? "; what was captured until then is in it" : "");
        return p->rc;
    }
    snprintf(err, errlen, "the capture ended: %s%s%s", p->st.message[0] ? p->st.message : strerror(-p->rc),
             p->s.bytes ? "; what was captured until then is in " : "", p->s.bytes ? output_name(path) : "");
    return p->rc;
}

/* --all-pods: the running pods of -l or the workload into c->pods (none:
 * why in c->none, and the watch waits for them). */
static int list_pods(capture_cli *c, char *err, size_t errlen)
{
    const flags *f = c->f; /* flags_parse saw to -l or a workload */
    const char *workload = f->nworkloads ? f->workloads[0].value : NULL;
    char *sel = NULL;
    pod_info *pods = NULL;
    size_t n = 0;
    int rc = workload ? podsel_workload(c->k, workload, f->timeout_ms, &sel, err, errlen) : 0;
    if (rc == 0)
        rc = podwatch_check_selector(sel ? sel : f->labels[0].value, workload ? workload : "-l", err, errlen);
    if (rc == 0)
        rc = podsel_running(c->k, sel ? sel : f->labels[0].value, workload, CAPTURE_PODS_MAX, f->timeout_ms, &pods,
                            &n, err, errlen);
    if (rc == -ESRCH) { /* none runs yet: the watch delivers them */
        snprintf(c->none, sizeof c->none, "%s", err);
        *err = 0;
        rc = 0;
    }
    if (rc == 0 && !(c->pods = calloc(CAPTURE_PODS_MAX, sizeof *c->pods)))
        rc = -ENOMEM;
    if (rc == 0 && !(c->selector = strdup(sel ? sel : f->labels[0].value)))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        capture_pod *p = &c->pods[c->npods++];
        p->cli = c;
        snprintf(p->name, sizeof p->name, "%s", pods[i].name);
        p->pod = pods[i];
        memset(&pods[i], 0, sizeof pods[i]); /* taken over */
    }
    pod_list_free(pods, n);
    free(sel);
    return rc;
}

/* One pod: its session is opened on its thread, as with --all-pods. */
static int one_pod(capture_cli *c)
{
    if (!(c->pods = calloc(1, sizeof *c->pods)))
        return -ENOMEM;
    c->npods = 1;
    c->pods[0].cli = c;
    return 0;
}

/* The first failure as the command's result; the others on their own lines. */
static int capture_results(const capture_cli *c, const char *path, char *err, size_t errlen)
{
    int rc = 0;
    bool stalled = false;
    for (size_t i = 0; i < c->npods; i++) {
        const capture_pod *p = &c->pods[i];
        stalled |= p->rc == -ECANCELED && c->interrupted;
        char msg[1536];
        int prc = capture_result(p, path, msg, sizeof msg);
        const char *name = p->opened ? p->sess.pod.name : p->pod.name;
        if (prc < 0 && c->npods == 1)
            snprintf(err, errlen, "%s", msg);
        else if (prc < 0 && rc == 0)
            snprintf(err, errlen, "pod/%s: %s", name, msg);
        else if (prc < 0)
            fprintf(stderr, "error: pod/%s: %s\n", name, msg);
        if (rc == 0)
            rc = prc;
    }
    if (stalled)
        fprintf(stderr, "warning: %s was not being read when the capture stopped: its last batch is cut short\n",
                output_name(path));
    return rc;
}

int capture_main(const flags *f, const kube *k)
{
    char err[2048] = "";
    const char *path = f->write ? f->write : "-";
    bool to_stdout = strcmp(path, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO))
        return exitcode_report(stderr, -EINVAL, CAPTURE_NOT_A_TERMINAL);
    bool ng = f->format ? strcmp(f->format, "pcapng") == 0 : f->all_pods;
    if (f->all_pods && !ng)
        return exitcode_report(stderr, -EINVAL,
                               "--all-pods writes pcapng (pcap has no interface names to tell the pods apart): "
                               "drop --format pcap");
    capture_cli c = {.f = f, .k = k, .out_fd = STDOUT_FILENO, .done_efd = -1, .tty = isatty(STDERR_FILENO)};
    c.iface = f->iface && f->iface[0] ? f->iface : "any";
    pthread_mutex_init(&c.mu, NULL);
    int sfd = -1;
    bool created = false;
    char *real = NULL;
    int rc = f->all_pods ? list_pods(&c, err, sizeof err) : one_pod(&c);
    if (rc < 0)
        goto out;
    /* FILE before the debug container: one added for a capture that then
     * cannot write stays in the pod (a regular FILE is only replaced once a
     * pod captures). Before the stop signals are blocked: opening a FIFO
     * waits for its reader, and Ctrl-C must end that wait. */
    c.path = to_stdout ? path : output_file(path, &real);
    if (!to_stdout && (c.out_fd = open_output(c.path, &c.tmp, err, sizeof err)) < 0) {
        rc = c.out_fd;
        c.out_fd = STDOUT_FILENO;
        if (!err[0])
            snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(-rc));
        goto out;
    }
    created = !to_stdout;
    /* From here every thread (ours, kubectl's and gRPC's) inherits blocked
     * SIGINT/SIGTERM/SIGHUP; this one takes them from a signalfd, so that a
     * stop while the debug container starts still removes what we made. */
    sigset_t ss;
    sig_block_stop(&ss);
    sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    c.done_efd = eventfd(0, EFD_CLOEXEC);
    if (sfd < 0 || c.done_efd < 0) {
        rc = -errno;
        snprintf(err, sizeof err, "%s", strerror(errno));
        goto out;
    }
    if (isatty(c.out_fd)) { /* -w /dev/stdout, /dev/tty */
        rc = -EINVAL;
        snprintf(err, sizeof err, "%s", CAPTURE_NOT_A_TERMINAL);
        goto out;
    }
    if (ng && (rc = capture_pcapng_new(&c.ng, c.out_fd)) < 0) {
        snprintf(err, sizeof err, "cannot write %s: %s", output_name(path), strerror(-rc));
        goto out;
    }
    if ((rc = run_until_end(&c, sfd, err, sizeof err)) < 0)
        goto out;
    if (c.npods == 0) /* waited for a pod that did not come */
        fprintf(stderr, "no pod ran: nothing was captured%s%s%s\n", c.tmp ? " (" : "", c.tmp ? path : "",
                c.tmp ? " is left as it was)" : "");
    const char *written = c.kept ? c.tmp : path; /* where the capture is */
    for (size_t i = 0; i < c.npods; i++)
        if (c.pods[i].s.ready)
            print_summary(&c, &c.pods[i], written);
    rc = capture_results(&c, written, err, sizeof err);
out:;
    uint64_t bytes = 0;
    for (size_t i = 0; i < c.npods; i++) {
        capture_pod *p = &c.pods[i];
        bytes += p->s.bytes;
        capture_client_free(p->cc);
        rpc_client_free(p->cl);
        session_close(&p->sess);
        pod_free(&p->pod);
    }
    free(c.pods);
    free(c.selector);
    capture_pcapng_free(c.ng);
    if (created)
        close(c.out_fd);
    if (created && c.tmp && !c.placed && !c.kept)
        unlink(c.tmp); /* no pod captured: FILE left as it was */
    else if ((c.placed || c.kept) && rc < 0 && bytes == 0)
        unlink(c.kept ? c.tmp : c.path); /* nothing captured: no empty file left behind (ours: never a device or a FIFO) */
    free(c.tmp);
    free(real);
    if (sfd >= 0)
        close(sfd);
    if (c.done_efd >= 0)
        close(c.done_efd);
    pthread_mutex_destroy(&c.mu);
    return exitcode_report(stderr, rc, err);
}
