/*
 * tapegrad/ops_nn.h - normalisation, dropout, embedding and attention.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/norm.c, src/ops/nn.c.
 *
 * The normalisations compute their statistics in one fused pass per row
 * (mean first, then the mean of squared deviations, so no cancellation)
 * and save them for backward. The sums are in double, except that f32
 * layer_norm and rms_norm sum blocks of a row in float lanes added in
 * double, with the mean carried as two floats (outputs and gradients are
 * tested within 4e-6 of f64's, relative to the largest; a row whose float
 * sums overflow is done in double). Results do not depend on the thread
 * count. Their backward rebuilds the normalised input from x with ops
 * whenever the gradient itself is being recorded, so gradients of
 * gradients are exact.
 * Variances used to normalise are biased (divide by the count), as in
 * PyTorch.
 */
#ifndef TAPEGRAD_OPS_NN_H
#define TAPEGRAD_OPS_NN_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h. */
#define TG_OPS_NN(X)                              \
    /* normalisation, src/ops/norm.c */           \
    X(LAYER_NORM, layer_norm, 3, TG_OPF_OPTIONAL) \
    X(RMS_NORM, rms_norm, 2, TG_OPF_OPTIONAL)     \
    X(GROUP_NORM, group_norm, 3, TG_OPF_OPTIONAL) \
    X(BATCH_NORM, batch_norm, 5, TG_OPF_OPTIONAL) \
    /* dropout and embedding, src/ops/nn.c */     \
    X(DROPOUT, dropout, 1, TG_OPF_RANDOM)         \
    X(EMBEDDING, embedding, 2, TG_OPF_INDEX)      \
    X(EMBEDDING_BACKWARD, embedding_backward, 2, TG_OPF_INDEX) \
    /* recurrent, src/ops/recurrent.c */                     \
    X(LSTM_CELL, lstm_cell, 2, 0)                            \
    X(LSTM, lstm, 7, TG_OPF_OPTIONAL)                        \
    /* attention, src/ops/nn.c */                            \
    X(SDPA, sdpa, 4, TG_OPF_OPTIONAL)

/* ====================================================================== */
/* Normalisation                                                          */
/* ====================================================================== */

/*
 * x is (..., *normalized_shape); weight and bias are normalized_shape or NULL.
 * y = (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased) var
 * over the last nnorm dims, like torch.nn.functional.layer_norm. Pass the
 * shape with TG_SHAPE: tg_layer_norm(c, x, TG_SHAPE(4), w, b, 1e-5).
 * Errors: TG_ERR_SHAPE (nnorm outside 1..ndim(x), x not ending in
 * normalized_shape, weight or bias of another shape), TG_ERR_DTYPE,
 * TG_ERR_INVALID (eps negative or not finite).
 */
tg_tensor *tg_layer_norm(tg_ctx *c, tg_tensor *x, int nnorm, const int64_t *normalized_shape,
                         tg_tensor *weight, tg_tensor *bias, double eps);

/*
 * x is (..., *normalized_shape); weight is normalized_shape or NULL.
 * y = x / sqrt(mean(x^2) + eps) * weight, the mean over the last nnorm
 * dims, like torch.nn.functional.rms_norm (whose default eps is the
 * dtype's machine epsilon; here eps is always given). Errors as
 * tg_layer_norm.
 */
tg_tensor *tg_rms_norm(tg_ctx *c, tg_tensor *x, int nnorm, const int64_t *normalized_shape,
                       tg_tensor *weight, double eps);

/*
 * x is (N, C, *); weight and bias are (C) or NULL. The C channels are cut
 * into num_groups groups of C / num_groups neighbours; each (sample,
 * group) is normalised over its channels and all of *, then scaled and
 * shifted per channel: like torch.nn.functional.group_norm. Errors:
 * TG_ERR_SHAPE (x with fewer than 2 dims, weight or bias not (C)),
 * TG_ERR_INVALID (num_groups < 1 or not dividing C, bad eps),
 * TG_ERR_DTYPE.
 */
tg_tensor *tg_group_norm(tg_ctx *c, tg_tensor *x, int num_groups, tg_tensor *weight,
                         tg_tensor *bias, double eps);

/* Options of tg_batch_norm. */
typedef struct {
    bool training;   /* normalise with batch statistics and update the running ones */
    double momentum; /* running = (1 - momentum) * running + momentum * batch */
    double eps;      /* added to the variance */
} tg_batch_norm_opts;

/* training true, momentum 0.1, eps 1e-5 (PyTorch's BatchNorm defaults). */
tg_batch_norm_opts tg_batch_norm_defaults(void);

