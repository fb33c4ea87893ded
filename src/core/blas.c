/*
 * blas.c - the one door to CBLAS (the only file that includes cblas.h).
 *
 * tg__gemm forwards row-major GEMM to cblas_sgemm / cblas_dgemm. It takes
 * care of what BLAS itself rejects or gets wrong at the edges: empty
 * products (k == 0 is C = beta * C, with beta == 0 writing exact zeros
 * over whatever C held, NaN included), and leading dimensions that are
 * meaningless because a matrix has a single stored row (a size-1 dim of a
 * view may carry any stride, but BLAS insists on ld >= max(1, cols)).
 *
 * Tiny products (at most SMALL_GEMM multiply-adds, the 2-3-1 network's
 * layers) do not go to BLAS at all: its call, argument checks, buffer
 * locking and packing cost far more than the arithmetic. They are loops
 * that sum each dot product in double in order of k, then round once, so
 * their result does not depend on anything but the operands (small_gemm
 * says how they are laid out to vectorise).
 *
 * Threads. The context's thread budget covers GEMM too: BLAS itself runs
 * on one thread (OpenBLAS is set to one thread before every call that
 * reaches it, so its own pool never competes with ours), and a large
 * product is cut into column or row blocks that tapegrad's pool runs side
 * by side, one single-threaded BLAS call per block. The cut depends only
 * on the shape (gemm_plan), never on the thread count: OpenBLAS's results
 * do change with its own thread count and, for some shapes, with where a
 * product is cut, so a plan that followed the threads would make results
 * depend on them. With a fixed plan every element is computed by the same
 * call on the same operands whatever the count.
 *
 * Loading. libtapegrad is not linked against BLAS: the first product that
 * needs it opens it (dlopen, once per process, TG_BLAS_FILE from the build
 * or $TG_BLAS_LIB) and takes cblas_sgemm / cblas_dgemm and OpenBLAS's
 * thread-count calls from it. A program that never multiplies large
 * matrices then does not carry OpenBLAS and the Fortran runtime it pulls in
 * (about 3 MB resident) nor OpenBLAS's threads, which it starts when it is
 * loaded. When the library cannot be loaded the products run on
 * small_gemm's loops (sums in double: the same values to rounding, 3-5
 * times slower), and tg_blas_library says why.
 */
#include "core_impl.h"

#include <cblas.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TG_BLAS_FILE
#define TG_BLAS_FILE "libopenblas.so.0"
#endif

/* What the load found: the CBLAS calls (of cblas.h's types), OpenBLAS's
 * thread count calls (NULL for another BLAS), and the file, or why not. */
