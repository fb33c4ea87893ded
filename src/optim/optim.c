/*
 * optim.c - SGD, Adam, AdamW, RMSprop and Adagrad: creation, validation,
 * state (allocation, enumeration, checkpoint load) and the fused update
 * kernels.
 *
 * Each update is one pass over a parameter's elements that reads the
 * gradient and the state and writes the parameter and the state, with the
 * floating-point operations in the order of PyTorch 1.13's single-tensor
 * implementation (torch/optim/adam.py etc.), done in the parameter's dtype
 * with the scalar coefficients computed in double and rounded once. The
 * loop bodies are inline functions called with constant flags, so each
 * combination of options gets its own branch-free loop; f32 Adam/AdamW,
 * the common training step, has an SSE2 loop (four lanes doing the scalar
 * operations in the scalar order, so the bits are the same). A step, like
 * zero_grad, is one pass over all parameters laid end to end, which the
 * pool's threads take in blocks; elements are independent, so the split
 * cannot change a bit.
 * Gradient clipping sums in double over fixed 8192-element blocks combined
 * in order, which makes the norm independent of the thread count too.
 *
 * Everything lives in the arena of the optimizer's context; after the
 * state is allocated (first step) no call here allocates.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h> /* the f32 Adam kernel, 4 lanes (x86-64 baseline) */
#define OPT_SSE2 1
#endif

#include "../tensor/iter.h"
#include "../tensor/tensor_impl.h"
#include "optim_impl.h"
#include "tapegrad/autograd.h"
#include "tapegrad/optim.h"

#if defined(__GNUC__)
#define OPT_INLINE static inline __attribute__((always_inline))
#else
#define OPT_INLINE static inline
#endif

#define OPTIM_MAGIC 0x6f70746du /* "optm" */
#define OPTIM_DEAD 0xdeadu
#define MAX_SLOTS 3

typedef enum { K_SGD, K_ADAM, K_ADAMW, K_RMSPROP, K_ADAGRAD } kind_t;

static const char *const kind_names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};

struct tg_optim {
    uint32_t magic;
    kind_t kind;
    tg_ctx *c;

    /* hyperparameters (each kind reads its own) */
    double lr0, momentum, dampening, weight_decay, beta1, beta2, eps, alpha, lr_decay, init_acc;
    bool nesterov, maximize, amsgrad, centered;

    int n;
    tg_tensor **params;
    const char **pnames; /* state-name prefix of each parameter */

    int nslots;
    const char *slot_names[MAX_SLOTS];

    tg_tensor *step_t; /* I64 0-d: successful steps */
    tg_tensor *lr_t;   /* F64 0-d: the lr of the next step */

    bool ready;          /* per-parameter state allocated */
    tg_tensor **pstep;   /* n I64 0-d */
    tg_tensor **slots;   /* n * nslots, slot k of param i at [i * nslots + k] */
    int nstate;          /* 2 + n * (1 + nslots) */
    const char **state_names;
    tg_tensor **state;
    unsigned char *seen; /* nstate bytes, scratch of tg_optim_load_state */
    struct seg *segs;    /* n entries: the parts of one step or zero_grad pass */
};

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

static bool live(const tg_optim *o) { return o && o->magic == OPTIM_MAGIC; }

/* TG_ERR_INVALID / TG_ERR_MISUSE for a NULL / freed optimizer, else the
 * context's sticky status. */
static tg_status enter(const tg_optim *o, const char *fn)
{
    if (!o) return TG_ERR_INVALID;
    if (o->magic == OPTIM_DEAD)
        return tg__fail(o->c, TG_ERR_MISUSE, "%s: the optimizer was freed", fn);
    if (o->magic != OPTIM_MAGIC) return TG_ERR_INVALID;
    return tg_ctx_status(o->c);
}

static int64_t *i64p(tg_tensor *t) { return (int64_t *)(void *)tg__ptr(t); }
static double *f64p(tg_tensor *t) { return (double *)(void *)tg__ptr(t); }

static size_t seg_size(void); /* sizeof (struct seg), defined with the kernels */

