/* reflection — gRPC server reflection over the embedded descriptor sets.
 *
 * The descriptor sets (FileDescriptorSet, field 1 = FileDescriptorProto) are
 * walked once with api/wire.h's reader to index file names, their
 * dependencies and the fully qualified symbols they define (messages, nested
 * messages, enums, services, methods). Answers are built with the protobuf-c
 * code of reflection_v1alpha.proto; v1 is the same on the wire. */
#include "reflection-internal.h"

#include "reflection_v1alpha.pb-c.h"
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct reflection_blob {
    const uint8_t *data;
    size_t len;
};
extern const struct reflection_blob reflection_descriptor_sets[]; /* reflection_desc.c */
extern const size_t reflection_descriptor_sets_n;

typedef struct {
    const uint8_t *p;
    size_t n;
} span;

typedef struct {
    char *name;
    span bytes; /* one serialized FileDescriptorProto */
    char **deps;
    size_t n_deps;
} ref_file;

typedef struct {
    char *name; /* fully qualified, no leading dot */
    size_t file;
    bool service;
} ref_symbol;

static struct {
    ref_file *files;
    size_t n_files;
    ref_symbol *syms;
    size_t n_syms;
    int err;
} idx;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

/* The next field of w (api/wire.h); a length-delimited value lands in *val,
 * any other leaves val->p NULL. 0 = field, 1 = end, <0 = bad. */
static int ref_next(wire *w, uint32_t *field, span *val)
{
    unsigned type;
    uint64_t v;
    wire sub = {NULL, NULL};
    int rc = wire_next(w, field, &type, &v, &sub);
    *val = (span){sub.p, (size_t)(sub.end - sub.p)};
    return rc;
}

static char *span_str(span s)
{
    return strndup((const char *)s.p, s.n);
}

/* prefix + "." + name (prefix may be empty). */
static char *qualify(const char *prefix, span name)
{
    char *out = NULL;
    if (asprintf(&out, "%s%s%.*s", prefix, *prefix ? "." : "", (int)name.n, (const char *)name.p) < 0)
        return NULL;
    return out;
}

static int add_symbol(char *name, size_t file, bool service)
{
    if (!name)
        return -ENOMEM;
    ref_symbol *s = realloc(idx.syms, (idx.n_syms + 1) * sizeof *s);
    if (!s) {
        free(name);
        return -ENOMEM;
    }
    idx.syms = s;
    idx.syms[idx.n_syms++] = (ref_symbol){name, file, service};
    return 0;
}

/* Name of a DescriptorProto / EnumDescriptorProto / ServiceDescriptorProto (field 1). */
static span msg_name(span m)
{
    wire w = {m.p, m.p + m.n};
    uint32_t f;
    span v;
    while (ref_next(&w, &f, &v) == 0)
        if (f == 1 && v.p)
            return v;
    return (span){(const uint8_t *)"", 0};
}

/* kind: 'm' message (nested 3, enums 4), 's' service (methods 2). */
static int index_decl(span m, const char *prefix, size_t file, char kind)
{
    char *fq = qualify(prefix, msg_name(m));
    if (!fq)
        return -ENOMEM;
    int rc = 0;
    wire w = {m.p, m.p + m.n};
    uint32_t f;
    span v;
    while (rc == 0 && (rc = ref_next(&w, &f, &v)) == 0) {
        if (!v.p)
            continue;
        if (kind == 'm' && f == 3)
            rc = index_decl(v, fq, file, 'm');
        else if (kind == 'm' && f == 4)
            rc = add_symbol(qualify(fq, msg_name(v)), file, false);
        else if (kind == 's' && f == 2)
            rc = add_symbol(qualify(fq, msg_name(v)), file, false);
    }
    if (rc < 0) {
        free(fq);
        return rc;
    }
    return add_symbol(fq, file, kind == 's');
}

