/*
 * test_ops.c - forward values of every op in include/tapegrad/ops.h, in
 * TG_F32 and TG_F64, against hand and NumPy values.
 *
 * Golden values were computed with NumPy 2.4 in float64 from the same
 * inputs; each literal says which expression produced it. The f32 runs
 * compare against the same f64 values with a relative tolerance.
 *
 * Many inputs come from pattern(): (((i*7 + seed*3) % 11) - 5) * 0.25,
 * multiples of 1/4 that f32 holds exactly, so matmul results are exact in
 * both dtypes whatever the summation order. In NumPy:
 *     pat = lambda n, s: np.array([(((i*7 + s*3) % 11) - 5) * 0.25 for i in range(n)])
 * R below is (np.arange(24) * 0.5 - 3).reshape(2, 3, 4).
 *
 * Only the public API is used. Every test runs in its own context (a
 * checked fixture), so CK_FORK=no runs under valgrind stay leak-free.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* ====================================================================== */
/* Helpers                                                                */
/* ====================================================================== */

static tg_ctx *C; /* the context of the running test (fixture) */

static void ops_setup(void)
{
    C = tg_ctx_new();
    ck_assert_ptr_nonnull(C);
}

static void ops_teardown(void)
{
    tg_ctx_free(C);
    C = NULL;
}

/* The two floating dtypes, indexed by a loop test's _i. */
static const tg_dtype DTS[2] = {TG_F32, TG_F64};
#define DT (DTS[_i])
/* Relative tolerance per dtype: |got - want| <= tol * (1 + |want|). */
static double tol_of(tg_dtype dt) { return dt == TG_F32 ? 5e-6 : 1e-12; }
#define TOL (tol_of(DT))

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* A tensor of dtype dt from double values (rounded to float for TG_F32). */
static tg_tensor *mk(tg_dtype dt, int ndim, const int64_t *shape, const double *v)
{
    int64_t n = numel_of(ndim, shape);
    if (dt == TG_F64) return tg_tensor_from(C, dt, ndim, shape, v);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    tg_tensor *t = tg_tensor_from(C, dt, ndim, shape, f);
    free(f);
    return t;
}

/* pattern(i) = (((i*7 + seed*3) % 11) - 5) * 0.25, see the file comment. */
static tg_tensor *mk_pat(tg_dtype dt, int ndim, const int64_t *shape, int seed)
{
    int64_t n = numel_of(ndim, shape);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) v[i] = (double)(((i * 7 + seed * 3) % 11) - 5) * 0.25;
    tg_tensor *t = mk(dt, ndim, shape, v);
    free(v);
    return t;
}

/* R = (np.arange(24) * 0.5 - 3).reshape(2, 3, 4) */
static tg_tensor *mk_R(tg_dtype dt)
{
    double v[24];
    for (int i = 0; i < 24; i++) v[i] = i * 0.5 - 3;
    return mk(dt, TG_SHAPE(2, 3, 4), v);
}

/* All elements of t, row-major, as doubles (malloc'd; caller frees). */
static double *read_all(const tg_tensor *t)
{
    int64_t n = tg_numel(t);
    double *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    ck_assert_ptr_nonnull(out);
    if (tg_tensor_dtype(t) == TG_F64) {
        ck_assert_int_eq(tg_copy_out(t, out, (size_t)n * sizeof(double)), TG_OK);
    } else {
        float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
        ck_assert_ptr_nonnull(f);
        tg_status s = tg_copy_out(t, f, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) out[i] = f[i];
        free(f);
        ck_assert_int_eq(s, TG_OK);
    }
    return out;
}

static int close_to(double got, double want, double tol)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    if (!isfinite(got)) return 0;
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

static const char *shape_s(const tg_tensor *t, char *buf, size_t n)
{
    return tg_shape_str(t, buf, n);
}

/* Asserts that t is non-NULL, has the given shape and values. */
static void expect_at(int line, const tg_tensor *t, double tol, int ndim, const int64_t *shape,
                      const double *want)
{
    char buf[128];
    ck_assert_msg(t != NULL, "line %d: NULL result: %s", line, tg_ctx_errmsg(C));
    ck_assert_msg(tg_ndim(t) == ndim, "line %d: ndim %d, expected %d (%s)", line, tg_ndim(t),
                  ndim, shape_s(t, buf, sizeof buf));
    for (int d = 0; d < ndim; d++)
        ck_assert_msg(tg_shape(t)[d] == shape[d], "line %d: shape %s, dim %d expected %lld",
                      line, shape_s(t, buf, sizeof buf), d, (long long)shape[d]);
    int64_t n = tg_numel(t);
    ck_assert_msg(n == numel_of(ndim, shape), "line %d: numel %lld", line, (long long)n);
    double *got = read_all(t);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!close_to(got[i], want[i], tol)) bad = i;
    double g = bad >= 0 ? got[bad] : 0.0;
    free(got);
    ck_assert_msg(bad < 0, "line %d: %s element %lld: got %.17g, expected %.17g (tol %g)", line,
                  tg_dtype_name(tg_tensor_dtype(t)), (long long)bad, g, want[bad], tol);
}

/* EXPECT(t, tol, TG_SHAPE(2, 3), ((const double[]){...})) */
#define EXPECT(t, tol, ...) expect_at(__LINE__, (t), (tol), __VA_ARGS__)
#define V(...) ((const double[]){__VA_ARGS__})

/* Asserts a and b have equal shapes and values within tol. */
static void expect_same_at(int line, const tg_tensor *a, const tg_tensor *b, double tol)
{
    ck_assert_msg(a != NULL && b != NULL, "line %d: NULL: %s", line, tg_ctx_errmsg(C));
    double *want = read_all(b);
    int nd = tg_ndim(b);
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, tg_shape(b), (size_t)nd * sizeof *shape);
    /* expect_at frees nothing of ours on failure: copy to a stack buffer. */
    double buf[512];
    int64_t n = tg_numel(b);
    ck_assert_msg(n <= 512, "line %d: tensor too large for expect_same", line);
    memcpy(buf, want, (size_t)n * sizeof *buf);
    free(want);
    expect_at(line, a, tol, nd, shape, buf);
}
#define EXPECT_SAME(a, b, tol) expect_same_at(__LINE__, (a), (b), (tol))

static void expect_err_at(int line, const tg_tensor *t, tg_status want)
{
    ck_assert_msg(t == NULL, "line %d: expected NULL", line);
    ck_assert_msg(want == TG_OK ? tg_ctx_status(C) != TG_OK : tg_ctx_status(C) == want,
                  "line %d: status %s, expected %s (%s)", line, tg_status_str(tg_ctx_status(C)),
                  want == TG_OK ? "an error" : tg_status_str(want), tg_ctx_errmsg(C));
    ck_assert_msg(strlen(tg_ctx_errmsg(C)) > 0, "line %d: empty error message", line);
    tg_ctx_clear_error(C);
}
/* EXPECT_ERR(t, TG_ERR_SHAPE) where ops.h names the status, EXPECT_FAIL(t)
 * (any error) where it does not. */
#define EXPECT_ERR(t, st) expect_err_at(__LINE__, (t), (st))
#define EXPECT_FAIL(t) expect_err_at(__LINE__, (t), TG_OK)

/* ====================================================================== */
/* Binary ops with broadcasting                                           */
/* ====================================================================== */

/* A23 = [[1.5,-2,3],[4,0.5,-6]], B3 = [0.25,-4,2] */
START_TEST(test_binary_2x3_with_3)
{
    tg_tensor *a = mk(DT, TG_SHAPE(2, 3), V(1.5, -2, 3, 4, 0.5, -6));
    tg_tensor *b = mk(DT, TG_SHAPE(3), V(0.25, -4, 2));
    /* A23 + B3 */
    EXPECT(tg_add(C, a, b), TOL, TG_SHAPE(2, 3), V(1.75, -6.0, 5.0, 4.25, -3.5, -4.0));
    /* A23 - B3 */
    EXPECT(tg_sub(C, a, b), TOL, TG_SHAPE(2, 3), V(1.25, 2.0, 1.0, 3.75, 4.5, -8.0));
    /* A23 * B3 */
    EXPECT(tg_mul(C, a, b), TOL, TG_SHAPE(2, 3), V(0.375, 8.0, 6.0, 1.0, -2.0, -12.0));
    /* A23 / B3 */
    EXPECT(tg_div(C, a, b), TOL, TG_SHAPE(2, 3), V(6.0, 0.5, 1.5, 16.0, -0.125, -3.0));
    /* B3 + A23: the broadcast side may be either operand */
    EXPECT(tg_add(C, b, a), TOL, TG_SHAPE(2, 3), V(1.75, -6.0, 5.0, 4.25, -3.5, -4.0));
    /* B3 - A23 = -(A23 - B3) */
    EXPECT(tg_sub(C, b, a), TOL, TG_SHAPE(2, 3), V(-1.25, -2.0, -1.0, -3.75, -4.5, 8.0));
    ck_assert_int_eq(tg_ctx_status(C), TG_OK);
}
END_TEST

