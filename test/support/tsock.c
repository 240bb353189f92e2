#include "tsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int tsock_loopback_pair(int *keep, int *other, int accept_flags)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int rc = 0, c = -1, a = -1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&sa, &len) < 0)
        goto fail;
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0)
        goto fail;
    a = accept4(l, NULL, NULL, accept_flags | SOCK_CLOEXEC);
    if (a < 0)
        goto fail;
    *keep = c;
    *other = a;
    goto out;
fail:
    rc = -errno;
    if (c >= 0)
        close(c);
out:
    if (l >= 0)
        close(l);
    return rc;
}
