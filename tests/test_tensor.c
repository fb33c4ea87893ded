/*
 * test_tensor.c - tensors: creation in every dtype, shapes and strides,
 * 8-d and empty tensors, views (reshape, transpose, permute, slice,
 * expand, contiguous), copying in and out through strides, and the small
 * inspection helpers.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

static const tg_dtype all_dtypes[] = {TG_F32, TG_F64, TG_I64};

/* Copies t's elements (row-major) into out as doubles. */
static void values(const tg_tensor *t, double *out, int64_t n)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_numel(t), n);
    tg_dtype dt = tg_tensor_dtype(t);
    size_t nb = (size_t)n * tg_dtype_size(dt);
    void *buf = malloc(nb ? nb : 1);
    ck_assert_ptr_nonnull(buf);
    tu_assert_status(tg_copy_out(t, buf, nb), TG_OK);
    for (int64_t i = 0; i < n; i++)
        out[i] = dt == TG_F32   ? (double)((float *)buf)[i]
                 : dt == TG_F64 ? ((double *)buf)[i]
                                : (double)((int64_t *)buf)[i];
    free(buf);
}

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(tg_shape(t)[i] == shape[i], "dim %d is %lld, want %lld", i,
                      (long long)tg_shape(t)[i], (long long)shape[i]);
}

static void assert_strides(const tg_tensor *t, int ndim, const int64_t *strides)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(tg_strides(t)[i] == strides[i], "stride %d is %lld, want %lld", i,
                      (long long)tg_strides(t)[i], (long long)strides[i]);
}

/* A [n] f32 tensor 0, 1, ..., n-1 made with tg_tensor_from. */
static tg_tensor *iota(tg_ctx *c, int64_t n)
{
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)i;
    tg_tensor *t = tg_tensor_from(c, TG_F32, 1, &n, v);
    free(v);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* iota reshaped to [r, k]. */
static tg_tensor *iota2(tg_ctx *c, int64_t r, int64_t k)
{
    tg_tensor *t = tg_reshape(c, iota(c, r * k), TG_SHAPE(r, k));
    ck_assert_ptr_nonnull(t);
    return t;
}

/* ---------------------------------------------------------------------- */
/* Creation                                                               */
/* ---------------------------------------------------------------------- */

