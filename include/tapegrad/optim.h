/*
 * tapegrad/optim.h - optimizers (SGD, Adam, AdamW, RMSprop, Adagrad),
 * learning-rate schedules and gradient clipping.
 *
 * An optimizer is made over an array of parameters: leaves that require
 * grad, TG_F32 or TG_F64, contiguous, living in a persistent context (one
 * that is never reset). tg_optim_step() reads tg_grad(param) and updates
 * every parameter in place, with PyTorch's semantics (torch.optim, 1.13,
 * single-tensor path, the same order of floating-point operations done in
 * the parameter's dtype). A parameter whose grad is NULL is skipped, as
 * PyTorch skips one whose .grad is None.
 *
 * Memory. The optimizer and all of its state (moments, per-parameter step
 * counts) live in the arena of the context given at creation: the state
 * is allocated on the first step (or by tg_optim_init_state), every buffer
 * before any parameter is touched, and a step after that allocates nothing
 * at all (apart from the context's thread pool, which the first loop big
 * enough to split starts, once). The per-element update is one fused pass per parameter, split
 * over the context's threads for large parameters; every element is
 * computed by the same code whatever the split, so results are
 * bit-identical for any thread count.
 *
 * Errors are recorded on the optimizer's context ("tg_optim_step: ..."),
 * which is sticky like every context: a step on a context that holds an
 * error returns that error and changes nothing. A step that fails (bad
 * gradient, out of memory) leaves parameters and state exactly as they
 * were.
 *
 * Checkpoints. The whole state is a list of named tensors (see "State"
 * below): saving them and loading them back with tg_optim_load_state()
 * continues bit for bit as if the run had not stopped.
 */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_optim tg_optim; /* opaque */

/* ====================================================================== */
/* Configuration: one struct and one defaults function per optimizer.      */
/* Every value must be finite; the ranges are PyTorch's.                   */
/* ====================================================================== */

/*
 * SGD:  g = grad (+ weight_decay * p)
 *       with momentum: buf = g on a parameter's first step, else
 *                      buf = momentum * buf + (1 - dampening) * g;
 *                      g = nesterov ? g + momentum * buf : buf
 *       p -= lr * g
 */
typedef struct {
    double lr;           /* >= 0; default 1e-3 */
    double momentum;     /* >= 0; default 0 */
    double dampening;    /* default 0 */
    double weight_decay; /* >= 0; default 0 (L2, added to the gradient) */
    bool nesterov;       /* needs momentum > 0 and dampening == 0; default false */
    bool maximize;       /* ascend instead of descend; default false */
} tg_sgd_opts;

/*
 * Adam (L2 weight decay added to the gradient) and AdamW (decoupled:
 * p *= 1 - lr * weight_decay before the update). With t the parameter's
 * own step count:
 *       m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
 *       (amsgrad: vmax = max(vmax, v), used instead of v)
 *       p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 */
typedef struct {
    double lr;           /* >= 0; default 1e-3 */
    double beta1, beta2; /* in [0, 1); default 0.9, 0.999 */
    double eps;          /* >= 0; default 1e-8 */
    double weight_decay; /* >= 0; default 0 for Adam, 1e-2 for AdamW */
    bool amsgrad;        /* default false */
    bool maximize;       /* default false */
} tg_adam_opts;
typedef tg_adam_opts tg_adamw_opts;

/*
 * RMSprop:  sq = alpha * sq + (1 - alpha) * g^2
 *           centered: ga = alpha * ga + (1 - alpha) * g; avg = sqrt(sq - ga^2) + eps
 *           else avg = sqrt(sq) + eps
 *           momentum > 0: buf = momentum * buf + g / avg; p -= lr * buf
 *           else p -= lr * g / avg
 */
typedef struct {
    double lr;           /* >= 0; default 1e-2 */
    double alpha;        /* >= 0; default 0.99 */
    double eps;          /* >= 0; default 1e-8 */
    double weight_decay; /* >= 0; default 0 */
    double momentum;     /* >= 0; default 0 */
    bool centered;       /* default false */
    bool maximize;       /* default false */
} tg_rmsprop_opts;

