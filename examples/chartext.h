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


#endif /* TAPEGRAD_CHARTEXT_H */
