/*
 * index.c - indexing ops along an axis: index_select, gather and
 * scatter_add, each forward beside its backward, and the one_hot helper
 * (not differentiable, not an op of the list).
 *
 * All three ops run one kernel that walks the positions of the index
 * tensor line by line along the axis. A line of a scatter_add writes only
 * its own line of the output (the other coordinates are the index's), so
 * lines are split over threads and each line adds in index order: repeated
 * indices accumulate deterministically, whatever the thread count.
 * Every index is validated before anything is written.
 *
 * index_select(x, axis, idx) is gather with idx viewed (stride 0) across
 * the other dims, so its backward is a scatter_add of dout into zeros, as
 * is gather's; scatter_add's own backward is dout and a gather. The three
 * close under differentiation: gradients of any order stay recorded ops.
 */
#include "ops_impl.h"

#include <stdio.h>
#include <string.h>

#define NEED(i) (n->in[i]->requires_grad)

/* ---- checks ---------------------------------------------------------------- */

/* The first element (row-major) of the TG_I64 tensor ix outside [0, hi):
 * its position, with its value in *val; -1 when all are inside. */
static int64_t first_bad(const tg_tensor *ix, int64_t hi, int64_t *val)
{
    int64_t n = tg__numel(ix->ndim, ix->shape), off = 0, cnt[TG_MAX_DIMS] = {0};
    const int64_t *p = (const int64_t *)tg__ptr(ix);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = p[off];
        if (v < 0 || v >= hi) {
            *val = v;
            return i;
        }
        for (int d = ix->ndim - 1; d >= 0; d--) {
            off += ix->stride[d];
            if (++cnt[d] < ix->shape[d]) break;
            off -= cnt[d] * ix->stride[d];
            cnt[d] = 0;
        }
    }
    return -1;
}

/* Row-major position i of shape as "[1,0,2]". */
static const char *fmt_pos(char *buf, size_t len, int ndim, const int64_t *shape, int64_t i)
{
    int64_t at[TG_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        at[d] = shape[d] ? i % shape[d] : 0;
        i = shape[d] ? i / shape[d] : 0;
    }
    return tg__fmt_shape(buf, len, ndim, at);
}

/* Fails unless every index of ix is in [0, hi); names fn, x, the position
 * and the value. */
static bool check_range(tg_ctx *c, const char *fn, const char *what, const tg_tensor *x,
                        const tg_tensor *ix, int64_t hi, int axis)
{
    int64_t v, at = first_bad(ix, hi, &v);
    if (at < 0) return true;
    char sx[128], si[128], sp[128];
    tg__fail(c, TG_ERR_INVALID,
             "%s: x %s, %s %s: value %lld at %s is outside [0, %lld) along "
             "axis %d",
             fn, tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape), what,
             tg__fmt_shape(si, sizeof si, ix->ndim, ix->shape), (long long)v,
             fmt_pos(sp, sizeof sp, ix->ndim, ix->shape, at), (long long)hi, axis);
    return false;
}

static bool check_index_dtype(tg_ctx *c, const char *fn, const char *what, const tg_tensor *ix)
{
    if (ix->dtype == TG_I64) return true;
    char s[128];
    tg__fail(c, TG_ERR_DTYPE, "%s: %s %s has dtype %s (i64 needed)", fn, what,
             tg__fmt_shape(s, sizeof s, ix->ndim, ix->shape), tg_dtype_name(ix->dtype));
    return false;
}

/* index's dims other than axis fit in x's (index ndim == x ndim). */
static bool check_fits(tg_ctx *c, const char *fn, const tg_tensor *x, const tg_tensor *ix, int axis)
{
    bool ok = ix->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++) ok = d == axis || ix->shape[d] <= x->shape[d];
    if (ok) return true;
    char sx[128], si[128];
    tg__fail(c, TG_ERR_SHAPE,
             "%s: x %s, index %s: index needs x's %d dims and sizes <= x's "
             "except along axis %d",
             fn, tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape),
             tg__fmt_shape(si, sizeof si, ix->ndim, ix->shape), x->ndim, axis);
    return false;
}

