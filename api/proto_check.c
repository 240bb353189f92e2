/* proto_check — see proto_check.h. */
#include "proto_check.h"

#include <string.h>

/* A varint at *p (advanced); false when it runs past end or over 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 70; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

bool proto_has_nul_string(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag))
            return false;
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &v))
                return false;
            break;
        case 1:
        case 5: {
            size_t n = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < n)
                return false;
            p += n;
            break;
        }
        case 2: {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t)v))
                return true;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && proto_has_nul_string(f->descriptor, p, (size_t)v))
                return true;
            p += v;
            break;
        }
        default: return false; /* groups: not in proto3, unpacking refuses them */
        }
    }
    return false;
}
