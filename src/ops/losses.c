/*
 * losses.c - pointwise losses (mse, l1, smooth_l1, huber, bce,
 * bce_with_logits, kl_div) with mean / sum / none reduction, each forward
 * beside its backward.
 *
 * One driver runs them all. The forward evaluates the per-element loss in
 * double with one elementwise kernel (inputs may be strided; pos_weight
 * broadcasts). Reduction none stores it in pred's dtype and shape; the
 * other reductions store it in an f64 scratch that is summed in fixed
 * blocks combined in block order, so the loss is bit-identical whatever
 * the thread count (contiguous operands too few for threads skip the
 * scratch: the values are added in the same blocks as they are made).
 * The backward builds d loss / d pred with ops, from the inputs and from
 * constants (signs, the masks of a piecewise loss), then multiplies by
 * dout scaled for the reduction: create_graph gives second derivatives,
 * and the pieces of a piecewise loss are exact on each side. Without a
 * graph, mse's rule is one fused kernel doing the same operations.
 */
#include "ew_kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#define SUM_BLOCK 4096 /* elements per partial sum */
/* PyTorch's floor of p (1 - p) in the bce gradient: its 1e-12 is a float */
#define BCE_EPS ((double)1e-12f)

/* ====================================================================== */
/* Per-element functions and constants                                    */
/* ====================================================================== */

typedef enum {
    /* losses l(x, t, w) */
    PW_MSE,
    PW_L1,
    PW_SMOOTH_L1, /* a = beta */
    PW_HUBER,     /* a = delta */
    PW_BCE,
    PW_BCE_LOGITS, /* w = pos_weight */
    PW_KL,
    PW_KL_LOG,
    /* constants for backward rules (x, t as given) */
    K_SIGN,      /* sign(x - t), 0 at 0 */
    K_QUAD,      /* |x - t| < a ? b : 0 */
    K_LIN,       /* |x - t| < a ? 0 : b sign(x - t) */
    K_EPS_CORR,  /* x < BCE_EPS ? BCE_EPS - x : 0 (lifts x to max(x, BCE_EPS)) */
    K_LOG_OK,    /* log(x) > -100 ? 1 : 0 */
    K_LOG_NOTOK, /* log(x) > -100 ? 0 : 1 */
    K_LOG_FLOOR, /* log(x) > -100 ? 0 : -100 */
    K_NEG_PART,  /* x < 0 ? 1 : 0 */
    K_SGN_NONNEG /* x >= 0 ? 1 : -1 */
} pw_kind;

typedef struct {
    pw_kind kind;
    double a, b;
    bool in_f32, out_f32, has_w;
    atomic_int bad; /* bce: some pred outside [0, 1] */
} pw_aux;

static inline double sgn(double d) { return d > 0 ? 1.0 : d < 0 ? -1.0 : d; }

/* log(1 + exp(-z)) for any z */
static inline double softplus_neg(double z) { return log1p(exp(-fabs(z))) + fmax(-z, 0.0); }

static inline double pw_eval(pw_aux *ax, double x, double t, double w)
{
    double d = x - t, ad = fabs(d);
    switch (ax->kind) {
    case PW_MSE: return d * d;
    case PW_L1: return ad;
    case PW_SMOOTH_L1: return ad < ax->a ? 0.5 * d * d / ax->a : ad - 0.5 * ax->a;
    case PW_HUBER: return ad < ax->a ? 0.5 * d * d : ax->a * (ad - 0.5 * ax->a);
    case PW_BCE:
        if (!(x >= 0.0 && x <= 1.0)) {
            atomic_store_explicit(&ax->bad, 1, memory_order_relaxed);
            return NAN;
        }
        return (t - 1.0) * fmax(log1p(-x), -100.0) - t * fmax(log(x), -100.0);
    case PW_BCE_LOGITS: return (1.0 - t) * x + (1.0 + (w - 1.0) * t) * softplus_neg(x);
    case PW_KL: return (t == 0.0 ? 0.0 : t * log(t)) - t * x;
    case PW_KL_LOG: return exp(t) * (t - x);
    case K_SIGN: return sgn(d);
    case K_QUAD: return ad < ax->a ? ax->b : 0.0;
    case K_LIN: return ad < ax->a ? 0.0 : ax->b * sgn(d);
    case K_EPS_CORR: return x < BCE_EPS ? BCE_EPS - x : 0.0;
    case K_LOG_OK: return log(x) > -100.0 ? 1.0 : 0.0;
    case K_LOG_NOTOK: return log(x) > -100.0 ? 0.0 : 1.0;
    case K_LOG_FLOOR: return log(x) > -100.0 ? 0.0 : -100.0;
    case K_NEG_PART: return x < 0 ? 1.0 : 0.0;
    case K_SGN_NONNEG: return x >= 0 ? 1.0 : -1.0;
    }
    return NAN;
}

