/*
 * train_fixture.c - see train_fixture.h.
 *
 * Sizes. Large: the MLP is 256 -> 512 -> 10 on batches of 128 (hidden
 * activations of 65,536 elements, two parallel grains), the conv net
 * 1x16x16 -> conv 8x3x3 (padding 1) -> relu -> max pool 2 -> dropout ->
 * linear 512 -> 10 on batches of 64 (conv output 131,072 elements).
 * Small: 32 -> 64 -> 10 on batches of 32, and the conv net on 1x8x8
 * images with 4 channels, batches of 16.
 */
#include "train_fixture.h"

#include <math.h>
#include <string.h>

enum { CLASSES = 10 };

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Fixed synthetic data (independent of the seed): features in [-1, 1),
 * labels from the sign pattern of the first features, so there is
 * something to learn. */
static bool make_data(tf_run *r, int64_t n, int ndim, const int64_t *shape)
{
    r->x = tg_tensor_new(r->p, TG_F32, ndim, shape);
    r->y = tg_tensor_new(r->p, TG_I64, TG_SHAPE(n));
    if (!r->x || !r->y) return false;
    float *x = tg_data(r->x);
    int64_t *y = tg_data(r->y);
    int64_t per = tg_numel(r->x) / n;
    for (int64_t i = 0; i < n; i++) {
        int64_t lab = 0;
        for (int64_t j = 0; j < per; j++) {
            float v = (float)(mix((uint64_t)(i * per + j)) >> 40) / (float)(1 << 23) - 1.0f;
            x[i * per + j] = v;
            if (j < 3 && v > 0) lab |= (int64_t)1 << j;
        }
        y[i] = lab % CLASSES;
    }
    return true;
}

static tg_module *add(tg_module *seq, tg_module *child)
{
    if (seq && child) tg_nn_sequential_add(seq, child);
    return child;
}

static bool make_mlp(tf_run *r)
{
    int64_t in = r->o.small ? 32 : 256, hid = r->o.small ? 64 : 512;
    r->batch = r->o.small ? 32 : 128;
    if (!make_data(r, 4 * r->batch, TG_SHAPE(4 * r->batch, in))) return false;
    tg_model *m = r->m;
    r->net = tg_nn_sequential_new(m, "net");
    add(r->net, tg_nn_linear_new(m, "net.0", in, hid, true));
    add(r->net, tg_nn_relu_new(m));
    add(r->net, tg_nn_dropout_new(m, "net.2", 0.3));
    add(r->net, tg_nn_linear_new(m, "net.3", hid, CLASSES, true));
    r->bx = tg_tensor_new(r->p, TG_F32, TG_SHAPE(r->batch, in));
    return r->bx != NULL;
}

static bool make_cnn(tf_run *r)
{
    int64_t hw = r->o.small ? 8 : 16, ch = r->o.small ? 4 : 8;
    r->batch = r->o.small ? 16 : 64;
    if (!make_data(r, 4 * r->batch, TG_SHAPE(4 * r->batch, 1, hw, hw))) return false;
    tg_model *m = r->m;
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1;
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2;
    r->net = tg_nn_sequential_new(m, "net");
    add(r->net, tg_nn_conv2d_new(m, "net.0", 1, ch, 3, 3, &co, true));
    add(r->net, tg_nn_relu_new(m));
    add(r->net, tg_nn_max_pool2d_new(m, "net.2", &po));
    add(r->net, tg_nn_dropout_new(m, "net.3", 0.25));
    add(r->net, tg_nn_flatten_new(m, 1, -1));
    add(r->net, tg_nn_linear_new(m, "net.5", ch * (hw / 2) * (hw / 2), CLASSES, true));
    r->bx = tg_tensor_new(r->p, TG_F32, TG_SHAPE(r->batch, 1, hw, hw));
    return r->bx != NULL;
}

bool tf_new(tf_run *r, const tf_opts *o)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    tg_ctx_opts co = tg_ctx_defaults();
    co.n_threads = o->threads;
    co.seed = o->seed;
    co.alloc = o->alloc;
    co.alloc_ud = o->alloc_ud;
    r->p = tg_ctx_new_opts(&co);
    co.seed = o->seed ^ 0x5eedull;
    r->s = tg_ctx_new_opts(&co);
    if (!r->p || !r->s) return false;
    r->m = tg_model_new(r->p);
    if (!r->m || !(o->kind == TF_MLP ? make_mlp(r) : make_cnn(r))) return false;
    r->by = tg_tensor_new(r->p, TG_I64, TG_SHAPE(r->batch));
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = 1e-3;
    r->opt = tg_adam_new(r->p, tg_model_params(r->m), tg_model_nparams(r->m), &ao);
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = r->batch;
    bo.drop_last = true;
    bo.seed = o->seed;
    r->b = tg_batcher_new(r->p, tg_shape(r->y)[0], &bo);
    return r->net && r->by && r->opt && r->b && tg_ctx_status(r->p) == TG_OK;
}

double tf_step(tf_run *r)
{
    tg_ctx *s = r->s;
    tg_ctx_reset(s);
    const int64_t *idx;
    int64_t n = tg_batcher_next(r->b, &idx);
    if (n == 0) n = tg_batcher_next(r->b, &idx); /* the next epoch */
    if (n != r->batch) return NAN;
    if (tg_gather_rows(r->p, r->bx, r->x, idx, n) || tg_gather_rows(r->p, r->by, r->y, idx, n))
        return NAN;
    tg_tensor *loss = tg_cross_entropy(s, tg_module_forward(s, r->net, r->bx), r->by);
    if (!loss || tg_backward(s, loss) != TG_OK) return NAN;
    double l = tg_item(loss);
    if (tg_optim_step(r->opt) != TG_OK) return NAN;
    tg_optim_zero_grad(r->opt);
    return l;
}

const char *tf_error(const tf_run *r)
{
    if (r->p && tg_ctx_status(r->p) != TG_OK) return tg_ctx_errmsg(r->p);
    if (r->s && tg_ctx_status(r->s) != TG_OK) return tg_ctx_errmsg(r->s);
    return !r->p || !r->s ? "out of memory making a context" : "";
}

void tf_free(tf_run *r)
{
    tg_ctx_free(r->s);
    tg_ctx_free(r->p);
    r->s = r->p = NULL;
}
