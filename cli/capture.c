#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "basic/signal-util.h"
#include "basic/time-util.h"
#include "capture_client.h"
#include "exitcode.h"
#include "session.h"

typedef struct {
    capture_client *cc;
    int out_fd;
    int done_efd; /* written when the stream ended */
    bool tty;     /* stderr is a terminal: a live packet count */
    bool counting;
    int64_t last_count_ms;
    const char *pod, *iface;
    int rc;
    capture_client_stats s;
    rpc_status st;
} capture_cli;

static const char *linktype_name(uint32_t lt)
{
    return lt == 1 ? "Ethernet" : lt == 276 ? "LINUX_SLL2" : "another link type";
}

static int on_progress(void *ud, const capture_client_stats *s)
{
    capture_cli *c = ud;
    if (s->ready && s->packets == 0 && !c->counting) {
        fprintf(stderr, "capturing on %s in pod/%s (", c->iface, c->pod);
        for (size_t i = 0; i < s->nifaces; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", s->ifaces[i].name);
        fprintf(stderr, "), %s, snaplen %u; Ctrl-C to stop\n", linktype_name(s->linktype), s->snaplen);
        c->counting = true;
        return 0;
    }
    int64_t now = time_now_ms();
    if (c->tty && now - c->last_count_ms >= 1000) {
        fprintf(stderr, "\r%llu packets", (unsigned long long)s->packets);
        c->last_count_ms = now;
    }
    return 0;
}

static void *capture_thread(void *arg)
{
    capture_cli *c = arg;
    c->rc = capture_client_run(c->cc, c->out_fd, on_progress, c, &c->s, &c->st);
    uint64_t one = 1;
    (void)!write(c->done_efd, &one, sizeof one);
    return NULL;
}

/* The end: packets captured and dropped, per interface. */
static void print_summary(const capture_cli *c, const char *path)
{
    const capture_client_stats *s = &c->s;
    if (c->tty && c->last_count_ms)
        fputc('\n', stderr);
    fprintf(stderr,
            "%llu packets captured (%llu bytes written to %s), %llu dropped by the kernel, %llu lost in "
            "the stream",
            (unsigned long long)s->packets, (unsigned long long)s->bytes, strcmp(path, "-") ? path : "stdout",
            (unsigned long long)s->kernel_drops,
            (unsigned long long)(s->captured > s->packets ? s->captured - s->packets : 0));
    const char *sep = "; ";
    for (size_t i = 0; i < s->nifaces; i++)
        if (s->ifaces[i].packets) {
            fprintf(stderr, "%s%s %llu", sep, s->ifaces[i].name, (unsigned long long)s->ifaces[i].packets);
            sep = ", ";
        }
    fputc('\n', stderr);
}

/* Runs the stream until it ends or a stop signal (sfd) cancels it. */
static void run_until_end(capture_cli *c, int sfd)
{
    pthread_t th;
    if (pthread_create(&th, NULL, capture_thread, c) != 0) {
        c->rc = -EAGAIN;
        snprintf(c->st.message, sizeof c->st.message, "cannot start a thread");
        return;
    }
    for (;;) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = c->done_efd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            break;
        if (pf[1].revents)
            break;
        if (pf[0].revents) {
            struct signalfd_siginfo si;
            (void)!read(sfd, &si, sizeof si);
            capture_client_cancel(c->cc); /* the batch being written is finished first */
            break;
        }
    }
    pthread_join(th, NULL);
}

/* The exit code of how the capture ended; the message for the user in err. */
static int capture_result(const capture_cli *c, const char *path, char *err, size_t errlen)
{
    if (c->rc == 0 || c->rc == -EPIPE) /* -EPIPE: the reader of stdout went away */
        return 0;
    if (c->rc == -EPROTO && c->st.code == GRPC_STATUS_INVALID_ARGUMENT) {
        snprintf(err, errlen, "%s", c->st.message);
        return -EINVAL;
    }
    if (c->rc == -EPROTO || c->rc == -EBADMSG) {
        snprintf(err, errlen, "%s (gRPC status %d)", c->st.message, (int)c->st.code);
        return -EPROTO;
    }
    snprintf(err, errlen, "the capture ended: %s%s%s", c->st.message[0] ? c->st.message : strerror(-c->rc),
             c->s.bytes ? "; what was captured until then is in " : "",
             c->s.bytes ? (strcmp(path, "-") ? path : "stdout") : "");
    return c->rc;
}

int capture_main(const flags *f, const kube *k)
{
    char err[2048] = "";
    const char *path = f->write ? f->write : "-";
    bool to_stdout = strcmp(path, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO)) {
        snprintf(err, sizeof err,
                 "capture writes pcap: give -w FILE, or pipe stdout to a reader "
                 "(-w - | tcpdump -r -, or | wireshark -k -i -)");
        return exitcode_report(stderr, -EINVAL, err);
    }
    capture_cli c = {.out_fd = STDOUT_FILENO, .done_efd = -1, .tty = isatty(STDERR_FILENO)};
    c.iface = f->iface ? f->iface : "any";
    session s;
    session_opts so = session_opts_from_flags(f, EPHEM_CAPS_CAPTURE, true);
    int rc = session_open(k, &so, &s, err, sizeof err);
    if (rc < 0)
        return exitcode_report(stderr, rc, err);
    c.pod = s.pod.name;
    int sfd = -1;
    rpc_client *cl = NULL;
    bool created = false;
    if (!to_stdout && (c.out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        rc = -errno;
        snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    created = !to_stdout;
    /* From here every thread (ours and gRPC's) inherits blocked SIGINT/SIGTERM;
     * this one takes them from a signalfd. */
    sigset_t ss;
    sig_block_stop(&ss);
    sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    c.done_efd = eventfd(0, EFD_CLOEXEC);
    unsigned gen;
    if (sfd < 0 || c.done_efd < 0) {
        rc = -errno;
        snprintf(err, sizeof err, "%s", strerror(errno));
        goto out;
    }
    if (!(cl = session_client(&s, &gen))) {
        rc = -ENOTCONN;
        snprintf(err, sizeof err, "no port-forward to pod/%s", s.pod.name);
        goto out;
    }
    capture_client_req req = {.interface = f->iface,
                              .filter = f->filter,
                              .snaplen = f->snaplen,
                              .count = f->count,
                              .duration_ms = (uint32_t)f->duration_ms};
    if ((rc = capture_client_new(&c.cc, cl, &req)) < 0) {
        snprintf(err, sizeof err, "cannot start the Capture call: %s", strerror(-rc));
        goto out;
    }
    run_until_end(&c, sfd);
    if (c.s.ready)
        print_summary(&c, path);
    rc = capture_result(&c, path, err, sizeof err);
out:
    capture_client_free(c.cc);
    rpc_client_free(cl);
    if (created)
        close(c.out_fd);
    if (created && rc < 0 && c.s.bytes == 0)
        unlink(path); /* nothing captured: no empty file left behind */
    if (sfd >= 0)
        close(sfd);
    if (c.done_efd >= 0)
        close(c.done_efd);
    session_close(&s);
    return exitcode_report(stderr, rc, err);
}
