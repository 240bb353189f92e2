/* copyz — zstd for the file content of copy streams (docs/cp.md
 * "Compression"). The sender offers each data chunk to copyz_pack, which
 * moves it to CopyChunk.zstd when that saves at least 1/CONTRACT_COPY_ZSTD_GAIN;
 * the receiver gives every chunk to copyz_unpack, which turns zstd back into
 * data, never more than CONTRACT_COPY_DATA_MAX bytes of it. One copyz per copy
 * stream and thread: it holds the zstd contexts and the one output buffer. */
#ifndef KDIAG_COPYZ_H
#define KDIAG_COPYZ_H

#include <stddef.h>

#include "kdiag.pb-c.h"

typedef struct copyz copyz;

/* 0 or -ENOMEM. */
int copyz_new(copyz **ret);
void copyz_free(copyz *z); /* NULL is fine */

/* *out is in with its data as zstd when that pays, else in itself: out->zstd
 * points into z and is valid until the next call. */
void copyz_pack(copyz *z, const Kdiag__Solo__Io__CopyChunk *in, Kdiag__Solo__Io__CopyChunk *out);

/* *out is in with its zstd as data (pointing into z, valid until the next
 * call), or in itself when it has no zstd. -EPROTO, with one line in err, for
 * a zstd beside other content, or one that is not a single frame stating a
 * content size of 1 to CONTRACT_COPY_DATA_MAX bytes, or that does not decode
 * to that size. */
int copyz_unpack(copyz *z, const Kdiag__Solo__Io__CopyChunk *in, Kdiag__Solo__Io__CopyChunk *out, char *err,
                 size_t errlen);

#endif
