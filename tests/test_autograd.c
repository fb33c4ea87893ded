/*
 * test_autograd.c - gradients of small graphs against hand and NumPy
 * values (TG_F64, 1e-12), and the autograd contract of
 * include/tapegrad/autograd.h: accumulation, grad mode, detach,
 * backward with an explicit output gradient, tg_grad_of with and without
 * create_graph, deep graphs, persistent parameters with a step context,
 * determinism, and leaves the loss does not reach.
 *
 * Golden gradients were computed with NumPy 2.4 in float64 from the
 * closed-form derivative (each literal names the expression). Inputs from
 * pattern() are multiples of 1/4:
 *     pat = lambda n, s: np.array([(((i*7 + s*3) % 11) - 5) * 0.25 for i in range(n)])
 *
 * Only the public API is used.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* ====================================================================== */
/* Helpers                                                                */
/* ====================================================================== */

#define TOL 1e-12

static tg_ctx *C; /* the context of the running test (fixture) */

static void ag_setup(void)
{
    C = tg_ctx_new();
    ck_assert_ptr_nonnull(C);
}

static void ag_teardown(void)
{
    tg_ctx_free(C);
    C = NULL;
}

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* An f64 tensor in c from values. */
static tg_tensor *mk_in(tg_ctx *c, int ndim, const int64_t *shape, const double *v)
{
    return tg_tensor_from(c, TG_F64, ndim, shape, v);
}

/* An f64 leaf in C that requires grad. */
static tg_tensor *leaf(int ndim, const int64_t *shape, const double *v)
{
    tg_tensor *t = mk_in(C, ndim, shape, v);
    ck_assert_msg(t != NULL, "%s", tg_ctx_errmsg(C));
    tg_set_requires_grad(t, true);
    ck_assert(tg_requires_grad(t));
    return t;
}

/* pattern(i) = (((i*7 + seed*3) % 11) - 5) * 0.25, see the file comment. */
static tg_tensor *mk_pat(int ndim, const int64_t *shape, int seed)
{
    int64_t n = numel_of(ndim, shape);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) v[i] = (double)(((i * 7 + seed * 3) % 11) - 5) * 0.25;
    tg_tensor *t = mk_in(C, ndim, shape, v);
    free(v);
    ck_assert_ptr_nonnull(t);
    return t;
}

static tg_tensor *leaf_pat(int ndim, const int64_t *shape, int seed)
{
    tg_tensor *t = mk_pat(ndim, shape, seed);
    tg_set_requires_grad(t, true);
    return t;
}

/* R = (np.arange(24) * 0.5 - 3).reshape(2, 3, 4) */
static tg_tensor *mk_R(void)
{
    double v[24];
    for (int i = 0; i < 24; i++) v[i] = i * 0.5 - 3;
    return mk_in(C, TG_SHAPE(2, 3, 4), v);
}

static double *read_all(const tg_tensor *t)
{
    int64_t n = tg_numel(t);
    double *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F64);
    ck_assert_int_eq(tg_copy_out(t, out, (size_t)n * sizeof(double)), TG_OK);
    return out;
}

static int close_to(double got, double want, double tol)
{
    if (isnan(want)) return isnan(got);
    if (!isfinite(got)) return 0;
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* Asserts that t is non-NULL, has the given shape and values. */
static void expect_at(int line, const tg_tensor *t, double tol, int ndim, const int64_t *shape,
                      const double *want)
{
    char buf[128];
    ck_assert_msg(t != NULL, "line %d: NULL tensor (ctx: %s)", line, tg_ctx_errmsg(C));
    ck_assert_msg(tg_ndim(t) == ndim, "line %d: ndim %d (%s), expected %d", line, tg_ndim(t),
                  tg_shape_str(t, buf, sizeof buf), ndim);
    for (int d = 0; d < ndim; d++)
        ck_assert_msg(tg_shape(t)[d] == shape[d], "line %d: shape %s, dim %d expected %lld",
                      line, tg_shape_str(t, buf, sizeof buf), d, (long long)shape[d]);
    int64_t n = tg_numel(t);
    double *got = read_all(t);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!close_to(got[i], want[i], tol)) bad = i;
    double g = bad >= 0 ? got[bad] : 0.0;
    free(got);
    ck_assert_msg(bad < 0, "line %d: element %lld: got %.17g, expected %.17g", line,
                  (long long)bad, g, want[bad]);
}

#define EXPECT(t, ...) expect_at(__LINE__, (t), TOL, __VA_ARGS__)
#define V(...) ((const double[]){__VA_ARGS__})

#define OK(expr)                                                                                \
    do {                                                                                       \
        tg_status st_ = (expr);                                                                \
        ck_assert_msg(st_ == TG_OK, "%s: %s (%s)", #expr, tg_status_str(st_),                  \
                      tg_ctx_errmsg(C));                                                       \
    } while (0)

/* A tensor of n zeros, for expected values. */
static const double ZEROS[64];

/* ====================================================================== */
/* Broadcast gradients                                                    */
/* ====================================================================== */

START_TEST(test_broadcast_mul_grads)
{
    /* a [3,1], b [1,4], W = pat(12,1).reshape(3,4); L = sum(tanh(a*b) * W) */
    tg_tensor *a = leaf(TG_SHAPE(3, 1), V(0.5, -1.0, 2.0));
    tg_tensor *b = leaf(TG_SHAPE(1, 4), V(1.0, -2.0, 3.0, 0.25));
    tg_tensor *w = mk_pat(TG_SHAPE(3, 4), 1);
    tg_tensor *loss = tg_sum(C, tg_mul(C, tg_tanh(C, tg_mul(C, a, b)), w));
    EXPECT(loss, 0, NULL, V(0.276832646286265)); /* (tanh(a*b)*W).sum() */
    OK(tg_backward(C, loss));
    /* ((1-tanh(a*b)**2)*b*W).sum(1, keepdims=True) */
    EXPECT(tg_grad(a), TG_SHAPE(3, 1),
           V(-1.4922303033784916, 0.5666290142689014, -0.11257943130535944));
    /* ((1-tanh(a*b)**2)*a*W).sum(0, keepdims=True) */
    EXPECT(tg_grad(b), TG_SHAPE(1, 4),
           V(-0.6519116872820903, 0.2591315868012017, 0.03247894357830154,
             -1.8606599936771084));
    /* the constant gets no gradient */
    ck_assert_ptr_null(tg_grad(w));
}
END_TEST

