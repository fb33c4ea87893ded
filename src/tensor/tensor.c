/*
 * tensor.c - tensor structs, shapes and strides, creation, data access.
 *
 * A tensor struct and (unless it is a view) its storage are allocated in
 * one context's arena. Views share the storage struct, so a version bump
 * through any view is seen by all of them.
 */
#include "iter.h"
#include "../autograd/tape.h"

#include <math.h>
#include <string.h>

const char *tg_dtype_name(tg_dtype dt)
{
    switch (dt) {
    case TG_F32: return "f32";
    case TG_F64: return "f64";
    case TG_I64: return "i64";
    }
    return "?";
}

size_t tg_dtype_size(tg_dtype dt) { return tg__valid_dtype(dt) ? tg__esize(dt) : 0; }

void tg__contig_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

const char *tg__fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape)
{
    if (!buf || n == 0) return "";
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, n - len, "[");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (len < n) snprintf(buf + len, n - len, "]");
    return buf;
}

const char *tg__describe(const tg_tensor *t, char *buf, size_t n)
{
    char sh[160];
    tg__fmt_shape(sh, sizeof sh, t->ndim, t->shape);
    if (t->name) snprintf(buf, n, "'%s' %s %s", t->name, tg_dtype_name(t->dtype), sh);
    else snprintf(buf, n, "%s %s", tg_dtype_name(t->dtype), sh);
    return buf;
}

bool tg__find_nonfinite(const tg_tensor *t, int64_t *flat, double *val)
{
    if (!tg__is_float(t->dtype)) return false;
    int64_t n = tg__numel(t->ndim, t->shape);
    bool contig = tg_is_contiguous(t);
    for (int64_t i = 0; i < n; i++) {
        double v = contig ? (t->dtype == TG_F32 ? (double)((const float *)tg__ptr(t))[i]
                                                : ((const double *)tg__ptr(t))[i])
                          : tg__get_flat(t, i);
        if (!isfinite(v)) {
            *flat = i;
            *val = v;
            return true;
        }
    }
    return false;
}

const char *tg_shape_str(const tg_tensor *t, char *buf, size_t n)
{
    if (!t) {
        if (buf && n) snprintf(buf, n, "(null)");
        return buf ? buf : "";
    }
    return tg__fmt_shape(buf, n, t->ndim, t->shape);
}

tg_status tg__check_shape(tg_ctx *c, const char *fn, int ndim, const int64_t *shape,
                          int64_t *numel)
{
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg__fail(c, TG_ERR_INVALID, "%s: ndim %d outside 0..%d", fn, ndim, TG_MAX_DIMS);
    if (ndim > 0 && !shape) return tg__fail(c, TG_ERR_INVALID, "%s: shape is NULL", fn);
    /* The product of the non-zero dims must fit even when a zero dim makes
     * the tensor empty: strides are computed from it (NumPy refuses such
     * shapes too). */
    int64_t n = 1;
    bool overflow = false, zero = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return tg__fail(c, TG_ERR_INVALID, "%s: dim %d is negative (%lld)", fn, i,
                            (long long)shape[i]);
        if (shape[i] == 0) zero = true;
        /* below 2^28 both, n * shape[i] * 8 < 2^59 fits: no division */
        else if ((n | shape[i]) >= (INT64_C(1) << 28) && n > INT64_MAX / 8 / shape[i])
            overflow = true;
        else n *= shape[i];
    }
    if (overflow) {
        char b[160];
        return tg__fail(c, TG_ERR_NOMEM, "%s: shape %s has too many elements", fn,
                        tg__fmt_shape(b, sizeof b, ndim, shape));
    }
    if (zero) n = 0;
    *numel = n;
    return TG_OK;
}

/* A tensor struct with every field zero but ctx. */
static void tensor_init(tg_tensor *t, tg_ctx *c)
{
    *t = (tg_tensor){.ctx = c};
}

static tg_tensor *tensor_struct(tg_ctx *c)
{
    tg_tensor *t = tg__arena_alloc(c, sizeof *t);
    if (t) tensor_init(t, c);
    return t;
}

/* The struct and the storage header share one arena allocation with the
 * data, which starts at the next TG__ALIGN boundary. */