/* ---- the kernel -------------------------------------------------------------- */

/*
 * Over every position p of shape (the index's), line by line along axis:
 *   gather:  dst[p] = src[p with p[axis] = idx[p]]
 *   scatter: dst[p with p[axis] = idx[p]] += src[p]
 * Strides are in elements; dst and src share dtype.
 */
typedef struct {
    int ndim, axis;
    bool scatter;
    tg_dtype dt;
    int64_t shape[TG_MAX_DIMS];
    const int64_t *idx;
    char *dst;
    const char *src;
    int64_t is[TG_MAX_DIMS], ds[TG_MAX_DIMS], ss[TG_MAX_DIMS];
} ix_plan;

#define IX_LINE(T)                                                                                 \
    do {                                                                                           \
        T *o = (T *)pl->dst;                                                                       \
        const T *s = (const T *)pl->src;                                                           \
        if (pl->scatter)                                                                           \
            for (int64_t k = 0; k < len; k++) o[d0 + pl->idx[i0 + k * ia] * da] += s[s0 + k * sa]; \
        else                                                                                       \
            for (int64_t k = 0; k < len; k++) o[d0 + k * da] = s[s0 + pl->idx[i0 + k * ia] * sa];  \
    } while (0)

static void ix_lines(void *arg, int64_t begin, int64_t end)
{
    const ix_plan *pl = arg;
    int ax = pl->axis;
    int64_t len = pl->shape[ax], ia = pl->is[ax], da = pl->ds[ax], sa = pl->ss[ax];
    for (int64_t l = begin; l < end; l++) {
        /* line l's coordinates over the other dims, row-major */
        int64_t r = l, i0 = 0, d0 = 0, s0 = 0;
        for (int d = pl->ndim - 1; d >= 0; d--) {
            if (d == ax) continue;
            int64_t q = r % pl->shape[d];
            r /= pl->shape[d];
            i0 += q * pl->is[d];
            d0 += q * pl->ds[d];
            s0 += q * pl->ss[d];
        }
        if (pl->dt == TG_F32) IX_LINE(float);
        else if (pl->dt == TG_F64) IX_LINE(double);
        else IX_LINE(int64_t);
    }
}

/* Runs the plan over its lines, split over c's threads. */
static void ix_run(tg_ctx *c, ix_plan *pl)
{
    int64_t len = pl->shape[pl->axis];
    int64_t lines = len ? tg__numel(pl->ndim, pl->shape) / len : 0;
    if (lines == 0 || len == 0) return;
    int64_t grain = TG__PAR_GRAIN / len;
    tg__parallel_for(c, lines, grain > 0 ? grain : 1, ix_lines, pl);
}

/* A plan over ix's positions: dst/src element pointers and strides. */
static void ix_plan_init(ix_plan *pl, bool scatter, int axis, const int64_t *shape,
                         const tg_tensor *ix, const int64_t *ix_stride, tg_tensor *dst,
                         const tg_tensor *src)
{
    memset(pl, 0, sizeof *pl);
    pl->ndim = dst->ndim;
    pl->axis = axis;
    pl->scatter = scatter;
    pl->dt = dst->dtype;
    pl->idx = (const int64_t *)tg__ptr(ix);
    pl->dst = tg__ptr(dst);
    pl->src = tg__ptr(src);
    for (int d = 0; d < pl->ndim; d++) {
        pl->shape[d] = shape[d];
        pl->is[d] = ix_stride[d];
        pl->ds[d] = dst->stride[d];
        pl->ss[d] = src->stride[d];
    }
}

/* ---- index_select ----------------------------------------------------------- */

