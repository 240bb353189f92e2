/* cp — see cp.h. The copy runs on a thread of its own; the main thread takes
 * Ctrl-C (the copy is cancelled: both sides remove their temporaries) and
 * draws the progress line when stderr is a terminal. */
#include "cp-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/fd-util.h"
#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "copy_client.h"
#include "copytree.h"
#include "exitcode.h"
#include "podsel.h"
#include "session.h"

/* s[0..n) could name a namespace: a DNS label (lower-case letters, digits
 * and '-' inside, at most 63), so that "./x" or "../x" never does. */
static bool ns_label(const char *s, size_t n)
{
    if (n == 0 || n >= sizeof((cp_operand *)0)->ns || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
            return false;
    return true;
}

int cp_parse_operand(const char *arg, cp_operand *op, char *err, size_t errlen)
{
    *op = (cp_operand){.path = arg};
    const char *colon = strchr(arg, ':');
    if (colon) {
        const char *kind, *wl = podsel_workload_ref(arg, &kind), *name = flags_pod_ref(arg);
        op->workload = wl && wl < colon && !memchr(wl, '/', (size_t)(colon - wl));
        if (op->workload || !name || name > colon)
            name = arg; /* a workload keeps its KIND/ */
        size_t nl = (size_t)(colon - name);
        const char *slash = op->workload ? NULL : memchr(name, '/', nl);
        if (slash && name == arg && ns_label(arg, (size_t)(slash - arg)) && slash + 1 < colon &&
            !memchr(slash + 1, '/', (size_t)(colon - slash - 1))) { /* kubectl cp's NAMESPACE/POD:PATH */
            memcpy(op->ns, arg, (size_t)(slash - arg));
            op->ns[slash - arg] = '\0';
            nl -= (size_t)(slash + 1 - name);
            name = slash + 1;
            slash = NULL;
        }
        if (!slash) {
            if (nl >= sizeof op->pod) {
                snprintf(err, errlen, "pod name too long in \"%s\"", arg);
                return -EINVAL;
            }
            op->remote = true;
            memcpy(op->pod, name, nl);
            op->pod[nl] = '\0';
            op->path = colon + 1;
        }
    }
    if (!op->path[0]) {
        snprintf(err, errlen, "no path in \"%s\": write %s, e.g. %s/etc/hosts", arg,
                 op->remote ? "POD:/PATH" : "a local path", op->remote ? arg : "./");
        return -EINVAL;
    }
    return 0;
}

const char *cp_human_bytes(unsigned long long n, char *out, size_t outlen)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, outlen, "%llu B", n);
    else
        snprintf(out, outlen, "%.1f %s", v, units[u]);
    return out;
}

typedef struct {
    session *s;
    copy_client_target target;
    const char *remote, *local;
    bool from;      /* remote → local */
    bool to_stdout; /* local is "-" out of the pod */
    int from_fd;    /* local is "-" into the pod: stdin's file, or what it gave kept in an unnamed one; else -1 */
    off_t from_off; /* where in from_fd the content starts */
    copy_client_cancel cancel;
    pthread_mutex_t mu; /* guards st and done */
    copytree_stats st;
    bool done;
    int done_fd; /* eventfd: readable once done */
    int rc;
    char err[2048];
} cp_job;

static void job_progress(void *ud, const copytree_stats *st)
{
    cp_job *j = ud;
    pthread_mutex_lock(&j->mu);
    j->st = *st;
    pthread_mutex_unlock(&j->mu);
}

/* The copy. A forward that just restarted may refuse the first call: when
 * nothing moved yet, once more over a fresh one (as ps does). When the pod
 * or its debug container went, the error says so. */
