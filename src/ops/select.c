/*
 * select.c - max and min over chosen axes (values, with the gradient sent
 * to the arg positions) and argmax / argmin over one axis (TG_I64, no
 * gradient). Forward beside backward; the folds are in stats.c.
 *
 * Ties: max and min share the gradient evenly among every position that
 * holds the extreme value (PyTorch's amax/amin rule), so the gradient does
 * not depend on the order of the elements; argmax and argmin give the first
 * position. NaN wins: a reduced set holding NaN has max = min = NaN and
 * argmax = argmin = the position of its first NaN (NumPy and PyTorch).
 *
 * Node arguments of MAX and MIN: iv[0] = bitmask of the reduced axes,
 * iv[1] = keepdim, n_iv = 2. ARGMAX and ARGMIN are never recorded.
 */
#include "reduce_impl.h"

#include <math.h>

static tg_tensor *extreme(tg_ctx *c, const char *fn, tg_op op, tg_tensor *x, int naxes,
                          const int *axes, bool keepdim)
{
    uint32_t mask;
    int64_t R;
    tg_tensor *y =
        tg__red_prepare(c, fn, x, naxes, axes, keepdim, x ? x->dtype : TG_F32, &mask, &R);
    if (!y) return NULL;
    double *v = tg__red_scratch(c, y);
    tg__fold_spec s = {op == TG_OP_MAX ? TG__FOLD_MAX : TG__FOLD_MIN, TG__XF_ID, 0, NULL};
    if (!v || !tg__fold(c, x, mask, &s, v, NULL)) return NULL;
    tg__red_store(y, v);
    return tg__red_record(c, op, y, x, mask, keepdim, 0) ? y : NULL;
}

/*
 * dout is y's shape; dx is x's shape.
 * dx = expand(dout) * w, w = [x == y] / (number of such positions in the
 * set), a constant: ties share the gradient evenly (NaN counts as equal to
 * a NaN result). Linear in dout with a constant w, so second order works.
 */
static void extreme_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    uint32_t mask = (uint32_t)n->iv[0];
    bool keep = n->iv[1] != 0;
    int64_t N = tg__numel(x->ndim, x->shape);
    double *xs = tg__const_doubles(c, x);
    double *ys = xs ? tg__const_spread(c, x, mask, n->out) : NULL;
    if (!ys) return;
    for (int64_t i = 0; i < N; i++)
        xs[i] = (xs[i] == ys[i] || (isnan(xs[i]) && isnan(ys[i]))) ? 1.0 : 0.0;
    tg_tensor *hit = tg__const_from(c, x->dtype, x->ndim, x->shape, xs);
    int axes[TG_MAX_DIMS], na = 0;
    for (int d = 0; d < x->ndim; d++)
        if (mask >> d & 1u) axes[na++] = d;
    tg_tensor *cnt = hit ? tg_sum_axes(c, hit, na, axes, keep) : NULL;
    double *cs = cnt ? tg__const_spread(c, x, mask, cnt) : NULL;
    if (!cs) return;
    for (int64_t i = 0; i < N; i++) xs[i] /= cs[i];
    tg_tensor *w = tg__const_from(c, x->dtype, x->ndim, x->shape, xs);
    dx[0] = tg_mul(c, tg__red_spread(c, x, mask, keep, dout), w);
}

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y[kept] = max over the reduced axes of x */
tg_tensor *tg_max_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim)
{
    return extreme(c, "tg_max_axes", TG_OP_MAX, x, naxes, axes, keepdim);
}
void tg__max_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    extreme_backward(c, n, dout, dx);
}

/* y[kept] = min over the reduced axes of x */
tg_tensor *tg_min_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim)
{
    return extreme(c, "tg_min_axes", TG_OP_MIN, x, naxes, axes, keepdim);
}
void tg__min_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    extreme_backward(c, n, dout, dx);
}

/* ---- argmax, argmin ------------------------------------------------------- */

/* x is (..., D, ...) with D at axis; y is TG_I64, x's shape without axis
 * (or with it as 1). Never recorded: the result requires no grad. */
static tg_tensor *arg_extreme(tg_ctx *c, const char *fn, bool max, tg_tensor *x, int axis,
                              bool keepdim)
{
    uint32_t mask;
    int64_t R;
    tg_tensor *y = tg__red_prepare(c, fn, x, 1, &axis, keepdim, TG_I64, &mask, &R);
    if (!y) return NULL;
    int64_t O = tg__numel(y->ndim, y->shape);
    int64_t *idx = (int64_t *)tg__ptr(y);
    tg__fold_spec s = {max ? TG__FOLD_ARGMAX : TG__FOLD_ARGMIN, TG__XF_ID, 0, NULL};
    if (O > 0 && !tg__fold(c, x, mask, &s, NULL, idx)) return NULL;
    return y;
}

/* y[kept] = first index along axis of the largest x (of the first NaN) */
tg_tensor *tg_argmax(tg_ctx *c, tg_tensor *x, int axis, bool keepdim)
{
    return arg_extreme(c, "tg_argmax", true, x, axis, keepdim);
}
/* never recorded (TG_OPF_NOGRAD): nothing to propagate */
void tg__argmax_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c, (void)n, (void)dout, (void)dx;
}

/* y[kept] = first index along axis of the smallest x (of the first NaN) */
tg_tensor *tg_argmin(tg_ctx *c, tg_tensor *x, int axis, bool keepdim)
{
    return arg_extreme(c, "tg_argmin", false, x, axis, keepdim);
}
void tg__argmin_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c, (void)n, (void)dout, (void)dx;
}
