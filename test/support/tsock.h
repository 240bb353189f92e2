/* tsock — sockets for tests. */
#ifndef KDIAG_TEST_TSOCK_H
#define KDIAG_TEST_TSOCK_H

/* A connected TCP pair over 127.0.0.1: *keep is the connecting end the test
 * keeps, *other the accepted one (accept4 with accept_flags, e.g.
 * SOCK_NONBLOCK; SOCK_CLOEXEC always). 0 or -errno; nothing is left open on
 * failure. */
int tsock_loopback_pair(int *keep, int *other, int accept_flags);

#endif
