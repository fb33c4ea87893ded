/*
 * gpt.c - a small GPT-style transformer over characters, and text sampled
 * from it.
 *
 * The model is GPT-2's shape at toy size (pre-norm blocks, learned
 * positions, a causal self-attention and a GELU MLP in every block):
 *
 *     x = wte(idx) + wpe(0 .. T-1)          idx [B, T] -> [B, T, E]
 *     for each of L blocks:
 *         x = x + attn(ln1(x))              causal: position t sees 0..t
 *         x = x + proj(gelu(fc(ln2(x))))    fc: E -> 4E, proj: 4E -> E
 *     logits = head(ln_f(x))                [B, T, V]
 *
 * attn is tg_nn_mha_new(..., causal = true): E split into --heads heads,
 * each attending with tg_sdpa. The embeddings start at N(0, 0.02) as in
 * GPT-2 (tg_init_normal on the layers' weights); every Linear keeps
 * PyTorch's default initialisation.
 *
 * Training: Adam on the cross-entropy of every next character of windows
 * of --block characters at random places of the text, the learning rate
 * warming up linearly for the first 10% of the steps and then following a
 * cosine down to a tenth (tg_lr_cosine with warmup_steps), gradients
 * clipped to norm 1. The last tenth of the text is held out; its loss is
 * printed next to the training loss, in nats per character.
 *
 * Generation: the model sees at most --block characters, so each new
 * character is predicted from the last --block ones (prompt included),
 * sampled at --temperature, appended, and the window slides on.
 * --max-val-loss X makes it exit 1 when the last validation loss is above X.
 *
 *     bible -l79 'gen1:1-rev22:21' > kjv.txt
 *     build/examples/gpt kjv.txt [--steps 2000] [--layers 2] [--embed 64]
 */
#include "chartext.h"

enum { MAX_LAYERS = 16 };

typedef struct {
    tg_module *ln1, *attn, *ln2, *fc, *proj;
} gpt_block;

typedef struct {
    tg_module *wte, *wpe, *ln_f, *head;
    gpt_block blocks[MAX_LAYERS];
    int64_t layers, block; /* block: the longest context, T */
} gpt;

/* Makes the model's layers, named as nanoGPT names them ("h.0.attn"). */
static void gpt_init(gpt *g, tg_model *m, int64_t vocab, int64_t block, int64_t embed,
                     int64_t heads, int64_t layers)
{
    const int64_t *e = (int64_t[]){embed};
    g->layers = layers;
    g->block = block;
    g->wte = tg_nn_embedding_new(m, "wte", vocab, embed);
    g->wpe = tg_nn_embedding_new(m, "wpe", block, embed);
    tg_init_normal(tg_module_get(g->wte, "weight"), 0.0, 0.02);
    tg_init_normal(tg_module_get(g->wpe, "weight"), 0.0, 0.02);
    for (int64_t l = 0; l < layers; l++) {
        gpt_block *b = &g->blocks[l];
        b->ln1 = tg_nn_layer_norm_new(m, tg_model_name(m, "h.%d.ln_1", (int)l), 1, e, 1e-5, true);
        b->attn = tg_nn_mha_new(m, tg_model_name(m, "h.%d.attn", (int)l), embed, heads, true, true);
        b->ln2 = tg_nn_layer_norm_new(m, tg_model_name(m, "h.%d.ln_2", (int)l), 1, e, 1e-5, true);
        b->fc = tg_nn_linear_new(m, tg_model_name(m, "h.%d.mlp.c_fc", (int)l), embed, 4 * embed,
                                 true);
        b->proj = tg_nn_linear_new(m, tg_model_name(m, "h.%d.mlp.c_proj", (int)l), 4 * embed,
                                   embed, true);
    }
    g->ln_f = tg_nn_layer_norm_new(m, "ln_f", 1, e, 1e-5, true);
    g->head = tg_nn_linear_new(m, "lm_head", embed, vocab, false);
}

/* logits [B, T, V] for idx [B, T], T at most the block size. */
static tg_tensor *gpt_logits(tg_ctx *s, void *model, tg_tensor *idx)
{
    gpt *g = model;
    if (!idx) return NULL;
    tg_tensor *pos = tg_arange(s, TG_I64, 0, (double)tg_shape(idx)[1], 1); /* [T] */
    /* [B, T, E] + [T, E]: the positions broadcast over the batch */
    tg_tensor *x = tg_add(s, tg_module_forward(s, g->wte, idx), tg_module_forward(s, g->wpe, pos));
    for (int64_t l = 0; l < g->layers; l++) {
        gpt_block *b = &g->blocks[l];
        tg_tensor *h = tg_module_forward(s, b->ln1, x);
        x = tg_add(s, x, tg_nn_mha_forward(s, b->attn, h, h, h, NULL));
        h = tg_module_forward(s, b->ln2, x);
        h = tg_module_forward(s, b->proj, tg_gelu(s, tg_module_forward(s, b->fc, h)));
        x = tg_add(s, x, h);
    }
    return tg_module_forward(s, g->head, tg_module_forward(s, g->ln_f, x));
}

