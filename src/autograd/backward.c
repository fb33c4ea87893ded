/*
 * backward.c - the backward driver: tg_backward, tg_backward_with_grad and
 * tg_grad_of.
 *
 * The tape is in topological order by construction, so one reverse walk
 * over it visits every node after all of its consumers: a node's gradient
 * is complete when the walk reaches it. Gradients of tensors that are not
 * on this tape (leaves, tensors of other contexts) collect in a small
 * open-addressing table in the arena; leaf .grad buffers are only written
 * once the whole walk has succeeded. Broadcast gradients are summed back to
 * their input's shape here, once, for every op.
 */
#include "../ops/ops_impl.h"
#include "../optim/optim_impl.h"

#include <stdatomic.h>
#include <string.h>

typedef struct {
    tg_tensor *t;
    tg_tensor *g;
    tg__defer *pend; /* a deferred first contribution (then g is NULL) */
    tg_tensor *keep; /* the gradient pend reads, held until pend runs */
    int target;      /* index in tg_grad_of's inputs, or -1 */
    bool own;        /* g is the walk's own buffer (see accumulate) */
} slot;

typedef struct {
    tg_ctx *c;
    const char *fn;
    int64_t nt;      /* nodes on the tape when the walk started */
    tg_tensor **gr;  /* gradient of each node's output */
    bool *gr_own;    /* gr[i] is the walk's own buffer */
    slot *tab;       /* off-tape tensors; grows to stay at most half full */
    uint64_t mask;
    uint64_t used;   /* slots taken */
    bool recycle;    /* this walk recycles gradient memory (see hold) */
    bool release;    /* ...and releases activations (see release_setup) */
    bool pended;     /* the running node left a job for the commit */
    int n_reads;     /* the data its jobs read (a, b; see job_reads) */
    const void *reads[8];
    tg_optim *opt;   /* tg_backward_step's optimizer, or NULL */
    struct tg__free_block *spare; /* c's free blocks when its nodes were done */
    const tg_tensor *spare_out;   /* the running node's output, when spare */
} walk;

static slot *probe(slot *tab, uint64_t mask, const tg_tensor *t)
{
    uint64_t h = ((uint64_t)(uintptr_t)t >> 4) * 0x9E3779B97F4A7C15ull;
    for (uint64_t i = h >> 20;; i++) {
        slot *s = &tab[i & mask];
        if (s->t == t || !s->t) return s;
    }
}

/* t's slot, made (empty, no target) on first use; NULL with TG_ERR_NOMEM
 * on c when the table must grow and cannot. A slot pointer is valid until
 * the next lookup. */
static slot *lookup(walk *w, tg_tensor *t)
{
    slot *s = probe(w->tab, w->mask, t);
    if (s->t) return s;
    if (2 * (w->used + 1) > w->mask + 1) {
        uint64_t cap = 2 * (w->mask + 1);
        slot *tab = tg__arena_calloc(w->c, (size_t)cap, sizeof *tab);
        if (!tab) return NULL;
        for (uint64_t i = 0; i <= w->mask; i++)
            if (w->tab[i].t) *probe(tab, cap - 1, w->tab[i].t) = w->tab[i];
        w->tab = tab;
        w->mask = cap - 1;
        s = probe(tab, w->mask, t);
    }
    s->t = t;
    s->target = -1;
    w->used++;
    return s;
}

/* ---- releasing activations (tg_backward_release) ------------------------
 * A candidate is the storage an op on the walk's tape made for its output
 * (not shared with an input: views and in-place ops make none), or for a
 * tensor it saved as its own (tg__save_own), of at least tg__release_min
 * bytes, not retained and not an output the walk starts from. st->uses
 * counts the nodes whose backward reads it (tg__ops_reads, saved tensors)
 * and that have not run yet; at zero its data block joins the free list. A
 * node that left a job for the commit keeps what it reads, since the job
 * reads it then. */

/* Set once any storage was given back in this process (by a releasing
 * walk or tg_recompute_later): from then on every walk checks what each
 * node reads before running it, since a tensor of one context may be read
 * by another's tape. */
static atomic_bool gave_back;

/* Calls f on every tensor n's backward reads; the first for which f says
 * true, or NULL. */
static const tg_tensor *each_read(void *w, const tg__node *n,
                                  bool (*f)(void *, const tg_tensor *))
{
    uint32_t r = tg__ops_reads[n->op];
    if (!r) r = ~0u; /* no entry: everything (inputs past 29 too) */
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j] && (r == ~0u || (j < 30 && (r & TG__IN(j)))) && f(w, n->in[j]))
            return n->in[j];
    if ((r & TG__OUT) && f(w, n->out)) return n->out;
    for (int k = 0; k < TG__NODE_SAVED; k++)
        if (n->saved[k] && f(w, n->saved[k])) return n->saved[k];
    return NULL;
}

/* A node that reads a storage tg_recompute_later gave back also reads, when
 * it recomputes it, what its forward reads: the inputs of st->remake
 * (given back ones in turn), which count as read by that node too. */
static bool count_use(void *w, const tg_tensor *t)
{
    tg__storage *st = t->st;
    if (st->cand) st->uses++;
    for (int j = 0; st->remake && j < st->remake->n_in; j++)
        if (st->remake->in[j]) count_use(w, st->remake->in[j]);
    return false;
}

static void release(walk *w, tg__storage *st)
{
    if (st->refs) { /* also a gradient (never seen): kept */
        st->cand = false;
        return;
    }
    tg__recycle_release(w->c, st);
    atomic_store_explicit(&gave_back, true, memory_order_relaxed);
}

/* Whether p points into st's data block. */
static bool in_block(const tg__storage *st, const void *p)
{
    const char *lo = st->data, *q = p;
    return q && q >= lo && q < lo + st->cap;
}

/* Whether job d reads st's data (a job reads only through its a and b;
 * see tg__defer). */
static bool reads_block(const tg__defer *d, const tg__storage *st)
{
    return in_block(st, d->a) || in_block(st, d->b);
}

/* Whether a job the running node left for the commit reads st's data.
 * More jobs than w->reads holds: every storage counts as read. */
static bool job_reads(const walk *w, const tg__storage *st)
{
    if (w->n_reads < 0) return true;
    for (int k = 0; k < w->n_reads; k++)
        if (in_block(st, w->reads[k])) return true;
    return false;
}

/* The running node is done reading t: at its last reader, t's storage is
 * released. What a job the node left for the commit reads stays (its uses
 * never reach zero). */
static bool end_use(void *w, const tg_tensor *t)
{
    tg__storage *st = t->st;
    if (((const walk *)w)->pended && job_reads(w, st)) return false;
    /* a given-back storage whose reader never ran stays given back */
    if (st->cand && --st->uses == 0 && !st->released) release(w, st);
    for (int j = 0; st->remake && j < st->remake->n_in; j++)
        if (st->remake->in[j]) end_use(w, st->remake->in[j]);
    return false;
}