/* C31 = [[1],[2],[3]], D14 = [[0.5,-1,2,4]] */
START_TEST(test_binary_3x1_with_1x4)
{
    tg_tensor *a = mk(DT, TG_SHAPE(3, 1), V(1, 2, 3));
    tg_tensor *b = mk(DT, TG_SHAPE(1, 4), V(0.5, -1, 2, 4));
    /* C31 + D14 */
    EXPECT(tg_add(C, a, b), TOL, TG_SHAPE(3, 4),
           V(1.5, 0.0, 3.0, 5.0, 2.5, 1.0, 4.0, 6.0, 3.5, 2.0, 5.0, 7.0));
    /* C31 - D14 */
    EXPECT(tg_sub(C, a, b), TOL, TG_SHAPE(3, 4),
           V(0.5, 2.0, -1.0, -3.0, 1.5, 3.0, 0.0, -2.0, 2.5, 4.0, 1.0, -1.0));
    /* C31 / D14 */
    EXPECT(tg_div(C, a, b), TOL, TG_SHAPE(3, 4),
           V(2.0, -1.0, 0.5, 0.25, 4.0, -2.0, 1.0, 0.5, 6.0, -3.0, 1.5, 0.75));
    /* C31 * D14 (outer product) */
    EXPECT(tg_mul(C, a, b), TOL, TG_SHAPE(3, 4),
           V(0.5, -1, 2, 4, 1, -2, 4, 8, 1.5, -3, 6, 12));
}
END_TEST

/* E213 = (np.arange(6) - 2.5).reshape(2,1,3), F41 = [[1],[-2],[0.5],[3]] */
START_TEST(test_binary_2x1x3_with_4x1)
{
    tg_tensor *e = mk(DT, TG_SHAPE(2, 1, 3), V(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5));
    tg_tensor *f = mk(DT, TG_SHAPE(4, 1), V(1, -2, 0.5, 3));
    /* E213 * F41 */
    EXPECT(tg_mul(C, e, f), TOL, TG_SHAPE(2, 4, 3),
           V(-2.5, -1.5, -0.5, 5.0, 3.0, 1.0, -1.25, -0.75, -0.25, -7.5, -4.5, -1.5, 0.5, 1.5,
             2.5, -1.0, -3.0, -5.0, 0.25, 0.75, 1.25, 1.5, 4.5, 7.5));
    /* E213 - F41 */
    EXPECT(tg_sub(C, e, f), TOL, TG_SHAPE(2, 4, 3),
           V(-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, -3.0, -2.0, -1.0, -5.5, -4.5, -3.5, -0.5, 0.5,
             1.5, 2.5, 3.5, 4.5, 0.0, 1.0, 2.0, -2.5, -1.5, -0.5));
    /* F41 * E213 gives the same [2,4,3] */
    EXPECT(tg_mul(C, f, e), TOL, TG_SHAPE(2, 4, 3),
           V(-2.5, -1.5, -0.5, 5.0, 3.0, 1.0, -1.25, -0.75, -0.25, -7.5, -4.5, -1.5, 0.5, 1.5,
             2.5, -1.0, -3.0, -5.0, 0.25, 0.75, 1.25, 1.5, 4.5, 7.5));
}
END_TEST

START_TEST(test_binary_0d)
{
    tg_tensor *a = mk(DT, TG_SHAPE(2, 3), V(1.5, -2, 3, 4, 0.5, -6));
    tg_tensor *s = tg_scalar(C, DT, 2.0);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_ndim(s), 0);
    /* 2.0 / A23 */
    EXPECT(tg_div(C, s, a), TOL, TG_SHAPE(2, 3),
           V(1.3333333333333333, -1.0, 0.6666666666666666, 0.5, 4.0, -0.3333333333333333));
    /* A23 / 2.0 */
    EXPECT(tg_div(C, a, s), TOL, TG_SHAPE(2, 3), V(0.75, -1.0, 1.5, 2.0, 0.25, -3.0));
    /* A23 - 2.0 */
    EXPECT(tg_sub(C, a, s), TOL, TG_SHAPE(2, 3), V(-0.5, -4.0, 1.0, 2.0, -1.5, -8.0));
    /* 2.0 * A23 */
    EXPECT(tg_mul(C, s, a), TOL, TG_SHAPE(2, 3), V(3, -4, 6, 8, 1, -12));
    /* 0-d op 0-d stays 0-d */
    tg_tensor *t = tg_scalar(C, DT, -0.5);
    EXPECT(tg_add(C, s, t), TOL, 0, NULL, V(1.5));
    EXPECT(tg_mul(C, s, t), TOL, 0, NULL, V(-1.0));
    EXPECT(tg_div(C, t, s), TOL, 0, NULL, V(-0.25));
    /* 0-d with 1-d and with 3-d */
    tg_tensor *v = mk(DT, TG_SHAPE(3), V(1, 2, 3));
    EXPECT(tg_sub(C, s, v), TOL, TG_SHAPE(3), V(1, 0, -1));
    tg_tensor *r = mk_R(DT);
    tg_tensor *rs = tg_mul(C, r, s);
    double want[24];
    for (int i = 0; i < 24; i++) want[i] = (i * 0.5 - 3) * 2.0; /* R * 2.0 */
    EXPECT(rs, TOL, TG_SHAPE(2, 3, 4), want);
    /* a [1]-shaped tensor broadcasts like a 0-d one, result keeps the rank */
    tg_tensor *one = mk(DT, TG_SHAPE(1), V(10));
    EXPECT(tg_add(C, one, s), TOL, TG_SHAPE(1), V(12));
}
END_TEST

