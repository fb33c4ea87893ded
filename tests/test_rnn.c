/*
 * test_rnn.c - what an LSTM step keeps in the step arena: the pre-activations
 * of its gates (one tg_linear_add tensor) and the cell's output, no saved
 * activations and no scratch; and that the fused cell's backward, which
 * recomputes the activations, gives the op-built rule's gradients.
 */
#include <check.h>
#include <stdlib.h>

#include <tapegrad.h>

#include "test_util.h"

enum { B = 8, H = 256, I = 16 };

/* Arena bytes of one LSTM forward over T timesteps (B x T x I input,
 * `layers` layers of hidden size H, f32), grad mode on. */
static size_t forward_bytes_layers(int T, int layers)
{
    tg_ctx *pc = tu_ctx(), *c = tu_ctx();
    tg_model *m = tg_model_new(pc);
    tg_rnn_opts o = tg_rnn_defaults();
    o.num_layers = layers;
    tg_module *lstm = tg_nn_lstm_new(m, "lstm", I, H, &o);
    tg_tensor *x = tg_randn(c, TG_F32, TG_SHAPE(B, T, I));
    tu_assert_ok(pc);
    tu_assert_ok(c);
    size_t before = tg_ctx_bytes_used(c);
    tg_tensor *out = NULL;
    tg_nn_rnn_forward(c, lstm, x, NULL, NULL, &out, NULL, NULL);
    tu_assert_ok(c);
    ck_assert_ptr_nonnull(out);
    size_t used = tg_ctx_bytes_used(c) - before;
    tg_ctx_free(c);
    tg_ctx_free(pc);
    return used;
}

static size_t forward_bytes(int T) { return forward_bytes_layers(T, 1); }

/* A timestep costs its row of the input projection [B, 4H], its gates
 * [B, 4H], the cell's [2, B, H] and its row of the stacked output [B, H],
 * 11 B H floats, plus a few hundred bytes of node and view records per op:
 * under 13 B H. (Before tg_linear_add and the recomputing cell it also kept
 * the hidden product and the sum, [B, 4H] each, and the cell's activations,
 * [B, 5H]: 24 B H.) */
START_TEST(test_lstm_step_memory)
{
    enum { T1 = 4, T2 = 20 };
    size_t short_run = forward_bytes(T1), long_run = forward_bytes(T2);
    size_t per_step = (long_run - short_run) / (T2 - T1);
    size_t kept = (size_t)11 * B * H * sizeof(float);
    size_t bound = (size_t)13 * B * H * sizeof(float);
    ck_assert_msg(per_step >= kept && per_step < bound,
                  "an LSTM step takes %zu bytes (T=%d: %zu, T=%d: %zu); its tensors are %zu, "
                  "the bound %zu",
                  per_step, T1, short_run, T2, long_run, kept, bound);
}
END_TEST

/* No backward reads a layer's input projection (only views of it and
 * tg_linear_add's addend do), so it goes back after the layer's loop and
 * the next layer's projection takes its block: a second layer costs its
 * gates, cells and output, 7 B H floats a step, not 11. */
START_TEST(test_lstm_projection_given_back)
{
    enum { T = 12 };
    size_t one = forward_bytes_layers(T, 1), two = forward_bytes_layers(T, 2);
    size_t second = two - one, cells = (size_t)7 * T * B * H * sizeof(float);
    ck_assert_msg(second >= cells && second < cells + (size_t)2 * T * B * H * sizeof(float),
                  "the second layer took %zu bytes (one layer %zu, two %zu); its gates, cells "
                  "and output are %zu",
                  second, one, two, cells);
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
    tcase_add_test(tc, test_lstm_projection_given_back);
    tcase_add_test(tc, test_lstm_cell_scratch_rewound);
    tcase_add_test(tc, test_lstm_cell_fused_matches_ops);
    suite_add_tcase(s, tc);
    return s;
}
