/*
 * stats.c - reductions over chosen axes beyond sum and mean: prod, var,
 * std, logsumexp and the p-norm, each forward beside its backward, plus
 * the deterministic fold they (and select.c's max/min/argmax/argmin) run
 * on, and the constant-tensor helpers their backward rules share.
 *
 * The fold (reduce_impl.h): every output is folded over its reduced
 * elements in row-major order, cut into blocks of FOLD_BLOCK elements whose
 * results are combined in block order; the order depends only on the
 * logical shape, so results are bit-identical whatever the thread count or
 * the input's strides. f32 inputs are folded in double.
 *
 * Node arguments of every op here: iv[0] = bitmask of the reduced axes of
 * the input, iv[1] = keepdim (0 or 1), n_iv = 2; f[0] = the correction
 * (var, std) or p (norm).
 */
#include "reduce_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FOLD_BLOCK 4096 /* reduced elements per block; fixes the order */

/* ====================================================================== */
/* The fold                                                               */
/* ====================================================================== */

typedef struct {
    const char *base; /* tg__ptr(x) */
    tg_dtype dt;
    int nk, nr;
    int64_t ksz[TG_MAX_DIMS], kst[TG_MAX_DIMS];
    int64_t rsz[TG_MAX_DIMS], rst[TG_MAX_DIMS];
    int64_t O, R, nb;
    const tg__fold_spec *s;
    double *val;
    int64_t *idx;
    double *pv;  /* O * nb block values (nb > 1) */
    int64_t *pi; /* O * nb block positions (nb > 1, arg kinds) */
} fold_plan;

static inline double fold_xf(const tg__fold_spec *s, double x, double ctr)
{
    switch (s->xf) {
    case TG__XF_ID: return x;
    case TG__XF_SQDEV: {
        double d = x - ctr;
        return d * d;
    }
    case TG__XF_EXP: return exp(x - ctr);
    case TG__XF_ABS: return fabs(x);
    case TG__XF_ABSPOW: {
        if (!(ctr > 0) || isinf(ctr)) return 0.0;
        double a = fabs(x) / ctr;
        return s->p == 2 ? a * a : pow(a, s->p);
    }
    }
    return x;
}

static double fold_init(tg__fold_kind k)
{
    switch (k) {
    case TG__FOLD_SUM: return 0.0;
    case TG__FOLD_PROD: return 1.0;
    case TG__FOLD_MAX:
    case TG__FOLD_ARGMAX: return -INFINITY;
    case TG__FOLD_MIN:
    case TG__FOLD_ARGMIN: return INFINITY;
    }
    return 0.0;
}

/* Folds value v found at position r into (acc, ai). Strict comparisons
 * keep the first position on ties; once acc is NaN it stays. */
static inline void fold_step(tg__fold_kind k, double *acc, int64_t *ai, double v, int64_t r)
{
    switch (k) {
    case TG__FOLD_SUM: *acc += v; break;
    case TG__FOLD_PROD: *acc *= v; break;
    case TG__FOLD_MAX:
    case TG__FOLD_ARGMAX:
        if (!isnan(*acc) && (v > *acc || isnan(v))) {
            *acc = v;
            *ai = r;
        }
        break;
    case TG__FOLD_MIN:
    case TG__FOLD_ARGMIN:
        if (!isnan(*acc) && (v < *acc || isnan(v))) {
            *acc = v;
            *ai = r;
        }
        break;
    }
}

/* Tight loops for the common (kind, transform) pairs: v is the element in
 * double, a and at the running value and position. */
#define XF_ID (void)0
#define XF_SQDEV v = (v - ctr) * (v - ctr)
#define XF_EXP v = exp(v - ctr)
#define XF_ABS v = fabs(v)
#define ST_SUM a += v
#define ST_PROD a *= v
#define ST_MAX                                                       \
    if (!(v <= a) && !isnan(a)) { /* v > a, or v is the first NaN */ \
        a = v;                                                       \
        at = r + i;                                                  \
    }
#define ST_MIN                    \
    if (!(v >= a) && !isnan(a)) { \
        a = v;                    \
        at = r + i;               \
    }
#define FOLD_LOOP(T, XF, ST)                          \
    do {                                              \
        const T *x = (const T *)p->base + koff + off; \
        for (int64_t i = 0; i < run; i++) {           \
            double v = (double)x[i * st];             \
            XF;                                       \
            ST;                                       \
        }                                             \
    } while (0)
