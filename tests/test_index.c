/*
 * test_index.c - the index suite: forward values of concat, stack, split,
 * squeeze, unsqueeze, flatten, pad, index_select, gather, scatter_add and
 * one_hot in f32 and f64 against NumPy (the reference values below were
 * printed by numpy 2.x: np.concatenate, np.stack, np.pad, np.take,
 * np.take_along_axis, np.add.at on the inputs written next to them), views
 * versus copies, tg_split's pieces and gradients, deterministic
 * accumulation of repeated indices at any thread count, and error paths.
 * Gradients of every op are checked by the opgrad suite.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* _i of the dtype loop tests */
static tg_dtype loop_dt(int i) { return i == 0 ? TG_F32 : TG_F64; }
static double loop_tol(int i) { return i == 0 ? 1e-6 : 0.0; }

/* A contiguous tensor of dtype dt from row-major doubles. */
static tg_tensor *mk(tg_ctx *c, tg_dtype dt, int nd, const int64_t *sh, const double *v)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= sh[d];
    tg_tensor *t = tg_tensor_new(c, dt, nd, sh);
    ck_assert_ptr_nonnull(t);
    if (n == 0) return t;
    void *p = tg_data(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == TG_F32) ((float *)p)[i] = (float)v[i];
        else if (dt == TG_F64) ((double *)p)[i] = v[i];
        else ((int64_t *)p)[i] = (int64_t)v[i];
    }
    return t;
}

static tg_tensor *mk_idx(tg_ctx *c, int nd, const int64_t *sh, const int64_t *v)
{
    tg_tensor *t = tg_tensor_from(c, TG_I64, nd, sh, v);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void assert_shape(const tg_tensor *t, int nd, const int64_t *sh)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_ndim(t), nd);
    for (int d = 0; d < nd; d++) ck_assert_int_eq(tg_shape(t)[d], sh[d]);
}

/* The error on c is s and its message holds every given fragment. */
static void assert_err(tg_ctx *c, tg_status s, const char *frag1, const char *frag2)
{
    tu_assert_status(tg_ctx_status(c), s);
    const char *m = tg_ctx_errmsg(c);
    ck_assert_msg(strstr(m, frag1) != NULL, "message '%s' lacks '%s'", m, frag1);
    if (frag2) ck_assert_msg(strstr(m, frag2) != NULL, "message '%s' lacks '%s'", m, frag2);
    tg_ctx_clear_error(c);
}

/* x = arange(6).reshape(2,3) * 0.5 - 1 */
static const double X23[] = {-1.0, -0.5, 0.0, 0.5, 1.0, 1.5};

/* ---- concat / stack ------------------------------------------------------- */

