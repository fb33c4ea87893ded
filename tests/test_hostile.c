/*
 * test_hostile.c - hostile input to the newer public modules: nn.h,
 * optim.h, io.h and data.h. Every case of the table below calls one
 * public function with NULLs, zero or negative sizes, absurd shapes
 * (dimension products beyond 64 bits), wrong dtypes or objects of another
 * context or model, on a fresh fixture, and checks that
 *   - it returns an error (NULL, a negative count or the status),
 *   - the right context holds the expected status and a message naming
 *     the function,
 *   - nothing the fixture owns changed (parameters, buffers, optimizer
 *     state, the batcher's state, byte for byte),
 *   - after tg_ctx_clear_error every context trains again (a forward,
 *     backward and Adam step on the fixture's model).
 * Functions that report through their return value only (accessors on
 * NULL, tg_lr_at, tg_vocab_decode, ...) are checked in the tests after the
 * table, and calls with a NULL context in test_null_context.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad.h>

#include "test_util.h"

/* ---------------------------------------------------------------------- */
/* Fixture                                                                */
/* ---------------------------------------------------------------------- */

typedef struct {
    tg_ctx *pc, *c, *pc2; /* persistent, step, another persistent context */
    tg_model *m, *m2;     /* m in pc, m2 in pc2 */
    tg_module *fc;        /* linear 'fc' 4 -> 3, in seq */
    tg_module *seq;       /* sequential 'net': fc */
    tg_module *cv;        /* conv2d 'cv' 3 -> 4, 3x3 */
    tg_module *lstm;      /* lstm 'lstm' 4 -> 5 */
    tg_module *mha;       /* mha 'attn' 4, 2 heads */
    tg_module *emb;       /* embedding 'emb' 6 x 4 */
    tg_module *bn;        /* batch_norm1d 'bn' 3 */
    tg_module *fc2;       /* linear in m2 */
    tg_optim *opt;        /* Adam over m's parameters, in pc */
    tg_optim *dead;       /* an SGD over m2's parameters, freed */
    tg_batcher *b;        /* 10 samples, batch 4, in pc */
    tg_tensor *x;         /* f32 [2,4] in c */
    tg_tensor *xd;        /* f64 [2,4] in c */
    tg_tensor *xi;        /* i64 [2,4] in c */
    tg_tensor *y;         /* i64 [2] labels in c */
    tg_tensor *img;       /* f32 [1,3,8,8] in c */
    tg_tensor *seqx;      /* f32 [2,3,4] in c */
    tg_tensor *leaf2;     /* f32 [3] leaf in pc2 (another context) */
    tg_tensor *nonleaf;   /* a recorded result in pc */
    tg_tensor *pi;        /* i64 [3] in pc */
    tg_tensor *pf;        /* f32 [3] in pc, not registered */
    tg_tensor *src, *dst; /* f32 [10,4] and [4,4] in pc */
    tg_tensor *view;      /* every other row of src: a strided [5,4] view */
    tg_tensor *exp_;      /* an expanded (overlapping) view, f32 [4,3] */
    unsigned char *snap;  /* the state snapshot (see snapshot) */
    size_t snap_len;
    /* what the case returned */
    enum { K_NONE, K_PTR, K_RC, K_NEG } kind;
    const void *ptr;
    tg_status rc;
    int64_t neg;
} fx;

static const char *tmp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && t[0] ? t : "/tmp";
}

/* Everything the fixture's model, optimizer and batcher hold, as bytes. */
static unsigned char *snapshot(const fx *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
#define PUT(p, k)                                    \
    do {                                             \
        ck_assert(n + (k) <= cap);                   \
        memcpy(buf + n, (p), (k));                   \
        n += (k);                                    \
    } while (0)
    for (int i = 0; i < tg_model_nparams(f->m) + tg_model_nbuffers(f->m); i++) {
        int np = tg_model_nparams(f->m);
        tg_tensor *t = i < np ? tg_model_param(f->m, i) : tg_model_buffer(f->m, i - np);
        size_t k = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
        ck_assert(n + k <= cap);
        tu_assert_status(tg_copy_out(t, buf + n, k), TG_OK);
        n += k;
    }
    for (int i = 0; i < tg_optim_nparams(f->opt); i++) {
        char key[96];
        snprintf(key, sizeof key, "%s.exp_avg", tg_tensor_name(tg_optim_param(f->opt, i)));
        tg_tensor *t = tg_optim_state_find(f->opt, key);
        ck_assert_ptr_nonnull(t);
        size_t k = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
        ck_assert(n + k <= cap);
        tu_assert_status(tg_copy_out(t, buf + n, k), TG_OK);
        n += k;
    }
    int64_t steps = tg_optim_step_count(f->opt);
    double lr = tg_optim_lr(f->opt);
    tg_batcher_state bs = tg_batcher_get_state(f->b);
    bool training = tg_model_training(f->m);
    tg_dtype dt = tg_model_dtype(f->m);
    int np = tg_model_nparams(f->m), nb = tg_model_nbuffers(f->m);
    PUT(&steps, sizeof steps);
    PUT(&lr, sizeof lr);
    PUT(&bs, sizeof bs);
    PUT(&training, sizeof training);
    PUT(&dt, sizeof dt);
    PUT(&np, sizeof np);
    PUT(&nb, sizeof nb);
#undef PUT
    *len = n;
    return buf;
}

/* One training step on the fixture: forward through seq, backward, Adam. */
static void train_step(fx *f)
{
    tg_ctx_reset(f->c);
    tg_tensor *x = tg_full(f->c, TG_F32, TG_SHAPE(2, 4), 0.25);
    tg_tensor *y = tg_tensor_from(f->c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 2});
    tg_tensor *loss = tg_cross_entropy(f->c, tg_module_forward(f->c, f->seq, x), y);
    ck_assert_msg(loss != NULL, "forward: %s", tg_ctx_errmsg(f->c));
    tu_assert_status(tg_backward(f->c, loss), TG_OK);
    tu_assert_status(tg_optim_step(f->opt), TG_OK);
    tg_optim_zero_grad(f->opt);
}

static void fx_init(fx *f)
{
    memset(f, 0, sizeof *f);
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = 1;
    o.seed = 7;
    f->pc = tg_ctx_new_opts(&o);
    f->c = tg_ctx_new_opts(&o);
    f->pc2 = tg_ctx_new_opts(&o);
    ck_assert(f->pc && f->c && f->pc2);
    tg_ctx *pc = f->pc, *c = f->c;
    f->m = tg_model_new(pc);
    f->m2 = tg_model_new(f->pc2);
    f->seq = tg_nn_sequential_new(f->m, "net");
    f->fc = tg_nn_linear_new(f->m, "fc", 4, 3, true);
    tg_nn_sequential_add(f->seq, f->fc);
    f->cv = tg_nn_conv2d_new(f->m, "cv", 3, 4, 3, 3, NULL, true);
    f->lstm = tg_nn_lstm_new(f->m, "lstm", 4, 5, NULL);
    f->mha = tg_nn_mha_new(f->m, "attn", 4, 2, true, false);
    f->emb = tg_nn_embedding_new(f->m, "emb", 6, 4);
    f->bn = tg_nn_batch_norm1d_new(f->m, "bn", 3, 1e-5, 0.1, true);
    f->fc2 = tg_nn_linear_new(f->m2, "other", 4, 3, true);
    tu_assert_ok(pc);
    tu_assert_ok(f->pc2);
    f->opt = tg_adam_new(pc, tg_model_params(f->m), tg_model_nparams(f->m), NULL);
    f->dead = tg_sgd_new(f->pc2, tg_model_params(f->m2), tg_model_nparams(f->m2), NULL);
    tg_optim_free(f->dead);
    f->b = tg_batcher_new(pc, 10, &(tg_batcher_opts){.batch_size = 4, .shuffle = true, .seed = 3});
    f->x = tg_full(c, TG_F32, TG_SHAPE(2, 4), 0.5);
    f->xd = tg_full(c, TG_F64, TG_SHAPE(2, 4), 0.5);
    f->xi = tg_tensor_new(c, TG_I64, TG_SHAPE(2, 4));
    f->y = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 1});
    f->img = tg_full(c, TG_F32, TG_SHAPE(1, 3, 8, 8), 0.5);
    f->seqx = tg_full(c, TG_F32, TG_SHAPE(2, 3, 4), 0.5);
    f->leaf2 = tg_full(f->pc2, TG_F32, TG_SHAPE(3), 1);
    tg_tensor *l = tg_full(pc, TG_F32, TG_SHAPE(3), 2);
    tg_set_requires_grad(l, true);
    f->nonleaf = tg_mul(pc, l, l);
    f->pi = tg_tensor_new(pc, TG_I64, TG_SHAPE(3));
    f->pf = tg_full(pc, TG_F32, TG_SHAPE(3), 1);
    f->src = tg_rand(pc, TG_F32, TG_SHAPE(10, 4));
    f->dst = tg_tensor_new(pc, TG_F32, TG_SHAPE(4, 4));
    f->view = tg_slice(pc, f->src, 0, 0, 10, 2); /* rows 0, 2, ...: [5,4], strided */
    f->exp_ = tg_expand(pc, tg_full(pc, TG_F32, TG_SHAPE(1, 3), 1), TG_SHAPE(4, 3));
    tu_assert_ok(pc);
    tu_assert_ok(c);
    ck_assert(f->opt && f->b && f->nonleaf && f->view && f->exp_);
    /* one step, so Adam's state exists and the parameters have grads */
    train_step(f);
    const int64_t *idx;
    ck_assert_int_eq(tg_batcher_next(f->b, &idx), 4);
    tg_ctx_reset(c);
    f->x = tg_full(c, TG_F32, TG_SHAPE(2, 4), 0.5);
    f->xd = tg_full(c, TG_F64, TG_SHAPE(2, 4), 0.5);
    f->xi = tg_tensor_new(c, TG_I64, TG_SHAPE(2, 4));
    f->y = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 1});
    f->img = tg_full(c, TG_F32, TG_SHAPE(1, 3, 8, 8), 0.5);
    f->seqx = tg_full(c, TG_F32, TG_SHAPE(2, 3, 4), 0.5);
    tu_assert_ok(c);
    f->snap = snapshot(f, &f->snap_len);
}