#define FOLD_CODE(k, x) ((int)(k)*8 + (int)(x))
#define FOLD_DISPATCH(T)                                                               \
    switch (FOLD_CODE(s->kind, s->xf)) {                                               \
    case FOLD_CODE(TG__FOLD_SUM, TG__XF_ID): FOLD_LOOP(T, XF_ID, ST_SUM); break;       \
    case FOLD_CODE(TG__FOLD_SUM, TG__XF_SQDEV): FOLD_LOOP(T, XF_SQDEV, ST_SUM); break; \
    case FOLD_CODE(TG__FOLD_SUM, TG__XF_EXP): FOLD_LOOP(T, XF_EXP, ST_SUM); break;     \
    case FOLD_CODE(TG__FOLD_SUM, TG__XF_ABS): FOLD_LOOP(T, XF_ABS, ST_SUM); break;     \
    case FOLD_CODE(TG__FOLD_PROD, TG__XF_ID): FOLD_LOOP(T, XF_ID, ST_PROD); break;     \
    case FOLD_CODE(TG__FOLD_MAX, TG__XF_ID):                                           \
    case FOLD_CODE(TG__FOLD_ARGMAX, TG__XF_ID): FOLD_LOOP(T, XF_ID, ST_MAX); break;    \
    case FOLD_CODE(TG__FOLD_MAX, TG__XF_ABS): FOLD_LOOP(T, XF_ABS, ST_MAX); break;     \
    case FOLD_CODE(TG__FOLD_MIN, TG__XF_ID):                                           \
    case FOLD_CODE(TG__FOLD_ARGMIN, TG__XF_ID): FOLD_LOOP(T, XF_ID, ST_MIN); break;    \
    default: {                                                                         \
        const T *x = (const T *)p->base + koff + off;                                  \
        for (int64_t i = 0; i < run; i++)                                              \
            fold_step(s->kind, &a, &at, fold_xf(s, (double)x[i * st], ctr), r + i);    \
    }                                                                                  \
    }

/* Block b of output o into (acc, ai). */
static void fold_block(const fold_plan *p, int64_t o, int64_t b, double *acc, int64_t *ai)
{
    int64_t kidx[TG_MAX_DIMS], idx[TG_MAX_DIMS];
    int64_t koff = tg__red_unravel(p->nk, p->ksz, p->kst, o, kidx);
    int64_t r = b * FOLD_BLOCK, rend = r + FOLD_BLOCK < p->R ? r + FOLD_BLOCK : p->R;
    int64_t off = tg__red_unravel(p->nr, p->rsz, p->rst, r, idx);
    int last = p->nr - 1;
    const tg__fold_spec *s = p->s;
    double ctr = s->ctr ? s->ctr[o] : 0.0;
    double a = fold_init(s->kind);
    int64_t at = r;
    while (r < rend) {
        int64_t run = p->rsz[last] - idx[last];
        if (run > rend - r) run = rend - r;
        int64_t st = p->rst[last];
        if (p->dt == TG_F32) {
            FOLD_DISPATCH(float)
        } else {
            FOLD_DISPATCH(double)
        }
        r += run;
        idx[last] += run;
        off += run * st;
        tg__red_carry(p->nr, p->rsz, p->rst, idx, &off);
    }
    *acc = a;
    *ai = at;
}

static void fold_task(void *arg, int64_t t0, int64_t t1)
{
    const fold_plan *p = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / p->nb, b = t % p->nb;
        double a;
        int64_t ai;
        fold_block(p, o, b, &a, &ai);
        if (p->nb == 1) {
            if (p->val) p->val[o] = a;
            if (p->idx) p->idx[o] = ai;
        } else {
            p->pv[t] = a;
            p->pi[t] = ai;
        }
    }
}

/* Block results of each output combined in block order. */
static void fold_combine(void *arg, int64_t o0, int64_t o1)
{
    const fold_plan *p = arg;
    tg__fold_kind k = p->s->kind;
    for (int64_t o = o0; o < o1; o++) {
        double a = p->pv[o * p->nb];
        int64_t ai = p->pi[o * p->nb];
        for (int64_t b = 1; b < p->nb; b++) {
            double v = p->pv[o * p->nb + b];
            if (k == TG__FOLD_SUM) a += v;
            else if (k == TG__FOLD_PROD) a *= v;
            else fold_step(k, &a, &ai, v, p->pi[o * p->nb + b]);
        }
        if (p->val) p->val[o] = a;
        if (p->idx) p->idx[o] = ai;
    }
}