static inline double ld(const char *q, bool f32)
{
    return f32 ? (double)*(const float *)q : *(const double *)q;
}

/* o = l(x, t, w) over a run; operands: out, x, t[, w] */
static void pw_kernel(int64_t n, char **p, const int64_t *s, void *aux)
{
    pw_aux *ax = aux;
    for (int64_t i = 0; i < n; i++) {
        double x = ld(p[1] + i * s[1], ax->in_f32), t = ld(p[2] + i * s[2], ax->in_f32);
        double w = ax->has_w ? ld(p[3] + i * s[3], ax->in_f32) : 1.0;
        double v = pw_eval(ax, x, t, w);
        if (ax->out_f32) *(float *)(p[0] + i * s[0]) = (float)v;
        else *(double *)(p[0] + i * s[0]) = v;
    }
}

/* A constant (not recorded, no grad) of x's shape and dtype: k(x, t), t
 * of x's shape (t == NULL: x itself). */
static tg_tensor *pw_const(tg_ctx *c, const char *fn, pw_kind k, double a, double b,
                           tg_tensor *x, tg_tensor *t)
{
    if (!tg__ok(c) || !x) return NULL;
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    pw_aux ax = {.kind = k, .a = a, .b = b, .in_f32 = x->dtype == TG_F32,
                 .out_f32 = x->dtype == TG_F32};
    atomic_init(&ax.bad, 0);
    tg_tensor *ops[3] = {y, x, t ? t : x};
    tg__ew_apply(c, 3, ops, pw_kernel, &ax);
    return y;
}

/* ====================================================================== */
/* Deterministic sum                                                      */
/* ====================================================================== */

typedef struct {
    const double *v;
    int64_t n;
    double *part;
} sum_plan;

static void sum_task(void *arg, int64_t b0, int64_t b1)
{
    const sum_plan *pl = arg;
    for (int64_t b = b0; b < b1; b++) {
        int64_t i = b * SUM_BLOCK, end = i + SUM_BLOCK < pl->n ? i + SUM_BLOCK : pl->n;
        double acc = 0.0;
        for (; i < end; i++) acc += pl->v[i];
        pl->part[b] = acc;
    }
}

bool tg__det_sum(tg_ctx *c, const double *v, int64_t n, double *out)
{
    *out = 0.0;
    if (n == 0) return true;
    int64_t nb = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    sum_plan pl = {v, n, tg__arena_alloc(c, (size_t)nb * sizeof(double))};
    if (!pl.part) return false;
    int64_t grain = TG__PAR_GRAIN / SUM_BLOCK;
    tg__parallel_for(c, nb, grain > 0 ? grain : 1, sum_task, &pl);
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += pl.part[b];
    *out = s;
    return true;
}

/* The sum of l(x, t) over n contiguous elements of x and t, on this
 * thread: the per-element values of pw_kernel added in tg__det_sum's
 * blocks and order, so the same bits without the f64 scratch tensor. */