/*
 * x is (N, C) or (N, C, *); weight, bias, running_mean and running_var are
 * (C) or NULL (the two running statistics both given or both NULL).
 * y = (x - m) / sqrt(v + eps) * weight + bias per channel, like
 * torch.nn.functional.batch_norm:
 *  - training: m and v are the batch mean and biased variance over N and *.
 *    Given running statistics are then updated in place, as PyTorch does:
 *    running_mean = (1 - momentum) running_mean + momentum m, running_var =
 *    (1 - momentum) running_var + momentum v * n / (n - 1) (the unbiased
 *    variance, n = N * prod(*)), and their storage versions are bumped.
 *    They never receive a gradient.
 *  - eval: m and v are the running statistics (required), constants that
 *    the recorded node keeps for backward: changing them in place before
 *    backward is caught by the saved-tensor version check.
 * opts NULL means tg_batch_norm_defaults(). Errors: TG_ERR_SHAPE (x with
 * fewer than 2 dims, a (C) tensor of another shape), TG_ERR_INVALID
 * (training with n <= 1 value per channel, eval without running
 * statistics, only one of them given, a running statistic that requires
 * grad or overlaps itself, eps or momentum out of range), TG_ERR_DTYPE.
 * Nothing is updated when an error is returned.
 */
tg_tensor *tg_batch_norm(tg_ctx *c, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                         tg_tensor *running_mean, tg_tensor *running_var,
                         const tg_batch_norm_opts *opts);

/* ====================================================================== */
/* Dropout and embedding                                                  */
/* ====================================================================== */

/*
 * x is any shape; y is x's shape.
 * training: y = x * mask / (1 - p), mask_i = [u_i >= p] with u_i uniform in
 * [0, 1) drawn from c's RNG in row-major order (exactly numel(x) draws per
 * call, whatever p), so the same seed gives the same mask; p == 1 gives
 * zeros. The scaled mask is kept for backward (dx = dout * mask / (1 - p)).
 * Not training: x itself is returned (no copy, no node, no draws).
 * Errors: TG_ERR_INVALID (p outside [0, 1] or NaN), TG_ERR_DTYPE.
 */
tg_tensor *tg_dropout(tg_ctx *c, tg_tensor *x, double p, bool training);

/*
 * weight is (V, D), indices is TG_I64 of any shape; y is (*indices, D).
 * y[..., :] = weight[indices[...], :], like torch.nn.functional.embedding.
 * The gradient of weight is tg_embedding_backward(dout, indices, V).
 * Errors: TG_ERR_SHAPE (weight not 2-d), TG_ERR_DTYPE (weight not
 * floating, indices not TG_I64), TG_ERR_INVALID (an index outside [0, V),
 * naming its position and value).
 */
tg_tensor *tg_embedding(tg_ctx *c, tg_tensor *weight, tg_tensor *indices);

/*
 * dout is (*indices, D), indices is TG_I64; y is (num_rows, D).
 * The adjoint of tg_embedding: zeros with y[indices[p], :] += dout[p, :]
 * for every position p. Repeated indices are summed in row-major order of
 * their positions (in double for f32), so the result is bit-identical
 * whatever the thread count. Its own gradient is an embedding. Errors:
 * TG_ERR_SHAPE (dout not indices' shape plus one dim), TG_ERR_INVALID
 * (num_rows < 0, an index outside [0, num_rows)), TG_ERR_DTYPE.
 */
tg_tensor *tg_embedding_backward(tg_ctx *c, tg_tensor *dout, tg_tensor *indices, int64_t num_rows);

/* ====================================================================== */
/* Attention                                                              */
/* ====================================================================== */

/*
 * Scaled dot-product attention: q is (..., Lq, D), k is (..., Lk, D), v is
 * (..., Lk, Dv); y is (..., Lq, Dv), the batch dims broadcast like matmul.
 *   y = softmax(q k^T * scale + mask + causal, axis -1) v
 * scale == 0 means 1 / sqrt(D). mask (NULL for none) is additive, of q's
 * dtype, broadcastable to (..., Lq, Lk): 0 keeps a score, -inf drops it
 * (a gradient flows to mask if it requires grad). causal adds -inf above
 * the diagonal of the top-left aligned (Lq, Lk) matrix: query i sees keys
 * j <= i, like torch.tril(ones(Lq, Lk)), also when Lq != Lk.
 * One fused op (node sdpa): two GEMMs and a softmax per batch forward,
 * five GEMMs backward. The probabilities P (..., Lq, Lk) are kept from
 * the forward to the backward when they are at most twice y (Lk <= 2 Dv:
 * short sequences; a releasing backward gives them back after the node),
 * else the backward makes them again (a sixth GEMM and a softmax) rather
 * than keep O(Lq Lk) through the step; both ways give the same bits.
 * When the gradient is itself recorded the backward is built from ops, so
 * second order works. Causal attention from 64 queries on runs by blocks
 * of rows whose products stop at their last key (a quarter fewer
 * multiply-adds at Lq = 64, nearly half on long sequences); the result
 * then matches an explicit -inf mask to rounding, not bit for bit. A query
 * row whose scores are all -inf after masking (nothing to attend to) is an
 * error, TG_ERR_NUMERIC naming the row, instead of a silent NaN (causal
 * alone never empties a row). A large finite negative mask value (-1e9) is
 * not -inf: a row that has it on every key attends as if unmasked, since a
 * constant shift cancels in the softmax (as in PyTorch). Errors:
 * TG_ERR_SHAPE (fewer than 2 dims, D or Lk mismatch, batch dims or mask
 * not broadcasting), TG_ERR_DTYPE, TG_ERR_INVALID (scale not finite),
 * TG_ERR_NUMERIC.
 * y follows q's order of dims in memory (the last dim innermost), as the
 * gradients of q, k and v follow theirs: for q a permuted view, such as a
 * head split [B, L, h, d] -> [B, h, L, d], y is a permuted view of a new
 * block (tg_data(y) is NULL; permuting it back gives a contiguous tensor).
 */
