/*
 * tapegrad/ops_math.h - elementwise math and activations.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/math.c (elementwise), src/ops/activation.c (activations).
 */
#ifndef TAPEGRAD_OPS_MATH_H
#define TAPEGRAD_OPS_MATH_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_MATH(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_MATH_H */
