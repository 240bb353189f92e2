/* copyz — see copyz.h. */
#include "copyz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "contract.h"

struct copyz {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t buf[CONTRACT_COPY_DATA_MAX]; /* compressed (pack) or decompressed (unpack) bytes */
};

int copyz_new(copyz **ret)
{
    copyz *z = calloc(1, sizeof *z);
    if (!z)
        return -ENOMEM;
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    if (!z->cctx || !z->dctx ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, CONTRACT_COPY_ZSTD_LEVEL)) ||
        /* every frame states its size: the receiver checks it before decoding */
        ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0))) {
        copyz_free(z);
        return -ENOMEM;
    }
    *ret = z;
    return 0;
}

void copyz_free(copyz *z)
{
    if (!z)
        return;
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeDCtx(z->dctx);
    free(z);
}

void copyz_pack(copyz *z, const Kdiag__Solo__Io__CopyChunk *in, Kdiag__Solo__Io__CopyChunk *out)
{
    *out = *in;
    size_t n = in->data.len;
    if (n == 0 || n > CONTRACT_COPY_DATA_MAX)
        return;
    /* A frame that would not save the gain does not fit: dstSize_tooSmall. */
    size_t r = ZSTD_compress2(z->cctx, z->buf, n - n / CONTRACT_COPY_ZSTD_GAIN, in->data.data, n);
    if (ZSTD_isError(r))
        return;
    out->data.data = NULL;
    out->data.len = 0;
    out->zstd.data = z->buf;
    out->zstd.len = r;
}

int copyz_unpack(copyz *z, const Kdiag__Solo__Io__CopyChunk *in, Kdiag__Solo__Io__CopyChunk *out, char *err,
                 size_t errlen)
{
    *out = *in;
    const uint8_t *p = in->zstd.data;
    size_t len = in->zstd.len;
    if (len == 0)
        return 0;
    if (in->entry || in->data.len || in->hole) {
        snprintf(err, errlen, "a copy chunk with compressed data beside other content");
        return -EPROTO;
    }
    /* The frame format of RFC 8878 only: libzstd would also decode the legacy
     * formats of zstd 0.5-0.7, code that no sender of ours needs. */
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd}; /* ZSTD_MAGICNUMBER, little-endian */
    unsigned long long size =
        len >= 4 && memcmp(p, magic, 4) == 0 ? ZSTD_getFrameContentSize(p, len) : ZSTD_CONTENTSIZE_ERROR;
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size == 0 ||
        size > CONTRACT_COPY_DATA_MAX || ZSTD_findFrameCompressedSize(p, len) != len) {
        snprintf(err, errlen, "a copy chunk's compressed data is not one zstd frame of 1 to %d bytes",
                 CONTRACT_COPY_DATA_MAX);
        return -EPROTO;
    }
    size_t r = ZSTD_decompressDCtx(z->dctx, z->buf, (size_t)size, p, len);
    if (ZSTD_isError(r) || r != size) {
        snprintf(err, errlen, "a copy chunk's compressed data does not decode: %s",
                 ZSTD_isError(r) ? ZSTD_getErrorName(r) : "shorter than its stated size");
        return -EPROTO;
    }
    out->zstd.data = NULL;
    out->zstd.len = 0;
    out->data.data = z->buf;
    out->data.len = r;
    return 0;
}
