/*
 * test_dist_mpi.c - the data-parallel API (dist.h) under mpirun.
 *
 *   mpirun -np 2 test_dist_mpi              the caller initialises MPI
 *   mpirun -np 2 test_dist_mpi --self-init  tapegrad initialises and
 *                                           finalizes it
 *
 * Not a Check runner: Check's forked tests and MPI do not mix, and a failed
 * ck_assert would leave the other ranks waiting in a collective. Checks
 * here count failures and go on, so every rank makes the same collective
 * calls whatever fails; at the end the failures of all ranks are summed
 * and every rank exits 1 if there was any. meson registers it in suite
 * 'mpi' with 2 ranks, 3 ranks (where sums of three ranks really depend on
 * the order) and --self-init.
 */
#include <tapegrad.h>

#include <float.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_impl.h"

static int g_rank, g_world, g_failures;

static void check_at(const char *file, int line, const char *what, bool ok, const char *fmt, ...)
{
    if (ok) return;
    g_failures++;
    fprintf(stderr, "rank %d: %s:%d: check failed: %s", g_rank, file, line, what);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
}
/* CHECK(condition) or CHECK(condition, printf format, arguments...) */
#define CHECK(...) check_at(__FILE__, __LINE__, #__VA_ARGS__, __VA_ARGS__, NULL)
static void check_status_at(const char *file, int line, const char *what, tg_status got,
                            tg_status want, tg_ctx *c)
{
    check_at(file, line, what, got == want, "got %s (%s)", tg_status_str(got), tg_ctx_errmsg(c));
}
/* Evaluates st once. */
#define CHECK_STATUS(st, want, c) check_status_at(__FILE__, __LINE__, #st " == " #want, st, want, c)

/* True when the n bytes at p are the same on every rank. */
static bool same_everywhere(const void *p, size_t n)
{
    char *all = malloc(n * (size_t)g_world + 1);
    if (!all) return false;
    MPI_Allgather(p, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, MPI_COMM_WORLD);
    bool same = true;
    for (int r = 1; r < g_world; r++) same = same && memcmp(all, all + (size_t)r * n, n) == 0;
    free(all);
    return same;
}

static bool tensor_same_everywhere(tg_tensor *t)
{
    return same_everywhere(tg_data(t), (size_t)tg_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8));
}

/* Element k in row-major order of a contiguous float tensor. */
static double flat(tg_tensor *t, int64_t k)
{
    return tg_tensor_dtype(t) == TG_F32 ? ((float *)tg_data(t))[k] : ((double *)tg_data(t))[k];
}

static bool has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

/* ---- the reduction itself ---------------------------------------------------- */

/* A gradient value that sums exactly: small multiples of 1/8. */
static double exact_value(int rank, int param, int64_t k)
{
    return (double)((rank + 1) * (int)(k % 13 - 6) + param) / 8.0;
}

static void set_grad(tg_tensor *p, double (*f)(int, int, int64_t), int rank, int param)
{
    tg_zero_grad(p);
    tg_tensor *g = tg_grad(p);
    for (int64_t k = 0; k < tg_numel(g); k++) {
        if (tg_tensor_dtype(g) == TG_F32)
            ((float *)tg_data(g))[k] = (float)f(rank, param, k);
        else
            ((double *)tg_data(g))[k] = f(rank, param, k);
    }
}

/* Gives p a gradient (of zeros) through a backward of sum(p * 0). */
static void make_grad(tg_ctx *s, tg_tensor *p)
{
    tg_backward(s, tg_sum(s, tg_scale(s, p, 0.0)));
    tg_ctx_reset(s);
}

