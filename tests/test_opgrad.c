/*
 * test_opgrad.c - the one table-driven gradient check over the op registry
 * (DESIGN.md section 6).
 *
 * `table` is indexed by tg_op. Each entry has a builder that applies the
 * op to its inputs with fixed constant arguments (axes, exponent, target
 * shape...) and up to MAX_VAR variants: input shapes, a domain per input
 * and, for ops that broadcast, a broadcast case. The loop test runs once per
 * registered op (tcase_add_loop_test over 0..TG_OP_COUNT-1) and fails when
 * the op has no entry, so a new op in TG_OP_MAP fails this test until it is
 * added here. For every variant it runs tg_gradcheck, first and second
 * order, in f64, on
 *   - contiguous inputs,
 *   - strided inputs: every input of 2 or more dims is a transposed view of
 *     a contiguous tensor of the transposed shape (a strided leaf), and
 *   - broadcast inputs, where the variant has a broadcast case (required
 *     for TG_OPF_BROADCAST ops).
 * It also checks that the builder's result was produced by the op under
 * test, so an entry cannot silently test a different op.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "opgrad.h"
#include "ops/ops_impl.h"
#include "test_util.h"

/* ---- builders: each applies exactly one op, last ------------------------- */

/* clang-format off */
BUILD(b_add, tg_add(c, in[0], in[1]))
BUILD(b_sub, tg_sub(c, in[0], in[1]))
BUILD(b_mul, tg_mul(c, in[0], in[1]))
BUILD(b_div, tg_div(c, in[0], in[1]))
BUILD(b_neg, tg_neg(c, in[0]))
BUILD(b_scale, tg_scale(c, in[0], a->s))
BUILD(b_add_scalar, tg_add_scalar(c, in[0], a->s))
BUILD(b_pow_scalar, tg_pow_scalar(c, in[0], a->s))
BUILD(b_exp, tg_exp(c, in[0]))
BUILD(b_log, tg_log(c, in[0]))
BUILD(b_sqrt, tg_sqrt(c, in[0]))
BUILD(b_tanh, tg_tanh(c, in[0]))
BUILD(b_sigmoid, tg_sigmoid(c, in[0]))
BUILD(b_relu, tg_relu(c, in[0]))
BUILD(b_sum, a->naxes < 0 ? tg_sum(c, in[0])
                         : tg_sum_axes(c, in[0], a->naxes, a->axes, a->keepdim))
BUILD(b_mean, a->naxes < 0 ? tg_mean(c, in[0])
                          : tg_mean_axes(c, in[0], a->naxes, a->axes, a->keepdim))
BUILD(b_softmax, tg_softmax(c, in[0], a->axis))
BUILD(b_log_softmax, tg_log_softmax(c, in[0], a->axis))
BUILD(b_matmul, tg_matmul(c, in[0], in[1]))
BUILD(b_reshape, tg_reshape(c, in[0], a->to.ndim, a->to.d))
BUILD(b_transpose, tg_transpose(c, in[0], a->d0, a->d1))
BUILD(b_permute, tg_permute(c, in[0], a->perm))
BUILD(b_expand, tg_expand(c, in[0], a->to.ndim, a->to.d))
BUILD(b_slice, tg_slice(c, in[0], a->axis, a->start, a->stop, a->step))
BUILD(b_slice_scatter,
      tg_slice_scatter(c, in[0], a->to.ndim, a->to.d, a->axis, a->start, a->step))
BUILD(b_contiguous, tg_contiguous(c, in[0]))
BUILD(b_mse_loss, tg_mse_loss(c, in[0], in[1]))
BUILD(b_cross_entropy, tg_cross_entropy(c, in[0], in[1]))

/* ---- the table ----------------------------------------------------------- */

/* Unary elementwise op on [3,4] and [2,3,4] in the given domain. */
#define UNARY_CASES(dm, sv)                                                                        \
    {                                                                                              \
        {.what = "[3,4]", .n_in = 1, .in = {S(3, 4)}, .dom = {dm}, .s = sv},                       \
        {.what = "[2,3,4]", .n_in = 1, .in = {S(2, 3, 4)}, .dom = {dm}, .s = sv},                  \
    }

