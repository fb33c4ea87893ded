/*
 * layers.c - the feed-forward layers: Linear, Conv1d, Conv2d, pooling,
 * Embedding, LayerNorm, BatchNorm1d/2d, Dropout and the parameter-free
 * activation and shape layers. Each constructor makes its parameters with
 * PyTorch's default initialisation; each forward checks the input against
 * the layer (so the message names the layer) and calls one op.
 */
#include "nn_impl.h"

#include <math.h>
#include <string.h>

/* PyTorch's reset_parameters of Linear and Conv: kaiming_uniform(a =
 * sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
 * same bound for the bias. */
static bool init_fan_in_uniform(tg_tensor *w, tg_tensor *b)
{
    int64_t fan_in = 0;
    if (tg_init_kaiming_uniform(w, sqrt(5.0), TG_FAN_IN, TG_NONLIN_LEAKY_RELU) != TG_OK)
        return false;
    tg_init_fans(w, &fan_in, NULL);
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    return !b || tg_init_uniform(b, -bound, bound) == TG_OK;
}

static bool bad_size(tg_model *m, const char *fn, const char *name, const char *what, int64_t v)
{
    if (v >= 1) return false;
    tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': %s %lld must be >= 1", fn, name ? name : "", what,
             (long long)v);
    return true;
}

/* ====================================================================== */
/* Linear and convolution                                                 */
/* ====================================================================== */

tg_module *tg_nn_linear_new(tg_model *m, const char *name, int64_t in, int64_t out, bool bias)
{
    const char *fn = "tg_nn_linear_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (bad_size(m, fn, name, "in_features", in) || bad_size(m, fn, name, "out_features", out))
        return NULL;
    tg_module *mod = tg__nn_module(m, TG__NN_LINEAR, fn, name);
    if (!mod) return NULL;
    mod->in = in;
    mod->out = out;
    mod->weight = tg__nn_param(mod, fn, "weight", TG_SHAPE(out, in));
    if (!mod->weight) return NULL;
    if (bias && !(mod->bias = tg__nn_param(mod, fn, "bias", TG_SHAPE(out)))) return NULL;
    return init_fan_in_uniform(mod->weight, mod->bias) ? mod : NULL;
}

static bool check_groups(tg_model *m, const char *fn, const char *name, int64_t in, int64_t out,
                         int64_t groups)
{
    if (groups >= 1 && in % groups == 0 && out % groups == 0) return true;
    tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': groups %lld must divide in %lld and out %lld", fn,
             name ? name : "", (long long)groups, (long long)in, (long long)out);
    return false;
}

/* The convolution's own option checks, at construction, naming the layer. */
static bool check_conv(tg_model *m, const char *fn, const char *name, const tg_conv2d_opts *o)
{
    char who[160];
    snprintf(who, sizeof who, "%s: '%s'", fn, name ? name : "");
    return tg__conv2d_check_opts(m->ctx, who, o);
}

tg_module *tg_nn_conv2d_new(tg_model *m, const char *name, int64_t in, int64_t out, int64_t kh,
                            int64_t kw, const tg_conv2d_opts *o, bool bias)
{
    const char *fn = "tg_nn_conv2d_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    tg_conv2d_opts co = o ? *o : tg_conv2d_defaults();
    if (bad_size(m, fn, name, "in_channels", in) || bad_size(m, fn, name, "out_channels", out) ||
        bad_size(m, fn, name, "kernel height", kh) || bad_size(m, fn, name, "kernel width", kw) ||
        !check_groups(m, fn, name, in, out, co.groups) || !check_conv(m, fn, name, &co))
        return NULL;
    tg_module *mod = tg__nn_module(m, TG__NN_CONV2D, fn, name);
    if (!mod) return NULL;
    mod->in = in;
    mod->out = out;
    mod->kernel[0] = kh;
    mod->kernel[1] = kw;
    mod->conv2 = co;
    mod->weight = tg__nn_param(mod, fn, "weight", TG_SHAPE(out, in / co.groups, kh, kw));
    if (!mod->weight) return NULL;
    if (bias && !(mod->bias = tg__nn_param(mod, fn, "bias", TG_SHAPE(out)))) return NULL;
    return init_fan_in_uniform(mod->weight, mod->bias) ? mod : NULL;
}

