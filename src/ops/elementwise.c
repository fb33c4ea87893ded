/*
 * elementwise.c - binary ops with NumPy broadcasting and unary math ops,
 * each forward beside its backward.
 *
 * Kernels run on one strided run at a time (see iter.h); the output is
 * always a fresh contiguous tensor, inputs may be strided or broadcast
 * (stride 0). Backward rules use the ops themselves, so they can be
 * differentiated again.
 */
#include "ops_impl.h"

#include <math.h>

/* ====================================================================== */
/* Kernels                                                                */
/* ====================================================================== */

/* o = expr(A, B) over a run; fast paths for contiguous and scalar operands. */
#define BIN_KERNEL(NAME, T, EXPR)                                                  \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)             \
    {                                                                              \
        (void)aux;                                                                 \
        T *o = (T *)p[0];                                                          \
        const int64_t es = (int64_t)sizeof(T);                                     \
        if (s[1] == es && s[2] == es) {                                            \
            const T *x = (const T *)p[1], *y = (const T *)p[2];                    \
            for (int64_t i = 0; i < n; i++) {                                      \
                T A = x[i], B = y[i];                                              \
                o[i] = (EXPR);                                                     \
            }                                                                      \
        } else if (s[1] == es && s[2] == 0) {                                      \
            const T *x = (const T *)p[1];                                          \
            const T B = *(const T *)p[2];                                          \
            for (int64_t i = 0; i < n; i++) {                                      \
                T A = x[i];                                                        \
                o[i] = (EXPR);                                                     \
            }                                                                      \
        } else if (s[1] == 0 && s[2] == es) {                                      \
            const T A = *(const T *)p[1];                                          \
            const T *y = (const T *)p[2];                                          \
            for (int64_t i = 0; i < n; i++) {                                      \
                T B = y[i];                                                        \
                o[i] = (EXPR);                                                     \
            }                                                                      \
        } else {                                                                   \
            for (int64_t i = 0; i < n; i++) {                                      \
                T A = *(const T *)(p[1] + i * s[1]);                               \
                T B = *(const T *)(p[2] + i * s[2]);                               \
                o[i] = (EXPR);                                                     \
            }                                                                      \
        }                                                                          \
    }

/* o = expr(X, S) over a run, S a scalar argument from aux. */
#define UN_KERNEL(NAME, T, EXPR)                                                   \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)             \
    {                                                                              \
        T *o = (T *)p[0];                                                          \
        const T S = aux ? (T) * (const double *)aux : (T)0;                        \
        (void)S;                                                                   \
        if (s[1] == (int64_t)sizeof(T)) {                                          \
            const T *x = (const T *)p[1];                                          \
            for (int64_t i = 0; i < n; i++) {                                      \
                T X = x[i];                                                        \
                o[i] = (EXPR);                                                     \
            }                                                                      \
        } else {                                                                   \
            for (int64_t i = 0; i < n; i++) {                                      \
                T X = *(const T *)(p[1] + i * s[1]);                               \
                o[i] = (EXPR);                                                     \
            }                                                                      \
        }                                                                          \
    }

#define BIN_PAIR(name, EXPR)                                                       \
    BIN_KERNEL(name##_f32, float, EXPR)                                            \
    BIN_KERNEL(name##_f64, double, EXPR)
#define UN_PAIR(name, EXPR_F, EXPR_D)                                              \
    UN_KERNEL(name##_f32, float, EXPR_F)                                           \
    UN_KERNEL(name##_f64, double, EXPR_D)

BIN_PAIR(k_add, A + B)
BIN_PAIR(k_sub, A - B)
BIN_PAIR(k_mul, A * B)
BIN_PAIR(k_div, A / B)

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

UN_PAIR(k_neg, -X, -X)
UN_PAIR(k_scale, X * S, X * S)
UN_PAIR(k_add_scalar, X + S, X + S)
UN_PAIR(k_pow, powf(X, S), pow(X, S))
UN_PAIR(k_exp, expf(X), exp(X))
UN_PAIR(k_log, logf(X), log(X))
UN_PAIR(k_sqrt, sqrtf(X), sqrt(X))
UN_PAIR(k_tanh, tanhf(X), tanh(X))
UN_PAIR(k_sigmoid, sigmoidf_(X), sigmoid_(X))
UN_PAIR(k_relu, (X > 0 || X != X) ? X : 0.0f, (X > 0 || X != X) ? X : 0.0)
UN_PAIR(k_positive, X > 0 ? 1.0f : 0.0f, X > 0 ? 1.0 : 0.0)

typedef struct {
    tg__ew_kernel f32, f64;
} kpair;

#define KP(name) ((kpair){name##_f32, name##_f64})

/* ====================================================================== */
/* Shared forward drivers                                                 */
/* ====================================================================== */

static tg_tensor *binary(tg_ctx *c, const char *fn, tg_op op, kpair k, tg_tensor *a,
                         tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, a, b)) return NULL;
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (!tg__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) {
        char sa[128], sb[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", fn,
                 tg__fmt_shape(sa, sizeof sa, a->ndim, a->shape),
                 tg__fmt_shape(sb, sizeof sb, b->ndim, b->shape));
        return NULL;
    }
    tg_tensor *y = tg__empty(c, fn, a->dtype, nd, shape);
    if (!y) return NULL;
    tg_tensor *ops[3] = {y, a, b};
    tg__ew_apply(c, 3, ops, a->dtype == TG_F32 ? k.f32 : k.f64, NULL);
    tg__node *n;
    if (tg__record(c, op, y, 2, in, &n)) return NULL;
    return y;
}

/* y = k(x, s); records op with f[0] = s. */
static tg_tensor *unary(tg_ctx *c, const char *fn, tg_op op, kpair k, tg_tensor *x, double s)
{
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    tg_tensor *ops[2] = {y, x};
    tg__ew_apply(c, 2, ops, x->dtype == TG_F32 ? k.f32 : k.f64, &s);
    tg__node *n;
    if (tg__record(c, op, y, 1, &x, &n)) return NULL;
    if (n) n->f[0] = s;
    return y;
}

/* A constant (no grad, not recorded) 0/1 mask of x > 0. */
static tg_tensor *positive_mask(tg_ctx *c, tg_tensor *x)
{
    tg_tensor *m = tg__empty(c, "tg_relu", x->dtype, x->ndim, x->shape);
    if (!m) return NULL;
    tg_tensor *ops[2] = {m, x};
    tg__ew_apply(c, 2, ops, x->dtype == TG_F32 ? k_positive_f32 : k_positive_f64, NULL);
    return m;
}

#define NEED(i) (n->in[i]->requires_grad)

/* ====================================================================== */
/* Binary ops                                                             */
/* ====================================================================== */

/* y = a + b */
tg_tensor *tg_add(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_add", TG_OP_ADD, KP(k_add), a, b);
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
    return binary(c, "tg_sub", TG_OP_SUB, KP(k_sub), a, b);
}
void tg__sub_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = dout;
    if (NEED(1)) dx[1] = tg_neg(c, dout);
}

/* y = a * b */
tg_tensor *tg_mul(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_mul", TG_OP_MUL, KP(k_mul), a, b);
}
void tg__mul_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, n->in[1]);
    if (NEED(1)) dx[1] = tg_mul(c, dout, n->in[0]);
}

