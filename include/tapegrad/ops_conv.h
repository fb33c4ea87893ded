/*
 * tapegrad/ops_conv.h - linear layers, convolution and pooling: outer,
 * linear, conv1d/conv2d (with their gradient kernels as ops of their own),
 * max/avg pooling and adaptive average pooling.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context and living until its
 * next reset or free, f32 or f64 with all float inputs of one dtype).
 * Implemented in src/ops/linear.c, src/ops/conv.c, src/ops/pool.c.
 *
 * Images are NCHW (batch, channels, height, width), sequences NCL, conv
 * weights [out channels, in channels / groups, kernel...] as in PyTorch.
 * Every op here has its backward written with ops of this list, so second
 * order gradients work: the gradient of a convolution with respect to its
 * input is tg_conv2d_input_grad (the transposed convolution), with respect
 * to its weight tg_conv2d_weight_grad (a correlation of input and output
 * gradient), and each of those has its backward in terms of the others.
 */
#ifndef TAPEGRAD_OPS_CONV_H
#define TAPEGRAD_OPS_CONV_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_CONV(X)                                          \
    /* linear layers, src/ops/linear.c */                       \
    X(OUTER, outer, 2, 0)                                       \
    X(LINEAR, linear, 3, TG_OPF_OPTIONAL)                       \
    X(LINEAR_ADD, linear_add, 4, TG_OPF_OPTIONAL)               \
    X(LINEAR_RELU, linear_relu, 3, TG_OPF_OPTIONAL)             \
    X(GELU_LINEAR, gelu_linear, 3, TG_OPF_OPTIONAL)             \
    /* convolution, src/ops/conv.c */                           \
    X(CONV2D, conv2d, 3, TG_OPF_OPTIONAL)                       \
    X(CONV2D_RELU, conv2d_relu, 3, TG_OPF_OPTIONAL)             \
    X(CONV2D_INPUT_GRAD, conv2d_input_grad, 2, 0)               \
    X(CONV2D_WEIGHT_GRAD, conv2d_weight_grad, 2, 0)             \
    X(CONV1D, conv1d, 3, TG_OPF_OPTIONAL)                       \
    /* pooling, src/ops/pool.c */                               \
    X(MAX_POOL2D, max_pool2d, 1, 0)                             \
    X(MAX_UNPOOL2D, max_unpool2d, 2, TG_OPF_INDEX)              \
    X(GATHER2D, gather2d, 2, TG_OPF_INDEX)                      \
    X(AVG_POOL2D, avg_pool2d, 1, 0)                             \
    X(AVG_POOL2D_INPUT_GRAD, avg_pool2d_input_grad, 1, 0)       \
    X(ADAPTIVE_AVG_POOL2D, adaptive_avg_pool2d, 1, 0)           \
    X(ADAPTIVE_AVG_POOL2D_INPUT_GRAD, adaptive_avg_pool2d_input_grad, 1, 0)

/* ====================================================================== */
/* Linear layers                                                          */
/* ====================================================================== */

/* y[i, j] = a[i] * b[j]: a [M] and b [N] give [M, N] (TG_ERR_SHAPE unless
 * both are 1-d). */
tg_tensor *tg_outer(tg_ctx *c, tg_tensor *a, tg_tensor *b);

/*
 * y = x W^T + b, fused: one GEMM (W passed transposed, never copied when
 * its strides allow) accumulating onto rows pre-filled with b. x is
 * [..., in] (at least 1-d), W is [out, in] (stored like PyTorch), b is
 * [out] or NULL (no bias); y is [..., out]. TG_ERR_SHAPE naming the shapes
 * when they do not fit.
 */
tg_tensor *tg_linear(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b);

/*
 * y = x W^T + b + addend, fused: the output rows are pre-filled with the
 * addend (and the bias) and the GEMM accumulates onto them, so the sum
 * costs no second tensor (an RNN step's gates: the input projection of
 * the step plus the hidden-state product). x, W and b as tg_linear (b may
 * be NULL); addend broadcasts (NumPy rules) to y's shape [..., out]
 * without enlarging it, and may be any strided view. Its gradient is dout,
 * summed over broadcast dims. TG_ERR_SHAPE naming the shapes when they do
 * not fit, TG_ERR_DTYPE unless all share one float dtype.
 */