static int index_file(span fdp)
{
    ref_file *files = realloc(idx.files, (idx.n_files + 1) * sizeof *files);
    if (!files)
        return -ENOMEM;
    idx.files = files;
    size_t fi = idx.n_files++;
    ref_file *rf = &idx.files[fi];
    memset(rf, 0, sizeof *rf);
    rf->bytes = fdp;
    char *pkg = strdup("");
    int rc = pkg ? 0 : -ENOMEM;
    wire w = {fdp.p, fdp.p + fdp.n};
    uint32_t f;
    span v;
    /* the package comes before the declarations in protoc's output, but do
     * not rely on it: read it first */
    while (rc == 0 && (rc = ref_next(&w, &f, &v)) == 0)
        if (f == 2 && v.p) {
            free(pkg);
            rc = (pkg = span_str(v)) ? 0 : -ENOMEM;
        }
    w.p = fdp.p;
    while (rc >= 0 && (rc = ref_next(&w, &f, &v)) == 0) {
        if (!v.p)
            continue;
        if (f == 1) {
            free(rf->name);
            rc = (rf->name = span_str(v)) ? 0 : -ENOMEM;
        } else if (f == 3) {
            char **d = realloc(rf->deps, (rf->n_deps + 1) * sizeof *d);
            if (!d || !(d[rf->n_deps] = span_str(v)))
                rc = -ENOMEM;
            if (d)
                rf->deps = d;
            if (rc == 0)
                rf->n_deps++;
        } else if (f == 4 || f == 6) {
            rc = index_decl(v, pkg, fi, f == 4 ? 'm' : 's');
        } else if (f == 5) {
            rc = add_symbol(qualify(pkg, msg_name(v)), fi, false);
        }
    }
    free(pkg);
    if (rc == 0 && !rf->name)
        rc = -EBADMSG;
    return rc < 0 ? rc : 0;
}

static void index_build(void)
{
    for (size_t i = 0; i < reflection_descriptor_sets_n && !idx.err; i++) {
        const struct reflection_blob *b = &reflection_descriptor_sets[i];
        wire w = {b->data, b->data + b->len};
        uint32_t f;
        span v;
        int rc;
        while ((rc = ref_next(&w, &f, &v)) == 0)
            if (f == 1 && v.p && (rc = index_file(v)) < 0)
                break;
        if (rc < 0)
            idx.err = rc;
    }
}

/* ---- answers ---- */

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest ref_req;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse ref_resp;

static ssize_t find_file(const char *name)
{
    for (size_t i = 0; i < idx.n_files; i++)
        if (!strcmp(idx.files[i].name, name))
            return (ssize_t)i;
    return -1;
}

/* file and its dependencies, each once (the protocol allows sending them
 * along so the client needs no second round trip). */
static void collect(size_t fi, bool *seen, ProtobufCBinaryData *out, size_t *n)
{
    if (seen[fi])
        return;
    seen[fi] = true;
    out[(*n)++] = (ProtobufCBinaryData){idx.files[fi].bytes.n, (uint8_t *)idx.files[fi].bytes.p};
    for (size_t d = 0; d < idx.files[fi].n_deps; d++) {
        ssize_t di = find_file(idx.files[fi].deps[d]);
        if (di >= 0)
            collect((size_t)di, seen, out, n);
    }
}

static ssize_t file_of_symbol(const char *sym)
{
    if (sym[0] == '.')
        sym++;
    for (size_t i = 0; i < idx.n_syms; i++)
        if (!strcmp(idx.syms[i].name, sym))
            return (ssize_t)idx.syms[i].file;
    return -1;
}

