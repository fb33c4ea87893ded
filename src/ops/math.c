/*
 * math.c - elementwise math beyond the core set: abs, rsqrt, log1p, expm1,
 * sin, cos, square, erf, clamp, maximum, minimum, where and pow of two
 * tensors, each forward beside its backward; and the forward drivers the
 * math family shares (ew_kernels.h).
 *
 * Backward rules use public ops, so they can be differentiated again.
 * Masks and subgradient weights are constant tensors (never recorded):
 * their derivative is zero almost everywhere, which is what second order
 * needs. Where a derivative would multiply inf or NaN by a zero mask, the
 * rule selects with tg_where instead of multiplying.
 */
#include "ew_kernels.h"

/* ====================================================================== */
/* Drivers                                                                */
/* ====================================================================== */

static tg__ew_kernel pick(tg__kpair k, tg_dtype dt) { return dt == TG_F32 ? k.f32 : k.f64; }

/* tg__ew_apply, with a shortcut for the common small case: every operand
 * contiguous with the output's element count (so the same element order)
 * and too few elements to split over threads is one kernel call over one
 * flat run, exactly the run tg__ew_apply would make, without building its
 * N-d plan. This is most of an op's cost on tiny tensors. t[0], the
 * output, is contiguous (every driver's is: new, or checked); same: the
 * caller knows every operand has its shape, so only the inputs'
 * contiguity is left to check. */
static inline void ew_run(tg_ctx *c, int nt, tg_tensor *const *t, tg__ew_kernel k,
                          const double *aux, bool same)
{
    int64_t n = tg__numel(t[0]->ndim, t[0]->shape);
    if (n > 0 && n < 2 * TG__PAR_GRAIN) {
        char *p[TG__MAX_OPERANDS];
        int64_t s[TG__MAX_OPERANDS];
        p[0] = tg__ptr(t[0]);
        s[0] = (int64_t)tg__esize(t[0]->dtype);
        bool flat = true;
        for (int i = 1; i < nt && flat; i++) {
            flat = (same || tg__numel(t[i]->ndim, t[i]->shape) == n) && tg__contig(t[i]);
            p[i] = tg__ptr(t[i]);
            s[i] = (int64_t)tg__esize(t[i]->dtype);
        }
        if (flat) {
            k(n, p, s, (void *)(uintptr_t)aux); /* kernels only read aux */
            return;
        }
    }
    tg__ew_apply(c, nt, t, k, (void *)(uintptr_t)aux);
}

/* True when x can go through an elementwise op as is: the common case,
 * tested inline; anything else takes the checks that name the problem. */
static inline bool fast_ok(const tg_tensor *x)
{
    return x && x->st && tg__is_float(x->dtype) && !x->st->released;
}

static inline bool same_shape(const tg_tensor *a, const tg_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* The node's scalar arguments: p, or the zeros the tape left when p is
 * NULL (a kernel reads a NULL p as zeros too). */
static inline void record_params(tg__node *n, const double *p)
{
    if (n && p)
        for (int i = 0; i < 4; i++) n->f[i] = p[i];
}

/* The broadcast shape of a and b into nd/shape, or TG_ERR_SHAPE naming fn
 * and both shapes. */
static bool bcast2(tg_ctx *c, const char *fn, const tg_tensor *a, const tg_tensor *b, int *nd,
                   int64_t *shape)
{
    if (tg__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, nd, shape)) return true;
    char sa[128], sb[128];
    tg__fail(c, TG_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", fn,
             tg__fmt_shape(sa, sizeof sa, a->ndim, a->shape),
             tg__fmt_shape(sb, sizeof sb, b->ndim, b->shape));
    return false;
}

/* m = k(x; p), m a new tensor of x's shape; NULL (error on c) without
 * memory. */
static inline tg_tensor *ew1(tg_ctx *c, tg__kpair k, tg_tensor *x, const double *p)
{
    tg_tensor *m = tg__empty_valid(c, x->dtype, x->ndim, x->shape);
    if (!m) return NULL;
    tg_tensor *ops[2] = {m, x};
    ew_run(c, 2, ops, pick(k, x->dtype), p, true);
    return m;
}

/* m = k(a, b; p) over m's shape (a and b broadcast to it; same: all three
 * have one shape). Returns m; NULL when m is NULL (its allocation failed). */
static inline tg_tensor *ew2_into(tg_ctx *c, tg_tensor *m, tg__kpair k, tg_tensor *a,
                                  tg_tensor *b, const double *p, bool same)
{
    if (!m) return NULL;
    tg_tensor *ops[3] = {m, a, b};
    ew_run(c, 3, ops, pick(k, a->dtype), p, same);
    return m;
}

