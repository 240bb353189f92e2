/* ps_bench — Ps against `ss -ltnup` + `ps -eo pid,ppid,comm`, side by side in
 * one run, in a fresh network+PID+mount namespace holding N processes with
 * one listening TCP socket each. With --manager, also the Ps RPC of the real
 * kdiag-manager and its RSS: idle, and after --calls Ps calls.
 *
 *   ps_bench [--procs 2000] [--runs 21] [--manager PATH] [--calls 10000]
 *
 * Needs root. Not a test: prints numbers for bench/README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdiag.pb-c.h"
#include "netns.h"
#include "ps.h"
#include "ps_rpc.h"
#include "rpc.h"
#include "mgrproc.h"

extern char **environ;

static int n_procs = 2000, n_runs = 21, n_calls = 10000;
static const char *manager_path;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* n processes, each holding one listener (v4 and v6 alternately). */
static void spawn_listeners(int n)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        die("pipe");
    for (int i = 0; i < n; i++) {
        int v6 = i & 1;
        int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
        int rc = v6 ? bind(fd, (struct sockaddr *)&a6, sizeof(a6)) : bind(fd, (struct sockaddr *)&a4, sizeof(a4));
        if (fd < 0 || rc < 0 || listen(fd, 16) < 0)
            die("listener");
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            char name[32]; /* the kernel keeps 15 bytes */
            snprintf(name, sizeof(name), "bench-%d", i);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            prctl(PR_SET_NAME, name);
            if (write(ready[1], "x", 1) != 1)
                _exit(1);
            for (;;)
                pause();
        }
        close(fd);
    }
    char buf[256];
    for (int got = 0; got < n;) {
        ssize_t r = read(ready[0], buf, sizeof(buf) < (size_t)(n - got) ? sizeof(buf) : (size_t)(n - got));
        if (r <= 0)
            die("ready");
        got += (int)r;
    }
    close(ready[0]);
    close(ready[1]);
}

static double time_ps_collect(size_t *procs, size_t *socks)
{
    ps_list l = {0};
    double t = now_s();
    if (ps_collect(NULL, &l) < 0)
        die("ps_collect");
    t = now_s() - t;
    *procs = l.n;
    *socks = 0;
    for (size_t i = 0; i < l.n; i++)
        *socks += l.procs[i].n_socks;
    ps_list_free(&l);
    return t;
}

static void run_quiet(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        die(argv[0]);
    posix_spawn_file_actions_destroy(&fa);
    int ws;
    if (waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        fprintf(stderr, "ps_bench: %s failed\n", argv[0]);
        exit(1);
    }
}