static double pw_sum_flat(pw_aux *ax, const char *px, const char *pt, int64_t n)
{
    double s = 0.0;
    for (int64_t b0 = 0; b0 < n; b0 += SUM_BLOCK) {
        int64_t e = n - b0 < SUM_BLOCK ? n : b0 + SUM_BLOCK;
        double acc = 0.0;
        if (ax->in_f32) {
            const float *x = (const float *)(const void *)px, *t = (const float *)(const void *)pt;
            if (ax->kind == PW_MSE) {
                for (int64_t i = b0; i < e; i++) {
                    double d = (double)x[i] - (double)t[i];
                    acc += d * d;
                }
            } else {
                for (int64_t i = b0; i < e; i++) acc += pw_eval(ax, x[i], t[i], 1.0);
            }
        } else {
            const double *x = (const double *)(const void *)px;
            const double *t = (const double *)(const void *)pt;
            for (int64_t i = b0; i < e; i++) acc += pw_eval(ax, x[i], t[i], 1.0);
        }
        s += acc;
    }
    return s;
}

/* ====================================================================== */
/* The driver                                                             */
/* ====================================================================== */

static bool same_shape(const tg_tensor *a, const tg_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

static const char *red_name(tg_reduction r)
{
    switch (r) {
    case TG_REDUCE_MEAN: return "mean";
    case TG_REDUCE_SUM: return "sum";
    case TG_REDUCE_NONE: return "none";
    case TG_REDUCE_BATCHMEAN: return "batchmean";
    }
    return "?";
}

/* The first element of x outside [0, 1] (or NaN), as its position, or -1. */
static int64_t first_outside_unit(const tg_tensor *x)
{
    int64_t n = tg__numel(x->ndim, x->shape);
    for (int64_t i = 0; i < n; i++) {
        double v = tg__get_flat(x, i);
        if (!(v >= 0.0 && v <= 1.0)) return i;
    }
    return -1;
}

/*
 * Checks, evaluates l = kind(x, t[, w]) and reduces it; records op with
 * iv[0] = reduction, iv[1] = flag, f[0] = a. w may be NULL (pos_weight of
 * bce_with_logits, which broadcasts to x's shape; that op always records
 * three inputs, the third NULL when absent).
 */
static tg_tensor *pointwise(tg_ctx *c, const char *fn, tg_op op, pw_kind kind, double a,
                            int64_t flag, tg_tensor *x, tg_tensor *t, tg_tensor *w,
                            tg_reduction r, bool batchmean_ok)
{
    tg_tensor *in[3] = {x, t, w};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, x, t)) return NULL;
    char sx[160], st[160];
    if (!same_shape(x, t)) {
        tg__fail(c, TG_ERR_SHAPE, "%s: pred %s vs target %s: shapes differ (no broadcasting)",
                 fn, tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape),
                 tg__fmt_shape(st, sizeof st, t->ndim, t->shape));
        return NULL;
    }
    if (w) {
        if (!tg__check_inputs(c, fn, 1, &w) || !tg__check_same_dtype(c, fn, x, w)) return NULL;
        int nd;
        int64_t bs[TG_MAX_DIMS];
        bool ok = tg__broadcast_shape(x->ndim, x->shape, w->ndim, w->shape, &nd, bs) &&
                  nd == x->ndim;
        for (int d = 0; ok && d < nd; d++) ok = bs[d] == x->shape[d];
        if (!ok) {
            tg__fail(c, TG_ERR_SHAPE, "%s: logits %s, pos_weight %s: pos_weight must "
                     "broadcast to the logits' shape", fn,
                     tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape),
                     tg__fmt_shape(st, sizeof st, w->ndim, w->shape));
            return NULL;
        }
    }
    if (!(r == TG_REDUCE_MEAN || r == TG_REDUCE_SUM || r == TG_REDUCE_NONE ||
          (r == TG_REDUCE_BATCHMEAN && batchmean_ok))) {
        tg__fail(c, TG_ERR_INVALID, "%s: %s: reduction %d (%s) not supported", fn,
                 tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape), (int)r, red_name(r));
        return NULL;
    }

    bool none = r == TG_REDUCE_NONE;
    int64_t cnt = tg__numel(x->ndim, x->shape);
    pw_aux ax = {.kind = kind, .a = a, .in_f32 = x->dtype == TG_F32,
                 .out_f32 = none && x->dtype == TG_F32, .has_w = w != NULL};
    atomic_init(&ax.bad, 0);
    /* a reduced loss of contiguous operands too small for threads: summed
     * as it is evaluated (pw_sum_flat); otherwise evaluated into e */
    bool flat = !none && !w && cnt < 2 * TG__PAR_GRAIN && tg__contig(x) && tg__contig(t);
    tg_tensor *e = NULL;
    double s = 0.0;
    if (flat) {
        s = pw_sum_flat(&ax, tg__ptr(x), tg__ptr(t), cnt);
    } else {
        e = none ? tg__empty(c, fn, x->dtype, x->ndim, x->shape)
                 : tg__empty(c, fn, TG_F64, x->ndim, x->shape);
        if (!e) return NULL;
        tg_tensor *ops[4] = {e, x, t, w};
        tg__ew_apply(c, w ? 4 : 3, ops, pw_kernel, &ax);
    }
    if (atomic_load(&ax.bad)) {
        int64_t i = first_outside_unit(x);
        tg__fail(c, TG_ERR_INVALID, "%s: pred %s: element %lld is %g, outside [0, 1]", fn,
                 tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape), (long long)i,
                 i >= 0 ? tg__get_flat(x, i) : NAN);
        return NULL;
    }

    tg_tensor *y = e;
    if (!none) {
        if (!flat && !tg__det_sum(c, (const double *)tg__ptr(e), cnt, &s)) return NULL;
        if (r == TG_REDUCE_MEAN) s /= (double)cnt; /* NaN when empty */
        if (r == TG_REDUCE_BATCHMEAN) s /= (double)(x->ndim > 0 ? x->shape[0] : 1);
        y = tg__empty(c, fn, x->dtype, 0, NULL);
        if (!y) return NULL;
        if (y->dtype == TG_F32) *(float *)tg__ptr(y) = (float)s;
        else *(double *)tg__ptr(y) = s;
    }
    tg__node *n;
    if (tg__record(c, op, y, tg_op_arity(op), in, &n)) return NULL;
    if (n) {
        n->iv[0] = r;
        n->iv[1] = flag;
        n->n_iv = 2;
        n->f[0] = a;
    }
    return y;
}

