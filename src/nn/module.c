/*
 * module.c - the model (parameter and buffer registry, train/eval mode),
 * what every module shares (creation, naming, lookup), the Sequential
 * container and tg_module_forward's dispatch.
 *
 * Everything is allocated in the model's persistent context's arena when a
 * layer is made, so nothing here allocates during a step. Registry arrays
 * grow by doubling in the arena (the abandoned copies are freed with the
 * context); construction is a one-off, so that waste is bounded by the
 * final size.
 */
#include "nn_impl.h"

#include <stdarg.h>
#include <string.h>

static const char *const kind_names[TG__NN_KIND_COUNT] = {
    [TG__NN_LINEAR] = "linear",
    [TG__NN_CONV1D] = "conv1d",
    [TG__NN_CONV2D] = "conv2d",
    [TG__NN_MAX_POOL2D] = "max_pool2d",
    [TG__NN_AVG_POOL2D] = "avg_pool2d",
    [TG__NN_EMBEDDING] = "embedding",
    [TG__NN_LAYER_NORM] = "layer_norm",
    [TG__NN_BATCH_NORM1D] = "batch_norm1d",
    [TG__NN_BATCH_NORM2D] = "batch_norm2d",
    [TG__NN_DROPOUT] = "dropout",
    [TG__NN_RELU] = "relu",
    [TG__NN_TANH] = "tanh",
    [TG__NN_SIGMOID] = "sigmoid",
    [TG__NN_GELU] = "gelu",
    [TG__NN_SILU] = "silu",
    [TG__NN_LEAKY_RELU] = "leaky_relu",
    [TG__NN_SOFTMAX] = "softmax",
    [TG__NN_FLATTEN] = "flatten",
    [TG__NN_IDENTITY] = "identity",
    [TG__NN_SEQUENTIAL] = "sequential",
    [TG__NN_RNN] = "rnn",
    [TG__NN_LSTM] = "lstm",
    [TG__NN_GRU] = "gru",
    [TG__NN_MHA] = "multihead_attention",
};

const char *tg__nn_kind_name(tg__nn_kind k)
{
    return (k >= 0 && k < TG__NN_KIND_COUNT) ? kind_names[k] : "?";
}

bool tg__nn_vec_push(tg_ctx *c, tg__nn_vec *v, void *p)
{
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 8;
        void **nv = tg__arena_alloc(c, (size_t)cap * sizeof *nv);
        if (!nv) return false;
        if (v->n) memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = p;
    return true;
}

static char *arena_strdup(tg_ctx *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tg__arena_alloc(c, n);
    if (d) memcpy(d, s, n);
    return d;
}

const char *tg__nn_join(tg_ctx *c, const char *prefix, const char *local)
{
    if (!prefix || !prefix[0]) return arena_strdup(c, local);
    size_t a = strlen(prefix), b = strlen(local);
    char *d = tg__arena_alloc(c, a + b + 2);
    if (!d) return NULL;
    memcpy(d, prefix, a);
    d[a] = '.';
    memcpy(d + a + 1, local, b + 1);
    return d;
}

/* ====================================================================== */
/* The model                                                              */
/* ====================================================================== */

tg_model *tg_model_new(tg_ctx *pc)
{
    if (!tg__ok(pc)) return NULL;
    tg_model *m = tg__arena_calloc(pc, 1, sizeof *m);
    if (!m) return NULL;
    m->ctx = pc;
    m->dtype = TG_F32;
    m->training = true;
    return m;
}

tg_ctx *tg_model_ctx(const tg_model *m) { return m ? m->ctx : NULL; }

tg_status tg_model_set_dtype(tg_model *m, tg_dtype dt)
{
    if (!m) return TG_ERR_INVALID;
    if (!tg__is_float(dt))
        return tg__fail(m->ctx, TG_ERR_DTYPE, "tg_model_set_dtype: dtype %s is not floating",
                        tg_dtype_name(dt));
    m->dtype = dt;
    return TG_OK;
}

tg_dtype tg_model_dtype(const tg_model *m) { return m ? m->dtype : TG_F32; }

bool tg_model_set_training(tg_model *m, bool on)
{
    if (!m) return false;
    bool old = m->training;
    m->training = on;
    return old;
}