static struct {
    __typeof__(cblas_sgemm) *sgemm;
    __typeof__(cblas_dgemm) *dgemm;
    int (*get_threads)(void);
    void (*set_threads)(int);
    char file[1024];
    char why[2048];
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* A symbol of h as a function pointer (fp points to one): POSIX makes
 * dlsym's object pointer convertible; memcpy keeps ISO C's rules. */
static bool blas_sym(void *h, const char *name, void *fp, size_t size)
{
    void *sym = dlsym(h, name);
    if (!sym) return false;
    TG_ASSERT(size == sizeof sym);
    memcpy(fp, &sym, size);
    return true;
}

static void blas_load(void)
{
    const char *env = getenv("TG_BLAS_LIB");
    const char *file = env && *env ? env : TG_BLAS_FILE;
    if (strlen(file) >= sizeof blas.file) {
        snprintf(blas.why, sizeof blas.why, "TG_BLAS_LIB is longer than %zu bytes",
                 sizeof blas.file - 1);
        return;
    }
    memcpy(blas.file, file, strlen(file) + 1);
    void *h = dlopen(blas.file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(blas.why, sizeof blas.why, "cannot load %s: %.900s", blas.file,
                 e ? e : "dlopen failed");
        return;
    }
    const bool s = blas_sym(h, "cblas_sgemm", &blas.sgemm, sizeof blas.sgemm);
    if (!s || !blas_sym(h, "cblas_dgemm", &blas.dgemm, sizeof blas.dgemm)) {
        snprintf(blas.why, sizeof blas.why, "%s has no %s", blas.file,
                 s ? "cblas_dgemm" : "cblas_sgemm");
        blas.sgemm = NULL;
        blas.dgemm = NULL;
        dlclose(h);
        return;
    }
    if (!blas_sym(h, "openblas_get_num_threads", &blas.get_threads, sizeof blas.get_threads) ||
        !blas_sym(h, "openblas_set_num_threads", &blas.set_threads, sizeof blas.set_threads)) {
        blas.get_threads = NULL;
        blas.set_threads = NULL;
    }
}

/* Whether BLAS is there to call, loading it the first time. */
static bool blas_ready(void)
{
    pthread_once(&blas_once, blas_load);
    return blas.sgemm != NULL;
}

const char *tg_blas_library(const char **why)
{
    bool ok = blas_ready();
    if (why) *why = blas.why;
    return ok ? blas.file : NULL;
}

/* The leading dimension to hand BLAS for a row-major matrix stored as rows
 * x cols with row stride ld. With one row the stride is never used, so
 * any value becomes the smallest legal one; otherwise it must be legal. */
static int legal_ld(int64_t rows, int64_t cols, int64_t ld)
{
    int64_t min = cols > 1 ? cols : 1;
    if (rows <= 1) ld = min;
    TG_ASSERT(ld >= min); /* a used row stride below cols is a caller bug */
    TG_ASSERT(ld <= INT_MAX);
    return (int)ld;
}

/* C = beta * C over m x n with row stride ldc; beta == 0 stores zeros. */
static void scale_c(bool f64, int64_t m, int64_t n, double beta, void *cmat, int64_t ldc)
{
    if (beta == 1.0) return;
    for (int64_t i = 0; i < m; i++) {
        if (f64) {
            double *row = (double *)cmat + i * ldc;
            for (int64_t j = 0; j < n; j++) row[j] = beta == 0.0 ? 0.0 : beta * row[j];
        } else {
            float *row = (float *)cmat + i * ldc;
            float fb = (float)beta;
            for (int64_t j = 0; j < n; j++) row[j] = beta == 0.0 ? 0.0f : fb * row[j];
        }
    }
}

#define SMALL_GEMM 4096
#define SMALL_ACC 1024 /* doubles of the sums, and of B, on the stack (8 KB each) */
/* small_tiles' tile of C and depth of B: 16 KB of sums and 16 KB of B on
 * the stack. Measured without BLAS on the MLP's 128 x 784 x 512 products
 * (1 thread, GFLOP/s): 8 x 128 x 16 17-24, 16 x 64 x 32 19-22, these 21-25
 * (f64 17); the scalar loop it replaced 2.3. */
#define SMALL_TILE_ROWS 16
#define SMALL_TILE_COLS 128
#define SMALL_TILE_DEPTH 16

static inline int64_t tile_len(int64_t rest, int64_t cap) { return rest < cap ? rest : cap; }

/* How a tiny product's results are stored: C = sum, C = sum + C (alpha = 1
 * and beta = 0 or 1, every product the engine makes: a multiplication by
 * one changes no bit), or the general alpha sum + beta C. */
typedef enum { STORE_SET, STORE_ADD, STORE_AXPBY } store_mode;

/* A tiny product seen through element strides: A(i, p) at a[i * a_i +
 * p * a_p], B(p, j) at b[p * b_p + j * b_j], C(i, j) at c[i * c_i + j * c_j]. */
typedef struct {
    int64_t m, n, k;
    const void *a, *b;
    void *c;
    int64_t a_i, a_p, b_p, b_j, c_i, c_j;
    double alpha, beta;
    store_mode mode;
} small_job;

/*
 * C(i, j) = alpha sum_p A(i, p) B(p, j) + beta C(i, j), each sum in double
 * in order of p, rounded once.
 *
 * The sums are made in double into acc (m rows of n, SMALL_ACC at most),
 * then stored. Rows of up to four sums (SMALL_NARROW) keep a row's sums in
 * registers over all of p. Wider rows: B is converted to double once (k
 * rows of n) and the loop over p is the outermost, so for each p and row i
 * the products A(i, p) B(p, 0..n) are added into the row of sums, a
 * contiguous loop that GCC vectorises. Either way every sum takes its
 * terms one at a time in order of p, as the scalar definition does.
 * small_gemm puts the longer side of C along these rows. Tiles of C
 * (small_tiles) serve the shapes whose sums or B would not fit on the
 * stack. The loops are compiled for each vector width (TG__VEC_CLONES).
 */
/* The loops of small_f32 / small_f64 for rows of N <= 4 sums (so m <= 4
 * rows too): two rows at a time (each B element read and converted once
 * for both), their 2 N sums in registers over all of p, then a last row
 * alone. */
#define SMALL_NARROW(T, N)                                                              \
    {                                                                                   \
        int64_t i = 0;                                                                  \
        for (; i + 2 <= m; i += 2) {                                                    \
            const T *x0 = A + i * a_i, *x1 = x0 + a_i;                                  \
            double s0[N] = {0}, s1[N] = {0};                                            \
            for (int64_t p = 0; p < k; p++) {                                           \
                double a0 = (double)x0[p * a_p], a1 = (double)x1[p * a_p];              \
                const T *y = B + p * b_p;                                               \
                for (int q = 0; q < (N); q++) {                                         \
                    double bq = (double)y[q * b_j];                                     \
                    s0[q] += a0 * bq;                                                   \
                    s1[q] += a1 * bq;                                                   \
                }                                                                       \
            }                                                                           \
            for (int q = 0; q < (N); q++) {                                             \
                acc[i * (N) + q] = s0[q];                                               \
                acc[(i + 1) * (N) + q] = s1[q];                                         \
            }                                                                           \
        }                                                                               \
        for (; i < m; i++) {                                                            \
            const T *x = A + i * a_i;                                                   \
            double s[N] = {0};                                                          \
            for (int64_t p = 0; p < k; p++) {                                           \
                double av = (double)x[p * a_p];                                         \
                const T *y = B + p * b_p;                                               \
                for (int q = 0; q < (N); q++) s[q] += av * (double)y[q * b_j];          \
            }                                                                           \
            for (int q = 0; q < (N); q++) acc[i * (N) + q] = s[q];                      \
        }                                                                               \
    }

/* STMT for j = 0 .. n - 1, four at a time (a row of C is usually strided
 * here: its loop overhead would be most of the cost) */
#define SMALL_STORE_ROW(STMT)                                                           \
    do {                                                                                \
        int64_t j = 0;                                                                  \
        for (; j + 4 <= n; j++) {                                                       \
            STMT;                                                                       \
            j++;                                                                        \
            STMT;                                                                       \
            j++;                                                                        \
            STMT;                                                                       \
            j++;                                                                        \
            STMT;                                                                       \
        }                                                                               \
        for (; j < n; j++) STMT;                                                        \
    } while (0)

#define DEF_SMALL(T, SUF)                                                               \
    TG__VEC_CLONES static void store_##SUF(const small_job *g, const double *restrict acc) \
    {                                                                                   \
        const int64_t n = g->n, ci = g->c_i, cj = g->c_j;                               \
        if (cj == 1 && g->mode != STORE_AXPBY) { /* contiguous rows: loops that vectorise */ \
            for (int64_t i = 0; i < g->m; i++, acc += n) {                              \
                T *o = (T *)g->c + i * ci;                                              \
                if (g->mode == STORE_SET)                                               \
                    for (int64_t j = 0; j < n; j++) o[j] = (T)acc[j];                   \
                else                                                                    \
                    for (int64_t j = 0; j < n; j++) o[j] = (T)(acc[j] + (double)o[j]);  \
            }                                                                           \
            return;                                                                     \
        }                                                                               \
        for (int64_t i = 0; i < g->m; i++, acc += n) {                                  \
            T *o = (T *)g->c + i * ci;                                                  \
            switch (g->mode) {                                                          \
            case STORE_SET: SMALL_STORE_ROW(o[j * cj] = (T)acc[j]); break;              \
            case STORE_ADD: SMALL_STORE_ROW(o[j * cj] = (T)(acc[j] + (double)o[j * cj])); break; \
            default:                                                                    \
                SMALL_STORE_ROW(o[j * cj] = g->beta == 0.0                              \
                                                ? (T)(g->alpha * acc[j])                \
                                                : (T)(g->alpha * acc[j] +               \
                                                      g->beta * (double)o[j * cj]));    \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
                                                                                        \
    /* Any size, by tiles of C (SMALL_TILE_ROWS x SMALL_TILE_COLS sums), B's            \
     * rows converted to double SMALL_TILE_DEPTH at a time: each sum still              \
     * takes its terms in order of p over all of k, one rounding at the end.            \
     * The products when there is no BLAS (blas_call), 10x the speed of the             \
     * scalar loop this replaced. */                                                    \
    TG__VEC_CLONES static void small_tiles_##SUF(const small_job *g)                    \
    {                                                                                   \
        double acc_[SMALL_TILE_ROWS * SMALL_TILE_COLS];                                 \
        double bd_[SMALL_TILE_DEPTH * SMALL_TILE_COLS];                                 \
        double *restrict acc = acc_, *restrict bd = bd_;                                \
        const T *A = g->a, *B = g->b;                                                   \
        const int64_t a_i = g->a_i, a_p = g->a_p, b_p = g->b_p, b_j = g->b_j;           \
        for (int64_t j0 = 0; j0 < g->n; j0 += SMALL_TILE_COLS) {                        \
            const int64_t nj = tile_len(g->n - j0, SMALL_TILE_COLS);                    \
            for (int64_t i0 = 0; i0 < g->m; i0 += SMALL_TILE_ROWS) {                    \
                const int64_t mi = tile_len(g->m - i0, SMALL_TILE_ROWS);                \
                for (int64_t x = 0; x < mi * nj; x++) acc[x] = 0.0;                     \
                for (int64_t p0 = 0; p0 < g->k; p0 += SMALL_TILE_DEPTH) {               \
                    const int64_t pk = tile_len(g->k - p0, SMALL_TILE_DEPTH);           \
                    const T *b0 = B + p0 * b_p + j0 * b_j;                              \
                    for (int64_t p = 0; p < pk; p++)                                    \
                        for (int64_t j = 0; j < nj; j++)                                \
                            bd[p * nj + j] = (double)b0[p * b_p + j * b_j];             \
                    for (int64_t i = 0; i < mi; i++) {                                  \
                        double *restrict s = acc + i * nj;                              \
                        const T *x = A + (i0 + i) * a_i + p0 * a_p;                     \
                        for (int64_t p = 0; p < pk; p++) {                              \
                            const double av = (double)x[p * a_p];                       \
                            const double *restrict y = bd + p * nj;                     \
                            for (int64_t j = 0; j < nj; j++) s[j] += av * y[j];         \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
                small_job t = *g;                                                       \
                t.m = mi;                                                               \
                t.n = nj;                                                               \
                t.c = (T *)g->c + i0 * g->c_i + j0 * g->c_j;                            \
                store_##SUF(&t, acc);                                                   \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
                                                                                        \
    TG__VEC_CLONES static void small_##SUF(const small_job *g)                           \
    {                                                                                   \
        double bd_[SMALL_ACC], acc_[SMALL_ACC];                                         \
        double *restrict bd = bd_, *restrict acc = acc_;                                \
        const int64_t m = g->m, n = g->n, k = g->k;                                     \
        if (m * n > SMALL_ACC || k * n > SMALL_ACC) {                                   \
            small_tiles_##SUF(g);                                                       \
            return;                                                                     \
        }                                                                               \
        const T *A = g->a, *B = g->b;                                                   \
        const int64_t a_i = g->a_i, a_p = g->a_p, b_p = g->b_p, b_j = g->b_j;          \
        switch (n) {                                                                    \
        case 1: SMALL_NARROW(T, 1); break;                                              \
        case 2: SMALL_NARROW(T, 2); break;                                              \
        case 3: SMALL_NARROW(T, 3); break;                                              \
        case 4: SMALL_NARROW(T, 4); break;                                              \
        default:                                                                        \
            if (n >= k) { /* the copy with its longer side innermost */                 \
                for (int64_t p = 0; p < k; p++)                                         \
                    for (int64_t j = 0; j < n; j++)                                     \
                        bd[p * n + j] = (double)B[p * b_p + j * b_j];                   \
            } else {                                                                    \
                for (int64_t j = 0; j < n; j++)                                         \
                    for (int64_t p = 0; p < k; p++)                                     \
                        bd[p * n + j] = (double)B[p * b_p + j * b_j];                   \
            }                                                                           \
            /* p = 0 starts the sums (0 + its product, as the definition: a     \
             * product of -0 gives +0), no separate pass of zeros */            \
            for (int64_t i = 0; i < m; i++) {                                           \
                double av = (double)A[i * a_i];                                         \
                double *restrict s = acc + i * n;                                       \
                for (int64_t j = 0; j < n; j++) s[j] = 0.0 + av * bd[j];                \
            }                                                                           \
            for (int64_t p = 1; p < k; p++) {                                           \
                const double *restrict y = bd + p * n;                                  \
                for (int64_t i = 0; i < m; i++) {                                       \
                    double av = (double)A[i * a_i + p * a_p];                           \
                    double *restrict s = acc + i * n;                                   \
                    for (int64_t j = 0; j < n; j++) s[j] += av * y[j];                  \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        store_##SUF(g, acc);                                                            \
    }

DEF_SMALL(float, f32)
DEF_SMALL(double, f64)

/* C = alpha op(A) op(B) + beta C by definition, for tiny sizes. The lanes
 * run along the longer of C's two sides: when C has more rows than
 * columns the loops compute C^T = op(B)^T op(A)^T (the same sums), so
 * a 32 x 1 product is one row of 32 lanes, not 32 rows of one. */
static inline void small_gemm(bool f64, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                       double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                       double beta, void *cmat, int64_t ldc)
{
    int64_t a_i = trans_a ? 1 : lda, a_p = trans_a ? lda : 1;
    int64_t b_p = trans_b ? 1 : ldb, b_j = trans_b ? ldb : 1;
    small_job g;
    if (m > n)
        g = (small_job){n, m, k, b, a, cmat, b_j, b_p, a_p, a_i, 1, ldc, alpha, beta, 0};
    else
        g = (small_job){m, n, k, a, b, cmat, a_i, a_p, b_p, b_j, ldc, 1, alpha, beta, 0};
    g.mode = alpha != 1.0 ? STORE_AXPBY
             : beta == 0.0 ? STORE_SET
             : beta == 1.0 ? STORE_ADD
                           : STORE_AXPBY;
    if (f64) small_f64(&g);
    else small_f32(&g);
}

/* ---- blocked, threaded GEMM ------------------------------------------ */

/* A cut costs, on one thread, one more packing of the operand that is not
 * cut: about ten multiply-adds' time per element, so a fraction of about
 * 10 / (cut dimension) of the product per extra block. Two blocks need a
 * cut dimension of GEMM_CUT2_DIM (2% at most) and 2^20 multiply-adds; four
 * need GEMM_CUT4_DIM and 2^22. Blocks are whole multiples of
 * GEMM_BLOCK_ALIGN rows or columns (the last takes the rest), so every
 * block but the last runs BLAS's full-width kernels (x86 sgemm kernels
 * unroll by 16 or less) and starts on a cache line of C. 64 cut the MLP's
 * 512 x 784 x 128 weight gradient 448 / 336; 16 cuts it 400 / 384, and at
 * 2 threads it takes 0.51-0.52 ms instead of 0.57-0.61 (AMD EPYC). */
#define GEMM_CUT2_DIM 512
#define GEMM_CUT2_MACS (INT64_C(1) << 20)
#define GEMM_CUT4_DIM 1536
#define GEMM_CUT4_MACS (INT64_C(1) << 22)
#define GEMM_BLOCK_ALIGN 16

typedef struct {
    bool f64, trans_a, trans_b;
    bool cut_rows;   /* blocks of C's rows (and A's) or of its columns (and B's) */
    int64_t m, n, k; /* the whole product */
    int64_t per;     /* rows or columns per block */
    double alpha, beta;
    const char *a, *b;
    char *cmat;
    int lda, ldb, ldc;
} gemm_job;

/* The block plan of an m x n x k product: how many blocks and their size
 * along the cut dimension. Depends on the shape alone. The dimension cut is
 * the larger of m and n, so the operand packed again for every block is the
 * smaller of A and B. */
static int64_t gemm_plan(int64_t m, int64_t n, int64_t k, bool *cut_rows, int64_t *per)
{
    *cut_rows = m > n;
    int64_t dim = *cut_rows ? m : n;
    /* A, B and C each hold under 2^40 elements (they are in memory), so
     * (m n k)^2 = |A| |B| |C| < 2^120: no overflow */
    int64_t macs = m * n * k;
    int64_t blocks = 1;
    if (dim >= GEMM_CUT4_DIM && macs >= GEMM_CUT4_MACS) blocks = 4;
    else if (dim >= GEMM_CUT2_DIM && macs >= GEMM_CUT2_MACS) blocks = 2;
    int64_t p = (dim + blocks - 1) / blocks;
    p = (p + GEMM_BLOCK_ALIGN - 1) / GEMM_BLOCK_ALIGN * GEMM_BLOCK_ALIGN;
    if (p > dim) p = dim;
    *per = p;
    return (dim + p - 1) / p;
}

/* One BLAS call on the whole of the sub-product it is given; small_gemm's
 * loops when there is no BLAS. */
static void blas_call(const gemm_job *g, int64_t m, int64_t n, const void *a, const void *b,
                      void *cmat)
{
    enum CBLAS_TRANSPOSE ta = g->trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = g->trans_b ? CblasTrans : CblasNoTrans;
    if (!blas.sgemm) {
        small_gemm(g->f64, g->trans_a, g->trans_b, m, n, g->k, g->alpha, a, g->lda, b, g->ldb,
                   g->beta, cmat, g->ldc);
    } else if (g->f64) {
        blas.dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)g->k, g->alpha, a, g->lda, b,
                   g->ldb, g->beta, cmat, g->ldc);
    } else {
        blas.sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)g->k, (float)g->alpha, a,
                   g->lda, b, g->ldb, (float)g->beta, cmat, g->ldc);
    }
}

/* Blocks [first, last) of the plan, on whichever thread runs them. */
static void gemm_blocks(void *arg, int64_t first, int64_t last)
{
    const gemm_job *g = arg;
    size_t es = g->f64 ? sizeof(double) : sizeof(float);
    int64_t dim = g->cut_rows ? g->m : g->n;
    for (int64_t i = first; i < last; i++) {
        int64_t s = i * g->per, e = s + g->per < dim ? s + g->per : dim;
        if (g->cut_rows) {
            /* Rows s..e of C and of op(A): A stored m x k, or k x m when
             * transposed (then its columns). */
            const char *a = g->a + (size_t)(g->trans_a ? s : s * g->lda) * es;
            blas_call(g, e - s, g->n, a, g->b, g->cmat + (size_t)(s * g->ldc) * es);
        } else {
            /* Columns s..e of C and of op(B): B stored k x n, or n x k. */
            const char *b = g->b + (size_t)(g->trans_b ? s * g->ldb : s) * es;
            blas_call(g, g->m, e - s, g->a, b, g->cmat + (size_t)s * es);
        }
    }
}

/* BLAS runs single-threaded under tapegrad: the budget is the context's.
 * Checked before every call that reaches BLAS, on the calling thread, so an
 * application that changes OpenBLAS's count between steps cannot make our
 * results depend on it. */
static void blas_one_thread(void)
{
    if (blas.get_threads && blas.get_threads() != 1) blas.set_threads(1);
}

void tg__gemm(tg_ctx *c, bool f64, bool trans_a, bool trans_b, int64_t m, int64_t n,
              int64_t k, double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
              double beta, void *cmat, int64_t ldc)
{
    TG_ASSERT(m >= 0 && n >= 0 && k >= 0);
    TG_ASSERT(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX);
    if (m == 0 || n == 0) return;

    /* C is m x n; with one row its stride is free, as for A and B. */
    int64_t ldc_ok = legal_ld(m, n, ldc);
    if (k == 0) {
        scale_c(f64, m, n, beta, cmat, ldc_ok);
        return;
    }

    /* Stored shapes: A is m x k (NoTrans) or k x m (Trans); B is k x n or
     * n x k. */
    int lda_ok = trans_a ? legal_ld(k, m, lda) : legal_ld(m, k, lda);
    int ldb_ok = trans_b ? legal_ld(n, k, ldb) : legal_ld(k, n, ldb);
    if (m * n * k <= SMALL_GEMM) {
        small_gemm(f64, trans_a, trans_b, m, n, k, alpha, a, lda_ok, b, ldb_ok, beta, cmat,
                   ldc_ok);
        return;
    }

    gemm_job g = {.f64 = f64, .trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k,
                  .alpha = alpha, .beta = beta, .a = a, .b = b, .cmat = cmat, .lda = lda_ok,
                  .ldb = ldb_ok, .ldc = (int)ldc_ok};
    int64_t blocks = gemm_plan(m, n, k, &g.cut_rows, &g.per);
    if (blas_ready()) blas_one_thread();
    tg__parallel_for(c, blocks, 1, gemm_blocks, &g);
}
