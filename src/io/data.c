/*
 * data.c - shuffled mini-batches and the row gather a training step uses
 * (see data.h; the readers are idx.c, csv.c and text.c).
 *
 * The batcher owns its RNG (xoshiro256**, the core's generator) rather than
 * drawing from a context, so the data order depends on its seed alone, not
 * on how many random numbers the model's initialisation or dropout drew.
 * Each epoch's permutation is drawn from the identity by Fisher-Yates from
 * the RNG state at the epoch's start, so that state, the epoch and the
 * position are the whole of the batcher's future: a checkpoint that saves
 * them resumes the exact same sequence. Bounded integers come from
 * rejection sampling, so every permutation is equally likely.
 *
 * Sharding (data-parallel training) changes only which slice of each
 * global batch of world * batch samples this rank takes; the permutation
 * and the state (pos counts the samples of all ranks) are the same on
 * every rank, which is what makes N ranks equal one process at N times
 * the batch, and a checkpoint restorable at any world size.
 */
#include "io_impl.h"
#include "tapegrad/data.h"

#include <string.h>

struct tg_batcher {
    tg_ctx *c; /* where errors go */
    int64_t n, batch;
    int64_t rank, world; /* sharding: this rank's slice of world * batch */
    bool shuffle, drop_last;
    uint64_t rng_epoch[4]; /* the state the current permutation was drawn from */
    uint64_t rng[4];       /* the state after drawing it: the next epoch's */
    int64_t epoch, pos; /* pos: samples of all ranks handed out this epoch */
    double weight;      /* this rank's share of the last global batch */
    int64_t *perm;      /* n indices */
};

tg_batcher_opts tg_batcher_defaults(void)
{
    tg_batcher_opts o;
    memset(&o, 0, sizeof o);
    o.batch_size = 32;
    o.shuffle = true;
    o.drop_last = false;
    o.seed = 0;
    o.rank = 0;
    o.world = 1;
    return o;
}

/* Uniform in [0, k), k >= 1, without modulo bias: of the 2^64 outputs,
 * the first 2^64 mod k are rejected, leaving a multiple of k. */
static uint64_t below(uint64_t st[4], uint64_t k)
{
    uint64_t threshold = (0 - k) % k;
    for (;;) {
        uint64_t r = tg__rng_next(st);
        if (r >= threshold) return r % k;
    }
}

/* The current epoch's permutation, from rng_epoch. */
static void draw(tg_batcher *b)
{
    memcpy(b->rng, b->rng_epoch, sizeof b->rng);
    for (int64_t i = 0; i < b->n; i++) b->perm[i] = i;
    if (!b->shuffle) return;
    for (int64_t i = b->n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(b->rng, (uint64_t)i + 1);
        int64_t t = b->perm[i];
        b->perm[i] = b->perm[j];
        b->perm[j] = t;
    }
}

tg_batcher *tg_batcher_new(tg_ctx *c, int64_t n, const tg_batcher_opts *opts)
{
    const char *fn = "tg_batcher_new";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    tg_batcher_opts o = opts ? *opts : tg_batcher_defaults();
    if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(int64_t) / 2) {
        tg__fail(c, TG_ERR_INVALID, "%s: sample count %lld is negative or too large", fn,
                 (long long)n);
        return NULL;
    }
    if (o.batch_size < 1) {
        tg__fail(c, TG_ERR_INVALID, "%s: batch_size %lld is not positive", fn,
                 (long long)o.batch_size);
        return NULL;
    }
    if (o.world == 0 && o.rank == 0) o.world = 1; /* zero-initialised options: no sharding */
    if (o.world < 1 || o.rank < 0 || o.rank >= o.world) {
        tg__fail(c, TG_ERR_INVALID, "%s: rank %d of world %d: need world >= 1 and 0 <= rank < world",
                 fn, o.rank, o.world);
        return NULL;
    }
    if (o.batch_size > INT64_MAX / o.world) {
        tg__fail(c, TG_ERR_INVALID, "%s: batch_size %lld times world %d overflows", fn,
                 (long long)o.batch_size, o.world);
        return NULL;
    }
    tg_batcher *b = tg__arena_calloc(c, 1, sizeof *b);
    int64_t *perm = tg__arena_alloc(c, (size_t)(n ? n : 1) * sizeof *perm);
    if (!b || !perm) return NULL;
    b->c = c;
    b->n = n;
    b->batch = o.batch_size;
    b->rank = o.rank;
    b->world = o.world;
    b->shuffle = o.shuffle;
    b->drop_last = o.drop_last;
    b->perm = perm;
    tg__rng_seed(b->rng_epoch, o.seed);
    draw(b);
    return b;
}

/* Samples of all ranks in one global batch. */
static int64_t global_batch(const tg_batcher *b) { return b->batch * b->world; }

/* Samples handed out per epoch. */
static int64_t served(const tg_batcher *b)
{
    return b->drop_last ? b->n - b->n % global_batch(b) : b->n;
}

