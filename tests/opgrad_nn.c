/*
 * opgrad_nn.c - the nn family's entries of the table-driven gradient
 * check (see tests/opgrad.h): normalisation, dropout, embedding, the
 * LSTM cell and layer (iv[0] = flags), attention (sdpa: flag = causal, f[0] = scale, 0 the default).
 *
 * Optional inputs are trailing: a variant with fewer inputs passes NULL
 * for the missing ones. Arguments: f[0] = eps (norms) or p (dropout),
 * f[1] = momentum, flag = training (batch_norm, dropout) or "the second
 * input is the bias, not the weight" (layer_norm), iv[0..niv) =
 * normalized_shape, iv[0] = groups (group_norm), index_hi = rows
 * (embedding, embedding_backward).
 */
#include "opgrad.h"

#define IN(i) (n > (i) ? in[i] : NULL)

/* clang-format off */
BUILD(b_layer_norm,
      tg_layer_norm(c, in[0], a->niv, a->iv, a->flag ? NULL : IN(1), a->flag ? IN(1) : IN(2),
                    a->f[0]))
BUILD(b_rms_norm, tg_rms_norm(c, in[0], a->niv, a->iv, IN(1), a->f[0]))
BUILD(b_group_norm, tg_group_norm(c, in[0], (int)a->iv[0], IN(1), IN(2), a->f[0]))

static tg_tensor *b_batch_norm(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    const op_case *a = user;
    tg_batch_norm_opts o = tg_batch_norm_defaults();
    o.training = a->flag;
    o.eps = a->f[0];
    o.momentum = a->f[1];
    return tg_batch_norm(c, in[0], IN(1), IN(2), IN(3), IN(4), &o);
}

BUILD(b_dropout, tg_dropout(c, in[0], a->f[0], a->flag))
BUILD(b_embedding, tg_embedding(c, in[0], in[1]))
BUILD(b_embedding_backward, tg_embedding_backward(c, in[0], in[1], a->index_hi))
BUILD(b_lstm_cell, tg_lstm_cell(c, in[0], in[1]))
BUILD(b_lstm, tg_lstm(c, in[0], in[1], in[2], IN(3), IN(4), IN(5), IN(6), (unsigned)a->iv[0]))
BUILD(b_sdpa, tg_sdpa(c, in[0], in[1], in[2], IN(3), a->flag, a->f[0]))

