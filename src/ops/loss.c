/*
 * loss.c - losses over a class axis as fused ops: tg_cross_entropy (the
 * core contract: [N, C] logits, mean), and tg_nll_loss and
 * tg_cross_entropy_ex with class weights, ignore_index, label smoothing
 * and mean / sum / none reduction. Forward and backward side by side.
 * (tg_mse_loss lives with the other pointwise losses in losses.c.)
 *
 * Every forward is one pass that accumulates in double and sums in fixed
 * blocks whose partials are added in block order, so the loss is
 * bit-identical whatever the thread count. Every backward is written with
 * ops (mul, sub, softmax) and constant tensors built from the labels, so
 * create_graph gives second derivatives; tg_cross_entropy's, when nothing
 * records it, is one fused pass per row instead. For f32 logits those two
 * tg_cross_entropy kernels take e^(x - max) from fastmath.h's tg__expf
 * (within 3 ulp, vectorised; the sums stay in double), f64 from libm.
 */
#include "fastmath.h"
#include "ops_impl.h"

#include <math.h>
#include <string.h>

#define CE_BLOCK 64    /* rows per partial sum */

/* ====================================================================== */
/* cross_entropy                                                          */
/* ====================================================================== */

typedef struct {
    const char *x, *lab;
    tg_dtype dt;
    int64_t n, cls, xs0, xs1, ls; /* rows, classes, element strides */
    double *part;
} ce_plan;

/* loss of one row: log(sum_j exp(x_j - m)) - (x_label - m), m = max_j x_j */
#define CE_ROW(T)                                                              \
    do {                                                                       \
        const T *xr = (const T *)pl->x + r * pl->xs0;                          \
        int64_t lab = ((const int64_t *)pl->lab)[r * pl->ls];                  \
        double m = -INFINITY;                                                  \
        for (int64_t j = 0; j < pl->cls; j++)                                  \
            if ((double)xr[j * pl->xs1] > m) m = (double)xr[j * pl->xs1];      \
        double s = 0.0;                                                        \
        for (int64_t j = 0; j < pl->cls; j++) s += exp((double)xr[j * pl->xs1] - m); \
        acc += log(s) - ((double)xr[lab * pl->xs1] - m);                       \
    } while (0)

/* One f32 row x of n logits (element stride xs): returns its loss
 * log(sum_j e^(x_j - m)) - (x_lab - m), m = max_j x_j; with o, also writes
 * the row's gradient o_j = e^(x_j - m) g / sum - (j == lab ? g : 0). The
 * max (NaN ignored, as the double path does) and the sum run over
 * TG__NSUM interleaved partials so they vectorise, the partial sums added
 * in a fixed order. */
#define CE_ROW_F32(X)                                                                       \
    do {                                                                                    \
        float mk[TG__NSUM];                                                                 \
        double sk[TG__NSUM] = {0}, s = 0.0;                                                 \
        for (int k = 0; k < TG__NSUM; k++) mk[k] = -INFINITY;                               \
        int64_t j = 0;                                                                      \
        for (; j + TG__NSUM <= n; j += TG__NSUM)                                            \
            for (int k = 0; k < TG__NSUM; k++) mk[k] = X(j + k) > mk[k] ? X(j + k) : mk[k]; \
        for (; j < n; j++) mk[0] = X(j) > mk[0] ? X(j) : mk[0];                             \
        float m = mk[0];                                                                    \
        for (int k = 1; k < TG__NSUM; k++) m = mk[k] > m ? mk[k] : m;                       \
        for (j = 0; j + TG__NSUM <= n; j += TG__NSUM)                                       \
            for (int k = 0; k < TG__NSUM; k++) sk[k] += (double)tg__expf(X(j + k) - m);     \
        for (; j < n; j++) s += (double)tg__expf(X(j) - m);                                 \
        s += tg__sum_parts(sk);                                                             \
        if (o) {                                                                            \
            double q = g / s;                                                               \
            for (j = 0; j < n; j++)                                                         \
                o[j] = (float)((double)tg__expf(X(j) - m) * q - (j == lab ? g : 0.0));      \
        }                                                                                   \
        return log(s) - ((double)X(lab) - (double)m);                                       \
    } while (0)
#define CE_AT1(j) x[j]
#define CE_ATS(j) x[(j) * xs]

/* One f32 row x of n logits (element stride xs): returns its loss
 * log(sum_j e^(x_j - m)) - (x_lab - m), m = max_j x_j; with o, also writes
 * the row's gradient o_j = e^(x_j - m) g / sum - (j == lab ? g : 0). The
 * max (NaN ignored, as the double path does) and the sum run over
 * TG__NSUM interleaved partials so they vectorise, the partial sums added
 * in a fixed order. */