static char *arena_strdup(tg_ctx *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tg__arena_alloc(c, n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---------------------------------------------------------------------- */
/* Defaults and hyperparameter checks                                     */
/* ---------------------------------------------------------------------- */

tg_sgd_opts tg_sgd_defaults(void)
{
    tg_sgd_opts o;
    memset(&o, 0, sizeof o);
    o.lr = 1e-3;
    return o;
}

tg_adam_opts tg_adam_defaults(void)
{
    tg_adam_opts o;
    memset(&o, 0, sizeof o);
    o.lr = 1e-3;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8;
    o.weight_decay = 0.0;
    return o;
}

tg_adamw_opts tg_adamw_defaults(void)
{
    tg_adamw_opts o = tg_adam_defaults();
    o.weight_decay = 1e-2;
    return o;
}

tg_rmsprop_opts tg_rmsprop_defaults(void)
{
    tg_rmsprop_opts o;
    memset(&o, 0, sizeof o);
    o.lr = 1e-2;
    o.alpha = 0.99;
    o.eps = 1e-8;
    return o;
}

tg_adagrad_opts tg_adagrad_defaults(void)
{
    tg_adagrad_opts o;
    memset(&o, 0, sizeof o);
    o.lr = 1e-2;
    o.eps = 1e-10;
    return o;
}

/* v must be finite and >= lo (and < hi when hi_open). */
static bool check_hp(tg_ctx *c, const char *fn, const char *what, double v, double lo,
                     bool has_hi, double hi)
{
    if (!isfinite(v) || v < lo || (has_hi && v >= hi)) {
        if (has_hi)
            tg__fail(c, TG_ERR_INVALID, "%s: %s = %g is outside [%g, %g)", fn, what, v, lo, hi);
        else
            tg__fail(c, TG_ERR_INVALID, "%s: %s = %g must be finite and >= %g", fn, what, v,
                     lo);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* Creation                                                               */
/* ---------------------------------------------------------------------- */

static bool ranges_overlap(const tg_tensor *a, const tg_tensor *b)
{
    if (a->st != b->st) return false;
    int64_t na = tg__numel(a->ndim, a->shape), nb = tg__numel(b->ndim, b->shape);
    if (na == 0 || nb == 0) return false;
    int64_t ea = (int64_t)tg__esize(a->dtype), eb = (int64_t)tg__esize(b->dtype);
    int64_t a0 = a->offset * ea, a1 = a0 + na * ea;
    int64_t b0 = b->offset * eb, b1 = b0 + nb * eb;
    return a0 < b1 && b0 < a1;
}

/* Validates the parameter list and makes the common part of an optimizer
 * (in c's arena). NULL with the error recorded. */
static tg_optim *optim_new(tg_ctx *c, const char *fn, kind_t kind, tg_tensor *const *params,
                           int n, double lr)
{
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!params) {
        tg__fail(c, TG_ERR_INVALID, "%s: params is NULL", fn);
        return NULL;
    }
    if (n < 1) {
        tg__fail(c, TG_ERR_INVALID, "%s: %d parameters (need at least one)", fn, n);
        return NULL;
    }
    char d[192];
    for (int i = 0; i < n; i++) {
        const tg_tensor *p = params[i];
        if (!p) {
            tg__fail(c, TG_ERR_INVALID, "%s: params[%d] is NULL", fn, i);
            return NULL;
        }
        const char *why = NULL;
        if (!tg__is_float(p->dtype)) why = "is not floating (f32 or f64 only)";
        else if (p->node) why = "is not a leaf (an op produced it)";
        else if (!p->requires_grad) why = "does not require grad";
        else if (!tg_is_contiguous(p)) why = "is a strided view (parameters must be contiguous)";
        if (why) {
            tg__fail(c, TG_ERR_INVALID, "%s: params[%d] (%s) %s", fn, i,
                     tg__describe(p, d, sizeof d), why);
            return NULL;
        }
        for (int j = 0; j < i; j++) {
            if (params[j] == p || ranges_overlap(params[j], p)) {
                tg__fail(c, TG_ERR_INVALID, "%s: params[%d] (%s) %s params[%d]", fn, i,
                         tg__describe(p, d, sizeof d),
                         params[j] == p ? "is the same tensor as" : "overlaps the storage of",
                         j);
                return NULL;
            }
        }
    }

    tg_optim *o = tg__arena_calloc(c, 1, sizeof *o);
    tg_tensor **ps = tg__arena_alloc(c, (size_t)n * sizeof *ps);
    const char **names = tg__arena_alloc(c, (size_t)n * sizeof *names);
    tg_tensor *step_t = tg__empty(c, fn, TG_I64, 0, NULL);
    tg_tensor *lr_t = tg__empty(c, fn, TG_F64, 0, NULL);
    struct seg *segs = tg__arena_alloc(c, (size_t)n * seg_size());
    if (!o || !ps || !names || !step_t || !lr_t || !segs) return NULL;
    for (int i = 0; i < n; i++) {
        ps[i] = params[i];
        char idx[24];
        const char *nm = params[i]->name;
        if (!nm) {
            snprintf(idx, sizeof idx, "%d", i);
            nm = idx;
        }
        names[i] = arena_strdup(c, nm);
        if (!names[i]) return NULL;
        for (int j = 0; j < i; j++) {
            if (strcmp(names[j], names[i]) == 0) {
                tg__fail(c, TG_ERR_INVALID,
                         "%s: params[%d] and params[%d] are both named '%s' (state names "
                         "must be unique)",
                         fn, j, i, names[i]);
                return NULL;
            }
        }
    }
    o->kind = kind;
    o->c = c;
    o->n = n;
    o->params = ps;
    o->pnames = names;
    o->step_t = step_t;
    o->lr_t = lr_t;
    o->segs = segs;
    o->lr0 = lr;
    *f64p(lr_t) = lr;
    *i64p(step_t) = 0;
    o->magic = OPTIM_MAGIC;
    return o;
}

tg_optim *tg_sgd_new(tg_ctx *c, tg_tensor *const *params, int n, const tg_sgd_opts *opts)
{
    static const char fn[] = "tg_sgd_new";
    tg_sgd_opts h = opts ? *opts : tg_sgd_defaults();
    if (!tg__ok(c)) return NULL;
    if (!check_hp(c, fn, "lr", h.lr, 0, false, 0) ||
        !check_hp(c, fn, "momentum", h.momentum, 0, false, 0) ||
        !check_hp(c, fn, "dampening", h.dampening, -INFINITY, false, 0) ||
        !check_hp(c, fn, "weight_decay", h.weight_decay, 0, false, 0))
        return NULL;
    if (h.nesterov && (h.momentum <= 0 || h.dampening != 0)) {
        tg__fail(c, TG_ERR_INVALID,
                 "%s: nesterov needs momentum > 0 and dampening == 0 (got %g, %g)", fn,
                 h.momentum, h.dampening);
        return NULL;
    }
    tg_optim *o = optim_new(c, fn, K_SGD, params, n, h.lr);
    if (!o) return NULL;
    o->momentum = h.momentum;
    o->dampening = h.dampening;
    o->weight_decay = h.weight_decay;
    o->nesterov = h.nesterov;
    o->maximize = h.maximize;
    if (h.momentum != 0) o->slot_names[o->nslots++] = "momentum_buffer";
    return o;
}

static tg_optim *adam_new(tg_ctx *c, const char *fn, kind_t kind, tg_tensor *const *params,
                          int n, const tg_adam_opts *h)
{
    if (!tg__ok(c)) return NULL;
    if (!check_hp(c, fn, "lr", h->lr, 0, false, 0) ||
        !check_hp(c, fn, "beta1", h->beta1, 0, true, 1) ||
        !check_hp(c, fn, "beta2", h->beta2, 0, true, 1) ||
        !check_hp(c, fn, "eps", h->eps, 0, false, 0) ||
        !check_hp(c, fn, "weight_decay", h->weight_decay, 0, false, 0))
        return NULL;
    tg_optim *o = optim_new(c, fn, kind, params, n, h->lr);
    if (!o) return NULL;
    o->beta1 = h->beta1;
    o->beta2 = h->beta2;
    o->eps = h->eps;
    o->weight_decay = h->weight_decay;
    o->amsgrad = h->amsgrad;
    o->maximize = h->maximize;
    o->slot_names[o->nslots++] = "exp_avg";
    o->slot_names[o->nslots++] = "exp_avg_sq";
    if (h->amsgrad) o->slot_names[o->nslots++] = "max_exp_avg_sq";
    return o;
}

tg_optim *tg_adam_new(tg_ctx *c, tg_tensor *const *params, int n, const tg_adam_opts *opts)
{
    tg_adam_opts h = opts ? *opts : tg_adam_defaults();
    return adam_new(c, "tg_adam_new", K_ADAM, params, n, &h);
}

tg_optim *tg_adamw_new(tg_ctx *c, tg_tensor *const *params, int n, const tg_adamw_opts *opts)
{
    tg_adamw_opts h = opts ? *opts : tg_adamw_defaults();
    return adam_new(c, "tg_adamw_new", K_ADAMW, params, n, &h);
}

tg_optim *tg_rmsprop_new(tg_ctx *c, tg_tensor *const *params, int n,
                         const tg_rmsprop_opts *opts)
{
    static const char fn[] = "tg_rmsprop_new";
    tg_rmsprop_opts h = opts ? *opts : tg_rmsprop_defaults();
    if (!tg__ok(c)) return NULL;
    if (!check_hp(c, fn, "lr", h.lr, 0, false, 0) ||
        !check_hp(c, fn, "alpha", h.alpha, 0, false, 0) ||
        !check_hp(c, fn, "eps", h.eps, 0, false, 0) ||
        !check_hp(c, fn, "weight_decay", h.weight_decay, 0, false, 0) ||
        !check_hp(c, fn, "momentum", h.momentum, 0, false, 0))
        return NULL;
    tg_optim *o = optim_new(c, fn, K_RMSPROP, params, n, h.lr);
    if (!o) return NULL;
    o->alpha = h.alpha;
    o->eps = h.eps;
    o->weight_decay = h.weight_decay;
    o->momentum = h.momentum;
    o->centered = h.centered;
    o->maximize = h.maximize;
    o->slot_names[o->nslots++] = "square_avg";
    if (h.momentum > 0) o->slot_names[o->nslots++] = "momentum_buffer";
    if (h.centered) o->slot_names[o->nslots++] = "grad_avg";
    return o;
}

tg_optim *tg_adagrad_new(tg_ctx *c, tg_tensor *const *params, int n,
                         const tg_adagrad_opts *opts)
{
    static const char fn[] = "tg_adagrad_new";
    tg_adagrad_opts h = opts ? *opts : tg_adagrad_defaults();
    if (!tg__ok(c)) return NULL;
    if (!check_hp(c, fn, "lr", h.lr, 0, false, 0) ||
        !check_hp(c, fn, "lr_decay", h.lr_decay, 0, false, 0) ||
        !check_hp(c, fn, "weight_decay", h.weight_decay, 0, false, 0) ||
        !check_hp(c, fn, "initial_accumulator_value", h.initial_accumulator_value, 0, false,
                  0) ||
        !check_hp(c, fn, "eps", h.eps, 0, false, 0))
        return NULL;
    tg_optim *o = optim_new(c, fn, K_ADAGRAD, params, n, h.lr);
    if (!o) return NULL;
    o->lr_decay = h.lr_decay;
    o->weight_decay = h.weight_decay;
    o->init_acc = h.initial_accumulator_value;
    o->eps = h.eps;
    o->maximize = h.maximize;
    o->slot_names[o->nslots++] = "sum";
    return o;
}

void tg_optim_free(tg_optim *o)
{
    if (live(o)) o->magic = OPTIM_DEAD;
}

/* ---------------------------------------------------------------------- */
/* State                                                                  */
/* ---------------------------------------------------------------------- */

/* Fills slot buffer t (shaped like a parameter) with its initial value. */
static void slot_init(const tg_optim *o, tg_tensor *t)
{
    size_t nb = t->st->nbytes;
    memset(t->st->data, 0, nb);
    if (o->kind == K_ADAGRAD && o->init_acc != 0) {
        int64_t n = tg__numel(t->ndim, t->shape);
        if (t->dtype == TG_F32) {
            float *p = (float *)(void *)t->st->data, v = (float)o->init_acc;
            for (int64_t i = 0; i < n; i++) p[i] = v;
        } else {
            double *p = (double *)(void *)t->st->data;
            for (int64_t i = 0; i < n; i++) p[i] = o->init_acc;
        }
    }
    tg__bump_version(t->st);
}

/* Allocates every state tensor and name; sets o->ready only when all of it
 * succeeded, so a failure leaves the optimizer as it was. */
static tg_status state_alloc(tg_optim *o, const char *fn)
{
    if (o->ready) return TG_OK;
    tg_ctx *c = o->c;
    const char *saved_api = c->api;
    c->api = fn;
    int n = o->n, ns = o->nslots;
    int nstate = 2 + n * (1 + ns);
    tg_tensor **pstep = tg__arena_alloc(c, (size_t)n * sizeof *pstep);
    tg_tensor **slots = tg__arena_alloc(c, (size_t)(n * ns + 1) * sizeof *slots);
    const char **names = tg__arena_alloc(c, (size_t)nstate * sizeof *names);
    tg_tensor **state = tg__arena_alloc(c, (size_t)nstate * sizeof *state);
    unsigned char *seen = tg__arena_alloc(c, (size_t)nstate);
    if (!pstep || !slots || !names || !state || !seen) goto fail;
    int k = 0;
    names[k] = "step";
    state[k++] = o->step_t;
    names[k] = "lr";
    state[k++] = o->lr_t;
    for (int i = 0; i < n; i++) {
        const tg_tensor *p = o->params[i];
        tg_tensor *st = tg__empty(c, fn, TG_I64, 0, NULL);
        if (!st) goto fail;
        *i64p(st) = 0;
        pstep[i] = st;
        size_t plen = strlen(o->pnames[i]);
        char *nm = tg__arena_alloc(c, plen + sizeof ".step");
        if (!nm) goto fail;
        snprintf(nm, plen + sizeof ".step", "%s.step", o->pnames[i]);
        names[k] = nm;
        state[k++] = st;
        for (int s = 0; s < ns; s++) {
            tg_tensor *t = tg__empty(c, fn, p->dtype, p->ndim, p->shape);
            size_t len = plen + 1 + strlen(o->slot_names[s]) + 1;
            char *sn = tg__arena_alloc(c, len);
            if (!t || !sn) goto fail;
            snprintf(sn, len, "%s.%s", o->pnames[i], o->slot_names[s]);
            slot_init(o, t);
            slots[i * ns + s] = t;
            names[k] = sn;
            state[k++] = t;
        }
    }
    TG_ASSERT(k == nstate);
    o->pstep = pstep;
    o->slots = slots;
    o->state_names = names;
    o->state = state;
    o->seen = seen;
    o->nstate = nstate;
    o->ready = true;
    c->api = saved_api;
    return TG_OK;
fail:
    c->api = saved_api;
    return tg_ctx_status(c) != TG_OK ? tg_ctx_status(c)
                                     : tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
}

tg_status tg_optim_init_state(tg_optim *o)
{
    tg_status s = enter(o, "tg_optim_init_state");
    if (s != TG_OK) return s;
    return state_alloc(o, "tg_optim_init_state");
}

int tg_optim_state_count(tg_optim *o)
{
    if (enter(o, "tg_optim_state_count") != TG_OK) return -1;
    if (state_alloc(o, "tg_optim_state_count") != TG_OK) return -1;
    return o->nstate;
}

tg_status tg_optim_state_get(tg_optim *o, int i, const char **name, tg_tensor **tensor)
{
    tg_status s = enter(o, "tg_optim_state_get");
    if (s != TG_OK) return s;
    s = state_alloc(o, "tg_optim_state_get");
    if (s != TG_OK) return s;
    if (i < 0 || i >= o->nstate) return TG_ERR_INVALID;
    if (name) *name = o->state_names[i];
    if (tensor) *tensor = o->state[i];
    return TG_OK;
}

static int state_index(const tg_optim *o, const char *name, int hint)
{
    if (hint >= 0 && hint < o->nstate && strcmp(o->state_names[hint], name) == 0) return hint;
    for (int k = 0; k < o->nstate; k++)
        if (strcmp(o->state_names[k], name) == 0) return k;
    return -1;
}

tg_tensor *tg_optim_state_find(tg_optim *o, const char *name)
{
    if (!name || enter(o, "tg_optim_state_find") != TG_OK) return NULL;
    if (state_alloc(o, "tg_optim_state_find") != TG_OK) return NULL;
    int k = state_index(o, name, -1);
    return k < 0 ? NULL : o->state[k];
}

tg_status tg_optim_load_state(tg_optim *o, int n, const char *const *names,
                              tg_tensor *const *tensors)
{
    static const char fn[] = "tg_optim_load_state";
    tg_status s = enter(o, fn);
    if (s != TG_OK) return s;
    tg_ctx *c = o->c;
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return tg__fail(c, TG_ERR_INVALID, "%s: %s", fn,
                        n < 0 ? "negative count" : "names or tensors is NULL");
    s = state_alloc(o, fn);
    if (s != TG_OK) return s;
    memset(o->seen, 0, (size_t)o->nstate);
    char a[192], b[192];
    for (int i = 0; i < n; i++) {
        if (!names[i]) return tg__fail(c, TG_ERR_INVALID, "%s: names[%d] is NULL", fn, i);
        const tg_tensor *src = tensors[i];
        if (!src)
            return tg__fail(c, TG_ERR_INVALID, "%s: '%s': tensor is NULL", fn, names[i]);
        int k = state_index(o, names[i], i);
        if (k < 0)
            return tg__fail(c, TG_ERR_INVALID, "%s: unknown state entry '%s' (this %s optimizer "
                            "has no such entry)", fn, names[i], kind_names[o->kind]);
        if (o->seen[k])
            return tg__fail(c, TG_ERR_INVALID, "%s: state entry '%s' given twice", fn, names[i]);
        o->seen[k] = 1;
        const tg_tensor *dst = o->state[k];
        if (src->dtype != dst->dtype)
            return tg__fail(c, TG_ERR_DTYPE, "%s: '%s': got %s, expected %s", fn, names[i],
                            tg__describe(src, a, sizeof a), tg__describe(dst, b, sizeof b));
        if (src->ndim != dst->ndim ||
            memcmp(src->shape, dst->shape, (size_t)src->ndim * sizeof(int64_t)) != 0)
            return tg__fail(c, TG_ERR_SHAPE, "%s: '%s': got %s, expected %s", fn, names[i],
                            tg__describe(src, a, sizeof a), tg__describe(dst, b, sizeof b));
        if (dst->dtype == TG_I64) {
            int64_t v;
            tg_copy_out(src, &v, sizeof v);
            if (v < 0)
                return tg__fail(c, TG_ERR_INVALID, "%s: '%s' = %lld is negative", fn, names[i],
                                (long long)v);
        } else if (dst == o->lr_t) {
            double v;
            tg_copy_out(src, &v, sizeof v);
            if (!isfinite(v) || v < 0)
                return tg__fail(c, TG_ERR_INVALID, "%s: 'lr' = %g must be finite and >= 0", fn,
                                v);
        }
    }
    for (int k = 0; k < o->nstate; k++)
        if (!o->seen[k])
            return tg__fail(c, TG_ERR_INVALID, "%s: state entry '%s' is missing", fn,
                            o->state_names[k]);
    /* everything checked: now write */
    for (int i = 0; i < n; i++) {
        int k = state_index(o, names[i], i);
        tg__copy_strided(c, o->state[k], tensors[i]);
        tg__bump_version(o->state[k]->st);
    }
    return TG_OK;
}

tg_status tg_optim_reset(tg_optim *o)
{
    tg_status s = enter(o, "tg_optim_reset");
    if (s != TG_OK) return s;
    *i64p(o->step_t) = 0;
    *f64p(o->lr_t) = o->lr0;
    if (o->ready) {
        for (int i = 0; i < o->n; i++) {
            *i64p(o->pstep[i]) = 0;
            for (int k = 0; k < o->nslots; k++) slot_init(o, o->slots[i * o->nslots + k]);
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------- */
/* Accessors                                                              */
/* ---------------------------------------------------------------------- */

double tg_optim_lr(const tg_optim *o) { return live(o) ? *f64p(o->lr_t) : NAN; }

tg_status tg_optim_set_lr(tg_optim *o, double lr)
{
    tg_status s = enter(o, "tg_optim_set_lr");
    if (s != TG_OK) return s;
    if (!isfinite(lr) || lr < 0)
        return tg__fail(o->c, TG_ERR_INVALID, "tg_optim_set_lr: lr = %g must be finite and >= 0",
                        lr);
    *f64p(o->lr_t) = lr;
    return TG_OK;
}

int64_t tg_optim_step_count(const tg_optim *o) { return live(o) ? *i64p(o->step_t) : -1; }

const char *tg_optim_kind(const tg_optim *o) { return live(o) ? kind_names[o->kind] : "?"; }

tg_ctx *tg_optim_ctx(const tg_optim *o) { return o ? o->c : NULL; }

int tg_optim_nparams(const tg_optim *o) { return live(o) ? o->n : 0; }

tg_tensor *tg_optim_param(const tg_optim *o, int i)
{
    return live(o) && i >= 0 && i < o->n ? o->params[i] : NULL;
}

/* ---------------------------------------------------------------------- */
/* Kernels                                                                */
/* ---------------------------------------------------------------------- */

/* One parameter's job: pointers to its elements and the step's scalars
 * (computed in double, rounded to the dtype inside the kernel). */
typedef struct {
    char *p;
    const char *g;
    char *s[MAX_SLOTS];
    bool f64;
    bool l2;                  /* weight decay added to the gradient */
    bool f1, f2, f3;          /* per-kind switches, see each kernel */
    double sign;              /* -1 when maximizing, else 1 */
    double wd;                /* L2 weight decay */
    double k1, k2, k3, k4, k5; /* per-kind coefficients */
} kjob;

/* SGD. f1: momentum on; f2: first step (buf = g); f3: nesterov.
 * k1 = momentum, k2 = 1 - dampening, k3 = -lr. */
#define DEF_SGD(T, SUF)                                                                  \
    OPT_INLINE void sgd_##SUF(const kjob *j, int64_t b, int64_t e, bool l2, bool mom,    \
                              bool first, bool nest)                                     \
    {                                                                                    \
        T *restrict p = (T *)(void *)j->p;                                               \
        const T *restrict g = (const T *)(const void *)j->g;                             \
        T *restrict buf = (T *)(void *)j->s[0];                                          \
        const T sign = (T)j->sign, wd = (T)j->wd, m = (T)j->k1, d1 = (T)j->k2,           \
                nlr = (T)j->k3;                                                          \
        for (int64_t i = b; i < e; i++) {                                                \
            T d = sign * g[i];                                                           \
            if (l2) d = d + wd * p[i];                                                   \
            if (mom) {                                                                   \
                T bb = first ? d : buf[i] * m + d1 * d;                                  \
                buf[i] = bb;                                                             \
                d = nest ? d + m * bb : bb;                                              \
            }                                                                            \
            p[i] = p[i] + nlr * d;                                                       \
        }                                                                                \
    }

/* Adam / AdamW. f1: amsgrad. k1 = beta1, k2 = 1 - beta1, k3 = beta2,
 * k4 = 1 - beta2; k5 = -step_size; wd2 below: decay factor (1 - lr * wd
 * for AdamW, exactly 1 for Adam); s: exp_avg, exp_avg_sq, max_exp_avg_sq.
 * The bias-correction sqrt and eps travel in the job's sign-free fields. */
typedef struct {
    kjob j;
    double bc2s, eps, decay;
} adam_job;

#define DEF_ADAM(T, SQRT, SUF)                                                           \
    OPT_INLINE void adam_##SUF(const adam_job *aj, int64_t b, int64_t e, bool l2,        \
                               bool ams)                                                 \
    {                                                                                    \
        const kjob *j = &aj->j;                                                          \
        T *restrict p = (T *)(void *)j->p;                                               \
        const T *restrict g = (const T *)(const void *)j->g;                             \
        T *restrict m = (T *)(void *)j->s[0];                                            \
        T *restrict v = (T *)(void *)j->s[1];                                            \
        T *restrict vm = (T *)(void *)j->s[2];                                           \
        const T sign = (T)j->sign, wd = (T)j->wd, b1 = (T)j->k1, omb1 = (T)j->k2,        \
                b2 = (T)j->k3, omb2 = (T)j->k4, nss = (T)j->k5, bc2s = (T)aj->bc2s,       \
                eps = (T)aj->eps, decay = (T)aj->decay;                                  \
        for (int64_t i = b; i < e; i++) {                                                \
            T gi = sign * g[i];                                                          \
            if (l2) gi = gi + wd * p[i];                                                 \
            T mi = m[i] * b1 + omb1 * gi;                                                \
            T vi = v[i] * b2 + omb2 * gi * gi;                                           \
            m[i] = mi;                                                                   \
            v[i] = vi;                                                                   \
            if (ams) {                                                                   \
                T mx = vm[i];                                                            \
                mx = (vi > mx || vi != vi) ? vi : mx;                                    \
                vm[i] = mx;                                                              \
                vi = mx;                                                                 \
            }                                                                            \
            T den = SQRT(vi) / bc2s + eps;                                               \
            T pi = p[i] * decay;                                                         \
            p[i] = pi + nss * mi / den;                                                  \
        }                                                                                \
    }

/* RMSprop. f1: momentum > 0; f2: centered. k1 = alpha, k2 = 1 - alpha,
 * k3 = momentum, k4 = -lr, k5 = eps; s: square_avg, then momentum_buffer
 * and grad_avg at the slot indices in s[1], s[2] (NULL when off). */
#define DEF_RMS(T, SQRT, SUF)                                                            \
    OPT_INLINE void rms_##SUF(const kjob *j, int64_t b, int64_t e, bool l2, bool mom,    \
                              bool cen)                                                  \
    {                                                                                    \
        T *restrict p = (T *)(void *)j->p;                                               \
        const T *restrict g = (const T *)(const void *)j->g;                             \
        T *restrict sq = (T *)(void *)j->s[0];                                           \
        T *restrict buf = (T *)(void *)j->s[1];                                          \
        T *restrict ga = (T *)(void *)j->s[2];                                           \
        const T sign = (T)j->sign, wd = (T)j->wd, al = (T)j->k1, oma = (T)j->k2,         \
                mo = (T)j->k3, nlr = (T)j->k4, eps = (T)j->k5, one = (T)1, mone = (T)-1;  \
        for (int64_t i = b; i < e; i++) {                                                \
            T gi = sign * g[i];                                                          \
            if (l2) gi = gi + wd * p[i];                                                 \
            T si = sq[i] * al + oma * gi * gi;                                           \
            sq[i] = si;                                                                  \
            T avg;                                                                       \
            if (cen) {                                                                   \
                T gai = ga[i] * al + oma * gi;                                           \
                ga[i] = gai;                                                             \
                avg = SQRT(si + mone * gai * gai);                                       \
            } else {                                                                     \
                avg = SQRT(si);                                                          \
            }                                                                            \
            avg = avg + eps;                                                             \
            if (mom) {                                                                   \
                T bi = buf[i] * mo + one * gi / avg;                                     \
                buf[i] = bi;                                                             \
                p[i] = p[i] + nlr * bi;                                                  \
            } else {                                                                     \
                p[i] = p[i] + nlr * gi / avg;                                            \
            }                                                                            \
        }                                                                                \
    }

/* Adagrad. k1 = -clr, k2 = eps; s: sum. */
#define DEF_ADAGRAD(T, SQRT, SUF)                                                        \
    OPT_INLINE void adagrad_##SUF(const kjob *j, int64_t b, int64_t e, bool l2)          \
    {                                                                                    \
        T *restrict p = (T *)(void *)j->p;                                               \
        const T *restrict g = (const T *)(const void *)j->g;                             \
        T *restrict sum = (T *)(void *)j->s[0];                                          \
        const T sign = (T)j->sign, wd = (T)j->wd, nclr = (T)j->k1, eps = (T)j->k2,       \
                one = (T)1;                                                              \
        for (int64_t i = b; i < e; i++) {                                                \
            T gi = sign * g[i];                                                          \
            if (l2) gi = gi + wd * p[i];                                                 \
            T si = sum[i] + one * gi * gi;                                               \
            sum[i] = si;                                                                 \
            T sd = SQRT(si) + eps;                                                       \
            p[i] = p[i] + nclr * gi / sd;                                                \
        }                                                                                \
    }

DEF_SGD(float, f32)
DEF_SGD(double, f64)
#ifdef OPT_SSE2
DEF_ADAM(float, sqrtf, f32_tail)

/* f32 Adam/AdamW four elements at a time. GCC at -O2 does not vectorize a
 * loop with sqrt (errno) and division, and Adam is the step of every
 * benchmark. The lanes do exactly the scalar operations in the same order
 * (no FMA), so every element gets the same bits as in adam_f32_tail,
 * whichever way a range is split. */
OPT_INLINE void adam_f32(const adam_job *aj, int64_t b, int64_t e, bool l2, bool ams)
{
    const kjob *j = &aj->j;
    float *p = (float *)(void *)j->p;
    const float *g = (const float *)(const void *)j->g;
    float *m = (float *)(void *)j->s[0];
    float *v = (float *)(void *)j->s[1];
    float *vm = (float *)(void *)j->s[2];
    const __m128 sign = _mm_set1_ps((float)j->sign), wd = _mm_set1_ps((float)j->wd),
                 b1 = _mm_set1_ps((float)j->k1), omb1 = _mm_set1_ps((float)j->k2),
                 b2 = _mm_set1_ps((float)j->k3), omb2 = _mm_set1_ps((float)j->k4),
                 nss = _mm_set1_ps((float)j->k5), bc2s = _mm_set1_ps((float)aj->bc2s),
                 eps = _mm_set1_ps((float)aj->eps), decay = _mm_set1_ps((float)aj->decay);
    int64_t i = b;
    for (; i + 4 <= e; i += 4) {
        __m128 gi = _mm_mul_ps(sign, _mm_loadu_ps(g + i));
        __m128 pv = _mm_loadu_ps(p + i);
        if (l2) gi = _mm_add_ps(gi, _mm_mul_ps(wd, pv));
        __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), b1), _mm_mul_ps(omb1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), b2),
                               _mm_mul_ps(_mm_mul_ps(omb2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        if (ams) {
            __m128 mx = _mm_loadu_ps(vm + i);
            __m128 take = _mm_or_ps(_mm_cmpgt_ps(vi, mx), _mm_cmpunord_ps(vi, vi));
            mx = _mm_or_ps(_mm_and_ps(take, vi), _mm_andnot_ps(take, mx));
            _mm_storeu_ps(vm + i, mx);
            vi = mx;
        }
        __m128 den = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), bc2s), eps);
        __m128 upd = _mm_div_ps(_mm_mul_ps(nss, mi), den);
        _mm_storeu_ps(p + i, _mm_add_ps(_mm_mul_ps(pv, decay), upd));
    }
    adam_f32_tail(aj, i, e, l2, ams);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* The same lanes 8 and 16 at a time where the CPU has AVX / AVX-512F (the
 * step is bound by the two divisions and the square root per element,
 * whose throughput per element improves with width). Division and square
 * root are correctly rounded at every width and nothing is fused, so the
 * bits are those of the 4-lane and scalar code; amsgrad keeps the 4-lane
 * kernel. The rest of a range below the width is one masked step (a
 * 2-3-1 network's parameters, 1 to 6 elements each, are nothing else). */
#define OPT_WIDE_ADAM 1
#include <immintrin.h>

/* One step of the lanes (whole or masked: MLOAD / MSTORE of the lanes in
 * mask M; masked-off lanes compute on zeros and are not stored, so the last
 * few elements of a parameter, or all of a tiny one, take one masked step
 * instead of the 4-lane and scalar loops) */
#define ADAM_LANES(VT, MLOAD, MSTORE, M, ADD, MUL, DIV, SQRT)                             \
    do {                                                                                 \
        VT gi = MUL(sign, MLOAD(g + i, M));                                              \
        VT pv = MLOAD(p + i, M);                                                         \
        if (l2) gi = ADD(gi, MUL(wd, pv));                                               \
        VT mi = ADD(MUL(MLOAD(m + i, M), b1), MUL(omb1, gi));                            \
        VT vi = ADD(MUL(MLOAD(v + i, M), b2), MUL(MUL(omb2, gi), gi));                   \
        MSTORE(m + i, M, mi);                                                            \
        MSTORE(v + i, M, vi);                                                            \
        VT den = ADD(DIV(SQRT(vi), bc2s), eps);                                          \
        VT upd = DIV(MUL(nss, mi), den);                                                 \
        MSTORE(p + i, M, ADD(MUL(pv, decay), upd));                                      \
    } while (0)

#define ADAM_WIDE(NAME, TARGET, W, VT, LOAD, STORE, MT, MASK, MLOAD, MSTORE, SET1, ADD, MUL,   \
                  DIV, SQRT)                                                               \
    __attribute__((target(TARGET))) static void NAME(const adam_job *aj, int64_t b,        \
                                                     int64_t e, bool l2)                   \
    {                                                                                    \
        const kjob *j = &aj->j;                                                          \
        float *p = (float *)(void *)j->p;                                                \
        const float *g = (const float *)(const void *)j->g;                              \
        float *m = (float *)(void *)j->s[0];                                             \
        float *v = (float *)(void *)j->s[1];                                             \
        const VT sign = SET1((float)j->sign), wd = SET1((float)j->wd),                   \
                 b1 = SET1((float)j->k1), omb1 = SET1((float)j->k2),                     \
                 b2 = SET1((float)j->k3), omb2 = SET1((float)j->k4),                     \
                 nss = SET1((float)j->k5), bc2s = SET1((float)aj->bc2s),                 \
                 eps = SET1((float)aj->eps), decay = SET1((float)aj->decay);             \
        int64_t i = b;                                                                   \
        for (; i + (W) <= e; i += (W)) ADAM_LANES(VT, LOAD, STORE, 0, ADD, MUL, DIV, SQRT); \
        if (i < e) {                                                                     \
            const MT rest = MASK(e - i);                                                 \
            ADAM_LANES(VT, MLOAD, MSTORE, rest, ADD, MUL, DIV, SQRT);                    \
        }                                                                                \
    }