/* Whether st's block may be released: large enough to serve a recycled
 * allocation, not retained, and holding data (a storage tg_recompute_later
 * gave back is released again after its recomputed data's last reader). */
static bool releasable(const tg__storage *st)
{
    return st->cap >= tg__release_min && st->cap >= 64 && !st->retained &&
           (!st->released || st->remake);
}

/* Marks the candidates, counts their readers and releases those no node
 * reads; nothing when the tape holds a custom op, whose state may keep any
 * tensor. */
static void release_setup(walk *w, int n_out, tg_tensor *const *outs, tg_tensor *const *douts)
{
    tg_ctx *c = w->c;
    tg__node *const *nodes = c->tape.nodes;
    for (int64_t i = 0; i < w->nt; i++) {
        if (nodes[i]->op == TG_OP_CUSTOM) {
            w->release = false;
            return;
        }
        nodes[i]->out->st->cand = false; /* an earlier walk's marks */
        for (int k = 0; k < TG__NODE_SAVED; k++)
            if (nodes[i]->saved_own >> k & 1) nodes[i]->saved[k]->st->cand = false;
    }
    for (int64_t i = 0; i < w->nt; i++) {
        const tg__node *n = nodes[i];
        tg__storage *st = n->out->st;
        bool fresh = releasable(st);
        for (int j = 0; j < n->n_in && fresh; j++) fresh = !n->in[j] || n->in[j]->st != st;
        if (fresh) {
            st->cand = true;
            st->uses = 0;
        }
        for (int k = 0; k < TG__NODE_SAVED; k++) {
            tg__storage *sv = n->saved_own >> k & 1 ? n->saved[k]->st : NULL;
            if (sv && releasable(sv)) { /* never remade: releasable iff not released */
                sv->cand = true;
                sv->uses = 0;
            }
        }
    }
    for (int k = 0; k < n_out; k++) {
        outs[k]->st->cand = false;
        if (douts && douts[k]) douts[k]->st->cand = false;
    }
    for (int64_t i = 0; i < w->nt; i++) each_read(w, nodes[i], count_use);
    for (int64_t i = 0; i < w->nt; i++) {
        tg__storage *st = nodes[i]->out->st;
        if (st->cand && !st->uses && !st->released) release(w, st);
    }
    tg__recycle_settle(c);
    c->releasing = w->release;
}

/* Whether x is a contiguous activation only the running node reads, that
 * the walk would release right after the node and that no slot holds. */
static bool spare(const tg_tensor *x)
{
    const tg__storage *st = x->st;
    return st->cand && st->uses == 1 && !st->released && !st->remake && !st->counted &&
           !st->refs && releasable(st) && tg__contig(x);
}

/* An input of n whose memory n's backward may take for its gradient
 * (tg__ops_overwrites), as spare says. */
static const tg_tensor *spare_input(const tg__node *n)
{
    const uint32_t m = tg__ops_overwrites[n->op];
    for (int j = 0; m && j < n->n_in && j < 30; j++) {
        const tg_tensor *x = n->in[j];
        if ((m & TG__IN(j)) && x && x->requires_grad && spare(x)) return x;
    }
    return NULL;
}

/* Marks x, whose data a gradient of the walk took over, released (as the
 * walk would have done after the node). */
static void taken(tg__storage *st)
{
    st->cand = false;
    st->released = true;
    atomic_store_explicit(&gave_back, true, memory_order_relaxed);
}

tg_tensor *tg__take_input(tg_ctx *c, const tg_tensor *x)
{
    if (!x || x != c->spare_in) return NULL;
    c->spare_in = NULL;
    tg_tensor *t = tg__adopt(c, x, x->dtype, x->ndim, x->shape);
    if (t) taken(x->st);
    return t;
}

/* ---- recycling gradient memory -----------------------------------------
 * With recycling on (tg_backward without a graph), the walk counts its
 * references to the storage it makes (st->counted; see tg__recycle_give):
 * each gradient slot and each pending job holds one. A node's gradient slot
 * is emptied once its backward has run, so a gradient's memory is reused as
 * soon as the last node that reads it is done, and the walk's peak is the
 * largest set of gradients alive at once instead of all of them. Storage
 * too small to be given back is counted as well: a node whose dout only its
 * own slot holds may write its result over it (c->spare_dout), at any size. */
static inline void hold(const tg_tensor *t)
{
    if (t && t->st->counted) t->st->refs++;
}

static inline void drop(walk *w, const tg_tensor *t)
{
    if (!t || !t->st->counted) return;
    TG_ASSERT(t->st->refs > 0);
    if (--t->st->refs == 0) tg__recycle_give(w->c, t->st);
}

/* *s = g, holding g and dropping what *s held (in that order: g may share
 * its storage). */
static void set_grad(walk *w, tg_tensor **s, tg_tensor *g)
{
    tg_tensor *old = *s;
    hold(g);
    *s = g;
    drop(w, old);
}

/* t, a gradient a backward returned (or its sum to the input's shape),
 * after it was accumulated: when no slot or job holds its recyclable
 * storage it was added into a buffer and is dead. */
static inline void unheld(walk *w, tg_tensor *t)
{
    if (w->recycle && t && t->st->block && !t->st->refs) tg__recycle_give(w->c, t->st);
}

/* Node i's backward has run and its results are accumulated: its output's
 * gradient is no longer needed (tg_grad_of may still need it for an input
 * on the tape), nor is anything the node made that no slot holds, unless a
 * job the node left for the commit may read it. What was given back can be
 * taken from the next node on. */
static inline void done_with(walk *w, int64_t i)
{
    tg_ctx *c = w->c;
    if (!w->recycle) return;
    drop(w, w->gr[i]);
    w->gr[i] = NULL;
    if (w->release) each_read(w, c->tape.nodes[i], end_use);
    if (c->young) {
        if (w->pended) c->young = NULL;
        else tg__recycle_young(c);
    }
    if (c->given) tg__recycle_settle(c); /* small tensors give nothing */
}

/* Recycling off and its lists dropped: at the end of the walk's nodes
 * (leaf gradients escape from there on) and when run returns. */
static void recycle_off(tg_ctx *c)
{
    c->recycling = false;
    c->spare_dout = NULL;
    c->spare_in = NULL;
    c->free_blocks = c->given = NULL;
    c->young = NULL;
}

static bool on_walk_tape(const walk *w, const tg_tensor *t)
{
    return tg__on_tape(w->c, t) && t->node->seq < w->nt;
}

/* Runs s's deferred contribution into a new buffer of the walk, which
 * becomes s's gradient (an own one); false (error on c) without memory. */