TG__VEC_CLONES static double ce_row_f32(const float *x, int64_t xs, int64_t n, int64_t lab,
                                        float *restrict o, double g)
{
    if (xs == 1) CE_ROW_F32(CE_AT1);
    else CE_ROW_F32(CE_ATS);
}

/* Block b: sum of the losses of rows [b*CE_BLOCK, ...), in row order. */
static void ce_task(void *arg, int64_t b0, int64_t b1)
{
    const ce_plan *pl = arg;
    for (int64_t b = b0; b < b1; b++) {
        int64_t r = b * CE_BLOCK, end = r + CE_BLOCK < pl->n ? r + CE_BLOCK : pl->n;
        double acc = 0.0;
        for (; r < end; r++) {
            if (pl->dt == TG_F32)
                acc += ce_row_f32((const float *)pl->x + r * pl->xs0, pl->xs1, pl->cls,
                                  ((const int64_t *)pl->lab)[r * pl->ls], NULL, 0.0);
            else CE_ROW(double);
        }
        pl->part[b] = acc;
    }
}

/* The first label outside [0, cls), as its row, or -1. */
static int64_t bad_label(const tg_tensor *labels, int64_t cls)
{
    const int64_t *l = (const int64_t *)tg__ptr(labels);
    for (int64_t i = 0; i < labels->shape[0]; i++) {
        int64_t v = l[i * labels->stride[0]];
        if (v < 0 || v >= cls) return i;
    }
    return -1;
}

static void label_fail(tg_ctx *c, const tg_tensor *logits, const tg_tensor *labels,
                       int64_t row)
{
    char sx[160], sl[160];
    int64_t v = ((const int64_t *)tg__ptr(labels))[row * labels->stride[0]];
    tg__fail(c, TG_ERR_INVALID,
             "tg_cross_entropy: logits %s, labels %s: label %lld at row %lld is outside "
             "[0, %lld)", tg__fmt_shape(sx, sizeof sx, logits->ndim, logits->shape),
             tg__fmt_shape(sl, sizeof sl, labels->ndim, labels->shape), (long long)v,
             (long long)row, (long long)logits->shape[1]);
}

/* logits is (N, C), labels is (N,) of TG_I64; y is 0-d */
/* y = mean_i [log(sum_j exp(logits[i,j])) - logits[i, labels[i]]] */
tg_tensor *tg_cross_entropy(tg_ctx *c, tg_tensor *logits, tg_tensor *labels)
{
    tg_tensor *in[2] = {logits, labels};
    if (!tg__check_inputs(c, "tg_cross_entropy", 2, in) ||
        !tg__check_float(c, "tg_cross_entropy", logits))
        return NULL;
    char sx[160], sl[160];
    if (labels->dtype != TG_I64) {
        tg__fail(c, TG_ERR_DTYPE, "tg_cross_entropy: labels %s have dtype %s (i64 needed)",
                 tg__fmt_shape(sl, sizeof sl, labels->ndim, labels->shape),
                 tg_dtype_name(labels->dtype));
        return NULL;
    }
    if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0]) {
        tg__fail(c, TG_ERR_SHAPE,
                 "tg_cross_entropy: logits %s, labels %s: need logits [N,C] and labels [N]",
                 tg__fmt_shape(sx, sizeof sx, logits->ndim, logits->shape),
                 tg__fmt_shape(sl, sizeof sl, labels->ndim, labels->shape));
        return NULL;
    }
    if (logits->shape[0] < 1 || logits->shape[1] < 1) {
        tg__fail(c, TG_ERR_INVALID,
                 "tg_cross_entropy: logits %s: need at least one row and one class",
                 tg__fmt_shape(sx, sizeof sx, logits->ndim, logits->shape));
        return NULL;
    }
    int64_t row = bad_label(labels, logits->shape[1]);
    if (row >= 0) {
        label_fail(c, logits, labels, row);
        return NULL;
    }
    tg_tensor *y = tg__empty(c, "tg_cross_entropy", logits->dtype, 0, NULL);
    if (!y) return NULL;

    ce_plan pl;
    pl.x = tg__ptr(logits);
    pl.lab = tg__ptr(labels);
    pl.dt = logits->dtype;
    pl.n = logits->shape[0];
    pl.cls = logits->shape[1];
    pl.xs0 = logits->stride[0];
    pl.xs1 = logits->stride[1];
    pl.ls = labels->stride[0];
    int64_t nb = (pl.n + CE_BLOCK - 1) / CE_BLOCK;
    pl.part = tg__arena_alloc(c, (size_t)nb * sizeof(double));
    if (!pl.part) return NULL;
    int64_t grain = TG__PAR_GRAIN / (CE_BLOCK * pl.cls);
    tg__parallel_for(c, nb, grain > 0 ? grain : 1, ce_task, &pl);
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += pl.part[b];
    double loss = s / (double)pl.n;
    if (y->dtype == TG_F32) *(float *)tg__ptr(y) = (float)loss;
    else *(double *)tg__ptr(y) = loss;

    tg__node *n;
    if (tg__record(c, TG_OP_CROSS_ENTROPY, y, 2, in, &n)) return NULL;
    return y;
}