bool tg__fold(tg_ctx *c, const tg_tensor *x, uint32_t mask, const tg__fold_spec *s, double *val,
              int64_t *idx)
{
    fold_plan p;
    memset(&p, 0, sizeof p);
    p.base = tg__ptr(x);
    p.dt = x->dtype;
    p.s = s;
    p.val = val;
    p.idx = idx;
    p.O = 1;
    p.R = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (mask >> d & 1u) p.R *= x->shape[d];
        else p.O *= x->shape[d];
    }
    TG_ASSERT(p.R >= 1);
    if (p.O == 0) return true;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (mask >> d & 1u) tg__red_push_dim(&p.nr, p.rsz, p.rst, x->shape[d], x->stride[d]);
        else tg__red_push_dim(&p.nk, p.ksz, p.kst, x->shape[d], x->stride[d]);
    }
    if (p.nr == 0) { /* one element per output */
        p.nr = 1;
        p.rsz[0] = 1;
        p.rst[0] = 0;
    }
    p.nb = (p.R + FOLD_BLOCK - 1) / FOLD_BLOCK;
    if (p.nb > 1) {
        if ((uint64_t)p.O > SIZE_MAX / 16 / (uint64_t)p.nb) {
            tg__fail(c, TG_ERR_NOMEM, "reduction: scratch too large");
            return false;
        }
        p.pv = tg__arena_alloc(c, (size_t)(p.O * p.nb) * sizeof(double));
        p.pi = tg__arena_alloc(c, (size_t)(p.O * p.nb) * sizeof(int64_t));
        if (!p.pv || !p.pi) return false;
    }
    int64_t per = p.R < FOLD_BLOCK ? p.R : FOLD_BLOCK;
    int64_t grain = TG__PAR_GRAIN / per;
    tg__parallel_for(c, p.O * p.nb, grain > 0 ? grain : 1, fold_task, &p);
    if (p.nb > 1) {
        grain = TG__PAR_GRAIN / p.nb;
        tg__parallel_for(c, p.O, grain > 0 ? grain : 1, fold_combine, &p);
    }
    return true;
}

/* ====================================================================== */
/* Shared forward pieces                                                  */
/* ====================================================================== */

tg_tensor *tg__red_prepare(tg_ctx *c, const char *fn, tg_tensor *x, int naxes, const int *axes,
                           bool keepdim, tg_dtype ydt, uint32_t *mask, int64_t *R)
{
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    if (!tg__axes_mask(c, fn, x, naxes, axes, false, mask)) return NULL;
    int64_t r = 1;
    for (int d = 0; d < x->ndim; d++)
        if (*mask >> d & 1u) r *= x->shape[d];
    if (r == 0) {
        char b[160];
        tg__fail(c, TG_ERR_INVALID, "%s: %s: empty reduction (a reduced axis has size 0)", fn,
                 tg__fmt_shape(b, sizeof b, x->ndim, x->shape));
        return NULL;
    }
    *R = r;
    int64_t shape[TG_MAX_DIMS];
    int nd = tg__reduced_shape(x, *mask, keepdim, shape);
    return tg__empty(c, fn, ydt, nd, shape);
}

double *tg__red_scratch(tg_ctx *c, const tg_tensor *y)
{
    int64_t n = tg__numel(y->ndim, y->shape);
    return tg__arena_alloc(c, (size_t)(n > 0 ? n : 1) * sizeof(double));
}

void tg__red_store(tg_tensor *y, const double *v)
{
    int64_t n = tg__numel(y->ndim, y->shape);
    if (y->dtype == TG_F32) {
        float *o = (float *)tg__ptr(y);
        for (int64_t i = 0; i < n; i++) o[i] = (float)v[i];
    } else {
        double *o = (double *)tg__ptr(y);
        for (int64_t i = 0; i < n; i++) o[i] = v[i];
    }
}

bool tg__red_record(tg_ctx *c, tg_op op, tg_tensor *y, tg_tensor *x, uint32_t mask, bool keepdim,
                    double f0)
{
    tg__node *n;
    if (tg__record(c, op, y, 1, &x, &n)) return false;
    if (n) {
        n->iv[0] = mask;
        n->iv[1] = keepdim;
        n->n_iv = 2;
        n->f[0] = f0;
    }
    return true;
}

/* ====================================================================== */
/* Constant tensors for backward rules                                    */
/* ====================================================================== */

/* Constants are made inside backward rules: keep naming the public function
 * that is running (tg_backward, tg_grad_of) in out-of-memory messages. */
static const char *api_of(const tg_ctx *c) { return c && c->api ? c->api : "backward"; }

double *tg__const_doubles(tg_ctx *c, const tg_tensor *t)
{
    tg_tensor *d = tg__empty(c, api_of(c), TG_F64, t->ndim, t->shape);
    if (!d) return NULL;
    tg__copy_strided(c, d, t);
    return (double *)tg__ptr(d);
}