static void *job_main(void *arg)
{
    cp_job *j = arg;
    const char *zstd = getenv("KDIAG_CP_ZSTD"); /* "0": file content as it is (docs/cp.md) */
    copy_client_opts o = {.progress = job_progress,
                          .ud = j,
                          .cancel = &j->cancel,
                          .no_zstd = zstd && strcmp(zstd, "0") == 0,
                          .to_stdout = j->to_stdout,
                          .from_fd = j->from_fd,
                          .from_off = j->from_off};
    int rc = -ENOTCONN;
    for (int attempt = 0; attempt < 2; attempt++) {
        unsigned gen;
        rpc_client *cl;
        if ((rc = session_client(j->s, &cl, &gen, j->err, sizeof j->err)) < 0)
            break;
        rc = j->from ? copy_client_from(cl, &j->target, j->remote, j->local, &o, j->err, sizeof j->err)
                     : copy_client_to(cl, j->local, &j->target, j->remote, &o, j->err, sizeof j->err);
        rpc_client_free(cl);
        pthread_mutex_lock(&j->mu);
        bool moved = j->st.entries > 0;
        pthread_mutex_unlock(&j->mu);
        pthread_mutex_lock(&j->cancel.mu);
        bool stopped = j->cancel.cancelled;
        pthread_mutex_unlock(&j->cancel.mu);
        if (rc != -ECONNRESET || stopped)
            break;
        /* The connection went: with the pod? Else, when nothing moved yet, once more. */
        char why[1024];
        if (session_gone(j->s, gen, moved ? SESSION_GONE_WAIT_MS : j->s->timeout_ms, why, sizeof why) < 0) {
            snprintf(j->err, sizeof j->err, "the copy ended: %s", why);
            break;
        }
        if (moved)
            break;
    }
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->done = true;
    pthread_mutex_unlock(&j->mu);
    eventfd_write(j->done_fd, 1);
    return NULL;
}

/* "\r<bytes>, <n> entries" over the previous line; final ends it. */
static void draw(const copytree_stats *st, bool final)
{
    char b[32];
    fprintf(stderr, "\r\033[Kcp: %s, %llu %s%s", cp_human_bytes(st->bytes, b, sizeof b),
            (unsigned long long)st->entries, st->entries == 1 ? "entry" : "entries", final ? "\n" : "");
    fflush(stderr);
}

#define PROGRESS_MS 200

/* SIGURG (ignored by default, never sent to us otherwise): interrupts the
 * copy thread's write to stdout (copytree_recv_new_stream). */
static void on_kick(int sig)
{
    (void)sig;
}

/* Waits for the copy (its end at once, not at the next tick), drawing
 * progress on a terminal (and the totals at the end); a stop signal cancels
 * it. sfd: a signalfd of the stop signals. To stdout, the copy thread th may
 * be blocked on a reader that does not read (| less, | a stopped process):
 * once cancelled, it is interrupted at each tick until it ends. */
static void wait_job(cp_job *j, int sfd, pthread_t th)
{
    bool tty = isatty(2) && !(j->to_stdout && isatty(1)); /* not over content on the same terminal */
    bool stopping = false;
    for (;;) {
        struct pollfd p[2] = {{j->done_fd, POLLIN, 0}, {sfd, POLLIN, 0}};
        struct signalfd_siginfo si;
        if (poll(p, 2, PROGRESS_MS) > 0 && p[1].revents && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            copy_client_cancel_now(&j->cancel);
            stopping = true;
        }
        pthread_mutex_lock(&j->mu);
        copytree_stats st = j->st;
        bool done = j->done;
        pthread_mutex_unlock(&j->mu);
        if (tty)
            draw(&st, done);
        if (done)
            return;
        if (stopping && j->to_stdout)
            pthread_kill(th, SIGURG);
    }
}