static void fx_free(fx *f)
{
    free(f->snap);
    tg_ctx_free(f->c);
    tg_ctx_free(f->pc);
    tg_ctx_free(f->pc2);
}

/* ---------------------------------------------------------------------- */
/* The table                                                              */
/* ---------------------------------------------------------------------- */

#define PC (f->pc)
#define CC (f->c)
#define PC2 (f->pc2)
#define M (f->m)
#define PTR(e) (f->kind = K_PTR, f->ptr = (const void *)(e))
#define RC(e) (f->kind = K_RC, f->rc = (e))
#define NEG(e) (f->kind = K_NEG, f->neg = (int64_t)(e))
#define BAD_DT ((tg_dtype)7)
#define OVF (INT64_C(1) << 40)   /* two of them overflow 64 bits of bytes */
#define HUGE_DIM (INT64_C(1) << 62)

static const int64_t shape_ovf[2] = {OVF, OVF};
static const int64_t shape_neg[1] = {-4};
static const int64_t shape_zero[1] = {0};
static const int64_t shape_ok4[1] = {4};
static const uint32_t units_bad[2] = {65, 0xD800}; /* a surrogate */

static const tg_conv2d_opts *conv_with(int field, int64_t v)
{
    static tg_conv2d_opts o;
    o = tg_conv2d_defaults();
    if (field == 0) o.stride[0] = v;
    if (field == 1) o.padding[1] = v;
    if (field == 2) o.dilation[0] = v;
    if (field == 3) o.groups = v;
    return &o;
}

static const tg_pool2d_opts *pool_with(int64_t k, int64_t pad)
{
    static tg_pool2d_opts o;
    o = tg_pool2d_defaults();
    o.kernel[0] = o.kernel[1] = k;
    o.padding[0] = pad;
    return &o;
}

static const tg_rnn_opts *rnn_with(int layers, double dropout)
{
    static tg_rnn_opts o;
    o = tg_rnn_defaults();
    o.num_layers = layers;
    o.dropout = dropout;
    return &o;
}

static const tg_adam_opts *adam_with(double lr, double beta1, double eps)
{
    static tg_adam_opts o;
    o = tg_adam_defaults();
    o.lr = lr;
    o.beta1 = beta1;
    o.eps = eps;
    return &o;
}

static const tg_sgd_opts *sgd_nesterov_without_momentum(void)
{
    static tg_sgd_opts o;
    o = tg_sgd_defaults();
    o.nesterov = true;
    return &o;
}

static tg_status load_state_wrong(fx *f, int what)
{
    /* the full state list, with one entry damaged */
    int n = tg_optim_state_count(f->opt);
    ck_assert(n > 2 && n <= 64);
    const char *names[64];
    tg_tensor *ts[64];
    for (int i = 0; i < n; i++) tg_optim_state_get(f->opt, i, &names[i], &ts[i]);
    if (what == 0) ts[2] = tg_tensor_new(f->c, TG_F64, TG_SHAPE(1)); /* a step of f64 [1] */
    if (what == 1) ts[n - 1] = tg_tensor_new(f->c, TG_F32, TG_SHAPE(1, 2, 3));
    if (what == 2) ts[0] = tg_scalar(f->c, TG_I64, -5);  /* a negative step */
    if (what == 3) ts[1] = tg_scalar(f->c, TG_F64, NAN); /* lr */
    if (what == 4) names[3] = names[2];                   /* repeated */
    if (what == 5) names[n - 1] = "nope.exp_avg";
    return tg_optim_load_state(f->opt, what == 6 ? n - 1 : n, names, ts);
}

static tg_status model_load_wrong(fx *f, int what)
{
    const char *names[2] = {"fc.weight", "fc.bias"};
    tg_tensor *ts[2] = {tg_tensor_new(f->c, TG_F32, TG_SHAPE(3, 4)),
                        tg_tensor_new(f->c, TG_F32, TG_SHAPE(3))};
    if (what == 0) ts[0] = tg_tensor_new(f->c, TG_F32, TG_SHAPE(4, 3));
    if (what == 1) ts[1] = tg_tensor_new(f->c, TG_I64, TG_SHAPE(3));
    if (what == 2) names[1] = "fc.nope";
    if (what == 3) names[1] = names[0];
    if (what == 4) ts[1] = NULL;
    return tg_model_load(f->m, 2, names, ts, what == 2);
}

static tg_status set_state_with(fx *f, int what)
{
    tg_batcher_state s = tg_batcher_get_state(f->b);
    if (what == 0) s.n = 11;
    if (what == 1) s.pos = 11;
    if (what == 2) s.epoch = -1;
    if (what == 3) memset(s.rng, 0, sizeof s.rng);
    if (what == 4) s.pos = -1;
    return tg_batcher_set_state(f->b, &s);
}

static const tg_lr_schedule *bad_step_schedule(void)
{
    static tg_lr_schedule s;
    s = tg_lr_step(0.1, 0, 0.5);
    return &s;
}

static char path_buf[512];
static const char *missing_path(void)
{
    snprintf(path_buf, sizeof path_buf, "%s/tg-hostile-no-such-dir-%ld/x.bin", tmp_dir(),
             (long)getpid());
    return path_buf;
}

/*
 * X(name, ctx that records, status, alternative status, function, call):
 * call is PTR(expr) (must give NULL), RC(expr) (must give the status) or
 * NEG(expr) (must give a negative number).
 */