tg_module *tg_nn_conv1d_new(tg_model *m, const char *name, int64_t in, int64_t out, int64_t k,
                            const tg_conv1d_opts *o, bool bias)
{
    const char *fn = "tg_nn_conv1d_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    tg_conv1d_opts co = o ? *o : tg_conv1d_defaults();
    if (bad_size(m, fn, name, "in_channels", in) || bad_size(m, fn, name, "out_channels", out) ||
        bad_size(m, fn, name, "kernel size", k) || !check_groups(m, fn, name, in, out, co.groups))
        return NULL;
    tg_conv2d_opts c2 = tg__conv1d_as_2d(&co);
    if (!check_conv(m, fn, name, &c2)) return NULL;
    tg_module *mod = tg__nn_module(m, TG__NN_CONV1D, fn, name);
    if (!mod) return NULL;
    mod->in = in;
    mod->out = out;
    mod->kernel[0] = k;
    mod->conv1 = co;
    mod->weight = tg__nn_param(mod, fn, "weight", TG_SHAPE(out, in / co.groups, k));
    if (!mod->weight) return NULL;
    if (bias && !(mod->bias = tg__nn_param(mod, fn, "bias", TG_SHAPE(out)))) return NULL;
    return init_fan_in_uniform(mod->weight, mod->bias) ? mod : NULL;
}

static tg_module *pool_new(tg_model *m, tg__nn_kind kind, const char *fn, const char *name,
                           const tg_pool2d_opts *o)
{
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (!o || o->kernel[0] < 1 || o->kernel[1] < 1) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': kernel size must be set (>= 1)", fn,
                 name ? name : "");
        return NULL;
    }
    /* the pooling op's own checks (dilation for max pooling only) */
    char who[160];
    snprintf(who, sizeof who, "%s: '%s'", fn, name ? name : "");
    tg_pool2d_opts r;
    if (!tg__pool2d_resolve_opts(m->ctx, who, o, kind == TG__NN_MAX_POOL2D, &r)) return NULL;
    tg_module *mod = tg__nn_module(m, kind, fn, name);
    if (mod) mod->pool = *o;
    return mod;
}

tg_module *tg_nn_max_pool2d_new(tg_model *m, const char *name, const tg_pool2d_opts *o)
{
    return pool_new(m, TG__NN_MAX_POOL2D, "tg_nn_max_pool2d_new", name, o);
}

tg_module *tg_nn_avg_pool2d_new(tg_model *m, const char *name, const tg_pool2d_opts *o)
{
    return pool_new(m, TG__NN_AVG_POOL2D, "tg_nn_avg_pool2d_new", name, o);
}

/* ====================================================================== */
/* Embedding and normalisation                                            */
/* ====================================================================== */

tg_module *tg_nn_embedding_new(tg_model *m, const char *name, int64_t num, int64_t dim)
{
    const char *fn = "tg_nn_embedding_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (bad_size(m, fn, name, "num_embeddings", num) || bad_size(m, fn, name, "embedding_dim", dim))
        return NULL;
    tg_module *mod = tg__nn_module(m, TG__NN_EMBEDDING, fn, name);
    if (!mod) return NULL;
    mod->in = num;
    mod->out = dim;
    mod->weight = tg__nn_param(mod, fn, "weight", TG_SHAPE(num, dim));
    if (!mod->weight || tg_init_normal(mod->weight, 0.0, 1.0) != TG_OK) return NULL;
    return mod;
}

static bool bad_eps(tg_model *m, const char *fn, const char *name, double eps)
{
    if (eps >= 0 && isfinite(eps)) return false;
    tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': eps %g must be finite and >= 0", fn,
             name ? name : "", eps);
    return true;
}

