/* proto_check — what protobuf-c does not check when it unpacks a message.
 *
 * protobuf-c hands a string field over as a NUL-terminated char *, so a
 * string with a NUL byte inside ("/etc/passwd\0x") arrives cut at the NUL:
 * a path, argv or filter that silently names something else than what the
 * peer sent. Handlers refuse such requests instead (INVALID_ARGUMENT). */
#ifndef KDIAG_PROTO_CHECK_H
#define KDIAG_PROTO_CHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when the serialized message buf (of type d) has a string field, at any
 * depth of nested messages, that holds a NUL byte. Bytes that are not valid
 * protobuf give false: unpacking refuses them anyway. */
bool proto_has_nul_string(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len);

#endif
