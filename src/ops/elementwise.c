/*
 * elementwise.c - binary ops with NumPy broadcasting and unary math ops,
 * each forward beside its backward.
 *
 * Kernels run on one strided run at a time (see iter.h); the output is
 * always a fresh contiguous tensor, inputs may be strided or broadcast
 * (stride 0). Backward rules use the ops themselves, so they can be
 * differentiated again.
 */
#include "ew_kernels.h"
#include "fastmath.h"

#include <math.h>
#include <string.h>

/* ====================================================================== */
/* Kernels (macros and drivers from ew_kernels.h, shared with math.c)     */
/* ====================================================================== */

EW_BIN_PAIR(k_add, A + B, A + B)
EW_BIN_PAIR(k_sub, A - B, A - B)
EW_BIN_PAIR(k_mul, A * B, A * B)
EW_BIN_PAIR(k_div, A / B, A / B)

static inline double sigmoid_(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

EW_UN_PAIR(k_neg, -X, -X)
EW_UN_PAIR(k_scale, X * P0, X * P0)
EW_UN_PAIR(k_add_scalar, X + P0, X + P0)
EW_UN_PAIR(k_pow, powf(X, P0), pow(X, P0))
/* f32 exp is fastmath.h's (within 3 ulp, tested there), compiled for
 * AVX-512 and AVX2 too: a vector loop, about 5x glibc's scalar expf over
 * a [1024, 512] tensor. f64 keeps libm's. */
TG__VEC_CLONES EW_UN_KERNEL(k_exp_f32, float, tg__expf(X))
EW_UN_KERNEL(k_exp_f64, double, exp(X))
EW_UN_PAIR(k_log, logf(X), log(X))
EW_UN_PAIR(k_sqrt, sqrtf(X), sqrt(X))
/* f32 tanh and sigmoid are fastmath.h's branch-free forms (within 3 ulp of
 * the true value, tested there): they vectorise, and even on one element
 * cost half of glibc's tanhf. f64 keeps libm's. tanh's f32 loop is also
 * compiled for AVX-512 and AVX2 (TG__VEC_CLONES: the same bits), half the
 * instructions of the 2-3-1 network's hidden layer. */
TG__VEC_CLONES EW_UN_KERNEL(k_tanh_f32_vec, float, tg__tanhf(X))
/* One element, for runs too short for the vector loop, whose setup (the
 * constants into vector registers) is half the cost again: one element
 * took 160 instructions through it, 109 through tg__tanhf alone
 * (callgrind, AVX2), and a branch to the one form the argument needs
 * takes the chain benchmark's tanh from about 34 ns to 12 (perf). Not
 * inlined, so it stays one scalar evaluation: the same operations as the
 * lane of the vector loop whose value is selected, hence the same bits
 * (tests/test_nn.c). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static float tanh1f(float x)
{
    return tg__tanhf_is_small(x) ? tg__tanhf_small(x) : tg__tanhf_big(x);
}
static void k_tanh_f32(int64_t n, char **p, const int64_t *s, void *aux)
{
    if (n > 2) {
        k_tanh_f32_vec(n, p, s, aux);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        ((float *)p[0])[i] = tanh1f(*(const float *)(p[1] + i * s[1]));
}
EW_UN_KERNEL(k_tanh_f64, double, tanh(X))
EW_UN_PAIR(k_sigmoid, tg__sigmoidf(X), sigmoid_(X))
/* relu's f32 kernels run on every conv layer's output (the CNN benchmark's
 * 2.4 M elements a step each way): compiled for AVX-512 and AVX2 as well
 * (TG__VEC_CLONES; exact operations, so every copy gives the same bits). */
TG__VEC_CLONES EW_UN_KERNEL(k_relu_f32, float, TG__RELU(float, X))
EW_UN_KERNEL(k_relu_f64, double, TG__RELU(double, X))
EW_UN_PAIR(k_positive, X > 0 ? 1.0f : 0.0f, X > 0 ? 1.0 : 0.0)
/* fused backward rules (NO_GRAPH), the composite's operations in order */
EW_BIN_PAIR(k_sqrt_bw, A / (B * 2.0f), A / (B * 2.0))
TG__VEC_CLONES EW_BIN_KERNEL(k_tanh_bw_f32, float, A * (B * B * -1.0f + 1.0f))
EW_BIN_KERNEL(k_tanh_bw_f64, double, A * (B * B * -1.0 + 1.0))
EW_BIN_PAIR(k_sigmoid_bw, A * (B * (-B + 1.0f)), A * (B * (-B + 1.0)))
/* relu's mask [x > 0] as 1.0 or 0.0 made from the comparison's bits: the
 * same value as (x > 0 ? 1 : 0), but GCC turns that ternary times dout into
 * a branch (dout * 0 may trap, so it will not if-convert it), which
 * mispredicts on every other element of real data and blocks vectorising. */
static inline float pos_onef(float x)
{
    uint32_t u = -(uint32_t)(x > 0) & UINT32_C(0x3f800000);
    float m;
    memcpy(&m, &u, sizeof m);
    return m;
}
static inline double pos_one(double x)
{
    uint64_t u = -(uint64_t)(x > 0) & UINT64_C(0x3ff0000000000000);
    double m;
    memcpy(&m, &u, sizeof m);
    return m;
}
TG__VEC_CLONES EW_BIN_KERNEL(k_relu_bw_f32, float, A * pos_onef(B))
EW_BIN_KERNEL(k_relu_bw_f64, double, A * pos_one(B))

static tg_tensor *binary(tg_ctx *c, const char *fn, tg_op op, tg__kpair k, tg_tensor *a,
                         tg_tensor *b)
{
    return tg__ew_binary(c, fn, op, k, a, b, NULL);
}

/* y = k(x, s); recorded with f[0] = s. */
static tg_tensor *unary(tg_ctx *c, const char *fn, tg_op op, tg__kpair k, tg_tensor *x, double s)
{
    const double p[4] = {s, 0, 0, 0};
    return tg__ew_unary(c, fn, op, k, x, p);
}

#define NEED(i) (n->in[i]->requires_grad)

/* ====================================================================== */
/* Binary ops                                                             */
/* ====================================================================== */

/* y = a + b */
tg_tensor *tg_add(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_add", TG_OP_ADD, EW_KP(k_add), a, b);
}
void tg__add_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c;
    if (NEED(0)) dx[0] = dout;
    if (NEED(1)) dx[1] = dout;
}