/* Binary broadcasting op: equal shapes, then a broadcast case. */
#define BINARY_CASE(d1, b0, b1)                                                                    \
    {.what = "[3,4] with [3,4]", .n_in = 2, .in = {S(3, 4), S(3, 4)}, .dom = {D_NORMAL, d1},       \
     .has_bc = true, .bc = {b0, b1}}

static const op_entry core_table[TG_OP_COUNT] = {
    [TG_OP_ADD] = {b_add,
                   {BINARY_CASE(D_NORMAL, S(3, 1, 4), S(2, 1)),
                    {.what = "[2,3,4] with [2,3,4]; bc 0-d with [2,3]", .n_in = 2,
                     .in = {S(2, 3, 4), S(2, 3, 4)}, .has_bc = true, .bc = {S0, S(2, 3)}}}},
    [TG_OP_SUB] = {b_sub, {BINARY_CASE(D_NORMAL, S(2, 1), S(3, 1, 4))}},
    [TG_OP_MUL] = {b_mul, {BINARY_CASE(D_NORMAL, S(3, 1, 4), S(2, 1))}},
    [TG_OP_DIV] = {b_div, {BINARY_CASE(D_AWAY, S(4), S(3, 1))}},
    [TG_OP_NEG] = {b_neg, UNARY_CASES(D_NORMAL, 0)},
    [TG_OP_SCALE] = {b_scale, UNARY_CASES(D_NORMAL, -1.7)},
    [TG_OP_ADD_SCALAR] = {b_add_scalar, UNARY_CASES(D_NORMAL, 0.7)},
    [TG_OP_POW_SCALAR] = {b_pow_scalar,
                          {{.what = "p=2.5", .n_in = 1, .in = {S(3, 4)}, .dom = {D_POS}, .s = 2.5},
                           {.what = "p=-1.5", .n_in = 1, .in = {S(3, 4)}, .dom = {D_POS},
                            .s = -1.5},
                           {.what = "p=3 (negative x)", .n_in = 1, .in = {S(2, 3)},
                            .dom = {D_NORMAL}, .s = 3},
                           {.what = "p=0.5", .n_in = 1, .in = {S(2, 3)}, .dom = {D_POS},
                            .s = 0.5}}},
    [TG_OP_EXP] = {b_exp, UNARY_CASES(D_NORMAL, 0)},
    [TG_OP_LOG] = {b_log, UNARY_CASES(D_POS, 0)},
    [TG_OP_SQRT] = {b_sqrt, UNARY_CASES(D_POS, 0)},
    [TG_OP_TANH] = {b_tanh, UNARY_CASES(D_NORMAL, 0)},
    [TG_OP_SIGMOID] = {b_sigmoid, UNARY_CASES(D_NORMAL, 0)},
    [TG_OP_RELU] = {b_relu, UNARY_CASES(D_AWAY, 0)},
    [TG_OP_SUM] = {b_sum,
                   {{.what = "all", .n_in = 1, .in = {S(3, 4)}, .naxes = -1},
                    {.what = "axes {0,2}", .n_in = 1, .in = {S(2, 3, 4)}, .naxes = 2,
                     .axes = {0, 2}},
                    {.what = "axis -1 keepdim", .n_in = 1, .in = {S(2, 3, 4)}, .naxes = 1,
                     .axes = {-1}, .keepdim = true}}},
    [TG_OP_MEAN] = {b_mean,
                    {{.what = "all", .n_in = 1, .in = {S(3, 4)}, .naxes = -1},
                     {.what = "axes {0,2}", .n_in = 1, .in = {S(2, 3, 4)}, .naxes = 2,
                      .axes = {0, 2}},
                     {.what = "axis -1 keepdim", .n_in = 1, .in = {S(2, 3, 4)}, .naxes = 1,
                      .axes = {-1}, .keepdim = true}}},
    [TG_OP_SOFTMAX] = {b_softmax,
                       {{.what = "[3,4] axis -1", .n_in = 1, .in = {S(3, 4)}, .axis = -1},
                        {.what = "[2,3,4] axis 1", .n_in = 1, .in = {S(2, 3, 4)}, .axis = 1}}},
    [TG_OP_LOG_SOFTMAX] = {b_log_softmax,
                           {{.what = "[3,4] axis -1", .n_in = 1, .in = {S(3, 4)}, .axis = -1},
                            {.what = "[2,3,4] axis 1", .n_in = 1, .in = {S(2, 3, 4)},
                             .axis = 1}}},
    [TG_OP_MATMUL] = {b_matmul,
                      {{.what = "[3,4] @ [4,2]; bc [2,1,3,4] @ [3,4,2]", .n_in = 2,
                        .in = {S(3, 4), S(4, 2)}, .has_bc = true,
                        .bc = {S(2, 1, 3, 4), S(3, 4, 2)}},
                       {.what = "[2,3,4] @ [2,4,5]; bc [3,4] @ [2,4,5]", .n_in = 2,
                        .in = {S(2, 3, 4), S(2, 4, 5)}, .has_bc = true,
                        .bc = {S(3, 4), S(2, 4, 5)}}}},
    [TG_OP_RESHAPE] = {b_reshape,
                       {{.what = "[2,3,4] -> [4,-1]", .n_in = 1, .in = {S(2, 3, 4)},
                         .to = S(4, -1)},
                        {.what = "[6,4] -> [2,3,4]", .n_in = 1, .in = {S(6, 4)},
                         .to = S(2, 3, 4)}}},
    [TG_OP_TRANSPOSE] = {b_transpose,
                         {{.what = "[2,3,4] (0,2)", .n_in = 1, .in = {S(2, 3, 4)}, .d0 = 0,
                           .d1 = 2},
                          {.what = "[3,4] (-1,0)", .n_in = 1, .in = {S(3, 4)}, .d0 = -1,
                           .d1 = 0}}},
    [TG_OP_PERMUTE] = {b_permute,
                       {{.what = "[2,3,4] (2,0,1)", .n_in = 1, .in = {S(2, 3, 4)},
                         .perm = {2, 0, 1}}}},
    [TG_OP_EXPAND] = {b_expand,
                      {{.what = "[3,1] -> [2,-1,4]", .n_in = 1, .in = {S(3, 1)},
                        .to = S(2, -1, 4)},
                       {.what = "[1,4] -> [3,4]", .n_in = 1, .in = {S(1, 4)}, .to = S(3, 4)}}},
    [TG_OP_SLICE] = {b_slice,
                     {{.what = "[5,4] axis 0 1:5:2", .n_in = 1, .in = {S(5, 4)}, .axis = 0,
                       .start = 1, .stop = 5, .step = 2},
                      {.what = "[3,6] axis -1 -4:100:1", .n_in = 1, .in = {S(3, 6)}, .axis = -1,
                       .start = -4, .stop = 100, .step = 1}}},
    [TG_OP_SLICE_SCATTER] = {b_slice_scatter,
                             {{.what = "[2,4] into [5,4] axis 0 at 1::2", .n_in = 1,
                               .in = {S(2, 4)}, .to = S(5, 4), .axis = 0, .start = 1, .step = 2},
                              {.what = "[3,2] into [3,6] axis -1 at 0::3", .n_in = 1,
                               .in = {S(3, 2)}, .to = S(3, 6), .axis = -1, .start = 0,
                               .step = 3}}},
    [TG_OP_CONTIGUOUS] = {b_contiguous, UNARY_CASES(D_NORMAL, 0)},
    [TG_OP_MSE_LOSS] = {b_mse_loss,
                        {{.what = "[3,4]", .n_in = 2, .in = {S(3, 4), S(3, 4)}},
                         {.what = "[2,3,4]", .n_in = 2, .in = {S(2, 3, 4), S(2, 3, 4)}}}},
    [TG_OP_CROSS_ENTROPY] = {b_cross_entropy,
                             {{.what = "[4,5] logits, [4] labels", .n_in = 2,
                               .in = {S(4, 5), S(4)}, .dom = {D_NORMAL, D_LABELS}},
                              {.what = "[1,3] logits, [1] labels", .n_in = 2,
                               .in = {S(1, 3), S(1)}, .dom = {D_NORMAL, D_LABELS}}}},
};

