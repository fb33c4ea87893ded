/*
 * tapegrad/ops_reduce.h - reductions beyond sum and mean: max/min, argmax/argmin, prod, var/std, logsumexp, norm.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/select.c (max/min/arg*), src/ops/stats.c (prod, var, std, logsumexp, norm).
 */
#ifndef TAPEGRAD_OPS_REDUCE_H
#define TAPEGRAD_OPS_REDUCE_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_REDUCE(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_REDUCE_H */