/*
 * Writes the prompt's indices and then n sampled ones to ids (room for
 * both) and returns the count, or -1 with the error on s. Resets s after
 * every character; records no graph.
 */
static int64_t gpt_generate(tg_ctx *s, void *model, const chartext *t, const char *prompt,
                            int64_t n, double temperature, int64_t *ids)
{
    gpt *g = model;
    int64_t block = g->block;
    bool was = tg_set_grad_enabled(s, false);
    int64_t v = tg_vocab_size(t->vocab), len = 0;
    float logits[256]; /* a byte vocabulary has at most 256 entries */
    tg_tensor *p = tg_vocab_encode(s, t->vocab, prompt, strlen(prompt));
    if (p) {
        len = tg_numel(p);
        tg_copy_out(p, ids, (size_t)len * sizeof *ids);
    }
    for (int64_t i = 0; i < n && tg_ctx_status(s) == TG_OK; i++) {
        int64_t w = len < block ? len : block; /* the window: the last w characters */
        tg_tensor *x = tg_tensor_from(s, TG_I64, TG_SHAPE(1, w), ids + len - w);
        tg_tensor *last = tg_slice(s, gpt_logits(s, g, x), 1, w - 1, w, 1); /* [1, 1, V] */
        tg_tensor *u = tg_rand(s, TG_F64, TG_SHAPE(1));
        if (!u || tg_copy_out(last, logits, (size_t)v * sizeof *logits) != TG_OK) break;
        ids[len++] = ex_sample(logits, v, temperature, tg_item(u));
        tg_ctx_reset(s);
    }
    tg_set_grad_enabled(s, was);
    return tg_ctx_status(s) == TG_OK ? len : -1;
}

int main(int argc, char **argv)
{
    int64_t block = 64, embed = 64, heads = 4, layers = 2;
    chartext_run r = {
        .steps = 2000, .batch = 16, .lr = 2e-3, .log_every = 100, .val_batches = 8,
        .sample_every = 500, .sample_len = 300, .temperature = 0.8, .prompt = "And God said",
        .seed = 1,
    };
    const ex_opt opts[] = {
        {"block", EX_INT, &block, "context length T: characters per window"},
        {"embed", EX_INT, &embed, "embedding size E"},
        {"heads", EX_INT, &heads, "attention heads (dividing E)"},
        {"layers", EX_INT, &layers, "transformer blocks (at most 16)"},
        CHARTEXT_RUN_OPTS(r),
        {0},
    };
    int rc = chartext_parse(argc, argv, "gpt TEXT [options]", opts, &r);
    if (rc >= 0) return rc;
    if (block < 1 || layers < 1 || layers > MAX_LAYERS) {
        fprintf(stderr, "gpt: --block must be >= 1 and --layers 1..16\n");
        return 2;
    }

    tg_ctx *p, *s;
    chartext t;
    chartext_progress pr = {0};
    if (!ex_contexts(argv[0], r.seed, r.threads, &p, &s)) return 1;
    if ((rc = chartext_load(p, r.path, r.limit, block, &t)) != 0) goto done;

    tg_model *m = tg_model_new(p);
    gpt g;
    gpt_init(&g, m, tg_vocab_size(t.vocab), block, embed, heads, layers);
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = r.lr;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);
    if (!opt) { /* a bad size anywhere in gpt_init ends up here: errors are sticky */
        rc = ex_fail(p, "gpt: model");
        goto done;
    }
    /* Warm-up over the first 10% of the steps, then a cosine to lr / 10. */
    tg_lr_schedule sched = tg_lr_cosine(r.lr, r.steps - r.steps / 10, r.lr / 10);
    sched.warmup_steps = r.steps / 10;
    printf("GPT E=%lld heads=%lld layers=%lld block=%lld, %lld parameters; batch %lld; "
           "uniform guess: ln %lld = %.3f nats/char\n",
           (long long)embed, (long long)heads, (long long)layers, (long long)block,
           (long long)tg_model_numel(m), (long long)r.batch, (long long)tg_vocab_size(t.vocab),
           log((double)tg_vocab_size(t.vocab)));

    const chartext_model cm = {&g, gpt_logits, gpt_generate, block};
    if (!chartext_progress_init(&pr, &r)) rc = 1;
    for (int64_t i = 1; i <= r.steps && rc == 0; i++) {
        tg_tensor *x, *y;
        chartext_batch(s, &t, false, 0, r.batch, block, &x, &y);
        tg_tensor *loss = chartext_loss(s, gpt_logits(s, &g, x), y);
        if (tg_backward(s, loss) != TG_OK ||
            tg_clip_grad_norm(p, tg_model_params(m), tg_model_nparams(m), 1.0, 2.0, false,
                              NULL) != TG_OK ||
            tg_optim_apply_schedule(opt, &sched) != TG_OK || tg_optim_step(opt) != TG_OK) {
            rc = ex_fail(tg_ctx_status(s) ? s : p, "gpt: step");
            break;
        }
        tg_optim_zero_grad(opt);
        double l = tg_item(loss);
        tg_ctx_reset(s);
        rc = chartext_progress_step(s, &pr, &r, &t, &cm, i, l, tg_optim_lr(opt));
    }
    rc = chartext_progress_end(&pr, &r, rc);

done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}
