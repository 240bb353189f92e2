/* netns — helpers for tests that run in a network namespace of their own. */
#ifndef KDIAG_TEST_NETNS_H
#define KDIAG_TEST_NETNS_H

/* Brings up lo (down in a fresh network namespace). 0 or -errno. */
int netns_lo_up(void);

#endif