START_TEST(test_new_zeros)
{
    const tg_dtype dt = all_dtypes[_i];
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_tensor_new(c, dt, TG_SHAPE(2, 3, 4));
    assert_shape(t, TG_SHAPE(2, 3, 4));
    assert_strides(t, TG_SHAPE(12, 4, 1));
    ck_assert_int_eq(tg_numel(t), 24);
    ck_assert_int_eq(tg_tensor_dtype(t), dt);
    ck_assert_ptr_eq(tg_tensor_ctx(t), c);
    ck_assert(tg_is_contiguous(t));
    ck_assert(tg_is_leaf(t));
    ck_assert(!tg_requires_grad(t));
    ck_assert_ptr_null(tg_grad(t));
    ck_assert_int_eq(tg_tensor_op(t), TG_OP_NONE);
    ck_assert_ptr_nonnull(tg_data(t));
    static const char zero[24 * 8];
    ck_assert_mem_eq(tg_data(t), zero, 24 * tg_dtype_size(dt));

    /* 0-d: one element. */
    tg_tensor *s = tg_tensor_new(c, dt, 0, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_ndim(s), 0);
    ck_assert_int_eq(tg_numel(s), 1);
    ck_assert(tg_item(s) == 0.0);
    ck_assert(tg_is_contiguous(s));
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_from_copies)
{
    const tg_dtype dt = all_dtypes[_i];
    tg_ctx *c = tu_ctx();
    float f[6] = {1.5f, -2, 3, 4.25f, 5, -6};
    double d[6] = {1.5, -2, 3, 4.25, 5, -6};
    int64_t l[6] = {1, -2, 3, ((int64_t)1 << 53) + 1, INT64_MAX, INT64_MIN};
    void *src = dt == TG_F32 ? (void *)f : dt == TG_F64 ? (void *)d : (void *)l;
    size_t nb = 6 * tg_dtype_size(dt);
    char keep[48];
    memcpy(keep, src, nb);

    tg_tensor *t = tg_tensor_from(c, dt, TG_SHAPE(3, 2), src);
    assert_shape(t, TG_SHAPE(3, 2));
    assert_strides(t, TG_SHAPE(2, 1));
    ck_assert_int_eq(tg_tensor_dtype(t), dt);
    ck_assert_ptr_ne(tg_data(t), src);
    ck_assert_mem_eq(tg_data(t), keep, nb);

    memset(src, 0x7f, nb); /* the tensor holds a copy */
    char out[48];
    tu_assert_status(tg_copy_out(t, out, nb), TG_OK);
    ck_assert_mem_eq(out, keep, nb);
    double v[6];
    values(t, v, 6);
    ck_assert(v[1] == -2.0);
    if (dt == TG_I64) {
        int64_t li[6];
        memcpy(li, out, sizeof li);
        ck_assert(li[3] == ((int64_t)1 << 53) + 1); /* exact, no trip through double */
        ck_assert(li[4] == INT64_MAX && li[5] == INT64_MIN);
    }
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_scalar)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = tg_scalar(c, TG_F32, 2.5);
    tg_tensor *b = tg_scalar(c, TG_F64, -1.25);
    tg_tensor *i = tg_scalar(c, TG_I64, -2.7);
    tg_tensor *j = tg_scalar(c, TG_I64, 2.9);
    tg_tensor *tiny = tg_scalar(c, TG_F64, 0.1);
    tg_tensor *ts[] = {a, b, i, j, tiny};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        ck_assert_ptr_nonnull(ts[k]);
        ck_assert_int_eq(tg_ndim(ts[k]), 0);
        ck_assert_int_eq(tg_numel(ts[k]), 1);
        ck_assert(tg_is_contiguous(ts[k]));
        ck_assert_ptr_nonnull(tg_data(ts[k]));
    }
    ck_assert_int_eq(tg_tensor_dtype(a), TG_F32);
    ck_assert_int_eq(tg_tensor_dtype(b), TG_F64);
    ck_assert_int_eq(tg_tensor_dtype(i), TG_I64);
    ck_assert(tg_item(a) == 2.5);
    ck_assert(tg_item(b) == -1.25);
    ck_assert(tg_item(i) == -2.0); /* toward zero */
    ck_assert(tg_item(j) == 2.0);
    ck_assert(tg_item(tiny) == 0.1); /* f64 keeps every bit */
    ck_assert(*(double *)tg_data(tiny) == 0.1);
    ck_assert(*(int64_t *)tg_data(i) == -2);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_full)
{
    const tg_dtype dt = all_dtypes[_i];
    tg_ctx *c = tu_ctx();
    double v = dt == TG_I64 ? 7.0 : 7.5;
    tg_tensor *t = tg_full(c, dt, TG_SHAPE(3, 2), v);
    assert_shape(t, TG_SHAPE(3, 2));
    ck_assert_int_eq(tg_tensor_dtype(t), dt);
    tu_assert_values(t, 0.0, v, v, v, v, v, v);
    tg_tensor *s = tg_full(c, dt, 0, NULL, -3.0);
    tu_assert_values(s, 0.0, -3.0);
    ck_assert_int_eq(tg_ndim(s), 0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

typedef struct {
    double start, stop, step;
    int64_t n; /* numpy's len(np.arange(start, stop, step)) */
} arange_case;

/* The counts are numpy's: ceil((stop - start) / step), so arange(1, 1.3,
 * 0.1) has 4 elements (the last is 1.3000000000000003). */
static const arange_case arange_cases[] = {
    {0, 5, 1, 5},  {5, 0, -1, 5},  {1, 1.3, 0.1, 4}, {0, 1, 0.1, 10}, {0, 2.5, 0.5, 5},
    {0, 0, 1, 0},  {3, 0, 1, 0},   {0, 3, -1, 0},    {0, -3, -1, 3},  {-1.5, 1.5, 0.75, 4},
    {0, 10, 3, 4}, {0, 1, 0.3, 4}, {10, 0, -2.5, 4}, {0.5, 3, 1, 3},  {-5, -2, 1, 3},
};

START_TEST(test_arange)
{
    const tg_dtype dt = _i ? TG_F64 : TG_F32;
    const double tol = dt == TG_F32 ? 1e-6 : 1e-12;
    tg_ctx *c = tu_ctx();
    for (size_t k = 0; k < sizeof arange_cases / sizeof arange_cases[0]; k++) {
        const arange_case *a = &arange_cases[k];
        tg_tensor *t = tg_arange(c, dt, a->start, a->stop, a->step);
        ck_assert_msg(t != NULL, "arange(%g, %g, %g): %s", a->start, a->stop, a->step,
                      tg_ctx_errmsg(c));
        ck_assert_int_eq(tg_ndim(t), 1);
        ck_assert_int_eq(tg_tensor_dtype(t), dt);
        ck_assert_msg(tg_numel(t) == a->n, "arange(%g, %g, %g) has %lld elements, numpy %lld",
                      a->start, a->stop, a->step, (long long)tg_numel(t), (long long)a->n);
        double v[16];
        values(t, v, a->n);
        for (int64_t i = 0; i < a->n; i++)
            ck_assert_msg(fabs(v[i] - (a->start + (double)i * a->step)) <= tol * (1 + fabs(v[i])),
                          "arange(%g, %g, %g)[%lld] = %.17g", a->start, a->stop, a->step,
                          (long long)i, v[i]);
    }
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_arange_i64)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_arange(c, TG_I64, 0, 10, 3);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I64);
    tu_assert_values(t, 0.0, 0, 3, 6, 9);
    tu_assert_values(tg_arange(c, TG_I64, 5, 0, -2), 0.0, 5, 3, 1);
    tu_assert_values(tg_arange(c, TG_I64, -2, 2, 1), 0.0, -2, -1, 0, 1);
    ck_assert_int_eq(tg_numel(tg_arange(c, TG_I64, 3, 3, 1)), 0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_rand)
{
    const tg_dtype dt = _i ? TG_F64 : TG_F32;
    enum { N = 10000 };
    static double v[N];
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_rand(c, dt, TG_SHAPE(100, 100));
    assert_shape(t, TG_SHAPE(100, 100));
    ck_assert_int_eq(tg_tensor_dtype(t), dt);
    values(t, v, N);
    double sum = 0, lo = 1, hi = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_msg(v[i] >= 0.0 && v[i] < 1.0, "rand[%d] = %.17g outside [0, 1)", i, v[i]);
        sum += v[i];
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    ck_assert_double_le(fabs(sum / N - 0.5), 0.02);
    ck_assert_double_lt(lo, 0.01);
    ck_assert_double_gt(hi, 0.99);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_randn)
{
    const tg_dtype dt = _i ? TG_F64 : TG_F32;
    enum { N = 10000 };
    static double v[N];
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_randn(c, dt, TG_SHAPE(N));
    ck_assert_int_eq(tg_tensor_dtype(t), dt);
    values(t, v, N);
    double sum = 0, sq = 0;
    int above2 = 0, below2 = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(isfinite(v[i]));
        sum += v[i];
        above2 += v[i] > 2;
        below2 += v[i] < -2;
    }
    double mean = sum / N;
    for (int i = 0; i < N; i++) sq += (v[i] - mean) * (v[i] - mean);
    double sd = sqrt(sq / (N - 1));
    ck_assert_msg(fabs(mean) < 0.05, "randn mean %g", mean);
    ck_assert_msg(sd > 0.95 && sd < 1.05, "randn std %g", sd);
    /* About 2.3% on each side beyond 2 sigma: 230 of 10,000. */
    ck_assert_int_gt(above2, 150);
    ck_assert_int_lt(above2, 320);
    ck_assert_int_gt(below2, 150);
    ck_assert_int_lt(below2, 320);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_zeros_like)
{
    const tg_dtype dt = all_dtypes[_i];
    tg_ctx *c1 = tu_ctx();
    tg_ctx *c2 = tu_ctx();
    tg_tensor *src = tg_full(c1, dt, TG_SHAPE(3, 4), 5.0);
    tg_tensor *z = tg_zeros_like(c2, src);
    assert_shape(z, TG_SHAPE(3, 4));
    ck_assert_int_eq(tg_tensor_dtype(z), dt);
    ck_assert_ptr_eq(tg_tensor_ctx(z), c2);
    ck_assert(tg_is_contiguous(z));
    tu_assert_values(z, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    /* Of a strided view: the view's shape, contiguous. */
    tg_tensor *zt = tg_zeros_like(c2, tg_transpose(c1, src, 0, 1));
    assert_shape(zt, TG_SHAPE(4, 3));
    ck_assert(tg_is_contiguous(zt));
    assert_strides(zt, TG_SHAPE(3, 1));
    tu_assert_values(src, 0.0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5); /* untouched */
    tu_assert_ok(c1);
    tu_assert_ok(c2);
    tg_ctx_free(c1);
    tg_ctx_free(c2);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Dimensions                                                             */
/* ---------------------------------------------------------------------- */

START_TEST(test_eight_dims)
{
    tg_ctx *c = tu_ctx();
    const int64_t shape[8] = {2, 1, 3, 1, 2, 1, 2, 2};
    tg_tensor *t = tg_reshape(c, iota(c, 48), 8, shape);
    assert_shape(t, 8, shape);
    assert_strides(t, TG_SHAPE(24, 24, 8, 8, 4, 4, 2, 1));
    ck_assert_int_eq(tg_numel(t), 48);
    ck_assert(tg_get(t, (const int64_t[]){1, 0, 2, 0, 1, 0, 1, 1}) == 47.0);
    ck_assert(tg_get(t, (const int64_t[]){1, 0, 0, 0, 0, 0, 0, 1}) == 25.0);

    tg_tensor *z = tg_tensor_new(c, TG_F64, 8, shape);
    ck_assert_ptr_nonnull(z);
    tg_tensor *s = tg_sum(c, tg_add(c, t, t));
    ck_assert(tg_item(s) == 2.0 * 47 * 48 / 2);
    tg_tensor *tt = tg_transpose(c, t, 0, 7);
    assert_shape(tt, TG_SHAPE(2, 1, 3, 1, 2, 1, 2, 2));
    ck_assert(tg_get(tt, (const int64_t[]){1, 0, 0, 0, 0, 0, 0, 0}) == 1.0);
    ck_assert(tg_get(tt, (const int64_t[]){0, 0, 0, 0, 0, 0, 0, 1}) == 24.0);
    tu_assert_values(tg_reshape(c, tg_sum_axes(c, t, 1, (const int[]){-1}, false), TG_SHAPE(-1)),
                     0.0, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73,
                     77, 81, 85, 89, 93);
    tu_assert_ok(c);

    /* 9 dims: rejected, everywhere a shape is given. */
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 2};
    ck_assert_ptr_null(tg_tensor_new(c, TG_F32, 9, nine));
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_ptr_null(tg_reshape(c, t, 9, nine));
    ck_assert_int_ne(tg_ctx_status(c), TG_OK);
    tg_ctx_clear_error(c);
    ck_assert_ptr_null(tg_expand(c, tg_full(c, TG_F32, TG_SHAPE(2), 1), 9, nine));
    ck_assert_int_ne(tg_ctx_status(c), TG_OK);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_zero_size)
{
    const tg_dtype dt = all_dtypes[_i];
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_tensor_new(c, dt, TG_SHAPE(0, 3));
    assert_shape(t, TG_SHAPE(0, 3));
    ck_assert_int_eq(tg_numel(t), 0);
    ck_assert_ptr_null(tg_data(t)); /* documented: NULL for an empty tensor */
    char buf[8];
    tu_assert_status(tg_copy_out(t, buf, 0), TG_OK);
    tu_assert_status(tg_copy_out(t, buf, 8), TG_ERR_SHAPE);
    ck_assert(isnan(tg_item(t)));
    ck_assert_ptr_nonnull(tg_tensor_from(c, dt, TG_SHAPE(2, 0), buf));
    ck_assert_int_eq(tg_numel(tg_full(c, dt, TG_SHAPE(4, 0, 2), 1)), 0);
    ck_assert_int_eq(tg_numel(tg_zeros_like(c, t)), 0);
    tu_assert_ok(c);
    if (dt == TG_I64) {
        tg_ctx_free(c);
        return;
    }
    ck_assert_int_eq(tg_numel(tg_rand(c, dt, TG_SHAPE(0))), 0);
    ck_assert_int_eq(tg_numel(tg_randn(c, dt, TG_SHAPE(5, 0))), 0);

    /* Ops on empty tensors. */
    tg_tensor *b = tg_full(c, dt, TG_SHAPE(3), 1);
    tg_tensor *s = tg_add(c, t, b);
    assert_shape(s, TG_SHAPE(0, 3));
    assert_shape(tg_exp(c, t), TG_SHAPE(0, 3));
    ck_assert(tg_item(tg_sum(c, t)) == 0.0);
    ck_assert(isnan(tg_item(tg_mean(c, t))));
    tg_tensor *sa = tg_sum_axes(c, t, 1, (const int[]){0}, false);
    assert_shape(sa, TG_SHAPE(3));
    tu_assert_values(sa, 0.0, 0, 0, 0);
    assert_shape(tg_matmul(c, t, tg_full(c, dt, TG_SHAPE(3, 2), 1)), TG_SHAPE(0, 2));
    /* [2,0] @ [0,3]: a sum over nothing, zeros. */
    tg_tensor *mm =
        tg_matmul(c, tg_tensor_new(c, dt, TG_SHAPE(2, 0)), tg_tensor_new(c, dt, TG_SHAPE(0, 3)));
    assert_shape(mm, TG_SHAPE(2, 3));
    tu_assert_values(mm, 0.0, 0, 0, 0, 0, 0, 0);
    assert_shape(tg_reshape(c, t, TG_SHAPE(3, 0)), TG_SHAPE(3, 0));
    assert_shape(tg_reshape(c, t, TG_SHAPE(-1, 3)), TG_SHAPE(0, 3));
    assert_shape(tg_transpose(c, t, 0, 1), TG_SHAPE(3, 0));
    assert_shape(tg_contiguous(c, tg_transpose(c, t, 0, 1)), TG_SHAPE(3, 0));
    tg_tensor *e = tg_slice(c, tg_arange(c, dt, 0, 5, 1), 0, 3, 3, 1);
    assert_shape(e, TG_SHAPE(0));

    /* Gradients through empty tensors are empty. */
    tg_tensor *w = tg_tensor_new(c, dt, TG_SHAPE(0, 3));
    tg_set_requires_grad(w, true);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, w, b))), TG_OK);
    assert_shape(tg_grad(w), TG_SHAPE(0, 3));
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

