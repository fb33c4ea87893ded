/*
 * tapegrad/ops_index.h - shape and indexing: concat, stack, split, squeeze, unsqueeze, flatten, pad, index_select, gather, scatter_add, one_hot.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/join.c, src/ops/index.c.
 */
#ifndef TAPEGRAD_OPS_INDEX_H
#define TAPEGRAD_OPS_INDEX_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_INDEX(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_INDEX_H */
