/*
 * test_reduce.c - the reduce family: max/min, argmax/argmin, prod, var/std,
 * logsumexp and norm. Forward values in f32 and f64 against NumPy
 * (numpy 2.x; each literal names the expression that made it, with
 * A = np.array([[0.5,-1.25,2.0,3.5],[-0.75,1.5,-2.25,0.25],[1.0,2.5,-0.5,-3.0]])),
 * the documented edge cases (ties, NaN, zeros in prod, std and norm at 0,
 * logsumexp at 1e4), error paths, and bit-identical results across thread
 * counts and strides. Gradients of generic inputs are checked by the
 * table-driven test (tests/opgrad_reduce.c).
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

static const double A_VALS[12] = {0.5,   -1.25, 2.0, 3.5, -0.75, 1.5,
                                  -2.25, 0.25,  1.0, 2.5, -0.5,  -3.0};

/* A tensor of dtype dt (f32 or f64) holding the doubles v. */
static tg_tensor *mk(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, const double *v)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    tg_tensor *t;
    if (dt == TG_F32) {
        float f[64];
        ck_assert_int_le(n, 64);
        for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
        t = tg_tensor_from(c, dt, ndim, shape, f);
    } else {
        t = tg_tensor_from(c, dt, ndim, shape, v);
    }
    ck_assert_ptr_nonnull(t);
    return t;
}

#define TOL(dt) ((dt) == TG_F32 ? 2e-6 : 1e-14)

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_ndim(t), ndim);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(tg_shape(t)[i], shape[i]);
}

/* ====================================================================== */
/* forward values                                                         */
/* ====================================================================== */

