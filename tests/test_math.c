/*
 * test_math.c - the math suite: forward values of the elementwise math ops
 * and activations (include/tapegrad/ops_math.h) in f32 and f64 against
 * reference values, their special values and subgradients, thread
 * invariance, and their error paths. Gradients in general are checked by
 * the table-driven test (tests/opgrad_math.c).
 *
 * Reference values were computed with NumPy 2 / Python's math module in
 * double precision; each list names the expression that produced it, over
 *   x  = [-2.5, -1.0, -0.25, 0.0, 0.3, 1.7]
 *   xp = [0.04, 0.5, 1.0, 2.0, 3.7, 100.0]
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

static const double X[6] = {-2.5, -1.0, -0.25, 0.0, 0.3, 1.7};
static const double XP[6] = {0.04, 0.5, 1.0, 2.0, 3.7, 100.0};

/* A [2,3] tensor of dtype dt holding v. */
static tg_tensor *make6(tg_ctx *c, tg_dtype dt, const double *v)
{
    float f[6];
    for (int i = 0; i < 6; i++) f[i] = (float)v[i];
    tg_tensor *t = tg_tensor_from(c, dt, 2, (const int64_t[]){2, 3},
                                  dt == TG_F32 ? (const void *)f : (const void *)v);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Every element of t within tol * max(1, |want|) of want (n elements). */
static void check_rel(const tg_tensor *t, const double *want, int64_t n, double tol,
                      const char *what)
{
    ck_assert_msg(t != NULL, "%s: NULL result", what);
    ck_assert_int_eq(tg_numel(t), n);
    double got[64];
    ck_assert_int_le(n, 64);
    for (int64_t i = 0; i < n; i++) {
        /* through tg_get so any dtype and strides read the same */
        int64_t idx[TG_MAX_DIMS], r = i;
        for (int k = tg_ndim(t) - 1; k >= 0; k--) {
            idx[k] = r % tg_shape(t)[k];
            r /= tg_shape(t)[k];
        }
        got[i] = tg_get(t, idx);
    }
    for (int64_t i = 0; i < n; i++) {
        double w = want[i], g = got[i];
        double lim = tol * (fabs(w) > 1 ? fabs(w) : 1);
        ck_assert_msg(g == w || fabs(g - w) <= lim, "%s[%lld] == %.17g, expected %.17g", what,
                      (long long)i, g, w);
    }
}

/* ---- forward values of the unary ops --------------------------------------- */

typedef struct {
    const char *name;
    tg_tensor *(*f)(tg_ctx *c, tg_tensor *x);
    const double *in;
    double want[6];
} un_case;

static tg_tensor *clamp_(tg_ctx *c, tg_tensor *x) { return tg_clamp(c, x, -1.2, 0.5); }
static tg_tensor *leaky_(tg_ctx *c, tg_tensor *x) { return tg_leaky_relu(c, x, 0.2); }
static tg_tensor *elu_(tg_ctx *c, tg_tensor *x) { return tg_elu(c, x, 1.5); }
static tg_tensor *softplus_(tg_ctx *c, tg_tensor *x) { return tg_softplus(c, x, 2.0, 1.0); }
static tg_tensor *hardtanh_(tg_ctx *c, tg_tensor *x) { return tg_hardtanh(c, x, -1.0, 1.0); }

/* clang-format off */
static const un_case un_cases[] = {
    /* np.abs(x) */
    {"abs", tg_abs, X, {2.5, 1.0, 0.25, 0.0, 0.3, 1.7}},
    /* 1/np.sqrt(xp) */
    {"rsqrt", tg_rsqrt, XP, {5.0, 1.414213562373095, 1.0, 0.7071067811865475,
                             0.5198752449100363, 0.1}},
    /* np.log1p(xp) */
    {"log1p", tg_log1p, XP, {0.039220713153281295, 0.4054651081081644, 0.6931471805599453,
                             1.0986122886681098, 1.547562508716013, 4.61512051684126}},
    /* np.expm1(x) */
    {"expm1", tg_expm1, X, {-0.9179150013761012, -0.6321205588285577, -0.22119921692859512, 0.0,
                            0.3498588075760031, 4.4739473917272}},
    /* np.sin(x) */
    {"sin", tg_sin, X, {-0.5984721441039565, -0.8414709848078965, -0.24740395925452294, 0.0,
                        0.29552020666133955, 0.9916648104524686}},
    /* np.cos(x) */
    {"cos", tg_cos, X, {-0.8011436155469337, 0.5403023058681398, 0.9689124217106447, 1.0,
                        0.955336489125606, -0.12884449429552464}},
    /* np.square(x) */
    {"square", tg_square, X, {6.25, 1.0, 0.0625, 0.0, 0.09, 2.8899999999999997}},
    /* math.erf(x) */
    {"erf", tg_erf, X, {-0.999593047982555, -0.8427007929497149, -0.2763263901682369, 0.0,
                        0.3286267594591274, 0.9837904585907745}},
    /* np.clip(x, -1.2, 0.5) */
    {"clamp", clamp_, X, {-1.2, -1.0, -0.25, 0.0, 0.3, 0.5}},
    /* np.where(x > 0, x, 0.2 * x) */
    {"leaky_relu", leaky_, X, {-0.5, -0.2, -0.05, 0.0, 0.3, 1.7}},
    /* np.where(x > 0, x, 1.5 * np.expm1(x)) */
    {"elu", elu_, X, {-1.3768725020641517, -0.9481808382428365, -0.3317988253928927, 0.0, 0.3,
                      1.7}},
    /* x * 0.5 * (1 + math.erf(x / sqrt(2))) */
    {"gelu", tg_gelu, X, {-0.015524163314440398, -0.15865525393145707, -0.10032341857926907, 0.0,
                          0.18537342665668577, 1.6242387133104768}},
    /* 0.5*x*(1+np.tanh(sqrt(2/pi)*(x+0.044715*x**3))) */
    {"gelu_tanh", tg_gelu_tanh, X, {-0.015084266089998577, -0.1588080093917233,
                                    -0.100324649298315, 0.0, 0.18537092354275922,
                                    1.624105895551156}},
    /* x / (1 + np.exp(-x)) */
    {"silu", tg_silu, X, {-0.18964545005310887, -0.2689414213699951, -0.10945587477855048, 0.0,
                          0.1723327550434977, 1.437409049357991}},
    /* np.where(2*x > 1, x, np.log1p(np.exp(2*x))/2)  (beta 2, threshold 1) */
    {"softplus", softplus_, X, {0.003357674244559034, 0.06346400552148625, 0.23703849209005334,
                                0.34657359027997264, 0.5187439752429428, 1.7}},
    /* np.clip(x, -1, 1) */
    {"hardtanh", hardtanh_, X, {-1.0, -1.0, -0.25, 0.0, 0.3, 1.0}},
    /* -np.log1p(np.exp(-x)) */
    {"log_sigmoid", tg_log_sigmoid, X, {-2.5788897342925496, -1.3132616875182228,
                                        -0.8259394198788436, -0.6931471805599453,
                                        -0.5543552444685271, -0.16778602938626594}},
};
/* clang-format on */

#define N_UN ((int)(sizeof un_cases / sizeof un_cases[0]))

/* Each unary op in f64 (1e-13), f32 (2e-6, the input itself rounded to
 * float) and on a transposed, strided f64 view. */
START_TEST(test_unary_values)
{
    const un_case *u = &un_cases[_i];
    tg_ctx *c = tu_ctx();
    char what[64];

    snprintf(what, sizeof what, "%s f64", u->name);
    check_rel(u->f(c, make6(c, TG_F64, u->in)), u->want, 6, 1e-13, what);
    tu_assert_ok(c);

    snprintf(what, sizeof what, "%s f32", u->name);
    tg_tensor *y = u->f(c, make6(c, TG_F32, u->in));
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tensor_dtype(y), TG_F32);
    check_rel(y, u->want, 6, 2e-6, what);

    /* [3,2] holding the transpose, viewed back as [2,3] */
    double tr[6];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) tr[j * 2 + i] = u->in[i * 3 + j];
    tg_tensor *base = tg_tensor_from(c, TG_F64, 2, (const int64_t[]){3, 2}, tr);
    tg_tensor *view = tg_transpose(c, base, 0, 1);
    ck_assert(!tg_is_contiguous(view));
    snprintf(what, sizeof what, "%s strided", u->name);
    y = u->f(c, view);
    ck_assert_ptr_nonnull(y);
    ck_assert(tg_is_contiguous(y));
    check_rel(y, u->want, 6, 1e-13, what);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---- binary and ternary ops ------------------------------------------------ */