bool tg_model_training(const tg_model *m) { return m ? m->training : false; }

int tg_model_nparams(const tg_model *m) { return m ? m->params.n : 0; }

tg_tensor *tg_model_param(const tg_model *m, int i)
{
    return (m && i >= 0 && i < m->params.n) ? m->params.v[i] : NULL;
}

tg_tensor *const *tg_model_params(const tg_model *m)
{
    return (m && m->params.n) ? (tg_tensor *const *)m->params.v : NULL;
}

int tg_model_nbuffers(const tg_model *m) { return m ? m->buffers.n : 0; }

tg_tensor *tg_model_buffer(const tg_model *m, int i)
{
    return (m && i >= 0 && i < m->buffers.n) ? m->buffers.v[i] : NULL;
}

tg_tensor *const *tg_model_buffers(const tg_model *m)
{
    return (m && m->buffers.n) ? (tg_tensor *const *)m->buffers.v : NULL;
}

static tg_tensor *find_in(const tg__nn_vec *v, const char *name)
{
    for (int i = 0; i < v->n; i++) {
        const char *nm = tg_tensor_name(v->v[i]);
        if (nm && strcmp(nm, name) == 0) return v->v[i];
    }
    return NULL;
}

tg_tensor *tg_model_find(const tg_model *m, const char *name)
{
    if (!m || !name) return NULL;
    tg_tensor *t = find_in(&m->params, name);
    return t ? t : find_in(&m->buffers, name);
}

int64_t tg_model_numel(const tg_model *m)
{
    int64_t n = 0;
    for (int i = 0; m && i < m->params.n; i++) n += tg_numel(m->params.v[i]);
    return n;
}

void tg_model_zero_grad(tg_model *m)
{
    for (int i = 0; m && i < m->params.n; i++)
        if (tg_grad(m->params.v[i])) tg_zero_grad(m->params.v[i]);
}

/* Registers t under name as a parameter or buffer (fn names the caller). */
static tg_status add_tensor(tg_model *m, const char *fn, const char *name, tg_tensor *t, bool param)
{
    if (!m) return TG_ERR_INVALID;
    tg_ctx *pc = m->ctx;
    if (!tg__ok(pc)) return tg_ctx_status(pc);
    if (!name || !name[0] || !t)
        return tg__fail(pc, TG_ERR_INVALID, "%s: %s", fn,
                        !t ? "NULL tensor" : "empty or NULL name");
    if (strlen(name) > 127)
        return tg__fail(pc, TG_ERR_INVALID, "%s: name '%.40s...' longer than 127 bytes", fn, name);
    if (t->ctx != pc)
        return tg__fail(pc, TG_ERR_INVALID, "%s: '%s' lives in another context than the model", fn,
                        name);
    if (t->node)
        return tg__fail(pc, TG_ERR_INVALID, "%s: '%s' is not a leaf (a recorded op made it)", fn,
                        name);
    if (param && !tg__is_float(t->dtype))
        return tg__fail(pc, TG_ERR_DTYPE, "%s: parameter '%s' is %s, not floating", fn, name,
                        tg_dtype_name(t->dtype));
    if (tg_model_find(m, name))
        return tg__fail(pc, TG_ERR_INVALID, "%s: name '%s' is already registered", fn, name);
    tg_status s = tg_tensor_set_name(t, name);
    if (s != TG_OK) return s;
    if (!tg__nn_vec_push(pc, param ? &m->params : &m->buffers, t)) return tg_ctx_status(pc);
    t->requires_grad = param;
    return TG_OK;
}

tg_status tg_model_add_param(tg_model *m, const char *name, tg_tensor *t)
{
    return add_tensor(m, "tg_model_add_param", name, t, true);
}

tg_status tg_model_add_buffer(tg_model *m, const char *name, tg_tensor *t)
{
    return add_tensor(m, "tg_model_add_buffer", name, t, false);
}

/* Registered tensor of that name, as a parameter or a buffer, and its
 * index in one numbering (parameters first). */
static tg_tensor *find_idx(const tg_model *m, const char *name, int *idx)
{
    for (int i = 0; i < m->params.n + m->buffers.n; i++) {
        tg_tensor *t = i < m->params.n ? m->params.v[i] : m->buffers.v[i - m->params.n];
        if (strcmp(tg_tensor_name(t), name) == 0) {
            *idx = i;
            return t;
        }
    }
    return NULL;
}

