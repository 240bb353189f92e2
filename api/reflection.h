/* reflection — gRPC server reflection (grpc.reflection.v1alpha and v1) over
 * the descriptor sets embedded at build time (kdiag.proto and the reflection
 * protos themselves), so generic clients (grpcurl, grpc-js) can list and call
 * the Manager service without a copy of kdiag.proto. */
#ifndef KDIAG_REFLECTION_H
#define KDIAG_REFLECTION_H

#include "rpc_server.h"

#define REFLECTION_V1ALPHA_METHOD "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
#define REFLECTION_V1_METHOD "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"

/* Registers both versions' ServerReflectionInfo (bidi streams) on s. */
int reflection_register(rpc_server *s);

#endif
