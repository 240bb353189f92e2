#include "keep.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "basic/hash.h"
#include "basic/time-util.h"
#include "contract.h"
#include "flags.h"
#include "pod.h"
#include "portfwd.h"
#include "remember.h"

#define KEEP_SUFFIX ".fwd"
#define KEEP_UP_MS 60000  /* for the keeper's kubectl port-forward to listen */
#define KEEP_TICK_MS 1000 /* how often the keeper looks at the last use */
#define KEEP_STOP_MS 5000 /* for a keeper to end on SIGTERM (it ends its kubectl first) */
/* The spare connection: replaced before the manager closes it for silence,
 * dialled again this long after the other end closed it, waited for by a
 * command at most this long. */
#define KEEP_SPARE_MS (CONTRACT_PREFACE_MS - 20000)
#define KEEP_REDIAL_MS 5000
#define KEEP_SPARE_WAIT_MS 500

extern char **environ;

#define STAMP_MAX 64

struct kept {
    int keeper, kubectl, grpc, tunnel, lg, lt;
    long long keep_ms; /* 0: not in the file (an older keeper's) */
    char container[64];
    char stamp[STAMP_MAX];
};

/* What the kubeconfig files kubectl reads are now (--kubeconfig, else each
 * of $KUBECONFIG's, else ~/.kube/config): "FILES:HASH", HASH the 64-bit
 * FNV-1a of "DEV:INO:MTIME:SIZE," for each file ("-," for a missing one),
 * however many $KUBECONFIG lists. A kept forward runs with the credentials
 * and current context its kubectl read at its start; after
 * `kubectl config use-context` (or any other change of the files) the same
 * key may mean another cluster, so the forward is not taken. */
static void kubeconfig_stamp(const kube *k, char *buf, size_t n)
{
    char home[1024], one[128];
    const char *env = getenv("KUBECONFIG"), *h = getenv("HOME");
    snprintf(home, sizeof home, "%s/.kube/config", h ? h : "");
    char *list = strdup(k->kubeconfig ? k->kubeconfig : env && *env ? env : home), *save = NULL;
    uint64_t sum = FNV1A64_INIT;
    unsigned files = 0;
    for (char *f = list ? strtok_r(list, ":", &save) : NULL; f; f = strtok_r(NULL, ":", &save), files++) {
        struct stat st;
        if (stat(f, &st) == 0)
            snprintf(one, sizeof one, "%llx:%llx:%lld.%09ld:%lld,", (unsigned long long)st.st_dev,
                     (unsigned long long)st.st_ino, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                     (long long)st.st_size);
        else
            snprintf(one, sizeof one, "-,");
        sum = fnv1a64(sum, one);
    }
    if (list)
        snprintf(buf, n, "%u:%016llx", files, (unsigned long long)sum);
    else /* the keeper's and a command's differ: never taken */
        snprintf(buf, n, "no-memory-%d", (int)getpid());
    free(list);
}

enum kept_state { KEPT_NONE, KEPT_STARTING, KEPT_UP };

/* The file's fields after its key line: KEPT_UP when they are all there,
 * KEPT_STARTING when only the keeper's PID is (make_file: its kubectl is not
 * up yet; only kp->keeper is set), else KEPT_NONE. */
static enum kept_state read_kept(int fd, const char *key, struct kept *kp)
{
    char buf[4096];
    size_t kl = strlen(key);
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0 || (size_t)n < kl || memcmp(buf, key, kl) != 0)
        return KEPT_NONE;
    buf[n] = '\0';
    memset(kp, 0, sizeof *kp);
    int got = sscanf(buf + kl, "%d %d %63s %d %d %d %d %63s %lld", &kp->keeper, &kp->kubectl, kp->container,
                     &kp->grpc, &kp->tunnel, &kp->lg, &kp->lt, kp->stamp, &kp->keep_ms);
    if (kp->keeper <= 0)
        return KEPT_NONE;
    if (got == 1)
        return KEPT_STARTING;
    return got >= 8 && kp->lg > 0 && kp->lg <= 65535 && kp->lt >= 0 && kp->lt <= 65535 ? KEPT_UP : KEPT_NONE;
}

