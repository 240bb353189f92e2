/* echo-server: the only file of the "kubesim-echo" test image. A static TCP echo server
 * (port argv[1], default 9000) with a deep accept queue, one forked child per connection, so
 * hundreds of concurrent port-forwarded connections each get every byte back. busybox nc
 * cannot serve as this: its listen backlog is 2. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig)
{
    (void)sig;
    _exit(0); /* as PID 1 we only die on signals we handle */
}

static int echo(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            off += w;
        }
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 9000;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);

    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGCHLD, SIG_IGN); /* children reap themselves */
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1024) < 0) {
        fprintf(stderr, "echo-server: cannot listen on port %d: %s\n", port, strerror(errno));
        return 1;
    }
    printf("echo-server: listening on port %d\n", port);
    fflush(stdout);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            close(ls);
            echo(c);
            shutdown(c, SHUT_WR);
            _exit(0);
        }
        close(c);
    }
}
