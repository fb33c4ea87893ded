/*
 * tapegrad/ops_conv.h - linear layers, convolution and pooling: outer, linear, conv1d/conv2d, max/avg pooling.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/linear.c, src/ops/conv.c, src/ops/pool.c.
 */
#ifndef TAPEGRAD_OPS_CONV_H
#define TAPEGRAD_OPS_CONV_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_CONV(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_CONV_H */