/* Unlinks path if it is still the file fd. */
static void unlink_ours(const char *path, int fd)
{
    struct stat a, b;
    if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        unlink(path);
}

/* The keeper holds an OFD read lock on the file's first byte for its life:
 * the kernel drops it when the keeper dies, also while the dead keeper is a
 * zombie and whatever process its PID names later. */
static struct flock first_byte(short type)
{
    return (struct flock){.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
}

static bool keeper_alive(int fd)
{
    struct flock fl = first_byte(F_WRLCK);
    return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

bool keep_take(const kube *k, const char *pod, const char *container, int grpc, int tunnel, keep_lease *l)
{
    char path[1300], key[REMEMBER_KEY_MAX], stamp[STAMP_MAX];
    struct kept kp;
    struct stat st;
    *l = KEEP_LEASE_NONE;
    if (!remember_path(k, pod, KEEP_SUFFIX, false, path, sizeof path, key, sizeof key))
        return false;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    /* a keeper that is starting or ending holds it exclusively */
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 || fstat(fd, &st) < 0 || st.st_nlink == 0 ||
        read_kept(fd, key, &kp) != KEPT_UP || strcmp(kp.container, container) != 0 || kp.grpc != grpc ||
        kp.tunnel != tunnel || !keeper_alive(fd)) {
        close(fd);
        return false;
    }
    kubeconfig_stamp(k, stamp, sizeof stamp);
    if (strcmp(stamp, kp.stamp) != 0) { /* see kubeconfig_stamp: its keeper ends within a second */
        if (k->verbose > 0)
            fprintf(stderr,
                    "kubectl-diag: the kubeconfig changed since the kept port-forward to pod/%s started; "
                    "ending it\n",
                    pod);
        unlink_ours(path, fd);
        close(fd);
        return false;
    }
    *l = (keep_lease){.fd = fd, .keeper = kp.keeper, .lgrpc = kp.lg, .ltunnel = kp.lt};
    return true;
}

/* The abstract socket where keeper hands out the spare connection to its
 * forward's local port lg. */
static socklen_t spare_addr(pid_t keeper, int lg, struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "kdiag-keep-%d-%d", (int)keeper, lg);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Whether fd is a TCP connection to 127.0.0.1:port. */
static bool connected_to(int fd, int port)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int type = 0;
    socklen_t tl = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM &&
           getpeername(fd, (struct sockaddr *)&a, &al) == 0 && a.sin_family == AF_INET &&
           a.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && ntohs(a.sin_port) == port;
}

int keep_spare(const keep_lease *l)
{
    struct sockaddr_un a;
    socklen_t al = spare_addr(l->keeper, l->lgrpc, &a);
    struct ucred uc;
    socklen_t ul = sizeof uc;
    int s = l->fd < 0 ? -1 : socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), fd = -1;
    /* only the keeper itself (the PID its lock proves alive, our user) hands one out; a full
     * backlog (a stopped keeper) fails at once instead of blocking */
    if (s < 0 || connect(s, (struct sockaddr *)&a, al) < 0 ||
        getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0 || uc.pid != l->keeper || uc.uid != geteuid())
        goto out;
    struct pollfd p = {s, POLLIN, 0};
    char byte, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (poll(&p, 1, KEEP_SPARE_WAIT_MS) != 1 || recvmsg(s, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) != 1)
        goto out;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if (fd >= 0 && !connected_to(fd, l->lgrpc)) {
        close(fd);
        fd = -1;
    }
out:
    if (s >= 0)
        close(s);
    return fd;
}

void keep_release(keep_lease *l)
{
    if (l->fd < 0)
        return;
    futimens(l->fd, NULL); /* the last use: the keeper counts the keep duration from here */
    close(l->fd);
    *l = KEEP_LEASE_NONE;
}

void keep_discard(keep_lease *l)
{
    if (l->fd < 0)
        return;
    int keeper = l->keeper;
    close(l->fd); /* not a use: the mtime stays; the keeper needs the lock to end */
    *l = KEEP_LEASE_NONE;
    if (keeper > 0)
        kill(keeper, SIGTERM);
}

