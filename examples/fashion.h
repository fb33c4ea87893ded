/*
 * fashion.h - the data and evaluation half of fashion_mlp.c and
 * fashion_cnn.c: reading Fashion-MNIST with tg_idx_read and measuring
 * test accuracy. The training loops, the part to copy into your own
 * program, are in the two examples.
 *
 * Fashion-MNIST (Zalando, MIT licence): 60,000 training and 10,000 test
 * grey images of 28 x 28 pixels in ten classes, as gzipped IDX files. On
 * Debian they come with the package dataset-fashion-mnist, in
 * /usr/share/datasets/fashion-mnist/.
 */
#ifndef TAPEGRAD_FASHION_H
#define TAPEGRAD_FASHION_H

#include "example.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static const char *const fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

typedef struct {
    tg_tensor *train_x, *train_y; /* F32 [60000, <image shape>] in [0, 1], I64 [60000] */
    tg_tensor *test_x, *test_y;   /* the same for the 10,000 test images */
    int64_t n_train, n_test;      /* how many of them the run uses (--limit, --test-limit) */
} fashion_data;

/* What both examples' command lines share. */
typedef struct {
    int64_t epochs, batch, limit, test_limit, seed, threads;
    double lr, min_acc;
    const char *dir;
} fashion_run;

/* The run's entries of an option table (follow them with {0}). */
#define FASHION_RUN_OPTS(r)                                                                       \
    {"epochs", EX_INT, &(r).epochs, "passes over the training set"},                              \
        {"batch", EX_INT, &(r).batch, "mini-batch size"},                                         \
        {"lr", EX_DOUBLE, &(r).lr, "Adam learning rate (the start, with a schedule)"},            \
        {"limit", EX_INT, &(r).limit, "train on the first N images (0: all 60,000)"},             \
        {"test-limit", EX_INT, &(r).test_limit, "evaluate on the first N test images"},           \
        {"seed", EX_INT, &(r).seed, "seed of weights and shuffling"},                             \
        {"threads", EX_INT, &(r).threads, "kernel threads (0: all cores)"},                       \
        {"data", EX_STRING, &(r).dir, "directory of the four .gz files"},                         \
        {"min-accuracy", EX_DOUBLE, &(r).min_acc, "exit 1 below this test accuracy"}

/* The defaults of a run of the given epochs and learning rate. */
static inline fashion_run fashion_run_defaults(int64_t epochs, double lr)
{
    return (fashion_run){.epochs = epochs, .batch = 64, .test_limit = 10000, .seed = 1, .lr = lr,
                         .dir = FASHION_DIR};
}

/* Reads the first limit items (0: all) of dir/<name> into c: images
 * scaled to [0, 1] and reshaped to [N, image shape], or labels as I64 [N].
 * NULL with the error on c. */
static inline tg_tensor *fashion_file(tg_ctx *c, const char *dir, const char *name, int64_t limit,
                                      int ndim, const int64_t *image_shape)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tg_idx_opts o = tg_idx_defaults();
    o.scale = true; /* u8 pixels / 255; labels stay integers (I64) */
    o.max_items = limit; /* only those are inflated: quick small runs */
    tg_tensor *t = tg_idx_read(c, path, &o);
    if (!t || ndim == 0) return t;
    int64_t shape[8] = {tg_shape(t)[0]};
    memcpy(shape + 1, image_shape, (size_t)ndim * sizeof *shape);
    return tg_reshape(c, t, ndim + 1, shape); /* a view: still contiguous */
}

/*
 * Reads the four files of r->dir into c, each image shaped image_shape
 * (TG_SHAPE(784) for an MLP, TG_SHAPE(1, 28, 28) for a CNN), and sets the
 * counts the run uses from --limit and --test-limit. Returns 0, or
 * the exit status for main after printing why: 77 (meson's "skipped")
 * when the files cannot be opened, 1 for any other error.
 */