/* whole loads and stores (the mask argument unused), and lane masks:
 * AVX's from a sliding window of -1s then 0s (the first n lanes on),
 * AVX-512's are bits */
#define AVX_LOAD(q, mk) _mm256_loadu_ps(q)
#define AVX_STORE(q, mk, x) _mm256_storeu_ps(q, x)
#define AVX512_LOAD(q, mk) _mm512_loadu_ps(q)
#define AVX512_STORE(q, mk, x) _mm512_storeu_ps(q, x)
static const int32_t adam_mask8[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
#define AVX_MASK(n) _mm256_loadu_si256((const __m256i *)(const void *)(adam_mask8 + 8 - (n)))
#define AVX_MLOAD(q, mk) _mm256_maskload_ps(q, mk)
#define AVX_MSTORE(q, mk, x) _mm256_maskstore_ps(q, mk, x)
#define AVX512_MASK(n) ((__mmask16)((1u << (n)) - 1u))
#define AVX512_MLOAD(q, mk) _mm512_maskz_loadu_ps(mk, q)
#define AVX512_MSTORE(q, mk, x) _mm512_mask_storeu_ps(q, mk, x)

ADAM_WIDE(adam_f32_avx, "avx", 8, __m256, AVX_LOAD, AVX_STORE, __m256i, AVX_MASK, AVX_MLOAD,
          AVX_MSTORE, _mm256_set1_ps, _mm256_add_ps, _mm256_mul_ps, _mm256_div_ps,
          _mm256_sqrt_ps)
ADAM_WIDE(adam_f32_avx512, "avx512f", 16, __m512, AVX512_LOAD, AVX512_STORE, __mmask16,
          AVX512_MASK, AVX512_MLOAD, AVX512_MSTORE, _mm512_set1_ps, _mm512_add_ps,
          _mm512_mul_ps, _mm512_div_ps, _mm512_sqrt_ps)
#endif
#else
DEF_ADAM(float, sqrtf, f32)
#endif
DEF_ADAM(double, sqrt, f64)
DEF_RMS(float, sqrtf, f32)
DEF_RMS(double, sqrt, f64)
DEF_ADAGRAD(float, sqrtf, f32)
DEF_ADAGRAD(double, sqrt, f64)

/* The range functions below turn the job's runtime flags into constant
 * arguments, so each combination is compiled as its own loop. */

#define SGD_CALL(SUF, L2, MOM, FIRST, NEST) sgd_##SUF(j, b, e, L2, MOM, FIRST, NEST)
#define SGD_DISPATCH(SUF)                                                                \
    do {                                                                                 \
        if (!j->f1) {                                                                    \
            if (j->l2) SGD_CALL(SUF, true, false, false, false);                         \
            else SGD_CALL(SUF, false, false, false, false);                              \
        } else if (j->f2) {                                                              \
            if (j->f3) SGD_CALL(SUF, j->l2, true, true, true);                           \
            else SGD_CALL(SUF, j->l2, true, true, false);                                \
        } else if (j->l2) {                                                              \
            if (j->f3) SGD_CALL(SUF, true, true, false, true);                           \
            else SGD_CALL(SUF, true, true, false, false);                                \
        } else {                                                                         \
            if (j->f3) SGD_CALL(SUF, false, true, false, true);                          \
            else SGD_CALL(SUF, false, true, false, false);                               \
        }                                                                                \
    } while (0)

static void sgd_range(void *arg, int64_t b, int64_t e)
{
    const kjob *j = arg;
    if (j->f64) SGD_DISPATCH(f64);
    else SGD_DISPATCH(f32);
}

#define ADAM_DISPATCH(SUF)                                                               \
    do {                                                                                 \
        switch ((j->l2 ? 2 : 0) | (j->f1 ? 1 : 0)) {                                     \
        case 0: adam_##SUF(aj, b, e, false, false); break;                               \
        case 1: adam_##SUF(aj, b, e, false, true); break;                                \
        case 2: adam_##SUF(aj, b, e, true, false); break;                                \
        default: adam_##SUF(aj, b, e, true, true); break;                                \
        }                                                                                \
    } while (0)

static void adam_range(void *arg, int64_t b, int64_t e)
{
    const adam_job *aj = arg;
    const kjob *j = &aj->j;
#ifdef OPT_WIDE_ADAM
    if (!j->f64 && !j->f1) { /* f32 without amsgrad */
        if (__builtin_cpu_supports("avx512f")) {
            adam_f32_avx512(aj, b, e, j->l2);
            return;
        }
        if (__builtin_cpu_supports("avx")) {
            adam_f32_avx(aj, b, e, j->l2);
            return;
        }
    }
#endif
    if (j->f64) ADAM_DISPATCH(f64);
    else ADAM_DISPATCH(f32);
}

#define RMS_DISPATCH(SUF)                                                                \
    do {                                                                                 \
        switch ((j->l2 ? 4 : 0) | (j->f1 ? 2 : 0) | (j->f2 ? 1 : 0)) {                   \
        case 0: rms_##SUF(j, b, e, false, false, false); break;                          \
        case 1: rms_##SUF(j, b, e, false, false, true); break;                           \
        case 2: rms_##SUF(j, b, e, false, true, false); break;                           \
        case 3: rms_##SUF(j, b, e, false, true, true); break;                            \
        case 4: rms_##SUF(j, b, e, true, false, false); break;                           \
        case 5: rms_##SUF(j, b, e, true, false, true); break;                            \
        case 6: rms_##SUF(j, b, e, true, true, false); break;                            \
        default: rms_##SUF(j, b, e, true, true, true); break;                            \
        }                                                                                \
    } while (0)

static void rms_range(void *arg, int64_t b, int64_t e)
{
    const kjob *j = arg;
    if (j->f64) RMS_DISPATCH(f64);
    else RMS_DISPATCH(f32);
}

static void adagrad_range(void *arg, int64_t b, int64_t e)
{
    const kjob *j = arg;
    if (j->f64) {
        if (j->l2) adagrad_f64(j, b, e, true);
        else adagrad_f64(j, b, e, false);
    } else {
        if (j->l2) adagrad_f32(j, b, e, true);
        else adagrad_f32(j, b, e, false);
    }
}

/* ---------------------------------------------------------------------- */
/* One pass over every parameter                                          */
/* ---------------------------------------------------------------------- */

/* A step (or a zero_grad) is one tg__parallel_for over the parameters'
 * elements laid end to end, each parameter a segment with its own range
 * function and job: one hand-off to the pool per pass instead of one per
 * parameter, and small parameters (biases) share the threads too.
 * Elements are independent, so where the threads' ranges fall changes
 * no bit. */
struct seg {
    tg__range_fn fn;
    int64_t start, len; /* the segment's indices in the whole pass */
    adam_job job;       /* fn's argument (its kjob part for the other kinds) */
};
typedef struct seg seg;

static size_t seg_size(void) { return sizeof(seg); }

typedef struct {
    const seg *s;
    int n; /* segments, in order of start, none empty */
} seg_list;

static void segs_range(void *arg, int64_t b, int64_t e)
{
    const seg_list *l = arg;
    int lo = 0, hi = l->n - 1; /* the last segment starting at or before b */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (l->s[mid].start <= b) lo = mid;
        else hi = mid - 1;
    }
    for (int k = lo; k < l->n && l->s[k].start < e; k++) {
        const seg *sg = &l->s[k];
        int64_t sb = b > sg->start ? b - sg->start : 0;
        int64_t se = e - sg->start < sg->len ? e - sg->start : sg->len;
        sg->fn((void *)&sg->job, sb, se);
    }
}

