/*
 * checkpoint.c - a training run's whole state (model, optimizer, batcher,
 * RNG, metadata) in one safetensors file, saved atomically and restored
 * all or nothing.
 *
 * Both directions work in a scratch context built on the caller's
 * allocator and freed before returning, so repeated saves and loads leave
 * nothing behind in any arena. The file layer (tg_safetensors_write /
 * _read) does the atomic write and the validation of the bytes; this file
 * maps the run's objects to names and checks every entry before anything
 * is written back.
 */
#include "io_impl.h"

#include <inttypes.h>
#include <string.h>

#include "tapegrad/data.h"
#include "tapegrad/io.h"
#include "tapegrad/nn.h"
#include "tapegrad/optim.h"

#define OPTIM_PREFIX "optim."
#define BATCHER_NAME "batcher.state"
#define RNG_NAME "rng.state"
#define FORMAT_NAME "tapegrad.checkpoint"
#define FORMAT_VERSION "1"

static const char *const reserved_meta[] = {"format", "format_version", "optimizer"};
enum { N_RESERVED = sizeof reserved_meta / sizeof reserved_meta[0] };

/* A context for temporaries on c's allocator, one thread, small blocks. */
static tg_ctx *scratch_new(tg_ctx *c, const char *fn)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.alloc = c->alloc;
    o.alloc_ud = c->alloc_ud;
    o.arena_chunk = 64 * 1024;
    o.n_threads = 1;
    tg_ctx *s = tg_ctx_new_opts(&o);
    if (!s) tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    return s;
}

/* Records on c the error another context holds (unless c is that context)
 * and returns it. */
static tg_status forward(tg_ctx *c, const tg_ctx *from, tg_status st)
{
    if (from && from != c && from->status != TG_OK) return tg__fail(c, from->status, "%s", from->msg);
    if (c->status != TG_OK) return c->status;
    return st;
}

/* The error recorded on c during the call (c held none when it began) made
 * to name the checkpoint function even when an inner one recorded it:
 * "tg_checkpoint_load: tg_model_load: ...". Returns st. */
static tg_status finish(tg_ctx *c, const char *fn, tg_status st)
{
    size_t lf = strlen(fn);
    if (c->status != TG_OK && strncmp(c->msg, fn, lf) != 0) {
        char tmp[sizeof c->msg];
        snprintf(tmp, sizeof tmp, "%s: %.*s", fn, (int)(sizeof tmp - lf - 3), c->msg);
        memcpy(c->msg, tmp, sizeof tmp);
    }
    return st;
}

static int64_t model_count(const tg_model *m)
{
    return m ? (int64_t)tg_model_nparams(m) + tg_model_nbuffers(m) : 0;
}

/* The i-th registered tensor of m: parameters first, then buffers. */
static tg_tensor *model_entry(const tg_model *m, int i)
{
    int np = tg_model_nparams(m);
    return i < np ? tg_model_param(m, i) : tg_model_buffer(m, i - np);
}

static char *scratch_strcat(tg_ctx *s, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = tg__arena_alloc(s, la + lb + 1);
    if (!p) return NULL;
    memcpy(p, a, la);
    memcpy(p + la, b, lb + 1);
    return p;
}

/* An I64 [n] tensor of s holding the bit patterns of w[0..n-1]. */
static tg_tensor *words_tensor(tg_ctx *s, const uint64_t *w, int n)
{
    int64_t v[8], shape[1] = {n};
    memcpy(v, w, (size_t)n * sizeof *w);
    return tg_tensor_from(s, TG_I64, 1, shape, v);
}

