/*
 * tapegrad/nn.h - layers, the model's parameter registry, initialisers.
 *
 * Layers are compositions of ops (no backward code of their own): a
 * layer's forward is a handful of tg_* ops recorded on the step context's
 * tape like any other, so gradients, second order, gradcheck and the DOT
 * export work through them unchanged.
 *
 * Two lifetimes (DESIGN.md section 1):
 *  - A tg_model lives in a persistent context (one that is never reset).
 *    Every layer struct, every parameter, every buffer and the registry
 *    itself are allocated in that context's arena when the layer is made,
 *    and are freed only by tg_ctx_free() of that context. There is no
 *    tg_model_free or tg_module_free: an arena frees nothing on its own.
 *  - Forward functions take a step context first and allocate only there
 *    (activations, the tape, saved tensors). Once the step context's arena
 *    has grown to its steady size (tg_ctx_reset merges it), a forward plus
 *    backward makes no heap allocation at all; the parameters' .grad
 *    tensors are allocated in the persistent context by the first backward
 *    and reused after.
 *
 * Names. Every parameter is a leaf tensor of the persistent context that
 * requires grad and carries a dotted name (tg_tensor_set_name) made of its
 * layer's name and PyTorch's attribute name: "fc1.weight",
 * "layers.0.attn.q_proj.bias", "lstm.weight_ih_l1". The model's registry
 * lists parameters and buffers (batch norm running statistics) in creation
 * order, which is the stable order optimizers, checkpoints and the DOT
 * export use. Names must be unique within a model.
 *
 * Initialisation draws from the persistent context's RNG (tg_ctx_seed it,
 * or pass tg_ctx_opts.seed, for reproducible weights) in layer creation
 * order; the distributions are PyTorch's defaults, named per layer below.
 * The draws themselves are tapegrad's (xoshiro256**), not PyTorch's.
 *
 * Errors. Constructors record errors on the model's context and return
 * NULL ("tg_nn_linear_new: 'fc1': in_features 0 must be >= 1"); a model
 * whose context holds an error makes nothing. Forward functions are
 * sticky like ops: NULL in, NULL out, the first error kept on the step
 * context, and messages name the function and the layer
 * ("tg_module_forward: linear 'fc1': input [8,5]: dim 1 is 5, in_features is 4").
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "tensor.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/* The model: parameter and buffer registry, train / eval mode            */
/* ====================================================================== */

typedef struct tg_model tg_model;   /* opaque; lives in its context's arena */
typedef struct tg_module tg_module; /* opaque; one layer, in the model's arena */

/* A new, empty model in the persistent context pc (never reset it while the
 * model is in use), in training mode, making TG_F32 parameters. NULL with
 * the error on pc (TG_ERR_NOMEM), or NULL when pc is NULL or holds an
 * error. Freed with pc. */
tg_model *tg_model_new(tg_ctx *pc);

/* The persistent context the model lives in (NULL for NULL m). */
tg_ctx *tg_model_ctx(const tg_model *m);

/* The dtype (TG_F32 or TG_F64) of parameters made from now on; TG_F32 by
 * default. TG_ERR_DTYPE (recorded on the model's context) for TG_I64. */
tg_status tg_model_set_dtype(tg_model *m, tg_dtype dt);
tg_dtype tg_model_dtype(const tg_model *m);

/* Training mode (true, the default) or evaluation mode. Layers read it on
 * every forward: dropout drops only in training; batch norm uses batch
 * statistics and updates its running ones in training, and uses the
 * running ones in evaluation. Returns the previous mode. */
bool tg_model_set_training(tg_model *m, bool on);
bool tg_model_training(const tg_model *m);

/* Number of parameters (0 for NULL m) and the i-th in creation order (NULL
 * out of range). Its name is tg_tensor_name(param). */
int tg_model_nparams(const tg_model *m);
tg_tensor *tg_model_param(const tg_model *m, int i);

/* The parameters as an array of tg_model_nparams(m) entries, ready for
 * tg_sgd_new(ctx, tg_model_params(m), tg_model_nparams(m), &opts). Owned by
 * the model; valid until the next parameter is registered. NULL when there
 * is none. */
tg_tensor *const *tg_model_params(const tg_model *m);

/* Buffers: tensors of the model's context that are saved in checkpoints but
 * not trained (require no grad): batch norm's running_mean, running_var
 * (float) and num_batches_tracked (TG_I64 0-d), as in PyTorch's
 * state_dict. Same conventions as the parameter functions. */
