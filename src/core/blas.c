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
 * locking and packing cost far more than the arithmetic. They are plain
 * loops that sum each dot product in double in order of k, then round
 * once, so their result does not depend on anything but the operands.
 */
#include "core_impl.h"

#include <cblas.h>
#include <limits.h>

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

#define SMALL_GEMM_LOOP(T)                                                              \
    do {                                                                                \
        const T *A = a, *B = b;                                                         \
        T *C = cmat;                                                                    \
        int64_t ai = trans_a ? 1 : lda, ap = trans_a ? lda : 1;                         \
        int64_t bp = trans_b ? 1 : ldb, bj = trans_b ? ldb : 1;                         \
        for (int64_t i = 0; i < m; i++) {                                               \
            for (int64_t j = 0; j < n; j++) {                                           \
                double acc = 0;                                                         \
                const T *x = A + i * ai, *y = B + j * bj;                               \
                for (int64_t p = 0; p < k; p++) acc += (double)x[p * ap] * (double)y[p * bp]; \
                T *o = C + i * ldc + j;                                                 \
                *o = beta == 0.0 ? (T)(alpha * acc) : (T)(alpha * acc + beta * (double)*o); \
            }                                                                           \
        }                                                                               \
    } while (0)

/* C = alpha op(A) op(B) + beta C by definition, for tiny sizes. */
static void small_gemm(bool f64, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                       double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                       double beta, void *cmat, int64_t ldc)
{
    if (f64) SMALL_GEMM_LOOP(double);
    else SMALL_GEMM_LOOP(float);
}

void tg__gemm(bool f64, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
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
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;

    if (f64) {
        cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, lda_ok, b,
                    ldb_ok, beta, cmat, (int)ldc_ok);
    } else {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, (float)alpha, a, lda_ok,
                    b, ldb_ok, (float)beta, cmat, (int)ldc_ok);
    }
}
