/*
 * registry.c - the op registry generated from TG_OP_MAP, and the input
 * checks every op family shares.
 */
#include "ops_impl.h"

#include <string.h>

const tg__opdef tg__ops[TG_OP_COUNT] = {
#define TG__OP_DEF(E, name, arity, flags) [TG_OP_##E] = {#name, arity, flags, tg__##name##_backward},
    TG_OP_MAP(TG__OP_DEF)
#undef TG__OP_DEF
};

const tg__backward_acc_fn tg__ops_acc[TG_OP_COUNT] = {
    [TG_OP_SLICE] = tg__slice_backward_acc,
    [TG_OP_LAYER_NORM] = tg__layer_norm_backward_acc,
    [TG_OP_RMS_NORM] = tg__rms_norm_backward_acc,
};

const tg__backward_nograph_fn tg__ops_nograph[TG_OP_COUNT] = {
    [TG_OP_LINEAR] = tg__linear_backward_nograph,
    [TG_OP_LINEAR_ADD] = tg__linear_add_backward_nograph,
    [TG_OP_LINEAR_RELU] = tg__linear_relu_backward_nograph,
};

const uint32_t tg__ops_overwrites[TG_OP_COUNT] = {
    [TG_OP_GELU_LINEAR] = TG__IN(0),
};

const uint32_t tg__ops_reads[TG_OP_COUNT] = {
    /* gradients from dout alone, or from shapes */
    [TG_OP_ADD] = TG__READS,
    [TG_OP_SUB] = TG__READS,
    [TG_OP_NEG] = TG__READS,
    [TG_OP_SCALE] = TG__READS,
    [TG_OP_ADD_SCALAR] = TG__READS,
    [TG_OP_RESHAPE] = TG__READS,
    [TG_OP_FLATTEN] = TG__READS,
    [TG_OP_SQUEEZE] = TG__READS,
    [TG_OP_UNSQUEEZE] = TG__READS,
    [TG_OP_PERMUTE] = TG__READS,
    [TG_OP_TRANSPOSE] = TG__READS,
    [TG_OP_EXPAND] = TG__READS,
    [TG_OP_CONTIGUOUS] = TG__READS,
    [TG_OP_SLICE] = TG__READS,
    [TG_OP_CONCAT] = TG__READS,
    [TG_OP_STACK] = TG__READS,
    [TG_OP_MAX_POOL2D] = TG__READS, /* its saved window codes */
    [TG_OP_DROPOUT] = TG__READS,    /* its saved mask */
    [TG_OP_SUM] = TG__READS,
    [TG_OP_MEAN] = TG__READS,
    /* from the input */
    [TG_OP_RELU] = TG__READS | TG__IN(0),
    [TG_OP_MUL] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LINEAR] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LINEAR_ADD] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LINEAR_RELU] = TG__READS | TG__IN(0) | TG__IN(1) | TG__OUT,
    [TG_OP_GELU_LINEAR] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_CONV2D] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_CONV2D_RELU] = TG__READS | TG__IN(0) | TG__IN(1), /* and its saved mask */
    [TG_OP_CROSS_ENTROPY] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_EMBEDDING] = TG__READS | TG__IN(1),
    [TG_OP_MATMUL] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_MSE_LOSS] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LOG] = TG__READS | TG__IN(0),
    [TG_OP_SQUARE] = TG__READS | TG__IN(0),
    [TG_OP_SIN] = TG__READS | TG__IN(0),
    [TG_OP_COS] = TG__READS | TG__IN(0),
    [TG_OP_ABS] = TG__READS | TG__IN(0),
    [TG_OP_POW_SCALAR] = TG__READS | TG__IN(0),
    [TG_OP_SILU] = TG__READS | TG__IN(0),
    [TG_OP_LEAKY_RELU] = TG__READS | TG__IN(0),
    /* from the output */
    [TG_OP_TANH] = TG__READS | TG__OUT,
    [TG_OP_SIGMOID] = TG__READS | TG__OUT,
    [TG_OP_EXP] = TG__READS | TG__OUT,
    [TG_OP_SQRT] = TG__READS | TG__OUT,
    [TG_OP_SOFTMAX] = TG__READS | TG__OUT,
    [TG_OP_LOG_SOFTMAX] = TG__READS | TG__OUT,
    [TG_OP_GELU] = TG__READS | TG__IN(0) | TG__OUT,
    [TG_OP_LSTM_CELL] = TG__READS | TG__IN(0) | TG__IN(1) | TG__OUT,
    /* everything (the biases when it recomputes its gates), and its gates */
    [TG_OP_LSTM] = TG__READS | TG__IN(0) | TG__IN(1) | TG__IN(2) | TG__IN(3) | TG__IN(4) |
                   TG__IN(5) | TG__IN(6) | TG__OUT,
    /* x and the weight (the bias's gradient is dout's column sums), and the
     * saved mean and 1/std */
    [TG_OP_LAYER_NORM] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_RMS_NORM] = TG__READS | TG__IN(0) | TG__IN(1),
    /* q, k, v and the mask (it recomputes the probabilities); not its output */
    [TG_OP_SDPA] = TG__READS | TG__IN(0) | TG__IN(1) | TG__IN(2) | TG__IN(3),
};

