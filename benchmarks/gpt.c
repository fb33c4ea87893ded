/*
 * gpt.c - benchmark: a 2-layer GPT (d_model 128, 4 heads, context 64,
 * vocabulary 65, pre-LN blocks x + attn(ln1(x)), x + mlp(ln2(x)) with a
 * GELU MLP of width 512, final LN, untied head without bias), next-token
 * cross-entropy, Adam (lr 1e-3), batch 16 of fixed random tokens.
 * Reference: torch_gpt.py.
 */
#include "bench.h"

#include <math.h>

#define V 65
#define T 64
#define D 128
#define H 4
#define L 2

typedef struct {
    tg_module *wte, *wpe, *ln1[L], *attn[L], *ln2[L], *fc[L], *proj[L], *lnf, *head;
    tg_optim *opt;
    tg_tensor *idx, *pos, *tgt;
    int64_t batch;
} gpt;

static void *setup(tg_ctx *pc, int64_t batch)
{
    static gpt s;
    tg_model *m = tg_model_new(pc);
    s.batch = batch;
    s.wte = tg_nn_embedding_new(m, "wte", V, D);
    s.wpe = tg_nn_embedding_new(m, "wpe", T, D);
    for (int l = 0; l < L; l++) {
        s.ln1[l] = tg_nn_layer_norm_new(m, tg_model_name(m, "h%d.ln1", l), 1, (const int64_t[]){D}, 1e-5, true);
        s.attn[l] = tg_nn_mha_new(m, tg_model_name(m, "h%d.attn", l), D, H, true, true);
        s.ln2[l] = tg_nn_layer_norm_new(m, tg_model_name(m, "h%d.ln2", l), 1, (const int64_t[]){D}, 1e-5, true);
        s.fc[l] = tg_nn_linear_new(m, tg_model_name(m, "h%d.mlp.0", l), D, 4 * D, true);
        s.proj[l] = tg_nn_linear_new(m, tg_model_name(m, "h%d.mlp.2", l), 4 * D, D, true);
    }
    s.lnf = tg_nn_layer_norm_new(m, "ln_f", 1, (const int64_t[]){D}, 1e-5, true);
    s.head = tg_nn_linear_new(m, "head", D, V, false);
    tg_adam_opts ao = tg_adam_defaults();
    s.opt = tg_adam_new(pc, tg_model_params(m), tg_model_nparams(m), &ao);
    s.idx = tg_tensor_new(pc, TG_I64, TG_SHAPE(batch, T));
    s.tgt = tg_tensor_new(pc, TG_I64, TG_SHAPE(batch * T));
    s.pos = tg_arange(pc, TG_I64, 0, T, 1);
    if (tg_ctx_status(pc) != TG_OK) return NULL;
    /* targets: the input shifted by one, as for a text */
    int64_t *tok = tg_data(s.idx), *tg = tg_data(s.tgt);
    bench_fill_labels(tok, batch * T, V, 7);
    for (int64_t i = 0; i < batch * T; i++) tg[i] = tok[(i + 1) % (batch * T)];
    return &s;
}

/* Activations go back to the arena once the forward is done with them
 * (bench_give_back): the residual summands and the token embeddings (no
 * backward reads them) and the layer norms' outputs (their backwards
 * recompute them, a few percent of the step). The GELU's output never
 * exists whole: the MLP runs GELU + proj as tg_gelu_linear, which makes it
 * a block of rows at a time (4.1 MB less at the peak than the two ops,
 * for 1-2 ms more per step), and its backward writes the gradient of its
 * input over the input (2.1 MB less again: peak RSS 28.9 -> 26.8 MB). */
static double step(void *st, tg_ctx *sc)
{
    gpt *s = st;
    tg_tensor *te = tg_module_forward(sc, s->wte, s->idx);
    tg_tensor *x = tg_add(sc, te, tg_module_forward(sc, s->wpe, s->pos)); /* [B, T, D] */
    bench_give_back(te);
    for (int l = 0; l < L; l++) {
        tg_tensor *h = tg_module_forward(sc, s->ln1[l], x);
        tg_tensor *a = tg_nn_mha_forward(sc, s->attn[l], h, h, h, NULL);
        bench_give_back(h);
        x = tg_add(sc, x, a);
        bench_give_back(a);
        h = tg_module_forward(sc, s->ln2[l], x);
        tg_tensor *p = tg_gelu_linear(sc, tg_module_forward(sc, s->fc[l], h),
                                      tg_module_get(s->proj[l], "weight"),
                                      tg_module_get(s->proj[l], "bias"));
        bench_give_back(h);
        x = tg_add(sc, x, p);
        bench_give_back(p);
    }
    tg_tensor *h = tg_module_forward(sc, s->lnf, x);
    tg_tensor *logits = tg_module_forward(sc, s->head, h);
    bench_give_back(h);
    tg_tensor *loss = tg_cross_entropy(sc, tg_reshape(sc, logits, TG_SHAPE(s->batch * T, V)),
                                       s->tgt);
    if (bench_step(sc, loss, s->opt) != TG_OK) return NAN;
    return tg_item(loss);
}

/* Per block: the q, k, v, out, fc and proj linears, and per (sample, head)
 * the two attention products with their four gradients; then the head. */
static int gemms(void *st, int64_t batch, bench_gemm *g, int max)
{
    (void)st;
    int ng = 0, rows = (int)(batch * T), hd = D / H;
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < 4; i++) bench_linear_gemms(g, &ng, max, rows, D, D, true);
        bench_linear_gemms(g, &ng, max, rows, D, 4 * D, true);
        bench_linear_gemms(g, &ng, max, rows, 4 * D, D, true);
        for (int64_t bh = 0; bh < batch * H; bh++) {
            bench_add_gemm(g, &ng, max, T, T, hd, 0, 1, 0.0f);  /* S = Q K^T */
            bench_add_gemm(g, &ng, max, T, hd, T, 0, 0, 0.0f);  /* Y = P V */
            bench_add_gemm(g, &ng, max, T, T, hd, 0, 1, 0.0f);  /* dP = dY V^T */
            bench_add_gemm(g, &ng, max, T, hd, T, 1, 0, 0.0f);  /* dV = P^T dY */
            bench_add_gemm(g, &ng, max, T, hd, T, 0, 0, 0.0f);  /* dQ = dS K */
            bench_add_gemm(g, &ng, max, T, hd, T, 1, 0, 0.0f);  /* dK = dS^T Q */
        }
    }
    bench_linear_gemms(g, &ng, max, rows, D, V, true);
    return ng;
}

int main(int argc, char **argv)
{
    const bench_workload w = {"gpt", 16, setup, step, gemms};
    return bench_main(argc, argv, &w);
}
