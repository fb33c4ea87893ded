/*
 * lstm.c - benchmark: embedding 65 -> 128, a 2-layer LSTM of hidden size
 * 128 (batch-first), linear head 128 -> 65, next-token cross-entropy,
 * Adam (lr 1e-3), batch 16 of the same random tokens as gpt.c (context
 * 64). Reference: torch_lstm.py. The first LSTM layer keeps no gates for
 * the backward, which recomputes them (recompute_gates; --no-recompute
 * keeps them): 2 MB less at the peak for one more pass of its forward.
 * Recomputing the second layer's too saves nothing more at the peak (its
 * gates are gone by the time the first layer's are recomputed) and costs
 * another pass.
 */
#include "bench.h"

#include <math.h>

#define V 65
#define T 64
#define D 128

typedef struct {
    tg_module *emb, *lstm[2], *head;
    tg_optim *opt;
    tg_tensor *idx, *tgt;
    int64_t batch;
} lstm;

static void *setup(tg_ctx *pc, int64_t batch)
{
    static lstm s;
    tg_model *m = tg_model_new(pc);
    /* the two layers as two one-layer modules (the same computation as one
     * two-layer LSTM): the first recomputes its gates in the backward, the
     * second keeps them */
    tg_rnn_opts ro = tg_rnn_defaults();
    s.batch = batch;
    s.emb = tg_nn_embedding_new(m, "emb", V, D);
    ro.recompute_gates = bench_recomputes(); /* its gates, 2 MB, not kept */
    s.lstm[0] = tg_nn_lstm_new(m, "lstm0", D, D, &ro);
    ro.recompute_gates = false;
    s.lstm[1] = tg_nn_lstm_new(m, "lstm1", D, D, &ro);
    s.head = tg_nn_linear_new(m, "head", D, V, true);
    tg_adam_opts ao = tg_adam_defaults();
    s.opt = tg_adam_new(pc, tg_model_params(m), tg_model_nparams(m), &ao);
    s.idx = tg_tensor_new(pc, TG_I64, TG_SHAPE(batch, T));
    s.tgt = tg_tensor_new(pc, TG_I64, TG_SHAPE(batch * T));
    if (tg_ctx_status(pc) != TG_OK) return NULL;
    int64_t *tok = tg_data(s.idx), *tg = tg_data(s.tgt);
    bench_fill_labels(tok, batch * T, V, 7);
    for (int64_t i = 0; i < batch * T; i++) tg[i] = tok[(i + 1) % (batch * T)];
    return &s;
}

static double step(void *st, tg_ctx *sc)
{
    lstm *s = st;
    tg_tensor *out = tg_module_forward(sc, s->emb, s->idx);
    for (int l = 0; l < 2; l++)
        tg_nn_rnn_forward(sc, s->lstm[l], out, NULL, NULL, &out, NULL, NULL);
    tg_tensor *logits = tg_module_forward(sc, s->head, out);
    tg_tensor *loss = tg_cross_entropy(sc, tg_reshape(sc, logits, TG_SHAPE(s->batch * T, V)),
                                       s->tgt);
    if (bench_step(sc, loss, s->opt) != TG_OK) return NAN;
    return tg_item(loss);
}

/* Per layer: the input projection of the whole sequence, then per step
 * the hidden-state product (the zero initial state needs no gradient);
 * then the head. */
static int gemms(void *st, int64_t batch, bench_gemm *g, int max)
{
    (void)st;
    int ng = 0, b = (int)batch;
    for (int l = 0; l < 2; l++) {
        bench_linear_gemms(g, &ng, max, b * T, D, 4 * D, true);
        for (int t = 0; t < T; t++) bench_linear_gemms(g, &ng, max, b, D, 4 * D, t > 0);
    }
    bench_linear_gemms(g, &ng, max, b * T, D, V, true);
    return ng;
}

int main(int argc, char **argv)
{
    const bench_workload w = {"lstm", 16, setup, step, gemms};
    return bench_main(argc, argv, &w);
}