static bool materialize(walk *w, slot *s)
{
    tg_tensor *t = s->t;
    tg_tensor *buf = tg__empty_valid(w->c, t->dtype, t->ndim, t->shape);
    if (!buf) return false;
    s->pend->run(w->c, s->pend, buf, false);
    set_grad(w, &s->g, buf);
    s->own = true;
    s->pend = NULL;
    drop(w, s->keep);
    s->keep = NULL;
    return true;
}

/* Where t's gradient accumulates, and (own) whether it is the walk's own
 * buffer; NULL (error on c) when the table cannot grow. */
static tg_tensor **grad_slot2(walk *w, tg_tensor *t, bool **own)
{
    if (on_walk_tape(w, t)) {
        *own = &w->gr_own[t->node->seq];
        return &w->gr[t->node->seq];
    }
    slot *s = lookup(w, t);
    if (!s || (s->pend && !materialize(w, s))) return NULL;
    *own = &s->own;
    return &s->g;
}

static tg_tensor **grad_slot(walk *w, tg_tensor *t)
{
    bool *own;
    return grad_slot2(w, t, &own);
}

static bool same_shape(const tg_tensor *a, const tg_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* g summed (or broadcast) to t's shape. */
static tg_tensor *reduce_to(walk *w, tg_tensor *g, const tg_tensor *t, const tg__node *n)
{
    tg_ctx *c = w->c;
    if (same_shape(g, t)) return g;
    int nd;
    int64_t bs[TG_MAX_DIMS];
    if (g->dtype != t->dtype ||
        !tg__broadcast_shape(g->ndim, g->shape, t->ndim, t->shape, &nd, bs)) {
        char a[128], b[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: %s gave a %s gradient of shape %s for an input %s %s",
                 w->fn, tg__node_name(n), tg_dtype_name(g->dtype), tg__fmt_shape(a, sizeof a, g->ndim, g->shape),
                 tg_dtype_name(t->dtype), tg__fmt_shape(b, sizeof b, t->ndim, t->shape));
        return NULL;
    }
    bool expand = nd != g->ndim;
    for (int i = 0; i < nd && !expand; i++) expand = bs[i] != g->shape[i];
    if (expand) g = tg_expand(c, g, nd, bs);
    int axes[TG_MAX_DIMS], na = 0, lead = nd - t->ndim;
    for (int i = 0; i < nd; i++)
        if (i < lead || (t->shape[i - lead] == 1 && bs[i] != 1)) axes[na++] = i;
    if (na) g = tg_sum_axes(c, g, na, axes, true);
    return tg_reshape(c, g, t->ndim, t->shape);
}

/*
 * Adds g (already in x's shape) to x's gradient. With no graph recorded,
 * the sum of two gradients is a fresh tensor only this walk references (an
 * "own" buffer), so later contributions are added into it in place instead
 * of allocating a new sum each time. A first contribution is stored as is
 * and never written: it may be a caller's tensor or a view of another
 * gradient. An own buffer is written only until its node's backward runs
 * (the tape is topological), so no view of it ever sees a change.
 */
static void accumulate(walk *w, tg_tensor *x, tg_tensor *g)
{
    bool *own;
    tg_tensor **s = grad_slot2(w, x, &own);
    if (!s) return;
    if (!*s) {
        set_grad(w, s, g);
        *own = false;
    } else if (*own && !w->c->grad_enabled) {
        tg__acc_into(w->c, *s, g);
    } else {
        set_grad(w, s, tg_add(w->c, *s, g));
        *own = !w->c->grad_enabled;
    }
}

/* x's gradient as an own buffer, for an accumulating backward: zeros when
 * there is none yet, a copy when the current one is not the walk's. */
static tg_tensor *own_grad(walk *w, tg_tensor *x)
{
    bool *own;
    tg_tensor **s = grad_slot2(w, x, &own);
    if (!s) return NULL;
    if (*s && *own) return *s;
    tg_tensor *buf = *s ? tg__empty(w->c, w->fn, x->dtype, x->ndim, x->shape)
                        : tg_tensor_new(w->c, x->dtype, x->ndim, x->shape);
    if (!buf) return NULL;
    if (*s) tg__copy_strided(w->c, buf, *s);
    set_grad(w, s, buf);
    *own = true;
    return buf;
}

/* ---- checks before and after each node ---------------------------------- */

/* Refuses to run a node's backward when a tensor it used (an input, its
 * output or a saved tensor) was changed in place after it was recorded. */
static tg_status check_versions(walk *w, const tg__node *n)
{
    const tg_tensor *bad = NULL;
    const char *role = "";
    int idx = 0;
    uint64_t then = 0;
    if (n->bumps == atomic_load_explicit(&tg__taped_bumps, memory_order_relaxed)) return TG_OK;
    for (int j = 0; j < n->n_in && !bad; j++)
        if (n->in[j] && n->in[j]->st->version != n->in_version[j])
            bad = n->in[j], role = "input", idx = j, then = n->in_version[j];
    if (!bad && n->out->st->version != n->out_version)
        bad = n->out, role = "output", then = n->out_version;
    for (int j = 0; j < TG__NODE_SAVED && !bad; j++)
        if (n->saved[j] && n->saved[j]->st->version != n->saved_version[j])
            bad = n->saved[j], role = "saved tensor", idx = j, then = n->saved_version[j];
    if (!bad) return TG_OK;
    char d[200], num[24] = "";
    if (strcmp(role, "output") != 0) snprintf(num, sizeof num, " %d", idx);
    return tg__fail(w->c, TG_ERR_MISUSE,
                    "%s: %s%s of op '%s' (node %lld), %s, was modified in place after the op "
                    "recorded it (version %llu, now %llu); its gradient would be wrong",
                    w->fn, role, num, tg__node_name(n), (long long)n->seq,
                    tg__describe(bad, d, sizeof d), (unsigned long long)then,
                    (unsigned long long)bad->st->version);
}

/* Anomaly mode: a gradient must be finite. */
static void check_grad(walk *w, const tg__node *n, int j, const tg_tensor *d)
{
    int64_t at;
    double v;
    if (!tg__find_nonfinite(d, &at, &v)) return;
    char in[200];
    tg__fail(w->c, TG_ERR_NUMERIC,
             "anomaly: %s: the backward of '%s' (node %lld) produced %g at element %lld of the "
             "gradient of input %d (%s)",
             w->fn, tg__node_name(n), (long long)n->seq, v, (long long)at, j,
             tg__describe(n->in[j], in, sizeof in));
}

/* ---- in-place accumulation into leaf .grad ----------------------------- */

#define ACC_KERNEL(NAME, T)                                                        \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)             \
    {                                                                              \
        (void)aux;                                                                 \
        T *o = (T *)p[0];                                                          \
        for (int64_t i = 0; i < n; i++) o[i] += *(const T *)(p[1] + i * s[1]);     \
    }
ACC_KERNEL(acc_f32, float)
ACC_KERNEL(acc_f64, double)

/* Whether s holds a gradient to commit into its leaf's .grad. */
static bool commits(const slot *s)
{
    return s->t && (s->g || s->pend) && s->t->requires_grad;
}

/* Whether g, an own buffer of x's gradient, can take a contribution in
 * place: contiguous, of x's shape and dtype (own buffers are made so). */
static bool fits(const tg_tensor *g, const tg_tensor *x)
{
    return g->dtype == x->dtype && tg__contig(g) && same_shape(g, x);
}

/* A deferred contribution can run straight into an existing .grad only
 * when that is a contiguous tensor of the leaf's shape and dtype. */
static bool grad_fits(const tg_tensor *t) { return fits(t->grad, t); }

/* Elements of a weight gradient that tg_backward_step makes at once (whole
 * rows, at least one): 256 KB of f32. Smaller blocks repack the product's
 * other operand more often (the MLP's [512, 784] weight: 7 products of 80
 * rows, about 0.1 ms more per 4.6 ms step than one); larger ones keep more
 * scratch at the peak. */
#define STEP_BLOCK 65536

/* The rows of job d's product that tg_backward_step makes at once: as many
 * as STEP_BLOCK holds, a multiple of 16 from 16 on (BLAS's kernels take
 * rows in groups: 80 rows of 784 run at 100 GFLOP/s, 83 at 96, here). */
static int64_t block_rows(const tg__defer *d)
{
    int64_t r = d->n > 0 && STEP_BLOCK / d->n > 0 ? STEP_BLOCK / d->n : 1;
    if (r >= 16) r &= ~(int64_t)15;
    return r < d->m ? r : d->m;
}

/* tg_backward_step's part of the commit: the optimizer's parameters that
 * hold no .grad take their step from their gradient instead, a deferred
 * product by blocks of rows (tg__defer_rows) into one scratch block, a
 * walk buffer as it is; nothing is written to .grad. Then the parameters
 * that do hold a .grad step from it, as tg_optim_step would. prep: what
 * the first pass set up (everything that can fail is allocated there). */
typedef struct {
    slot **s;        /* the slots that step, with their parameter's index */
    int *pi;
    tg_tensor **tmp; /* per stepping slot: a whole dense gradient, or NULL */
    uint64_t n;
    char *block;     /* block_bytes of scratch (the largest block), or NULL */
    size_t block_bytes;
    bool *stepped;   /* per parameter of the optimizer */
} step_prep;

static void step_params(walk *w, const step_prep *sp)
{
    tg_ctx *c = w->c;
    tg_optim *o = w->opt;
    for (uint64_t k = 0; k < sp->n; k++) {
        const slot *s = sp->s[k];
        const tg_tensor *t = s->t;
        const int i = sp->pi[k];
        const int64_t numel = tg__numel(t->ndim, t->shape);
        tg__optim_begin_param(o, i);
        sp->stepped[i] = true;
        if (sp->tmp[k]) { /* a gradient made whole first */
            if (s->pend) s->pend->run(c, s->pend, sp->tmp[k], false);
            else tg__copy_strided(c, sp->tmp[k], s->g);
            tg__optim_update(o, c, i, 0, numel, tg__ptr(sp->tmp[k]));
        } else if (s->g) {
            tg__optim_update(o, c, i, 0, numel, tg__ptr(s->g));
        } else { /* a product, by blocks of its rows */
            const int64_t n = s->pend->n, rows = block_rows(s->pend);
            for (int64_t r0 = 0; r0 < s->pend->m; r0 += rows) {
                const int64_t r1 = r0 + rows < s->pend->m ? r0 + rows : s->pend->m;
                tg__defer_rows(c, s->pend, r0, r1, sp->block);
                tg__optim_update(o, c, i, r0 * n, (r1 - r0) * n, sp->block);
            }
        }
    }
    for (int i = 0; i < tg_optim_nparams(o); i++) {
        const tg_tensor *p = tg_optim_param(o, i);
        if (sp->stepped[i] || !p->grad) continue;
        tg__optim_begin_param(o, i);
        tg__optim_update(o, c, i, 0, tg__numel(p->ndim, p->shape), tg__ptr(p->grad));
    }
    tg__optim_end(o);
}

/* Whether slot s steps its parameter (tg_backward_step) and, if so, sets
 * it up in sp (entry sp->n); false with the error on c when memory runs
 * out. */
static bool step_setup(walk *w, slot *s, step_prep *sp, bool *steps)
{
    *steps = false;
    const int i = w->opt && !s->t->grad ? tg__optim_index(w->opt, s->t) : -1;
    if (i < 0) return true;
    tg_tensor *t = s->t;
    tg_tensor *tmp = NULL;
    const bool dense = s->g && fits(s->g, t);
    const bool rows = s->pend && tg__defer_has_rows(s->pend);
    if (!dense && !rows && !(tmp = tg__empty(w->c, w->fn, t->dtype, t->ndim, t->shape)))
        return false;
    if (rows) { /* step_params' blocks */
        const size_t bytes = (size_t)(block_rows(s->pend) * s->pend->n) * tg__esize(t->dtype);
        if (sp->block_bytes < bytes) sp->block_bytes = bytes;
    }
    sp->s[sp->n] = s;
    sp->pi[sp->n] = i;
    sp->tmp[sp->n++] = tmp;
    *steps = true;
    return true;
}

static tg_status commit_leaf_grads(walk *w)
{
    tg_ctx *c = w->c;
    /* First make every missing buffer, so a failure changes no gradient;
     * the slots that commit are listed on the way (at most used of them),
     * so the second pass does not scan the table again. */
    const size_t nu = w->used ? w->used : 1;
    slot **todo = tg__arena_alloc(c, nu * sizeof *todo);
    tg_tensor **fresh = tg__arena_alloc(c, nu * sizeof *fresh);
    if (!todo || !fresh) return c->status;
    step_prep sp = {0};
    if (w->opt) {
        const int np = tg_optim_nparams(w->opt);
        sp.s = tg__arena_alloc(c, nu * sizeof *sp.s);
        sp.pi = tg__arena_alloc(c, nu * sizeof *sp.pi);
        sp.tmp = tg__arena_alloc(c, nu * sizeof *sp.tmp);
        sp.stepped = tg__arena_calloc(c, (size_t)(np > 0 ? np : 1), sizeof *sp.stepped);
        if (!sp.s || !sp.pi || !sp.tmp || !sp.stepped) return c->status;
    }
    uint64_t n = 0;
    for (uint64_t i = 0; i <= w->mask; i++) {
        slot *s = &w->tab[i];
        if (!commits(s)) continue;
        bool steps;
        if (!step_setup(w, s, &sp, &steps)) return c->status;
        if (steps) continue;
        if (s->pend && s->t->grad && !grad_fits(s->t) && !materialize(w, s)) return c->status;
        tg_tensor *t = s->t, *buf = NULL;
        if (!t->grad) {
            buf = tg__empty(t->ctx, w->fn, t->dtype, t->ndim, t->shape);
            if (!buf) {
                return tg__fail(c, tg_ctx_status(t->ctx) ? tg_ctx_status(t->ctx) : TG_ERR_NOMEM,
                                "%s: cannot allocate a gradient in the leaf's context: %s",
                                w->fn, tg_ctx_errmsg(t->ctx));
            }
        }
        todo[n] = s;
        fresh[n++] = buf;
    }
    /* the scratch on memory the walk gave back, when a block fits */
    if (sp.block_bytes && !(sp.block = tg__free_block_take(&w->spare, sp.block_bytes)) &&
        !(sp.block = tg__arena_alloc(c, sp.block_bytes)))
        return c->status;
    /* Nothing below can fail. */
    for (uint64_t i = 0; i < n; i++) {
        slot *s = todo[i];
        tg_tensor *t = s->t;
        if (s->pend) {
            if (fresh[i]) t->grad = fresh[i];
            s->pend->run(c, s->pend, t->grad, !fresh[i]);
        } else if (fresh[i]) {
            tg__copy_strided(c, fresh[i], s->g);
            t->grad = fresh[i];
        } else {
            tg_tensor *ops[2] = {t->grad, s->g};
            tg__ew_apply(c, 2, ops, t->dtype == TG_F32 ? acc_f32 : acc_f64, NULL);
        }
        tg__bump_version(t->grad->st);
    }
    if (w->opt) step_params(w, &sp);
    return TG_OK;
}

/* ---- the walk ----------------------------------------------------------- */


/* A buffer for x's gradient on the memory of the running node's output,
 * when the walk would release that output right after the node
 * (w->spare_out), job d does not read it and it fits (tg__block_fits, the
 * free list's rule): once a no-graph backward has returned, it reads
 * nothing but through its jobs, so the output is dead (linear_relu's, read
 * for the ReLU mask). NULL otherwise, or when the arena has no room for
 * the header (error on c). */
static tg_tensor *take_output(walk *w, const tg_tensor *x, const tg__defer *d)
{
    const tg_tensor *out = w->spare_out;
    const size_t need = (size_t)tg__numel(x->ndim, x->shape) * tg__esize(x->dtype);
    if (!out || out->offset || !tg__block_fits(out->st->cap, need) || reads_block(d, out->st))
        return NULL;
    tg_tensor *t = tg__adopt(w->c, out, x->dtype, x->ndim, x->shape);
    if (!t) return NULL;
    taken(out->st);
    w->spare_out = NULL;
    return t;
}

/* The activations of n a job d would keep alive until the commit, in
 * bytes: those it reads that a releasing walk could give back. */
typedef struct {
    const tg__defer *d;
    const tg__storage *last;
    size_t bytes;
} pin_count;

static bool pin_one(void *p, const tg_tensor *t)
{
    pin_count *pc = p;
    const tg__storage *st = t->st;
    if (st != pc->last && st->cand && !st->released && reads_block(pc->d, st)) {
        pc->bytes += st->cap;
        pc->last = st; /* an input read twice in a row counts once */
    }
    return false;
}

static size_t pinned(const walk *w, const tg__node *n, const tg__defer *d)
{
    if (!w->release) return 0;
    pin_count pc = {d, NULL, 0};
    each_read(&pc, n, pin_one);
    return pc.bytes;
}

/*
 * Lands d, an op's description of its whole contribution to x's gradient:
 * with defer (tg_backward), a leaf nothing has touched keeps it for the
 * commit, which runs it straight into .grad; an own buffer of the walk
 * takes it in place (a GEMM with beta = 1, so a weight shared by T
 * timesteps costs one buffer, not T products and adds); otherwise it runs
 * into a fresh buffer, which takes the gradient so far (if any) and becomes
 * the walk's own. A deferred job reads g, the node's output gradient, when
 * it runs, so g stays alive until then, as does what it reads of n's
 * (see end_use); while recycling, a job is deferred only when g and the
 * activations it would keep from being released (pinned) are no larger
 * than x's gradient would be. False on error (on c).
 */
static bool land(walk *w, const tg__node *n, tg_tensor *x, const tg__defer *d, tg_tensor *g,
                 bool defer)
{
    tg_ctx *c = w->c;
    if (defer && !on_walk_tape(w, x) &&
        (!c->recycling || (g->st->block ? g->st->nbytes : 0) + pinned(w, n, d) <=
                              (size_t)tg__numel(x->ndim, x->shape) * tg__esize(x->dtype))) {
        slot *s = lookup(w, x);
        if (!s) return false;
        if (!s->g && !s->pend) {
            if (!(s->pend = tg__arena_alloc(c, sizeof *s->pend))) return false;
            *s->pend = *d;
            s->keep = g;
            hold(g);
            w->pended = true;
            for (int k = 0; k < 2 && w->n_reads >= 0; k++) {
                const void *p = k ? d->b : d->a;
                if (!p) continue;
                if (w->n_reads == (int)(sizeof w->reads / sizeof w->reads[0])) w->n_reads = -1;
                else w->reads[w->n_reads++] = p;
            }
            return true;
        }
    }
    bool *own;
    tg_tensor **s = grad_slot2(w, x, &own); /* a deferred one is materialised */
    if (!s) return false;
    if (*s && *own && fits(*s, x)) {
        d->run(c, d, *s, true);
        return true;
    }
    tg_tensor *buf = take_output(w, x, d);
    if (!buf && !(buf = tg__empty_valid(c, x->dtype, x->ndim, x->shape))) return false;
    d->run(c, d, buf, false);
    if (*s) tg__acc_into(c, buf, *s); /* the same bits as *s + buf */
    set_grad(w, s, buf);
    *own = true;
    return true;
}

/* Runs n's no-graph backward, offering every input that requires grad to
 * describe its contribution instead of returning it (see land). False on
 * error (on c). */
static bool nograph_backward(walk *w, const tg__node *n, tg_tensor *g, tg_tensor **dx, bool defer)
{
    tg_ctx *c = w->c;
    tg__defer jobs_local[4], *jobs = jobs_local;
    tg__defer *d_local[4] = {NULL}, **d = d_local;
    if (n->n_in > 4 && (!(jobs = tg__arena_calloc(c, (size_t)n->n_in, sizeof *jobs)) ||
                        !(d = tg__arena_calloc(c, (size_t)n->n_in, sizeof *d))))
        return false;
    for (int j = 0; j < n->n_in; j++) {
        bool need = n->in[j] && n->in[j]->requires_grad;
        jobs[j].run = NULL;
        d[j] = need ? &jobs[j] : NULL;
    }
    tg__ops_nograph[n->op](c, n, g, dx, d);
    if (c->status != TG_OK) return false;
    /* in input order; an input used twice lands twice */
    for (int j = 0; j < n->n_in; j++)
        if (d[j] && d[j]->run && !land(w, n, n->in[j], d[j], g, defer)) return false;
    return true;
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* ---- recomputing what tg_recompute_later gave back ----------------------- */

static bool same_layout(const tg_tensor *a, const tg_tensor *b)
{
    if (a->dtype != b->dtype || a->offset != b->offset || !same_shape(a, b)) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] > 1 && a->stride[i] != b->stride[i]) return false;
    return true;
}

