/*
 * xor.c - the classic first network: learn XOR with a tiny MLP.
 *
 * XOR is not linearly separable, so a single linear layer cannot learn it;
 * one hidden layer of tanh units can. The model is
 *
 *     logit = fc2(tanh(fc1(x)))      fc1: 2 -> hidden, fc2: hidden -> 1
 *
 * trained on the four points of the truth table with binary cross-entropy
 * on the logit (tg_bce_with_logits) and Adam, full batch. It shows the
 * whole shape of a tapegrad training loop in a few lines:
 *
 *   - a persistent context holds the model, its gradients and the
 *     optimizer state; a step context holds one step's graph and is reset
 *     after every step (O(1), no allocation once it has grown);
 *   - layers come from a tg_model (named parameters "fc1.weight", ...);
 *   - forward with tg_module_forward, one error check at the loss,
 *     tg_backward, tg_optim_step, tg_optim_zero_grad.
 *
 * Prints the loss as it trains and the learned truth table, and exits 1 if
 * the table is wrong (so the meson test of this example can fail).
 *
 *     build/examples/xor [--steps 500] [--hidden 4] [--lr 0.05] [--seed 1]
 */
#include "example.h"

int main(int argc, char **argv)
{
    int64_t steps = 500, hidden = 4, seed = 1;
    double lr = 0.05;
    const ex_opt opts[] = {
        {"steps", EX_INT, &steps, "optimizer steps (full batch of 4)"},
        {"hidden", EX_INT, &hidden, "tanh units in the hidden layer"},
        {"lr", EX_DOUBLE, &lr, "Adam learning rate"},
        {"seed", EX_INT, &seed, "seed of the initial weights"},
        {0},
    };
    int rc = ex_parse(argc, argv, "xor [options]", opts, 0, NULL);
    if (rc >= 0) return rc;

    /* The persistent context's seed fixes the initial weights. */
    /* The seed fixes the initial weights; one thread, as the batches are
     * tiny. */
    tg_ctx *p, *s;
    if (!ex_contexts(argv[0], seed, 1, &p, &s)) return 1;

    /* The model: PyTorch's default initialisation for each Linear. */
    tg_model *m = tg_model_new(p);
    tg_module *fc1 = tg_nn_linear_new(m, "fc1", 2, hidden, true);
    tg_module *fc2 = tg_nn_linear_new(m, "fc2", hidden, 1, true);
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = lr;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);
    if (!opt) { /* also catches a failed layer: errors are sticky */
        rc = ex_fail(p, "xor: model");
        goto done;
    }

    /* The data: the whole truth table, in the persistent context. */
    tg_tensor *x = tg_tensor_from(p, TG_F32, TG_SHAPE(4, 2), (const float[]){0, 0, 0, 1, 1, 0, 1, 1});
    tg_tensor *t = tg_tensor_from(p, TG_F32, TG_SHAPE(4, 1), (const float[]){0, 1, 1, 0});

    for (int64_t i = 1; i <= steps; i++) {
        tg_tensor *logit = tg_module_forward(s, fc2, tg_tanh(s, tg_module_forward(s, fc1, x)));
        tg_tensor *loss = tg_bce_with_logits(s, logit, t, NULL, TG_REDUCE_MEAN);
        if (tg_backward(s, loss) != TG_OK || tg_optim_step(opt) != TG_OK) {
            rc = ex_fail(tg_ctx_status(s) ? s : p, "xor: step");
            goto done;
        }
        tg_optim_zero_grad(opt);
        if (i == 1 || i % (steps / 5 > 0 ? steps / 5 : 1) == 0)
            printf("step %4lld  loss %.6f\n", (long long)i, tg_item(loss));
        tg_ctx_reset(s); /* the step's graph is gone; parameters stay */
    }

    /* The truth table, without recording a graph. */
    tg_set_grad_enabled(s, false);
    tg_tensor *prob = tg_sigmoid(s, tg_module_forward(s, fc2, tg_tanh(s, tg_module_forward(s, fc1, x))));
    if (!prob) {
        rc = ex_fail(s, "xor: forward");
        goto done;
    }
    printf("\n a  b | a xor b | p(1)    learned\n");
    int wrong = 0;
    for (int64_t i = 0; i < 4; i++) {
        double a = tg_get(x, (int64_t[]){i, 0}), b = tg_get(x, (int64_t[]){i, 1});
        double want = tg_get(t, (int64_t[]){i, 0}), pr = tg_get(prob, (int64_t[]){i, 0});
        int got = pr > 0.5;
        wrong += got != (int)want;
        printf(" %.0f  %.0f |    %.0f    | %.4f  %d%s\n", a, b, want, pr, got,
               got == (int)want ? "" : "   <- wrong");
    }
    printf("%s\n", wrong ? "XOR not learned: try more --steps or another --seed" : "XOR learned");
    rc = wrong ? 1 : 0;

done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}
