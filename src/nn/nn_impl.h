/*
 * nn_impl.h - the model and module structs shared by the files of src/nn.
 * Library-internal. Everything here lives in the model's (persistent)
 * context's arena.
 */
#ifndef TG_NN_IMPL_H
#define TG_NN_IMPL_H

#include "../ops/ops_impl.h"
#include "tapegrad/nn.h"

typedef enum {
    TG__NN_LINEAR,
    TG__NN_CONV1D,
    TG__NN_CONV2D,
    TG__NN_MAX_POOL2D,
    TG__NN_AVG_POOL2D,
    TG__NN_EMBEDDING,
    TG__NN_LAYER_NORM,
    TG__NN_BATCH_NORM1D,
    TG__NN_BATCH_NORM2D,
    TG__NN_DROPOUT,
    TG__NN_RELU,
    TG__NN_TANH,
    TG__NN_SIGMOID,
    TG__NN_GELU,
    TG__NN_SILU,
    TG__NN_LEAKY_RELU,
    TG__NN_SOFTMAX,
    TG__NN_FLATTEN,
    TG__NN_IDENTITY,
    TG__NN_SEQUENTIAL,
    TG__NN_RNN,
    TG__NN_LSTM,
    TG__NN_GRU,
    TG__NN_MHA,
    TG__NN_KIND_COUNT
} tg__nn_kind;

/* A growable array of pointers in an arena (doubling; old arrays are
 * abandoned to the arena, which is fine at construction time). */
typedef struct {
    void **v;
    int n, cap;
} tg__nn_vec;

struct tg_model {
    tg_ctx *ctx;
    tg_dtype dtype;
    bool training;
    tg__nn_vec params;  /* tg_tensor * */
    tg__nn_vec buffers; /* tg_tensor * */
};

struct tg_module {
    tg__nn_kind kind;
    tg_model *model;
    const char *name; /* "" for anonymous */

    /* Tensors this module registered, with their local names. */
    tg__nn_vec tensors; /* tg_tensor * */
    tg__nn_vec locals;  /* const char * */

    tg_tensor *weight, *bias;                    /* linear, conv, embedding, norms */
    tg_tensor *running_mean, *running_var, *nbt; /* batch norm */

    int64_t in, out, hidden; /* features / channels / hidden size */
    int64_t kernel[2];       /* conv */
    tg_conv2d_opts conv2;
    tg_conv1d_opts conv1;
    tg_pool2d_opts pool;
    double p, eps, momentum, slope;
    int nnorm;
    int64_t norm_shape[TG_MAX_DIMS];
    int axis, start_dim, end_dim;

    /* sequential children; mha: q, k, v, out projections */
    tg__nn_vec children; /* tg_module * */

    /* recurrent: per layer w_ih, w_hh, b_ih, b_hh (NULL without bias) */
    tg_rnn_opts rnn;
    int gates;
    tg_tensor **rw;

    /* attention */
    int64_t heads;
    bool causal;
};

/* Appends p to v in c's arena; false (error recorded) when out of memory. */
bool tg__nn_vec_push(tg_ctx *c, tg__nn_vec *v, void *p);

/* A new module of the given kind and name in m's context, or NULL (error
 * recorded; NULL when m is NULL or its context holds an error). */
tg_module *tg__nn_module(tg_model *m, tg__nn_kind kind, const char *fn, const char *name);

/*
 * A new parameter (requires grad, m's dtype) or buffer (requires_grad off)
 * of the module, named "<module name>.<local>", registered in the model and
 * the module. Zeros; the caller initialises. NULL with the error recorded.
 */
tg_tensor *tg__nn_param(tg_module *mod, const char *fn, const char *local, int ndim,
                        const int64_t *shape);
tg_tensor *tg__nn_buffer(tg_module *mod, const char *fn, const char *local, tg_dtype dt, int ndim,
                         const int64_t *shape);

/* Makes "<prefix>.<local>" (or local when prefix is empty) in c's arena. */
const char *tg__nn_join(tg_ctx *c, const char *prefix, const char *local);

/* "linear", ... */
const char *tg__nn_kind_name(tg__nn_kind k);

/* Forward checks shared by the layer files: true when the forward may run
 * (c fine, mod and x non-NULL); records TG_ERR_INVALID otherwise. */
bool tg__nn_begin(tg_ctx *c, const char *fn, const tg_module *mod, tg_tensor *x);

/* Records "fn: kind 'name': <message>" on c (keeping an earlier error). */
void tg__nn_fail(tg_ctx *c, tg_status s, const char *fn, const tg_module *mod, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* When an op called by mod's forward recorded an error on c that was not
 * there before (was_ok), prefixes its message with "fn: kind 'name': ", so
 * every error of a forward names its layer. Returns y. */
tg_tensor *tg__nn_blame(tg_ctx *c, bool was_ok, const char *fn, const tg_module *mod, tg_tensor *y);

/* Per-kind forwards (one input, one output). */
tg_tensor *tg__nn_layer_forward(tg_ctx *c, tg_module *mod, tg_tensor *x);
/* A Conv2d module and the ReLU after it, as one tg_conv2d_relu: what
 * tg_module_forward(relu, tg_module_forward(conv, x)) gives, bit for bit,
 * with one output tensor instead of two. Errors named as the conv's. */
tg_tensor *tg__nn_conv2d_relu_forward(tg_ctx *c, tg_module *conv, tg_tensor *x);
/* A Linear module and the ReLU after it, as one tg_linear_relu: the two
 * modules' output bit for bit, with one output tensor instead of two.
 * Errors named as the linear's. */
tg_tensor *tg__nn_linear_relu_forward(tg_ctx *c, tg_module *linear, tg_tensor *x);
tg_tensor *tg__nn_rnn_seq_forward(tg_ctx *c, tg_module *mod, tg_tensor *x);
tg_tensor *tg__nn_mha_self_forward(tg_ctx *c, tg_module *mod, tg_tensor *x);

#endif /* TG_NN_IMPL_H */
