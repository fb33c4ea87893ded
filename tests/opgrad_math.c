/*
 * opgrad_math.c - the math family's entries of the table-driven gradient
 * check (see tests/opgrad.h): elementwise math (src/ops/math.c) and
 * activations (src/ops/activation.c).
 *
 * Inputs stay away from kinks (D_AWAY for abs and leaky_relu, bounds of
 * clamp and hardtanh far from the grid of central differences) and in the
 * domain of the function (D_POS for rsqrt, log1p and pow's base). Ops with
 * a threshold (softplus) have variants whose inputs fall on both sides.
 */
#include <math.h>

#include "opgrad.h"

/* clang-format off */
BUILD(b_abs, tg_abs(c, in[0]))
BUILD(b_rsqrt, tg_rsqrt(c, in[0]))
BUILD(b_log1p, tg_log1p(c, in[0]))
BUILD(b_expm1, tg_expm1(c, in[0]))
BUILD(b_sin, tg_sin(c, in[0]))
BUILD(b_cos, tg_cos(c, in[0]))
BUILD(b_square, tg_square(c, in[0]))
BUILD(b_erf, tg_erf(c, in[0]))
BUILD(b_clamp, tg_clamp(c, in[0], a->f[0], a->f[1]))
BUILD(b_maximum, tg_maximum(c, in[0], in[1]))
BUILD(b_minimum, tg_minimum(c, in[0], in[1]))
BUILD(b_where, tg_where(c, in[0], in[1], in[2]))
BUILD(b_pow, tg_pow(c, in[0], in[1]))
BUILD(b_leaky_relu, tg_leaky_relu(c, in[0], a->f[0]))
BUILD(b_elu, tg_elu(c, in[0], a->f[0]))
BUILD(b_gelu, tg_gelu(c, in[0]))
BUILD(b_gelu_tanh, tg_gelu_tanh(c, in[0]))
BUILD(b_silu, tg_silu(c, in[0]))
BUILD(b_softplus, tg_softplus(c, in[0], a->f[0], a->f[1]))
BUILD(b_hardtanh, tg_hardtanh(c, in[0], a->f[0], a->f[1]))
BUILD(b_log_sigmoid, tg_log_sigmoid(c, in[0]))

/* Unary op on [3,4] and [2,3,4] in domain dm with arguments f0, f1. */
#define UN(dm, f0, f1)                                                                             \
    {                                                                                              \
        {.what = "[3,4]", .n_in = 1, .in = {S(3, 4)}, .dom = {dm}, .f = {f0, f1}},                 \
        {.what = "[2,3,4]", .n_in = 1, .in = {S(2, 3, 4)}, .dom = {dm}, .f = {f0, f1}},            \
    }

/* One unary variant on [3,4]. */
#define UN1(w, dm, f0, f1) {.what = w, .n_in = 1, .in = {S(3, 4)}, .dom = {dm}, .f = {f0, f1}}

/* Binary broadcasting op: equal shapes with a broadcast case, and [2,3,4]
 * with a 0-d / [3,1] broadcast case. */
#define BIN(d0, d1)                                                                                \
    {                                                                                              \
        {.what = "[3,4] with [3,4]; bc [3,1,4] with [2,1]", .n_in = 2, .in = {S(3, 4), S(3, 4)},   \
         .dom = {d0, d1}, .has_bc = true, .bc = {S(3, 1, 4), S(2, 1)}},                            \
        {.what = "[2,3,4] with [2,3,4]; bc [2,3,4] with 0-d", .n_in = 2,                           \
         .in = {S(2, 3, 4), S(2, 3, 4)}, .dom = {d0, d1}, .has_bc = true,                          \
         .bc = {S(2, 3, 4), S0}},                                                                  \
        {.what = "[3,4] with [3,4]; bc 0-d with [3,1]", .n_in = 2, .in = {S(3, 4), S(3, 4)},       \
         .dom = {d0, d1}, .has_bc = true, .bc = {S0, S(3, 1)}},                                    \
    }