tg_tensor *tg_linear_add(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b, tg_tensor *addend);

/*
 * tg_relu(tg_linear(x, W, b)) as one op: the GEMM's output is clamped in
 * place, so there is one output tensor instead of two, and the backward
 * masks dout by y > 0 (in place when nothing else reads dout) before
 * linear's backward. y is what the next layer reads anyway, so the
 * pre-activation is never kept. The same values and gradients, bit for
 * bit, as the two ops. x, W and b as tg_linear (b may be NULL).
 * TG_ERR_SHAPE naming the shapes when they do not fit, TG_ERR_DTYPE unless
 * all share one float dtype.
 */
tg_tensor *tg_linear_relu(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b);

/*
 * tg_linear(tg_gelu(x), W, b) as one op (a transformer MLP's second half):
 * gelu(x) is made 65,536 elements (whole rows) at a time and each block's
 * GEMM runs while it is in cache, so no tensor holds all of gelu(x); the
 * backward makes the blocks again from x, so the step takes longer than
 * the two ops' (GPT benchmark, d_model 128: 1-2 ms of a 35 ms step; 22%
 * in examples/gpt.c at d_model 64), and Sequential does not run GELU +
 * Linear as this op. Against the two ops this saves
 * gelu(x)'s memory through the step, or, where the step gives gelu(x)
 * back (tg_recompute_later), at the backward's peak, where the two ops
 * hold x, gelu(x) and its gradient at once (GPT's MLP: 2 MB of f32 per
 * layer at 1,024 rows of 512). Values and gradients are the two ops'
 * within rounding, not bit for bit: BLAS may sum a block's rows in
 * another order than one call over all rows (OpenBLAS picks its kernels
 * by size), and W's gradient is summed block by block. The blocks are
 * fixed, so the bits are the same at any thread count. x, W and b as
 * tg_linear (b may be NULL). TG_ERR_SHAPE naming the shapes when they do
 * not fit, TG_ERR_DTYPE unless all share one float dtype.
 */
tg_tensor *tg_gelu_linear(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b);

/* ====================================================================== */
/* Convolution                                                            */
/* ====================================================================== */

/* Options of a 2-d convolution, per spatial dim (height, width). Take the
 * defaults and change what differs:
 *     tg_conv2d_opts o = tg_conv2d_defaults(); o.stride[0] = o.stride[1] = 2;
 * stride >= 1, padding >= 0 (zeros on both sides), dilation >= 1, groups
 * >= 1 dividing both channel counts; each value below 2^31. Anything else
 * is TG_ERR_INVALID naming the field. A NULL options pointer means the
 * defaults. */
typedef struct {
    int64_t stride[2];   /* 1, 1 */
    int64_t padding[2];  /* 0, 0 */
    int64_t dilation[2]; /* 1, 1 */
    int64_t groups;      /* 1 */
} tg_conv2d_opts;
tg_conv2d_opts tg_conv2d_defaults(void);

/* The same for a 1-d convolution. */
typedef struct {
    int64_t stride;   /* 1 */
    int64_t padding;  /* 0 */
    int64_t dilation; /* 1 */
    int64_t groups;   /* 1 */
} tg_conv1d_opts;
tg_conv1d_opts tg_conv1d_defaults(void);

/*
 * 2-d cross-correlation (PyTorch's conv2d):
 *   y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q]
 *                   * x[n, g*C/G + c, i*sh - ph + p*dh, j*sw - pw + q*dw]
 * (g = o / (OC/G), zero outside x). x [N, C, H, W], w [OC, C/G, KH, KW],
 * b [OC] or NULL; y [N, OC, OH, OW] with OH = (H + 2 ph - dh (KH-1) - 1) /
 * sh + 1 (and OW alike). Runs as im2col (the columns in the context's
 * arena) plus one GEMM per sample and group. Errors: TG_ERR_SHAPE for
 * wrong ranks, channel counts ("in channels 3 != 2 * groups 1"), a bias
 * of the wrong size, or an output size <= 0 (naming the numbers);
 * TG_ERR_INVALID for bad options.
 */