static const op_entry nn_table[] = {
    [TG_OP_LAYER_NORM] = {b_layer_norm, {
        {.what = "[3,4] over [4], weight and bias", .n_in = 3, .in = {S(3, 4), S(4), S(4)},
         .f = {1e-5}, .iv = {4}, .niv = 1},
        {.what = "[2,3,4] over [3,4], weight and bias", .n_in = 3,
         .in = {S(2, 3, 4), S(3, 4), S(3, 4)}, .f = {1e-3}, .iv = {3, 4}, .niv = 2},
        {.what = "[2,3,4] over [4], no affine", .n_in = 1, .in = {S(2, 3, 4)}, .f = {1e-5},
         .iv = {4}, .niv = 1},
        {.what = "[4,5] over [4,5], bias only", .n_in = 2, .in = {S(4, 5), S(4, 5)},
         .f = {1e-5}, .iv = {4, 5}, .niv = 2, .flag = true}}},
    [TG_OP_RMS_NORM] = {b_rms_norm, {
        {.what = "[3,4] over [4], weight", .n_in = 2, .in = {S(3, 4), S(4)}, .f = {1e-6},
         .iv = {4}, .niv = 1},
        {.what = "[2,3,4] over [3,4], no weight", .n_in = 1, .in = {S(2, 3, 4)}, .f = {1e-3},
         .iv = {3, 4}, .niv = 2}}},
    [TG_OP_GROUP_NORM] = {b_group_norm, {
        {.what = "[2,4,3] 2 groups, weight and bias", .n_in = 3, .in = {S(2, 4, 3), S(4), S(4)},
         .f = {1e-5}, .iv = {2}},
        {.what = "[2,6,2,2] 3 groups, weight", .n_in = 2, .in = {S(2, 6, 2, 2), S(6)},
         .f = {1e-5}, .iv = {3}},
        {.what = "[3,4] 2 groups, no affine", .n_in = 1, .in = {S(3, 4)}, .f = {1e-5},
         .iv = {2}}}},
    [TG_OP_BATCH_NORM] = {b_batch_norm, {
        {.what = "training [5,3], weight and bias", .n_in = 3, .in = {S(5, 3), S(3), S(3)},
         .f = {1e-5, 0.1}, .flag = true},
        {.what = "training [3,2,4], running stats", .n_in = 5,
         .in = {S(3, 2, 4), S(2), S(2), S(2), S(2)},
         .dom = {D_NORMAL, D_NORMAL, D_NORMAL, D_NORMAL_CONST, D_POS_CONST},
         .f = {1e-5, 0.1}, .flag = true},
        {.what = "eval [3,2,4], weight and bias", .n_in = 5,
         .in = {S(3, 2, 4), S(2), S(2), S(2), S(2)},
         .dom = {D_NORMAL, D_NORMAL, D_NORMAL, D_NORMAL_CONST, D_POS_CONST},
         .f = {1e-5, 0.1}, .flag = false},
        {.what = "training [4,3,2,2], no affine", .n_in = 1, .in = {S(4, 3, 2, 2)},
         .f = {1e-5, 0.1}, .flag = true}}},
    [TG_OP_DROPOUT] = {b_dropout, {
        {.what = "[3,4] p=0.3", .n_in = 1, .in = {S(3, 4)}, .f = {0.3}, .flag = true},
        {.what = "[2,3,4] p=0.5", .n_in = 1, .in = {S(2, 3, 4)}, .f = {0.5}, .flag = true}}},
    [TG_OP_EMBEDDING] = {b_embedding, {
        {.what = "[5,3] rows by [2,3] indices (repeats)", .n_in = 2, .in = {S(5, 3), S(2, 3)},
         .dom = {D_NORMAL, D_INDEX}, .index_hi = 5},
        {.what = "[4,2] rows by [7] indices (repeats)", .n_in = 2, .in = {S(4, 2), S(7)},
         .dom = {D_NORMAL, D_INDEX}, .index_hi = 4}}},
    [TG_OP_EMBEDDING_BACKWARD] = {b_embedding_backward, {
        {.what = "[2,3,4] into 5 rows by [2,3] indices", .n_in = 2, .in = {S(2, 3, 4), S(2, 3)},
         .dom = {D_NORMAL, D_INDEX}, .index_hi = 5},
        {.what = "[7,2] into 3 rows by [7] indices", .n_in = 2, .in = {S(7, 2), S(7)},
         .dom = {D_NORMAL, D_INDEX}, .index_hi = 3}}},
    [TG_OP_LSTM_CELL] = {b_lstm_cell, {
        {.what = "[3,8] gates, [3,2] cell", .n_in = 2, .in = {S(3, 8), S(3, 2)}},
        {.what = "[1,12] gates, [1,3] cell", .n_in = 2, .in = {S(1, 12), S(1, 3)}}}},
    [TG_OP_LSTM] = {b_lstm, {
        {.what = "x [2,3,2], H 2, biases, h0, c0, cells out, gates kept", .n_in = 7,
         .in = {S(2, 3, 2), S(8, 2), S(8, 2), S(8), S(8), S(2, 2), S(2, 2)},
         .iv = {TG_LSTM_CELLS}},
        {.what = "x [2,3,2], H 2, biases, h0, c0, cells out, gates recomputed", .n_in = 7,
         .in = {S(2, 3, 2), S(8, 2), S(8, 2), S(8), S(8), S(2, 2), S(2, 2)},
         .iv = {TG_LSTM_CELLS | TG_LSTM_RECOMPUTE}},
        {.what = "x [3,2,3], H 2, no biases, zero state", .n_in = 3,
         .in = {S(3, 2, 3), S(8, 3), S(8, 2)}},
        {.what = "x [1,4,1], H 3, biases, zero state, recomputed", .n_in = 5,
         .in = {S(1, 4, 1), S(12, 1), S(12, 3), S(12), S(12)}, .iv = {TG_LSTM_RECOMPUTE}}}},
    [TG_OP_SDPA] = {b_sdpa, {
        {.what = "q [2,3,4], k [2,5,4], v [2,5,2]", .n_in = 3,
         .in = {S(2, 3, 4), S(2, 5, 4), S(2, 5, 2)}, .has_bc = true,
         .bc = {S(2, 3, 4), S(1, 5, 4), S(5, 2)}},
        {.what = "causal, scale 0.7, q k [2,4,3], v [2,4,2]", .n_in = 3,
         .in = {S(2, 4, 3), S(2, 4, 3), S(2, 4, 2)}, .f = {0.7}, .flag = true},
        {.what = "mask [3,5] with grad, q [3,4], k [5,4], v [5,2]", .n_in = 4,
         .in = {S(3, 4), S(5, 4), S(5, 2), S(3, 5)}},
        {.what = "causal and mask [4], q [2,4,2], k [2,4,2], v [2,4,3]", .n_in = 4,
         .in = {S(2, 4, 2), S(2, 4, 2), S(2, 4, 3), S(4)}, .flag = true}}},
};
/* clang-format on */

void opgrad_fill_nn(op_entry *table)
{
    for (int op = 0; op < (int)(sizeof nn_table / sizeof nn_table[0]); op++)
        if (nn_table[op].f) table[op] = nn_table[op];
}