tg_status tg_checkpoint_save(tg_ctx *c, const char *path, const tg_checkpoint *ck)
{
    const char *fn = "tg_checkpoint_save";
    if (!c) return TG_ERR_INVALID;
    if (c->status != TG_OK) return c->status;
    if (!path || !ck || ck->n_meta < 0 || (ck->n_meta > 0 && (!ck->meta_keys || !ck->meta_values)))
        return tg__fail(c, TG_ERR_INVALID,
                        "%s: NULL path or checkpoint, or bad metadata arrays", fn);
    for (int i = 0; i < ck->n_meta; i++) {
        if (!ck->meta_keys[i] || !ck->meta_values[i])
            return tg__fail(c, TG_ERR_INVALID, "%s: metadata entry %d is NULL", fn, i);
        for (int r = 0; r < N_RESERVED; r++)
            if (strcmp(ck->meta_keys[i], reserved_meta[r]) == 0)
                return tg__fail(c, TG_ERR_INVALID, "%s: metadata key '%s' is reserved", fn,
                                reserved_meta[r]);
    }
    int n_optim = 0;
    if (ck->optim) {
        n_optim = tg_optim_state_count(ck->optim);
        if (n_optim < 0) return finish(c, fn, forward(c, tg_optim_ctx(ck->optim), TG_ERR_INVALID));
    }
    int64_t n_model = model_count(ck->model);
    int64_t total = n_model + n_optim + (ck->batcher != NULL) + (ck->rng != NULL);
    if (total > INT32_MAX) return tg__fail(c, TG_ERR_INVALID, "%s: too many tensors", fn);

    tg_ctx *s = scratch_new(c, fn);
    if (!s) return TG_ERR_NOMEM;
    tg_tensor **t = tg__arena_calloc(s, (size_t)total + 1, sizeof *t);
    const char **name = tg__arena_calloc(s, (size_t)total + 1, sizeof *name);
    const char **mk = tg__arena_calloc(s, (size_t)ck->n_meta + N_RESERVED, sizeof *mk);
    const char **mv = tg__arena_calloc(s, (size_t)ck->n_meta + N_RESERVED, sizeof *mv);
    int k = 0, nm = 0;
    tg_status st = (t && name && mk && mv) ? TG_OK : TG_ERR_NOMEM;
    for (int i = 0; i < n_model && !st; i++, k++) {
        t[k] = model_entry(ck->model, i);
        name[k] = tg_tensor_name(t[k]);
    }
    for (int i = 0; i < n_optim && !st; i++, k++) {
        const char *on = NULL;
        st = tg_optim_state_get(ck->optim, i, &on, &t[k]);
        if (st) st = forward(c, tg_optim_ctx(ck->optim), st);
        else if (!(name[k] = scratch_strcat(s, OPTIM_PREFIX, on))) st = TG_ERR_NOMEM;
    }
    if (ck->batcher && !st) {
        tg_batcher_state bs = tg_batcher_get_state(ck->batcher);
        uint64_t w[7] = {bs.rng[0], bs.rng[1], bs.rng[2], bs.rng[3], (uint64_t)bs.epoch,
                         (uint64_t)bs.pos, (uint64_t)bs.n};
        name[k] = BATCHER_NAME;
        if (!(t[k++] = words_tensor(s, w, 7))) st = TG_ERR_NOMEM;
    }
    if (ck->rng && !st) {
        uint64_t w[4];
        tg_ctx_get_rng(ck->rng, w);
        name[k] = RNG_NAME;
        if (!(t[k++] = words_tensor(s, w, 4))) st = TG_ERR_NOMEM;
    }
    if (!st) {
        mk[nm] = "format", mv[nm++] = FORMAT_NAME;
        mk[nm] = "format_version", mv[nm++] = FORMAT_VERSION;
        if (ck->optim) mk[nm] = "optimizer", mv[nm++] = tg_optim_kind(ck->optim);
        for (int i = 0; i < ck->n_meta; i++) mk[nm] = ck->meta_keys[i], mv[nm++] = ck->meta_values[i];
        /* the write itself checks names: empty, duplicated (a parameter
         * called "rng.state"), reserved */
        st = tg_safetensors_write(s, path, k, t, name, nm, mk, mv);
    }
    if (st == TG_ERR_NOMEM && s->status == TG_OK)
        st = tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    st = forward(c, s, st);
    tg_ctx_free(s);
    return finish(c, fn, st);
}

/* ---- loading ------------------------------------------------------------ */

/* The file's tensor called name, checked to be I64 [n]; its words in w. */
static tg_status read_words(tg_ctx *c, const char *fn, const char *path, const tg_safetensors *f,
                            const char *name, uint64_t *w, int n)
{
    tg_tensor *t = tg_safetensors_find(f, name);
    if (!t)
        return tg__fail(c, TG_ERR_INVALID, "%s: '%s' has no tensor '%s'", fn, path, name);
    if (tg_tensor_dtype(t) != TG_I64 || tg_ndim(t) != 1 || tg_shape(t)[0] != n)
        return tg__fail(c, TG_ERR_FORMAT, "%s: '%s': '%s' must be I64 [%d]", fn, path, name, n);
    memcpy(w, tg_data(t), (size_t)n * sizeof *w);
    return TG_OK;
}

