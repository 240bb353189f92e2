/* ps_rpc-internal — test seam of manager/ps_rpc.c: the response encoder
 * without a call around it. */
#ifndef KDIAG_PS_RPC_INTERNAL_H
#define KDIAG_PS_RPC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ps_rpc.h"

/* Serializes l as a kdiag.solo.io.PsResponse; *buf is malloc'd. */
int ps_rpc_encode(const ps_list *l, uint8_t **buf, size_t *len);

#endif