int64_t tg_batcher_next(tg_batcher *b, const int64_t **idx)
{
    if (!b || !idx) return -1;
    int64_t limit = served(b);
    if (b->pos >= limit) {
        /* the end of the epoch: the next one's permutation, from where
         * this one's drawing left the RNG */
        memcpy(b->rng_epoch, b->rng, sizeof b->rng);
        draw(b);
        b->epoch++;
        b->pos = 0;
        b->weight = 0;
        *idx = NULL;
        return 0;
    }
    /* The global batch is perm[pos, pos + total); this rank's slice of it
     * is the r-th of world nearly equal contiguous parts, the first
     * total % world one longer (all exactly batch when the batch is full). */
    int64_t total = limit - b->pos < global_batch(b) ? limit - b->pos : global_batch(b);
    int64_t base = total / b->world, extra = total % b->world;
    int64_t m = base + (b->rank < extra);
    int64_t off = b->rank * base + (b->rank < extra ? b->rank : extra);
    if (m > 0) {
        *idx = b->perm + b->pos + off;
        b->weight = (double)m / (double)total;
    } else {
        /* fewer samples than ranks: keep step with a sample that counts 0 */
        *idx = b->perm + b->pos;
        m = 1;
        b->weight = 0;
    }
    b->pos += total;
    return m;
}

double tg_batcher_weight(const tg_batcher *b) { return b ? b->weight : 0; }

int64_t tg_batcher_batches(const tg_batcher *b)
{
    if (!b) return 0;
    int64_t g = global_batch(b);
    return b->drop_last ? b->n / g : b->n / g + (b->n % g != 0);
}

int64_t tg_batcher_epoch(const tg_batcher *b) { return b ? b->epoch : 0; }

tg_batcher_state tg_batcher_get_state(const tg_batcher *b)
{
    tg_batcher_state s;
    memset(&s, 0, sizeof s);
    if (!b) return s;
    memcpy(s.rng, b->rng_epoch, sizeof s.rng);
    s.epoch = b->epoch;
    s.pos = b->pos;
    s.n = b->n;
    return s;
}

tg_status tg_batcher_set_state(tg_batcher *b, const tg_batcher_state *s)
{
    const char *fn = "tg_batcher_set_state";
    if (!b) return TG_ERR_INVALID;
    tg_ctx *c = b->c;
    if (c->status != TG_OK) return c->status;
    if (!s) return tg__fail(c, TG_ERR_INVALID, "%s: state is NULL", fn);
    if (s->n != b->n)
        return tg__fail(c, TG_ERR_INVALID,
                        "%s: the state is of a batcher over %lld samples, "
                        "this one has %lld",
                        fn, (long long)s->n, (long long)b->n);
    if (s->pos < 0 || s->pos > b->n || s->epoch < 0)
        return tg__fail(c, TG_ERR_INVALID, "%s: position %lld or epoch %lld out of range", fn,
                        (long long)s->pos, (long long)s->epoch);
    if ((s->rng[0] | s->rng[1] | s->rng[2] | s->rng[3]) == 0)
        return tg__fail(c, TG_ERR_INVALID, "%s: an all-zero RNG state", fn);
    memcpy(b->rng_epoch, s->rng, sizeof b->rng_epoch);
    b->epoch = s->epoch;
    b->pos = s->pos;
    b->weight = 0;
    draw(b);
    return TG_OK;
}

/* ---- gathering rows ------------------------------------------------------------- */

tg_status tg_gather_rows(tg_ctx *c, tg_tensor *dst, const tg_tensor *src, const int64_t *idx,
                         int64_t n)
{
    const char *fn = "tg_gather_rows";
    if (!c) return TG_ERR_INVALID;
    if (c->status != TG_OK) return c->status;
    if (!dst || !src || (!idx && n > 0) || n < 0)
        return tg__fail(c, TG_ERR_INVALID, "%s: NULL tensor or indices, or a negative count", fn);
    char a[160], b[160];
    if (dst->dtype != src->dtype)
        return tg__fail(c, TG_ERR_DTYPE, "%s: dst %s and src %s differ in dtype", fn,
                        tg__describe(dst, a, sizeof a), tg__describe(src, b, sizeof b));
    bool same = dst->ndim == src->ndim && dst->ndim >= 1 && dst->shape[0] >= n;
    for (int i = 1; same && i < dst->ndim; i++) same = dst->shape[i] == src->shape[i];
    if (!same)
        return tg__fail(c, TG_ERR_SHAPE, "%s: cannot put %lld rows of %s into %s", fn, (long long)n,
                        tg__describe(src, b, sizeof b), tg__describe(dst, a, sizeof a));
    if (!tg_is_contiguous(dst) || !tg_is_contiguous(src))
        return tg__fail(c, TG_ERR_INVALID, "%s: dst and src must be contiguous", fn);
    if (dst->st == src->st) return tg__fail(c, TG_ERR_INVALID, "%s: dst and src share storage", fn);
    int64_t rows = src->shape[0];
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= rows)
            return tg__fail(c, TG_ERR_INVALID, "%s: idx[%lld] = %lld is outside [0, %lld)", fn,
                            (long long)i, (long long)idx[i], (long long)rows);
    size_t row = tg__esize(src->dtype);
    for (int i = 1; i < src->ndim; i++) row *= (size_t)src->shape[i];
    char *d = tg__ptr(dst);
    const char *s = tg__ptr(src);
    for (int64_t i = 0; i < n; i++)
        if (row) memcpy(d + (size_t)i * row, s + (size_t)idx[i] * row, row);
    tg__bump_version(dst->st);
    return TG_OK;
}
