/*
 * reduce.c - reductions: sum and mean (over everything or chosen axes),
 * softmax and log-softmax over one axis. Forward and backward side by side.
 *
 * Summation order is part of the contract (bit-identical results whatever
 * the thread count): each output element is the sum of its reduced
 * elements taken in row-major order of the reduced axes, cut into fixed
 * blocks of RED_BLOCK elements. Each block is summed sequentially in double
 * starting from 0, and the block partials are added in block order. The
 * order depends only on the logical shape, so a strided view gives the
 * same bits as a contiguous copy of it, and any kernel may compute it.
 *
 * Node arguments of SUM and MEAN: iv[0] = bitmask of the reduced axes of
 * the input (bit d set when axis d is reduced), iv[1] = keepdim (0 or 1),
 * n_iv = 2. tg_sum / tg_mean record every axis with keepdim 0. SOFTMAX and
 * LOG_SOFTMAX: iv[0] = the normalised axis (-1 for a 0-d input), n_iv = 1.
 */
#include "reduce_impl.h"

#include <math.h>
#include <string.h>

#define RED_BLOCK 4096 /* reduced elements per partial sum; fixes the order */
#define RED_CHUNK 512  /* output elements per task of the column kernel */

/* ====================================================================== */
/* The reduction plan                                                     */
/* ====================================================================== */

/* x viewed as kept dims (outer, output order) and reduced dims (inner),
 * each list with size-1 dims dropped and mergeable neighbours merged. */
typedef struct {
    const char *base; /* tg__ptr(x) */
    tg_dtype dt;
    int nk, nr;
    int64_t ksz[TG_MAX_DIMS], kst[TG_MAX_DIMS]; /* kept: sizes, element strides */
    int64_t rsz[TG_MAX_DIMS], rst[TG_MAX_DIMS]; /* reduced */
    int64_t O, R, nb;  /* outputs, reduced count, blocks per output */
    double *part;      /* O * nb block partials (nb > 1), part[o * nb + b] */
    char *out;         /* contiguous output */
    double count;      /* divisor of a mean: the reduced count */
    bool mean;
} red_plan;

/* acc + x[0] + x[st] + ... over n elements, in that order. */
static double run_sum(double acc, tg_dtype dt, const char *base, int64_t off, int64_t st,
                      int64_t n)
{
    if (dt == TG_F32) {
        const float *p = (const float *)base + off;
        if (st == 1)
            for (int64_t i = 0; i < n; i++) acc += p[i];
        else
            for (int64_t i = 0; i < n; i++) acc += p[i * st];
    } else {
        const double *p = (const double *)base + off;
        if (st == 1)
            for (int64_t i = 0; i < n; i++) acc += p[i];
        else
            for (int64_t i = 0; i < n; i++) acc += p[i * st];
    }
    return acc;
}

static void store(const red_plan *p, int64_t o, double v)
{
    if (p->mean) v /= p->count;
    if (p->dt == TG_F32) ((float *)p->out)[o] = (float)v;
    else ((double *)p->out)[o] = v;
}

/* Sum of block b of output o (reduced positions b*RED_BLOCK onwards). */
static double block_sum(const red_plan *p, int64_t koff, int64_t b)
{
    int64_t idx[TG_MAX_DIMS];
    int64_t r = b * RED_BLOCK, rend = r + RED_BLOCK < p->R ? r + RED_BLOCK : p->R;
    int64_t off = tg__red_unravel(p->nr, p->rsz, p->rst, r, idx);
    int last = p->nr - 1;
    double acc = 0.0;
    while (r < rend) {
        int64_t run = p->rsz[last] - idx[last];
        if (run > rend - r) run = rend - r;
        acc = run_sum(acc, p->dt, p->base, koff + off, p->rst[last], run);
        r += run;
        idx[last] += run;
        off += run * p->rst[last];
        tg__red_carry(p->nr, p->rsz, p->rst, idx, &off);
    }
    return acc;
}

