/* Ps in a fresh network + PID + mount namespace: test processes listen on TCP
 * v4, v6, loopback only, and hold UDP sockets; ps_collect (and, given the
 * kdiag-manager path as argv[1], the Ps RPC of the real manager) must report
 * exactly them. Everything lives in the namespaces, which the kernel tears
 * down when this test's namespace init (pid 1) exits, whatever happened. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netns.h"
#include "ps.h"
#include "kdiag.pb-c.h"
#include "ps_rpc.h"
#include "rpc.h"
#include "mgrproc.h"

#define MAX_ADDRS 4
#define MAX_PROCS 16

/* One process as either source (ps_collect, the RPC) reports it. */
typedef struct {
    char proto[4];
    char ip[48];
    unsigned port;
} addr_t;

typedef struct {
    int pid, ppid;
    char name[64];
    char state;
    unsigned uid;
    char cmdline[512];
    uint64_t rss, start_ms;
    addr_t addrs[MAX_ADDRS];
    int n_addrs;
} proc_t;

static char self_cmdline[512];
static const char *manager_path;
static uint64_t t0_ms;
static proc_t want[MAX_PROCS];
static int n_want;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void add_addr(proc_t *p, const char *proto, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    addr_t *a = &p->addrs[p->n_addrs++];
    snprintf(a->proto, sizeof(a->proto), "%s", proto);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, a->ip, sizeof(a->ip));
        a->port = ntohs(s4->sin_port);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, a->ip, sizeof(a->ip));
        a->port = ntohs(s6->sin6_port);
    }
}

static int mksock(int family, int type, const char *ip, int listen_too)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
        sl = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        sl = sizeof(*s6);
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, sl), 0);
    if (listen_too)
        assert_int_equal(listen(fd, 8), 0);
    return fd;
}

/* Forks a process named name that holds fds[0..n) (the parent closes its
 * copies) and sleeps until killed; returns once the name is set. When
 * exit_now, it exits at once and is left unreaped: a zombie. */
static int spawn(const char *name, const int *fds, int n, int exit_now)
{
    int sync[2];
    assert_int_equal(pipe2(sync, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, name);
        if (write(sync[1], "x", 1) != 1 || exit_now)
            _exit(0);
        for (;;)
            pause();
    }
    char c;
    assert_int_equal(read(sync[0], &c, 1), 1);
    close(sync[0]);
    close(sync[1]);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return pid;
}

static proc_t *want_new(int pid, int ppid, const char *name, char state)
{
    proc_t *p = &want[n_want++];
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->ppid = ppid;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->state = state;
    snprintf(p->cmdline, sizeof(p->cmdline), "%s", state == 'Z' ? "" : self_cmdline);
    return p;
}

/* Waits until /proc shows pid in state (a worker that has just written its
 * sync byte may not have reached pause() yet). */
static void wait_state(int pid, char state)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && rp[2] == state)
            return;
        usleep(2000);
    }
    fail_msg("pid %d did not reach state %c", pid, state);
}

/* Forks kdt-tcp4-par (no sockets of its own) which forks kdt-tcp4-kid holding
 * fd: a listener shared across processes is reported for each holder. */
static void spawn_pair(int fd, const addr_t *shared)
{
    int sync[2];
    assert_int_equal(pipe2(sync, O_CLOEXEC), 0);
    pid_t par = fork();
    assert_true(par >= 0);
    if (par == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "kdt-tcp4-par");
        pid_t kid = fork();
        if (kid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            prctl(PR_SET_NAME, "kdt-tcp4-kid");
            int32_t me = getpid();
            if (write(sync[1], &me, sizeof(me)) != sizeof(me))
                _exit(1);
            for (;;)
                pause();
        }
        close(fd);
        for (;;)
            pause();
    }
    int32_t kid = 0;
    assert_int_equal(read(sync[0], &kid, sizeof(kid)), sizeof(kid));
    close(sync[0]);
    close(sync[1]);
    want_new(par, getpid(), "kdt-tcp4-par", 'S');
    proc_t *k = want_new(kid, par, "kdt-tcp4-kid", 'S');
    k->addrs[0] = *shared;
    k->n_addrs = 1;
}