/* Refills st, which tg_recompute_later gave back, by running its node's
 * forward again (after refilling given-back inputs), with grad mode off,
 * and moving the new data under st; false with the error on the walk's
 * context. The new block stays out of the walk's recycling: st owns it now
 * (a releasing walk gives it back after its last reader). */
static bool refill(walk *w, tg__storage *st)
{
    tg_ctx *c = w->c;
    const tg__node *p = st->remake;
    char d[200], e[200];
    const char *why = NULL;
    int j = 0;
    if (!tg__on_tape(c, p->out)) {
        tg__fail(c, TG_ERR_MISUSE,
                 "%s: %s was given back by tg_recompute_later in another context; only a "
                 "backward on that context's tape can recompute it",
                 w->fn, tg__describe(p->out, d, sizeof d));
        return false;
    }
    for (; j < p->n_in && !why; j++) {
        tg_tensor *x = p->in[j];
        if (!x) continue;
        if (x->st->released && (!x->st->remake || !refill(w, x->st)))
            why = "whose memory an earlier tg_backward_release gave back";
        else if (x->st->version != p->in_version[j])
            why = "which was modified in place after the op recorded it";
    }
    if (why) {
        if (c->status == TG_OK)
            tg__fail(c, TG_ERR_MISUSE,
                     "%s: recomputing %s (given back by tg_recompute_later) needs input %d of "
                     "'%s', %s, %s",
                     w->fn, tg__describe(p->out, d, sizeof d), j - 1, tg__node_name(p),
                     tg__describe(p->in[j - 1], e, sizeof e), why);
        return false;
    }
    bool grad = c->grad_enabled;
    const void *spare = c->spare_dout, *spare_in = c->spare_in;
    c->grad_enabled = false;
    c->spare_dout = c->spare_in = NULL;
    tg_tensor *r = tg__ops_remake[p->op](c, p);
    c->grad_enabled = grad;
    c->spare_dout = spare;
    c->spare_in = spare_in;
    c->api = w->fn;
    if (!r) return false;
    if (!same_layout(r, p->out)) {
        tg__fail(c, TG_ERR_SHAPE, "%s: recomputing '%s' gave %s, not the layout of %s", w->fn,
                 tg__node_name(p), tg__describe(r, d, sizeof d), tg__describe(p->out, e, sizeof e));
        return false;
    }
    st->data = r->st->data;
    st->cap = r->st->cap;
    r->st->block = 0; /* not a temporary of the running node */
    st->released = false;
    return true;
}