/* k(a, b; p) into a new tensor of the broadcast shape (a and b of one
 * dtype); NULL (error on c naming fn) when they do not broadcast or
 * without memory. */
static inline tg_tensor *ew2(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *a, tg_tensor *b,
                             const double *p)
{
    if (same_shape(a, b))
        return ew2_into(c, tg__empty_valid(c, a->dtype, a->ndim, a->shape), k, a, b, p, true);
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (!bcast2(c, fn, a, b, &nd, shape)) return NULL;
    return ew2_into(c, tg__empty(c, fn, a->dtype, nd, shape), k, a, b, p, false);
}

tg_tensor *tg__ew_unary(tg_ctx *c, const char *fn, tg_op op, tg__kpair k, tg_tensor *x,
                        const double *p)
{
    if (!tg__ok(c) || !fast_ok(x)) {
        if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    }
    c->api = fn;
    tg_tensor *y = ew1(c, k, x, p);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, op, y, 1, &x, &n)) return NULL;
    record_params(n, p);
    return y;
}

tg_tensor *tg__ew_binary(tg_ctx *c, const char *fn, tg_op op, tg__kpair k, tg_tensor *a,
                         tg_tensor *b, const double *p)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__ok(c) || !fast_ok(a) || !fast_ok(b) || a->dtype != b->dtype) {
        if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, a, b)) return NULL;
    }
    c->api = fn;
    tg_tensor *y = ew2(c, fn, k, a, b, p);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, op, y, 2, in, &n)) return NULL;
    record_params(n, p);
    return y;
}

tg_tensor *tg__ew_const1(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *x, const double *p)
{
    if (!tg__ok(c) || !x) return NULL;
    c->api = fn;
    return ew1(c, k, x, p);
}

tg_tensor *tg__ew_const2(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *a, tg_tensor *b,
                         const double *p)
{
    if (!tg__ok(c) || !a || !b) return NULL;
    c->api = fn;
    return ew2(c, fn, k, a, b, p);
}

tg_tensor *tg__ew_grad(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *dout, tg_tensor *b)
{
    if (!tg__ok(c) || !dout || !b) return NULL;
    if (dout->dtype != b->dtype || !same_shape(dout, b) || !tg__take_spare(c, dout))
        return tg__ew_const2(c, fn, k, dout, b, NULL);
    /* element i is read, then written */
    return ew2_into(c, dout, k, dout, b, NULL, true);
}

tg_tensor *tg__ew_masked(tg_ctx *c, tg_tensor *mask, tg_tensor *dout)
{
    if (!tg__ok(c) || !mask || !dout) return NULL;
    return tg_where(c, mask, dout, tg_scalar(c, dout->dtype, 0.0));
}

#define NEED(i) (n->in[i]->requires_grad)

/* ====================================================================== */
/* Kernels                                                                */
/* ====================================================================== */

#define TG__2_SQRTPI 1.12837916709551257390 /* 2 / sqrt(pi) */

/* clang-format off */
/* sign with NaN kept: the subgradient abs'(0) = 0 */
EW_UN_PAIR(k_sign, X > 0 ? 1.0f : X < 0 ? -1.0f : X == 0 ? 0.0f : X,
           X > 0 ? 1.0 : X < 0 ? -1.0 : X == 0 ? 0.0 : X)
EW_UN_PAIR(k_abs, fabsf(X), fabs(X))
EW_UN_PAIR(k_rsqrt, 1.0f / sqrtf(X), 1.0 / sqrt(X))
EW_UN_PAIR(k_log1p, log1pf(X), log1p(X))
EW_UN_PAIR(k_expm1, expm1f(X), expm1(X))
EW_UN_PAIR(k_sin, sinf(X), sin(X))
EW_UN_PAIR(k_cos, cosf(X), cos(X))
EW_UN_PAIR(k_square, X * X, X * X)
/* fused backward rules (NO_GRAPH), the composite's operations in order */
EW_BIN_PAIR(k_log1p_bw, A / (B + 1.0f), A / (B + 1.0))
EW_BIN_PAIR(k_expm1_bw, A * (B + 1.0f), A * (B + 1.0))
EW_BIN_PAIR(k_sin_bw, A * cosf(B), A * cos(B))
EW_BIN_PAIR(k_cos_bw, A * -sinf(B), A * -sin(B))
EW_BIN_PAIR(k_square_bw, A * (B * 2.0f), A * (B * 2.0))
EW_UN_PAIR(k_erf, erff(X), erf(X))
/* clamp: min(max(x, lo), hi); NaN passes through; with lo > hi every
 * element becomes hi */
