/*
 * blas.c - the one door to CBLAS (the only file that includes cblas.h).
 *
 * tg__gemm forwards row-major GEMM to cblas_sgemm / cblas_dgemm. It takes
 * care of what BLAS itself rejects or gets wrong at the edges: empty
 * products (k == 0 is C = beta * C, with beta == 0 writing exact zeros
 * over whatever C held, NaN included), and leading dimensions that are
 * meaningless because a matrix has a single stored row (a size-1 dim of a
 * view may carry any stride, but BLAS insists on ld >= max(1, cols)).
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
