/*
 * dist_mlp.c - data-parallel training of a Fashion-MNIST MLP over MPI.
 *
 * Every rank holds the whole model (784-256-128-10, ReLU, Adam) and the
 * whole data set; each step, each rank runs forward and backward on its
 * own slice of the global batch (the sharded batcher), the gradients are
 * summed across ranks with each rank's share as weight
 * (tg_dist_allreduce_grads), and every rank takes the same Adam step. So
 * N ranks at batch B follow the trajectory of one process at batch N*B.
 * Rank 0 prints; the test set is evaluated in shards too, and the correct
 * counts summed.
 *
 *     mpirun -np 2 build/examples/dist_mlp --epochs 2 --batch 32
 *
 * Options: --epochs E (1), --batch B per rank (32), --max-steps S (stop an
 * epoch after S steps, for smoke tests), --data DIR (the four IDX files;
 * default $TG_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist,
 * Debian's dataset-fashion-mnist). Per epoch it prints the mean training
 * loss, test accuracy, samples per second (all ranks together) and the
 * share of the training time spent in tg_dist_allreduce_grads (the mean
 * over the ranks). Exits 77 (skipped) when the data set is not there.
 *
 * Build: cc dist_mlp.c $(pkg-config --cflags --libs tapegrad) (a tapegrad
 * built with MPI); run it with mpirun, or alone as one rank.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prints c's error (with the rank) and returns true if there is one. */
static bool failed(tg_ctx *c, int rank, const char *what)
{
    if (tg_ctx_status(c) == TG_OK) return false;
    fprintf(stderr, "dist_mlp: rank %d: %s: %s\n", rank, what, tg_ctx_errmsg(c));
    return true;
}

static tg_tensor *read_idx(tg_ctx *p, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tg_idx_opts o = tg_idx_defaults();
    o.scale = true; /* pixels into [0, 1] */
    return tg_idx_read(p, path, &o);
}