/* dout scaled for the node's reduction: per-element weights of the loss
 * terms (0-d for mean / sum / batchmean, pred's shape for none). */
static tg_tensor *dscale(tg_ctx *c, const tg__node *n, tg_tensor *dout)
{
    const tg_tensor *x = n->in[0];
    switch ((tg_reduction)n->iv[0]) {
    case TG_REDUCE_MEAN: return tg_scale(c, dout, 1.0 / (double)tg__numel(x->ndim, x->shape));
    case TG_REDUCE_BATCHMEAN:
        return tg_scale(c, dout, 1.0 / (double)(x->ndim > 0 ? x->shape[0] : 1));
    default: return dout;
    }
}

#define NEED(i) (n->n_in > (i) && n->in[i] && n->in[i]->requires_grad)

/* dpred = g * s, dtarget = -g * s for losses of d = pred - target */
static void diff_grads(tg_ctx *c, const tg__node *n, tg_tensor *g, tg_tensor *s, tg_tensor **dx)
{
    tg_tensor *d = tg_mul(c, g, s);
    if (NEED(0)) dx[0] = d;
    if (NEED(1)) dx[1] = tg_neg(c, d);
}

/* ====================================================================== */
/* mse_loss                                                               */
/* ====================================================================== */

/* pred and target are (any shape, the same); y is 0-d, or pred's shape for none */
/* y = reduce((pred - target)^2) */
tg_tensor *tg_mse_loss_ex(tg_ctx *c, tg_tensor *pred, tg_tensor *target, tg_reduction r)
{
    return pointwise(c, "tg_mse_loss_ex", TG_OP_MSE_LOSS, PW_MSE, 0, 0, pred, target, NULL, r,
                     false);
}
tg_tensor *tg_mse_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target)
{
    return pointwise(c, "tg_mse_loss", TG_OP_MSE_LOSS, PW_MSE, 0, 0, pred, target, NULL,
                     TG_REDUCE_MEAN, false);
}
/* The composite rule below for a reduced loss, fused (NO_GRAPH): g * s
 * with g = (pred - target) * 2 and s the 0-d scaled dout, as P0 */
