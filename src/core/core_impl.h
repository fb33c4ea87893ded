/*
 * core_impl.h - the context struct and the services every module uses:
 * the arena, sticky errors, the RNG and the thread pool. Library-internal.
 */
#ifndef TG_CORE_IMPL_H
#define TG_CORE_IMPL_H

#include "tapegrad/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Library bugs only: never for anything a caller passes in. */
#define TG_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) tg__assert_fail(__FILE__, __LINE__, #cond);               \
    } while (0)
_Noreturn void tg__assert_fail(const char *file, int line, const char *expr);

/* Put before a static function whose loops vectorise (the op kernels, the
 * tiny GEMMs of blas.c): GCC compiles it for AVX-512, AVX2 and the
 * baseline and picks one at load time (an ifunc). The copies give the same
 * bits: C11 mode keeps GCC from contracting a * b + c into an fma, and a
 * libm call is the same function from every copy. Other compilers and
 * targets get the baseline only. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TG__VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TG__VEC_CLONES
#endif

#define TG__ALIGN 64 /* alignment of every arena allocation */

typedef struct tg__chunk {
    struct tg__chunk *next;
    size_t size; /* usable bytes after the header */
} tg__chunk;

struct tg__node;
struct tg__pool;

typedef struct {
    struct tg__node **nodes; /* in the arena; grows by doubling */
    int64_t n, cap;
} tg__tape;

struct tg_ctx {
    tg_alloc_fn alloc;
    void *alloc_ud;
    size_t chunk_size;

    tg__chunk *head; /* every block this context holds */
    tg__chunk *cur;  /* the block allocations come from */
    char *bump;      /* next free byte of cur (TG__ALIGN-aligned) */
    char *bump_end;  /* end of cur's usable bytes, rounded down to TG__ALIGN */
    size_t used;     /* bytes handed out since the last reset */

    tg__tape tape;
    bool grad_enabled;
    bool anomaly;                        /* check every output and gradient */
    const struct tg__node *backward_of;  /* node whose backward is running */
    bool recycling;                      /* see tg__recycle_give (tensor_impl.h) */
    bool releasing;                      /* the running walk is tg_backward_release's
                                            (see tg__saved_dies) */
    struct tg__free_block *free_blocks;  /* arena blocks given back in this walk
                                            or by tg_recompute_later */
    struct tg__free_block *given;        /* ...and not yet reusable (this node's) */
    const void *spare_dout;              /* the running backward's dout when nothing
                                            else reads it (tg__ew_grad) */
    const void *spare_in;                /* an input of the running backward whose
                                            memory it may take for that input's
                                            gradient (tg__take_input) */
    void *young;                         /* recyclable storage made since the walk
                                            last looked (tg__recycle_young) */
    void *taken;                         /* storage whose data block came off
                                            free_blocks, newest first (see
                                            tg__arena_rewind) */

    tg_status status;
    char msg[512];
    const char *api; /* public function running, named in out-of-memory messages */

    uint64_t rng[4]; /* xoshiro256** state */

    int n_threads;
    struct tg__pool *pool; /* created on first parallel use */

    bool profile;           /* count ops (src/autograd/profile.c) */
    bool prof_env;          /* turned on by TG_PROFILE: report when freed */
    struct tg__prof *prof;  /* the counts, from the allocator hook */
    double prof_t;          /* time (ms) and bytes used at the last mark */
    size_t prof_used;
};

/* ---- heap through the hook (for things that outlive a reset) ---------- */
/* NULL on failure; records no error (callers such as the thread pool treat
 * failure as "run serially"). */
void *tg__heap_alloc(tg_ctx *c, size_t n);
void tg__heap_free(tg_ctx *c, void *p, size_t n);

/* ---- arena ------------------------------------------------------------ */
/* The bytes the arena takes for an n-byte allocation: n rounded up to
 * TG__ALIGN (no overflow check: callers check n first). */
static inline size_t tg__arena_size(size_t n)
{
    return (n + TG__ALIGN - 1) & ~(size_t)(TG__ALIGN - 1);
}

/* n bytes aligned to TG__ALIGN, valid until the next reset; NULL with
 * TG_ERR_NOMEM recorded on c when the allocator fails or n overflows. */