START_TEST(test_concat_values)
{
    tg_dtype dt = loop_dt(_i);
    double tol = loop_tol(_i);
    tg_ctx *c = tu_ctx();
    tg_tensor *x = mk(c, dt, TG_SHAPE(2, 3), X23);
    tg_tensor *b = mk(c, dt, TG_SHAPE(1, 3), (const double[]){10, 11, 12});
    tg_tensor *y = tg_concat(c, (tg_tensor *[]){x, b}, 2, 0);
    assert_shape(y, TG_SHAPE(3, 3));
    tu_assert_values(y, tol, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 10.0, 11.0, 12.0);
    ck_assert(tg_is_contiguous(y));

    /* a strided (transposed) input: bt = [[0,1],[2,3]].T * -1.5 */
    tg_tensor *base = mk(c, dt, TG_SHAPE(2, 2), (const double[]){0, -1.5, -3, -4.5});
    tg_tensor *bt = tg_transpose(c, base, 0, 1);
    ck_assert(!tg_is_contiguous(bt));
    y = tg_concat(c, (tg_tensor *[]){x, bt}, 2, -1);
    assert_shape(y, TG_SHAPE(2, 5));
    tu_assert_values(y, tol, -1.0, -0.5, 0.0, -0.0, -3.0, 0.5, 1.0, 1.5, -1.5, -4.5);

    /* an empty piece and a single input */
    tg_tensor *e = tg_tensor_new(c, dt, TG_SHAPE(2, 0));
    y = tg_concat(c, (tg_tensor *[]){e, x, e}, 3, 1);
    assert_shape(y, TG_SHAPE(2, 3));
    tu_assert_values(y, tol, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5);
    y = tg_concat(c, &x, 1, 0);
    tu_assert_values(y, tol, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5);
    ck_assert_ptr_ne(tg_data(y), tg_data(x)); /* a copy */
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_stack_values)
{
    tg_dtype dt = loop_dt(_i);
    double tol = loop_tol(_i);
    tg_ctx *c = tu_ctx();
    tg_tensor *x = mk(c, dt, TG_SHAPE(2, 3), X23);
    tg_tensor *x2 = tg_scale(c, x, 2), *x3 = tg_scale(c, x, 3);
    tg_tensor *y = tg_stack(c, (tg_tensor *[]){x, x2}, 2, 1);
    assert_shape(y, TG_SHAPE(2, 2, 3));
    tu_assert_values(y, tol, -1.0, -0.5, 0.0, -2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 1.0, 2.0, 3.0);
    y = tg_stack(c, (tg_tensor *[]){x, x2, x3}, 3, -1);
    assert_shape(y, TG_SHAPE(2, 3, 3));
    tu_assert_values(y, tol, -1.0, -2.0, -3.0, -0.5, -1.0, -1.5, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 1.0,
                     2.0, 3.0, 1.5, 3.0, 4.5);
    /* 0-d inputs stack into a vector */
    tg_tensor *s0 = tg_scalar(c, dt, 4), *s1 = tg_scalar(c, dt, -2);
    y = tg_stack(c, (tg_tensor *[]){s0, s1}, 2, 0);
    assert_shape(y, TG_SHAPE(2));
    tu_assert_values(y, tol, 4.0, -2.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* i64 data joins and pads (never recorded); gradients reach only inputs
 * that require grad. */
START_TEST(test_concat_i64_and_grads)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk_idx(c, TG_SHAPE(2), (const int64_t[]){1, 2});
    tg_tensor *b = mk_idx(c, TG_SHAPE(1), (const int64_t[]){-7});
    tg_tensor *y = tg_concat(c, (tg_tensor *[]){a, b}, 2, 0);
    ck_assert_int_eq(tg_tensor_dtype(y), TG_I64);
    tu_assert_values(y, 0, 1.0, 2.0, -7.0);
    ck_assert(!tg_requires_grad(y));
    y = tg_stack(c, (tg_tensor *[]){a, a}, 2, 0);
    tu_assert_values(y, 0, 1.0, 2.0, 1.0, 2.0);
    y = tg_pad(c, a, 2, (const int64_t[]){1, 1}, 9.9);
    tu_assert_values(y, 0, 9.0, 1.0, 2.0, 9.0);
    y = tg_index_select(c, a, 0, mk_idx(c, TG_SHAPE(3), (const int64_t[]){1, 1, 0}));
    tu_assert_values(y, 0, 2.0, 2.0, 1.0);
    y = tg_gather(c, a, 0, mk_idx(c, TG_SHAPE(2), (const int64_t[]){0, 0}));
    tu_assert_values(y, 0, 1.0, 1.0);
    y = tg_flatten(c, tg_unsqueeze(c, tg_squeeze_all(c, tg_unsqueeze(c, a, 0)), 1), 0, -1);
    tu_assert_values(y, 0, 1.0, 2.0);

    tg_tensor *p = mk(c, TG_F64, TG_SHAPE(2, 2), (const double[]){1, 2, 3, 4});
    tg_tensor *q = mk(c, TG_F64, TG_SHAPE(2, 1), (const double[]){5, 6});
    tg_set_requires_grad(p, true);
    tg_tensor *w = mk(c, TG_F64, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    y = tg_concat(c, (tg_tensor *[]){p, q}, 2, 1);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_CONCAT);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, w))), TG_OK);
    tu_assert_values(tg_grad(p), 0, 1.0, 2.0, 4.0, 5.0);
    ck_assert_ptr_null(tg_grad(q));
    tg_ctx_free(c);
}
END_TEST

/* ---- split ---------------------------------------------------------------- */

