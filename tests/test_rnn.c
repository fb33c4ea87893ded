/*
 * test_rnn.c - what a recurrent layer keeps in the step arena, and the
 * fused LSTM ops' backwards against the rules built from ops:
 * - tg_lstm (one op per LSTM layer) keeps its output (h of every step),
 *   its cell states and, unless it recomputes them, its gates'
 *   activations; nothing per step besides, no node records, no scratch;
 * - recomputing the gates gives the same bits as keeping them;
 * - an RNN layer gives its input projection back for the next layer's;
 * - tg_lstm_cell recomputes its activations in its backward.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

enum { B = 8, H = 256, I = 16 };

/* Arena bytes of one forward of a recurrent layer (kind "lstm" or "rnn")
 * over T timesteps (B x T x I input, `layers` layers of hidden size H,
 * f32), grad mode on. */
static size_t forward_bytes_layers(const char *kind, int T, int layers, bool recompute)
{
    tg_ctx *pc = tu_ctx(), *c = tu_ctx();
    tg_model *m = tg_model_new(pc);
    tg_rnn_opts o = tg_rnn_defaults();
    o.num_layers = layers;
    o.recompute_gates = recompute;
    tg_module *rnn = strcmp(kind, "lstm") == 0 ? tg_nn_lstm_new(m, "lstm", I, H, &o)
                                               : tg_nn_rnn_new(m, "rnn", I, H, &o);
    tg_tensor *x = tg_randn(c, TG_F32, TG_SHAPE(B, T, I));
    tu_assert_ok(pc);
    tu_assert_ok(c);
    size_t before = tg_ctx_bytes_used(c);
    tg_tensor *out = NULL;
    tg_nn_rnn_forward(c, rnn, x, NULL, NULL, &out, NULL, NULL);
    tu_assert_ok(c);
    ck_assert_ptr_nonnull(out);
    size_t used = tg_ctx_bytes_used(c) - before;
    tg_ctx_free(c);
    tg_ctx_free(pc);
    return used;
}

/* An LSTM timestep costs its gates' activations [B, 4H] and its h and c
 * [2, B, H]: 6 B H floats; with recompute_gates only h and c, 2 B H. Less
 * than 64 bytes a step more (arena rounding): no records per step. (With
 * a linear_add and a tg_lstm_cell per step it was 11 B H floats plus a few
 * hundred bytes of records per op; before tg_linear_add, 24 B H.) */
START_TEST(test_lstm_step_memory)
{
    enum { T1 = 4, T2 = 20 };
    for (int recompute = 0; recompute < 2; recompute++) {
        size_t short_run = forward_bytes_layers("lstm", T1, 1, recompute);
        size_t long_run = forward_bytes_layers("lstm", T2, 1, recompute);
        size_t per_step = (long_run - short_run) / (T2 - T1);
        size_t kept = (size_t)(recompute ? 2 : 6) * B * H * sizeof(float);
        ck_assert_msg(per_step >= kept && per_step < kept + 64,
                      "recompute %d: an LSTM step takes %zu bytes (T=%d: %zu, T=%d: %zu); its "
                      "tensors are %zu",
                      recompute, per_step, T1, short_run, T2, long_run, kept);
    }
}
END_TEST

/* No backward reads an RNN layer's input projection (only views of it and
 * tg_linear_add's addend do), so it goes back after the layer's loop and
 * the next layer's projection takes its block: a second layer costs its
 * pre-activations, tanh outputs and output rows, 3 B H floats a step, plus
 * the records of its ops (under 3/4 B H floats here); with its own
 * projection it would be 4 B H more. */
START_TEST(test_rnn_projection_given_back)
{
    enum { T = 12 };
    size_t one = forward_bytes_layers("rnn", T, 1, false);
    size_t two = forward_bytes_layers("rnn", T, 2, false);
    size_t second = two - one, kept = (size_t)3 * T * B * H * sizeof(float);
    ck_assert_msg(second >= kept && second < kept + (size_t)3 * T * B * H * sizeof(float) / 4,
                  "the second layer took %zu bytes (one layer %zu, two %zu); its steps' "
                  "tensors are %zu",
                  second, one, two, kept);
}
END_TEST

/* Every gradient of loss = sum(w * y) for y = tg_lstm(...), as tensors of
 * c (NULL for an absent input). */