static double time_ss_ps(void)
{
    char *ss[] = {"ss", "-ltnup", NULL};
    char *ps[] = {"ps", "-eo", "pid,ppid,comm", NULL};
    double t = now_s();
    run_quiet(ss);
    run_quiet(ps);
    return now_s() - t;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static double time_rpc(rpc_client *cl, size_t *procs)
{
    uint8_t *resp = NULL;
    size_t len = 0;
    rpc_status st;
    double t = now_s();
    if (rpc_client_unary(cl, CONTRACT_METHOD_PS, (const uint8_t *)"", 0, &resp, &len, 30000, &st) != 0) {
        fprintf(stderr, "ps_bench: Ps failed: %d %s\n", st.code, st.message);
        exit(1);
    }
    t = now_s() - t;
    if (procs) {
        Kdiag__Solo__Io__PsResponse *r = kdiag__solo__io__ps_response__unpack(NULL, len, resp);
        *procs = r ? r->n_processes : 0;
        kdiag__solo__io__ps_response__free_unpacked(r, NULL);
    }
    free(resp);
    return t;
}

static int bench(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die("mount /proc");
    if (netns_lo_up() < 0)
        die("lo up");
    double t = now_s();
    spawn_listeners(n_procs);
    printf("namespace: %d processes, %d listening sockets (spawned in %.1f s)\n", n_procs, n_procs, now_s() - t);

    double *a = calloc((size_t)n_runs, sizeof(double)), *b = calloc((size_t)n_runs, sizeof(double));
    size_t procs = 0, socks = 0;
    /* Interleaved, so both see the same cache state and machine load. */
    time_ps_collect(&procs, &socks);
    time_ss_ps();
    for (int i = 0; i < n_runs; i++) {
        a[i] = time_ps_collect(&procs, &socks);
        b[i] = time_ss_ps();
    }
    double ma = median(a, n_runs), mb = median(b, n_runs);
    printf("ps_collect:              median %7.2f ms over %d runs (%zu processes, %zu sockets matched)\n",
           ma * 1e3, n_runs, procs, socks);
    printf("ss -ltnup + ps -eo ...:  median %7.2f ms over %d runs\n", mb * 1e3, n_runs);
    printf("ratio (ss+ps / ps_collect): %.1fx\n", mb / ma);

    if (manager_path) {
        char target[64];
        mgrproc mp;
        if (mgrproc_start(manager_path, &mp) < 0)
            die("kdiag-manager");
        pid_t mgr = mp.pid;
        usleep(200000);
        long idle = rss_kb(mgr);
        snprintf(target, sizeof(target), "127.0.0.1:%d", mp.port);
        rpc_client *cl;
        if (rpc_client_new(&cl, target, mp.token) < 0)
            die("rpc_client_new");
        size_t rprocs = 0;
        time_rpc(cl, NULL);
        for (int i = 0; i < n_runs; i++) {
            a[i] = time_rpc(cl, &rprocs);
            b[i] = time_ss_ps();
        }
        ma = median(a, n_runs);
        mb = median(b, n_runs);
        printf("Ps RPC:                  median %7.2f ms over %d runs (%zu processes)\n", ma * 1e3, n_runs, rprocs);
        printf("ss -ltnup + ps -eo ...:  median %7.2f ms over %d runs\n", mb * 1e3, n_runs);
        printf("ratio (ss+ps / Ps RPC):  %.1fx\n", mb / ma);

        printf("kdiag-manager RSS idle:  %ld kB\n", idle);
        /* RSS along the way: warm-up (allocator arenas of the worker
         * threads, gRPC buffers) shows early; a leak keeps climbing. */
        t = now_s();
        printf("kdiag-manager RSS after N Ps calls:");
        for (int i = 1; i <= n_calls; i++) {
            time_rpc(cl, NULL);
            if (i == 100 || i == n_calls || (i % (n_calls / 5) == 0))
                printf(" %d: %ld kB%s", i, rss_kb(mgr), i == n_calls ? "" : ",");
        }
        printf(" (%.1f s for the calls)\n", now_s() - t);
        rpc_client_free(cl);
        mgrproc_stop(&mp);
    }
    free(a);
    free(b);
    fflush(stdout);
    kill(-1, SIGKILL); /* pid 1 here: every listener */
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--procs") && i + 1 < argc)
            n_procs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            n_runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            n_calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--manager") && i + 1 < argc)
            manager_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--procs N] [--runs N] [--manager PATH] [--calls N]\n", argv[0]);
            return 2;
        }
    }
    if (n_procs < 1 || n_runs < 1 || n_calls < 100) {
        fprintf(stderr, "ps_bench: --procs and --runs must be >= 1, --calls >= 100\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t mid = fork();
    if (mid < 0)
        die("fork");
    if (mid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID) < 0)
            die("ps_bench: unshare (needs root)");
        pid_t init = fork();
        if (init < 0)
            die("fork");
        if (init == 0)
            exit(bench());
        int ws = 0;
        while (waitpid(init, &ws, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(ws) ? WEXITSTATUS(ws) : 1);
    }
    int ws = 0;
    while (waitpid(mid, &ws, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 1;
}