/* y = a - b */
tg_tensor *tg_sub(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_sub", TG_OP_SUB, EW_KP(k_sub), a, b);
}
void tg__sub_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = dout;
    if (NEED(1)) dx[1] = tg_neg(c, dout);
}

/* y = a * b */
tg_tensor *tg_mul(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_mul", TG_OP_MUL, EW_KP(k_mul), a, b);
}
void tg__mul_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NO_GRAPH(c)) { /* the last product may take dout's memory (FUSED: its last read) */
        if (NEED(0) && NEED(1)) dx[0] = tg_mul(c, dout, n->in[1]);
        else if (NEED(0)) dx[0] = FUSED(c, "tg_mul", k_mul, dout, n->in[1]);
        if (NEED(1)) dx[1] = FUSED(c, "tg_mul", k_mul, dout, n->in[0]);
        return;
    }
    if (NEED(0)) dx[0] = tg_mul(c, dout, n->in[1]);
    if (NEED(1)) dx[1] = tg_mul(c, dout, n->in[0]);
}

/* y = a / b;  da = dout / b,  db = -dout * y / b */
tg_tensor *tg_div(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_div", TG_OP_DIV, EW_KP(k_div), a, b);
}
void tg__div_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_div(c, dout, n->in[1]);
    if (NEED(1)) dx[1] = tg_neg(c, tg_div(c, tg_mul(c, dout, n->out), n->in[1]));
}

/* ====================================================================== */
/* Unary ops                                                              */
/* ====================================================================== */

/* y = -x */
tg_tensor *tg_neg(tg_ctx *c, tg_tensor *x) { return unary(c, "tg_neg", TG_OP_NEG, EW_KP(k_neg), x, 0); }
void tg__neg_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_neg(c, dout);
}

/* y = s * x */
tg_tensor *tg_scale(tg_ctx *c, tg_tensor *x, double s)
{
    return unary(c, "tg_scale", TG_OP_SCALE, EW_KP(k_scale), x, s);
}
void tg__scale_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_scale(c, dout, n->f[0]);
}

/* y = x + s */
tg_tensor *tg_add_scalar(tg_ctx *c, tg_tensor *x, double s)
{
    return unary(c, "tg_add_scalar", TG_OP_ADD_SCALAR, EW_KP(k_add_scalar), x, s);
}
void tg__add_scalar_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c;
    if (NEED(0)) dx[0] = dout;
}

/* y = x^p;  dx = dout * p * x^(p-1) */
tg_tensor *tg_pow_scalar(tg_ctx *c, tg_tensor *x, double p)
{
    return unary(c, "tg_pow_scalar", TG_OP_POW_SCALAR, EW_KP(k_pow), x, p);
}
void tg__pow_scalar_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    double p = n->f[0];
    if (p == 0) dx[0] = tg_scale(c, dout, 0.0); /* x^0 is constant, even at x = 0 */
    else if (p == 1) dx[0] = dout;
    else if (p == 2) dx[0] = tg_mul(c, dout, tg_scale(c, n->in[0], 2.0));
    else dx[0] = tg_mul(c, dout, tg_scale(c, tg_pow_scalar(c, n->in[0], p - 1), p));
}