START_TEST(test_split)
{
    tg_dtype dt = loop_dt(_i);
    tg_ctx *c = tu_ctx();
    double v[15];
    for (int i = 0; i < 15; i++) v[i] = i;
    tg_tensor *x = mk(c, dt, TG_SHAPE(5, 3), v);
    tg_set_requires_grad(x, true);
    tg_tensor *out[3];
    tu_assert_status(tg_split(c, x, 0, 3, (const int64_t[]){2, 0, 3}, out), TG_OK);
    assert_shape(out[0], TG_SHAPE(2, 3));
    assert_shape(out[1], TG_SHAPE(0, 3));
    assert_shape(out[2], TG_SHAPE(3, 3));
    tu_assert_values(out[0], 0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0);
    tu_assert_values(out[2], 0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0);
    /* views into x, recorded as slices */
    size_t es = tg_dtype_size(dt);
    ck_assert_ptr_eq(tg_data(out[0]), tg_data(x));
    ck_assert_ptr_eq(tg_data(out[2]), (char *)tg_data(x) + 6 * es);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(tg_tensor_op(out[i]), TG_OP_SLICE);

    /* d/dx [sum(out0) + 2 sum(out2)] */
    tg_tensor *loss = tg_add(c, tg_sum(c, out[0]), tg_scale(c, tg_sum(c, out[2]), 2));
    tu_assert_status(tg_backward(c, loss), TG_OK);
    tu_assert_values(tg_grad(x), 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0,
                     2.0, 2.0);

    /* along the last axis of a strided view */
    tg_tensor *xt = tg_transpose(c, x, 0, 1); /* [3,5] */
    tg_tensor *two[2];
    tu_assert_status(tg_split(c, xt, -1, 2, (const int64_t[]){4, 1}, two), TG_OK);
    assert_shape(two[0], TG_SHAPE(3, 4));
    tu_assert_values(two[1], 0, 12.0, 13.0, 14.0);

    /* sizes that do not sum, a negative size */
    tu_assert_status(tg_split(c, x, 0, 2, (const int64_t[]){2, 2}, two), TG_ERR_SHAPE);
    ck_assert_ptr_null(two[0]);
    ck_assert_ptr_null(two[1]);
    assert_err(c, TG_ERR_SHAPE, "tg_split", "sum to 5");
    tu_assert_status(tg_split(c, x, 0, 2, (const int64_t[]){6, -1}, two), TG_ERR_INVALID);
    assert_err(c, TG_ERR_INVALID, "tg_split", "-1");
    tu_assert_status(tg_split(c, x, 2, 1, (const int64_t[]){5}, two), TG_ERR_INVALID);
    assert_err(c, TG_ERR_INVALID, "tg_split", "axis 2");
    tg_ctx_free(c);
}
END_TEST

/* ---- squeeze / unsqueeze / flatten ----------------------------------------- */

START_TEST(test_squeeze_unsqueeze_views)
{
    tg_dtype dt = loop_dt(_i);
    tg_ctx *c = tu_ctx();
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = 0.5 * i;
    tg_tensor *x = mk(c, dt, TG_SHAPE(3, 1, 4), v);
    tg_tensor *y = tg_squeeze(c, x, 1);
    assert_shape(y, TG_SHAPE(3, 4));
    ck_assert_ptr_eq(tg_data(y), tg_data(x));
    y = tg_squeeze(c, x, -2);
    assert_shape(y, TG_SHAPE(3, 4));
    tg_tensor *u = tg_unsqueeze(c, y, -1);
    assert_shape(u, TG_SHAPE(3, 4, 1));
    ck_assert_ptr_eq(tg_data(u), tg_data(x));
    u = tg_unsqueeze(c, y, 0);
    assert_shape(u, TG_SHAPE(1, 3, 4));
    tu_assert_values(u, 0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5);

    tg_tensor *z = mk(c, dt, TG_SHAPE(1, 3, 1), (const double[]){1, 2, 3});
    y = tg_squeeze_all(c, z);
    assert_shape(y, TG_SHAPE(3));
    ck_assert_ptr_eq(tg_data(y), tg_data(z));
    y = tg_squeeze_all(c, tg_tensor_new(c, dt, TG_SHAPE(1, 1)));
    ck_assert_int_eq(tg_ndim(y), 0);

    /* a strided view stays a view (same storage, strides kept) */
    tg_tensor *t = tg_transpose(c, mk(c, dt, TG_SHAPE(4, 3), v), 0, 1); /* [3,4] */
    u = tg_unsqueeze(c, t, 1);
    assert_shape(u, TG_SHAPE(3, 1, 4));
    ck_assert_int_eq(tg_strides(u)[0], 1);
    ck_assert_int_eq(tg_strides(u)[2], 3);
    tu_assert_values(tg_squeeze(c, u, 1), 0, 0.0, 1.5, 3.0, 4.5, 0.5, 2.0, 3.5, 5.0, 1.0, 2.5, 4.0,
                     5.5);

    /* gradients flow back to the original shape */
    tg_tensor *g = mk(c, dt, TG_SHAPE(3, 1, 4), v);
    tg_set_requires_grad(g, true);
    tg_tensor *s = tg_squeeze_all(c, g);
    ck_assert_int_eq(tg_tensor_op(s), TG_OP_SQUEEZE);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, s, s))), TG_OK);
    assert_shape(tg_grad(g), TG_SHAPE(3, 1, 4));
    tu_assert_values(tg_grad(g), 1e-6, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
                     11.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_flatten)
{
    tg_dtype dt = loop_dt(_i);
    tg_ctx *c = tu_ctx();
    double v[24];
    for (int i = 0; i < 24; i++) v[i] = i;
    tg_tensor *x = mk(c, dt, TG_SHAPE(2, 3, 4), v);
    tg_tensor *y = tg_flatten(c, x, 1, 2);
    assert_shape(y, TG_SHAPE(2, 12));
    ck_assert_ptr_eq(tg_data(y), tg_data(x)); /* a view */
    y = tg_flatten(c, x, 0, -1);
    assert_shape(y, TG_SHAPE(24));
    ck_assert_ptr_eq(tg_data(y), tg_data(x));
    y = tg_flatten(c, x, 0, 1);
    assert_shape(y, TG_SHAPE(6, 4));
    y = tg_flatten(c, x, -1, -1);
    assert_shape(y, TG_SHAPE(2, 3, 4));

    /* xt = arange(24).reshape(2,4,3).transpose(0,2,1): not mergeable -> copy */
    tg_tensor *xt = tg_transpose(c, mk(c, dt, TG_SHAPE(2, 4, 3), v), 1, 2);
    y = tg_flatten(c, xt, 1, 2);
    assert_shape(y, TG_SHAPE(2, 12));
    ck_assert(tg_is_contiguous(y));
    tu_assert_values(y, 0, 0.0, 3.0, 6.0, 9.0, 1.0, 4.0, 7.0, 10.0, 2.0, 5.0, 8.0, 11.0, 12.0, 15.0,
                     18.0, 21.0, 13.0, 16.0, 19.0, 22.0, 14.0, 17.0, 20.0, 23.0);
    /* dims that share one stride in a strided view merge into a view:
     * x[:, :, ::2] is [2,3,2] with strides [12,4,2]; dims 0..1 -> [6,2] */
    tg_tensor *xs = tg_slice(c, x, 2, 0, 4, 2);
    y = tg_flatten(c, xs, 0, 1);
    assert_shape(y, TG_SHAPE(6, 2));
    ck_assert(!tg_is_contiguous(y));
    ck_assert_int_eq(tg_strides(y)[0], 4);
    tu_assert_values(y, 0, 0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0);

    /* 0-d gives [1] */
    y = tg_flatten(c, tg_scalar(c, dt, 3), 0, -1);
    assert_shape(y, TG_SHAPE(1));
    tu_assert_values(y, 0, 3.0);

    tg_flatten(c, x, 2, 1);
    assert_err(c, TG_ERR_INVALID, "tg_flatten", "start_dim 2");
    tg_flatten(c, x, 0, 3);
    assert_err(c, TG_ERR_INVALID, "tg_flatten", "axis 3");
    tg_ctx_free(c);
}
END_TEST