tg_tensor *tg__const_from(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, const double *v)
{
    tg_tensor *t = tg__empty(c, api_of(c), dt, ndim, shape);
    if (t) tg__red_store(t, v);
    return t;
}

double *tg__const_spread(tg_ctx *c, const tg_tensor *x, uint32_t mask, const tg_tensor *t)
{
    /* t is contiguous with the reduced shape; as keepdim strides with 0
     * on the reduced axes it is a view of x's shape */
    int64_t ks[TG_MAX_DIMS], st[TG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ks[d] = mask >> d & 1u ? 1 : x->shape[d];
    tg__contig_strides(x->ndim, ks, st);
    for (int d = 0; d < x->ndim; d++)
        if (mask >> d & 1u) st[d] = 0;
    tg_tensor *v = tg__view(c, t, x->ndim, x->shape, st, t->offset);
    if (!v) return NULL;
    return tg__const_doubles(c, v);
}

/* The backward rules below read the node like this. */
#define NODE_X (n->in[0])
#define NODE_MASK ((uint32_t)n->iv[0])
#define NODE_KEEP (n->iv[1] != 0)

/* dout spread to x's shape (recorded when dout requires grad). */
static tg_tensor *spread(tg_ctx *c, const tg__node *n, tg_tensor *g)
{
    return tg__red_spread(c, NODE_X, NODE_MASK, NODE_KEEP, g);
}

/* The axes of mask as a list; returns their count. */
static int mask_axes(uint32_t mask, int ndim, int *axes)
{
    int k = 0;
    for (int d = 0; d < ndim; d++)
        if (mask >> d & 1u) axes[k++] = d;
    return k;
}

/* 0/1 constant of t's shape: 1 where t == 0. */
static tg_tensor *zero_mask(tg_ctx *c, const tg_tensor *t)
{
    double *v = tg__const_doubles(c, t);
    if (!v) return NULL;
    int64_t N = tg__numel(t->ndim, t->shape);
    for (int64_t i = 0; i < N; i++) v[i] = v[i] == 0.0 ? 1.0 : 0.0;
    return tg__const_from(c, t->dtype, t->ndim, t->shape, v);
}

/* 1 / t where t != 0 and 0 where t == 0, differentiable in t:
 * (1 - z) / (t + z) with z the constant zero mask of t. */
static tg_tensor *safe_recip(tg_ctx *c, tg_tensor *t)
{
    if (!tg__ok(c)) return NULL;
    tg_tensor *z = zero_mask(c, t);
    if (!z) return NULL;
    return tg_div(c, tg_add_scalar(c, tg_neg(c, z), 1.0), tg_add(c, t, z));
}

/* ====================================================================== */
/* prod                                                                   */
/* ====================================================================== */

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y[kept] = product over the reduced axes of x */
tg_tensor *tg_prod_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim)
{
    const char *fn = "tg_prod_axes";
    uint32_t mask;
    int64_t R;
    tg_tensor *y =
        tg__red_prepare(c, fn, x, naxes, axes, keepdim, x ? x->dtype : TG_F32, &mask, &R);
    if (!y) return NULL;
    double *v = tg__red_scratch(c, y);
    tg__fold_spec s = {TG__FOLD_PROD, TG__XF_ID, 0, NULL};
    if (!v || !tg__fold(c, x, mask, &s, v, NULL)) return NULL;
    tg__red_store(y, v);
    return tg__red_record(c, TG_OP_PROD, y, x, mask, keepdim, 0) ? y : NULL;
}

/*
 * dout is y's shape; dx is x's shape. dx_k = dout * prod_{j != k} x_j,
 * never by dividing by a zero. Without zeros in x: dout * y / x. With
 * zeros, per reduced set with zero set Z (z = |Z|), W = the product of its
 * non-zero elements and pZ = prod_{j in Z} x_j:
 *   k not in Z:  dout * W * pZ / x_k
 *   k in Z:      dout * W * (1 if z == 1, sum_{j in Z} x_j - x_k if z == 2, 0 if z > 2)
 * W, pZ and the sums are built from x with ops (the zero positions masked
 * by constants), so the values are exact and the result is differentiable:
 * second derivatives are exact too, at zeros included. y is the product
 * over each set, spread to x's shape.
 */