tg_module *tg_nn_layer_norm_new(tg_model *m, const char *name, int nnorm,
                                const int64_t *normalized_shape, double eps, bool affine)
{
    const char *fn = "tg_nn_layer_norm_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (nnorm < 1 || nnorm > TG_MAX_DIMS || !normalized_shape) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': normalized_shape of %d dims", fn,
                 name ? name : "", nnorm);
        return NULL;
    }
    for (int i = 0; i < nnorm; i++)
        if (bad_size(m, fn, name, "normalized_shape entry", normalized_shape[i])) return NULL;
    if (bad_eps(m, fn, name, eps)) return NULL;
    tg_module *mod = tg__nn_module(m, TG__NN_LAYER_NORM, fn, name);
    if (!mod) return NULL;
    mod->nnorm = nnorm;
    memcpy(mod->norm_shape, normalized_shape, (size_t)nnorm * sizeof(int64_t));
    mod->eps = eps;
    if (affine) {
        mod->weight = tg__nn_param(mod, fn, "weight", nnorm, normalized_shape);
        mod->bias = tg__nn_param(mod, fn, "bias", nnorm, normalized_shape);
        if (!mod->weight || !mod->bias || tg_init_ones(mod->weight) != TG_OK) return NULL;
    }
    return mod;
}

static tg_module *batch_norm_new(tg_model *m, tg__nn_kind kind, const char *fn, const char *name,
                                 int64_t C, double eps, double momentum, bool affine)
{
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (bad_size(m, fn, name, "num_features", C) || bad_eps(m, fn, name, eps)) return NULL;
    if (!(momentum >= 0 && momentum <= 1)) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': momentum %g outside [0, 1]", fn,
                 name ? name : "", momentum);
        return NULL;
    }
    tg_module *mod = tg__nn_module(m, kind, fn, name);
    if (!mod) return NULL;
    mod->in = C;
    mod->eps = eps;
    mod->momentum = momentum;
    if (affine) {
        mod->weight = tg__nn_param(mod, fn, "weight", TG_SHAPE(C));
        mod->bias = tg__nn_param(mod, fn, "bias", TG_SHAPE(C));
        if (!mod->weight || !mod->bias || tg_init_ones(mod->weight) != TG_OK) return NULL;
    }
    mod->running_mean = tg__nn_buffer(mod, fn, "running_mean", m->dtype, TG_SHAPE(C));
    mod->running_var = tg__nn_buffer(mod, fn, "running_var", m->dtype, TG_SHAPE(C));
    mod->nbt = tg__nn_buffer(mod, fn, "num_batches_tracked", TG_I64, 0, NULL);
    if (!mod->running_mean || !mod->running_var || !mod->nbt ||
        tg_init_ones(mod->running_var) != TG_OK)
        return NULL;
    return mod;
}

tg_module *tg_nn_batch_norm1d_new(tg_model *m, const char *name, int64_t num_features, double eps,
                                  double momentum, bool affine)
{
    return batch_norm_new(m, TG__NN_BATCH_NORM1D, "tg_nn_batch_norm1d_new", name, num_features, eps,
                          momentum, affine);
}

tg_module *tg_nn_batch_norm2d_new(tg_model *m, const char *name, int64_t num_features, double eps,
                                  double momentum, bool affine)
{
    return batch_norm_new(m, TG__NN_BATCH_NORM2D, "tg_nn_batch_norm2d_new", name, num_features, eps,
                          momentum, affine);
}

/* ====================================================================== */
/* Dropout, activations, shapes                                           */
/* ====================================================================== */

tg_module *tg_nn_dropout_new(tg_model *m, const char *name, double p)
{
    const char *fn = "tg_nn_dropout_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    if (!(p >= 0 && p <= 1)) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': p %g outside [0, 1]", fn, name ? name : "", p);
        return NULL;
    }
    tg_module *mod = tg__nn_module(m, TG__NN_DROPOUT, fn, name);
    if (mod) mod->p = p;
    return mod;
}

