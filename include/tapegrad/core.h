/*
 * tapegrad/core.h - contexts, status codes, the allocator hook, threads.
 *
 * A tg_ctx is an arena plus a tape plus a sticky error. Every call that
 * allocates takes the context it allocates in as its first argument.
 * Persistent things (parameters, gradients, optimizer state) live in a
 * context that is never reset; per-step things live in a step context
 * that tg_ctx_reset() empties in O(1) while keeping its memory.
 */
#ifndef TAPEGRAD_CORE_H
#define TAPEGRAD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/* Status codes                                                           */
/* ====================================================================== */

/* X(name, description): one line per kind of failure. */
#define TG_STATUS_MAP(X)                                            \
    X(OK, "ok")                                                     \
    X(ERR_INVALID, "invalid argument")                              \
    X(ERR_SHAPE, "shape mismatch")                                  \
    X(ERR_DTYPE, "unsupported or mismatched dtype")                 \
    X(ERR_NOMEM, "out of memory")                                   \
    X(ERR_MISUSE, "API misuse")                                     \
    X(ERR_IO, "I/O error")                                          \
    X(ERR_FORMAT, "malformed data")                                 \
    X(ERR_NUMERIC, "non-finite value")                              \
    X(ERR_GRADCHECK, "gradient check failed")                       \
    X(ERR_UNSUPPORTED, "not supported by this build")

#define TG__STATUS_ENUM(name, desc) TG_##name,
typedef enum { TG_STATUS_MAP(TG__STATUS_ENUM) TG_STATUS_COUNT } tg_status;
#undef TG__STATUS_ENUM

/* A short static description of s ("shape mismatch"); never NULL. */
const char *tg_status_str(tg_status s);

/* ====================================================================== */
/* Contexts                                                               */
/* ====================================================================== */

typedef struct tg_ctx tg_ctx; /* opaque */

/*
 * Allocator hook, in the style of lua_Alloc. Called with nsize > 0 to
 * allocate (ptr == NULL, osize == 0) and with nsize == 0 to free ptr
 * (osize is the size it was allocated with). Must return memory aligned
 * to at least 16 bytes, or NULL on failure. tapegrad never reallocates.
 */
