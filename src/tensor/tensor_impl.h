/*
 * tensor_impl.h - the tensor struct and the helpers kernels share.
 * Library-internal.
 */
#ifndef TG_TENSOR_IMPL_H
#define TG_TENSOR_IMPL_H

#include "../core/core_impl.h"
#include "tapegrad/tensor.h"

#include <stdatomic.h>

struct tg__node;

typedef struct tg__storage {
    char *data;
    size_t nbytes;
    uint64_t version; /* bumped by every in-place change */
    size_t block;     /* bytes of its arena block when a backward walk may
                         give the block back for reuse (tg__recycle_give),
                         else 0 */
    size_t cap;       /* bytes of the arena block data starts (data alone,
                         never the tensor struct or this header), when
                         tg__empty_valid made it, else 0 */
    uint32_t refs;    /* that walk's gradient slots and pending jobs using it
                         (counted only when counted is set) */
    uint32_t uses;    /* a releasing walk's nodes still to read it (see
                         tg_backward_release) */
    bool cand;        /* that walk may release it */
    bool released;    /* its data block was given back: data holds garbage */
    bool retained;    /* tg_retain: never released */
    bool took_block;  /* on c->taken with block set (else 0 from the start) */
    bool counted;     /* made by a recycling walk, whatever its size: the walk
                         counts its references in refs (only a block is given
                         back when they end; any size may take a node's
                         result in place, see c->spare_dout) */
    atomic_bool taped; /* a tape node recorded it (an input, output or saved
                          tensor): its bumps count in tg__taped_bumps. Atomic:
                          contexts on several threads may record one
                          parameter at once */
    struct tg__storage *young; /* the next older one on c->young */
    struct tg__storage *taken; /* the next older one on c->taken, when data is a
                                  block taken off the free list (see
                                  took_block) */
    const struct tg__node *remake; /* tg_recompute_later: the node whose forward
                                      refills data when a backward reads it */
} tg__storage;

struct tg_tensor {
    tg_ctx *ctx;      /* where this struct lives */
    tg__storage *st;  /* shared by views */
    int64_t offset;   /* first element, in elements from st->data */
    int64_t shape[TG_MAX_DIMS];
    int64_t stride[TG_MAX_DIMS]; /* in elements */
    int ndim;
    tg_dtype dtype;
    bool requires_grad;
    struct tg__node *node; /* the recorded op that produced it, or NULL */
    tg_tensor *grad;       /* leaves: accumulated gradient, in ctx */
    const char *name;      /* optional, in ctx's arena (tg_tensor_set_name) */
};

/* Version bumps of taped storages in the whole process. A node recorded
 * when the count had its present value has seen no in-place change of
 * anything it recorded, and the backward skips its version checks: they
 * read a storage header per input, output and saved tensor, which in a
 * chain of one-element ops were cache misses, 4% of its time. */
extern _Atomic uint64_t tg__taped_bumps;

/* Every in-place change of st's data is counted here. */
static inline void tg__bump_version(tg__storage *st)
{
    st->version++;
    if (atomic_load_explicit(&st->taped, memory_order_relaxed))
        atomic_fetch_add_explicit(&tg__taped_bumps, 1, memory_order_relaxed);
}

/* st's version for a tape node to record; st is taped from now on */
static inline uint64_t tg__taped_version(tg__storage *st)
{
    if (!atomic_load_explicit(&st->taped, memory_order_relaxed))
        atomic_store_explicit(&st->taped, true, memory_order_relaxed);
    return st->version;
}

static inline bool tg__is_float(tg_dtype dt) { return dt == TG_F32 || dt == TG_F64; }
static inline bool tg__valid_dtype(tg_dtype dt)
{
    return dt == TG_F32 || dt == TG_F64 || dt == TG_I64;
}
static inline size_t tg__esize(tg_dtype dt) { return dt == TG_F32 ? 4 : 8; }

/* Address of the first element. */
static inline char *tg__ptr(const tg_tensor *t)
{
    return t->st->data + t->offset * (int64_t)tg__esize(t->dtype);
}

static inline int64_t tg__numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* tg_is_contiguous without the NULL check, inline for the op fast paths. */
static inline bool tg__contig(const tg_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0) return true;
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

/* Validates ndim/shape ("fn: ..." messages) and returns the element count
 * through numel; TG_ERR_INVALID / TG_ERR_NOMEM (byte count overflows). */
tg_status tg__check_shape(tg_ctx *c, const char *fn, int ndim, const int64_t *shape,
                          int64_t *numel);

/* A new contiguous tensor with uninitialised data in c. Validates the shape
 * and dtype with messages naming fn. */
tg_tensor *tg__empty(tg_ctx *c, const char *fn, tg_dtype dt, int ndim,
                     const int64_t *shape);

/* t itself when contiguous (or NULL), else a contiguous copy of it in c,
 * not recorded (for kernels that read dense data). NULL with the error on
 * c when the copy cannot be made. */
tg_tensor *tg__dense(tg_ctx *c, const char *fn, tg_tensor *t);