/* each_read's test before a node runs: true when t cannot be read, after
 * refilling it if tg_recompute_later gave it back */
static bool unreadable(void *w, const tg_tensor *t)
{
    tg__storage *st = t->st;
    return st->released && (!st->remake || !refill(w, st));
}

/* Refills what n's backward reads that tg_recompute_later gave back, and
 * refuses a node whose backward would read what an earlier
 * tg_backward_release released. */
static tg_status check_released(walk *w, const tg__node *n)
{
    const tg_tensor *t = each_read(w, n, unreadable);
    if (!t || w->c->status != TG_OK) return w->c->status;
    char d[200];
    return tg__fail(w->c, TG_ERR_MISUSE,
                    "%s: the backward of '%s' (node %lld) reads %s, whose memory an earlier "
                    "tg_backward_release gave back; record the graph again (after "
                    "tg_ctx_reset) to run another backward through it",
                    w->fn, tg__node_name(n), (long long)n->seq, tg__describe(t, d, sizeof d));
}

static tg_status run(tg_ctx *c, const char *fn, int n_out, tg_tensor *const *outs,
                     tg_tensor *const *douts, int n_in, tg_tensor *const *ins, bool create_graph,
                     bool release, tg_tensor **grads, tg_optim *opt)
{
    if (grads)
        for (int i = 0; i < n_in; i++) grads[i] = NULL;
    if (!c) return TG_ERR_INVALID;
    if (c->status != TG_OK) return c->status;
    if (n_out < 1 || !outs || (grads && (n_in < 1 || !ins)))
        return tg__fail(c, TG_ERR_INVALID, "%s: need at least one output%s", fn,
                        grads ? " and one input" : "");
    bool any_grad = false;
    for (int k = 0; k < n_out; k++) {
        tg_tensor *o = outs[k], *d = douts ? douts[k] : NULL;
        char a[128], b[128];
        if (!o) return tg__fail(c, TG_ERR_INVALID, "%s: output %d is NULL", fn, k);
        if (!tg__is_float(o->dtype))
            return tg__fail(c, TG_ERR_DTYPE, "%s: output %d has dtype %s", fn, k,
                            tg_dtype_name(o->dtype));
        if (!d && tg__numel(o->ndim, o->shape) != 1)
            return tg__fail(c, TG_ERR_SHAPE,
                            "%s: output %d has shape %s; an implicit gradient needs one element "
                            "(pass an output gradient)", fn, k,
                            tg__fmt_shape(a, sizeof a, o->ndim, o->shape));
        if (d && (!same_shape(d, o) || d->dtype != o->dtype))
            return tg__fail(c, same_shape(d, o) ? TG_ERR_DTYPE : TG_ERR_SHAPE, "%s: output %d is %s %s but its gradient is %s %s",
                            fn, k, tg_dtype_name(o->dtype),
                            tg__fmt_shape(a, sizeof a, o->ndim, o->shape),
                            tg_dtype_name(d->dtype), tg__fmt_shape(b, sizeof b, d->ndim, d->shape));
        any_grad = any_grad || o->requires_grad;
    }
    for (int i = 0; grads && i < n_in; i++)
        if (!ins[i]) return tg__fail(c, TG_ERR_INVALID, "%s: input %d is NULL", fn, i);
    if (!any_grad && !grads)
        return tg__fail(c, TG_ERR_MISUSE,
                        "%s: the loss does not require grad (no input requires grad, or grad "
                        "mode was off when it was computed)", fn);
    if (opt) { /* its checks and state first: nothing may fail after the walk */
        tg_status s = tg__optim_prepare(opt, fn);
        if (s != TG_OK) {
            tg_ctx *oc = tg__optim_ctx(opt);
            if (oc == c) return s;
            return tg__fail(c, s, "%s: the optimizer's context: %s", fn,
                            oc ? tg_ctx_errmsg(oc) : "invalid optimizer");
        }
    }

    bool prev_mode = c->grad_enabled;
    c->grad_enabled = create_graph;
    c->api = fn;
    /* tg_grad_of hands gradients back and a graph keeps them: recycle only
     * in a plain tg_backward */
    c->recycling = !grads && !create_graph;
    /* c->free_blocks: what tg_recompute_later gave back in the forward */

    walk w = {.c = c, .fn = fn, .nt = c->tape.n, .recycle = c->recycling,
              .release = release && c->recycling, .opt = opt};
    uint64_t cap = pow2_at_least(4 * ((uint64_t)n_out + (uint64_t)(grads ? n_in : 0)));
    w.mask = cap - 1;
    w.tab = tg__arena_calloc(c, (size_t)cap, sizeof *w.tab);
    w.gr = tg__arena_calloc(c, (size_t)(w.nt ? w.nt : 1), sizeof *w.gr);
    w.gr_own = tg__arena_calloc(c, (size_t)(w.nt ? w.nt : 1), sizeof *w.gr_own);
    bool *reach = NULL;
    if (!w.tab || !w.gr || !w.gr_own) goto done;

    if (grads) {
        /* A node runs only when some input leads to a requested input. */
        for (int i = 0; i < n_in; i++) {
            if (on_walk_tape(&w, ins[i])) continue;
            slot *sl = lookup(&w, ins[i]);
            if (!sl) goto done;
            sl->target = i;
        }
        reach = tg__arena_calloc(c, (size_t)(w.nt ? w.nt : 1), sizeof *reach);
        if (!reach) goto done;
        for (int i = 0; i < n_in; i++)
            if (on_walk_tape(&w, ins[i])) reach[ins[i]->node->seq] = true; /* mark targets */
        bool *is_target = reach; /* reuse: target nodes marked; now propagate */
        bool *run_node = tg__arena_calloc(c, (size_t)(w.nt ? w.nt : 1), sizeof *run_node);
        if (!run_node) goto done;
        for (int64_t i = 0; i < w.nt; i++) {
            const tg__node *n = c->tape.nodes[i];
            for (int j = 0; j < n->n_in && !run_node[i]; j++) {
                tg_tensor *x = n->in[j];
                if (!x) continue;
                if (on_walk_tape(&w, x)) {
                    int64_t s = x->node->seq;
                    run_node[i] = is_target[s] || run_node[s];
                } else {
                    slot *sl = lookup(&w, x);
                    if (!sl) goto done;
                    run_node[i] = sl->target >= 0;
                }
            }
        }
        reach = run_node;
    }

    if (w.release) release_setup(&w, n_out, outs, douts);

    /* seed */
    for (int k = 0; k < n_out; k++) {
        tg_tensor *d = douts ? douts[k] : NULL;
        if (!d) {
            /* one element (checked above): d loss / d loss = 1 */
            if (!(d = tg__empty_valid(c, outs[k]->dtype, outs[k]->ndim, outs[k]->shape)))
                goto done;
            if (d->dtype == TG_F32) *(float *)tg__ptr(d) = 1.0f;
            else *(double *)tg__ptr(d) = 1.0;
        }
        accumulate(&w, outs[k], d);
    }

    /* the reverse walk */
    if (c->profile) tg__profile_mark(c);
    for (int64_t i = w.nt - 1; i >= 0 && c->status == TG_OK; i--) {
        const tg__node *n = c->tape.nodes[i];
        tg_tensor *g = w.gr[i];
        if (!g || (reach && !reach[i])) continue;
        tg_tensor *dx_local[8] = {NULL};
        tg_tensor **dx = dx_local;
        if (n->n_in > 8 && !(dx = tg__arena_calloc(c, (size_t)n->n_in, sizeof *dx))) break;
        if (check_versions(&w, n) ||
            (atomic_load_explicit(&gave_back, memory_order_relaxed) && check_released(&w, n)))
            break;
        c->backward_of = n;
        bool recycling = c->recycling;
        if (n->op == TG_OP_CUSTOM) {
            /* the user's code may keep g or return what it makes */
            g->st->block = 0;
            g->st->counted = false;
            c->recycling = false;
        }
        /* g may take the backward's result when only this node reads it */
        if (w.recycle) {
            c->spare_dout = g->st->counted && g->st->refs == 1 ? g : NULL;
            c->spare_in = w.release && !create_graph ? spare_input(n) : NULL;
            w.spare_out = w.release && spare(n->out) ? n->out : NULL;
            c->young = NULL;
            w.pended = false;
            w.n_reads = 0;
        }
        if (!create_graph && tg__ops_acc[n->op] && !c->anomaly) {
            /* into own buffers: nothing left for the loop below */
            tg_tensor *acc_local[8] = {NULL}, **acc = acc_local;
            if (n->n_in > 8 && !(acc = tg__arena_calloc(c, (size_t)n->n_in, sizeof *acc))) break;
            for (int j = 0; j < n->n_in && c->status == TG_OK; j++)
                if (n->in[j] && n->in[j]->requires_grad)
                    acc[j] = own_grad(&w, n->in[j]);
            if (c->status == TG_OK) tg__ops_acc[n->op](c, n, g, acc);
            c->backward_of = NULL;
            c->spare_dout = NULL;
            c->spare_in = NULL;
            done_with(&w, i);
            if (c->profile) tg__profile_backward(c, n->op);
            continue;
        }
        if (!create_graph && !c->anomaly && tg__ops_nograph[n->op]) {
            if (!nograph_backward(&w, n, g, dx, !grads)) break;
        } else {
            tg__ops[n->op].backward(c, n, g, dx);
        }
        c->spare_dout = NULL;
        c->spare_in = NULL;
        for (int j = 0; j < n->n_in && c->status == TG_OK; j++) {
            tg_tensor *x = n->in[j];
            if (!x || !dx[j] || !x->requires_grad) continue;
            tg_tensor *d = reduce_to(&w, dx[j], x, n);
            if (d && c->anomaly) check_grad(&w, n, j, d);
            if (d) accumulate(&w, x, d);
            if (d != dx[j]) unheld(&w, d);
        }
        /* done_with gives back every dead dx the node made, unless it left
         * a job for the commit (which may read its temporaries) */
        for (int j = 0; w.pended && c->young && j < n->n_in; j++) unheld(&w, dx[j]);
        c->backward_of = NULL;
        c->recycling = recycling;
        done_with(&w, i);
        if (c->profile) tg__profile_backward(c, n->op);
    }
    c->backward_of = NULL;
    w.spare = c->free_blocks; /* for the commit's scratch */
    recycle_off(c); /* nothing made from here on may be recycled */
    if (c->status != TG_OK) goto done;

    if (!grads) {
        if (commit_leaf_grads(&w) == TG_OK && c->profile) tg__profile_commit(c);
        goto done;
    }
    for (int i = 0; i < n_in && c->status == TG_OK; i++) {
        tg_tensor *x = ins[i];
        tg_tensor **gs = grad_slot(&w, x);
        if (!gs) break;
        tg_tensor *g = *gs;
        if (!g) g = tg_tensor_new(c, x->dtype, x->ndim, x->shape);
        else if (g->ctx != c) g = tg_contiguous(c, g); /* never hand back a caller's tensor */
        grads[i] = g;
    }

done:
    c->grad_enabled = prev_mode;
    c->releasing = false;
    recycle_off(c);
    if (c->status != TG_OK && grads)
        for (int i = 0; i < n_in; i++) grads[i] = NULL;
    return c->status;
}