/* The pod and the paths from the two operands; the pod goes into so. */
static int operands(const flags *f, session_opts *so, cp_job *j, cp_operand ops[2], char *err, size_t errlen)
{
    int rc = cp_parse_operand(f->cp_args[0], &ops[0], err, errlen);
    if (rc == 0)
        rc = cp_parse_operand(f->cp_args[1], &ops[1], err, errlen);
    if (rc < 0)
        return rc;
    for (int i = 0; i < 2 && ops[0].remote && ops[1].remote; i++)
        if (ops[i].ns[0]) /* "dir/a:b" beside a pod's path: a local one, as it was before NAMESPACE/POD */
            ops[i] = (cp_operand){.path = f->cp_args[i]};
    if (ops[0].remote == ops[1].remote) {
        snprintf(err, errlen,
                 "cp copies between a pod and this machine: give one POD:PATH and one local path, e.g. "
                 "kubectl diag cp pod/web:/etc/nginx ./nginx (a local path with ':' is written ./a:b)");
        return -EINVAL;
    }
    const cp_operand *rem = ops[0].remote ? &ops[0] : &ops[1];
    if (rem->pod[0] && (so->pod || so->selector || so->workload)) {
        snprintf(err, errlen, "the pod is named twice (\"%s:\" and %s): use one", rem->pod,
                 so->pod        ? "--pod"
                 : so->selector ? "-l"
                                : so->workload);
        return -EINVAL;
    }
    if (rem->workload)
        so->workload = rem->pod;
    else if (rem->pod[0])
        so->pod = rem->pod;
    if (!so->pod && !so->selector && !so->workload) {
        snprintf(err, errlen, "no pod: write POD:PATH (e.g. web-0:/etc/hosts), or :PATH with --pod or -l");
        return -EINVAL;
    }
    j->from = ops[0].remote;
    j->remote = rem->path;
    j->local = ops[0].remote ? ops[1].path : ops[0].path;
    j->to_stdout = j->from && strcmp(j->local, "-") == 0;
    return 0;
}

/* "\r<bytes read>" over the previous line; final ends it. */
static void draw_reading(unsigned long long n, bool final)
{
    char b[32];
    fprintf(stderr, "\r\033[Kcp: reading stdin: %s%s", cp_human_bytes(n, b, sizeof b), final ? "\n" : "");
    fflush(stderr);
}

/* Stdin to its end, into an unnamed file of $TMPDIR (or /tmp) that goes
 * with its last fd: a stream has no size for its CopyEntry until it ended,
 * and the pod is not touched while it is read. On a terminal (not the one
 * typed into) what was read so far is redrawn every PROGRESS_MS: stdin
 * without end (< /dev/zero) fills $TMPDIR, and the user sees it grow. */
static int spool_stdin(int *ret, char *err, size_t errlen)
{
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char buf[65536];
    char path[PATH_MAX];
    bool tty = isatty(STDERR_FILENO) && !isatty(STDIN_FILENO), drawn = false;
    unsigned long long total = 0;
    int64_t next = time_now_ms() + PROGRESS_MS;
    int rc = 0, fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EOPNOTSUPP && snprintf(path, sizeof path, "%s/.kdiag-cp-XXXXXX", dir) < (int)sizeof path &&
        (fd = mkostemp(path, O_CLOEXEC)) >= 0) /* a filesystem without O_TMPFILE */
        unlink(path);
    if (fd < 0)
        rc = -errno;
    while (rc == 0) {
        struct pollfd p = {STDIN_FILENO, POLLIN, 0};
        int64_t now = time_now_ms();
        if (tty && now >= next) {
            draw_reading(total, false);
            drawn = true;
            next = now + PROGRESS_MS;
        }
        if (tty && poll(&p, 1, (int)(next - now)) == 0)
            continue; /* nothing came: the line is redrawn, the same */
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN) { /* a non-blocking stdin shared with another reader */
            if (!tty)
                poll(&p, 1, -1); /* else it waits above, redrawing */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (drawn)
                draw_reading(total, true);
            snprintf(err, errlen, "cannot read stdin: %s", strerror(errno));
            fd_close(&fd);
            return -EIO;
        }
        if (n == 0)
            break;
        rc = fd_write_all(fd, buf, (size_t)n);
        total += (unsigned long long)n;
    }
    if (drawn)
        draw_reading(total, true);
    if (rc < 0) {
        snprintf(err, errlen,
                 "cannot keep stdin in %s while it is read (cp sends a file of known size): %s; set TMPDIR to a "
                 "writable directory with room",
                 dir, strerror(-rc));
        fd_close(&fd);
        return -EIO;
    }
    *ret = fd;
    return 0;
}