#define HEAD_BYTES                                                                 \
    ((sizeof(tg_tensor) + sizeof(tg__storage) + TG__ALIGN - 1) & ~(size_t)(TG__ALIGN - 1))
/* Data of up to SMALL_MAX bytes (a scalar, a few elements) goes in the
 * header's padding, 16-aligned, instead of after it: a one-element op's
 * output then takes five cache lines of arena instead of six. No kernel
 * assumes more alignment (views start anywhere). */
#define SMALL_AT ((sizeof(tg_tensor) + sizeof(tg__storage) + 15) & ~(size_t)15)
#define SMALL_MAX (HEAD_BYTES - SMALL_AT)

/* A block given back by a backward walk: the data of a storage (never its
 * header, so tensor structs on it keep their shape). It lives where the
 * data began. */
typedef struct tg__free_block {
    struct tg__free_block *next;
    size_t size;
} tg__free_block;

_Static_assert(sizeof(tg__free_block) <= TG__RECYCLE_MIN, "a free block fits its data");

static void give_block(tg_ctx *c, char *data, size_t size)
{
    tg__free_block *b = (tg__free_block *)(void *)data;
    b->size = size;
    b->next = c->given;
    c->given = b;
}

void tg__recycle_give(tg_ctx *c, tg__storage *st)
{
    TG_ASSERT(!st->refs);
    if (!st->block) return;
    give_block(c, st->data, st->block);
    st->block = 0; /* a second give of the same storage does nothing */
}

size_t tg__release_min = TG__RECYCLE_MIN;
bool tg__release_poison = false;

void tg__recycle_release(tg_ctx *c, tg__storage *st)
{
    TG_ASSERT(st->cap >= sizeof(tg__free_block) && !st->released && !st->refs);
    if (tg__release_poison) memset(st->data, 0xff, st->cap); /* a late read shows as NaN */
    st->released = true;
    st->cand = false;
    give_block(c, st->data, st->cap);
}

void tg__recycle_settle(tg_ctx *c)
{
    while (c->given) {
        tg__free_block *b = c->given;
        c->given = b->next;
        b->next = c->free_blocks;
        c->free_blocks = b;
    }
}

void tg__recycle_untake(tg_ctx *c, void *upto)
{
    for (tg__storage *st = c->taken; st && st != upto; st = st->taken) {
        /* given back already: by a walk (block cleared) or released */
        if (st->released || (st->took_block && !st->block)) continue;
        tg__free_block *b = (tg__free_block *)(void *)st->data;
        b->size = st->cap;
        b->next = c->free_blocks;
        c->free_blocks = b;
    }
    c->taken = upto;
}

void tg__recycle_young(tg_ctx *c)
{
    for (tg__storage *st = c->young; st; st = st->young)
        if (!st->refs) tg__recycle_give(c, st);
    c->young = NULL;
}

/* The best-fitting free block of at least need bytes and at most twice as
 * many, taken off *list, with its size in *size; NULL when none fits. */
static char *take_from(tg__free_block **list, size_t need, size_t *size)
{
    tg__free_block **best = NULL;
    for (tg__free_block **p = list; *p; p = &(*p)->next) {
        size_t sz = (*p)->size;
        if (!tg__block_fits(sz, need) || (best && sz >= (*best)->size)) continue;
        best = p;
        if (sz == need) break;
    }
    if (!best) return NULL;
    tg__free_block *b = *best;
    *best = b->next;
    *size = b->size;
    return (char *)b;
}

void *tg__free_block_take(struct tg__free_block **list, size_t need)
{
    size_t size;
    return need >= sizeof(tg__free_block) ? take_from(list, need, &size) : NULL;
}

