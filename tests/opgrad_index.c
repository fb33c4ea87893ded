/*
 * opgrad_index.c - the index family's entries of the table-driven gradient
 * check (see tests/opgrad.h): concat, stack, squeeze, unsqueeze, flatten,
 * pad, index_select, gather, scatter_add. tg_split (recorded slices) and
 * tg_one_hot (no gradient) are not ops of the list; tests/test_index.c
 * checks them.
 *
 * D_INDEX inputs hold (k * 7 + 3) % index_hi at row-major position k, so
 * the variants below repeat indices (index_select and gather gradients
 * must accumulate) and, with index_hi below the indexed size, leave some
 * positions unreached.
 */
#include "opgrad.h"

/* clang-format off */
BUILD(b_concat, tg_concat(c, in, n, a->axis))
BUILD(b_stack, tg_stack(c, in, n, a->axis))
BUILD(b_squeeze, a->flag ? tg_squeeze_all(c, in[0]) : tg_squeeze(c, in[0], a->axis))
BUILD(b_unsqueeze, tg_unsqueeze(c, in[0], a->axis))
BUILD(b_flatten, tg_flatten(c, in[0], (int)a->iv[0], (int)a->iv[1]))
BUILD(b_pad, tg_pad(c, in[0], a->niv, a->iv, a->f[0]))
BUILD(b_index_select, tg_index_select(c, in[0], a->axis, in[1]))
BUILD(b_gather, tg_gather(c, in[0], a->axis, in[1]))
BUILD(b_scatter_add, tg_scatter_add(c, in[0], a->axis, in[1], in[2]))

#define IX {D_NORMAL, D_INDEX}
#define SCAT {D_NORMAL, D_INDEX, D_NORMAL}