/* ---- pad ------------------------------------------------------------------ */

START_TEST(test_pad_values)
{
    tg_dtype dt = loop_dt(_i);
    double tol = loop_tol(_i);
    tg_ctx *c = tu_ctx();
    double v[24];
    for (int i = 0; i < 24; i++) v[i] = i;
    tg_tensor *a = mk(c, dt, TG_SHAPE(2, 3, 4), v);
    /* np.pad(a, ((0,0),(2,1),(1,0)), constant_values=7) */
    tg_tensor *y = tg_pad(c, a, 4, (const int64_t[]){1, 0, 2, 1}, 7);
    assert_shape(y, TG_SHAPE(2, 6, 5));
    tu_assert_values(y, tol, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 0.0, 1.0, 2.0,
                     3.0, 7.0, 4.0, 5.0, 6.0, 7.0, 7.0, 8.0, 9.0, 10.0, 11.0, 7.0, 7.0, 7.0, 7.0,
                     7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 12.0, 13.0, 14.0,
                     15.0, 7.0, 16.0, 17.0, 18.0, 19.0, 7.0, 20.0, 21.0, 22.0, 23.0, 7.0, 7.0, 7.0,
                     7.0, 7.0);
    /* a strided input, last dim only */
    tg_tensor *t = tg_transpose(c, mk(c, dt, TG_SHAPE(2, 2), (const double[]){1, 2, 3, 4}), 0, 1);
    y = tg_pad(c, t, 2, (const int64_t[]){0, 1}, -0.5);
    assert_shape(y, TG_SHAPE(2, 3));
    tu_assert_values(y, tol, 1.0, 3.0, -0.5, 2.0, 4.0, -0.5);

    /* the gradient is the slice of dout holding x */
    tg_tensor *x = mk(c, dt, TG_SHAPE(2, 2), (const double[]){1, 2, 3, 4});
    tg_set_requires_grad(x, true);
    y = tg_pad(c, x, 4, (const int64_t[]){1, 1, 0, 1}, 3);
    tg_tensor *w =
        mk(c, dt, TG_SHAPE(3, 4), (const double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, w))), TG_OK);
    tu_assert_values(tg_grad(x), tol, 2.0, 3.0, 6.0, 7.0);

    tg_pad(c, x, 2, (const int64_t[]){1, -1}, 0);
    assert_err(c, TG_ERR_INVALID, "tg_pad", "-1");
    tg_pad(c, x, 3, (const int64_t[]){1, 1, 1}, 0);
    assert_err(c, TG_ERR_INVALID, "tg_pad", "3 pad entries");
    tg_pad(c, x, 6, (const int64_t[]){1, 1, 1, 1, 1, 1}, 0);
    assert_err(c, TG_ERR_INVALID, "tg_pad", "6 pad entries");
    tg_ctx_free(c);
}
END_TEST