int tg_model_nbuffers(const tg_model *m);
tg_tensor *tg_model_buffer(const tg_model *m, int i);
tg_tensor *const *tg_model_buffers(const tg_model *m);

/* The parameter or buffer with this exact name, or NULL. */
tg_tensor *tg_model_find(const tg_model *m, const char *name);

/* Total number of parameter elements (trainable values). */
int64_t tg_model_numel(const tg_model *m);

/* tg_zero_grad on every parameter that has a gradient. */
void tg_model_zero_grad(tg_model *m);

/* Registers a tensor made by the caller as a parameter (a floating leaf of
 * the model's context: its requires_grad is turned on) or as a buffer,
 * under name (copied; the tensor is named too). Errors, recorded on the
 * model's context: TG_ERR_INVALID (NULLs, an empty or duplicate name, a
 * tensor of another context, a non-leaf), TG_ERR_DTYPE (an I64 parameter),
 * TG_ERR_NOMEM. */
tg_status tg_model_add_param(tg_model *m, const char *name, tg_tensor *t);
tg_status tg_model_add_buffer(tg_model *m, const char *name, tg_tensor *t);

/*
 * Loads values into the model's parameters and buffers by name, e.g. from a
 * checkpoint (tg_safetensors_find / _tensor) or from PyTorch weights:
 * tensors[i] (any context, any strides) is copied into the registered
 * tensor named names[i] (names NULL: each tensor's own tg_tensor_name).
 * Shapes must match exactly; f32 and f64 convert into each other, i64 only
 * into i64. strict: every name must be registered and every parameter and
 * buffer given exactly once (PyTorch's load_state_dict(strict=True));
 * otherwise unknown names are skipped and missing ones left as they are.
 * Everything is validated before anything is written, so on error the
 * model is unchanged. Bumps the version of every tensor written. Errors,
 * recorded on the model's context and naming the entry: TG_ERR_INVALID
 * (NULLs, n < 0, a nameless tensor, a repeated name, and with strict an
 * unknown or missing name), TG_ERR_SHAPE, TG_ERR_DTYPE.
 */
tg_status tg_model_load(tg_model *m, int n, const char *const *names, tg_tensor *const *tensors,
                        bool strict);

/* A printf-formatted name ("layers.%d.attn") copied into the model's arena,
 * for naming layers in loops; lives as long as the model. NULL (error on
 * the model's context) when out of memory or the name exceeds 127 bytes. */