/* y = a / b;  da = dout / b,  db = -dout * y / b */
tg_tensor *tg_div(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    return binary(c, "tg_div", TG_OP_DIV, KP(k_div), a, b);
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
tg_tensor *tg_neg(tg_ctx *c, tg_tensor *x) { return unary(c, "tg_neg", TG_OP_NEG, KP(k_neg), x, 0); }
void tg__neg_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_neg(c, dout);
}

/* y = s * x */
tg_tensor *tg_scale(tg_ctx *c, tg_tensor *x, double s)
{
    return unary(c, "tg_scale", TG_OP_SCALE, KP(k_scale), x, s);
}
void tg__scale_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_scale(c, dout, n->f[0]);
}

/* y = x + s */
tg_tensor *tg_add_scalar(tg_ctx *c, tg_tensor *x, double s)
{
    return unary(c, "tg_add_scalar", TG_OP_ADD_SCALAR, KP(k_add_scalar), x, s);
}
void tg__add_scalar_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c;
    if (NEED(0)) dx[0] = dout;
}

/* y = x^p;  dx = dout * p * x^(p-1) */
tg_tensor *tg_pow_scalar(tg_ctx *c, tg_tensor *x, double p)
{
    return unary(c, "tg_pow_scalar", TG_OP_POW_SCALAR, KP(k_pow), x, p);
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
tg_tensor *tg_exp(tg_ctx *c, tg_tensor *x) { return unary(c, "tg_exp", TG_OP_EXP, KP(k_exp), x, 0); }
void tg__exp_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, n->out);
}

/* y = log(x);  dx = dout / x */
tg_tensor *tg_log(tg_ctx *c, tg_tensor *x) { return unary(c, "tg_log", TG_OP_LOG, KP(k_log), x, 0); }
void tg__log_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_div(c, dout, n->in[0]);
}

/* y = sqrt(x);  dx = dout / (2 y) */
tg_tensor *tg_sqrt(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_sqrt", TG_OP_SQRT, KP(k_sqrt), x, 0);
}
void tg__sqrt_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_div(c, dout, tg_scale(c, n->out, 2.0));
}

/* y = tanh(x);  dx = dout * (1 - y^2) */
tg_tensor *tg_tanh(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_tanh", TG_OP_TANH, KP(k_tanh), x, 0);
}
void tg__tanh_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *one_minus_y2 = tg_add_scalar(c, tg_scale(c, tg_mul(c, n->out, n->out), -1.0), 1.0);
    dx[0] = tg_mul(c, dout, one_minus_y2);
}

/* y = 1 / (1 + exp(-x));  dx = dout * y * (1 - y) */
tg_tensor *tg_sigmoid(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_sigmoid", TG_OP_SIGMOID, KP(k_sigmoid), x, 0);
}
void tg__sigmoid_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *one_minus_y = tg_add_scalar(c, tg_neg(c, n->out), 1.0);
    dx[0] = tg_mul(c, dout, tg_mul(c, n->out, one_minus_y));
}

/* y = max(x, 0);  dx = dout * [x > 0], the mask a constant */
tg_tensor *tg_relu(tg_ctx *c, tg_tensor *x)
{
    return unary(c, "tg_relu", TG_OP_RELU, KP(k_relu), x, 0);
}
void tg__relu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, positive_mask(c, n->in[0]));
}