static void lstm_grads(tg_ctx *c, tg_tensor **in, unsigned flags, bool create_graph,
                       tg_tensor **g)
{
    tg_tensor *y = tg_lstm(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], flags);
    tu_assert_ok(c);
    tg_tensor *w = tg_randn(c, tg_tensor_dtype(y), tg_ndim(y), tg_shape(y));
    tg_tensor *loss = tg_sum(c, tg_mul(c, w, y));
    tg_tensor *ins[7];
    int n = 0;
    for (int k = 0; k < 7; k++)
        if (in[k]) ins[n++] = in[k];
    tg_tensor *out[7];
    tu_assert_status(tg_grad_of(c, 1, &loss, NULL, n, ins, create_graph, out), TG_OK);
    for (int k = 0, j = 0; k < 7; k++) g[k] = in[k] ? out[j++] : NULL;
}

/* The inputs of a small tg_lstm in dt: x [3, 5, 4] (transposed from
 * [5, 3, 4] when strided), H 3; without biases when !bias, h0 (no c0)
 * when h0. */
static void lstm_inputs(tg_ctx *c, tg_dtype dt, bool strided, bool bias, bool h0,
                        tg_tensor **in)
{
    enum { b = 3, t = 5, i = 4, h = 3 };
    in[0] = strided ? tg_transpose(c, tg_randn(c, dt, TG_SHAPE(t, b, i)), 0, 1)
                    : tg_randn(c, dt, TG_SHAPE(b, t, i));
    in[1] = tg_randn(c, dt, TG_SHAPE(4 * h, i));
    in[2] = tg_randn(c, dt, TG_SHAPE(4 * h, h));
    in[3] = bias ? tg_randn(c, dt, TG_SHAPE(4 * h)) : NULL;
    in[4] = bias ? tg_randn(c, dt, TG_SHAPE(4 * h)) : NULL;
    in[5] = h0 ? tg_randn(c, dt, TG_SHAPE(b, h)) : NULL;
    in[6] = NULL;
    ck_assert(tg_is_contiguous(in[0]) == !strided);
    for (int k = 0; k < 7; k++)
        if (in[k]) tg_set_requires_grad(in[k], true); /* x: a view, a leaf too */
    tu_assert_ok(c);
}

/* a[k] and b[k], gradients of in[k] (skipped when NULL), agree: within
 * tol elementwise (f64), or bit for bit when tol is 0. */
static void assert_grads_match(tg_tensor *const *in, tg_tensor *const *a, tg_tensor *const *b,
                               double tol)
{
    for (int k = 0; k < 7; k++) {
        if (!in[k]) continue;
        int64_t n = tg_numel(in[k]);
        size_t bytes = (size_t)n * (tg_tensor_dtype(in[k]) == TG_F64 ? 8 : 4);
        double *pa = malloc(bytes), *pb = malloc(bytes);
        ck_assert(pa && pb);
        ck_assert_int_eq(tg_copy_out(a[k], pa, bytes), TG_OK);
        ck_assert_int_eq(tg_copy_out(b[k], pb, bytes), TG_OK);
        if (tol == 0)
            ck_assert_msg(memcmp(pa, pb, bytes) == 0, "input %d's gradient differs", k);
        else
            for (int64_t e = 0; e < n; e++) ck_assert_close(pa[e], pb[e], tol);
        free(pa);
        free(pb);
    }
}

/* tg_lstm's fused backward (no graph) against the rule built from ops
 * (create_graph), f64, with the gates kept and recomputed, with and without
 * the cell states out: contiguous and strided x, with and without biases,
 * h0 without biases (the opgrad table's variants drop trailing inputs
 * only). */
START_TEST(test_lstm_fused_matches_ops)
{
    static const bool cfg[4][3] = {
        {false, true, true}, {true, true, false}, {false, false, true}, {true, false, false}};
    for (int v = 0; v < 4; v++)
        for (unsigned flags = 0; flags < 4; flags++) {
            tg_ctx *c = tu_ctx();
            tg_tensor *in[7], *fused[7], *ops[7];
            lstm_inputs(c, TG_F64, cfg[v][0], cfg[v][1], cfg[v][2], in);
            tg_ctx_seed(c, 5);
            lstm_grads(c, in, flags, false, fused);
            tg_ctx_seed(c, 5);
            lstm_grads(c, in, flags, true, ops);
            assert_grads_match(in, fused, ops, 1e-12);
            tg_ctx_free(c);
        }
}
END_TEST

