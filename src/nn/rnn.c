/*
 * rnn.c - RNN, LSTM and GRU layers (multi-layer, batch-first or not) as
 * compositions of ops, with PyTorch's parameter names, shapes, gate order
 * and initialisation, so PyTorch weights load unchanged.
 *
 * An LSTM layer is one op, tg_lstm, over the whole sequence. For an RNN or
 * GRU, per layer the input projection of every time step is one tg_linear
 * over the whole [B, T, I] sequence; each step then adds one [B, H] x
 * [H, G*H] GEMM of the hidden state, accumulated straight onto the step's
 * slice of the projection (tg_linear_add) for an RNN, while a GRU slices
 * the gates out as views. The hidden states of the steps are stacked into
 * the output with one tg_stack. The only scratch is an array of T tensor
 * pointers in the step arena.
 */
#include "nn_impl.h"

#include <math.h>
#include <string.h>

tg_rnn_opts tg_rnn_defaults(void)
{
    return (tg_rnn_opts){
        .num_layers = 1, .bias = true, .batch_first = true, .dropout = 0.0, .nonlin = TG_RNN_TANH};
}

static tg_module *rnn_new(tg_model *m, tg__nn_kind kind, int gates, const char *fn,
                          const char *name, int64_t input, int64_t hidden, const tg_rnn_opts *opts)
{
    if (!m || !tg__ok(m->ctx)) return NULL;
    tg_rnn_opts o = opts ? *opts : tg_rnn_defaults();
    const char *nm = name ? name : "";
    if (input < 1 || hidden < 1 || o.num_layers < 1 || o.num_layers > 1000) {
        tg__fail(m->ctx, TG_ERR_INVALID,
                 "%s: '%s': input_size %lld, hidden_size %lld, num_layers %d must be >= 1", fn, nm,
                 (long long)input, (long long)hidden, o.num_layers);
        return NULL;
    }
    if (!(o.dropout >= 0 && o.dropout <= 1)) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': dropout %g outside [0, 1]", fn, nm, o.dropout);
        return NULL;
    }
    if (o.nonlin != TG_RNN_TANH && o.nonlin != TG_RNN_RELU) {
        tg__fail(m->ctx, TG_ERR_INVALID, "%s: '%s': unknown nonlinearity %d", fn, nm,
                 (int)o.nonlin);
        return NULL;
    }
    tg_module *mod = tg__nn_module(m, kind, fn, name);
    if (!mod) return NULL;
    mod->in = input;
    mod->hidden = hidden;
    mod->rnn = o;
    mod->gates = gates;
    mod->rw = tg__arena_calloc(m->ctx, (size_t)o.num_layers * 4, sizeof *mod->rw);
    if (!mod->rw) return NULL;
    double bound = 1.0 / sqrt((double)hidden);
    int64_t gh = gates * hidden;
    for (int k = 0; k < o.num_layers; k++) {
        char nb[4][32];
        snprintf(nb[0], sizeof nb[0], "weight_ih_l%d", k);
        snprintf(nb[1], sizeof nb[1], "weight_hh_l%d", k);
        snprintf(nb[2], sizeof nb[2], "bias_ih_l%d", k);
        snprintf(nb[3], sizeof nb[3], "bias_hh_l%d", k);
        tg_tensor **w = mod->rw + 4 * k;
        w[0] = tg__nn_param(mod, fn, nb[0], TG_SHAPE(gh, k == 0 ? input : hidden));
        w[1] = tg__nn_param(mod, fn, nb[1], TG_SHAPE(gh, hidden));
        if (!w[0] || !w[1]) return NULL;
        if (o.bias) {
            w[2] = tg__nn_param(mod, fn, nb[2], TG_SHAPE(gh));
            w[3] = tg__nn_param(mod, fn, nb[3], TG_SHAPE(gh));
            if (!w[2] || !w[3]) return NULL;
        }
    }
    /* PyTorch's RNNBase.reset_parameters: every weight U(-1/sqrt(H), 1/sqrt(H)),
     * in registration order */
    for (int i = 0; i < mod->tensors.n; i++)
        if (tg_init_uniform(mod->tensors.v[i], -bound, bound) != TG_OK) return NULL;
    return mod;
}

tg_module *tg_nn_rnn_new(tg_model *m, const char *name, int64_t input, int64_t hidden,
                         const tg_rnn_opts *opts)
{
    return rnn_new(m, TG__NN_RNN, 1, "tg_nn_rnn_new", name, input, hidden, opts);
}

tg_module *tg_nn_lstm_new(tg_model *m, const char *name, int64_t input, int64_t hidden,
                          const tg_rnn_opts *opts)
{
    return rnn_new(m, TG__NN_LSTM, 4, "tg_nn_lstm_new", name, input, hidden, opts);
}