/* The threads of a pass take blocks of indices in turn from a shared
 * counter rather than fixed halves: the optimizer's pool sleeps between
 * steps, and a worker that wakes late then finds less left to do instead
 * of making the caller wait for its half. Which thread runs a block
 * changes no bit. zero_grad's blocks are PASS_BLOCK floats' bytes.
 *
 * An update's blocks are UPDATE_GRAIN elements, and it is split from
 * UPDATE_GRAIN elements per thread: it reads four arrays and writes three
 * (Adam), several times the work of the elementwise ops TG__PAR_GRAIN
 * (32,768) is set for, and tg_backward_step hands it blocks of a weight
 * gradient of about 64K elements, which TG__PAR_GRAIN left on one thread
 * (the MLP's [80, 784]: b32 at 2 threads 1.04-1.09 ms, 0.98-1.03 with
 * this). */
#define PASS_BLOCK 16384
#define UPDATE_GRAIN 8192

typedef struct {
    seg_list l;
    int64_t total, block;
    atomic_int_fast64_t next; /* first index not yet taken */
} pass_job;

static void pass_task(void *arg, int64_t b, int64_t e)
{
    (void)b;
    (void)e;
    pass_job *pj = arg;
    for (;;) {
        int64_t s = atomic_fetch_add_explicit(&pj->next, pj->block, memory_order_relaxed);
        if (s >= pj->total) return;
        segs_range(&pj->l, s, pj->total - s > pj->block ? s + pj->block : pj->total);
    }
}