tg_tensor *tg_sdpa(tg_ctx *c, tg_tensor *q, tg_tensor *k, tg_tensor *v, tg_tensor *mask,
                   bool causal, double scale);

/* ====================================================================== */
/* Recurrent cells                                                        */
/* ====================================================================== */

/*
 * One LSTM step after its two matrix products: gates is (B, 4H), the
 * pre-activations x W_ih^T + b_ih + h W_hh^T + b_hh in PyTorch's order
 * (input, forget, cell, output), cell is (B, H); y is (2, B, H) with
 *   y[0] = h' = sigmoid(o) * tanh(c'),  y[1] = c' = sigmoid(f) * cell + sigmoid(i) * tanh(g).
 * One fused kernel forward and one backward (f32 through vectorisable exp
 * and tanh accurate to 3 ulp, f64 through libm); the node keeps nothing
 * but its inputs and y: backward recomputes the activations from the
 * gates. When the gradient is itself recorded the backward is built from
 * ops, so second order works.
 * Errors: TG_ERR_SHAPE (not [B, 4H] and [B, H]), TG_ERR_DTYPE.
 */
tg_tensor *tg_lstm_cell(tg_ctx *c, tg_tensor *gates, tg_tensor *cell);

/* Flags of tg_lstm. */
#define TG_LSTM_CELLS 0x1u     /* y holds the cell states too: (2, B, T, H) */
#define TG_LSTM_RECOMPUTE 0x2u /* keep no gates: the backward recomputes them */

/*
 * A whole LSTM layer over a batch-first sequence, as one op (what
 * tg_nn_lstm_new's layers run): x is (B, T, I), w_ih (4H, I), w_hh
 * (4H, H), b_ih and b_hh (4H) or NULL, h0 and c0 (B, H) or NULL for zeros.
 * The result y is (B, T, H), the hidden states h_1..h_T; with
 * TG_LSTM_CELLS it is (2, B, T, H), y[0] the hidden states and y[1] the
 * cell states c_1..c_T (for c_T, or to differentiate through the cells).
 * Each step is tg_lstm_cell's, from
 *   gates_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh.
 * The input's product is one GEMM over all B T rows, then one [B, H] x
 * [H, 4H] GEMM per step accumulates onto that step's gates. The backward
 * walks the steps in reverse (one GEMM per step for d h_{t-1}), then gives
 * dx and dW_ih as one GEMM each over all B T rows and dW_hh as one per
 * sequence.
 * Memory: y; the node keeps the cell states (B, T, H) when y does not
 * hold them, and the gates' activations (B, T, 4H) unless
 * TG_LSTM_RECOMPUTE. tg_backward_release gives both back after the node's
 * backward, which turns the kept gates into their gradients in place
 * instead of into a copy. With TG_LSTM_RECOMPUTE the backward recomputes
 * the activations from x and the hidden states with the forward's own
 * calls (the same bits, so the same gradients): two thirds of the layer's
 * memory for one more pass of its forward in the backward. When the
 * gradient is itself recorded the backward is built from ops (linear,
 * linear_add, lstm_cell), so second order works. The result is a new
 * tensor of c.
 * Errors: TG_ERR_SHAPE (shapes other than those above, or a size of 0;
 * the message lists every shape), TG_ERR_DTYPE (inputs of different or
 * integer dtypes), TG_ERR_INVALID (NULL x or weights, unknown flags, B T
 * or 4H above INT_MAX).
 */
tg_tensor *tg_lstm(tg_ctx *c, tg_tensor *x, tg_tensor *w_ih, tg_tensor *w_hh, tg_tensor *b_ih,
                   tg_tensor *b_hh, tg_tensor *h0, tg_tensor *c0, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_NN_H */