/*
 * Adagrad:  sum += g^2;  p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)
 */
typedef struct {
    double lr;                        /* >= 0; default 1e-2 */
    double lr_decay;                  /* >= 0; default 0 */
    double weight_decay;              /* >= 0; default 0 */
    double initial_accumulator_value; /* >= 0; default 0 (the starting sum) */
    double eps;                       /* >= 0; default 1e-10 */
    bool maximize;                    /* default false */
} tg_adagrad_opts;

tg_sgd_opts tg_sgd_defaults(void);
tg_adam_opts tg_adam_defaults(void);
tg_adamw_opts tg_adamw_defaults(void);
tg_rmsprop_opts tg_rmsprop_defaults(void);
tg_adagrad_opts tg_adagrad_defaults(void);

/* ====================================================================== */
/* Creation and lifetime                                                   */
/* ====================================================================== */

/*
 * A new optimizer over params[0..n-1] (n >= 1) with opts (NULL: defaults),
 * living in c's arena, or NULL with the error recorded on c (NULL when c is
 * NULL or already holds an error). The array is copied; the parameters
 * themselves are not, and must outlive the optimizer (keep them, and c, in
 * contexts that are never reset). Each parameter's name (tg_tensor_name)
 * is read now and names its state; an unnamed parameter is named by its
 * index ("3"). TG_ERR_INVALID for: NULL params or a NULL entry, n < 1, a
 * parameter that is not a leaf, does not require grad, is not floating or
 * is not contiguous, the same parameter twice (or two overlapping views of
 * one storage), two parameters with the same name, a bad hyperparameter.
 * TG_ERR_NOMEM.
 */
tg_optim *tg_sgd_new(tg_ctx *c, tg_tensor *const *params, int n, const tg_sgd_opts *opts);
tg_optim *tg_adam_new(tg_ctx *c, tg_tensor *const *params, int n, const tg_adam_opts *opts);
tg_optim *tg_adamw_new(tg_ctx *c, tg_tensor *const *params, int n, const tg_adamw_opts *opts);
tg_optim *tg_rmsprop_new(tg_ctx *c, tg_tensor *const *params, int n,
                         const tg_rmsprop_opts *opts);
tg_optim *tg_adagrad_new(tg_ctx *c, tg_tensor *const *params, int n,
                         const tg_adagrad_opts *opts);

/*
 * Ends the optimizer. Its memory (the struct, the parameter list, every
 * state tensor) belongs to the arena of its context and is returned only
 * by tg_ctx_free() of that context: an arena frees nothing on its own.
 * What tg_optim_free does is mark the handle dead, so any later call with
 * it fails with TG_ERR_MISUSE instead of touching parameters. Call it (if
 * at all) before freeing the context. tg_optim_free(NULL) does nothing.
 * To reuse the memory for a fresh run over the same parameters, use
 * tg_optim_reset() instead of making a new optimizer.
 */
void tg_optim_free(tg_optim *o);

/* ====================================================================== */
/* Stepping                                                                */
/* ====================================================================== */

/*
 * One update of every parameter whose grad is not NULL (see the formulas
 * above), in place through its storage, bumping each changed storage's
 * version (so a graph recorded before the step refuses a later backward).
 * Increments the step count and each updated parameter's own step count.
 * All gradients are checked first; then the state is allocated if this is
 * the first step; only then is anything written, so a failing step
 * changes nothing. Errors: TG_ERR_INVALID (NULL o; a gradient whose shape
 * or dtype differs from its parameter's, or that is not contiguous),
 * TG_ERR_MISUSE (a freed optimizer), TG_ERR_NOMEM (first step only), or
 * the sticky error already on the context.
 */
tg_status tg_optim_step(tg_optim *o);

