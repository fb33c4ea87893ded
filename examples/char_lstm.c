/*
 * char_lstm.c - a character-level LSTM language model, and text sampled
 * from it.
 *
 * The model reads a text one character at a time and predicts the next:
 *
 *     e = emb(x)                 x: [B, T] character indices -> [B, T, E]
 *     h = lstm(e)                [B, T, H], the LSTM's hidden state at each step
 *     logits = head(h)           [B, T, V], a score for every next character
 *
 * trained with Adam on the cross-entropy of the next character, on
 * windows of T characters starting at random places of the text
 * (truncated backpropagation through time: each window starts from a zero
 * state). The global gradient norm is clipped to 1 (tg_clip_grad_norm),
 * the usual guard for recurrent networks. The last tenth of the text is
 * held out and its loss printed next to the training loss, in nats per
 * character (ln V is what a uniform guess scores).
 *
 * Every --sample-every steps, and at the end, the model writes text:
 * the prompt goes through the LSTM once, then each sampled character is
 * fed back one step at a time, carrying the LSTM's state (h, c) from
 * tg_nn_rnn_forward. --temperature scales the logits before sampling:
 * lower is more conservative, 0 always takes the likeliest character.
 * With --max-val-loss X the program exits 1 when its last validation loss
 * is above X (the meson test's check that it learned something).
 *
 * The text, e.g. the King James Bible from Debian's bible-kjv:
 *
 *     bible -l79 'gen1:1-rev22:21' > kjv.txt
 *     build/examples/char_lstm kjv.txt [--steps 1000] [--hidden 128]
 */
#include "chartext.h"

typedef struct {
    tg_module *emb, *lstm, *head;
} char_lstm;

/* logits [B, T, V] for x [B, T], from zero initial states. */
static tg_tensor *lstm_logits(tg_ctx *s, void *model, tg_tensor *x)
{
    char_lstm *m = model;
    return tg_module_forward(s, m->head,
                             tg_module_forward(s, m->lstm, tg_module_forward(s, m->emb, x)));
}

/*
 * Writes the prompt's indices and then n sampled ones to out (room for
 * both), and returns how many it wrote, or -1 with the error on s. Runs
 * in s without recording a graph; the caller resets s.
 */
static int64_t lstm_generate(tg_ctx *s, void *model, const chartext *t, const char *prompt,
                             int64_t n, double temperature, int64_t *out)
{
    char_lstm *m = model;
    bool was = tg_set_grad_enabled(s, false);
    int64_t v = tg_vocab_size(t->vocab), len = 0;
    float logits[256]; /* a byte vocabulary has at most 256 entries */
    tg_tensor *x = tg_vocab_encode(s, t->vocab, prompt, strlen(prompt)); /* [P] */
    if (x) {
        len = tg_numel(x);
        tg_copy_out(x, out, (size_t)len * sizeof *out);
        x = tg_reshape(s, x, 2, (int64_t[]){1, len}); /* a batch of one: [1, P] */
    }
    tg_tensor *h = NULL, *c = NULL, *o = NULL; /* NULL states: zeros */
    for (int64_t i = 0; i < n && x; i++) {
        /* The new characters from the state so far; o is [1, steps, H]. */
        tg_nn_rnn_forward(s, m->lstm, tg_module_forward(s, m->emb, x), h, c, &o, &h, &c);
        int64_t steps = o ? tg_shape(o)[1] : 1;
        tg_tensor *last = tg_module_forward(s, m->head, tg_slice(s, o, 1, steps - 1, steps, 1));
        tg_tensor *u = tg_rand(s, TG_F64, TG_SHAPE(1));
        if (!u || tg_copy_out(last, logits, (size_t)v * sizeof *logits) != TG_OK) break;
        out[len] = ex_sample(logits, v, temperature, tg_item(u));
        x = tg_tensor_from(s, TG_I64, TG_SHAPE(1, 1), &out[len++]);
    }
    tg_set_grad_enabled(s, was);
    return tg_ctx_status(s) == TG_OK ? len : -1;
}

int main(int argc, char **argv)
{
    int64_t seq = 64, embed = 32, hidden = 128, layers = 1;
    chartext_run r = {
        .steps = 1000, .batch = 32, .lr = 3e-3, .log_every = 100, .val_batches = 8,
        .sample_every = 250, .sample_len = 300, .temperature = 0.8, .prompt = "And God said",
        .seed = 1,
    };
    const ex_opt opts[] = {
        {"seq", EX_INT, &seq, "characters per window (backpropagation through time)"},
        {"embed", EX_INT, &embed, "embedding size E"},
        {"hidden", EX_INT, &hidden, "LSTM hidden size H"},
        {"layers", EX_INT, &layers, "stacked LSTM layers"},
        CHARTEXT_RUN_OPTS(r),
        {0},
    };
    int rc = chartext_parse(argc, argv, "char_lstm TEXT [options]", opts, &r);
    if (rc >= 0) return rc;

    tg_ctx *p, *s;
    chartext t;
    chartext_progress pr = {0};
    if (!ex_contexts(argv[0], r.seed, r.threads, &p, &s)) return 1;
    if ((rc = chartext_load(p, r.path, r.limit, seq, &t)) != 0) goto done;

    int64_t v = tg_vocab_size(t.vocab);
    tg_model *m = tg_model_new(p);
    tg_rnn_opts ro = tg_rnn_defaults(); /* batch_first: x is [B, T, E] */
    ro.num_layers = (int)layers;
    char_lstm net = {
        tg_nn_embedding_new(m, "emb", v, embed),
        tg_nn_lstm_new(m, "lstm", embed, hidden, &ro),
        tg_nn_linear_new(m, "head", hidden, v, true),
    };
    tg_adam_opts ao = tg_adam_defaults();
    ao.lr = r.lr;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);
    if (!opt) {
        rc = ex_fail(p, "char_lstm: model");
        goto done;
    }
    printf("LSTM E=%lld H=%lld layers=%lld, %lld parameters; batch %lld x %lld characters; "
           "uniform guess: ln %lld = %.3f nats/char\n",
           (long long)embed, (long long)hidden, (long long)layers, (long long)tg_model_numel(m),
           (long long)r.batch, (long long)seq, (long long)v, log((double)v));

    const chartext_model cm = {&net, lstm_logits, lstm_generate, seq};
    if (!chartext_progress_init(&pr, &r)) rc = 1;
    for (int64_t i = 1; i <= r.steps && rc == 0; i++) {
        tg_tensor *x, *y;
        chartext_batch(s, &t, false, 0, r.batch, seq, &x, &y);
        tg_tensor *loss = chartext_loss(s, lstm_logits(s, &net, x), y);
        if (tg_backward(s, loss) != TG_OK ||
            tg_clip_grad_norm(p, tg_model_params(m), tg_model_nparams(m), 1.0, 2.0, false,
                              NULL) != TG_OK ||
            tg_optim_step(opt) != TG_OK) {
            rc = ex_fail(tg_ctx_status(s) ? s : p, "char_lstm: step");
            break;
        }
        tg_optim_zero_grad(opt);
        double l = tg_item(loss);
        tg_ctx_reset(s);
        rc = chartext_progress_step(s, &pr, &r, &t, &cm, i, l, r.lr);
    }
    rc = chartext_progress_end(&pr, &r, rc);

done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}