tg_module *tg_nn_relu_new(tg_model *m)
{
    return tg__nn_module(m, TG__NN_RELU, "tg_nn_relu_new", "");
}
tg_module *tg_nn_tanh_new(tg_model *m)
{
    return tg__nn_module(m, TG__NN_TANH, "tg_nn_tanh_new", "");
}
tg_module *tg_nn_sigmoid_new(tg_model *m)
{
    return tg__nn_module(m, TG__NN_SIGMOID, "tg_nn_sigmoid_new", "");
}
tg_module *tg_nn_gelu_new(tg_model *m)
{
    return tg__nn_module(m, TG__NN_GELU, "tg_nn_gelu_new", "");
}
tg_module *tg_nn_silu_new(tg_model *m)
{
    return tg__nn_module(m, TG__NN_SILU, "tg_nn_silu_new", "");
}
tg_module *tg_nn_identity_new(tg_model *m)
{
    return tg__nn_module(m, TG__NN_IDENTITY, "tg_nn_identity_new", "");
}

tg_module *tg_nn_leaky_relu_new(tg_model *m, double slope)
{
    tg_module *mod = tg__nn_module(m, TG__NN_LEAKY_RELU, "tg_nn_leaky_relu_new", "");
    if (mod) mod->slope = slope;
    return mod;
}

tg_module *tg_nn_softmax_new(tg_model *m, int axis)
{
    tg_module *mod = tg__nn_module(m, TG__NN_SOFTMAX, "tg_nn_softmax_new", "");
    if (mod) mod->axis = axis;
    return mod;
}

tg_module *tg_nn_flatten_new(tg_model *m, int start_dim, int end_dim)
{
    tg_module *mod = tg__nn_module(m, TG__NN_FLATTEN, "tg_nn_flatten_new", "");
    if (mod) {
        mod->start_dim = start_dim;
        mod->end_dim = end_dim;
    }
    return mod;
}

/* ====================================================================== */
/* Forward                                                                */
/* ====================================================================== */

/* x has ndim dims (any of the two counts lo..hi) and, when ch >= 0, size ch
 * at dim cdim. */
static bool check_input(tg_ctx *c, const char *fn, const tg_module *mod, const tg_tensor *x, int lo,
                        int hi, int cdim, int64_t ch, const char *what)
{
    char b[96];
    if (x->ndim < lo || x->ndim > hi) {
        if (lo == hi)
            tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "input %s: expected %d dims, got %d",
                        tg_shape_str(x, b, sizeof b), lo, x->ndim);
        else
            tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "input %s: expected %d to %d dims, got %d",
                        tg_shape_str(x, b, sizeof b), lo, hi, x->ndim);
        return false;
    }
    int d = cdim < 0 ? x->ndim + cdim : cdim;
    if (ch >= 0 && x->shape[d] != ch) {
        tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "input %s: dim %d is %lld, %s is %lld",
                    tg_shape_str(x, b, sizeof b), d, (long long)x->shape[d], what, (long long)ch);
        return false;
    }
    return true;
}

static tg_tensor *batch_norm_forward(tg_ctx *c, const char *fn, tg_module *mod, tg_tensor *x)
{
    bool bn2 = mod->kind == TG__NN_BATCH_NORM2D;
    if (!check_input(c, fn, mod, x, bn2 ? 4 : 2, bn2 ? 4 : 3, 1, mod->in, "num_features"))
        return NULL;
    tg_batch_norm_opts o = tg_batch_norm_defaults();
    o.training = mod->model->training;
    o.eps = mod->eps;
    o.momentum = mod->momentum;
    tg_tensor *y =
        tg_batch_norm(c, x, mod->weight, mod->bias, mod->running_mean, mod->running_var, &o);
    if (y && o.training) {
        int64_t *nbt = tg_data(mod->nbt);
        (*nbt)++;
        tg_tensor_bump_version(mod->nbt);
    }
    return y;
}

tg_tensor *tg__nn_conv2d_relu_forward(tg_ctx *c, tg_module *mod, tg_tensor *x)
{
    const char *fn = "tg_module_forward";
    if (!tg__nn_begin(c, fn, mod, x)) return NULL;
    bool was_ok = tg__ok(c);
    tg_tensor *y = NULL;
    if (check_input(c, fn, mod, x, 4, 4, 1, mod->in, "in_channels"))
        y = tg_conv2d_relu(c, x, mod->weight, mod->bias, &mod->conv2);
    return tg__nn_blame(c, was_ok, fn, mod, y);
}