tg_module *tg_nn_gru_new(tg_model *m, const char *name, int64_t input, int64_t hidden,
                         const tg_rnn_opts *opts)
{
    return rnn_new(m, TG__NN_GRU, 3, "tg_nn_gru_new", name, input, hidden, opts);
}

/* Gate g ([B, H]) of a [B, G*H] pre-activation: a view. */
static tg_tensor *gate(tg_ctx *c, tg_tensor *pre, int g, int64_t H)
{
    return tg_slice(c, pre, 1, g * H, (g + 1) * H, 1);
}

/* Layer k's [B, H] view of a [L, B, H] initial state, or NULL. */
static tg_tensor *layer_state(tg_ctx *c, tg_tensor *s0, int k)
{
    return s0 ? tg_squeeze(c, tg_slice(c, s0, 0, k, k + 1, 1), 0) : NULL;
}

/* Layer k's state from a [L, B, H] initial state, or zeros. */
static tg_tensor *initial(tg_ctx *c, tg_tensor *s0, int k, int64_t B, int64_t H, tg_dtype dt)
{
    if (!s0) return tg_tensor_new(c, dt, TG_SHAPE(B, H));
    return layer_state(c, s0, k);
}

static bool check_state(tg_ctx *c, const char *fn, const tg_module *mod, const char *what,
                        const tg_tensor *s, int64_t B, tg_dtype dt)
{
    if (!s) return true;
    int64_t L = mod->rnn.num_layers, H = mod->hidden;
    if (s->ndim != 3 || s->shape[0] != L || s->shape[1] != B || s->shape[2] != H) {
        char b[96];
        tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "%s %s: expected [%lld,%lld,%lld]", what,
                    tg_shape_str(s, b, sizeof b), (long long)L, (long long)B, (long long)H);
        return false;
    }
    if (s->dtype != dt) {
        tg__nn_fail(c, TG_ERR_DTYPE, fn, mod, "%s is %s, parameters are %s", what,
                    tg_dtype_name(s->dtype), tg_dtype_name(dt));
        return false;
    }
    return true;
}