/* What goes for "-" into the pod: a regular file on stdin (< FILE) as it is,
 * from its offset, with its size (nothing kept, no wait); a stream kept in
 * $TMPDIR first. */
static int stdin_source(cp_job *j, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(STDIN_FILENO, &st) < 0 || !S_ISREG(st.st_mode))
        return spool_stdin(&j->from_fd, err, errlen);
    off_t off = lseek(STDIN_FILENO, 0, SEEK_CUR);
    j->from_off = off > 0 ? off : 0;
    j->from_fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3); /* > 0: copy_client's from_fd */
    if (j->from_fd < 0) {
        snprintf(err, errlen, "cannot read stdin: %s", strerror(errno));
        return -EIO;
    }
    return 0;
}

/* "-" on a stdin or stdout that was closed when cp started (<&-, >&-): the
 * /dev/null main put there would make an empty file, or take the content
 * away, and exit 0. Refused, as cat refuses it, before the pod is touched;
 * so is one open the other way (0>>FILE, 1<FILE), which would fail only
 * once a debug container was added for the copy. */
static int std_unusable(const flags *f, bool in, char *err, size_t errlen)
{
    int fd = in ? STDIN_FILENO : STDOUT_FILENO, fl = fcntl(fd, F_GETFL);
    bool closed = f->stdio_closed & (1u << fd);
    if (!closed && (fl < 0 || (fl & O_ACCMODE) != (in ? O_WRONLY : O_RDONLY)))
        return 0;
    if (in)
        snprintf(err, errlen,
                 "cannot read stdin: it is %s: give cp - the content on stdin (cp - POD:PATH < FILE, or from a "
                 "pipe), or name the local file instead of -",
                 closed ? "closed (<&-)" : "open for writing only (0>FILE)");
    else
        snprintf(err, errlen,
                 "cannot write to stdout: it is %s: give cp - somewhere to write (> FILE, or a pipe), or name a "
                 "local path instead of -",
                 closed ? "closed (>&-)" : "open for reading only (1<FILE)");
    return -EBADF;
}

/* What this side can tell before a debug container may be added for the
 * copy (one added for a copy that then fails here stays in the pod): the
 * source to send exists, and the destination does, or its directory. */
