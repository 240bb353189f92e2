#include "wire.h"

#include <string.h>

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* Walks msg; calls back per field. Returns -1 on malformed input. */
static int walk(wspan msg, uint32_t want, int nth, int *count, wspan *bytes, uint64_t *num)
{
    const uint8_t *p = msg.p, *end = msg.p + msg.n;
    *count = 0;
    while (p < end) {
        uint64_t key, v = 0;
        if (!varint(&p, end, &key))
            return -1;
        wspan b = {NULL, 0};
        switch (key & 7) {
        case 0:
            if (!varint(&p, end, &v))
                return -1;
            break;
        case 1:
            if (end - p < 8)
                return -1;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return -1;
            p += 4;
            break;
        case 2:
            if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
                return -1;
            b.p = p;
            b.n = v;
            p += v;
            break;
        default: return -1;
        }
        if ((uint32_t)(key >> 3) != want)
            continue;
        if (*count == nth) {
            if (bytes)
                *bytes = b;
            if (num)
                *num = v;
        }
        (*count)++;
    }
    return 0;
}

int wire_bytes(wspan msg, uint32_t field, int nth, wspan *out)
{
    int count;
    out->p = NULL;
    if (walk(msg, field, nth, &count, out, NULL) < 0 || count <= nth || !out->p)
        return -1;
    return 0;
}

/* The nth occurrence of field as a varint; 0 or -1. */
static int wire_varint_field(wspan msg, uint32_t field, int nth, uint64_t *out)
{
    int count;
    if (walk(msg, field, nth, &count, NULL, out) < 0 || count <= nth)
        return -1;
    return 0;
}

/* How many times field occurs; -1 when msg is not valid protobuf. */
static int wire_count(wspan msg, uint32_t field)
{
    int count;
    return walk(msg, field, -1, &count, NULL, NULL) < 0 ? -1 : count;
}

bool wire_eq(wspan s, const char *str)
{
    return s.p && s.n == strlen(str) && !memcmp(s.p, str, s.n);
}

/* FileDescriptorProto: name 1, package 2, message_type 4, service 6.
 * ServiceDescriptorProto: name 1, method 2. MethodDescriptorProto: name 1,
 * input_type 2, output_type 3, client_streaming 5, server_streaming 6. */
const char *wire_check_kdiag_file(wspan fdp)
{
    wspan v, svc, m;
    if (wire_count(fdp, 1) < 0)
        return "not valid protobuf";
    if (wire_bytes(fdp, 1, 0, &v) < 0 || !wire_eq(v, "kdiag.proto"))
        return "name is not kdiag.proto";
    if (wire_bytes(fdp, 2, 0, &v) < 0 || !wire_eq(v, "kdiag.solo.io"))
        return "package is not kdiag.solo.io";
    if (wire_bytes(fdp, 6, 0, &svc) < 0 || wire_bytes(svc, 1, 0, &v) < 0 || !wire_eq(v, "Manager"))
        return "no service Manager";
    static const struct {
        const char *name, *in, *out;
        bool sstream, cstream;
    } want[] = {
        {"Redirect", ".kdiag.solo.io.RedirectRequest", ".kdiag.solo.io.RedirectResponse", true, false},
        {"Ps", ".kdiag.solo.io.PsRequest", ".kdiag.solo.io.PsResponse", false, false},
        {"Pprof", ".kdiag.solo.io.PprofRequest", ".kdiag.solo.io.PprofResponse", false, false},
        {"HalfClose", ".kdiag.solo.io.HalfCloseRequest", ".kdiag.solo.io.HalfCloseResponse", false, false},
        {"Capture", ".kdiag.solo.io.CaptureRequest", ".kdiag.solo.io.CaptureResponse", true, false},
        {"CopyFrom", ".kdiag.solo.io.CopyFromRequest", ".kdiag.solo.io.CopyChunk", true, false},
        {"CopyTo", ".kdiag.solo.io.CopyToRequest", ".kdiag.solo.io.CopyToResponse", true, true},
        {"Exec", ".kdiag.solo.io.ExecRequest", ".kdiag.solo.io.ExecResponse", true, true},
        {"Hello", ".kdiag.solo.io.HelloRequest", ".kdiag.solo.io.HelloResponse", false, false},
    };
    enum { N_METHODS = sizeof want / sizeof *want };
    if (wire_count(svc, 2) != N_METHODS)
        return "Manager does not have the methods listed here";
    for (int i = 0; i < N_METHODS; i++) {
        uint64_t ss = 0, cs = 0;
        if (wire_bytes(svc, 2, i, &m) < 0 || wire_bytes(m, 1, 0, &v) < 0 || !wire_eq(v, want[i].name))
            return "method names differ";
        if (wire_bytes(m, 2, 0, &v) < 0 || !wire_eq(v, want[i].in))
            return "input type differs";
        if (wire_bytes(m, 3, 0, &v) < 0 || !wire_eq(v, want[i].out))
            return "output type differs";
        wire_varint_field(m, 6, 0, &ss);
        if ((ss != 0) != want[i].sstream)
            return "server_streaming differs";
        wire_varint_field(m, 5, 0, &cs);
        if ((cs != 0) != want[i].cstream)
            return "client_streaming differs";
    }
    int n_msgs = wire_count(fdp, 4);
    bool ps_response = false;
    for (int i = 0; i < n_msgs; i++)
        if (wire_bytes(fdp, 4, i, &m) == 0 && wire_bytes(m, 1, 0, &v) == 0 && wire_eq(v, "PsResponse"))
            ps_response = true;
    return ps_response ? NULL : "no message PsResponse";
}