START_TEST(test_plain_broadcast_grads)
{
    /* L = sum(a [3,1] * b [1,4]): dL/da = sum(b) = 2.25, dL/db = sum(a) = 1.5 (by hand) */
    tg_tensor *a = leaf(TG_SHAPE(3, 1), V(0.5, -1.0, 2.0));
    tg_tensor *b = leaf(TG_SHAPE(1, 4), V(1.0, -2.0, 3.0, 0.25));
    OK(tg_backward(C, tg_sum(C, tg_mul(C, a, b))));
    EXPECT(tg_grad(a), TG_SHAPE(3, 1), V(2.25, 2.25, 2.25));
    EXPECT(tg_grad(b), TG_SHAPE(1, 4), V(1.5, 1.5, 1.5, 1.5));
    /* L = sum(x [2,3] - s) with a 0-d s: dL/ds = -6, dL/dx = 1 */
    tg_tensor *x = leaf(TG_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    tg_tensor *s = tg_scalar(C, TG_F64, 0.5);
    tg_set_requires_grad(s, true);
    OK(tg_backward(C, tg_sum(C, tg_sub(C, x, s))));
    EXPECT(tg_grad(s), 0, NULL, V(-6.0));
    EXPECT(tg_grad(x), TG_SHAPE(2, 3), V(1, 1, 1, 1, 1, 1));
    /* L = sum(x * s): dL/ds = sum(x) = 21 */
    tg_zero_grad(s);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, s, x))));
    EXPECT(tg_grad(s), 0, NULL, V(21.0));
}
END_TEST

START_TEST(test_bias_grad)
{
    /* x = pat(24,2).reshape(2,3,4), bias [4]; L = sum(tanh(x + bias)) */
    tg_tensor *x = leaf_pat(TG_SHAPE(2, 3, 4), 2);
    tg_tensor *bias = leaf(TG_SHAPE(4), V(0.1, -0.2, 0.3, -0.4));
    OK(tg_backward(C, tg_sum(C, tg_tanh(C, tg_add(C, x, bias)))));
    /* (1 - np.tanh(x + bias)**2).sum((0, 1)) */
    EXPECT(tg_grad(bias), TG_SHAPE(4),
           V(4.136601840730251, 3.6067753615240643, 3.5372709525892185, 3.508192569745569));
    /* 1 - np.tanh(x + bias)**2 */
    EXPECT(tg_grad(x), TG_SHAPE(2, 3, 4),
           V(0.8868514931724362, 0.45272103704772404, 0.25743319670309406, 0.8556387860811777,
             0.4869173611483415, 0.7494795181900823, 0.9975041607715679, 0.1372235190654657,
             0.7115777625872229, 0.6347395899824587, 0.16499607805012118, 0.9778332467629834,
             0.6731934498762409, 0.559055167732244, 0.9151369618266292, 0.21615245902553737,
             0.5224229878648322, 0.8220012293690538, 0.45272103704772404, 0.9900662908474398,
             0.8556387860811777, 0.38877881920250157, 0.7494795181900823,
             0.33127826796296467));
}
END_TEST

START_TEST(test_div_broadcast_grad)
{
    /* A [2,3] / d [3], weighted by W2 = pat(6,3).reshape(2,3) */
    tg_tensor *a = leaf(TG_SHAPE(2, 3), V(1.0, -2.0, 0.5, 3.0, 4.0, -1.5));
    tg_tensor *d = leaf(TG_SHAPE(3), V(2.0, -0.5, 4.0));
    tg_tensor *w = mk_pat(TG_SHAPE(2, 3), 3);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, w, tg_div(C, a, d)))));
    EXPECT(tg_grad(a), TG_SHAPE(2, 3), V(0.5, -0.0, -0.25, 0.375, 0.5, -0.3125)); /* W2/d */
    /* -(W2*A/d**2).sum(0) */
    EXPECT(tg_grad(d), TG_SHAPE(3), V(-0.8125, 4.0, -0.0859375));
}
END_TEST

/* ====================================================================== */
/* Matmul gradients                                                       */
/* ====================================================================== */

START_TEST(test_matmul_grads_2d)
{
    /* MA = pat(6,1).reshape(2,3), MB = pat(12,2).reshape(3,4), MW = pat(8,3).reshape(2,4);
     * L = sum(MW * (MA @ MB)) */
    tg_tensor *a = leaf_pat(TG_SHAPE(2, 3), 1);
    tg_tensor *b = leaf_pat(TG_SHAPE(3, 4), 2);
    tg_tensor *w = mk_pat(TG_SHAPE(2, 4), 3);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, w, tg_matmul(C, a, b)))));
    /* MW @ MB.T */
    EXPECT(tg_grad(a), TG_SHAPE(2, 3), V(-0.75, -1.6875, -0.5625, 1.375, -0.1875, 1.0));
    /* MA.T @ MW */
    EXPECT(tg_grad(b), TG_SHAPE(3, 4),
           V(-0.3125, 0.9375, 0.125, 0.0, 1.0, -1.25, -0.75, 0.4375, 0.25, 0.0, -0.25, 0.1875));
}
END_TEST

START_TEST(test_matmul_grads_transposed_leaf)
{
    /* The same product with MA given as a transposed view of a [3,2] leaf
     * holding MA.T: the leaf's grad is (MW @ MB.T).T */
    tg_tensor *ma = mk_pat(TG_SHAPE(2, 3), 1);
    tg_tensor *store = tg_contiguous(C, tg_transpose(C, ma, 0, 1)); /* MA.T, a leaf */
    ck_assert_ptr_nonnull(store);
    ck_assert(tg_is_leaf(store));
    tg_set_requires_grad(store, true);
    tg_tensor *b = leaf_pat(TG_SHAPE(3, 4), 2);
    tg_tensor *w = mk_pat(TG_SHAPE(2, 4), 3);
    tg_tensor *a = tg_transpose(C, store, 0, 1);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, w, tg_matmul(C, a, b)))));
    /* (MW @ MB.T).T */
    EXPECT(tg_grad(store), TG_SHAPE(3, 2), V(-0.75, 1.375, -1.6875, -0.1875, -0.5625, 1.0));
    EXPECT(tg_grad(b), TG_SHAPE(3, 4),
           V(-0.3125, 0.9375, 0.125, 0.0, 1.0, -1.25, -0.75, 0.4375, 0.25, 0.0, -0.25, 0.1875));
}
END_TEST

