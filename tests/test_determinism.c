/*
 * test_determinism.c - training is reproducible bit for bit.
 *
 *  - An MLP and a small conv net (tests/train_fixture.c: layers of nn.h
 *    with dropout, Adam, a seeded batcher) trained for some steps give
 *    bit-identical losses, parameters and optimizer state with 1 and with
 *    2 threads, and across two runs with the same seed; another seed
 *    gives other parameters (so the comparison can fail).
 *  - The gradient of a tensor used by several ops is the sum of their
 *    contributions in one fixed order, the reverse of recording (the
 *    backward walk's order), whatever the thread count: chosen values
 *    where f32 addition is not associative pin that order down.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"
#include "train_fixture.h"

/* ---------------------------------------------------------------------- */
/* Training runs                                                           */
/* ---------------------------------------------------------------------- */

enum { MAX_ENTRIES = 64, MAX_STEPS = 16 };

/* Everything a run ends with: each named tensor's bytes, and the losses. */
typedef struct {
    int n;
    char name[MAX_ENTRIES][64];
    unsigned char *bytes[MAX_ENTRIES];
    size_t len[MAX_ENTRIES];
    int steps;
    double loss[MAX_STEPS];
} outcome;

static void keep(outcome *out, const char *name, const tg_tensor *t)
{
    ck_assert_int_lt(out->n, MAX_ENTRIES);
    int i = out->n++;
    snprintf(out->name[i], sizeof out->name[i], "%s", name);
    out->len[i] = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
    out->bytes[i] = malloc(out->len[i] + 1);
    ck_assert_ptr_nonnull(out->bytes[i]);
    tu_assert_status(tg_copy_out(t, out->bytes[i], out->len[i]), TG_OK);
}

static void outcome_free(outcome *out)
{
    for (int i = 0; i < out->n; i++) free(out->bytes[i]);
    out->n = 0;
}

static int steps_for_test(void)
{
    return tu_under_valgrind() ? 2 : 8;
}

static void train(tf_kind kind, int threads, uint64_t seed, outcome *out)
{
    memset(out, 0, sizeof *out);
    tf_run r;
    /* valgrind runs the small models: it serialises threads anyway, and
     * the plain and sanitizer runs cover the split kernels */
    tf_opts o = {.kind = kind, .small = tu_under_valgrind(), .threads = threads, .seed = seed};
    ck_assert_msg(tf_new(&r, &o), "setup: %s", tf_error(&r));
    ck_assert_int_eq(tg_ctx_threads(r.s), threads);
    out->steps = steps_for_test();
    for (int i = 0; i < out->steps; i++) {
        out->loss[i] = tf_step(&r);
        ck_assert_msg(isfinite(out->loss[i]), "step %d: %s", i, tf_error(&r));
    }
    for (int i = 0; i < tg_model_nparams(r.m); i++)
        keep(out, tg_tensor_name(tg_model_param(r.m, i)), tg_model_param(r.m, i));
    for (int i = 0; i < tg_optim_state_count(r.opt); i++) {
        const char *name;
        tg_tensor *t;
        tu_assert_status(tg_optim_state_get(r.opt, i, &name, &t), TG_OK);
        keep(out, name, t);
    }
    tu_assert_ok(r.p);
    tf_free(&r);
}

/* The first difference between two outcomes, or NULL when bit-identical. */
static const char *difference(const outcome *a, const outcome *b, char *buf, size_t n)
{
    if (a->steps != b->steps || a->n != b->n) return "different step or entry counts";
    for (int i = 0; i < a->steps; i++)
        if (memcmp(&a->loss[i], &b->loss[i], sizeof a->loss[i]) != 0) {
            snprintf(buf, n, "loss of step %d: %.17g vs %.17g", i, a->loss[i], b->loss[i]);
            return buf;
        }
    for (int i = 0; i < a->n; i++) {
        if (strcmp(a->name[i], b->name[i]) != 0 || a->len[i] != b->len[i]) return "other entries";
        if (memcmp(a->bytes[i], b->bytes[i], a->len[i]) != 0) {
            snprintf(buf, n, "'%s' differs", a->name[i]);
            return buf;
        }
    }
    return NULL;
}