/* The processes and sockets the listing must show. */
static int procs_up(void **state)
{
    (void)state;
    int me = getpid();
    int fds[4];
    proc_t *p;
    n_want = 0;
    t0_ms = now_ms();

    fds[0] = mksock(AF_INET, SOCK_STREAM, "0.0.0.0", 1);
    p = want_new(0, me, "kdt-tcp4", 'S');
    add_addr(p, "tcp", fds[0]);
    p->pid = spawn(p->name, NULL, 0, 0);
    spawn_pair(fds[0], &p->addrs[0]);
    close(fds[0]);

    fds[0] = mksock(AF_INET6, SOCK_STREAM, "::", 1);
    p = want_new(0, me, "kdt tcp6 (v6)", 'S');
    add_addr(p, "tcp", fds[0]);
    p->pid = spawn(p->name, fds, 1, 0);

    fds[0] = mksock(AF_INET, SOCK_STREAM, "127.0.0.1", 1);
    fds[1] = mksock(AF_INET6, SOCK_STREAM, "::1", 1);
    fds[2] = dup(fds[0]); /* same socket twice: listed once */
    p = want_new(0, me, "kdt-lo", 'S');
    add_addr(p, "tcp", fds[0]);
    add_addr(p, "tcp", fds[1]);
    p->pid = spawn(p->name, fds, 3, 0);

    fds[0] = mksock(AF_INET, SOCK_DGRAM, "0.0.0.0", 0);
    fds[1] = mksock(AF_INET6, SOCK_DGRAM, "::", 0);
    fds[2] = mksock(AF_INET, SOCK_DGRAM, "127.0.0.1", 0);  /* connected: a client, not listed */
    fds[3] = mksock(AF_INET, SOCK_STREAM, "127.0.0.1", 0); /* bound, not listening: not listed */
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fds[2], (struct sockaddr *)&to, sizeof(to)), 0);
    p = want_new(0, me, "kdt-udp", 'S');
    add_addr(p, "udp", fds[0]);
    add_addr(p, "udp", fds[1]);
    p->pid = spawn(p->name, fds, 4, 0);

    p = want_new(0, me, "kdt-idle", 'S');
    p->pid = spawn(p->name, NULL, 0, 0);

    p = want_new(0, me, "kdt-zombie", 'Z');
    p->pid = spawn(p->name, NULL, 0, 1);
    for (int i = 0; i < n_want; i++)
        wait_state(want[i].pid, want[i].state);
    return 0;
}

/* As pid 1 of the namespace, kill(-1) reaches every other process in it:
 * workers, zombie's siblings, the manager. */
static int procs_down(void **state)
{
    (void)state;
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    return 0;
}

static const proc_t *find(const proc_t *v, int n, int pid)
{
    for (int i = 0; i < n; i++)
        if (v[i].pid == pid)
            return &v[i];
    return NULL;
}

static int addr_cmp(const void *a, const void *b)
{
    const addr_t *x = a, *y = b;
    int c = strcmp(x->proto, y->proto);
    if (!c)
        c = strcmp(x->ip, y->ip);
    return c ? c : (int)x->port - (int)y->port;
}

/* got must hold exactly want's processes plus the ones in extra_pids. */
static void check(proc_t *got, int n_got, const int *extra_pids, int n_extra)
{
    uint64_t t1 = now_ms();
    if (n_got != n_want + n_extra) {
        for (int i = 0; i < n_got; i++)
            fprintf(stderr, "listed: %d %d %s %c\n", got[i].pid, got[i].ppid, got[i].name, got[i].state);
        fail_msg("%d processes listed, want %d", n_got, n_want + n_extra);
    }
    for (int i = 0; i < n_extra; i++)
        assert_non_null(find(got, n_got, extra_pids[i]));
    for (int i = 0; i < n_want; i++) {
        const proc_t *w = &want[i];
        proc_t *g = (proc_t *)find(got, n_got, w->pid);
        if (!g)
            fail_msg("pid %d (%s) missing from the listing", w->pid, w->name);
        assert_int_equal(g->ppid, w->ppid);
        assert_string_equal(g->name, w->name);
        assert_int_equal(g->state, w->state);
        assert_int_equal(g->uid, getuid());
        assert_string_equal(g->cmdline, w->cmdline);
        if (w->state != 'Z')
            assert_true(g->rss > 0);
        /* btime has 1 s resolution; allow a little more for clock steps. */
        if (g->start_ms + 3000 < t0_ms || g->start_ms > t1 + 3000)
            fail_msg("pid %d start %llu not within [%llu, %llu]", g->pid, (unsigned long long)g->start_ms,
                     (unsigned long long)t0_ms, (unsigned long long)t1);
        assert_int_equal(g->n_addrs, w->n_addrs);
        addr_t wa[MAX_ADDRS];
        memcpy(wa, w->addrs, sizeof(wa));
        qsort(wa, (size_t)w->n_addrs, sizeof(addr_t), addr_cmp);
        qsort(g->addrs, (size_t)g->n_addrs, sizeof(addr_t), addr_cmp);
        for (int k = 0; k < w->n_addrs; k++) {
            assert_string_equal(g->addrs[k].proto, wa[k].proto);
            assert_string_equal(g->addrs[k].ip, wa[k].ip);
            assert_int_equal(g->addrs[k].port, wa[k].port);
        }
    }
}

