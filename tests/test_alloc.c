/*
 * test_alloc.c - memory: a steady-state training step does no heap
 * allocation (proved with a counting allocator hook), allocation failure
 * at every allocation of a small training step is reported and leaks
 * nothing, and 10,000 reset cycles do not grow the step context.
 *
 * The model is a small MLP: x [8,4] -> W1 [4,16] + b1 -> tanh -> W2 [16,3]
 * + b2 -> cross_entropy with I64 labels [8]. Parameters and gradients live
 * in a persistent context; activations and the tape in a step context.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

/* The allocator: tu_alloc and friends of test_util.h. */

/* ---------------------------------------------------------------------- */
/* The model                                                              */
/* ---------------------------------------------------------------------- */

enum { N = 8, D = 4, H = 16, K = 3 };

typedef struct {
    tg_tensor *p[4]; /* W1 [D,H], b1 [H], W2 [H,K], b2 [K] */
} mlp;

static float xdata[N * D];
static int64_t labels[N];

/* Deterministic small values in [-0.5, 0.5). */
static float lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

static void make_data(void)
{
    uint32_t s = 7;
    for (int i = 0; i < N * D; i++) xdata[i] = 2 * lcg(&s);
    for (int i = 0; i < N; i++) labels[i] = i % K;
}

/* Creates the parameters in p; false (error on p) when a creation fails. */
static bool mlp_init(tg_ctx *p, mlp *m)
{
    static const int64_t shapes[4][2] = {{D, H}, {H, 0}, {H, K}, {K, 0}};
    static const int ndims[4] = {2, 1, 2, 1};
    uint32_t s = 12345;
    float buf[D * H > H * K ? D * H : H * K];
    for (int i = 0; i < 4; i++) {
        for (size_t j = 0; j < sizeof buf / sizeof buf[0]; j++) buf[j] = lcg(&s);
        m->p[i] = tg_tensor_from(p, TG_F32, ndims[i], shapes[i], buf);
        if (m->p[i] == NULL) return false;
        tg_set_requires_grad(m->p[i], true);
    }
    return tg_ctx_status(p) == TG_OK;
}

/* The loss of one step, built in s; NULL when an op failed. */
static tg_tensor *mlp_loss(tg_ctx *s, const mlp *m)
{
    tg_tensor *x = tg_tensor_from(s, TG_F32, TG_SHAPE(N, D), xdata);
    tg_tensor *y = tg_tensor_from(s, TG_I64, TG_SHAPE(N), labels);
    tg_tensor *h = tg_tanh(s, tg_add(s, tg_matmul(s, x, m->p[0]), m->p[1]));
    tg_tensor *logits = tg_add(s, tg_matmul(s, h, m->p[2]), m->p[3]);
    return tg_cross_entropy(s, logits, y);
}

/* p -= lr * grad through tg_data, then zero the gradients. */
static void sgd(mlp *m, float lr)
{
    for (int i = 0; i < 4; i++) {
        tg_tensor *g = tg_grad(m->p[i]);
        ck_assert_ptr_nonnull(g);
        float *pd = tg_data(m->p[i]);
        const float *gd = tg_data(g);
        ck_assert_ptr_nonnull(pd);
        ck_assert_ptr_nonnull(gd);
        for (int64_t j = 0; j < tg_numel(m->p[i]); j++) pd[j] -= lr * gd[j];
        tg_tensor_bump_version(m->p[i]);
        tg_zero_grad(m->p[i]);
    }
}

/* One full step in s: reset, forward, backward, update. Returns the loss. */
static double train_step(tg_ctx *s, mlp *m)
{
    tg_ctx_reset(s);
    tg_tensor *loss = mlp_loss(s, m);
    ck_assert_msg(loss != NULL, "forward failed: %s", tg_ctx_errmsg(s));
    double l = tg_item(loss);
    tu_assert_status(tg_backward(s, loss), TG_OK);
    sgd(m, 0.5f);
    return l;
}

/* ---------------------------------------------------------------------- */
/* (a) No heap allocation in a steady-state step                          */
/* ---------------------------------------------------------------------- */