/* y = exp(x);  dx = dout * y */
tg_tensor *tg_exp(tg_ctx *c, tg_tensor *x) { return unary(c, "tg_exp", TG_OP_EXP, EW_KP(k_exp), x, 0); }
void tg__exp_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, n->out);
}

/* y = log(x);  dx = dout / x */
tg_tensor *tg_log(tg_ctx *c, tg_tensor *x) { return unary(c, "tg_log", TG_OP_LOG, EW_KP(k_log), x, 0); }
void tg__log_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_div(c, dout, n->in[0]);
}

/* y = sqrt(x);  dx = dout / (2 y) */
tg_tensor *tg_sqrt(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_sqrt", TG_OP_SQRT, EW_KP(k_sqrt), x, 0);
}
void tg__sqrt_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0) && NO_GRAPH(c)) dx[0] = FUSED(c, "tg_sqrt", k_sqrt_bw, dout, n->out);
    else if (NEED(0)) dx[0] = tg_div(c, dout, tg_scale(c, n->out, 2.0));
}

/* y = tanh(x);  dx = dout * (1 - y^2) */
tg_tensor *tg_tanh(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_tanh", TG_OP_TANH, EW_KP(k_tanh), x, 0);
}
void tg__tanh_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    if (NO_GRAPH(c)) {
        dx[0] = FUSED(c, "tg_tanh", k_tanh_bw, dout, n->out);
        return;
    }
    tg_tensor *one_minus_y2 = tg_add_scalar(c, tg_scale(c, tg_mul(c, n->out, n->out), -1.0), 1.0);
    dx[0] = tg_mul(c, dout, one_minus_y2);
}

/* y = 1 / (1 + exp(-x));  dx = dout * y * (1 - y) */
tg_tensor *tg_sigmoid(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_sigmoid", TG_OP_SIGMOID, EW_KP(k_sigmoid), x, 0);
}
void tg__sigmoid_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    if (NO_GRAPH(c)) {
        dx[0] = FUSED(c, "tg_sigmoid", k_sigmoid_bw, dout, n->out);
        return;
    }
    tg_tensor *one_minus_y = tg_add_scalar(c, tg_neg(c, n->out), 1.0);
    dx[0] = tg_mul(c, dout, tg_mul(c, n->out, one_minus_y));
}

/* y = max(x, 0);  dx = dout * [x > 0], the mask a constant */
tg_tensor *tg_relu(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_relu", TG_OP_RELU, EW_KP(k_relu), x, 0);
}
void tg__relu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg__relu_grad(c, "tg_relu", dout, n->in[0]);
}

tg_tensor *tg__relu_grad(tg_ctx *c, const char *fn, tg_tensor *dout, tg_tensor *ref)
{
    if (NO_GRAPH(c)) return FUSED(c, fn, k_relu_bw, dout, ref);
    /* dout times a constant (no grad, not recorded) 0/1 mask of ref > 0 */
    return tg_mul(c, dout, tg__positive_mask(c, fn, ref));
}

tg_tensor *tg__positive_mask(tg_ctx *c, const char *fn, tg_tensor *x)
{
    return tg__ew_const1(c, fn, EW_KP(k_positive), x, NULL);
}

/* ---- in-place accumulation (the backward driver's owned buffers) ------- */

#define ACC_KERNEL(NAME, T)                                                        \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)             \
    {                                                                              \
        (void)aux;                                                                 \
        if (s[0] == (int64_t)sizeof(T) && s[1] == (int64_t)sizeof(T)) {            \
            T *o = (T *)p[0];                                                      \
            const T *x = (const T *)p[1];                                          \
            for (int64_t i = 0; i < n; i++) o[i] += x[i];                          \
            return;                                                                \
        }                                                                          \
        for (int64_t i = 0; i < n; i++)                                            \
            *(T *)(p[0] + i * s[0]) += *(const T *)(p[1] + i * s[1]);              \
    }
ACC_KERNEL(acc_into_f32, float)
ACC_KERNEL(acc_into_f64, double)
#undef ACC_KERNEL

void tg__acc_into(tg_ctx *c, tg_tensor *acc, tg_tensor *x)
{
    TG_ASSERT(acc->dtype == x->dtype && tg__is_float(acc->dtype));
    tg_tensor *ops[2] = {acc, x};
    tg__ew_apply(c, 2, ops, acc->dtype == TG_F32 ? acc_into_f32 : acc_into_f64, NULL);
}