/* Checks that the file holds every tensor of the model with its shape and
 * a convertible dtype, and lists them in the model's order. */
static tg_status check_model(tg_ctx *c, const char *fn, const char *path, const tg_safetensors *f,
                             const tg_model *m, tg_tensor **src)
{
    for (int i = 0; i < model_count(m); i++) {
        tg_tensor *dst = model_entry(m, i);
        const char *nm = tg_tensor_name(dst);
        tg_tensor *t = tg_safetensors_find(f, nm);
        if (!t)
            return tg__fail(c, TG_ERR_INVALID, "%s: '%s' has no tensor '%s'", fn, path, nm);
        char a[96], b[96];
        if (tg_ndim(t) != tg_ndim(dst) ||
            memcmp(tg_shape(t), tg_shape(dst), (size_t)tg_ndim(t) * sizeof(int64_t)) != 0)
            return tg__fail(c, TG_ERR_SHAPE, "%s: '%s': '%s' is %s in the file but %s in the model",
                            fn, path, nm, tg_shape_str(t, a, sizeof a),
                            tg_shape_str(dst, b, sizeof b));
        if ((tg_tensor_dtype(t) == TG_I64) != (tg_tensor_dtype(dst) == TG_I64))
            return tg__fail(c, TG_ERR_DTYPE, "%s: '%s': '%s' is %s in the file but %s in the model",
                            fn, path, nm, tg_dtype_name(tg_tensor_dtype(t)),
                            tg_dtype_name(tg_tensor_dtype(dst)));
        src[i] = t;
    }
    return TG_OK;
}

/* The file's "optim.*" tensors, prefix stripped, into names/tensors. */
static int optim_entries(const tg_safetensors *f, const char **names, tg_tensor **tensors)
{
    int k = 0;
    size_t lp = strlen(OPTIM_PREFIX);
    for (int i = 0; i < tg_safetensors_count(f); i++) {
        const char *nm = tg_safetensors_name(f, i);
        if (strncmp(nm, OPTIM_PREFIX, lp) != 0) continue;
        names[k] = nm + lp;
        tensors[k++] = tg_safetensors_tensor(f, i);
    }
    return k;
}