/* a [2,3] and b [3] (broadcast over rows) */
static const double A6[6] = {0.5, -1.0, 2.0, 3.0, 0.25, -0.75};
static const double PA6[6] = {0.5, 1.0, 2.0, 3.0, 0.25, 1.75};
static const double B3[3] = {1.5, -1.0, 0.0};

static tg_tensor *make3(tg_ctx *c, tg_dtype dt, const double *v)
{
    float f[3] = {(float)v[0], (float)v[1], (float)v[2]};
    tg_tensor *t = tg_tensor_from(c, dt, 1, (const int64_t[]){3},
                                  dt == TG_F32 ? (const void *)f : (const void *)v);
    ck_assert_ptr_nonnull(t);
    return t;
}

START_TEST(test_binary_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    double tol = _i ? 2e-6 : 1e-13;
    tg_ctx *c = tu_ctx();
    tg_tensor *a = make6(c, dt, A6), *b = make3(c, dt, B3), *pa = make6(c, dt, PA6);

    /* np.maximum(a, b), np.minimum(a, b) */
    check_rel(tg_maximum(c, a, b), (const double[]){1.5, -1.0, 2.0, 3.0, 0.25, 0.0}, 6, tol,
              "maximum");
    check_rel(tg_minimum(c, a, b), (const double[]){0.5, -1.0, 0.0, 1.5, -1.0, -0.75}, 6, tol,
              "minimum");
    /* np.power(pa, b) */
    check_rel(tg_pow(c, pa, b),
              (const double[]){0.3535533905932738, 1.0, 1.0, 5.196152422706632, 4.0, 1.0}, 6, tol,
              "pow");
    tg_tensor *m = tg_maximum(c, b, a); /* shape [2,3] either way round */
    ck_assert_int_eq(tg_ndim(m), 2);
    ck_assert_int_eq(tg_shape(m)[0], 2);

    /* where with a same-dtype condition and with an i64 one, broadcasting
     * cond [3] against a [2,3] and a 0-d b */
    double cv[3] = {1.0, 0.0, -2.0};
    int64_t ci[3] = {0, 5, 1};
    tg_tensor *cond = make3(c, dt, cv);
    tg_tensor *condi = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){3}, ci);
    tg_tensor *s = tg_scalar(c, dt, 9.0);
    check_rel(tg_where(c, cond, a, s), (const double[]){0.5, 9.0, 2.0, 3.0, 9.0, -0.75}, 6, tol,
              "where float cond");
    check_rel(tg_where(c, condi, a, s), (const double[]){9.0, -1.0, 2.0, 9.0, 0.25, -0.75}, 6, tol,
              "where i64 cond");
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* pow's gradients against NumPy, and PyTorch's conventions at a == 0. */
START_TEST(test_pow_grad)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *pa = make6(c, TG_F64, PA6), *b = make3(c, TG_F64, B3);
    tg_set_requires_grad(pa, true);
    tg_set_requires_grad(b, true);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_pow(c, pa, b))), TG_OK);
    /* b * pa**(b-1) */
    check_rel(tg_grad(pa),
              (const double[]){1.0606601717798214, -1.0, 0.0, 2.598076211353316, -16.0, 0.0}, 6,
              1e-13, "d pow / da");
    /* (pa**b * np.log(pa)).sum(0) */
    check_rel(tg_grad(b), (const double[]){5.46349236951094, -5.545177444479562, 1.252762968495368},
              3, 1e-13, "d pow / db");

    /* a == 0: 0^0 = 1 with both gradients 0; 0^2 = 0 with d/db 0; and
     * (-2)^3 = -8 with d/da = 12 and d/db NaN */
    double av[3] = {0.0, 0.0, -2.0}, bv[3] = {0.0, 2.0, 3.0};
    tg_tensor *a2 = make3(c, TG_F64, av), *b2 = make3(c, TG_F64, bv);
    tg_set_requires_grad(a2, true);
    tg_set_requires_grad(b2, true);
    tg_tensor *y = tg_pow(c, a2, b2);
    tu_assert_values(y, 0, 1.0, 0.0, -8.0);
    tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
    tu_assert_values(tg_grad(a2), 0, 0.0, 0.0, 12.0);
    tg_tensor *gb = tg_grad(b2);
    ck_assert_double_eq(tg_get(gb, (const int64_t[]){0}), 0.0);
    ck_assert_double_eq(tg_get(gb, (const int64_t[]){1}), 0.0);
    ck_assert(isnan(tg_get(gb, (const int64_t[]){2})));
    tg_ctx_free(c);
}
END_TEST