static int shape_ndim(int ndim, const int64_t *shape)
{
    (void)shape;
    return ndim;
}

static int64_t shape_at(int ndim, const int64_t *shape, int i) { return i < ndim ? shape[i] : -1; }

START_TEST(test_shape_macro)
{
    ck_assert_int_eq(shape_ndim(TG_SHAPE(7)), 1);
    ck_assert_int_eq(shape_ndim(TG_SHAPE(2, 3)), 2);
    ck_assert_int_eq(shape_ndim(TG_SHAPE(1, 2, 3, 4, 5, 6, 7, 8)), 8);
    ck_assert_int_eq(shape_at(TG_SHAPE(2, 3, 5), 2), 5);
    ck_assert_int_eq(shape_at(TG_SHAPE(2, 3, 5), 0), 2);
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_tensor_new(c, TG_F32, TG_SHAPE(5, 4));
    assert_shape(t, 2, (const int64_t[]){5, 4});
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_contiguous_strides)
{
    tg_ctx *c = tu_ctx();
    assert_strides(tg_tensor_new(c, TG_F32, TG_SHAPE(7)), TG_SHAPE(1));
    assert_strides(tg_tensor_new(c, TG_F64, TG_SHAPE(3, 5)), TG_SHAPE(5, 1));
    assert_strides(tg_tensor_new(c, TG_I64, TG_SHAPE(2, 3, 4, 5)), TG_SHAPE(60, 20, 5, 1));
    assert_strides(tg_rand(c, TG_F32, TG_SHAPE(6, 2, 3)), TG_SHAPE(6, 3, 1));
    ck_assert(tg_is_contiguous(tg_tensor_new(c, TG_F32, TG_SHAPE(3, 1, 5))));
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Views                                                                  */
/* ---------------------------------------------------------------------- */

START_TEST(test_reshape_view)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_rand(c, TG_F32, TG_SHAPE(1000, 1000)); /* 4 MB */
    ck_assert_ptr_nonnull(x);
    size_t before = tg_ctx_bytes_used(c);
    tg_tensor *y = tg_reshape(c, x, TG_SHAPE(100, 10000));
    size_t grown = tg_ctx_bytes_used(c) - before;
    assert_shape(y, TG_SHAPE(100, 10000));
    ck_assert(tg_is_contiguous(y));
    ck_assert_ptr_eq(tg_data(y), tg_data(x)); /* same storage */
    ck_assert_msg(grown < 16384, "reshape of a contiguous tensor used %zu arena bytes", grown);
    /* Writes through one are seen through the other. */
    ((float *)tg_data(x))[10001] = 42.0f;
    tg_tensor_bump_version(x);
    ck_assert(tg_get(y, (const int64_t[]){1, 1}) == 42.0);

    /* -1 is inferred. */
    tg_tensor *a = iota(c, 24);
    tg_tensor *r = tg_reshape(c, a, TG_SHAPE(2, 3, 4));
    assert_shape(tg_reshape(c, r, TG_SHAPE(-1, 4)), TG_SHAPE(6, 4));
    assert_shape(tg_reshape(c, r, TG_SHAPE(2, -1)), TG_SHAPE(2, 12));
    assert_shape(tg_reshape(c, r, TG_SHAPE(-1)), TG_SHAPE(24));
    assert_shape(tg_reshape(c, r, TG_SHAPE(4, -1, 2)), TG_SHAPE(4, 3, 2));
    tg_tensor *s0 = tg_reshape(c, tg_full(c, TG_F32, TG_SHAPE(1, 1), 3), 0, NULL);
    ck_assert_int_eq(tg_ndim(s0), 0);
    ck_assert(tg_item(s0) == 3.0);
    ck_assert(tg_get(r, (const int64_t[]){1, 2, 3}) == 23.0);
    ck_assert(tg_get(r, (const int64_t[]){1, 0, 1}) == 13.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_reshape_copy)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = iota2(c, 2, 3); /* [[0,1,2],[3,4,5]] */
    tg_tensor *t = tg_transpose(c, x, 0, 1);
    tg_tensor *r = tg_reshape(c, t, TG_SHAPE(6));
    assert_shape(r, TG_SHAPE(6));
    tu_assert_values(r, 0.0, 0, 3, 1, 4, 2, 5);
    ck_assert(tg_is_contiguous(r));
    ck_assert_ptr_nonnull(tg_data(r));
    ck_assert_ptr_ne(tg_data(r), tg_data(x));
    /* A copy: later writes to x do not show. */
    ((float *)tg_data(x))[0] = 99.0f;
    tg_tensor_bump_version(x);
    tu_assert_values(r, 0.0, 0, 3, 1, 4, 2, 5);
    /* Reshape of a slice with a step copies too. */
    tg_tensor *sl = tg_slice(c, iota(c, 10), 0, 0, 10, 2);
    tu_assert_values(tg_reshape(c, sl, TG_SHAPE(5, 1)), 0.0, 0, 2, 4, 6, 8);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_transpose_permute)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_reshape(c, iota(c, 24), TG_SHAPE(2, 3, 4));
    tg_tensor *t = tg_transpose(c, x, 0, 2);
    assert_shape(t, TG_SHAPE(4, 3, 2));
    assert_strides(t, TG_SHAPE(1, 4, 12));
    ck_assert(!tg_is_contiguous(t));
    ck_assert_ptr_null(tg_data(t));
    for (int64_t i = 0; i < 4; i++)
        for (int64_t j = 0; j < 3; j++)
            for (int64_t k = 0; k < 2; k++)
                ck_assert(tg_get(t, (const int64_t[]){i, j, k}) ==
                          tg_get(x, (const int64_t[]){k, j, i}));

    tg_tensor *tn = tg_transpose(c, x, -1, -2);
    assert_shape(tn, TG_SHAPE(2, 4, 3));
    assert_strides(tn, TG_SHAPE(12, 1, 4));
    tu_assert_values(tg_reshape(c, tg_slice(c, tn, 0, 0, 1, 1), TG_SHAPE(-1)), 0.0, 0, 4, 8, 1, 5,
                     9, 2, 6, 10, 3, 7, 11);

    /* Transposing twice gives the original layout back. */
    tg_tensor *tt = tg_transpose(c, tn, 1, 2);
    assert_strides(tt, TG_SHAPE(12, 4, 1));
    ck_assert(tg_is_contiguous(tt));

    tg_tensor *p = tg_permute(c, x, (const int[]){1, 2, 0});
    assert_shape(p, TG_SHAPE(3, 4, 2));
    assert_strides(p, TG_SHAPE(4, 1, 12));
    ck_assert_ptr_null(tg_data(p));
    ck_assert(tg_get(p, (const int64_t[]){2, 3, 1}) == 23.0);
    ck_assert(tg_get(p, (const int64_t[]){1, 0, 1}) == 16.0);
    tg_tensor *id = tg_permute(c, x, (const int[]){0, 1, 2});
    ck_assert(tg_is_contiguous(id));

    /* A view shares storage: writes through x show in t. */
    ((float *)tg_data(x))[5] = -1.0f;
    tg_tensor_bump_version(x);
    ck_assert(tg_get(t, (const int64_t[]){1, 1, 0}) == -1.0);

    /* Views of 1-d and 0-d tensors. */
    tg_tensor *v = iota(c, 5);
    assert_shape(tg_transpose(c, v, 0, 0), TG_SHAPE(5));
    tg_tensor *s = tg_scalar(c, TG_F32, 4);
    ck_assert_int_eq(tg_ndim(tg_permute(c, s, (const int[]){0})), 0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

typedef struct {
    int64_t start, stop, step;
    int n;
    int64_t want[10];
} slice_case;

/* Python's list(range(10))[start:stop:step]. */
static const slice_case slice_cases[] = {
    {1, 8, 3, 3, {1, 4, 7}},
    {-3, 10, 1, 3, {7, 8, 9}},
    {-3, 100, 1, 3, {7, 8, 9}},
    {-100, 2, 1, 2, {0, 1}},
    {0, -1, 1, 9, {0, 1, 2, 3, 4, 5, 6, 7, 8}},
    {8, 2, 1, 0, {0}},
    {0, 10, 4, 3, {0, 4, 8}},
    {0, 10, 100, 1, {0}},
    {10, 20, 1, 0, {0}},
    {-1, 10, 1, 1, {9}},
    {-2, -1, 1, 1, {8}},
    {-100, -50, 1, 0, {0}},
    {INT64_MIN, INT64_MAX, 3, 4, {0, 3, 6, 9}},
    {5, 5, 1, 0, {0}},
};

START_TEST(test_slice)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = iota(c, 10);
    for (size_t k = 0; k < sizeof slice_cases / sizeof slice_cases[0]; k++) {
        const slice_case *s = &slice_cases[k];
        tg_tensor *v = tg_slice(c, x, 0, s->start, s->stop, s->step);
        ck_assert_msg(v != NULL, "slice [%lld:%lld:%lld]: %s", (long long)s->start,
                      (long long)s->stop, (long long)s->step, tg_ctx_errmsg(c));
        ck_assert_msg(tg_numel(v) == s->n, "slice [%lld:%lld:%lld] has %lld elements, want %d",
                      (long long)s->start, (long long)s->stop, (long long)s->step,
                      (long long)tg_numel(v), s->n);
        double got[10];
        values(v, got, s->n);
        for (int i = 0; i < s->n; i++)
            ck_assert_msg(got[i] == (double)s->want[i], "slice [%lld:%lld:%lld][%d] = %g",
                          (long long)s->start, (long long)s->stop, (long long)s->step, i, got[i]);
        if (s->n > 1) ck_assert_int_eq(tg_strides(v)[0], s->step);
    }

    /* 2-d along the last axis: [4,5] -> [4,2], columns 1 and 3. */
    tg_tensor *m = iota2(c, 4, 5);
    tg_tensor *v = tg_slice(c, m, -1, 1, 5, 2);
    assert_shape(v, TG_SHAPE(4, 2));
    assert_strides(v, TG_SHAPE(5, 2));
    ck_assert_ptr_null(tg_data(v));
    ck_assert(!tg_is_contiguous(v));
    tu_assert_values(v, 0.0, 1, 3, 6, 8, 11, 13, 16, 18);
    /* Rows 1..2 of a contiguous matrix: a contiguous view with an offset. */
    tg_tensor *rows = tg_slice(c, m, 0, 1, 3, 1);
    assert_shape(rows, TG_SHAPE(2, 5));
    ck_assert(tg_is_contiguous(rows));
    ck_assert_ptr_eq(tg_data(rows), (float *)tg_data(m) + 5);
    /* Slice of a slice. */
    tg_tensor *vv = tg_slice(c, v, 0, 1, 4, 2);
    tu_assert_values(vv, 0.0, 6, 8, 16, 18);
    assert_strides(vv, TG_SHAPE(10, 2));
    /* Shares storage. */
    ((float *)tg_data(m))[16] = -7.0f;
    tg_tensor_bump_version(m);
    tu_assert_values(vv, 0.0, 6, 8, -7, 18);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_expand)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *col = tg_reshape(c, tg_arange(c, TG_F32, 1, 4, 1), TG_SHAPE(3, 1));
    tg_tensor *e = tg_expand(c, col, TG_SHAPE(3, 4));
    assert_shape(e, TG_SHAPE(3, 4));
    assert_strides(e, TG_SHAPE(1, 0));
    ck_assert_ptr_null(tg_data(e));
    ck_assert(!tg_is_contiguous(e));
    tu_assert_values(e, 0.0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);

    tg_tensor *row = tg_arange(c, TG_F32, 0, 4, 1);
    tg_tensor *e2 = tg_expand(c, row, TG_SHAPE(2, 4)); /* new leading dim */
    assert_shape(e2, TG_SHAPE(2, 4));
    assert_strides(e2, TG_SHAPE(0, 1));
    tu_assert_values(e2, 0.0, 0, 1, 2, 3, 0, 1, 2, 3);

    tg_tensor *e3 = tg_expand(c, col, TG_SHAPE(-1, 2)); /* -1 keeps a dim */
    assert_shape(e3, TG_SHAPE(3, 2));
    tu_assert_values(e3, 0.0, 1, 1, 2, 2, 3, 3);

    tg_tensor *e4 = tg_expand(c, tg_scalar(c, TG_F32, 5), TG_SHAPE(2, 2, 2));
    assert_strides(e4, TG_SHAPE(0, 0, 0));
    tu_assert_values(e4, 0.0, 5, 5, 5, 5, 5, 5, 5, 5);
    tg_tensor *same = tg_expand(c, col, TG_SHAPE(3, 1));
    assert_shape(same, TG_SHAPE(3, 1));
    /* An expanded view made contiguous is a real copy. */
    tg_tensor *ce = tg_contiguous(c, e);
    ck_assert(tg_is_contiguous(ce));
    tu_assert_values(ce, 0.0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    /* Ops read expanded inputs. */
    tu_assert_values(tg_sum(c, e), 0.0, 24);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_contiguous)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = iota2(c, 2, 3);
    tg_tensor *t = tg_contiguous(c, tg_transpose(c, x, 0, 1));
    assert_shape(t, TG_SHAPE(3, 2));
    assert_strides(t, TG_SHAPE(2, 1));
    ck_assert(tg_is_contiguous(t));
    ck_assert_ptr_nonnull(tg_data(t));
    const float want[6] = {0, 3, 1, 4, 2, 5};
    ck_assert_mem_eq(tg_data(t), want, sizeof want);
    /* Of a contiguous tensor: a copy with the same values. */
    tg_tensor *y = tg_contiguous(c, x);
    ck_assert_ptr_nonnull(y);
    tu_assert_values(y, 0.0, 0, 1, 2, 3, 4, 5);
    /* f64 and i64 too. */
    tg_tensor *d = tg_contiguous(c, tg_transpose(c, tg_full(c, TG_F64, TG_SHAPE(2, 3), 0.1), 0, 1));
    ck_assert_int_eq(tg_tensor_dtype(d), TG_F64);
    ck_assert(((double *)tg_data(d))[5] == 0.1);
    tg_tensor *i = tg_contiguous(c, tg_slice(c, tg_arange(c, TG_I64, 0, 10, 1), 0, 1, 10, 3));
    ck_assert_int_eq(tg_tensor_dtype(i), TG_I64);
    tu_assert_values(i, 0.0, 1, 4, 7);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Copying in and out                                                     */
