/*
 * test_custom.c - user-defined ops (tapegrad/custom.h): applied like a
 * built-in op, checked by tg_gradcheck (a wrong backward is caught and the
 * report names the element), saved tensors guarded by version counters,
 * and bad definitions rejected with a status and a message.
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* f(x) = x^3, forward through ops, backward 3 x^2 dout (or a wrong 2 x^2). */
static tg_tensor *cube_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                           tg_tensor **saved)
{
    (void)n, (void)state, (void)saved;
    return tg_mul(c, in[0], tg_mul(c, in[0], in[0]));
}

static void cube_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    double factor = k->state ? *(const double *)k->state : 3.0;
    dx[0] = tg_mul(c, dout, tg_scale(c, tg_mul(c, k->in[0], k->in[0]), factor));
}

static const tg_custom_op cube = {"cube", 1, cube_fwd, cube_bwd};

static tg_tensor *apply_cube(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    return tg_custom(c, &cube, in, n, user);
}

/* y = x * s with s = 2 saved by the forward (a constant tensor). */
static tg_tensor *scale2_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                             tg_tensor **saved)
{
    (void)n, (void)state;
    saved[0] = tg_full(c, tg_tensor_dtype(in[0]), 0, NULL, 2.0);
    return tg_mul(c, in[0], saved[0]);
}

static void scale2_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    dx[0] = tg_mul(c, dout, k->saved[0]);
}

static const tg_custom_op scale2 = {"scale2", 1, scale2_fwd, scale2_bwd};

static tg_tensor *x34(tg_ctx *c)
{
    tg_tensor *x = tg_randn(c, TG_F64, TG_SHAPE(3, 4));
    ck_assert_ptr_nonnull(x);
    tg_set_requires_grad(x, true);
    return x;
}

START_TEST(test_custom_forward_backward)
{
    tg_ctx *c = tu_ctx();
    double xv[3] = {1.0, -2.0, 0.5};
    tg_tensor *x = tg_tensor_from(c, TG_F64, TG_SHAPE(3), xv);
    tg_set_requires_grad(x, true);
    tg_tensor *y = tg_custom(c, &cube, &x, 1, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_CUSTOM);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_backward(c, tg_sum(c, y)), TG_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_double_eq_tol(tg_get(y, (int64_t[]){i}), xv[i] * xv[i] * xv[i], 1e-15);
        ck_assert_double_eq_tol(tg_get(tg_grad(x), (int64_t[]){i}), 3 * xv[i] * xv[i], 1e-15);
    }
    /* with grad mode off nothing is recorded, the value is the same */
    tg_set_grad_enabled(c, false);
    tg_tensor *z = tg_custom(c, &cube, &x, 1, NULL);
    ck_assert_int_eq(tg_tensor_op(z), TG_OP_NONE);
    ck_assert(!tg_requires_grad(z));
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_custom_gradcheck_passes)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = x34(c);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    char rep[1024];
    ck_assert_msg(tg_gradcheck(apply_cube, NULL, &x, 1, &o, rep, sizeof rep) == TG_OK, "%s",
                  rep);
    tg_ctx_free(c);
}
END_TEST

/* A deliberately wrong backward (2 x^2 instead of 3 x^2) is caught; the
 * report names the input and an element. */
