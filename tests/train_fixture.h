/*
 * train_fixture.h - a small, complete training setup shared by the
 * determinism suite (tests/test_determinism.c) and the soak program
 * (tests/soak/soak.c): a persistent and a step context, a model from
 * include/tapegrad/nn.h (an MLP or a small conv net, both with dropout),
 * Adam, a seeded batcher over a synthetic data set, and one training
 * step. Plain C (no Check), so the soak program can use it too.
 */
#ifndef TAPEGRAD_TRAIN_FIXTURE_H
#define TAPEGRAD_TRAIN_FIXTURE_H

#include <tapegrad.h>

typedef enum { TF_MLP, TF_CNN } tf_kind;

typedef struct {
    tf_kind kind;
    bool small;     /* a few thousand parameters (the soak's), else large
                       enough that kernels split over two threads */
    int threads;    /* kernel threads of both contexts */
    uint64_t seed;  /* both contexts' RNG (weights, dropout) and the batcher */
    tg_alloc_fn alloc; /* NULL: malloc */
    void *alloc_ud;
} tf_opts;

typedef struct {
    tf_opts o;
    tg_ctx *p, *s;      /* persistent, step */
    tg_model *m;
    tg_module *net;
    tg_optim *opt;
    tg_batcher *b;
    tg_tensor *x, *y;   /* the data set, in p */
    tg_tensor *bx, *by; /* one batch, in p */
    int64_t batch;
} tf_run;

/* Builds everything. false when something failed: the message is in
 * tf_error(r); call tf_free anyway. */
bool tf_new(tf_run *r, const tf_opts *o);

/* One step: reset the step context, the next batch (a new epoch when one
 * ends), forward, cross-entropy, backward, Adam, zero_grad. Returns the
 * loss, or NaN with the error in tf_error(r). */
double tf_step(tf_run *r);

/* The first error of either context, or "" */
const char *tf_error(const tf_run *r);

/* Frees both contexts (and with them everything else). */
void tf_free(tf_run *r);

#endif /* TAPEGRAD_TRAIN_FIXTURE_H */