static tg_tensor *run(tg_ctx *c, const char *fn, tg_module *mod, tg_tensor *x, tg_tensor *h0,
                      tg_tensor *c0, tg_tensor **hn, tg_tensor **cn)
{
    const tg_rnn_opts *o = &mod->rnn;
    bool lstm = mod->kind == TG__NN_LSTM, gru = mod->kind == TG__NN_GRU;
    tg_dtype dt = mod->rw[0]->dtype;
    char b[96];
    if (x->ndim != 3 || x->shape[2] != mod->in) {
        tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "input %s: expected %s with input_size %lld",
                    tg_shape_str(x, b, sizeof b), o->batch_first ? "[B,T,I]" : "[T,B,I]",
                    (long long)mod->in);
        return NULL;
    }
    if (x->dtype != dt) {
        tg__nn_fail(c, TG_ERR_DTYPE, fn, mod, "input is %s, parameters are %s",
                    tg_dtype_name(x->dtype), tg_dtype_name(dt));
        return NULL;
    }
    if (c0 && !lstm) {
        tg__nn_fail(c, TG_ERR_INVALID, fn, mod, "c0 given, but only an LSTM has a cell state");
        return NULL;
    }
    tg_tensor *seq = o->batch_first ? x : tg_transpose(c, x, 0, 1); /* [B, T, I] */
    if (!seq) return NULL;
    int64_t B = seq->shape[0], T = seq->shape[1], H = mod->hidden;
    if (T < 1 || B < 1) {
        tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "input %s: empty batch or sequence",
                    tg_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (!check_state(c, fn, mod, "h0", h0, B, dt) || !check_state(c, fn, mod, "c0", c0, B, dt))
        return NULL;
    int L = o->num_layers;
    tg_tensor **hs = tg__arena_alloc(c, (size_t)(T + 2 * L) * sizeof *hs);
    if (!hs) return NULL;
    tg_tensor **hfin = hs + T, **cfin = hs + T + L;
    bool training = mod->model->training;

    for (int k = 0; k < L && seq; k++) {
        tg_tensor **w = mod->rw + 4 * k;
        if (lstm) {
            /* the cell states only when c_n is asked for */
            unsigned fl = cn ? TG_LSTM_CELLS : 0u;
            if (o->recompute_gates) fl |= TG_LSTM_RECOMPUTE;
            tg_tensor *y = tg_lstm(c, seq, w[0], w[1], w[2], w[3], layer_state(c, h0, k),
                                   layer_state(c, c0, k), fl);
            seq = cn ? tg_squeeze(c, tg_slice(c, y, 0, 0, 1, 1), 0) : y; /* [B, T, H] */
            /* the last step's h and c: [B, H] views */
            hfin[k] = tg_squeeze(c, tg_slice(c, seq, 1, T - 1, T, 1), 1);
            if (cn)
                cfin[k] = tg_squeeze(c, tg_slice(c, tg_squeeze(c, tg_slice(c, y, 0, 1, 2, 1), 0),
                                                 1, T - 1, T, 1), 1);
            if (!hfin[k] || (cn && !cfin[k])) return NULL;
            if (k < L - 1 && o->dropout > 0) seq = tg_dropout(c, seq, o->dropout, training);
            continue;
        }
        tg_tensor *xw = tg_linear(c, seq, w[0], w[2]); /* [B, T, G*H] */
        tg_tensor *h = initial(c, h0, k, B, H, dt);
        for (int64_t t = 0; t < T; t++) {
            tg_tensor *xt = tg_squeeze(c, tg_slice(c, xw, 1, t, t + 1, 1), 1); /* [B, G*H] */
            if (gru) {
                tg_tensor *hw = tg_linear(c, h, w[1], w[3]); /* [B, G*H] */
                tg_tensor *r = tg_sigmoid(c, tg_add(c, gate(c, xt, 0, H), gate(c, hw, 0, H)));
                tg_tensor *z = tg_sigmoid(c, tg_add(c, gate(c, xt, 1, H), gate(c, hw, 1, H)));
                tg_tensor *n =
                    tg_tanh(c, tg_add(c, gate(c, xt, 2, H), tg_mul(c, r, gate(c, hw, 2, H))));
                h = tg_add(c, n, tg_mul(c, z, tg_sub(c, h, n))); /* (1 - z) n + z h */
            } else {
                tg_tensor *pre = tg_linear_add(c, h, w[1], w[3], xt);
                h = o->nonlin == TG_RNN_RELU ? tg_relu(c, pre) : tg_tanh(c, pre);
            }
            hs[t] = h;
            if (!h) return NULL;
        }
        hfin[k] = h;
        /* No backward reads the projection (only views of it and
         * tg_linear_add's addend did): its memory goes to what follows,
         * the next layer's projection first. */
        tg__give_back_unread(xw);
        seq = tg_stack(c, hs, (int)T, 1); /* [B, T, H] */
        if (k < L - 1 && o->dropout > 0) seq = tg_dropout(c, seq, o->dropout, training);
    }
    if (!seq) return NULL;
    tg_tensor *h_n = tg_stack(c, hfin, L, 0);
    tg_tensor *c_n = lstm && cn ? tg_stack(c, cfin, L, 0) : NULL;
    if (!h_n || (lstm && cn && !c_n)) return NULL;
    if (hn) *hn = h_n;
    if (cn) *cn = c_n;
    return o->batch_first ? seq : tg_transpose(c, seq, 0, 1);
}

tg_tensor *tg_nn_rnn_forward(tg_ctx *c, tg_module *rnn, tg_tensor *x, tg_tensor *h0, tg_tensor *c0,
                             tg_tensor **out, tg_tensor **hn, tg_tensor **cn)
{
    const char *fn = "tg_nn_rnn_forward";
    if (out) *out = NULL;
    if (hn) *hn = NULL;
    if (cn) *cn = NULL;
    if (!tg__nn_begin(c, fn, rnn, x)) return NULL;
    if (!out) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL out", fn);
        return NULL;
    }
    if (rnn->kind != TG__NN_RNN && rnn->kind != TG__NN_LSTM && rnn->kind != TG__NN_GRU) {
        tg__nn_fail(c, TG_ERR_INVALID, fn, rnn, "not a recurrent layer");
        return NULL;
    }
    bool was_ok = tg__ok(c);
    tg_tensor *h_n = NULL, *c_n = NULL;
    tg_tensor *y = run(c, fn, rnn, x, h0, c0, &h_n, cn ? &c_n : NULL);
    y = tg__nn_blame(c, was_ok, fn, rnn, y);
    if (!y) return NULL;
    *out = y;
    if (hn) *hn = h_n;
    if (cn) *cn = c_n;
    return y;
}

tg_tensor *tg__nn_rnn_seq_forward(tg_ctx *c, tg_module *mod, tg_tensor *x)
{
    const char *fn = "tg_module_forward";
    bool was_ok = tg__ok(c);
    return tg__nn_blame(c, was_ok, fn, mod, run(c, fn, mod, x, NULL, NULL, NULL, NULL));
}
