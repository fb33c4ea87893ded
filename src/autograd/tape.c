/*
 * tape.c - recording ops on the tape, and the per-tensor autograd state
 * (requires_grad, .grad, detach). The backward driver is in backward.c.
 */
#include "tape.h"

#include <string.h>

/* Anomaly mode: fails when out holds a NaN or infinity, naming the op, the
 * element, the shapes and, inside a backward, whose backward it was. */
static tg_status check_anomaly(tg_ctx *c, tg_op op, const tg_tensor *out, int n_in,
                               tg_tensor *const *in)
{
    int64_t at;
    double v;
    if (!tg__find_nonfinite(out, &at, &v)) return TG_OK;
    char o[200], ins[400] = "", one[200], where[160] = "";
    for (int i = 0; i < n_in; i++) {
        size_t len = strlen(ins);
        if (len < sizeof ins)
            snprintf(ins + len, sizeof ins - len, "%s%s", i ? ", " : "",
                     in[i] ? tg__describe(in[i], one, sizeof one) : "(none)");
    }
    if (c->backward_of)
        snprintf(where, sizeof where, " in the backward of '%s' (node %lld)",
                 tg__node_name(c->backward_of), (long long)c->backward_of->seq);
    return tg__fail(c, TG_ERR_NUMERIC,
                    "anomaly: tg_%s%s produced %g at element %lld of its %s output; inputs: %s",
                    tg_op_name(op), where, v, (long long)at, tg__describe(out, o, sizeof o), ins);
}

_Atomic uint64_t tg__taped_bumps; /* tensor_impl.h */

tg_status tg__record_node(tg_ctx *c, tg_op op, tg_tensor *out, int n_in, tg_tensor *const *in,
                          tg__node **node)
{
    *node = NULL;
    if (c->profile) tg__profile_forward(c, op);
    if (c->anomaly && check_anomaly(c, op, out, n_in, in)) return c->status;
    /* tg__record comes here with grad wanted, or for anomaly or profile */
    if ((c->profile || c->anomaly) && !tg__wants_grad(c, n_in, in)) return TG_OK;
    tg__tape *tp = &c->tape;
    if (tp->n == tp->cap) {
        int64_t cap = tp->cap ? tp->cap * 2 : 256;
        tg__node **nodes = tg__arena_alloc(c, (size_t)cap * sizeof *nodes);
        if (!nodes) return c->status;
        if (tp->n) memcpy(nodes, tp->nodes, (size_t)tp->n * sizeof *nodes);
        tp->nodes = nodes;
        tp->cap = cap;
    }
    /* the node, then its input and version arrays, in one allocation */
    size_t k = (size_t)(n_in > 0 ? n_in : 1);
    char *mem = tg__arena_alloc(c, sizeof(tg__node) + k * (sizeof(tg_tensor *) + sizeof(uint64_t)));
    if (!mem) return c->status;
    tg__node *n = (tg__node *)(void *)mem;
    tg_tensor **ins = (tg_tensor **)(void *)(mem + sizeof(tg__node));
    uint64_t *vers = (uint64_t *)(void *)(ins + k);
    for (int i = 0; i < n_in; i++) {
        ins[i] = in[i];
        vers[i] = in[i] ? tg__taped_version(in[i]->st) : 0;
    }
    /* Each field stored once instead of a pass of zeros over the whole node
     * first (this runs for every recorded op). iv is left unset: an op
     * that records integer arguments stores them and n_iv, and its
     * backward reads no further. */
    n->op = op;
    n->n_in = n_in;
    n->seq = tp->n;
    n->owner = c;
    n->in = ins;
    n->in_version = vers;
    n->out = out;
    n->out_version = tg__taped_version(out->st);
    n->bumps = atomic_load_explicit(&tg__taped_bumps, memory_order_relaxed);
    for (int i = 0; i < TG__NODE_SAVED; i++) {
        n->saved[i] = NULL;
        n->saved_version[i] = 0;
    }
    n->saved_own = 0;
    for (int i = 0; i < 4; i++) n->f[i] = 0.0;
    n->n_iv = 0;
    n->custom = NULL;
    n->state = NULL;
    tp->nodes[tp->n++] = n;
    out->node = n;
    out->requires_grad = true;
    *node = n;
    return TG_OK;
}

void tg_set_requires_grad(tg_tensor *t, bool on)
{
    if (!t) return;
    if (t->node) {
        tg__fail(t->ctx, TG_ERR_MISUSE,
                 "tg_set_requires_grad: tensor was produced by op '%s'; only leaves can be "
                 "marked (use tg_detach to make a leaf)", tg_op_name(t->node->op));
        return;
    }
    if (on && !tg__is_float(t->dtype)) {
        tg__fail(t->ctx, TG_ERR_DTYPE,
                 "tg_set_requires_grad: dtype %s cannot require grad (floating only)",
                 tg_dtype_name(t->dtype));
        return;
    }
    t->requires_grad = on;
}

bool tg_requires_grad(const tg_tensor *t) { return t && t->requires_grad; }
bool tg_is_leaf(const tg_tensor *t) { return t && !t->node; }
tg_tensor *tg_grad(const tg_tensor *t) { return t ? t->grad : NULL; }

void tg_zero_grad(tg_tensor *t)
{
    if (!t || !t->grad) return;
    memset(t->grad->st->data, 0, t->grad->st->nbytes);
    tg__bump_version(t->grad->st);
}

bool tg_set_anomaly(tg_ctx *c, bool on)
{
    if (!c) return false;
    bool prev = c->anomaly;
    c->anomaly = on;
    return prev;
}

bool tg_anomaly_enabled(const tg_ctx *c) { return c && c->anomaly; }

tg_op tg_tensor_op(const tg_tensor *t) { return t && t->node ? t->node->op : TG_OP_NONE; }

tg_tensor *tg_detach(tg_ctx *c, tg_tensor *x)
{
    if (!tg__ok(c)) return NULL;
    if (!x) {
        tg__fail(c, TG_ERR_INVALID, "tg_detach: input is NULL");
        return NULL;
    }
    return tg__view(c, x, x->ndim, x->shape, x->stride, x->offset);
}
