/*
 * loss.c - losses as fused ops: mean squared error and softmax cross
 * entropy. Forward and backward side by side.
 *
 * Both forwards are one pass, accumulate in double and sum in fixed blocks
 * whose partials are added in block order, so the loss is bit-identical
 * whatever the thread count. Both backwards are written with ops (sub,
 * mul, scale, softmax), so create_graph gives second derivatives.
 */
#include "ops_impl.h"

#include <math.h>
#include <string.h>

#define MSE_BLOCK 4096 /* elements per partial sum */
#define CE_BLOCK 64    /* rows per partial sum */

/* ====================================================================== */
/* mse_loss                                                               */
/* ====================================================================== */

typedef struct {
    const char *p, *t;
    tg_dtype dt;
    int nd;
    int64_t sz[TG_MAX_DIMS], sp[TG_MAX_DIMS], st[TG_MAX_DIMS]; /* element strides */
    int64_t n;
    double *part;
} mse_plan;

#define SQDIFF_RUN(T)                                                          \
    do {                                                                       \
        const T *a = (const T *)pl->p + op, *b = (const T *)pl->t + ot;        \
        for (int64_t i = 0; i < run; i++) {                                    \
            double d = (double)a[i * sp] - (double)b[i * st];                  \
            acc += d * d;                                                      \
        }                                                                      \
    } while (0)

/* Block b: sum of (p - t)^2 over row-major positions [b*MSE_BLOCK, ...). */
static void mse_task(void *arg, int64_t b0, int64_t b1)
{
    const mse_plan *pl = arg;
    int last = pl->nd - 1;
    int64_t sp = pl->sp[last], st = pl->st[last];
    for (int64_t b = b0; b < b1; b++) {
        int64_t i = b * MSE_BLOCK, end = i + MSE_BLOCK < pl->n ? i + MSE_BLOCK : pl->n;
        int64_t idx[TG_MAX_DIMS], rem = i, op = 0, ot = 0;
        for (int d = last; d >= 0; d--) {
            idx[d] = rem % pl->sz[d];
            rem /= pl->sz[d];
            op += idx[d] * pl->sp[d];
            ot += idx[d] * pl->st[d];
        }
        double acc = 0.0;
        while (i < end) {
            int64_t run = pl->sz[last] - idx[last];
            if (run > end - i) run = end - i;
            if (pl->dt == TG_F32) SQDIFF_RUN(float);
            else SQDIFF_RUN(double);
            i += run;
            idx[last] += run;
            op += run * sp;
            ot += run * st;
            for (int d = last; d > 0 && idx[d] == pl->sz[d]; d--) {
                op -= idx[d] * pl->sp[d];
                ot -= idx[d] * pl->st[d];
                idx[d] = 0;
                idx[d - 1]++;
                op += pl->sp[d - 1];
                ot += pl->st[d - 1];
            }
        }
        pl->part[b] = acc;
    }
}

/* pred and target are (any shape, the same); y is 0-d */
/* y = mean((pred - target)^2); NaN when empty */
tg_tensor *tg_mse_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target)
{
    tg_tensor *in[2] = {pred, target};
    if (!tg__check_inputs(c, "tg_mse_loss", 2, in) ||
        !tg__check_same_dtype(c, "tg_mse_loss", pred, target))
        return NULL;
    bool same = pred->ndim == target->ndim;
    for (int d = 0; same && d < pred->ndim; d++) same = pred->shape[d] == target->shape[d];
    if (!same) {
        char sp[160], st[160];
        tg__fail(c, TG_ERR_SHAPE, "tg_mse_loss: pred %s vs target %s: shapes differ "
                 "(no broadcasting)", tg__fmt_shape(sp, sizeof sp, pred->ndim, pred->shape),
                 tg__fmt_shape(st, sizeof st, target->ndim, target->shape));
        return NULL;
    }
    tg_tensor *y = tg__empty(c, "tg_mse_loss", pred->dtype, 0, NULL);
    if (!y) return NULL;

    mse_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.p = tg__ptr(pred);
    pl.t = tg__ptr(target);
    pl.dt = pred->dtype;
    pl.n = tg__numel(pred->ndim, pred->shape);
    /* Drop size-1 dims and merge dims both operands walk as one. */
    for (int d = 0; d < pred->ndim; d++) {
        int64_t s = pred->shape[d], a = pred->stride[d], b = target->stride[d];
        if (s == 1) continue;
        if (pl.nd > 0 && pl.sp[pl.nd - 1] == a * s && pl.st[pl.nd - 1] == b * s) {
            pl.sz[pl.nd - 1] *= s;
            pl.sp[pl.nd - 1] = a;
            pl.st[pl.nd - 1] = b;
        } else {
            pl.sz[pl.nd] = s;
            pl.sp[pl.nd] = a;
            pl.st[pl.nd] = b;
            pl.nd++;
        }
    }
    if (pl.nd == 0) { /* one element */
        pl.nd = 1;
        pl.sz[0] = 1;
    }
    double loss = NAN; /* 0/0 for an empty input */
    if (pl.n > 0) {
        int64_t nb = (pl.n + MSE_BLOCK - 1) / MSE_BLOCK;
        pl.part = tg__arena_alloc(c, (size_t)nb * sizeof(double));
        if (!pl.part) return NULL;
        int64_t grain = TG__PAR_GRAIN / MSE_BLOCK;
        tg__parallel_for(c, nb, grain > 0 ? grain : 1, mse_task, &pl);
        double s = 0.0;
        for (int64_t b = 0; b < nb; b++) s += pl.part[b];
        loss = s / (double)pl.n;
    }
    if (y->dtype == TG_F32) *(float *)tg__ptr(y) = (float)loss;
    else *(double *)tg__ptr(y) = loss;

    tg__node *n;
    if (tg__record(c, TG_OP_MSE_LOSS, y, 2, in, &n)) return NULL;
    return y;
}

/* dout is 0-d; dpred and dtarget are pred's shape */
/* dpred = (pred - target) * 2/N * dout, dtarget = -dpred */
void tg__mse_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *p = n->in[0], *t = n->in[1];
    double count = (double)tg__numel(p->ndim, p->shape);
    tg_tensor *d = tg_mul(c, tg_sub(c, p, t), tg_scale(c, dout, 2.0 / count));
    if (p->requires_grad) dx[0] = d;
    if (t->requires_grad) dx[1] = tg_neg(c, d);
}

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

/* Block b: sum of the losses of rows [b*CE_BLOCK, ...), in row order. */
static void ce_task(void *arg, int64_t b0, int64_t b1)
{
    const ce_plan *pl = arg;
    for (int64_t b = b0; b < b1; b++) {
        int64_t r = b * CE_BLOCK, end = r + CE_BLOCK < pl->n ? r + CE_BLOCK : pl->n;
        double acc = 0.0;
        for (; r < end; r++) {
            if (pl->dt == TG_F32) CE_ROW(float);
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