/* tg__empty for a shape and dtype known to be valid (those of an existing
 * tensor): no validation, one arena allocation for the struct, the storage
 * and the data. NULL with TG_ERR_NOMEM on c. */
tg_tensor *tg__empty_valid(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape);

/*
 * Recycling of gradient memory inside a backward walk (backward.c). While
 * c->recycling is on, every tensor of at least TG__RECYCLE_MIN data bytes
 * that tg__empty_valid makes has st->block set and takes its block from the
 * free list first (best fit, at most twice the size). The walk counts its
 * own references in st->refs and gives the block back when the last one
 * goes, and after each node gives back the node's temporaries (made since
 * the last look, on c->young, never held). A block given back waits on
 * c->given until the walk calls tg__recycle_settle between two nodes, so
 * no node gives back and takes again the same block (which would corrupt
 * c->young). Nothing made
 * while recycling is on may reach the caller: the walk turns it off before
 * anything it makes can escape (leaf gradients, a custom op's backward).
 */
#define TG__RECYCLE_MIN 2048

/* Gives back every block made since c->young was last cleared that no slot
 * or job of the walk holds (refs == 0), and clears the list. Only for the
 * walk, between two nodes, when nothing else can read what the node made:
 * its temporaries. */
void tg__recycle_young(tg_ctx *c);

/* Whether a block of size bytes may hold need bytes: at least need, at
 * most twice as many (a larger block would be wasted on it). The rule of
 * the free list, and of the walk's other reuse of given-back memory. */
static inline bool tg__block_fits(size_t size, size_t need)
{
    return size >= need && size / 2 <= need;
}

/* The best-fitting block of at least need bytes (and at most twice as
 * many) taken off list, a free list like c->free_blocks, for scratch that
 * is no tensor's data and is never given back; NULL when none fits. */
void *tg__free_block_take(struct tg__free_block **list, size_t need);

/* Makes the blocks given back since the last call reusable. */
void tg__recycle_settle(tg_ctx *c);

/* Puts st's block (no reference left) on c's given list and clears
 * st->block, so a second call does nothing until the next allocation. Only
 * the data is given back: st and every tensor struct on it stay readable
 * (shape, dtype) until c is reset, but st->data holds garbage once anything
 * else is allocated. */
void tg__recycle_give(tg_ctx *c, tg__storage *st);

/* The smallest storage a releasing walk releases: TG__RECYCLE_MIN, so that
 * every released block can serve a recycled allocation. With
 * tg__release_poison set, released memory is filled with NaNs (0xff bytes)
 * first. Tests set both (1 and true) to check tg__ops_reads on the
 * gradient-check table's small shapes: a read the table misses shows. */
extern size_t tg__release_min;
extern bool tg__release_poison;

/* A releasing walk (tg_backward_release) gives back the data block of an
 * activation no node will read again: marks st released and puts st->cap
 * bytes at st->data on c's given list (see tg__release_poison). */
void tg__recycle_release(tg_ctx *c, tg__storage *st);

/* For a recycling walk taking over the data of x, a contiguous activation
 * (backward.c: tg__take_input, an op's output): a contiguous tensor of the
 * given dtype and shape on x's data with a storage of its own: counted,
 * its block the whole of x's (st->cap), on c->young. It starts at x's
 * offset when dt is x's dtype, else at the block's start; it must fit in
 * the block. x's storage is left as it was, for the caller to mark. NULL
 * (error on c) when the arena has no room for the header. */
tg_tensor *tg__adopt(tg_ctx *c, const tg_tensor *x, tg_dtype dt, int ndim, const int64_t *shape);

/* A new tensor struct in c sharing base's storage, with the given layout. */
tg_tensor *tg__view(tg_ctx *c, const tg_tensor *base, int ndim, const int64_t *shape,
                    const int64_t *stride, int64_t offset);

/* Row-major contiguous strides for shape. */
void tg__contig_strides(int ndim, const int64_t *shape, int64_t *stride);

/* True when some element is reached twice (a stride-0 or overlapping view). */
bool tg__overlaps(const tg_tensor *t);

/* "'fc1.weight' f32 [4,3]" (or "f32 [4,3]" without a name) into buf. */
const char *tg__describe(const tg_tensor *t, char *buf, size_t n);

/* The first NaN or infinity of a floating tensor (row-major position and
 * value); false when every element is finite or t is not floating. */
bool tg__find_nonfinite(const tg_tensor *t, int64_t *flat, double *val);

/* "[3,4]" into buf. */
const char *tg__fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape);

/* Element at logical row-major position i, as double / set from double.
 * Slow paths for tests, gradcheck and messages. */
double tg__get_flat(const tg_tensor *t, int64_t i);
void tg__set_flat(tg_tensor *t, int64_t i, double v);
/* Byte offset from tg__ptr(t) of logical row-major position i. */
int64_t tg__flat_offset(const tg_tensor *t, int64_t i);

/* Copies src into dst elementwise (same shape, any strides, same dtype or
 * float<->float conversion). Parallel for large tensors. */
void tg__copy_strided(tg_ctx *c, tg_tensor *dst, const tg_tensor *src);

#endif /* TG_TENSOR_IMPL_H */