static inline float clampf_(float x, float lo, float hi)
{
    float t = x < lo ? lo : x;
    return t > hi ? hi : t;
}
static inline double clamp_(double x, double lo, double hi)
{
    double t = x < lo ? lo : x;
    return t > hi ? hi : t;
}
EW_UN_PAIR(k_clamp, clampf_(X, P0, P1), clamp_(X, P0, P1))
EW_UN_PAIR(k_in_closed, X >= P0 && X <= P1 ? 1.0f : 0.0f, X >= P0 && X <= P1 ? 1.0 : 0.0)
EW_UN_PAIR(k_nonzero, X != 0 ? 1.0f : 0.0f, X != 0 ? 1.0 : 0.0)

/* maximum / minimum propagate NaN from either side */
EW_BIN_PAIR(k_maximum, A > B || A != A ? A : B, A > B || A != A ? A : B)
EW_BIN_PAIR(k_minimum, A < B || A != A ? A : B, A < B || A != A ? A : B)
/* subgradient weight of the first argument: 1 where it wins, 0.5 at ties,
 * 0 where it loses (PyTorch's maximum/minimum backward) */
EW_BIN_PAIR(k_win_gt, A < B ? 0.0f : A == B ? 0.5f : 1.0f, A < B ? 0.0 : A == B ? 0.5 : 1.0)
EW_BIN_PAIR(k_win_lt, A > B ? 0.0f : A == B ? 0.5f : 1.0f, A > B ? 0.0 : A == B ? 0.5 : 1.0)
EW_BIN_PAIR(k_pow, powf(A, B), pow(A, B))
/* pow's d/db: 1 where a == 0 and b >= 0 (the gradient is taken as 0 there) */
EW_BIN_PAIR(k_zero_base, A == 0 && B >= 0 ? 1.0f : 0.0f, A == 0 && B >= 0 ? 1.0 : 0.0)
/* clang-format on */

/* ====================================================================== */
/* Unary ops                                                              */
/* ====================================================================== */

/* y = |x|;  dx = dout * sign(x), sign(0) = 0, a constant */
tg_tensor *tg_abs(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_abs", TG_OP_ABS, EW_KP(k_abs), x, NULL);
}
void tg__abs_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, tg__ew_const1(c, "tg_abs", EW_KP(k_sign), n->in[0], NULL));
}

/* y = 1 / sqrt(x);  dx = -dout * y^3 / 2 */
tg_tensor *tg_rsqrt(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_rsqrt", TG_OP_RSQRT, EW_KP(k_rsqrt), x, NULL);
}
void tg__rsqrt_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *y = n->out;
    dx[0] = tg_mul(c, dout, tg_scale(c, tg_mul(c, y, tg_square(c, y)), -0.5));
}

/* y = log(1 + x);  dx = dout / (1 + x) */
tg_tensor *tg_log1p(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_log1p", TG_OP_LOG1P, EW_KP(k_log1p), x, NULL);
}
void tg__log1p_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0) && NO_GRAPH(c)) dx[0] = FUSED(c, "tg_log1p", k_log1p_bw, dout, n->in[0]);
    else if (NEED(0)) dx[0] = tg_div(c, dout, tg_add_scalar(c, n->in[0], 1.0));
}

/* y = exp(x) - 1;  dx = dout * (y + 1) */
tg_tensor *tg_expm1(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_expm1", TG_OP_EXPM1, EW_KP(k_expm1), x, NULL);
}
void tg__expm1_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0) && NO_GRAPH(c)) dx[0] = FUSED(c, "tg_expm1", k_expm1_bw, dout, n->out);
    else if (NEED(0)) dx[0] = tg_mul(c, dout, tg_add_scalar(c, n->out, 1.0));
}

/* y = sin(x);  dx = dout * cos(x) */
tg_tensor *tg_sin(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_sin", TG_OP_SIN, EW_KP(k_sin), x, NULL);
}
void tg__sin_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0) && NO_GRAPH(c)) dx[0] = FUSED(c, "tg_sin", k_sin_bw, dout, n->in[0]);
    else if (NEED(0)) dx[0] = tg_mul(c, dout, tg_cos(c, n->in[0]));
}

/* y = cos(x);  dx = -dout * sin(x) */
tg_tensor *tg_cos(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_cos", TG_OP_COS, EW_KP(k_cos), x, NULL);
}
void tg__cos_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0) && NO_GRAPH(c)) dx[0] = FUSED(c, "tg_cos", k_cos_bw, dout, n->in[0]);
    else if (NEED(0)) dx[0] = tg_mul(c, dout, tg_neg(c, tg_sin(c, n->in[0])));
}