/* Recomputing the gates in the backward gives the kept gates' bits, so the
 * same gradients, f32 and f64, with and without the cell states out. */
START_TEST(test_lstm_recompute_same_bits)
{
    for (int v = 0; v < 4; v++) {
        bool f64 = v & 1;
        unsigned cells = v & 2 ? TG_LSTM_CELLS : 0;
        tg_ctx *c = tu_ctx();
        tg_tensor *in[7], *g[2][7];
        lstm_inputs(c, f64 ? TG_F64 : TG_F32, false, true, true, in);
        for (int rec = 0; rec < 2; rec++) {
            tg_ctx_seed(c, 9);
            lstm_grads(c, in, cells | (rec ? TG_LSTM_RECOMPUTE : 0), false, g[rec]);
        }
        assert_grads_match(in, g[0], g[1], 0);
        tg_ctx_free(c);
    }
}
END_TEST

/* Under tg_backward_release the kept gates become their gradients in
 * place, and dropout's mask between the layers goes back after its node:
 * the gradients are tg_backward's bits, and a second backward through the
 * released layer is refused. */
START_TEST(test_lstm_release_same_bits)
{
    enum { b = 4, t = 6, in = 8, h = 32, MAXP = 32 };
    static float g[2][MAXP][4 * h * h];
    int np = 0;
    for (int rel = 0; rel < 2; rel++) {
        tg_ctx *pc = tu_ctx(), *c = tu_ctx();
        tg_ctx_seed(pc, 1);
        tg_ctx_seed(c, 2);
        tg_model *m = tg_model_new(pc);
        tg_rnn_opts o = tg_rnn_defaults();
        o.num_layers = 2;
        o.dropout = 0.3;
        tg_module *lstm = tg_nn_lstm_new(m, "lstm", in, h, &o);
        tg_tensor *x = tg_randn(c, TG_F32, TG_SHAPE(b, t, in)), *out = NULL;
        tg_nn_rnn_forward(c, lstm, x, NULL, NULL, &out, NULL, NULL);
        tg_tensor *loss = tg_sum(c, tg_mul(c, out, tg_randn(c, TG_F32, TG_SHAPE(b, t, h))));
        tu_assert_ok(c);
        tu_assert_status(rel ? tg_backward_release(c, loss) : tg_backward(c, loss), TG_OK);
        np = tg_model_nparams(m);
        ck_assert_int_le(np, MAXP);
        for (int i = 0; i < np; i++) {
            tg_tensor *gi = tg_grad(tg_model_params(m)[i]);
            ck_assert_int_le(tg_numel(gi), 4 * h * h);
            ck_assert_int_eq(tg_copy_out(gi, g[rel][i], (size_t)tg_numel(gi) * 4), TG_OK);
        }
        if (rel) {
            tu_assert_status(tg_backward(c, loss), TG_ERR_MISUSE);
            tg_ctx_clear_error(c);
        }
        tg_ctx_free(c);
        tg_ctx_free(pc);
    }
    for (int i = 0; i < np; i++)
        ck_assert_msg(memcmp(g[0][i], g[1][i], sizeof g[0][i]) == 0,
                      "parameter %d's gradient differs under release", i);
}
END_TEST

/* Out of memory from every allocation of a step context on (small first
 * arena block, so the forward and the backward each need new ones)
 * running an LSTM layer and tg_backward_release: TG_ERR_NOMEM with a
 * message, no leak, no gradient; the run that fails nowhere gives the
 * reference's bits. */