tg_tensor *tg_conv2d(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                     const tg_conv2d_opts *o);

/*
 * relu(tg_conv2d(x, w, b, o)) as one op: each image's output is clamped
 * while it is in cache, and no tensor holds the convolution before the
 * ReLU. The backward reads x, w and a byte per output element saying
 * where it is > 0, not y itself: a step that passes y on to an op whose
 * backward does not read it (a max pool) can give y back
 * (tg_recompute_later frees it at no cost; Sequential, which runs a
 * Conv2d followed by a ReLU this way, does so), where the two ops keep
 * the convolution's output for the ReLU's backward. The same values and
 * gradients, bit for bit, as the two ops. Errors: tg_conv2d's.
 */
tg_tensor *tg_conv2d_relu(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                          const tg_conv2d_opts *o);

/*
 * The gradient of tg_conv2d with respect to x, given dout: the transposed
 * convolution ("deconvolution") of dout [N, OC, OH, OW] with w [OC, C/G,
 * KH, KW], giving [N, C, h, w_]. The input size (h, w_) is passed because
 * a strided convolution maps several sizes to one; it must give (OH, OW)
 * under o (TG_ERR_SHAPE otherwise). Runs as GEMM plus col2im.
 */
tg_tensor *tg_conv2d_input_grad(tg_ctx *c, tg_tensor *dout, tg_tensor *w, int64_t h,
                                int64_t w_, const tg_conv2d_opts *o);

/*
 * The gradient of tg_conv2d with respect to w, given x [N, C, H, W] and
 * dout [N, OC, OH, OW]: dw[o, c, p, q] = sum_{n, i, j} dout[n, o, i, j] *
 * x[n, g*C/G + c, i*sh - ph + p*dh, j*sw - pw + q*dw], shape [OC, C/G, kh,
 * kw]. (OH, OW) must be what (H, W) and the kernel give under o
 * (TG_ERR_SHAPE otherwise). Summed over the batch in a fixed order.
 */
tg_tensor *tg_conv2d_weight_grad(tg_ctx *c, tg_tensor *x, tg_tensor *dout, int64_t kh,
                                 int64_t kw, const tg_conv2d_opts *o);

/*
 * 1-d cross-correlation: tg_conv2d on [N, C, 1, L] with a [OC, C/G, 1, K]
 * kernel, as its own op. x [N, C, L], w [OC, C/G, K], b [OC] or NULL;
 * y [N, OC, OL], OL = (L + 2 p - d (K-1) - 1) / s + 1. Errors as tg_conv2d.
 */
tg_tensor *tg_conv1d(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                     const tg_conv1d_opts *o);

/* ====================================================================== */
/* Pooling                                                                */
/* ====================================================================== */

/* Options of 2-d pooling, per spatial dim. kernel >= 1 must be set (the
 * defaults leave it 0, which is TG_ERR_INVALID); stride 0 means "equal to
 * kernel" (the default); padding >= 0 and at most kernel / 2 (as PyTorch);
 * dilation >= 1 (max pooling only; avg pooling requires 1). Padding counts
 * as -inf for max pooling and as zeros for average pooling, where
 * count_include_pad (default true, as PyTorch) decides whether padded
 * positions count in the divisor. Each value below 2^31. */
typedef struct {
    int64_t kernel[2];   /* must be set */
    int64_t stride[2];   /* 0: kernel */
    int64_t padding[2];  /* 0, 0 */
    int64_t dilation[2]; /* 1, 1 */
    bool count_include_pad; /* true */
} tg_pool2d_opts;
tg_pool2d_opts tg_pool2d_defaults(void);

/*
 * y[n, c, i, j] = max over the window at (i*sh - ph, j*sw - pw) of x (kernel
 * KH x KW, dilation dh x dw). x [N, C, H, W]; y [N, C, OH, OW] with OH =
 * (H + 2 ph - dh (KH-1) - 1) / sh + 1. The gradient goes to the arg max;
 * ties go to the first position in row-major window order; NaN wins over
 * every number (the last NaN of a window wins, as in PyTorch). A window
 * holding only padding gives -inf and no gradient.
 * Errors: TG_ERR_SHAPE (not 4-d, output size <= 0), TG_ERR_INVALID
 * (options).
 */