static void test_allreduce_exact(tg_ctx *p, tg_ctx *s, size_t bucket_bytes)
{
    tg_dist_opts o = tg_dist_defaults();
    o.bucket_bytes = bucket_bytes;
    tg_dist *d = tg_dist_init(p, &o);
    CHECK(d != NULL, "%s", tg_ctx_errmsg(p));
    if (!d) return;
    /* f32 and f64; p2 has a gradient on the last rank only, p3 on none;
     * p4 spans several buckets of the small sizes */
    tg_tensor *ps[5] = {
        tg_tensor_new(p, TG_F32, TG_SHAPE(3, 5)), tg_tensor_new(p, TG_F64, TG_SHAPE(7)),
        tg_tensor_new(p, TG_F32, TG_SHAPE(4)),    tg_tensor_new(p, TG_F32, TG_SHAPE(2)),
        tg_tensor_new(p, TG_F64, TG_SHAPE(1000)),
    };
    for (int i = 0; i < 5; i++) tg_set_requires_grad(ps[i], true);
    for (int i = 0; i < 5; i++)
        if (i != 3 && (i != 2 || g_rank == g_world - 1)) make_grad(s, ps[i]);
    for (int i = 0; i < 5; i++)
        if (tg_grad(ps[i])) set_grad(ps[i], exact_value, g_rank, i);
    /* powers of two keep the weighted sum exact */
    double w = (g_world & (g_world - 1)) == 0 ? 1.0 / g_world : 1.0;
    tg_status st = tg_dist_allreduce_grads(d, ps, 5, w);
    CHECK_STATUS(st, TG_OK, p);
    CHECK(tg_grad(ps[3]) == NULL, "a parameter without gradient anywhere keeps none");
    CHECK(tg_grad(ps[2]) != NULL, "a gradient from another rank is allocated");
    for (int i = 0; i < 5; i++) {
        tg_tensor *g = tg_grad(ps[i]);
        if (!g) continue;
        int64_t bad = -1;
        for (int64_t k = 0; k < tg_numel(g) && bad < 0; k++) {
            double want = 0;
            for (int r = 0; r < g_world; r++)
                if (i != 2 || r == g_world - 1) want += w * exact_value(r, i, k);
            if (flat(g, k) != want) bad = k;
        }
        CHECK(bad < 0, "bucket %zu: parameter %d element %lld is not the exact sum", bucket_bytes,
              i, (long long)bad);
        CHECK(tensor_same_everywhere(g), "parameter %d differs between ranks", i);
    }
    tg_dist_finalize(d);
}

/* Deterministic pseudo-random values of every rank, so each rank can
 * compute what the others contribute. */
