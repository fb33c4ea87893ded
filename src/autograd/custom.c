/*
 * custom.c - user-defined ops: one registry entry (TG_OP_CUSTOM) whose
 * backward dispatches to the definition stored in the node.
 */
#include "../ops/ops_impl.h"

#include <string.h>

tg_tensor *tg_custom(tg_ctx *c, const tg_custom_op *op, tg_tensor *const *in, int n,
                     void *state)
{
    const char *fn = "tg_custom";
    if (!tg__ok(c)) return NULL;
    if (!op || !op->forward || !op->backward) {
        tg__fail(c, TG_ERR_INVALID, "%s: op definition, forward or backward is NULL", fn);
        return NULL;
    }
    const char *name = op->name ? op->name : "(unnamed)";
    if (n < 1 || !in || (op->n_inputs >= 0 && n != op->n_inputs)) {
        tg__fail(c, TG_ERR_INVALID, "%s: op '%s' takes %d inputs, got %d", fn, name,
                 op->n_inputs, n);
        return NULL;
    }
    if (!tg__check_inputs(c, fn, n, in)) return NULL;

    tg_tensor *saved[TG_CUSTOM_MAX_SAVED] = {NULL};
    bool prev = tg_set_grad_enabled(c, false);
    tg_tensor *y = op->forward(c, in, n, state, saved);
    tg_set_grad_enabled(c, prev);
    if (!y) {
        if (tg__ok(c))
            tg__fail(c, TG_ERR_INVALID, "%s: forward of op '%s' returned NULL without an error",
                     fn, name);
        return NULL;
    }
    /* The result must be a fresh struct to carry the node. */
    bool fresh = y->node == NULL && !y->requires_grad;
    for (int i = 0; i < n && fresh; i++) fresh = y != in[i];
    if (!fresh && !(y = tg__view(c, y, y->ndim, y->shape, y->stride, y->offset))) return NULL;
    c->api = fn;
    tg__node *node;
    if (tg__record(c, TG_OP_CUSTOM, y, n, in, &node)) return NULL;
    if (node) {
        node->custom = op;
        node->state = state;
        for (int i = 0; i < TG_CUSTOM_MAX_SAVED && i < TG__NODE_SAVED; i++)
            tg__save(node, i, saved[i]);
    }
    return y;
}

void tg__custom_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    const tg_custom_op *op = n->custom;
    tg_custom_ctx k = {n->in, n->n_in, n->out, n->saved, n->state};
    op->backward(c, &k, dout, dx);
}

const char *tg__node_name(const tg__node *n)
{
    if (n->op == TG_OP_CUSTOM && n->custom) {
        const tg_custom_op *op = n->custom;
        return op->name ? op->name : "custom";
    }
    return tg_op_name(n->op);
}
