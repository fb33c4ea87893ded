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
static int64_t generate(tg_ctx *s, char_lstm *m, const chartext *t, const char *prompt, int64_t n,
                        double temperature, int64_t *out)
{
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
    int64_t steps = 1000, batch = 32, seq = 64, embed = 32, hidden = 128, layers = 1;
    int64_t limit = 0, seed = 1, threads = 0, sample_every = 250, sample_len = 300;
    int64_t log_every = 100, val_batches = 8;
    double max_val = 0, lr = 3e-3, temperature = 0.8;
    const char *prompt = "And God said";
    const char *path = NULL;
    const ex_opt opts[] = {
        {"steps", EX_INT, &steps, "optimizer steps"},
        {"batch", EX_INT, &batch, "windows per batch"},
        {"seq", EX_INT, &seq, "characters per window (backpropagation through time)"},
        {"embed", EX_INT, &embed, "embedding size E"},
        {"hidden", EX_INT, &hidden, "LSTM hidden size H"},
        {"layers", EX_INT, &layers, "stacked LSTM layers"},
        {"lr", EX_DOUBLE, &lr, "Adam learning rate"},
        {"limit", EX_INT, &limit, "use the first N bytes of the text (0: all)"},
        {"log-every", EX_INT, &log_every, "print losses every N steps"},
        {"val-batches", EX_INT, &val_batches, "validation batches per evaluation"},
        {"sample-every", EX_INT, &sample_every, "print a sample every N steps"},
        {"sample-len", EX_INT, &sample_len, "characters per sample"},
        {"temperature", EX_DOUBLE, &temperature, "sampling temperature"},
        {"prompt", EX_STRING, &prompt, "text the samples start from"},
        {"seed", EX_INT, &seed, "seed of weights, windows and sampling"},
        {"threads", EX_INT, &threads, "kernel threads (0: all cores)"},
        {"max-val-loss", EX_DOUBLE, &max_val, "exit 1 if the last val loss is above (0: no check)"},
        {0},
    };
    int rc = ex_parse(argc, argv, "char_lstm TEXT [options]", opts, 1, &path);
    if (rc >= 0) return rc;
    if (steps < 1 || batch < 1 || seq < 1 || sample_len < 0 || sample_len > 4000 ||
        strlen(prompt) > 4000 || log_every < 1 || sample_every < 1 || val_batches < 1) {
        fprintf(stderr, "char_lstm: --steps, --batch, --seq, --log-every, --sample-every and "
                        "--val-batches must be >= 1; --sample-len and the prompt at most 4000\n");
        return 2;
    }

    tg_ctx_opts co = tg_ctx_defaults();
    co.seed = (uint64_t)seed;
    co.n_threads = (int)threads;
    tg_ctx *p = tg_ctx_new_opts(&co), *s = tg_ctx_new_opts(&co);
    chartext t;
    if (!p || !s) {
        fprintf(stderr, "char_lstm: out of memory or bad options\n");
        rc = 1;
        goto done;
    }
    if ((rc = chartext_load(p, path, limit, seq, &t)) != 0) goto done;

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
    ao.lr = lr;
    tg_optim *opt = tg_adam_new(p, tg_model_params(m), tg_model_nparams(m), &ao);
    if (!opt) {
        rc = ex_fail(p, "char_lstm: model");
        goto done;
    }
    printf("LSTM E=%lld H=%lld layers=%lld, %lld parameters; batch %lld x %lld characters; "
           "uniform guess: ln %lld = %.3f nats/char\n",
           (long long)embed, (long long)hidden, (long long)layers, (long long)tg_model_numel(m),
           (long long)batch, (long long)seq, (long long)v, log((double)v));

    int64_t *sample = malloc((strlen(prompt) + (size_t)sample_len) * sizeof *sample);
    double t0 = ex_now(), loss_sum = 0, val = NAN;
    for (int64_t i = 1; i <= steps && sample; i++) {
        tg_tensor *x, *y;
        chartext_batch(s, &t, false, 0, batch, seq, &x, &y);
        tg_tensor *loss = chartext_loss(s, lstm_logits(s, &net, x), y);
        if (tg_backward(s, loss) != TG_OK ||
            tg_clip_grad_norm(p, tg_model_params(m), tg_model_nparams(m), 1.0, 2.0, false,
                              NULL) != TG_OK ||
            tg_optim_step(opt) != TG_OK) {
            rc = ex_fail(tg_ctx_status(s) ? s : p, "char_lstm: step");
            break;
        }
        tg_optim_zero_grad(opt);
        loss_sum += tg_item(loss);
        tg_ctx_reset(s);

        if (i % log_every == 0 || i == steps) {
            int64_t k = i % log_every ? i % log_every : log_every; /* steps in the sum */
            val = chartext_val_loss(s, lstm_logits, &net, &t, val_batches, batch, seq);
            printf("step %5lld  train loss %.4f  val loss %.4f  %.1f s\n", (long long)i,
                   loss_sum / (double)k, val, ex_now() - t0);
            fflush(stdout);
            loss_sum = 0;
        }
        if (i % sample_every == 0 || i == steps) {
            int64_t n = generate(s, &net, &t, prompt, sample_len, temperature, sample);
            if (n < 0) {
                rc = ex_fail(s, "char_lstm: sampling");
                break;
            }
            chartext_print_sample(&t, sample, n);
            tg_ctx_reset(s);
        }
    }
    if (rc == 0 && max_val > 0 && !(val <= max_val)) {
        fprintf(stderr, "%s: validation loss %.4f is above --max-val-loss %.4f\n", argv[0], val,
                max_val);
        rc = 1;
    }
    if (!sample) {
        fprintf(stderr, "char_lstm: out of memory\n");
        rc = 1;
    }
    free(sample);

done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}