/*
 * The backward of loss (a one-element tensor of c's tape) with the step of
 * opt folded in: tg_backward_release(c, loss) then tg_optim_step(opt),
 * except that a parameter of opt whose grad is NULL never gets one. Its
 * gradient goes straight into its update as the walk finishes, a block of
 * rows of a weight gradient at a time (at most 256 KB of f32, on memory
 * the walk gave back when a piece of it is large enough), so a training step
 * holds the parameters and the optimizer's state but no copy of the
 * gradients (PyTorch's optimizer step in backward). Parameters of opt that
 * hold a grad get the walk's contribution added to it and step from it, as
 * tg_optim_step would; other leaves get .grad as from tg_backward_release.
 * A parameter without a grad that the loss does not reach takes no step
 * (PyTorch's zero_grad(set_to_none=True) then step).
 * Call it instead of zero_grad / backward / step, without zero_grad (which
 * would keep the grads' memory). The values are those of the three calls
 * up to rounding: a block of a weight gradient may be summed in another
 * order than the whole product (BLAS picks kernels by size); every bit is
 * the same at any thread count. Nothing needs every gradient first, so
 * global-norm clipping (tg_clip_grad_norm) cannot run in between: use the
 * three calls for that. opt's checks and its state come first, so a failing
 * call changes neither parameters nor state nor any grad. Errors: those of
 * tg_backward_release, TG_ERR_INVALID (NULL loss or opt; a grad of opt that
 * does not match its parameter), TG_ERR_MISUSE (a freed optimizer),
 * TG_ERR_NOMEM; an error of opt's context is also recorded on c.
 */
tg_status tg_backward_step(tg_ctx *c, tg_tensor *loss, tg_optim *opt);

/* Zeroes every parameter's grad in place (PyTorch's zero_grad with
 * set_to_none=False: the memory is kept, so the next backward allocates
 * nothing). Parameters without a grad are left alone. */
void tg_optim_zero_grad(tg_optim *o);

/* The learning rate the next step uses (NaN for NULL / freed o). */
double tg_optim_lr(const tg_optim *o);

/* Sets the learning rate; TG_ERR_INVALID (also recorded) if lr is negative
 * or not finite. */
tg_status tg_optim_set_lr(tg_optim *o, double lr);

/* Number of successful tg_optim_step calls since creation (or the count
 * loaded with the state); -1 for NULL / freed o. */
int64_t tg_optim_step_count(const tg_optim *o);

/* Back to the state just after creation: every state buffer zero (Adagrad:
 * its initial_accumulator_value), every step count 0, the lr of the
 * options. Allocates nothing. TG_ERR_INVALID / TG_ERR_MISUSE. */
tg_status tg_optim_reset(tg_optim *o);

/* "sgd", "adam", "adamw", "rmsprop" or "adagrad"; "?" for NULL / freed. */
const char *tg_optim_kind(const tg_optim *o);

/* The context the optimizer and its state live in; NULL for NULL o. */
tg_ctx *tg_optim_ctx(const tg_optim *o);

/* Number of parameters (0 for NULL o) and the i-th one (NULL if out of
 * range), e.g. for tg_clip_grad_norm. */
int tg_optim_nparams(const tg_optim *o);
tg_tensor *tg_optim_param(const tg_optim *o, int i);

/* ====================================================================== */
/* State, for checkpoints                                                  */
/* ====================================================================== */

/*
 * The state is a fixed list of named tensors in the optimizer's context,
 * in a stable order:
 *   "step"  I64 0-d   the step count (tg_optim_step_count)
 *   "lr"    F64 0-d   the learning rate (tg_optim_lr)
 * then for each parameter P (its name, or its index when unnamed), in
 * parameter order:
 *   "P.step"  I64 0-d  how many steps updated P (PyTorch's state['step'])
 *   and P's buffers, shaped and typed like P, named as in PyTorch:
 *   SGD "P.momentum_buffer" (only with momentum != 0); Adam/AdamW
 *   "P.exp_avg", "P.exp_avg_sq", "P.max_exp_avg_sq" (amsgrad only);
 *   RMSprop "P.square_avg", "P.momentum_buffer" (momentum > 0),
 *   "P.grad_avg" (centered); Adagrad "P.sum".
 * A buffer's content is meaningful only once P.step > 0 (SGD's momentum
 * buffer is set to the gradient on P's first step, as in PyTorch).
 */

