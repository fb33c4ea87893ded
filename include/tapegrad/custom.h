/*
 * tapegrad/custom.h - user-defined ops (implemented in src/autograd/custom.c).
 *
 * A custom op is a forward and a backward written in the user's own code.
 * Applied with tg_custom(), it runs like a built-in op: the forward
 * computes eagerly, and when grad mode is on and an input requires grad one
 * node of op TG_OP_CUSTOM is recorded, whose backward calls the user's.
 * Check it with tg_gradcheck like any op:
 *
 *     static tg_tensor *cube_fwd(tg_ctx *c, tg_tensor *const *in, int n,
 *                                void *state, tg_tensor **saved)
 *     { return tg_mul(c, in[0], tg_mul(c, in[0], in[0])); }
 *     static void cube_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout,
 *                          tg_tensor **dx)
 *     { dx[0] = tg_mul(c, dout, tg_scale(c, tg_mul(c, k->in[0], k->in[0]), 3)); }
 *     static const tg_custom_op cube = {"cube", 1, cube_fwd, cube_bwd};
 *     ... y = tg_custom(c, &cube, &x, 1, NULL);
 */
#ifndef TAPEGRAD_CUSTOM_H
#define TAPEGRAD_CUSTOM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one registry entry all custom ops share (see TG_OP_MAP in ops.h). */
#define TG_OPS_CUSTOM(X) X(CUSTOM, custom, -1, TG_OPF_VARIADIC | TG_OPF_CUSTOM)

/* Tensors a forward may keep for its backward. */
#define TG_CUSTOM_MAX_SAVED 2

/* What a custom backward sees of its node. */
typedef struct {
    tg_tensor *const *in;                  /* the inputs, as passed to tg_custom */
    int n;                                 /* how many */
    tg_tensor *out;                        /* the forward's result */
    tg_tensor *const *saved;               /* TG_CUSTOM_MAX_SAVED entries, NULL if unused */
    void *state;                           /* as passed to tg_custom */
} tg_custom_ctx;

typedef struct {
    const char *name; /* shown in errors, anomaly reports and the DOT export */
    int n_inputs;     /* tensors tg_custom must get; -1 for any number >= 1 */
    /*
     * Computes the result from in[0..n-1] in c, with grad mode off (nothing
     * it does is recorded). It may store up to TG_CUSTOM_MAX_SAVED tensors
     * in saved[] for the backward (their in-place changes are detected like
     * a built-in op's). Returns the result (a tensor of c, or an input's
     * view), or NULL with an error recorded on c.
     */
    tg_tensor *(*forward)(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                          tg_tensor **saved);
    /*
     * Sets dx[i], the gradient of input i (its shape, or one that
     * broadcasts to it: the engine sums it back), for every input that
     * requires grad; leaves dx[i] NULL for no gradient. Written with
     * tapegrad ops on c, so that with create_graph the gradient is itself
     * differentiable: for second order, compute from k->in and k->out, not
     * from saved values made outside the graph. Errors: record on c.
     */
    void (*backward)(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx);
} tg_custom_op;

/*
 * Applies op to in[0..n-1] in c. The definition and state must outlive
 * every backward over the result (a static definition is typical). Returns
 * the result, owned by c, or NULL: TG_ERR_INVALID (NULL op, forward or
 * backward, wrong input count, a NULL input), the forward's own error, or
 * TG_ERR_NOMEM. A result that is one of the inputs is wrapped in a view so
 * that it can carry the node.
 */
tg_tensor *tg_custom(tg_ctx *c, const tg_custom_op *op, tg_tensor *const *in, int n,
                     void *state);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_CUSTOM_H */