/* Row kernel: task t is block t % nb of output t / nb. Good when the
 * reduced elements of one output are close together in memory. */
static void row_task(void *arg, int64_t t0, int64_t t1)
{
    const red_plan *p = arg;
    int64_t idx[TG_MAX_DIMS];
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / p->nb, b = t % p->nb;
        int64_t koff = tg__red_unravel(p->nk, p->ksz, p->kst, o, idx);
        double s = block_sum(p, koff, b);
        if (p->nb == 1) store(p, o, s);
        else p->part[t] = s;
    }
}

/* Column kernel (one kept dim, stepping faster than the reduced ones, as
 * in summing the rows of a [B, C] matrix): task t is block t / nch of the
 * output chunk t % nch; the rows of the block are added to a chunk of
 * accumulators one after another. Each accumulator sees its elements in
 * the same order as block_sum would, so the bits match the row kernel. */
static void col_task(void *arg, int64_t t0, int64_t t1)
{
    const red_plan *p = arg;
    int64_t nch = (p->O + RED_CHUNK - 1) / RED_CHUNK;
    int64_t ks = p->kst[0];
    double acc[RED_CHUNK];
    int64_t idx[TG_MAX_DIMS];
    for (int64_t t = t0; t < t1; t++) {
        int64_t b = t / nch, ch = t % nch;
        int64_t o0 = ch * RED_CHUNK, o1 = o0 + RED_CHUNK < p->O ? o0 + RED_CHUNK : p->O;
        int64_t w = o1 - o0;
        for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
        int64_t r = b * RED_BLOCK, rend = r + RED_BLOCK < p->R ? r + RED_BLOCK : p->R;
        int64_t off = tg__red_unravel(p->nr, p->rsz, p->rst, r, idx);
        int last = p->nr - 1;
        for (; r < rend; r++) {
            int64_t base = off + o0 * ks;
            if (p->dt == TG_F32) {
                const float *x = (const float *)p->base + base;
                if (ks == 1)
                    for (int64_t j = 0; j < w; j++) acc[j] += x[j];
                else
                    for (int64_t j = 0; j < w; j++) acc[j] += x[j * ks];
            } else {
                const double *x = (const double *)p->base + base;
                if (ks == 1)
                    for (int64_t j = 0; j < w; j++) acc[j] += x[j];
                else
                    for (int64_t j = 0; j < w; j++) acc[j] += x[j * ks];
            }
            idx[last]++;
            off += p->rst[last];
            tg__red_carry(p->nr, p->rsz, p->rst, idx, &off);
        }
        for (int64_t j = 0; j < w; j++) {
            if (p->nb == 1) store(p, o0 + j, acc[j]);
            else p->part[(o0 + j) * p->nb + b] = acc[j];
        }
    }
}

/* out[o] = partials of o added in block order. */
static void combine_task(void *arg, int64_t o0, int64_t o1)
{
    const red_plan *p = arg;
    for (int64_t o = o0; o < o1; o++) {
        double s = 0.0;
        for (int64_t b = 0; b < p->nb; b++) s += p->part[o * p->nb + b];
        store(p, o, s);
    }
}

/* y (contiguous, the kept dims of x in order) = sum or mean of x over the
 * axes in mask. False only when scratch memory runs out (error on c). */