static const op_entry index_table[TG_OP_COUNT] = {
    [TG_OP_CONCAT] = {b_concat,
        {{.what = "[2,3],[4,3],[1,3] axis 0", .n_in = 3, .in = {S(2, 3), S(4, 3), S(1, 3)},
          .axis = 0},
         {.what = "[3,2],[3,4] axis -1", .n_in = 2, .in = {S(3, 2), S(3, 4)}, .axis = -1},
         {.what = "[2,1,4],[2,3,4] axis 1", .n_in = 2, .in = {S(2, 1, 4), S(2, 3, 4)},
          .axis = 1},
         {.what = "one input [3,4] axis 0", .n_in = 1, .in = {S(3, 4)}, .axis = 0}}},
    [TG_OP_STACK] = {b_stack,
        {{.what = "2 x [3,4] axis 0", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .axis = 0},
         {.what = "3 x [2,3] axis -1", .n_in = 3, .in = {S(2, 3), S(2, 3), S(2, 3)},
          .axis = -1},
         {.what = "2 x [2,3,2] axis 1", .n_in = 2, .in = {S(2, 3, 2), S(2, 3, 2)}, .axis = 1},
         {.what = "one input [4] axis 0", .n_in = 1, .in = {S(4)}, .axis = 0}}},
    [TG_OP_SQUEEZE] = {b_squeeze,
        {{.what = "[3,1,4] axis 1", .n_in = 1, .in = {S(3, 1, 4)}, .axis = 1},
         {.what = "[1,3,1] all", .n_in = 1, .in = {S(1, 3, 1)}, .flag = true},
         {.what = "[3,1] axis -1", .n_in = 1, .in = {S(3, 1)}, .axis = -1},
         {.what = "[2,3] all (none)", .n_in = 1, .in = {S(2, 3)}, .flag = true}}},
    [TG_OP_UNSQUEEZE] = {b_unsqueeze,
        {{.what = "[3,4] axis 0", .n_in = 1, .in = {S(3, 4)}, .axis = 0},
         {.what = "[3,4] axis -1", .n_in = 1, .in = {S(3, 4)}, .axis = -1},
         {.what = "[2,3,4] axis 2", .n_in = 1, .in = {S(2, 3, 4)}, .axis = 2}}},
    [TG_OP_FLATTEN] = {b_flatten,
        {{.what = "[2,3,4] (0,-1)", .n_in = 1, .in = {S(2, 3, 4)}, .iv = {0, -1}},
         {.what = "[2,3,4] (1,2)", .n_in = 1, .in = {S(2, 3, 4)}, .iv = {1, 2}},
         {.what = "[2,3,4,2] (0,1)", .n_in = 1, .in = {S(2, 3, 4, 2)}, .iv = {0, 1}},
         {.what = "[3,4] (-1,-1)", .n_in = 1, .in = {S(3, 4)}, .iv = {-1, -1}}}},
    [TG_OP_PAD] = {b_pad,
        {{.what = "[3,4] (1,2) value 0.5", .n_in = 1, .in = {S(3, 4)}, .niv = 2, .iv = {1, 2},
          .f = {0.5}},
         {.what = "[2,3,4] (0,1,2,1)", .n_in = 1, .in = {S(2, 3, 4)}, .niv = 4,
          .iv = {0, 1, 2, 1}},
         {.what = "[3,4] (1,1,1,0,) value -2", .n_in = 1, .in = {S(3, 4)}, .niv = 4,
          .iv = {1, 1, 1, 0}, .f = {-2}},
         {.what = "[2,3] (0,0)", .n_in = 1, .in = {S(2, 3)}, .niv = 2, .iv = {0, 0}}}},
    [TG_OP_INDEX_SELECT] = {b_index_select,
        {{.what = "[4,3] axis 0, index [5] (repeats)", .n_in = 2, .in = {S(4, 3), S(5)},
          .dom = IX, .axis = 0, .index_hi = 4},
         {.what = "[3,4] axis -1, index [6] (repeats)", .n_in = 2, .in = {S(3, 4), S(6)},
          .dom = IX, .axis = -1, .index_hi = 4},
         {.what = "[2,3,4] axis 1, index [4]", .n_in = 2, .in = {S(2, 3, 4), S(4)},
          .dom = IX, .axis = 1, .index_hi = 3},
         {.what = "[3,5] axis 1, index [2] (some unused)", .n_in = 2, .in = {S(3, 5), S(2)},
          .dom = IX, .axis = 1, .index_hi = 5}}},
    [TG_OP_GATHER] = {b_gather,
        {{.what = "[3,4] axis 1, index [3,5]", .n_in = 2, .in = {S(3, 4), S(3, 5)}, .dom = IX,
          .axis = 1, .index_hi = 4},
         {.what = "[4,3] axis 0, index [6,3]", .n_in = 2, .in = {S(4, 3), S(6, 3)}, .dom = IX,
          .axis = 0, .index_hi = 4},
         {.what = "[2,3,4] axis -2, index [2,2,4]", .n_in = 2, .in = {S(2, 3, 4), S(2, 2, 4)},
          .dom = IX, .axis = -2, .index_hi = 3},
         {.what = "[3,4] axis 0, smaller index [2,3]", .n_in = 2, .in = {S(3, 4), S(2, 3)},
          .dom = IX, .axis = 0, .index_hi = 3}}},
    [TG_OP_SCATTER_ADD] = {b_scatter_add,
        {{.what = "[3,4] axis 0, index/src [5,4]", .n_in = 3,
          .in = {S(3, 4), S(5, 4), S(5, 4)}, .dom = SCAT, .axis = 0, .index_hi = 3},
         {.what = "[3,4] axis -1, index/src [3,6]", .n_in = 3,
          .in = {S(3, 4), S(3, 6), S(3, 6)}, .dom = SCAT, .axis = -1, .index_hi = 4},
         {.what = "[2,3,4] axis 2, index/src [2,2,3]", .n_in = 3,
          .in = {S(2, 3, 4), S(2, 2, 3), S(2, 2, 3)}, .dom = SCAT, .axis = 2, .index_hi = 4},
         {.what = "[4,3] axis 1, smaller index/src [2,2]", .n_in = 3,
          .in = {S(4, 3), S(2, 2), S(2, 2)}, .dom = SCAT, .axis = 1, .index_hi = 3}}},
};
/* clang-format on */

void opgrad_fill_index(op_entry *table)
{
    for (int op = 0; op < TG_OP_COUNT; op++)
        if (index_table[op].f) table[op] = index_table[op];
}
