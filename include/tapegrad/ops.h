/*
 * tapegrad/ops.h - the op list and the ops.
 *
 * Every op takes the context it allocates its result in first, computes
 * eagerly, and records a node on that context's tape when grad mode is on
 * and an input requires grad. Errors are sticky: an op returns NULL when an
 * input is NULL, when c already holds an error, or when it records a new
 * one ("tg_matmul: [3,4] @ [5,6]: inner dims 4 != 5"), so a forward pass
 * needs one check, at the loss. Results are owned by c and live until its
 * next reset or free. Floating ops take TG_F32 or TG_F64 and all inputs of
 * one op must share a dtype (TG_ERR_DTYPE otherwise).
 *
 * Binary elementwise ops broadcast like NumPy (TG_ERR_SHAPE when shapes do
 * not broadcast); the gradient of a broadcast input is summed back to its
 * shape by the autograd engine.
 */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H

#include "tensor.h"
#include "ops_math.h"
#include "ops_reduce.h"
#include "ops_index.h"
#include "ops_conv.h"
#include "ops_nn.h"
#include "ops_loss.h"
#include "custom.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/* The op list                                                            */
/* ====================================================================== */

/* Op flags. */
#define TG_OPF_BROADCAST 0x1u  /* binary elementwise op with NumPy broadcasting */
#define TG_OPF_VIEW 0x2u       /* result shares its input's storage */
#define TG_OPF_LABELS 0x4u     /* last input is TG_I64 labels (not differentiable) */
#define TG_OPF_VARIADIC 0x8u   /* takes any number >= 1 of inputs; arity is -1 */
#define TG_OPF_OPTIONAL 0x10u  /* trailing inputs may be absent; arity is the maximum */
#define TG_OPF_NOGRAD 0x20u    /* result has no gradient (argmax): never recorded */
#define TG_OPF_INDEX 0x40u     /* some input is a TG_I64 index tensor */
#define TG_OPF_RANDOM 0x80u    /* draws from the context's RNG (dropout) */
#define TG_OPF_CUSTOM 0x100u   /* a user-defined op (see tg_custom_op) */

/*
 * X(ENUM, name, arity, flags): one line per op. Every op has its forward
 * and its backward side by side in one file under src/ops/, and is in the
 * table-driven gradient check (first and second order). The list is made of
 * one sub-list per family; each family header (ops_*.h) holds its own.
 */
#define TG_OPS_CORE(X)                                \
    /* elementwise, src/ops/elementwise.c */          \
    X(ADD, add, 2, TG_OPF_BROADCAST)                  \
    X(SUB, sub, 2, TG_OPF_BROADCAST)                  \
    X(MUL, mul, 2, TG_OPF_BROADCAST)                  \
    X(DIV, div, 2, TG_OPF_BROADCAST)                  \
    X(NEG, neg, 1, 0)                                 \
    X(SCALE, scale, 1, 0)                             \
    X(ADD_SCALAR, add_scalar, 1, 0)                   \
    X(POW_SCALAR, pow_scalar, 1, 0)                   \
    X(EXP, exp, 1, 0)                                 \
    X(LOG, log, 1, 0)                                 \
    X(SQRT, sqrt, 1, 0)                               \
    X(TANH, tanh, 1, 0)                               \
    X(SIGMOID, sigmoid, 1, 0)                         \
    X(RELU, relu, 1, 0)                               \
    /* reductions, src/ops/reduce.c */                \
    X(SUM, sum, 1, 0)                                 \
    X(MEAN, mean, 1, 0)                               \
    X(SOFTMAX, softmax, 1, 0)                         \
    X(LOG_SOFTMAX, log_softmax, 1, 0)                 \
    /* linear algebra, src/ops/linalg.c */            \
    X(MATMUL, matmul, 2, 0)                           \
    /* shapes and views, src/ops/shape.c */           \
    X(RESHAPE, reshape, 1, TG_OPF_VIEW)               \
    X(TRANSPOSE, transpose, 1, TG_OPF_VIEW)           \
    X(PERMUTE, permute, 1, TG_OPF_VIEW)               \
    X(EXPAND, expand, 1, TG_OPF_VIEW)                 \
    X(SLICE, slice, 1, TG_OPF_VIEW)                   \
    X(SLICE_SCATTER, slice_scatter, 1, 0)             \
    X(CONTIGUOUS, contiguous, 1, 0)                   \
    /* losses, src/ops/losses.c and loss.c */         \
    X(MSE_LOSS, mse_loss, 2, 0)                       \
    X(CROSS_ENTROPY, cross_entropy, 2, TG_OPF_LABELS)

#define TG_OP_MAP(X) \
    TG_OPS_CORE(X)   \
    TG_OPS_MATH(X)   \
    TG_OPS_REDUCE(X) \
    TG_OPS_INDEX(X)  \
    TG_OPS_CONV(X)   \
    TG_OPS_NN(X)     \
    TG_OPS_LOSS(X)   \
    TG_OPS_CUSTOM(X)

#define TG__OP_ENUM(E, name, arity, flags) TG_OP_##E,
typedef enum { TG_OP_NONE = -1, TG_OP_MAP(TG__OP_ENUM) TG_OP_COUNT } tg_op;
#undef TG__OP_ENUM

int tg_op_count(void);               /* TG_OP_COUNT */
const char *tg_op_name(tg_op op);    /* "matmul"; NULL outside the list */
int tg_op_arity(tg_op op);           /* tensor inputs (the maximum with TG_OPF_OPTIONAL,
                                        -1 for TG_OPF_VARIADIC ops and outside the list) */
unsigned tg_op_flags(tg_op op);      /* TG_OPF_* bits; 0 outside */
tg_op tg_op_from_name(const char *name); /* TG_OP_NONE when unknown */