/* Allocates the state now if no step has (zeros, step counts 0), so that it
 * can be enumerated or loaded before training and the first step
 * allocates nothing. Idempotent. TG_ERR_NOMEM leaves it unallocated. */
tg_status tg_optim_init_state(tg_optim *o);

/* Number of state entries (allocating the state first if needed); -1 on
 * error (recorded on the context). */
int tg_optim_state_count(tg_optim *o);

/* Entry i (0 <= i < tg_optim_state_count): its name (owned by the
 * optimizer, valid as long as it) and its tensor (live: it changes with
 * every step; read it with tg_copy_out). name or tensor may be NULL.
 * TG_ERR_INVALID for a NULL o or i out of range (not recorded), or the
 * error of allocating the state. */
tg_status tg_optim_state_get(tg_optim *o, int i, const char **name, tg_tensor **tensor);

/* The state tensor of the given name, or NULL (nothing recorded). */
tg_tensor *tg_optim_state_find(tg_optim *o, const char *name);

/*
 * Restores the whole state at once from n named tensors (any context, any
 * strides): every entry of the list above must be given exactly once, with
 * its exact shape and dtype; step counts must be >= 0 and the lr finite
 * and >= 0. Everything is validated before anything is written, so on
 * error the state is unchanged. Errors (recorded on the optimizer's
 * context, naming the entry): TG_ERR_INVALID (NULLs, unknown, missing or
 * repeated names, bad values), TG_ERR_SHAPE, TG_ERR_DTYPE, TG_ERR_NOMEM.
 */
tg_status tg_optim_load_state(tg_optim *o, int n, const char *const *names,
                              tg_tensor *const *tensors);

/* ====================================================================== */
/* Learning-rate schedules                                                 */
/* ====================================================================== */

typedef enum {
    TG_LR_CONSTANT,
    TG_LR_STEP,              /* lr * gamma^floor(t / step_size)   (StepLR) */
    TG_LR_EXPONENTIAL,       /* lr * gamma^t                  (ExponentialLR) */
    TG_LR_COSINE,            /* CosineAnnealingLR(T_max, eta_min) */
    TG_LR_COSINE_RESTARTS,   /* CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) */
    TG_LR_ONE_CYCLE          /* OneCycleLR(max_lr = lr, total_steps, ...) */
} tg_lr_kind;

/*
 * A schedule is plain data; make one with a constructor below and adjust
 * fields. tg_lr_at(s, t) is the learning rate of optimizer step t + 1,
 * i.e. after t completed steps: it equals PyTorch's
 * optimizer.param_groups[0]["lr"] after scheduler.step() has been called t
 * times (PyTorch's loop: optimizer.step(); scheduler.step()). So call
 * tg_optim_apply_schedule() (or tg_optim_set_lr(o, tg_lr_at(s,
 * tg_optim_step_count(o)))) right before each tg_optim_step().
 *
 * Linear warm-up composes with every kind: with warmup_steps = W > 0,
 * steps t < W use lr * (f + (1 - f) * t / W) where f =
 * warmup_start_factor, and from t = W on the main schedule runs from its
 * own step 0 (t - W). That is PyTorch's SequentialLR([LinearLR(optimizer,
 * start_factor=f, total_iters=W), main], milestones=[W]).
 *
 * Beyond its period, TG_LR_COSINE follows PyTorch's formula (it rises
 * again after T_max); TG_LR_ONE_CYCLE keeps its final value after
 * total_steps - 1 (PyTorch raises there). One-cycle does not cycle
 * momentum (PyTorch's cycle_momentum=False).
 */