static bool reduce_into(tg_ctx *c, const tg_tensor *x, uint32_t mask, bool mean, tg_tensor *y)
{
    red_plan p;
    memset(&p, 0, sizeof p);
    p.base = tg__ptr(x);
    p.dt = x->dtype;
    p.out = tg__ptr(y);
    p.mean = mean;
    p.O = 1;
    p.R = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (mask >> d & 1u) p.R *= x->shape[d];
        else p.O *= x->shape[d];
    }
    p.count = (double)p.R;
    if (p.O == 0) return true;
    if (p.R == 0) { /* empty sums are 0, empty means 0/0 = NaN */
        for (int64_t o = 0; o < p.O; o++) store(&p, o, 0.0);
        return true;
    }
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (mask >> d & 1u) tg__red_push_dim(&p.nr, p.rsz, p.rst, x->shape[d], x->stride[d]);
        else tg__red_push_dim(&p.nk, p.ksz, p.kst, x->shape[d], x->stride[d]);
    }
    if (p.nr == 0) { /* nothing to add up: a copy (mean divides by 1) */
        int64_t st[TG_MAX_DIMS];
        tg__contig_strides(x->ndim, x->shape, st);
        tg_tensor *v = tg__view(c, y, x->ndim, x->shape, st, 0);
        if (!v) return false;
        tg__copy_strided(c, v, x);
        return true;
    }
    p.nb = (p.R + RED_BLOCK - 1) / RED_BLOCK;
    if (p.nb > 1) {
        if ((uint64_t)p.O > SIZE_MAX / sizeof(double) / (uint64_t)p.nb) {
            tg__fail(c, TG_ERR_NOMEM, "reduction: scratch too large");
            return false;
        }
        p.part = tg__arena_alloc(c, (size_t)(p.O * p.nb) * sizeof(double));
        if (!p.part) return false;
    }
    int64_t per = p.R < RED_BLOCK ? p.R : RED_BLOCK; /* elements per block */
    bool cols = p.nk == 1 && p.kst[0] < p.rst[p.nr - 1] && p.kst[0] <= 8;
    if (cols) {
        int64_t nch = (p.O + RED_CHUNK - 1) / RED_CHUNK;
        int64_t work = per * (p.O < RED_CHUNK ? p.O : RED_CHUNK);
        int64_t grain = TG__PAR_GRAIN / work;
        tg__parallel_for(c, p.nb * nch, grain > 0 ? grain : 1, col_task, &p);
    } else {
        int64_t grain = TG__PAR_GRAIN / per;
        tg__parallel_for(c, p.O * p.nb, grain > 0 ? grain : 1, row_task, &p);
    }
    if (p.nb > 1) {
        int64_t grain = TG__PAR_GRAIN / p.nb;
        tg__parallel_for(c, p.O, grain > 0 ? grain : 1, combine_task, &p);
    }
    return true;
}

/* ====================================================================== */
/* sum, mean                                                              */
/* ====================================================================== */

/* Validates axes against x and returns the bitmask through mask. all: every
 * axis. */
bool tg__axes_mask(tg_ctx *c, const char *fn, const tg_tensor *x, int naxes, const int *axes,
                   bool all, uint32_t *mask)
{
    *mask = 0;
    if (all) {
        *mask = x->ndim ? (uint32_t)((1u << x->ndim) - 1u) : 0u;
        return true;
    }
    if (naxes < 0 || (naxes > 0 && !axes)) {
        tg__fail(c, TG_ERR_INVALID, "%s: naxes %d with axes %s", fn, naxes,
                 axes ? "given" : "NULL");
        return false;
    }
    char b[160];
    if (x->ndim == 0) { /* a 0-d tensor has one axis to name, 0 or -1 */
        if (naxes > 1 || (naxes == 1 && axes[0] != 0 && axes[0] != -1)) {
            tg__fail(c, TG_ERR_INVALID, "%s: %s: axes must be at most one of 0, -1 for 0-d",
                     fn, tg__fmt_shape(b, sizeof b, 0, x->shape));
            return false;
        }
        return true;
    }
    for (int i = 0; i < naxes; i++) {
        int a;
        if (!tg__norm_axis(c, fn, x->ndim, axes[i], &a)) return false;
        if (*mask >> a & 1u) {
            tg__fail(c, TG_ERR_INVALID, "%s: %s: axis %d given twice", fn,
                     tg__fmt_shape(b, sizeof b, x->ndim, x->shape), axes[i]);
            return false;
        }
        *mask |= 1u << a;
    }
    return true;
}