tg_tensor *tg__empty_valid(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape)
{
    size_t nbytes = (size_t)tg__numel(ndim, shape) * tg__esize(dt);
    size_t need = HEAD_BYTES + nbytes, cap = 0;
    char *mem = NULL, *data = NULL;
    if (nbytes >= TG__RECYCLE_MIN && c->free_blocks) {
        /* a block given back (by a walk, or in the forward by
         * tg_recompute_later) holds the data; the header is new */
        data = take_from(&c->free_blocks, nbytes, &cap);
        if (data && !(mem = tg__arena_alloc(c, HEAD_BYTES))) {
            tg__free_block *b = (tg__free_block *)(void *)data; /* back where it was */
            b->next = c->free_blocks;
            c->free_blocks = b;
            return NULL;
        }
    }
    const bool taken = mem != NULL; /* data is a block off the free list */
    if (!taken && nbytes <= SMALL_MAX) {
        if (!(mem = tg__arena_alloc(c, HEAD_BYTES))) return NULL;
        data = mem + SMALL_AT;
        cap = SMALL_MAX;
    } else if (!taken) {
        if (!(mem = tg__arena_alloc(c, need))) return NULL;
        data = mem + HEAD_BYTES;
        cap = tg__arena_size(need) - HEAD_BYTES; /* what the arena took for it */
    }
    tg_tensor *t = (tg_tensor *)(void *)mem;
    tg__storage *st = (tg__storage *)(void *)(mem + sizeof(tg_tensor));
    /* Every field stored once, as tensor_init would leave it, but without
     * its pass of zeros over the whole struct (this runs for every op's
     * output): shape and stride past ndim are left unset, as no reader
     * goes past ndim. */
    size_t block = c->recycling && nbytes >= TG__RECYCLE_MIN ? cap : 0;
    *st = (tg__storage){
        .data = data, .nbytes = nbytes, .cap = cap, .block = block, .counted = c->recycling};
    if (taken) {
        st->taken = c->taken;
        st->took_block = block != 0;
        c->taken = st;
    }
    if (block) {
        st->young = c->young;
        c->young = st;
    }
    t->ctx = c;
    t->st = st;
    t->offset = 0;
    t->ndim = ndim;
    t->dtype = dt;
    t->requires_grad = false;
    t->node = NULL;
    t->grad = NULL;
    t->name = NULL;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        int64_t d = shape[i]; /* once: t->shape might alias shape, as far as C knows */
        t->shape[i] = d;
        t->stride[i] = s;
        s *= d > 1 ? d : 1;
    }
    return t;
}

tg_tensor *tg__adopt(tg_ctx *c, const tg_tensor *x, tg_dtype dt, int ndim, const int64_t *shape)
{
    const tg__storage *xs = x->st;
    const size_t nbytes = (size_t)tg__numel(ndim, shape) * tg__esize(dt);
    TG_ASSERT(tg__contig(x) && nbytes + (size_t)x->offset * tg__esize(x->dtype) <= xs->cap);
    char *mem = tg__arena_alloc(c, HEAD_BYTES);
    if (!mem) return NULL;
    tg_tensor *t = (tg_tensor *)(void *)mem;
    tg__storage *st = (tg__storage *)(void *)(mem + sizeof(tg_tensor));
    tensor_init(t, c);
    *st = (tg__storage){.data = xs->data, .nbytes = nbytes, .cap = xs->cap,
                        .block = xs->cap, .counted = true, .young = c->young};
    c->young = st;
    t->st = st;
    /* x's first element, in units of dt (x's own, or the block's start) */
    t->offset = dt == x->dtype ? x->offset : 0;
    t->ndim = ndim;
    t->dtype = dt;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    tg__contig_strides(ndim, shape, t->stride);
    return t;
}

tg_tensor *tg__empty(tg_ctx *c, const char *fn, tg_dtype dt, int ndim, const int64_t *shape)
{
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!tg__valid_dtype(dt)) {
        tg__fail(c, TG_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)dt);
        return NULL;
    }
    int64_t numel;
    if (tg__check_shape(c, fn, ndim, shape, &numel)) return NULL;
    /* numel * 8 fits in int64 (checked), so HEAD_BYTES + nbytes cannot wrap */
    return tg__empty_valid(c, dt, ndim, shape);
}

tg_tensor *tg__dense(tg_ctx *c, const char *fn, tg_tensor *t)
{
    if (!t || tg_is_contiguous(t)) return t;
    tg_tensor *d = tg__empty(c, fn, t->dtype, t->ndim, t->shape);
    if (d) tg__copy_strided(c, d, t);
    return d;
}

tg_tensor *tg__view(tg_ctx *c, const tg_tensor *base, int ndim, const int64_t *shape,
                    const int64_t *stride, int64_t offset)
{
    tg_tensor *t = tensor_struct(c);
    if (!t) return NULL;
    t->st = base->st;
    t->dtype = base->dtype;
    t->offset = offset;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    return t;
}