START_TEST(test_steady_state_no_alloc)
{
    make_data();
    tu_alloc hp = {0}, hs = {0};
    tg_ctx *p = tu_alloc_ctx(&hp, 0);
    tg_ctx *s = tu_alloc_ctx(&hs, _i ? 1024 : 0); /* default and small first block */
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_ctx_threads(p), 1);
    tu_assert_status(tg_ctx_set_threads(s, 1), TG_OK);
    mlp m;
    ck_assert(mlp_init(p, &m));
    ck_assert(hs.calls > 0 && hp.calls > 0);

    enum { WARMUP = 3, STEPS = 100 };
    long p_after_first = 0, p_mark = 0, s_mark = 0;
    double first = 0, last = 0;
    for (int step = 0; step < WARMUP + STEPS; step++) {
        if (step == WARMUP) {
            p_mark = hp.calls;
            s_mark = hs.calls;
        }
        double l = train_step(s, &m);
        ck_assert(isfinite(l));
        if (step == 0) {
            first = l;
            p_after_first = hp.calls; /* grads allocated by the first backward */
        } else {
            ck_assert_msg(hp.calls == p_after_first,
                          "step %d: the persistent context called the allocator (%ld calls, "
                          "%ld after the first backward)",
                          step, hp.calls, p_after_first);
        }
        last = l;
    }
    ck_assert_msg(hs.calls == s_mark, "the step context made %ld allocator calls in %d steps",
                  hs.calls - s_mark, STEPS);
    ck_assert_msg(hp.calls == p_mark, "the persistent context made %ld allocator calls",
                  hp.calls - p_mark);
    ck_assert_msg(last < first, "training did not reduce the loss: %g -> %g", first, last);
    tu_assert_ok(p);
    tu_assert_ok(s);

    tg_ctx_free(s);
    tg_ctx_free(p);
    tu_alloc_assert_no_leak(&hp);
    tu_alloc_assert_no_leak(&hs);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* (b) Allocation failure at every allocation                             */
/* ---------------------------------------------------------------------- */

/* True when every element of t is zero (or t is NULL). */
static bool all_zero_or_null(const tg_tensor *t)
{
    if (t == NULL) return true;
    int64_t n = tg_numel(t);
    float *v = malloc((size_t)n * sizeof *v + 1);
    ck_assert_ptr_nonnull(v);
    tu_assert_status(tg_copy_out(t, v, (size_t)n * sizeof *v), TG_OK);
    bool z = true;
    for (int64_t i = 0; i < n; i++) z = z && v[i] == 0.0f;
    free(v);
    return z;
}

/* A non-empty message on whichever context holds an error. */
static void assert_error_message(const tg_ctx *a, const tg_ctx *b, long k)
{
    const tg_ctx *cs[2] = {a, b};
    bool any = false;
    for (int i = 0; i < 2; i++) {
        if (cs[i] == NULL || tg_ctx_status(cs[i]) == TG_OK) continue;
        any = true;
        ck_assert_msg(tg_ctx_errmsg(cs[i])[0] != '\0', "k=%ld: status %s with an empty message", k,
                      tg_status_str(tg_ctx_status(cs[i])));
    }
    ck_assert_msg(any, "k=%ld: an error was reported but no context holds it", k);
}

/* The loss and gradients of one failure-free cold step (the reference). */
typedef struct {
    float loss;
    float grad[4][D * H];
} step_result;

static void read_result(const mlp *m, tg_tensor *loss, step_result *r)
{
    memset(r, 0, sizeof *r);
    tu_assert_status(tg_copy_out(loss, &r->loss, sizeof r->loss), TG_OK);
    for (int i = 0; i < 4; i++)
        tu_assert_status(
            tg_copy_out(tg_grad(m->p[i]), r->grad[i], (size_t)tg_numel(m->p[i]) * sizeof(float)),
            TG_OK);
}

/*
 * Cold: everything under a hook that fails its k-th allocation, from the
 * creation of the contexts to the end of the first backward (which also
 * allocates the gradients in the persistent context). A failure either
 * surfaces as an error (TG_ERR_NOMEM with a message, or NULL from
 * tg_ctx_new_opts) or is absorbed by a fallback (the arena retries a
 * smaller block), in which case the results must be exactly those of a
 * run without failure.
 */
/* Loop index: bit 0 picks a small arena block, bit 1 fails every
 * allocation from the k-th on (so fallbacks cannot absorb it) instead of
 * the k-th alone. */
