#include "basic/signal-util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>

int sig_block(sigset_t *set, ...)
{
    sigset_t ss;
    va_list ap;
    int sig, rc = 0;
    sigemptyset(&ss);
    va_start(ap, set);
    while ((sig = va_arg(ap, int)) != -1)
        if (sigaddset(&ss, sig) < 0) {
            rc = -EINVAL;
            break;
        }
    va_end(ap);
    if (rc == 0)
        rc = -pthread_sigmask(SIG_BLOCK, &ss, NULL);
    if (rc == 0 && set)
        *set = ss;
    return rc;
}

int sig_block_stop(sigset_t *set)
{
    return sig_block(set, SIGINT, SIGTERM, SIGHUP, SIGQUIT, -1);
}

int sig_block_all(void)
{
    sigset_t all;
    sigfillset(&all);
    return -pthread_sigmask(SIG_BLOCK, &all, NULL);
}

int sig_unblock_all(void)
{
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL) < 0 ? -errno : 0;
}
