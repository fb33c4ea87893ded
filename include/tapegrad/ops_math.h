/*
 * tapegrad/ops_math.h - elementwise math and activations.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/math.c (elementwise), src/ops/activation.c (activations).
 *
 * Every op here takes TG_F32 or TG_F64 tensors of any shape and strides
 * and returns a new contiguous tensor of the same dtype (TG_ERR_DTYPE for
 * TG_I64 input or float inputs of different dtypes; TG_ERR_INVALID for a
 * NULL input, naming the function and the input). Binary and ternary ops
 * broadcast like NumPy (TG_ERR_SHAPE naming the shapes otherwise); the
 * result has the broadcast shape. Results are bit-identical whatever the
 * thread count. Gradients are exact derivatives except at kinks, where the
 * subgradient each op uses is stated; every backward is made of ops, so
 * second-order gradients work.
 */
#ifndef TAPEGRAD_OPS_MATH_H
#define TAPEGRAD_OPS_MATH_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_MATH(X)                       \
    /* elementwise, src/ops/math.c */        \
    X(ABS, abs, 1, 0)                        \
    X(RSQRT, rsqrt, 1, 0)                    \
    X(LOG1P, log1p, 1, 0)                    \
    X(EXPM1, expm1, 1, 0)                    \
    X(SIN, sin, 1, 0)                        \
    X(COS, cos, 1, 0)                        \
    X(SQUARE, square, 1, 0)                  \
    X(ERF, erf, 1, 0)                        \
    X(CLAMP, clamp, 1, 0)                    \
    X(MAXIMUM, maximum, 2, TG_OPF_BROADCAST) \
    X(MINIMUM, minimum, 2, TG_OPF_BROADCAST) \
    X(WHERE, where, 3, TG_OPF_BROADCAST)     \
    X(POW, pow, 2, TG_OPF_BROADCAST)         \
    /* activations, src/ops/activation.c */  \
    X(LEAKY_RELU, leaky_relu, 1, 0)          \
    X(ELU, elu, 1, 0)                        \
    X(GELU, gelu, 1, 0)                      \
    X(GELU_TANH, gelu_tanh, 1, 0)            \
    X(SILU, silu, 1, 0)                      \
    X(SOFTPLUS, softplus, 1, 0)              \
    X(HARDTANH, hardtanh, 1, 0)              \
    X(LOG_SIGMOID, log_sigmoid, 1, 0)

/* ====================================================================== */
/* Elementwise math                                                       */
/* ====================================================================== */

/* |x|. abs(-0.0) is +0.0; the gradient at x == 0 is 0 (sign(0) = 0). */
tg_tensor *tg_abs(tg_ctx *c, tg_tensor *x);

/* 1 / sqrt(x): +inf at 0, NaN for negative x (as is tg_sqrt, ops.h). */
tg_tensor *tg_rsqrt(tg_ctx *c, tg_tensor *x);

/* log(1 + x), accurate for tiny x: -inf at -1, NaN below. */
tg_tensor *tg_log1p(tg_ctx *c, tg_tensor *x);

/* exp(x) - 1, accurate for tiny x. */
tg_tensor *tg_expm1(tg_ctx *c, tg_tensor *x);

/* sin(x), cos(x) (radians). */
tg_tensor *tg_sin(tg_ctx *c, tg_tensor *x);
tg_tensor *tg_cos(tg_ctx *c, tg_tensor *x);

/* x * x. */
tg_tensor *tg_square(tg_ctx *c, tg_tensor *x);

/* erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt; the building block of
 * tg_gelu's gradient. */
tg_tensor *tg_erf(tg_ctx *c, tg_tensor *x);

/* min(max(x, lo), hi). Pass -INFINITY / INFINITY for an absent bound. NaN
 * in x stays NaN; when lo > hi every element becomes hi (PyTorch). The
 * gradient passes where lo <= x <= hi, boundary included (PyTorch's clamp),
 * and is 0 elsewhere. TG_ERR_INVALID when a bound is NaN. */
tg_tensor *tg_clamp(tg_ctx *c, tg_tensor *x, double lo, double hi);

/* Elementwise max(a, b) / min(a, b), broadcasting; NaN on either side gives
 * NaN. At ties (a == b) the gradient is split 0.5 / 0.5 (PyTorch). */
tg_tensor *tg_maximum(tg_ctx *c, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_minimum(tg_ctx *c, tg_tensor *a, tg_tensor *b);

/* cond ? a : b elementwise, cond, a and b broadcast together. cond has the
 * dtype of a and b or is TG_I64; nonzero (and NaN) means true. cond never
 * gets a gradient; a gets dout where cond holds and b elsewhere (exact zeros
 * in between, even where dout is inf or NaN). TG_ERR_DTYPE for another cond
 * dtype. */
tg_tensor *tg_where(tg_ctx *c, tg_tensor *cond, tg_tensor *a, tg_tensor *b);

/* a^b elementwise, broadcasting, with C's pow(): a < 0 with non-integer b
 * gives NaN. Gradients: d/da = b a^(b-1), taken as 0 where b == 0 (even at
 * a == 0); d/db = a^b log(a), taken as 0 where a == 0 and b >= 0 (PyTorch)
 * and NaN where a < 0, where a^b is not real-differentiable in b. For a
 * constant exponent use tg_pow_scalar. */
tg_tensor *tg_pow(tg_ctx *c, tg_tensor *a, tg_tensor *b);

/* ====================================================================== */
/* Activations                                                            */
/* ====================================================================== */

/* x > 0 ? x : slope * x. Gradient slope at x == 0 (PyTorch). */
tg_tensor *tg_leaky_relu(tg_ctx *c, tg_tensor *x, double slope);

/* x > 0 ? x : alpha * (exp(x) - 1). Gradient alpha * exp(x) for x <= 0.
 * TG_ERR_INVALID for a non-finite alpha. */
tg_tensor *tg_elu(tg_ctx *c, tg_tensor *x, double alpha);

/* x * Phi(x), Phi the standard normal CDF (the exact, erf form of GELU),
 * computed as x/2 * erfc(-x/sqrt(2)) so it stays accurate for negative x.
 * gelu(0) = 0. */
tg_tensor *tg_gelu(tg_ctx *c, tg_tensor *x);

/* The tanh approximation of GELU:
 * x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). */
tg_tensor *tg_gelu_tanh(tg_ctx *c, tg_tensor *x);

/* x * sigmoid(x) (swish). */
tg_tensor *tg_silu(tg_ctx *c, tg_tensor *x);

/* log(1 + exp(beta x)) / beta, and x itself where beta x > threshold
 * (PyTorch's softplus; the gradient there is 1). Computed stably, without
 * overflow for any threshold. PyTorch's defaults are beta 1, threshold 20.
 * TG_ERR_INVALID when beta is 0 or not finite or threshold is NaN. */
tg_tensor *tg_softplus(tg_ctx *c, tg_tensor *x, double beta, double threshold);

/* min(max(x, lo), hi) with PyTorch's hardtanh gradient: 1 strictly inside
 * (lo, hi), 0 at and beyond the bounds (unlike tg_clamp). TG_ERR_INVALID
 * when a bound is NaN or lo > hi. PyTorch's defaults are -1, 1. */
tg_tensor *tg_hardtanh(tg_ctx *c, tg_tensor *x, double lo, double hi);

/* log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): finite for any finite x
 * (log_sigmoid(-1000) = -1000), 0 towards +inf. */
tg_tensor *tg_log_sigmoid(tg_ctx *c, tg_tensor *x);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_MATH_H */