START_TEST(test_fail_every_alloc_cold)
{
    const size_t chunk = (_i & 1) ? 512 : 0;
    const bool rest = (_i & 2) != 0;
    make_data();
    step_result ref, got;
    {
        tu_alloc h = {0};
        tg_ctx *p = tu_alloc_ctx(&h, chunk), *s = tu_alloc_ctx(&h, chunk);
        mlp m;
        ck_assert(p && s && mlp_init(p, &m));
        tg_tensor *loss = mlp_loss(s, &m);
        ck_assert_ptr_nonnull(loss);
        tu_assert_status(tg_backward(s, loss), TG_OK);
        read_result(&m, loss, &ref);
        tg_ctx_free(s);
        tg_ctx_free(p);
        tu_alloc_assert_no_leak(&h);
    }

    long k;
    int errors = 0, backward_errors = 0;
    for (k = 1; k < 100000; k++) {
        tu_alloc h = {0};
        h.fail_at = k;
        h.fail_rest = rest;
        tg_ctx *p = NULL, *s = NULL;
        mlp m = {{NULL}};
        tg_status rc = TG_OK;
        tg_tensor *loss = NULL;
        bool ok = false;

        p = tu_alloc_ctx(&h, chunk);
        if (p == NULL) {
            ck_assert_msg(h.failed, "k=%ld: tg_ctx_new_opts gave NULL without a failure", k);
            goto done;
        }
        if (!mlp_init(p, &m)) {
            tu_assert_status(tg_ctx_status(p), TG_ERR_NOMEM);
            assert_error_message(p, NULL, k);
            goto done;
        }
        s = tu_alloc_ctx(&h, chunk);
        if (s == NULL) {
            ck_assert_msg(h.failed, "k=%ld: tg_ctx_new_opts gave NULL without a failure", k);
            goto done;
        }
        loss = mlp_loss(s, &m);
        if (loss == NULL) {
            tu_assert_status(tg_ctx_status(s), TG_ERR_NOMEM);
            assert_error_message(s, NULL, k);
            goto done;
        }
        tu_assert_ok(s);
        rc = tg_backward(s, loss);
        if (rc != TG_OK) {
            tu_assert_status(rc, TG_ERR_NOMEM);
            assert_error_message(p, s, k);
            backward_errors++;
            goto done;
        }
        ok = true;

    done:
        ck_assert_msg(ok || h.failed, "k=%ld: an error without an allocation failure", k);
        if (ok) {
            /* No failure, or one absorbed by a fallback: exact results. */
            read_result(&m, loss, &got);
            ck_assert_msg(memcmp(&got, &ref, sizeof got) == 0,
                          "k=%ld: results differ from a run without failure", k);
        } else {
            errors++;
            for (int i = 0; i < 4; i++) {
                if (m.p[i] == NULL) continue;
                /* A failed walk leaves no gradient behind. */
                ck_assert_msg(all_zero_or_null(tg_grad(m.p[i])),
                              "k=%ld: parameter %d has a gradient after a failed backward", k, i);
            }
        }
        tg_ctx_free(s);
        tg_ctx_free(p);
        tu_alloc_assert_no_leak(&h);
        if (!h.failed) break; /* k is past the last allocation of the step */
    }
    ck_assert_msg(errors >= 2, "only %d failures surfaced as errors", errors);
    if (rest && chunk) /* with 1 MiB blocks, backward needs no new block */
        ck_assert_msg(backward_errors >= 1, "no failure inside tg_backward was tested");
    ck_assert_int_lt(k, 100000);
}
END_TEST

/*
 * Warm: parameters and gradients exist (one step ran); a fresh step
 * context fails its k-th allocation. The gradients must be bit-identical
 * after every failed step, and exactly doubled after a step that succeeds
 * (gradients accumulate; same parameters, same data).
 */