typedef void *(*tg_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

typedef struct {
    tg_alloc_fn alloc;  /* NULL: malloc/free */
    void *alloc_ud;     /* passed to alloc */
    size_t arena_chunk; /* bytes of the first arena block; 0: 1 MiB */
    int n_threads;      /* kernel threads; 0: $TG_NUM_THREADS, else online CPUs */
    uint64_t seed;      /* seed of the context's RNG */
} tg_ctx_opts;

/* Default options: malloc, 1 MiB first block, automatic threads, seed 0x5eed. */
tg_ctx_opts tg_ctx_defaults(void);

/* A new context with default options. NULL only when out of memory.
 * The caller owns it; free it with tg_ctx_free(). */
tg_ctx *tg_ctx_new(void);

/* A new context with the given options (NULL: defaults). NULL when out of
 * memory or when an option is invalid (negative threads). */
tg_ctx *tg_ctx_new_opts(const tg_ctx_opts *opts);

/* Frees the context, every tensor allocated in it, its tape and its
 * threads. tg_ctx_free(NULL) does nothing. */
void tg_ctx_free(tg_ctx *c);

/* Empties the context in O(1): every tensor and tape node allocated in it
 * becomes invalid, the error and grad mode are kept, the memory is kept
 * for reuse (blocks are merged into one on the first reset after growth,
 * so a steady-state step allocates nothing). */
void tg_ctx_reset(tg_ctx *c);

/* The first error recorded since the last tg_ctx_clear_error() (TG_OK if
 * none). A NULL context reports TG_ERR_INVALID. */
tg_status tg_ctx_status(const tg_ctx *c);

/* The message of the first error ("tg_matmul: [3,4] @ [5,6]: inner dims
 * 4 != 5"), or "" when there is none. Owned by the context, valid until the
 * next clear or free. */
const char *tg_ctx_errmsg(const tg_ctx *c);

/* Forgets the sticky error, so the context can be used again. */
void tg_ctx_clear_error(tg_ctx *c);

/* Records an error on c (keeping an earlier one, as every op does) and
 * returns s. For user code such as custom ops and data loaders. */
tg_status tg_ctx_set_error(tg_ctx *c, tg_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Sets the number of threads kernels of this context may use (>= 1), GEMM
 * included: tapegrad keeps OpenBLAS itself on one thread (process-wide)
 * and runs blocks of large products on these threads. Results are
 * bit-identical whatever the count. The context's n - 1 worker threads
 * start with the first loop big enough to split (and again after a change
 * of n); on Linux each is created on one of the creating thread's CPUs
 * other than the one it runs on, then takes that thread's whole CPU set,
 * so no worker keeps a narrower affinity than its creator. TG_ERR_INVALID
 * if n < 1. */
tg_status tg_ctx_set_threads(tg_ctx *c, int n);

/* The number of threads kernels of this context use. */
int tg_ctx_threads(const tg_ctx *c);

/* Reseeds the context's RNG (used by tg_rand, tg_randn and gradcheck). */
void tg_ctx_seed(tg_ctx *c, uint64_t seed);

/* The RNG's whole state (xoshiro256**, four words), for checkpoints:
 * tg_ctx_set_rng with it continues the exact same stream of random numbers
 * (dropout masks, tg_rand, ...). get on a NULL c gives zeros. set returns
 * TG_ERR_INVALID (recorded, state unchanged) for NULL or the all-zero
 * state, which xoshiro cannot leave. */
void tg_ctx_get_rng(const tg_ctx *c, uint64_t state[4]);
tg_status tg_ctx_set_rng(tg_ctx *c, const uint64_t state[4]);

/* Arena bytes handed out since the last reset (tensors, nodes, scratch). */
size_t tg_ctx_bytes_used(const tg_ctx *c);

/* Arena bytes held from the allocator, used or not. */
size_t tg_ctx_bytes_reserved(const tg_ctx *c);

/* ====================================================================== */
/* BLAS                                                                   */
/* ====================================================================== */

/*
 * The BLAS library behind matrix products of more than 4,096
 * multiply-adds (smaller ones are tapegrad's own loops). libtapegrad is not
 * linked against it: it is loaded (dlopen) by the first product that needs
 * it, once per process, so a program that never makes one does not carry
 * it (OpenBLAS and the Fortran runtime it pulls in are about 3 MB resident,
 * and OpenBLAS starts its threads when it is loaded). The file is the one
 * the build found (OpenBLAS's libopenblas.so.0 on Debian), or the value of
 * the environment variable TG_BLAS_LIB when it is set and not empty (read
 * at the load); it must export cblas_sgemm and cblas_dgemm with 32-bit
 * integer arguments (an LP64 build: the names are looked up, their types
 * cannot be checked). tapegrad keeps an OpenBLAS on one thread (see
 * tg_ctx_set_threads); another BLAS keeps its own thread settings, and
 * results are bit-identical across thread counts only as far as it is.
 *
 * Loads the library now if nothing has yet (call it at start-up to fail
 * early) and returns its file name (static storage, for the whole
 * process), or NULL when it cannot be loaded: every product then runs on
 * tapegrad's loops, which sum in double, give the same values to rounding
 * and are 3-5 times slower (16-26 GFLOP/s on one AVX-512 core against
 * OpenBLAS's 75-100). *why, unless why is NULL, gets the reason
 * ("cannot load <file>: <dlerror's message>", "<file> has no cblas_sgemm"
 * (or cblas_dgemm), or that $TG_BLAS_LIB is too long), "" after a
 * successful load. Thread-safe; never fails otherwise.
 */
const char *tg_blas_library(const char **why);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_CORE_H */