static int local_check(const cp_job *j, char *err, size_t errlen)
{
    struct stat st;
    char cause[128], parent[PATH_MAX];
    const char *bad = j->local;
    int rc = 0;
    if (!j->from) {
        if (lstat(j->local, &st) < 0)
            rc = -errno;
    } else if (stat(j->local, &st) < 0 && (rc = -errno) == -ENOENT) {
        size_t n = strlen(j->local);
        while (n > 1 && j->local[n - 1] == '/')
            n--;
        while (n > 0 && j->local[n - 1] != '/')
            n--;
        if (n >= sizeof(parent))
            return 0; /* the copy says what it finds */
        snprintf(parent, sizeof(parent), "%.*s", n ? (int)n : 1, n ? j->local : "."); /* "new": "." */
        rc = stat(parent, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        bad = parent;
    }
    if (rc < 0)
        snprintf(err, errlen, "cannot copy %s%.1024s: %s%s", j->from ? "to " : "", bad,
                 copytree_strerror(rc, cause, sizeof(cause)), bad == j->local ? "" : " (the destination's directory)");
    return rc == -EINVAL ? -EIO : rc;
}

int cp_main(const flags *f, const kube *k)
{
    cp_job j = {.cancel = COPY_CLIENT_CANCEL_INIT, .mu = PTHREAD_MUTEX_INITIALIZER, .done_fd = -1, .from_fd = -1};
    int sfd = -1;
    cp_operand ops[2];
    session s;
    char err[2560] = "";
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_CP, true);
    int rc = operands(f, &so, &j, ops, err, sizeof err);
    kube in_ns = *k; /* NAMESPACE/POD:PATH */
    const char *ns = ops[j.from ? 0 : 1].ns;
    if (rc == 0 && *ns && k->ns && strcmp(k->ns, ns)) {
        snprintf(err, sizeof err, "two namespaces given (-n %s and \"%s/\"): use one", k->ns, ns);
        rc = -EINVAL;
    } else if (rc == 0 && *ns) {
        in_ns.ns = ns;
        k = &in_ns;
    }
    bool stdin_in = rc == 0 && !j.from && strcmp(j.local, "-") == 0;
    if (rc == 0 && (stdin_in || j.to_stdout))
        rc = std_unusable(f, stdin_in, err, sizeof err);
    if (rc == 0 && !j.to_stdout && !stdin_in)
        rc = local_check(&j, err, sizeof err);
    if (rc == 0 && stdin_in)
        rc = stdin_source(&j, err, sizeof err);
    if (rc < 0)
        return exitcode_report(stderr, rc, err);
    /* Ctrl-\ (SIGQUIT) is blocked before the session starts gRPC's threads,
     * which block nothing: it stays for wait_job, never ends the process with
     * its temporaries. Ctrl-C still ends a session that takes long to open. */
    sig_block(NULL, SIGQUIT, -1);
    rc = session_open(k, &so, &s, err, sizeof err);
    if (rc < 0) {
        fd_close(&j.from_fd);
        return exitcode_report(stderr, rc, err);
    }
    j.s = &s;
    j.target.container_id = s.target_id;
    /* From here every thread (the copy's and gRPC's) inherits blocked stop
     * signals; wait_job takes them. */
    sigset_t stop;
    sig_block_stop(&stop);
    pthread_t th;
    struct sigaction kick = {.sa_handler = on_kick}; /* no SA_RESTART: the write returns EINTR */
    if (j.to_stdout)
        sigaction(SIGURG, &kick, NULL);
    j.done_fd = eventfd(0, EFD_CLOEXEC);
    sfd = signalfd(-1, &stop, SFD_CLOEXEC);
    if (j.done_fd < 0 || sfd < 0) {
        rc = -errno;
        snprintf(err, sizeof err, "cannot start the copy: %s", strerror(errno));
        goto out;
    }
    if ((rc = -pthread_create(&th, NULL, job_main, &j)) < 0) {
        snprintf(err, sizeof err, "cannot start the copy: %s", strerror(-rc));
        goto out;
    }
    wait_job(&j, sfd, th);
    pthread_join(th, NULL);
    rc = j.rc;
    if ((rc == -ECANCELED || rc == -EINTR) && j.cancel.cancelled) /* the thread that set it */
        snprintf(err, sizeof err, "cp interrupted%s", j.to_stdout ? "" : ": nothing was left half-written");
    else if (rc == -EPIPE && j.to_stdout) /* its reader went (cp pod:/f - | head): quietly, as cat */
        rc = EXITCODE_PIPE;
    else if (rc < 0)
        snprintf(err, sizeof err, "cp %s pod/%s: %s", j.from ? "from" : "to", s.pod.name, j.err);
    /* The operands were checked: what the copy refuses (a FIFO named here:
     * -EINVAL) is a failure, exit 1, as when the manager refuses it. */
    if (rc == -EINVAL)
        rc = -EIO;
out:
    fd_close(&j.done_fd);
    fd_close(&sfd);
    fd_close(&j.from_fd);
    session_close(&s);
    return rc == EXITCODE_PIPE ? rc : exitcode_report(stderr, rc, err);
}