/* clang-format on */

static op_entry table[TG_OP_COUNT];

/* The core ops' entries, then every family's (once). */
static void fill_table(void)
{
    static bool filled;
    if (filled) return;
    filled = true;
    for (int op = 0; op < TG_OP_COUNT; op++)
        if (core_table[op].f) table[op] = core_table[op];
    opgrad_fill_math(table);
    opgrad_fill_reduce(table);
    opgrad_fill_index(table);
    opgrad_fill_conv(table);
    opgrad_fill_nn(table);
    opgrad_fill_loss(table);
    opgrad_fill_custom(table);
}

/* The filled table, indexed by tg_op; shared with the golden suite
 * (tests/test_golden.c), which runs the same builders on PyTorch's data. */
const op_entry *opgrad_table(void);
const op_entry *opgrad_table(void)
{
    fill_table();
    return table;
}

/* ---- making inputs ------------------------------------------------------- */

typedef enum { L_CONTIG, L_STRIDED, L_BCAST, L_COUNT } layout;
static const char *const layout_name[L_COUNT] = {"contiguous", "strided", "broadcast"};

static bool dom_nograd(dom_kind d)
{
    return d == D_LABELS || d == D_INDEX || d == D_MASK || d == D_NORMAL_CONST ||
           d == D_POS_CONST || d == D_UNIT_CONST;
}