/* y = x^2;  dx = 2 dout x */
tg_tensor *tg_square(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_square", TG_OP_SQUARE, EW_KP(k_square), x, NULL);
}
void tg__square_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0) && NO_GRAPH(c)) dx[0] = FUSED(c, "tg_square", k_square_bw, dout, n->in[0]);
    else if (NEED(0)) dx[0] = tg_mul(c, dout, tg_scale(c, n->in[0], 2.0));
}

/* y = erf(x);  dx = dout * 2/sqrt(pi) * exp(-x^2) */
tg_tensor *tg_erf(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_erf", TG_OP_ERF, EW_KP(k_erf), x, NULL);
}
void tg__erf_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *g = tg_scale(c, tg_exp(c, tg_neg(c, tg_square(c, n->in[0]))), TG__2_SQRTPI);
    dx[0] = tg_mul(c, dout, g);
}

/* y = min(max(x, lo), hi);  dx = dout where lo <= x <= hi (the boundary
 * passes the gradient, as PyTorch's clamp), 0 elsewhere */
tg_tensor *tg_clamp(tg_ctx *c, tg_tensor *x, double lo, double hi)
{
    if (!tg__ok(c)) return NULL;
    if (isnan(lo) || isnan(hi)) {
        tg__fail(c, TG_ERR_INVALID, "tg_clamp: min %g, max %g: bounds must not be NaN", lo, hi);
        return NULL;
    }
    const double p[4] = {lo, hi, 0, 0};
    return tg__ew_unary(c, "tg_clamp", TG_OP_CLAMP, EW_KP(k_clamp), x, p);
}
void tg__clamp_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0))
        dx[0] = tg__ew_masked(c, tg__ew_const1(c, "tg_clamp", EW_KP(k_in_closed), n->in[0], n->f),
                              dout);
}

/* ====================================================================== */
/* Binary ops                                                             */
/* ====================================================================== */

/* dout * w(a, b) with the constant subgradient weight w of k, and exact
 * zeros where w is 0 (even where dout is inf) */
static tg_tensor *weighted(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *a, tg_tensor *b,
                           tg_tensor *dout)
{
    tg_tensor *w = tg__ew_const2(c, fn, k, a, b, NULL);
    return tg__ew_masked(c, w, tg_mul(c, dout, w));
}

/* y = max(a, b);  da = dout * w(a, b), db = dout * w(b, a),
 * w(a, b) = 0 where a < b, 1/2 where a == b, 1 elsewhere (NaN: both 1) */
tg_tensor *tg_maximum(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return tg__ew_binary(c, "tg_maximum", TG_OP_MAXIMUM, EW_KP(k_maximum), a, b, NULL);
}
void tg__maximum_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (NEED(0)) dx[0] = weighted(c, "tg_maximum", EW_KP(k_win_gt), a, b, dout);
    if (NEED(1)) dx[1] = weighted(c, "tg_maximum", EW_KP(k_win_gt), b, a, dout);
}

/* y = min(a, b);  da = dout * w(a, b), db = dout * w(b, a),
 * w(a, b) = 0 where a > b, 1/2 where a == b, 1 elsewhere (NaN: both 1) */
tg_tensor *tg_minimum(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return tg__ew_binary(c, "tg_minimum", TG_OP_MINIMUM, EW_KP(k_minimum), a, b, NULL);
}
void tg__minimum_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (NEED(0)) dx[0] = weighted(c, "tg_minimum", EW_KP(k_win_lt), a, b, dout);
    if (NEED(1)) dx[1] = weighted(c, "tg_minimum", EW_KP(k_win_lt), b, a, dout);
}

/*
 * y = a^b;  da = dout * b * a^(b-1) (0 where b == 0),
 *           db = dout * y * log(a)  (0 where a == 0 and b >= 0; NaN where a < 0)
 * The zeros are PyTorch's convention; they are selected with where, so the
 * infinities of a^(b-1) and log(0) never reach the gradient.
 */