static const op_entry math_table[TG_OP_COUNT] = {
    [TG_OP_ABS] = {b_abs, UN(D_AWAY, 0, 0)},
    [TG_OP_RSQRT] = {b_rsqrt, UN(D_POS, 0, 0)},
    [TG_OP_LOG1P] = {b_log1p, UN(D_POS, 0, 0)},
    [TG_OP_EXPM1] = {b_expm1, UN(D_NORMAL, 0, 0)},
    [TG_OP_SIN] = {b_sin, UN(D_NORMAL, 0, 0)},
    [TG_OP_COS] = {b_cos, UN(D_NORMAL, 0, 0)},
    [TG_OP_SQUARE] = {b_square, UN(D_NORMAL, 0, 0)},
    [TG_OP_ERF] = {b_erf, UN(D_NORMAL, 0, 0)},
    [TG_OP_CLAMP] = {b_clamp,
                     {UN1("[-0.5, 0.7]", D_NORMAL, -0.5, 0.7),
                      UN1("min -0.3 only", D_NORMAL, -0.3, INFINITY),
                      UN1("max 0.2 only", D_NORMAL, -INFINITY, 0.2),
                      {.what = "[2,3,4] [-1, 1]", .n_in = 1, .in = {S(2, 3, 4)},
                       .dom = {D_NORMAL}, .f = {-1.0, 1.0}}}},
    [TG_OP_MAXIMUM] = {b_maximum, BIN(D_NORMAL, D_NORMAL)},
    [TG_OP_MINIMUM] = {b_minimum, BIN(D_NORMAL, D_NORMAL)},
    [TG_OP_WHERE] = {b_where,
                     {{.what = "[3,4] x3; bc [3,1] cond, [4], [2,1,1]", .n_in = 3,
                       .in = {S(3, 4), S(3, 4), S(3, 4)}, .dom = {D_MASK, D_NORMAL, D_NORMAL},
                       .has_bc = true, .bc = {S(3, 1), S(4), S(2, 1, 1)}},
                      {.what = "[2,3,4] x3; bc [2,3,4] cond, 0-d, [3,4]", .n_in = 3,
                       .in = {S(2, 3, 4), S(2, 3, 4), S(2, 3, 4)},
                       .dom = {D_MASK, D_NORMAL, D_NORMAL}, .has_bc = true,
                       .bc = {S(2, 3, 4), S0, S(3, 4)}}}},
    [TG_OP_POW] = {b_pow, BIN(D_POS, D_NORMAL)},
    [TG_OP_LEAKY_RELU] = {b_leaky_relu,
                          {UN1("slope 0.1", D_AWAY, 0.1, 0), UN1("slope -0.3", D_AWAY, -0.3, 0),
                           {.what = "[2,3,4] slope 0.01", .n_in = 1, .in = {S(2, 3, 4)},
                            .dom = {D_AWAY}, .f = {0.01}}}},
    [TG_OP_ELU] = {b_elu,
                   {UN1("alpha 1", D_AWAY, 1.0, 0), UN1("alpha 0.5", D_AWAY, 0.5, 0),
                    {.what = "[2,3,4] alpha 1.3", .n_in = 1, .in = {S(2, 3, 4)},
                     .dom = {D_NORMAL}, .f = {1.3}}}},
    [TG_OP_GELU] = {b_gelu, UN(D_NORMAL, 0, 0)},
    [TG_OP_GELU_TANH] = {b_gelu_tanh, UN(D_NORMAL, 0, 0)},
    [TG_OP_SILU] = {b_silu, UN(D_NORMAL, 0, 0)},
    [TG_OP_SOFTPLUS] = {b_softplus,
                        {UN1("beta 1, threshold 20", D_NORMAL, 1.0, 20.0),
                         UN1("beta 2, threshold 2 (both sides)", D_AWAY, 2.0, 2.0),
                         UN1("beta -1.5, threshold 1 (both sides)", D_AWAY, -1.5, 1.0),
                         {.what = "[2,3,4] beta 0.5", .n_in = 1, .in = {S(2, 3, 4)},
                          .dom = {D_NORMAL}, .f = {0.5, 20.0}}}},
    [TG_OP_HARDTANH] = {b_hardtanh,
                        {UN1("[-0.8, 0.9]", D_NORMAL, -0.8, 0.9),
                         {.what = "[2,3,4] [-1, 1]", .n_in = 1, .in = {S(2, 3, 4)},
                          .dom = {D_NORMAL}, .f = {-1.0, 1.0}}}},
    [TG_OP_LOG_SIGMOID] = {b_log_sigmoid, UN(D_NORMAL, 0, 0)},
};

/* clang-format on */

void opgrad_fill_math(op_entry *table)
{
    for (int op = 0; op < TG_OP_COUNT; op++)
        if (math_table[op].f) table[op] = math_table[op];
}