int main(int argc, char **argv)
{
    int epochs = 1;
    int64_t batch = 32, max_steps = -1;
    const char *dir = getenv("TG_FASHION_MNIST_DIR");
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--epochs") && i + 1 < argc) epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--max-steps") && i + 1 < argc) max_steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) dir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--epochs E] [--batch B] [--max-steps S] [--data DIR]\n",
                    argv[0]);
            return 2;
        }
    }
    if (epochs < 1 || batch < 1) {
        fprintf(stderr, "dist_mlp: --epochs and --batch must be positive\n");
        return 2;
    }

    tg_ctx *p = tg_ctx_new(), *s = tg_ctx_new();
    if (!p || !s) return 1;
    /* Join the group first: every rank, before anything that can fail on
     * one rank alone. */
    tg_dist *d = tg_dist_init(p, NULL);
    if (!d) {
        failed(p, 0, "tg_dist_init");
        return 1;
    }
    int rank = tg_dist_rank(d), world = tg_dist_world(d);

    /* Every rank reads everything: the batcher picks its samples. */
    tg_tensor *x = read_idx(p, dir, "train-images-idx3-ubyte.gz");
    tg_tensor *y = read_idx(p, dir, "train-labels-idx1-ubyte.gz");
    tg_tensor *tx = read_idx(p, dir, "t10k-images-idx3-ubyte.gz");
    tg_tensor *ty = read_idx(p, dir, "t10k-labels-idx1-ubyte.gz");
    /* Agree on whether the data is there, so no rank is left waiting. */
    double missing = tg_ctx_status(p) == TG_ERR_IO;
    if (missing) tg_ctx_clear_error(p);
    tg_dist_allreduce_sum(d, &missing, 1);
    if (missing > 0) {
        if (rank == 0) printf("dist_mlp: no Fashion-MNIST in %s (dataset-fashion-mnist); skipped\n", dir);
        tg_dist_finalize(d);
        tg_ctx_free(s);
        tg_ctx_free(p);
        return 77;
    }
    int64_t n = tg_shape(x)[0], nt = tg_shape(tx)[0];
    x = tg_reshape(p, x, 2, (int64_t[]){n, 784});
    tx = tg_reshape(p, tx, 2, (int64_t[]){nt, 784});

    /* The model. Ranks may initialise differently; the broadcast makes
     * every copy rank 0's. */
    tg_model *m = tg_model_new(p);
    tg_module *net = tg_nn_sequential_new(m, "net");
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc1", 784, 256, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc2", 256, 128, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc3", 128, 10, true));
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = 1e-3;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = batch; /* per rank: the global batch is world * batch */
    bo.seed = 1;           /* the same on every rank: one permutation */
    bo.rank = rank;
    bo.world = world;
    tg_batcher *b = tg_batcher_new(p, n, &bo);
    tg_tensor *bx = tg_tensor_new(p, TG_F32, TG_SHAPE(batch, 784));
    tg_tensor *by = tg_tensor_new(p, TG_I64, TG_SHAPE(batch));
    tg_dist_broadcast_model(d, m);
    if (failed(p, rank, "setup")) return 1;
    if (rank == 0)
        printf("dist_mlp: %d rank(s), batch %lld per rank (%lld global), %lld steps per epoch\n",
               world, (long long)batch, (long long)(batch * world),
               (long long)tg_batcher_batches(b));

    tg_tensor *const *params = tg_model_params(m);
    int np = tg_model_nparams(m);
    for (int epoch = 0; epoch < epochs; epoch++) {
        double t0 = now(), t_reduce = 0, loss_sum = 0;
        int64_t steps = 0, samples = 0, idx_m;
        const int64_t *idx;
        tg_model_set_training(m, true);
        while ((idx_m = tg_batcher_next(b, &idx)) > 0) {
            if (max_steps >= 0 && steps >= max_steps) continue; /* drain the epoch */
            tg_gather_rows(s, bx, x, idx, idx_m);
            tg_gather_rows(s, by, y, idx, idx_m);
            tg_tensor *xb = idx_m < batch ? tg_slice(s, bx, 0, 0, idx_m, 1) : bx;
            tg_tensor *yb = idx_m < batch ? tg_slice(s, by, 0, 0, idx_m, 1) : by;
            tg_tensor *loss = tg_cross_entropy(s, tg_module_forward(s, net, xb), yb);
            tg_backward(s, loss);
            double w = tg_batcher_weight(b);
            if (tg_ctx_status(s) == TG_OK) loss_sum += w * tg_item(loss);
            /* A failed step on one rank fails the reduction on every rank. */
            double t1 = now();
            tg_status st = tg_dist_allreduce_grads(d, params, np, w);
            t_reduce += now() - t1;
            if (st != TG_OK || failed(s, rank, "step")) {
                failed(p, rank, "tg_dist_allreduce_grads");
                return 1;
            }
            tg_optim_step(opt);
            tg_optim_zero_grad(opt);
            tg_ctx_reset(s);
            steps++;
            samples += idx_m;
        }
        double elapsed = now() - t0;
        /* totals over the ranks: the loss (weighted, so each step adds its
         * global batch's mean), samples, and the time split (the ranks run
         * in lockstep, so their times are nearly equal: report the mean) */
        double sums[4] = {loss_sum, (double)samples, elapsed, t_reduce};
        tg_dist_allreduce_sum(d, sums, 4);
        double t_step = sums[2] / world, t_red = sums[3] / world;

        /* test accuracy: each rank evaluates a contiguous shard */
        tg_model_set_training(m, false);
        int64_t lo = nt * rank / world, hi = nt * (rank + 1) / world;
        double correct[1] = {0};
        for (int64_t i = lo; i < hi; i += 1000) {
            int64_t e = hi - i < 1000 ? hi : i + 1000;
            tg_tensor *logits = tg_module_forward(s, net, tg_slice(s, tx, 0, i, e, 1));
            tg_tensor *pred = tg_argmax(s, logits, 1, false);
            for (int64_t k = 0; pred && k < e - i; k++)
                correct[0] += tg_get(pred, (int64_t[]){k}) == tg_get(ty, (int64_t[]){i + k});
            tg_ctx_reset(s);
        }
        tg_dist_allreduce_sum(d, correct, 1);
        if (failed(p, rank, "epoch") || failed(s, rank, "evaluation")) return 1;
        if (rank == 0)
            printf("epoch %d: %lld steps, loss %.4f, test accuracy %.4f, %.0f samples/s, "
                   "all-reduce %.1f%% of the step time\n",
                   epoch + 1, (long long)steps, sums[0] / (double)steps,
                   correct[0] / (double)nt, sums[1] / t_step, 100.0 * t_red / t_step);
    }
    tg_status st = tg_dist_finalize(d);
    tg_ctx_free(s);
    tg_ctx_free(p);
    return st == TG_OK ? 0 : 1;
}
