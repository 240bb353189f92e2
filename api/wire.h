/* wire — a cursor over serialized protobuf bytes, for the few places that read
 * the wire without protobuf-c's unpack: the reflection index (descriptor
 * sets), the capture client (packets go straight into pcap records, no copy
 * per packet) and proto_check (NUL bytes in strings). Every length is checked
 * against the end; nothing is allocated. */
#ifndef KDIAG_WIRE_H
#define KDIAG_WIRE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *p, *end;
} wire;

/* Wire types (the low three bits of a tag). */
#define WIRE_VARINT 0u
#define WIRE_FIXED64 1u
#define WIRE_LEN 2u
#define WIRE_FIXED32 5u

/* Reads a varint (at most 10 bytes) at w->p into *v. False when it runs past
 * the end or over 10 bytes. */
static inline bool wire_varint(wire *w, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && w->p < w->end; shift += 7) {
        uint8_t b = *w->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* The next field of w: its number and wire type; a varint's value in *v; a
 * length-delimited value in *val (its length in *v); fixed-width values are
 * skipped. *val is untouched unless the type is WIRE_LEN. 0, 1 at the end of
 * w, -EBADMSG for bytes that are not protobuf (groups included: proto3 has
 * none). */
static inline int wire_next(wire *w, uint32_t *num, unsigned *type, uint64_t *v, wire *val)
{
    uint64_t tag;
    if (w->p >= w->end)
        return 1;
    if (!wire_varint(w, &tag))
        return -EBADMSG;
    *num = (uint32_t)(tag >> 3);
    *type = (unsigned)(tag & 7);
    size_t left = (size_t)(w->end - w->p);
    switch (*type) {
    case WIRE_VARINT: return wire_varint(w, v) ? 0 : -EBADMSG;
    case WIRE_FIXED64: return left >= 8 ? (w->p += 8, 0) : -EBADMSG;
    case WIRE_FIXED32: return left >= 4 ? (w->p += 4, 0) : -EBADMSG;
    case WIRE_LEN:
        if (!wire_varint(w, v) || *v > (uint64_t)(w->end - w->p))
            return -EBADMSG;
        val->p = w->p;
        val->end = w->p + *v;
        w->p += *v;
        return 0;
    default: return -EBADMSG;
    }
}

#endif
