/*
 * tape.h - the tape node and the call every op makes to record itself.
 * Sits below the ops; the backward driver (backward.c) sits above them.
 * Library-internal.
 */
#ifndef TG_TAPE_H
#define TG_TAPE_H

#include "../tensor/tensor_impl.h"
#include "tapegrad/ops.h"

#define TG__NODE_SAVED 2 /* extra tensors an op may save for backward */

typedef struct tg__node {
    tg_op op;
    int n_in;
    int64_t seq;          /* index on the owner's tape */
    tg_ctx *owner;        /* whose tape */
    tg_tensor **in;       /* n_in inputs, in the owner's arena; an absent
                             optional input (TG_OPF_OPTIONAL) is NULL */
    uint64_t *in_version; /* each input's storage version when recorded */
    tg_tensor *out;
    uint64_t out_version;
    tg_tensor *saved[TG__NODE_SAVED]; /* op-specific, set with tg__save */
    uint64_t saved_version[TG__NODE_SAVED];
    uint64_t bumps;       /* tg__taped_bumps when it was recorded */
    unsigned saved_own;   /* bit i: saved[i] is the node's own (tg__save_own) */
    double f[4];          /* scalar arguments (exponent, eps, momentum, ...) */
    int64_t iv[2 * TG_MAX_DIMS]; /* integer arguments (axes, perm, stride, ...) */
    int n_iv;
    const void *custom;   /* the user's op definition of a TG_OP_CUSTOM node */
    void *state;          /* the user's state of a TG_OP_CUSTOM node */
} tg__node;

/* Saves t (may be NULL) in slot i of n for backward, with its version, so
 * that backward can refuse to read it after an in-place change. */
static inline void tg__save(tg__node *n, int i, tg_tensor *t)
{
    n->saved[i] = t;
    n->saved_version[i] = t ? tg__taped_version(t->st) : 0;
}

/* tg__save for a tensor the op made for this node alone, which nothing
 * else reads: a releasing walk gives its memory back after the node's
 * backward (as it does an activation's after its last reader), and the
 * backward may overwrite it then (tg__saved_dies). */
static inline void tg__save_own(tg__node *n, int i, tg_tensor *t)
{
    tg__save(n, i, t);
    if (t) n->saved_own |= 1u << i;
}

/* True inside a backward when the walk gives t, a tensor the running node
 * saved with tg__save_own, back right after this node: the node's backward
 * may then use its memory as scratch. */
static inline bool tg__saved_dies(const tg_ctx *c, const tg_tensor *t)
{
    const tg__storage *st = t->st;
    return c->releasing && st->cand && st->uses == 1 && !st->released && !st->refs;
}

/* True when an op on c with these inputs must be recorded: grad mode on
 * and some non-NULL input requires grad. */
static inline bool tg__wants_grad(const tg_ctx *c, int n_in, tg_tensor *const *in)
{
    if (!c->grad_enabled) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

/* tg__record's work when there may be something to do (tape.c). */
tg_status tg__record_node(tg_ctx *c, tg_op op, tg_tensor *out, int n_in, tg_tensor *const *in,
                          tg__node **node);

/*
 * Records op (out = op(in...)) on c's tape when tg__wants_grad(): marks out
 * as requiring grad, links out->node, and returns TG_OK with *node set so
 * the op can store its arguments. When nothing needs recording *node is
 * NULL. TG_ERR_NOMEM (recorded on c) when the arena is exhausted; in
 * anomaly mode TG_ERR_NUMERIC when out holds a NaN or infinity. Counts the
 * op when profiling (profile.c). Inline so
 * that the ops a backward runs with grad mode off pay one test.
 */
/* Profiling (profile.c): charge the time and bytes since the last mark to
 * op's forward (not inside a backward) or backward, or to the commit. */
void tg__profile_forward(tg_ctx *c, tg_op op);
void tg__profile_backward(tg_ctx *c, tg_op op);
void tg__profile_commit(tg_ctx *c);

static inline tg_status tg__record(tg_ctx *c, tg_op op, tg_tensor *out, int n_in,
                                   tg_tensor *const *in, tg__node **node)
{
    if (!c->anomaly && !c->profile && !tg__wants_grad(c, n_in, in)) {
        *node = NULL;
        return TG_OK;
    }
    return tg__record_node(c, op, out, n_in, in, node);
}

/* Gives t's memory back at once (as tg_recompute_later does) when it is an
 * op's output on its context's tape, owns its memory, is not retained, and
 * no recorded backward reads it; otherwise does nothing. Never records an
 * error. For layers that pass an intermediate on and know nothing else
 * can reach it (Sequential). True when it gave t back. */
bool tg__give_back_unread(tg_tensor *t);

/* The op's name, or a custom op's own name (custom.c). */
const char *tg__node_name(const tg__node *n);

/* True when t was produced by a node on c's current tape. */
static inline bool tg__on_tape(const tg_ctx *c, const tg_tensor *t)
{
    const tg__node *n = t->node;
    return n && n->owner == c && n->seq < c->tape.n && c->tape.nodes[n->seq] == n;
}

#endif /* TG_TAPE_H */
