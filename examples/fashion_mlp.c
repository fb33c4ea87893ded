/*
 * fashion_mlp.c - a training loop of your own: an MLP on Fashion-MNIST.
 *
 * `tapegrad train` does all of this behind options; this is the same job
 * written out, to copy and change. The model is
 *
 *     logits = fc2(relu(fc1(x)))     x: a 28 x 28 image as 784 values in [0, 1]
 *                                    fc1: 784 -> 256, fc2: 256 -> 10
 *
 * trained with Adam on cross-entropy in mini-batches of 64, one shuffle of
 * the training set per epoch (tg_batcher), and evaluated on the 10,000
 * test images after every epoch. The pieces:
 *
 *   - two contexts: p (never reset) holds the data, the model, gradients,
 *     the optimizer state and the two batch buffers; s holds one step's
 *     activations and tape and is reset after every step, so from the
 *     second step on a step allocates nothing;
 *   - tg_gather_rows copies a batch's rows into the fixed buffers; the
 *     last, partial batch of an epoch is a tg_slice view of them;
 *   - one error check per step, after tg_backward: an op that fails
 *     returns NULL and every later op passes the NULL on.
 *
 * Prints one line per epoch, then the per-class recall and a last line
 * test_accuracy=0.XXXX; exits 1 when that is below --min-accuracy (0 by
 * default). --limit trains on the first N images only (the
 * meson test uses 512 for a run of a few seconds).
 *
 *     build/examples/fashion_mlp [--epochs 5] [--limit 0] [--data DIR]
 */
#include "fashion.h"

int main(int argc, char **argv)
{
    int64_t hidden = 256;
    fashion_run r = fashion_run_defaults(5, 1e-3);
    const ex_opt opts[] = {
        {"hidden", EX_INT, &hidden, "units of the hidden layer"},
        FASHION_RUN_OPTS(r),
        {0},
    };
    int rc = ex_parse(argc, argv, "fashion_mlp [options]", opts, 0, NULL);
    if (rc >= 0) return rc;

    tg_ctx *p, *s;
    if (!ex_contexts(argv[0], r.seed, r.threads, &p, &s)) return 1;
    fashion_data d;
    if ((rc = fashion_load(p, &r, TG_SHAPE(784), &d)) != 0) goto done;
    int64_t batch = r.batch, n_train = d.n_train, n_test = d.n_test;

    /* The model: layers named as PyTorch would ("fc1.weight", ...). */
    tg_model *m = tg_model_new(p);
    tg_module *net = tg_nn_sequential_new(m, "net");
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc1", 784, hidden, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc2", hidden, 10, true));
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = r.lr;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);

    /* Batches over the first n_train images, into two fixed buffers. */
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = batch;
    bo.seed = (uint64_t)r.seed;
    tg_batcher *batches = tg_batcher_new(p, n_train, &bo);
    tg_tensor *bx = tg_tensor_new(p, TG_F32, TG_SHAPE(batch, 784));
    tg_tensor *by = tg_tensor_new(p, TG_I64, TG_SHAPE(batch));
    if (!opt || !batches || !by) {
        rc = ex_fail(p, "fashion_mlp: setup");
        goto done;
    }
    printf("MLP 784-%lld-10, %lld parameters; %lld training images, %lld test images\n",
           (long long)hidden, (long long)tg_model_numel(m), (long long)n_train, (long long)n_test);

    double acc = 0;
    for (int64_t epoch = 1; epoch <= r.epochs; epoch++) {
        double t0 = ex_now(), loss_sum = 0;
        int64_t steps = 0, n;
        const int64_t *idx;
        while ((n = tg_batcher_next(batches, &idx)) > 0) {
            tg_gather_rows(p, bx, d.train_x, idx, n);
            tg_gather_rows(p, by, d.train_y, idx, n);
            tg_tensor *x = n < batch ? tg_slice(s, bx, 0, 0, n, 1) : bx;
            tg_tensor *y = n < batch ? tg_slice(s, by, 0, 0, n, 1) : by;
            tg_tensor *loss = tg_cross_entropy(s, tg_module_forward(s, net, x), y);
            if (tg_backward(s, loss) != TG_OK || tg_optim_step(opt) != TG_OK) {
                rc = ex_fail(tg_ctx_status(s) ? s : p, "fashion_mlp: step");
                goto done;
            }
            tg_optim_zero_grad(opt);
            loss_sum += tg_item(loss);
            steps++;
            tg_ctx_reset(s);
        }
        double secs = ex_now() - t0;
        if ((acc = fashion_accuracy(s, net, &d, n_test, NULL)) < 0) {
            rc = ex_fail(s, "fashion_mlp: evaluation");
            goto done;
        }
        printf("epoch %lld  train loss %.4f  test accuracy %.4f  %.2f s (%.0f images/s)\n",
               (long long)epoch, loss_sum / (double)steps, acc, secs, (double)n_train / secs);
        fflush(stdout);
    }

    rc = fashion_finish(s, net, &d, &r);

done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}