/* ---- creation ----------------------------------------------------------- */

tg_tensor *tg_tensor_new(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape)
{
    tg_tensor *t = tg__empty(c, "tg_tensor_new", dt, ndim, shape);
    if (t) memset(t->st->data, 0, t->st->nbytes);
    return t;
}

tg_tensor *tg_tensor_from(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape,
                          const void *data)
{
    if (tg__ok(c) && !data) {
        tg__fail(c, TG_ERR_INVALID, "tg_tensor_from: data is NULL");
        return NULL;
    }
    tg_tensor *t = tg__empty(c, "tg_tensor_from", dt, ndim, shape);
    if (t && t->st->nbytes) memcpy(t->st->data, data, t->st->nbytes);
    return t;
}

static void fill(tg_tensor *t, double v)
{
    int64_t n = tg__numel(t->ndim, t->shape);
    switch (t->dtype) {
    case TG_F32: {
        float *p = (float *)t->st->data;
        for (int64_t i = 0; i < n; i++) p[i] = (float)v;
        break;
    }
    case TG_F64: {
        double *p = (double *)t->st->data;
        for (int64_t i = 0; i < n; i++) p[i] = v;
        break;
    }
    case TG_I64: {
        int64_t *p = (int64_t *)t->st->data;
        int64_t iv = (isfinite(v) && fabs(v) < 9.2e18) ? (int64_t)v : 0;
        for (int64_t i = 0; i < n; i++) p[i] = iv;
        break;
    }
    }
}

tg_tensor *tg_full(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, double v)
{
    tg_tensor *t = tg__empty(c, "tg_full", dt, ndim, shape);
    if (t) fill(t, v);
    return t;
}

tg_tensor *tg_scalar(tg_ctx *c, tg_dtype dt, double v)
{
    tg_tensor *t = tg__empty(c, "tg_scalar", dt, 0, NULL);
    if (t) fill(t, v);
    return t;
}

tg_tensor *tg_zeros_like(tg_ctx *c, const tg_tensor *like)
{
    if (tg__ok(c) && !like) {
        tg__fail(c, TG_ERR_INVALID, "tg_zeros_like: tensor is NULL");
        return NULL;
    }
    if (!like) return NULL;
    tg_tensor *t = tg__empty(c, "tg_zeros_like", like->dtype, like->ndim, like->shape);
    if (t) memset(t->st->data, 0, t->st->nbytes);
    return t;
}

