/*
 * test_gradcheck.c - the public gradient checker itself: it passes correct
 * gradients, catches wrong first- and second-order ones with a report that
 * names the input and the element, accepts strided inputs, rejects
 * overlapping ones and bad arguments, and leaves every input bit-exact.
 * (Every op's gradient is checked by test_opgrad.c.)
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

#define REPORT_LEN 1024

/* A context for the test's own tensors, seeded so values are fixed. */
static tg_ctx *new_ctx(uint64_t seed)
{
    tg_ctx *c = tu_ctx();
    tg_ctx_seed(c, seed);
    return c;
}

/* A contiguous f64 leaf of standard normal values that requires grad. */
static tg_tensor *randn_leaf(tg_ctx *c, int ndim, const int64_t *shape)
{
    tg_tensor *t = tg_randn(c, TG_F64, ndim, shape);
    ck_assert_ptr_nonnull(t);
    tg_set_requires_grad(t, true);
    tu_assert_ok(c);
    return t;
}

/* Row-major copy of t's values, for bit-exact comparisons. */
static void snapshot(const tg_tensor *t, double *dst, size_t cap)
{
    size_t n = (size_t)tg_numel(t);
    ck_assert_uint_le(n, cap);
    ck_assert_int_eq(tg_copy_out(t, dst, n * sizeof(double)), TG_OK);
}

static void assert_same_bits(const tg_tensor *t, const double *before)
{
    double now[64];
    snapshot(t, now, 64);
    ck_assert_msg(memcmp(now, before, (size_t)tg_numel(t) * sizeof(double)) == 0,
                  "gradcheck did not restore an input bit-exactly");
}

/* ---- functions under test ------------------------------------------------ */

/* tanh(a) * b + exp(a): correct gradients of every order. */
static tg_tensor *f_good(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_add(c, tg_mul(c, tg_tanh(c, in[0]), in[1]), tg_exp(c, in[0]));
}

/* a + b * detach(b) * mask: the value is a + b^2 * mask, but the graph
 * forgets one factor, so the analytic gradient wrt b is b * mask instead of
 * 2 b * mask. Wrong only where mask is 1: input 1, element [1,2]. */
static tg_tensor *f_wrong_first(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    tg_tensor *mask = user;
    return tg_add(c, in[0], tg_mul(c, tg_mul(c, in[1], tg_detach(c, in[1])), mask));
}

/* x * d + (x - d) * d with d = detach(x): the value is x^2 and the first
 * gradient's value is d + d = 2x (right), but that gradient is built from
 * detached tensors only, so its own gradient is 0 instead of 2 v w. */
static tg_tensor *f_wrong_second(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    (void)user;
    tg_tensor *d = tg_detach(c, in[0]);
    return tg_add(c, tg_mul(c, in[0], d), tg_mul(c, tg_sub(c, in[0], d), d));
}

/* x @ y: for strided (transposed) inputs. */
static tg_tensor *f_matmul(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_matmul(c, in[0], in[1]);
}

/* sigmoid(x) * k with k an input that does not require grad. */
static tg_tensor *f_with_const(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_mul(c, tg_sigmoid(c, in[0]), in[1]);
}

/* x * k: with an infinite k, a zero output gradient gives 0 * inf = NaN. */
static tg_tensor *f_mul(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_mul(c, in[0], in[1]);
}