EW_BIN_PAIR(k_mse_bw, (A - B) * 2.0f * P0, (A - B) * 2.0 * P0)

/* dpred = 2 (pred - target) * s, dtarget = -dpred */
void tg__mse_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_reduction r = (tg_reduction)n->iv[0];
    if (NO_GRAPH(c) && r != TG_REDUCE_NONE && dout && dout->ndim == 0) {
        /* s as dscale makes it: tg_scale of dout in its dtype, or dout */
        const tg_tensor *x = n->in[0];
        double k = r == TG_REDUCE_MEAN ? 1.0 / (double)tg__numel(x->ndim, x->shape)
                 : r == TG_REDUCE_BATCHMEAN ? 1.0 / (double)(x->ndim > 0 ? x->shape[0] : 1)
                                            : 1.0;
        double dv = tg__get_flat(dout, 0), s;
        if (r == TG_REDUCE_SUM) s = dv;
        else if (dout->dtype == TG_F32) s = (double)((float)dv * (float)k);
        else s = dv * k;
        const double p[4] = {s, 0, 0, 0};
        tg_tensor *d = tg__ew_const2(c, "tg_mse_loss", EW_KP(k_mse_bw), n->in[0], n->in[1], p);
        if (NEED(0)) dx[0] = d;
        if (NEED(1)) dx[1] = tg_neg(c, d);
        return;
    }
    tg_tensor *g = tg_scale(c, tg_sub(c, n->in[0], n->in[1]), 2.0);
    diff_grads(c, n, g, dscale(c, n, dout), dx);
}

/* ====================================================================== */
/* l1_loss                                                                */
/* ====================================================================== */

/* y = reduce(|pred - target|) */
tg_tensor *tg_l1_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, tg_reduction r)
{
    return pointwise(c, "tg_l1_loss", TG_OP_L1_LOSS, PW_L1, 0, 0, pred, target, NULL, r, false);
}
/* dpred = sign(pred - target) * s (a constant sign), dtarget = -dpred */
void tg__l1_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *g = pw_const(c, "tg_l1_loss", K_SIGN, 0, 0, n->in[0], n->in[1]);
    diff_grads(c, n, g, dscale(c, n, dout), dx);
}

/* ====================================================================== */
/* smooth_l1_loss and huber_loss                                          */
/* ====================================================================== */

/* Both are q d^2 / 2 inside |d| < thr and linear outside; their gradient
 * is d * Q + L with the constants Q = [|d| < thr] kq and
 * L = [|d| >= thr] kl sign(d): exact on each side, to any order. */
static tg_tensor *piecewise_grad(tg_ctx *c, const char *fn, const tg__node *n, double thr,
                                 double kq, double kl)
{
    tg_tensor *p = n->in[0], *t = n->in[1];
    tg_tensor *q = pw_const(c, fn, K_QUAD, thr, kq, p, t);
    tg_tensor *l = pw_const(c, fn, K_LIN, thr, kl, p, t);
    return tg_add(c, tg_mul(c, tg_sub(c, p, t), q), l);
}

static bool check_param(tg_ctx *c, const char *fn, const char *what, double v, bool zero_ok)
{
    if (!tg__ok(c)) return false;
    if (isfinite(v) && (v > 0 || (zero_ok && v == 0))) return true;
    tg__fail(c, TG_ERR_INVALID, "%s: %s = %g: must be %s and finite", fn, what, v,
             zero_ok ? ">= 0" : "> 0");
    return false;
}