static tg_tensor *reduce_op(tg_ctx *c, const char *fn, tg_op op, tg_tensor *x, int naxes,
                            const int *axes, bool all, bool keepdim)
{
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    uint32_t mask;
    if (!tg__axes_mask(c, fn, x, naxes, axes, all, &mask)) return NULL;
    int64_t shape[TG_MAX_DIMS];
    int nd = tg__reduced_shape(x, mask, keepdim, shape);
    tg_tensor *y = tg__empty(c, fn, x->dtype, nd, shape);
    if (!y) return NULL;
    if (!reduce_into(c, x, mask, op == TG_OP_MEAN, y)) return NULL;
    tg__node *n;
    if (tg__record(c, op, y, 1, &x, &n)) return NULL;
    if (n) {
        n->iv[0] = mask;
        n->iv[1] = keepdim && !all;
        n->n_iv = 2;
    }
    return y;
}

/* x is any shape; y is 0-d */
/* y = sum_i x_i */
tg_tensor *tg_sum(tg_ctx *c, tg_tensor *x)
{
    return reduce_op(c, "tg_sum", TG_OP_SUM, x, 0, NULL, true, false);
}

/* x is any shape; y is 0-d */
/* y = sum_i x_i / numel(x); NaN when x is empty */
tg_tensor *tg_mean(tg_ctx *c, tg_tensor *x)
{
    return reduce_op(c, "tg_mean", TG_OP_MEAN, x, 0, NULL, true, false);
}

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y[kept] = sum over the reduced axes of x */
tg_tensor *tg_sum_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim)
{
    return reduce_op(c, "tg_sum_axes", TG_OP_SUM, x, naxes, axes, false, keepdim);
}

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y[kept] = sum over the reduced axes of x / (product of their sizes) */
tg_tensor *tg_mean_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim)
{
    return reduce_op(c, "tg_mean_axes", TG_OP_MEAN, x, naxes, axes, false, keepdim);
}

int tg__reduced_shape(const tg_tensor *x, uint32_t mask, bool keepdim, int64_t *shape)
{
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!(mask >> d & 1u)) shape[nd++] = x->shape[d];
        else if (keepdim) shape[nd++] = 1;
    }
    return nd;
}

tg_tensor *tg__red_spread(tg_ctx *c, const tg_tensor *x, uint32_t mask, bool keepdim,
                          tg_tensor *g)
{
    if (!keepdim && mask) {
        int64_t ks[TG_MAX_DIMS];
        for (int d = 0; d < x->ndim; d++) ks[d] = mask >> d & 1u ? 1 : x->shape[d];
        g = tg_reshape(c, g, x->ndim, ks);
    }
    return tg_expand(c, g, x->ndim, x->shape);
}

/* dout is y's shape; returns it reshaped to keepdim form and expanded to
 * x's shape (a view: every reduced element gets its output's gradient). */
static tg_tensor *spread(tg_ctx *c, const tg__node *n, tg_tensor *g)
{
    return tg__red_spread(c, n->in[0], (uint32_t)n->iv[0], n->iv[1] != 0, g);
}

/* dout is y's shape; dx is x's shape */
/* dx = expand(dout) */
void tg__sum_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (n->in[0]->requires_grad) dx[0] = spread(c, n, dout);
}

/* dout is y's shape; dx is x's shape */
/* dx = expand(dout) / count, count = product of the reduced sizes */
void tg__mean_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!n->in[0]->requires_grad) return;
    const tg_tensor *x = n->in[0];
    double count = 1.0;
    for (int d = 0; d < x->ndim; d++)
        if ((uint32_t)n->iv[0] >> d & 1u) count *= (double)x->shape[d];
    dx[0] = spread(c, n, tg_scale(c, dout, 1.0 / count));
}

/* ====================================================================== */
/* softmax, log_softmax                                                   */
/* ====================================================================== */

