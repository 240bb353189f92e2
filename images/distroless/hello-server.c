/* hello-server: the whole "distroless" stand-in image. A static TCP server on
 * port 8080 ($PORT or argv[1] override) that answers every connection and
 * closes it:
 *   - an HTTP request ("GET /x HTTP/1.1" ... blank line) gets
 *     "HTTP/1.1 200 OK" with the body "hello from distroless\n";
 *   - any other first line gets "hello from distroless: <that line>\n" (echo).
 * One stdout line per connection: "hello-server: <peer> <first line> -> <answer>".
 * Each connection is served by a forked child with a 5 s deadline, so slow or
 * silent clients never block others. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY "hello from distroless\n"

static void on_term(int sig)
{
    (void)sig;
    _exit(0); /* as PID 1 we only die on signals we handle */
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the end of the HTTP header block (or of the first line for a
 * non-HTTP client), EOF or the buffer fills. Returns bytes read. */
static size_t read_request(int fd, char *buf, size_t cap, int *is_http)
{
    size_t len = 0;

    *is_http = 0;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        char *nl = strchr(buf, '\n');
        if (!nl)
            continue;
        *nl = '\0';
        *is_http = strstr(buf, " HTTP/1.") != NULL;
        *nl = '\n';
        if (!*is_http || strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            break;
    }
    buf[len] = '\0';
    return len;
}

static void serve(int fd, const struct sockaddr_in *peer)
{
    char buf[8192], line[256], out[512], addr[INET_ADDRSTRLEN];
    int is_http;

    alarm(5); /* the child's whole life: never a stuck process */
    read_request(fd, buf, sizeof(buf), &is_http);
    size_t l = strcspn(buf, "\r\n");
    if (l >= sizeof(line))
        l = sizeof(line) - 1;
    memcpy(line, buf, l);
    line[l] = '\0';
    if (is_http) {
        snprintf(out, sizeof(out),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 strlen(BODY), BODY);
    } else {
        snprintf(out, sizeof(out), "hello from distroless: %s\n", line);
    }
    write_all(fd, out, strlen(out));
    shutdown(fd, SHUT_WR);
    inet_ntop(AF_INET, &peer->sin_addr, addr, sizeof(addr));
    printf("hello-server: %s:%u \"%s\" -> %s\n", addr, ntohs(peer->sin_port), line, is_http ? "200" : "echo");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
    long port = port_s ? strtol(port_s, NULL, 10) : 8080;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    int one = 1, lfd;

    if (port <= 0 || port > 65535) {
        fprintf(stderr, "hello-server: invalid port '%s': give 1-65535\n", port_s);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGCHLD, SIG_IGN); /* children reap themselves */
    signal(SIGPIPE, SIG_IGN);

    sa.sin_port = htons((unsigned short)port);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 512) < 0) {
        fprintf(stderr, "hello-server: cannot listen on port %ld: %s\n", port, strerror(errno));
        return 1;
    }
    printf("hello-server: listening on 0.0.0.0:%ld\n", port);
    fflush(stdout);

    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof(peer);
        int cfd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (cfd < 0)
            continue; /* EINTR, ECONNABORTED, EMFILE: keep serving */
        pid_t child = fork();
        if (child == 0) {
            close(lfd);
            serve(cfd, &peer);
            _exit(0);
        }
        if (child < 0) {
            printf("hello-server: cannot fork (%s): connection dropped\n", strerror(errno));
            fflush(stdout);
        }
        close(cfd);
    }
}