static tg_tensor *f_return_null(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)c;
    (void)in;
    (void)n;
    (void)user;
    return NULL;
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_correct_passes)
{
    tg_ctx *c = new_ctx(11);
    tg_tensor *in[2] = {randn_leaf(c, TG_SHAPE(2, 3)), randn_leaf(c, TG_SHAPE(2, 3))};
    double b0[64], b1[64];
    snapshot(in[0], b0, 64);
    snapshot(in[1], b1, 64);
    char rep[REPORT_LEN];

    /* defaults (NULL options) */
    tg_status st = tg_gradcheck(f_good, NULL, in, 2, NULL, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);
    ck_assert_str_eq(rep, "");

    tg_gradcheck_opts o = tg_gradcheck_defaults();
    ck_assert(o.eps == 1e-6 && o.atol == 1e-7 && o.rtol == 1e-5 && !o.second_order);
    o.second_order = true;
    o.atol = 1e-6;
    st = tg_gradcheck(f_good, NULL, in, 2, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);

    /* a NULL report is allowed */
    tu_assert_status(tg_gradcheck(f_good, NULL, in, 2, &o, NULL, 0), TG_OK);

    assert_same_bits(in[0], b0);
    assert_same_bits(in[1], b1);
    /* gradcheck never touches .grad */
    ck_assert_ptr_null(tg_grad(in[0]));
    ck_assert_ptr_null(tg_grad(in[1]));
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_unchecked_inputs_pass_through)
{
    tg_ctx *c = new_ctx(12);
    tg_tensor *k = tg_randn(c, TG_F64, TG_SHAPE(3));
    tg_tensor *in[2] = {randn_leaf(c, TG_SHAPE(2, 3)), k};
    ck_assert(!tg_requires_grad(k));
    double bk[64];
    snapshot(k, bk, 64);
    char rep[REPORT_LEN];
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    tg_status st = tg_gradcheck(f_with_const, NULL, in, 2, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);
    assert_same_bits(k, bk);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_nonleaf_input)
{
    /* A checked input may be an intermediate of the caller's own graph. */
    tg_ctx *c = new_ctx(13);
    tg_tensor *x = randn_leaf(c, TG_SHAPE(2, 2));
    tg_tensor *y = tg_scale(c, x, 0.5);
    ck_assert_ptr_nonnull(y);
    ck_assert(!tg_is_leaf(y) && tg_requires_grad(y));
    tg_tensor *in[2] = {y, randn_leaf(c, TG_SHAPE(2, 2))};
    double by[64];
    snapshot(y, by, 64);
    char rep[REPORT_LEN];
    tg_status st = tg_gradcheck(f_good, NULL, in, 2, NULL, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);
    assert_same_bits(y, by);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_wrong_first_order_caught)
{
    tg_ctx *c = new_ctx(14);
    const double bv[6] = {0.3, -0.7, 1.1, 0.9, -0.4, 1.3};
    const double mv[6] = {0, 0, 0, 0, 0, 1}; /* only element [1,2] */
    tg_tensor *b = tg_tensor_from(c, TG_F64, TG_SHAPE(2, 3), bv);
    tg_tensor *mask = tg_tensor_from(c, TG_F64, TG_SHAPE(2, 3), mv);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(mask);
    tg_set_requires_grad(b, true);
    tg_tensor *in[2] = {randn_leaf(c, TG_SHAPE(2, 3)), b};
    double b0[64], b1[64];
    snapshot(in[0], b0, 64);
    snapshot(in[1], b1, 64);

    char rep[REPORT_LEN];
    tg_status st = tg_gradcheck(f_wrong_first, mask, in, 2, NULL, rep, sizeof rep);
    tu_assert_status(st, TG_ERR_GRADCHECK);
    ck_assert_msg(strstr(rep, "first order") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "input 1") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "[1,2]") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "flat 5") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "[2,3]") != NULL, "report: %s", rep); /* the shape */
    /* analytic b = 1.3 times its weight, numeric twice that: both printed */
    ck_assert_msg(strstr(rep, "analytic") && strstr(rep, "numeric"), "report: %s", rep);
    ck_assert_msg(strstr(rep, "1 of 12 elements differ") != NULL, "report: %s", rep);

    /* restored exactly, even on failure */
    assert_same_bits(in[0], b0);
    assert_same_bits(in[1], b1);

    /* x * detach(x) itself, the simplest wrong backward */
    tg_tensor *one[1] = {randn_leaf(c, TG_SHAPE(4))};
    const double ones[4] = {1, 1, 1, 1};
    tg_tensor *all = tg_tensor_from(c, TG_F64, TG_SHAPE(4), ones);
    tg_tensor *two[2] = {tg_tensor_new(c, TG_F64, TG_SHAPE(4)), one[0]};
    ck_assert_ptr_nonnull(all);
    tu_assert_status(tg_gradcheck(f_wrong_first, all, two, 2, NULL, rep, sizeof rep),
                     TG_ERR_GRADCHECK);
    ck_assert_msg(strstr(rep, "input 1") != NULL, "report: %s", rep);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_wrong_second_order_caught)
{
    tg_ctx *c = new_ctx(15);
    tg_tensor *in[1] = {randn_leaf(c, TG_SHAPE(3, 2))};
    double b0[64];
    snapshot(in[0], b0, 64);
    char rep[REPORT_LEN];
    tg_gradcheck_opts o = tg_gradcheck_defaults();

    /* first order is right */
    tg_status st = tg_gradcheck(f_wrong_second, NULL, in, 1, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);

    /* second order is not */
    o.second_order = true;
    st = tg_gradcheck(f_wrong_second, NULL, in, 1, &o, rep, sizeof rep);
    tu_assert_status(st, TG_ERR_GRADCHECK);
    ck_assert_msg(strstr(rep, "second order") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "input 0") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "analytic 0,") != NULL, "report: %s", rep);
    assert_same_bits(in[0], b0);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_zero_grad_check)
{
    /* d(x * k) with k = inf: a zero output gradient gives 0 * inf = NaN, not
     * 0, and the zero-gradient check says so. */
    tg_ctx *c = new_ctx(16);
    const double kv[3] = {1.0, INFINITY, 2.0};
    tg_tensor *k = tg_tensor_from(c, TG_F64, TG_SHAPE(3), kv);
    ck_assert_ptr_nonnull(k);
    tg_tensor *in[2] = {randn_leaf(c, TG_SHAPE(3)), k};
    char rep[REPORT_LEN];
    tg_status st = tg_gradcheck(f_mul, NULL, in, 2, NULL, rep, sizeof rep);
    tu_assert_status(st, TG_ERR_GRADCHECK);
    ck_assert_msg(strstr(rep, "zero grad") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "[1]") != NULL, "report: %s", rep);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_strided_inputs)
{
    tg_ctx *c = new_ctx(17);
    bool prev = tg_set_grad_enabled(c, false);
    tg_tensor *a = tg_transpose(c, tg_randn(c, TG_F64, TG_SHAPE(4, 3)), 0, 1); /* [3,4] */
    tg_tensor *b = tg_transpose(c, tg_randn(c, TG_F64, TG_SHAPE(2, 4)), 0, 1); /* [4,2] */
    tg_set_grad_enabled(c, prev);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert(!tg_is_contiguous(a) && !tg_is_contiguous(b));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tu_assert_ok(c);
    double ba[64], bb[64];
    snapshot(a, ba, 64);
    snapshot(b, bb, 64);

    tg_tensor *in[2] = {a, b};
    char rep[REPORT_LEN];
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    o.atol = 1e-6;
    tg_status st = tg_gradcheck(f_matmul, NULL, in, 2, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);
    assert_same_bits(a, ba);
    assert_same_bits(b, bb);

    /* a slice with a step is strided too */
    tg_set_grad_enabled(c, false);
    tg_tensor *s = tg_slice(c, tg_randn(c, TG_F64, TG_SHAPE(2, 6)), 1, 0, 6, 2); /* [2,3] */
    tg_set_grad_enabled(c, prev);
    ck_assert_ptr_nonnull(s);
    tg_set_requires_grad(s, true);
    tg_tensor *in2[2] = {s, randn_leaf(c, TG_SHAPE(2, 3))};
    st = tg_gradcheck(f_good, NULL, in2, 2, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_overlapping_input_rejected)
{
    tg_ctx *c = new_ctx(18);
    bool prev = tg_set_grad_enabled(c, false);
    tg_tensor *e = tg_expand(c, tg_randn(c, TG_F64, TG_SHAPE(1, 3)), TG_SHAPE(2, 3));
    tg_set_grad_enabled(c, prev);
    ck_assert_ptr_nonnull(e);
    tg_set_requires_grad(e, true);
    tu_assert_ok(c);
    tg_tensor *in[2] = {randn_leaf(c, TG_SHAPE(2, 3)), e};
    char rep[REPORT_LEN];
    tu_assert_status(tg_gradcheck(f_good, NULL, in, 2, NULL, rep, sizeof rep), TG_ERR_INVALID);
    ck_assert_msg(strstr(rep, "input 1") && strstr(rep, "overlaps"), "report: %s", rep);

    /* two views of one storage: interleaved columns are disjoint and fine,
     * a view and its transpose share every element and are rejected */
    tg_set_grad_enabled(c, false);
    tg_tensor *base = tg_randn(c, TG_F64, TG_SHAPE(2, 6));
    tg_tensor *even = tg_slice(c, base, 1, 0, 6, 2);
    tg_tensor *odd = tg_slice(c, base, 1, 1, 6, 2);
    tg_tensor *sq = tg_randn(c, TG_F64, TG_SHAPE(3, 3));
    tg_tensor *sqt = tg_transpose(c, sq, 0, 1);
    tg_set_grad_enabled(c, prev);
    tg_set_requires_grad(even, true);
    tg_set_requires_grad(odd, true);
    tg_set_requires_grad(sq, true);
    tg_set_requires_grad(sqt, true);
    tu_assert_ok(c);
    tg_tensor *disjoint[2] = {even, odd};
    tg_status st = tg_gradcheck(f_good, NULL, disjoint, 2, NULL, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "%s: %s", tg_status_str(st), rep);
    tg_tensor *shared[2] = {sq, sqt};
    tu_assert_status(tg_gradcheck(f_good, NULL, shared, 2, NULL, rep, sizeof rep), TG_ERR_INVALID);
    ck_assert_msg(strstr(rep, "inputs 0 and 1 share"), "report: %s", rep);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_bad_arguments)
{
    tg_ctx *c = new_ctx(19);
    tg_tensor *x = randn_leaf(c, TG_SHAPE(3));
    tg_tensor *in[2] = {x, x};
    char rep[REPORT_LEN];

    tu_assert_status(tg_gradcheck(NULL, NULL, in, 2, NULL, rep, sizeof rep), TG_ERR_INVALID);
    ck_assert_str_ne(rep, "");
    tu_assert_status(tg_gradcheck(f_good, NULL, NULL, 2, NULL, rep, sizeof rep), TG_ERR_INVALID);
    tu_assert_status(tg_gradcheck(f_good, NULL, in, 0, NULL, rep, sizeof rep), TG_ERR_INVALID);
    tu_assert_status(tg_gradcheck(f_good, NULL, in, -1, NULL, NULL, 0), TG_ERR_INVALID);

    tg_tensor *with_null[2] = {x, NULL};
    tu_assert_status(tg_gradcheck(f_good, NULL, with_null, 2, NULL, rep, sizeof rep),
                     TG_ERR_INVALID);
    ck_assert_msg(strstr(rep, "input 1") != NULL, "report: %s", rep);

    /* nothing to check */
    tg_tensor *plain[2] = {tg_randn(c, TG_F64, TG_SHAPE(3)), tg_randn(c, TG_F64, TG_SHAPE(3))};
    tu_assert_status(tg_gradcheck(f_good, NULL, plain, 2, NULL, rep, sizeof rep), TG_ERR_INVALID);
    ck_assert_msg(strstr(rep, "no TG_F64 input requires grad") != NULL, "report: %s", rep);

    /* f32 inputs cannot be checked */
    tg_tensor *f = tg_randn(c, TG_F32, TG_SHAPE(3));
    tg_set_requires_grad(f, true);
    tg_tensor *f32in[2] = {f, f};
    tu_assert_status(tg_gradcheck(f_good, NULL, f32in, 2, NULL, rep, sizeof rep), TG_ERR_INVALID);

    /* bad options */
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.eps = 0;
    tu_assert_status(tg_gradcheck(f_good, NULL, in, 2, &o, rep, sizeof rep), TG_ERR_INVALID);
    o = tg_gradcheck_defaults();
    o.rtol = NAN;
    tu_assert_status(tg_gradcheck(f_good, NULL, in, 2, &o, rep, sizeof rep), TG_ERR_INVALID);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_errors_of_f_propagate)
{
    tg_ctx *c = new_ctx(20);
    tg_tensor *in[2] = {randn_leaf(c, TG_SHAPE(2, 3)), randn_leaf(c, TG_SHAPE(2, 3))};
    char rep[REPORT_LEN];
    /* [2,3] @ [2,3]: the op's error and message come back */
    tu_assert_status(tg_gradcheck(f_matmul, NULL, in, 2, NULL, rep, sizeof rep), TG_ERR_SHAPE);
    ck_assert_msg(strstr(rep, "tg_matmul") != NULL, "report: %s", rep);
    /* NULL without an error recorded */
    tu_assert_status(tg_gradcheck(f_return_null, NULL, in, 2, NULL, rep, sizeof rep),
                     TG_ERR_INVALID);
    ck_assert_str_ne(rep, "");
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_report_truncated_safely)
{
    tg_ctx *c = new_ctx(21);
    tg_tensor *in[1] = {randn_leaf(c, TG_SHAPE(4))};
    const double ones[4] = {1, 1, 1, 1};
    tg_tensor *mask = tg_tensor_from(c, TG_F64, TG_SHAPE(4), ones);
    tg_tensor *two[2] = {tg_tensor_new(c, TG_F64, TG_SHAPE(4)), in[0]};
    char buf[32];
    memset(buf, 'Z', sizeof buf);
    tu_assert_status(tg_gradcheck(f_wrong_first, mask, two, 2, NULL, buf, 16), TG_ERR_GRADCHECK);
    ck_assert_uint_eq(strlen(buf), 15);
    for (size_t i = 16; i < sizeof buf; i++) ck_assert_int_eq(buf[i], 'Z');
    /* report_len 0 writes nothing */
    memset(buf, 'Z', sizeof buf);
    tu_assert_status(tg_gradcheck(f_wrong_first, mask, two, 2, NULL, buf, 0), TG_ERR_GRADCHECK);
    ck_assert_int_eq(buf[0], 'Z');
    tg_ctx_free(c);
}
END_TEST

Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tu_tcase("gradcheck");
    tcase_add_test(tc, test_correct_passes);
    tcase_add_test(tc, test_unchecked_inputs_pass_through);
    tcase_add_test(tc, test_nonleaf_input);
    tcase_add_test(tc, test_wrong_first_order_caught);
    tcase_add_test(tc, test_wrong_second_order_caught);
    tcase_add_test(tc, test_zero_grad_check);
    tcase_add_test(tc, test_strided_inputs);
    tcase_add_test(tc, test_overlapping_input_rejected);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_errors_of_f_propagate);
    tcase_add_test(tc, test_report_truncated_safely);
    suite_add_tcase(s, tc);
    return s;
}
