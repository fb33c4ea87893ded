/*
 * tapegrad/autograd.h - requires-grad, backward, grad_of, grad mode,
 * detach and the public gradient checker.
 *
 * An op records a node on its context's tape when grad mode is on (the
 * default) and some input requires grad. tg_backward() walks that tape in
 * reverse from the loss and accumulates into .grad of every leaf (a tensor
 * no recorded op produced) that requires grad. A tensor produced on
 * another context's tape is treated as a leaf of this walk.
 */
#ifndef TAPEGRAD_AUTOGRAD_H
#define TAPEGRAD_AUTOGRAD_H

#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks a leaf as requiring grad (or not). Only floating leaves: setting it
 * on an I64 tensor (TG_ERR_DTYPE) or on a tensor a recorded op produced
 * (TG_ERR_MISUSE) records an error on t's context and changes nothing. */
void tg_set_requires_grad(tg_tensor *t, bool on);

bool tg_requires_grad(const tg_tensor *t);

/* True when no recorded op produced t. */
bool tg_is_leaf(const tg_tensor *t);

/* The gradient accumulated into t by tg_backward(): a contiguous tensor of
 * t's shape and dtype living in t's own context, or NULL until a backward
 * reaches t. */
tg_tensor *tg_grad(const tg_tensor *t);

/* Sets t's accumulated gradient to zero (keeps its memory). */
void tg_zero_grad(tg_tensor *t);

/*
 * Seeds d loss = 1 and accumulates d loss / d leaf into tg_grad(leaf) for
 * every leaf that requires grad and that the loss depends on. Temporaries
 * live in c, whose tape must hold the loss's graph. Deterministic: two runs
 * give bit-identical gradients. Does not record (no create_graph; use
 * tg_grad_of for that). Leaf gradients change only when the whole walk
 * succeeds. Memory: the gradient of an intermediate tensor is given back to
 * c's arena as soon as the last node that reads it has run, so the walk's
 * memory is that of the gradients alive at once, not of all of them (a
 * custom op's backward may still keep the dout it was given and what it
 * returns, until c is reset). Errors: TG_ERR_INVALID (NULLs), TG_ERR_SHAPE (loss with more
 * than one element), TG_ERR_MISUSE (loss does not require grad; or a
 * tensor a recorded op used, or saved for backward, was changed in place
 * since: tg_copy_in, tg_tensor_bump_version, an optimizer step; the message
 * names the op and the tensor), TG_ERR_NUMERIC (anomaly mode),
 * TG_ERR_NOMEM; a sticky error already on c is returned unchanged.
 */
tg_status tg_backward(tg_ctx *c, tg_tensor *loss);

/*
 * tg_backward that also gives back the forward pass's memory as it goes,
 * the way PyTorch frees what a graph saved: an intermediate tensor (the
 * output of an op recorded on c's tape, of at least 2 KB) is released once
 * the last node whose backward reads its elements has run, and its memory
 * holds gradients from then on. Peak memory is then about that of the
 * forward's activations, not of the activations plus the gradients alive
 * at once. Gradients are bit-identical to tg_backward's.
 * Never released: the loss; leaves and tensors made with grad mode off (and
 * views of them); tensors of other contexts; what a weight gradient left
 * to run at the commit reads (a linear layer's input, when its weight
 * gradient is at least as large as that input and its output gradient
 * together); tensors marked with tg_retain (and everything sharing their
 * storage); everything, when the tape holds a custom op (its state may
 * keep any tensor).
 * A released tensor keeps its shape and dtype, but its elements are gone:
 * tg_is_released says so, tg_item and tg_get return NaN, tg_data NULL,
 * tg_copy_out and tg_copy_in TG_ERR_MISUSE, an op given it fails with
 * TG_ERR_MISUSE naming it, and so does a later backward through a node
 * that reads it. tg_ctx_reset ends it all as usual. Errors: tg_backward's.
 */
tg_status tg_backward_release(tg_ctx *c, tg_tensor *loss);

/* Keeps t's elements, and those of every tensor sharing its storage,
 * through tg_backward_release (for example logits to score after the
 * step). */
void tg_retain(tg_tensor *t);

/* True when t's memory is given back (by tg_backward_release, or by
 * tg_recompute_later and not recomputed since); false for NULL. */
bool tg_is_released(const tg_tensor *t);