/* Runs the first n segments of o->segs (total indices in all) on pool's
 * threads (o's context's, or tg_backward_step's walk's) when there are at
 * least grain indices per thread, else here. */
static void run_segs_on(tg_ctx *pool, tg_optim *o, int n, int64_t total, int64_t grain,
                        int64_t block)
{
    int64_t tasks = total / grain, threads = tg_ctx_threads(pool);
    if (tasks > threads) tasks = threads;
    if (tasks < 2) {
        seg_list l = {o->segs, n};
        segs_range(&l, 0, total);
        return;
    }
    pass_job pj = {{o->segs, n}, total, block, 0};
    tg__parallel_for(pool, tasks, 1, pass_task, &pj);
}

static void run_segs(tg_optim *o, int n, int64_t total, int64_t grain, int64_t block)
{
    run_segs_on(o->c, o, n, total, grain, block);
}

/* ---------------------------------------------------------------------- */
/* The step                                                               */
/* ---------------------------------------------------------------------- */

static tg_status check_grads(tg_optim *o, const char *fn)
{
    char a[192], b[192];
    for (int i = 0; i < o->n; i++) {
        const tg_tensor *p = o->params[i], *g = p->grad;
        if (!g) continue;
        bool same = g->dtype == p->dtype && g->ndim == p->ndim && tg__contig(g);
        for (int d = 0; same && d < p->ndim; d++) same = g->shape[d] == p->shape[d];
        if (!same)
            return tg__fail(o->c, TG_ERR_INVALID,
                            "%s: params[%d] (%s): its grad (%s%s) does not match it", fn, i,
                            tg__describe(p, a, sizeof a), tg__describe(g, b, sizeof b),
                            tg_is_contiguous(g) ? "" : ", strided");
    }
    return TG_OK;
}