/* dlogits = (softmax(logits) - onehot(labels)) * dout / N in one pass per
 * row (max, sum of exp in double, then the row), for a backward that
 * nothing records. */
typedef struct {
    ce_plan pl;
    double g; /* dout / N */
    char *dx; /* contiguous (N, C) */
} ceb_plan;

#define CEB_ROW(T)                                                                    \
    do {                                                                              \
        const T *xr = (const T *)p->pl.x + r * p->pl.xs0;                             \
        T *o = (T *)p->dx + r * p->pl.cls;                                            \
        int64_t lab = ((const int64_t *)p->pl.lab)[r * p->pl.ls];                     \
        double m = -INFINITY, s = 0.0;                                                \
        for (int64_t j = 0; j < p->pl.cls; j++)                                       \
            if ((double)xr[j * p->pl.xs1] > m) m = (double)xr[j * p->pl.xs1];         \
        for (int64_t j = 0; j < p->pl.cls; j++) s += exp((double)xr[j * p->pl.xs1] - m); \
        double k = p->g / s;                                                          \
        for (int64_t j = 0; j < p->pl.cls; j++)                                       \
            o[j] = (T)(exp((double)xr[j * p->pl.xs1] - m) * k - (j == lab ? p->g : 0.0)); \
    } while (0)

static void ceb_task(void *arg, int64_t r0, int64_t r1)
{
    const ceb_plan *p = arg;
    for (int64_t r = r0; r < r1; r++) {
        if (p->pl.dt == TG_F32)
            ce_row_f32((const float *)p->pl.x + r * p->pl.xs0, p->pl.xs1, p->pl.cls,
                       ((const int64_t *)p->pl.lab)[r * p->pl.ls], (float *)p->dx + r * p->pl.cls,
                       p->g);
        else CEB_ROW(double);
    }
}

static void ce_backward_fused(tg_ctx *c, tg_tensor *logits, tg_tensor *labels, tg_tensor *dout,
                              tg_tensor **dx)
{
    tg_tensor *g = tg__empty(c, "tg_cross_entropy", logits->dtype, 2, logits->shape);
    if (!g) return;
    ceb_plan p;
    p.pl.x = tg__ptr(logits);
    p.pl.lab = tg__ptr(labels);
    p.pl.dt = logits->dtype;
    p.pl.n = logits->shape[0];
    p.pl.cls = logits->shape[1];
    p.pl.xs0 = logits->stride[0];
    p.pl.xs1 = logits->stride[1];
    p.pl.ls = labels->stride[0];
    p.pl.part = NULL;
    p.g = tg_item(dout) / (double)p.pl.n;
    p.dx = tg__ptr(g);
    int64_t grain = TG__PAR_GRAIN / p.pl.cls;
    tg__parallel_for(c, p.pl.n, grain > 0 ? grain : 1, ceb_task, &p);
    dx[0] = g;
}

/* dout is 0-d; dlogits is (N, C); labels get no gradient */
/* dlogits = (softmax(logits, 1) - onehot(labels)) * dout / N */
void tg__cross_entropy_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                tg_tensor **dx)
{
    tg_tensor *logits = n->in[0], *labels = n->in[1];
    if (!logits->requires_grad) return;
    int64_t rows = logits->shape[0], cls = logits->shape[1];
    int64_t row = bad_label(labels, cls); /* changed in place since the forward? */
    if (row >= 0) {
        label_fail(c, logits, labels, row);
        return;
    }
    if (!c->grad_enabled) {
        ce_backward_fused(c, logits, labels, dout, dx);
        return;
    }
    /* onehot: a constant of logits' shape and dtype, requiring no grad */
    tg_tensor *onehot = tg__empty(c, "tg_cross_entropy", logits->dtype, 2, logits->shape);
    if (!onehot) return;
    size_t es = tg__esize(onehot->dtype);
    memset(tg__ptr(onehot), 0, (size_t)(rows * cls) * es);
    const int64_t *l = (const int64_t *)tg__ptr(labels);
    for (int64_t i = 0; i < rows; i++) {
        int64_t k = i * cls + l[i * labels->stride[0]];
        if (onehot->dtype == TG_F32) ((float *)tg__ptr(onehot))[k] = 1.0f;
        else ((double *)tg__ptr(onehot))[k] = 1.0;
    }
    tg_tensor *p = tg_softmax(c, logits, 1);
    dx[0] = tg_mul(c, tg_sub(c, p, onehot), tg_scale(c, dout, 1.0 / (double)rows));
}

/* ====================================================================== */
/* Class-axis losses with weights, ignore_index and reductions            */
/* ====================================================================== */