START_TEST(test_training_bit_identical)
{
    tf_kind kind = _i == 0 ? TF_MLP : TF_CNN;
    const char *what = kind == TF_MLP ? "mlp" : "cnn";
    outcome one, two, again, other;
    char buf[160];
    const char *d;
    train(kind, 1, 1234, &one);
    train(kind, 2, 1234, &two);
    train(kind, 1, 1234, &again);
    train(kind, 2, 1235, &other);
    ck_assert_int_gt(one.n, 4);
    d = difference(&one, &two, buf, sizeof buf);
    ck_assert_msg(d == NULL, "%s, 1 vs 2 threads: %s", what, d);
    d = difference(&one, &again, buf, sizeof buf);
    ck_assert_msg(d == NULL, "%s, two runs with 1 thread: %s", what, d);
    /* the seed matters (weights and dropout masks): the check can fail */
    ck_assert_msg(difference(&two, &other, buf, sizeof buf) != NULL,
                  "%s: seeds 1234 and 1235 gave identical runs", what);
    outcome_free(&one);
    outcome_free(&two);
    outcome_free(&again);
    outcome_free(&other);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* A shared input: contributions in the reverse order of recording         */
/* ---------------------------------------------------------------------- */

/* M elements: over two parallel grains, so the adds split with 2 threads
 * (3,000 under valgrind, which serialises threads anyway). */
static int M = 3 * 32768;

/* Per element, three scales where the order of f32 addition matters:
 * a huge value, a small one and minus the huge one, in rotating roles. */
static void scales(float *s1, float *s2, float *s3)
{
    for (int i = 0; i < M; i++) {
        float big = 1e8f * (1.0f + (float)(i % 97) / 97.0f), small = 1.0f + (float)(i % 13);
        float v[3] = {big, small, -big};
        int r = i % 3;
        s1[i] = v[r];
        s2[i] = v[(r + 1) % 3];
        s3[i] = v[(r + 2) % 3];
    }
}

/* loss = sum(x * s1) + sum(x * s2) + sum(x * s3), with x used by the
 * three muls, recorded in that order; returns x's gradient's bytes. */
static float *shared_grad(int threads, const float *s1, const float *s2, const float *s3)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = threads;
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    tg_tensor *x = tg_full(c, TG_F32, TG_SHAPE(M), 0.5);
    tg_set_requires_grad(x, true);
    tg_tensor *a = tg_tensor_from(c, TG_F32, TG_SHAPE(M), s1);
    tg_tensor *b = tg_tensor_from(c, TG_F32, TG_SHAPE(M), s2);
    tg_tensor *d = tg_tensor_from(c, TG_F32, TG_SHAPE(M), s3);
    /* one statement per op: C leaves the order of argument evaluation open */
    tg_tensor *u1 = tg_sum(c, tg_mul(c, x, a));
    tg_tensor *u2 = tg_sum(c, tg_mul(c, x, b));
    tg_tensor *u3 = tg_sum(c, tg_mul(c, x, d));
    tg_tensor *loss = tg_add(c, tg_add(c, u1, u2), u3);
    tu_assert_status(tg_backward(c, loss), TG_OK);
    float *g = malloc((size_t)M * sizeof *g);
    ck_assert_ptr_nonnull(g);
    tu_assert_status(tg_copy_out(tg_grad(x), g, (size_t)M * sizeof *g), TG_OK);
    tg_ctx_free(c);
    return g;
}

