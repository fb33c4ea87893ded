/*
 * tapegrad/ops_loss.h - losses with mean / sum / none reduction.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context and living until its
 * next reset or free; inputs of one op share a dtype, f32 or f64).
 * Implemented in src/ops/losses.c (pointwise losses) and src/ops/loss.c
 * (losses over a class axis).
 *
 * Semantics follow PyTorch's torch.nn.functional losses (1.10 and later)
 * exactly, including its choices for weighted means, ignore_index and label
 * smoothing. Every loss is one fused node: the forward is one pass that
 * accumulates in double and sums in fixed blocks combined in order (the
 * result is bit-identical whatever the thread count); the backward is
 * written with ops, so gradients of gradients work.
 *
 * Pointwise losses take pred and target of the same shape (no
 * broadcasting: TG_ERR_SHAPE otherwise). Their reduction:
 *   TG_REDUCE_MEAN   mean over all elements, a 0-d tensor (NaN when empty)
 *   TG_REDUCE_SUM    sum over all elements, a 0-d tensor
 *   TG_REDUCE_NONE   the per-element losses, pred's shape
 *   TG_REDUCE_BATCHMEAN  (tg_kl_div only) sum / pred's dim 0 size
 * Any other value is TG_ERR_INVALID naming the function.
 */
#ifndef TAPEGRAD_OPS_LOSS_H
#define TAPEGRAD_OPS_LOSS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h.
 * MSE_LOSS and CROSS_ENTROPY are in TG_OPS_CORE; tg_mse_loss_ex records the
 * same MSE_LOSS node as tg_mse_loss. Optional inputs (class weights,
 * pos_weight) come last and are recorded as NULL when absent, so the
 * labels of nll_loss and cross_entropy_ex are not always the last input:
 * those two carry TG_OPF_INDEX, not TG_OPF_LABELS. */
#define TG_OPS_LOSS(X)                                                  \
    /* pointwise, src/ops/losses.c */                                   \
    X(L1_LOSS, l1_loss, 2, 0)                                           \
    X(SMOOTH_L1_LOSS, smooth_l1_loss, 2, 0)                             \
    X(HUBER_LOSS, huber_loss, 2, 0)                                     \
    X(BCE_LOSS, bce_loss, 2, 0)                                         \
    X(BCE_WITH_LOGITS, bce_with_logits, 3, TG_OPF_OPTIONAL)             \
    X(KL_DIV, kl_div, 2, 0)                                             \
    /* over a class axis, src/ops/loss.c */                             \
    X(NLL_LOSS, nll_loss, 3, TG_OPF_INDEX | TG_OPF_OPTIONAL)            \
    X(CROSS_ENTROPY_EX, cross_entropy_ex, 3, TG_OPF_INDEX | TG_OPF_OPTIONAL)

/* How a loss reduces its per-element (or per-sample) values. */
typedef enum {
    TG_REDUCE_MEAN,
    TG_REDUCE_SUM,
    TG_REDUCE_NONE,
    TG_REDUCE_BATCHMEAN /* tg_kl_div only: sum / size of dim 0 */
} tg_reduction;

/* ====================================================================== */
/* Pointwise losses (pred and target of one shape)                        */
/* ====================================================================== */

/* l = (pred - target)^2, reduced. tg_mse_loss(c, p, t) is
 * tg_mse_loss_ex(c, p, t, TG_REDUCE_MEAN); both record the mse_loss node. */
tg_tensor *tg_mse_loss_ex(tg_ctx *c, tg_tensor *pred, tg_tensor *target, tg_reduction r);

/* l = |pred - target|, reduced. The gradient at pred == target is 0
 * (sign(0) = 0, as PyTorch). */
tg_tensor *tg_l1_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, tg_reduction r);

/* d = pred - target; l = 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta
 * elsewhere, reduced. beta >= 0 and finite (TG_ERR_INVALID otherwise);
 * beta == 0 is the L1 loss. PyTorch's default beta is 1. */
tg_tensor *tg_smooth_l1_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, double beta,
                             tg_reduction r);

/* d = pred - target; l = 0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta)
 * elsewhere, reduced: delta * smooth_l1(beta = delta). delta > 0 and finite
 * (TG_ERR_INVALID otherwise); PyTorch's default delta is 1. */
tg_tensor *tg_huber_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, double delta,
                         tg_reduction r);

/* Binary cross-entropy of probabilities (torch's BCELoss):
 * l = -(t max(log p, -100) + (1 - t) max(log(1 - p), -100)), reduced.
 * pred must hold probabilities in [0, 1]: any other value (or NaN) is
 * TG_ERR_INVALID naming its position, as PyTorch refuses it; target is
 * usually in [0, 1] (not checked). The logs are clamped at -100 as PyTorch
 * does, so p = 0 or 1 gives a finite loss. d/dpred is PyTorch's,
 * (p - t) / max(p (1 - p), 1e-12f); d/dtarget is the derivative of the
 * clamped loss, max(log(1 - p), -100) - max(log p, -100), finite where
 * PyTorch's (unclamped logs) is +-inf. Prefer tg_bce_with_logits. */
