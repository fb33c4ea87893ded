/*
 * activation.c - activation functions: leaky_relu, elu, gelu (erf and tanh
 * forms), silu, softplus, hardtanh, log_sigmoid, each forward beside its
 * backward.
 *
 * Forward kernels are fused and written for stability (no overflow for any
 * finite input); backward rules are compositions of public ops so that they
 * can be differentiated again (gelu's, when nothing records it, is one
 * pass that reads Phi back from the forward's output, with no second erfc).
 * f32 gelu runs on fastmath.h's one-form Phi tail (no erfcf call, no
 * branch), compiled for AVX-512 and AVX2 as well as the baseline, chosen at
 * load time; f64 keeps libm. Branch masks are constant tensors, and a
 * branch is selected with tg_where rather than multiplied by a 0/1 mask, so
 * that a value that is inf on the unselected side never turns into NaN.
 */
#include "ew_kernels.h"
#include "fastmath.h"

#define TG__SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2) */
#define TG__SQRT_2_PI 0.79788456080286535588    /* sqrt(2 / pi) */
#define TG__INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define TG__GELU_C 0.044715

#define NEED(i) (n->in[i]->requires_grad)

/* ====================================================================== */
/* Kernels                                                                */
/* ====================================================================== */

static inline float sigmoidf_(float x)
{
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}
static inline double sigmoid_(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* softplus(x) with beta b and threshold t: max(bx, 0) + log1p(exp(-|bx|))
 * is log(1 + exp(bx)) without overflow */
static inline float softplusf_(float x, float b, float t)
{
    float z = b * x;
    if (z > t) return x;
    return (fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)))) / b;
}
static inline double softplus_(double x, double b, double t)
{
    double z = b * x;
    if (z > t) return x;
    return (fmax(z, 0.0) + log1p(exp(-fabs(z)))) / b;
}

