/*
 * opgrad_custom.c - the custom-op entry of the table-driven gradient check:
 * a user-defined op, f(x, y) = x^3 * y + exp(y), applied with tg_custom.
 */
#include "opgrad.h"

static tg_tensor *poly_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                           tg_tensor **saved)
{
    (void)n, (void)state, (void)saved;
    return tg_add(c, tg_mul(c, tg_pow_scalar(c, in[0], 3), in[1]), tg_exp(c, in[1]));
}

/* dx = dout * 3 x^2 y,  dy = dout * (x^3 + exp(y)) */
static void poly_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = k->in[0], *y = k->in[1];
    if (tg_requires_grad(x))
        dx[0] = tg_mul(c, dout, tg_mul(c, tg_scale(c, tg_mul(c, x, x), 3.0), y));
    if (tg_requires_grad(y))
        dx[1] = tg_mul(c, dout, tg_add(c, tg_pow_scalar(c, x, 3), tg_exp(c, y)));
}

static const tg_custom_op poly = {"poly", 2, poly_fwd, poly_bwd};

BUILD(b_custom, tg_custom(c, &poly, in, 2, NULL))

void opgrad_fill_custom(op_entry *table)
{
    table[TG_OP_CUSTOM] = (op_entry){
        b_custom,
        {{.what = "poly [3,4] [3,4]", .n_in = 2, .in = {S(3, 4), S(3, 4)}},
         {.what = "poly [2,3] [3] (broadcast inside)", .n_in = 2, .in = {S(2, 3), S(3)}}}};
}