static tg_tensor *prod_grad(tg_ctx *c, const tg__node *n, tg_tensor *x, tg_tensor *y,
                            tg_tensor *g)
{
    uint32_t mask = NODE_MASK;
    int axes[TG_MAX_DIMS];
    int na = mask_axes(mask, x->ndim, axes);
    int64_t N = tg__numel(x->ndim, x->shape);
    tg_tensor *zm = zero_mask(c, x);
    if (!zm) return NULL;
    double *z = tg__const_doubles(c, zm);
    if (!z) return NULL;
    int64_t nz = 0;
    for (int64_t i = 0; i < N; i++) nz += z[i] != 0.0;
    if (nz == 0) return tg_div(c, tg_mul(c, g, y), x);
    /* per-set zero counts, spread to x's shape; c1 = [z == 1], c2 = [z == 2] */
    tg_tensor *cnt = tg_sum_axes(c, zm, na, axes, NODE_KEEP);
    if (!cnt) return NULL;
    double *cs = tg__const_spread(c, x, mask, cnt);
    double *c1 = tg__arena_alloc(c, (size_t)N * sizeof(double));
    double *c2 = tg__arena_alloc(c, (size_t)N * sizeof(double));
    double *kp = tg__arena_alloc(c, (size_t)N * sizeof(double));
    if (!cs || !c1 || !c2 || !kp) return NULL;
    for (int64_t i = 0; i < N; i++) {
        c1[i] = cs[i] == 1.0;
        c2[i] = cs[i] == 2.0;
        kp[i] = 1.0 - z[i];
    }
    tg_tensor *C1 = tg__const_from(c, x->dtype, x->ndim, x->shape, c1);
    tg_tensor *C2 = tg__const_from(c, x->dtype, x->ndim, x->shape, c2);
    tg_tensor *keep = tg__const_from(c, x->dtype, x->ndim, x->shape, kp);
    if (!C1 || !C2 || !keep) return NULL;
    tg_tensor *xz = tg_mul(c, x, zm);                  /* x on Z, 0 elsewhere */
    tg_tensor *xr = tg_add(c, tg_mul(c, x, keep), zm); /* x off Z, 1 on Z */
    tg_tensor *W = spread(c, n, tg_prod_axes(c, xr, na, axes, NODE_KEEP));
    tg_tensor *pZ = spread(c, n, tg_prod_axes(c, tg_add(c, xz, keep), na, axes, NODE_KEEP));
    tg_tensor *sZ = spread(c, n, tg_sum_axes(c, xz, na, axes, NODE_KEEP));
    tg_tensor *off_z = tg_div(c, tg_mul(c, keep, pZ), xr);
    tg_tensor *on_z = tg_mul(c, zm, tg_add(c, C1, tg_mul(c, C2, tg_sub(c, sZ, x))));
    return tg_mul(c, g, tg_mul(c, W, tg_add(c, off_z, on_z)));
}

/* The per-set sum of the 0/1 marks v (x's shape), spread back to x's shape. */
static double *set_count(tg_ctx *c, const tg__node *n, tg_tensor *x, double *v)
{
    int axes[TG_MAX_DIMS];
    int na = mask_axes(NODE_MASK, x->ndim, axes);
    tg_tensor *t = tg__const_from(c, TG_F64, x->ndim, x->shape, v);
    tg_tensor *s = t ? tg_sum_axes(c, t, na, axes, NODE_KEEP) : NULL;
    return s ? tg__const_spread(c, x, NODE_MASK, s) : NULL;
}

/*
 * Sets holding an infinity or a NaN: prod_{j != k} x_j by IEEE rules (as
 * torch: [inf, 0, 2] gives [0, inf, NaN], [inf, 3, 2] gives 6 at the inf),
 * from per-set counts of zeros, infinities (and negative ones) and NaNs
 * and the product F of the finite non-zero values; a constant, since the
 * derivative of a product through an infinity is not defined. The other
 * sets go through prod_grad on x with these sets replaced by ones, so they
 * keep exact second derivatives.
 */