/* Fills a contiguous f64 tensor with values of the domain. */
static void fill(tg_ctx *c, tg_tensor *t, dom_kind dom)
{
    int64_t n = tg_numel(t);
    double *d = tg_data(t);
    if (n == 0) return;
    ck_assert_ptr_nonnull(d);
    bool normal = dom == D_NORMAL || dom == D_NORMAL_CONST;
    tg_tensor *r = normal ? tg_randn(c, TG_F64, tg_ndim(t), tg_shape(t))
                          : tg_rand(c, TG_F64, tg_ndim(t), tg_shape(t));
    ck_assert_ptr_nonnull(r);
    const double *u = tg_data(r);
    for (int64_t k = 0; k < n; k++) {
        double v = u[k];
        switch (dom) {
        case D_POS:
        case D_POS_CONST: v = 0.5 + v; break;
        case D_AWAY:
            v = 2 * v - 1;
            v += v < 0 ? -0.5 : 0.5;
            break;
        case D_MASK: v = v < 0.5 ? 0.0 : 1.0; break;
        case D_UNIT:
        case D_UNIT_CONST: v = 0.1 + 0.8 * v; break;
        default: break;
        }
        d[k] = v;
    }
}

/* Input i of variant a in the given layout, made in c. */
static tg_tensor *make_input(tg_ctx *c, const op_case *a, int i, layout lay, int64_t classes)
{
    const shp *s = lay == L_BCAST ? &a->bc[i] : &a->in[i];
    if (a->dom[i] == D_LABELS || a->dom[i] == D_INDEX) {
        int64_t lab[256];
        int64_t n = 1, hi = a->dom[i] == D_LABELS ? classes : a->index_hi;
        for (int d = 0; d < s->ndim; d++) n *= s->d[d];
        ck_assert_int_le(n, 256);
        ck_assert_int_gt(hi, 0);
        for (int64_t k = 0; k < n; k++) lab[k] = (k * 7 + 3) % hi;
        tg_tensor *t = tg_tensor_from(c, TG_I64, s->ndim, s->d, lab);
        ck_assert_ptr_nonnull(t);
        return t;
    }
    tg_tensor *t;
    if (lay == L_STRIDED && s->ndim >= 2) {
        /* a transposed view of a contiguous tensor of the transposed shape */
        int64_t ts[TG_MAX_DIMS];
        memcpy(ts, s->d, sizeof ts);
        ts[s->ndim - 2] = s->d[s->ndim - 1];
        ts[s->ndim - 1] = s->d[s->ndim - 2];
        bool prev = tg_set_grad_enabled(c, false);
        tg_tensor *base = tg_tensor_new(c, TG_F64, s->ndim, ts);
        ck_assert_ptr_nonnull(base);
        fill(c, base, a->dom[i]);
        t = tg_transpose(c, base, -2, -1);
        tg_set_grad_enabled(c, prev);
        ck_assert_ptr_nonnull(t);
        if (s->d[s->ndim - 1] > 1 && s->d[s->ndim - 2] > 1) ck_assert(!tg_is_contiguous(t));
    } else {
        t = tg_tensor_new(c, TG_F64, s->ndim, s->d);
        ck_assert_ptr_nonnull(t);
        fill(c, t, a->dom[i]);
    }
    if (!dom_nograd(a->dom[i])) tg_set_requires_grad(t, true);
    tu_assert_ok(c);
    return t;
}