tg_tensor *tg_bce_loss(tg_ctx *c, tg_tensor *pred, tg_tensor *target, tg_reduction r);

/* Binary cross-entropy of logits z (torch's BCEWithLogitsLoss), stable for
 * any z: with w = 1 + (pos_weight - 1) t,
 *   l = (1 - t) z + w (log(1 + exp(-|z|)) + max(-z, 0)), reduced.
 * pos_weight (may be NULL: all ones) multiplies the positive term; it must
 * broadcast to logits' shape without enlarging it (typically [C] for
 * logits [..., C]; TG_ERR_SHAPE otherwise) and receives a gradient. */
tg_tensor *tg_bce_with_logits(tg_ctx *c, tg_tensor *logits, tg_tensor *target,
                              tg_tensor *pos_weight, tg_reduction r);

/* Kullback-Leibler divergence with input holding log-probabilities:
 *   l = t (log t - input)            (log_target false; 0 where t == 0)
 *   l = exp(t) (t - input)           (log_target true: target holds log t)
 * reduced by any reduction including TG_REDUCE_BATCHMEAN (the sum divided
 * by input's dim 0 size, the mathematically correct KL; a 0-d input counts
 * as one sample). TG_REDUCE_MEAN divides by the element count, as
 * PyTorch's default does. */
tg_tensor *tg_kl_div(tg_ctx *c, tg_tensor *input, tg_tensor *target, tg_reduction r,
                     bool log_target);

/* ====================================================================== */
/* Losses over a class axis                                               */
/* ====================================================================== */

/*
 * Shapes (as PyTorch): input [N, C] with labels [N], or input
 * [N, C, d1, ..., dk] with labels [N, d1, ..., dk] (the class axis is 1);
 * labels are TG_I64 (TG_ERR_DTYPE otherwise), each in [0, C) or equal to
 * ignore_index (TG_ERR_INVALID naming the position and value otherwise).
 * weights, when not NULL, is a [C] tensor of input's dtype with one weight
 * per class. Weights that require grad get their gradient (PyTorch refuses
 * to differentiate them), the weighted mean's denominator included.
 * Unbatched input [C] with a 0-d label, and probability targets, are not
 * supported: reshape to [1, C] / use tg_kl_div.
 *
 * For sample i with label y_i not ignored and loss term l_i:
 *   TG_REDUCE_NONE  the per-sample losses, labels' shape (0 where ignored)
 *   TG_REDUCE_SUM   sum_i l_i, a 0-d tensor
 *   TG_REDUCE_MEAN  sum_i l_i / sum_i w[y_i] over non-ignored i (the count
 *                   of non-ignored samples without weights). When every
 *                   sample is ignored (or N is 0) this is 0/0 = NaN, as in
 *                   PyTorch, and the gradient is zero, as PyTorch's.
 * Errors: TG_ERR_SHAPE for other shapes, TG_ERR_DTYPE for non-i64 labels
 * or weights of another dtype, TG_ERR_INVALID for a bad label, a reduction
 * other than mean / sum / none, or label_smoothing outside [0, 1].
 */

/* Options of tg_cross_entropy_ex; start from tg_ce_defaults(). */
typedef struct {
    tg_reduction reduction; /* TG_REDUCE_MEAN, _SUM or _NONE */
    int64_t ignore_index;   /* labels equal to it are skipped; default -100 */
    double label_smoothing; /* in [0, 1] (TG_ERR_INVALID otherwise); default 0 */
} tg_ce_opts;

/* {TG_REDUCE_MEAN, -100, 0.0}: PyTorch's defaults. */
tg_ce_opts tg_ce_defaults(void);

/* Negative log-likelihood of log-probabilities:
 * l_i = -w[y_i] input[i, y_i] (w = 1 without weights), reduced as above. */
tg_tensor *tg_nll_loss(tg_ctx *c, tg_tensor *input, tg_tensor *labels, tg_tensor *weights,
                       tg_reduction r, int64_t ignore_index);

/*
 * Softmax cross-entropy of logits, stable at any scale. With
 * lp = log_softmax(logits, 1) and e = label_smoothing,
 *   l_i = (1 - e) (-w[y_i] lp[i, y_i]) + (e / C) sum_c (-w[c] lp[i, c])
 * (PyTorch 1.10+'s smoothing, weights included), reduced as above: the mean
 * divides both terms by sum_i w[y_i] over non-ignored samples. opts NULL
 * means tg_ce_defaults(). tg_cross_entropy(c, x, y) is the unweighted mean
 * over [N, C] without ignore_index, kept as its own node.
 */
tg_tensor *tg_cross_entropy_ex(tg_ctx *c, tg_tensor *logits, tg_tensor *labels,
                               tg_tensor *weights, const tg_ce_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_LOSS_H */
