/* hash — FNV-1a, 32 and 64 bits: a stable hash of strings (the same on
 * every run and machine), for names and colours derived from them, and for
 * keys too long to keep whole. Not a defence against a chosen collision. */
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

#define FNV1A64_INIT 14695981039346656037ull

/* fnv1a32's 64-bit twin. */
static inline uint64_t fnv1a64(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        h = (h ^ *p) * 1099511628211ull; /* the FNV 64-bit prime */
    return h;
}

#endif
