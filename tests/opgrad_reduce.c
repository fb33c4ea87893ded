/*
 * opgrad_reduce.c - the reduce family's entries of the table-driven gradient
 * check (see tests/opgrad.h): max, min, argmax, argmin, prod, var, std,
 * logsumexp, norm. Inputs of max/min are standard normal (no ties), norm's
 * are away from 0; argmax/argmin are checked to give a no-grad result.
 */
#include "opgrad.h"

#include <math.h>

/* clang-format off */
BUILD(b_max, tg_max_axes(c, in[0], a->naxes, a->axes, a->keepdim))
BUILD(b_min, tg_min_axes(c, in[0], a->naxes, a->axes, a->keepdim))
BUILD(b_argmax, tg_argmax(c, in[0], a->axis, a->keepdim))
BUILD(b_argmin, tg_argmin(c, in[0], a->axis, a->keepdim))
BUILD(b_prod, tg_prod_axes(c, in[0], a->naxes, a->axes, a->keepdim))
BUILD(b_var, tg_var_axes(c, in[0], a->naxes, a->axes, a->flag, a->keepdim))
BUILD(b_std, tg_std_axes(c, in[0], a->naxes, a->axes, a->flag, a->keepdim))
BUILD(b_logsumexp, tg_logsumexp(c, in[0], a->naxes, a->axes, a->keepdim))
BUILD(b_norm, tg_norm(c, in[0], a->s, a->naxes, a->axes, a->keepdim))

/* all axes of [3,4], one axis of [2,3,4], two axes, one axis keepdim */
#define AXES_CASES(dm, fl)                                                                         \
    {                                                                                              \
        {.what = "[3,4] all axes", .n_in = 1, .in = {S(3, 4)}, .dom = {dm}, .naxes = 2,            \
         .axes = {0, 1}, .flag = fl},                                                              \
        {.what = "[2,3,4] axis 1", .n_in = 1, .in = {S(2, 3, 4)}, .dom = {dm}, .naxes = 1,         \
         .axes = {1}, .flag = fl},                                                                 \
        {.what = "[2,3,4] axes {0,-1}", .n_in = 1, .in = {S(2, 3, 4)}, .dom = {dm}, .naxes = 2,    \
         .axes = {0, -1}, .flag = fl},                                                             \
        {.what = "[2,3,4] axis -1 keepdim", .n_in = 1, .in = {S(2, 3, 4)}, .dom = {dm},            \
         .naxes = 1, .axes = {-1}, .keepdim = true, .flag = fl},                                   \
    }

#define NORM_CASE(w, p, sh, na, a0, a1, kd)                                                        \
    {.what = w, .n_in = 1, .in = {sh}, .dom = {D_AWAY}, .s = p, .naxes = na, .axes = {a0, a1},     \
     .keepdim = kd}

/* clang-format on */

/* clang-format off */
void opgrad_fill_reduce(op_entry *table)
{
    table[TG_OP_MAX] = (op_entry){b_max, AXES_CASES(D_NORMAL, false)};
    table[TG_OP_MIN] = (op_entry){b_min, AXES_CASES(D_NORMAL, false)};
    table[TG_OP_ARGMAX] = (op_entry){b_argmax,
        {{.what = "[3,4] axis 1", .n_in = 1, .in = {S(3, 4)}, .axis = 1},
         {.what = "[2,3,4] axis -3 keepdim", .n_in = 1, .in = {S(2, 3, 4)}, .axis = -3,
          .keepdim = true}}};
    table[TG_OP_ARGMIN] = (op_entry){b_argmin,
        {{.what = "[3,4] axis 0", .n_in = 1, .in = {S(3, 4)}, .axis = 0},
         {.what = "[2,3,4] axis -1 keepdim", .n_in = 1, .in = {S(2, 3, 4)}, .axis = -1,
          .keepdim = true}}};
    table[TG_OP_PROD] = (op_entry){b_prod, AXES_CASES(D_NORMAL, false)};
    table[TG_OP_VAR] = (op_entry){b_var,
        {{.what = "[3,4] all axes unbiased", .n_in = 1, .in = {S(3, 4)}, .naxes = 2,
          .axes = {0, 1}, .flag = true},
         {.what = "[2,3,4] axis 1 biased", .n_in = 1, .in = {S(2, 3, 4)}, .naxes = 1,
          .axes = {1}, .flag = false},
         {.what = "[2,3,4] axes {0,-1} unbiased", .n_in = 1, .in = {S(2, 3, 4)}, .naxes = 2,
          .axes = {0, -1}, .flag = true},
         {.what = "[2,3,4] axis -1 keepdim biased", .n_in = 1, .in = {S(2, 3, 4)},
          .naxes = 1, .axes = {-1}, .keepdim = true, .flag = false}}};
    table[TG_OP_STD] = table[TG_OP_VAR];
    table[TG_OP_STD].f = b_std;
    table[TG_OP_LOGSUMEXP] = (op_entry){b_logsumexp, AXES_CASES(D_NORMAL, false)};
    table[TG_OP_NORM] = (op_entry){b_norm,
        {NORM_CASE("p=2 [3,4] all axes", 2.0, S(3, 4), 2, 0, 1, false),
         NORM_CASE("p=1 [2,3,4] axis 1", 1.0, S(2, 3, 4), 1, 1, 0, false),
         NORM_CASE("p=inf [2,3,4] axes {0,-1}", INFINITY, S(2, 3, 4), 2, 0, -1, false),
         NORM_CASE("p=3 [2,3,4] axis -1 keepdim", 3.0, S(2, 3, 4), 1, -1, 0, true)}};
}
/* clang-format on */