START_TEST(test_fail_every_alloc_warm)
{
    const size_t chunk = (_i & 1) ? 256 : 0;
    const bool rest = (_i & 2) != 0;
    make_data();
    tu_alloc hp = {0};
    tg_ctx *p = tu_alloc_ctx(&hp, 0);
    ck_assert_ptr_nonnull(p);
    mlp m;
    ck_assert(mlp_init(p, &m));
    {
        tu_alloc h0 = {0};
        tg_ctx *s0 = tu_alloc_ctx(&h0, chunk);
        ck_assert_ptr_nonnull(s0);
        tg_tensor *loss = mlp_loss(s0, &m);
        ck_assert_ptr_nonnull(loss);
        tu_assert_status(tg_backward(s0, loss), TG_OK);
        tg_ctx_free(s0);
        tu_alloc_assert_no_leak(&h0);
    }
    float snap[4][D * H];
    int64_t n[4];
    for (int i = 0; i < 4; i++) {
        n[i] = tg_numel(m.p[i]);
        tu_assert_status(tg_copy_out(tg_grad(m.p[i]), snap[i], (size_t)n[i] * sizeof(float)),
                         TG_OK);
    }
    const long p_calls = hp.calls;

    long k, bw_allocs = -1; /* heap allocations of the backward that succeeded unhindered */
    int errors = 0, backward_errors = 0;
    for (k = 1; k < 100000; k++) {
        tu_alloc h = {0};
        h.fail_at = k;
        h.fail_rest = rest;
        bool ok = false;
        tg_ctx *s = tu_alloc_ctx(&h, chunk);
        if (s == NULL) {
            ck_assert(h.failed);
        } else {
            tg_tensor *loss = mlp_loss(s, &m);
            if (loss == NULL) {
                tu_assert_status(tg_ctx_status(s), TG_ERR_NOMEM);
                assert_error_message(s, NULL, k);
            } else {
                long before = h.allocs;
                tg_status rc = tg_backward(s, loss);
                if (rc == TG_OK) {
                    ok = true;
                    if (!h.failed) bw_allocs = h.allocs - before;
                } else {
                    tu_assert_status(rc, TG_ERR_NOMEM);
                    assert_error_message(s, p, k);
                    backward_errors++;
                }
            }
        }
        ck_assert_msg(ok || h.failed, "k=%ld: an error without an allocation failure", k);
        errors += !ok;
        for (int i = 0; i < 4; i++) {
            float g[D * H];
            tu_assert_status(tg_copy_out(tg_grad(m.p[i]), g, (size_t)n[i] * sizeof(float)), TG_OK);
            for (int64_t j = 0; j < n[i]; j++) {
                float want = ok ? 2 * snap[i][j] : snap[i][j];
                ck_assert_msg(g[j] == want,
                              "k=%ld (%s): grad of parameter %d [%lld] = %.9g, want %.9g", k,
                              ok ? "success" : "failure", i, (long long)j, g[j], want);
            }
            if (ok) {
                /* back to the snapshot for the next round */
                tu_assert_status(tg_copy_in(tg_grad(m.p[i]), snap[i], (size_t)n[i] * sizeof(float)),
                                 TG_OK);
            }
        }
        tg_ctx_free(s);
        tu_alloc_assert_no_leak(&h);
        ck_assert_int_eq(hp.calls, p_calls); /* grads existed: no allocation in p */
        if (!h.failed) break;
    }
    ck_assert_int_ge(errors, 1);
    /* with small blocks, a failure inside backward must have been tested,
     * unless the warm backward fits in the blocks the forward left (the
     * fused no-graph rules allocate little) and makes no allocation at all */
    if (rest && chunk)
        ck_assert_msg(backward_errors >= 1 || bw_allocs == 0,
                      "no failure inside tg_backward was tested (it allocates %ld times)",
                      bw_allocs);
    ck_assert_int_lt(k, 100000);
    tu_assert_ok(p);
    tg_ctx_free(p);
    tu_alloc_assert_no_leak(&hp);
}
END_TEST

/*
 * Issue 2, item 9: an allocation failure gives "a status and a message
 * naming the function" like every other error ("tg_matmul: out of memory
 * ..."), not a bare "out of memory". Every allocation from the k-th on
 * fails, for every k in a small step.
 */
START_TEST(test_nomem_message_names_function)
{
    make_data();
    for (long k = 1; k < 100000; k++) {
        tu_alloc h = {0};
        h.fail_at = k;
        h.fail_rest = true;
        tg_ctx *p = tu_alloc_ctx(&h, 256), *s = NULL;
        mlp m;
        if (p && mlp_init(p, &m) && (s = tu_alloc_ctx(&h, 256)) != NULL) {
            tg_tensor *loss = mlp_loss(s, &m);
            if (loss) tg_backward(s, loss);
        }
        /* Read the messages, free, then judge: a failure here must not
         * also leak under CK_FORK=no (valgrind). */
        char msg[2][512] = {"", ""};
        const tg_ctx *cs[2] = {p, s};
        for (int i = 0; i < 2; i++)
            if (cs[i] != NULL && tg_ctx_status(cs[i]) != TG_OK)
                snprintf(msg[i], sizeof msg[i], "%s", tg_ctx_errmsg(cs[i]));
        tg_ctx_free(s);
        tg_ctx_free(p);
        tu_alloc_assert_no_leak(&h);
        for (int i = 0; i < 2; i++)
            ck_assert_msg(msg[i][0] == '\0' || strncmp(msg[i], "tg_", 3) == 0,
                          "k=%ld: %s context: message \"%s\" does not name the function", k,
                          i ? "step" : "persistent", msg[i]);
        if (!h.failed) break;
    }
}
END_TEST

/*
 * Failure during a reset that merges grown blocks, and in the step after
 * it: the reset cannot report an error, so it must keep working memory;
 * the step either succeeds or reports TG_ERR_NOMEM. Nothing leaks.
 */
