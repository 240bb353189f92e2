/* hash — FNV-1a, 32 bits: a stable hash of short strings (the same on every
 * run and machine), for names and colours derived from them. */
#ifndef KDIAG_BASIC_HASH_H
#define KDIAG_BASIC_HASH_H

#include <stdint.h>

#define FNV1A32_INIT 2166136261u /* the offset basis: the hash of "" */

/* Folds the bytes of s (NUL-terminated; NULL: none) into h, which starts as
 * FNV1A32_INIT, and returns the new h. */
static inline uint32_t fnv1a32(uint32_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        h = (h ^ *p) * 16777619u; /* the FNV 32-bit prime */
    return h;
}

#endif