#define SMAX_COLS 32 /* neighbouring rows a task handles together */

typedef struct {
    const char *x;
    char *y;
    tg_dtype dt;
    bool log;
    int no;                                  /* other dims */
    int64_t osz[TG_MAX_DIMS], oxs[TG_MAX_DIMS], oys[TG_MAX_DIMS];
    int64_t len, xs, ys;                     /* the axis: size, strides */
    int64_t width, inner, nch; /* rows per task, their innermost dim, tasks per run */
} smax_plan;

/*
 * Rows xo + j*xj (j < w) of x into y: a row is the axis at one index of
 * the other dims. With w > 1 the rows are neighbours along the innermost
 * other dim, so a softmax over a non-last axis streams through memory
 * instead of striding; each row still sees exactly the operations it would
 * see alone, so the bits do not depend on w. f32 rows use expf and sum in
 * double. A row that is all -inf (or holds NaN) comes out NaN, as in NumPy.
 */
#define SMAX_ROWS(T, EXP)                                                      \
    do {                                                                       \
        const T *xb = (const T *)p->x + xo;                                    \
        T *yb = (T *)p->y + yo;                                                \
        T m[SMAX_COLS];                                                        \
        double s[SMAX_COLS];                                                   \
        for (int64_t j = 0; j < w; j++) {                                      \
            m[j] = (T)-INFINITY;                                               \
            s[j] = 0.0;                                                        \
        }                                                                      \
        for (int64_t i = 0; i < p->len; i++)                                   \
            for (int64_t j = 0; j < w; j++) {                                  \
                T v = xb[i * p->xs + j * xj];                                  \
                if (v > m[j]) m[j] = v;                                        \
            }                                                                  \
        if (p->log) {                                                          \
            for (int64_t i = 0; i < p->len; i++)                               \
                for (int64_t j = 0; j < w; j++)                                \
                    s[j] += (double)EXP(xb[i * p->xs + j * xj] - m[j]);        \
            for (int64_t j = 0; j < w; j++) s[j] = log(s[j]);                  \
            for (int64_t i = 0; i < p->len; i++)                               \
                for (int64_t j = 0; j < w; j++)                                \
                    yb[i * p->ys + j * yj] =                                   \
                        (T)((double)(xb[i * p->xs + j * xj] - m[j]) - s[j]);   \
        } else {                                                               \
            for (int64_t i = 0; i < p->len; i++)                               \
                for (int64_t j = 0; j < w; j++) {                              \
                    T e = EXP(xb[i * p->xs + j * xj] - m[j]);                  \
                    yb[i * p->ys + j * yj] = e;                                \
                    s[j] += (double)e;                                         \
                }                                                              \
            for (int64_t i = 0; i < p->len; i++)                               \
                for (int64_t j = 0; j < w; j++)                                \
                    yb[i * p->ys + j * yj] =                                   \
                        (T)((double)yb[i * p->ys + j * yj] / s[j]);            \
        }                                                                      \
    } while (0)

/* Task t: rows (t / nch) * inner + (t % nch) * width onwards, at most
 * width of them, all within one run of the innermost other dim. */
static void smax_task(void *arg, int64_t t0, int64_t t1)
{
    const smax_plan *p = arg;
    int64_t xj = p->width > 1 ? p->oxs[p->no - 1] : 0;
    int64_t yj = p->width > 1 ? p->oys[p->no - 1] : 0;
    for (int64_t t = t0; t < t1; t++) {
        int64_t k = (t % p->nch) * p->width;
        int64_t r = (t / p->nch) * p->inner + k;
        int64_t w = p->inner - k < p->width ? p->inner - k : p->width;
        int64_t xo = 0, yo = 0, rem = r;
        for (int d = p->no - 1; d >= 0; d--) {
            int64_t i = rem % p->osz[d];
            rem /= p->osz[d];
            xo += i * p->oxs[d];
            yo += i * p->oys[d];
        }
        if (p->dt == TG_F32) SMAX_ROWS(float, expf);
        else SMAX_ROWS(double, exp);
    }
}

