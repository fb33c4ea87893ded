/*
 * custom_op.c - defining an op of your own and checking its gradient.
 *
 * The op is the "inverse square root unit", isru(x) = x / sqrt(1 + x^2),
 * with derivative (1 + x^2)^(-3/2). Its forward and backward are written
 * with tapegrad ops; tg_custom applies it like a built-in op (one node on
 * the tape), and tg_gradcheck compares its backward with finite
 * differences, first and second order, exactly as the test suite checks
 * every built-in op.
 */
#include <stdio.h>

#include <tapegrad.h>

static tg_tensor *isru_forward(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                               tg_tensor **saved)
{
    (void)n, (void)state, (void)saved;
    tg_tensor *x = in[0];
    return tg_div(c, x, tg_sqrt(c, tg_add_scalar(c, tg_mul(c, x, x), 1.0)));
}

/* dx = dout * (1 + x^2)^(-3/2), from the inputs so second order works */
static void isru_backward(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = k->in[0];
    dx[0] = tg_mul(c, dout, tg_pow_scalar(c, tg_add_scalar(c, tg_mul(c, x, x), 1.0), -1.5));
}

static const tg_custom_op isru = {"isru", 1, isru_forward, isru_backward};

static tg_tensor *apply(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    return tg_custom(c, &isru, in, n, user);
}

int main(void)
{
    tg_ctx *c = tg_ctx_new();
    if (!c) return 1;
    tg_tensor *x = tg_randn(c, TG_F64, TG_SHAPE(3, 4));
    tg_set_requires_grad(x, true);

    tg_tensor *y = tg_custom(c, &isru, &x, 1, NULL);
    if (!y || tg_backward(c, tg_sum(c, y)) != TG_OK) {
        fprintf(stderr, "custom_op: %s\n", tg_ctx_errmsg(c));
        tg_ctx_free(c);
        return 1;
    }
    printf("isru(%.4f) = %.6f, d/dx = %.6f\n", tg_get(x, (int64_t[]){0, 0}),
           tg_get(y, (int64_t[]){0, 0}), tg_get(tg_grad(x), (int64_t[]){0, 0}));

    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    char report[512] = "";
    tg_status st = tg_gradcheck(apply, NULL, &x, 1, &o, report, sizeof report);
    printf("gradcheck (first and second order): %s%s%s\n", st == TG_OK ? "ok" : "FAILED",
           report[0] ? ": " : "", report);
    tg_ctx_free(c);
    return st == TG_OK ? 0 : 1;
}