/* x is (..., N, ...) along axis, index (K,) in [0, N); y is (..., K, ...) */
tg_tensor *tg_index_select(tg_ctx *c, tg_tensor *x, int axis, tg_tensor *index)
{
    const char *fn = "tg_index_select";
    tg_tensor *in[2] = {x, index};
    if (!tg__check_inputs(c, fn, 2, in) || !check_index_dtype(c, fn, "index", index)) return NULL;
    int a;
    if (!tg__norm_axis(c, fn, x->ndim, axis, &a)) return NULL;
    if (index->ndim != 1) {
        char s[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: index %s must be 1-d", fn,
                 tg__fmt_shape(s, sizeof s, index->ndim, index->shape));
        return NULL;
    }
    if (!check_range(c, fn, "index", x, index, x->shape[a], a)) return NULL;
    int64_t sh[TG_MAX_DIMS], is[TG_MAX_DIMS] = {0};
    memcpy(sh, x->shape, sizeof sh);
    sh[a] = index->shape[0];
    is[a] = index->stride[0];
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, sh);
    if (!y) return NULL;
    /* index viewed across y's shape: stride 0 off the axis */
    ix_plan pl;
    ix_plan_init(&pl, false, a, sh, index, is, y, x);
    ix_run(c, &pl);
    tg__node *n;
    if (tg__record(c, TG_OP_INDEX_SELECT, y, 2, in, &n)) return NULL;
    if (n) n->iv[0] = a, n->n_iv = 1;
    return y;
}
/* dx = scatter_add(zeros like x, axis, index across dout's shape, dout) */
void tg__index_select_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    const tg_tensor *x = n->in[0], *index = n->in[1];
    int a = (int)n->iv[0];
    int64_t st[TG_MAX_DIMS] = {0};
    st[a] = index->stride[0];
    tg_tensor *ix = tg__view(c, index, dout->ndim, dout->shape, st, index->offset);
    tg_tensor *z = tg_tensor_new(c, dout->dtype, x->ndim, x->shape);
    if (!ix || !z) return;
    dx[0] = tg_scatter_add(c, z, a, ix, dout);
}

/* ---- gather ------------------------------------------------------------------ */

/* x is (..., N, ...), index of x's ndim with values in [0, N); y has index's shape */
tg_tensor *tg_gather(tg_ctx *c, tg_tensor *x, int axis, tg_tensor *index)
{
    const char *fn = "tg_gather";
    tg_tensor *in[2] = {x, index};
    if (!tg__check_inputs(c, fn, 2, in) || !check_index_dtype(c, fn, "index", index)) return NULL;
    int a;
    if (!tg__norm_axis(c, fn, x->ndim, axis, &a) || !check_fits(c, fn, x, index, a) ||
        !check_range(c, fn, "index", x, index, x->shape[a], a))
        return NULL;
    tg_tensor *y = tg__empty(c, fn, x->dtype, index->ndim, index->shape);
    if (!y) return NULL;
    ix_plan pl;
    ix_plan_init(&pl, false, a, index->shape, index, index->stride, y, x);
    ix_run(c, &pl);
    tg__node *n;
    if (tg__record(c, TG_OP_GATHER, y, 2, in, &n)) return NULL;
    if (n) n->iv[0] = a, n->n_iv = 1;
    return y;
}
/* dx = scatter_add(zeros like x, axis, index, dout) */
void tg__gather_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    const tg_tensor *x = n->in[0];
    tg_tensor *z = tg_tensor_new(c, dout->dtype, x->ndim, x->shape);
    if (z) dx[0] = tg_scatter_add(c, z, (int)n->iv[0], n->in[1], dout);
}

/* ---- scatter_add ------------------------------------------------------------- */