tg_status tg_checkpoint_load(tg_ctx *c, const char *path, const tg_checkpoint *ck)
{
    const char *fn = "tg_checkpoint_load";
    if (!c) return TG_ERR_INVALID;
    if (c->status != TG_OK) return c->status;
    if (!path || !ck) return tg__fail(c, TG_ERR_INVALID, "%s: NULL path or checkpoint", fn);

    tg_ctx *s = scratch_new(c, fn);
    if (!s) return TG_ERR_NOMEM;
    tg_status st = TG_OK;
    tg_safetensors *f = tg_safetensors_read(s, path);
    if (!f) st = forward(c, s, TG_ERR_IO);

    /* 1. check everything that can be checked without writing */
    const char *ver = f ? tg_safetensors_meta(f, "format_version") : NULL;
    if (!st && ver && strcmp(ver, FORMAT_VERSION) != 0)
        st = tg__fail(c, TG_ERR_FORMAT, "%s: '%s' is checkpoint format version %s; this is %s", fn,
                      path, ver, FORMAT_VERSION);
    int64_t n_model = model_count(ck->model);
    int nf = tg_safetensors_count(f);
    tg_tensor **src = NULL, **ot = NULL;
    const char **on = NULL;
    if (!st) {
        src = tg__arena_calloc(s, (size_t)n_model + 1, sizeof *src);
        ot = tg__arena_calloc(s, (size_t)nf + 1, sizeof *ot);
        on = tg__arena_calloc(s, (size_t)nf + 1, sizeof *on);
        if (!src || !ot || !on) st = tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    }
    const char **mn = NULL;
    if (!st && ck->model) {
        st = check_model(c, fn, path, f, ck->model, src);
        mn = (const char **)tg__arena_calloc(s, (size_t)n_model + 1, sizeof *mn);
        for (int i = 0; mn && i < n_model; i++) mn[i] = tg_tensor_name(model_entry(ck->model, i));
        if (!st && !mn) st = tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
        /* a model whose context holds an error would refuse the load below */
        if (!st) st = forward(c, tg_model_ctx(ck->model), TG_OK);
    }
    uint64_t rng[4], bw[7];
    if (!st && ck->rng) {
        st = read_words(c, fn, path, f, RNG_NAME, rng, 4);
        if (!st && (rng[0] | rng[1] | rng[2] | rng[3]) == 0)
            st = tg__fail(c, TG_ERR_FORMAT, "%s: '%s': '%s' is all zeros", fn, path, RNG_NAME);
    }
    tg_batcher_state bs = {{0}, 0, 0, 0};
    if (!st && ck->batcher) st = read_words(c, fn, path, f, BATCHER_NAME, bw, 7);
    if (!st && ck->batcher) {
        bs = (tg_batcher_state){{bw[0], bw[1], bw[2], bw[3]},
                                (int64_t)bw[4], (int64_t)bw[5], (int64_t)bw[6]};
        /* tg_batcher_set_state's own checks, made here so that it cannot
         * refuse once the optimizer has been written; setting the current
         * state is a no-op that fails only if the batcher's context holds
         * an error */
        tg_batcher_state cur = tg_batcher_get_state(ck->batcher);
        if (bs.n != cur.n)
            st = tg__fail(c, TG_ERR_INVALID,
                          "%s: '%s': the batcher state is of %lld samples, this batcher has %lld",
                          fn, path, (long long)bs.n, (long long)cur.n);
        else if (bs.pos < 0 || bs.pos > bs.n || bs.epoch < 0 ||
                 (bs.rng[0] | bs.rng[1] | bs.rng[2] | bs.rng[3]) == 0)
            st = tg__fail(c, TG_ERR_FORMAT, "%s: '%s': an invalid batcher state", fn, path);
        else if ((st = tg_batcher_set_state(ck->batcher, &cur)) != TG_OK)
            st = tg__fail(c, st, "%s: the batcher's context holds an error", fn);
    }
    int n_optim = 0;
    if (!st && ck->optim) {
        n_optim = optim_entries(f, on, ot);
        /* allocate the state now so that loading it cannot fail for memory */
        st = tg_optim_init_state(ck->optim);
        if (st) st = forward(c, tg_optim_ctx(ck->optim), st);
    }

    /* 2. write. The model first, after copying it aside: tg_model_load
     * can still fail for memory (before writing). Then the optimizer,
     * which checks everything before writing; if it refuses, the model is
     * copied back. The batcher and the RNG were fully checked above. */
    tg_tensor **keep = NULL;
    if (!st && ck->model) {
        keep = tg__arena_calloc(s, (size_t)n_model + 1, sizeof *keep);
        for (int i = 0; keep && i < n_model; i++) {
            tg_tensor *t = model_entry(ck->model, i);
            if (!(keep[i] = tg_tensor_new(s, tg_tensor_dtype(t), tg_ndim(t), tg_shape(t)))) break;
            tg__copy_strided(s, keep[i], t);
        }
        if (s->status != TG_OK || !keep) st = forward(c, s, TG_ERR_NOMEM);
        if (!st) st = tg_model_load(ck->model, (int)n_model, mn, src, true);
        if (st) st = forward(c, tg_model_ctx(ck->model), st);
    }
    if (!st && ck->optim) {
        st = tg_optim_load_state(ck->optim, n_optim, on, ot);
        if (st) {
            st = forward(c, tg_optim_ctx(ck->optim), st);
            for (int i = 0; ck->model && i < n_model; i++) {
                tg_tensor *t = model_entry(ck->model, i);
                tg__copy_strided(s, t, keep[i]);
                tg_tensor_bump_version(t);
            }
        }
    }
    if (!st && ck->batcher) {
        st = tg_batcher_set_state(ck->batcher, &bs);
        TG_ASSERT(st == TG_OK); /* its checks were made above */
    }
    if (!st && ck->rng) st = tg_ctx_set_rng(ck->rng, rng);
    st = forward(c, s, st);
    tg_ctx_free(s);
    return finish(c, fn, st);
}