static double random_value(int rank, int param, int64_t k)
{
    uint64_t x = (uint64_t)(rank * 1000003 + param * 7919) * 0x9e3779b97f4a7c15ULL + (uint64_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    double u = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
    return ldexp(2 * u - 1, (int)(x % 17) - 8);        /* spread exponents */
}

static void test_allreduce_random(tg_ctx *p, tg_ctx *s)
{
    tg_dist_opts o = tg_dist_defaults();
    o.bucket_bytes = 4096;
    tg_dist *d = tg_dist_init(p, &o);
    CHECK(d != NULL, "%s", tg_ctx_errmsg(p));
    if (!d) return;
    tg_tensor *ps[2] = {tg_tensor_new(p, TG_F32, TG_SHAPE(3000)),
                        tg_tensor_new(p, TG_F64, TG_SHAPE(700))};
    double wsum = 0;
    for (int r = 0; r < g_world; r++) wsum += r + 1.0 / 3;
    double w = (g_rank + 1.0 / 3) / wsum; /* uneven weights, not powers of two */
    for (int i = 0; i < 2; i++) {
        tg_set_requires_grad(ps[i], true);
        make_grad(s, ps[i]);
        set_grad(ps[i], random_value, g_rank, i);
    }
    CHECK_STATUS(tg_dist_allreduce_grads(d, ps, 2, w), TG_OK, p);
    for (int i = 0; i < 2; i++) {
        tg_tensor *g = tg_grad(ps[i]);
        CHECK(tensor_same_everywhere(g), "parameter %d differs between ranks", i);
        /* against the double sum of the same products, in rank order: two
         * ranks' sum cannot depend on the order. Three may, by a few units
         * of the double's last place of the sum of magnitudes, and then by
         * one f32 ulp after rounding. */
        int64_t bad = -1;
        for (int64_t k = 0; k < tg_numel(g) && bad < 0; k++) {
            double want = 0, mag = 0;
            for (int r = 0; r < g_world; r++) {
                double v = random_value(r, i, k), wr = (r + 1.0 / 3) / wsum;
                want += (i == 0 ? (double)(float)v : v) * wr;
                mag += fabs(v * wr);
            }
            if (i == 0) want = (float)want;
            double err = fabs(flat(g, k) - want);
            double tol = g_world == 2 ? 0 : 4 * g_world * DBL_EPSILON * mag + (i == 0 ? FLT_EPSILON * fabs(want) : 0);
            if (err > tol) bad = k;
        }
        CHECK(bad < 0, "parameter %d element %lld: not the sum", i, (long long)bad);
    }
    tg_dist_finalize(d);
}

/* After the first call, a reduction allocates nothing. */
static size_t g_allocs;
static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud, (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    g_allocs++;
    return aligned_alloc(16, (nsize + 15) / 16 * 16);
}

static void test_no_allocation(void)
{
    tg_ctx_opts co = tg_ctx_defaults();
    co.alloc = counting_alloc;
    tg_ctx *p = tg_ctx_new_opts(&co), *s = tg_ctx_new();
    tg_dist_opts o = tg_dist_defaults();
    o.bucket_bytes = 256;
    tg_dist *d = tg_dist_init(p, &o);
    CHECK(d != NULL);
    tg_tensor *ps[3] = {tg_tensor_new(p, TG_F32, TG_SHAPE(100)),
                        tg_tensor_new(p, TG_F32, TG_SHAPE(10)),
                        tg_tensor_new(p, TG_F64, TG_SHAPE(33))};
    for (int i = 0; i < 3; i++) {
        tg_set_requires_grad(ps[i], true);
        make_grad(s, ps[i]);
    }
    CHECK_STATUS(tg_dist_allreduce_grads(d, ps, 3, 0.5), TG_OK, p);
    size_t before = g_allocs;
    for (int k = 0; k < 3; k++) CHECK_STATUS(tg_dist_allreduce_grads(d, ps, 3, 0.5), TG_OK, p);
    CHECK(g_allocs == before, "%zu allocations in steady state", g_allocs - before);
    tg_dist_finalize(d);
    tg_ctx_free(s);
    tg_ctx_free(p);
}

/* ---- broadcast --------------------------------------------------------------- */

static void test_broadcast(void)
{
    /* every rank initialises its own way */
    tg_ctx_opts co = tg_ctx_defaults();
    co.seed = 100 + (uint64_t)g_rank;
    tg_ctx *p = tg_ctx_new_opts(&co);
    tg_model *m = tg_model_new(p);
    tg_nn_linear_new(m, "fc", 40, 3, true);
    tg_nn_batch_norm1d_new(m, "bn", 3, 1e-5, 0.1, true);
    tg_tensor *rm = tg_model_find(m, "bn.running_mean");
    tg_tensor *nbt = tg_model_find(m, "bn.num_batches_tracked");
    CHECK(rm && nbt);
    if (!rm || !nbt) return;
    for (int k = 0; k < 3; k++) ((float *)tg_data(rm))[k] = (float)(g_rank + k);
    *(int64_t *)tg_data(nbt) = 7 + g_rank;
    tg_tensor *w = tg_model_find(m, "fc.weight");
    CHECK(!tensor_same_everywhere(w), "the ranks start different");
    float w0[120];
    memcpy(w0, tg_data(w), sizeof w0);

    tg_dist_opts o = tg_dist_defaults();
    o.bucket_bytes = 64; /* many buckets, tensors split across them */
    tg_dist *d = tg_dist_init(p, &o);
    CHECK(d != NULL);
    CHECK_STATUS(tg_dist_broadcast_model(d, m), TG_OK, p);
    for (int i = 0; i < tg_model_nparams(m); i++)
        CHECK(tensor_same_everywhere(tg_model_param(m, i)), "parameter %d", i);
    for (int i = 0; i < tg_model_nbuffers(m); i++)
        CHECK(tensor_same_everywhere(tg_model_buffer(m, i)), "buffer %d", i);
    CHECK(*(int64_t *)tg_data(nbt) == 7, "num_batches_tracked is rank 0's");
    CHECK(((float *)tg_data(rm))[2] == 2.0f);
    if (g_rank == 0) CHECK(memcmp(w0, tg_data(w), sizeof w0) == 0, "rank 0's own values stay");
    tg_dist_finalize(d);
    tg_ctx_free(p);
}

/* ---- 2 ranks at batch B train like one process at batch 2B ---------------------- */

enum { FEAT = 10, HID = 16, CLASSES = 4 };

typedef struct {
    tg_ctx *p;
    tg_model *m;
    tg_module *net;
    tg_optim *opt;
    tg_batcher *b;
    tg_tensor *bx, *by;
} trainer;

static trainer trainer_new(uint64_t seed, bool adam, int64_t n, int64_t batch, int rank, int world)
{
    trainer t;
    tg_ctx_opts co = tg_ctx_defaults();
    co.seed = seed;
    co.n_threads = 1;
    t.p = tg_ctx_new_opts(&co);
    t.m = tg_model_new(t.p);
    t.net = tg_nn_sequential_new(t.m, "net");
    tg_nn_sequential_add(t.net, tg_nn_linear_new(t.m, "net.0", FEAT, HID, true));
    tg_nn_sequential_add(t.net, tg_nn_tanh_new(t.m));
    tg_nn_sequential_add(t.net, tg_nn_linear_new(t.m, "net.2", HID, CLASSES, true));
    if (adam) {
        tg_adam_opts ao = tg_adam_defaults();
        ao.lr = 1e-2;
        t.opt = tg_adam_new(t.p, tg_model_params(t.m), tg_model_nparams(t.m), &ao);
    } else {
        tg_sgd_opts so = tg_sgd_defaults();
        so.lr = 0.1;
        so.momentum = 0.9;
        t.opt = tg_sgd_new(t.p, tg_model_params(t.m), tg_model_nparams(t.m), &so);
    }
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = batch;
    bo.seed = 42;
    bo.rank = rank;
    bo.world = world;
    t.b = tg_batcher_new(t.p, n, &bo);
    t.bx = tg_tensor_new(t.p, TG_F32, TG_SHAPE(batch, FEAT));
    t.by = tg_tensor_new(t.p, TG_I64, TG_SHAPE(batch));
    return t;
}

/* One epoch; d NULL trains alone. Returns the steps taken. */
static int train_epoch(trainer *t, tg_ctx *s, tg_dist *d, tg_tensor *x, tg_tensor *y)
{
    const int64_t *idx;
    int64_t m;
    int steps = 0;
    while ((m = tg_batcher_next(t->b, &idx)) > 0) {
        tg_gather_rows(s, t->bx, x, idx, m);
        tg_gather_rows(s, t->by, y, idx, m);
        tg_tensor *bx = tg_slice(s, t->bx, 0, 0, m, 1), *by = tg_slice(s, t->by, 0, 0, m, 1);
        tg_tensor *loss = tg_cross_entropy(s, tg_module_forward(s, t->net, bx), by);
        tg_backward(s, loss);
        if (d)
            tg_dist_allreduce_grads(d, tg_model_params(t->m), tg_model_nparams(t->m),
                                    tg_batcher_weight(t->b));
        tg_optim_step(t->opt);
        tg_optim_zero_grad(t->opt);
        tg_ctx_reset(s);
        steps++;
    }
    return steps;
}

static void test_equivalence(bool adam, int64_t n, int64_t batch)
{
    const char *name = adam ? "adam" : "sgd";
    tg_ctx *data = tg_ctx_new(), *s = tg_ctx_new();
    tg_ctx_seed(data, 7);
    tg_tensor *x = tg_randn(data, TG_F32, TG_SHAPE(n, FEAT));
    int64_t *labels = malloc((size_t)n * sizeof *labels);
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int64_t)((tg_get(x, (int64_t[]){i, 0}) > 0) * 2 + (tg_get(x, (int64_t[]){i, 1}) > 0));
    tg_tensor *y = tg_tensor_from(data, TG_I64, TG_SHAPE(n), labels);
    free(labels);

    trainer one = trainer_new(1, adam, n, batch * g_world, 0, 1);
    /* each rank initialises differently; the broadcast makes them rank 0's,
     * which is seed 1 like the single process */
    trainer dist = trainer_new(1 + (uint64_t)g_rank, adam, n, batch, g_rank, g_world);
    tg_dist *d = tg_dist_init(dist.p, NULL);
    CHECK(d != NULL, "%s", tg_ctx_errmsg(dist.p));
    if (!d) return;
    CHECK_STATUS(tg_dist_broadcast_model(d, dist.m), TG_OK, dist.p);
    int steps_one = 0, steps_dist = 0;
    for (int epoch = 0; epoch < 3; epoch++) {
        steps_one += train_epoch(&one, s, NULL, x, y);
        steps_dist += train_epoch(&dist, s, d, x, y);
    }
    CHECK(steps_one == steps_dist, "%s: %d steps alone, %d distributed", name, steps_one, steps_dist);
    CHECK(tg_ctx_status(one.p) == TG_OK && tg_ctx_status(dist.p) == TG_OK, "%s: %s / %s", name,
          tg_ctx_errmsg(one.p), tg_ctx_errmsg(dist.p));
    CHECK(tg_ctx_status(s) == TG_OK, "%s: %s", name, tg_ctx_errmsg(s));
    double worst = 0;
    for (int i = 0; i < tg_model_nparams(one.m); i++) {
        tg_tensor *a = tg_model_param(one.m, i), *b = tg_model_param(dist.m, i);
        double scale = 0, diff = 0;
        for (int64_t k = 0; k < tg_numel(a); k++) {
            float va = ((float *)tg_data(a))[k], vb = ((float *)tg_data(b))[k];
            scale = fmax(scale, fabs(va));
            diff = fmax(diff, fabs((double)va - vb));
        }
        worst = fmax(worst, diff / scale);
        CHECK(tensor_same_everywhere(b), "%s: parameter %d differs between ranks", name, i);
    }
    CHECK(worst <= 1e-6, "%s: n %lld batch %lld: relative difference %g", name, (long long)n,
          (long long)batch, worst);
    if (g_rank == 0)
        printf("equivalence %s n=%lld B=%lld x %d ranks, %d steps: max relative difference %.3g\n",
               name, (long long)n, (long long)batch, g_world, steps_dist, worst);
    tg_dist_finalize(d);
    tg_ctx_free(one.p);
    tg_ctx_free(dist.p);
    tg_ctx_free(s);
    tg_ctx_free(data);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_errors(void)
{
    tg_ctx *p = tg_ctx_new();
    tg_dist *d = tg_dist_init(p, NULL);
    CHECK(d != NULL);
    if (!d) return;
    CHECK(tg_dist_rank(d) == g_rank && tg_dist_world(d) == g_world);
    CHECK(tg_dist_rank(NULL) == 0 && tg_dist_world(NULL) == 1);
    CHECK(tg_dist_available());
    tg_tensor *a = tg_tensor_new(p, TG_F32, TG_SHAPE(4)), *b = tg_tensor_new(p, TG_F32, TG_SHAPE(3));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_ctx *s = tg_ctx_new();
    make_grad(s, a);
    make_grad(s, b);
    tg_tensor *two[2] = {a, b};
    tg_status st;

    /* NULL handle: nothing to communicate with */
    CHECK(tg_dist_allreduce_grads(NULL, two, 2, 1.0) == TG_ERR_INVALID);
    CHECK(tg_dist_broadcast_params(NULL, two, 2) == TG_ERR_INVALID);
    CHECK(tg_dist_broadcast_model(NULL, NULL) == TG_ERR_INVALID);
    CHECK(tg_dist_allreduce_sum(NULL, NULL, 0) == TG_ERR_INVALID);
    CHECK(tg_dist_finalize(NULL) == TG_OK);

    /* different counts: every rank fails, nobody hangs */
    st = tg_dist_allreduce_grads(d, two, g_rank == 0 ? 2 : 1, 1.0);
    CHECK_STATUS(st, TG_ERR_MISUSE, p);
    CHECK(has(tg_ctx_errmsg(p), "different counts, 1 to 2"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);

    /* different shapes */
    tg_tensor *mine[1] = {g_rank == 0 ? a : b};
    st = tg_dist_allreduce_grads(d, mine, 1, 1.0);
    CHECK_STATUS(st, TG_ERR_MISUSE, p);
    CHECK(has(tg_ctx_errmsg(p), "different dtypes or shapes"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);
    st = tg_dist_broadcast_params(d, mine, 1);
    CHECK_STATUS(st, TG_ERR_MISUSE, p);
    tg_ctx_clear_error(p);

    /* different calls */
    double v[2] = {1, 2};
    st = g_rank == 0 ? tg_dist_allreduce_sum(d, v, 2) : tg_dist_broadcast_params(d, two, 2);
    CHECK_STATUS(st, TG_ERR_MISUSE, p);
    CHECK(has(tg_ctx_errmsg(p), "different calls"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);

    /* a rank that failed earlier: all fail with its status, gradients stay */
    float ga[4] = {1, 2, 3, 4};
    memcpy(tg_data(tg_grad(a)), ga, sizeof ga);
    int last = g_world - 1;
    if (g_rank == last) tg_ctx_set_error(p, TG_ERR_NUMERIC, "the loss is NaN");
    st = tg_dist_allreduce_grads(d, two, 2, 1.0);
    CHECK_STATUS(st, TG_ERR_NUMERIC, p);
    if (g_rank == last)
        CHECK(strcmp(tg_ctx_errmsg(p), "the loss is NaN") == 0, "%s", tg_ctx_errmsg(p));
    else
        CHECK(has(tg_ctx_errmsg(p), "failed before the call") && has(tg_ctx_errmsg(p), "non-finite"),
              "%s", tg_ctx_errmsg(p));
    CHECK(memcmp(tg_data(tg_grad(a)), ga, sizeof ga) == 0, "gradients unchanged");
    tg_ctx_clear_error(p);

    /* bad arguments on one rank are every rank's failure */
    st = tg_dist_allreduce_grads(d, two, 2, g_rank == 0 ? NAN : 1.0);
    CHECK_STATUS(st, TG_ERR_INVALID, p);
    if (g_rank == 0) CHECK(has(tg_ctx_errmsg(p), "weight nan is not finite"), "%s", tg_ctx_errmsg(p));
    else CHECK(has(tg_ctx_errmsg(p), "rank 0 of"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);
    tg_tensor *labels = tg_tensor_new(p, TG_I64, TG_SHAPE(4));
    tg_tensor *bad[1] = {labels};
    CHECK_STATUS(tg_dist_allreduce_grads(d, bad, 1, 1.0), TG_ERR_INVALID, p);
    CHECK(has(tg_ctx_errmsg(p), "is not floating"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);
    tg_tensor *m2 = tg_tensor_new(p, TG_F32, TG_SHAPE(2, 3));
    tg_tensor *view[1] = {tg_transpose(p, m2, 0, 1)};
    CHECK_STATUS(tg_dist_broadcast_params(d, view, 1), TG_ERR_INVALID, p);
    CHECK(has(tg_ctx_errmsg(p), "not contiguous"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);
    CHECK_STATUS(tg_dist_allreduce_grads(d, NULL, 2, 1.0), TG_ERR_INVALID, p);
    tg_ctx_clear_error(p);
    tg_tensor *holes[2] = {a, NULL};
    CHECK_STATUS(tg_dist_allreduce_grads(d, holes, 2, 1.0), TG_ERR_INVALID, p);
    tg_ctx_clear_error(p);
    CHECK_STATUS(tg_dist_allreduce_sum(d, NULL, 2), TG_ERR_INVALID, p);
    tg_ctx_clear_error(p);
    CHECK_STATUS(tg_dist_broadcast_model(d, NULL), TG_ERR_INVALID, p);
    CHECK(has(tg_ctx_errmsg(p), "the model is NULL"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);

    /* sums for metrics */
    v[0] = g_rank + 1;
    v[1] = 2;
    CHECK_STATUS(tg_dist_allreduce_sum(d, v, 2), TG_OK, p);
    CHECK(v[0] == g_world * (g_world + 1) / 2.0 && v[1] == 2.0 * g_world, "%g %g", v[0], v[1]);
    CHECK_STATUS(tg_dist_allreduce_sum(d, v, 0), TG_OK, p);

    /* handles with different bucket sizes */
    tg_dist_opts o = tg_dist_defaults();
    o.bucket_bytes = 1024 + (size_t)g_rank * 64;
    tg_dist *d2 = tg_dist_init(p, &o);
    CHECK(d2 != NULL);
    CHECK_STATUS(tg_dist_allreduce_grads(d2, two, 2, 1.0), TG_ERR_MISUSE, p);
    CHECK(has(tg_ctx_errmsg(p), "different bucket sizes"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);
    CHECK(tg__dist_live() == 2);
    CHECK_STATUS(tg_dist_finalize(d2), TG_OK, p);

    /* bad options fail before any communication, on every rank alike */
    o.bucket_bytes = 8;
    CHECK(tg_dist_init(p, &o) == NULL && tg_ctx_status(p) == TG_ERR_INVALID);
    CHECK(has(tg_ctx_errmsg(p), "bucket_bytes 8"), "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);
    MPI_Comm none = MPI_COMM_NULL;
    o = tg_dist_defaults();
    o.comm = &none;
    CHECK(tg_dist_init(p, &o) == NULL && tg_ctx_status(p) == TG_ERR_INVALID);
    tg_ctx_clear_error(p);
    CHECK(tg_dist_init(NULL, NULL) == NULL);
    tg_ctx_set_error(p, TG_ERR_IO, "earlier");
    CHECK(tg_dist_init(p, NULL) == NULL && strcmp(tg_ctx_errmsg(p), "earlier") == 0);
    tg_ctx_clear_error(p);

    /* a group of our own: a communicator of the caller */
    MPI_Comm split;
    MPI_Comm_split(MPI_COMM_WORLD, g_rank % 2, g_rank, &split);
    o = tg_dist_defaults();
    o.comm = &split;
    tg_dist *d3 = tg_dist_init(p, &o);
    CHECK(d3 != NULL);
    CHECK(tg_dist_world(d3) == (g_world + 1 - g_rank % 2) / 2 && tg_dist_rank(d3) == g_rank / 2);
    tg_dist_finalize(d3);
    MPI_Comm_free(&split);

    /* MPI's errors become statuses with MPI's text */
    st = tg__dist_mpi_fail(p, "tg_dist_allreduce_grads", "MPI_Allreduce", MPI_ERR_TRUNCATE);
    CHECK(st == TG_ERR_IO && tg_ctx_status(p) == TG_ERR_IO);
    CHECK(has(tg_ctx_errmsg(p), "tg_dist_allreduce_grads: MPI_Allreduce failed: MPI_ERR_TRUNCATE"),
          "%s", tg_ctx_errmsg(p));
    tg_ctx_clear_error(p);

    tg_dist_finalize(d);
    tg_ctx_free(s);
    tg_ctx_free(p);
}

/* ---- who initialises MPI ----------------------------------------------------- */

static int run_self_init(void)
{
    tg_ctx *p = tg_ctx_new();
    int flag = 1;
    MPI_Initialized(&flag);
    CHECK(!flag, "nobody initialised MPI yet");
    tg_dist *d = tg_dist_init(p, NULL), *d2 = tg_dist_init(p, NULL);
    CHECK(d && d2, "%s", tg_ctx_errmsg(p));
    g_rank = tg_dist_rank(d);
    g_world = tg_dist_world(d);
    MPI_Initialized(&flag);
    CHECK(flag && tg__dist_owns_mpi());
    double v[1] = {1};
    CHECK_STATUS(tg_dist_allreduce_sum(d2, v, 1), TG_OK, p);
    CHECK(v[0] == g_world);
    CHECK_STATUS(tg_dist_finalize(d), TG_OK, p);
    MPI_Finalized(&flag);
    CHECK(!flag, "another handle still uses MPI");
    CHECK_STATUS(tg_dist_finalize(d2), TG_OK, p);
    MPI_Finalized(&flag);
    CHECK(flag, "the last handle finalized the MPI tapegrad initialised");
    CHECK(tg_dist_init(p, NULL) == NULL && tg_ctx_status(p) == TG_ERR_MISUSE);
    CHECK(has(tg_ctx_errmsg(p), "cannot be initialised again"), "%s", tg_ctx_errmsg(p));
    tg_ctx_free(p);
    if (g_failures) fprintf(stderr, "rank %d: %d checks failed\n", g_rank, g_failures);
    return g_failures != 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--self-init") == 0) return run_self_init();
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    tg_ctx *p = tg_ctx_new(), *s = tg_ctx_new();

    const size_t buckets[] = {64, 1000, (size_t)4 << 20};
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++)
        test_allreduce_exact(p, s, buckets[i]);
    test_allreduce_random(p, s);
    test_no_allocation();
    test_broadcast();
    /* 37 samples: the last global batch is partial; 33 at 2 ranks and
     * 37 at 3 ranks leave one sample for the last batch: padded ranks */
    test_equivalence(true, 37, 4);
    test_equivalence(false, 37, 4);
    test_equivalence(true, 33, 4);
    test_equivalence(false, 64, 8);
    test_errors();
    CHECK(tg_ctx_status(p) == TG_OK, "%s", tg_ctx_errmsg(p));
    CHECK(tg__dist_live() == 0 && !tg__dist_owns_mpi());
    tg_ctx_free(s);
    tg_ctx_free(p);

    int flag = 1;
    MPI_Finalized(&flag);
    CHECK(!flag, "tapegrad must not finalize the caller's MPI");
    int total = 0;
    MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_failures) fprintf(stderr, "rank %d: %d checks failed\n", g_rank, g_failures);
    if (g_rank == 0) printf("%d ranks: %s\n", g_world, total ? "FAILED" : "all checks passed");
    MPI_Finalize();
    return total != 0;
}
