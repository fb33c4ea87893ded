/*
 * test_seed.c - the worked example of issue 2, item 10, reproduced in f64
 * to 1e-12: a 2-1-1 network with tanh on both layers and a squared-error
 * loss, forward values and every parameter gradient. (examples/
 * seed_example.c is the same computation as a documented program.)
 *
 *   x = [0.5, 0.3], w1 = [0.1, 0.2]^T, b1 = 0.4, w2 = 0.3, b2 = 0.5, t = 1
 *   z1 = x w1 + b1, y1 = tanh(z1), y2 = tanh(w2 y1 + b2), L = 0.5 (y2 - t)^2
 *
 * The expected values are exact to double precision (independently
 * computed); a widely copied write-up prints y1 = 0.69 and L = 0.0041,
 * which are arithmetic slips: z1 = 0.05 + 0.06 + 0.4 = 0.51.
 */
#include <check.h>
#include <math.h>

#include "tapegrad.h"
#include "test_util.h"

#define TOL 1e-12

static const double Z1 = 0.51;
static const double Y1 = 0.46994519893303754;
static const double Y2 = 0.5655688752169572;
static const double LOSS = 0.09436520109012986;
static const double DW1[2] = {-0.03453243632739421, -0.020719461796436526};
static const double DB1 = -0.06906487265478842;
static const double DW2 = -0.13885491633092126;
static const double DB2 = -0.29547044346059315;

typedef struct {
    tg_tensor *w1, *b1, *w2, *b2; /* parameters, in the persistent context */
} seed_net;

static seed_net make_params(tg_ctx *p)
{
    seed_net n;
    n.w1 = tg_tensor_from(p, TG_F64, TG_SHAPE(2, 1), (const double[]){0.1, 0.2});
    n.b1 = tg_scalar(p, TG_F64, 0.4);
    n.w2 = tg_scalar(p, TG_F64, 0.3);
    n.b2 = tg_scalar(p, TG_F64, 0.5);
    tg_set_requires_grad(n.w1, true);
    tg_set_requires_grad(n.b1, true);
    tg_set_requires_grad(n.w2, true);
    tg_set_requires_grad(n.b2, true);
    tu_assert_ok(p);
    return n;
}

/* The forward pass in the step context s; intermediates through the out
 * pointers. */
static tg_tensor *forward(tg_ctx *s, const seed_net *n, tg_tensor **z1, tg_tensor **y1,
                          tg_tensor **y2)
{
    tg_tensor *x = tg_tensor_from(s, TG_F64, TG_SHAPE(1, 2), (const double[]){0.5, 0.3});
    tg_tensor *t = tg_scalar(s, TG_F64, 1.0);
    *z1 = tg_add(s, tg_matmul(s, x, n->w1), n->b1);                    /* [1,1] */
    *y1 = tg_tanh(s, *z1);                                             /* [1,1] */
    *y2 = tg_tanh(s, tg_add(s, tg_mul(s, *y1, n->w2), n->b2));         /* [1,1] */
    return tg_scale(s, tg_pow_scalar(s, tg_sub(s, *y2, t), 2.0), 0.5); /* [1,1] */
}

START_TEST(test_seed_forward_backward)
{
    tg_ctx *p = tu_ctx();
    tg_ctx *s = tu_ctx();
    seed_net n = make_params(p);
    tg_tensor *z1, *y1, *y2;
    tg_tensor *loss = forward(s, &n, &z1, &y1, &y2);
    tu_assert_ok(s);

    ck_assert_close(tg_item(z1), Z1, TOL);
    ck_assert_close(tg_item(y1), Y1, TOL);
    ck_assert_close(tg_item(y2), Y2, TOL);
    ck_assert_close(tg_item(loss), LOSS, TOL);

    tu_assert_status(tg_backward(s, loss), TG_OK);
    tu_assert_values(tg_grad(n.w1), TOL, DW1[0], DW1[1]);
    ck_assert_close(tg_item(tg_grad(n.b1)), DB1, TOL);
    ck_assert_close(tg_item(tg_grad(n.w2)), DW2, TOL);
    ck_assert_close(tg_item(tg_grad(n.b2)), DB2, TOL);

    /* the gradients live in the parameters' context: a step reset leaves
     * them intact, and a second step accumulates (2x) until zeroed */
    tg_ctx_reset(s);
    ck_assert_close(tg_item(tg_grad(n.b2)), DB2, TOL);
    loss = forward(s, &n, &z1, &y1, &y2);
    tu_assert_status(tg_backward(s, loss), TG_OK);
    ck_assert_close(tg_item(tg_grad(n.w2)), 2 * DW2, TOL);
    tg_zero_grad(n.w1);
    tg_zero_grad(n.b1);
    tg_zero_grad(n.w2);
    tg_zero_grad(n.b2);
    tg_ctx_reset(s);
    loss = forward(s, &n, &z1, &y1, &y2);
    tu_assert_status(tg_backward(s, loss), TG_OK);
    tu_assert_values(tg_grad(n.w1), TOL, DW1[0], DW1[1]);
    ck_assert_close(tg_item(tg_grad(n.b1)), DB1, TOL);

    tg_ctx_free(s);
    tg_ctx_free(p);
}
END_TEST

/* The often-quoted slips are not what the network computes. */
START_TEST(test_seed_not_the_slips)
{
    tg_ctx *p = tu_ctx();
    tg_ctx *s = tu_ctx();
    seed_net n = make_params(p);
    tg_tensor *z1, *y1, *y2;
    tg_tensor *loss = forward(s, &n, &z1, &y1, &y2);
    tu_assert_ok(s);
    ck_assert(fabs(tg_item(y1) - 0.69) > 0.2);
    ck_assert(fabs(tg_item(loss) - 0.0041) > 0.09);
    tg_ctx_free(s);
    tg_ctx_free(p);
}
END_TEST

Suite *seed_suite(void)
{
    Suite *s = suite_create("seed");
    TCase *tc = tu_tcase("seed");
    tcase_add_test(tc, test_seed_forward_backward);
    tcase_add_test(tc, test_seed_not_the_slips);
    suite_add_tcase(s, tc);
    return s;
}
