/* fuzz_capture — libFuzzer target for the capture client's batch decoder
 * (api/capture_client.c), fed what a manager could stream. Properties beyond
 * "no crash, no leak, no UB": what is written is whole pcap records, as many
 * as counted, as many bytes as counted; a message refused writes nothing.
 * The same for pcapng: whole blocks, each packet on an interface already
 * described. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture_client-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The batch written as pcapng after the section header, for interfaces 0 and 1. */
static void fuzz_pcapng(int fd, uint8_t *out, size_t cap, const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        abort();
    capture_pcapng *w;
    if (capture_pcapng_new(&w, fd) < 0)
        abort();
    capture_client c = {.ng_id = {0, 1}, .ng_other = UINT32_MAX, .ng_name = (char *)"pod/fuzz"};
    capture_client_stats s = {.ready = true, .nifaces = 2, .ifaces = {{.index = 1}, {.index = 2}}};
    c.ng = w;
    int rc = capture_client_batch(&c, fd, data, size, &s);
    free(c.buf);
    capture_pcapng_free(w);
    ssize_t n = pread(fd, out, cap, 0);
    if (n < 28 || (rc < 0 && n != 28) || (uint64_t)n != 28 + s.bytes)
        abort();
    uint64_t packets = 0;
    bool other = false;
    for (ssize_t off = 28; off < n;) {
        uint32_t type, len, id;
        if (n - off < 12)
            abort();
        memcpy(&type, out + off, 4);
        memcpy(&len, out + off + 4, 4);
        if (len < 12 || len % 4 || len > n - off || memcmp(out + off + 4, out + off + len - 4, 4))
            abort();
        memcpy(&id, out + off + 8, 4);
        other |= type == 1;
        if (type == 6 && (packets++, id > 1 && !other))
            abort();
        off += len;
    }
    if (packets != s.packets)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static uint8_t out[1 << 20];
    if (fd < 0 && (fd = memfd_create("fuzz_capture", MFD_CLOEXEC)) < 0)
        abort();
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        abort();
    capture_client c = {0};
    capture_client_stats s = {.ready = true, .nifaces = 2, .ifaces = {{.index = 1}, {.index = 2}}};
    int rc = capture_client_batch(&c, fd, data, size, &s);
    free(c.buf);
    ssize_t n = pread(fd, out, sizeof out, 0);
    if (n < 0 || (rc < 0 && n != 0) || (uint64_t)n != s.bytes)
        abort();
    uint64_t records = 0, per_iface = s.ifaces[0].packets + s.ifaces[1].packets;
    for (ssize_t off = 0; off < n; records++) {
        uint32_t caplen, len;
        if (n - off < 16)
            abort();
        memcpy(&caplen, out + off + 8, 4);
        memcpy(&len, out + off + 12, 4);
        if (len < caplen || (uint64_t)(n - off - 16) < caplen)
            abort();
        off += 16 + (ssize_t)caplen;
    }
    if (records != s.packets || per_iface > records)
        abort();
    fuzz_pcapng(fd, out, sizeof out, data, size);
    return 0;
}
