/*
 * iter.h - strided N-d elementwise iteration with broadcasting.
 *
 * tg__ew_apply() walks the shape of t[0] (the output) and hands each
 * kernel call one run along the innermost dimension: pointers to the first
 * element of every operand and their byte strides along the run (0 for a
 * broadcast operand). Dimensions that are contiguous for every operand are
 * merged first, so a contiguous op is one long run per thread. Large
 * tensors are split over the context's threads by element ranges; a
 * kernel writes only its own output elements, so results do not depend on
 * the split. Library-internal.
 */
#ifndef TG_ITER_H
#define TG_ITER_H

#include "tensor_impl.h"

#define TG__MAX_OPERANDS 4
#define TG__PAR_GRAIN 32768 /* elements per thread below which we stay serial */

typedef void (*tg__ew_kernel)(int64_t n, char **p, const int64_t *s, void *aux);

/* Applies k over t[0]'s shape; t[1..nt-1] must broadcast to it (callers
 * have checked). 1 <= nt <= TG__MAX_OPERANDS. */
void tg__ew_apply(tg_ctx *c, int nt, tg_tensor *const *t, tg__ew_kernel k, void *aux);

/* The NumPy broadcast of two shapes into out (ndim returned through
 * out_ndim); false when they do not broadcast. */
bool tg__broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *out_ndim,
                         int64_t *out);

#endif /* TG_ITER_H */
