/* test_reflection — reflection_answer on the embedded descriptors, and the
 * ServerReflectionInfo stream (v1alpha and v1) over a real server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reflection-internal.h"
#include "reflection_v1alpha.pb-c.h"
#include "rpc.h"
#include "wire.h"

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest req_t;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse resp_t;

#define CASE(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RCASE(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

static uint8_t *pack_req(int which, const char *arg, size_t *len)
{
    req_t r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    r.host = (char *)"localhost";
    r.message_request_case = which;
    switch (which) {
    case CASE(FILE_BY_FILENAME): r.file_by_filename = (char *)arg; break;
    case CASE(FILE_CONTAINING_SYMBOL): r.file_containing_symbol = (char *)arg; break;
    case CASE(ALL_EXTENSION_NUMBERS_OF_TYPE): r.all_extension_numbers_of_type = (char *)arg; break;
    case CASE(LIST_SERVICES): r.list_services = (char *)arg; break;
    default: break;
    }
    *len = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&r);
    uint8_t *b = malloc(*len + 1);
    grpc__reflection__v1alpha__server_reflection_request__pack(&r, b);
    return b;
}

static resp_t *ask(int which, const char *arg)
{
    size_t len, rlen;
    uint8_t *req = pack_req(which, arg, &len), *resp = NULL;
    assert_int_equal(reflection_answer(req, len, &resp, &rlen), 0);
    free(req);
    resp_t *r = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, rlen, resp);
    free(resp);
    assert_non_null(r);
    assert_string_equal(r->valid_host, "localhost");
    assert_non_null(r->original_request);
    assert_int_equal(r->original_request->message_request_case, which);
    return r;
}

static void expect_kdiag_file(resp_t *r)
{
    assert_int_equal(r->message_response_case, RCASE(FILE_DESCRIPTOR_RESPONSE));
    assert_true(r->file_descriptor_response->n_file_descriptor_proto >= 1);
    ProtobufCBinaryData *d = &r->file_descriptor_response->file_descriptor_proto[0];
    const char *why = wire_check_kdiag_file((wspan){d->data, d->len});
    if (why)
        fail_msg("kdiag.proto descriptor: %s", why);
}

static void expect_error(resp_t *r, int code)
{
    assert_int_equal(r->message_response_case, RCASE(ERROR_RESPONSE));
    assert_int_equal(r->error_response->error_code, code);
    assert_true(strlen(r->error_response->error_message) > 0);
}

static void test_list_services(void **state)
{
    (void)state;
    resp_t *r = ask(CASE(LIST_SERVICES), "*");
    assert_int_equal(r->message_response_case, RCASE(LIST_SERVICES_RESPONSE));
    const char *want[] = {"kdiag.solo.io.Manager", "grpc.reflection.v1alpha.ServerReflection",
                          "grpc.reflection.v1.ServerReflection"};
    assert_int_equal(r->list_services_response->n_service, 3);
    for (int i = 0; i < 3; i++) {
        bool found = false;
        for (size_t k = 0; k < r->list_services_response->n_service; k++)
            found |= !strcmp(r->list_services_response->service[k]->name, want[i]);
        assert_true(found);
    }
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

static void test_file_containing_symbol(void **state)
{
    (void)state;
    const char *syms[] = {"kdiag.solo.io.Manager",   "kdiag.solo.io.Manager.Ps",
                          "kdiag.solo.io.PsRequest", ".kdiag.solo.io.ProcessInfo",
                          "kdiag.solo.io.Address",   "kdiag.solo.io.Manager.Redirect"};
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        resp_t *r = ask(CASE(FILE_CONTAINING_SYMBOL), syms[i]);
        expect_kdiag_file(r);
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    }
    resp_t *r = ask(CASE(FILE_CONTAINING_SYMBOL), "grpc.reflection.v1.ServerReflection");
    assert_int_equal(r->message_response_case, RCASE(FILE_DESCRIPTOR_RESPONSE));
    ProtobufCBinaryData *d = &r->file_descriptor_response->file_descriptor_proto[0];
    wspan name;
    assert_int_equal(wire_bytes((wspan){d->data, d->len}, 1, 0, &name), 0);
    assert_true(wire_eq(name, "reflection_v1.proto"));
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

    const char *missing[] = {"kdiag.solo.io.Nope", "kdiag.solo.io", "Manager", "", "kdiag.solo.io.Manager.Ps.X"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        r = ask(CASE(FILE_CONTAINING_SYMBOL), missing[i]);
        expect_error(r, GRPC_STATUS_NOT_FOUND);
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    }
}

static void test_file_by_filename(void **state)
{
    (void)state;
    resp_t *r = ask(CASE(FILE_BY_FILENAME), "kdiag.proto");
    expect_kdiag_file(r);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    r = ask(CASE(FILE_BY_FILENAME), "nope.proto");
    expect_error(r, GRPC_STATUS_NOT_FOUND);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

static void test_extensions_and_bad_requests(void **state)
{
    (void)state;
    resp_t *r = ask(CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), "kdiag.solo.io.PsRequest");
    assert_int_equal(r->message_response_case, RCASE(ALL_EXTENSION_NUMBERS_RESPONSE));
    assert_string_equal(r->all_extension_numbers_response->base_type_name, "kdiag.solo.io.PsRequest");
    assert_int_equal(r->all_extension_numbers_response->n_extension_number, 0);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    r = ask(CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), "x.Y");
    expect_error(r, GRPC_STATUS_NOT_FOUND);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    r = ask(CASE(_NOT_SET), NULL);
    expect_error(r, GRPC_STATUS_INVALID_ARGUMENT);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x22, 0x99};
    uint8_t *resp = NULL;
    size_t rlen;
    assert_int_equal(reflection_answer(garbage, sizeof garbage, &resp, &rlen), -EBADMSG);
    assert_null(resp);
}

/* Both versions over a real server, several requests on one stream. */
static void test_over_grpc(void **state)
{
    (void)state;
    rpc_server_opts o = {.bind = "127.0.0.1:0", .token = "tok"};
    rpc_server *s;
    assert_int_equal(rpc_server_new(&s, &o), 0);
    assert_int_equal(reflection_register(s), 0);
    int port;
    assert_int_equal(rpc_server_start(s, &port), 0);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    rpc_client *cl;
    assert_int_equal(rpc_client_new(&cl, target, "tok"), 0);
    const char *methods[] = {REFLECTION_V1ALPHA_METHOD, REFLECTION_V1_METHOD};
    for (int m = 0; m < 2; m++) {
        rpc_stream *st;
        assert_int_equal(rpc_client_bidi_open(&st, cl, methods[m], 10000), 0);
        for (int i = 0; i < 3; i++) {
            size_t len;
            uint8_t *req = i == 1 ? pack_req(CASE(FILE_CONTAINING_SYMBOL), "kdiag.solo.io.Manager", &len)
                                  : pack_req(CASE(LIST_SERVICES), "", &len);
            assert_int_equal(rpc_stream_write(st, req, len), 0);
            free(req);
            uint8_t *buf;
            size_t blen;
            rpc_status status;
            assert_int_equal(rpc_stream_read(st, &buf, &blen, &status), 0);
            resp_t *r = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, blen, buf);
            free(buf);
            assert_non_null(r);
            if (i == 1)
                expect_kdiag_file(r);
            else
                assert_int_equal(r->message_response_case, RCASE(LIST_SERVICES_RESPONSE));
            grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
        }
        /* garbage ends the stream with INVALID_ARGUMENT */
        assert_int_equal(rpc_stream_write(st, (const uint8_t *)"\xff\xff\xff", 3), 0);
        uint8_t *buf;
        size_t blen;
        rpc_status status;
        assert_int_equal(rpc_stream_read(st, &buf, &blen, &status), 1);
        assert_int_equal(status.code, GRPC_STATUS_INVALID_ARGUMENT);
        rpc_stream_free(st);
    }
    rpc_client_free(cl);
    rpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_services),    cmocka_unit_test(test_file_containing_symbol),
        cmocka_unit_test(test_file_by_filename), cmocka_unit_test(test_extensions_and_bad_requests),
        cmocka_unit_test(test_over_grpc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