/* ---------------------------------------------------------------------- */

START_TEST(test_copy_out_in)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = iota2(c, 2, 3);
    tg_tensor *t = tg_transpose(c, x, 0, 1); /* [3,2]: 0 3 / 1 4 / 2 5 */
    float out[6];
    tu_assert_status(tg_copy_out(t, out, sizeof out), TG_OK);
    const float want[6] = {0, 3, 1, 4, 2, 5};
    ck_assert_mem_eq(out, want, sizeof want);

    /* Size mismatches and NULLs; the buffer is not touched. */
    float guard[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    tu_assert_status(tg_copy_out(t, guard, 5 * sizeof(float)), TG_ERR_SHAPE);
    tu_assert_status(tg_copy_out(t, guard, 7 * sizeof(float)), TG_ERR_SHAPE);
    tu_assert_status(tg_copy_out(t, guard, 6 * sizeof(double)), TG_ERR_SHAPE);
    tu_assert_status(tg_copy_out(NULL, guard, sizeof guard), TG_ERR_INVALID);
    tu_assert_status(tg_copy_out(t, NULL, 6 * sizeof(float)), TG_ERR_INVALID);
    for (int i = 0; i < 8; i++) ck_assert(guard[i] == -1.0f);

    /* copy_in writes in the view's row-major order. */
    const float src[6] = {10, 11, 12, 13, 14, 15};
    tu_assert_status(tg_copy_in(t, src, sizeof src), TG_OK);
    tu_assert_values(t, 0.0, 10, 11, 12, 13, 14, 15);
    tu_assert_values(x, 0.0, 10, 12, 14, 11, 13, 15); /* x = t^T */

    /* Into a strided slice: only its elements change. */
    tg_tensor *v = iota(c, 10);
    tg_tensor *odd = tg_slice(c, v, 0, 1, 10, 2);
    const float ones[5] = {-1, -1, -1, -1, -1};
    tu_assert_status(tg_copy_in(odd, ones, sizeof ones), TG_OK);
    tu_assert_values(v, 0.0, 0, -1, 2, -1, 4, -1, 6, -1, 8, -1);

    tu_assert_status(tg_copy_in(t, src, 5 * sizeof(float)), TG_ERR_SHAPE);
    tu_assert_status(tg_copy_in(t, src, 7 * sizeof(float)), TG_ERR_SHAPE);
    tu_assert_status(tg_copy_in(NULL, src, sizeof src), TG_ERR_INVALID);
    tu_assert_status(tg_copy_in(t, NULL, sizeof src), TG_ERR_INVALID);
    tu_assert_values(t, 0.0, 10, 11, 12, 13, 14, 15); /* unchanged */

    /* f64 and i64 through a 3-d permutation. */
    for (int k = 0; k < 2; k++) {
        tg_dtype dt = k ? TG_I64 : TG_F64;
        tg_tensor *a = tg_tensor_new(c, dt, TG_SHAPE(2, 3, 4));
        tg_tensor *p = tg_permute(c, a, (const int[]){2, 0, 1}); /* [4,2,3] */
        int64_t il[24];
        double dl[24];
        for (int i = 0; i < 24; i++) {
            il[i] = i;
            dl[i] = i + 0.5;
        }
        const void *in = k ? (const void *)il : (const void *)dl;
        tu_assert_status(tg_copy_in(p, in, 24 * 8), TG_OK);
        char back[24 * 8];
        tu_assert_status(tg_copy_out(p, back, sizeof back), TG_OK);
        ck_assert_mem_eq(back, in, sizeof back);
        /* p[i][j][k] = a[j][k][i] */
        ck_assert(tg_get(a, (const int64_t[]){1, 2, 3}) == tg_get(p, (const int64_t[]){3, 1, 2}));
        ck_assert(tg_get(p, (const int64_t[]){3, 1, 2}) == (k ? 23.0 : 23.5));
    }
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Inspection helpers                                                     */
/* ---------------------------------------------------------------------- */

START_TEST(test_item_get)
{
    tg_ctx *c = tu_ctx();
    ck_assert(tg_item(tg_scalar(c, TG_F64, 3.5)) == 3.5);
    ck_assert(tg_item(tg_full(c, TG_F32, TG_SHAPE(1, 1, 1), -2)) == -2.0);
    ck_assert(tg_item(tg_scalar(c, TG_I64, 123456789012.0)) == 123456789012.0);
    ck_assert(isnan(tg_item(tg_full(c, TG_F32, TG_SHAPE(2), 1))));
    ck_assert(isnan(tg_item(NULL)));
    /* One element of a strided view. */
    tg_tensor *m = iota2(c, 3, 4);
    ck_assert(tg_item(tg_slice(c, tg_slice(c, m, 0, 2, 3, 1), 1, 1, 2, 1)) == 9.0);

    ck_assert(tg_get(m, (const int64_t[]){2, 3}) == 11.0);
    ck_assert(tg_get(m, (const int64_t[]){0, 0}) == 0.0);
    ck_assert(isnan(tg_get(m, (const int64_t[]){3, 0})));
    ck_assert(isnan(tg_get(m, (const int64_t[]){0, 4})));
    ck_assert(isnan(tg_get(m, (const int64_t[]){-1, 0})));
    ck_assert(isnan(tg_get(NULL, (const int64_t[]){0, 0})));
    tg_tensor *t = tg_transpose(c, m, 0, 1);
    ck_assert(tg_get(t, (const int64_t[]){3, 1}) == 7.0);
    tg_tensor *i = tg_arange(c, TG_I64, 0, 5, 1);
    ck_assert(tg_get(i, (const int64_t[]){4}) == 4.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_shape_str)
{
    tg_ctx *c = tu_ctx();
    char buf[64];
    ck_assert_str_eq(tg_shape_str(tg_tensor_new(c, TG_F32, TG_SHAPE(3, 4)), buf, sizeof buf),
                     "[3,4]");
    ck_assert_str_eq(tg_shape_str(tg_tensor_new(c, TG_F32, TG_SHAPE(5)), buf, sizeof buf), "[5]");
    ck_assert_str_eq(tg_shape_str(tg_scalar(c, TG_F32, 1), buf, sizeof buf), "[]");
    ck_assert_str_eq(tg_shape_str(tg_tensor_new(c, TG_F32, TG_SHAPE(2, 0, 7)), buf, sizeof buf),
                     "[2,0,7]");
    ck_assert_str_eq(
        tg_shape_str(tg_tensor_new(c, TG_F32, TG_SHAPE(1, 2, 3, 4, 5, 6, 7, 8)), buf, sizeof buf),
        "[1,2,3,4,5,6,7,8]");
    tg_tensor *big = tg_expand(c, tg_scalar(c, TG_F32, 0), TG_SHAPE(123456789012, 3));
    ck_assert_str_eq(tg_shape_str(big, buf, sizeof buf), "[123456789012,3]");
    ck_assert_ptr_eq(tg_shape_str(big, buf, sizeof buf), buf);
    /* A short buffer is truncated and terminated. */
    char small[4] = {'x', 'x', 'x', 'x'};
    const char *r = tg_shape_str(big, small, sizeof small);
    ck_assert_ptr_eq(r, small);
    ck_assert_uint_le(strlen(small), 3);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_dtype_name_size)
{
    ck_assert_str_eq(tg_dtype_name(TG_F32), "f32");
    ck_assert_str_eq(tg_dtype_name(TG_F64), "f64");
    ck_assert_str_eq(tg_dtype_name(TG_I64), "i64");
    ck_assert_str_eq(tg_dtype_name((tg_dtype)7), "?");
    ck_assert_str_eq(tg_dtype_name((tg_dtype)-1), "?");
    ck_assert_uint_eq(tg_dtype_size(TG_F32), 4);
    ck_assert_uint_eq(tg_dtype_size(TG_F64), 8);
    ck_assert_uint_eq(tg_dtype_size(TG_I64), 8);
    ck_assert_uint_eq(tg_dtype_size((tg_dtype)7), 0);
    ck_assert_uint_eq(tg_dtype_size((tg_dtype)-1), 0);
}
END_TEST

/* An empty tensor whose other dims multiply past int64 is refused (its
 * strides would overflow): found by fuzzing the IDX reader. */
START_TEST(test_zero_size_huge_dims)
{
    tg_ctx *c = tu_ctx();
    const int64_t big = (int64_t)1 << 40;
    tg_tensor *t = tg_tensor_new(c, TG_F32, 3, (const int64_t[]){0, big, big});
    ck_assert_ptr_null(t);
    ck_assert_int_eq(tg_ctx_status(c), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "tg_tensor_new"));
    tg_ctx_clear_error(c);
    t = tg_tensor_new(c, TG_F32, 3, (const int64_t[]){0, big, 4});
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_numel(t), 0);
    tg_ctx_free(c);
}
END_TEST

Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");

    TCase *tc = tcase_create("create");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_new_zeros, 0, 3);
    tcase_add_loop_test(tc, test_from_copies, 0, 3);
    tcase_add_test(tc, test_scalar);
    tcase_add_loop_test(tc, test_full, 0, 3);
    tcase_add_loop_test(tc, test_arange, 0, 2);
    tcase_add_test(tc, test_arange_i64);
    tcase_add_loop_test(tc, test_rand, 0, 2);
    tcase_add_loop_test(tc, test_randn, 0, 2);
    tcase_add_loop_test(tc, test_zeros_like, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("dims");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_eight_dims);
    tcase_add_test(tc, test_zero_size_huge_dims);
    tcase_add_loop_test(tc, test_zero_size, 0, 3);
    tcase_add_test(tc, test_shape_macro);
    tcase_add_test(tc, test_contiguous_strides);
    suite_add_tcase(s, tc);

    tc = tcase_create("views");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_reshape_view);
    tcase_add_test(tc, test_reshape_copy);
    tcase_add_test(tc, test_transpose_permute);
    tcase_add_test(tc, test_slice);
    tcase_add_test(tc, test_expand);
    tcase_add_test(tc, test_contiguous);
    suite_add_tcase(s, tc);

    tc = tcase_create("access");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_copy_out_in);
    tcase_add_test(tc, test_item_get);
    tcase_add_test(tc, test_shape_str);
    tcase_add_test(tc, test_dtype_name_size);
    suite_add_tcase(s, tc);

    return s;
}
