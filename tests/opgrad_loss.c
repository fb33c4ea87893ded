/*
 * opgrad_loss.c - the loss family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 *
 * Variant arguments: iv[0] the reduction, iv[1] ignore_index (class-axis
 * losses), f[0] beta / delta / label smoothing, flag log_target (kl_div) or
 * "call tg_mse_loss" (mse_loss). Optional inputs (weights, pos_weight) are
 * present when the variant has three inputs. Targets of pointwise losses
 * require grad where the loss is differentiable in them, so their
 * gradients are checked too; class weights are checked both as constants
 * (D_POS_CONST) and requiring grad (D_POS).
 */
#include "opgrad.h"

#define RED(a) ((tg_reduction)(a)->iv[0])
#define OPT(i) (n > (i) ? in[i] : NULL)

/* clang-format off */
BUILD(b_mse_loss, a->flag ? tg_mse_loss(c, in[0], in[1]) : tg_mse_loss_ex(c, in[0], in[1], RED(a)))
BUILD(b_l1_loss, tg_l1_loss(c, in[0], in[1], RED(a)))
BUILD(b_smooth_l1_loss, tg_smooth_l1_loss(c, in[0], in[1], a->f[0], RED(a)))
BUILD(b_huber_loss, tg_huber_loss(c, in[0], in[1], a->f[0], RED(a)))
BUILD(b_bce_loss, tg_bce_loss(c, in[0], in[1], RED(a)))
BUILD(b_bce_with_logits, tg_bce_with_logits(c, in[0], in[1], OPT(2), RED(a)))
BUILD(b_kl_div, tg_kl_div(c, in[0], in[1], RED(a), a->flag))
BUILD(b_nll_loss, tg_nll_loss(c, in[0], in[1], OPT(2), RED(a), a->iv[1]))

static tg_tensor *b_cross_entropy_ex(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    const op_case *a = user;
    tg_ce_opts o = tg_ce_defaults();
    o.reduction = RED(a);
    o.ignore_index = a->iv[1];
    o.label_smoothing = a->f[0];
    return tg_cross_entropy_ex(c, in[0], in[1], OPT(2), &o);
}

/* pred and target of one shape, both requiring grad, one case per reduction */
#define PAIR(dp, dt, p)                                                                            \
    {{.what = "[3,4] mean", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {dp, dt},                  \
      .iv = {TG_REDUCE_MEAN}, .f = {p}},                                                           \
     {.what = "[2,3,4] sum", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)}, .dom = {dp, dt},           \
      .iv = {TG_REDUCE_SUM}, .f = {p}},                                                            \
     {.what = "[3,4] none", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {dp, dt},                  \
      .iv = {TG_REDUCE_NONE}, .f = {p}},                                                           \
     {.what = "0-d mean", .n_in = 2, .in = {S0, S0}, .dom = {dp, dt}, .iv = {TG_REDUCE_MEAN},      \
      .f = {p}}}
/* clang-format on */