static inline float gelu_tanhf_(float x)
{
    float u = (float)TG__SQRT_2_PI * (x + (float)TG__GELU_C * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
static inline double gelu_tanh_(double x)
{
    double u = TG__SQRT_2_PI * (x + TG__GELU_C * x * x * x);
    return 0.5 * x * (1.0 + tanh(u));
}

/* log sigmoid: min(x, 0) - log1p(exp(-|x|)); 0 at +inf, NaN stays NaN
 * (through the second term) */
static inline float log_sigmoidf_(float x) { return fminf(x, 0.0f) - log1pf(expf(-fabsf(x))); }
static inline double log_sigmoid_(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }

/* clang-format off */
EW_UN_PAIR(k_leaky_relu, X > 0 ? X : P0 * X, X > 0 ? X : P0 * X)
EW_UN_PAIR(k_leaky_slope, X > 0 ? 1.0f : P0, X > 0 ? 1.0 : P0)
EW_UN_PAIR(k_elu, X > 0 ? X : P0 * expm1f(X), X > 0 ? X : P0 * expm1(X))
EW_UN_KERNEL(k_gelu_f64, double, 0.5 * X * erfc(-X * TG__SQRT1_2))
EW_UN_PAIR(k_gelu_tanh, gelu_tanhf_(X), gelu_tanh_(X))
EW_UN_PAIR(k_silu, X * sigmoidf_(X), X * sigmoid_(X))
EW_UN_PAIR(k_softplus, softplusf_(X, P0, P1), softplus_(X, P0, P1))
EW_UN_PAIR(k_hardtanh, X < P0 ? P0 : X > P1 ? P1 : X, X < P0 ? P0 : X > P1 ? P1 : X)
EW_UN_PAIR(k_log_sigmoid, log_sigmoidf_(X), log_sigmoid_(X))

/* gelu(x) = x Phi(x) from h = x Phi(-|x|): h for x <= 0, x - h above (no
 * cancellation: x Phi(-x) <= x / 2), x itself above 16 (where the tail
 * would be inf * 0 at +inf). -inf gives NaN, as x / 2 erfc(-x / sqrt 2)
 * does. Within 8 ulp of the double result where that is a normal float
 * (tests/test_nn.c). */
static inline float gelu_from_tail(float x, float h)
{
    float y = tg__f32_sel(-(int32_t)(x > 0), x - h, h);
    return tg__f32_sel(-(int32_t)(x > 16.0f), x, y);
}

#define GELU_BLOCK 256 /* floats per block of the two-pass loop (3 KB of stack) */

/* k_gelu's f32 run (the EW_UN_KERNEL shape, by hand for the clones). A
 * contiguous run goes by blocks: the tail's argument for the block, then
 * its exponential (tg__phi_lower_arg / _fin), so each loop's iterations
 * are short chains the out-of-order core overlaps; same bits. */
TG__VEC_CLONES static void k_gelu_f32(int64_t n, char **p, const int64_t *s, void *aux)
{
    (void)aux;
    float *restrict o = (float *)p[0];
    if (s[1] == (int64_t)sizeof(float)) {
        const float *restrict x = (const float *)p[1];
        float es[GELU_BLOCK], ee[GELU_BLOCK], pre[GELU_BLOCK];
        for (int64_t i0 = 0; i0 < n; i0 += GELU_BLOCK) {
            const int64_t m = n - i0 < GELU_BLOCK ? n - i0 : GELU_BLOCK;
            const float *restrict xb = x + i0;
            float *restrict ob = o + i0;
            for (int64_t i = 0; i < m; i++) es[i] = tg__phi_lower_arg(xb[i], xb[i], &ee[i], &pre[i]);
            for (int64_t i = 0; i < m; i++)
                ob[i] = gelu_from_tail(xb[i], tg__phi_lower_fin(es[i], ee[i], pre[i]));
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            const float v = *(const float *)(p[1] + i * s[1]);
            o[i] = gelu_from_tail(v, tg__phi_lowerf(v, v));
        }
    }
}

/* gelu's f32 gradient over n dense elements: Phi(x) = y / x (1/2 at
 * |x| <= 1e-20, where y / x would lose it), so no erfc is evaluated again:
 * dout * (y / x + x e^(-x^2/2) / sqrt(2 pi)). Absolute error a few ulp of
 * max(1, |gelu'|). o may be dout or x (element i is read, then written). */
TG__VEC_CLONES static void gelu_grad_f32(int64_t n, const float *px, const float *restrict py,
                                         const float *pd, float *o)
{
    for (int64_t i = 0; i < n; i++) {
        float v = px[i];
        int32_t big = -(int32_t)(tg__f32_from_bits(tg__f32_bits(v) & 0x7fffffff) > 1e-20f);
        /* the divisor kept nonzero where unused, for the branch-free select */
        float phi = tg__f32_sel(big, py[i] / tg__f32_sel(big, v, 1.0f), 0.5f);
        o[i] = pd[i] * (phi + v * (tg__exp_le1f(-0.5f * (v * v)) * (float)TG__INV_SQRT_2PI));
    }
}

void tg__gelu_grad_run(bool f64, int64_t n, const void *x, const void *y, const void *dout,
                       void *o)
{
    if (!f64) {
        gelu_grad_f32(n, x, y, dout, o);
        return;
    }
    const double *px = x, *py = y, *pd = dout;
    double *po = o;
    for (int64_t i = 0; i < n; i++) {
        double v = px[i], phi = fabs(v) > 1e-20 ? py[i] / v : 0.5;
        po[i] = pd[i] * (phi + v * exp(-0.5 * v * v) * TG__INV_SQRT_2PI);
    }
}

/* gelu's gradient from the forward's output y, in one pass (f64 with
 * libm's exp), written over dout when the backward walk offers it (see
 * tg__ew_grad) or over its dense copy: element i is read, then written. */
static tg_tensor *gelu_grad(tg_ctx *c, tg_tensor *x, tg_tensor *y, tg_tensor *dout)
{
    const char *fn = "tg_gelu";
    tg_tensor *xd = tg__dense(c, fn, x), *yd = xd ? tg__dense(c, fn, y) : NULL;
    tg_tensor *dd = yd ? tg__dense(c, fn, dout) : NULL;
    if (!dd) return NULL;
    tg_tensor *g = dd; /* a dense copy of dout is ours to write over too */
    if (dd == dout && !tg__take_spare(c, dout))
        g = tg__empty(c, "tg_gelu", x->dtype, x->ndim, x->shape);
    if (!g) return NULL;
    tg__gelu_grad_run(x->dtype == TG_F64, tg__numel(x->ndim, x->shape), tg__ptr(xd),
                      tg__ptr(yd), tg__ptr(dd), tg__ptr(g));
    return g;
}

/* masks: 1 where the first argument is the active branch */
EW_UN_PAIR(k_over_threshold, P0 * X > P1 ? 1.0f : 0.0f, P0 * X > P1 ? 1.0 : 0.0)
EW_UN_PAIR(k_in_open, X > P0 && X < P1 ? 1.0f : 0.0f, X > P0 && X < P1 ? 1.0 : 0.0)
/* clang-format on */

/* ====================================================================== */
/* Ops                                                                    */
/* ====================================================================== */

/* y = x > 0 ? x : slope x;  dx = dout * (x > 0 ? 1 : slope), a constant */
tg_tensor *tg_leaky_relu(tg_ctx *c, tg_tensor *x, double slope)
{
    const double p[4] = {slope, 0, 0, 0};
    return tg__ew_unary(c, "tg_leaky_relu", TG_OP_LEAKY_RELU, EW_KP(k_leaky_relu), x, p);
}
void tg__leaky_relu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0))
        dx[0] = tg_mul(c, dout,
                       tg__ew_const1(c, "tg_leaky_relu", EW_KP(k_leaky_slope), n->in[0], n->f));
}