/*
 * input is (N, C, d1..dk), labels (N, d1..dk). A "position" p is an index
 * into labels in row-major order; its class vector is input[n, :, s...].
 */
typedef struct {
    const char *fn;
    const tg_tensor *x, *lab;
    int nd;                     /* labels' ndim */
    int64_t lshape[TG_MAX_DIMS];
    int64_t xst[TG_MAX_DIMS];   /* input element stride of each labels dim */
    int64_t lst[TG_MAX_DIMS];   /* labels element strides */
    int64_t cst, ncls, npos;    /* class stride, C, positions */
    int64_t inner;              /* d1 * ... * dk */
    int64_t ignore;
    const double *w;            /* class weights, NULL: all ones */
    double wsum;                /* sum of the class weights */
    double eps;                 /* label smoothing */
    bool ce;                    /* softmax cross-entropy (else nll) */
    double *loss, *den;         /* per-position loss and weight w[y] (0 if ignored) */
    void *qout, *sout;          /* backward constants, see cls_consts */
} cls_plan;

static void pos_offsets(const cls_plan *pl, int64_t p, int64_t *xo, int64_t *lo)
{
    int64_t x = 0, l = 0;
    for (int d = pl->nd - 1; d >= 0; d--) {
        int64_t i = p % pl->lshape[d];
        p /= pl->lshape[d];
        x += i * pl->xst[d];
        l += i * pl->lst[d];
    }
    *xo = x;
    *lo = l;
}

static inline double xget(const tg_tensor *x, int64_t off)
{
    const char *b = tg__ptr(x);
    return x->dtype == TG_F32 ? (double)((const float *)b)[off] : ((const double *)b)[off];
}

/* Positions [p0, p1): loss and weight of each. */
static void cls_task(void *arg, int64_t p0, int64_t p1)
{
    const cls_plan *pl = arg;
    const int64_t *lab = (const int64_t *)tg__ptr(pl->lab);
    for (int64_t p = p0; p < p1; p++) {
        int64_t xo, lo;
        pos_offsets(pl, p, &xo, &lo);
        int64_t y = lab[lo];
        if (y == pl->ignore) {
            pl->loss[p] = 0.0;
            pl->den[p] = 0.0;
            continue;
        }
        double wy = pl->w ? pl->w[y] : 1.0;
        double v;
        if (!pl->ce) {
            v = -wy * xget(pl->x, xo + y * pl->cst);
        } else {
            /* lse = m + log(sum_c exp(z_c - m)); -lp_c = lse - z_c */
            double m = -INFINITY;
            for (int64_t k = 0; k < pl->ncls; k++) {
                double z = xget(pl->x, xo + k * pl->cst);
                if (z > m) m = z;
            }
            double se = 0.0;
            for (int64_t k = 0; k < pl->ncls; k++) se += exp(xget(pl->x, xo + k * pl->cst) - m);
            double lse = m + log(se);
            v = (1.0 - pl->eps) * wy * (lse - xget(pl->x, xo + y * pl->cst));
            if (pl->eps > 0) {
                double sm = 0.0;
                for (int64_t k = 0; k < pl->ncls; k++)
                    sm += (pl->w ? pl->w[k] : 1.0) * (lse - xget(pl->x, xo + k * pl->cst));
                v += pl->eps / (double)pl->ncls * sm;
            }
        }
        pl->loss[p] = v;
        pl->den[p] = wy;
    }
}


/* The first position whose label is neither ignore_index nor in [0, C),
 * or -1. */
static int64_t cls_bad_label(const cls_plan *pl)
{
    const int64_t *lab = (const int64_t *)tg__ptr(pl->lab);
    for (int64_t p = 0; p < pl->npos; p++) {
        int64_t xo, lo;
        pos_offsets(pl, p, &xo, &lo);
        int64_t y = lab[lo];
        if (y != pl->ignore && (y < 0 || y >= pl->ncls)) return p;
    }
    return -1;
}

static void cls_label_fail(tg_ctx *c, const cls_plan *pl, int64_t p)
{
    char sx[160], sl[160], at[200];
    int64_t xo, lo, idx[TG_MAX_DIMS], q = p;
    pos_offsets(pl, p, &xo, &lo);
    for (int d = pl->nd - 1; d >= 0; d--) {
        idx[d] = q % pl->lshape[d];
        q /= pl->lshape[d];
    }
    tg__fmt_shape(at, sizeof at, pl->nd, idx);
    tg__fail(c, TG_ERR_INVALID,
             "%s: input %s, labels %s: label %lld at %s (row %lld) is outside [0, %lld) and "
             "is not ignore_index %lld", pl->fn,
             tg__fmt_shape(sx, sizeof sx, pl->x->ndim, pl->x->shape),
             tg__fmt_shape(sl, sizeof sl, pl->lab->ndim, pl->lab->shape),
             (long long)((const int64_t *)tg__ptr(pl->lab))[lo], at, (long long)idx[0],
             (long long)pl->ncls, (long long)pl->ignore);
}