void *tg__arena_alloc_slow(tg_ctx *c, size_t n);
static inline void *tg__arena_alloc(tg_ctx *c, size_t n)
{
    /* The fast path every op takes: a bump in the current block. bump and
     * bump_end are TG__ALIGN-aligned, so n <= room implies the rounded size
     * fits too; n == 0 and oversized requests go to the slow path. */
    size_t room = (size_t)(c->bump_end - c->bump);
    if (n - 1 < room) {
        size_t need = tg__arena_size(n);
        void *p = c->bump;
        c->bump += need;
        c->used += need;
        return p;
    }
    return tg__arena_alloc_slow(c, n);
}
void *tg__arena_calloc(tg_ctx *c, size_t count, size_t size);

/* ---- errors ----------------------------------------------------------- */
/* Records s and the formatted message unless c already holds an error;
 * returns s. NULL c is allowed (nothing recorded). */
tg_status tg__fail(tg_ctx *c, tg_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
tg_status tg__vfail(tg_ctx *c, tg_status s, const char *fmt, va_list ap);

/* True when c can run ops: non-NULL and no sticky error. */
static inline bool tg__ok(const tg_ctx *c) { return c && c->status == TG_OK; }

/* ---- RNG (xoshiro256**, seeded through splitmix64) --------------------- */
void tg__rng_seed(uint64_t st[4], uint64_t seed);
uint64_t tg__rng_next(uint64_t st[4]);
double tg__rng_uniform(uint64_t st[4]); /* [0, 1), 53 bits */
double tg__rng_normal(uint64_t st[4]);  /* N(0, 1), Box-Muller */

/* ---- threads ---------------------------------------------------------- */
/*
 * fn(arg, begin, end) over [0, n) split into at most tg_ctx_threads(c)
 * contiguous ranges of at least grain items; the caller's thread runs one
 * range, the call returns when all are done. Runs serially when n < 2 *
 * grain, with one thread, or when threads cannot be started. Callers keep
 * results independent of the split (that is what makes every kernel
 * bit-identical whatever the thread count). A nested call from inside fn
 * runs serially. The split may have fewer ranges than tg_ctx_threads(c)
 * when not every thread could be started.
 */
typedef void (*tg__range_fn)(void *arg, int64_t begin, int64_t end);
void tg__parallel_split(tg_ctx *c, int64_t n, int64_t grain, tg__range_fn fn, void *arg);
static inline void tg__parallel_for(tg_ctx *c, int64_t n, int64_t grain, tg__range_fn fn,
                                    void *arg)
{
    /* the serial case inline: most calls on small tensors */
    if (n > 0 && fn && (!c || c->n_threads < 2 || n / (grain > 1 ? grain : 1) < 2)) {
        fn(arg, 0, n);
        return;
    }
    tg__parallel_split(c, n, grain, fn, arg);
}
void tg__pool_free(tg_ctx *c);
int tg__default_threads(void);

/* ---- profiling (src/autograd/profile.c) -------------------------------- */
void tg__profile_init(tg_ctx *c); /* TG_PROFILE=1: on, report when freed */
void tg__profile_free(tg_ctx *c); /* the report (TG_PROFILE) and the table */
void tg__profile_mark(tg_ctx *c); /* later charges count from now */

/* ---- blas (src/core/blas.c is the only file that includes cblas.h) ---- */
/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major, on float (f64 false)
 * or double data. lda/ldb/ldc are row strides in elements. m or n == 0
 * does nothing; k == 0 gives beta * C (exact zeros for beta == 0, even over
 * NaN). A leading dimension of a one-row matrix is ignored; any other
 * illegal stride (0, negative, overlapping rows) is the caller's to avoid
 * by copying first, and sizes above INT_MAX are a TG_ASSERT. C must not
 * alias A or B. Large products run over c's threads (c may be NULL: one
 * thread); the result is the same bits whatever the thread count. */
void tg__gemm(tg_ctx *c, bool f64, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
              double beta, void *cmat, int64_t ldc);

/* (tensor.c) For tg__arena_rewind: gives back to c's free list the data
 * block of every storage on c->taken newer than upto that has not given it
 * back itself, and leaves c->taken at upto. */
void tg__recycle_untake(tg_ctx *c, void *upto);

#endif /* TG_CORE_IMPL_H */