/* y = x > 0 ? x : alpha (exp(x) - 1);
 * dx = x > 0 ? dout : dout * alpha exp(x) = dout * (y + alpha) */
tg_tensor *tg_elu(tg_ctx *c, tg_tensor *x, double alpha)
{
    if (!tg__ok(c)) return NULL;
    if (!isfinite(alpha)) {
        tg__fail(c, TG_ERR_INVALID, "tg_elu: alpha %g: must be finite", alpha);
        return NULL;
    }
    const double p[4] = {alpha, 0, 0, 0};
    return tg__ew_unary(c, "tg_elu", TG_OP_ELU, EW_KP(k_elu), x, p);
}
void tg__elu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    /* y + alpha is alpha exp(x) on the negative branch, where its derivative
     * is y's own; on the positive branch it is finite and not selected */
    tg_tensor *neg = tg_mul(c, dout, tg_add_scalar(c, n->out, n->f[0]));
    dx[0] = tg_where(c, tg__positive_mask(c, "tg_elu", n->in[0]), dout, neg);
}

/* y = x Phi(x);  dx = dout * (Phi(x) + x phi(x)),
 * Phi(x) = (1 + erf(x / sqrt 2)) / 2,  phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
tg_tensor *tg_gelu(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_gelu", TG_OP_GELU, EW_KP(k_gelu), x, NULL);
}
void tg__gelu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *x = n->in[0];
    if (!c->grad_enabled) {
        /* nothing records this gradient: one fused pass instead of eleven ops */
        dx[0] = gelu_grad(c, x, n->out, dout);
        return;
    }
    dx[0] = tg__gelu_grad_ops(c, x, dout);
}

tg_tensor *tg__gelu_grad_ops(tg_ctx *c, tg_tensor *x, tg_tensor *dout)
{
    tg_tensor *cdf =
        tg_add_scalar(c, tg_scale(c, tg_erf(c, tg_scale(c, x, TG__SQRT1_2)), 0.5), 0.5);
    tg_tensor *pdf = tg_scale(c, tg_exp(c, tg_scale(c, tg_square(c, x), -0.5)), TG__INV_SQRT_2PI);
    return tg_mul(c, dout, tg_add(c, cdf, tg_mul(c, x, pdf)));
}

void tg__gelu_rows(bool f64, int64_t rows, int64_t n, const char *x, int64_t rs, int64_t cs,
                   char *o)
{
    const int64_t es = f64 ? (int64_t)sizeof(double) : (int64_t)sizeof(float);
    const tg__ew_kernel k = f64 ? k_gelu_f64 : k_gelu_f32;
    if (cs == es && rs == n * es) { /* one dense run */
        n *= rows;
        rows = 1;
    }
    for (int64_t r = 0; r < rows; r++)
        k(n, (char *[]){o + r * n * es, (char *)(uintptr_t)(x + r * rs)}, (const int64_t[]){es, cs},
          NULL);
}

/* y = x/2 (1 + t), t = tanh(u), u = k (x + c x^3), k = sqrt(2/pi);
 * dx = dout * ((1 + t)/2 + x/2 (1 - t^2) k (1 + 3 c x^2)) */