/* Checks the inputs and fills the plan (everything but the buffers). */
static bool cls_setup(tg_ctx *c, cls_plan *pl, const char *fn, tg_tensor *x, tg_tensor *lab,
                      tg_tensor *w, tg_reduction r, int64_t ignore, double eps)
{
    tg_tensor *in[2] = {x, lab};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_float(c, fn, x)) return false;
    if (w && (!tg__check_inputs(c, fn, 1, &w) || !tg__check_same_dtype(c, fn, x, w)))
        return false;
    char sx[160], sl[160];
    tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape);
    tg__fmt_shape(sl, sizeof sl, lab->ndim, lab->shape);
    if (lab->dtype != TG_I64) {
        tg__fail(c, TG_ERR_DTYPE, "%s: labels %s have dtype %s (i64 needed)", fn, sl,
                 tg_dtype_name(lab->dtype));
        return false;
    }
    bool ok = x->ndim >= 2 && lab->ndim == x->ndim - 1 && lab->shape[0] == x->shape[0];
    for (int d = 1; ok && d < lab->ndim; d++) ok = lab->shape[d] == x->shape[d + 1];
    if (!ok) {
        tg__fail(c, TG_ERR_SHAPE,
                 "%s: input %s, labels %s: need input [N,C,d1...] and labels [N,d1...]", fn,
                 sx, sl);
        return false;
    }
    if (x->shape[1] < 1) {
        tg__fail(c, TG_ERR_INVALID, "%s: input %s: need at least one class", fn, sx);
        return false;
    }
    if (w && (w->ndim != 1 || w->shape[0] != x->shape[1])) {
        char sw[160];
        tg__fail(c, TG_ERR_SHAPE, "%s: input %s, weights %s: need one weight per class [%lld]",
                 fn, sx, tg__fmt_shape(sw, sizeof sw, w->ndim, w->shape),
                 (long long)x->shape[1]);
        return false;
    }
    if (r != TG_REDUCE_MEAN && r != TG_REDUCE_SUM && r != TG_REDUCE_NONE) {
        tg__fail(c, TG_ERR_INVALID, "%s: input %s: reduction %d not supported (mean, sum or "
                 "none)", fn, sx, (int)r);
        return false;
    }
    if (!(eps >= 0.0 && eps <= 1.0)) {
        tg__fail(c, TG_ERR_INVALID, "%s: input %s: label_smoothing %g outside [0, 1]", fn, sx,
                 eps);
        return false;
    }
    memset(pl, 0, sizeof *pl);
    pl->fn = fn;
    pl->x = x;
    pl->lab = lab;
    pl->nd = lab->ndim;
    pl->ncls = x->shape[1];
    pl->cst = x->stride[1];
    pl->npos = 1;
    pl->inner = 1;
    for (int d = 0; d < lab->ndim; d++) {
        pl->lshape[d] = lab->shape[d];
        pl->lst[d] = lab->stride[d];
        pl->xst[d] = x->stride[d == 0 ? 0 : d + 1];
        pl->npos *= lab->shape[d];
        if (d > 0) pl->inner *= lab->shape[d];
    }
    pl->ignore = ignore;
    pl->eps = eps;
    if (w) {
        double *wv = tg__arena_alloc(c, (size_t)pl->ncls * sizeof(double));
        if (!wv) return false;
        for (int64_t k = 0; k < pl->ncls; k++) {
            wv[k] = tg__get_flat(w, k);
            pl->wsum += wv[k];
        }
        pl->w = wv;
    } else {
        pl->wsum = (double)pl->ncls;
    }
    int64_t bad = cls_bad_label(pl);
    if (bad >= 0) {
        cls_label_fail(c, pl, bad);
        return false;
    }
    return true;
}