/* The op that produced t (TG_OP_NONE for a leaf or a tensor made while
 * grad mode was off or no input required grad). */
tg_op tg_tensor_op(const tg_tensor *t);

/* ====================================================================== */
/* Elementwise                                                            */
/* ====================================================================== */

/* a + b, a - b, a * b, a / b with broadcasting; result has the broadcast
 * shape. */
tg_tensor *tg_add(tg_ctx *c, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_ctx *c, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_ctx *c, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_div(tg_ctx *c, tg_tensor *a, tg_tensor *b);

tg_tensor *tg_neg(tg_ctx *c, tg_tensor *x);                 /* -x */
tg_tensor *tg_scale(tg_ctx *c, tg_tensor *x, double s);     /* s * x */
tg_tensor *tg_add_scalar(tg_ctx *c, tg_tensor *x, double s); /* x + s */
/* x^p; for non-integer p, negative x gives NaN as in C's pow(). */
tg_tensor *tg_pow_scalar(tg_ctx *c, tg_tensor *x, double p);
tg_tensor *tg_exp(tg_ctx *c, tg_tensor *x);
tg_tensor *tg_log(tg_ctx *c, tg_tensor *x);     /* natural log; -inf at 0, NaN below */
tg_tensor *tg_sqrt(tg_ctx *c, tg_tensor *x);
tg_tensor *tg_tanh(tg_ctx *c, tg_tensor *x);
tg_tensor *tg_sigmoid(tg_ctx *c, tg_tensor *x); /* 1 / (1 + exp(-x)), stable both ways */
tg_tensor *tg_relu(tg_ctx *c, tg_tensor *x);    /* max(x, 0); gradient 0 at x == 0 */

/* ====================================================================== */
/* Reductions                                                             */
/* ====================================================================== */

/* Sum / mean of all elements, as a 0-d tensor. The mean of an empty tensor
 * is NaN. */
tg_tensor *tg_sum(tg_ctx *c, tg_tensor *x);
tg_tensor *tg_mean(tg_ctx *c, tg_tensor *x);

/* Sum / mean over the given axes (negative counts from the end; each at
 * most once, else TG_ERR_INVALID). keepdim keeps them as size 1. naxes == 0
 * reduces nothing. */
tg_tensor *tg_sum_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim);
tg_tensor *tg_mean_axes(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, bool keepdim);

/* softmax(x)_i = exp(x_i - max) / sum_j exp(x_j - max) over one axis, and
 * its logarithm x_i - max - log(sum_j exp(x_j - max)): stable at any scale. */
tg_tensor *tg_softmax(tg_ctx *c, tg_tensor *x, int axis);
tg_tensor *tg_log_softmax(tg_ctx *c, tg_tensor *x, int axis);

/* ====================================================================== */
/* Linear algebra                                                         */
/* ====================================================================== */

/* Matrix product of a [..., M, K] and b [..., K, N] (both at least 2-d);
 * batch dims broadcast like NumPy. Runs on cblas_sgemm / cblas_dgemm
 * (tg_blas_library) above 4,096 multiply-adds; transposed views are
 * passed as CblasTrans, not copied. */
tg_tensor *tg_matmul(tg_ctx *c, tg_tensor *a, tg_tensor *b);

/* ====================================================================== */
/* Shapes and views                                                       */
/* ====================================================================== */

/* x with a new shape of the same numel; one entry may be -1 (inferred).
 * A view when x is contiguous, a copy otherwise. */
tg_tensor *tg_reshape(tg_ctx *c, tg_tensor *x, int ndim, const int64_t *shape);

/* View with dims d0 and d1 swapped (negative counts from the end). */
tg_tensor *tg_transpose(tg_ctx *c, tg_tensor *x, int d0, int d1);

/* View with dims reordered: result dim i is x's dim perm[i] (ndim entries,
 * a permutation of 0..ndim-1). */
tg_tensor *tg_permute(tg_ctx *c, tg_tensor *x, const int *perm);

/* View broadcast to shape (ndim >= x's ndim; size-1 dims stretch with
 * stride 0; -1 keeps a dim). The gradient is summed back. */
tg_tensor *tg_expand(tg_ctx *c, tg_tensor *x, int ndim, const int64_t *shape);

/* View of elements start, start+step, ... below stop along axis, with
 * Python's rules for negative and out-of-range start and stop; step >= 1. */
tg_tensor *tg_slice(tg_ctx *c, tg_tensor *x, int axis, int64_t start, int64_t stop,
                    int64_t step);

/* Zeros of the given shape with x written at positions start, start+step,
 * ... along axis (the other dims of x and shape equal; step >= 1): the
 * adjoint of tg_slice, which it uses as its backward. */
tg_tensor *tg_slice_scatter(tg_ctx *c, tg_tensor *x, int ndim, const int64_t *shape, int axis,
                            int64_t start, int64_t step);

/* A contiguous copy of x (recorded: gradients flow through). */
tg_tensor *tg_contiguous(tg_ctx *c, tg_tensor *x);

/* ====================================================================== */
/* Losses                                                                 */
/* ====================================================================== */

/* mean((pred - target)^2) over all elements, a 0-d tensor; pred and
 * target have the same shape (no broadcasting: TG_ERR_SHAPE). */
tg_tensor *tg_mse_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target);

/* Mean over rows of -log softmax(logits)[i, labels[i]], a 0-d tensor.
 * logits [N, C] (N >= 1), labels TG_I64 [N] with values in [0, C)
 * (TG_ERR_INVALID naming the row otherwise). Stable at logits of 1e4. */
tg_tensor *tg_cross_entropy(tg_ctx *c, tg_tensor *logits, tg_tensor *labels);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_H */
