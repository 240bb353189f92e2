/* exec_client — see exec_client.h. */
#include "exec_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "contract.h"
#include "kdiag.pb-c.h"

struct exec_client {
    rpc_stream *stream;
    pthread_mutex_t mu; /* the window: */
    pthread_cond_t cv;
    uint64_t sent, taken, window;        /* stdin bytes; taken as the manager answers */
    bool ended;                          /* no answer comes any more */
    int window_fd;                       /* eventfd: the window moved, or ended */
    Kdiag__Solo__Io__ExecResponse *last; /* the event's message */
    uint8_t msg[CONTRACT_EXEC_CHUNK + 16];
};

/* Packs m (at most CONTRACT_EXEC_CHUNK of payload) and writes it. */
static int send_request(exec_client *ec, const Kdiag__Solo__Io__ExecRequest *m)
{
    size_t len = kdiag__solo__io__exec_request__get_packed_size(m);
    uint8_t *buf = len <= sizeof ec->msg ? ec->msg : malloc(len);
    if (!buf)
        return -ENOMEM;
    kdiag__solo__io__exec_request__pack(m, buf);
    int rc = rpc_stream_write(ec->stream, buf, len);
    if (buf != ec->msg)
        free(buf);
    return rc;
}

int exec_client_new(exec_client **ret, rpc_client *cl, const exec_client_start *st)
{
    Kdiag__Solo__Io__ExecRequest m;
    Kdiag__Solo__Io__ExecStart s = KDIAG__SOLO__IO__EXEC_START__INIT;
    Kdiag__Solo__Io__Target t = KDIAG__SOLO__IO__TARGET__INIT;
    exec_client *ec = calloc(1, sizeof *ec);
    *ret = NULL;
    if (!ec)
        return -ENOMEM;
    int rc = rpc_client_bidi_open(&ec->stream, cl, CONTRACT_METHOD_EXEC, 0);
    if (rc < 0) {
        free(ec);
        return rc;
    }
    if ((ec->window_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        rpc_stream_free(ec->stream);
        free(ec);
        return rc;
    }
    pthread_mutex_init(&ec->mu, NULL);
    pthread_cond_init(&ec->cv, NULL);
    ec->window = st->stdin_window ? st->stdin_window : EXEC_CLIENT_WINDOW;
    s.argv = (char **)st->argv;
    s.n_argv = st->argc;
    s.env = (char **)st->env;
    s.n_env = st->nenv;
    s.workdir = (char *)(st->workdir ? st->workdir : "");
    s.tty = st->tty;
    s.rows = st->rows;
    s.cols = st->cols;
    t.container_id = (char *)(st->container_id ? st->container_id : "");
    t.pid = st->pid;
    s.target = &t;
    s.tools = st->tools;
    s.root = st->root;
    /* answers four times per window: it refills in steps of a quarter */
    s.stdin_ack_bytes = (uint32_t)(ec->window / 4 ? ec->window / 4 : 1);
    kdiag__solo__io__exec_request__init(&m);
    m.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_START;
    m.start = &s;
    (void)send_request(ec, &m); /* a failure surfaces as the call's status on the first read */
    *ret = ec;
    return 0;
}

/* No answer will come: wakes a writer waiting for the window. */
static void set_ended(exec_client *ec)
{
    pthread_mutex_lock(&ec->mu);
    ec->ended = true;
    pthread_cond_broadcast(&ec->cv);
    eventfd_write(ec->window_fd, 1);
    pthread_mutex_unlock(&ec->mu);
}

/* Under ec->mu: stdin may go without waiting (or fails at once). */
static bool ready_locked(const exec_client *ec)
{
    return ec->ended || ec->sent - ec->taken < ec->window;
}

bool exec_client_stdin_ready(exec_client *ec)
{
    pthread_mutex_lock(&ec->mu);
    bool ready = ready_locked(ec);
    pthread_mutex_unlock(&ec->mu);
    return ready;
}

int exec_client_window_fd(exec_client *ec)
{
    return ec->window_fd;
}

/* Counts n more bytes of stdin sent once the window has room for them:
 * before they go, so that an answer never counts more than was sent.
 * -EPIPE when the call ended. */
static int window_take(exec_client *ec, size_t n)
{
    pthread_mutex_lock(&ec->mu);
    while (!ready_locked(ec))
        pthread_cond_wait(&ec->cv, &ec->mu);
    int rc = ec->ended ? -EPIPE : 0;
    if (rc == 0)
        ec->sent += n;
    pthread_mutex_unlock(&ec->mu);
    return rc;
}

int exec_client_stdin(exec_client *ec, const void *buf, size_t len)
{
    Kdiag__Solo__Io__ExecRequest m;
    const uint8_t *p = buf;
    kdiag__solo__io__exec_request__init(&m);
    m.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CHUNK;
    while (len > 0) {
        size_t n = len < CONTRACT_EXEC_CHUNK ? len : CONTRACT_EXEC_CHUNK;
        m.stdin_chunk.data = (uint8_t *)p;
        m.stdin_chunk.len = n;
        int rc = window_take(ec, n);
        if (rc == 0)
            rc = send_request(ec, &m);
        if (rc < 0)
            return rc;
        p += n;
        len -= n;
    }
    return 0;
}

int exec_client_stdin_close(exec_client *ec)
{
    Kdiag__Solo__Io__ExecRequest m;
    kdiag__solo__io__exec_request__init(&m);
    m.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_STDIN_CLOSE;
    m.stdin_close = true;
    return send_request(ec, &m);
}

int exec_client_resize(exec_client *ec, uint32_t rows, uint32_t cols)
{
    Kdiag__Solo__Io__ExecRequest m;
    Kdiag__Solo__Io__ExecResize r = KDIAG__SOLO__IO__EXEC_RESIZE__INIT;
    r.rows = rows;
    r.cols = cols;
    kdiag__solo__io__exec_request__init(&m);
    m.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_RESIZE;
    m.resize = &r;
    return send_request(ec, &m);
}

int exec_client_signal(exec_client *ec, int sig)
{
    Kdiag__Solo__Io__ExecRequest m;
    kdiag__solo__io__exec_request__init(&m);
    m.msg_case = KDIAG__SOLO__IO__EXEC_REQUEST__MSG_SIGNAL;
    m.signal = sig;
    return send_request(ec, &m);
}

/* The next message that is not an answer about stdin (those move the window). */
static int read_event(exec_client *ec, rpc_status *st)
{
    for (;;) {
        uint8_t *buf = NULL;
        size_t len;
        if (ec->last)
            kdiag__solo__io__exec_response__free_unpacked(ec->last, NULL);
        ec->last = NULL;
        int rc = rpc_stream_read(ec->stream, &buf, &len, st);
        if (rc != 0)
            return rc;
        ec->last = kdiag__solo__io__exec_response__unpack(NULL, len, buf);
        free(buf);
        if (!ec->last)
            return -EBADMSG;
        if (ec->last->msg_case != KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDIN_TAKEN)
            return 0;
        pthread_mutex_lock(&ec->mu);
        if (ec->last->stdin_taken > ec->taken && ec->last->stdin_taken <= ec->sent)
            ec->taken = ec->last->stdin_taken;
        pthread_cond_broadcast(&ec->cv);
        eventfd_write(ec->window_fd, 1);
        pthread_mutex_unlock(&ec->mu);
    }
}

int exec_client_read(exec_client *ec, exec_client_event *ev, rpc_status *st)
{
    int rc = read_event(ec, st);
    memset(ev, 0, sizeof *ev);
    if (rc != 0 || ec->last->msg_case == KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_EXIT)
        set_ended(ec); /* no answer comes after the exit */
    if (rc != 0)
        return rc;
    Kdiag__Solo__Io__ExecResponse *m = ec->last;
    switch (m->msg_case) {
    case KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDOUT_CHUNK:
        ev->kind = EXEC_CLIENT_STDOUT;
        ev->data = m->stdout_chunk.data;
        ev->len = m->stdout_chunk.len;
        return 0;
    case KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_STDERR_CHUNK:
        ev->kind = EXEC_CLIENT_STDERR;
        ev->data = m->stderr_chunk.data;
        ev->len = m->stderr_chunk.len;
        return 0;
    case KDIAG__SOLO__IO__EXEC_RESPONSE__MSG_EXIT:
        if (!m->exit)
            return -EBADMSG;
        ev->kind = EXEC_CLIENT_EXIT;
        ev->code = m->exit->code;
        ev->signal = m->exit->signal;
        ev->error = m->exit->error ? m->exit->error : "";
        return 0;
    default: return -EBADMSG;
    }
}

int exec_client_finish(exec_client *ec, rpc_status *st)
{
    uint8_t *buf = NULL;
    size_t len;
    rpc_stream_close_send(ec->stream);
    int rc;
    while ((rc = rpc_stream_read(ec->stream, &buf, &len, st)) == 0)
        free(buf); /* nothing comes after the exit */
    if (rc < 0)
        return rc;
    return st->code == GRPC_STATUS_OK ? 0 : -EPROTO;
}

void exec_client_cancel(exec_client *ec)
{
    rpc_stream_cancel(ec->stream);
    set_ended(ec);
}

void exec_client_free(exec_client *ec)
{
    if (!ec)
        return;
    if (ec->last)
        kdiag__solo__io__exec_response__free_unpacked(ec->last, NULL);
    rpc_stream_free(ec->stream);
    close(ec->window_fd);
    pthread_cond_destroy(&ec->cv);
    pthread_mutex_destroy(&ec->mu);
    free(ec);
}