/* Validates a load (see tg_model_load) and fills seen. */
static tg_status load_check(tg_model *m, const char *fn, int n, const char *const *names,
                            tg_tensor *const *tensors, bool strict, int *seen, int total)
{
    tg_ctx *pc = m->ctx;
    for (int i = 0; i < n; i++) {
        tg_tensor *src = tensors[i];
        const char *name = names ? names[i] : tg_tensor_name(src);
        if (!src || !name)
            return tg__fail(pc, TG_ERR_INVALID, "%s: entry %d: NULL %s", fn, i,
                            !src ? "tensor" : "name");
        int k;
        tg_tensor *dst = find_idx(m, name, &k);
        if (!dst) {
            if (strict)
                return tg__fail(pc, TG_ERR_INVALID, "%s: entry %d: no parameter or buffer '%s'", fn,
                                i, name);
            continue;
        }
        if (seen[k] >= 0)
            return tg__fail(pc, TG_ERR_INVALID, "%s: '%s' given twice (entries %d and %d)", fn,
                            name, seen[k], i);
        seen[k] = i;
        char b1[96], b2[96];
        bool same = src->ndim == dst->ndim;
        for (int d = 0; same && d < dst->ndim; d++) same = src->shape[d] == dst->shape[d];
        if (!same)
            return tg__fail(pc, TG_ERR_SHAPE, "%s: '%s': got %s, the model has %s", fn, name,
                            tg_shape_str(src, b1, sizeof b1), tg_shape_str(dst, b2, sizeof b2));
        if ((src->dtype == TG_I64) != (dst->dtype == TG_I64))
            return tg__fail(pc, TG_ERR_DTYPE, "%s: '%s': got %s, the model has %s", fn, name,
                            tg_dtype_name(src->dtype), tg_dtype_name(dst->dtype));
    }
    for (int k = 0; strict && k < total; k++)
        if (seen[k] < 0) {
            tg_tensor *t = k < m->params.n ? m->params.v[k] : m->buffers.v[k - m->params.n];
            return tg__fail(pc, TG_ERR_INVALID, "%s: %s '%s' missing", fn,
                            k < m->params.n ? "parameter" : "buffer", tg_tensor_name(t));
        }
    return TG_OK;
}

tg_status tg_model_load(tg_model *m, int n, const char *const *names, tg_tensor *const *tensors,
                        bool strict)
{
    const char *fn = "tg_model_load";
    if (!m) return TG_ERR_INVALID;
    tg_ctx *pc = m->ctx;
    if (!tg__ok(pc)) return tg_ctx_status(pc);
    if (n < 0 || (n > 0 && !tensors))
        return tg__fail(pc, TG_ERR_INVALID, "%s: %d tensors, array %s", fn, n,
                        tensors ? "given" : "NULL");
    int total = m->params.n + m->buffers.n;
    /* seen[k]: the entry that loads registered tensor k, or -1 (scratch on
     * the heap: a load must not grow the persistent arena each time) */
    size_t nseen = (size_t)(total > 0 ? total : 1) * sizeof(int);
    int *seen = tg__heap_alloc(pc, nseen);
    if (!seen) return tg__fail(pc, TG_ERR_NOMEM, "%s: out of memory", fn);
    for (int k = 0; k < total; k++) seen[k] = -1;
    tg_status st = load_check(m, fn, n, names, tensors, strict, seen, total);
    if (st == TG_OK)
        for (int k = 0; k < total; k++) {
            if (seen[k] < 0) continue;
            tg_tensor *dst = k < m->params.n ? m->params.v[k] : m->buffers.v[k - m->params.n];
            tg__copy_strided(pc, dst, tensors[seen[k]]);
            tg_tensor_bump_version(dst);
        }
    tg__heap_free(pc, seen, nseen);
    return st;
}

const char *tg_model_name(tg_model *m, const char *fmt, ...)
{
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (!fmt) {
        tg__fail(m->ctx, TG_ERR_INVALID, "tg_model_name: NULL format");
        return NULL;
    }
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof buf) {
        tg__fail(m->ctx, TG_ERR_INVALID, "tg_model_name: name longer than 127 bytes");
        return NULL;
    }
    return arena_strdup(m->ctx, buf);
}