/* ---- forwards run again (tg_recompute_later) ---------------------------- */

#define REMAKE_1(name)                                                                 \
    static tg_tensor *remake_##name(tg_ctx *c, const tg__node *n)                      \
    {                                                                                  \
        return tg_##name(c, n->in[0]);                                                 \
    }
#define REMAKE_1F(name)                                                                \
    static tg_tensor *remake_##name(tg_ctx *c, const tg__node *n)                      \
    {                                                                                  \
        return tg_##name(c, n->in[0], n->f[0]);                                        \
    }
#define REMAKE_1FF(name)                                                               \
    static tg_tensor *remake_##name(tg_ctx *c, const tg__node *n)                      \
    {                                                                                  \
        return tg_##name(c, n->in[0], n->f[0], n->f[1]);                               \
    }
#define REMAKE_2(name)                                                                 \
    static tg_tensor *remake_##name(tg_ctx *c, const tg__node *n)                      \
    {                                                                                  \
        return tg_##name(c, n->in[0], n->in[1]);                                       \
    }
#define REMAKE_AXIS(name)                                                              \
    static tg_tensor *remake_##name(tg_ctx *c, const tg__node *n)                      \
    {                                                                                  \
        return tg_##name(c, n->in[0], (int)n->iv[0]);                                  \
    }

REMAKE_1(neg)
REMAKE_1(exp)
REMAKE_1(log)
REMAKE_1(sqrt)
REMAKE_1(tanh)
REMAKE_1(sigmoid)
REMAKE_1(relu)
REMAKE_1(abs)
REMAKE_1(rsqrt)
REMAKE_1(log1p)
REMAKE_1(expm1)
REMAKE_1(sin)
REMAKE_1(cos)
REMAKE_1(square)
REMAKE_1(erf)
REMAKE_1(gelu)
REMAKE_1(gelu_tanh)
REMAKE_1(silu)
REMAKE_1(log_sigmoid)
REMAKE_1F(scale)
REMAKE_1F(add_scalar)
REMAKE_1F(pow_scalar)
REMAKE_1F(leaky_relu)
REMAKE_1F(elu)
REMAKE_1FF(softplus)
REMAKE_1FF(hardtanh)
REMAKE_1FF(clamp)
REMAKE_2(add)
REMAKE_2(sub)
REMAKE_2(mul)
REMAKE_2(div)
REMAKE_2(maximum)
REMAKE_2(minimum)
REMAKE_2(pow)
REMAKE_2(matmul)
REMAKE_AXIS(softmax)
REMAKE_AXIS(log_softmax)

static tg_tensor *remake_linear(tg_ctx *c, const tg__node *n)
{
    return tg_linear(c, n->in[0], n->in[1], n->in[2]);
}
static tg_tensor *remake_linear_relu(tg_ctx *c, const tg__node *n)
{
    return tg_linear_relu(c, n->in[0], n->in[1], n->in[2]);
}
static tg_tensor *remake_gelu_linear(tg_ctx *c, const tg__node *n)
{
    return tg_gelu_linear(c, n->in[0], n->in[1], n->in[2]);
}

static tg_tensor *remake_linear_add(tg_ctx *c, const tg__node *n)
{
    return tg_linear_add(c, n->in[0], n->in[1], n->in[2], n->in[3]);
}

/* layer_norm and rms_norm over the last iv[0] dims of x, eps in f[0] */
static tg_tensor *remake_norm(tg_ctx *c, const tg__node *n)
{
    const tg_tensor *x = n->in[0];
    int k = (int)n->iv[0];
    const int64_t *last = x->shape + x->ndim - k;
    if (n->op == TG_OP_RMS_NORM) return tg_rms_norm(c, n->in[0], k, last, n->in[1], n->f[0]);
    return tg_layer_norm(c, n->in[0], k, last, n->in[1], n->in[2], n->f[0]);
}