START_TEST(test_matmul_grads_broadcast_batch)
{
    /* GA = pat(24,5).reshape(2,1,3,4), GB = pat(40,6).reshape(5,4,2),
     * GW = pat(60,7).reshape(2,5,3,2); L = sum(GW * (GA @ GB)) */
    tg_tensor *a = leaf_pat(TG_SHAPE(2, 1, 3, 4), 5);
    tg_tensor *b = leaf_pat(TG_SHAPE(5, 4, 2), 6);
    tg_tensor *w = mk_pat(TG_SHAPE(2, 5, 3, 2), 7);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, w, tg_matmul(C, a, b)))));
    /* (GW @ np.swapaxes(GB, -1, -2)).sum(1, keepdims=True) */
    EXPECT(tg_grad(a), TG_SHAPE(2, 1, 3, 4),
           V(2.1875, 0.3125, -0.1875, 0.0, -0.9375, -2.0, 3.8125, -0.6875, -0.625, 1.1875,
             0.25, 0.6875, 1.375, -2.75, 1.375, 0.0, -0.375, -1.625, 3.3125, -0.6875, -2.8125,
             2.25, -3.6875, 0.6875));
    /* (np.swapaxes(GA, -1, -2) @ GW).sum(0) */
    EXPECT(tg_grad(b), TG_SHAPE(5, 4, 2),
           V(-0.0625, 1.625, -1.8125, -0.3125, 1.25, -0.1875, -3.25, 2.6875, -3.0, 2.125,
             0.3125, -2.3125, -0.5, 1.5, 0.0625, 1.875, 1.625, -0.125, -0.3125, 0.5, -0.1875,
             0.4375, 2.6875, -1.6875, 2.125, 0.375, -2.3125, 1.25, 1.5, 0.0625, 1.875,
             -1.8125, -0.125, -3.25, 0.5, -0.0625, 0.4375, -0.3125, -1.6875, 0.125));
    ck_assert_ptr_null(tg_grad(w));

    /* HA [3,4] @ HB [2,4,5]: the 2-d operand's grad sums over the batch */
    tg_tensor *ha = leaf_pat(TG_SHAPE(3, 4), 7);
    tg_tensor *hb = leaf_pat(TG_SHAPE(2, 4, 5), 8);
    tg_tensor *hw = mk_pat(TG_SHAPE(2, 3, 5), 9);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, hw, tg_matmul(C, ha, hb)))));
    /* (HW @ np.swapaxes(HB, -1, -2)).sum(0) */
    EXPECT(tg_grad(ha), TG_SHAPE(3, 4),
           V(-1.5, 0.5, 3.1875, -1.6875, -3.375, 3.1875, 5.625, -2.25, -3.1875, -1.0, -0.1875,
             2.6875));
    /* HA.T @ HW */
    EXPECT(tg_grad(hb), TG_SHAPE(2, 4, 5),
           V(-1.25, -1.25, 2.1875, -1.25, -1.25, 0.0, 0.25, -1.5625, 0.0625, 0.3125, -0.125,
             0.375, 0.875, 0.0, 0.5, 1.125, -0.875, -0.8125, 0.625, -1.375, -1.25, 2.1875,
             -1.25, 2.1875, -1.25, 0.3125, -1.5, 0.125, 1.0625, -0.0625, 0.5, 1.0, 0.125,
             -1.4375, -0.25, -1.375, -1.3125, 0.125, 0.875, 1.625));
}
END_TEST

/* ====================================================================== */
/* Loss gradients                                                         */
/* ====================================================================== */

START_TEST(test_cross_entropy_grad)
{
    /* Lg [3,4], labels [3, 0, 2] */
    tg_tensor *l = leaf(TG_SHAPE(3, 4),
                        V(1.0, 2.0, -1.0, 0.5, 0.0, -3.0, 2.0, 1.0, 4.0, 4.0, 4.0, -4.0));
    tg_tensor *y = tg_tensor_from(C, TG_I64, TG_SHAPE(3), (const int64_t[]){3, 0, 2});
    tg_tensor *loss = tg_cross_entropy(C, l, y);
    /* -np.mean(np.log(softmax(Lg, -1))[np.arange(3), labels]) */
    EXPECT(loss, 0, NULL, V(1.8353281027583608));
    OK(tg_backward(C, loss));
    /* (softmax(Lg, -1) - np.eye(4)[labels]) / 3 */
    EXPECT(tg_grad(l), TG_SHAPE(3, 4),
           V(0.07473593934940038, 0.20315334586629238, 0.010114409519805408,
             -0.2880036947354982, -0.303457058445306, 0.0014874521404273121,
             0.2207574711747068, 0.08121213513017192, 0.11109868795850475,
             0.11109868795850475, -0.2222346453748286, 3.726945781908115e-05));
    ck_assert_ptr_null(tg_grad(y));
}
END_TEST

START_TEST(test_mse_grad)
{
    tg_tensor *p = leaf(TG_SHAPE(2, 3), V(0.5, -1, 2, 3, 0, -0.25));
    tg_tensor *t = leaf(TG_SHAPE(2, 3), V(1, 1, 1, 2.5, -0.5, 0));
    OK(tg_backward(C, tg_mse_loss(C, p, t)));
    /* 2*(p - t)/6 */
    EXPECT(tg_grad(p), TG_SHAPE(2, 3),
           V(-0.16666666666666666, -0.6666666666666666, 0.3333333333333333,
             0.16666666666666666, 0.16666666666666666, -0.08333333333333333));
    /* -2*(p - t)/6 */
    EXPECT(tg_grad(t), TG_SHAPE(2, 3),
           V(0.16666666666666666, 0.6666666666666666, -0.3333333333333333,
             -0.16666666666666666, -0.16666666666666666, 0.08333333333333333));
}
END_TEST

/* ====================================================================== */
/* Accumulation, grad mode, detach                                        */
/* ====================================================================== */

START_TEST(test_accumulation)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(1, -2, 3));
    ck_assert_ptr_null(tg_grad(x));
    /* L = sum(x*x*x): dL/dx = 3x^2 */
    tg_tensor *loss = tg_sum(C, tg_mul(C, tg_mul(C, x, x), x));
    OK(tg_backward(C, loss));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(3, 12, 27));
    OK(tg_backward(C, loss)); /* accumulates */
    EXPECT(tg_grad(x), TG_SHAPE(3), V(6, 24, 54));
    tg_tensor *g = tg_grad(x);
    tg_zero_grad(x);
    ck_assert_ptr_nonnull(tg_grad(x));
    EXPECT(tg_grad(x), TG_SHAPE(3), ZEROS);
    OK(tg_backward(C, loss));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(3, 12, 27));
    ck_assert_ptr_eq(tg_grad(x), g); /* the same buffer, reused */
    /* a second graph adds to it: d sum(2x)/dx = 2 */
    OK(tg_backward(C, tg_sum(C, tg_scale(C, x, 2.0))));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(5, 14, 29));
    /* tg_zero_grad on a tensor with no grad yet is harmless */
    tg_tensor *y = leaf(TG_SHAPE(2), V(1, 2));
    tg_zero_grad(y);
    tg_zero_grad(NULL);
    ck_assert_int_eq(tg_ctx_status(C), TG_OK);
}
END_TEST