typedef struct {
    tg_lr_kind kind;
    double lr;               /* base lr (one-cycle: max_lr) */
    int64_t step_size;       /* STEP: > 0 */
    double gamma;            /* STEP, EXPONENTIAL: > 0 */
    int64_t t_max;           /* COSINE: > 0 */
    int64_t t_0, t_mult;     /* COSINE_RESTARTS: > 0, >= 1 */
    double eta_min;          /* COSINE, COSINE_RESTARTS: >= 0 */
    int64_t total_steps;     /* ONE_CYCLE: > 0 */
    double pct_start;        /* ONE_CYCLE: in [0, 1]; default 0.3 */
    double div_factor;       /* ONE_CYCLE: initial lr = lr / div_factor; 25 */
    double final_div_factor; /* ONE_CYCLE: final lr = initial / this; 1e4 */
    bool three_phase;        /* ONE_CYCLE: PyTorch's three_phase; false */
    bool anneal_linear;      /* ONE_CYCLE: linear instead of cosine; false */
    int64_t warmup_steps;    /* >= 0; 0: no warm-up */
    double warmup_start_factor; /* in (0, 1]; default 1/3 (LinearLR's) */
} tg_lr_schedule;

tg_lr_schedule tg_lr_constant(double lr);
tg_lr_schedule tg_lr_step(double lr, int64_t step_size, double gamma);
tg_lr_schedule tg_lr_exponential(double lr, double gamma);
tg_lr_schedule tg_lr_cosine(double lr, int64_t t_max, double eta_min);
tg_lr_schedule tg_lr_cosine_restarts(double lr, int64_t t_0, int64_t t_mult, double eta_min);
tg_lr_schedule tg_lr_one_cycle(double max_lr, int64_t total_steps);

/* Checks s; TG_OK, or TG_ERR_INVALID with a "tg_lr_schedule: ..." message
 * written to msg (of n bytes; msg may be NULL). */
tg_status tg_lr_check(const tg_lr_schedule *s, char *msg, size_t n);

/* The learning rate after `step` completed optimizer steps (see above).
 * Pure. NaN for a NULL or invalid schedule or a negative step. */
double tg_lr_at(const tg_lr_schedule *s, int64_t step);

/* tg_optim_set_lr(o, tg_lr_at(s, tg_optim_step_count(o))). TG_ERR_INVALID
 * (recorded) for NULLs or an invalid schedule. */
tg_status tg_optim_apply_schedule(tg_optim *o, const tg_lr_schedule *s);

/* ====================================================================== */
/* Gradient clipping                                                       */
/* ====================================================================== */

/*
 * torch.nn.utils.clip_grad_norm_: the norm of all gradients of params
 * taken together (parameters with a NULL grad are skipped), norm_type 2
 * (any p > 0) or INFINITY (max |g|); if it exceeds max_norm every gradient
 * is scaled in place by max_norm / (norm + 1e-6). The norm before clipping
 * is returned through total_norm (may be NULL). Sums run in double over
 * fixed blocks combined in a fixed order: bit-identical for any thread
 * count (c's threads). With error_if_nonfinite a NaN or infinite norm
 * gives TG_ERR_NUMERIC and leaves the gradients alone; without it they
 * are scaled by the NaN or zero factor as PyTorch does. Errors (recorded
 * on c): TG_ERR_INVALID (NULLs, n < 0, max_norm < 0 or NaN, norm_type <= 0
 * or NaN), TG_ERR_NUMERIC, or c's sticky error. Allocates nothing (but
 * may start c's thread pool, once).
 */
tg_status tg_clip_grad_norm(tg_ctx *c, tg_tensor *const *params, int n, double max_norm,
                            double norm_type, bool error_if_nonfinite, double *total_norm);

/* torch.nn.utils.clip_grad_value_: every gradient element clamped to
 * [-clip_value, clip_value] in place (NaN stays NaN). TG_ERR_INVALID
 * (recorded on c) for NULLs, n < 0, clip_value < 0 or NaN. */
tg_status tg_clip_grad_value(tg_ctx *c, tg_tensor *const *params, int n, double clip_value);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPTIM_H */