tg_tensor *tg_pow(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return tg__ew_binary(c, "tg_pow", TG_OP_POW, EW_KP(k_pow), a, b, NULL);
}
void tg__pow_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *a = n->in[0], *b = n->in[1];
    tg_tensor *zero = tg_scalar(c, dout->dtype, 0.0);
    if (NEED(0)) {
        tg_tensor *g = tg_mul(c, dout, tg_mul(c, b, tg_pow(c, a, tg_add_scalar(c, b, -1.0))));
        tg_tensor *b_zero = tg__ew_const1(c, "tg_pow", EW_KP(k_nonzero), b, NULL);
        dx[0] = tg_where(c, b_zero, g, zero);
    }
    if (NEED(1)) {
        tg_tensor *g = tg_mul(c, dout, tg_mul(c, n->out, tg_log(c, a)));
        tg_tensor *at_zero = tg__ew_const2(c, "tg_pow", EW_KP(k_zero_base), a, b, NULL);
        dx[1] = tg_where(c, at_zero, zero, g);
    }
}

/* ====================================================================== */
/* where                                                                  */
/* ====================================================================== */

/* o = cond != 0 ? a : b over a run; cond of type C, a, b and o of type T */
#define WHERE_KERNEL(NAME, T, C)                                                               \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)                         \
    {                                                                                          \
        (void)aux;                                                                             \
        T *o = (T *)p[0];                                                                      \
        const int64_t es = (int64_t)sizeof(T);                                                 \
        if (s[1] == (int64_t)sizeof(C) && s[2] == es && s[3] == es) {                          \
            const C *k = (const C *)p[1];                                                      \
            const T *x = (const T *)p[2], *y = (const T *)p[3];                                \
            for (int64_t i = 0; i < n; i++) o[i] = k[i] != 0 ? x[i] : y[i];                    \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                C k = *(const C *)(p[1] + i * s[1]);                                           \
                o[i] = k != 0 ? *(const T *)(p[2] + i * s[2]) : *(const T *)(p[3] + i * s[3]); \
            }                                                                                  \
        }                                                                                      \
    }

WHERE_KERNEL(k_where_f32, float, float)
WHERE_KERNEL(k_where_f32_i64, float, int64_t)
WHERE_KERNEL(k_where_f64, double, double)
WHERE_KERNEL(k_where_f64_i64, double, int64_t)

/* y = cond ? a : b;  da = where(cond, dout, 0), db = where(cond, 0, dout);
 * cond gets no gradient */
tg_tensor *tg_where(tg_ctx *c, tg_tensor *cond, tg_tensor *a, tg_tensor *b)
{
    const char *fn = "tg_where";
    tg_tensor *in[3] = {cond, a, b};
    if (!tg__check_inputs(c, fn, 3, in) || !tg__check_same_dtype(c, fn, a, b)) return NULL;
    if (cond->dtype != a->dtype && cond->dtype != TG_I64) {
        tg__fail(c, TG_ERR_DTYPE, "tg_where: condition dtype %s: must be %s (as a and b) or i64",
                 tg_dtype_name(cond->dtype), tg_dtype_name(a->dtype));
        return NULL;
    }
    int nd, nd2;
    int64_t sh[TG_MAX_DIMS], shape[TG_MAX_DIMS];
    if (!tg__broadcast_shape(cond->ndim, cond->shape, a->ndim, a->shape, &nd, sh) ||
        !tg__broadcast_shape(nd, sh, b->ndim, b->shape, &nd2, shape)) {
        char sc[128], sa[128], sb[128];
        tg__fail(c, TG_ERR_SHAPE, "tg_where: shapes %s, %s and %s do not broadcast",
                 tg__fmt_shape(sc, sizeof sc, cond->ndim, cond->shape),
                 tg__fmt_shape(sa, sizeof sa, a->ndim, a->shape),
                 tg__fmt_shape(sb, sizeof sb, b->ndim, b->shape));
        return NULL;
    }
    tg_tensor *y = tg__empty(c, fn, a->dtype, nd2, shape);
    if (!y) return NULL;
    tg__ew_kernel k;
    if (a->dtype == TG_F32) k = cond->dtype == TG_I64 ? k_where_f32_i64 : k_where_f32;
    else k = cond->dtype == TG_I64 ? k_where_f64_i64 : k_where_f64;
    tg_tensor *ops[4] = {y, cond, a, b};
    tg__ew_apply(c, 4, ops, k, NULL);
    tg__node *n;
    if (tg__record(c, TG_OP_WHERE, y, 3, in, &n)) return NULL;
    return y;
}
void tg__where_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *cond = n->in[0];
    if (!NEED(1) && !NEED(2)) return;
    tg_tensor *zero = tg_scalar(c, dout->dtype, 0.0);
    if (NEED(1)) dx[1] = tg_where(c, cond, dout, zero);
    if (NEED(2)) dx[2] = tg_where(c, cond, zero, dout);
}