/* ---- index_select / gather / scatter_add ------------------------------------ */

START_TEST(test_index_select_values)
{
    tg_dtype dt = loop_dt(_i);
    double tol = loop_tol(_i);
    tg_ctx *c = tu_ctx();
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = 0.25 * i;
    tg_tensor *x = mk(c, dt, TG_SHAPE(4, 3), v);
    tg_tensor *ix = mk_idx(c, TG_SHAPE(4), (const int64_t[]){3, 0, 3, 1});
    tg_tensor *y = tg_index_select(c, x, 0, ix);
    assert_shape(y, TG_SHAPE(4, 3));
    tu_assert_values(y, tol, 2.25, 2.5, 2.75, 0.0, 0.25, 0.5, 2.25, 2.5, 2.75, 0.75, 1.0, 1.25);
    y = tg_index_select(c, x, -1, mk_idx(c, TG_SHAPE(3), (const int64_t[]){2, 2, 0}));
    assert_shape(y, TG_SHAPE(4, 3));
    tu_assert_values(y, tol, 0.5, 0.5, 0.0, 1.25, 1.25, 0.75, 2.0, 2.0, 1.5, 2.75, 2.75, 2.25);
    /* a strided index (every other element of [3,9,0,9,3,9,1]) */
    tg_tensor *big = mk_idx(c, TG_SHAPE(7), (const int64_t[]){3, 9, 0, 9, 3, 9, 1});
    y = tg_index_select(c, x, 0, tg_slice(c, big, 0, 0, 7, 2));
    tu_assert_values(y, tol, 2.25, 2.5, 2.75, 0.0, 0.25, 0.5, 2.25, 2.5, 2.75, 0.75, 1.0, 1.25);
    /* an empty index */
    y = tg_index_select(c, x, 1, tg_tensor_new(c, TG_I64, TG_SHAPE(0)));
    assert_shape(y, TG_SHAPE(4, 0));

    /* repeated indices accumulate in the gradient */
    tg_set_requires_grad(x, true);
    y = tg_index_select(c, x, 0, ix);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_INDEX_SELECT);
    tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
    tu_assert_values(tg_grad(x), 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_gather_values)
{
    tg_dtype dt = loop_dt(_i);
    double tol = loop_tol(_i);
    tg_ctx *c = tu_ctx();
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = i + 0.5;
    tg_tensor *g = mk(c, dt, TG_SHAPE(3, 4), v);
    /* np.take_along_axis(g, [[3,0],[1,1],[2,0]], 1) */
    tg_tensor *gi = mk_idx(c, TG_SHAPE(3, 2), (const int64_t[]){3, 0, 1, 1, 2, 0});
    tg_tensor *y = tg_gather(c, g, 1, gi);
    assert_shape(y, TG_SHAPE(3, 2));
    tu_assert_values(y, tol, 3.5, 0.5, 5.5, 5.5, 10.5, 8.5);
    /* a smaller index along the other dim: y[i,j] = g[gi0[i,j], j] */
    tg_tensor *gi0 = mk_idx(c, TG_SHAPE(2, 3), (const int64_t[]){2, 0, 1, 2, 2, 0});
    y = tg_gather(c, g, -2, gi0);
    assert_shape(y, TG_SHAPE(2, 3));
    tu_assert_values(y, tol, 8.5, 1.5, 6.5, 8.5, 9.5, 2.5);
    /* a transposed x: gt = g.T (4x3), gather along 0 with gi0 */
    tg_tensor *gt = tg_transpose(c, g, 0, 1);
    y = tg_gather(c, gt, 0, gi0);
    /* y[i,j] = g.T[gi0[i,j], j] = g[j, gi0[i,j]] */
    tu_assert_values(y, tol, 2.5, 4.5, 9.5, 2.5, 6.5, 8.5);

    /* gradient: repeated indices accumulate */
    tg_set_requires_grad(g, true);
    y = tg_gather(c, g, 1, gi);
    tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
    tu_assert_values(tg_grad(g), 0, 1.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_scatter_add_values)
{
    tg_dtype dt = loop_dt(_i);
    double tol = loop_tol(_i);
    tg_ctx *c = tu_ctx();
    double ones[12], srcv[8];
    for (int i = 0; i < 12; i++) ones[i] = 0.5;
    for (int i = 0; i < 8; i++) srcv[i] = i + 1;
    tg_tensor *s = mk(c, dt, TG_SHAPE(3, 4), ones);
    tg_tensor *si = mk_idx(c, TG_SHAPE(2, 4), (const int64_t[]){0, 1, 2, 0, 2, 2, 2, 1});
    tg_tensor *src = mk(c, dt, TG_SHAPE(2, 4), srcv);
    /* o = s.copy(); np.add.at-style o[si[i,j], j] += src[i,j] */
    tg_tensor *y = tg_scatter_add(c, s, 0, si, src);
    assert_shape(y, TG_SHAPE(3, 4));
    tu_assert_values(y, tol, 1.5, 0.5, 0.5, 4.5, 0.5, 2.5, 0.5, 8.5, 5.5, 6.5, 10.5, 0.5);
    /* not in place: s is unchanged */
    tu_assert_values(s, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5);
    ck_assert(tg_is_contiguous(y));

    /* i64 data */
    tg_tensor *zi = tg_tensor_new(c, TG_I64, TG_SHAPE(3));
    y = tg_scatter_add(c, zi, 0, mk_idx(c, TG_SHAPE(4), (const int64_t[]){2, 2, 0, 2}),
                       mk_idx(c, TG_SHAPE(4), (const int64_t[]){1, 10, 100, 1000}));
    tu_assert_values(y, 0, 100.0, 0.0, 1011.0);

    /* gradients: dx = dout, dsrc = gather(dout) */
    tg_set_requires_grad(s, true);
    tg_set_requires_grad(src, true);
    y = tg_scatter_add(c, s, 0, si, src);
    tg_tensor *w =
        mk(c, dt, TG_SHAPE(3, 4), (const double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, w))), TG_OK);
    tu_assert_values(tg_grad(s), tol, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0,
                     12.0);
    tu_assert_values(tg_grad(src), tol, 1.0, 6.0, 11.0, 4.0, 9.0, 10.0, 11.0, 8.0);
    tg_ctx_free(c);
}
END_TEST