/* The forward shared by nll_loss and cross_entropy_ex. */
static tg_tensor *cls_forward(tg_ctx *c, const char *fn, tg_op op, bool ce, tg_tensor *x,
                              tg_tensor *lab, tg_tensor *w, tg_reduction r, int64_t ignore,
                              double eps)
{
    cls_plan pl;
    if (!cls_setup(c, &pl, fn, x, lab, w, r, ignore, eps)) return NULL;
    pl.ce = ce;
    size_t np = (size_t)(pl.npos > 0 ? pl.npos : 1);
    pl.loss = tg__arena_alloc(c, np * sizeof(double));
    pl.den = tg__arena_alloc(c, np * sizeof(double));
    if (!pl.loss || !pl.den) return NULL;
    int64_t grain = TG__PAR_GRAIN / (ce ? 3 * pl.ncls + 1 : 1);
    tg__parallel_for(c, pl.npos, grain > 0 ? grain : 1, cls_task, &pl);

    double total = 0.0, den = 0.0;
    if (!tg__det_sum(c, pl.den, pl.npos, &den)) return NULL;
    tg_tensor *y;
    if (r == TG_REDUCE_NONE) {
        y = tg__empty(c, fn, x->dtype, lab->ndim, lab->shape);
        if (!y) return NULL;
        for (int64_t p = 0; p < pl.npos; p++) {
            if (y->dtype == TG_F32) ((float *)tg__ptr(y))[p] = (float)pl.loss[p];
            else ((double *)tg__ptr(y))[p] = pl.loss[p];
        }
    } else {
        if (!tg__det_sum(c, pl.loss, pl.npos, &total)) return NULL;
        if (r == TG_REDUCE_MEAN) total /= den; /* 0/0 = NaN when all are ignored */
        y = tg__empty(c, fn, x->dtype, 0, NULL);
        if (!y) return NULL;
        if (y->dtype == TG_F32) *(float *)tg__ptr(y) = (float)total;
        else *(double *)tg__ptr(y) = total;
    }
    tg_tensor *in[3] = {x, lab, w};
    tg__node *n;
    if (tg__record(c, op, y, 3, in, &n)) return NULL;
    if (n) {
        n->iv[0] = r;
        n->iv[1] = ignore;
        n->n_iv = 2;
        n->f[0] = eps;
        n->f[1] = den;
    }
    return y;
}

/* Positions [p0, p1): the constants of the backward, in input's dtype,
 * contiguous. q (input's shape) holds the target distribution times its
 * weight, q[c] = (1 - e) w[y] [c == y] + (e / C) w[c] (0 where ignored);
 * for cross-entropy s (labels' shape with a 1 at the class axis) holds its
 * sum (1 - e) w[y] + (e / C) sum_c w[c]. nll stores -q and no s. */
static void cls_const_task(void *arg, int64_t p0, int64_t p1)
{
    const cls_plan *pl = arg;
    const int64_t *lab = (const int64_t *)tg__ptr(pl->lab);
    bool f32 = pl->x->dtype == TG_F32;
    for (int64_t p = p0; p < p1; p++) {
        int64_t xo, lo;
        pos_offsets(pl, p, &xo, &lo);
        int64_t y = lab[lo];
        bool ign = y == pl->ignore;
        int64_t base = (p / pl->inner) * pl->ncls * pl->inner + p % pl->inner;
        double wy = ign ? 0.0 : pl->w ? pl->w[y] : 1.0;
        for (int64_t k = 0; k < pl->ncls; k++) {
            double q = 0.0;
            if (!ign) {
                q = k == y ? (1.0 - pl->eps) * wy : 0.0;
                if (pl->ce && pl->eps > 0)
                    q += pl->eps / (double)pl->ncls * (pl->w ? pl->w[k] : 1.0);
                if (!pl->ce) q = -q;
            }
            int64_t o = base + k * pl->inner;
            if (f32) ((float *)pl->qout)[o] = (float)q;
            else ((double *)pl->qout)[o] = q;
        }
        if (pl->ce) {
            double sv = ign ? 0.0 : (1.0 - pl->eps) * wy + pl->eps / (double)pl->ncls * pl->wsum;
            if (f32) ((float *)pl->sout)[p] = (float)sv;
            else ((double *)pl->sout)[p] = sv;
        }
    }
}

/* Builds the constants q (and s for cross-entropy) of node n; dout scaled
 * for the reduction (0-d, or labels' shape with a 1 inserted at the class
 * axis for none) through *g. False with an error recorded. */
static bool cls_backward_consts(tg_ctx *c, const tg__node *n, const char *fn, bool ce,
                                tg_tensor *dout, tg_tensor **q, tg_tensor **s, tg_tensor **g)
{
    tg_tensor *x = n->in[0], *lab = n->in[1], *w = n->n_in > 2 ? n->in[2] : NULL;
    cls_plan pl;
    /* re-checks the labels (an in-place change since the forward) */
    if (!cls_setup(c, &pl, fn, x, lab, w, (tg_reduction)n->iv[0], n->iv[1], n->f[0]))
        return false;
    pl.ce = ce;
    *q = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!*q) return false;
    pl.qout = tg__ptr(*q);
    int64_t sshape[TG_MAX_DIMS];
    sshape[0] = x->shape[0];
    sshape[1] = 1;
    for (int d = 2; d < x->ndim; d++) sshape[d] = x->shape[d];
    if (ce) {
        *s = tg__empty(c, fn, x->dtype, x->ndim, sshape);
        if (!*s) return false;
        pl.sout = tg__ptr(*s);
    }
    int64_t grain = TG__PAR_GRAIN / (pl.ncls + 1);
    tg__parallel_for(c, pl.npos, grain > 0 ? grain : 1, cls_const_task, &pl);
    switch ((tg_reduction)n->iv[0]) {
    case TG_REDUCE_MEAN: {
        /* PyTorch gives zero gradients when every target is ignored */
        double den = n->f[1];
        *g = tg_scale(c, dout, den != 0.0 ? 1.0 / den : 0.0);
        break;
    }
    case TG_REDUCE_NONE: *g = tg_reshape(c, dout, x->ndim, sshape); break;
    default: *g = dout; break;
    }
    return tg__ok(c) && *g;
}

