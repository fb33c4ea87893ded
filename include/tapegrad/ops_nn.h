/*
 * tapegrad/ops_nn.h - normalisation, dropout, embedding and attention.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/norm.c, src/ops/nn.c.
 */
#ifndef TAPEGRAD_OPS_NN_H
#define TAPEGRAD_OPS_NN_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_NN(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_NN_H */