/* ====================================================================== */
/* Modules                                                                */
/* ====================================================================== */

tg_module *tg__nn_module(tg_model *m, tg__nn_kind kind, const char *fn, const char *name)
{
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (!name) name = "";
    if (strlen(name) > 100) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: name '%.40s...' longer than 100 bytes", fn, name);
        return NULL;
    }
    tg_module *mod = tg__arena_calloc(m->ctx, 1, sizeof *mod);
    if (!mod) return NULL;
    mod->kind = kind;
    mod->model = m;
    mod->name = arena_strdup(m->ctx, name);
    if (!mod->name) return NULL;
    return mod;
}

static tg_tensor *new_registered(tg_module *mod, const char *fn, const char *local, tg_dtype dt,
                                 int ndim, const int64_t *shape, bool param)
{
    tg_model *m = mod->model;
    tg_ctx *pc = m->ctx;
    const char *full = tg__nn_join(pc, mod->name, local);
    if (!full) return NULL;
    /* sizes too large for memory are the constructor's error, named so */
    char who[192];
    snprintf(who, sizeof who, "%s: '%s'", fn, full);
    int64_t numel;
    if (tg__check_shape(pc, who, ndim, shape, &numel) != TG_OK) return NULL;
    tg_tensor *t = tg_tensor_new(pc, dt, ndim, shape);
    if (!t) return NULL;
    if (add_tensor(m, fn, full, t, param) != TG_OK) return NULL;
    if (!tg__nn_vec_push(pc, &mod->tensors, t) ||
        !tg__nn_vec_push(pc, &mod->locals, (void *)(full + strlen(full) - strlen(local))))
        return NULL;
    return t;
}

tg_tensor *tg__nn_param(tg_module *mod, const char *fn, const char *local, int ndim,
                        const int64_t *shape)
{
    return new_registered(mod, fn, local, mod->model->dtype, ndim, shape, true);
}

tg_tensor *tg__nn_buffer(tg_module *mod, const char *fn, const char *local, tg_dtype dt, int ndim,
                         const int64_t *shape)
{
    return new_registered(mod, fn, local, dt, ndim, shape, false);
}

const char *tg_module_name(const tg_module *mod) { return mod ? mod->name : ""; }
const char *tg_module_kind(const tg_module *mod) { return mod ? tg__nn_kind_name(mod->kind) : "?"; }
tg_model *tg_module_model(const tg_module *mod) { return mod ? mod->model : NULL; }

tg_tensor *tg_module_get(const tg_module *mod, const char *local_name)
{
    if (!mod || !local_name) return NULL;
    for (int i = 0; i < mod->tensors.n; i++)
        if (strcmp(mod->locals.v[i], local_name) == 0) return mod->tensors.v[i];
    /* sub-layers (attention projections): "q_proj.weight" */
    for (int i = 0; i < mod->children.n && mod->kind == TG__NN_MHA; i++) {
        const tg_module *ch = mod->children.v[i];
        const char *dot = strchr(local_name, '.');
        const char *cn = strrchr(ch->name, '.');
        cn = cn ? cn + 1 : ch->name;
        if (dot && (size_t)(dot - local_name) == strlen(cn) &&
            strncmp(local_name, cn, (size_t)(dot - local_name)) == 0)
            return tg_module_get(ch, dot + 1);
    }
    return NULL;
}

bool tg__nn_begin(tg_ctx *c, const char *fn, const tg_module *mod, tg_tensor *x)
{
    if (!tg__ok(c)) return false;
    if (!mod || !x) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL %s", fn, !mod ? "module" : "input");
        return false;
    }
    return true;
}

void tg__nn_fail(tg_ctx *c, tg_status s, const char *fn, const tg_module *mod, const char *fmt, ...)
{
    if (!tg__ok(c)) return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tg__fail(c, s, "%s: %s '%s': %s", fn, tg__nn_kind_name(mod->kind), mod->name, msg);
}

