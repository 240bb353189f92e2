/* proto_check — see proto_check.h. */
#include "proto_check.h"

#include <string.h>

#include "wire.h"

bool proto_has_nul_string(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
    wire w = {buf, buf + len}, val;
    uint32_t num;
    unsigned type;
    uint64_t v;
    while (wire_next(&w, &num, &type, &v, &val) == 0) { /* bad bytes end it: unpacking refuses them */
        if (type != WIRE_LEN)
            continue;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, num);
        if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(val.p, 0, (size_t)v))
            return true;
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && proto_has_nul_string(f->descriptor, val.p, (size_t)v))
            return true;
    }
    return false;
}