/* The gradient of index_select with many repeated indices is bit-identical
 * at 1 and 4 threads and equals a serial accumulation in index order. */
START_TEST(test_repeated_indices_deterministic)
{
    const int64_t R = 64, C = 2048, K = 256;
    tg_tensor *grads[2];
    tg_ctx *cs[2];
    for (int run = 0; run < 2; run++) {
        tg_ctx *c = cs[run] = tu_ctx();
        tu_assert_status(tg_ctx_set_threads(c, run == 0 ? 1 : 4), TG_OK);
        tg_ctx_seed(c, 42);
        tg_tensor *x = tg_randn(c, TG_F32, TG_SHAPE(R, C));
        tg_set_requires_grad(x, true);
        int64_t idx[256];
        for (int64_t k = 0; k < K; k++) idx[k] = (k * k * 7 + 3) % 5; /* few rows, many repeats */
        tg_tensor *ix = mk_idx(c, TG_SHAPE(K), idx);
        tg_tensor *w = tg_randn(c, TG_F32, TG_SHAPE(K, C));
        tg_tensor *y = tg_index_select(c, x, 0, ix);
        tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, w))), TG_OK);
        grads[run] = tg_grad(x);
        ck_assert_ptr_nonnull(grads[run]);
        if (run == 0) {
            /* serial reference: g[idx[k], j] += w[k, j] for k = 0, 1, ... */
            float *ref = calloc((size_t)(R * C), sizeof *ref);
            const float *wv = tg_data(w);
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < C; j++) ref[idx[k] * C + j] += wv[k * C + j];
            ck_assert(memcmp(ref, tg_data(grads[0]), (size_t)(R * C) * sizeof *ref) == 0);
            free(ref);
        }
    }
    ck_assert(memcmp(tg_data(grads[0]), tg_data(grads[1]), (size_t)(R * C) * sizeof(float)) == 0);
    tg_ctx_free(cs[0]);
    tg_ctx_free(cs[1]);
}
END_TEST

/* ---- one_hot -------------------------------------------------------------- */

