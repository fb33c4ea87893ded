/*
 * test_graph.c - safety in the graph and seeing it: version counters
 * (in-place changes after an op recorded a tensor make backward fail,
 * naming the op and the tensor), anomaly mode (the first op or gradient
 * producing NaN/Inf is named), and the DOT export.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

static tg_tensor *leaf(tg_ctx *c, const char *name, double v)
{
    tg_tensor *t = tg_full(c, TG_F64, TG_SHAPE(2, 3), v);
    ck_assert_ptr_nonnull(t);
    tg_set_requires_grad(t, true);
    if (name) ck_assert_int_eq(tg_tensor_set_name(t, name), TG_OK);
    return t;
}

#define ASSERT_MSG_HAS(c, s) \
    ck_assert_msg(strstr(tg_ctx_errmsg(c), (s)) != NULL, "message lacks '%s': %s", (s), tg_ctx_errmsg(c))

/* ---- version counters ------------------------------------------------- */

START_TEST(test_version_input_changed)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = leaf(c, "fc1.weight", 2.0), *b = leaf(c, NULL, 3.0);
    tg_tensor *loss = tg_sum(c, tg_mul(c, a, b));
    double v[6] = {1, 1, 1, 1, 1, 1};
    ck_assert_int_eq(tg_copy_in(a, v, sizeof v), TG_OK); /* an optimizer step, say */
    ck_assert_int_eq(tg_backward(c, loss), TG_ERR_MISUSE);
    ASSERT_MSG_HAS(c, "'mul'");
    ASSERT_MSG_HAS(c, "'fc1.weight'");
    ASSERT_MSG_HAS(c, "[2,3]");
    ASSERT_MSG_HAS(c, "modified in place");
    /* nothing was accumulated */
    ck_assert_ptr_null(tg_grad(a));
    ck_assert_ptr_null(tg_grad(b));
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_version_output_changed)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = leaf(c, NULL, 0.5);
    tg_tensor *y = tg_exp(c, x); /* exp's backward reads its output */
    tg_tensor *dy = tg_full(c, TG_F64, TG_SHAPE(2, 3), 1.0);
    double *d = tg_data(y);
    ck_assert_ptr_nonnull(d);
    d[0] = 42.0;
    tg_tensor_bump_version(y);
    ck_assert_int_eq(tg_backward_with_grad(c, y, dy), TG_ERR_MISUSE);
    ASSERT_MSG_HAS(c, "output of op 'exp'");
    tg_ctx_clear_error(c);
    /* the check is conservative: a later op that used y (sum) is refused
     * too, though sum's backward reads only y's shape */
    tg_tensor *y2 = tg_exp(c, x);
    tg_tensor *loss = tg_sum(c, y2);
    tg_tensor_bump_version(y2);
    ck_assert_int_eq(tg_backward(c, loss), TG_ERR_MISUSE);
    ASSERT_MSG_HAS(c, "input 0 of op 'sum'");
    tg_ctx_free(c);
}
END_TEST

/* A change through a view is seen too (views share the storage version). */
START_TEST(test_version_through_view)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = leaf(c, "x", 1.5);
    tg_tensor *loss = tg_sum(c, tg_tanh(c, x));
    tg_set_grad_enabled(c, false);
    tg_tensor *xt = tg_transpose(c, x, 0, 1);
    tg_set_grad_enabled(c, true);
    double v[6] = {0};
    ck_assert_int_eq(tg_copy_in(xt, v, sizeof v), TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_ERR_MISUSE);
    tg_ctx_free(c);
}
END_TEST

/* Changing a tensor after the backward that used it is fine, and so is a
 * fresh graph built after the change. */
START_TEST(test_version_after_backward_is_fine)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = leaf(c, NULL, 2.0), *b = leaf(c, NULL, 3.0);
    ck_assert_int_eq(tg_backward(c, tg_sum(c, tg_mul(c, a, b))), TG_OK);
    double v[6] = {1, 1, 1, 1, 1, 1};
    ck_assert_int_eq(tg_copy_in(a, v, sizeof v), TG_OK);
    tg_zero_grad(a);
    tg_zero_grad(b);
    ck_assert_int_eq(tg_backward(c, tg_sum(c, tg_mul(c, a, b))), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(b), (int64_t[]){0, 0}), 1.0);
    tg_ctx_free(c);
}
END_TEST

/* The backward skips a node's version checks while no storage any tape
 * recorded has been bumped since the node was recorded (tg__taped_bumps).
 * Each way the library changes a tensor in place must count: for each, a
 * graph reads the tensor (a parameter, or a gradient used as an input),
 * the change comes after the forward, and the backward is refused. */
enum { BUMP_COPY_IN, BUMP_API, BUMP_SGD, BUMP_ZERO_GRAD, BUMP_OPTIM_ZERO, BUMP_CLIP_NORM,
       BUMP_CLIP_VALUE, BUMP_WAYS };