tg_status tg_backward(tg_ctx *c, tg_tensor *loss)
{
    if (c && c->status == TG_OK && !loss)
        return tg__fail(c, TG_ERR_INVALID, "tg_backward: loss is NULL");
    return run(c, "tg_backward", 1, &loss, NULL, 0, NULL, false, false, NULL, NULL);
}

tg_status tg_backward_step(tg_ctx *c, tg_tensor *loss, tg_optim *opt)
{
    static const char fn[] = "tg_backward_step";
    if (c && c->status == TG_OK && !loss)
        return tg__fail(c, TG_ERR_INVALID, "%s: loss is NULL", fn);
    if (c && c->status == TG_OK && !opt)
        return tg__fail(c, TG_ERR_INVALID, "%s: opt is NULL", fn);
    return run(c, fn, 1, &loss, NULL, 0, NULL, false, true, NULL, opt);
}

tg_status tg_backward_release(tg_ctx *c, tg_tensor *loss)
{
    if (c && c->status == TG_OK && !loss)
        return tg__fail(c, TG_ERR_INVALID, "tg_backward_release: loss is NULL");
    return run(c, "tg_backward_release", 1, &loss, NULL, 0, NULL, false, true, NULL, NULL);
}

void tg_retain(tg_tensor *t)
{
    if (t) t->st->retained = true;
}

