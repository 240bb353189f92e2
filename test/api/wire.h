/* wire — a test-side protobuf wire reader, to check serialized messages
 * (FileDescriptorProto from reflection) without generated code for them. */
#ifndef KDIAG_TEST_WIRE_H
#define KDIAG_TEST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *p;
    size_t n;
} wspan;

/* The nth (0-based) occurrence of field as length-delimited bytes; 0 or -1. */
int wire_bytes(wspan msg, uint32_t field, int nth, wspan *out);
bool wire_eq(wspan s, const char *str);



/* Checks a serialized FileDescriptorProto is kdiag.proto: name, package,
 * service Manager with Redirect (server streaming), Ps, Pprof, HalfClose and their
 * request/response types. NULL when it is, else what is wrong. */
const char *wire_check_kdiag_file(wspan fdp);
#endif