/* ---- special values --------------------------------------------------------- */

/* f(v) in dtype dt as a double */
static double at(tg_ctx *c, tg_dtype dt, tg_tensor *(*f)(tg_ctx *, tg_tensor *), double v)
{
    tg_tensor *y = f(c, tg_scalar(c, dt, v));
    ck_assert_ptr_nonnull(y);
    return tg_item(y);
}

static tg_tensor *softplus_default(tg_ctx *c, tg_tensor *x) { return tg_softplus(c, x, 1, 20); }
static tg_tensor *softplus_no_thr(tg_ctx *c, tg_tensor *x) { return tg_softplus(c, x, 1, 1e30); }

START_TEST(test_special_values)
{
    tg_dtype dt = _i ? TG_F32 : TG_F64;
    tg_ctx *c = tu_ctx();

    double z = at(c, dt, tg_abs, -0.0);
    ck_assert(z == 0.0 && !signbit(z));          /* abs(-0.0) = +0.0 */
    ck_assert(isinf(at(c, dt, tg_rsqrt, 0.0)));  /* rsqrt(0) = inf */
    ck_assert(isnan(at(c, dt, tg_rsqrt, -1.0))); /* rsqrt(<0) = NaN */
    ck_assert(isnan(at(c, dt, tg_sqrt, -1.0)));  /* and sqrt too */
    ck_assert_double_eq(at(c, dt, tg_log1p, 0.0), 0.0);
    ck_assert_double_eq_tol(at(c, TG_F64, tg_log1p, 1e-20), 1e-20, 1e-35); /* no cancellation */
    ck_assert_double_eq_tol(at(c, TG_F64, tg_expm1, 1e-20), 1e-20, 1e-35);

    /* log_sigmoid: finite far left, 0 far right, stable both ways */
    ck_assert_double_eq_tol(at(c, dt, tg_log_sigmoid, -1000.0), -1000.0, 1e-9);
    /* -30 - log1p(exp(-30)) */
    ck_assert_double_eq_tol(at(c, dt, tg_log_sigmoid, -30.0), -30.000000000000092, 1e-5);
    ck_assert_double_eq_tol(at(c, dt, tg_log_sigmoid, 1000.0), 0.0, 1e-300);
    ck_assert_double_eq(at(c, dt, tg_log_sigmoid, INFINITY), 0.0);
    ck_assert(isnan(at(c, dt, tg_log_sigmoid, NAN)));

    /* softplus: linear above the threshold, no overflow without one */
    ck_assert_double_eq(at(c, dt, softplus_default, 30.0), 30.0);
    ck_assert_double_eq(at(c, dt, softplus_default, 20.5), 20.5);
    ck_assert_double_eq_tol(at(c, dt, softplus_no_thr, 1000.0), 1000.0, 1e-9);
    ck_assert_double_eq(at(c, dt, softplus_no_thr, -1000.0), 0.0);

    /* gelu: 0 at 0, accurate tiny negatives (x/2 erfc(-x/sqrt 2)) */
    ck_assert_double_eq(at(c, dt, tg_gelu, 0.0), 0.0);
    ck_assert_double_eq(at(c, dt, tg_gelu_tanh, 0.0), 0.0);
    if (dt == TG_F64) /* -10 * 0.5 * math.erfc(10 / sqrt(2)) */
        ck_assert_double_eq_tol(at(c, dt, tg_gelu, -10.0), -7.619853024160593e-23, 1e-36);
    ck_assert_double_eq(at(c, dt, tg_silu, 0.0), 0.0);
    ck_assert_double_eq_tol(at(c, dt, tg_silu, -1000.0), 0.0, 1e-300);

    /* NaN propagates through clamp and maximum / minimum */
    tg_tensor *nan = tg_scalar(c, dt, NAN), *one = tg_scalar(c, dt, 1.0);
    ck_assert(isnan(tg_item(tg_clamp(c, nan, -1, 1))));
    ck_assert(isnan(tg_item(tg_maximum(c, nan, one))));
    ck_assert(isnan(tg_item(tg_maximum(c, one, nan))));
    ck_assert(isnan(tg_item(tg_minimum(c, one, nan))));
    /* clamp with lo > hi gives hi (PyTorch); absent bounds */
    ck_assert_double_eq(tg_item(tg_clamp(c, one, 3.0, 2.0)), 2.0);
    ck_assert_double_eq(tg_item(tg_clamp(c, one, -INFINITY, INFINITY)), 1.0);
    ck_assert_double_eq(tg_item(tg_clamp(c, one, 1.5, INFINITY)), 1.5);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---- subgradients at kinks --------------------------------------------------- */

/* d sum(f(x)) / dx at the three points v, in f64 */
static void grad3(tg_tensor *(*f)(tg_ctx *, tg_tensor *), const double *v, const double *want)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = make3(c, TG_F64, v);
    tg_set_requires_grad(x, true);
    tu_assert_status(tg_backward(c, tg_sum(c, f(c, x))), TG_OK);
    check_rel(tg_grad(x), want, 3, 1e-14, "grad");
    tg_ctx_free(c);
}