bool tg_is_released(const tg_tensor *t) { return t && t->st->released; }

/* true when n's backward reads storage st (each_read's test) */
static bool reads_st(void *st, const tg_tensor *t) { return t->st == st; }

/* The first node from seq on whose backward reads st, or NULL. */
static const tg__node *first_reader(const tg_ctx *c, int64_t seq, const tg__storage *st)
{
    for (int64_t i = seq; i < c->tape.n; i++)
        if (each_read((void *)st, c->tape.nodes[i], reads_st)) return c->tape.nodes[i];
    return NULL;
}

/* tg_recompute_later's work. With quiet (tg__give_back_unread), a tensor
 * it cannot give back, or that a backward reads, is left as it is and no
 * error is recorded: false. */
static bool give_back(tg_tensor *t, bool quiet)
{
    static const char fn[] = "tg_recompute_later";
    tg_ctx *c = t->ctx;
    tg__storage *st = t->st;
    tg__node *p = t->node;
    char d[200];
    if (c->status != TG_OK) return false;
    if (c->recycling || c->backward_of) {
        if (!quiet) tg__fail(c, TG_ERR_MISUSE, "%s: called during a backward", fn);
        return false;
    }
    if (st->released) return !quiet; /* given back already */
    if (st->retained) {
        if (!quiet)
            tg__fail(c, TG_ERR_MISUSE, "%s: %s was passed to tg_retain", fn,
                     tg__describe(t, d, sizeof d));
        return false;
    }
    if (!tg__on_tape(c, t)) {
        if (!quiet)
            tg__fail(c, TG_ERR_MISUSE,
                     "%s: %s is not the output of an op recorded on its context's tape (a "
                     "leaf, made with grad mode off, or recorded before tg_ctx_reset); only a "
                     "recorded op's output can be recomputed",
                     fn, tg__describe(t, d, sizeof d));
        return false;
    }
    for (int j = 0; j < p->n_in; j++) {
        if (!p->in[j] || p->in[j]->st != st) continue;
        if (!quiet)
            tg__fail(c, TG_ERR_MISUSE,
                     "%s: %s shares its memory with input %d of '%s' (a view, or written in "
                     "place); give back the tensor that owns the memory",
                     fn, tg__describe(t, d, sizeof d), j, tg__node_name(p));
        return false;
    }
    if (quiet || !tg__ops_remake[p->op]) {
        /* no backward may read it then: ops recorded later cannot take it */
        const tg__node *n = first_reader(c, p->seq, st);
        if (n) {
            if (!quiet)
                tg__fail(c, TG_ERR_UNSUPPORTED,
                         "%s: the backward of '%s' (node %lld) reads %s, and op '%s' cannot "
                         "recompute its output",
                         fn, tg__node_name(n), (long long)n->seq, tg__describe(t, d, sizeof d),
                         tg__node_name(p));
            return false;
        }
    }
    st->remake = p;
    if (st->cap >= TG__RECYCLE_MIN) {
        tg__recycle_release(c, st); /* to the blocks the next ops take from */
        tg__recycle_settle(c);
    } else {
        st->released = true; /* too small a block to serve anything */
    }
    atomic_store_explicit(&gave_back, true, memory_order_relaxed);
    return true;
}

tg_status tg_recompute_later(tg_tensor *t)
{
    if (!t) return TG_ERR_INVALID;
    give_back(t, false);
    return t->ctx->status;
}

bool tg__give_back_unread(tg_tensor *t) { return t && give_back(t, true); }

tg_status tg_backward_with_grad(tg_ctx *c, tg_tensor *out, tg_tensor *dout)
{
    if (c && c->status == TG_OK && (!out || !dout))
        return tg__fail(c, TG_ERR_INVALID, "tg_backward_with_grad: %s is NULL",
                        out ? "dout" : "out");
    return run(c, "tg_backward_with_grad", 1, &out, &dout, 0, NULL, false, false, NULL, NULL);
}

tg_status tg_grad_of(tg_ctx *c, int n_out, tg_tensor *const *outputs,
                     tg_tensor *const *doutputs, int n_in, tg_tensor *const *inputs,
                     bool create_graph, tg_tensor **grads)
{
    if (!grads) return c ? tg__fail(c, TG_ERR_INVALID, "tg_grad_of: grads is NULL") : TG_ERR_INVALID;
    return run(c, "tg_grad_of", n_out, outputs, doutputs, n_in, inputs, create_graph, false,
               grads, NULL);
}
