/*
 * fmnist.c - Fashion-MNIST for the tapegrad tool: the data, the two
 * networks (mlp, cnn) and the evaluation pass shared by train and eval.
 *
 * The networks are nn.h layers in one Sequential, so every parameter has
 * PyTorch's dotted name ("fc1.weight", "conv2.bias") in checkpoints.
 */
#include "cli.h"

#include <string.h>

const char *const fmnist_class_names[FMNIST_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

const char *const arch_names[] = {"mlp", "cnn", NULL};

/* The pixel mean and standard deviation of the 60,000 training images
 * scaled to [0, 1] (computed over all 47,040,000 pixels). Fixed, not
 * recomputed from a --limit subset, so every run sees the same inputs. */
#define FMNIST_MEAN 0.28604063f
#define FMNIST_STD 0.35302424f

#define SIDE 28

/* The first limit items (0: all) of one of the four files: only those are
 * inflated, so --limit runs start at once. */
static tg_tensor *read_idx(tg_ctx *c, const char *cmd, const char *dir, const char *prefix,
                           const char *kind, int64_t limit)
{
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s-%s-idx%d-ubyte.gz", dir, prefix, kind,
                       strcmp(kind, "images") == 0 ? 3 : 1);
    if (len < 0 || (size_t)len >= sizeof path) {
        cli_error(cmd, "--data: directory name too long");
        return NULL;
    }
    tg_idx_opts o = tg_idx_defaults();
    o.scale = true; /* images in [0, 1]; labels stay I64 */
    o.max_items = limit > 0 ? limit : 0;
    tg_tensor *t = tg_idx_read(c, path, &o);
    if (t == NULL) {
        cli_error(cmd, "cannot read the Fashion-MNIST %s: %s\n"
                       "  (install Debian's dataset-fashion-mnist package, or pass --data DIR "
                       "with the four *-ubyte.gz files)",
                  kind, tg_ctx_errmsg(c));
        tg_ctx_clear_error(c);
    }
    return t;
}

bool fmnist_load(tg_ctx *c, const char *cmd, const char *dir, const char *prefix, int64_t limit,
                 fmnist_split *out)
{
    tg_tensor *x = read_idx(c, cmd, dir, prefix, "images", limit);
    if (x == NULL) return false;
    tg_tensor *y = read_idx(c, cmd, dir, prefix, "labels", limit);
    if (y == NULL) return false;
    const int64_t *xs = tg_shape(x);
    if (tg_ndim(x) != 3 || xs[1] != SIDE || xs[2] != SIDE || tg_tensor_dtype(x) != TG_F32 ||
        tg_ndim(y) != 1 || tg_tensor_dtype(y) != TG_I64 || tg_shape(y)[0] != xs[0]) {
        char a[64], b[64];
        cli_error(cmd, "%s: images %s and labels %s are not [N, 28, 28] u8 and [N] labels",
                  prefix, tg_shape_str(x, a, sizeof a), tg_shape_str(y, b, sizeof b));
        return false;
    }
    int64_t n = xs[0];
    if (n == 0) {
        cli_error(cmd, "%s: no samples", prefix);
        return false;
    }
    const int64_t *labels = tg_data(y);
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= FMNIST_CLASSES) {
            cli_error(cmd, "%s labels: sample %lld has label %lld, not in 0..9", prefix,
                      (long long)i, (long long)labels[i]);
            return false;
        }
    }
    float *px = tg_data(x);
    for (int64_t i = 0; i < n * SIDE * SIDE; i++) px[i] = (px[i] - FMNIST_MEAN) / FMNIST_STD;
    out->x = x;
    out->y = y;
    out->n = n;
    return true;
}

/* ---------------------------------------------------------------------- */
/* The networks                                                           */
/* ---------------------------------------------------------------------- */

/* 784 -> 256 -> 128 -> 10 with ReLU. */
static void build_mlp(tg_model *m, tg_module *seq)
{
    tg_nn_sequential_add(seq, tg_nn_linear_new(m, "fc1", SIDE * SIDE, 256, true));
    tg_nn_sequential_add(seq, tg_nn_relu_new(m));
    tg_nn_sequential_add(seq, tg_nn_linear_new(m, "fc2", 256, 128, true));
    tg_nn_sequential_add(seq, tg_nn_relu_new(m));
    tg_nn_sequential_add(seq, tg_nn_linear_new(m, "fc3", 128, FMNIST_CLASSES, true));
}

/* conv3x3(1->32) ReLU maxpool2 -> conv3x3(32->64) ReLU maxpool2 -> 64x7x7
 * -> fc 3136->128 ReLU dropout(0.25) -> fc 128->10. */
