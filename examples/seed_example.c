/*
 * seed_example.c - the smallest complete tapegrad program: a two-layer
 * network, one forward pass, one backward pass, four gradients.
 *
 *     x = [0.5, 0.3]                 input, [1,2]
 *     w1 = [0.1, 0.2]^T, b1 = 0.4    first layer, [2,1] and a scalar
 *     w2 = 0.3, b2 = 0.5             second layer, scalars
 *     z1 = x w1 + b1                 = 0.5*0.1 + 0.3*0.2 + 0.4 = 0.51
 *     y1 = tanh(z1)                  = 0.46994519893303754
 *     y2 = tanh(w2 y1 + b2)          = 0.5655688752169572
 *     L  = 0.5 (y2 - t)^2, t = 1     = 0.09436520109012986
 *
 * A widely copied write-up of this example prints y1 = 0.69 and
 * L = 0.0041. Those figures are arithmetic slips: z1 is 0.51, and
 * tanh(0.51) = 0.4699..., not 0.69; carrying the right y1 through gives
 * L = 0.0943652.... The values below are the exact double-precision ones.
 *
 * The program prints every value next to the expected one (%.17g) and
 * exits with status 1 if any differs by more than 1e-12.
 *
 * Build:  cc seed_example.c $(pkg-config --cflags --libs tapegrad)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <tapegrad.h>

#define TOL 1e-12

static int n_bad = 0;

/* Prints got and want side by side and counts a mismatch. */
static void show(const char *name, double got, double want)
{
    double diff = fabs(got - want);
    bool ok = diff <= TOL; /* false for NaN */
    if (!ok) n_bad++;
    printf("%-9s %23.17g   expected %23.17g   %s\n", name, got, want, ok ? "ok" : "MISMATCH");
}

int main(void)
{
    /* Two lifetimes: parameters (and their gradients) live in a persistent
     * context; the graph of one step lives in a step context that a
     * training loop would reset after every step. */
    tg_ctx *params = tg_ctx_new();
    tg_ctx *step = tg_ctx_new();
    if (!params || !step) {
        fprintf(stderr, "seed_example: out of memory\n");
        tg_ctx_free(step);
        tg_ctx_free(params);
        return 1;
    }

    /* Parameters: f64 leaves that require grad. */
    tg_tensor *w1 = tg_tensor_from(params, TG_F64, TG_SHAPE(2, 1), (const double[]){0.1, 0.2});
    tg_tensor *b1 = tg_scalar(params, TG_F64, 0.4);
    tg_tensor *w2 = tg_scalar(params, TG_F64, 0.3);
    tg_tensor *b2 = tg_scalar(params, TG_F64, 0.5);
    tg_set_requires_grad(w1, true);
    tg_set_requires_grad(b1, true);
    tg_set_requires_grad(w2, true);
    tg_set_requires_grad(b2, true);
    if (tg_ctx_status(params) != TG_OK) {
        fprintf(stderr, "seed_example: %s\n", tg_ctx_errmsg(params));
        tg_ctx_free(step);
        tg_ctx_free(params);
        return 1;
    }

    /* Forward: ops run eagerly and record themselves on the step's tape.
     * Errors are sticky, so one check at the loss covers the whole pass. */
    tg_tensor *x = tg_tensor_from(step, TG_F64, TG_SHAPE(1, 2), (const double[]){0.5, 0.3});
    tg_tensor *t = tg_scalar(step, TG_F64, 1.0);
    tg_tensor *z1 = tg_add(step, tg_matmul(step, x, w1), b1);              /* [1,1] */
    tg_tensor *y1 = tg_tanh(step, z1);                                     /* [1,1] */
    tg_tensor *y2 = tg_tanh(step, tg_add(step, tg_mul(step, y1, w2), b2)); /* [1,1] */
    tg_tensor *diff = tg_sub(step, y2, t);
    tg_tensor *loss = tg_scale(step, tg_mul(step, diff, diff), 0.5); /* [1,1] */
    if (!loss) {
        fprintf(stderr, "seed_example: forward failed: %s\n", tg_ctx_errmsg(step));
        tg_ctx_free(step);
        tg_ctx_free(params);
        return 1;
    }

    /* Backward: d loss / d parameter, accumulated into each parameter's
     * .grad (which lives in the parameters' context). */
    tg_status st = tg_backward(step, loss);
    if (st != TG_OK) {
        fprintf(stderr, "seed_example: backward failed: %s: %s\n", tg_status_str(st),
                tg_ctx_errmsg(step));
        tg_ctx_free(step);
        tg_ctx_free(params);
        return 1;
    }

    double dw1[2] = {NAN, NAN};
    if (tg_copy_out(tg_grad(w1), dw1, sizeof dw1) != TG_OK) n_bad++;

    show("z1", tg_item(z1), 0.51);
    show("y1", tg_item(y1), 0.46994519893303754);
    show("y2", tg_item(y2), 0.5655688752169572);
    show("L", tg_item(loss), 0.09436520109012986);
    show("dL/dw1[0]", dw1[0], -0.03453243632739421);
    show("dL/dw1[1]", dw1[1], -0.020719461796436526);
    show("dL/db1", tg_item(tg_grad(b1)), -0.06906487265478842);
    show("dL/dw2", tg_item(tg_grad(w2)), -0.13885491633092126);
    show("dL/db2", tg_item(tg_grad(b2)), -0.29547044346059315);

    /* Tensors die with their context: nothing is freed one by one. */
    tg_ctx_free(step);
    tg_ctx_free(params);

    if (n_bad) {
        printf("%d value(s) differ by more than %g\n", n_bad, TOL);
        return 1;
    }
    printf("all values match to %g\n", TOL);
    return 0;
}