static int from_list(const ps_list *l, proc_t *out, int max)
{
    int n = 0;
    for (size_t i = 0; i < l->n && n < max; i++, n++) {
        const ps_proc *s = &l->procs[i];
        proc_t *p = &out[n];
        memset(p, 0, sizeof(*p));
        p->pid = s->info.pid;
        p->ppid = s->info.ppid;
        snprintf(p->name, sizeof(p->name), "%s", s->info.name);
        p->state = s->info.state;
        p->uid = s->info.uid;
        snprintf(p->cmdline, sizeof(p->cmdline), "%s", s->info.cmdline);
        p->rss = s->info.rss_bytes;
        p->start_ms = s->info.start_time_unix_ms;
        for (size_t k = 0; k < s->n_socks && p->n_addrs < MAX_ADDRS; k++) {
            addr_t *a = &p->addrs[p->n_addrs++];
            snprintf(a->proto, sizeof(a->proto), "%s", s->socks[k].protocol == IPPROTO_TCP ? "tcp" : "udp");
            sockdiag_addr_str(&s->socks[k], a->ip, sizeof(a->ip));
            a->port = s->socks[k].port;
        }
    }
    return n;
}

static void test_collect(void **state)
{
    (void)state;
    ps_list l = {0};
    proc_t got[MAX_PROCS * 2];
    assert_int_equal(ps_collect(NULL, &l), 0);
    /* The caller (pid 1 here) is left out. */
    int n = from_list(&l, got, MAX_PROCS * 2);
    assert_int_equal((size_t)n, l.n);
    assert_null(find(got, n, getpid()));
    check(got, n, NULL, 0);
    ps_list_free(&l);
}

/* Processes exiting while the scan runs are skipped, never an error. */
static void test_churn(void **state)
{
    (void)state;
    pid_t churn_pid = fork();
    assert_true(churn_pid >= 0);
    if (churn_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0);
        for (;;) {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            if (c > 0)
                waitpid(c, NULL, 0);
        }
    }
    for (int i = 0; i < 100; i++) {
        ps_list l = {0};
        assert_int_equal(ps_collect(NULL, &l), 0);
        assert_true(l.n >= (size_t)n_want);
        ps_list_free(&l);
    }
    /* Its last child may be orphaned to us (pid 1): reap the whole group, so
     * the next test sees only the processes it expects. */
    setpgid(churn_pid, churn_pid);
    kill(-churn_pid, SIGKILL);
    while (waitpid(-churn_pid, NULL, 0) > 0 || errno == EINTR)
        ;
}

