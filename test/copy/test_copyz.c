/* copyz: data that compresses goes as zstd and comes back byte for byte, data
 * that does not stays as it is, and the receiver refuses every zstd it must
 * not decode (beside other content, no stated size, a size over the chunk
 * limit, trailing bytes, a cut frame) with -EPROTO and one line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_frameHeaderSize */
#include <zstd.h>

#include <cmocka.h>

#include "contract.h"
#include "copyz.h"

static uint8_t text[CONTRACT_COPY_DATA_MAX], rnd[CONTRACT_COPY_DATA_MAX];

static int setup(void **state)
{
    for (size_t off = 0, i = 0; off < sizeof text; i++)
        off += (size_t)snprintf((char *)text + off, sizeof text - off, "GET /api/v1/items/%zu 200 %zu ms\n", i, i % 97);
    return getrandom(rnd, sizeof rnd, 0) == (ssize_t)sizeof rnd && copyz_new((copyz **)state) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    copyz_free(*state);
    return 0;
}

static Kdiag__Solo__Io__CopyChunk data_chunk(const uint8_t *p, size_t n)
{
    Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
    c.data.data = (uint8_t *)p;
    c.data.len = n;
    return c;
}

static void test_text_goes_as_zstd_and_comes_back(void **state)
{
    Kdiag__Solo__Io__CopyChunk in = data_chunk(text, sizeof text), z, out;
    copyz_pack(*state, &in, &z);
    assert_int_equal(z.data.len, 0);
    assert_true(z.zstd.len > 0 && z.zstd.len < sizeof text / 4);
    /* the receiver's copyz is another one: its buffer is not the sender's */
    copyz *rz;
    assert_int_equal(copyz_new(&rz), 0);
    uint8_t wire[sizeof text];
    memcpy(wire, z.zstd.data, z.zstd.len);
    z.zstd.data = wire;
    char err[256] = "";
    assert_int_equal(copyz_unpack(rz, &z, &out, err, sizeof err), 0);
    assert_int_equal(out.zstd.len, 0);
    assert_int_equal(out.data.len, sizeof text);
    assert_memory_equal(out.data.data, text, sizeof text);
    copyz_free(rz);
}

static void test_what_does_not_pay_stays_as_it_is(void **state)
{
    /* random bytes; a chunk whose zstd saves less than the gain; entries and holes */
    uint8_t mixed[CONTRACT_COPY_DATA_MAX];
    size_t keep = sizeof mixed / CONTRACT_COPY_ZSTD_GAIN / 2; /* compressible part: saves too little */
    memset(mixed, 'a', keep);
    memcpy(mixed + keep, rnd, sizeof mixed - keep);
    Kdiag__Solo__Io__CopyChunk cases[3] = {data_chunk(rnd, sizeof rnd), data_chunk(mixed, sizeof mixed),
                                           KDIAG__SOLO__IO__COPY_CHUNK__INIT};
    cases[2].hole = 1 << 20;
    for (size_t i = 0; i < 3; i++) {
        Kdiag__Solo__Io__CopyChunk z, out;
        copyz_pack(*state, &cases[i], &z);
        assert_memory_equal(&z, &cases[i], sizeof z);
        char err[256] = "";
        assert_int_equal(copyz_unpack(*state, &z, &out, err, sizeof err), 0);
        assert_memory_equal(&out, &cases[i], sizeof out);
    }
}

/* in's zstd, refused with -EPROTO and a message holding want. */
static void refused(copyz *z, const Kdiag__Solo__Io__CopyChunk *in, const char *want)
{
    Kdiag__Solo__Io__CopyChunk out;
    char err[256] = "";
    int rc = copyz_unpack(z, in, &out, err, sizeof err);
    if (rc != -EPROTO)
        fail_msg("a zstd to refuse (\"%s\") gave %d", want, rc);
    if (!strstr(err, want))
        fail_msg("message \"%s\" lacks \"%s\"", err, want);
}

static void test_hostile_zstd_refused(void **state)
{
    static uint8_t big[CONTRACT_COPY_DATA_MAX + 1], frame[CONTRACT_COPY_DATA_MAX + 64];
    Kdiag__Solo__Io__CopyChunk c = KDIAG__SOLO__IO__COPY_CHUNK__INIT;
    /* beside data */
    size_t n = ZSTD_compress(frame, sizeof frame, text, 4096, 1);
    assert_false(ZSTD_isError(n));
    c.zstd.data = frame;
    c.zstd.len = n;
    c.data.data = text;
    c.data.len = 1;
    refused(*state, &c, "beside other content");
    c.data.len = 0;
    c.hole = 5;
    refused(*state, &c, "beside other content");
    c.hole = 0;
    /* trailing bytes, a second frame, a cut frame */
    frame[n] = 0;
    c.zstd.len = n + 1;
    refused(*state, &c, "not one zstd frame");
    size_t n2 = ZSTD_compress(frame + n, sizeof frame - n, text, 16, 1);
    c.zstd.len = n + n2;
    refused(*state, &c, "not one zstd frame");
    c.zstd.len = n - 3;
    refused(*state, &c, "not one zstd frame");
    /* a frame of zstd 0.7 (its magic on a frame of today's format): not decoded */
    n = ZSTD_compress(frame, sizeof frame, text, 4096, 1);
    frame[0] = 0x27;
    c.zstd.len = n;
    refused(*state, &c, "not one zstd frame");
    /* a size over the limit: a bomb for a buffer of CONTRACT_COPY_DATA_MAX */
    n = ZSTD_compress(frame, sizeof frame, big, sizeof big, 1);
    c.zstd.len = n;
    refused(*state, &c, "not one zstd frame of 1 to");
    /* no stated size, and a stated size of 0 */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
    n = ZSTD_compress2(cc, frame, sizeof frame, text, 4096);
    assert_false(ZSTD_isError(n));
    assert_int_equal(ZSTD_getFrameContentSize(frame, n), ZSTD_CONTENTSIZE_UNKNOWN);
    c.zstd.len = n;
    refused(*state, &c, "not one zstd frame of 1 to");
    n = ZSTD_compressCCtx(cc, frame, sizeof frame, text, 0, 1);
    c.zstd.len = n;
    refused(*state, &c, "not one zstd frame of 1 to");
    ZSTD_freeCCtx(cc);
    /* the stated size is a lie: the frame's blocks hold fewer bytes */
    n = ZSTD_compress(frame, sizeof frame, text, 4096, 1);
    n2 = ZSTD_compress(big, sizeof big, text, 4000, 1);
    size_t h = ZSTD_frameHeaderSize(frame, n);
    assert_int_equal(ZSTD_frameHeaderSize(big, n2), h);
    memcpy(frame + h, big + h, n2 - h); /* the header of 4096 bytes, the blocks of 4000 */
    assert_int_equal(ZSTD_getFrameContentSize(frame, n2), 4096);
    c.zstd.len = n2;
    refused(*state, &c, "does not decode");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_goes_as_zstd_and_comes_back),
        cmocka_unit_test(test_what_does_not_pay_stays_as_it_is),
        cmocka_unit_test(test_hostile_zstd_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