/* Adam's bias corrections for step t, kept across the parameters of one
 * step (they usually share t): two pow() calls per step, not per param. */
typedef struct {
    int64_t t;
    double bc1, bc2s;
} bias_cache;

/* Describes the update of parameter i from the gradient at g (its grad's
 * data, or tg_backward_step's block; its step count is already
 * incremented) as segment sg. */
static void step_param(tg_optim *o, int i, const char *g, bias_cache *bc, seg *sg)
{
    tg_tensor *p = o->params[i];
    int64_t t = *i64p(o->pstep[i]);
    double lr = *f64p(o->lr_t);
    adam_job aj;
    memset(&aj, 0, sizeof aj);
    kjob *j = &aj.j;
    j->p = tg__ptr(p);
    j->g = g;
    for (int k = 0; k < o->nslots; k++) j->s[k] = tg__ptr(o->slots[i * o->nslots + k]);
    j->f64 = p->dtype == TG_F64;
    j->sign = o->maximize ? -1.0 : 1.0;
    j->wd = o->weight_decay;
    j->l2 = o->weight_decay != 0 && o->kind != K_ADAMW;
    tg__range_fn fn = NULL;
    switch (o->kind) {
    case K_SGD:
        j->f1 = o->momentum != 0;
        j->f2 = t == 1;
        j->f3 = o->nesterov;
        j->k1 = o->momentum;
        j->k2 = 1 - o->dampening;
        j->k3 = -lr;
        fn = sgd_range;
        break;
    case K_ADAM:
    case K_ADAMW: {
        if (bc->t != t) {
            bc->t = t;
            bc->bc1 = 1 - pow(o->beta1, (double)t);
            bc->bc2s = sqrt(1 - pow(o->beta2, (double)t));
        }
        j->f1 = o->amsgrad;
        j->k1 = o->beta1;
        j->k2 = 1 - o->beta1;
        j->k3 = o->beta2;
        j->k4 = 1 - o->beta2;
        j->k5 = -(lr / bc->bc1);
        aj.bc2s = bc->bc2s;
        aj.eps = o->eps;
        aj.decay = o->kind == K_ADAMW ? 1 - lr * o->weight_decay : 1.0;
        fn = adam_range;
        break;
    }
    case K_RMSPROP: {
        /* slots: square_avg, then momentum_buffer and grad_avg when on */
        j->f1 = o->momentum > 0;
        j->f2 = o->centered;
        char *s1 = j->s[1], *s2 = j->s[2];
        j->s[1] = j->f1 ? s1 : NULL;
        j->s[2] = j->f2 ? (j->f1 ? s2 : s1) : NULL;
        j->k1 = o->alpha;
        j->k2 = 1 - o->alpha;
        j->k3 = o->momentum;
        j->k4 = -lr;
        j->k5 = o->eps;
        fn = rms_range;
        break;
    }
    case K_ADAGRAD:
        j->k1 = -(lr / (1 + (double)(t - 1) * o->lr_decay));
        j->k2 = o->eps;
        fn = adagrad_range;
        break;
    }
    sg->fn = fn;
    sg->len = tg__numel(p->ndim, p->shape);
    sg->job = aj;
}