#define HOSTILE_CASES(X)                                                                          \
    /* ---- nn.h: the model ------------------------------------------------------------ */      \
    X(model_new_err, PC, TG_ERR_IO, TG_ERR_IO, "earlier",                                         \
      (tg_ctx_set_error(PC, TG_ERR_IO, "an earlier error"), PTR(tg_model_new(PC))))                        \
    X(model_dtype_i64, PC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_model_set_dtype",                      \
      RC(tg_model_set_dtype(M, TG_I64)))                                                          \
    X(model_dtype_bad, PC, TG_ERR_DTYPE, TG_ERR_INVALID, "tg_model_set_dtype",                    \
      RC(tg_model_set_dtype(M, BAD_DT)))                                                          \
    X(add_param_null_name, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",              \
      RC(tg_model_add_param(M, NULL, f->pf)))                                                     \
    X(add_param_empty_name, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",             \
      RC(tg_model_add_param(M, "", f->pf)))                                                       \
    X(add_param_dup_name, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",               \
      RC(tg_model_add_param(M, "fc.weight", f->pf)))                                              \
    X(add_param_null, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",                   \
      RC(tg_model_add_param(M, "p", NULL)))                                                       \
    X(add_param_other_ctx, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",              \
      RC(tg_model_add_param(M, "p", f->leaf2)))                                                   \
    X(add_param_step_ctx, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",               \
      RC(tg_model_add_param(M, "p", f->x)))                                                       \
    X(add_param_nonleaf, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_param",                \
      RC(tg_model_add_param(M, "p", f->nonleaf)))                                                 \
    X(add_param_i64, PC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_model_add_param",                        \
      RC(tg_model_add_param(M, "p", f->pi)))                                                      \
    X(add_buffer_other_ctx, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_buffer",            \
      RC(tg_model_add_buffer(M, "b", f->leaf2)))                                                  \
    X(add_buffer_dup, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_add_buffer",                  \
      RC(tg_model_add_buffer(M, "bn.running_mean", f->pf)))                                       \
    X(load_neg_n, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_load",                            \
      RC(tg_model_load(M, -1, NULL, NULL, false)))                                                \
    X(load_null_tensors, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_load",                     \
      RC(tg_model_load(M, 2, NULL, NULL, false)))                                                 \
    X(load_shape, PC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_model_load", RC(model_load_wrong(f, 0)))    \
    X(load_dtype, PC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_model_load", RC(model_load_wrong(f, 1)))    \
    X(load_unknown_strict, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_load",                   \
      RC(model_load_wrong(f, 2)))                                                                 \
    X(load_repeated, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_load",                         \
      RC(model_load_wrong(f, 3)))                                                                 \
    X(load_null_entry, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_model_load",                       \
      RC(model_load_wrong(f, 4)))                                                                 \
    X(model_name_long, PC, TG_ERR_INVALID, TG_ERR_NOMEM, "tg_model_name",                         \
      PTR(tg_model_name(M, "%0200d", 1)))                                                         \
    /* ---- nn.h: initialisers (errors on the tensor's context) ------------------------ */      \
    X(init_uniform_i64, PC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_init_uniform",                        \
      RC(tg_init_uniform(f->pi, 0, 1)))                                                           \
    X(init_uniform_reversed, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_uniform",               \
      RC(tg_init_uniform(f->pf, 1, 0)))                                                           \
    X(init_uniform_nan, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_uniform",                    \
      RC(tg_init_uniform(f->pf, NAN, 1)))                                                         \
    X(init_normal_neg_std, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_normal",                  \
      RC(tg_init_normal(f->pf, 0, -1)))                                                           \
    X(init_normal_overlap, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_normal",                  \
      RC(tg_init_normal(f->exp_, 0, 1)))                                                          \
    X(init_constant_i64, PC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_init_constant",                      \
      RC(tg_init_constant(f->pi, 1)))                                                             \
    X(init_xavier_1d, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_xavier_uniform",               \
      RC(tg_init_xavier_uniform(f->pf, 1)))                                                       \
    X(init_xavier_normal_i64, PC, TG_ERR_DTYPE, TG_ERR_INVALID, "tg_init_xavier_normal",          \
      RC(tg_init_xavier_normal(f->pi, 1)))                                                        \
    X(init_kaiming_1d, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_kaiming_uniform",             \
      RC(tg_init_kaiming_uniform(f->pf, 0, TG_FAN_IN, TG_NONLIN_RELU)))                           \
    X(init_kaiming_bad_mode, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_kaiming_normal",        \
      RC(tg_init_kaiming_normal(tg_model_find(M, "fc.weight"), 0, (tg_fan_mode)9,                 \
                                TG_NONLIN_RELU)))                                                 \
    X(init_kaiming_bad_nonlin, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_init_kaiming_normal",      \
      RC(tg_init_kaiming_normal(tg_model_find(M, "fc.weight"), 0, TG_FAN_IN, (tg_nonlin)42)))     \
    /* ---- nn.h: constructors --------------------------------------------------------- */      \
    X(linear_in0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_linear_new",                         \
      PTR(tg_nn_linear_new(M, "l", 0, 3, true)))                                                  \
    X(linear_out_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_linear_new",                     \
      PTR(tg_nn_linear_new(M, "l", 3, -2, true)))                                                 \
    X(linear_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_linear_new"),                                  \
      PTR(tg_nn_linear_new(M, "l", OVF, OVF, true)))                                              \
    X(linear_huge, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_linear_new"),                                      \
      PTR(tg_nn_linear_new(M, "l", HUGE_DIM, 8, false)))                                          \
    X(linear_dup_name, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_linear_new",                    \
      PTR(tg_nn_linear_new(M, "fc", 4, 3, true)))                                                 \
    X(conv2d_k0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_conv2d_new",                          \
      PTR(tg_nn_conv2d_new(M, "c", 3, 4, 0, 3, NULL, true)))                                      \
    X(conv2d_groups_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_conv2d_new",                  \
      PTR(tg_nn_conv2d_new(M, "c", 3, 4, 3, 3, conv_with(3, -1), true)))       \
    X(conv2d_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_conv2d_new"),                                  \
      PTR(tg_nn_conv2d_new(M, "c", OVF, OVF, 3, 3, NULL, true)))                                  \
    X(conv2d_kernel_huge, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_conv2d_new"),                               \
      PTR(tg_nn_conv2d_new(M, "c", 1, 1, HUGE_DIM, HUGE_DIM, NULL, false)))                       \
    X(conv1d_k_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_conv1d_new",                       \
      PTR(tg_nn_conv1d_new(M, "c", 3, 4, -3, NULL, true)))                                        \
    X(conv1d_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_conv1d_new"),                                  \
      PTR(tg_nn_conv1d_new(M, "c", OVF, OVF, OVF, NULL, true)))                                   \
    X(maxpool_null, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_max_pool2d_new",                   \
      PTR(tg_nn_max_pool2d_new(M, "p", NULL)))                                                    \
    X(maxpool_k0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_max_pool2d_new",                     \
      PTR(tg_nn_max_pool2d_new(M, "p", pool_with(0, 0))))                      \
    X(embedding_zero, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_embedding_new",                  \
      PTR(tg_nn_embedding_new(M, "e", 0, 4)))                                                     \
    X(embedding_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_embedding_new"),                            \
      PTR(tg_nn_embedding_new(M, "e", OVF, OVF)))                                                 \
    X(layer_norm_null_shape, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_layer_norm_new",          \
      PTR(tg_nn_layer_norm_new(M, "ln", 1, NULL, 1e-5, true)))                                    \
    X(layer_norm_ndim9, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_layer_norm_new",               \
      PTR(tg_nn_layer_norm_new(M, "ln", 9, shape_ovf, 1e-5, true)))                               \
    X(layer_norm_neg_dim, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_layer_norm_new",             \
      PTR(tg_nn_layer_norm_new(M, "ln", 1, shape_neg, 1e-5, true)))                               \
    X(layer_norm_zero_dim, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_layer_norm_new",            \
      PTR(tg_nn_layer_norm_new(M, "ln", 1, shape_zero, 1e-5, true)))                              \
    X(layer_norm_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_layer_norm_new"),                          \
      PTR(tg_nn_layer_norm_new(M, "ln", 2, shape_ovf, 1e-5, true)))                               \
    X(layer_norm_eps_nan, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_layer_norm_new",             \
      PTR(tg_nn_layer_norm_new(M, "ln", 1, shape_ok4, NAN, true)))                                \
    X(batch_norm_zero, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_batch_norm1d_new",              \
      PTR(tg_nn_batch_norm1d_new(M, "b", 0, 1e-5, 0.1, true)))                                    \
    X(batch_norm2d_huge, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_batch_norm2d_new"),                          \
      PTR(tg_nn_batch_norm2d_new(M, "b", HUGE_DIM, 1e-5, 0.1, true)))                             \
    X(batch_norm_eps_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_batch_norm2d_new",           \
      PTR(tg_nn_batch_norm2d_new(M, "b", 3, -1, 0.1, true)))                                      \
    X(dropout_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_dropout_new",                       \
      PTR(tg_nn_dropout_new(M, "d", -0.1)))                                                       \
    X(dropout_nan, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_dropout_new",                       \
      PTR(tg_nn_dropout_new(M, "d", NAN)))                                                        \
    X(seq_add_null, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_sequential_add",                   \
      RC(tg_nn_sequential_add(f->seq, NULL)))                                                     \
    X(seq_add_other_model, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_sequential_add",            \
      RC(tg_nn_sequential_add(f->seq, f->fc2)))                                                   \
    X(seq_add_self, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_sequential_add",                   \
      RC(tg_nn_sequential_add(f->seq, f->seq)))                                                   \
    X(seq_add_not_seq, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_sequential_add",                \
      RC(tg_nn_sequential_add(f->fc, f->cv)))                                                     \
    X(rnn_hidden0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_rnn_new",                           \
      PTR(tg_nn_rnn_new(M, "r", 4, 0, NULL)))                                                     \
    X(lstm_layers0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_lstm_new",                         \
      PTR(tg_nn_lstm_new(M, "r", 4, 5, rnn_with(0, 0))))                          \
    X(gru_dropout2, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_gru_new",                          \
      PTR(tg_nn_gru_new(M, "r", 4, 5, rnn_with(2, 2.0))))                         \
    X(lstm_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, ("tg_nn_lstm_new"),                                      \
      PTR(tg_nn_lstm_new(M, "r", OVF, OVF, NULL)))                                                \
    X(gru_layers_huge, PC, TG_ERR_NOMEM, TG_ERR_INVALID, "tg_nn_gru_new",                                     \
      PTR(tg_nn_gru_new(M, "r", 4, 4, rnn_with(1 << 30, 0))))                     \
    X(mha_heads0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_mha_new",                            \
      PTR(tg_nn_mha_new(M, "a", 4, 0, true, false)))                                              \
    X(mha_heads_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_mha_new",                         \
      PTR(tg_nn_mha_new(M, "a", 4, -2, true, false)))                                             \
    /* mha makes its projections with tg_nn_linear_new: the message names    \
     * that layer inside it */                                                 \
    X(mha_overflow, PC, TG_ERR_NOMEM, TG_ERR_INVALID, "'a.q_proj.weight'",                                          \
      PTR(tg_nn_mha_new(M, "a", OVF, 1, true, false)))                                            \
    /* ---- nn.h: forwards (errors on the step context) -------------------------------- */      \
    X(forward_null_mod, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_module_forward",                  \
      PTR(tg_module_forward(CC, NULL, f->x)))                                                     \
    X(forward_null_x, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_module_forward",                    \
      PTR(tg_module_forward(CC, f->fc, NULL)))                                                    \
    X(forward_linear_i64, CC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_module_forward",                    \
      PTR(tg_module_forward(CC, f->fc, f->xi)))                                                   \
    X(forward_linear_f64, CC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_module_forward",                    \
      PTR(tg_module_forward(CC, f->fc, f->xd)))                                                   \
    X(forward_linear_shape, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_module_forward",                  \
      PTR(tg_module_forward(CC, f->fc, f->img)))                                                  \
    X(forward_conv_rank, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_module_forward",                     \
      PTR(tg_module_forward(CC, f->cv, f->x)))                                                    \
    X(forward_conv_small, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_module_forward",                    \
      PTR(tg_module_forward(CC, f->cv, tg_tensor_new(CC, TG_F32, TG_SHAPE(1, 3, 2, 2)))))         \
    X(forward_conv_empty, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_module_forward",                    \
      PTR(tg_module_forward(CC, f->cv, tg_tensor_new(CC, TG_F32, TG_SHAPE(0, 3, 0, 8)))))         \
    X(forward_emb_f32, CC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_module_forward",                       \
      PTR(tg_module_forward(CC, f->emb, f->x)))                                                   \
    X(forward_emb_range, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_module_forward",                 \
      PTR(tg_module_forward(CC, f->emb, tg_full(CC, TG_I64, TG_SHAPE(2), 6))))                    \
    X(forward_emb_neg, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_module_forward",                   \
      PTR(tg_module_forward(CC, f->emb, tg_full(CC, TG_I64, TG_SHAPE(2), -1))))                   \
    X(forward_bn_rank, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_module_forward",                       \
      PTR(tg_module_forward(CC, f->bn, f->img)))                                                  \
    X(rnn_forward_null_out, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_rnn_forward",              \
      PTR(tg_nn_rnn_forward(CC, f->lstm, f->seqx, NULL, NULL, NULL, NULL, NULL)))                 \
    X(rnn_forward_not_rnn, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_rnn_forward",               \
      PTR(tg_nn_rnn_forward(CC, f->fc, f->seqx, NULL, NULL, (tg_tensor *[1]){0}, NULL, NULL)))     \
    X(rnn_forward_rank, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_nn_rnn_forward",                      \
      PTR(tg_nn_rnn_forward(CC, f->lstm, f->x, NULL, NULL, (tg_tensor *[1]){0}, NULL, NULL)))      \
    X(rnn_forward_h0, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_nn_rnn_forward",                        \
      PTR(tg_nn_rnn_forward(CC, f->lstm, f->seqx, f->x, NULL, (tg_tensor *[1]){0}, NULL, NULL)))   \
    X(rnn_forward_dtype, CC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_nn_rnn_forward",                     \
      PTR(tg_nn_rnn_forward(CC, f->lstm, tg_full(CC, TG_F64, TG_SHAPE(2, 3, 4), 1), NULL, NULL,    \
                            (tg_tensor *[1]){0}, NULL, NULL)))                                    \
    X(rnn_forward_empty_t, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_nn_rnn_forward",                   \
      PTR(tg_nn_rnn_forward(CC, f->lstm, tg_tensor_new(CC, TG_F32, TG_SHAPE(2, 0, 4)), NULL, NULL, \
                            (tg_tensor *[1]){0}, NULL, NULL)))                                    \
    X(mha_forward_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_mha_forward",                  \
      PTR(tg_nn_mha_forward(CC, NULL, f->seqx, f->seqx, f->seqx, NULL)))                          \
    X(mha_forward_not_mha, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_mha_forward",               \
      PTR(tg_nn_mha_forward(CC, f->lstm, f->seqx, f->seqx, f->seqx, NULL)))                       \
    X(mha_forward_shape, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_nn_mha_forward",                     \
      PTR(tg_nn_mha_forward(CC, f->mha, f->seqx, f->img, f->seqx, NULL)))                         \
    X(mha_forward_mask, CC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_nn_mha_forward",                      \
      PTR(tg_nn_mha_forward(CC, f->mha, f->seqx, f->seqx, f->seqx, f->img)))                      \
    X(mha_forward_dtype, CC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_nn_mha_forward",                     \
      PTR(tg_nn_mha_forward(CC, f->mha, f->seqx, f->seqx, tg_full(CC, TG_I64, TG_SHAPE(2, 3, 4),  \
                                                                  1), NULL)))                     \
    /* ---- optim.h (errors on the optimizer's context) -------------------------------- */      \
    X(adam_null_params, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adam_new",                        \
      PTR(tg_adam_new(PC, NULL, 1, NULL)))                                                        \
    X(adam_n0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adam_new",                                 \
      PTR(tg_adam_new(PC, tg_model_params(M), 0, NULL)))                                          \
    X(adam_n_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adam_new",                              \
      PTR(tg_adam_new(PC, tg_model_params(M), -3, NULL)))                                         \
    X(adam_lr_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adam_new",                             \
      PTR(tg_adam_new(PC, tg_model_params(M), 1, adam_with(-1, 0.9, 1e-8))))     \
    X(adam_beta1, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adam_new",                              \
      PTR(tg_adam_new(PC, tg_model_params(M), 1, adam_with(1e-3, 1.0, 1e-8))))   \
    X(adamw_eps_inf, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adamw_new",                          \
      PTR(tg_adamw_new(PC, tg_model_params(M), 1,                                                 \
                       adam_with(1e-3, 0.9, INFINITY))))                        \
    X(sgd_nesterov, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_sgd_new",                             \
      PTR(tg_sgd_new(PC, tg_model_params(M), 1,                                                   \
                     sgd_nesterov_without_momentum())))                           \
    X(sgd_i64_param, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_sgd_new",                            \
      PTR(tg_sgd_new(PC, &f->pi, 1, NULL)))                                                       \
    X(sgd_no_grad_param, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_sgd_new",                        \
      PTR(tg_sgd_new(PC, &f->pf, 1, NULL)))                                                       \
    X(sgd_nonleaf, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_sgd_new",                              \
      PTR(tg_sgd_new(PC, &f->nonleaf, 1, NULL)))                                                  \
    X(rmsprop_twice, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_rmsprop_new",                        \
      PTR(tg_rmsprop_new(PC, (tg_tensor *[2]){tg_model_param(M, 0), tg_model_param(M, 0)}, 2,     \
                         NULL)))                                                                  \
    X(adagrad_null_entry, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_adagrad_new",                   \
      PTR(tg_adagrad_new(PC, (tg_tensor *[2]){tg_model_param(M, 0), NULL}, 2, NULL)))             \
    X(step_freed, PC2, TG_ERR_MISUSE, TG_ERR_MISUSE, "tg_optim_step", RC(tg_optim_step(f->dead))) \
    X(reset_freed, PC2, TG_ERR_MISUSE, TG_ERR_MISUSE, "tg_optim_reset",                           \
      RC(tg_optim_reset(f->dead)))                                                                \
    X(set_lr_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_set_lr",                          \
      RC(tg_optim_set_lr(f->opt, -1)))                                                            \
    X(set_lr_nan, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_set_lr",                          \
      RC(tg_optim_set_lr(f->opt, NAN)))                                                           \
    X(state_load_dtype, PC, TG_ERR_DTYPE, TG_ERR_SHAPE, "tg_optim_load_state",                    \
      RC(load_state_wrong(f, 0)))                                                                 \
    X(state_load_shape, PC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_optim_load_state",                    \
      RC(load_state_wrong(f, 1)))                                                                 \
    X(state_load_neg_step, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",             \
      RC(load_state_wrong(f, 2)))                                                                 \
    X(state_load_nan_lr, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",               \
      RC(load_state_wrong(f, 3)))                                                                 \
    X(state_load_repeated, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",             \
      RC(load_state_wrong(f, 4)))                                                                 \
    X(state_load_unknown, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",              \
      RC(load_state_wrong(f, 5)))                                                                 \
    X(state_load_missing, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",              \
      RC(load_state_wrong(f, 6)))                                                                 \
    X(state_load_null, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",                 \
      RC(tg_optim_load_state(f->opt, 3, NULL, NULL)))                                             \
    X(state_load_neg_n, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_load_state",                \
      RC(tg_optim_load_state(f->opt, -1, NULL, NULL)))                                            \
    X(state_count_freed, PC2, TG_ERR_MISUSE, TG_ERR_INVALID, "", NEG(tg_optim_state_count(f->dead))) \
    X(apply_schedule_null, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_apply_schedule",         \
      RC(tg_optim_apply_schedule(f->opt, NULL)))                                                  \
    X(apply_schedule_bad, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_optim_apply_schedule",          \
      RC(tg_optim_apply_schedule(f->opt, bad_step_schedule())))            \
    X(clip_norm_neg_n, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_clip_grad_norm",                   \
      RC(tg_clip_grad_norm(CC, tg_model_params(M), -1, 1, 2, false, NULL)))                       \
    X(clip_norm_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_clip_grad_norm",                    \
      RC(tg_clip_grad_norm(CC, NULL, 2, 1, 2, false, NULL)))                                      \
    X(clip_norm_nan, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_clip_grad_norm",                     \
      RC(tg_clip_grad_norm(CC, tg_model_params(M), 1, NAN, 2, false, NULL)))                      \
    X(clip_norm_type0, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_clip_grad_norm",                   \
      RC(tg_clip_grad_norm(CC, tg_model_params(M), 1, 1, 0, false, NULL)))                        \
    X(clip_value_neg, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_clip_grad_value",                   \
      RC(tg_clip_grad_value(CC, tg_model_params(M), 1, -1)))                                      \
    X(clip_value_null_entry, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_clip_grad_value",            \
      RC(tg_clip_grad_value(CC, (tg_tensor *[1]){NULL}, 1, 1)))                                   \
    /* ---- io.h ------------------------------------------------------------------------ */     \
    X(st_write_null_path, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_write",             \
      RC(tg_safetensors_write(CC, NULL, 1, &f->x, (const char *[]){"x"}, 0, NULL, NULL)))         \
    X(st_write_neg_n, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_write",                 \
      RC(tg_safetensors_write(CC, "x", -1, NULL, NULL, 0, NULL, NULL)))                           \
    X(st_write_huge_n, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_write",                \
      RC(tg_safetensors_write(CC, "x", 1 << 30, NULL, NULL, 0, NULL, NULL)))                      \
    X(st_write_null_tensor, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_write",           \
      RC(tg_safetensors_write(CC, "x", 1, (tg_tensor *[1]){NULL}, (const char *[]){"x"}, 0, NULL, \
                              NULL)))                                                             \
    X(st_write_unnamed, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_write",               \
      RC(tg_safetensors_write(CC, "x", 1, &f->x, NULL, 0, NULL, NULL)))                           \
    X(st_write_meta_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_write",             \
      RC(tg_safetensors_write(CC, "x", 1, &f->x, (const char *[]){"x"}, 2, NULL, NULL)))          \
    X(st_write_no_dir, CC, TG_ERR_IO, TG_ERR_IO, "tg_safetensors_write",                          \
      RC(tg_safetensors_write(CC, missing_path(), 1, &f->x, (const char *[]){"x"}, 0, NULL,       \
                              NULL)))                                                             \
    X(st_read_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_safetensors_read",                    \
      PTR(tg_safetensors_read(CC, NULL)))                                                         \
    X(st_read_missing, CC, TG_ERR_IO, TG_ERR_IO, "tg_safetensors_read",                           \
      PTR(tg_safetensors_read(CC, missing_path())))                                               \
    X(st_read_dir, CC, TG_ERR_IO, TG_ERR_FORMAT, "tg_safetensors_read",                           \
      PTR(tg_safetensors_read(CC, tmp_dir())))                                                    \
    X(st_parse_null, CC, TG_ERR_INVALID, TG_ERR_FORMAT, "tg_safetensors_parse",                   \
      PTR(tg_safetensors_parse(CC, NULL, 16)))                                                    \
    X(st_parse_empty, CC, TG_ERR_FORMAT, TG_ERR_FORMAT, "tg_safetensors_parse",                   \
      PTR(tg_safetensors_parse(CC, "", 0)))                                                       \
    X(st_parse_huge_header, CC, TG_ERR_FORMAT, TG_ERR_FORMAT, "tg_safetensors_parse",             \
      PTR(tg_safetensors_parse(CC, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10)))                    \
    X(npy_write_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_npy_write",                         \
      RC(tg_npy_write(CC, "x.npy", NULL)))                                                        \
    X(npy_write_no_dir, CC, TG_ERR_IO, TG_ERR_IO, "tg_npy_write",                                 \
      RC(tg_npy_write(CC, missing_path(), f->x)))                                                 \
    X(npy_read_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_npy_read", PTR(tg_npy_read(CC, NULL))) \
    X(npy_read_missing, CC, TG_ERR_IO, TG_ERR_IO, "tg_npy_read",                                  \
      PTR(tg_npy_read(CC, missing_path())))                                                       \
    X(npy_parse_short, CC, TG_ERR_FORMAT, TG_ERR_FORMAT, "tg_npy_parse",                          \
      PTR(tg_npy_parse(CC, "\x93NUMPY", 6)))                                                      \
    X(npy_parse_null, CC, TG_ERR_INVALID, TG_ERR_FORMAT, "tg_npy_parse",                          \
      PTR(tg_npy_parse(CC, NULL, 100)))                                                           \
    X(ckpt_save_null_path, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_checkpoint_save",             \
      RC(tg_checkpoint_save(CC, NULL, &(tg_checkpoint){.model = M})))                             \
    X(ckpt_save_null_ck, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_checkpoint_save",                \
      RC(tg_checkpoint_save(CC, missing_path(), NULL)))                                           \
    X(ckpt_save_reserved_meta, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_checkpoint_save",          \
      RC(tg_checkpoint_save(CC, missing_path(), &(tg_checkpoint){.model = M, .n_meta = 1,         \
          .meta_keys = (const char *[]){"format"}, .meta_values = (const char *[]){"x"}})))       \
    X(ckpt_save_neg_meta, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_checkpoint_save",               \
      RC(tg_checkpoint_save(CC, missing_path(), &(tg_checkpoint){.model = M, .n_meta = -1})))     \
    X(ckpt_save_no_dir, CC, TG_ERR_IO, TG_ERR_IO, "tg_",                                          \
      RC(tg_checkpoint_save(CC, missing_path(), &(tg_checkpoint){.model = M, .optim = f->opt})))  \
    X(ckpt_load_missing, CC, TG_ERR_IO, TG_ERR_IO, "tg_",                                         \
      RC(tg_checkpoint_load(CC, missing_path(), &(tg_checkpoint){.model = M, .optim = f->opt,     \
                                                                  .batcher = f->b, .rng = CC})))  \
    X(ckpt_load_null_ck, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_checkpoint_load",                \
      RC(tg_checkpoint_load(CC, missing_path(), NULL)))                                           \
    /* ---- data.h ---------------------------------------------------------------------- */     \
    X(idx_read_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_idx_read",                           \
      PTR(tg_idx_read(CC, NULL, NULL)))                                                           \
    X(idx_read_missing, CC, TG_ERR_IO, TG_ERR_IO, "tg_idx_read",                                  \
      PTR(tg_idx_read(CC, missing_path(), NULL)))                                                 \
    X(idx_bad_dtype, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_idx_parse",                          \
      PTR(tg_idx_parse(CC, "\0\0\x08\x01\0\0\0\x01\x07", 9, &(tg_idx_opts){.dtype = 7})))         \
    X(idx_f32_as_i64, CC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_idx_parse",                             \
      PTR(tg_idx_parse(CC, "\0\0\x0d\x01\0\0\0\x01\0\0\0\0", 12,                                  \
                       &(tg_idx_opts){.dtype = TG_I64})))                                         \
    X(idx_overflow_dims, CC, TG_ERR_FORMAT, TG_ERR_FORMAT, "tg_idx_parse",                        \
      PTR(tg_idx_parse(CC, "\0\0\x0e\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"         \
                           "\xff\xff\xff\xff",                                                    \
                       20, NULL)))                                                                \
    X(idx_parse_null, CC, TG_ERR_INVALID, TG_ERR_FORMAT, "tg_idx_parse",                          \
      PTR(tg_idx_parse(CC, NULL, 9, NULL)))                                                       \
    X(csv_bad_delim, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_csv_parse",                          \
      PTR(tg_csv_parse(CC, "a\n1\n", 4, &(tg_csv_opts){.delimiter = '"', .header = true,          \
                                                      .label_col = -1})))                         \
    X(csv_i64_dtype, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_csv_parse",                          \
      PTR(tg_csv_parse(CC, "a\n1\n", 4, &(tg_csv_opts){.delimiter = ',', .header = true,          \
                                                      .label_col = -1, .dtype = TG_I64})))        \
    X(csv_label_name_no_header, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_csv_parse",               \
      PTR(tg_csv_parse(CC, "1\n", 2, &(tg_csv_opts){.delimiter = ',', .label_col = -1,            \
                                                   .label_name = "y"})))                          \
    X(csv_label_col_huge, CC, TG_ERR_FORMAT, TG_ERR_INVALID, "tg_csv_parse",                      \
      PTR(tg_csv_parse(CC, "a\n1\n", 4, &(tg_csv_opts){.delimiter = ',', .header = true,          \
                                                      .label_col = 1 << 30})))                    \
    X(csv_parse_null, CC, TG_ERR_INVALID, TG_ERR_FORMAT, "tg_csv_parse",                          \
      PTR(tg_csv_parse(CC, NULL, 5, NULL)))                                                       \
    X(csv_read_missing, CC, TG_ERR_IO, TG_ERR_IO, "tg_csv_read",                                  \
      PTR(tg_csv_read(CC, missing_path(), NULL)))                                                 \
    X(text_bad_unit, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_text_parse",                         \
      PTR(tg_text_parse(CC, "ab", 2, (tg_text_unit)5, &(tg_vocab *){NULL})))                      \
    X(text_null_vocab, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_text_parse",                       \
      PTR(tg_text_parse(CC, "ab", 2, TG_TEXT_BYTES, NULL)))                                       \
    X(text_bad_utf8, CC, TG_ERR_FORMAT, TG_ERR_FORMAT, "tg_text_parse",                           \
      PTR(tg_text_parse(CC, "a\xc0\x80", 3, TG_TEXT_UTF8, &(tg_vocab *){NULL})))                  \
    X(text_read_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_text_read",                         \
      PTR(tg_text_read(CC, NULL, TG_TEXT_BYTES, &(tg_vocab *){NULL})))                            \
    X(vocab_new_neg, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_vocab_new",                          \
      PTR(tg_vocab_new(CC, TG_TEXT_BYTES, units_bad, -1)))                                        \
    X(vocab_new_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_vocab_new",                         \
      PTR(tg_vocab_new(CC, TG_TEXT_UTF8, NULL, 2)))                                               \
    X(vocab_new_surrogate, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_vocab_new",                    \
      PTR(tg_vocab_new(CC, TG_TEXT_UTF8, units_bad, 2)))                                          \
    X(vocab_new_not_byte, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_vocab_new",                     \
      PTR(tg_vocab_new(CC, TG_TEXT_BYTES, units_bad + 1, 1)))                                     \
    X(vocab_new_huge, CC, TG_ERR_NOMEM, TG_ERR_INVALID, "tg_vocab_new",                                       \
      PTR(tg_vocab_new(CC, TG_TEXT_UTF8, units_bad, HUGE_DIM)))                                   \
    X(vocab_encode_null, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_vocab_encode",                   \
      PTR(tg_vocab_encode(CC, NULL, "ab", 2)))                                                    \
    X(vocab_encode_unknown, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_vocab_encode",                \
      PTR(tg_vocab_encode(CC, tg_vocab_new(CC, TG_TEXT_BYTES, units_bad, 1), "ab", 2)))           \
    X(batcher_n_neg, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_new",                        \
      PTR(tg_batcher_new(CC, -1, NULL)))                                                          \
    X(batcher_batch0, CC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_new",                       \
      PTR(tg_batcher_new(CC, 10, &(tg_batcher_opts){.batch_size = 0})))                           \
    X(batcher_huge, CC, TG_ERR_NOMEM, TG_ERR_INVALID, "tg_batcher_new",                                       \
      PTR(tg_batcher_new(CC, HUGE_DIM, NULL)))                                                    \
    X(batcher_state_n, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_set_state",                \
      RC(set_state_with(f, 0)))                                                                   \
    X(batcher_state_pos, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_set_state",              \
      RC(set_state_with(f, 1)))                                                                   \
    X(batcher_state_epoch, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_set_state",            \
      RC(set_state_with(f, 2)))                                                                   \
    X(batcher_state_rng0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_set_state",             \
      RC(set_state_with(f, 3)))                                                                   \
    X(batcher_state_pos_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_set_state",          \
      RC(set_state_with(f, 4)))                                                                   \
    X(batcher_state_null, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_batcher_set_state",             \
      RC(tg_batcher_set_state(f->b, NULL)))                                                       \
    X(gather_null_idx, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_gather_rows",                      \
      RC(tg_gather_rows(PC, f->dst, f->src, NULL, 2)))                                            \
    X(gather_neg_n, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_gather_rows",                         \
      RC(tg_gather_rows(PC, f->dst, f->src, (const int64_t[]){0}, -1)))                           \
    X(gather_too_many, PC, TG_ERR_SHAPE, TG_ERR_INVALID, "tg_gather_rows",                        \
      RC(tg_gather_rows(PC, f->dst, f->src, (const int64_t[]){0, 1, 2, 3, 4}, 5)))                \
    X(gather_huge_n, PC, TG_ERR_SHAPE, TG_ERR_INVALID, "tg_gather_rows",                          \
      RC(tg_gather_rows(PC, f->dst, f->src, (const int64_t[]){0}, HUGE_DIM)))                     \
    X(gather_index_range, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_gather_rows",                   \
      RC(tg_gather_rows(PC, f->dst, f->src, (const int64_t[]){0, 10}, 2)))                        \
    X(gather_index_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_gather_rows",                     \
      RC(tg_gather_rows(PC, f->dst, f->src, (const int64_t[]){-1}, 1)))                           \
    X(gather_dtype, PC, TG_ERR_DTYPE, TG_ERR_DTYPE, "tg_gather_rows",                             \
      RC(tg_gather_rows(PC, tg_tensor_new(PC, TG_F64, TG_SHAPE(4, 4)), f->src,                    \
                        (const int64_t[]){0}, 1)))                                                \
    X(gather_shape, PC, TG_ERR_SHAPE, TG_ERR_SHAPE, "tg_gather_rows",                             \
      RC(tg_gather_rows(PC, tg_tensor_new(PC, TG_F32, TG_SHAPE(4, 5)), f->src,                    \
                        (const int64_t[]){0}, 1)))                                                \
    X(gather_strided, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_gather_rows",                       \
      RC(tg_gather_rows(PC, f->dst, f->view, (const int64_t[]){0}, 1)))                           \
    X(gather_shared, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_gather_rows",                        \
      RC(tg_gather_rows(PC, f->src, f->src, (const int64_t[]){0}, 1)))

/*
 * Bad convolution and pooling options are refused by the layer
 * constructors themselves, with the ops' own checks (the conv and nn
 * suites test those at the op).
 */
#define CONSTRUCTOR_OPTION_CASES(X) \
    X(conv2d_stride0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_conv2d_new",                     \
      PTR(tg_nn_conv2d_new(M, "c", 3, 4, 3, 3, conv_with(0, 0), true)))        \
    X(conv2d_pad_neg, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_conv2d_new",                     \
      PTR(tg_nn_conv2d_new(M, "c", 3, 4, 3, 3, conv_with(1, -1), true)))       \
    X(conv2d_dilation0, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_conv2d_new",                   \
      PTR(tg_nn_conv2d_new(M, "c", 3, 4, 3, 3, conv_with(2, 0), true)))        \
    X(avgpool_pad, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_avg_pool2d_new",                    \
      PTR(tg_nn_avg_pool2d_new(M, "p", pool_with(2, 2))))                      \
    X(avgpool_huge, PC, TG_ERR_INVALID, TG_ERR_INVALID, "tg_nn_avg_pool2d_new",                   \
      PTR(tg_nn_avg_pool2d_new(M, "p", pool_with(HUGE_DIM, 0))))

#define ALL_CASES(X) HOSTILE_CASES(X) CONSTRUCTOR_OPTION_CASES(X)

#define DEFINE_RUN(name, where, st, st2, fn, ...) \
    static void run_##name(fx *f)             \
    {                                         \
        (void)f;                              \
        __VA_ARGS__;                          \
    }
ALL_CASES(DEFINE_RUN)
#undef DEFINE_RUN

typedef struct {
    const char *name;
    int where; /* 0: pc, 1: c, 2: pc2 */
    tg_status want, want2;
    const char *fn;
    void (*run)(fx *f);
} hostile_case;

#define WHERE_PC 0
#define WHERE_CC 1
#define WHERE_PC2 2
#define ROW(name, where, st, st2, fn, ...) {#name, WHERE_##where, st, st2, fn, run_##name},
static const hostile_case cases[] = {ALL_CASES(ROW)};
#undef ROW
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

START_TEST(test_hostile_table)
{
    const hostile_case *e = &cases[_i];
    fx fix;
    fx *f = &fix;
    fx_init(f);
    tg_ctx *where = e->where == 0 ? f->pc : e->where == 1 ? f->c : f->pc2;
    e->run(f);

    switch (f->kind) {
    case K_PTR: ck_assert_msg(f->ptr == NULL, "%s: returned a result", e->name); break;
    case K_RC:
        ck_assert_msg(f->rc == e->want || f->rc == e->want2, "%s: returned %s", e->name,
                      tg_status_str(f->rc));
        break;
    case K_NEG: ck_assert_msg(f->neg < 0, "%s: returned %lld", e->name, (long long)f->neg); break;
    default: ck_abort_msg("%s: the case called nothing", e->name);
    }
    tg_status st = tg_ctx_status(where);
    ck_assert_msg(st == e->want || st == e->want2, "%s: status %s, want %s (message \"%s\")",
                  e->name, tg_status_str(st), tg_status_str(e->want), tg_ctx_errmsg(where));
    const char *msg = tg_ctx_errmsg(where);
    ck_assert_msg(msg && strlen(msg) > 8, "%s: no message", e->name);
    ck_assert_msg(strstr(msg, e->fn) != NULL, "%s: message \"%s\" lacks \"%s\"", e->name, msg,
                  e->fn);
    /* every context works again, and the model, the optimizer and the
     * batcher are as they were */
    tg_ctx_clear_error(where);
    tu_assert_ok(f->pc);
    tu_assert_ok(f->c);
    tu_assert_ok(f->pc2);
    size_t len;
    unsigned char *now = snapshot(f, &len);
    ck_assert_msg(len == f->snap_len && memcmp(now, f->snap, len) == 0,
                  "%s: the model, optimizer or batcher changed", e->name);
    free(now);
    train_step(f);
    tu_assert_ok(f->pc);
    ck_assert_ptr_nonnull(tg_nn_linear_new(f->m, "after", 2, 2, true));
    ck_assert_ptr_nonnull(tg_nn_linear_new(f->m2, "after", 2, 2, true));
    fx_free(f);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Functions that answer through their return value                       */
/* ---------------------------------------------------------------------- */

START_TEST(test_return_value_only)
{
    fx fix;
    fx *f = &fix;
    fx_init(f);
    /* accessors on NULL */
    ck_assert_ptr_null(tg_model_ctx(NULL));
    ck_assert_int_eq(tg_model_nparams(NULL), 0);
    ck_assert_int_eq(tg_model_nbuffers(NULL), 0);
    ck_assert_ptr_null(tg_model_param(NULL, 0));
    ck_assert_ptr_null(tg_model_params(NULL));
    ck_assert_ptr_null(tg_model_buffer(NULL, 0));
    ck_assert_ptr_null(tg_model_find(NULL, "fc.weight"));
    ck_assert_ptr_null(tg_model_find(f->m, NULL));
    ck_assert_int_eq(tg_model_numel(NULL), 0);
    tg_model_zero_grad(NULL);
    ck_assert(!tg_model_training(NULL));
    (void)tg_model_set_training(NULL, false);
    tu_assert_status(tg_model_set_dtype(NULL, TG_F64), TG_ERR_INVALID);
    tu_assert_status(tg_model_add_param(NULL, "p", f->pf), TG_ERR_INVALID);
    tu_assert_status(tg_model_add_buffer(NULL, "p", f->pf), TG_ERR_INVALID);
    tu_assert_status(tg_model_load(NULL, 0, NULL, NULL, true), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_model_name(NULL, "x"));
    ck_assert_ptr_null(tg_model_param(f->m, -1));
    ck_assert_ptr_null(tg_model_param(f->m, 1 << 30));
    ck_assert_ptr_null(tg_model_buffer(f->m, -1));
    ck_assert_str_eq(tg_module_name(NULL), "");
    ck_assert_str_eq(tg_module_kind(NULL), "?");
    ck_assert_ptr_null(tg_module_get(NULL, "weight"));
    ck_assert_ptr_null(tg_module_get(f->fc, NULL));
    ck_assert_ptr_null(tg_module_get(f->fc, "nope"));
    ck_assert_ptr_null(tg_module_model(NULL));
    ck_assert_int_eq(tg_nn_sequential_len(NULL), 0);
    ck_assert_ptr_null(tg_nn_sequential_child(NULL, 0));
    ck_assert_ptr_null(tg_nn_sequential_child(f->seq, -1));
    ck_assert_ptr_null(tg_nn_sequential_child(f->seq, 1 << 30));
    ck_assert_ptr_null(tg_nn_sequential_child(f->fc, 0));
    tu_assert_status(tg_nn_sequential_add(NULL, f->fc), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_nn_linear_new(NULL, "x", 1, 1, true));
    ck_assert_ptr_null(tg_nn_relu_new(NULL));
    ck_assert_ptr_null(tg_nn_sequential_new(NULL, "s"));
    ck_assert_ptr_null(tg_nn_lstm_new(NULL, "l", 1, 1, NULL));
    ck_assert_ptr_null(tg_nn_mha_new(NULL, "a", 2, 1, true, true));
    /* initialisers on NULL; fans record nothing */
    tu_assert_status(tg_init_uniform(NULL, 0, 1), TG_ERR_INVALID);
    tu_assert_status(tg_init_normal(NULL, 0, 1), TG_ERR_INVALID);
    tu_assert_status(tg_init_zeros(NULL), TG_ERR_INVALID);
    tu_assert_status(tg_init_ones(NULL), TG_ERR_INVALID);
    tu_assert_status(tg_init_xavier_normal(NULL, 1), TG_ERR_INVALID);
    tu_assert_status(tg_init_kaiming_uniform(NULL, 0, TG_FAN_IN, TG_NONLIN_RELU), TG_ERR_INVALID);
    int64_t fi = -7, fo = -7;
    tu_assert_status(tg_init_fans(f->pf, &fi, &fo), TG_ERR_INVALID);
    tu_assert_status(tg_init_fans(NULL, &fi, &fo), TG_ERR_INVALID);
    (void)tg_init_fans(tg_model_find(f->m, "fc.weight"), NULL, NULL); /* no crash */
    ck_assert(isnan(tg_init_gain((tg_nonlin)42, 0)));
    /* optimizers */
    ck_assert_ptr_null(tg_adam_new(NULL, tg_model_params(f->m), 1, NULL));
    tu_assert_status(tg_optim_step(NULL), TG_ERR_INVALID);
    tg_optim_zero_grad(NULL);
    tg_optim_zero_grad(f->dead);
    tg_optim_free(NULL);
    ck_assert(isnan(tg_optim_lr(NULL)));
    ck_assert(isnan(tg_optim_lr(f->dead)));
    tu_assert_status(tg_optim_set_lr(NULL, 0.1), TG_ERR_INVALID);
    ck_assert_int_eq(tg_optim_step_count(NULL), -1);
    ck_assert_int_eq(tg_optim_step_count(f->dead), -1);
    tu_assert_status(tg_optim_reset(NULL), TG_ERR_INVALID);
    ck_assert_str_eq(tg_optim_kind(NULL), "?");
    ck_assert_str_eq(tg_optim_kind(f->dead), "?");
    ck_assert_ptr_null(tg_optim_ctx(NULL));
    ck_assert_int_eq(tg_optim_nparams(NULL), 0);
    ck_assert_ptr_null(tg_optim_param(NULL, 0));
    ck_assert_ptr_null(tg_optim_param(f->opt, -1));
    ck_assert_ptr_null(tg_optim_param(f->opt, 1 << 30));
    tu_assert_status(tg_optim_init_state(NULL), TG_ERR_INVALID);
    ck_assert_int_lt(tg_optim_state_count(NULL), 0);
    const char *name = "x";
    tg_tensor *t = f->x;
    tu_assert_status(tg_optim_state_get(NULL, 0, &name, &t), TG_ERR_INVALID);
    tu_assert_status(tg_optim_state_get(f->opt, -1, &name, &t), TG_ERR_INVALID);
    tu_assert_status(tg_optim_state_get(f->opt, 1 << 30, &name, &t), TG_ERR_INVALID);
    tu_assert_status(tg_optim_state_get(f->opt, 0, NULL, NULL), TG_OK);
    ck_assert_ptr_null(tg_optim_state_find(NULL, "step"));
    ck_assert_ptr_null(tg_optim_state_find(f->opt, NULL));
    ck_assert_ptr_null(tg_optim_state_find(f->opt, "nope"));
    tu_assert_status(tg_optim_load_state(NULL, 0, NULL, NULL), TG_ERR_INVALID);
    tu_assert_status(tg_optim_apply_schedule(NULL, NULL), TG_ERR_INVALID);
    /* schedules are plain data: bad ones give a message, NaN rates */
    char msg[128] = "";
    static const tg_lr_schedule *none = NULL;
    tu_assert_status(tg_lr_check(none, msg, sizeof msg), TG_ERR_INVALID);
    tg_lr_schedule bad[] = {tg_lr_step(0.1, 0, 0.5),       tg_lr_step(0.1, -5, 0.5),
                            tg_lr_exponential(0.1, -1),    tg_lr_exponential(NAN, 0.9),
                            tg_lr_cosine(0.1, 0, 0),        tg_lr_cosine(0.1, 10, -1),
                            tg_lr_cosine_restarts(0.1, 0, 1, 0), tg_lr_cosine_restarts(0.1, 5, 0, 0),
                            tg_lr_one_cycle(0.1, 0),        tg_lr_one_cycle(-0.1, 100),
                            tg_lr_constant(INFINITY),       tg_lr_constant(-1)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg[0] = '\0';
        tu_assert_status(tg_lr_check(&bad[i], msg, sizeof msg), TG_ERR_INVALID);
        ck_assert_msg(strstr(msg, "tg_lr_schedule") != NULL, "schedule %zu: \"%s\"", i, msg);
        tu_assert_status(tg_lr_check(&bad[i], NULL, 0), TG_ERR_INVALID);
        ck_assert(isnan(tg_lr_at(&bad[i], 3)));
    }
    tg_lr_schedule kinds = tg_lr_constant(0.1);
    kinds.kind = (tg_lr_kind)99;
    tu_assert_status(tg_lr_check(&kinds, msg, sizeof msg), TG_ERR_INVALID);
    tg_lr_schedule warm = tg_lr_constant(0.1);
    warm.warmup_steps = -1;
    tu_assert_status(tg_lr_check(&warm, msg, 4), TG_ERR_INVALID); /* a short buffer */
    ck_assert_uint_le(strlen(msg), 3);
    ck_assert(isnan(tg_lr_at(NULL, 0)));
    tg_lr_schedule ok = tg_lr_constant(0.1);
    ck_assert(isnan(tg_lr_at(&ok, -1)));
    ck_assert(isnan(tg_lr_at(&ok, INT64_MIN)));
    /* io accessors on NULL and out of range */
    ck_assert_int_eq(tg_safetensors_count(NULL), 0);
    ck_assert_ptr_null(tg_safetensors_name(NULL, 0));
    ck_assert_ptr_null(tg_safetensors_tensor(NULL, 0));
    ck_assert_ptr_null(tg_safetensors_find(NULL, "x"));
    ck_assert_int_eq(tg_safetensors_meta_count(NULL), 0);
    ck_assert_ptr_null(tg_safetensors_meta_key(NULL, 0));
    ck_assert_ptr_null(tg_safetensors_meta(NULL, "x"));
    tu_assert_status(tg_safetensors_write(NULL, "x", 0, NULL, NULL, 0, NULL, NULL),
                     TG_ERR_INVALID);
    ck_assert_ptr_null(tg_safetensors_read(NULL, "x"));
    ck_assert_ptr_null(tg_safetensors_parse(NULL, "", 0));
    tu_assert_status(tg_npy_write(NULL, "x", f->x), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_npy_read(NULL, "x"));
    ck_assert_ptr_null(tg_npy_parse(NULL, "", 0));
    /* data accessors */
    ck_assert_ptr_null(tg_idx_read(NULL, "x", NULL));
    ck_assert_ptr_null(tg_idx_parse(NULL, "", 0, NULL));
    ck_assert_ptr_null(tg_csv_read(NULL, "x", NULL));
    ck_assert_ptr_null(tg_csv_parse(NULL, "", 0, NULL));
    ck_assert_ptr_null(tg_csv_features(NULL));
    ck_assert_ptr_null(tg_csv_labels(NULL));
    ck_assert_int_eq(tg_csv_rows(NULL), 0);
    ck_assert_int_eq(tg_csv_cols(NULL), 0);
    ck_assert_ptr_null(tg_csv_column_name(NULL, 0));
    ck_assert_ptr_null(tg_csv_label_column_name(NULL));
    ck_assert_int_eq(tg_csv_class_count(NULL), 0);
    ck_assert_ptr_null(tg_csv_class_name(NULL, 0));
    tg_csv *tab = tg_csv_parse(f->c, "a,b\n1,x\n2,y\n", 12,
                               &(tg_csv_opts){.delimiter = ',', .header = true, .label_col = 1});
    ck_assert_ptr_nonnull(tab);
    ck_assert_ptr_null(tg_csv_column_name(tab, -1));
    ck_assert_ptr_null(tg_csv_column_name(tab, INT64_MAX));
    ck_assert_ptr_null(tg_csv_class_name(tab, -1));
    ck_assert_ptr_null(tg_csv_class_name(tab, 2));
    ck_assert_ptr_null(tg_text_read(NULL, "x", TG_TEXT_BYTES, &(tg_vocab *){NULL}));
    ck_assert_ptr_null(tg_vocab_new(NULL, TG_TEXT_BYTES, units_bad, 1));
    ck_assert_int_eq(tg_vocab_size(NULL), 0);
    ck_assert_int_eq(tg_vocab_kind(NULL), TG_TEXT_BYTES);
    ck_assert_uint_eq(tg_vocab_unit(NULL, 0), UINT32_MAX);
    ck_assert_int_eq(tg_vocab_index(NULL, 65), -1);
    tg_vocab *v = tg_vocab_new(f->c, TG_TEXT_BYTES, units_bad, 1);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(tg_vocab_unit(v, -1), UINT32_MAX);
    ck_assert_uint_eq(tg_vocab_unit(v, INT64_MAX), UINT32_MAX);
    ck_assert_int_eq(tg_vocab_index(v, 0xFFFFFFFFu), -1);
    ck_assert_ptr_null(tg_vocab_encode(NULL, v, "A", 1));
    char buf[8] = "zzzz";
    int64_t ids[2] = {0, 1};
    ck_assert_int_eq(tg_vocab_decode(NULL, ids, 1, buf, sizeof buf), -1);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(tg_vocab_decode(v, NULL, 1, buf, sizeof buf), -1);
    ck_assert_int_eq(tg_vocab_decode(v, ids, -1, buf, sizeof buf), -1);
    ck_assert_int_eq(tg_vocab_decode(v, ids, 2, buf, sizeof buf), -1); /* index 1 */
    ck_assert_int_eq(tg_vocab_decode(v, (const int64_t[]){-1}, 1, buf, sizeof buf), -1);
    ck_assert_int_eq(tg_vocab_decode(v, ids, 1, NULL, 0), 1);
    ck_assert_ptr_null(tg_batcher_new(NULL, 10, NULL));
    const int64_t *idx = (const int64_t *)buf;
    ck_assert_int_eq(tg_batcher_next(NULL, &idx), -1);
    ck_assert_int_eq(tg_batcher_next(f->b, NULL), -1);
    ck_assert_int_eq(tg_batcher_batches(NULL), 0);
    ck_assert_int_eq(tg_batcher_epoch(NULL), 0);
    tg_batcher_state zero = tg_batcher_get_state(NULL);
    ck_assert(zero.n == 0 && zero.pos == 0 && zero.rng[0] == 0);
    tu_assert_status(tg_batcher_set_state(NULL, &zero), TG_ERR_INVALID);
    tu_assert_status(tg_gather_rows(NULL, f->dst, f->src, ids, 1), TG_ERR_INVALID);
    /* none of that touched a context */
    tu_assert_ok(f->pc);
    tu_assert_ok(f->c);
    size_t len;
    unsigned char *now = snapshot(f, &len);
    ck_assert(len == f->snap_len && memcmp(now, f->snap, len) == 0);
    free(now);
    train_step(f);
    fx_free(f);
}
END_TEST

/* Sticky errors: with an error already on a context, every constructor,
 * forward and step of these modules refuses to run and keeps the first
 * message. */
START_TEST(test_sticky)
{
    fx fix;
    fx *f = &fix;
    fx_init(f);
    tg_ctx_set_error(f->pc, TG_ERR_IO, "first");
    tg_ctx_set_error(f->c, TG_ERR_IO, "first");
    ck_assert_ptr_null(tg_nn_linear_new(f->m, "late", 2, 2, true));
    ck_assert_ptr_null(tg_nn_dropout_new(f->m, "late", 0.5));
    ck_assert_ptr_null(tg_adam_new(f->pc, tg_model_params(f->m), 1, NULL));
    tu_assert_status(tg_optim_step(f->opt), TG_ERR_IO);
    ck_assert_ptr_null(tg_module_forward(f->c, f->fc, f->x));
    ck_assert_ptr_null(tg_batcher_new(f->c, 10, NULL));
    tu_assert_status(tg_safetensors_write(f->c, "never", 1, &f->x, (const char *[]){"x"}, 0, NULL,
                                          NULL),
                     TG_ERR_IO);
    ck_assert(access("never", F_OK) != 0);
    ck_assert_str_eq(tg_ctx_errmsg(f->pc), "first");
    ck_assert_str_eq(tg_ctx_errmsg(f->c), "first");
    tg_ctx_clear_error(f->pc);
    tg_ctx_clear_error(f->c);
    size_t len;
    unsigned char *now = snapshot(f, &len);
    ck_assert(len == f->snap_len && memcmp(now, f->snap, len) == 0);
    free(now);
    train_step(f);
    fx_free(f);
}
END_TEST

Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tu_tcase("table");
    tcase_add_loop_test(tc, test_hostile_table, 0, N_CASES);
    suite_add_tcase(s, tc);
    tc = tu_tcase("return_values");
    tcase_add_test(tc, test_return_value_only);
    tcase_add_test(tc, test_sticky);
    suite_add_tcase(s, tc);
    return s;
}