static tg_tensor *softmax_op(tg_ctx *c, const char *fn, tg_op op, tg_tensor *x, int axis)
{
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    int ax = -1;
    if (x->ndim == 0) {
        if (axis != 0 && axis != -1) {
            tg__fail(c, TG_ERR_INVALID, "%s: axis %d out of range for 0 dims", fn, axis);
            return NULL;
        }
    } else if (!tg__norm_axis(c, fn, x->ndim, axis, &ax)) {
        return NULL;
    }
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    smax_plan p;
    memset(&p, 0, sizeof p);
    p.x = tg__ptr(x);
    p.y = tg__ptr(y);
    p.dt = x->dtype;
    p.log = op == TG_OP_LOG_SOFTMAX;
    p.len = 1;
    int64_t rows = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d == ax) {
            p.len = x->shape[d];
            p.xs = x->stride[d];
            p.ys = y->stride[d];
        } else {
            p.osz[p.no] = x->shape[d];
            p.oxs[p.no] = x->stride[d];
            p.oys[p.no] = y->stride[d];
            p.no++;
            rows *= x->shape[d];
        }
    }
    if (rows > 0 && p.len > 0) {
        /* neighbouring rows together when the axis strides and the
         * innermost other dim is contiguous (softmax over a non-last axis) */
        bool cols = p.no > 0 && p.oxs[p.no - 1] == 1 && p.xs != 1 && p.osz[p.no - 1] > 1;
        p.width = cols ? SMAX_COLS : 1;
        p.inner = cols ? p.osz[p.no - 1] : 1;
        p.nch = (p.inner + p.width - 1) / p.width;
        int64_t grain = TG__PAR_GRAIN / (p.len * p.width);
        tg__parallel_for(c, rows / p.inner * p.nch, grain > 0 ? grain : 1, smax_task, &p);
    }
    tg__node *n;
    if (tg__record(c, op, y, 1, &x, &n)) return NULL;
    if (n) {
        n->iv[0] = ax;
        n->n_iv = 1;
    }
    return y;
}

/* x is (..., D, ...) with D at axis; y is x's shape */
/* y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j, along axis */
tg_tensor *tg_softmax(tg_ctx *c, tg_tensor *x, int axis)
{
    return softmax_op(c, "tg_softmax", TG_OP_SOFTMAX, x, axis);
}

/* x is (..., D, ...) with D at axis; y is x's shape */
/* y_i = (x_i - m) - log(sum_j exp(x_j - m)), m = max_j x_j, along axis */
tg_tensor *tg_log_softmax(tg_ctx *c, tg_tensor *x, int axis)
{
    return softmax_op(c, "tg_log_softmax", TG_OP_LOG_SOFTMAX, x, axis);
}

/* sum of g over the node's softmax axis, keepdim (nothing for 0-d) */
static tg_tensor *axis_sum(tg_ctx *c, const tg__node *n, tg_tensor *g)
{
    int ax = (int)n->iv[0];
    return tg_sum_axes(c, g, ax < 0 ? 0 : 1, &ax, true);
}

/* dout, y and dx are x's shape */
/* dx = y * (dout - sum(dout * y, axis)) */
void tg__softmax_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!n->in[0]->requires_grad) return;
    tg_tensor *y = n->out;
    tg_tensor *s = axis_sum(c, n, tg_mul(c, dout, y));
    dx[0] = tg_mul(c, y, tg_sub(c, dout, s));
}

/* dout, y and dx are x's shape */
/* dx = dout - exp(y) * sum(dout, axis), exp(y) = softmax(x) */
void tg__log_softmax_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!n->in[0]->requires_grad) return;
    tg_tensor *s = axis_sum(c, n, dout);
    dx[0] = tg_sub(c, dout, tg_mul(c, tg_exp(c, n->out), s));
}