void tg__prod_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NODE_X->requires_grad) return;
    tg_tensor *x = NODE_X;
    int64_t N = tg__numel(x->ndim, x->shape);
    tg_tensor *g = spread(c, n, dout);
    double *xv = tg__const_doubles(c, x);
    if (!g || !xv) return;
    int64_t nnf = 0;
    for (int64_t i = 0; i < N; i++) nnf += !isfinite(xv[i]);
    if (nnf == 0) {
        dx[0] = prod_grad(c, n, x, spread(c, n, n->out), g);
        return;
    }
    size_t bytes = (size_t)N * sizeof(double);
    double *m[5];
    for (int k = 0; k < 5; k++)
        if (!(m[k] = tg__arena_alloc(c, bytes))) return;
    double *fin = tg__arena_alloc(c, bytes);
    if (!fin) return;
    for (int64_t i = 0; i < N; i++) {
        double v = xv[i];
        m[0][i] = !isfinite(v);
        m[1][i] = v == 0.0;
        m[2][i] = isinf(v) != 0; /* glibc: -1 for -inf */
        m[3][i] = isinf(v) && v < 0;
        m[4][i] = isnan(v) != 0;
        fin[i] = isfinite(v) && v != 0.0 ? v : 1.0;
    }
    double *cnt[5];
    for (int k = 0; k < 5; k++)
        if (!(cnt[k] = set_count(c, n, x, m[k]))) return;
    int axes[TG_MAX_DIMS];
    int na = mask_axes(NODE_MASK, x->ndim, axes);
    tg_tensor *ft = tg__const_from(c, TG_F64, x->ndim, x->shape, fin);
    tg_tensor *fs = ft ? tg_prod_axes(c, ft, na, axes, NODE_KEEP) : NULL;
    double *F = fs ? tg__const_spread(c, x, NODE_MASK, fs) : NULL;
    double *e = tg__arena_alloc(c, bytes), *bad = tg__arena_alloc(c, bytes);
    if (!F || !e || !bad) return;
    for (int64_t i = 0; i < N; i++) {
        double v = xv[i];
        bad[i] = cnt[0][i] > 0;
        /* the others: counts without element i, F without its factor */
        double zeros = cnt[1][i] - m[1][i], infs = cnt[2][i] - m[2][i];
        double neg = cnt[3][i] - m[3][i], nans = cnt[4][i] - m[4][i];
        double f = isfinite(v) && v != 0.0 ? F[i] / v : F[i];
        if (nans > 0 || (zeros > 0 && infs > 0)) e[i] = NAN;
        else if (zeros > 0) e[i] = 0.0;
        else if (infs > 0) e[i] = (f < 0) != (fmod(neg, 2.0) == 1.0) ? -INFINITY : INFINITY;
        else e[i] = f;
        if (!bad[i]) e[i] = 0.0;
    }
    /* x with the non-finite sets replaced by ones (differentiably) */
    double *ok = tg__arena_alloc(c, bytes);
    if (!ok) return;
    for (int64_t i = 0; i < N; i++) ok[i] = 1.0 - bad[i];
    tg_tensor *OK = tg__const_from(c, x->dtype, x->ndim, x->shape, ok);
    tg_tensor *BAD = tg__const_from(c, x->dtype, x->ndim, x->shape, bad);
    tg_tensor *E = tg__const_from(c, x->dtype, x->ndim, x->shape, e);
    if (!OK || !BAD || !E) return;
    (void)N;
    /* where, not x * OK + BAD: inf * 0 is NaN */
    tg_tensor *xsafe = tg_where(c, OK, x, BAD);
    tg_tensor *ysafe = xsafe ? spread(c, n, tg_prod_axes(c, xsafe, na, axes, NODE_KEEP)) : NULL;
    tg_tensor *good = ysafe ? prod_grad(c, n, xsafe, ysafe, g) : NULL;
    dx[0] = tg_where(c, OK, good, tg_mul(c, g, E));
}

/* ====================================================================== */
/* var, std                                                               */
/* ====================================================================== */

/* y = sum (x - mean)^2 / (R - corr), two passes in double. */
static tg_tensor *var_forward(tg_ctx *c, const char *fn, tg_op op, tg_tensor *x, int naxes,
                              const int *axes, bool unbiased, bool keepdim)
{
    uint32_t mask;
    int64_t R;
    tg_tensor *y =
        tg__red_prepare(c, fn, x, naxes, axes, keepdim, x ? x->dtype : TG_F32, &mask, &R);
    if (!y) return NULL;
    double *m = tg__red_scratch(c, y), *v = tg__red_scratch(c, y);
    tg__fold_spec s1 = {TG__FOLD_SUM, TG__XF_ID, 0, NULL};
    if (!m || !v || !tg__fold(c, x, mask, &s1, m, NULL)) return NULL;
    int64_t O = tg__numel(y->ndim, y->shape);
    for (int64_t o = 0; o < O; o++) m[o] /= (double)R;
    tg__fold_spec s2 = {TG__FOLD_SUM, TG__XF_SQDEV, 0, m};
    if (!tg__fold(c, x, mask, &s2, v, NULL)) return NULL;
    double corr = unbiased ? 1.0 : 0.0, den = (double)R - corr;
    for (int64_t o = 0; o < O; o++) {
        v[o] /= den; /* R == 1 unbiased: 0 / 0 = NaN */
        if (op == TG_OP_STD) v[o] = sqrt(v[o]);
    }
    tg__red_store(y, v);
    return tg__red_record(c, op, y, x, mask, keepdim, corr) ? y : NULL;
}