tg_tensor *tg_gelu_tanh(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_gelu_tanh", TG_OP_GELU_TANH, EW_KP(k_gelu_tanh), x, NULL);
}
void tg__gelu_tanh_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *x = n->in[0];
    tg_tensor *x2 = tg_square(c, x);
    tg_tensor *u =
        tg_scale(c, tg_add(c, x, tg_scale(c, tg_mul(c, x2, x), TG__GELU_C)), TG__SQRT_2_PI);
    tg_tensor *t = tg_tanh(c, u);
    tg_tensor *left = tg_scale(c, tg_add_scalar(c, t, 1.0), 0.5);
    tg_tensor *sech2 = tg_add_scalar(c, tg_neg(c, tg_square(c, t)), 1.0);
    tg_tensor *du =
        tg_scale(c, tg_add_scalar(c, tg_scale(c, x2, 3.0 * TG__GELU_C), 1.0), TG__SQRT_2_PI);
    tg_tensor *right = tg_scale(c, tg_mul(c, x, tg_mul(c, sech2, du)), 0.5);
    dx[0] = tg_mul(c, dout, tg_add(c, left, right));
}

/* y = x s, s = sigmoid(x);  dx = dout * s (1 + x (1 - s)) */
tg_tensor *tg_silu(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_silu", TG_OP_SILU, EW_KP(k_silu), x, NULL);
}
void tg__silu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *x = n->in[0];
    tg_tensor *s = tg_sigmoid(c, x);
    tg_tensor *inner = tg_add_scalar(c, tg_mul(c, x, tg_add_scalar(c, tg_neg(c, s), 1.0)), 1.0);
    dx[0] = tg_mul(c, dout, tg_mul(c, s, inner));
}

/* y = beta x > threshold ? x : log(1 + exp(beta x)) / beta;
 * dx = beta x > threshold ? dout : dout * sigmoid(beta x) */
tg_tensor *tg_softplus(tg_ctx *c, tg_tensor *x, double beta, double threshold)
{
    if (!tg__ok(c)) return NULL;
    if (!isfinite(beta) || beta == 0 || isnan(threshold)) {
        tg__fail(c, TG_ERR_INVALID,
                 "tg_softplus: beta %g, threshold %g: beta must be finite and nonzero, "
                 "threshold not NaN",
                 beta, threshold);
        return NULL;
    }
    const double p[4] = {beta, threshold, 0, 0};
    return tg__ew_unary(c, "tg_softplus", TG_OP_SOFTPLUS, EW_KP(k_softplus), x, p);
}
void tg__softplus_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *x = n->in[0];
    tg_tensor *lin = tg__ew_const1(c, "tg_softplus", EW_KP(k_over_threshold), x, n->f);
    tg_tensor *curved = tg_mul(c, dout, tg_sigmoid(c, tg_scale(c, x, n->f[0])));
    dx[0] = tg_where(c, lin, dout, curved);
}

/* y = min(max(x, lo), hi);  dx = dout where lo < x < hi, 0 elsewhere */
tg_tensor *tg_hardtanh(tg_ctx *c, tg_tensor *x, double lo, double hi)
{
    if (!tg__ok(c)) return NULL;
    if (isnan(lo) || isnan(hi) || lo > hi) {
        tg__fail(c, TG_ERR_INVALID, "tg_hardtanh: min %g, max %g: need min <= max, not NaN", lo,
                 hi);
        return NULL;
    }
    const double p[4] = {lo, hi, 0, 0};
    return tg__ew_unary(c, "tg_hardtanh", TG_OP_HARDTANH, EW_KP(k_hardtanh), x, p);
}
void tg__hardtanh_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0))
        dx[0] = tg__ew_masked(c, tg__ew_const1(c, "tg_hardtanh", EW_KP(k_in_open), n->in[0], n->f),
                              dout);
}

/* y = log sigmoid(x);  dx = dout * sigmoid(-x) */
tg_tensor *tg_log_sigmoid(tg_ctx *c, tg_tensor *x)
{
    return tg__ew_unary(c, "tg_log_sigmoid", TG_OP_LOG_SIGMOID, EW_KP(k_log_sigmoid), x, NULL);
}
void tg__log_sigmoid_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, tg_sigmoid(c, tg_neg(c, n->in[0])));
}