static tg_tensor *clamp01(tg_ctx *c, tg_tensor *x) { return tg_clamp(c, x, 0.0, 1.0); }
static tg_tensor *hardtanh01(tg_ctx *c, tg_tensor *x) { return tg_hardtanh(c, x, 0.0, 1.0); }
static tg_tensor *leaky03(tg_ctx *c, tg_tensor *x) { return tg_leaky_relu(c, x, 0.3); }
static tg_tensor *elu2(tg_ctx *c, tg_tensor *x) { return tg_elu(c, x, 2.0); }
static tg_tensor *softplus_b2t1(tg_ctx *c, tg_tensor *x) { return tg_softplus(c, x, 2.0, 1.0); }

START_TEST(test_kinks)
{
    grad3(tg_abs, (const double[]){-2, 0, 3}, (const double[]){-1, 0, 1}); /* abs'(0) = 0 */
    /* clamp passes the gradient at both bounds; hardtanh does not */
    grad3(clamp01, (const double[]){0, 1, 2}, (const double[]){1, 1, 0});
    grad3(hardtanh01, (const double[]){0, 1, 0.5}, (const double[]){0, 0, 1});
    grad3(leaky03, (const double[]){-1, 0, 1}, (const double[]){0.3, 0.3, 1}); /* slope at 0 */
    grad3(elu2, (const double[]){-1, 0, 1}, (const double[]){2 * exp(-1.0), 2, 1});
    /* sigmoid(2 * 0.25) = 1/(1+exp(-0.5)); 1 above the threshold (x > 0.5) */
    grad3(softplus_b2t1, (const double[]){0.25, 0.6, 5},
          (const double[]){0.6224593312018546, 1, 1});
    /* 0.5*(1+erf(x/sqrt(2))) + x*exp(-x*x/2)/sqrt(2*pi) at -2.5, -1, 0 */
    grad3(tg_gelu, (const double[]){-2.5, -1, 0},
          (const double[]){-0.037611085908145186, -0.08331547058768629, 0.5});
    /* sig(x)*(1+x*(1-sig(x))) */
    grad3(tg_silu, (const double[]){-2.5, -1, 0},
          (const double[]){-0.09940111134152682, 0.07232948812851325, 0.5});
    /* log_sigmoid' = sigmoid(-x): finite far out */
    grad3(tg_log_sigmoid, (const double[]){-1000, 0, 1000}, (const double[]){1, 0.5, 0});
}
END_TEST