START_TEST(test_lstm_out_of_memory)
{
    enum { b = 3, t = 4, in = 5, h = 16, NP = 4 };
    static float ref[NP][4 * h * h], got[NP][4 * h * h];
    long k;
    int errors = 0, bwd_errors = 0;
    for (k = 0; k < 100000; k++) {
        tu_alloc hs = {0};
        hs.fail_at = k;
        hs.fail_rest = true;
        tg_ctx *pc = tu_ctx();
        tg_ctx_seed(pc, 4);
        tg_model *m = tg_model_new(pc);
        tg_module *lstm = tg_nn_lstm_new(m, "lstm", in, h, NULL);
        tu_assert_ok(pc);
        ck_assert_int_eq(tg_model_nparams(m), NP);
        tg_ctx *s = tu_alloc_ctx(&hs, 512);
        bool ok = false;
        if (s) {
            tg_ctx_seed(s, 5);
            tg_tensor *x = tg_randn(s, TG_F32, TG_SHAPE(b, t, in)), *out = NULL;
            tg_nn_rnn_forward(s, lstm, x, NULL, NULL, &out, NULL, NULL);
            tg_tensor *loss = tg_sum(s, tg_mul(s, out, out));
            bool fwd_ok = tg_ctx_status(s) == TG_OK;
            ok = tg_backward_release(s, loss) == TG_OK;
            bwd_errors += fwd_ok && !ok;
            if (!ok) {
                tu_assert_status(tg_ctx_status(s), TG_ERR_NOMEM);
                ck_assert_msg(tg_ctx_errmsg(s)[0] != 0, "k=%ld: no message", k);
            }
        }
        ck_assert_msg(ok || hs.failed, "k=%ld: an error without an allocation failure", k);
        for (int i = 0; i < NP; i++) {
            tg_tensor *g = tg_grad(tg_model_params(m)[i]);
            if (!ok) {
                ck_assert_msg(g == NULL, "k=%ld: a gradient after a failed backward", k);
                continue;
            }
            ck_assert_int_eq(tg_copy_out(g, k ? got[i] : ref[i], (size_t)tg_numel(g) * 4), TG_OK);
            if (k) ck_assert_msg(memcmp(got[i], ref[i], sizeof ref[i]) == 0, "k=%ld: differs", k);
        }
        errors += !ok;
        tg_ctx_free(s);
        tg_ctx_free(pc);
        tu_alloc_assert_no_leak(&hs);
        if (k && !hs.failed) break;
    }
    ck_assert_int_ge(errors, 3);
    ck_assert_msg(bwd_errors >= 1, "%d failures inside the backward", bwd_errors);
    ck_assert_int_lt(k, 100000);
}
END_TEST