START_TEST(test_one_hot)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *l = mk_idx(c, TG_SHAPE(2, 2), (const int64_t[]){2, 0, 1, 2});
    const tg_dtype dts[3] = {TG_F32, TG_F64, TG_I64};
    for (int k = 0; k < 3; k++) {
        tg_tensor *y = tg_one_hot(c, l, 3, dts[k]);
        assert_shape(y, TG_SHAPE(2, 2, 3));
        ck_assert_int_eq(tg_tensor_dtype(y), dts[k]);
        ck_assert(!tg_requires_grad(y));
        ck_assert_int_eq(tg_tensor_op(y), TG_OP_NONE);
        tu_assert_values(y, 0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0);
    }
    /* a strided label view: l.T = [[2,1],[0,2]] */
    tg_tensor *y = tg_one_hot(c, tg_transpose(c, l, 0, 1), 4, TG_F32);
    tu_assert_values(y, 0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                     1.0, 0.0);
    /* 0-d label */
    y = tg_one_hot(c, mk_idx(c, 0, NULL, (const int64_t[]){1}), 2, TG_F64);
    assert_shape(y, TG_SHAPE(2));
    tu_assert_values(y, 0, 0.0, 1.0);
    tu_assert_ok(c);

    ck_assert_ptr_null(tg_one_hot(c, l, 2, TG_F32));
    assert_err(c, TG_ERR_INVALID, "tg_one_hot", "value 2 at [0,0]");
    ck_assert_ptr_null(tg_one_hot(c, l, 0, TG_F32));
    assert_err(c, TG_ERR_INVALID, "tg_one_hot", "num_classes 0");
    ck_assert_ptr_null(tg_one_hot(c, mk(c, TG_F32, TG_SHAPE(1), (const double[]){1}), 3, TG_F32));
    assert_err(c, TG_ERR_DTYPE, "tg_one_hot", "i64");
    tg_ctx_free(c);
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