static inline int fashion_load(tg_ctx *c, const fashion_run *r, int ndim,
                               const int64_t *image_shape, fashion_data *d)
{
    const char *dir = r->dir;
    int64_t nl = r->limit > 0 ? r->limit : 0, tl = r->test_limit > 0 ? r->test_limit : 0;
    d->train_x = fashion_file(c, dir, "train-images-idx3-ubyte.gz", nl, ndim, image_shape);
    d->train_y = fashion_file(c, dir, "train-labels-idx1-ubyte.gz", nl, 0, NULL);
    d->test_x = fashion_file(c, dir, "t10k-images-idx3-ubyte.gz", tl, ndim, image_shape);
    d->test_y = fashion_file(c, dir, "t10k-labels-idx1-ubyte.gz", tl, 0, NULL);
    if (d->test_y) {
        d->n_train = tg_shape(d->train_y)[0];
        d->n_test = tg_shape(d->test_y)[0];
        if (r->limit > 0 && r->limit < d->n_train) d->n_train = r->limit;
        if (r->test_limit >= 0 && r->test_limit < d->n_test) d->n_test = r->test_limit;
        return 0;
    }
    if (tg_ctx_status(c) == TG_ERR_IO) {
        fprintf(stderr, "%s\nskipped: install dataset-fashion-mnist or pass --data DIR\n",
                tg_ctx_errmsg(c));
        return 77;
    }
    return ex_fail(c, "fashion: reading the data");
}

/*
 * Accuracy of net on the first n test images, evaluated in chunks of 1,000
 * in the step context s (reset after each) without recording a graph, or
 * -1 with the error on s. When confusion is not NULL it receives the
 * counts [true class][predicted class].
 */
static inline double fashion_accuracy(tg_ctx *s, tg_module *net, const fashion_data *d, int64_t n,
                                      int64_t confusion[10][10])
{
    bool was = tg_set_grad_enabled(s, false);
    int64_t right = 0;
    if (confusion) memset(confusion, 0, 100 * sizeof confusion[0][0]);
    for (int64_t start = 0; start < n; start += 1000) {
        int64_t stop = start + 1000 < n ? start + 1000 : n;
        tg_tensor *logits = tg_module_forward(s, net, tg_slice(s, d->test_x, 0, start, stop, 1));
        tg_tensor *pred = tg_argmax(s, logits, 1, false);
        if (!pred) {
            tg_set_grad_enabled(s, was);
            return -1;
        }
        const int64_t *p = tg_data(pred), *y = (const int64_t *)tg_data(d->test_y) + start;
        for (int64_t i = 0; i < stop - start; i++) {
            right += p[i] == y[i];
            if (confusion) confusion[y[i]][p[i]]++;
        }
        tg_ctx_reset(s);
    }
    tg_set_grad_enabled(s, was);
    return n > 0 ? (double)right / (double)n : 0;
}

/* Per-class accuracy (recall) from a confusion matrix. */
static inline void fashion_print_classes(const int64_t confusion[10][10])
{
    printf("per class (recall):");
    for (int k = 0; k < 10; k++) {
        int64_t total = 0;
        for (int j = 0; j < 10; j++) total += confusion[k][j];
        printf("%s %s %.3f", k % 4 ? "," : "\n ", fashion_classes[k],
               total ? (double)confusion[k][k] / (double)total : 0.0);
    }
    printf("\n");
}


/*
 * The end of a run: the per-class recall and the last line
 * test_accuracy=0.XXXX on the run's test images. Returns the exit status:
 * 0, or 1 when the accuracy is below --min-accuracy or on an error.
 */
static inline int fashion_finish(tg_ctx *s, tg_module *net, const fashion_data *d,
                                 const fashion_run *r)
{
    int64_t confusion[10][10];
    double acc = fashion_accuracy(s, net, d, d->n_test, confusion);
    if (acc < 0) return ex_fail(s, "evaluation");
    fashion_print_classes((const int64_t(*)[10])confusion);
    printf("test_accuracy=%.4f\n", acc);
    if (acc >= r->min_acc) return 0;
    fprintf(stderr, "test accuracy %.4f is below --min-accuracy %.4f\n", acc, r->min_acc);
    return 1;
}

#endif /* TAPEGRAD_FASHION_H */
