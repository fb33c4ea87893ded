/*
 * chartext.h - the text half of char_lstm.c and gpt.c: a text file as
 * character indices (tg_text_read), split into training and validation
 * text, cut into windows of T characters for next-character prediction,
 * and a validation loss. The models, training loops and generation are in
 * the two examples.
 *
 * The examples are meant for the King James Bible from Debian's bible-kjv
 * (public domain):  bible -l79 'gen1:1-rev22:21' > kjv.txt  (4.5 MB). Any
 * text file works; its tokens are bytes (TG_TEXT_BYTES), so every file
 * reads and the vocabulary is the set of bytes it uses (75 for the KJV).
 */
#ifndef TAPEGRAD_CHARTEXT_H
#define TAPEGRAD_CHARTEXT_H

#include "example.h"

typedef struct {
    tg_vocab *vocab;   /* the distinct bytes of the (limited) text */
    const int64_t *ids;/* the text as vocabulary indices */
    int64_t n_train;   /* ids[0 .. n_train) are for training, */
    int64_t n_val;     /* ids[n_train .. n_train + n_val) for validation */
} chartext;

/*
 * Reads the file at path into c, keeping its first limit bytes (0: all),
 * the last tenth of them for validation. Returns 0, or 1 after printing
 * the error; the text must hold at least 2 * (window + 1) characters.
 */
static inline int chartext_load(tg_ctx *c, const char *path, int64_t limit, int64_t window,
                                chartext *t)
{
    tg_tensor *all = tg_text_read(c, path, TG_TEXT_BYTES, &t->vocab);
    if (!all) return ex_fail(c, "reading the text");
    int64_t n = tg_numel(all);
    if (limit > 0 && limit < n) n = limit;
    t->ids = tg_data(all);
    t->n_val = n / 10;
    t->n_train = n - t->n_val;
    if (t->n_val < window + 1) {
        fprintf(stderr, "%s: %lld characters are too few for windows of %lld (and a tenth of "
                        "them for validation)\n",
                path, (long long)n, (long long)window);
        return 1;
    }
    printf("%s: %lld characters (%lld for training, %lld for validation), %lld distinct\n", path,
           (long long)n, (long long)t->n_train, (long long)t->n_val,
           (long long)tg_vocab_size(t->vocab));
    return 0;
}

/*
 * A batch of b windows of T characters, as two I64 [b, T] tensors of s:
 * *x the characters and *y the next ones (x shifted by one). Training
 * windows start at random offsets of the training text (drawn from s's
 * RNG); validation windows (val) are b of the evenly spaced windows of
 * the validation text, the first at window number `first`, so a fixed
 * sequence of calls always scores the same text. Errors are left on s.
 */
static inline void chartext_batch(tg_ctx *s, const chartext *t, bool val, int64_t first, int64_t b,
                                  int64_t T, tg_tensor **x, tg_tensor **y)
{
    *x = tg_tensor_new(s, TG_I64, TG_SHAPE(b, T));
    *y = tg_tensor_new(s, TG_I64, TG_SHAPE(b, T));
    tg_tensor *u = val ? NULL : tg_rand(s, TG_F64, TG_SHAPE(b));
    if (!*y || (!val && !u)) return;
    int64_t *xs = tg_data(*x), *ys = tg_data(*y);
    int64_t span = (val ? t->n_val : t->n_train) - T; /* starts in [0, span) */
    for (int64_t i = 0; i < b; i++) {
        int64_t start = val ? (first + i) * T % span : (int64_t)(((double *)tg_data(u))[i] * span);
        const int64_t *w = t->ids + (val ? t->n_train : 0) + start;
        memcpy(xs + i * T, w, (size_t)T * sizeof *xs);
        memcpy(ys + i * T, w + 1, (size_t)T * sizeof *ys);
    }
}

/* Mean cross-entropy of logits [B, T, V] against the next characters y
 * [B, T] (in nats per character), a 0-d tensor of s. */