START_TEST(test_fail_after_growth)
{
    make_data();
    for (long k = 1; k < 200; k++) {
        tu_alloc hp = {0}, h = {0};
        tg_ctx *p = tu_alloc_ctx(&hp, 0);
        ck_assert_ptr_nonnull(p);
        mlp m;
        ck_assert(mlp_init(p, &m));
        tg_ctx *s = tu_alloc_ctx(&h, 256); /* grows over several blocks */
        ck_assert_ptr_nonnull(s);
        tg_tensor *loss = mlp_loss(s, &m);
        ck_assert_ptr_nonnull(loss);
        tu_assert_status(tg_backward(s, loss), TG_OK);

        h.fail_at = h.allocs + k;
        tg_ctx_reset(s); /* may try to merge its blocks */
        tu_assert_ok(s);
        ck_assert_uint_eq(tg_ctx_bytes_used(s), 0);
        bool ok = false;
        for (int step = 0; step < 3; step++) {
            tg_ctx_reset(s);
            loss = mlp_loss(s, &m);
            tg_status rc = loss ? tg_backward(s, loss) : tg_ctx_status(s);
            if (rc != TG_OK) {
                tu_assert_status(rc, TG_ERR_NOMEM);
                ck_assert(h.failed);
                assert_error_message(s, NULL, k);
                tg_ctx_clear_error(s);
                continue;
            }
            ok = true;
        }
        ck_assert_msg(ok, "k=%ld: no step succeeded after a single allocation failure", k);
        tg_ctx_free(s);
        tg_ctx_free(p);
        tu_alloc_assert_no_leak(&h);
        tu_alloc_assert_no_leak(&hp);
        if (!h.failed) break; /* past the last allocation */
    }
}
END_TEST

/* ---------------------------------------------------------------------- */
/* (c) 10,000 reset cycles                                                */
/* ---------------------------------------------------------------------- */

START_TEST(test_reset_cycles)
{
    make_data();
    tu_alloc hp = {0}, hs = {0};
    tg_ctx *p = tu_alloc_ctx(&hp, 0);
    tg_ctx *s = tu_alloc_ctx(&hs, 2048); /* small first block: growth, then merge */
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(s);
    mlp m;
    ck_assert(mlp_init(p, &m));

    enum { WARMUP = 10 };
    const int cycles = 10000;
    size_t reserved = 0, used = 0, p_reserved = 0;
    long s_calls = 0, p_calls = 0;
    double first = 0, last = 0;
    for (int i = 0; i < cycles; i++) {
        double l = train_step(s, &m);
        if (i == 0) first = l;
        last = l;
        if (i == WARMUP) {
            reserved = tg_ctx_bytes_reserved(s);
            used = tg_ctx_bytes_used(s);
            p_reserved = tg_ctx_bytes_reserved(p);
            s_calls = hs.calls;
            p_calls = hp.calls;
        } else if (i > WARMUP) {
            if (tg_ctx_bytes_reserved(s) != reserved || tg_ctx_bytes_used(s) != used ||
                tg_ctx_bytes_reserved(p) != p_reserved || hs.calls != s_calls ||
                hp.calls != p_calls)
                ck_abort_msg("cycle %d: step reserved %zu (was %zu), used %zu (was %zu), "
                             "persistent reserved %zu (was %zu), allocator calls %ld/%ld "
                             "(were %ld/%ld)",
                             i, tg_ctx_bytes_reserved(s), reserved, tg_ctx_bytes_used(s), used,
                             tg_ctx_bytes_reserved(p), p_reserved, hs.calls, hp.calls, s_calls,
                             p_calls);
        }
    }
    ck_assert(isfinite(last));
    ck_assert_msg(last < first, "loss %g -> %g", first, last);
    ck_assert_uint_gt(reserved, 2048); /* the step did outgrow its first block */
    tg_ctx_reset(s);
    ck_assert_uint_eq(tg_ctx_bytes_used(s), 0);
    tg_ctx_free(s);
    tg_ctx_free(p);
    tu_alloc_assert_no_leak(&hs);
    tu_alloc_assert_no_leak(&hp);
}
END_TEST

Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");

    TCase *tc = tcase_create("steady");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_steady_state_no_alloc, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("failure");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fail_every_alloc_cold, 0, 4);
    tcase_add_loop_test(tc, test_fail_every_alloc_warm, 0, 4);
    tcase_add_test(tc, test_fail_after_growth);
    tcase_add_test(tc, test_nomem_message_names_function);
    suite_add_tcase(s, tc);

    tc = tcase_create("cycles");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reset_cycles);
    suite_add_tcase(s, tc);

    return s;
}