/* Positions [p0, p1): the one-hot o of the non-ignored labels (input's
 * shape) and the mask m of non-ignored positions ([N, 1, d...]). */
static void cls_onehot_task(void *arg, int64_t p0, int64_t p1)
{
    const cls_plan *pl = arg;
    const int64_t *lab = (const int64_t *)tg__ptr(pl->lab);
    bool f32 = pl->x->dtype == TG_F32;
    for (int64_t p = p0; p < p1; p++) {
        int64_t xo, lo;
        pos_offsets(pl, p, &xo, &lo);
        int64_t y = lab[lo];
        bool ign = y == pl->ignore;
        int64_t base = (p / pl->inner) * pl->ncls * pl->inner + p % pl->inner;
        for (int64_t k = 0; k < pl->ncls; k++) {
            double v = !ign && k == y ? 1.0 : 0.0;
            if (f32) ((float *)pl->qout)[base + k * pl->inner] = (float)v;
            else ((double *)pl->qout)[base + k * pl->inner] = v;
        }
        if (f32) ((float *)pl->sout)[p] = ign ? 0.0f : 1.0f;
        else ((double *)pl->sout)[p] = ign ? 0.0 : 1.0;
    }
}

/*
 * The backward when the class weights require grad (PyTorch has no such
 * gradient; we give it). Everything that depends on w is built with ops
 * from w, so second derivatives through w are right too. With o the
 * one-hot of the labels and m the non-ignored mask (constants), e the
 * smoothing, lp = log_softmax(x, 1) (x itself for nll):
 *   wy = sum_c o w,  q = (1 - e) o wy + (e / C) m w,  s = sum_c q,
 *   l_i = -sum_c q lp = sum_k w_k a_ik,
 *   a = -(1 - e) o sum_c(o lp) - (e / C) m lp.
 * dx is as in the constant path; dw_k = sum_i g_i a_ik for none / sum, and
 * for mean, L = sum_i l_i / D with D = sum_i wy_i:
 *   dw_k = (sum_i a_ik - L n_k) dout / D,  n_k = sum_i o_ik.
 */
static void cls_weighted_backward(tg_ctx *c, const tg__node *n, const char *fn, bool ce,
                                  tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = n->in[0], *lab = n->in[1], *w = n->in[2];
    tg_reduction r = (tg_reduction)n->iv[0];
    double e = n->f[0], den = n->f[1];
    cls_plan pl;
    if (!cls_setup(c, &pl, fn, x, lab, w, r, n->iv[1], e)) return;
    double C = (double)pl.ncls;
    int nd = x->ndim;
    int64_t sshape[TG_MAX_DIMS], wshape[TG_MAX_DIMS];
    int axes[TG_MAX_DIMS], naxes = 0;
    for (int d = 0; d < nd; d++) {
        sshape[d] = d == 1 ? 1 : x->shape[d];
        wshape[d] = d == 1 ? pl.ncls : 1;
        if (d != 1) axes[naxes++] = d;
    }
    tg_tensor *o = tg__empty(c, fn, x->dtype, nd, x->shape);
    tg_tensor *m = tg__empty(c, fn, x->dtype, nd, sshape);
    if (!o || !m) return;
    pl.qout = tg__ptr(o);
    pl.sout = tg__ptr(m);
    int64_t grain = TG__PAR_GRAIN / (pl.ncls + 1);
    tg__parallel_for(c, pl.npos, grain > 0 ? grain : 1, cls_onehot_task, &pl);

    const int one[1] = {1};
    tg_tensor *wb = tg_reshape(c, w, nd, wshape);
    tg_tensor *wy = tg_sum_axes(c, tg_mul(c, o, wb), 1, one, true); /* [N,1,d...] */
    tg_tensor *dsum = NULL, *g;
    if (r == TG_REDUCE_MEAN) {
        dsum = tg_sum(c, wy);
        g = den != 0.0 ? tg_div(c, dout, dsum) : tg_scale(c, dout, 0.0);
    } else if (r == TG_REDUCE_NONE) {
        g = tg_reshape(c, dout, nd, sshape);
    } else {
        g = dout;
    }
    if (x->requires_grad) {
        tg_tensor *qy = tg_mul(c, o, wy);
        if (ce) {
            tg_tensor *q = tg_scale(c, qy, 1.0 - e), *s = tg_scale(c, wy, 1.0 - e);
            if (e > 0) {
                q = tg_add(c, q, tg_scale(c, tg_mul(c, m, wb), e / C));
                s = tg_add(c, s, tg_scale(c, tg_mul(c, m, tg_sum(c, w)), e / C));
            }
            tg_tensor *p = tg_softmax(c, x, 1);
            dx[0] = tg_mul(c, tg_sub(c, tg_mul(c, p, s), q), g);
        } else {
            dx[0] = tg_mul(c, tg_neg(c, qy), g);
        }
    }
    tg_tensor *lp = ce ? tg_log_softmax(c, x, 1) : x;
    tg_tensor *lpy = tg_sum_axes(c, tg_mul(c, o, lp), 1, one, true);
    tg_tensor *a = tg_scale(c, tg_mul(c, o, lpy), -(1.0 - e));
    if (ce && e > 0) a = tg_add(c, a, tg_scale(c, tg_mul(c, m, lp), -e / C));
    if (r == TG_REDUCE_NONE) {
        dx[2] = tg_sum_axes(c, tg_mul(c, a, g), naxes, axes, false);
    } else if (r == TG_REDUCE_SUM) {
        dx[2] = tg_mul(c, tg_sum_axes(c, a, naxes, axes, false), dout);
    } else if (den != 0.0) {
        tg_tensor *cnt = tg_sum_axes(c, o, naxes, axes, false); /* a constant */
        tg_tensor *suma = tg_sum_axes(c, a, naxes, axes, false);
        dx[2] = tg_div(c, tg_mul(c, tg_sub(c, suma, tg_mul(c, cnt, n->out)), dout), dsum);
    } else {
        /* every target ignored: zero, as the logits' gradient */
        dx[2] = tg_scale(c, tg_mul(c, tg_sum_axes(c, a, naxes, axes, false), dout), 0.0);
    }
}