static inline tg_tensor *chartext_loss(tg_ctx *s, tg_tensor *logits, tg_tensor *y)
{
    int64_t v = tg_ndim(logits) == 3 ? tg_shape(logits)[2] : 1;
    return tg_cross_entropy(s, tg_reshape(s, logits, 2, (int64_t[]){-1, v}),
                            tg_reshape(s, y, 1, (int64_t[]){-1}));
}

/* Returns logits [B, T, V] of s for characters x [B, T]: the model. */
typedef tg_tensor *(*chartext_model_fn)(tg_ctx *s, void *model, tg_tensor *x);

/*
 * The model's mean loss over `batches` validation batches of b windows of
 * T characters (the same windows every call), without recording a graph;
 * s is reset after each batch. NaN with the error on s.
 */
static inline double chartext_val_loss(tg_ctx *s, chartext_model_fn f, void *model,
                                       const chartext *t, int64_t batches, int64_t b, int64_t T)
{
    bool was = tg_set_grad_enabled(s, false);
    double sum = 0;
    for (int64_t i = 0; i < batches; i++) {
        tg_tensor *x, *y;
        chartext_batch(s, t, true, i * b, b, T, &x, &y);
        tg_tensor *loss = chartext_loss(s, f(s, model, x), y);
        if (!loss) {
            sum = NAN;
            break;
        }
        sum += tg_item(loss);
        tg_ctx_reset(s);
    }
    tg_set_grad_enabled(s, was);
    return sum / (double)batches;
}

/* Prints the n generated indices as text, framed. */
static inline void chartext_print_sample(const chartext *t, const int64_t *ids, int64_t n)
{
    char buf[8192];
    tg_vocab_decode(t->vocab, ids, n, buf, sizeof buf);
    printf("----- sample -----\n%s\n------------------\n", buf);
}


/* ====================================================================== */
/* The run: options both examples share, progress reports, samples         */
/* ====================================================================== */

typedef struct {
    const char *path; /* the text file, the positional argument */
    int64_t steps, batch, limit, log_every, val_batches, sample_every, sample_len, seed, threads;
    double lr, temperature, max_val;
    const char *prompt;
} chartext_run;

/* The run's entries of an option table (follow them with {0}). */
#define CHARTEXT_RUN_OPTS(r)                                                                      \
    {"steps", EX_INT, &(r).steps, "optimizer steps"},                                             \
        {"batch", EX_INT, &(r).batch, "windows per batch"},                                       \
        {"lr", EX_DOUBLE, &(r).lr, "Adam learning rate (the peak, with a schedule)"},             \
        {"limit", EX_INT, &(r).limit, "use the first N bytes of the text (0: all)"},              \
        {"log-every", EX_INT, &(r).log_every, "print losses every N steps"},                      \
        {"val-batches", EX_INT, &(r).val_batches, "validation batches per evaluation"},           \
        {"sample-every", EX_INT, &(r).sample_every, "print a sample every N steps"},              \
        {"sample-len", EX_INT, &(r).sample_len, "characters per sample (at most 4000)"},          \
        {"temperature", EX_DOUBLE, &(r).temperature, "sampling temperature"},                     \
        {"prompt", EX_STRING, &(r).prompt, "text the samples start from (at most 4000 bytes)"},   \
        {"seed", EX_INT, &(r).seed, "seed of weights, windows and sampling"},                     \
        {"threads", EX_INT, &(r).threads, "kernel threads (0: all cores)"},                       \
        {"max-val-loss", EX_DOUBLE, &(r).max_val, "exit 1 if the last val loss is above (0: no check)"}

/* Parses the command line (one positional argument, the text) into r and
 * the table's other entries, and checks the run's values. Returns -1 to go
 * on, or the exit status (0 after --help, 2 for a bad command line). */