START_TEST(test_max_min_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, dt, TG_SHAPE(3, 4), A_VALS);
    int ax0 = 0, ax1 = -1, both[2] = {0, 1};
    tg_tensor *y = tg_max_axes(c, a, 1, &ax0, false);
    assert_shape(y, TG_SHAPE(4));
    ck_assert_int_eq(tg_tensor_dtype(y), dt);
    tu_assert_values(y, 0, 1.0, 2.5, 2.0, 3.5); /* A.max(0) */
    y = tg_min_axes(c, a, 1, &ax1, true);
    assert_shape(y, TG_SHAPE(3, 1));
    tu_assert_values(y, 0, -1.25, -2.25, -3.0);                  /* A.min(1) */
    tu_assert_values(tg_max_axes(c, a, 2, both, false), 0, 3.5); /* A.max() */
    /* naxes == 0 reduces nothing, as tg_sum_axes */
    y = tg_min_axes(c, a, 0, NULL, false);
    assert_shape(y, TG_SHAPE(3, 4));
    tu_assert_values(y, 0, 0.5, -1.25, 2.0, 3.5, -0.75, 1.5, -2.25, 0.25, 1.0, 2.5, -0.5, -3.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_argmax_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, dt, TG_SHAPE(3, 4), A_VALS);
    tg_set_requires_grad(a, true);
    tg_tensor *y = tg_argmax(c, a, 1, false);
    assert_shape(y, TG_SHAPE(3));
    ck_assert_int_eq(tg_tensor_dtype(y), TG_I64);
    ck_assert(!tg_requires_grad(y));
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_NONE);
    tu_assert_values(y, 0, 3, 1, 1); /* A.argmax(1) */
    y = tg_argmin(c, a, -2, true);
    assert_shape(y, TG_SHAPE(1, 4));
    tu_assert_values(y, 0, 1, 0, 1, 2); /* A.argmin(0) */
    /* ties: the first index */
    const double t[6] = {2, 7, 7, 1, 1, 0};
    tg_tensor *tt = mk(c, dt, TG_SHAPE(6), t);
    tu_assert_values(tg_argmax(c, tt, 0, false), 0, 1);
    tu_assert_values(tg_argmin(c, tg_slice(c, tt, 0, 0, 5, 1), 0, false), 0, 3);
    /* NaN wins, first NaN: np.argmax([1, nan, 3, nan]) == 1 == np.argmin(...) */
    const double nv[4] = {1, NAN, 3, NAN};
    tg_tensor *tn = mk(c, dt, TG_SHAPE(4), nv);
    tu_assert_values(tg_argmax(c, tn, 0, false), 0, 1);
    tu_assert_values(tg_argmin(c, tn, 0, false), 0, 1);
    ck_assert(isnan(tg_item(tg_max_axes(c, tn, 1, (int[]){0}, false))));
    ck_assert(isnan(tg_item(tg_min_axes(c, tn, 1, (int[]){0}, false))));
    /* -inf everywhere: index 0 */
    const double ni[3] = {-INFINITY, -INFINITY, -INFINITY};
    tu_assert_values(tg_argmax(c, mk(c, dt, TG_SHAPE(3), ni), 0, false), 0, 0);
    /* a 0-d input gives 0 */
    tu_assert_values(tg_argmax(c, tg_scalar(c, dt, 4.0), -1, false), 0, 0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_prod_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, dt, TG_SHAPE(3, 4), A_VALS);
    int ax1 = 1, both[2] = {1, 0};
    tu_assert_values(tg_prod_axes(c, a, 1, &ax1, false), TOL(dt), -4.375, 0.6328125,
                     3.75);                                                       /* A.prod(1) */
    tu_assert_values(tg_prod_axes(c, a, 2, both, false), 1e-5, -10.382080078125); /* A.prod() */
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_var_std_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    double tol = _i ? 5e-6 : 1e-14;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, dt, TG_SHAPE(3, 4), A_VALS);
    int ax0 = 0, ax1 = 1, both[2] = {0, 1};
    /* A.var(0, ddof=1) and A.var(0) */
    tu_assert_values(tg_var_axes(c, a, 1, &ax0, true, false), tol, 0.8125, 3.770833333333333,
                     4.5625, 10.5625);
    tu_assert_values(tg_var_axes(c, a, 1, &ax0, false, false), tol, 0.5416666666666666,
                     2.513888888888889, 3.0416666666666665, 7.041666666666667);
    /* A.std(1, ddof=1) and A.std(1) */
    tg_tensor *s = tg_std_axes(c, a, 1, &ax1, true, true);
    assert_shape(s, TG_SHAPE(3, 1));
    tu_assert_values(s, tol, 2.0348525745124633, 1.58607219255619, 2.345207879911715);
    tu_assert_values(tg_std_axes(c, a, 1, &ax1, false, false), tol, 1.7622340224839605,
                     1.3735788109897444, 2.03100960115899);
    /* A.var(ddof=1) */
    tu_assert_values(tg_var_axes(c, a, 2, both, true, false), tol, 3.770833333333333);
    /* one element, unbiased: 0/0 = NaN; biased: 0 */
    int ax = 0;
    tg_tensor *one = mk(c, dt, TG_SHAPE(1), (double[]){3.0});
    ck_assert(isnan(tg_item(tg_var_axes(c, one, 1, &ax, true, false))));
    tu_assert_values(tg_std_axes(c, one, 1, &ax, false, false), 0, 0.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_logsumexp_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    double tol = _i ? 5e-6 : 1e-14;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, dt, TG_SHAPE(3, 4), A_VALS);
    int ax1 = 1, both[2] = {0, 1};
    /* np.log(np.exp(A).sum(1)) */
    tu_assert_values(tg_logsumexp(c, a, 1, &ax1, false), tol, 3.7480850490038047,
                     1.8474275554292852, 2.7445167093514935);
    tu_assert_values(tg_logsumexp(c, a, 2, both, false), tol, 4.1641863074188725);
    /* stable at 1e4: x = [1e4, 1e4+1, 1e4-1]; m + log(sum(exp(x - m))) */
    int ax = 0;
    tg_tensor *big = mk(c, dt, TG_SHAPE(3), (double[]){1e4, 1e4 + 1, 1e4 - 1});
    tg_tensor *y = tg_logsumexp(c, big, 1, &ax, false);
    ck_assert(isfinite(tg_item(y)));
    ck_assert_close(tg_item(y), 10001.407605964445, _i ? 2e-3 : 1e-11);
    tg_tensor *negbig = mk(c, dt, TG_SHAPE(3), (double[]){-1e4, -1e4 + 1, -1e4 - 1});
    ck_assert_close(tg_item(tg_logsumexp(c, negbig, 1, &ax, false)), -9998.592394035555,
                    _i ? 2e-3 : 1e-11); /* -1e4 + 1.407605964445 */
    /* a set of -inf gives -inf; +inf gives +inf */
    double ni[2] = {-INFINITY, -INFINITY}, pi[2] = {1.0, INFINITY};
    ck_assert(tg_item(tg_logsumexp(c, mk(c, dt, TG_SHAPE(2), ni), 1, &ax, false)) == -INFINITY);
    ck_assert(tg_item(tg_logsumexp(c, mk(c, dt, TG_SHAPE(2), pi), 1, &ax, false)) == INFINITY);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_norm_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    double tol = _i ? 5e-6 : 1e-14;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, dt, TG_SHAPE(3, 4), A_VALS);
    int ax0 = 0, ax1 = 1, both[2] = {0, 1};
    /* np.linalg.norm(A, ord=p, axis=1) */
    tu_assert_values(tg_norm(c, a, 1, 1, &ax1, false), tol, 7.25, 4.75, 7.0);
    tu_assert_values(tg_norm(c, a, 2, 1, &ax1, false), tol, 4.25, 2.817356917396161,
                     4.06201920231798);
    tu_assert_values(tg_norm(c, a, INFINITY, 1, &ax1, false), tol, 3.5, 2.25, 3.0);
    tu_assert_values(tg_norm(c, a, 3, 1, &ax1, true), tol, 3.755178032023481, 2.4772944067191927,
                     3.5236493660324455);
    /* ((np.abs(A)**0.5).sum(1))**2 */
    tu_assert_values(tg_norm(c, a, 0.5, 1, &ax1, false), _i ? 2e-5 : 1e-13, 26.11397055611672,
                     16.734401444263753, 25.203376133013858);
    /* np.sqrt((A*A).sum()), ((np.abs(A)**3).sum(0))**(1/3) */
    tu_assert_values(tg_norm(c, a, 2, 2, both, false), tol, 6.519202405202649);
    tu_assert_values(tg_norm(c, a, 3, 1, &ax0, false), tol, 1.1565162522956853, 2.7568698761603327,
                     2.6923250260527123, 4.119137678106579);
    /* no overflow at 1e200 (f64) / 1e30 (f32), no underflow at 1e-200 */
    double s = _i ? 1e30 : 1e200;
    tg_tensor *big = mk(c, dt, TG_SHAPE(2), (double[]){3 * s, 4 * s});
    ck_assert_close(tg_item(tg_norm(c, big, 2, 1, &ax0, false)) / (5 * s), 1.0, 1e-6);
    if (!_i) {
        tg_tensor *tiny = mk(c, dt, TG_SHAPE(2), (double[]){3e-200, 4e-200});
        ck_assert_close(tg_item(tg_norm(c, tiny, 2, 1, &ax0, false)) / 5e-200, 1.0, 1e-14);
    }
    /* all zeros: 0 for every p */
    tg_tensor *z = tg_tensor_new(c, dt, TG_SHAPE(3));
    tu_assert_values(tg_norm(c, z, 2, 1, &ax0, false), 0, 0.0);
    tu_assert_values(tg_norm(c, z, 3, 1, &ax0, false), 0, 0.0);
    tu_assert_values(tg_norm(c, z, INFINITY, 1, &ax0, false), 0, 0.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* gradients at the documented edge cases                                 */
/* ====================================================================== */

/* The gradient of sum(f(x)) with respect to x, for an f64 vector x. */
typedef tg_tensor *(*red_fn)(tg_ctx *c, tg_tensor *x);

static tg_tensor *grad_of(tg_ctx *c, red_fn f, int64_t n, const double *v)
{
    tg_tensor *x = tg_tensor_from(c, TG_F64, 1, &n, v);
    tg_set_requires_grad(x, true);
    tg_tensor *y = f(c, x);
    ck_assert_ptr_nonnull(y);
    tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
    return tg_grad(x);
}

static tg_tensor *f_max(tg_ctx *c, tg_tensor *x) { return tg_max_axes(c, x, 1, (int[]){0}, false); }
static tg_tensor *f_min(tg_ctx *c, tg_tensor *x) { return tg_min_axes(c, x, 1, (int[]){0}, false); }
static tg_tensor *f_prod(tg_ctx *c, tg_tensor *x)
{
    return tg_prod_axes(c, x, 1, (int[]){0}, false);
}
static tg_tensor *f_std(tg_ctx *c, tg_tensor *x)
{
    return tg_std_axes(c, x, 1, (int[]){0}, true, false);
}
static tg_tensor *f_norm1(tg_ctx *c, tg_tensor *x)
{
    return tg_norm(c, x, 1, 1, (int[]){0}, false);
}
static tg_tensor *f_norm2(tg_ctx *c, tg_tensor *x)
{
    return tg_norm(c, x, 2, 1, (int[]){0}, false);
}
static tg_tensor *f_norm3(tg_ctx *c, tg_tensor *x)
{
    return tg_norm(c, x, 3, 1, (int[]){0}, false);
}
static tg_tensor *f_norminf(tg_ctx *c, tg_tensor *x)
{
    return tg_norm(c, x, INFINITY, 1, (int[]){0}, false);
}

START_TEST(test_max_min_ties_grad)
{
    tg_ctx *c = tu_ctx();
    /* ties share evenly (PyTorch's amax rule) */
    tu_assert_values(grad_of(c, f_max, 5, (double[]){1, 3, 3, 2, 3}), 1e-15, 0, 1.0 / 3, 1.0 / 3, 0,
                     1.0 / 3);
    tu_assert_values(grad_of(c, f_min, 4, (double[]){-1, 3, -1, 2}), 0, 0.5, 0, 0.5, 0);
    tu_assert_values(grad_of(c, f_max, 3, (double[]){1, 5, 3}), 0, 0, 1, 0);
    /* p = inf norm: sign at the max |x|, ties shared */
    tu_assert_values(grad_of(c, f_norminf, 4, (double[]){-3, 1, 3, 2}), 0, -0.5, 0, 0.5, 0);
    /* over one axis of a [2,3] with keepdim: per row */
    tg_tensor *x = tg_tensor_from(c, TG_F64, TG_SHAPE(2, 3), (double[]){4, 4, 1, 0, 2, -1});
    tg_set_requires_grad(x, true);
    tg_tensor *y = tg_max_axes(c, x, 1, (int[]){1}, true);
    tg_tensor *w = tg_tensor_from(c, TG_F64, TG_SHAPE(2, 1), (double[]){2, 3});
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, w))), TG_OK);
    tu_assert_values(tg_grad(x), 0, 1, 1, 0, 0, 3, 0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_prod_zeros_grad)
{
    tg_ctx *c = tu_ctx();
    /* no zeros: prod / x */
    tu_assert_values(grad_of(c, f_prod, 4, (double[]){1, 2, 3, 4}), 0, 24, 12, 8, 6);
    /* one zero: only its position, the product of the others */
    tu_assert_values(grad_of(c, f_prod, 4, (double[]){2, 0, 3, 4}), 0, 0, 24, 0, 0);
    /* two or three zeros: all 0 (no NaN) */
    tu_assert_values(grad_of(c, f_prod, 4, (double[]){0, 2, 0, 3}), 0, 0, 0, 0, 0);
    tu_assert_values(grad_of(c, f_prod, 4, (double[]){0, 0, 0, 3}), 0, 0, 0, 0, 0);
    /* per reduced set: row 0 has one zero, row 1 none, row 2 two */
    tg_tensor *x =
        tg_tensor_from(c, TG_F64, TG_SHAPE(3, 3), (double[]){5, 0, 2, 1, -2, 3, 0, 4, 0});
    tg_set_requires_grad(x, true);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_prod_axes(c, x, 1, (int[]){1}, false))), TG_OK);
    tu_assert_values(tg_grad(x), 0, 0, 10, 0, -6, 3, -2, 0, 0, 0);
    /* second order at zeros: H_ik = prod_{j not in {i,k}} x_j; at [2,0,3,0]
     * H @ ones = [0, 6, 0, 6] */
    int64_t n = 4;
    tg_tensor *z = tg_tensor_from(c, TG_F64, 1, &n, (double[]){2, 0, 3, 0});
    tg_set_requires_grad(z, true);
    tg_tensor *p = tg_prod_axes(c, z, 1, (int[]){0}, false), *g = NULL, *h = NULL;
    tu_assert_status(tg_grad_of(c, 1, &p, NULL, 1, &z, true, &g), TG_OK);
    tu_assert_values(g, 0, 0, 0, 0, 0);
    tg_tensor *s = tg_sum(c, g);
    tu_assert_status(tg_grad_of(c, 1, &s, NULL, 1, &z, false, &h), TG_OK);
    tu_assert_values(h, 0, 0, 6, 0, 6);
    /* one zero at [2,0,3]: H @ ones = [0+3+0, 3+0+2, 0+2+0] */
    n = 3;
    z = tg_tensor_from(c, TG_F64, 1, &n, (double[]){2, 0, 3});
    tg_set_requires_grad(z, true);
    p = tg_prod_axes(c, z, 1, (int[]){0}, false);
    tu_assert_status(tg_grad_of(c, 1, &p, NULL, 1, &z, true, &g), TG_OK);
    tu_assert_values(g, 0, 0, 6, 0);
    s = tg_sum(c, g);
    tu_assert_status(tg_grad_of(c, 1, &s, NULL, 1, &z, false, &h), TG_OK);
    tu_assert_values(h, 0, 3, 5, 2);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* Sets holding infinities or NaN: the product of the others by IEEE rules
 * (torch agrees except at the infinity itself, where its prod / x is NaN),
 * and a finite set next to them keeps its exact gradient and second
 * derivative. */