START_TEST(test_binary_errors)
{
    tg_tensor *a = mk(TG_F64, TG_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    tg_tensor *b = mk(TG_F64, TG_SHAPE(4), V(1, 2, 3, 4));
    tg_tensor *c2 = mk(TG_F64, TG_SHAPE(3, 3), V(1, 2, 3, 4, 5, 6, 7, 8, 9));
    tg_tensor *f = mk(TG_F32, TG_SHAPE(3), V(1, 2, 3));
    EXPECT_ERR(tg_add(C, a, b), TG_ERR_SHAPE);  /* [2,3] + [4] */
    EXPECT_ERR(tg_mul(C, a, c2), TG_ERR_SHAPE); /* [2,3] * [3,3] */
    EXPECT_ERR(tg_sub(C, a, f), TG_ERR_DTYPE);  /* f64 - f32 */
    /* NULL in, NULL out; the first error is kept */
    ck_assert_ptr_null(tg_div(C, a, NULL));
    tg_status first = tg_ctx_status(C);
    ck_assert_int_ne(first, TG_OK);
    ck_assert_ptr_null(tg_add(C, a, b));
    ck_assert_int_eq(tg_ctx_status(C), first);
    tg_ctx_clear_error(C);
    ck_assert_ptr_nonnull(tg_add(C, a, a));
}
END_TEST

/* ====================================================================== */
/* Unary ops                                                              */
/* ====================================================================== */

/* X = [-2, -0.5, 0, 0.3, 1, 2.5], P = [0.25, 0.5, 1, 2, 4, 9] */
#define X_VALS V(-2.0, -0.5, 0.0, 0.3, 1.0, 2.5)
#define P_VALS V(0.25, 0.5, 1.0, 2.0, 4.0, 9.0)

START_TEST(test_unary)
{
    tg_tensor *x = mk(DT, TG_SHAPE(2, 3), X_VALS);
    tg_tensor *p = mk(DT, TG_SHAPE(6), P_VALS);
    /* -X */
    EXPECT(tg_neg(C, x), TOL, TG_SHAPE(2, 3), V(2.0, 0.5, -0.0, -0.3, -1.0, -2.5));
    /* -1.5*X */
    EXPECT(tg_scale(C, x, -1.5), TOL, TG_SHAPE(2, 3),
           V(3.0, 0.75, -0.0, -0.44999999999999996, -1.5, -3.75));
    /* X + 0.75 */
    EXPECT(tg_add_scalar(C, x, 0.75), TOL, TG_SHAPE(2, 3),
           V(-1.25, 0.25, 0.75, 1.05, 1.75, 3.25));
    /* np.exp(X) */
    EXPECT(tg_exp(C, x), TOL, TG_SHAPE(2, 3),
           V(0.1353352832366127, 0.6065306597126334, 1.0, 1.3498588075760032,
             2.718281828459045, 12.182493960703473));
    /* np.log(P) */
    EXPECT(tg_log(C, p), TOL, TG_SHAPE(6),
           V(-1.3862943611198906, -0.6931471805599453, 0.0, 0.6931471805599453,
             1.3862943611198906, 2.1972245773362196));
    /* np.sqrt(P) */
    EXPECT(tg_sqrt(C, p), TOL, TG_SHAPE(6),
           V(0.5, 0.7071067811865476, 1.0, 1.4142135623730951, 2.0, 3.0));
    /* np.tanh(X) */
    EXPECT(tg_tanh(C, x), TOL, TG_SHAPE(2, 3),
           V(-0.9640275800758169, -0.46211715726000974, 0.0, 0.2913126124515909,
             0.7615941559557649, 0.9866142981514303));
    /* np.maximum(X, 0) */
    EXPECT(tg_relu(C, x), 0.0, TG_SHAPE(2, 3), V(0.0, 0.0, 0.0, (double)(DT == TG_F32 ? 0.3f : 0.3), 1.0, 2.5));
    /* scale by 0 and add 0 keep the shape */
    EXPECT(tg_scale(C, x, 0.0), 0.0, TG_SHAPE(2, 3), V(0, 0, 0, 0, 0, 0));
    /* 0-d input stays 0-d */
    EXPECT(tg_exp(C, tg_scalar(C, DT, 0.0)), 0.0, 0, NULL, V(1.0));
    ck_assert_int_eq(tg_ctx_status(C), TG_OK);
}
END_TEST

START_TEST(test_pow_scalar)
{
    tg_tensor *x = mk(DT, TG_SHAPE(6), X_VALS);
    tg_tensor *p = mk(DT, TG_SHAPE(6), P_VALS);
    /* P**0.5 */
    EXPECT(tg_pow_scalar(C, p, 0.5), TOL, TG_SHAPE(6),
           V(0.5, 0.7071067811865476, 1.0, 1.4142135623730951, 2.0, 3.0));
    /* X**2 (negative bases, integer power) */
    EXPECT(tg_pow_scalar(C, x, 2.0), TOL, TG_SHAPE(6), V(4.0, 0.25, 0.0, 0.09, 1.0, 6.25));
    /* P**-1 */
    EXPECT(tg_pow_scalar(C, p, -1.0), TOL, TG_SHAPE(6),
           V(4.0, 2.0, 1.0, 0.5, 0.25, 0.1111111111111111));
    /* X**3 keeps the sign */
    EXPECT(tg_pow_scalar(C, x, 3.0), TOL, TG_SHAPE(6),
           V(-8.0, -0.125, 0.0, 0.026999999999999996, 1.0, 15.625));
    /* X**0 is 1 everywhere, 0**0 included (C's pow) */
    EXPECT(tg_pow_scalar(C, x, 0.0), 0.0, TG_SHAPE(6), V(1, 1, 1, 1, 1, 1));
    /* X**1 is X */
    EXPECT(tg_pow_scalar(C, x, 1.0), TOL, TG_SHAPE(6), X_VALS);
    /* negative base, non-integer power: NaN as in C's pow() */
    tg_tensor *neg = mk(DT, TG_SHAPE(2), V(-4.0, 4.0));
    EXPECT(tg_pow_scalar(C, neg, 0.5), TOL, TG_SHAPE(2), V(NAN, 2.0));
}
END_TEST

START_TEST(test_sigmoid_tanh_extremes)
{
    /* S = [-1000, -20, -1, 0, 1, 20, 1000] */
    tg_tensor *s = mk(DT, TG_SHAPE(7), V(-1000, -20, -1, 0, 1, 20, 1000));
    tg_tensor *y = tg_sigmoid(C, s);
    /* 1/(1+np.exp(-S)) */
    EXPECT(y, TOL, TG_SHAPE(7),
           V(0.0, 2.0611536181902037e-09, 0.2689414213699951, 0.5, 0.7310585786300049,
             0.9999999979388463, 1.0));
    double *v = read_all(y);
    double lo = v[0], hi = v[6], small = v[1];
    free(v);
    ck_assert_msg(lo == 0.0, "sigmoid(-1000) = %.17g, expected exactly 0", lo);
    ck_assert_msg(hi == 1.0, "sigmoid(1000) = %.17g, expected exactly 1", hi);
    /* the small tail is a relative match, not just "close to 0" */
    ck_assert_msg(fabs(small / 2.0611536181902037e-09 - 1) < 1e-5, "sigmoid(-20) = %.17g",
                  small);
    /* np.tanh(S): exactly +-1 at +-1000, no NaN */
    EXPECT(tg_tanh(C, s), TOL, TG_SHAPE(7),
           V(-1.0, -1.0, -0.7615941559557649, 0.0, 0.7615941559557649, 1.0, 1.0));
}
END_TEST

START_TEST(test_log_edges)
{
    tg_tensor *z = mk(DT, TG_SHAPE(3), V(0.0, -1.0, 1.0));
    /* log(0) = -inf, log(-1) = NaN, log(1) = 0 (documented in ops.h) */
    EXPECT(tg_log(C, z), 0.0, TG_SHAPE(3), V(-INFINITY, NAN, 0.0));
    /* exp of a large value overflows to +inf, not NaN */
    tg_tensor *big = mk(DT, TG_SHAPE(2), V(1000.0, -1000.0));
    EXPECT(tg_exp(C, big), 0.0, TG_SHAPE(2), V(INFINITY, 0.0));
}
END_TEST

/* ====================================================================== */
/* Reductions, softmax                                                    */
/* ====================================================================== */

START_TEST(test_sum_mean_all)
{
    tg_tensor *r = mk_R(DT);
    EXPECT(tg_sum(C, r), TOL, 0, NULL, V(66.0));  /* R.sum() */
    EXPECT(tg_mean(C, r), TOL, 0, NULL, V(2.75)); /* R.mean() */
    /* every axis, with and without keepdim, equals the all-reduction */
    int all[3] = {0, 1, 2};
    EXPECT(tg_sum_axes(C, r, 3, all, false), TOL, 0, NULL, V(66.0));
    EXPECT(tg_mean_axes(C, r, 3, all, true), TOL, TG_SHAPE(1, 1, 1), V(2.75));
    /* a 0-d input */
    tg_tensor *s = tg_scalar(C, DT, -1.25);
    EXPECT(tg_sum(C, s), TOL, 0, NULL, V(-1.25));
    EXPECT(tg_mean(C, s), TOL, 0, NULL, V(-1.25));
    /* the mean of an empty tensor is NaN */
    tg_tensor *e = tg_tensor_new(C, DT, TG_SHAPE(0, 3));
    ck_assert_ptr_nonnull(e);
    EXPECT(tg_sum(C, e), 0.0, 0, NULL, V(0.0));
    EXPECT(tg_mean(C, e), 0.0, 0, NULL, V(NAN));
}
END_TEST

START_TEST(test_sum_axes)
{
    tg_tensor *r = mk_R(DT);
    /* R.sum(0) */
    EXPECT(tg_sum_axes(C, r, 1, (const int[]){0}, false), TOL, TG_SHAPE(3, 4),
           V(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0));
    /* R.sum(1, keepdims=True) */
    EXPECT(tg_sum_axes(C, r, 1, (const int[]){1}, true), TOL, TG_SHAPE(2, 1, 4),
           V(-3.0, -1.5, 0.0, 1.5, 15.0, 16.5, 18.0, 19.5));
    /* R.sum(-1) */
    EXPECT(tg_sum_axes(C, r, 1, (const int[]){-1}, false), TOL, TG_SHAPE(2, 3),
           V(-9.0, -1.0, 7.0, 15.0, 23.0, 31.0));
    /* R.sum((0, 2)) */
    EXPECT(tg_sum_axes(C, r, 2, (const int[]){0, 2}, false), TOL, TG_SHAPE(3),
           V(6.0, 22.0, 38.0));
    /* R.sum((-1, 0), keepdims=True): axes in any order, negative */
    EXPECT(tg_sum_axes(C, r, 2, (const int[]){-1, 0}, true), TOL, TG_SHAPE(1, 3, 1),
           V(6.0, 22.0, 38.0));
    /* naxes == 0 reduces nothing */
    double want[24];
    for (int i = 0; i < 24; i++) want[i] = i * 0.5 - 3;
    EXPECT(tg_sum_axes(C, r, 0, NULL, false), TOL, TG_SHAPE(2, 3, 4), want);
    /* a 1-d input reduced over its only axis is 0-d */
    tg_tensor *v = mk(DT, TG_SHAPE(4), V(1, 2, 3, 4.5));
    EXPECT(tg_sum_axes(C, v, 1, (const int[]){0}, false), TOL, 0, NULL, V(10.5));
    EXPECT(tg_sum_axes(C, v, 1, (const int[]){-1}, true), TOL, TG_SHAPE(1), V(10.5));
}
END_TEST

START_TEST(test_mean_axes)
{
    tg_tensor *r = mk_R(DT);
    /* R.mean(1) */
    EXPECT(tg_mean_axes(C, r, 1, (const int[]){1}, false), TOL, TG_SHAPE(2, 4),
           V(-1.0, -0.5, 0.0, 0.5, 5.0, 5.5, 6.0, 6.5));
    /* R.mean((-2, -1)) */
    EXPECT(tg_mean_axes(C, r, 2, (const int[]){-2, -1}, false), TOL, TG_SHAPE(2),
           V(-0.25, 5.75));
    /* R.mean((0, 2), keepdims=True) */
    EXPECT(tg_mean_axes(C, r, 2, (const int[]){0, 2}, true), TOL, TG_SHAPE(1, 3, 1),
           V(0.75, 2.75, 4.75));
    /* R.mean(-1, keepdims=True) */
    EXPECT(tg_mean_axes(C, r, 1, (const int[]){-1}, true), TOL, TG_SHAPE(2, 3, 1),
           V(-2.25, -0.25, 1.75, 3.75, 5.75, 7.75));
}
END_TEST

START_TEST(test_reduce_errors)
{
    tg_tensor *r = mk_R(TG_F64);
    EXPECT_ERR(tg_sum_axes(C, r, 2, (const int[]){1, -2}, false), TG_ERR_INVALID); /* twice */
    EXPECT_FAIL(tg_sum_axes(C, r, 1, (const int[]){3}, false));
    EXPECT_FAIL(tg_mean_axes(C, r, 1, (const int[]){-4}, true));
    EXPECT_FAIL(tg_softmax(C, r, 3));
    EXPECT_FAIL(tg_log_softmax(C, r, -4));
}
END_TEST

START_TEST(test_softmax)
{
    /* Q = [[1,2,3],[-1,0,4]] */
    tg_tensor *q = mk(DT, TG_SHAPE(2, 3), V(1, 2, 3, -1, 0, 4));
    /* softmax(Q, 0) */
    EXPECT(tg_softmax(C, q, 0), TOL, TG_SHAPE(2, 3),
           V(0.8807970779778823, 0.8807970779778823, 0.2689414213699951, 0.11920292202211755,
             0.11920292202211755, 0.7310585786300049));
    /* softmax(Q, -1) */
    EXPECT(tg_softmax(C, q, -1), TOL, TG_SHAPE(2, 3),
           V(0.09003057317038046, 0.24472847105479764, 0.6652409557748218,
             0.006573263185309083, 0.0178679818703045, 0.9755587549443865));
    /* softmax(Q, 1) is softmax(Q, -1) */
    EXPECT(tg_softmax(C, q, 1), TOL, TG_SHAPE(2, 3),
           V(0.09003057317038046, 0.24472847105479764, 0.6652409557748218,
             0.006573263185309083, 0.0178679818703045, 0.9755587549443865));
    /* log_softmax(Q, 0) */
    EXPECT(tg_log_softmax(C, q, 0), TOL, TG_SHAPE(2, 3),
           V(-0.1269280110429726, -0.1269280110429726, -1.3132616875182228,
             -2.1269280110429727, -2.1269280110429727, -0.31326168751822286));
    /* log_softmax(Q, -1) */
    EXPECT(tg_log_softmax(C, q, -1), TOL, TG_SHAPE(2, 3),
           V(-2.4076059644443806, -1.4076059644443804, -0.4076059644443804,
             -5.024744890138822, -4.024744890138822, -0.02474489013882259));
    /* softmax(R, 1) over a middle axis of a 3-d tensor */
    const double a = 0.015876239976466765, b = 0.11731042782619838, c = 0.8668133321973349;
    EXPECT(tg_softmax(C, mk_R(DT), 1), TOL, TG_SHAPE(2, 3, 4),
           V(a, a, a, a, b, b, b, b, c, c, c, c, a, a, a, a, b, b, b, b, c, c, c, c));
}
END_TEST

START_TEST(test_softmax_large_logits)
{
    /* L = [[1e4, 0, -1e4], [1e4, 1e4, 9999]] */
    tg_tensor *l = mk(DT, TG_SHAPE(2, 3), V(1e4, 0, -1e4, 1e4, 1e4, 9999));
    /* softmax(L, -1) */
    EXPECT(tg_softmax(C, l, -1), TOL, TG_SHAPE(2, 3),
           V(1.0, 0.0, 0.0, 0.4223187982515182, 0.4223187982515182, 0.15536240349696362));
    /* log_softmax(L, -1) */
    EXPECT(tg_log_softmax(C, l, -1), TOL, TG_SHAPE(2, 3),
           V(0.0, -10000.0, -20000.0, -0.8619948040582511, -0.8619948040582511,
             -1.8619948040582512));
    /* softmax(L, 0) */
    EXPECT(tg_softmax(C, l, 0), TOL, TG_SHAPE(2, 3), V(0.5, 0.0, 0.0, 0.5, 1.0, 1.0));
    /* log_softmax(L, 0) */
    EXPECT(tg_log_softmax(C, l, 0), TOL, TG_SHAPE(2, 3),
           V(-0.6931471805599453, -10000.0, -19999.0, -0.6931471805599453, 0.0, 0.0));
    /* -1e4 everywhere: uniform, no NaN */
    tg_tensor *m = mk(DT, TG_SHAPE(1, 4), V(-1e4, -1e4, -1e4, -1e4));
    EXPECT(tg_softmax(C, m, -1), TOL, TG_SHAPE(1, 4), V(0.25, 0.25, 0.25, 0.25));
    EXPECT(tg_log_softmax(C, m, -1), TOL, TG_SHAPE(1, 4),
           V(-1.3862943611198906, -1.3862943611198906, -1.3862943611198906,
             -1.3862943611198906)); /* np.log(0.25) */
}
END_TEST

/* ====================================================================== */
/* Matmul                                                                 */
/* ====================================================================== */

START_TEST(test_matmul_2d)
{
    tg_tensor *a = mk_pat(DT, TG_SHAPE(2, 3), 1); /* MA = pat(6,1).reshape(2,3) */
    tg_tensor *b = mk_pat(DT, TG_SHAPE(3, 4), 2); /* MB = pat(12,2).reshape(3,4) */
    /* MA @ MB */
    EXPECT(tg_matmul(C, a, b), 0.0, TG_SHAPE(2, 4),
           V(-1.25, 1.1875, -0.5, -1.5, -1.1875, 1.3125, -1.0, -1.25));
    /* a hand value: [[1,2],[3,4]] @ [[5,6],[7,8]] */
    tg_tensor *h1 = mk(DT, TG_SHAPE(2, 2), V(1, 2, 3, 4));
    tg_tensor *h2 = mk(DT, TG_SHAPE(2, 2), V(5, 6, 7, 8));
    EXPECT(tg_matmul(C, h1, h2), 0.0, TG_SHAPE(2, 2), V(19, 22, 43, 50));
    /* [1,3] @ [3,1] */
    tg_tensor *r = mk(DT, TG_SHAPE(1, 3), V(1, 2, 3));
    tg_tensor *col = mk(DT, TG_SHAPE(3, 1), V(4, -5, 6));
    EXPECT(tg_matmul(C, r, col), 0.0, TG_SHAPE(1, 1), V(12));
    EXPECT(tg_matmul(C, col, r), 0.0, TG_SHAPE(3, 3), V(4, 8, 12, -5, -10, -15, 6, 12, 18));
}
END_TEST

START_TEST(test_matmul_batched)
{
    tg_tensor *a = mk_pat(DT, TG_SHAPE(2, 2, 3), 3); /* BA = pat(12,3).reshape(2,2,3) */
    tg_tensor *b = mk_pat(DT, TG_SHAPE(2, 3, 2), 4); /* BB = pat(12,4).reshape(2,3,2) */
    /* BA @ BB */
    EXPECT(tg_matmul(C, a, b), 0.0, TG_SHAPE(2, 2, 2),
           V(-1.5, 1.25, -1.3125, 1.5, 1.0, -1.625, 0.875, -1.6875));
}
END_TEST

START_TEST(test_matmul_broadcast_batch)
{
    tg_tensor *a = mk_pat(DT, TG_SHAPE(2, 1, 3, 4), 5); /* GA = pat(24,5).reshape(2,1,3,4) */
    tg_tensor *b = mk_pat(DT, TG_SHAPE(5, 4, 2), 6);    /* GB = pat(40,6).reshape(5,4,2) */
    /* GA @ GB */
    EXPECT(tg_matmul(C, a, b), 0.0, TG_SHAPE(2, 5, 3, 2),
           V(-2.0625, 0.8125, 1.5, -2.3125, -1.8125, 0.75, 1.0, 0.4375, 1.25, -1.875, 0.8125,
             0.625, 0.625, -1.3125, 1.6875, 0.625, 0.6875, -1.5625, 0.25, -1.6875, 2.125,
             1.0625, 0.5625, -1.6875, 0.5625, -2.0625, -0.875, 1.5, 0.4375, -1.8125, 0.375,
             -1.0, -1.5625, 0.6875, 0.625, 1.6875, -1.0, -1.0, 0.625, 0.8125, -1.875, 1.25,
             -1.0, 0.375, 0.75, -1.8125, -2.3125, 1.5, -1.0, 0.375, 0.875, -1.6875, -2.75,
             1.0625, 2.4375, 0.375, 0.3125, -1.5625, -0.4375, 0.625));
    /* a 2-d operand broadcasts against a batch: HA [3,4] @ HB [2,4,5] */
    tg_tensor *ha = mk_pat(DT, TG_SHAPE(3, 4), 7);
    tg_tensor *hb = mk_pat(DT, TG_SHAPE(2, 4, 5), 8);
    /* HA @ HB */
    EXPECT(tg_matmul(C, ha, hb), 0.0, TG_SHAPE(2, 3, 5),
           V(-0.4375, 1.25, -1.875, -0.875, 1.5, 0.25, 0.75, 0.5625, 0.375, -1.875, 1.625,
             -1.8125, -1.8125, 1.625, -0.4375, 1.6875, -1.4375, -0.4375, 1.25, -1.875, 0.625,
             0.4375, 0.25, 0.75, 0.5625, -1.8125, -1.8125, 1.625, -1.8125, -1.8125));
}
END_TEST

START_TEST(test_matmul_transposed_values)
{
    /* a^T stored as [3,2], b^T stored as [4,3]; views equal contiguous */
    tg_tensor *as = mk_pat(DT, TG_SHAPE(3, 2), 11);
    tg_tensor *bs = mk_pat(DT, TG_SHAPE(4, 3), 12);
    tg_tensor *at = tg_transpose(C, as, 0, 1); /* [2,3] view */
    tg_tensor *bt = tg_transpose(C, bs, -1, -2); /* [3,4] view */
    ck_assert_ptr_nonnull(at);
    ck_assert_ptr_nonnull(bt);
    ck_assert(!tg_is_contiguous(at));
    tg_tensor *ac = tg_contiguous(C, at), *bc = tg_contiguous(C, bt);
    tg_tensor *ref = tg_matmul(C, ac, bc);
    ck_assert_ptr_nonnull(ref);
    EXPECT_SAME(tg_matmul(C, at, bc), ref, 0.0);
    EXPECT_SAME(tg_matmul(C, ac, bt), ref, 0.0);
    EXPECT_SAME(tg_matmul(C, at, bt), ref, 0.0);
    /* batched: transpose of the last two dims of [2,3,2] and [2,4,3] */
    tg_tensor *bas = mk_pat(DT, TG_SHAPE(2, 3, 2), 13);
    tg_tensor *bbs = mk_pat(DT, TG_SHAPE(2, 4, 3), 14);
    tg_tensor *bat = tg_transpose(C, bas, 1, 2);  /* [2,2,3] */
    tg_tensor *bbt = tg_transpose(C, bbs, -1, 1); /* [2,3,4] */
    tg_tensor *bref = tg_matmul(C, tg_contiguous(C, bat), tg_contiguous(C, bbt));
    ck_assert_ptr_nonnull(bref);
    EXPECT_SAME(tg_matmul(C, bat, bbt), bref, 0.0);
    EXPECT_SAME(tg_matmul(C, bat, tg_contiguous(C, bbt)), bref, 0.0);
    /* broadcast batch with a transposed 2-d operand: [3,2]^T @ [5,3,4] */
    tg_tensor *gb = mk_pat(DT, TG_SHAPE(5, 3, 4), 15);
    tg_tensor *gref = tg_matmul(C, ac, gb);
    ck_assert_ptr_nonnull(gref);
    EXPECT_SAME(tg_matmul(C, at, gb), gref, 0.0);
    /* a permuted batch view: batch dim not outermost in memory */
    tg_tensor *ps = mk_pat(DT, TG_SHAPE(2, 2, 3), 16);             /* [M, B, K] */
    tg_tensor *pv = tg_permute(C, ps, (const int[]){1, 0, 2});      /* [B, M, K] */
    tg_tensor *pb = mk_pat(DT, TG_SHAPE(2, 3, 2), 17);
    tg_tensor *pref = tg_matmul(C, tg_contiguous(C, pv), pb);
    ck_assert_ptr_nonnull(pref);
    EXPECT_SAME(tg_matmul(C, pv, pb), pref, 0.0);
}
END_TEST

/* Bytes the arena hands out for one matmul of a [M,K] by b [K,N]. */
static size_t matmul_bytes(tg_tensor *a, tg_tensor *b, tg_tensor **out)
{
    size_t before = tg_ctx_bytes_used(C);
    *out = tg_matmul(C, a, b);
    ck_assert_msg(*out != NULL, "%s", tg_ctx_errmsg(C));
    return tg_ctx_bytes_used(C) - before;
}

START_TEST(test_matmul_transposed_not_copied)
{
    enum { M = 64, K = 48, N = 32, B = 3 };
    const size_t es = tg_dtype_size(DT);
    const size_t out_bytes = (size_t)M * N * es, slack = 1024;
    tg_tensor *at = tg_transpose(C, mk_pat(DT, TG_SHAPE(K, M), 1), 0, 1); /* [M,K] view */
    tg_tensor *bt = tg_transpose(C, mk_pat(DT, TG_SHAPE(N, K), 2), 0, 1); /* [K,N] view */
    tg_tensor *a = tg_contiguous(C, at), *b = tg_contiguous(C, bt);     /* same values */
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    tg_tensor *o_c, *o_at, *o_bt, *o_both;
    size_t d_c = matmul_bytes(a, b, &o_c);
    size_t d_at = matmul_bytes(at, b, &o_at);
    size_t d_bt = matmul_bytes(a, bt, &o_bt);
    size_t d_both = matmul_bytes(at, bt, &o_both);
    ck_assert_msg(d_c <= out_bytes + slack, "contiguous matmul used %zu bytes, output %zu",
                  d_c, out_bytes);
    ck_assert_msg(d_at <= d_c + slack && d_at <= out_bytes + slack,
                  "A^T @ B used %zu bytes vs %zu contiguous (output %zu): operand copied?",
                  d_at, d_c, out_bytes);
    ck_assert_msg(d_bt <= d_c + slack && d_bt <= out_bytes + slack,
                  "A @ B^T used %zu bytes vs %zu contiguous (output %zu): operand copied?",
                  d_bt, d_c, out_bytes);
    ck_assert_msg(d_both <= d_c + slack && d_both <= out_bytes + slack,
                  "A^T @ B^T used %zu bytes vs %zu contiguous (output %zu): operand copied?",
                  d_both, d_c, out_bytes);
    /* the values are the contiguous ones (pattern data: exact) */
    double *ref = read_all(o_c);
    double *g1 = read_all(o_at), *g2 = read_all(o_bt), *g3 = read_all(o_both);
    int same = 1;
    for (int i = 0; i < M * N; i++) same = same && g1[i] == ref[i] && g2[i] == ref[i] && g3[i] == ref[i];
    free(ref), free(g1), free(g2), free(g3);
    ck_assert_msg(same, "transposed-operand matmul differs from the contiguous one");

    /* batched: [B,K,M] transposed to [B,M,K] @ [B,K,N] */
    tg_tensor *bat = tg_transpose(C, mk_pat(DT, TG_SHAPE(B, K, M), 3), 1, 2);
    tg_tensor *ba = tg_contiguous(C, bat);
    tg_tensor *bb = mk_pat(DT, TG_SHAPE(B, K, N), 4);
    ck_assert_ptr_nonnull(ba);
    tg_tensor *ob_c, *ob_t;
    size_t db_c = matmul_bytes(ba, bb, &ob_c);
    size_t db_t = matmul_bytes(bat, bb, &ob_t);
    ck_assert_msg(db_t <= db_c + slack && db_t <= B * out_bytes + slack,
                  "batched A^T @ B used %zu bytes vs %zu contiguous (output %zu)", db_t, db_c,
                  (size_t)B * out_bytes);
}
END_TEST

START_TEST(test_matmul_errors)
{
    tg_tensor *a = mk(TG_F64, TG_SHAPE(3, 4), V(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    tg_tensor *b = tg_tensor_new(C, TG_F64, TG_SHAPE(5, 6));
    tg_tensor *v = mk(TG_F64, TG_SHAPE(4), V(1, 2, 3, 4));
    tg_tensor *b3 = tg_tensor_new(C, TG_F64, TG_SHAPE(2, 4, 2));
    tg_tensor *b4 = tg_tensor_new(C, TG_F64, TG_SHAPE(3, 2, 4));
    EXPECT_ERR(tg_matmul(C, a, b), TG_ERR_SHAPE); /* inner 4 != 5 */
    ck_assert_ptr_nonnull(tg_matmul(C, a, b3));
    /* batch dims 2 and 3 do not broadcast */
    tg_tensor *b5 = tg_tensor_new(C, TG_F64, TG_SHAPE(2, 4, 2));
    EXPECT_ERR(tg_matmul(C, b4, b5), TG_ERR_SHAPE);
    /* matmul needs at least 2-d operands */
    EXPECT_FAIL(tg_matmul(C, v, a));
}
END_TEST

/* ====================================================================== */
/* Shapes and views                                                       */
/* ====================================================================== */

START_TEST(test_reshape)
{
    tg_tensor *r = mk_R(DT);
    tg_tensor *v = tg_reshape(C, r, TG_SHAPE(4, -1));
    double want[24];
    for (int i = 0; i < 24; i++) want[i] = i * 0.5 - 3;
    EXPECT(v, 0.0, TG_SHAPE(4, 6), want);
    /* a view of a contiguous tensor: same storage */
    ck_assert_ptr_eq(tg_data(v), tg_data(r));
    EXPECT(tg_reshape(C, r, TG_SHAPE(24)), 0.0, TG_SHAPE(24), want);
    EXPECT(tg_reshape(C, r, TG_SHAPE(-1, 2, 1, 3)), 0.0, TG_SHAPE(4, 2, 1, 3), want);
    /* reshape of a non-contiguous view copies in row-major order:
     * np.swapaxes(R, 0, 2).reshape(6, 4) */
    tg_tensor *t = tg_transpose(C, r, 0, 2);
    EXPECT(tg_reshape(C, t, TG_SHAPE(6, 4)), 0.0, TG_SHAPE(6, 4),
           V(-3.0, 3.0, -1.0, 5.0, 1.0, 7.0, -2.5, 3.5, -0.5, 5.5, 1.5, 7.5, -2.0, 4.0, 0.0,
             6.0, 2.0, 8.0, -1.5, 4.5, 0.5, 6.5, 2.5, 8.5));
    /* 0-d <-> [1] */
    tg_tensor *s = tg_scalar(C, DT, 3.5);
    EXPECT(tg_reshape(C, s, TG_SHAPE(1, 1)), 0.0, TG_SHAPE(1, 1), V(3.5));
    EXPECT(tg_reshape(C, tg_reshape(C, s, TG_SHAPE(1)), 0, NULL), 0.0, 0, NULL, V(3.5));
    /* errors */
    EXPECT_FAIL(tg_reshape(C, r, TG_SHAPE(5, 5)));
    EXPECT_FAIL(tg_reshape(C, r, TG_SHAPE(-1, -1, 6)));
}
END_TEST

START_TEST(test_transpose_permute)
{
    tg_tensor *r = mk_R(DT);
    /* np.swapaxes(R, 0, 2) */
    tg_tensor *t = tg_transpose(C, r, 0, 2);
    EXPECT(t, 0.0, TG_SHAPE(4, 3, 2),
           V(-3.0, 3.0, -1.0, 5.0, 1.0, 7.0, -2.5, 3.5, -0.5, 5.5, 1.5, 7.5, -2.0, 4.0, 0.0,
             6.0, 2.0, 8.0, -1.5, 4.5, 0.5, 6.5, 2.5, 8.5));
    ck_assert(!tg_is_contiguous(t));
    ck_assert_ptr_null(tg_data(t));
    ck_assert_int_eq(tg_strides(t)[0], 1);
    ck_assert_int_eq(tg_strides(t)[1], 4);
    ck_assert_int_eq(tg_strides(t)[2], 12);
    /* negative dims; transposing back gives R (and a contiguous layout) */
    tg_tensor *tt = tg_transpose(C, t, -1, -3);
    double want[24];
    for (int i = 0; i < 24; i++) want[i] = i * 0.5 - 3;
    EXPECT(tt, 0.0, TG_SHAPE(2, 3, 4), want);
    ck_assert(tg_is_contiguous(tt));
    /* np.transpose(R, (2, 0, 1)) */
    tg_tensor *p = tg_permute(C, r, (const int[]){2, 0, 1});
    EXPECT(p, 0.0, TG_SHAPE(4, 2, 3),
           V(-3.0, -1.0, 1.0, 3.0, 5.0, 7.0, -2.5, -0.5, 1.5, 3.5, 5.5, 7.5, -2.0, 0.0, 2.0,
             4.0, 6.0, 8.0, -1.5, 0.5, 2.5, 4.5, 6.5, 8.5));
    ck_assert_int_eq(tg_strides(p)[0], 1);
    ck_assert_int_eq(tg_strides(p)[1], 12);
    ck_assert_int_eq(tg_strides(p)[2], 4);
    /* identity permutation */
    EXPECT(tg_permute(C, r, (const int[]){0, 1, 2}), 0.0, TG_SHAPE(2, 3, 4), want);
    /* errors: not a permutation, dim out of range */
    EXPECT_FAIL(tg_permute(C, r, (const int[]){0, 0, 1}));
    EXPECT_FAIL(tg_transpose(C, r, 0, 3));
}
END_TEST

START_TEST(test_expand)
{
    tg_tensor *x = mk(DT, TG_SHAPE(3, 1), V(1, -2, 3.5));
    tg_tensor *e = tg_expand(C, x, TG_SHAPE(2, 3, 4));
    /* np.broadcast_to(x, (2,3,4)) */
    EXPECT(e, 0.0, TG_SHAPE(2, 3, 4),
           V(1, 1, 1, 1, -2, -2, -2, -2, 3.5, 3.5, 3.5, 3.5, 1, 1, 1, 1, -2, -2, -2, -2, 3.5,
             3.5, 3.5, 3.5));
    ck_assert_int_eq(tg_strides(e)[0], 0);
    ck_assert_int_eq(tg_strides(e)[2], 0);
    ck_assert(!tg_is_contiguous(e));
    /* -1 keeps a dim */
    EXPECT(tg_expand(C, x, TG_SHAPE(-1, 2)), 0.0, TG_SHAPE(3, 2), V(1, 1, -2, -2, 3.5, 3.5));
    /* a 0-d tensor expands to anything */
    EXPECT(tg_expand(C, tg_scalar(C, DT, 7), TG_SHAPE(2, 2)), 0.0, TG_SHAPE(2, 2),
           V(7, 7, 7, 7));
    /* a non-1 dim cannot stretch */
    EXPECT_FAIL(tg_expand(C, x, TG_SHAPE(3, 4, 1)));
}
END_TEST

START_TEST(test_slice)
{
    tg_tensor *r = mk_R(DT);
    /* R[:, :, 1:4:2] */
    tg_tensor *s = tg_slice(C, r, -1, 1, 4, 2);
    EXPECT(s, 0.0, TG_SHAPE(2, 3, 2),
           V(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5));
    ck_assert_int_eq(tg_strides(s)[2], 2);
    ck_assert(!tg_is_contiguous(s));
    /* R[-1:100] (negative start, stop past the end) */
    EXPECT(tg_slice(C, r, 0, -1, 100, 1), 0.0, TG_SHAPE(1, 3, 4),
           V(3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5));
    /* R[:, -10:-1] (start clamped to 0) */
    EXPECT(tg_slice(C, r, 1, -10, -1, 1), 0.0, TG_SHAPE(2, 2, 4),
           V(-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0,
             6.5));
    /* R[:, 0:3:2] */
    EXPECT(tg_slice(C, r, 1, 0, 3, 2), 0.0, TG_SHAPE(2, 2, 4),
           V(-3.0, -2.5, -2.0, -1.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 7.0, 7.5, 8.0,
             8.5));
    /* R[:, 2:1] is empty */
    tg_tensor *e = tg_slice(C, r, 1, 2, 1, 1);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(tg_numel(e), 0);
    ck_assert_int_eq(tg_shape(e)[1], 0);
    /* a slice of a slice: R[:, :, 1:4:2][:, 1:3] */
    EXPECT(tg_slice(C, s, 1, 1, 3, 1), 0.0, TG_SHAPE(2, 2, 2),
           V(-0.5, 0.5, 1.5, 2.5, 5.5, 6.5, 7.5, 8.5));
    /* a slice of a transposed view: np.swapaxes(R,0,2)[1::2] */
    tg_tensor *t = tg_transpose(C, r, 0, 2);
    EXPECT(tg_slice(C, t, 0, 1, 4, 2), 0.0, TG_SHAPE(2, 3, 2),
           V(-2.5, 3.5, -0.5, 5.5, 1.5, 7.5, -1.5, 4.5, 0.5, 6.5, 2.5, 8.5));
    /* step < 1 and bad axis are errors */
    EXPECT_FAIL(tg_slice(C, r, 0, 0, 2, 0));
    EXPECT_FAIL(tg_slice(C, r, 3, 0, 2, 1));
}
END_TEST

START_TEST(test_contiguous)
{
    tg_tensor *r = mk_R(DT);
    tg_tensor *t = tg_transpose(C, r, 0, 2);
    tg_tensor *c = tg_contiguous(C, t);
    /* np.ascontiguousarray(np.swapaxes(R, 0, 2)) */
    EXPECT(c, 0.0, TG_SHAPE(4, 3, 2),
           V(-3.0, 3.0, -1.0, 5.0, 1.0, 7.0, -2.5, 3.5, -0.5, 5.5, 1.5, 7.5, -2.0, 4.0, 0.0,
             6.0, 2.0, 8.0, -1.5, 4.5, 0.5, 6.5, 2.5, 8.5));
    ck_assert(tg_is_contiguous(c));
    ck_assert_ptr_nonnull(tg_data(c));
    ck_assert_int_eq(tg_strides(c)[0], 6);
    ck_assert_int_eq(tg_strides(c)[1], 2);
    ck_assert_int_eq(tg_strides(c)[2], 1);
    /* a copy: writing to it does not change r */
    if (DT == TG_F64) ((double *)tg_data(c))[0] = 100.0;
    else ((float *)tg_data(c))[0] = 100.0f;
    ck_assert(tg_get(r, (const int64_t[]){0, 0, 0}) == -3.0);
    /* expanded view made contiguous materialises the repeats */
    tg_tensor *x = mk(DT, TG_SHAPE(2, 1), V(1, 2));
    tg_tensor *ec = tg_contiguous(C, tg_expand(C, x, TG_SHAPE(2, 3)));
    EXPECT(ec, 0.0, TG_SHAPE(2, 3), V(1, 1, 1, 2, 2, 2));
    ck_assert(tg_is_contiguous(ec));
}
END_TEST

/* ====================================================================== */
/* Losses                                                                 */
/* ====================================================================== */

START_TEST(test_mse_loss)
{
    tg_tensor *p = mk(DT, TG_SHAPE(2, 3), V(0.5, -1, 2, 3, 0, -0.25));
    tg_tensor *t = mk(DT, TG_SHAPE(2, 3), V(1, 1, 1, 2.5, -0.5, 0));
    /* np.mean((PP - TT)**2) */
    EXPECT(tg_mse_loss(C, p, t), TOL, 0, NULL, V(0.96875));
    EXPECT(tg_mse_loss(C, p, p), 0.0, 0, NULL, V(0.0));
    /* no broadcasting */
    tg_tensor *row = mk(DT, TG_SHAPE(3), V(1, 1, 1));
    EXPECT_ERR(tg_mse_loss(C, p, row), TG_ERR_SHAPE);
}
END_TEST

static tg_tensor *labels(int64_t n, const int64_t *v)
{
    return tg_tensor_from(C, TG_I64, 1, (const int64_t[]){n}, v);
}

START_TEST(test_cross_entropy_value)
{
    /* CL = [[1,2,3],[1,1,1]], labels [2, 0]. By hand:
     * row 0: log(e^1+e^2+e^3) - 3 = log(1 + e^-1 + e^-2) = 0.40760596444438
     * row 1: log(3) = 1.09861228866811; mean 0.7531091265562451
     * (NumPy: -np.mean(log_softmax(CL, -1)[[0,1],[2,0]])) */
    tg_tensor *l = mk(DT, TG_SHAPE(2, 3), V(1, 2, 3, 1, 1, 1));
    tg_tensor *y = labels(2, (const int64_t[]){2, 0});
    EXPECT(tg_cross_entropy(C, l, y), TOL, 0, NULL, V(0.7531091265562451));
    /* N = 1 */
    tg_tensor *l1 = mk(DT, TG_SHAPE(1, 2), V(0, 0));
    EXPECT(tg_cross_entropy(C, l1, labels(1, (const int64_t[]){1})), TOL, 0, NULL,
           V(0.6931471805599453)); /* np.log(2) */
}
END_TEST

START_TEST(test_cross_entropy_uniform)
{
    /* all logits equal: the loss is log(C) whatever the labels */
    double v[15];
    for (int i = 0; i < 15; i++) v[i] = 7.0;
    tg_tensor *l = mk(DT, TG_SHAPE(3, 5), v);
    EXPECT(tg_cross_entropy(C, l, labels(3, (const int64_t[]){0, 4, 2})), TOL, 0, NULL,
           V(1.6094379124341003)); /* np.log(5) */
    for (int i = 0; i < 15; i++) v[i] = -1e4;
    l = mk(DT, TG_SHAPE(3, 5), v);
    EXPECT(tg_cross_entropy(C, l, labels(3, (const int64_t[]){1, 1, 3})), TOL, 0, NULL,
           V(1.6094379124341003)); /* np.log(5) */
}
END_TEST

START_TEST(test_cross_entropy_large_logits)
{
    /* CB = [[1e4,-1e4,0],[-1e4,1e4,0]], labels [1, 1]:
     * row 0 loss = 1e4 - (-1e4) = 2e4, row 1 loss = 0; mean 1e4.
     * Gradient (softmax - onehot)/N = [[1,-1,0],[0,0,0]] / 2. */
    tg_tensor *l = mk(DT, TG_SHAPE(2, 3), V(1e4, -1e4, 0, -1e4, 1e4, 0));
    tg_set_requires_grad(l, true);
    tg_tensor *loss = tg_cross_entropy(C, l, labels(2, (const int64_t[]){1, 1}));
    EXPECT(loss, TOL, 0, NULL, V(10000.0));
    ck_assert(isfinite(tg_item(loss)));
    ck_assert_int_eq(tg_backward(C, loss), TG_OK);
    tg_tensor *g = tg_grad(l);
    EXPECT(g, TOL, TG_SHAPE(2, 3), V(0.5, -0.5, 0, 0, 0, 0));
    double *gv = read_all(g);
    int finite = 1;
    for (int i = 0; i < 6; i++) finite = finite && isfinite(gv[i]);
    free(gv);
    ck_assert(finite);

    /* the label on the -1e4 logit of each row */
    tg_tensor *l2 = mk(DT, TG_SHAPE(2, 3), V(1e4, -1e4, 0, -1e4, 1e4, 0));
    tg_set_requires_grad(l2, true);
    tg_tensor *loss2 = tg_cross_entropy(C, l2, labels(2, (const int64_t[]){1, 0}));
    EXPECT(loss2, TOL, 0, NULL, V(20000.0)); /* both rows 2e4 */
    ck_assert_int_eq(tg_backward(C, loss2), TG_OK);
    EXPECT(tg_grad(l2), TOL, TG_SHAPE(2, 3), V(0.5, -0.5, 0, -0.5, 0.5, 0));
}
END_TEST

START_TEST(test_cross_entropy_errors)
{
    tg_tensor *l = mk(TG_F64, TG_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    EXPECT_ERR(tg_cross_entropy(C, l, labels(2, (const int64_t[]){0, 3})), TG_ERR_INVALID);
    EXPECT_ERR(tg_cross_entropy(C, l, labels(2, (const int64_t[]){-1, 0})), TG_ERR_INVALID);
    EXPECT_FAIL(tg_cross_entropy(C, l, labels(3, (const int64_t[]){0, 0, 0}))); /* N */
    /* float labels are not labels */
    tg_tensor *fl = mk(TG_F64, TG_SHAPE(2), V(0, 1));
    EXPECT_FAIL(tg_cross_entropy(C, l, fl));
}
END_TEST

/* ====================================================================== */
/* Strided inputs give the values of contiguous copies                   */
/* ====================================================================== */

/* Compares op(view) with op(contiguous(view)) for views of a [4,6] base. */
START_TEST(test_strided_inputs)
{
    tg_ctx_seed(C, 1234);
    tg_tensor *base = tg_randn(C, DT, TG_SHAPE(4, 6));
    tg_tensor *pos = tg_add_scalar(C, tg_rand(C, DT, TG_SHAPE(4, 6)), 0.5); /* > 0 */
    ck_assert_ptr_nonnull(base);
    ck_assert_ptr_nonnull(pos);
    tg_tensor *views[3], *pviews[3];
    views[0] = tg_transpose(C, base, 0, 1);                         /* [6,4] */
    views[1] = tg_slice(C, base, 1, 0, 6, 2);                       /* [4,3] step 2 */
    views[2] = tg_slice(C, tg_transpose(C, base, 0, 1), 0, 1, 6, 2); /* [3,4] */
    pviews[0] = tg_transpose(C, pos, 0, 1);
    pviews[1] = tg_slice(C, pos, 1, 1, 6, 2);
    pviews[2] = tg_slice(C, tg_transpose(C, pos, 0, 1), 0, 0, 6, 2);
    for (int k = 0; k < 3; k++) {
        tg_tensor *v = views[k], *vc = tg_contiguous(C, v);
        tg_tensor *p = pviews[k], *pc = tg_contiguous(C, p);
        ck_assert_ptr_nonnull(vc);
        ck_assert_ptr_nonnull(pc);
        ck_assert(!tg_is_contiguous(v));
        EXPECT_SAME(tg_neg(C, v), tg_neg(C, vc), TOL);
        EXPECT_SAME(tg_scale(C, v, 0.3), tg_scale(C, vc, 0.3), TOL);
        EXPECT_SAME(tg_add_scalar(C, v, -2), tg_add_scalar(C, vc, -2), TOL);
        EXPECT_SAME(tg_pow_scalar(C, v, 2), tg_pow_scalar(C, vc, 2), TOL);
        EXPECT_SAME(tg_pow_scalar(C, p, 0.5), tg_pow_scalar(C, pc, 0.5), TOL);
        EXPECT_SAME(tg_pow_scalar(C, p, -1), tg_pow_scalar(C, pc, -1), TOL);
        EXPECT_SAME(tg_exp(C, v), tg_exp(C, vc), TOL);
        EXPECT_SAME(tg_log(C, p), tg_log(C, pc), TOL);
        EXPECT_SAME(tg_sqrt(C, p), tg_sqrt(C, pc), TOL);
        EXPECT_SAME(tg_tanh(C, v), tg_tanh(C, vc), TOL);
        EXPECT_SAME(tg_sigmoid(C, v), tg_sigmoid(C, vc), TOL);
        EXPECT_SAME(tg_relu(C, v), tg_relu(C, vc), TOL);
        /* binary: strided with contiguous, strided with strided, broadcast */
        EXPECT_SAME(tg_add(C, v, pc), tg_add(C, vc, pc), TOL);
        EXPECT_SAME(tg_sub(C, pc, v), tg_sub(C, pc, vc), TOL);
        EXPECT_SAME(tg_mul(C, v, p), tg_mul(C, vc, pc), TOL);
        EXPECT_SAME(tg_div(C, v, p), tg_div(C, vc, pc), TOL);
        tg_tensor *row = tg_slice(C, p, 0, 0, 1, 1);   /* [1,n] strided row */
        tg_tensor *col = tg_slice(C, p, 1, 1, 2, 1);   /* [m,1] strided column */
        EXPECT_SAME(tg_mul(C, v, row), tg_mul(C, vc, tg_contiguous(C, row)), TOL);
        EXPECT_SAME(tg_div(C, col, v), tg_div(C, tg_contiguous(C, col), vc), TOL);
        /* reductions and softmax */
        EXPECT_SAME(tg_sum(C, v), tg_sum(C, vc), TOL);
        EXPECT_SAME(tg_mean(C, v), tg_mean(C, vc), TOL);
        EXPECT_SAME(tg_sum_axes(C, v, 1, (const int[]){0}, false),
                    tg_sum_axes(C, vc, 1, (const int[]){0}, false), TOL);
        EXPECT_SAME(tg_mean_axes(C, v, 1, (const int[]){-1}, true),
                    tg_mean_axes(C, vc, 1, (const int[]){-1}, true), TOL);
        EXPECT_SAME(tg_softmax(C, v, -1), tg_softmax(C, vc, -1), TOL);
        EXPECT_SAME(tg_softmax(C, v, 0), tg_softmax(C, vc, 0), TOL);
        EXPECT_SAME(tg_log_softmax(C, v, -1), tg_log_softmax(C, vc, -1), TOL);
        EXPECT_SAME(tg_log_softmax(C, v, 0), tg_log_softmax(C, vc, 0), TOL);
        /* matmul with a strided operand on either side */
        tg_tensor *vt = tg_transpose(C, v, 0, 1), *vtc = tg_contiguous(C, vt);
        EXPECT_SAME(tg_matmul(C, v, vt), tg_matmul(C, vc, vtc), TOL);
        EXPECT_SAME(tg_matmul(C, vtc, v), tg_matmul(C, vtc, vc), TOL);
        /* views of views, reshape-copy */
        EXPECT_SAME(tg_reshape(C, v, TG_SHAPE(-1)), tg_reshape(C, vc, TG_SHAPE(-1)), 0.0);
        EXPECT_SAME(tg_contiguous(C, tg_slice(C, v, 0, 1, 100, 2)), tg_slice(C, vc, 0, 1, 100, 2),
                    0.0);
        /* losses */
        EXPECT_SAME(tg_mse_loss(C, v, p), tg_mse_loss(C, vc, pc), TOL);
        int64_t rows = tg_shape(v)[0];
        int64_t lab[6];
        for (int64_t i = 0; i < rows; i++) lab[i] = (i * 2 + 1) % tg_shape(v)[1];
        tg_tensor *y = labels(rows, lab);
        EXPECT_SAME(tg_cross_entropy(C, v, y), tg_cross_entropy(C, vc, y), TOL);
    }
    /* an expanded (stride-0) input */
    tg_tensor *col = mk(DT, TG_SHAPE(4, 1), V(1, -2, 0.5, 3));
    tg_tensor *ex = tg_expand(C, col, TG_SHAPE(4, 6));
    tg_tensor *exc = tg_contiguous(C, ex);
    EXPECT_SAME(tg_mul(C, ex, base), tg_mul(C, exc, base), TOL);
    EXPECT_SAME(tg_exp(C, ex), tg_exp(C, exc), TOL);
    EXPECT_SAME(tg_sum_axes(C, ex, 1, (const int[]){1}, false),
                tg_sum_axes(C, exc, 1, (const int[]){1}, false), TOL);
    EXPECT_SAME(tg_softmax(C, ex, 0), tg_softmax(C, exc, 0), TOL);
    EXPECT_SAME(tg_matmul(C, ex, tg_transpose(C, base, 0, 1)),
                tg_matmul(C, exc, tg_transpose(C, base, 0, 1)), TOL);
    ck_assert_int_eq(tg_ctx_status(C), TG_OK);
}
END_TEST

/* ====================================================================== */
/* The suite                                                              */
/* ====================================================================== */

static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tu_tcase(name);
    tcase_set_timeout(tc, 60); /* explicit, whatever TU_TIMEOUT becomes */
    tcase_add_checked_fixture(tc, ops_setup, ops_teardown);
    suite_add_tcase(s, tc);
    return tc;
}

/* Runs fn once per floating dtype (_i: 0 = f32, 1 = f64). */
#define ADD_DT(tc, fn) tcase_add_loop_test((tc), (fn), 0, 2)

Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc;

    tc = tcase(s, "binary");
    ADD_DT(tc, test_binary_2x3_with_3);
    ADD_DT(tc, test_binary_3x1_with_1x4);
    ADD_DT(tc, test_binary_2x1x3_with_4x1);
    ADD_DT(tc, test_binary_0d);
    tcase_add_test(tc, test_binary_errors);

    tc = tcase(s, "unary");
    ADD_DT(tc, test_unary);
    ADD_DT(tc, test_pow_scalar);
    ADD_DT(tc, test_sigmoid_tanh_extremes);
    ADD_DT(tc, test_log_edges);

    tc = tcase(s, "reduce");
    ADD_DT(tc, test_sum_mean_all);
    ADD_DT(tc, test_sum_axes);
    ADD_DT(tc, test_mean_axes);
    tcase_add_test(tc, test_reduce_errors);
    ADD_DT(tc, test_softmax);
    ADD_DT(tc, test_softmax_large_logits);

    tc = tcase(s, "matmul");
    ADD_DT(tc, test_matmul_2d);
    ADD_DT(tc, test_matmul_batched);
    ADD_DT(tc, test_matmul_broadcast_batch);
    ADD_DT(tc, test_matmul_transposed_values);
    ADD_DT(tc, test_matmul_transposed_not_copied);
    tcase_add_test(tc, test_matmul_errors);

    tc = tcase(s, "views");
    ADD_DT(tc, test_reshape);
    ADD_DT(tc, test_transpose_permute);
    ADD_DT(tc, test_expand);
    ADD_DT(tc, test_slice);
    ADD_DT(tc, test_contiguous);

    tc = tcase(s, "loss");
    ADD_DT(tc, test_mse_loss);
    ADD_DT(tc, test_cross_entropy_value);
    ADD_DT(tc, test_cross_entropy_uniform);
    ADD_DT(tc, test_cross_entropy_large_logits);
    tcase_add_test(tc, test_cross_entropy_errors);

    tc = tcase(s, "strided");
    ADD_DT(tc, test_strided_inputs);

    return s;
}