tg_ce_opts tg_ce_defaults(void)
{
    tg_ce_opts o = {TG_REDUCE_MEAN, -100, 0.0};
    return o;
}

/* input is (N, C, d...) log-probabilities, labels (N, d...) of TG_I64,
 * weights (C) or NULL; y is 0-d, or labels' shape for none */
/* y = reduce(-w[y_i] input[i, y_i]) */
tg_tensor *tg_nll_loss(tg_ctx *c, tg_tensor *input, tg_tensor *labels, tg_tensor *weights,
                       tg_reduction r, int64_t ignore_index)
{
    return cls_forward(c, "tg_nll_loss", TG_OP_NLL_LOSS, false, input, labels, weights, r,
                       ignore_index, 0.0);
}
/* dinput = -q * g (q the weighted one-hot of the labels, a constant);
 * with weights requiring grad, see cls_weighted_backward */
void tg__nll_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (n->n_in > 2 && n->in[2] && n->in[2]->requires_grad) {
        cls_weighted_backward(c, n, "tg_nll_loss", false, dout, dx);
        return;
    }
    if (!n->in[0]->requires_grad) return;
    tg_tensor *q, *s = NULL, *g;
    if (!cls_backward_consts(c, n, "tg_nll_loss", false, dout, &q, &s, &g)) return;
    dx[0] = tg_mul(c, q, g); /* q holds -w[y] at the label */
}

/* logits is (N, C, d...), labels (N, d...) of TG_I64, weights (C) or NULL;
 * y is 0-d, or labels' shape for none */
/* y = reduce(sum_c q[i, c] (logsumexp(logits[i]) - logits[i, c])) */
tg_tensor *tg_cross_entropy_ex(tg_ctx *c, tg_tensor *logits, tg_tensor *labels,
                               tg_tensor *weights, const tg_ce_opts *opts)
{
    tg_ce_opts o = opts ? *opts : tg_ce_defaults();
    return cls_forward(c, "tg_cross_entropy_ex", TG_OP_CROSS_ENTROPY_EX, true, logits, labels,
                       weights, o.reduction, o.ignore_index, o.label_smoothing);
}
/* dlogits = (softmax(logits, 1) * s - q) * g, s = sum_c q[c] (constants);
 * with weights requiring grad, see cls_weighted_backward */
void tg__cross_entropy_ex_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                   tg_tensor **dx)
{
    if (n->n_in > 2 && n->in[2] && n->in[2]->requires_grad) {
        cls_weighted_backward(c, n, "tg_cross_entropy_ex", true, dout, dx);
        return;
    }
    if (!n->in[0]->requires_grad) return;
    tg_tensor *q, *s = NULL, *g;
    if (!cls_backward_consts(c, n, "tg_cross_entropy_ex", true, dout, &q, &s, &g)) return;
    tg_tensor *p = tg_softmax(c, n->in[0], 1);
    dx[0] = tg_mul(c, tg_sub(c, tg_mul(c, p, s), q), g);
}