START_TEST(test_grad_mode)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(1, -2, 3));
    ck_assert(tg_grad_enabled(C));
    ck_assert(tg_set_grad_enabled(C, false) == true); /* previous mode */
    ck_assert(!tg_grad_enabled(C));
    tg_tensor *y = tg_mul(C, x, x);
    tg_tensor *s = tg_sum(C, tg_tanh(C, y));
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_NONE);
    ck_assert_int_eq(tg_tensor_op(s), TG_OP_NONE);
    ck_assert(!tg_requires_grad(y));
    ck_assert(!tg_requires_grad(s));
    ck_assert(tg_is_leaf(y));
    EXPECT(y, TG_SHAPE(3), V(1, 4, 9)); /* values are still computed */
    ck_assert(tg_set_grad_enabled(C, false) == false);
    /* backward of something that requires no grad is misuse */
    ck_assert_int_eq(tg_backward(C, s), TG_ERR_MISUSE);
    ck_assert_int_eq(tg_ctx_status(C), TG_ERR_MISUSE);
    tg_ctx_clear_error(C);
    ck_assert(tg_set_grad_enabled(C, true) == false);
    ck_assert(tg_set_grad_enabled(C, true) == true);
    tg_tensor *y2 = tg_mul(C, x, x);
    ck_assert_int_eq(tg_tensor_op(y2), TG_OP_MUL);
    ck_assert(tg_requires_grad(y2));
    ck_assert(!tg_is_leaf(y2));
    /* grad mode on, but no input requires grad: nothing is recorded */
    tg_tensor *k = mk_in(C, TG_SHAPE(3), V(1, 2, 3));
    tg_tensor *yk = tg_exp(C, k);
    ck_assert_int_eq(tg_tensor_op(yk), TG_OP_NONE);
    ck_assert(!tg_requires_grad(yk));
    ck_assert_ptr_null(tg_grad(x));
}
END_TEST

START_TEST(test_requires_grad_rules)
{
    /* I64 tensors and non-leaves cannot be marked */
    tg_tensor *lab = tg_tensor_from(C, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 1});
    tg_set_requires_grad(lab, true);
    ck_assert(!tg_requires_grad(lab));
    ck_assert_int_eq(tg_ctx_status(C), TG_ERR_DTYPE);
    tg_ctx_clear_error(C);
    tg_tensor *x = leaf(TG_SHAPE(2), V(1, 2));
    tg_tensor *y = tg_exp(C, x);
    tg_set_requires_grad(y, false);
    ck_assert(tg_requires_grad(y));
    ck_assert_int_eq(tg_ctx_status(C), TG_ERR_MISUSE);
    tg_ctx_clear_error(C);
    /* a leaf can be turned off again */
    tg_set_requires_grad(x, false);
    ck_assert(!tg_requires_grad(x));
    ck_assert_int_eq(tg_tensor_op(tg_exp(C, x)), TG_OP_NONE);
}
END_TEST

START_TEST(test_detach)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1, 2));
    tg_tensor *y = tg_mul(C, x, x);
    tg_tensor *d = tg_detach(C, y);
    ck_assert_ptr_nonnull(d);
    ck_assert(tg_is_leaf(d));
    ck_assert(!tg_requires_grad(d));
    ck_assert_int_eq(tg_tensor_op(d), TG_OP_NONE);
    EXPECT(d, TG_SHAPE(3), V(0.25, 1, 4));
    /* L = sum(detach(x*x) * x): dL/dx = x^2, not 3x^2 */
    OK(tg_backward(C, tg_sum(C, tg_mul(C, d, x))));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(0.25, 1, 4));
    ck_assert_ptr_null(tg_grad(d));
    /* a loss built only from detached values requires no grad */
    tg_tensor *s = tg_sum(C, tg_exp(C, d));
    ck_assert(!tg_requires_grad(s));
    ck_assert_int_eq(tg_backward(C, s), TG_ERR_MISUSE);
    tg_ctx_clear_error(C);
    /* detach of NULL */
    ck_assert_ptr_null(tg_detach(C, NULL));
    ck_assert_int_ne(tg_ctx_status(C), TG_OK);
    tg_ctx_clear_error(C);
}
END_TEST

START_TEST(test_backward_with_grad)
{
    /* y = 2 tanh(X), a [2,3] output, with output gradient D */
    tg_tensor *x = leaf(TG_SHAPE(2, 3), V(0.5, -1.0, 2.0, 0.0, 1.5, -0.25));
    tg_tensor *y = tg_scale(C, tg_tanh(C, x), 2.0);
    tg_tensor *dout = mk_in(C, TG_SHAPE(2, 3), V(1.0, -2.0, 0.5, 3.0, 0.25, -1.0));
    /* a non-scalar loss is a shape error for tg_backward */
    ck_assert_int_eq(tg_backward(C, y), TG_ERR_SHAPE);
    ck_assert(strlen(tg_ctx_errmsg(C)) > 0);
    tg_ctx_clear_error(C);
    ck_assert_ptr_null(tg_grad(x));
    OK(tg_backward_with_grad(C, y, dout));
    /* 2 * D * (1 - np.tanh(X)**2) */
    EXPECT(tg_grad(x), TG_SHAPE(2, 3),
           V(1.5728954659318548, -1.6798973664561045, 0.07065082485316443, 6.0,
             0.09035331946182418, -1.880029697612756));
    /* a dout of the wrong shape is an error and changes nothing */
    tg_tensor *bad = mk_in(C, TG_SHAPE(3, 2), V(1, 1, 1, 1, 1, 1));
    ck_assert_int_ne(tg_backward_with_grad(C, y, bad), TG_OK);
    tg_ctx_clear_error(C);
    EXPECT(tg_grad(x), TG_SHAPE(2, 3),
           V(1.5728954659318548, -1.6798973664561045, 0.07065082485316443, 6.0,
             0.09035331946182418, -1.880029697612756));
    /* on a one-element output, dout = 1 is tg_backward */
    tg_tensor *x2 = leaf(TG_SHAPE(2), V(1.0, 2.0));
    tg_tensor *s = tg_sum(C, tg_mul(C, x2, x2));
    OK(tg_backward_with_grad(C, s, tg_scalar(C, TG_F64, 1.0)));
    EXPECT(tg_grad(x2), TG_SHAPE(2), V(2, 4));
}
END_TEST

