/*
 * test_accum.c - gradients of a weight shared by many timesteps (an RNN's
 * recurrent weight): linear's no-graph backward adds each timestep's dW
 * and db into one buffer of the walk, so the backward's memory does not
 * grow by a weight-sized buffer per timestep; the values are the composite
 * rule's, the bits do not follow the thread count, and a failed backward
 * still changes no .grad.
 *
 * The graph: h[t+1] = tanh(h[t] W^T + b) for t < T, loss = sum_t sum(h[t+1])
 * (so every h has two consumers), with W and b leaves used by every step.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

typedef struct {
    tg_tensor *h0, *w, *b; /* h0 [B, H], W [H, H], b [H]: leaves requiring grad */
} rnn;

static tg_tensor *param(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, uint32_t seed,
                        double scale)
{
    return tu_lcg_tensor(c, dt, ndim, shape, seed, scale, true);
}

/* The parameters in c; false (error on c) when one cannot be made. */
static bool rnn_init(tg_ctx *c, tg_dtype dt, int64_t B, int64_t H, rnn *m)
{
    m->h0 = param(c, dt, TG_SHAPE(B, H), 1, 1.0);
    m->w = param(c, dt, TG_SHAPE(H, H), 2, 1.0 / (double)H);
    m->b = param(c, dt, TG_SHAPE(H), 3, 0.1);
    return m->h0 && m->w && m->b;
}

/* The loss over T timesteps in c; NULL (error on c) on failure. */
static tg_tensor *rnn_loss(tg_ctx *c, const rnn *m, int T)
{
    tg_tensor *h = m->h0, *loss = NULL;
    for (int t = 0; t < T; t++) {
        h = tg_tanh(c, tg_linear(c, h, m->w, m->b));
        tg_tensor *s = tg_sum(c, h);
        loss = loss ? tg_add(c, loss, s) : s;
    }
    return loss;
}

/* Bytes of c's arena taken by one tg_backward over T timesteps. */
static size_t backward_bytes(int T, int64_t B, int64_t H)
{
    tg_ctx *c = tu_ctx();
    rnn m;
    ck_assert(rnn_init(c, TG_F32, B, H, &m));
    tg_tensor *loss = rnn_loss(c, &m, T);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK); /* makes .grad: counted below too */
    size_t before = tg_ctx_bytes_used(c);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK); /* .grad exists: only the walk */
    size_t used = tg_ctx_bytes_used(c) - before;
    tg_ctx_free(c);
    return used;
}

/* Each timestep adds the walk's per-step gradients of the activations
 * (a few [B, H] buffers) but no [H, H] dW of its own. */
START_TEST(test_shared_weight_backward_flat)
{
    enum { B = 2, H = 256, T1 = 8, T2 = 40 };
    size_t short_run = backward_bytes(T1, B, H), long_run = backward_bytes(T2, B, H);
    size_t dw = (size_t)H * H * sizeof(float);
    size_t per_step = (long_run - short_run) / (T2 - T1);
    ck_assert_msg(per_step < dw / 8,
                  "backward grows by %zu bytes per timestep (%zu for T=%d, %zu for T=%d); "
                  "one dW is %zu", per_step, short_run, T1, long_run, T2, dw);
}
END_TEST

/* Values: tg_backward (W and b accumulated in place, h0 deferred to
 * commit), tg_grad_of without a graph (no commit: landed in the walk's
 * buffers) and the composite rules (create_graph) agree in f64, and a
 * second tg_backward doubles .grad. */
START_TEST(test_shared_weight_matches_composite)
{
    enum { B = 3, H = 5, T = 7 };
    tg_ctx *c = tu_ctx();
    rnn m;
    ck_assert(rnn_init(c, TG_F64, B, H, &m));
    tg_tensor *loss = rnn_loss(c, &m, T);
    tg_tensor *ins[3] = {m.h0, m.w, m.b}, *ref[3], *direct[3];
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, 3, ins, true, ref), TG_OK);
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, 3, ins, false, direct), TG_OK);
    for (int k = 1; k <= 2; k++) {
        ck_assert_int_eq(tg_backward(c, loss), TG_OK);
        for (int i = 0; i < 3; i++) {
            int64_t n = tg_numel(ins[i]);
            double *want = malloc((size_t)n * sizeof *want), *got = malloc((size_t)n * sizeof *got);
            double *dir = malloc((size_t)n * sizeof *dir);
            ck_assert(want && got && dir);
            ck_assert_int_eq(tg_copy_out(ref[i], want, (size_t)n * sizeof *want), TG_OK);
            ck_assert_int_eq(tg_copy_out(direct[i], dir, (size_t)n * sizeof *dir), TG_OK);
            ck_assert_int_eq(tg_copy_out(tg_grad(ins[i]), got, (size_t)n * sizeof *got), TG_OK);
            for (int64_t e = 0; e < n; e++) {
                ck_assert_close(dir[e], want[e], 1e-12);
                ck_assert_close(got[e], k * want[e], 1e-12);
            }
            free(want);
            free(got);
            free(dir);
        }
    }
    tg_ctx_free(c);
}
END_TEST

/* f32, with products large enough to be cut into blocks run on the pool:
 * the gradients are the same bits for 1, 2 and 4 threads. */