/* maximum / minimum split ties 0.5 / 0.5; where gives cond no gradient */
START_TEST(test_ties_and_where_grad)
{
    tg_ctx *c = tu_ctx();
    double av[3] = {1, 2, 3}, bv[3] = {0, 2, 4};
    tg_tensor *a = make3(c, TG_F64, av), *b = make3(c, TG_F64, bv);
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_maximum(c, a, b))), TG_OK);
    tu_assert_values(tg_grad(a), 0, 1.0, 0.5, 0.0);
    tu_assert_values(tg_grad(b), 0, 0.0, 0.5, 1.0);
    tg_zero_grad(a);
    tg_zero_grad(b);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_minimum(c, a, b))), TG_OK);
    tu_assert_values(tg_grad(a), 0, 0.0, 0.5, 1.0);
    tu_assert_values(tg_grad(b), 0, 1.0, 0.5, 0.0);

    /* where: a gets dout where cond holds, b elsewhere; a float cond that
     * requires grad gets none */
    double cv[3] = {1, 0, 1};
    tg_tensor *cond = make3(c, TG_F64, cv);
    tg_set_requires_grad(cond, true);
    tg_zero_grad(a);
    tg_zero_grad(b);
    tg_tensor *y = tg_where(c, cond, a, tg_scale(c, b, 3.0));
    tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
    tu_assert_values(tg_grad(a), 0, 1.0, 0.0, 1.0);
    tu_assert_values(tg_grad(b), 0, 0.0, 3.0, 0.0);
    tg_tensor *gc = tg_grad(cond);
    ck_assert(gc == NULL ||
              (tg_get(gc, (const int64_t[]){0}) == 0 && tg_get(gc, (const int64_t[]){1}) == 0));
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* An inf on the unselected side of a branch never turns into NaN. */
START_TEST(test_no_nan_from_masks)
{
    tg_ctx *c = tu_ctx();
    double xv[3] = {800, -1, 0.5};
    tg_tensor *x = make3(c, TG_F64, xv);
    tg_set_requires_grad(x, true);
    /* exp(100 clamp(x, -inf, 10)): at x = 800 the gradient reaching clamp
     * is 100 exp(1000) = inf, where clamp's own gradient is 0 */
    tg_tensor *y = tg_clamp(c, x, -INFINITY, 10.0);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_exp(c, tg_scale(c, y, 100.0)))), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(x), (const int64_t[]){0}), 0.0);
    /* the same through hardtanh and elu's unselected branch */
    tg_zero_grad(x);
    y = tg_hardtanh(c, x, -INFINITY, 10.0);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_exp(c, tg_scale(c, y, 100.0)))), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(x), (const int64_t[]){0}), 0.0);
    /* and through maximum's losing side */
    tg_zero_grad(x);
    double bv[3] = {801, -2, 0};
    y = tg_maximum(c, x, make3(c, TG_F64, bv));
    tu_assert_status(tg_backward(c, tg_sum(c, tg_exp(c, tg_scale(c, y, 100.0)))), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(x), (const int64_t[]){0}), 0.0);
    tg_ctx_free(c);
}
END_TEST