START_TEST(test_shared_input_fixed_order)
{
    if (tu_under_valgrind()) M = 3000;
    size_t bytes = (size_t)M * sizeof(float);
    float *s1 = malloc(bytes), *s2 = malloc(bytes), *s3 = malloc(bytes);
    ck_assert(s1 && s2 && s3);
    scales(s1, s2, s3);
    float *g1 = shared_grad(1, s1, s2, s3);
    float *g2 = shared_grad(2, s1, s2, s3);
    float *g1b = shared_grad(1, s1, s2, s3);
    ck_assert_msg(memcmp(g1, g2, bytes) == 0, "1 and 2 threads differ");
    ck_assert_msg(memcmp(g1, g1b, bytes) == 0, "two runs differ");
    /* the walk meets the last use first: ((s3 + s2) + s1), in f32 */
    int other_orders = 0;
    for (int i = 0; i < M; i++) {
        volatile float want = s3[i] + s2[i];
        want = want + s1[i];
        volatile float alt = s1[i] + s2[i];
        alt = alt + s3[i];
        ck_assert_msg(memcmp(&g1[i], (const float *)&want, sizeof want) == 0,
                      "x.grad[%d] = %.9g, expected (%.9g + %.9g) + %.9g = %.9g", i, g1[i], s3[i],
                      s2[i], s1[i], want);
        other_orders += alt != want;
    }
    /* the values do tell the orders apart */
    ck_assert_int_gt(other_orders, M / 3);
    free(g1);
    free(g2);
    free(g1b);
    free(s1);
    free(s2);
    free(s3);
}
END_TEST

/* Tied parameters: w is used by two matmuls and v by a broadcast add and
 * a broadcast mul (its gradient summed over rows by the engine):
 *   h = tanh(x @ w + v);  loss = mean(tanh(h @ w) * v)
 * The accumulated gradients of w and v are bit-identical across thread
 * counts and runs. Returns both, concatenated (malloc'd). */
static int64_t TR = 512, TD = 256; /* 64 and 32 under valgrind */

static float *tied_grads(int threads)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = threads;
    o.seed = 99;
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    tg_tensor *x = tg_randn(c, TG_F32, TG_SHAPE(TR, TD));
    tg_tensor *w = tg_scale(c, tg_randn(c, TG_F32, TG_SHAPE(TD, TD)), 0.0625);
    tg_tensor *v = tg_randn(c, TG_F32, TG_SHAPE(TD));
    w = tg_detach(c, w);
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(v, true);
    tg_tensor *h = tg_tanh(c, tg_add(c, tg_matmul(c, x, w), v));
    tg_tensor *loss = tg_mean(c, tg_mul(c, tg_tanh(c, tg_matmul(c, h, w)), v));
    tu_assert_status(tg_backward(c, loss), TG_OK);
    float *g = malloc((size_t)(TD * TD + TD) * sizeof *g);
    ck_assert_ptr_nonnull(g);
    tu_assert_status(tg_copy_out(tg_grad(w), g, (size_t)(TD * TD) * sizeof *g), TG_OK);
    tu_assert_status(tg_copy_out(tg_grad(v), g + TD * TD, (size_t)TD * sizeof *g), TG_OK);
    tg_ctx_free(c);
    return g;
}

START_TEST(test_tied_parameters)
{
    if (tu_under_valgrind()) TR = 64, TD = 32;
    float *g1 = tied_grads(1), *g2 = tied_grads(2), *g1b = tied_grads(1);
    size_t n = (size_t)(TD * TD + TD) * sizeof *g1;
    ck_assert_msg(memcmp(g1, g2, n) == 0, "1 and 2 threads differ");
    ck_assert_msg(memcmp(g1, g1b, n) == 0, "two runs differ");
    bool nonzero = false;
    for (int i = 0; i < TD * TD + TD; i++) nonzero = nonzero || g1[i] != 0;
    ck_assert(nonzero);
    free(g1);
    free(g2);
    free(g1b);
}
END_TEST

Suite *determinism_suite(void)
{
    Suite *s = suite_create("determinism");
    TCase *tc = tu_tcase("training");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_training_bit_identical, 0, 2);
    suite_add_tcase(s, tc);
    tc = tu_tcase("shared");
    tcase_add_test(tc, test_shared_input_fixed_order);
    tcase_add_test(tc, test_tied_parameters);
    suite_add_tcase(s, tc);
    return s;
}