tg_tensor *tg_arange(tg_ctx *c, tg_dtype dt, double start, double stop, double step)
{
    if (!tg__ok(c)) return NULL;
    if (!isfinite(start) || !isfinite(stop) || !isfinite(step) || step == 0) {
        tg__fail(c, TG_ERR_INVALID, "tg_arange: need finite start, stop and a non-zero step "
                                    "(got %g, %g, %g)", start, stop, step);
        return NULL;
    }
    double count = ceil((stop - start) / step);
    if (!(count > 0)) count = 0;
    if (count > 9.0e15) {
        tg__fail(c, TG_ERR_NOMEM, "tg_arange: %g elements", count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    tg_tensor *t = tg__empty(c, "tg_arange", dt, 1, &n);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) tg__set_flat(t, i, start + (double)i * step);
    return t;
}

static tg_tensor *random_tensor(tg_ctx *c, const char *fn, tg_dtype dt, int ndim,
                                const int64_t *shape, bool normal)
{
    if (tg__ok(c) && tg__valid_dtype(dt) && !tg__is_float(dt)) {
        tg__fail(c, TG_ERR_DTYPE, "%s: dtype %s is not floating", fn, tg_dtype_name(dt));
        return NULL;
    }
    tg_tensor *t = tg__empty(c, fn, dt, ndim, shape);
    if (!t) return NULL;
    int64_t n = tg__numel(ndim, shape);
    for (int64_t i = 0; i < n; i++) {
        double v = normal ? tg__rng_normal(c->rng) : tg__rng_uniform(c->rng);
        if (dt == TG_F32) {
            float f = (float)v;
            if (!normal && f >= 1.0f) f = nextafterf(1.0f, 0.0f); /* keep [0, 1) */
            ((float *)t->st->data)[i] = f;
        } else {
            ((double *)t->st->data)[i] = v;
        }
    }
    return t;
}

tg_tensor *tg_rand(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape)
{
    return random_tensor(c, "tg_rand", dt, ndim, shape, false);
}

tg_tensor *tg_randn(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape)
{
    return random_tensor(c, "tg_randn", dt, ndim, shape, true);
}

/* ---- inspection ----------------------------------------------------------- */

int tg_ndim(const tg_tensor *t) { return t ? t->ndim : -1; }
const int64_t *tg_shape(const tg_tensor *t) { return t ? t->shape : NULL; }
const int64_t *tg_strides(const tg_tensor *t) { return t ? t->stride : NULL; }
int64_t tg_numel(const tg_tensor *t) { return t ? tg__numel(t->ndim, t->shape) : 0; }
tg_dtype tg_tensor_dtype(const tg_tensor *t) { return t ? t->dtype : TG_F32; }
tg_ctx *tg_tensor_ctx(const tg_tensor *t) { return t ? t->ctx : NULL; }

bool tg_is_contiguous(const tg_tensor *t) { return t && tg__contig(t); }

bool tg__overlaps(const tg_tensor *t)
{
    /* Sort the dims by stride; a view reaches an element twice iff some
     * stride is 0 on a dim of size > 1, or a stride is smaller than the span
     * of all smaller-stride dims. */
    int64_t st[TG_MAX_DIMS], sh[TG_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) return false;
        if (t->shape[i] == 1) continue;
        int64_t s = t->stride[i] < 0 ? -t->stride[i] : t->stride[i];
        if (s == 0) return true;
        int j = k++;
        while (j > 0 && st[j - 1] > s) {
            st[j] = st[j - 1];
            sh[j] = sh[j - 1];
            j--;
        }
        st[j] = s;
        sh[j] = t->shape[i];
    }
    int64_t span = 1;
    for (int i = 0; i < k; i++) {
        if (st[i] < span) return true;
        span = st[i] * (sh[i] - 1) + span;
    }
    return false;
}

int64_t tg__flat_offset(const tg_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t n = t->shape[d];
        off += (i % n) * t->stride[d];
        i /= n;
    }
    return off * (int64_t)tg__esize(t->dtype);
}

double tg__get_flat(const tg_tensor *t, int64_t i)
{
    const char *p = tg__ptr(t) + tg__flat_offset(t, i);
    switch (t->dtype) {
    case TG_F32: return *(const float *)p;
    case TG_F64: return *(const double *)p;
    case TG_I64: return (double)*(const int64_t *)p;
    }
    return NAN;
}

void tg__set_flat(tg_tensor *t, int64_t i, double v)
{
    char *p = tg__ptr(t) + tg__flat_offset(t, i);
    switch (t->dtype) {
    case TG_F32: *(float *)p = (float)v; break;
    case TG_F64: *(double *)p = v; break;
    case TG_I64: *(int64_t *)p = (isfinite(v) && fabs(v) < 9.2e18) ? (int64_t)v : 0; break;
    }
}

double tg_item(const tg_tensor *t)
{
    if (!t || tg__numel(t->ndim, t->shape) != 1 || t->st->released) return NAN;
    return tg__get_flat(t, 0);
}

double tg_get(const tg_tensor *t, const int64_t *index)
{
    if (!t || (t->ndim > 0 && !index) || t->st->released) return NAN;
    int64_t flat = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (index[d] < 0 || index[d] >= t->shape[d]) return NAN;
        flat = flat * t->shape[d] + index[d];
    }
    return tg__get_flat(t, flat);
}

void *tg_data(tg_tensor *t)
{
    if (!t || !tg_is_contiguous(t) || tg__numel(t->ndim, t->shape) == 0 || t->st->released)
        return NULL;
    return tg__ptr(t);
}

tg_status tg_tensor_set_name(tg_tensor *t, const char *name)
{
    if (!t) return TG_ERR_INVALID;
    if (!name) {
        t->name = NULL;
        return TG_OK;
    }
    size_t n = strnlen(name, 127);
    char *copy = tg__arena_alloc(t->ctx, n + 1);
    if (!copy) return TG_ERR_NOMEM;
    memcpy(copy, name, n);
    copy[n] = '\0';
    t->name = copy;
    return TG_OK;
}

