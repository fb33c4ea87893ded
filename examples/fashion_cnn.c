/*
 * fashion_cnn.c - a small convolutional network on Fashion-MNIST, with a
 * learning-rate schedule.
 *
 * The loop is fashion_mlp.c's (read that one first); what changes is the
 * model and the learning rate. The images keep their shape [1, 28, 28]
 * (one channel) and go through
 *
 *     conv1 3x3, 1 -> 16 channels, padding 1   [16, 28, 28]
 *     relu, max pool 2x2                       [16, 14, 14]
 *     conv2 3x3, 16 -> 32 channels, padding 1  [32, 14, 14]
 *     relu, max pool 2x2                       [32, 7, 7]
 *     flatten, fc 1568 -> 10                   logits
 *
 * all in one Sequential, so the model is still a single tg_module. Adam's
 * learning rate follows a cosine from --lr down to 0 over the whole run
 * (tg_lr_cosine); tg_optim_apply_schedule sets it before every step. The
 * backward is tg_backward_release: the conv stages' activations are the
 * step's largest tensors, and their memory holds the gradients once the
 * walk is past them.
 *
 * Prints one line per epoch, the per-class recall and a last line
 * test_accuracy=0.XXXX; exits 1 when that is below --min-accuracy (0 by
 * default). --limit trains on the first N images only.
 *
 *     build/examples/fashion_cnn [--epochs 2] [--limit 0] [--data DIR]
 */
#include "fashion.h"

/* One conv-relu-pool stage appended to net: layers named "<name>" (the
 * convolution; PyTorch would say "conv1.weight") plus two without weights. */
static void add_stage(tg_model *m, tg_module *net, const char *name, int64_t in, int64_t out)
{
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1; /* keep 28x28 (14x14) through the 3x3 kernel */
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2; /* stride defaults to the kernel: halves H and W */
    tg_nn_sequential_add(net, tg_nn_conv2d_new(m, name, in, out, 3, 3, &co, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_max_pool2d_new(m, "", &po));
}

int main(int argc, char **argv)
{
    fashion_run r = fashion_run_defaults(2, 2e-3);
    const ex_opt opts[] = {
        FASHION_RUN_OPTS(r),
        {0},
    };
    int rc = ex_parse(argc, argv, "fashion_cnn [options]", opts, 0, NULL);
    if (rc >= 0) return rc;

    tg_ctx *p, *s;
    if (!ex_contexts(argv[0], r.seed, r.threads, &p, &s)) return 1;
    fashion_data d;
    if ((rc = fashion_load(p, &r, TG_SHAPE(1, 28, 28), &d)) != 0) goto done;
    int64_t batch = r.batch, n_train = d.n_train, n_test = d.n_test;

    tg_model *m = tg_model_new(p);
    tg_module *net = tg_nn_sequential_new(m, "net");
    add_stage(m, net, "conv1", 1, 16);
    add_stage(m, net, "conv2", 16, 32);
    tg_nn_sequential_add(net, tg_nn_flatten_new(m, 1, -1));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc", 32 * 7 * 7, 10, true));
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = r.lr;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);

    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = batch;
    bo.seed = (uint64_t)r.seed;
    tg_batcher *batches = tg_batcher_new(p, n_train, &bo);
    tg_tensor *bx = tg_tensor_new(p, TG_F32, TG_SHAPE(batch, 1, 28, 28));
    tg_tensor *by = tg_tensor_new(p, TG_I64, TG_SHAPE(batch));
    /* The cosine runs over every step of the run. */
    tg_lr_schedule sched = tg_lr_cosine(r.lr, r.epochs * tg_batcher_batches(batches), 0.0);
    if (!opt || !batches || !by) {
        rc = ex_fail(p, "fashion_cnn: setup");
        goto done;
    }
    printf("CNN, %lld parameters; %lld training images, %lld test images\n",
           (long long)tg_model_numel(m), (long long)n_train, (long long)n_test);

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
            /* the activations' memory holds the gradients as the walk goes;
             * only the loss is read afterwards */
            if (tg_backward_release(s, loss) != TG_OK ||
                tg_optim_apply_schedule(opt, &sched) != TG_OK ||
                tg_optim_step(opt) != TG_OK) {
                rc = ex_fail(tg_ctx_status(s) ? s : p, "fashion_cnn: step");
                goto done;
            }
            tg_optim_zero_grad(opt);
            loss_sum += tg_item(loss);
            steps++;
            tg_ctx_reset(s);
        }
        double secs = ex_now() - t0;
        if ((acc = fashion_accuracy(s, net, &d, n_test, NULL)) < 0) {
            rc = ex_fail(s, "fashion_cnn: evaluation");
            goto done;
        }
        printf("epoch %lld  train loss %.4f  test accuracy %.4f  lr now %.2g  %.1f s (%.0f "
               "images/s)\n",
               (long long)epoch, loss_sum / (double)steps, acc, tg_optim_lr(opt), secs,
               (double)n_train / secs);
        fflush(stdout);
    }

    rc = fashion_finish(s, net, &d, &r);

done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}