tg_tensor *tg_max_pool2d(tg_ctx *c, tg_tensor *x, const tg_pool2d_opts *o);

/* tg_max_pool2d that also returns, through indices (non-NULL), the arg max
 * of each window as a TG_I64 tensor [N, C, OH, OW] of flat positions h*W + w
 * in its input plane (-1 for a window of padding only), as PyTorch's
 * return_indices. The indices are a constant: they carry no gradient. */
tg_tensor *tg_max_pool2d_with_indices(tg_ctx *c, tg_tensor *x, const tg_pool2d_opts *o,
                                      tg_tensor **indices);

/*
 * Scatter-add into planes: y [N, C, h, w_] is zeros plus, for every i,
 * x[n, c, i...] added at flat position idx[n, c, i...] (h*w_ + w) of plane
 * (n, c). x [N, C, OH, OW] floating, idx TG_I64 of the same shape with
 * values in [-1, h*w_) (-1 skips; TG_ERR_INVALID otherwise). The backward
 * of tg_max_pool2d; unlike PyTorch's max_unpool2d, repeated indices add
 * (overlapping windows may pick one maximum twice). Its adjoint is
 * tg_gather2d.
 */
tg_tensor *tg_max_unpool2d(tg_ctx *c, tg_tensor *x, tg_tensor *idx, int64_t h, int64_t w_);

/*
 * Gather from planes: y[n, c, i...] = x[n, c].flat[idx[n, c, i...]] (0 for
 * index -1). x [N, C, H, W] floating, idx TG_I64 [N, C, OH, OW] with values
 * in [-1, H*W) (TG_ERR_INVALID otherwise); y has idx's shape and x's dtype.
 * The adjoint of tg_max_unpool2d.
 */
tg_tensor *tg_gather2d(tg_ctx *c, tg_tensor *x, tg_tensor *idx);

/*
 * y[n, c, i, j] = mean of the window at (i*sh - ph, j*sw - pw), KH x KW;
 * padding counts as zeros, and in the divisor when count_include_pad
 * (KH*KW always), not otherwise (the number of real elements). x [N, C, H,
 * W]; y [N, C, OH, OW], OH = (H + 2 ph - KH) / sh + 1. Errors as
 * tg_max_pool2d; dilation other than 1 is TG_ERR_INVALID.
 */
tg_tensor *tg_avg_pool2d(tg_ctx *c, tg_tensor *x, const tg_pool2d_opts *o);

/* The gradient of tg_avg_pool2d with respect to x given dout [N, C, OH,
 * OW]: each dout element spread evenly (by the same divisor) over its
 * window, giving [N, C, h, w_]. (h, w_) must give (OH, OW) under o
 * (TG_ERR_SHAPE otherwise). Its own backward is tg_avg_pool2d. */
tg_tensor *tg_avg_pool2d_input_grad(tg_ctx *c, tg_tensor *dout, int64_t h, int64_t w_,
                                    const tg_pool2d_opts *o);

/*
 * Adaptive average pooling to [N, C, oh, ow]: output row i averages input
 * rows floor(i*H/oh) .. ceil((i+1)*H/oh) - 1, columns alike (PyTorch's
 * adaptive_avg_pool2d). oh = ow = 1 is global average pooling. x [N, C, H,
 * W] with H, W >= 1; oh, ow >= 1 (TG_ERR_INVALID otherwise).
 */
tg_tensor *tg_adaptive_avg_pool2d(tg_ctx *c, tg_tensor *x, int64_t oh, int64_t ow);

/* Its gradient with respect to x, given dout [N, C, oh, ow]: [N, C, h, w_],
 * each dout element spread evenly over its window. Its own backward is
 * tg_adaptive_avg_pool2d. h, w_ >= 1. */
tg_tensor *tg_adaptive_avg_pool2d_input_grad(tg_ctx *c, tg_tensor *dout, int64_t h,
                                             int64_t w_);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_CONV_H */