/*
 * Gives t's memory back now, in the forward, for the ops that follow to
 * reuse, and has any backward that reads t recompute it from the inputs of
 * the op that made it (activation recomputation, per tensor). Call it once
 * the forward has no more use for t: a GELU's output after the linear that
 * reads it, a layer norm's output after its projections. A step then
 * trades the op's forward time once more for its output's memory; an
 * output that no backward reads (the summands of a residual add, say) is
 * given back for free. Recomputing gives the same bits, so the gradients
 * are those of a run without it.
 *
 * t must be the output of an op recorded on its context's tape, owning its
 * memory (not a view). The inputs of that op stay as they are until the
 * backward: the backward refuses to recompute from an input modified in
 * place since. A backward through t's op (or a reader of t) recomputes it
 * once and keeps it; tg_backward_release gives it back again after its
 * last reader. Until it is recomputed, t reads like a released tensor
 * (tg_is_released true, tg_item NaN, tg_data NULL, ops refuse it).
 *
 * Returns TG_OK (also when t was given back already) or the context's
 * error: TG_ERR_INVALID (t NULL, nothing recorded), TG_ERR_MISUSE (a leaf,
 * made with grad mode off, a view, passed to tg_retain, or called during a
 * backward), TG_ERR_UNSUPPORTED (an op that cannot recompute, such as
 * dropout or a custom op, whose output a recorded backward reads). t's
 * context goes into the error state as usual; a failed call changes
 * nothing.
 */
tg_status tg_recompute_later(tg_tensor *t);

/* tg_backward for any output, with dout (same shape, same dtype) as its
 * gradient. */
tg_status tg_backward_with_grad(tg_ctx *c, tg_tensor *out, tg_tensor *dout);

/*
 * Gradients of the outputs (weighted by doutputs; NULL, or a NULL entry,
 * means ones, allowed for one-element outputs only) with respect to each
 * inputs[i], written to grads[i], like torch.autograd.grad. Inputs may be
 * leaves or intermediates. The gradients are new tensors in c with the
 * inputs' shapes and dtypes; an input the outputs do not depend on gets
 * zeros. .grad of leaves is not touched. With create_graph the backward
 * ops are recorded on c's tape, so the gradients are themselves
 * differentiable (grad of grad, Hessian-vector products); without it they
 * require no grad. An output that requires no grad contributes nothing
 * (zeros), so a second derivative of a function whose first derivative is
 * constant is zeros, not an error. Errors: TG_ERR_INVALID (NULLs, n_out or
 * n_in < 1), TG_ERR_SHAPE / TG_ERR_DTYPE (a doutput unlike its output, or
 * NULL for an output with more than one element), TG_ERR_NOMEM; grads[] is
 * all NULL on error.
 */
tg_status tg_grad_of(tg_ctx *c, int n_out, tg_tensor *const *outputs,
                     tg_tensor *const *doutputs, int n_in, tg_tensor *const *inputs,
                     bool create_graph, tg_tensor **grads);

/* Turns recording on c on or off and returns the previous mode. */
bool tg_set_grad_enabled(tg_ctx *c, bool on);
bool tg_grad_enabled(const tg_ctx *c);

/*
 * Anomaly mode (off by default): every op run on c checks its output for
 * NaN and infinity, and every backward on c checks each gradient it
 * produces; the first non-finite value fails with TG_ERR_NUMERIC and a
 * message naming the op (and, inside a backward, whose backward), the
 * element and the shapes. Costs one pass over every result. Returns the
 * previous mode.
 */
bool tg_set_anomaly(tg_ctx *c, bool on);
bool tg_anomaly_enabled(const tg_ctx *c);

/* A view of x's data in c that no op produced and that requires no grad:
 * the graph stops here. NULL (error on c) for a NULL x. */
tg_tensor *tg_detach(tg_ctx *c, tg_tensor *x);

/* ====================================================================== */
/* Seeing the graph                                                       */
/* ====================================================================== */

/*
 * Writes the part of root's context's tape that root depends on as a
 * Graphviz DOT digraph to f: one box per recorded op (its name, the
 * output's dtype and shape, the bytes it holds: output storage unless a
 * view, plus saved tensors), one ellipse per leaf or tensor from outside
 * the tape (name if set, dtype, shape, requires_grad, bytes), edges from
 * inputs to ops. Render with `dot -Tsvg graph.dot > graph.svg`. Allocates
 * scratch through root's context's allocator hook and frees it. Errors:
 * TG_ERR_INVALID (NULL root or f), TG_ERR_NOMEM, TG_ERR_IO (a write failed).
 */