/* ====================================================================== */
/* tg_grad_of                                                             */
/* ====================================================================== */

START_TEST(test_grad_of)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1.0, 2.0));
    tg_tensor *w = leaf(TG_SHAPE(3), V(1.5, 0.25, -0.75));
    tg_tensor *z = leaf(TG_SHAPE(2, 2), V(1, 2, 3, 4)); /* not used by y */
    tg_tensor *h = tg_mul(C, x, w);
    tg_tensor *y = tg_sum(C, tg_tanh(C, h));
    /* give w a .grad first, to see that grad_of does not touch it */
    OK(tg_backward(C, tg_sum(C, w)));
    EXPECT(tg_grad(w), TG_SHAPE(3), V(1, 1, 1));

    tg_tensor *grads[3] = {NULL, NULL, NULL};
    tg_tensor *ins[3] = {x, h, z};
    OK(tg_grad_of(C, 1, &y, NULL, 3, ins, false, grads));
    /* w * (1 - np.tanh(x*w)**2) */
    EXPECT(grads[0], TG_SHAPE(3),
           V(0.8948787124219972, 0.2350037122015945, -0.13552997919273627));
    /* 1 - np.tanh(x*w)**2: w.r.t. the intermediate h */
    EXPECT(grads[1], TG_SHAPE(3),
           V(0.5965858082813315, 0.940014848806378, 0.18070663892364836));
    /* the unused input gets zeros of its shape */
    EXPECT(grads[2], TG_SHAPE(2, 2), ZEROS);
    for (int i = 0; i < 3; i++) {
        ck_assert(!tg_requires_grad(grads[i]));
        ck_assert_ptr_eq(tg_tensor_ctx(grads[i]), C);
    }
    /* .grad of leaves is untouched */
    ck_assert_ptr_null(tg_grad(x));
    ck_assert_ptr_null(tg_grad(z));
    EXPECT(tg_grad(w), TG_SHAPE(3), V(1, 1, 1));

    /* two outputs, one non-scalar with an explicit weight:
     * d(sum(x*w) + <dd, x*x>)/dx = w + 2*x*dd */
    tg_tensor *o1 = tg_sum(C, tg_mul(C, x, w));
    tg_tensor *o2 = tg_mul(C, x, x);
    tg_tensor *dd = mk_in(C, TG_SHAPE(3), V(1.0, -1.0, 0.5));
    tg_tensor *outs[2] = {o1, o2};
    tg_tensor *douts[2] = {NULL, dd};
    tg_tensor *gx = NULL;
    OK(tg_grad_of(C, 2, outs, douts, 1, &x, false, &gx));
    EXPECT(gx, TG_SHAPE(3), V(2.5, 2.25, 1.25));
    ck_assert_ptr_null(tg_grad(x));
}
END_TEST

START_TEST(test_grad_of_errors)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1.0, 2.0));
    tg_tensor *y = tg_mul(C, x, x); /* non-scalar: needs an explicit dout */
    tg_tensor *g = (tg_tensor *)&g; /* a non-NULL sentinel that must become NULL */
    ck_assert_int_ne(tg_grad_of(C, 1, &y, NULL, 1, &x, false, &g), TG_OK);
    ck_assert_ptr_null(g);
    tg_ctx_clear_error(C);
    ck_assert_int_ne(tg_grad_of(C, 1, &y, NULL, 1, NULL, false, &g), TG_OK);
    tg_ctx_clear_error(C);
}
END_TEST

START_TEST(test_create_graph_cubic)
{
    /* y = sum(x^3): dy/dx = 3x^2, d(sum dy/dx)/dx = 6x */
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1.2, 2.0));
    for (int form = 0; form < 2; form++) {
        tg_tensor *cube = form == 0 ? tg_pow_scalar(C, x, 3.0)
                                    : tg_mul(C, tg_mul(C, x, x), x);
        tg_tensor *y = tg_sum(C, cube);
        tg_tensor *g = NULL, *gg = NULL;
        OK(tg_grad_of(C, 1, &y, NULL, 1, &x, true, &g));
        EXPECT(g, TG_SHAPE(3), V(0.75, 4.32, 12.0)); /* 3x^2 */
        ck_assert(tg_requires_grad(g));
        tg_tensor *sg = tg_sum(C, g);
        OK(tg_grad_of(C, 1, &sg, NULL, 1, &x, false, &gg));
        EXPECT(gg, TG_SHAPE(3), V(3.0, -7.199999999999999, 12.0)); /* 6x */
        /* the recorded gradient is also a loss for tg_backward */
        OK(tg_backward(C, sg));
        EXPECT(tg_grad(x), TG_SHAPE(3), V(3.0, -7.199999999999999, 12.0));
        tg_zero_grad(x);
    }
}
END_TEST

START_TEST(test_create_graph_tanh)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1.2, 2.0));
    tg_tensor *y = tg_sum(C, tg_tanh(C, x));
    tg_tensor *g = NULL, *gg = NULL;
    OK(tg_grad_of(C, 1, &y, NULL, 1, &x, true, &g));
    /* 1 - np.tanh(x)**2 */
    EXPECT(g, TG_SHAPE(3), V(0.7864477329659274, 0.30501999620740905, 0.07065082485316443));
    tg_tensor *sg = tg_sum(C, g);
    OK(tg_grad_of(C, 1, &sg, NULL, 1, &x, true, &gg));
    /* -2 * np.tanh(x) * (1 - np.tanh(x)**2) */
    EXPECT(gg, TG_SHAPE(3),
           V(-0.7268619813835873, 0.5085626501382733, -0.13621868742711296));
    ck_assert(tg_requires_grad(gg)); /* third order is available too */
    ck_assert_ptr_null(tg_grad(x));
}
END_TEST