static void test_rpc(void **state)
{
    (void)state;
    if (!manager_path) {
        fprintf(stderr, "test_ps_ns: no kdiag-manager path given\n");
        skip();
    }
    mgrproc mp;
    assert_int_equal(mgrproc_start(manager_path, &mp), 0);
    pid_t mgr = mp.pid;
    int out_fd = mp.out_fd; /* closed below, once the manager is gone */
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", mp.port);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, target, mp.token), 0);

    uint8_t *resp = NULL;
    size_t resp_len = 0;
    rpc_status st;
    int rc = rpc_client_unary(cl, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &resp_len, 10000, &st);
    if (rc != 0)
        fail_msg("Ps: rc %d status %d %s", rc, st.code, st.message);
    Kdiag__Solo__Io__PsResponse *r = kdiag__solo__io__ps_response__unpack(NULL, resp_len, resp);
    assert_non_null(r);

    proc_t got[MAX_PROCS * 2];
    int n = 0;
    for (size_t i = 0; i < r->n_processes && n < MAX_PROCS * 2; i++, n++) {
        const Kdiag__Solo__Io__ProcessInfo *pi = r->processes[i];
        proc_t *p = &got[n];
        memset(p, 0, sizeof(*p));
        p->pid = (int)pi->pid;
        p->ppid = (int)pi->ppid;
        snprintf(p->name, sizeof(p->name), "%s", pi->name);
        assert_int_equal(strlen(pi->state), 1);
        p->state = pi->state[0];
        p->uid = pi->uid;
        snprintf(p->cmdline, sizeof(p->cmdline), "%s", pi->cmdline);
        p->rss = pi->rss_bytes;
        p->start_ms = pi->start_time_unix_ms;
        for (size_t k = 0; k < pi->n_listen_addresses && p->n_addrs < MAX_ADDRS; k++) {
            addr_t *a = &p->addrs[p->n_addrs++];
            assert_string_equal(pi->listen_addresses[k]->protocol, "tcp");
            snprintf(a->proto, sizeof(a->proto), "tcp");
            snprintf(a->ip, sizeof(a->ip), "%s", pi->listen_addresses[k]->ip);
            a->port = pi->listen_addresses[k]->port;
        }
        for (size_t k = 0; k < pi->n_bound_addresses && p->n_addrs < MAX_ADDRS; k++) {
            addr_t *a = &p->addrs[p->n_addrs++];
            assert_string_equal(pi->bound_addresses[k]->protocol, "udp");
            snprintf(a->proto, sizeof(a->proto), "udp");
            snprintf(a->ip, sizeof(a->ip), "%s", pi->bound_addresses[k]->ip);
            a->port = pi->bound_addresses[k]->port;
        }
    }
    assert_int_equal((size_t)n, r->n_processes);
    kdiag__solo__io__ps_response__free_unpacked(r, NULL);
    free(resp);
    rpc_client_free(cl);

    /* The manager is not listed; this test process (its parent) is. */
    assert_null(find(got, n, mgr));
    int me = getpid();
    check(got, n, &me, 1);

    kill(mgr, SIGTERM);
    int ws = 0;
    for (int i = 0; i < 500 && waitpid(mgr, &ws, WNOHANG) == 0; i++)
        usleep(10000);
    if (waitpid(mgr, &ws, WNOHANG) == 0) {
        kill(mgr, SIGKILL);
        waitpid(mgr, &ws, 0);
    }
    close(out_fd);
}

static void lo_up(void)
{
    int rc = netns_lo_up();
    if (rc < 0) {
        fprintf(stderr, "test_ps_ns: bringing lo up: %s\n", strerror(-rc));
        exit(1);
    }
}

/* Runs as pid 1 of the new namespaces. */
static int ns_main(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        perror("test_ps_ns: mounting a fresh /proc");
        return 1;
    }
    lo_up();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collect),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_rpc),
    };
    return cmocka_run_group_tests(tests, procs_up, procs_down);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        manager_path = argv[1];
    /* cmdline as /proc shows it for forked children: argv joined by spaces. */
    size_t off = 0;
    for (int i = 0; i < argc && off < sizeof(self_cmdline); i++)
        off += (size_t)snprintf(self_cmdline + off, sizeof(self_cmdline) - off, "%s%s", i ? " " : "", argv[i]);

    /* The namespaces are made by a middle process: unsharing PID in this one
     * would put LeakSanitizer's helper thread in the new namespace at exit. */
    pid_t mid = fork();
    if (mid < 0) {
        perror("fork");
        return 1;
    }
    if (mid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID) < 0) {
            perror("test_ps_ns: unshare (needs root)");
            _exit(1);
        }
        pid_t init = fork();
        if (init < 0)
            _exit(1);
        if (init == 0)
            exit(ns_main()); /* exit, not _exit: leak checks run in there */
        int ws = 0;
        while (waitpid(init, &ws, 0) < 0 && errno == EINTR)
            ;
        if (WIFSIGNALED(ws))
            fprintf(stderr, "test_ps_ns: namespace init killed by signal %d\n", WTERMSIG(ws));
        _exit(WIFEXITED(ws) ? WEXITSTATUS(ws) : 1);
    }
    alarm(100); /* never hang: dying takes the namespace init with us (PDEATHSIG) */
    int ws = 0;
    while (waitpid(mid, &ws, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 1;
}
