/*
 * blas_load.c - when and how tapegrad loads its BLAS (tg_blas_library in
 * core.h). A program of its own, not a Check suite: whether a library is
 * mapped is a property of the whole process, which the suites' runner
 * (forking or not) would blur. One mode per run (meson runs each):
 *
 *   lazy     nothing maps a BLAS until a product needs one: small products,
 *            forward and backward, leave none mapped; the first large one
 *            loads the library tg_blas_library names, and it is mapped.
 *   missing  TG_BLAS_LIB names no file: tg_blas_library gives NULL and
 *            says why, and large products, forward and backward, f32 and
 *            f64, through transposed views, come out right on tapegrad's
 *            own loops.
 *   nocblas  TG_BLAS_LIB names a library without CBLAS (zlib): the same.
 *   toolong  TG_BLAS_LIB longer than a path tapegrad keeps: the same.
 *   race     four threads, each with its own context, make their first
 *            large products at once: one load, every result right.
 *
 * Values are checked against sums in long double to a relative 1e-5
 * (f32) or 1e-12 (f64). Prints every failed check; exits non-zero if one
 * failed.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

static atomic_int n_failed;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            n_failed++;                                                                   \
            fprintf(stderr, "blas_load: FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/* Whether a mapping of this process comes from a library whose name
 * contains "blas" (libopenblas, libblas, libcblas; not this program), or,
 * with path, from that file. */
static bool blas_mapped(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[4352];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        const char *name = strchr(line, '/');
        if (!name) continue;
        line[strcspn(line, "\n")] = '\0';
        const char *base = strrchr(name, '/') + 1;
        found = path ? strcmp(name, path) == 0
                     : strncmp(base, "lib", 3) == 0 && strstr(base, "blas") != NULL;
    }
    fclose(f);
    return found;
}

/* |got - want| <= tol max(1, |want|) */
static bool near(long double got, long double want, long double tol)
{
    long double d = got - want, w = want < 0 ? -want : want;
    return (d < 0 ? -d : d) <= tol * (w > 1 ? w : 1);
}

/*
 * y = sum(a^T b) with a stored [k, m] (so the product reads a transposed
 * view) and b [k, n]; checks y, one element of the product, and a's
 * gradient (d sum / d a[p][i] = sum_j b[p][j]). m n k is far above the
 * 4,096 multiply-adds of tapegrad's own small loops.
 */
static void check_product(tg_dtype dt, int64_t m, int64_t n, int64_t k)
{
    tg_ctx *c = tg_ctx_new();
    CHECK(c != NULL, "no context");
    if (!c) return;
    const long double tol = dt == TG_F32 ? 1e-5L : 1e-12L;
    tg_ctx_seed(c, 7);
    tg_tensor *a = tg_randn(c, dt, 2, (const int64_t[]){k, m});
    tg_tensor *b = tg_randn(c, dt, 2, (const int64_t[]){k, n});
    tg_set_requires_grad(a, true);
    tg_tensor *p = tg_matmul(c, tg_transpose(c, a, 0, 1), b);
    tg_tensor *y = tg_sum(c, p);
    CHECK(tg_backward(c, y) == TG_OK, "%s", tg_ctx_errmsg(c));
    tg_tensor *ga = tg_grad(a);
    if (tg_ctx_status(c) != TG_OK || !ga) {
        CHECK(false, "%s", tg_ctx_errmsg(c));
        tg_ctx_free(c);
        return;
    }
    long double total = 0, p00 = 0;
    for (int64_t q = 0; q < k; q++) {
        long double row_b = 0;
        for (int64_t j = 0; j < n; j++) row_b += tg_get(b, (const int64_t[]){q, j});
        for (int64_t i = 0; i < m; i++) total += tg_get(a, (const int64_t[]){q, i}) * row_b;
        p00 += (long double)tg_get(a, (const int64_t[]){q, 0}) * tg_get(b, (const int64_t[]){q, 0});
        CHECK(near(tg_get(ga, (const int64_t[]){q, m - 1}), row_b, tol), "grad row %lld",
              (long long)q);
    }
    CHECK(near(tg_get(p, (const int64_t[]){0, 0}), p00, tol), "p[0][0] %.17g against %.17Lg",
          tg_get(p, (const int64_t[]){0, 0}), p00);
    CHECK(near(tg_item(y), total, tol * (long double)(m * n)), "sum %.17g against %.17Lg",
          tg_item(y), total);
    tg_ctx_free(c);
}