const char *tg_model_name(tg_model *m, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ====================================================================== */
/* Initialisers. Each fills a floating tensor in place (any strides, no    */
/* overlap) from the RNG of the tensor's own context, bumps its storage    */
/* version, and returns TG_OK or an error (also recorded on the tensor's   */
/* context): TG_ERR_INVALID (NULL, an overlapping view, a bad argument,    */
/* fans of a tensor with fewer than 2 dims), TG_ERR_DTYPE (TG_I64).        */
/* Fans follow PyTorch: fan_in = size(1) * receptive field, fan_out =      */
/* size(0) * receptive field, receptive field = product of dims 2...       */
/* ====================================================================== */

typedef enum { TG_FAN_IN, TG_FAN_OUT } tg_fan_mode;

typedef enum {
    TG_NONLIN_LINEAR,     /* gain 1 (also conv and sigmoid: PyTorch gives 1) */
    TG_NONLIN_SIGMOID,    /* 1 */
    TG_NONLIN_TANH,       /* 5/3 */
    TG_NONLIN_RELU,       /* sqrt(2) */
    TG_NONLIN_LEAKY_RELU, /* sqrt(2 / (1 + slope^2)) */
} tg_nonlin;

/* torch.nn.init.calculate_gain: the gains listed above; param is the
 * leaky_relu slope (ignored otherwise). NaN for an unknown nonlin. */
double tg_init_gain(tg_nonlin nl, double param);

/* fan_in and fan_out of t as above; TG_ERR_INVALID when t has fewer than 2
 * dims. Records nothing. */
tg_status tg_init_fans(const tg_tensor *t, int64_t *fan_in, int64_t *fan_out);

tg_status tg_init_uniform(tg_tensor *t, double lo, double hi);   /* U(lo, hi), lo <= hi */
tg_status tg_init_normal(tg_tensor *t, double mean, double std); /* N(mean, std^2), std >= 0 */
tg_status tg_init_constant(tg_tensor *t, double v);
tg_status tg_init_zeros(tg_tensor *t);
tg_status tg_init_ones(tg_tensor *t);

/* Glorot: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)), and
 * N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)). */
tg_status tg_init_xavier_uniform(tg_tensor *t, double gain);
tg_status tg_init_xavier_normal(tg_tensor *t, double gain);

/* He: std = gain(nl, a) / sqrt(fan), fan chosen by mode; uniform draws
 * U(-sqrt(3) std, sqrt(3) std), normal N(0, std^2). a is the leaky_relu
 * slope. Kaiming uniform with a = sqrt(5), fan_in and TG_NONLIN_LEAKY_RELU
 * is PyTorch's default for Linear and Conv weights: U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)). */
tg_status tg_init_kaiming_uniform(tg_tensor *t, double a, tg_fan_mode mode, tg_nonlin nl);
tg_status tg_init_kaiming_normal(tg_tensor *t, double a, tg_fan_mode mode, tg_nonlin nl);

/* ====================================================================== */
/* Modules: common functions                                              */
/* ====================================================================== */

/*
 * y = the module applied to x, in the step context c. For RNN, LSTM and
 * GRU this is the output sequence from zero initial states (use
 * tg_nn_rnn_forward for states), for multi-head attention self-attention
 * without a mask (tg_nn_mha_forward has the rest). Returns a tensor of c,
 * valid until c's next reset, or NULL: when x or mod is NULL or c holds an
 * error (sticky), or with a new error on c naming the function, the layer
 * kind and its name.
 */
tg_tensor *tg_module_forward(tg_ctx *c, tg_module *mod, tg_tensor *x);

/* The module's name as given at creation ("fc1"; may be "" for an
 * anonymous module), and its kind ("linear", "conv2d", "lstm", ...).
 * Both owned by the model; "" / "?" for NULL. */
const char *tg_module_name(const tg_module *mod);
const char *tg_module_kind(const tg_module *mod);

/* The module's own parameter or buffer by its local name ("weight",
 * "bias", "running_mean", "weight_hh_l0", "q_proj.weight"), or NULL. */
tg_tensor *tg_module_get(const tg_module *mod, const char *local_name);

/* The module's model (NULL for NULL). */
tg_model *tg_module_model(const tg_module *mod);

/* ====================================================================== */
/* Layers. Every constructor takes the model and the layer's name (its     */
/* parameters are "<name>.weight" and so on; "" or NULL names them         */
/* "weight", ...), makes the parameters in the model's context with        */
/* PyTorch's default initialisation and returns the module, owned by the   */
/* model's context, or NULL with the error there: TG_ERR_INVALID (bad      */
/* sizes or options, a duplicate name), TG_ERR_NOMEM.                      */
/* ====================================================================== */

/* Linear: y = x W^T + b; x [..., in] -> [..., out]. weight [out, in],
 * bias [out] (when bias), both U(-1/sqrt(in), 1/sqrt(in)). */
tg_module *tg_nn_linear_new(tg_model *m, const char *name, int64_t in, int64_t out, bool bias);

/* Conv2d: x [N, in, H, W] -> [N, out, OH, OW] (tg_conv2d). weight [out,
 * in/groups, kh, kw], bias [out]; both U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * fan_in = in/groups * kh * kw. o NULL: stride 1, no padding. */
tg_module *tg_nn_conv2d_new(tg_model *m, const char *name, int64_t in, int64_t out, int64_t kh,
                            int64_t kw, const tg_conv2d_opts *o, bool bias);

/* Conv1d: x [N, in, L] -> [N, out, OL] (tg_conv1d). weight [out,
 * in/groups, k], bias [out]; initialised as Conv2d. */
tg_module *tg_nn_conv1d_new(tg_model *m, const char *name, int64_t in, int64_t out, int64_t k,
                            const tg_conv1d_opts *o, bool bias);

/* MaxPool2d / AvgPool2d: tg_max_pool2d / tg_avg_pool2d with o (kernel must
 * be set, see tg_pool2d_opts). No parameters. */
tg_module *tg_nn_max_pool2d_new(tg_model *m, const char *name, const tg_pool2d_opts *o);
tg_module *tg_nn_avg_pool2d_new(tg_model *m, const char *name, const tg_pool2d_opts *o);

/* Embedding: I64 indices of any shape -> [*indices, dim]. weight [num,
 * dim] ~ N(0, 1). */
tg_module *tg_nn_embedding_new(tg_model *m, const char *name, int64_t num, int64_t dim);

/* LayerNorm over the last nnorm dims of shape normalized_shape (pass with
 * TG_SHAPE(...)); weight ones, bias zeros when affine. eps as PyTorch
 * (1e-5 there). */
tg_module *tg_nn_layer_norm_new(tg_model *m, const char *name, int nnorm,
                                const int64_t *normalized_shape, double eps, bool affine);

/*
 * BatchNorm1d (x [N, C] or [N, C, L]) and BatchNorm2d (x [N, C, H, W]) over
 * num_features channels C. Parameters weight (ones) and bias (zeros) when
 * affine; buffers running_mean (zeros), running_var (ones) and
 * num_batches_tracked (I64 0-d, 0), as in PyTorch. In training mode the
 * batch statistics normalise and the running ones are updated in place
 * (momentum, unbiased variance), and num_batches_tracked grows by one per
 * forward; in evaluation the running statistics normalise. eps 1e-5 and
 * momentum 0.1 are PyTorch's defaults. An input of the wrong rank is
 * TG_ERR_SHAPE naming the layer.
 */
tg_module *tg_nn_batch_norm1d_new(tg_model *m, const char *name, int64_t num_features, double eps,
                                  double momentum, bool affine);
tg_module *tg_nn_batch_norm2d_new(tg_model *m, const char *name, int64_t num_features, double eps,
                                  double momentum, bool affine);

/* Dropout with probability p in [0, 1]: drops (drawing from the step
 * context's RNG) in training mode, the identity in evaluation. */
tg_module *tg_nn_dropout_new(tg_model *m, const char *name, double p);

/* Activations and shape layers, no parameters: ReLU, Tanh, Sigmoid, GELU
 * (exact, erf form), SiLU, LeakyReLU(slope), Softmax over axis, Flatten
 * (dims start_dim..end_dim merged; PyTorch's nn.Flatten is 1, -1),
 * Identity. */
tg_module *tg_nn_relu_new(tg_model *m);
tg_module *tg_nn_tanh_new(tg_model *m);
tg_module *tg_nn_sigmoid_new(tg_model *m);
tg_module *tg_nn_gelu_new(tg_model *m);
tg_module *tg_nn_silu_new(tg_model *m);
tg_module *tg_nn_leaky_relu_new(tg_model *m, double slope);
tg_module *tg_nn_softmax_new(tg_model *m, int axis);
tg_module *tg_nn_flatten_new(tg_model *m, int start_dim, int end_dim);
tg_module *tg_nn_identity_new(tg_model *m);

/*
 * Sequential: applies its children in order. The children are made (and
 * named) by the caller, usually "<seq name>.<index>" with tg_model_name,
 * as PyTorch names them; they must be modules of the same model.
 * tg_nn_sequential_add appends one (TG_ERR_INVALID for NULLs, a module of
 * another model, the sequential itself; TG_ERR_NOMEM). A child's output
 * reaches only the next child, so once that has run, its memory goes back
 * to the step's arena if no backward reads it (a ReLU's output under a
 * pooling layer): the forward's peak is lower, the gradients the same.
 * Two pairs of children run as one fused op: a Conv2d or a Linear and the
 * ReLU after it, as tg_conv2d_relu or tg_linear_relu (the same bits, less
 * memory, no slower). A GELU and the Linear after it run as the two ops;
 * tg_gelu_linear (ops_conv.h) runs them in less memory but more time, for
 * a caller who wants that trade.
 */
tg_module *tg_nn_sequential_new(tg_model *m, const char *name);
tg_status tg_nn_sequential_add(tg_module *seq, tg_module *child);
int tg_nn_sequential_len(const tg_module *seq);
tg_module *tg_nn_sequential_child(const tg_module *seq, int i); /* NULL out of range */

/* ====================================================================== */
/* Recurrent layers                                                       */
/* ====================================================================== */

typedef enum { TG_RNN_TANH, TG_RNN_RELU } tg_rnn_nonlin;

typedef struct {
    int num_layers;       /* >= 1; default 1 */
    bool bias;            /* default true */
    bool batch_first;     /* x is [B, T, I] (true, the default) or [T, B, I] */
    double dropout;       /* on the outputs of every layer but the last, in training; 0 */
    tg_rnn_nonlin nonlin; /* plain RNN only; default TG_RNN_TANH */
    bool recompute_gates; /* LSTM only: keep no gates for the backward, which
                             recomputes them (tg_lstm's keep_gates false):
                             a third of the layer's memory for one more pass
                             of its forward; default false */
} tg_rnn_opts;

/* num_layers 1, bias, batch_first (tapegrad's default, unlike PyTorch's),
 * no dropout, tanh, gates kept. */
tg_rnn_opts tg_rnn_defaults(void);

/*
 * RNN, LSTM and GRU with PyTorch's parameters, names, shapes and gate
 * order, so PyTorch weights load as they are. For layer k (k = 0 ..
 * num_layers-1), G gates (RNN 1, LSTM 4 in order i, f, g, o, GRU 3 in order
 * r, z, n), I_k = input (k = 0) or hidden:
 *   weight_ih_lk [G*hidden, I_k], weight_hh_lk [G*hidden, hidden],
 *   bias_ih_lk [G*hidden], bias_hh_lk [G*hidden]   (when bias),
 * all U(-1/sqrt(hidden), 1/sqrt(hidden)).
 *   RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh)
 *   LSTM: i, f, g, o = sig, sig, tanh, sig of (W_ih x + b_ih + W_hh h + b_hh);
 *         c' = f c + i g;  h' = o tanh(c')   (each layer one tg_lstm op)
 *   GRU:  r, z = sig of (W_ih x + b_ih + W_hh h + b_hh) rows r, z;
 *         n = tanh(x_n + b_in + r (W_hn h + b_hn));  h' = (1 - z) n + z h
 * opts NULL: tg_rnn_defaults(). TG_ERR_INVALID for sizes < 1, num_layers
 * < 1 or dropout outside [0, 1].
 */
tg_module *tg_nn_rnn_new(tg_model *m, const char *name, int64_t input, int64_t hidden,
                         const tg_rnn_opts *opts);
tg_module *tg_nn_lstm_new(tg_model *m, const char *name, int64_t input, int64_t hidden,
                          const tg_rnn_opts *opts);
tg_module *tg_nn_gru_new(tg_model *m, const char *name, int64_t input, int64_t hidden,
                         const tg_rnn_opts *opts);

/*
 * Runs an RNN, LSTM or GRU module over x ([B, T, input] with batch_first,
 * else [T, B, input]; T >= 1) from the initial states h0 and (LSTM only)
 * c0, each [num_layers, B, hidden] or NULL for zeros (c0 must be NULL for
 * RNN and GRU). Writes, as tensors of c: *out, the last layer's hidden
 * state at every step ([B, T, hidden], or [T, B, hidden] without
 * batch_first); *hn, the final hidden state of every layer [num_layers, B,
 * hidden]; *cn (LSTM; may be NULL to skip, and is set to NULL for RNN and
 * GRU), the final cell state. hn may be NULL too. Returns *out, or NULL
 * (all outputs NULL) with the error on c: TG_ERR_SHAPE (wrong ranks or
 * sizes, naming the layer), TG_ERR_INVALID (NULL module or out, a module
 * that is not recurrent, c0 given to an RNN or GRU), TG_ERR_DTYPE.
 */
tg_tensor *tg_nn_rnn_forward(tg_ctx *c, tg_module *rnn, tg_tensor *x, tg_tensor *h0, tg_tensor *c0,
                             tg_tensor **out, tg_tensor **hn, tg_tensor **cn);

/* ====================================================================== */
/* Attention                                                              */
/* ====================================================================== */

/*
 * Multi-head attention of embed_dim E split into num_heads heads (E
 * divisible by it), as four Linear sub-layers "<name>.q_proj",
 * "<name>.k_proj", "<name>.v_proj" and "<name>.out_proj" ([E, E] weights,
 * [E] biases when bias, each with Linear's default initialisation).
 * causal makes query i attend only to keys j <= i.
 */
tg_module *tg_nn_mha_new(tg_model *m, const char *name, int64_t embed_dim, int64_t num_heads,
                         bool bias, bool causal);

/*
 * y = out_proj(concat over heads of sdpa(q_proj(q), k_proj(k), v_proj(v)))
 * with tg_sdpa (scale 1/sqrt(E/heads), the module's causal flag, mask
 * additive and broadcastable to [B, heads, Lq, Lk], or NULL). q [B, Lq, E],
 * k and v [B, Lk, E]; y [B, Lq, E] in c. Self-attention passes the same
 * tensor three times. Errors on c naming the layer: TG_ERR_SHAPE,
 * TG_ERR_INVALID (a NULL module, one that is not attention).
 */
tg_tensor *tg_nn_mha_forward(tg_ctx *c, tg_module *mha, tg_tensor *q, tg_tensor *k, tg_tensor *v,
                             tg_tensor *mask);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_NN_H */
