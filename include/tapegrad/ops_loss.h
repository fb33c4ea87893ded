/*
 * tapegrad/ops_loss.h - losses with mean / sum / none reduction.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/losses.c.
 */
#ifndef TAPEGRAD_OPS_LOSS_H
#define TAPEGRAD_OPS_LOSS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_LOSS(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_LOSS_H */