static void build_cnn(tg_model *m, tg_module *seq)
{
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1;
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2;
    tg_nn_sequential_add(seq, tg_nn_conv2d_new(m, "conv1", 1, 32, 3, 3, &co, true));
    tg_nn_sequential_add(seq, tg_nn_relu_new(m));
    tg_nn_sequential_add(seq, tg_nn_max_pool2d_new(m, "pool1", &po));
    tg_nn_sequential_add(seq, tg_nn_conv2d_new(m, "conv2", 32, 64, 3, 3, &co, true));
    tg_nn_sequential_add(seq, tg_nn_relu_new(m));
    tg_nn_sequential_add(seq, tg_nn_max_pool2d_new(m, "pool2", &po));
    tg_nn_sequential_add(seq, tg_nn_flatten_new(m, 1, -1));
    tg_nn_sequential_add(seq, tg_nn_linear_new(m, "fc1", 64 * 7 * 7, 128, true));
    tg_nn_sequential_add(seq, tg_nn_relu_new(m));
    tg_nn_sequential_add(seq, tg_nn_dropout_new(m, "drop", 0.25));
    tg_nn_sequential_add(seq, tg_nn_linear_new(m, "fc2", 128, FMNIST_CLASSES, true));
}

bool fmnist_net_new(tg_model *m, arch_kind kind, const char *cmd, fmnist_net *out)
{
    tg_ctx *pc = tg_model_ctx(m);
    tg_module *seq = tg_nn_sequential_new(m, "net");
    if (seq != NULL) {
        /* Every constructor and add is sticky on the model's context: one
         * check after the whole build. */
        if (kind == ARCH_MLP) build_mlp(m, seq);
        else build_cnn(m, seq);
    }
    if (tg_ctx_status(pc) != TG_OK) {
        cli_error(cmd, "cannot build the %s: %s", arch_names[kind], tg_ctx_errmsg(pc));
        return false;
    }
    out->kind = kind;
    out->model = m;
    out->net = seq;
    out->desc = kind == ARCH_MLP ? "784-256-128-10, ReLU"
                                 : "conv3x3(32)-pool-conv3x3(64)-pool-fc128-dropout0.25-fc10, ReLU";
    return true;
}

tg_tensor *fmnist_forward(tg_ctx *s, const fmnist_net *net, tg_tensor *x)
{
    int64_t m = tg_shape(x) ? tg_shape(x)[0] : 0;
    tg_tensor *in = net->kind == ARCH_MLP ? tg_reshape(s, x, TG_SHAPE(m, SIDE * SIDE))
                                          : tg_reshape(s, x, TG_SHAPE(m, 1, SIDE, SIDE));
    return tg_module_forward(s, net->net, in);
}

/* ---------------------------------------------------------------------- */
/* Evaluation                                                             */
/* ---------------------------------------------------------------------- */

bool fmnist_evaluate(tg_ctx *s, const fmnist_net *net, const fmnist_split *d, int64_t batch,
                     const char *cmd, eval_result *r)
{
    memset(r, 0, sizeof *r);
    bool was_training = tg_model_set_training(net->model, false);
    bool had_grad = tg_set_grad_enabled(s, false);
    const int64_t *labels = tg_data(d->y);
    double loss_sum = 0.0;
    bool ok = true;
    for (int64_t i = 0; i < d->n && ok; i += batch) {
        int64_t m = d->n - i < batch ? d->n - i : batch;
        tg_ctx_reset(s);
        tg_tensor *logits = fmnist_forward(s, net, tg_slice(s, d->x, 0, i, i + m, 1));
        tg_tensor *loss = tg_cross_entropy(s, logits, tg_slice(s, d->y, 0, i, i + m, 1));
        tg_tensor *pred = tg_argmax(s, logits, 1, false);
        if (pred == NULL || loss == NULL) {
            cli_error(cmd, "evaluation: %s", tg_ctx_errmsg(s));
            ok = false;
            break;
        }
        loss_sum += tg_item(loss) * (double)m;
        const int64_t *p = tg_data(pred);
        for (int64_t k = 0; k < m; k++) {
            r->cm[labels[i + k]][p[k]]++;
            r->correct += p[k] == labels[i + k];
        }
        r->n += m;
    }
    tg_ctx_reset(s);
    tg_set_grad_enabled(s, had_grad);
    tg_model_set_training(net->model, was_training);
    r->loss = r->n > 0 ? loss_sum / (double)r->n : 0.0;
    return ok;
}