START_TEST(test_errors_join)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = tg_tensor_new(c, TG_F32, TG_SHAPE(2, 3));
    tg_tensor *b = tg_tensor_new(c, TG_F32, TG_SHAPE(2, 4));
    tg_tensor *d = tg_tensor_new(c, TG_F64, TG_SHAPE(2, 3));

    ck_assert_ptr_null(tg_concat(c, (tg_tensor *[]){a, b}, 2, 0));
    assert_err(c, TG_ERR_SHAPE, "tg_concat", "input 1 [2,4]");
    ck_assert_ptr_null(tg_concat(c, (tg_tensor *[]){a, b}, 2, 2));
    assert_err(c, TG_ERR_INVALID, "tg_concat", "axis 2");
    ck_assert_ptr_null(tg_concat(c, (tg_tensor *[]){a, NULL, b}, 3, 1));
    assert_err(c, TG_ERR_INVALID, "tg_concat", "input 1 is NULL");
    ck_assert_ptr_null(tg_concat(c, (tg_tensor *[]){a, d}, 2, 0));
    assert_err(c, TG_ERR_DTYPE, "tg_concat", "f64");
    ck_assert_ptr_null(tg_concat(c, NULL, 2, 0));
    assert_err(c, TG_ERR_INVALID, "tg_concat", NULL);
    ck_assert_ptr_null(tg_concat(c, &a, 0, 0));
    assert_err(c, TG_ERR_INVALID, "tg_concat", "n = 0");
    ck_assert_ptr_null(tg_concat(c, (tg_tensor *[]){tg_scalar(c, TG_F32, 1)}, 1, 0));
    assert_err(c, TG_ERR_INVALID, "tg_concat", "0-d");

    ck_assert_ptr_null(tg_stack(c, (tg_tensor *[]){a, b}, 2, 0));
    assert_err(c, TG_ERR_SHAPE, "tg_stack", "input 1 [2,4]");
    ck_assert_ptr_null(tg_stack(c, (tg_tensor *[]){a, a}, 2, 3));
    assert_err(c, TG_ERR_INVALID, "tg_stack", "axis 3");
    ck_assert_ptr_null(tg_stack(c, (tg_tensor *[]){NULL}, 1, 0));
    assert_err(c, TG_ERR_INVALID, "tg_stack", "input 0 is NULL");
    tg_tensor *e8 = tg_tensor_new(c, TG_F32, TG_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    ck_assert_ptr_null(tg_stack(c, &e8, 1, 0));
    assert_err(c, TG_ERR_INVALID, "tg_stack", "exceed");
    ck_assert_ptr_null(tg_unsqueeze(c, e8, 0));
    assert_err(c, TG_ERR_INVALID, "tg_unsqueeze", "exceed");

    ck_assert_ptr_null(tg_squeeze(c, a, 0));
    assert_err(c, TG_ERR_SHAPE, "tg_squeeze", "size 2");
    ck_assert_ptr_null(tg_squeeze(c, a, -3));
    assert_err(c, TG_ERR_INVALID, "tg_squeeze", "axis -3");
    ck_assert_ptr_null(tg_unsqueeze(c, a, 3));
    assert_err(c, TG_ERR_INVALID, "tg_unsqueeze", "axis 3");

    /* sticky: NULL in, NULL out, the first error kept */
    ck_assert_ptr_null(tg_squeeze(c, NULL, 0));
    ck_assert_ptr_null(tg_concat(c, (tg_tensor *[]){a, b}, 2, 0));
    assert_err(c, TG_ERR_INVALID, "tg_squeeze", "NULL");
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_errors_index)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_new(c, TG_F64, TG_SHAPE(3, 4));
    tg_tensor *ix = mk_idx(c, TG_SHAPE(3), (const int64_t[]){0, 7, 1});
    tg_tensor *fi = tg_tensor_new(c, TG_F64, TG_SHAPE(3));

    ck_assert_ptr_null(tg_index_select(c, x, 1, ix));
    assert_err(c, TG_ERR_INVALID, "tg_index_select", "value 7 at [1]");
    ck_assert_ptr_null(tg_index_select(c, x, 0, mk_idx(c, TG_SHAPE(2), (const int64_t[]){-1, 0})));
    assert_err(c, TG_ERR_INVALID, "tg_index_select", "value -1 at [0]");
    ck_assert_ptr_null(tg_index_select(c, x, 0, fi));
    assert_err(c, TG_ERR_DTYPE, "tg_index_select", "f64");
    ck_assert_ptr_null(tg_index_select(c, x, 2, mk_idx(c, TG_SHAPE(1), (const int64_t[]){0})));
    assert_err(c, TG_ERR_INVALID, "tg_index_select", "axis 2");
    ck_assert_ptr_null(tg_index_select(c, x, 0, tg_tensor_new(c, TG_I64, TG_SHAPE(1, 1))));
    assert_err(c, TG_ERR_SHAPE, "tg_index_select", "1-d");

    tg_tensor *gi = mk_idx(c, TG_SHAPE(2, 2), (const int64_t[]){0, 1, 2, 4});
    ck_assert_ptr_null(tg_gather(c, x, 1, gi));
    assert_err(c, TG_ERR_INVALID, "tg_gather", "value 4 at [1,1]");
    ck_assert_ptr_null(tg_gather(c, x, 1, ix));
    assert_err(c, TG_ERR_SHAPE, "tg_gather", "index [3]");
    ck_assert_ptr_null(tg_gather(c, x, 1, tg_tensor_new(c, TG_I64, TG_SHAPE(4, 1))));
    assert_err(c, TG_ERR_SHAPE, "tg_gather", "index [4,1]");
    ck_assert_ptr_null(tg_gather(c, x, -3, gi));
    assert_err(c, TG_ERR_INVALID, "tg_gather", "axis -3");
    ck_assert_ptr_null(tg_gather(c, x, 0, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 2))));
    assert_err(c, TG_ERR_DTYPE, "tg_gather", "f32");

    tg_tensor *src = tg_tensor_new(c, TG_F64, TG_SHAPE(2, 2));
    ck_assert_ptr_null(tg_scatter_add(c, x, 1, gi, src));
    assert_err(c, TG_ERR_INVALID, "tg_scatter_add", "value 4 at [1,1]");
    ck_assert_ptr_null(
        tg_scatter_add(c, x, 1, mk_idx(c, TG_SHAPE(2, 1), (const int64_t[]){0, 1}), src));
    assert_err(c, TG_ERR_SHAPE, "tg_scatter_add", "same shape");
    ck_assert_ptr_null(tg_scatter_add(c, x, 1, gi, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 2))));
    assert_err(c, TG_ERR_DTYPE, "tg_scatter_add", "f32");
    ck_assert_ptr_null(tg_scatter_add(c, x, 0, gi, NULL));
    assert_err(c, TG_ERR_INVALID, "tg_scatter_add", "input 2 is NULL");
    tg_ctx_free(c);
}
END_TEST

Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tu_tcase("values");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_concat_values, 0, 2);
    tcase_add_loop_test(tc, test_stack_values, 0, 2);
    tcase_add_test(tc, test_concat_i64_and_grads);
    tcase_add_loop_test(tc, test_split, 0, 2);
    tcase_add_loop_test(tc, test_squeeze_unsqueeze_views, 0, 2);
    tcase_add_loop_test(tc, test_flatten, 0, 2);
    tcase_add_loop_test(tc, test_pad_values, 0, 2);
    tcase_add_loop_test(tc, test_index_select_values, 0, 2);
    tcase_add_loop_test(tc, test_gather_values, 0, 2);
    tcase_add_loop_test(tc, test_scatter_add_values, 0, 2);
    tcase_add_test(tc, test_one_hot);
    suite_add_tcase(s, tc);

    TCase *det = tu_tcase("determinism");
    tcase_set_timeout(det, 120);
    tcase_add_test(det, test_repeated_indices_deterministic);
    suite_add_tcase(s, det);

    TCase *err = tu_tcase("errors");
    tcase_set_timeout(err, 60);
    tcase_add_test(err, test_errors_join);
    tcase_add_test(err, test_errors_index);
    suite_add_tcase(s, err);
    return s;
}
