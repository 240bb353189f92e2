/* splice_loop-internal — test seam of api/splice_loop.c. */
#ifndef KDIAG_SPLICE_LOOP_INTERNAL_H
#define KDIAG_SPLICE_LOOP_INTERNAL_H

#include "splice_loop.h"

/* Pairs running now (any thread). */
int splice_loop_npairs(const splice_loop *l);

#endif