START_TEST(test_hessian_vector_product)
{
    /* f(x) = x^T A x with a non-symmetric A: grad = (A + A^T) x,
     * Hessian-vector product = (A + A^T) v */
    tg_tensor *a = mk_in(C, TG_SHAPE(3, 3), V(1.0, 2.0, 0.0, -1.0, 3.0, 0.5, 2.0, 0.0, -2.0));
    tg_tensor *v = mk_in(C, TG_SHAPE(3), V(0.5, -1.0, 2.0));
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1.2, 2.0));
    tg_tensor *xr = tg_reshape(C, x, TG_SHAPE(1, 3));
    tg_tensor *xc = tg_reshape(C, x, TG_SHAPE(3, 1));
    tg_tensor *f = tg_matmul(C, tg_matmul(C, xr, a), xc); /* [1,1] */
    EXPECT(f, TG_SHAPE(1, 1), V(-3.2299999999999995)); /* x @ A @ x */
    tg_tensor *g = NULL, *hv = NULL;
    OK(tg_grad_of(C, 1, &f, NULL, 1, &x, true, &g));
    EXPECT(g, TG_SHAPE(3), V(3.8, -5.699999999999999, -7.6)); /* (A + A.T) @ x */
    tg_tensor *gv = tg_sum(C, tg_mul(C, g, v));
    OK(tg_grad_of(C, 1, &gv, NULL, 1, &x, false, &hv));
    EXPECT(hv, TG_SHAPE(3), V(4.0, -4.5, -7.5)); /* (A + A.T) @ v */
    /* the same through the weighted form: doutputs = v on the gradient */
    tg_tensor *hv2 = NULL;
    OK(tg_grad_of(C, 1, &g, &v, 1, &x, false, &hv2));
    EXPECT(hv2, TG_SHAPE(3), V(4.0, -4.5, -7.5));
}
END_TEST

/* ====================================================================== */
/* Graph structure                                                        */
/* ====================================================================== */

START_TEST(test_same_tensor_twice)
{
    tg_tensor *x = leaf(TG_SHAPE(3), V(0.5, -1.0, 2.0));
    OK(tg_backward(C, tg_sum(C, tg_mul(C, x, x))));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(1.0, -2.0, 4.0)); /* 2x */
    tg_zero_grad(x);
    OK(tg_backward(C, tg_sum(C, tg_add(C, x, x))));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(2, 2, 2));
    tg_zero_grad(x);
    /* one intermediate feeding two branches: h = x*x, L = sum(h*h) + sum(h)
     * dL/dx = (2h + 1) * 2x = 4x^3 + 2x */
    tg_tensor *h = tg_mul(C, x, x);
    OK(tg_backward(C, tg_add(C, tg_sum(C, tg_mul(C, h, h)), tg_sum(C, h))));
    EXPECT(tg_grad(x), TG_SHAPE(3), V(1.5, -6.0, 36.0));
}
END_TEST