void opgrad_fill_loss(op_entry *table)
{
    table[TG_OP_MSE_LOSS] = (op_entry){
        b_mse_loss,
        {{.what = "tg_mse_loss [3,4]", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .flag = true},
         {.what = "[2,3,4] sum", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)},
          .iv = {TG_REDUCE_SUM}},
         {.what = "[3,4] none", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .iv = {TG_REDUCE_NONE}},
         {.what = "[3,4] mean", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .iv = {TG_REDUCE_MEAN}}}};
    table[TG_OP_L1_LOSS] = (op_entry){b_l1_loss, PAIR(D_NORMAL, D_NORMAL, 0)};
    /* |pred - target| = beta is a kink; normal inputs land on it with
     * probability ~0 (the seeds are fixed, so this is checked once) */
    table[TG_OP_SMOOTH_L1_LOSS] = (op_entry){
        b_smooth_l1_loss,
        {{.what = "[3,4] mean beta 1", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .iv = {TG_REDUCE_MEAN}, .f = {1.0}},
         {.what = "[2,3,4] sum beta 0.5", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)},
          .iv = {TG_REDUCE_SUM}, .f = {0.5}},
         {.what = "[3,4] none beta 0.8", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .iv = {TG_REDUCE_NONE}, .f = {0.8}},
         {.what = "[3,4] mean beta 0 (l1)", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .iv = {TG_REDUCE_MEAN}, .f = {0.0}}}};
    table[TG_OP_HUBER_LOSS] = (op_entry){
        b_huber_loss,
        {{.what = "[3,4] mean delta 1", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .iv = {TG_REDUCE_MEAN}, .f = {1.0}},
         {.what = "[2,3,4] sum delta 0.5", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)},
          .iv = {TG_REDUCE_SUM}, .f = {0.5}},
         {.what = "[3,4] none delta 1.3", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .iv = {TG_REDUCE_NONE}, .f = {1.3}}}};
    table[TG_OP_BCE_LOSS] = (op_entry){
        b_bce_loss,
        {{.what = "[3,4] mean", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {D_UNIT, D_UNIT},
          .iv = {TG_REDUCE_MEAN}},
         {.what = "[2,3,4] sum", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)},
          .dom = {D_UNIT, D_UNIT_CONST}, .iv = {TG_REDUCE_SUM}},
         {.what = "[3,4] none", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {D_UNIT, D_UNIT},
          .iv = {TG_REDUCE_NONE}}}};
    table[TG_OP_BCE_WITH_LOGITS] = (op_entry){
        b_bce_with_logits,
        {{.what = "[3,4] mean", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {D_NORMAL, D_UNIT},
          .iv = {TG_REDUCE_MEAN}},
         {.what = "[3,4] sum, pos_weight [4]", .n_in = 3, .in = {S(3, 4), S(3, 4), S(4)},
          .dom = {D_NORMAL, D_UNIT, D_POS}, .iv = {TG_REDUCE_SUM}},
         {.what = "[2,3,4] none, pos_weight [3,1]", .n_in = 3,
          .in = {S(2, 3, 4), S(2, 3, 4), S(3, 1)}, .dom = {D_NORMAL, D_UNIT_CONST, D_POS},
          .iv = {TG_REDUCE_NONE}},
         {.what = "[3,4] mean, const pos_weight [3,4]", .n_in = 3,
          .in = {S(3, 4), S(3, 4), S(3, 4)}, .dom = {D_NORMAL, D_UNIT, D_POS_CONST},
          .iv = {TG_REDUCE_MEAN}}}};
    table[TG_OP_KL_DIV] = (op_entry){
        b_kl_div,
        {{.what = "[3,4] batchmean", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .dom = {D_NORMAL, D_UNIT}, .iv = {TG_REDUCE_BATCHMEAN}},
         {.what = "[2,3,4] sum", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)},
          .dom = {D_NORMAL, D_UNIT}, .iv = {TG_REDUCE_SUM}},
         {.what = "[3,4] none", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {D_NORMAL, D_UNIT},
          .iv = {TG_REDUCE_NONE}},
         {.what = "[3,4] mean log_target", .n_in = 2, .in = {S(3, 4), S(3, 4)},
          .dom = {D_NORMAL, D_NORMAL}, .iv = {TG_REDUCE_MEAN}, .flag = true}}};
    /* labels (k * 7 + 3) % C: [4] of C = 5 is {3, 0, 2, 4}; ignore_index 2
     * skips row 2 */
    table[TG_OP_NLL_LOSS] = (op_entry){
        b_nll_loss,
        {{.what = "[4,5] mean", .n_in = 2, .in = {S(4, 5), S(4)}, .dom = {D_NORMAL, D_INDEX},
          .index_hi = 5, .iv = {TG_REDUCE_MEAN, -100}},
         {.what = "[4,5] mean, weights (grad), ignore 2", .n_in = 3,
          .in = {S(4, 5), S(4), S(5)}, .dom = {D_NORMAL, D_INDEX, D_POS}, .index_hi = 5,
          .iv = {TG_REDUCE_MEAN, 2}},
         {.what = "[2,3,4] sum, weights", .n_in = 3, .in = {S(2, 3, 4), S(2, 4), S(3)},
          .dom = {D_NORMAL, D_INDEX, D_POS_CONST}, .index_hi = 3, .iv = {TG_REDUCE_SUM, -100}},
         {.what = "[2,3,4] none, weights (grad), ignore 0", .n_in = 3,
          .in = {S(2, 3, 4), S(2, 4), S(3)}, .dom = {D_NORMAL, D_INDEX, D_POS}, .index_hi = 3,
          .iv = {TG_REDUCE_NONE, 0}}}};
    table[TG_OP_CROSS_ENTROPY_EX] = (op_entry){
        b_cross_entropy_ex,
        {{.what = "[4,5] mean, weights (grad), ignore 2, smoothing 0.1", .n_in = 3,
          .in = {S(4, 5), S(4), S(5)}, .dom = {D_NORMAL, D_INDEX, D_POS}, .index_hi = 5,
          .iv = {TG_REDUCE_MEAN, 2}, .f = {0.1}},
         {.what = "[2,3,4] sum, weights (grad), smoothing 0.2", .n_in = 3,
          .in = {S(2, 3, 4), S(2, 4), S(3)}, .dom = {D_NORMAL, D_INDEX, D_POS}, .index_hi = 3,
          .iv = {TG_REDUCE_SUM, -100}, .f = {0.2}},
         {.what = "[2,3,4] none, weights, ignore 1, smoothing 0.15", .n_in = 3,
          .in = {S(2, 3, 4), S(2, 4), S(3)}, .dom = {D_NORMAL, D_INDEX, D_POS_CONST},
          .index_hi = 3, .iv = {TG_REDUCE_NONE, 1}, .f = {0.15}},
         {.what = "[3,4] mean", .n_in = 2, .in = {S(3, 4), S(3)}, .dom = {D_NORMAL, D_INDEX},
          .index_hi = 4, .iv = {TG_REDUCE_MEAN, -100}}}};
}