START_TEST(test_version_every_bump_counts)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *w = leaf(c, "w", 2.0), *b = leaf(c, NULL, 3.0);
    tg_optim *o = tg_sgd_new(c, &w, 1, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(tg_backward(c, tg_sum(c, tg_mul(c, tg_mul(c, w, w), b))), TG_OK);
    tg_tensor *g = tg_grad(w); /* 2 w b = 12 everywhere */
    ck_assert_ptr_nonnull(g);
    /* the parameter, or its gradient, is an input of the recorded graph */
    bool on_grad = _i >= BUMP_ZERO_GRAD;
    tg_tensor *loss = tg_sum(c, tg_mul(c, on_grad ? g : w, b));
    double v[6] = {1, 1, 1, 1, 1, 1};
    double norm;
    switch (_i) {
    case BUMP_COPY_IN: ck_assert_int_eq(tg_copy_in(w, v, sizeof v), TG_OK); break;
    case BUMP_API: tg_tensor_bump_version(w); break;
    case BUMP_SGD: ck_assert_int_eq(tg_optim_step(o), TG_OK); break;
    case BUMP_ZERO_GRAD: tg_zero_grad(w); break;
    case BUMP_OPTIM_ZERO: tg_optim_zero_grad(o); break;
    case BUMP_CLIP_NORM:
        ck_assert_int_eq(tg_clip_grad_norm(c, &w, 1, 1.0, 2.0, false, &norm), TG_OK);
        break;
    default: ck_assert_int_eq(tg_clip_grad_value(c, &w, 1, 1.0), TG_OK); break;
    }
    ck_assert_int_eq(tg_backward(c, loss), TG_ERR_MISUSE);
    ASSERT_MSG_HAS(c, "modified in place");
    ASSERT_MSG_HAS(c, "input 0 of op 'mul'");
    tg_ctx_free(c);
}
END_TEST

/* Changes to tensors the graph never read leave it runnable, whether or
 * not another graph recorded them. */
START_TEST(test_version_unrelated_changes_are_fine)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = leaf(c, NULL, 2.0), *b = leaf(c, NULL, 3.0), *u = leaf(c, NULL, 1.0);
    tg_tensor *other = tg_sum(c, tg_exp(c, u)); /* records u */
    tg_tensor *loss = tg_sum(c, tg_mul(c, a, b));
    double v[6] = {1, 1, 1, 1, 1, 1};
    tg_tensor *fresh = tg_full(c, TG_F64, TG_SHAPE(2, 3), 0.0);
    ck_assert_int_eq(tg_copy_in(fresh, v, sizeof v), TG_OK); /* never recorded */
    ck_assert_int_eq(tg_copy_in(u, v, sizeof v), TG_OK);     /* recorded by other */
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    ck_assert_double_eq(tg_get(tg_grad(a), (int64_t[]){1, 2}), 3.0);
    ck_assert_int_eq(tg_backward(c, other), TG_ERR_MISUSE); /* but u's graph sees it */
    tg_ctx_free(c);
}
END_TEST

/* ---- anomaly mode ------------------------------------------------------- */

START_TEST(test_anomaly_off_by_default)
{
    tg_ctx *c = tu_ctx();
    ck_assert(!tg_anomaly_enabled(c));
    tg_tensor *z = tg_tensor_new(c, TG_F64, TG_SHAPE(2, 3)); /* zeros */
    tg_tensor *y = tg_log(c, z);
    ck_assert_ptr_nonnull(y);
    ck_assert(isinf(tg_get(y, (int64_t[]){0, 0})));
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_anomaly_forward)
{
    tg_ctx *c = tu_ctx();
    ck_assert(!tg_set_anomaly(c, true));
    ck_assert(tg_anomaly_enabled(c));
    double v[6] = {1, 2, 0, 4, 5, 6};
    tg_tensor *x = tg_tensor_from(c, TG_F64, TG_SHAPE(2, 3), v);
    tg_tensor *y = tg_exp(c, x); /* finite: fine */
    ck_assert_ptr_nonnull(y);
    tg_tensor *l = tg_log(c, x); /* log(0) = -inf at element 2 */
    ck_assert_ptr_null(l);
    tu_assert_status(tg_ctx_status(c), TG_ERR_NUMERIC);
    ASSERT_MSG_HAS(c, "tg_log");
    ASSERT_MSG_HAS(c, "element 2");
    ASSERT_MSG_HAS(c, "f64 [2,3]");
    ASSERT_MSG_HAS(c, "-inf");
    tg_ctx_free(c);
}
END_TEST

/* sqrt(0) is fine forward; its gradient 1 / (2 sqrt(0)) is not. */
START_TEST(test_anomaly_backward)
{
    tg_ctx *c = tu_ctx();
    tg_set_anomaly(c, true);
    tg_tensor *x = leaf(c, "x", 1.0);
    double *d = tg_data(x);
    d[4] = 0.0;
    tg_tensor *loss = tg_sum(c, tg_sqrt(c, x));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_backward(c, loss), TG_ERR_NUMERIC);
    ASSERT_MSG_HAS(c, "backward of 'sqrt'");
    ASSERT_MSG_HAS(c, "element 4");
    ck_assert_ptr_null(tg_grad(x)); /* nothing accumulated */
    tg_ctx_free(c);
}
END_TEST