/* ---- threads ------------------------------------------------------------------ */

/* Bit-identical results with 1 and 4 threads on a tensor large enough to
 * split. */
START_TEST(test_threads_identical)
{
    const int64_t n = 300000;
    tg_ctx *c1 = tu_ctx(), *c4 = tu_ctx();
    tu_assert_status(tg_ctx_set_threads(c1, 1), TG_OK);
    tu_assert_status(tg_ctx_set_threads(c4, 4), TG_OK);
    tg_ctx_seed(c1, 7);
    tg_ctx_seed(c4, 7);
    tg_tensor *x1 = tg_randn(c1, TG_F32, 1, &n), *x4 = tg_randn(c4, TG_F32, 1, &n);
    tg_tensor *w1 = tg_randn(c1, TG_F32, 1, &n), *w4 = tg_randn(c4, TG_F32, 1, &n);
    tg_tensor *r1[4] = {tg_gelu(c1, x1), tg_softplus(c1, x1, 1, 20), tg_maximum(c1, x1, w1),
                        tg_where(c1, x1, w1, x1)};
    tg_tensor *r4[4] = {tg_gelu(c4, x4), tg_softplus(c4, x4, 1, 20), tg_maximum(c4, x4, w4),
                        tg_where(c4, x4, w4, x4)};
    for (int k = 0; k < 4; k++) {
        ck_assert_ptr_nonnull(r1[k]);
        ck_assert_ptr_nonnull(r4[k]);
        ck_assert(memcmp(tg_data(r1[k]), tg_data(r4[k]), (size_t)n * sizeof(float)) == 0);
    }
    tu_assert_ok(c1);
    tu_assert_ok(c4);
    tg_ctx_free(c1);
    tg_ctx_free(c4);
}
END_TEST

/* ---- errors ------------------------------------------------------------------- */

/* r is NULL and c holds status st with a message naming fn; clears it. */
static void expect_err(tg_ctx *c, const tg_tensor *r, tg_status st, const char *fn)
{
    ck_assert_ptr_null(r);
    tu_assert_status(tg_ctx_status(c), st);
    ck_assert_msg(strstr(tg_ctx_errmsg(c), fn) != NULL, "message '%s' does not name %s",
                  tg_ctx_errmsg(c), fn);
    tg_ctx_clear_error(c);
}