START_TEST(test_view_grads)
{
    /* L1 = sum(W * np.swapaxes(x, 0, 2)[1::2]) with W = pat(12,4).reshape(2,3,2):
     * dL1/dx is W scattered back (zeros elsewhere) */
    tg_tensor *x = mk_R();
    tg_set_requires_grad(x, true);
    tg_tensor *w = mk_pat(TG_SHAPE(2, 3, 2), 4);
    tg_tensor *v = tg_slice(C, tg_transpose(C, x, 0, 2), 0, 1, 4, 2);
    tg_tensor *l1 = tg_sum(C, tg_mul(C, w, v));
    EXPECT(l1, 0, NULL, V(-7.75));
    OK(tg_backward(C, l1));
    EXPECT(tg_grad(x), TG_SHAPE(2, 3, 4),
           V(0.0, -1.0, 0.0, 1.25, 0.0, -0.25, 0.0, -0.75, 0.0, 0.5, 0.0, 0.0, 0.0, 0.75, 0.0,
             0.25, 0.0, -1.25, 0.0, 1.0, 0.0, -0.5, 0.0, -1.0));
    tg_zero_grad(x);
    /* L2 = sum(W2 * np.transpose(x, (2,0,1)).reshape(4,6)), W2 = pat(24,5).reshape(4,6):
     * dL2/dx = np.transpose(W2.reshape(4,2,3), (1,2,0)) */
    tg_tensor *w2 = mk_pat(TG_SHAPE(4, 6), 5);
    tg_tensor *p = tg_reshape(C, tg_permute(C, x, (const int[]){2, 0, 1}), TG_SHAPE(4, 6));
    tg_tensor *l2 = tg_sum(C, tg_mul(C, w2, p));
    EXPECT(l2, 0, NULL, V(-1.75));
    OK(tg_backward(C, l2));
    EXPECT(tg_grad(x), TG_SHAPE(2, 3, 4),
           V(-0.25, -0.75, -1.25, 1.0, -1.25, 1.0, 0.5, 0.0, 0.5, 0.0, -0.5, -1.0, -0.5, -1.0,
             1.25, 0.75, 1.25, 0.75, 0.25, -0.25, 0.25, -0.25, -0.75, -1.25));
    /* L3 = sum(expand(b [3,1], [2,3,4]) * R): dL3/db = R.sum((0, 2)) */
    tg_tensor *b = leaf(TG_SHAPE(3, 1), V(1, 2, 3));
    tg_tensor *l3 = tg_sum(C, tg_mul(C, tg_expand(C, b, TG_SHAPE(2, 3, 4)), mk_R()));
    OK(tg_backward(C, l3));
    EXPECT(tg_grad(b), TG_SHAPE(3, 1), V(6.0, 22.0, 38.0));
    /* contiguous passes gradients through: d sum(contiguous(x^T) * 2)/dx = 2 */
    tg_tensor *y = leaf(TG_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    OK(tg_backward(C, tg_sum(C, tg_scale(C, tg_contiguous(C, tg_transpose(C, y, 0, 1)), 2))));
    EXPECT(tg_grad(y), TG_SHAPE(2, 3), V(2, 2, 2, 2, 2, 2));
}
END_TEST

START_TEST(test_unreached_leaf)
{
    tg_tensor *a = leaf(TG_SHAPE(2), V(1.5, -2));
    tg_tensor *b = leaf(TG_SHAPE(2), V(3, 4));
    tg_tensor *k = mk_in(C, TG_SHAPE(2), V(5, 6)); /* in the graph, no grad wanted */
    tg_tensor *unrelated = tg_mul(C, b, b);        /* recorded, but not on the loss path */
    ck_assert_ptr_nonnull(unrelated);
    OK(tg_backward(C, tg_sum(C, tg_mul(C, tg_mul(C, a, a), k))));
    EXPECT(tg_grad(a), TG_SHAPE(2), V(15, -24)); /* 2 a k */
    ck_assert_ptr_null(tg_grad(b));
    ck_assert_ptr_null(tg_grad(k));
}
END_TEST

/* ---- a deep chain, run on a small stack ------------------------------- */

enum { CHAIN_OPS = 10000, CHAIN_STACK = 64 * 1024 };

typedef struct {
    tg_status st;
    double value[4], grad[4];
    int got_grad;
} chain_result;

/* 10,000 ops alternating x + 0.5 and -1 * x, then a sum. Runs on a thread
 * with a 64 KiB stack: a recursive walk 10,000 levels deep needs at least
 * a return address and a node pointer a level (160 KB) and overflows it,
 * which the forked test reports as a crash. (A minimal recursive DFS at -O2
 * survives 10,000 levels on 128 KiB, hence 64.) */
static void *chain_worker(void *arg)
{
    chain_result *r = arg;
    tg_ctx *c = tg_ctx_new();
    r->st = TG_ERR_NOMEM;
    if (c == NULL) return NULL;
    tg_tensor *x = tg_tensor_from(c, TG_F64, TG_SHAPE(4), V(1, 2, 3, 4));
    tg_set_requires_grad(x, true);
    tg_tensor *y = x;
    for (int i = 0; i < CHAIN_OPS - 1; i++)
        y = (i % 2 == 0) ? tg_add_scalar(c, y, 0.5) : tg_scale(c, y, -1.0);
    tg_tensor *loss = tg_sum(c, y); /* op number CHAIN_OPS */
    r->st = tg_backward(c, loss);
    if (y != NULL) tg_copy_out(y, r->value, sizeof r->value);
    tg_tensor *g = tg_grad(x);
    r->got_grad = g != NULL;
    if (g != NULL) tg_copy_out(g, r->grad, sizeof r->grad);
    tg_ctx_free(c);
    return NULL;
}

START_TEST(test_deep_chain)
{
    chain_result r;
    memset(&r, 0, sizeof r);
    pthread_attr_t attr;
    pthread_t th;
    ck_assert_int_eq(pthread_attr_init(&attr), 0);
    ck_assert_int_eq(pthread_attr_setstacksize(&attr, CHAIN_STACK), 0);
    int rc = pthread_create(&th, &attr, chain_worker, &r);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        ck_assert_int_eq(pthread_join(th, NULL), 0);
    else
        chain_worker(&r); /* no thread: still check the result on this stack */
    ck_assert_msg(r.st == TG_OK, "backward over %d ops: %s", CHAIN_OPS, tg_status_str(r.st));
    ck_assert(r.got_grad);
    /* the same recurrence on doubles (exact: halves and sign flips) */
    double want[4] = {1, 2, 3, 4};
    for (int i = 0; i < CHAIN_OPS - 1; i++)
        for (int j = 0; j < 4; j++) want[j] = (i % 2 == 0) ? want[j] + 0.5 : -want[j];
    for (int j = 0; j < 4; j++) {
        ck_assert_msg(r.value[j] == want[j], "value[%d] = %g, expected %g", j, r.value[j],
                      want[j]);
        /* 4,999 sign flips (odd i below 9,999): dL/dx = (-1)^4999 = -1 */
        ck_assert_msg(r.grad[j] == -1.0, "grad[%d] = %g, expected -1", j, r.grad[j]);
    }
}
END_TEST

/* ---- persistent parameters, step context ------------------------------ */

START_TEST(test_persistent_params_step_ctx)
{
    tg_ctx *P = C; /* persistent: never reset */
    tg_ctx *S = tg_ctx_new();
    ck_assert_ptr_nonnull(S);
    tg_tensor *w = leaf(TG_SHAPE(3), V(0.5, -1.0, 2.0));
    tg_tensor *g1 = NULL;
    size_t p_used_after_first = 0;
    const double xs[3][3] = {{1, 2, 3}, {10, 20, 30}, {-1, 0.5, 4}};
    double acc[3] = {0, 0, 0};
    for (int step = 0; step < 3; step++) {
        tg_tensor *x = mk_in(S, TG_SHAPE(3), xs[step]);
        /* L = sum(w * x) + sum(tanh(x)) (a graph that lives in S) */
        tg_tensor *loss = tg_add(S, tg_sum(S, tg_mul(S, w, x)), tg_sum(S, tg_tanh(S, x)));
        ck_assert_msg(tg_backward(S, loss) == TG_OK, "%s", tg_ctx_errmsg(S));
        for (int j = 0; j < 3; j++) acc[j] += xs[step][j];
        tg_tensor *g = tg_grad(w);
        ck_assert_ptr_nonnull(g);
        ck_assert_ptr_eq(tg_tensor_ctx(g), P); /* the grad lives with the param */
        if (step == 0) {
            g1 = g;
            p_used_after_first = tg_ctx_bytes_used(P);
        }
        ck_assert_ptr_eq(g, g1); /* allocated once, reused */
        ck_assert_uint_eq(tg_ctx_bytes_used(P), p_used_after_first);
        tg_ctx_reset(S);
        /* scribble over the step arena: a dangling grad would change */
        for (int k = 0; k < 8; k++) ck_assert_ptr_nonnull(tg_full(S, TG_F64, TG_SHAPE(64), 1e300));
        EXPECT(tg_grad(w), TG_SHAPE(3), acc);
        tg_ctx_reset(S);
    }
    ck_assert_int_eq(tg_ctx_status(S), TG_OK);
    tg_ctx_free(S);
}
END_TEST

/* ---- determinism ------------------------------------------------------ */

typedef struct {
    tg_tensor *w1, *b1, *w2;
} small_mlp;

/* A small MLP step in S on parameters from C: cross_entropy + mse. */
static tg_status mlp_backward(tg_ctx *S, const small_mlp *m)
{
    tg_ctx_seed(S, 42);
    tg_tensor *x = tg_randn(S, TG_F64, TG_SHAPE(64, 96));
    int64_t lab[64];
    for (int i = 0; i < 64; i++) lab[i] = (i * 7) % 10;
    tg_tensor *y = tg_tensor_from(S, TG_I64, TG_SHAPE(64), lab);
    tg_tensor *h = tg_tanh(S, tg_add(S, tg_matmul(S, x, m->w1), m->b1));
    tg_tensor *logits = tg_matmul(S, h, m->w2);
    tg_tensor *ce = tg_cross_entropy(S, logits, y);
    tg_tensor *sm = tg_softmax(S, logits, -1);
    tg_tensor *mse = tg_mse_loss(S, tg_sigmoid(S, h), tg_zeros_like(S, h));
    tg_tensor *loss = tg_add(S, tg_add(S, ce, mse), tg_mean(S, tg_mul(S, sm, sm)));
    return tg_backward(S, loss);
}

static void grads_copy(const small_mlp *m, double *out)
{
    tg_tensor *ps[3] = {m->w1, m->b1, m->w2};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        tg_tensor *g = tg_grad(ps[i]);
        ck_assert_ptr_nonnull(g);
        size_t n = (size_t)tg_numel(g);
        ck_assert_int_eq(tg_copy_out(g, out + off, n * sizeof(double)), TG_OK);
        off += n;
    }
}