START_TEST(test_shared_weight_threads_bit_identical)
{
    enum { B = 4, H = 512, T = 6 };
    static const int counts[] = {1, 2, 4};
    float *first[3] = {NULL, NULL, NULL};
    size_t bytes[3] = {0};
    for (int k = 0; k < 3; k++) {
        tg_ctx *c = tu_ctx();
        tu_assert_status(tg_ctx_set_threads(c, counts[k]), TG_OK);
        rnn m;
        ck_assert(rnn_init(c, TG_F32, B, H, &m));
        ck_assert_int_eq(tg_backward(c, rnn_loss(c, &m, T)), TG_OK);
        tg_tensor *ins[3] = {m.h0, m.w, m.b};
        for (int i = 0; i < 3; i++) {
            size_t nb = (size_t)tg_numel(ins[i]) * sizeof(float);
            float *got = malloc(nb);
            ck_assert_ptr_nonnull(got);
            ck_assert_int_eq(tg_copy_out(tg_grad(ins[i]), got, nb), TG_OK);
            if (k == 0) {
                first[i] = got;
                bytes[i] = nb;
                continue;
            }
            ck_assert_msg(memcmp(got, first[i], nb) == 0,
                          "gradient %d differs between 1 and %d threads", i, counts[k]);
            free(got);
        }
        tg_ctx_free(c);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_gt(bytes[i], 0);
        free(first[i]);
    }
}
END_TEST

/* The three gradients' bytes (f64), concatenated into out. */
static void read_grads(const rnn *m, double *out, size_t n)
{
    tg_tensor *ins[3] = {m->h0, m->w, m->b};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t k = (size_t)tg_numel(ins[i]);
        ck_assert(off + k <= n);
        ck_assert_int_eq(tg_copy_out(tg_grad(ins[i]), out + off, k * sizeof *out), TG_OK);
        off += k;
    }
}

/* A step context whose k-th allocation fails, for every k: a failed
 * backward leaves every .grad bit for bit as it was (contributions landed
 * in the walk's buffers are dropped), a successful one doubles it exactly
 * (same parameters, same contributions). Warm: .grad exists. */
START_TEST(test_shared_weight_fail_every_alloc)
{
    enum { B = 2, H = 8, T = 6, NG = B * H + H * H + H };
    tg_ctx *p = tu_ctx();
    rnn m;
    ck_assert(rnn_init(p, TG_F64, B, H, &m));
    {
        tg_ctx *s = tu_ctx();
        ck_assert_int_eq(tg_backward(s, rnn_loss(s, &m, T)), TG_OK);
        tg_ctx_free(s);
    }
    double g1[NG], now[NG];
    read_grads(&m, g1, NG);
    int backward_errors = 0;
    long k;
    for (k = 1; k < 100000; k++) {
        tu_alloc h = {0};
        h.fail_at = k;
        h.fail_rest = true; /* a single failure is absorbed by a smaller block */
        tg_ctx *s = tu_alloc_ctx(&h, 512);
        tg_tensor *loss = s ? rnn_loss(s, &m, T) : NULL;
        tg_status rc = loss ? tg_backward(s, loss) : TG_ERR_NOMEM;
        if (loss && rc != TG_OK) {
            tu_assert_status(rc, TG_ERR_NOMEM);
            backward_errors++;
        }
        read_grads(&m, now, NG);
        if (rc == TG_OK) {
            for (int i = 0; i < NG; i++) ck_assert_msg(now[i] == 2 * g1[i], "k=%ld: element %d", k, i);
            tg_zero_grad(m.h0);
            tg_zero_grad(m.w);
            tg_zero_grad(m.b);
            tg_ctx *s1 = tu_ctx(); /* back to one step's gradients */
            ck_assert_int_eq(tg_backward(s1, rnn_loss(s1, &m, T)), TG_OK);
            tg_ctx_free(s1);
        } else {
            ck_assert_msg(memcmp(now, g1, sizeof now) == 0,
                          "k=%ld: a failed backward changed a gradient", k);
        }
        tg_ctx_free(s);
        tu_alloc_assert_no_leak(&h);
        if (!h.failed) break; /* past the last allocation */
    }
    ck_assert_int_lt(k, 100000);
    ck_assert_msg(backward_errors >= 1, "no failure inside tg_backward was tested");
    tg_ctx_free(p);
}
END_TEST

/* A backward that fails after every linear has added into the walk's
 * buffers (the mul making h0' is walked last and refuses: an input was
 * changed in place) changes no .grad. */
START_TEST(test_shared_weight_all_or_nothing)
{
    tg_ctx *c = tu_ctx();
    rnn m;
    ck_assert(rnn_init(c, TG_F64, 2, 4, &m));
    tg_tensor *a = param(c, TG_F64, TG_SHAPE(2, 4), 9, 1.0);
    tg_set_requires_grad(a, false);
    rnn m2 = m;
    m2.h0 = tg_mul(c, m.h0, a);
    tg_tensor *loss = rnn_loss(c, &m2, 5);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    double g1[8 + 16 + 4], now[8 + 16 + 4];
    read_grads(&m, g1, 28);
    tg_tensor_bump_version(a);
    ck_assert_int_eq(tg_backward(c, loss), TG_ERR_MISUSE);
    tg_ctx_clear_error(c);
    read_grads(&m, now, 28);
    ck_assert(memcmp(now, g1, sizeof now) == 0);
    tg_ctx_free(c);
}
END_TEST

Suite *accum_suite(void)
{
    Suite *s = suite_create("accum");
    TCase *tc = tu_tcase("shared_weight");
    tcase_add_test(tc, test_shared_weight_backward_flat);
    tcase_add_test(tc, test_shared_weight_matches_composite);
    tcase_add_test(tc, test_shared_weight_threads_bit_identical);
    tcase_add_test(tc, test_shared_weight_fail_every_alloc);
    tcase_add_test(tc, test_shared_weight_all_or_nothing);
    suite_add_tcase(s, tc);
    return s;
}
