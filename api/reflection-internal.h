/* reflection internals: one request answered without a server, for the unit
 * tests and the fuzzer. */
#ifndef KDIAG_REFLECTION_INTERNAL_H
#define KDIAG_REFLECTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "reflection.h"

/* Answers one serialized ServerReflectionRequest with a serialized
 * ServerReflectionResponse (*resp malloc'd). -EBADMSG when req does not
 * decode; unknown symbols and files are answered with an error_response. */
int reflection_answer(const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len);

#endif