/* dx = spread(g) * 2 (x - mean(x)) / (R - corr), g the gradient of var */
static tg_tensor *var_grad(tg_ctx *c, const tg__node *n, tg_tensor *g)
{
    tg_tensor *x = NODE_X;
    int axes[TG_MAX_DIMS];
    int na = mask_axes(NODE_MASK, x->ndim, axes);
    double R = 1.0;
    for (int d = 0; d < x->ndim; d++)
        if (NODE_MASK >> d & 1u) R *= (double)x->shape[d];
    tg_tensor *dev = tg_sub(c, x, tg_mean_axes(c, x, na, axes, true));
    return tg_mul(c, spread(c, n, g), tg_scale(c, dev, 2.0 / (R - n->f[0])));
}

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y = sum (x - mean)^2 / (R - unbiased) over the reduced axes */
tg_tensor *tg_var_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool unbiased,
                       bool keepdim)
{
    return var_forward(c, "tg_var_axes", TG_OP_VAR, x, naxes, axes, unbiased, keepdim);
}
/* dx = dout * 2 (x - mean) / (R - corr) */
void tg__var_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NODE_X->requires_grad) dx[0] = var_grad(c, n, dout);
}

/* y = sqrt(var) */
tg_tensor *tg_std_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool unbiased,
                       bool keepdim)
{
    return var_forward(c, "tg_std_axes", TG_OP_STD, x, naxes, axes, unbiased, keepdim);
}
/* dvar = dout / (2 y), 0 where y == 0 (PyTorch's choice); then var's rule */
void tg__std_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NODE_X->requires_grad) return;
    tg_tensor *g = tg_mul(c, dout, tg_scale(c, safe_recip(c, n->out), 0.5));
    dx[0] = var_grad(c, n, g);
}

/* ====================================================================== */
/* logsumexp                                                              */
/* ====================================================================== */

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y = m + log(sum exp(x - m)), m = max over the reduced axes (0 if not finite) */
tg_tensor *tg_logsumexp(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim)
{
    const char *fn = "tg_logsumexp";
    uint32_t mask;
    int64_t R;
    tg_tensor *y =
        tg__red_prepare(c, fn, x, naxes, axes, keepdim, x ? x->dtype : TG_F32, &mask, &R);
    if (!y) return NULL;
    double *m = tg__red_scratch(c, y), *v = tg__red_scratch(c, y);
    tg__fold_spec s1 = {TG__FOLD_MAX, TG__XF_ID, 0, NULL};
    if (!m || !v || !tg__fold(c, x, mask, &s1, m, NULL)) return NULL;
    int64_t O = tg__numel(y->ndim, y->shape);
    for (int64_t o = 0; o < O; o++)
        if (!isfinite(m[o])) m[o] = 0.0;
    tg__fold_spec s2 = {TG__FOLD_SUM, TG__XF_EXP, 0, m};
    if (!tg__fold(c, x, mask, &s2, v, NULL)) return NULL;
    for (int64_t o = 0; o < O; o++) v[o] = m[o] + log(v[o]);
    tg__red_store(y, v);
    return tg__red_record(c, TG_OP_LOGSUMEXP, y, x, mask, keepdim, 0) ? y : NULL;
}
/* dx = dout * exp(x - y) (the softmax over the reduced axes) */
void tg__logsumexp_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NODE_X->requires_grad) return;
    tg_tensor *p = tg_exp(c, tg_sub(c, NODE_X, spread(c, n, n->out)));
    dx[0] = tg_mul(c, spread(c, n, dout), p);
}

/* ====================================================================== */
/* norm                                                                   */
/* ====================================================================== */