/* ---- tg_backward_release gives the same gradients ------------------------ */

/* The gradients of loss = sum(op(u)^2 r) with respect to the float inputs
 * that require grad, u_i = in_i * 1 (so the op's inputs are intermediates a
 * releasing walk may release) and r a fixed constant (so the op's output is
 * read once more, by the square, before the op's backward runs). Every
 * storage counts as releasable (tg__release_min = 1) and released memory
 * is filled with NaNs (tg__release_poison): a tg__ops_reads entry that
 * misses a read the op's backward makes shows as a changed bit. NULL (and
 * rep set) on failure; the caller frees the result. */
/* With drop, the op's output and the u_i are given back by
 * tg_recompute_later once the loss is made, so the backward recomputes
 * them (and with release gives them back again): the same bits again. An
 * op that cannot recompute must refuse (then *skip is set). */
static double *grads_via(const op_entry *e, const op_case *a, tg_tensor *const *leaf, bool release,
                         bool drop, bool anomaly, int64_t *n_out, bool *skip, char *rep,
                         size_t rep_len)
{
    tg_ctx *c = tu_ctx();
    tg_set_anomaly(c, anomaly); /* the ops' backwards with a graph, run without one */
    tg_tensor *in[MAX_IN] = {NULL}, *lv[MAX_IN] = {NULL};
    for (int i = 0; i < a->n_in; i++) {
        int64_t shape[TG_MAX_DIMS];
        int nd = tg_ndim(leaf[i]);
        for (int d = 0; d < nd; d++) shape[d] = tg_shape(leaf[i])[d];
        size_t bytes = (size_t)tg_numel(leaf[i]) * (tg_tensor_dtype(leaf[i]) == TG_F32 ? 4 : 8);
        void *buf = malloc(bytes ? bytes : 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(tg_copy_out(leaf[i], buf, bytes), TG_OK);
        lv[i] = tg_tensor_from(c, tg_tensor_dtype(leaf[i]), nd, shape, buf);
        free(buf);
        ck_assert_ptr_nonnull(lv[i]);
        in[i] = lv[i];
        if (tg_requires_grad(leaf[i])) {
            tg_set_requires_grad(lv[i], true);
            in[i] = tg_scale(c, lv[i], 1.0);
        }
    }
    tg_tensor *y = e->f(c, in, a->n_in, (void *)a);
    tg_tensor *r = y ? tg_tensor_new(c, tg_tensor_dtype(y), tg_ndim(y), tg_shape(y)) : NULL;
    double *g = NULL;
    if (r) {
        for (int64_t k = 0; k < tg_numel(r); k++) tg__set_flat(r, k, 0.5 + 0.01 * (double)(k % 97));
        tg_tensor *loss = tg_sum(c, tg_mul(c, tg_square(c, y), r));
        tg_status st = tg_ctx_status(c);
        for (int i = 0; drop && st == TG_OK && i < a->n_in; i++)
            if (in[i] != lv[i]) st = tg_recompute_later(in[i]);
        if (drop && st == TG_OK) {
            tg_op op = tg_tensor_op(y);
            st = tg_recompute_later(y);
            if (!tg__ops_remake[op] && st != TG_OK && !tg_is_released(y)) {
                *skip = true; /* refused, and rightly so (checked by the caller) */
                snprintf(rep, rep_len, "%s", tg_ctx_errmsg(c));
                tg_ctx_free(c);
                return NULL;
            }
        }
        if (st == TG_OK)
            st = loss ? (release ? tg_backward_release(c, loss) : tg_backward(c, loss))
                      : tg_ctx_status(c);
        if (st == TG_OK) {
            int64_t total = 0;
            for (int i = 0; i < a->n_in; i++)
                if (tg_requires_grad(leaf[i])) total += tg_numel(lv[i]);
            g = malloc((size_t)(total ? total : 1) * sizeof *g);
            ck_assert_ptr_nonnull(g);
            int64_t at = 0;
            for (int i = 0; i < a->n_in; i++) {
                if (!tg_requires_grad(leaf[i])) continue;
                tg_tensor *gi = tg_grad(lv[i]);
                for (int64_t k = 0; k < tg_numel(lv[i]); k++)
                    g[at++] = gi ? tg__get_flat(gi, k) : 0.0;
            }
            *n_out = total;
        }
    }
    if (!g) snprintf(rep, rep_len, "%s%s: %s", release ? "tg_backward_release" : "tg_backward",
                     drop ? " after tg_recompute_later" : "", tg_ctx_errmsg(c));
    tg_ctx_free(c);
    return g;
}

/* ...in plain mode and in anomaly mode, where ops run their backward with
 * a graph (grad mode off), which may read other tensors. */
static bool release_matches(tg_op op, const op_entry *e, const op_case *a,
                            tg_tensor *const *leaf, char *rep, size_t rep_len)
{
    size_t min = tg__release_min;
    tg__release_min = 1;
    tg__release_poison = true;
    bool ok = true;
    for (int anomaly = 0; anomaly < 2 && ok; anomaly++) {
        int64_t n0 = 0;
        bool skip = false;
        double *g0 = grads_via(e, a, leaf, false, false, anomaly, &n0, &skip, rep, rep_len);
        ok = g0 != NULL;
        /* release, drop, drop then release */
        for (int mode = 1; ok && mode < 4 && !skip; mode++) {
            int64_t n1 = 0;
            bool release = mode & 1, drop = mode & 2;
            double *g1 =
                grads_via(e, a, leaf, release, drop, anomaly, &n1, &skip, rep, rep_len);
            if (skip) break;
            ok = g1 && n0 == n1;
            for (int64_t k = 0; ok && k < n0; k++) {
                if (memcmp(&g0[k], &g1[k], sizeof g0[k]) != 0) {
                    snprintf(rep, rep_len,
                             "%s%s%s: gradient element %lld is %.17g, tg_backward gave %.17g (%s)",
                             drop ? "tg_recompute_later, " : "",
                             release ? "tg_backward_release" : "tg_backward",
                             anomaly ? " in anomaly mode" : "", (long long)k, g1[k], g0[k],
                             drop ? "a wrong tg__ops_remake entry?"
                                  : "a read missing from tg__ops_reads?");
                    ok = false;
                }
            }
            free(g1);
        }
        if (skip) { /* an op without a remake entry refused, naming itself */
            ok = !tg__ops_remake[op] && strstr(rep, "cannot recompute") != NULL;
            if (!ok) snprintf(rep + strlen(rep), rep_len - strlen(rep), " (an unexpected refusal)");
        }
        free(g0);
    }
    tg__release_min = min;
    tg__release_poison = false;
    return ok;
}

/* ---- the test -------------------------------------------------------------- */

/* Runs variant k of op in one layout; on failure appends to msg and returns
 * false (so every variant and layout of the op runs and is reported). */
static bool run_case(tg_op op, const op_entry *e, int k, layout lay, char *msg, size_t msg_len)
{
    op_case a = e->v[k];
    const char *name = tg_op_name(op);
    tg_ctx *c = tu_ctx();
    tg_ctx_seed(c, 1000u + 64u * (unsigned)op + 4u * (unsigned)k + (unsigned)lay);

    tg_tensor *in[MAX_IN] = {NULL};
    int64_t classes = a.in[0].ndim > 0 ? a.in[0].d[a.in[0].ndim - 1] : 1;
    for (int i = 0; i < a.n_in; i++) in[i] = make_input(c, &a, i, lay, classes);

    char rep[2048] = "";
    bool ok = true;

    /* the builder must produce this op, recorded (ops without a gradient:
     * a result that requires no grad and carries no node) */
    tg_tensor *y = e->f(c, in, a.n_in, &a);
    if (tg_op_flags(op) & TG_OPF_NOGRAD) {
        if (!y || tg_requires_grad(y) || tg_tensor_op(y) != TG_OP_NONE) {
            snprintf(rep, sizeof rep, "a no-grad op gave %s (%s)",
                     y ? "a result that requires grad" : "NULL", y ? "" : tg_ctx_errmsg(c));
            ok = false;
        }
    } else if (!y || tg_tensor_op(y) != op) {
        const char *got = y ? tg_op_name(tg_tensor_op(y)) : NULL;
        snprintf(rep, sizeof rep, "builder produced %s (%s)",
                 y ? (got ? got : "no recorded op") : "NULL", y ? "" : tg_ctx_errmsg(c));
        ok = false;
    } else {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.eps = OPGRAD_EPS;
        o.atol = OPGRAD_ATOL;
        o.rtol = OPGRAD_RTOL;
        o.second_order = true;
        tg_status st = tg_gradcheck(e->f, &a, in, a.n_in, &o, rep, sizeof rep);
        ok = st == TG_OK;
        if (!ok && rep[0] == '\0') snprintf(rep, sizeof rep, "%s", tg_status_str(st));
        if (ok) ok = release_matches(op, e, &a, in, rep, sizeof rep);
    }
    if (!ok) {
        fprintf(stderr, "opgrad: %s, %s, %s: %s\n", name, a.what, layout_name[lay], rep);
        size_t used = strlen(msg);
        if (used < msg_len)
            snprintf(msg + used, msg_len - used, "\n  %s, %s, %s: %s", name, a.what,
                     layout_name[lay], rep);
    }
    tg_ctx_free(c);
    return ok;
}

START_TEST(test_op)
{
    tg_op op = (tg_op)_i;
    const char *name = tg_op_name(op);
    ck_assert_ptr_nonnull(name);
    const op_entry *e = &table[op];
    ck_assert_msg(e->f != NULL && e->v[0].n_in > 0,
                  "op %s has no entry in the gradient-check table of tests/test_opgrad.c", name);

    unsigned flags = tg_op_flags(op);
    bool any_bc = false;
    char msg[3800] = "";
    int failed = 0, runs = 0;
    for (int k = 0; k < MAX_VAR && e->v[k].n_in > 0; k++) {
        const op_case *a = &e->v[k];
        int arity = tg_op_arity(op);
        if (flags & TG_OPF_VARIADIC)
            ck_assert_msg(arity == -1 && a->n_in >= 1, "%s: variadic, arity %d", name, arity);
        else if (flags & TG_OPF_OPTIONAL)
            ck_assert_msg(a->n_in >= 1 && a->n_in <= arity, "%s, %s: %d inputs, arity %d",
                          name, a->what, a->n_in, arity);
        else
            ck_assert_msg(a->n_in == arity, "%s, %s: %d inputs, arity %d", name, a->what,
                          a->n_in, arity);
        if (flags & TG_OPF_LABELS)
            ck_assert_msg(a->dom[a->n_in - 1] == D_LABELS, "%s: last input must be labels", name);
        any_bc = any_bc || a->has_bc;
        for (int lay = 0; lay < L_COUNT; lay++) {
            if (lay == L_BCAST && !a->has_bc) continue;
            runs++;
            if (!run_case(op, e, k, (layout)lay, msg, sizeof msg)) failed++;
        }
    }
    if (flags & TG_OPF_BROADCAST)
        ck_assert_msg(any_bc, "%s broadcasts but its table entry has no broadcast case", name);
    ck_assert_msg(failed == 0, "%s: %d of %d gradient checks failed:%s", name, failed, runs, msg);
}
END_TEST

/* The table holds nothing outside the registry (the enum bounds it) and
 * the registry is what the header's X-macro says. */
START_TEST(test_table_matches_registry)
{
    ck_assert_int_eq(tg_op_count(), TG_OP_COUNT);
    for (int op = 0; op < TG_OP_COUNT; op++) {
        const char *name = tg_op_name((tg_op)op);
        ck_assert_ptr_nonnull(name);
        ck_assert_int_eq(tg_op_from_name(name), op);
    }
}
END_TEST

Suite *opgrad_suite(void)
{
    fill_table();
    Suite *s = suite_create("opgrad");
    TCase *tc = tu_tcase("registry");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_table_matches_registry);
    tcase_add_loop_test(tc, test_op, 0, TG_OP_COUNT);
    suite_add_tcase(s, tc);
    return s;
}