void keep_start(const kube *k, const char *pod, const char *container, int grpc, int tunnel, int64_t keep_ms)
{
    char a_keep[32], a_g[16], a_t[16];
    snprintf(a_keep, sizeof a_keep, "%lld", (long long)keep_ms);
    snprintf(a_g, sizeof a_g, "%d", grpc);
    snprintf(a_t, sizeof a_t, "%d", tunnel);
    /* KEEP_ARGC words, then kubectl's connection flags as given */
    const char *argv[KEEP_ARGC + FLAGS_CONN_MAX + 1] = {
        "kubectl-diag",
        "__keep",
        a_keep,
        pod,
        container,
        a_g,
        a_t,
        k->kubectl ? k->kubectl : "kubectl",
        k->kubeconfig ? k->kubeconfig : "",
        k->context ? k->context : "",
        k->ns ? k->ns : "",
    };
    for (size_t i = 0; k->conn && k->conn[i] && i < FLAGS_CONN_MAX; i++)
        argv[KEEP_ARGC + i] = k->conn[i];
    keep_lease l;
    if (keep_take(k, pod, container, grpc, tunnel, &l)) { /* one runs */
        keep_release(&l);
        return;
    }
    /* posix_spawn, not fork: the CLI has gRPC's threads. The keeper gets a
     * session of its own (no terminal, no Ctrl-C of the user's), /dev/null
     * for its stdio (whoever reads the CLI's output must not wait for it) and
     * none of the CLI's other fds. */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    if (posix_spawn_file_actions_init(&fa) != 0)
        return;
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    pid_t pid;
    if (posix_spawn(&pid, "/proc/self/exe", &fa, &at, (char *const *)argv, environ) != 0 && k->verbose > 0)
        fprintf(stderr, "kubectl-diag: cannot start the keeper of the port-forward to pod/%s\n", pod);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
}

/* ---- the keeper ---- */

/* Makes the keeper's file, exclusively locked before it appears (a
 * temporary file locked, then linked to path) and holding key and the
 * keeper's PID (what `forwards --stop` needs to end a keeper that starts):
 * its fd, or -1 when another keeper runs (or the file cannot be made). A
 * file whose keeper is gone (killed) is replaced. */
static int make_file(const char *path, const char *key)
{
    char tmp[1400];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    struct flock life = first_byte(F_RDLCK);
    if (flock(fd, LOCK_EX) < 0 || fcntl(fd, F_OFD_SETLK, &life) < 0 || dprintf(fd, "%s%d\n", key, (int)getpid()) < 0)
        goto fail;
    for (int tries = 0; tries < 2; tries++) {
        if (link(tmp, path) == 0) {
            unlink(tmp);
            return fd;
        }
        if (errno != EEXIST)
            goto fail;
        int old = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (old < 0)
            continue; /* it went meanwhile */
        /* locked: a keeper starts or ends, or a command uses it */
        bool alive = flock(old, LOCK_EX | LOCK_NB) < 0 || keeper_alive(old);
        if (!alive)
            unlink_ours(path, old);
        close(old);
        if (alive)
            goto fail;
    }
fail:
    unlink(tmp);
    close(fd);
    return -1;
}

/* Milliseconds since the last use (the file's mtime), -1 when the file was
 * unlinked or cannot be read. A last use after now (the clock was set back)
 * is made now: it is no sign to end. */