/* y = reduce(|d| < beta ? d^2 / (2 beta) : |d| - beta / 2), d = pred - target */
tg_tensor *tg_smooth_l1_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, double beta,
                             tg_reduction r)
{
    if (!check_param(c, "tg_smooth_l1_loss", "beta", beta, true)) return NULL;
    return pointwise(c, "tg_smooth_l1_loss", TG_OP_SMOOTH_L1_LOSS, PW_SMOOTH_L1, beta, 0, pred,
                     target, NULL, r, false);
}
/* dpred = (|d| < beta ? d / beta : sign(d)) * s, dtarget = -dpred */
void tg__smooth_l1_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                 tg_tensor **dx)
{
    double beta = n->f[0];
    tg_tensor *g = piecewise_grad(c, "tg_smooth_l1_loss", n, beta, beta > 0 ? 1.0 / beta : 0.0,
                                  1.0);
    diff_grads(c, n, g, dscale(c, n, dout), dx);
}

/* y = reduce(|d| < delta ? d^2 / 2 : delta (|d| - delta / 2)), d = pred - target */
tg_tensor *tg_huber_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, double delta,
                         tg_reduction r)
{
    if (!check_param(c, "tg_huber_loss", "delta", delta, false)) return NULL;
    return pointwise(c, "tg_huber_loss", TG_OP_HUBER_LOSS, PW_HUBER, delta, 0, pred, target, NULL,
                     r, false);
}
/* dpred = (|d| < delta ? d : delta sign(d)) * s, dtarget = -dpred */
void tg__huber_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *g = piecewise_grad(c, "tg_huber_loss", n, n->f[0], 1.0, n->f[0]);
    diff_grads(c, n, g, dscale(c, n, dout), dx);
}

/* ====================================================================== */
/* bce_loss                                                               */
/* ====================================================================== */

/* max(log(u), -100) with ops: log(u m + (1 - m)) - 100 (1 - m) for the
 * constant m = [log(u) > -100], finite everywhere, exact where m = 1. */
static tg_tensor *clamped_log(tg_ctx *c, tg_tensor *u)
{
    const char *fn = "tg_bce_loss";
    tg_tensor *m = pw_const(c, fn, K_LOG_OK, 0, 0, u, NULL);
    tg_tensor *notm = pw_const(c, fn, K_LOG_NOTOK, 0, 0, u, NULL);
    tg_tensor *floor = pw_const(c, fn, K_LOG_FLOOR, 0, 0, u, NULL);
    return tg_add(c, tg_log(c, tg_add(c, tg_mul(c, u, m), notm)), floor);
}

/* pred (probabilities) and target are (any shape, the same) */
/* y = reduce(-(t max(log p, -100) + (1 - t) max(log(1 - p), -100))) */
tg_tensor *tg_bce_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, tg_reduction r)
{
    return pointwise(c, "tg_bce_loss", TG_OP_BCE_LOSS, PW_BCE, 0, 0, pred, target, NULL, r, false);
}
/* dpred = (p - t) / max(p (1 - p), BCE_EPS) * s (PyTorch's),
 * dtarget = (max(log(1 - p), -100) - max(log p, -100)) * s */
void tg__bce_loss_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *p = n->in[0], *t = n->in[1];
    tg_tensor *s = dscale(c, n, dout);
    tg_tensor *one_minus_p = tg_add_scalar(c, tg_neg(c, p), 1.0);
    if (NEED(0)) {
        tg_tensor *den = tg_mul(c, p, one_minus_p);
        den = tg_add(c, den, pw_const(c, "tg_bce_loss", K_EPS_CORR, 0, 0, den, NULL));
        dx[0] = tg_mul(c, tg_div(c, tg_sub(c, p, t), den), s);
    }
    if (NEED(1))
        dx[1] = tg_mul(c, tg_sub(c, clamped_log(c, one_minus_p), clamped_log(c, p)), s);
}

/* ====================================================================== */
/* bce_with_logits                                                        */
/* ====================================================================== */

/* softplus(-z) = log(1 + exp(-z)) with ops, stable: with the constants
 * m = [z < 0] and g = (z >= 0 ? 1 : -1), -z m + log(1 + exp(-z g)); each
 * side is the analytic formula, so every derivative is exact. */