tg_tensor *tg__nn_linear_relu_forward(tg_ctx *c, tg_module *mod, tg_tensor *x)
{
    const char *fn = "tg_module_forward";
    if (!tg__nn_begin(c, fn, mod, x)) return NULL;
    bool was_ok = tg__ok(c);
    tg_tensor *y = NULL;
    if (check_input(c, fn, mod, x, 1, TG_MAX_DIMS, -1, mod->in, "in_features"))
        y = tg_linear_relu(c, x, mod->weight, mod->bias);
    return tg__nn_blame(c, was_ok, fn, mod, y);
}

tg_tensor *tg__nn_layer_forward(tg_ctx *c, tg_module *mod, tg_tensor *x)
{
    const char *fn = "tg_module_forward";
    bool was_ok = tg__ok(c);
    tg_tensor *y = NULL;
    switch (mod->kind) {
    case TG__NN_LINEAR:
        if (check_input(c, fn, mod, x, 1, TG_MAX_DIMS, -1, mod->in, "in_features"))
            y = tg_linear(c, x, mod->weight, mod->bias);
        break;
    case TG__NN_CONV2D:
        if (check_input(c, fn, mod, x, 4, 4, 1, mod->in, "in_channels"))
            y = tg_conv2d(c, x, mod->weight, mod->bias, &mod->conv2);
        break;
    case TG__NN_CONV1D:
        if (check_input(c, fn, mod, x, 3, 3, 1, mod->in, "in_channels"))
            y = tg_conv1d(c, x, mod->weight, mod->bias, &mod->conv1);
        break;
    case TG__NN_MAX_POOL2D:
        if (check_input(c, fn, mod, x, 4, 4, 0, -1, NULL)) y = tg_max_pool2d(c, x, &mod->pool);
        break;
    case TG__NN_AVG_POOL2D:
        if (check_input(c, fn, mod, x, 4, 4, 0, -1, NULL)) y = tg_avg_pool2d(c, x, &mod->pool);
        break;
    case TG__NN_EMBEDDING:
        if (x->dtype != TG_I64)
            tg__nn_fail(c, TG_ERR_DTYPE, fn, mod, "indices are %s, expected i64",
                        tg_dtype_name(x->dtype));
        else y = tg_embedding(c, mod->weight, x);
        break;
    case TG__NN_LAYER_NORM: {
        bool ok = x->ndim >= mod->nnorm;
        for (int i = 0; ok && i < mod->nnorm; i++)
            ok = x->shape[x->ndim - mod->nnorm + i] == mod->norm_shape[i];
        if (!ok) {
            char b[96], b2[96];
            tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "input %s does not end in normalized_shape %s",
                        tg_shape_str(x, b, sizeof b),
                        tg__fmt_shape(b2, sizeof b2, mod->nnorm, mod->norm_shape));
        } else {
            y = tg_layer_norm(c, x, mod->nnorm, mod->norm_shape, mod->weight, mod->bias, mod->eps);
        }
        break;
    }
    case TG__NN_BATCH_NORM1D:
    case TG__NN_BATCH_NORM2D: y = batch_norm_forward(c, fn, mod, x); break;
    case TG__NN_DROPOUT: y = tg_dropout(c, x, mod->p, mod->model->training); break;
    case TG__NN_RELU: y = tg_relu(c, x); break;
    case TG__NN_TANH: y = tg_tanh(c, x); break;
    case TG__NN_SIGMOID: y = tg_sigmoid(c, x); break;
    case TG__NN_GELU: y = tg_gelu(c, x); break;
    case TG__NN_SILU: y = tg_silu(c, x); break;
    case TG__NN_LEAKY_RELU: y = tg_leaky_relu(c, x, mod->slope); break;
    case TG__NN_SOFTMAX: y = tg_softmax(c, x, mod->axis); break;
    case TG__NN_FLATTEN: y = tg_flatten(c, x, mod->start_dim, mod->end_dim); break;
    case TG__NN_IDENTITY: y = x; break;
    default: tg__nn_fail(c, TG_ERR_INVALID, fn, mod, "not a one-input layer"); break;
    }
    return tg__nn_blame(c, was_ok, fn, mod, y);
}