static int64_t idle_ms(int fd)
{
    struct stat st;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (fstat(fd, &st) < 0 || st.st_nlink == 0)
        return -1;
    int64_t ms = (int64_t)(now.tv_sec - st.st_mtim.tv_sec) * 1000 + (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
    if (ms < 0)
        futimens(fd, NULL);
    return ms < 0 ? 0 : ms;
}

/* The keeper runs in "/": it must not keep the user's directory busy (a
 * mount that could then not be unmounted). Relative kubeconfig paths, given
 * or in $KUBECONFIG, and a relative kubectl (./kubectl; a bare name is
 * looked up in PATH) are made absolute first. k->kubeconfig then points into
 * kc, k->kubectl into kb. false when the directory is gone or a path too
 * long. */
static bool leave_cwd(kube *k, char *kc, size_t n, char *kb, size_t kbn)
{
    char cwd[PATH_MAX], list[8192], out[8192];
    if (!getcwd(cwd, sizeof cwd))
        return false;
    if (k->kubectl[0] != '/' && strchr(k->kubectl, '/')) {
        if ((size_t)snprintf(kb, kbn, "%s/%s", cwd, k->kubectl) >= kbn)
            return false;
        k->kubectl = kb;
    }
    if (k->kubeconfig && k->kubeconfig[0] != '/') {
        if ((size_t)snprintf(kc, n, "%s/%s", cwd, k->kubeconfig) >= n)
            return false;
        k->kubeconfig = kc;
    }
    const char *env = getenv("KUBECONFIG");
    if (env && *env) {
        size_t used = 0;
        char *save = NULL;
        if ((size_t)snprintf(list, sizeof list, "%s", env) >= sizeof list)
            return false;
        out[0] = '\0';
        for (char *f = strtok_r(list, ":", &save); f; f = strtok_r(NULL, ":", &save)) {
            int w = snprintf(out + used, sizeof out - used, "%s%s%s%s", used ? ":" : "", f[0] == '/' ? "" : cwd,
                             f[0] == '/' ? "" : "/", f);
            if (w < 0 || (size_t)w >= sizeof out - used)
                return false;
            used += (size_t)w;
        }
        setenv("KUBECONFIG", out, 1);
    }
    return chdir("/") == 0;
}

/* The keeper's spare: a connection to its forward's local gRPC port made
 * ahead, so that kubectl has created its two streams and the manager has
 * accepted it (two round trips to the API server) before a command asks
 * for it (keep_spare). */
typedef struct {
    int listen;      /* where commands ask (spare_addr); -1: none */
    int fd;          /* -1: none */
    int64_t made_ms; /* when fd was dialled */
    int64_t next_ms; /* when to dial the next */
} spare;

static void spare_drop(spare *sp, int64_t redial_ms)
{
    if (sp->fd >= 0)
        close(sp->fd);
    sp->fd = -1;
    sp->next_ms = time_now_ms() + redial_ms;
}

static void spare_dial(spare *sp, int lg)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)lg),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, err = 0;
    socklen_t el = sizeof err;
    sp->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* TCP_NODELAY travels with the socket: gRPC does not set it on a socket it is given. A
     * kubectl that does not accept costs the keeper a second, not its signals' turn */
    struct pollfd p = {sp->fd, POLLOUT, 0};
    if (sp->fd >= 0 && (setsockopt(sp->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
                        (connect(sp->fd, (struct sockaddr *)&a, sizeof a) < 0 &&
                         (errno != EINPROGRESS || poll(&p, 1, KEEP_TICK_MS) != 1 ||
                          getsockopt(sp->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0))))
        spare_drop(sp, KEEP_REDIAL_MS);
    sp->made_ms = time_now_ms();
    sp->next_ms = sp->made_ms + KEEP_REDIAL_MS;
}

static void spare_listen(spare *sp, int lg)
{
    struct sockaddr_un a;
    socklen_t al = spare_addr(getpid(), lg, &a);
    sp->listen = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sp->listen >= 0 && (bind(sp->listen, (struct sockaddr *)&a, al) < 0 || listen(sp->listen, 8) < 0)) {
        close(sp->listen); /* commands then connect as they would without a keeper's spare */
        sp->listen = -1;
    }
}

/* Hands the spare to the command that connected (our own user only), then
 * dials the next one at once; with none ready, the command gets a byte
 * without a connection and makes its own. */
static void spare_hand(spare *sp)
{
    int c = accept4(sp->listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    struct ucred uc;
    socklen_t ul = sizeof uc;
    if (c < 0)
        return;
    struct pollfd p = {sp->fd, POLLRDHUP, 0};
    if (sp->fd >= 0 && poll(&p, 1, 0) != 0)
        spare_drop(sp, KEEP_REDIAL_MS); /* the other end closed it meanwhile */
    char byte = 0, ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (sp->fd >= 0) {
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &sp->fd, sizeof(int));
    }
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0 && uc.uid == geteuid() &&
        sendmsg(c, &m, MSG_NOSIGNAL | MSG_DONTWAIT) == 1 && sp->fd >= 0)
        spare_drop(sp, 0); /* the command's now */
    close(c);
}