static tg_tensor *softplus_neg_op(tg_ctx *c, tg_tensor *z)
{
    const char *fn = "tg_bce_with_logits";
    tg_tensor *m = pw_const(c, fn, K_NEG_PART, 0, 0, z, NULL);
    tg_tensor *g = pw_const(c, fn, K_SGN_NONNEG, 0, 0, z, NULL);
    tg_tensor *e = tg_exp(c, tg_neg(c, tg_mul(c, z, g)));
    return tg_sub(c, tg_log(c, tg_add_scalar(c, e, 1.0)), tg_mul(c, z, m));
}

/* logits and target are (any shape, the same); pos_weight broadcasts to it */
/* y = reduce((1 - t) z + (1 + (pw - 1) t) softplus(-z)) */
tg_tensor *tg_bce_with_logits(tg_ctx *c, tg_tensor *logits, tg_tensor *target,
                              tg_tensor *pos_weight, tg_reduction r)
{
    return pointwise(c, "tg_bce_with_logits", TG_OP_BCE_WITH_LOGITS, PW_BCE_LOGITS, 0, 0, logits,
                     target, pos_weight, r, false);
}
/* with w = 1 + (pw - 1) t:  dz = (w sigmoid(z) - pw t) * s,
 * dt = (-z + (pw - 1) softplus(-z)) * s,  dpw = t softplus(-z) * s
 * (without pos_weight: dz = (sigmoid(z) - t) * s, dt = -z * s) */
void tg__bce_with_logits_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                  tg_tensor **dx)
{
    tg_tensor *z = n->in[0], *t = n->in[1], *pw = n->n_in > 2 ? n->in[2] : NULL;
    tg_tensor *s = dscale(c, n, dout);
    tg_tensor *sp = (NEED(2) || (pw && NEED(1))) ? softplus_neg_op(c, z) : NULL;
    if (NEED(0)) {
        tg_tensor *sig = tg_sigmoid(c, z);
        tg_tensor *g;
        if (pw) {
            tg_tensor *w = tg_add_scalar(c, tg_mul(c, tg_add_scalar(c, pw, -1.0), t), 1.0);
            g = tg_sub(c, tg_mul(c, w, sig), tg_mul(c, pw, t));
        } else {
            g = tg_sub(c, sig, t);
        }
        dx[0] = tg_mul(c, g, s);
    }
    if (NEED(1)) {
        tg_tensor *g = tg_neg(c, z);
        if (pw) g = tg_add(c, g, tg_mul(c, tg_add_scalar(c, pw, -1.0), sp));
        dx[1] = tg_mul(c, g, s);
    }
    if (NEED(2)) dx[2] = tg_mul(c, tg_mul(c, t, sp), s);
}

/* ====================================================================== */
/* kl_div                                                                 */
/* ====================================================================== */

/* input (log-probabilities) and target are (any shape, the same) */
/* y = reduce(t (log t - input)), or reduce(exp(t) (t - input)) with log_target */
tg_tensor *tg_kl_div(tg_ctx *c, tg_tensor *input, tg_tensor *target, tg_reduction r,
                     bool log_target)
{
    return pointwise(c, "tg_kl_div", TG_OP_KL_DIV, log_target ? PW_KL_LOG : PW_KL, 0,
                     log_target, input, target, NULL, r, true);
}
/* dinput = -t * s, dtarget = (log t + 1 - input) * s;
 * log_target: dinput = -exp(t) * s, dtarget = exp(t) (t - input + 1) * s */
void tg__kl_div_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = n->in[0], *t = n->in[1];
    tg_tensor *s = dscale(c, n, dout);
    if (n->iv[1]) {
        tg_tensor *et = tg_exp(c, t);
        if (NEED(0)) dx[0] = tg_neg(c, tg_mul(c, et, s));
        if (NEED(1)) dx[1] = tg_mul(c, tg_mul(c, et, tg_add_scalar(c, tg_sub(c, t, x), 1.0)), s);
    } else {
        if (NEED(0)) dx[0] = tg_neg(c, tg_mul(c, t, s));
        if (NEED(1)) dx[1] = tg_mul(c, tg_sub(c, tg_add_scalar(c, tg_log(c, t), 1.0), x), s);
    }
}