/* A gradient that only becomes non-finite in the engine's own accumulation
 * is caught by the engine's check on each input gradient. */
START_TEST(test_anomaly_names_first_op)
{
    tg_ctx *c = tu_ctx();
    tg_set_anomaly(c, true);
    tg_tensor *x = leaf(c, NULL, 1e300);
    tg_tensor *y = tg_mul(c, x, x); /* inf: the first op to overflow */
    ck_assert_ptr_null(y);
    ASSERT_MSG_HAS(c, "tg_mul");
    tg_ctx_free(c);
}
END_TEST

/* ---- DOT export --------------------------------------------------------- */

static char *read_all(FILE *f)
{
    static char buf[16384];
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

START_TEST(test_dot_export)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *w = tg_randn(c, TG_F32, TG_SHAPE(4, 3));
    tg_set_requires_grad(w, true);
    tg_tensor_set_name(w, "fc1.weight");
    tg_tensor *x = tg_randn(c, TG_F32, TG_SHAPE(2, 4));
    tg_tensor *h = tg_relu(c, tg_matmul(c, x, w));
    tg_tensor *unrelated = tg_exp(c, w); /* on the tape, not reachable from loss */
    ck_assert_ptr_nonnull(unrelated);
    tg_tensor *loss = tg_mean(c, h);
    tu_assert_ok(c);

    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tg_graph_dot(loss, f), TG_OK);
    const char *s = read_all(f);
    ck_assert_msg(strncmp(s, "digraph", 7) == 0, "%s", s);
    ck_assert_ptr_nonnull(strstr(s, "matmul"));
    ck_assert_ptr_nonnull(strstr(s, "relu"));
    ck_assert_ptr_nonnull(strstr(s, "mean"));
    ck_assert_ptr_nonnull(strstr(s, "fc1.weight"));
    ck_assert_ptr_nonnull(strstr(s, "requires grad"));
    ck_assert_ptr_nonnull(strstr(s, "constant"));  /* x */
    ck_assert_ptr_nonnull(strstr(s, "f32 [4,3]"));
    ck_assert_ptr_nonnull(strstr(s, "f32 [2,3], 24 B")); /* matmul's output bytes */
    ck_assert_ptr_nonnull(strstr(s, "->"));
    ck_assert_ptr_null(strstr(s, "exp")); /* not reachable */
    ck_assert_ptr_nonnull(strstr(s, "}\n"));
    fclose(f);

    /* a leaf alone is one node */
    f = tmpfile();
    ck_assert_int_eq(tg_graph_dot(w, f), TG_OK);
    s = read_all(f);
    ck_assert_ptr_nonnull(strstr(s, "fc1.weight"));
    ck_assert_ptr_null(strstr(s, "->"));
    fclose(f);

    ck_assert_int_eq(tg_graph_dot(NULL, stdout), TG_ERR_INVALID);
    ck_assert_int_eq(tg_graph_dot(loss, NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_graph_dot_file(loss, "/nonexistent-dir/graph.dot"), TG_ERR_IO);
    ck_assert_int_eq(tg_graph_dot_file(loss, NULL), TG_ERR_INVALID);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_tensor_names)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_tensor_new(c, TG_F32, TG_SHAPE(2));
    ck_assert_ptr_null(tg_tensor_name(t));
    ck_assert_int_eq(tg_tensor_set_name(t, "enc.layers.0.attn.q_proj.weight"), TG_OK);
    ck_assert_str_eq(tg_tensor_name(t), "enc.layers.0.attn.q_proj.weight");
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(tg_tensor_set_name(t, longname), TG_OK);
    ck_assert_uint_eq(strlen(tg_tensor_name(t)), 127);
    ck_assert_int_eq(tg_tensor_set_name(t, NULL), TG_OK);
    ck_assert_ptr_null(tg_tensor_name(t));
    ck_assert_int_eq(tg_tensor_set_name(NULL, "x"), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_tensor_name(NULL));
    tg_ctx_free(c);
}
END_TEST

Suite *graph_suite(void)
{
    Suite *s = suite_create("graph");
    TCase *tc = tu_tcase("versions");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_version_input_changed);
    tcase_add_test(tc, test_version_output_changed);
    tcase_add_test(tc, test_version_through_view);
    tcase_add_test(tc, test_version_after_backward_is_fine);
    tcase_add_loop_test(tc, test_version_every_bump_counts, 0, BUMP_WAYS);
    tcase_add_test(tc, test_version_unrelated_changes_are_fine);
    suite_add_tcase(s, tc);
    tc = tu_tcase("anomaly");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_anomaly_off_by_default);
    tcase_add_test(tc, test_anomaly_forward);
    tcase_add_test(tc, test_anomaly_backward);
    tcase_add_test(tc, test_anomaly_names_first_op);
    suite_add_tcase(s, tc);
    tc = tu_tcase("dot");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dot_export);
    tcase_add_test(tc, test_tensor_names);
    suite_add_tcase(s, tc);
    return s;
}