static inline int chartext_parse(int argc, char **argv, const char *usage, const ex_opt *opts,
                                 chartext_run *r)
{
    int rc = ex_parse(argc, argv, usage, opts, 1, &r->path);
    if (rc >= 0) return rc;
    if (r->steps < 1 || r->batch < 1 || r->log_every < 1 || r->sample_every < 1 ||
        r->val_batches < 1 || r->sample_len < 0 || r->sample_len > 4000 ||
        strlen(r->prompt) > 4000) {
        fprintf(stderr, "%s: --steps, --batch, --log-every, --sample-every and --val-batches must "
                        "be >= 1; --sample-len and the prompt at most 4000\n",
                argv[0]);
        return 2;
    }
    return -1;
}

/* Writes the prompt's indices and then n sampled ones to out (room for
 * both) and returns the count, or -1 with the error on s: the model's
 * generation. */
typedef int64_t (*chartext_generate_fn)(tg_ctx *s, void *model, const chartext *t,
                                        const char *prompt, int64_t n, double temperature,
                                        int64_t *out);

/* A model as the progress report sees it: logits for the validation loss,
 * generation for the samples, and the window length T. */
typedef struct {
    void *model;
    chartext_model_fn logits;
    chartext_generate_fn generate;
    int64_t window;
} chartext_model;

/* Where the run is: started at t0, losses summed since the last report,
 * the last validation loss, room for a sample. */
typedef struct {
    double t0, loss_sum, val;
    int64_t *sample;
} chartext_progress;

static inline bool chartext_progress_init(chartext_progress *pr, const chartext_run *r)
{
    pr->t0 = ex_now();
    pr->loss_sum = 0;
    pr->val = NAN;
    pr->sample = malloc((strlen(r->prompt) + (size_t)r->sample_len + 1) * sizeof *pr->sample);
    if (!pr->sample) fprintf(stderr, "out of memory\n");
    return pr->sample != NULL;
}

/*
 * To call after training step i (from 1) whose loss was `loss`, with s
 * reset: every log_every steps (and after the last) prints the mean
 * training loss since the last report, the validation loss and the
 * learning rate lr; every sample_every steps (and after the last) prints
 * a sample. Returns 0, or 1 after printing the error of s.
 */
static inline int chartext_progress_step(tg_ctx *s, chartext_progress *pr, const chartext_run *r,
                                         const chartext *t, const chartext_model *m, int64_t i,
                                         double loss, double lr)
{
    pr->loss_sum += loss;
    if (i % r->log_every == 0 || i == r->steps) {
        int64_t k = i % r->log_every ? i % r->log_every : r->log_every; /* steps in the sum */
        pr->val = chartext_val_loss(s, m->logits, m->model, t, r->val_batches, r->batch, m->window);
        printf("step %5lld  train loss %.4f  val loss %.4f  lr %.2g  %.1f s\n", (long long)i,
               pr->loss_sum / (double)k, pr->val, lr, ex_now() - pr->t0);
        fflush(stdout);
        pr->loss_sum = 0;
        if (tg_ctx_status(s) != TG_OK) return ex_fail(s, "validation");
    }
    if (i % r->sample_every == 0 || i == r->steps) {
        int64_t n = m->generate(s, m->model, t, r->prompt, r->sample_len, r->temperature,
                                pr->sample);
        if (n < 0) return ex_fail(s, "sampling");
        chartext_print_sample(t, pr->sample, n);
        tg_ctx_reset(s);
    }
    return 0;
}

/* Frees the sample buffer and applies --max-val-loss to the exit status
 * rc: returns 1 when the last validation loss is above it. */
static inline int chartext_progress_end(chartext_progress *pr, const chartext_run *r, int rc)
{
    free(pr->sample);
    pr->sample = NULL;
    if (rc == 0 && r->max_val > 0 && !(pr->val <= r->max_val)) {
        fprintf(stderr, "validation loss %.4f is above --max-val-loss %.4f\n", pr->val, r->max_val);
        return 1;
    }
    return rc;
}

#endif /* TAPEGRAD_CHARTEXT_H */