/* Bad input: a clear message and a status, nothing recorded. */
START_TEST(test_lstm_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *in[7];
    lstm_inputs(c, TG_F64, false, true, true, in);
    ck_assert_ptr_null(tg_lstm(c, in[0], in[2], in[2], NULL, NULL, NULL, NULL, 0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm", "x [3,5,4], w_ih [12,3], w_hh [12,3], b_ih none");
    ck_assert_ptr_null(tg_lstm(c, in[0], in[1], in[2], in[3], in[4], in[0], NULL, 0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm", "h0 [3,5,4]");
    ck_assert_ptr_null(tg_lstm(c, in[0], in[1], in[2], in[2], NULL, NULL, NULL, 0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm", "b_ih and b_hh [4H]");
    ck_assert_ptr_null(tg_lstm(c, tg_randn(c, TG_F64, TG_SHAPE(3, 0, 4)), in[1], in[2], NULL,
                               NULL, NULL, NULL, true));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm", "every size at least 1");
    ck_assert_ptr_null(tg_lstm(c, tg_randn(c, TG_F32, TG_SHAPE(3, 5, 4)), in[1], in[2], NULL,
                               NULL, NULL, NULL, true));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_lstm", NULL);
    ck_assert_ptr_null(tg_lstm(c, in[0], NULL, in[2], NULL, NULL, NULL, NULL, 0));
    tu_assert_error(c, TG_ERR_INVALID, "tg_lstm", NULL);
    ck_assert_ptr_null(tg_lstm(c, tg_tensor_new(c, TG_I64, TG_SHAPE(3, 5, 4)), in[1], in[2],
                               NULL, NULL, NULL, NULL, 0));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_lstm", NULL);
    ck_assert_ptr_null(tg_lstm(c, in[0], in[1], in[2], NULL, NULL, NULL, NULL, 0x4));
    tu_assert_error(c, TG_ERR_INVALID, "tg_lstm", "unknown flags 0x4");
    tg_ctx_free(c);
}
END_TEST

/* lstm_cell on strided inputs makes dense copies as scratch and rewinds
 * them: the arena grows by exactly what the contiguous case takes. */
START_TEST(test_lstm_cell_scratch_rewound)
{
    size_t grew[2];
    for (int strided = 0; strided < 2; strided++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *g = strided ? tg_randn(c, TG_F32, TG_SHAPE(4 * H, B))
                               : tg_randn(c, TG_F32, TG_SHAPE(B, 4 * H));
        tg_tensor *cell = strided ? tg_randn(c, TG_F32, TG_SHAPE(H, B))
                                  : tg_randn(c, TG_F32, TG_SHAPE(B, H));
        if (strided) {
            g = tg_transpose(c, g, 0, 1);
            cell = tg_transpose(c, cell, 0, 1);
            ck_assert(!tg_is_contiguous(g) && !tg_is_contiguous(cell));
        }
        tu_assert_ok(c);
        size_t before = tg_ctx_bytes_used(c);
        tg_tensor *y = tg_lstm_cell(c, g, cell);
        tu_assert_ok(c);
        ck_assert_ptr_nonnull(y);
        grew[strided] = tg_ctx_bytes_used(c) - before;
        tg_ctx_free(c);
    }
    ck_assert_uint_eq(grew[1], grew[0]);
}
END_TEST

/* The fused backward (no graph, activations recomputed) against the rule
 * built from ops (create_graph), f64: contiguous inputs, strided inputs,
 * and gates that require no grad (only d cell is made). */
START_TEST(test_lstm_cell_fused_matches_ops)
{
    enum { b = 3, h = 4 };
    for (int v = 0; v < 3; v++) {
        bool strided = v == 1, gates_grad = v != 2;
        tg_ctx *c = tu_ctx();
        tg_tensor *g = strided ? tg_randn(c, TG_F64, TG_SHAPE(4 * h, b))
                               : tg_randn(c, TG_F64, TG_SHAPE(b, 4 * h));
        tg_tensor *cell = tg_randn(c, TG_F64, TG_SHAPE(b, h));
        tg_tensor *w = tg_randn(c, TG_F64, TG_SHAPE(2, b, h));
        if (strided) g = tg_transpose(c, g, 0, 1);
        tg_set_requires_grad(g, gates_grad);
        tg_set_requires_grad(cell, true);
        /* loss = sum(w * y): dout = w, not constant over the output */
        tg_tensor *loss = tg_sum(c, tg_mul(c, w, tg_lstm_cell(c, g, cell)));
        tg_tensor *ins[2] = {cell, g}, *fused[2], *ops[2];
        int n_in = gates_grad ? 2 : 1;
        tu_assert_status(tg_grad_of(c, 1, &loss, NULL, n_in, ins, false, fused), TG_OK);
        tu_assert_status(tg_grad_of(c, 1, &loss, NULL, n_in, ins, true, ops), TG_OK);
        for (int i = 0; i < n_in; i++) {
            int64_t n = tg_numel(ins[i]);
            double *a = malloc((size_t)n * sizeof *a), *r = malloc((size_t)n * sizeof *r);
            ck_assert(a && r);
            ck_assert_int_eq(tg_copy_out(fused[i], a, (size_t)n * sizeof *a), TG_OK);
            ck_assert_int_eq(tg_copy_out(ops[i], r, (size_t)n * sizeof *r), TG_OK);
            for (int64_t e = 0; e < n; e++) ck_assert_close(a[e], r[e], 1e-12);
            free(a);
            free(r);
        }
        tg_ctx_free(c);
    }
}
END_TEST

Suite *rnn_suite(void)
{
    Suite *s = suite_create("rnn");
    TCase *tc = tu_tcase("lstm");
    tcase_add_test(tc, test_lstm_step_memory);
    tcase_add_test(tc, test_rnn_projection_given_back);
    tcase_add_test(tc, test_lstm_fused_matches_ops);
    tcase_add_test(tc, test_lstm_recompute_same_bits);
    tcase_add_test(tc, test_lstm_errors);
    tcase_add_test(tc, test_lstm_release_same_bits);
    tcase_add_test(tc, test_lstm_out_of_memory);
    tcase_add_test(tc, test_lstm_cell_scratch_rewound);
    tcase_add_test(tc, test_lstm_cell_fused_matches_ops);
    suite_add_tcase(s, tc);
    return s;
}