const tg__remake_fn tg__ops_remake[TG_OP_COUNT] = {
    [TG_OP_NEG] = remake_neg,
    [TG_OP_EXP] = remake_exp,
    [TG_OP_LOG] = remake_log,
    [TG_OP_SQRT] = remake_sqrt,
    [TG_OP_TANH] = remake_tanh,
    [TG_OP_SIGMOID] = remake_sigmoid,
    [TG_OP_RELU] = remake_relu,
    [TG_OP_ABS] = remake_abs,
    [TG_OP_RSQRT] = remake_rsqrt,
    [TG_OP_LOG1P] = remake_log1p,
    [TG_OP_EXPM1] = remake_expm1,
    [TG_OP_SIN] = remake_sin,
    [TG_OP_COS] = remake_cos,
    [TG_OP_SQUARE] = remake_square,
    [TG_OP_ERF] = remake_erf,
    [TG_OP_GELU] = remake_gelu,
    [TG_OP_GELU_TANH] = remake_gelu_tanh,
    [TG_OP_SILU] = remake_silu,
    [TG_OP_LOG_SIGMOID] = remake_log_sigmoid,
    [TG_OP_SCALE] = remake_scale,
    [TG_OP_ADD_SCALAR] = remake_add_scalar,
    [TG_OP_POW_SCALAR] = remake_pow_scalar,
    [TG_OP_LEAKY_RELU] = remake_leaky_relu,
    [TG_OP_ELU] = remake_elu,
    [TG_OP_SOFTPLUS] = remake_softplus,
    [TG_OP_HARDTANH] = remake_hardtanh,
    [TG_OP_CLAMP] = remake_clamp,
    [TG_OP_ADD] = remake_add,
    [TG_OP_SUB] = remake_sub,
    [TG_OP_MUL] = remake_mul,
    [TG_OP_DIV] = remake_div,
    [TG_OP_MAXIMUM] = remake_maximum,
    [TG_OP_MINIMUM] = remake_minimum,
    [TG_OP_POW] = remake_pow,
    [TG_OP_MATMUL] = remake_matmul,
    [TG_OP_SOFTMAX] = remake_softmax,
    [TG_OP_LOG_SOFTMAX] = remake_log_softmax,
    [TG_OP_LINEAR] = remake_linear,
    [TG_OP_LINEAR_ADD] = remake_linear_add,
    [TG_OP_LINEAR_RELU] = remake_linear_relu,
    [TG_OP_GELU_LINEAR] = remake_gelu_linear,
    [TG_OP_LAYER_NORM] = remake_norm,
    [TG_OP_RMS_NORM] = remake_norm,
};

#define TG__OP_ONE(E, name, arity, flags) +1
_Static_assert(0 TG_OP_MAP(TG__OP_ONE) == TG_OP_COUNT, "one registry entry per op");
#undef TG__OP_ONE

int tg_op_count(void) { return TG_OP_COUNT; }

static bool op_valid(tg_op op) { return (int)op >= 0 && op < TG_OP_COUNT; }

const char *tg_op_name(tg_op op) { return op_valid(op) ? tg__ops[op].name : NULL; }
int tg_op_arity(tg_op op) { return op_valid(op) ? tg__ops[op].arity : -1; }
unsigned tg_op_flags(tg_op op) { return op_valid(op) ? tg__ops[op].flags : 0u; }

tg_op tg_op_from_name(const char *name)
{
    if (!name) return TG_OP_NONE;
    for (int i = 0; i < TG_OP_COUNT; i++)
        if (strcmp(tg__ops[i].name, name) == 0) return (tg_op)i;
    return TG_OP_NONE;
}

/* ---- shared checks ------------------------------------------------------ */

bool tg__check_inputs(tg_ctx *c, const char *fn, int n, tg_tensor *const *in)
{
    if (!tg__ok(c)) return false;
    c->api = fn;
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            tg__fail(c, TG_ERR_INVALID, "%s: input %d is NULL", fn, i);
            return false;
        }
        if (!tg__valid_dtype(in[i]->dtype) || !in[i]->st) {
            tg__fail(c, TG_ERR_INVALID, "%s: input %d is not a valid tensor", fn, i);
            return false;
        }
        if (in[i]->st->released) {
            char d[200];
            if (in[i]->st->remake)
                tg__fail(c, TG_ERR_MISUSE,
                         "%s: input %d (%s) was given back by tg_recompute_later; only a "
                         "backward reads it again",
                         fn, i, tg__describe(in[i], d, sizeof d));
            else
                tg__fail(c, TG_ERR_MISUSE,
                         "%s: input %d (%s) was released by tg_backward_release; its memory "
                         "holds other data now (tg_retain it before the backward to keep it)",
                         fn, i, tg__describe(in[i], d, sizeof d));
            return false;
        }
    }
    return true;
}

bool tg__check_float(tg_ctx *c, const char *fn, const tg_tensor *t)
{
    if (tg__is_float(t->dtype)) return true;
    tg__fail(c, TG_ERR_DTYPE, "%s: dtype %s not supported (f32 or f64 only)", fn,
             tg_dtype_name(t->dtype));
    return false;
}

bool tg__check_same_dtype(tg_ctx *c, const char *fn, const tg_tensor *a, const tg_tensor *b)
{
    if (!tg__check_float(c, fn, a) || !tg__check_float(c, fn, b)) return false;
    if (a->dtype == b->dtype) return true;
    tg__fail(c, TG_ERR_DTYPE, "%s: dtypes %s and %s differ", fn, tg_dtype_name(a->dtype),
             tg_dtype_name(b->dtype));
    return false;
}

bool tg__norm_axis(tg_ctx *c, const char *fn, int ndim, int axis, int *out)
{
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim) {
        tg__fail(c, TG_ERR_INVALID, "%s: axis %d out of range for %d dims", fn, axis, ndim);
        return false;
    }
    *out = a;
    return true;
}