tg_status tg_optim_step(tg_optim *o)
{
    tg_status s = tg__optim_prepare(o, "tg_optim_step");
    if (s != TG_OK) return s;
    /* Nothing below can fail. */
    bias_cache bc = {-1, 0, 0};
    int ns = 0;
    int64_t total = 0;
    for (int i = 0; i < o->n; i++) {
        tg_tensor *p = o->params[i];
        if (!p->grad) continue;
        tg__optim_begin_param(o, i);
        if (tg__numel(p->ndim, p->shape) > 0) {
            seg *sg = &o->segs[ns++];
            step_param(o, i, tg__ptr(p->grad), &bc, sg);
            sg->start = total;
            total += sg->len;
        }
    }
    run_segs(o, ns, total, UPDATE_GRAIN, UPDATE_GRAIN);
    tg__optim_end(o);
    return TG_OK;
}

/* ---- tg_backward_step's side (optim_impl.h) ---------------------------- */

int tg__optim_index(const tg_optim *o, const tg_tensor *t)
{
    for (int i = 0; i < o->n; i++)
        if (o->params[i] == t) return i;
    return -1;
}

tg_ctx *tg__optim_ctx(const tg_optim *o)
{
    return o && (o->magic == OPTIM_MAGIC || o->magic == OPTIM_DEAD) ? o->c : NULL;
}

tg_status tg__optim_prepare(tg_optim *o, const char *fn)
{
    tg_status s = enter(o, fn);
    if (s == TG_OK) s = check_grads(o, fn);
    if (s == TG_OK) s = state_alloc(o, fn);
    return s;
}

void tg__optim_begin_param(tg_optim *o, int i)
{
    ++*i64p(o->pstep[i]);
    tg__bump_version(o->params[i]->st);
    for (int k = 0; k < o->nslots; k++) tg__bump_version(o->slots[i * o->nslots + k]->st);
}

void tg__optim_update(tg_optim *o, tg_ctx *pool, int i, int64_t e0, int64_t n, const void *g)
{
    if (n <= 0) return;
    bias_cache bc = {-1, 0, 0};
    seg *sg = &o->segs[0];
    step_param(o, i, g, &bc, sg);
    const int64_t off = e0 * (int64_t)tg__esize(o->params[i]->dtype);
    kjob *j = &sg->job.j;
    j->p += off;
    for (int k = 0; k < MAX_SLOTS; k++)
        if (j->s[k]) j->s[k] += off;
    sg->start = 0;
    sg->len = n;
    run_segs_on(pool, o, 1, n, UPDATE_GRAIN, UPDATE_GRAIN);
}

void tg__optim_end(tg_optim *o) { ++*i64p(o->step_t); }

static void zero_range(void *arg, int64_t b, int64_t e)
{
    const kjob *j = arg;
    memset(j->p + b, 0, (size_t)(e - b));
}

void tg_optim_zero_grad(tg_optim *o)
{
    if (!live(o)) return;
    /* tg_zero_grad on each parameter (its grad's storage cleared, byte by
     * byte), as one pass over the pool */
    int ns = 0;
    int64_t total = 0;
    for (int i = 0; i < o->n; i++) {
        tg_tensor *g = o->params[i]->grad;
        if (!g) continue;
        if (g->st->nbytes > 0) {
            seg *sg = &o->segs[ns++];
            memset(sg, 0, sizeof *sg);
            sg->fn = zero_range;
            sg->job.j.p = g->st->data;
            sg->start = total;
            sg->len = (int64_t)g->st->nbytes;
            total += sg->len;
        }
        tg__bump_version(g->st);
    }
    run_segs(o, ns, total, TG__PAR_GRAIN * (int64_t)sizeof(float),
             PASS_BLOCK * (int64_t)sizeof(float));
}

/* ---------------------------------------------------------------------- */
/* Gradient clipping                                                      */
/* ---------------------------------------------------------------------- */

#define CLIP_BLOCK 8192 /* elements per partial sum: fixes the order of addition */
#define CLIP_SUPER 64   /* blocks per parallel batch (partials on the stack) */

typedef enum { NORM_2, NORM_1, NORM_INF, NORM_P } norm_mode;

typedef struct {
    const char *g;
    bool f64;
    int64_t n;          /* elements */
    int64_t first;      /* first block of this batch */
    norm_mode mode;
    double p;
    double part[CLIP_SUPER];
} norm_job;

static double max_nan(double m, double x) { return (x != x || x > m) ? x : m; }

/* Block partial of elements [lo, hi): four interleaved accumulators
 * combined in a fixed order (the compiler may not reassociate them). */