START_TEST(test_backward_bit_identical)
{
    enum { NG = 96 * 128 + 128 + 128 * 10 };
    tg_ctx_seed(C, 7);
    small_mlp m = {tg_randn(C, TG_F64, TG_SHAPE(96, 128)), tg_randn(C, TG_F64, TG_SHAPE(128)),
                   tg_randn(C, TG_F64, TG_SHAPE(128, 10))};
    tg_set_requires_grad(m.w1, true);
    tg_set_requires_grad(m.b1, true);
    tg_set_requires_grad(m.w2, true);
    tg_ctx *S = tg_ctx_new();
    ck_assert_ptr_nonnull(S);
    double *g1 = malloc(NG * sizeof *g1), *g2 = malloc(NG * sizeof *g2);
    ck_assert(g1 && g2);

    ck_assert_int_eq(mlp_backward(S, &m), TG_OK);
    grads_copy(&m, g1);
    /* fresh graph after a reset, grads zeroed: bit-identical */
    tg_ctx_reset(S);
    tg_zero_grad(m.w1), tg_zero_grad(m.b1), tg_zero_grad(m.w2);
    ck_assert_int_eq(mlp_backward(S, &m), TG_OK);
    grads_copy(&m, g2);
    int same = memcmp(g1, g2, NG * sizeof *g1) == 0;
    int finite = 1, nonzero = 0;
    for (int i = 0; i < NG; i++) finite = finite && isfinite(g1[i]), nonzero |= g1[i] != 0;
    free(g1), free(g2);
    tg_ctx_free(S);
    ck_assert_msg(same, "two backward runs gave different gradients");
    ck_assert(finite);
    ck_assert(nonzero);
}
END_TEST

START_TEST(test_backward_same_graph_twice)
{
    /* backward twice over one recorded graph: the second adds exactly the same */
    tg_ctx_seed(C, 9);
    tg_tensor *a = tg_randn(C, TG_F64, TG_SHAPE(16, 24));
    tg_tensor *b = tg_randn(C, TG_F64, TG_SHAPE(24, 8));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_tensor *loss = tg_mean(C, tg_log_softmax(C, tg_tanh(C, tg_matmul(C, a, b)), -1));
    OK(tg_backward(C, loss));
    double g1[24 * 8], g2[24 * 8];
    ck_assert_int_eq(tg_copy_out(tg_grad(b), g1, sizeof g1), TG_OK);
    tg_zero_grad(b);
    OK(tg_backward(C, loss));
    ck_assert_int_eq(tg_copy_out(tg_grad(b), g2, sizeof g2), TG_OK);
    ck_assert_msg(memcmp(g1, g2, sizeof g1) == 0, "second backward differs");
    OK(tg_backward(C, loss));
    ck_assert_int_eq(tg_copy_out(tg_grad(b), g2, sizeof g2), TG_OK);
    int doubled = 1;
    for (int i = 0; i < 24 * 8; i++) doubled = doubled && g2[i] == 2 * g1[i];
    ck_assert_msg(doubled, "accumulated gradient is not exactly twice the first");
}
END_TEST

/* ====================================================================== */
/* The suite                                                              */
/* ====================================================================== */

static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tu_tcase(name);
    tcase_set_timeout(tc, 60); /* explicit, whatever TU_TIMEOUT becomes */
    tcase_add_checked_fixture(tc, ag_setup, ag_teardown);
    suite_add_tcase(s, tc);
    return tc;
}


/* T slices of one [T, W] tensor, each used once: the backward adds each
 * slice's gradient into its window of one buffer, so the walk's memory is
 * O(T W), not a full-size zero tensor and sum per slice (O(T^2 W)); and
 * the values are the exact gradient (row t gets t + 1). */
START_TEST(test_slices_accumulate_in_place)
{
    enum { T = 64, W = 4096 };
    tg_ctx *c = tg_ctx_new();
    tg_tensor *x = tg_tensor_new(c, TG_F32, TG_SHAPE(T, W));
    tg_set_requires_grad(x, true);
    tg_tensor *loss = NULL;
    for (int t = 0; t < T; t++) {
        tg_tensor *row = tg_sum(c, tg_scale(c, tg_slice(c, x, 0, t, t + 1, 1), t + 1.0));
        loss = loss ? tg_add(c, loss, row) : row;
    }
    size_t before = tg_ctx_bytes_used(c);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    size_t full = (size_t)T * W * sizeof(float);
    ck_assert_msg(tg_ctx_bytes_used(c) - before < 8 * full,
                  "backward used %zu bytes for %d slices of a %zu-byte tensor",
                  tg_ctx_bytes_used(c) - before, T, full);
    const float *g = tg_data(tg_grad(x));
    for (int t = 0; t < T; t++) {
        ck_assert_float_eq(g[(size_t)t * W], (float)(t + 1));
        ck_assert_float_eq(g[(size_t)t * W + W - 1], (float)(t + 1));
    }
    tg_ctx_free(c);
}
END_TEST

Suite *autograd_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc;

    tc = tcase(s, "broadcast");
    tcase_add_test(tc, test_broadcast_mul_grads);
    tcase_add_test(tc, test_plain_broadcast_grads);
    tcase_add_test(tc, test_bias_grad);
    tcase_add_test(tc, test_div_broadcast_grad);

    tc = tcase(s, "matmul");
    tcase_add_test(tc, test_matmul_grads_2d);
    tcase_add_test(tc, test_matmul_grads_transposed_leaf);
    tcase_add_test(tc, test_matmul_grads_broadcast_batch);

    tc = tcase(s, "loss");
    tcase_add_test(tc, test_cross_entropy_grad);
    tcase_add_test(tc, test_mse_grad);

    tc = tcase(s, "engine");
    tcase_add_test(tc, test_accumulation);
    tcase_add_test(tc, test_grad_mode);
    tcase_add_test(tc, test_requires_grad_rules);
    tcase_add_test(tc, test_detach);
    tcase_add_test(tc, test_backward_with_grad);
    tcase_add_test(tc, test_same_tensor_twice);
    tcase_add_test(tc, test_view_grads);
    tcase_add_test(tc, test_unreached_leaf);
    tcase_add_test(tc, test_slices_accumulate_in_place);

    tc = tcase(s, "grad_of");
    tcase_add_test(tc, test_grad_of);
    tcase_add_test(tc, test_grad_of_errors);
    tcase_add_test(tc, test_create_graph_cubic);
    tcase_add_test(tc, test_create_graph_tanh);
    tcase_add_test(tc, test_hessian_vector_product);

    tc = tcase(s, "graphs");
    tcase_add_test(tc, test_deep_chain);
    tcase_add_test(tc, test_persistent_params_step_ctx);
    tcase_add_test(tc, test_backward_bit_identical);
    tcase_add_test(tc, test_backward_same_graph_twice);

    return s;
}