tg_tensor *tg__nn_blame(tg_ctx *c, bool was_ok, const char *fn, const tg_module *mod, tg_tensor *y)
{
    if (y || !was_ok || !c || tg__ok(c)) return y;
    char prefix[160], tmp[sizeof c->msg];
    int np = snprintf(prefix, sizeof prefix, "%s: %s '%s': ", fn, tg__nn_kind_name(mod->kind),
                      mod->name);
    if (np > 0 && strncmp(c->msg, prefix, (size_t)np) == 0) return NULL; /* ours already */
    int n = snprintf(tmp, sizeof tmp, "%s%s", prefix, c->msg);
    if (n > 0) memcpy(c->msg, tmp, sizeof c->msg);
    c->msg[sizeof c->msg - 1] = '\0';
    return NULL;
}

/* ====================================================================== */
/* Sequential                                                             */
/* ====================================================================== */

tg_module *tg_nn_sequential_new(tg_model *m, const char *name)
{
    return tg__nn_module(m, TG__NN_SEQUENTIAL, "tg_nn_sequential_new", name);
}

tg_status tg_nn_sequential_add(tg_module *seq, tg_module *child)
{
    const char *fn = "tg_nn_sequential_add";
    if (!seq) return TG_ERR_INVALID;
    tg_ctx *pc = seq->model->ctx;
    if (!tg__ok(pc)) return tg_ctx_status(pc);
    if (seq->kind != TG__NN_SEQUENTIAL)
        return tg__fail(pc, TG_ERR_INVALID, "%s: %s '%s' is not a sequential", fn,
                        tg__nn_kind_name(seq->kind), seq->name);
    if (!child) return tg__fail(pc, TG_ERR_INVALID, "%s: '%s': NULL child", fn, seq->name);
    if (child->model != seq->model)
        return tg__fail(pc, TG_ERR_INVALID, "%s: '%s': child %s '%s' belongs to another model", fn,
                        seq->name, tg__nn_kind_name(child->kind), child->name);
    if (child == seq)
        return tg__fail(pc, TG_ERR_INVALID, "%s: '%s': cannot contain itself", fn, seq->name);
    if (!tg__nn_vec_push(pc, &seq->children, child)) return tg_ctx_status(pc);
    return TG_OK;
}

int tg_nn_sequential_len(const tg_module *seq)
{
    return (seq && seq->kind == TG__NN_SEQUENTIAL) ? seq->children.n : 0;
}

tg_module *tg_nn_sequential_child(const tg_module *seq, int i)
{
    return (seq && seq->kind == TG__NN_SEQUENTIAL && i >= 0 && i < seq->children.n)
               ? seq->children.v[i]
               : NULL;
}

/* ====================================================================== */
/* Dispatch                                                               */
/* ====================================================================== */

tg_tensor *tg_module_forward(tg_ctx *c, tg_module *mod, tg_tensor *x)
{
    if (!tg__nn_begin(c, "tg_module_forward", mod, x)) return NULL;
    switch (mod->kind) {
    case TG__NN_SEQUENTIAL:
        for (int i = 0, first = 1; i < mod->children.n && x; i++, first = 0) {
            tg_module *ch = mod->children.v[i];
            tg_module *next = i + 1 < mod->children.n ? mod->children.v[i + 1] : NULL;
            tg_tensor *y;
            if (ch->kind == TG__NN_CONV2D && next && next->kind == TG__NN_RELU) {
                /* a convolution and its ReLU as one op: one output tensor */
                y = tg__nn_conv2d_relu_forward(c, ch, x);
                i++;
            } else if (ch->kind == TG__NN_LINEAR && next && next->kind == TG__NN_RELU) {
                /* a linear layer and its ReLU as one op: one output tensor */
                y = tg__nn_linear_relu_forward(c, ch, x);
                i++;
            } else {
                y = tg_module_forward(c, ch, x);
            }
            /* a child's output reaches only the next child: once that has
             * run, its memory goes back if no backward reads it (a ReLU's
             * output under a max pool, say) */
            if (!first && y && y->st != x->st) tg__give_back_unread(x);
            x = y;
        }
        return x;
    case TG__NN_RNN:
    case TG__NN_LSTM:
    case TG__NN_GRU: return tg__nn_rnn_seq_forward(c, mod, x);
    case TG__NN_MHA: return tg__nn_mha_self_forward(c, mod, x);
    default: return tg__nn_layer_forward(c, mod, x);
    }
}
