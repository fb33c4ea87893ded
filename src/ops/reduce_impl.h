/*
 * reduce_impl.h - what the reduction families share (src/ops/reduce.c,
 * select.c, stats.c): axis lists as bitmasks, the kept/reduced view of an
 * input, spreading an output gradient back over the reduced axes, and a
 * deterministic fold (sum, product, max, min, arg-max, arg-min) over the
 * reduced axes. Library-internal.
 */
#ifndef TG_REDUCE_IMPL_H
#define TG_REDUCE_IMPL_H

#include "ops_impl.h"

/* ---- axes ----------------------------------------------------------------- */

/* Validates naxes/axes against x (negative axes count from the end, each
 * at most once, a 0-d tensor may name 0 or -1) and returns the bitmask of
 * reduced axes (bit d for axis d) through mask; all: every axis. False with
 * TG_ERR_INVALID naming fn otherwise. */
bool tg__axes_mask(tg_ctx *c, const char *fn, const tg_tensor *x, int naxes, const int *axes,
                   bool all, uint32_t *mask);

/* Shape of the result of reducing x over mask: the kept dims, and the
 * reduced ones as 1 when keepdim. Returns the number of dims. */
int tg__reduced_shape(const tg_tensor *x, uint32_t mask, bool keepdim, int64_t *shape);

/* g has the reduced shape (keepdim or not); returns it reshaped to the
 * keepdim form and expanded to x's shape (a view, recorded when g requires
 * grad, so backward rules stay differentiable). */
tg_tensor *tg__red_spread(tg_ctx *c, const tg_tensor *x, uint32_t mask, bool keepdim, tg_tensor *g);

/* ---- the kept / reduced view of an input ------------------------------------ */

/* Appends a dim to a list, merging it into the previous one when the two
 * step through memory as one (keeps row-major order of the list). */
static inline void tg__red_push_dim(int *n, int64_t *sz, int64_t *st, int64_t size, int64_t stride)
{
    if (*n > 0 && st[*n - 1] == stride * size) {
        sz[*n - 1] *= size;
        st[*n - 1] = stride;
        return;
    }
    sz[*n] = size;
    st[*n] = stride;
    (*n)++;
}

/* Offset (elements) of row-major index i over (sz, st); fills idx. */
static inline int64_t tg__red_unravel(int n, const int64_t *sz, const int64_t *st, int64_t i,
                                      int64_t *idx)
{
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        idx[d] = i % sz[d];
        i /= sz[d];
        off += idx[d] * st[d];
    }
    return off;
}

/* Advances a row-major index over (sz, st) past its innermost position
 * (idx[n-1] already equal to sz[n-1]) and fixes off. */
static inline void tg__red_carry(int n, const int64_t *sz, const int64_t *st, int64_t *idx,
                                 int64_t *off)
{
    for (int d = n - 1; d > 0 && idx[d] == sz[d]; d--) {
        *off -= idx[d] * st[d];
        idx[d] = 0;
        idx[d - 1]++;
        *off += st[d - 1];
    }
}

/* ---- the fold (src/ops/stats.c) ------------------------------------------------ */

typedef enum {
    TG__FOLD_SUM,    /* sum of t(x), in double */
    TG__FOLD_PROD,   /* product of t(x), in double */
    TG__FOLD_MAX,    /* largest t(x); a NaN wins (the result is NaN) */
    TG__FOLD_MIN,    /* smallest t(x); a NaN wins */
    TG__FOLD_ARGMAX, /* position of the first largest t(x), or of the first NaN */
    TG__FOLD_ARGMIN  /* position of the first smallest t(x), or of the first NaN */
} tg__fold_kind;

typedef enum {
    TG__XF_ID,    /* t(x) = x */
    TG__XF_SQDEV, /* t(x) = (x - ctr[o])^2 */
    TG__XF_EXP,   /* t(x) = exp(x - ctr[o]) */
    TG__XF_ABS,   /* t(x) = |x| */
    TG__XF_ABSPOW /* t(x) = (|x| / ctr[o])^p, 0 when ctr[o] is 0 or not finite */
} tg__fold_xf;

typedef struct {
    tg__fold_kind kind;
    tg__fold_xf xf;
    double p;          /* TG__XF_ABSPOW exponent */
    const double *ctr; /* per-output centre or scale (O entries) */
} tg__fold_spec;

/*
 * For each output o of reducing x over mask (O = product of the kept sizes,
 * in row-major order of the kept dims), folds t(x) over the reduced
 * elements (R of them, R >= 1, row-major order of the reduced axes) into
 * val[o] (value kinds) or idx[o] (arg kinds: the row-major position among
 * the reduced elements). The order is fixed by the logical shape only:
 * blocks of 4096 reduced elements are folded in order and the block
 * results combined in block order, so the result is bit-identical whatever
 * the thread count and strides (max, min and their args are exact in any
 * order). False only when scratch memory runs out (error on c).
 */
bool tg__fold(tg_ctx *c, const tg_tensor *x, uint32_t mask, const tg__fold_spec *s, double *val,
              int64_t *idx);

/* ---- forward and backward pieces (src/ops/stats.c) ------------------------------ */

/* Checks x (floating) and the axes, refuses an empty reduced set
 * (TG_ERR_INVALID, "fn: [2,0]: empty reduction ..."), and returns the
 * uninitialised contiguous result of dtype ydt with the reduced shape; the
 * mask and the reduced count through mask and R. */
tg_tensor *tg__red_prepare(tg_ctx *c, const char *fn, tg_tensor *x, int naxes, const int *axes,
                           bool keepdim, tg_dtype ydt, uint32_t *mask, int64_t *R);

/* Arena doubles, one per element of y. */
double *tg__red_scratch(tg_ctx *c, const tg_tensor *y);

/* Writes v (one double per element) into the contiguous float tensor y. */
void tg__red_store(tg_tensor *y, const double *v);

/* Records op (iv[0] = mask, iv[1] = keepdim, n_iv = 2, f[0] = f0). */
bool tg__red_record(tg_ctx *c, tg_op op, tg_tensor *y, tg_tensor *x, uint32_t mask, bool keepdim,
                    double f0);

/* t's elements in row-major order as arena doubles (NULL: error on c). */
double *tg__const_doubles(tg_ctx *c, const tg_tensor *t);

/* A new tensor (never recorded, requires no grad) holding v. */
tg_tensor *tg__const_from(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, const double *v);

/* t (contiguous, the result of reducing x over mask) repeated over the
 * reduced axes, as x.numel arena doubles in x's row-major order. */
double *tg__const_spread(tg_ctx *c, const tg_tensor *x, uint32_t mask, const tg_tensor *t);

#endif /* TG_REDUCE_IMPL_H */