/* x is (..., N, ...); index and src share a shape of x's ndim; y has x's shape */
tg_tensor *tg_scatter_add(tg_ctx *c, tg_tensor *x, int axis, tg_tensor *index, tg_tensor *src)
{
    const char *fn = "tg_scatter_add";
    tg_tensor *in[3] = {x, index, src};
    if (!tg__check_inputs(c, fn, 3, in) || !check_index_dtype(c, fn, "index", index)) return NULL;
    if (x->dtype != src->dtype) {
        tg__fail(c, TG_ERR_DTYPE, "%s: x has dtype %s but src %s", fn, tg_dtype_name(x->dtype),
                 tg_dtype_name(src->dtype));
        return NULL;
    }
    int a;
    if (!tg__norm_axis(c, fn, x->ndim, axis, &a) || !check_fits(c, fn, x, index, a)) return NULL;
    bool same = src->ndim == index->ndim;
    for (int d = 0; same && d < src->ndim; d++) same = src->shape[d] == index->shape[d];
    if (!same) {
        char si[128], ss[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: index %s and src %s must have the same shape", fn,
                 tg__fmt_shape(si, sizeof si, index->ndim, index->shape),
                 tg__fmt_shape(ss, sizeof ss, src->ndim, src->shape));
        return NULL;
    }
    if (!check_range(c, fn, "index", x, index, x->shape[a], a)) return NULL;
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    tg__copy_strided(c, y, x);
    ix_plan pl;
    ix_plan_init(&pl, true, a, index->shape, index, index->stride, y, src);
    ix_run(c, &pl);
    tg__node *n;
    if (tg__record(c, TG_OP_SCATTER_ADD, y, 3, in, &n)) return NULL;
    if (n) n->iv[0] = a, n->n_iv = 1;
    return y;
}
/* dx = dout, dsrc = gather(dout, axis, index) */
void tg__scatter_add_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = dout;
    if (NEED(2)) dx[2] = tg_gather(c, dout, (int)n->iv[0], n->in[1]);
}

/* ---- one_hot (a constant, not an op) ------------------------------------------ */

tg_tensor *tg_one_hot(tg_ctx *c, tg_tensor *labels, int64_t num_classes, tg_dtype dt)
{
    const char *fn = "tg_one_hot";
    if (!tg__check_inputs(c, fn, 1, &labels) || !check_index_dtype(c, fn, "labels", labels))
        return NULL;
    char s[128];
    if (num_classes < 1) {
        tg__fail(c, TG_ERR_INVALID, "%s: num_classes %lld; need >= 1", fn, (long long)num_classes);
        return NULL;
    }
    if (!tg__valid_dtype(dt)) {
        tg__fail(c, TG_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)dt);
        return NULL;
    }
    if (labels->ndim + 1 > TG_MAX_DIMS) {
        tg__fail(c, TG_ERR_INVALID, "%s: labels %s have %d dims; the result would exceed %d", fn,
                 tg__fmt_shape(s, sizeof s, labels->ndim, labels->shape), labels->ndim,
                 TG_MAX_DIMS);
        return NULL;
    }
    int64_t v, at = first_bad(labels, num_classes, &v);
    if (at >= 0) {
        char sp[128];
        tg__fail(c, TG_ERR_INVALID, "%s: labels %s: value %lld at %s is outside [0, %lld)", fn,
                 tg__fmt_shape(s, sizeof s, labels->ndim, labels->shape), (long long)v,
                 fmt_pos(sp, sizeof sp, labels->ndim, labels->shape, at), (long long)num_classes);
        return NULL;
    }
    int64_t sh[TG_MAX_DIMS];
    memcpy(sh, labels->shape, sizeof(int64_t) * (size_t)labels->ndim);
    sh[labels->ndim] = num_classes;
    tg_tensor *y = tg__empty(c, fn, dt, labels->ndim + 1, sh);
    if (!y) return NULL;
    memset(y->st->data, 0, y->st->nbytes);
    int64_t n = tg__numel(labels->ndim, labels->shape), off = 0, cnt[TG_MAX_DIMS] = {0};
    const int64_t *l = (const int64_t *)tg__ptr(labels);
    char *p = tg__ptr(y);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = i * num_classes + l[off];
        if (dt == TG_F32) ((float *)p)[k] = 1.0f;
        else if (dt == TG_F64) ((double *)p)[k] = 1.0;
        else ((int64_t *)p)[k] = 1;
        for (int d = labels->ndim - 1; d >= 0; d--) {
            off += labels->stride[d];
            if (++cnt[d] < labels->shape[d]) break;
            off -= cnt[d] * labels->stride[d];
            cnt[d] = 0;
        }
    }
    return y;
}