START_TEST(test_custom_wrong_backward_caught)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = x34(c);
    double wrong = 2.0;
    char rep[1024] = "";
    tg_status st = tg_gradcheck(apply_cube, &wrong, &x, 1, NULL, rep, sizeof rep);
    ck_assert_int_eq(st, TG_ERR_GRADCHECK);
    ck_assert_msg(strstr(rep, "input 0") != NULL, "report: %s", rep);
    ck_assert_msg(strstr(rep, "[") != NULL, "report names no element: %s", rep);
    ck_assert_msg(strstr(rep, "first order") != NULL, "report: %s", rep);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_custom_saved_tensor_and_version)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = x34(c);
    tg_tensor *y = tg_custom(c, &scale2, &x, 1, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_backward(c, tg_sum(c, y)), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(x), (int64_t[]){1, 2}), 2.0);

    /* the input changed in place after the op recorded it: refused, naming
     * the op and the tensor */
    tg_tensor *y2 = tg_custom(c, &scale2, &x, 1, NULL);
    tg_tensor *l2 = tg_sum(c, y2);
    tg_tensor_set_name(x, "weights");
    double v[12] = {0};
    ck_assert_int_eq(tg_copy_in(x, v, sizeof v), TG_OK);
    ck_assert_int_eq(tg_backward(c, l2), TG_ERR_MISUSE);
    ck_assert_msg(strstr(tg_ctx_errmsg(c), "scale2") != NULL, "%s", tg_ctx_errmsg(c));
    ck_assert_msg(strstr(tg_ctx_errmsg(c), "'weights'") != NULL, "%s", tg_ctx_errmsg(c));
    tg_ctx_free(c);
}
END_TEST

static tg_tensor *fail_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                           tg_tensor **saved)
{
    (void)in, (void)n, (void)state, (void)saved;
    tg_ctx_set_error(c, TG_ERR_FORMAT, "fail_fwd: refused");
    return NULL;
}

static tg_tensor *null_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                           tg_tensor **saved)
{
    (void)c, (void)in, (void)n, (void)state, (void)saved;
    return NULL;
}

static tg_tensor *identity_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                               tg_tensor **saved)
{
    (void)c, (void)n, (void)state, (void)saved;
    return in[0];
}

static void identity_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    (void)c, (void)k;
    dx[0] = dout;
}

START_TEST(test_custom_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = x34(c);
    tg_tensor *two[2] = {x, x};

    ck_assert_ptr_null(tg_custom(c, NULL, &x, 1, NULL));
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "tg_custom"));
    tg_ctx_clear_error(c);

    tg_custom_op no_bwd = {"nobwd", 1, cube_fwd, NULL};
    ck_assert_ptr_null(tg_custom(c, &no_bwd, &x, 1, NULL));
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    tg_ctx_clear_error(c);

    ck_assert_ptr_null(tg_custom(c, &cube, two, 2, NULL)); /* takes 1 */
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "cube"));
    tg_ctx_clear_error(c);

    tg_tensor *nul = NULL;
    ck_assert_ptr_null(tg_custom(c, &cube, &nul, 1, NULL));
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    tg_ctx_clear_error(c);

    tg_custom_op failing = {"failing", 1, fail_fwd, cube_bwd};
    ck_assert_ptr_null(tg_custom(c, &failing, &x, 1, NULL));
    tu_assert_status(tg_ctx_status(c), TG_ERR_FORMAT);
    tg_ctx_clear_error(c);

    tg_custom_op silent = {"silent", 1, null_fwd, cube_bwd};
    ck_assert_ptr_null(tg_custom(c, &silent, &x, 1, NULL));
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "silent"));
    tg_ctx_clear_error(c);

    /* a forward that returns its input gets a fresh result carrying the node */
    tg_custom_op ident = {"identity", 1, identity_fwd, identity_bwd};
    tg_tensor *y = tg_custom(c, &ident, &x, 1, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_ne(y, x);
    ck_assert(tg_is_leaf(x));
    ck_assert_int_eq(tg_backward(c, tg_sum(c, y)), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(x), (int64_t[]){0, 0}), 1.0);
    tg_ctx_free(c);
}
END_TEST

Suite *custom_suite(void)
{
    Suite *s = suite_create("custom");
    TCase *tc = tu_tcase("custom");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_custom_forward_backward);
    tcase_add_test(tc, test_custom_gradcheck_passes);
    tcase_add_test(tc, test_custom_wrong_backward_caught);
    tcase_add_test(tc, test_custom_saved_tensor_and_version);
    tcase_add_test(tc, test_custom_errors);
    suite_add_tcase(s, tc);
    return s;
}