#define NORM_BLOCK(T, ACC, COMBINE)                                                      \
    do {                                                                                 \
        const T *x = (const T *)(const void *)j->g;                                      \
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                           \
        int64_t i = lo;                                                                  \
        for (; i + 4 <= hi; i += 4) {                                                    \
            a0 = ACC(a0, (double)x[i]);                                                  \
            a1 = ACC(a1, (double)x[i + 1]);                                              \
            a2 = ACC(a2, (double)x[i + 2]);                                              \
            a3 = ACC(a3, (double)x[i + 3]);                                              \
        }                                                                                \
        for (; i < hi; i++) a0 = ACC(a0, (double)x[i]);                                  \
        part = COMBINE(COMBINE(a0, a1), COMBINE(a2, a3));                                \
    } while (0)

#define ACC_SQ(a, x) ((a) + (x) * (x))
#define ACC_ABS(a, x) ((a) + fabs(x))
#define ACC_MAX(a, x) max_nan((a), fabs(x))
#define ACC_POW(a, x) ((a) + pow(fabs(x), pw))
#define ADD2(a, b) ((a) + (b))

static void norm_range(void *arg, int64_t b, int64_t e)
{
    norm_job *j = arg;
    const double pw = j->p;
    for (int64_t blk = b; blk < e; blk++) {
        int64_t lo = (j->first + blk) * CLIP_BLOCK;
        int64_t hi = lo + CLIP_BLOCK < j->n ? lo + CLIP_BLOCK : j->n;
        double part = 0;
        switch (j->mode * 2 + (j->f64 ? 1 : 0)) {
        case NORM_2 * 2: NORM_BLOCK(float, ACC_SQ, ADD2); break;
        case NORM_2 * 2 + 1: NORM_BLOCK(double, ACC_SQ, ADD2); break;
        case NORM_1 * 2: NORM_BLOCK(float, ACC_ABS, ADD2); break;
        case NORM_1 * 2 + 1: NORM_BLOCK(double, ACC_ABS, ADD2); break;
        case NORM_INF * 2: NORM_BLOCK(float, ACC_MAX, max_nan); break;
        case NORM_INF * 2 + 1: NORM_BLOCK(double, ACC_MAX, max_nan); break;
        case NORM_P * 2: NORM_BLOCK(float, ACC_POW, ADD2); break;
        default: NORM_BLOCK(double, ACC_POW, ADD2); break;
        }
        j->part[blk] = part;
    }
}

typedef struct {
    char *g;
    bool f64;
    double v; /* scale factor, or clip value */
} ew_job;

static void scale_range(void *arg, int64_t b, int64_t e)
{
    const ew_job *j = arg;
    if (j->f64) {
        double *g = (double *)(void *)j->g, f = j->v;
        for (int64_t i = b; i < e; i++) g[i] = g[i] * f;
    } else {
        float *g = (float *)(void *)j->g, f = (float)j->v;
        for (int64_t i = b; i < e; i++) g[i] = g[i] * f;
    }
}

static void clamp_range(void *arg, int64_t b, int64_t e)
{
    const ew_job *j = arg;
    if (j->f64) {
        double *g = (double *)(void *)j->g, v = j->v;
        for (int64_t i = b; i < e; i++) g[i] = g[i] < -v ? -v : (g[i] > v ? v : g[i]);
    } else {
        float *g = (float *)(void *)j->g, v = (float)j->v;
        for (int64_t i = b; i < e; i++) g[i] = g[i] < -v ? -v : (g[i] > v ? v : g[i]);
    }
}

static tg_status check_clip_params(tg_ctx *c, const char *fn, tg_tensor *const *params, int n)
{
    if (n < 0) return tg__fail(c, TG_ERR_INVALID, "%s: negative parameter count %d", fn, n);
    if (n > 0 && !params) return tg__fail(c, TG_ERR_INVALID, "%s: params is NULL", fn);
    char a[192], b[192];
    for (int i = 0; i < n; i++) {
        const tg_tensor *p = params[i];
        if (!p) return tg__fail(c, TG_ERR_INVALID, "%s: params[%d] is NULL", fn, i);
        const tg_tensor *g = p->grad;
        if (g && (!tg__is_float(g->dtype) || !tg_is_contiguous(g)))
            return tg__fail(c, TG_ERR_INVALID, "%s: params[%d] (%s): unusable grad %s", fn, i,
                            tg__describe(p, a, sizeof a), tg__describe(g, b, sizeof b));
    }
    return TG_OK;
}

tg_status tg_clip_grad_norm(tg_ctx *c, tg_tensor *const *params, int n, double max_norm,
                            double norm_type, bool error_if_nonfinite, double *total_norm)
{
    static const char fn[] = "tg_clip_grad_norm";
    if (total_norm) *total_norm = NAN;
    if (!c) return TG_ERR_INVALID;
    if (!tg__ok(c)) return c->status;
    tg_status s = check_clip_params(c, fn, params, n);
    if (s != TG_OK) return s;
    if (!(max_norm >= 0))
        return tg__fail(c, TG_ERR_INVALID, "%s: max_norm = %g must be >= 0", fn, max_norm);
    if (!(norm_type > 0))
        return tg__fail(c, TG_ERR_INVALID, "%s: norm_type = %g must be > 0 (or INFINITY)", fn,
                        norm_type);
    norm_job j;
    memset(&j, 0, sizeof j);
    j.mode = isinf(norm_type) ? NORM_INF
             : norm_type == 2 ? NORM_2
             : norm_type == 1 ? NORM_1
                              : NORM_P;
    j.p = norm_type;
    double acc = 0;
    int64_t grain = TG__PAR_GRAIN / CLIP_BLOCK;
    for (int i = 0; i < n; i++) {
        tg_tensor *g = params[i]->grad;
        if (!g) continue;
        j.g = tg__ptr(g);
        j.f64 = g->dtype == TG_F64;
        j.n = tg__numel(g->ndim, g->shape);
        int64_t nblocks = (j.n + CLIP_BLOCK - 1) / CLIP_BLOCK;
        for (j.first = 0; j.first < nblocks; j.first += CLIP_SUPER) {
            int64_t cnt = nblocks - j.first < CLIP_SUPER ? nblocks - j.first : CLIP_SUPER;
            tg__parallel_for(c, cnt, grain, norm_range, &j);
            for (int64_t k = 0; k < cnt; k++)
                acc = j.mode == NORM_INF ? max_nan(acc, j.part[k]) : acc + j.part[k];
        }
    }
    double total = j.mode == NORM_2   ? sqrt(acc)
                   : j.mode == NORM_P ? pow(acc, 1.0 / norm_type)
                                      : acc;
    if (total_norm) *total_norm = total;
    if (!isfinite(total) && error_if_nonfinite)
        return tg__fail(c, TG_ERR_NUMERIC,
                        "%s: the total norm of order %g of the gradients is %g; gradients "
                        "left unchanged",
                        fn, norm_type, total);
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1.0) return TG_OK; /* PyTorch multiplies by clamp(coef, max=1): a no-op */
    for (int i = 0; i < n; i++) {
        tg_tensor *g = params[i]->grad;
        if (!g) continue;
        ew_job e = {tg__ptr(g), g->dtype == TG_F64, coef};
        tg__parallel_for(c, tg__numel(g->ndim, g->shape), TG__PAR_GRAIN, scale_range, &e);
        tg__bump_version(g->st);
    }
    return TG_OK;
}

tg_status tg_clip_grad_value(tg_ctx *c, tg_tensor *const *params, int n, double clip_value)
{
    static const char fn[] = "tg_clip_grad_value";
    if (!c) return TG_ERR_INVALID;
    if (!tg__ok(c)) return c->status;
    tg_status s = check_clip_params(c, fn, params, n);
    if (s != TG_OK) return s;
    if (!(clip_value >= 0))
        return tg__fail(c, TG_ERR_INVALID, "%s: clip_value = %g must be >= 0", fn, clip_value);
    for (int i = 0; i < n; i++) {
        tg_tensor *g = params[i]->grad;
        if (!g) continue;
        ew_job e = {tg__ptr(g), g->dtype == TG_F64, clip_value};
        tg__parallel_for(c, tg__numel(g->ndim, g->shape), TG__PAR_GRAIN, clamp_range, &e);
        tg__bump_version(g->st);
    }
    return TG_OK;
}