START_TEST(test_prod_nonfinite_grad)
{
    tg_ctx *c = tu_ctx();
    const double inf = INFINITY;
    tu_assert_values(grad_of(c, f_prod, 3, (double[]){inf, 3, 2}), 0, 6, inf, inf);
    tu_assert_values(grad_of(c, f_prod, 3, (double[]){-inf, 3, -2}), 0, -6, inf, -inf);
    tu_assert_values(grad_of(c, f_prod, 3, (double[]){inf, inf, 2}), 0, inf, inf, inf);
    tg_tensor *g = grad_of(c, f_prod, 3, (double[]){inf, 0, 2});
    double v[3];
    tu_assert_status(tg_copy_out(g, v, sizeof v), TG_OK);
    ck_assert(v[0] == 0 && v[1] == inf && isnan(v[2])); /* inf * 0 is NaN */
    g = grad_of(c, f_prod, 3, (double[]){NAN, 3, 2});
    tu_assert_status(tg_copy_out(g, v, sizeof v), TG_OK);
    ck_assert(v[0] == 6 && isnan(v[1]) && isnan(v[2]));
    /* rows: [inf, 3, 2] and a finite [1.5, -2, 3], to second order */
    tg_tensor *x =
        tg_tensor_from(c, TG_F64, TG_SHAPE(2, 3), (double[]){inf, 3, 2, 1.5, -2, 3});
    tg_set_requires_grad(x, true);
    tg_tensor *p = tg_sum(c, tg_prod_axes(c, x, 1, (int[]){1}, false)), *d = NULL, *h = NULL;
    tu_assert_status(tg_grad_of(c, 1, &p, NULL, 1, &x, true, &d), TG_OK);
    tu_assert_values(d, 0, 6, inf, inf, -6, 4.5, -3);
    tg_tensor *s = tg_sum(c, tg_slice(c, d, 0, 1, 2, 1));
    tu_assert_status(tg_grad_of(c, 1, &s, NULL, 1, &x, false, &h), TG_OK);
    /* row 1: H @ ones = [-2 + 3, 1.5 + 3, 1.5 - 2] */
    tu_assert_values(h, 1e-12, 0, 0, 0, 1, 4.5, -0.5);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* The backward rules in f32: constants and results keep the dtype. */
START_TEST(test_grad_f32)
{
    tg_ctx *c = tu_ctx();
    red_fn fs[5] = {f_max, f_prod, f_std, f_norm2, f_norm3};
    const double xs[4] = {2, 0, 2, -1};
    for (int k = 0; k < 5; k++) {
        tg_tensor *x = mk(c, TG_F32, TG_SHAPE(4), xs);
        tg_set_requires_grad(x, true);
        tu_assert_status(tg_backward(c, tg_sum(c, fs[k](c, x))), TG_OK);
        ck_assert_int_eq(tg_tensor_dtype(tg_grad(x)), TG_F32);
        tg_tensor *g = tg_grad(x);
        switch (k) {
        case 0: tu_assert_values(g, 0, 0.5, 0, 0.5, 0); break; /* ties share */
        case 1: tu_assert_values(g, 0, 0, -4, 0, 0); break;    /* one zero */
        case 2: /* (x - 0.75) / (3 * std), std = sqrt(2.25) */
            tu_assert_values(g, 1e-6, 0.2777777777777778, -0.16666666666666666, 0.2777777777777778,
                             -0.3888888888888889);
            break;
        case 3: tu_assert_values(g, 1e-6, 2 / 3.0, 0, 2 / 3.0, -1 / 3.0); break;
        default: { /* sign(x) x^2 / y^2, y = 17^(1/3) */
            double y2 = pow(17.0, 2.0 / 3.0);
            tu_assert_values(g, 1e-6, 4 / y2, 0, 4 / y2, -1 / y2);
        }
        }
    }
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

static tg_tensor *gc_prod(tg_ctx *c, tg_tensor **in, int n, void *u)
{
    (void)n, (void)u;
    return tg_prod_axes(c, in[0], 1, (int[]){1}, false);
}

/* gradcheck (first and second order) of prod at inputs holding zeros:
 * one, two and three zeros per row, and none */
START_TEST(test_prod_zeros_gradcheck)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_from(
        c, TG_F64, TG_SHAPE(4, 4),
        (double[]){0.7, 0, -1.3, 0.9, 0, 1.1, 0, -0.8, 0, 0, 1.2, 0, 0.6, -1.4, 0.9, 1.2});
    tg_set_requires_grad(x, true);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    o.atol = 1e-6;
    o.rtol = 1e-4;
    char rep[1024] = "";
    tg_status st = tg_gradcheck(gc_prod, NULL, &x, 1, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s", rep);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_std_norm_zero_grad)
{
    tg_ctx *c = tu_ctx();
    /* std of equal values: gradient 0 (PyTorch), not NaN */
    tu_assert_values(grad_of(c, f_std, 3, (double[]){2, 2, 2}), 0, 0, 0, 0);
    /* std: (x - mean) / ((n-1) std) at [1,2,3]: std = 1 -> [-0.5, 0, 0.5] */
    tu_assert_values(grad_of(c, f_std, 3, (double[]){1, 2, 3}), 1e-15, -0.5, 0, 0.5);
    /* p = 2 at 0: 0 (subgradient); elsewhere x / |x| */
    tu_assert_values(grad_of(c, f_norm2, 2, (double[]){0, 0}), 0, 0, 0);
    tu_assert_values(grad_of(c, f_norm2, 2, (double[]){3, -4}), 1e-15, 0.6, -0.8);
    /* p = 1: sign, 0 at 0 */
    tu_assert_values(grad_of(c, f_norm1, 3, (double[]){0, -2, 5}), 0, 0, -1, 1);
    /* p = 3 at 0 and elsewhere: sign(x) x^2 / y^2, y = 9^(1/3) at [0, 1, -2] */
    double y2 = pow(9.0, 2.0 / 3.0);
    tu_assert_values(grad_of(c, f_norm3, 3, (double[]){0, 1, -2}), 1e-14, 0, 1 / y2, -4 / y2);
    tu_assert_values(grad_of(c, f_norm3, 2, (double[]){0, 0}), 0, 0, 0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

static tg_tensor *gc_norm_half(tg_ctx *c, tg_tensor **in, int n, void *u)
{
    (void)n, (void)u;
    return tg_norm(c, in[0], 0.5, 1, (int[]){0}, true);
}

/* general p < 1, first and second order, on inputs away from 0 */
START_TEST(test_norm_p_half_gradcheck)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x =
        tg_tensor_from(c, TG_F64, TG_SHAPE(3, 2), (double[]){0.7, -1.2, 1.1, 0.6, -0.9, 1.3});
    tg_set_requires_grad(x, true);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    o.atol = 1e-6;
    o.rtol = 1e-4;
    char rep[1024] = "";
    tg_status st = tg_gradcheck(gc_norm_half, NULL, &x, 1, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s", rep);
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* errors                                                                 */
/* ====================================================================== */

/* Expects status want and a message naming fn; clears the error. */
static void expect_err(tg_ctx *c, const tg_tensor *y, tg_status want, const char *fn,
                       const char *also)
{
    ck_assert_ptr_null(y);
    tu_assert_status(tg_ctx_status(c), want);
    const char *m = tg_ctx_errmsg(c);
    ck_assert_msg(strstr(m, fn) == m, "message '%s' does not start with %s", m, fn);
    if (also) ck_assert_msg(strstr(m, also) != NULL, "message '%s' lacks '%s'", m, also);
    tg_ctx_clear_error(c);
}

START_TEST(test_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_from(c, TG_F64, TG_SHAPE(3, 4), A_VALS);
    int bad = 2, dup[2] = {1, -1}, ok = 1;
    expect_err(c, tg_max_axes(c, x, 1, &bad, false), TG_ERR_INVALID, "tg_max_axes", "axis 2");
    expect_err(c, tg_min_axes(c, x, 2, dup, false), TG_ERR_INVALID, "tg_min_axes", "twice");
    expect_err(c, tg_prod_axes(c, x, -1, &ok, false), TG_ERR_INVALID, "tg_prod_axes", NULL);
    expect_err(c, tg_var_axes(c, x, 1, NULL, true, false), TG_ERR_INVALID, "tg_var_axes", NULL);
    expect_err(c, tg_argmax(c, x, 2, false), TG_ERR_INVALID, "tg_argmax", "axis 2");
    expect_err(c, tg_argmin(c, x, -3, true), TG_ERR_INVALID, "tg_argmin", NULL);
    expect_err(c, tg_norm(c, x, 0, 1, &ok, false), TG_ERR_INVALID, "tg_norm", "p");
    expect_err(c, tg_norm(c, x, -2, 1, &ok, false), TG_ERR_INVALID, "tg_norm", "p");
    expect_err(c, tg_norm(c, x, NAN, 1, &ok, false), TG_ERR_INVALID, "tg_norm", "p");
    /* empty reduced set */
    tg_tensor *e = tg_tensor_new(c, TG_F64, TG_SHAPE(2, 0));
    int ax1 = 1, ax0 = 0;
    expect_err(c, tg_max_axes(c, e, 1, &ax1, false), TG_ERR_INVALID, "tg_max_axes", "empty");
    expect_err(c, tg_min_axes(c, e, 1, &ax1, true), TG_ERR_INVALID, "tg_min_axes", "empty");
    expect_err(c, tg_argmax(c, e, 1, false), TG_ERR_INVALID, "tg_argmax", "empty");
    expect_err(c, tg_argmin(c, e, -1, false), TG_ERR_INVALID, "tg_argmin", "empty");
    expect_err(c, tg_prod_axes(c, e, 1, &ax1, false), TG_ERR_INVALID, "tg_prod_axes", "empty");
    expect_err(c, tg_var_axes(c, e, 1, &ax1, true, false), TG_ERR_INVALID, "tg_var_axes", "empty");
    expect_err(c, tg_std_axes(c, e, 1, &ax1, false, false), TG_ERR_INVALID, "tg_std_axes", "empty");
    expect_err(c, tg_logsumexp(c, e, 1, &ax1, false), TG_ERR_INVALID, "tg_logsumexp", "empty");
    expect_err(c, tg_norm(c, e, 2, 1, &ax1, false), TG_ERR_INVALID, "tg_norm", "empty");
    /* reducing the non-empty axis of an empty tensor is fine: an empty result */
    tg_tensor *y = tg_max_axes(c, e, 1, &ax0, false);
    assert_shape(y, TG_SHAPE(0));
    tu_assert_ok(c);
    /* NULL input */
    expect_err(c, tg_max_axes(c, NULL, 1, &ax0, false), TG_ERR_INVALID, "tg_max_axes", "NULL");
    expect_err(c, tg_argmax(c, NULL, 0, false), TG_ERR_INVALID, "tg_argmax", "NULL");
    expect_err(c, tg_prod_axes(c, NULL, 1, &ax0, false), TG_ERR_INVALID, "tg_prod_axes", "NULL");
    expect_err(c, tg_std_axes(c, NULL, 1, &ax0, true, false), TG_ERR_INVALID, "tg_std_axes",
               "NULL");
    expect_err(c, tg_logsumexp(c, NULL, 1, &ax0, false), TG_ERR_INVALID, "tg_logsumexp", "NULL");
    expect_err(c, tg_norm(c, NULL, 2, 1, &ax0, false), TG_ERR_INVALID, "tg_norm", "NULL");
    /* I64 input */
    tg_tensor *i = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (int64_t[]){1, 2});
    expect_err(c, tg_max_axes(c, i, 1, &ax0, false), TG_ERR_DTYPE, "tg_max_axes", "i64");
    expect_err(c, tg_argmin(c, i, 0, false), TG_ERR_DTYPE, "tg_argmin", "i64");
    expect_err(c, tg_prod_axes(c, i, 1, &ax0, false), TG_ERR_DTYPE, "tg_prod_axes", "i64");
    expect_err(c, tg_var_axes(c, i, 1, &ax0, true, false), TG_ERR_DTYPE, "tg_var_axes", "i64");
    expect_err(c, tg_logsumexp(c, i, 1, &ax0, false), TG_ERR_DTYPE, "tg_logsumexp", "i64");
    expect_err(c, tg_norm(c, i, 1, 1, &ax0, false), TG_ERR_DTYPE, "tg_norm", "i64");
    /* sticky: an earlier error makes every op return NULL and is kept */
    tg_max_axes(c, x, 1, &bad, false);
    ck_assert_ptr_null(tg_norm(c, x, 2, 1, &ax0, false));
    ck_assert_ptr_null(tg_argmax(c, x, 0, false));
    ck_assert(strstr(tg_ctx_errmsg(c), "tg_max_axes") != NULL);
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* determinism: threads and strides                                       */
/* ====================================================================== */

#define NOPS 10

/* Every op of the family on x over the axes. */
static void run_all(tg_ctx *c, tg_tensor *x, int naxes, const int *axes, int argaxis,
                    tg_tensor **out)
{
    out[0] = tg_max_axes(c, x, naxes, axes, false);
    out[1] = tg_min_axes(c, x, naxes, axes, true);
    out[2] = tg_prod_axes(c, x, naxes, axes, false);
    out[3] = tg_var_axes(c, x, naxes, axes, true, false);
    out[4] = tg_std_axes(c, x, naxes, axes, false, false);
    out[5] = tg_logsumexp(c, x, naxes, axes, false);
    out[6] = tg_norm(c, x, 2, naxes, axes, false);
    out[7] = tg_norm(c, x, 3, naxes, axes, false);
    out[8] = tg_argmax(c, x, argaxis, false);
    out[9] = tg_argmin(c, x, argaxis, false);
}

static void assert_same_bits(tg_tensor *a, tg_tensor *b, int k)
{
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tg_numel(a), tg_numel(b));
    size_t nb = (size_t)tg_numel(a) * tg_dtype_size(tg_tensor_dtype(a));
    char *pa = malloc(nb ? nb : 1), *pb = malloc(nb ? nb : 1);
    ck_assert(tg_copy_out(a, pa, nb) == TG_OK && tg_copy_out(b, pb, nb) == TG_OK);
    ck_assert_msg(memcmp(pa, pb, nb) == 0, "op %d differs", k);
    free(pa);
    free(pb);
}

START_TEST(test_threads_and_strides)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    int64_t rows = tu_under_valgrind() ? 3000 : 40000;
    tg_ctx *c = tu_ctx();
    /* a [3, rows] strided view (transpose of a contiguous [rows, 3]) and a
     * contiguous copy of it; values scaled so prod neither overflows nor
     * underflows too fast */
    tg_tensor *base = tg_scale(c, tg_randn(c, dt, TG_SHAPE(rows, 3)), 0.01);
    tg_tensor *xs = tg_add_scalar(c, tg_transpose(c, base, 0, 1), 1.0);
    ck_assert_ptr_nonnull(xs);
    tg_tensor *xt = tg_transpose(c, tg_contiguous(c, tg_transpose(c, xs, 0, 1)), 0, 1);
    tg_tensor *xc = tg_contiguous(c, xs);
    ck_assert(tg_is_contiguous(xc));
    const int all[2] = {0, 1}, one[1] = {1}, zero[1] = {0};
    struct {
        int n;
        const int *ax;
        int arg;
    } cases[3] = {{2, all, 1}, {1, one, 1}, {1, zero, 0}};
    for (int k = 0; k < 3; k++) {
        tg_tensor *r1[NOPS], *r4[NOPS], *rs[NOPS];
        tu_assert_status(tg_ctx_set_threads(c, 1), TG_OK);
        run_all(c, xc, cases[k].n, cases[k].ax, cases[k].arg, r1);
        tu_assert_status(tg_ctx_set_threads(c, 4), TG_OK);
        run_all(c, xc, cases[k].n, cases[k].ax, cases[k].arg, r4);
        run_all(c, xt, cases[k].n, cases[k].ax, cases[k].arg, rs);
        tu_assert_ok(c);
        for (int j = 0; j < NOPS; j++) {
            assert_same_bits(r1[j], r4[j], j);
            assert_same_bits(r1[j], rs[j], j);
        }
    }
    /* the big reductions are right too: argmax over everything of the flat
     * view agrees with max */
    tg_tensor *flat = tg_reshape(c, xc, 1, (int64_t[]){3 * rows});
    int64_t am = (int64_t)tg_item(tg_argmax(c, flat, 0, false));
    double mx = tg_item(tg_max_axes(c, flat, 1, zero, false));
    ck_assert(tg_get(flat, &am) == mx);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* out of memory                                                          */
/* ====================================================================== */

typedef struct {
    long allocs, fail_at; /* fail allocation fail_at (1-based) and every later one */
    bool failed;
} oom_state;

static void *oom_hook(void *ud, void *ptr, size_t osize, size_t nsize)
{
    oom_state *h = ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (++h->allocs >= h->fail_at) {
        h->failed = true;
        return NULL;
    }
    return malloc(nsize);
}

/* Forward and backward of op k (0..9) on an f64 [3,4] holding a zero. */
static tg_status oom_run(tg_ctx *c, int k)
{
    double v[12];
    memcpy(v, A_VALS, sizeof v);
    v[5] = 0.0;
    tg_tensor *x = tg_tensor_from(c, TG_F64, TG_SHAPE(3, 4), v);
    tg_set_requires_grad(x, true);
    int ax[2] = {1, 0};
    tg_tensor *y = NULL;
    switch (k) {
    case 0: y = tg_max_axes(c, x, 1, ax, false); break;
    case 1: y = tg_min_axes(c, x, 2, ax, true); break;
    case 2: y = tg_prod_axes(c, x, 1, ax, false); break;
    case 3: y = tg_var_axes(c, x, 1, ax, true, false); break;
    case 4: y = tg_std_axes(c, x, 2, ax, false, false); break;
    case 5: y = tg_logsumexp(c, x, 1, ax, true); break;
    case 6: y = tg_norm(c, x, 2, 1, ax, false); break;
    case 7: y = tg_norm(c, x, 3, 2, ax, false); break;
    case 8: y = tg_norm(c, x, INFINITY, 1, ax, false); break;
    default: return tg_argmax(c, x, 1, false) ? TG_OK : tg_ctx_status(c);
    }
    return tg_backward(c, tg_sum(c, y));
}

/* Failing the k-th allocation (and every later one) of a forward and
 * backward run gives TG_ERR_NOMEM, never a crash; some k lets it finish. */
START_TEST(test_out_of_memory)
{
    for (int op = 0; op < 10; op++) {
        bool done = false;
        for (long k = 1; k < 10000 && !done; k++) {
            oom_state h = {0, k, false};
            tg_ctx_opts o = tg_ctx_defaults();
            o.alloc = oom_hook;
            o.alloc_ud = &h;
            o.arena_chunk = 256; /* many small blocks: many places to fail */
            o.n_threads = 1;
            tg_ctx *c = tg_ctx_new_opts(&o);
            if (c == NULL) continue;
            tg_status st = oom_run(c, op);
            if (h.failed) {
                ck_assert_msg(st == TG_ERR_NOMEM, "op %d, k %ld: %s (%s)", op, k, tg_status_str(st),
                              tg_ctx_errmsg(c));
            } else {
                ck_assert_msg(st == TG_OK, "op %d: %s", op, tg_ctx_errmsg(c));
                done = true;
            }
            tg_ctx_free(c);
        }
        ck_assert_msg(done, "op %d never finished", op);
    }
}
END_TEST

Suite *reduce_suite(void)
{
    Suite *s = suite_create("reduce");
    TCase *tc = tu_tcase("forward");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_max_min_values, 0, 2);
    tcase_add_loop_test(tc, test_argmax_values, 0, 2);
    tcase_add_loop_test(tc, test_prod_values, 0, 2);
    tcase_add_loop_test(tc, test_var_std_values, 0, 2);
    tcase_add_loop_test(tc, test_logsumexp_values, 0, 2);
    tcase_add_loop_test(tc, test_norm_values, 0, 2);
    suite_add_tcase(s, tc);

    tc = tu_tcase("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_max_min_ties_grad);
    tcase_add_test(tc, test_prod_zeros_grad);
    tcase_add_test(tc, test_grad_f32);
    tcase_add_test(tc, test_prod_zeros_gradcheck);
    tcase_add_test(tc, test_prod_nonfinite_grad);
    tcase_add_test(tc, test_std_norm_zero_grad);
    tcase_add_test(tc, test_norm_p_half_gradcheck);
    suite_add_tcase(s, tc);

    tc = tu_tcase("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);

    tc = tu_tcase("oom");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_out_of_memory);
    suite_add_tcase(s, tc);

    tc = tu_tcase("determinism");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_threads_and_strides, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