/* A small product, forward and backward: 4 x 8 x 6 multiply-adds. */
static void small_product(void)
{
    tg_ctx *c = tg_ctx_new();
    tg_tensor *a = tg_randn(c, TG_F32, 2, (const int64_t[]){4, 6});
    tg_tensor *b = tg_randn(c, TG_F32, 2, (const int64_t[]){6, 8});
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    CHECK(tg_backward(c, tg_sum(c, tg_matmul(c, a, b))) == TG_OK, "%s", tg_ctx_errmsg(c));
    tg_ctx_free(c);
}

/* A load that must fail: NULL, a reason naming expect, and right values. */
static void check_fallback(const char *expect)
{
    const char *why = NULL;
    const char *file = tg_blas_library(&why);
    CHECK(file == NULL, "loaded %s", file);
    CHECK(why && strstr(why, expect), "reason '%s' lacks '%s'", why ? why : "(null)", expect);
    CHECK(!blas_mapped(NULL), "a BLAS is mapped");
    check_product(TG_F32, 96, 80, 70);
    /* 40 x 530 x 64: cut in two blocks; tiles of the loops left over on every side */
    check_product(TG_F64, 40, 530, 64);
    CHECK(tg_blas_library(NULL) == NULL, "loaded on a second call");
}

static void *racer(void *arg)
{
    (void)arg;
    check_product(TG_F32, 96, 80, 70);
    check_product(TG_F64, 40, 530, 64);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "lazy") == 0) {
        CHECK(!blas_mapped(NULL), "a BLAS is mapped at start");
        small_product();
        CHECK(!blas_mapped(NULL), "a small product mapped a BLAS");
        check_product(TG_F32, 96, 80, 70);
        const char *why = NULL, *file = tg_blas_library(&why);
        CHECK(file != NULL, "no BLAS: %s", why);
        CHECK(why && *why == '\0', "reason '%s' after a load", why ? why : "(null)");
        char real[4096];
        CHECK(file && realpath(file, real) && blas_mapped(real), "%s is not mapped", file);
        check_product(TG_F64, 40, 530, 64);
    } else if (strcmp(mode, "missing") == 0) {
        setenv("TG_BLAS_LIB", "/nonexistent/libnothing.so", 1);
        check_fallback("cannot load /nonexistent/libnothing.so");
    } else if (strcmp(mode, "nocblas") == 0) {
        setenv("TG_BLAS_LIB", "libz.so.1", 1);
        check_fallback("libz.so.1 has no cblas_sgemm");
    } else if (strcmp(mode, "toolong") == 0) {
        char path[2000];
        memset(path, 'x', sizeof path - 1);
        path[sizeof path - 1] = '\0';
        setenv("TG_BLAS_LIB", path, 1);
        check_fallback("TG_BLAS_LIB is longer than");
    } else if (strcmp(mode, "race") == 0) {
        pthread_t t[4];
        int started = 0;
        for (; started < 4; started++)
            if (pthread_create(&t[started], NULL, racer, NULL) != 0) break;
        CHECK(started == 4, "started %d threads", started);
        for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
        const char *why = NULL;
        CHECK(tg_blas_library(&why) != NULL, "no BLAS: %s", why);
    } else {
        fprintf(stderr, "usage: %s lazy|missing|nocblas|toolong|race\n", argv[0]);
        return 2;
    }
    return n_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