/* x is (..., D_a, ...); y drops the axes (or keeps them as 1) */
/* y = (sum |x|^p)^(1/p) over the reduced axes; p = inf: max |x| */
tg_tensor *tg_norm(tg_ctx *c, tg_tensor *x, double p, int naxes, const int *axes, bool keepdim)
{
    const char *fn = "tg_norm";
    if (!tg__ok(c)) return NULL;
    if (!(p > 0)) { /* also NaN */
        c->api = fn;
        tg__fail(c, TG_ERR_INVALID, "%s: p = %g: p must be > 0 (or inf)", fn, p);
        return NULL;
    }
    uint32_t mask;
    int64_t R;
    tg_tensor *y =
        tg__red_prepare(c, fn, x, naxes, axes, keepdim, x ? x->dtype : TG_F32, &mask, &R);
    if (!y) return NULL;
    double *t = tg__red_scratch(c, y), *v = tg__red_scratch(c, y);
    if (!t || !v) return NULL;
    int64_t O = tg__numel(y->ndim, y->shape);
    if (p == 1) {
        tg__fold_spec s = {TG__FOLD_SUM, TG__XF_ABS, 0, NULL};
        if (!tg__fold(c, x, mask, &s, v, NULL)) return NULL;
    } else {
        /* scaled by t = max |x| so that |x|^p neither overflows nor
         * underflows (LAPACK's nrm2 does the same) */
        tg__fold_spec s1 = {TG__FOLD_MAX, TG__XF_ABS, 0, NULL};
        if (!tg__fold(c, x, mask, &s1, t, NULL)) return NULL;
        if (isinf(p)) {
            memcpy(v, t, (size_t)O * sizeof(double));
        } else {
            tg__fold_spec s2 = {TG__FOLD_SUM, TG__XF_ABSPOW, p, t};
            if (!tg__fold(c, x, mask, &s2, v, NULL)) return NULL;
            for (int64_t o = 0; o < O; o++) {
                if (t[o] == 0 || isinf(t[o]) || isnan(t[o])) v[o] = t[o];
                else v[o] = t[o] * (p == 2 ? sqrt(v[o]) : pow(v[o], 1.0 / p));
            }
        }
    }
    tg__red_store(y, v);
    return tg__red_record(c, TG_OP_NORM, y, x, mask, keepdim, p) ? y : NULL;
}

/*
 * dout is y's shape; dx is x's shape. With s = sign(x) (a constant, 0 at 0):
 *   p = 1:    dx = dout * s
 *   p = inf:  dx = dout * s * [|x| == y] / count (ties share evenly)
 *   p = 2:    dx = dout * x / y
 *   other p:  dx = dout * s * |x|^(p-1) / y^(p-1)
 * and 0 where y == 0 (every x in the set is 0: PyTorch's subgradient).
 */
void tg__norm_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NODE_X->requires_grad) return;
    tg_tensor *x = NODE_X;
    double p = n->f[0];
    int64_t N = tg__numel(x->ndim, x->shape);
    double *xs = tg__const_doubles(c, x);
    if (!xs) return;
    tg_tensor *g = spread(c, n, dout);
    if (p == 2) {
        dx[0] = tg_mul(c, tg_mul(c, g, x), spread(c, n, safe_recip(c, n->out)));
        return;
    }
    double *sg = tg__arena_alloc(c, (size_t)(N > 0 ? N : 1) * sizeof(double));
    if (!sg) return;
    for (int64_t i = 0; i < N; i++) sg[i] = xs[i] > 0 ? 1.0 : xs[i] < 0 ? -1.0 : 0.0;
    if (isinf(p)) {
        /* the arg positions of max |x|, shared evenly, as in tg_max_axes */
        double *ys = tg__const_spread(c, x, NODE_MASK, n->out);
        if (!ys) return;
        for (int64_t i = 0; i < N; i++) xs[i] = fabs(xs[i]) == ys[i] ? 1.0 : 0.0;
        tg_tensor *hit = tg__const_from(c, x->dtype, x->ndim, x->shape, xs);
        int axes[TG_MAX_DIMS];
        int na = mask_axes(NODE_MASK, x->ndim, axes);
        tg_tensor *cnt = hit ? tg_sum_axes(c, hit, na, axes, NODE_KEEP) : NULL;
        double *cs = cnt ? tg__const_spread(c, x, NODE_MASK, cnt) : NULL;
        if (!cs) return;
        for (int64_t i = 0; i < N; i++) sg[i] *= xs[i] / cs[i];
        dx[0] = tg_mul(c, g, tg__const_from(c, x->dtype, x->ndim, x->shape, sg));
        return;
    }
    tg_tensor *S = tg__const_from(c, x->dtype, x->ndim, x->shape, sg);
    if (p == 1) {
        dx[0] = tg_mul(c, g, S);
        return;
    }
    tg_tensor *ax = tg_mul(c, x, S); /* |x|, differentiable */
    tg_tensor *num = tg_mul(c, S, tg_pow_scalar(c, ax, p - 1));
    tg_tensor *inv = spread(c, n, safe_recip(c, tg_pow_scalar(c, n->out, p - 1)));
    dx[0] = tg_mul(c, g, tg_mul(c, num, inv));
}