/* Waits for the keeper's forward to come up (KEEP_UP_MS at most), and no
 * longer once the keeper is told to end (sfd readable: a `forwards --stop`
 * while it starts): its generation, or < 0. */
static int keeper_up(portfwd *pf, int sfd, int *lg, int *lt)
{
    char err[512];
    int64_t end = time_now_ms() + KEEP_UP_MS;
    struct pollfd p = {sfd, POLLIN, 0};
    for (;;) {
        int gen = portfwd_wait(pf, 0, KEEP_TICK_MS / 10, lg, lt, err, sizeof err);
        if (gen != -ETIMEDOUT || time_now_ms() >= end || poll(&p, 1, 0) != 0)
            return gen;
    }
}

int keep_main(int argc, char **argv)
{
    if (argc < KEEP_ARGC || argc > KEEP_ARGC + FLAGS_CONN_MAX)
        return 2;
    char *end;
    long long keep_ms = strtoll(argv[2], &end, 10);
    const char *pod = argv[3], *container = argv[4];
    int grpc = atoi(argv[5]), tunnel = atoi(argv[6]);
    kube k = {.kubectl = argv[7],
              .kubeconfig = *argv[8] ? argv[8] : NULL,
              .context = *argv[9] ? argv[9] : NULL,
              .ns = *argv[10] ? argv[10] : NULL,
              .conn = argv + KEEP_ARGC};
    for (int i = KEEP_ARGC; i < argc; i++)
        if (strncmp(argv[i], "--", 2) != 0) /* only kubectl's connection flags, as flags_parse made them */
            return 2;
    if (*end || keep_ms <= 0 || keep_ms > KEEP_MAX_MS || grpc < 1 || grpc > 65535 || tunnel < 0 ||
        tunnel > 65535 || !*pod || !*container || strlen(container) > 63)
        return 2;
    char path[1300], key[REMEMBER_KEY_MAX];
    char kc[PATH_MAX + 1024], kb[PATH_MAX + 1024];
    /* the key has the kubeconfig as the commands give it; kubectl gets it absolute */
    if (!remember_path(&k, pod, KEEP_SUFFIX, true, path, sizeof path, key, sizeof key) ||
        !leave_cwd(&k, kc, sizeof kc, kb, sizeof kb))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGHUP);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    int fd = sfd < 0 ? -1 : make_file(path, key);
    if (fd < 0)
        return sfd < 0 ? 1 : 0; /* another keeper runs */
    /* the supervised forward every command runs (SPDY, WebSockets when refused); its restart on
     * other ports would outdate the file, so the keeper ends instead */
    portfwd *pf;
    char err[512], stamp[STAMP_MAX];
    int lg = 0, lt = 0;
    kubeconfig_stamp(&k, stamp, sizeof stamp); /* before kubectl reads them */
    int rc = portfwd_start(&pf, &k, pod, container, grpc, tunnel, KEEP_UP_MS, err, sizeof err);
    int gen = rc < 0 ? rc : keeper_up(pf, sfd, &lg, &lt);
    spare sp = {.listen = -1, .fd = -1};
    if (gen > 0) { /* ready before the file tells commands about the forward */
        spare_listen(&sp, lg);
        if (sp.listen >= 0)
            spare_dial(&sp, lg);
    }
    char line[256 + STAMP_MAX];
    int n = snprintf(line, sizeof line, "%d %d %s %d %d %d %d %s %lld\n", (int)getpid(),
                     (int)portfwd_child_pid(pf), container, grpc, tunnel, lg, lt, stamp, keep_ms);
    /* over the PID make_file wrote, which the line starts with */
    rc = gen > 0 && pwrite(fd, line, (size_t)n, (off_t)strlen(key)) == n ? 0 : 1;
    if (rc == 0) {
        futimens(fd, NULL);
        flock(fd, LOCK_UN);
    }
    /* told to end (a signal, or the file unlinked): no longer offered, and ended once the
     * commands that took it let go (they would be cut off mid-call) */
    bool ending = false;
    while (rc == 0) {
        int64_t now = time_now_ms();
        if (sp.fd >= 0 && now - sp.made_ms >= KEEP_SPARE_MS)
            spare_drop(&sp, 0); /* before the manager closes it for its silence */
        if (sp.fd < 0 && sp.listen >= 0 && now >= sp.next_ms)
            spare_dial(&sp, lg);
        struct pollfd fds[4] = {
            {sfd, POLLIN, 0}, {portfwd_gone_fd(pf), POLLIN, 0}, {sp.listen, POLLIN, 0}, {sp.fd, POLLRDHUP, 0}};
        struct signalfd_siginfo si;
        if (poll(fds, 4, KEEP_TICK_MS) > 0 && fds[1].revents)
            break; /* the pod went */
        if (fds[0].revents && read(sfd, &si, sizeof si) == (ssize_t)sizeof si && !ending) {
            unlink_ours(path, fd);
            ending = true;
        }
        if (fds[3].revents)
            spare_drop(&sp, KEEP_REDIAL_MS); /* the manager or kubectl closed it */
        if (fds[2].revents)
            spare_hand(&sp);
        if (portfwd_current(pf, &lg, &lt) != (unsigned)gen)
            break; /* kubectl port-forward ended */
        int64_t idle = idle_ms(fd);
        ending |= idle < 0; /* unlinked: stopped, or by hand */
        if (ending && flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (ending || idle < keep_ms || flock(fd, LOCK_EX | LOCK_NB) < 0)
            continue;               /* used lately, or in use now */
        if (idle_ms(fd) >= keep_ms) /* a command may have let go between the two looks */
            break;
        flock(fd, LOCK_UN);
    }
    /* gone from the directory before the forward goes: no command takes it now */
    unlink_ours(path, fd);
    spare_drop(&sp, 0);
    if (sp.listen >= 0)
        close(sp.listen);
    portfwd_free(pf);
    close(fd);
    close(sfd);
    return rc;
}

