/*
 * tapegrad/ops_reduce.h - reductions beyond sum and mean: max/min, argmax/argmin, prod, var/std,
 * logsumexp, norm. Included by tapegrad/ops.h; the conventions of ops.h apply (context first,
 * sticky errors, results owned by the context). Implemented in src/ops/select.c (max/min/arg*),
 * src/ops/stats.c (prod, var, std, logsumexp, norm).
 *
 * Axes work as in tg_sum_axes: naxes entries of axes, negative counting
 * from the end, each at most once (TG_ERR_INVALID otherwise, also for
 * naxes < 0 or a NULL axes with naxes > 0); naxes == 0 reduces nothing
 * (the result is x's values); a 0-d x may name axis 0 or -1. keepdim keeps
 * the reduced axes as size 1. The result is a new contiguous tensor of x's
 * dtype (TG_I64 for argmax/argmin) with the reduced shape, owned by c.
 *
 * Every function here: x must be TG_F32 or TG_F64 (TG_ERR_DTYPE otherwise,
 * TG_I64 included); a reduced set with no element (a reduced axis of size
 * 0) is TG_ERR_INVALID ("tg_max_axes: [2,0]: empty reduction ..."); NULL x
 * is TG_ERR_INVALID. Results are bit-identical whatever the thread count
 * and whatever x's strides; f32 inputs are reduced in double.
 */
#ifndef TAPEGRAD_OPS_REDUCE_H
#define TAPEGRAD_OPS_REDUCE_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_REDUCE(X)                \
    /* src/ops/select.c */              \
    X(MAX, max, 1, 0)                   \
    X(MIN, min, 1, 0)                   \
    X(ARGMAX, argmax, 1, TG_OPF_NOGRAD) \
    X(ARGMIN, argmin, 1, TG_OPF_NOGRAD) \
    /* src/ops/stats.c */               \
    X(PROD, prod, 1, 0)                 \
    X(VAR, var, 1, 0)                   \
    X(STD, std, 1, 0)                   \
    X(LOGSUMEXP, logsumexp, 1, 0)       \
    X(NORM, norm, 1, 0)

/* ====================================================================== */
/* max, min, argmax, argmin                                               */
/* ====================================================================== */

/*
 * y = max (min) of x over the axes. A set holding NaN gives NaN.
 * Gradient: to the arg positions. Ties: every position holding the extreme
 * value gets dout / (number of such positions), i.e. ties share evenly
 * (PyTorch's amax/amin, not torch.max(dim)'s single index), so the
 * gradient does not depend on element order.
 */
tg_tensor *tg_max_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim);
tg_tensor *tg_min_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim);

/*
 * y = the index along axis (one axis, negative counts from the end) of the
 * largest (smallest) element, as TG_I64 with x's shape without axis (kept
 * as 1 with keepdim). Ties: the first index. NaN: the index of the first
 * NaN (NaN beats every number, as in NumPy and PyTorch). No gradient
 * (TG_OPF_NOGRAD): never recorded, the result requires no grad. A 0-d x
 * gives 0. Errors as above (an axis out of range is TG_ERR_INVALID).
 */
tg_tensor *tg_argmax(tg_ctx *c, tg_tensor *x, int axis, bool keepdim);
tg_tensor *tg_argmin(tg_ctx *c, tg_tensor *x, int axis, bool keepdim);

/* ====================================================================== */
/* prod, var, std, logsumexp, norm                                         */
/* ====================================================================== */

/*
 * y = product of x over the axes (accumulated in double). The gradient
 * dout * prod_{j != k} x_j is exact when x holds zeros (never a division by
 * zero): with one zero in a set only the zero's position gets a non-zero
 * gradient (the product of the others), with two or more every position
 * gets 0. Second derivatives are exact too, zeros included.
 */
tg_tensor *tg_prod_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim);

/*
 * y = sum (x - mean)^2 / (R - correction) over the axes, R the number of
 * reduced elements, correction 1 when unbiased (Bessel, the default of
 * torch.var) and 0 otherwise; two passes in double. R == 1 with unbiased
 * gives 0/0 = NaN, as PyTorch does.
 * tg_std_axes: y = sqrt(var). Its gradient at y == 0 (all elements of the
 * set equal) is 0, PyTorch's choice (the derivative is infinite there).
 */
tg_tensor *tg_var_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool unbiased,
                       bool keepdim);
tg_tensor *tg_std_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool unbiased,
                       bool keepdim);

/*
 * y = log(sum exp(x)) over the axes, computed as m + log(sum exp(x - m))
 * with m the max of the set: finite for x of 1e4 (or -1e4). m is taken as
 * 0 when it is infinite, so a set of -inf gives -inf and a set holding
 * +inf gives +inf; NaN gives NaN. Gradient: dout * softmax = dout * exp(x - y).
 */
tg_tensor *tg_logsumexp(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim);

/*
 * y = (sum |x|^p)^(1/p) over the axes, for any p > 0, and p = INFINITY
 * giving max |x|; p <= 0 or NaN is TG_ERR_INVALID. Computed as
 * t * (sum (|x|/t)^p)^(1/p), t = max |x|, so it neither overflows nor
 * underflows (p = 1 is the plain sum of |x|).
 * Gradient, with sign(0) = 0:
 *   p = 1:    dout * sign(x)                  (0 at x == 0, a subgradient)
 *   p = 2:    dout * x / y                    (0 where y == 0, as PyTorch)
 *   p = inf:  dout * sign(x) at the positions of max |x|, ties sharing evenly
 *   other p:  dout * sign(x) |x|^(p-1) / y^(p-1)  (0 where y == 0; at x == 0
 *             0 for p > 1, while for p < 1 the derivative is infinite there)
 */
tg_tensor *tg_norm(tg_ctx *c, tg_tensor *x, double p, int naxes, const int *axes, bool keepdim);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_REDUCE_H */