tg_status tg_graph_dot(const tg_tensor *root, FILE *f);

/* tg_graph_dot into a file at path (created or truncated). TG_ERR_IO when
 * it cannot be opened or written. */
tg_status tg_graph_dot_file(const tg_tensor *root, const char *path);

/* ====================================================================== */
/* Gradient checking                                                      */
/* ====================================================================== */

/* The function under test: builds an output from inputs in c. */
typedef tg_tensor *(*tg_fn)(tg_ctx *c, tg_tensor **inputs, int n, void *user);

typedef struct {
    double eps;        /* central-difference step; default 1e-6 */
    double atol, rtol; /* |analytic - numeric| <= atol + rtol*|numeric|; 1e-7, 1e-5 */
    bool second_order; /* also check the gradient of the gradient; default off */
} tg_gradcheck_opts;

tg_gradcheck_opts tg_gradcheck_defaults(void);

/*
 * Checks the analytic gradient of f at the given inputs against central
 * finite differences. The output of f is reduced to a scalar by a fixed
 * random weighted sum. Checked inputs are the TG_F64 tensors that require
 * grad (a TG_F32 input that requires grad is TG_ERR_INVALID: finite
 * differences need f64); other inputs are passed through unchanged. Each
 * checked input may be strided but must not overlap itself (no expanded
 * views); its values are perturbed in place and restored exactly. Also
 * checks that a zero output gradient gives exactly zero input gradients,
 * that two backward runs give bit-identical results and, with
 * second_order, the gradient of a random weighted sum of the first
 * gradients. f runs in private contexts that gradcheck creates and frees,
 * whose RNG is reseeded to the same value before every run, so an f that
 * draws random numbers (dropout) sees the same draws each time.
 *
 * Returns TG_OK when everything matches, TG_ERR_GRADCHECK with a report
 * naming the check, the input, the element and both values when not, or
 * the error f or backward gave (TG_ERR_INVALID for NULLs, an unchecked
 * dtype or an overlapping input; TG_ERR_NOMEM). The report (may be NULL)
 * is always NUL-terminated when report_len > 0.
 */
tg_status tg_gradcheck(tg_fn f, void *user, tg_tensor **inputs, int n,
                       const tg_gradcheck_opts *opts, char *report, size_t report_len);

/* ---- profiling ---------------------------------------------------------- */

/*
 * Where a step goes, by op name: with profiling on, a context counts every
 * op it runs (forward) and every node its backward walks, with wall time
 * and arena bytes. A forward op's time and bytes are those since the
 * previous op, backward or reset of the context ended (an op's own cost
 * when ops follow each other); ops that run inside a backward rule belong
 * to their node's backward and are not counted on their own. The entry
 * "(commit)" is the backward's final write of leaf gradients (where linear
 * layers' weight-gradient GEMMs run). Setting the environment variable
 * TG_PROFILE=1 turns profiling on in every new context and prints its
 * report to stderr when the context is freed.
 */
typedef struct {
    int64_t fwd_calls, bwd_calls; /* ops run / backward nodes walked */
    double fwd_ms, bwd_ms;        /* wall time */
    int64_t fwd_bytes, bwd_bytes; /* arena bytes allocated */
} tg_profile_stat;

/* Turns profiling on or off (counts are kept; tg_profile_reset clears
 * them); returns the previous setting, false for NULL. The first switch on
 * allocates the table through the context's allocator: without memory it
 * records TG_ERR_NOMEM and stays off. */
bool tg_ctx_set_profile(tg_ctx *c, bool on);

bool tg_profile_enabled(const tg_ctx *c);

/* Zeroes every count of c. */
void tg_profile_reset(tg_ctx *c);

/* The counts of one op by name (tg_op_name, or "(commit)") into *out;
 * false (and *out unchanged) for NULL arguments or an unknown name. All
 * zero when profiling was never on. */
bool tg_profile_get(const tg_ctx *c, const char *name, tg_profile_stat *out);

/* Prints one line per op that ran, the most expensive first, then the
 * totals, to f. TG_ERR_INVALID for NULL, TG_ERR_IO when f reports an error. */
tg_status tg_profile_report(const tg_ctx *c, FILE *f);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_AUTOGRAD_H */