static void format_secs(long long ms, char *buf, size_t n)
{
    if (ms < 0)
        snprintf(buf, n, "-");
    else
        pod_format_age((long)(ms / 1000), buf, n);
}

/* Whether a command holds fd's forward now (its shared lock). */
static bool in_use(int fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        return true;
    flock(fd, LOCK_UN);
    return false;
}

/* Sends SIGTERM to the keeper of fd's file (starting: its kubectl is not up
 * yet): 1 when it went within KEEP_STOP_MS (it ends its kubectl first), 0
 * when a command uses the forward (the keeper ends once none does), -1 when
 * it did not end. */
static int stop_keeper(int fd, const struct kept *kp, bool starting)
{
    bool busy = !starting && in_use(fd); /* a starting keeper holds it exclusively */
    if (kill(kp->keeper, SIGTERM) < 0 && errno != ESRCH)
        return -1;
    for (int waited = 0; !busy && waited < KEEP_STOP_MS; waited += 50) {
        if (!keeper_alive(fd))
            return 1;
        poll(NULL, 0, 50);
    }
    return !keeper_alive(fd) ? 1 : busy || (!starting && in_use(fd)) ? 0 : -1;
}

int keep_forwards(FILE *out, const kube *k, const char *pod, bool stop, char *err, size_t errlen)
{
    char dir[1100], cur[256];
    const char *only_ns = k->ns;
    if (pod && !only_ns) { /* pod/NAME names a pod of one namespace, as kubectl takes it */
        kube_context_ns(k, cur, sizeof cur);
        only_ns = cur;
    }
    DIR *d = remember_dir(dir, sizeof dir) ? opendir(dir) : NULL;
    struct dirent *de;
    int rows = 0, stuck = 0;
    while (d && (de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl <= strlen(KEEP_SUFFIX) || strcmp(de->d_name + nl - strlen(KEEP_SUFFIX), KEEP_SUFFIX) != 0)
            continue;
        int fd = openat(dirfd(d), de->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        char key[REMEMBER_KEY_MAX], ctx[512], ns[256], name[256], rec[1400];
        struct kept kp;
        remembered r;
        ssize_t n = fd < 0 ? -1 : pread(fd, key, sizeof key - 1, 0);
        char *eol = n > 0 ? memchr(key, '\n', (size_t)n) : NULL;
        if (eol)
            eol[1] = '\0';
        /* a dead keeper's file is no forward: the next command replaces it */
        enum kept_state state = eol ? read_kept(fd, key, &kp) : KEPT_NONE;
        if (state == KEPT_NONE || !keeper_alive(fd) || !remember_key_fields(key, ctx, ns, name, sizeof ns) ||
            (pod && strcmp(pod, name) != 0)) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        /* the pod's namespace as its record says, when the command took the current one */
        snprintf(rec, sizeof rec, "%s/%.*s", dir, (int)(nl - strlen(KEEP_SUFFIX)), de->d_name);
        if (strcmp(ns, "-") == 0 && remember_read_at(rec, key, &r) && r.ns[0])
            snprintf(ns, sizeof ns, "%s", r.ns);
        if ((only_ns && strcmp(only_ns, ns) != 0) || (k->context && strcmp(k->context, ctx) != 0)) {
            close(fd);
            continue;
        }
        if (stop) {
            int stopped = stop_keeper(fd, &kp, state == KEPT_STARTING);
            if (stopped > 0)
                fprintf(out, "pod/%s: kept port-forward ended (keeper %d)\n", name, kp.keeper);
            else if (stopped == 0)
                fprintf(out, "pod/%s: kept port-forward in use; it ends when the commands using it end (keeper %d)\n",
                        name, kp.keeper);
            else if (stuck++ == 0)
                snprintf(err, errlen,
                         "the keeper %d of the kept port-forward to pod/%s did not end within %d s; kill -9 %d",
                         kp.keeper, name, KEEP_STOP_MS / 1000, kp.keeper);
        } else {
            char idle[32], left[64], local[32];
            /* a command holds it: not idle, and it ends KEEP_MS after the last one lets go */
            bool busy = state == KEPT_UP && in_use(fd);
            int64_t ms = state == KEPT_UP && !busy ? idle_ms(fd) : -1;
            format_secs(ms, idle, sizeof idle);
            format_secs(kp.keep_ms && ms >= 0 ? (kp.keep_ms > ms ? kp.keep_ms - ms : 0) : -1, left, sizeof left);
            if (busy && kp.keep_ms) {
                char after[32];
                format_secs(kp.keep_ms, after, sizeof after);
                snprintf(left, sizeof left, "in use (then %s)", after);
            } else if (busy)
                snprintf(left, sizeof left, "in use");
            if (state == KEPT_UP)
                snprintf(local, sizeof local, "127.0.0.1:%d", kp.lg);
            else
                snprintf(local, sizeof local, "starting");
            if (rows == 0)
                fprintf(out, "%-32s %-16s %-20s %-16s %-8s %-6s %s\n", "POD", "NAMESPACE", "CONTEXT", "LOCAL",
                        "KEEPER", "IDLE", "ENDS IN");
            fprintf(out, "%-32s %-16s %-20s %-16s %-8d %-6s %s\n", name, ns, ctx, local, kp.keeper, idle, left);
        }
        rows++;
        close(fd);
    }
    if (d)
        closedir(d);
    if (stuck)
        return -ETIMEDOUT;
    char where[600];
    snprintf(where, sizeof where, "%s%s%s%s%s%s", pod ? " to pod/" : "", pod ? pod : "",
             only_ns ? " in namespace " : "", only_ns ? only_ns : "", k->context ? " of context " : "",
             k->context ? k->context : "");
    if (rows == 0 && stop && (pod || k->ns || k->context)) {
        snprintf(err, errlen, "no kept port-forwards%s; kubectl diag forwards lists those there are", where);
        return -ENOENT;
    }
    if (rows == 0)
        fprintf(stderr, "no kept port-forwards%s (kubectl diag --keep-forward DURATION keeps one)\n", where);
    return 0;
}