START_TEST(test_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *f32 = tg_full(c, TG_F32, 2, (const int64_t[]){3, 4}, 1.0);
    tg_tensor *f64 = tg_full(c, TG_F64, 2, (const int64_t[]){3, 4}, 1.0);
    tg_tensor *g5 = tg_full(c, TG_F64, 1, (const int64_t[]){5}, 1.0);
    tg_tensor *i64 = tg_full(c, TG_I64, 2, (const int64_t[]){3, 4}, 1.0);
    tu_assert_ok(c);

    /* NULL inputs */
    expect_err(c, tg_abs(c, NULL), TG_ERR_INVALID, "tg_abs");
    expect_err(c, tg_gelu(c, NULL), TG_ERR_INVALID, "tg_gelu");
    expect_err(c, tg_clamp(c, NULL, 0, 1), TG_ERR_INVALID, "tg_clamp");
    expect_err(c, tg_maximum(c, f64, NULL), TG_ERR_INVALID, "tg_maximum");
    expect_err(c, tg_where(c, NULL, f64, f64), TG_ERR_INVALID, "tg_where");
    expect_err(c, tg_pow(c, NULL, f64), TG_ERR_INVALID, "tg_pow");
    ck_assert_ptr_null(tg_abs(NULL, f64)); /* a NULL context is not a crash */

    /* dtypes */
    expect_err(c, tg_minimum(c, f32, f64), TG_ERR_DTYPE, "tg_minimum");
    expect_err(c, tg_pow(c, f64, f32), TG_ERR_DTYPE, "tg_pow");
    expect_err(c, tg_sin(c, i64), TG_ERR_DTYPE, "tg_sin");
    expect_err(c, tg_silu(c, i64), TG_ERR_DTYPE, "tg_silu");
    expect_err(c, tg_where(c, f32, f64, f64), TG_ERR_DTYPE, "tg_where");
    expect_err(c, tg_where(c, f64, f64, f32), TG_ERR_DTYPE, "tg_where");
    expect_err(c, tg_where(c, i64, i64, i64), TG_ERR_DTYPE, "tg_where");

    /* shapes */
    expect_err(c, tg_maximum(c, f64, g5), TG_ERR_SHAPE, "tg_maximum");
    expect_err(c, tg_pow(c, g5, f64), TG_ERR_SHAPE, "tg_pow");
    expect_err(c, tg_where(c, g5, f64, f64), TG_ERR_SHAPE, "tg_where");
    expect_err(c, tg_where(c, i64, f64, g5), TG_ERR_SHAPE, "tg_where");

    /* scalar arguments */
    expect_err(c, tg_clamp(c, f64, NAN, 1), TG_ERR_INVALID, "tg_clamp");
    expect_err(c, tg_hardtanh(c, f64, 1, -1), TG_ERR_INVALID, "tg_hardtanh");
    expect_err(c, tg_hardtanh(c, f64, 0, NAN), TG_ERR_INVALID, "tg_hardtanh");
    expect_err(c, tg_softplus(c, f64, 0, 20), TG_ERR_INVALID, "tg_softplus");
    expect_err(c, tg_softplus(c, f64, 1, NAN), TG_ERR_INVALID, "tg_softplus");
    expect_err(c, tg_elu(c, f64, INFINITY), TG_ERR_INVALID, "tg_elu");

    /* sticky: the first error stays and later valid calls return NULL */
    ck_assert_ptr_null(tg_pow(c, g5, f64));
    ck_assert_ptr_null(tg_abs(c, f64));
    ck_assert_ptr_null(tg_leaky_relu(c, f64, 0.1));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "tg_pow"));
    tg_ctx_clear_error(c);
    ck_assert_ptr_nonnull(tg_abs(c, f64));
    tg_ctx_free(c);
}
END_TEST

Suite *math_suite(void)
{
    Suite *s = suite_create("math");

    TCase *tc = tu_tcase("values");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_unary_values, 0, N_UN);
    tcase_add_loop_test(tc, test_binary_values, 0, 2);
    tcase_add_test(tc, test_pow_grad);
    tcase_add_loop_test(tc, test_special_values, 0, 2);
    suite_add_tcase(s, tc);

    tc = tu_tcase("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_kinks);
    tcase_add_test(tc, test_ties_and_where_grad);
    tcase_add_test(tc, test_no_nan_from_masks);
    suite_add_tcase(s, tc);

    tc = tu_tcase("threads");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_threads_identical);
    suite_add_tcase(s, tc);

    tc = tu_tcase("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
