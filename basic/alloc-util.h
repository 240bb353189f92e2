/* alloc-util — growing arrays (systemd's GREEDY_REALLOC). */
#ifndef KDIAG_BASIC_ALLOC_UTIL_H
#define KDIAG_BASIC_ALLOC_UTIL_H

#include <stddef.h>

/* Makes room in *p (capacity *cap elements of size bytes) for at least need
 * elements: the capacity doubles, starting at first. 0, or -ENOMEM with *p
 * and *cap unchanged (also when the size would overflow). */
int grow_array(void **p, size_t *cap, size_t need, size_t size, size_t first);

/* grow_array for an array variable p of any element type. */
#define GROW_ARRAY(p, cap, need, first) grow_array((void **)&(p), &(cap), (need), sizeof *(p), (first))

#endif