int reflection_answer(const uint8_t *req_buf, size_t len, uint8_t **out, size_t *out_len)
{
    pthread_once(&idx_once, index_build);
    if (idx.err)
        return idx.err;
    ref_req *req = grpc__reflection__v1alpha__server_reflection_request__unpack(NULL, len, req_buf);
    if (!req)
        return -EBADMSG;

    ref_resp resp = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__FileDescriptorResponse fdr = GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ListServiceResponse lsr = GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ExtensionNumberResponse enr = GRPC__REFLECTION__V1ALPHA__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ErrorResponse er = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ServiceResponse *svcs = calloc(idx.n_syms + 1, sizeof *svcs);
    Grpc__Reflection__V1alpha__ServiceResponse **svcp = calloc(idx.n_syms + 1, sizeof *svcp);
    ProtobufCBinaryData *fds = calloc(idx.n_files + 1, sizeof *fds);
    bool *seen = calloc(idx.n_files + 1, sizeof *seen);
    char errmsg[300];
    int rc = -ENOMEM;
    if (!svcs || !svcp || !fds || !seen)
        goto out;
    resp.valid_host = req->host;
    resp.original_request = req;

    ssize_t fi = -1;
    const char *what = NULL;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        for (size_t i = 0; i < idx.n_syms; i++) {
            if (!idx.syms[i].service)
                continue;
            grpc__reflection__v1alpha__service_response__init(&svcs[lsr.n_service]);
            svcs[lsr.n_service].name = idx.syms[i].name;
            svcp[lsr.n_service] = &svcs[lsr.n_service];
            lsr.n_service++;
        }
        lsr.service = svcp;
        resp.message_response_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &lsr;
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        fi = find_file(req->file_by_filename);
        what = req->file_by_filename;
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        fi = file_of_symbol(req->file_containing_symbol);
        what = req->file_containing_symbol;
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        /* proto3 files here declare no extensions: a known type has none */
        if (file_of_symbol(req->all_extension_numbers_of_type) >= 0) {
            enr.base_type_name = req->all_extension_numbers_of_type;
            resp.message_response_case =
                GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
            resp.all_extension_numbers_response = &enr;
        } else {
            what = req->all_extension_numbers_of_type;
        }
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        what = "extension";
        break;
    default:
        snprintf(errmsg, sizeof errmsg,
                 "empty reflection request: set one of list_services, "
                 "file_by_filename, file_containing_symbol");
        er.error_code = GRPC_STATUS_INVALID_ARGUMENT;
        er.error_message = errmsg;
        resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &er;
        break;
    }
    if (fi >= 0) {
        collect((size_t)fi, seen, fds, &fdr.n_file_descriptor_proto);
        fdr.file_descriptor_proto = fds;
        resp.message_response_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        resp.file_descriptor_response = &fdr;
    } else if (what) {
        snprintf(errmsg, sizeof errmsg, "%.200s not found", what);
        er.error_code = GRPC_STATUS_NOT_FOUND;
        er.error_message = errmsg;
        resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &er;
    }

    *out_len = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&resp);
    *out = malloc(*out_len ? *out_len : 1);
    if (*out) {
        grpc__reflection__v1alpha__server_reflection_response__pack(&resp, *out);
        rc = 0;
    }
out:
    free(svcs);
    free(svcp);
    free(fds);
    free(seen);
    grpc__reflection__v1alpha__server_reflection_request__free_unpacked(req, NULL);
    return rc;
}

/* The stream handler of both reflection services (ud unused). */
static grpc_status_code reflection_rpc_handle(rpc_call *call, void *ud)
{
    (void)ud;
    for (;;) {
        uint8_t *req = NULL, *resp = NULL;
        size_t len = 0, resp_len = 0;
        int rc = rpc_call_recv(call, &req, &len);
        if (rc == -ENODATA)
            return GRPC_STATUS_OK;
        if (rc == -ECANCELED)
            return GRPC_STATUS_CANCELLED;
        if (rc < 0) {
            rpc_call_set_message(call, "reading reflection request: %s", strerror(-rc));
            return rc == -EMSGSIZE ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL;
        }
        rc = reflection_answer(req, len, &resp, &resp_len);
        free(req);
        if (rc == -EBADMSG) {
            rpc_call_set_message(call, "reflection request is not a valid ServerReflectionRequest");
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
        if (rc < 0) {
            rpc_call_set_message(call, "answering reflection request: %s", strerror(-rc));
            return GRPC_STATUS_INTERNAL;
        }
        rc = rpc_call_send(call, resp, resp_len);
        free(resp);
        if (rc < 0)
            return GRPC_STATUS_CANCELLED;
    }
}

int reflection_register(rpc_server *s)
{
    int rc = rpc_server_add(s, REFLECTION_V1ALPHA_METHOD, RPC_BIDI_STREAM, reflection_rpc_handle, NULL);
    if (rc == 0)
        rc = rpc_server_add(s, REFLECTION_V1_METHOD, RPC_BIDI_STREAM, reflection_rpc_handle, NULL);
    return rc;
}