const char *tg_tensor_name(const tg_tensor *t) { return t ? t->name : NULL; }

void tg_tensor_bump_version(tg_tensor *t)
{
    if (t) tg__bump_version(t->st);
}

/* Row-major copy between t and a flat buffer, through t's strides. */
static void copy_flat(tg_tensor *t, char *buf, bool out)
{
    int64_t n = tg__numel(t->ndim, t->shape);
    size_t es = tg__esize(t->dtype);
    if (tg_is_contiguous(t)) {
        if (out) memcpy(buf, tg__ptr(t), (size_t)n * es);
        else memcpy(tg__ptr(t), buf, (size_t)n * es);
        return;
    }
    int64_t idx[TG_MAX_DIMS] = {0};
    char *base = tg__ptr(t);
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        if (out) memcpy(buf + (size_t)i * es, base + off * (int64_t)es, es);
        else memcpy(base + off * (int64_t)es, buf + (size_t)i * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) {
                off += t->stride[d];
                break;
            }
            off -= t->stride[d] * (t->shape[d] - 1);
            idx[d] = 0;
        }
    }
}

tg_status tg_copy_out(const tg_tensor *t, void *dst, size_t nbytes)
{
    if (!t || (!dst && nbytes)) return TG_ERR_INVALID;
    if ((size_t)tg__numel(t->ndim, t->shape) * tg__esize(t->dtype) != nbytes)
        return TG_ERR_SHAPE;
    if (t->st->released) return TG_ERR_MISUSE;
    if (nbytes) copy_flat((tg_tensor *)t, dst, true);
    return TG_OK;
}

tg_status tg_copy_in(tg_tensor *t, const void *src, size_t nbytes)
{
    if (!t || (!src && nbytes)) return TG_ERR_INVALID;
    if ((size_t)tg__numel(t->ndim, t->shape) * tg__esize(t->dtype) != nbytes)
        return TG_ERR_SHAPE;
    if (t->st->released) return TG_ERR_MISUSE;
    if (tg__overlaps(t)) return TG_ERR_INVALID;
    if (nbytes) copy_flat(t, (char *)src, false);
    tg__bump_version(t->st);
    return TG_OK;
}

/* ---- strided copy with conversion --------------------------------------- */

#define COPY_KERNEL(NAME, TO, TI)                                                   \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)              \
    {                                                                               \
        (void)aux;                                                                  \
        char *o = p[0];                                                             \
        const char *x = p[1];                                                       \
        if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI)) {          \
            TO *oo = (TO *)o;                                                       \
            const TI *xx = (const TI *)x;                                           \
            for (int64_t i = 0; i < n; i++) oo[i] = (TO)xx[i];                      \
        } else {                                                                    \
            for (int64_t i = 0; i < n; i++)                                         \
                *(TO *)(o + i * s[0]) = (TO) * (const TI *)(x + i * s[1]);          \
        }                                                                           \
    }
COPY_KERNEL(copy_f32_f32, float, float)
COPY_KERNEL(copy_f64_f64, double, double)
COPY_KERNEL(copy_i64_i64, int64_t, int64_t)
COPY_KERNEL(copy_f32_f64, float, double)
COPY_KERNEL(copy_f64_f32, double, float)

void tg__copy_strided(tg_ctx *c, tg_tensor *dst, const tg_tensor *src)
{
    tg__ew_kernel k = NULL;
    if (dst->dtype == src->dtype)
        k = dst->dtype == TG_F32 ? copy_f32_f32 : dst->dtype == TG_F64 ? copy_f64_f64
                                                                       : copy_i64_i64;
    else if (dst->dtype == TG_F32 && src->dtype == TG_F64) k = copy_f32_f64;
    else if (dst->dtype == TG_F64 && src->dtype == TG_F32) k = copy_f64_f32;
    TG_ASSERT(k != NULL);
    tg_tensor *ops[2] = {dst, (tg_tensor *)src};
    tg__ew_apply(c, 2, ops, k, NULL);
}
