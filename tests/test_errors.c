/*
 * test_errors.c - error paths are features: every public function given
 * NULLs, bad dims, mismatched shapes, wrong dtypes, bad axes, permutations,
 * reshape sizes and slice steps gives the right status and a message that
 * names the function (and the shapes, where shapes are the problem), never
 * crashes, and leaves a context that works again after
 * tg_ctx_clear_error().
 *
 * Most cases are one line in ERROR_CASES below; each runs as its own test
 * on a fresh context holding the fixture tensors.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

/* ---------------------------------------------------------------------- */
/* Fixture                                                                */
/* ---------------------------------------------------------------------- */

typedef struct {
    tg_ctx *c;
    tg_tensor *a23;     /* f32 [2,3], requires grad */
    tg_tensor *b43;     /* f32 [4,3] */
    tg_tensor *m34;     /* f32 [3,4] */
    tg_tensor *m56;     /* f32 [5,6] */
    tg_tensor *v3;      /* f32 [3] */
    tg_tensor *d23;     /* f64 [2,3], requires grad */
    tg_tensor *i23;     /* i64 [2,3] */
    tg_tensor *b234;    /* f32 [2,3,4] */
    tg_tensor *b345;    /* f32 [3,4,5] */
    tg_tensor *lab;     /* i64 [2]: {0, 2}, valid for C = 3 */
    tg_tensor *lab_f;   /* f32 [2] */
    tg_tensor *lab_hi;  /* i64 [2]: {0, 3} */
    tg_tensor *lab_neg; /* i64 [2]: {-1, 0} */
    tg_tensor *lab3;    /* i64 [3] */
    tg_tensor *lab21;   /* i64 [2,1] */
    tg_tensor *e03;     /* f32 [0,3] */
    tg_tensor *lab0;    /* i64 [0] */
    tg_tensor *nonleaf; /* a23 * a23, recorded */
    bool has_rc;        /* the case returned a status in rc */
    tg_status rc;
} fx;

static void fx_init(fx *f)
{
    memset(f, 0, sizeof *f);
    tg_ctx *c = f->c = tu_ctx();
    const float v6[6] = {1, 2, 3, 4, 5, 6};
    const double d6[6] = {1, 2, 3, 4, 5, 6};
    const int64_t l6[6] = {0, 1, 2, 0, 1, 2};
    f->a23 = tg_tensor_from(c, TG_F32, TG_SHAPE(2, 3), v6);
    tg_set_requires_grad(f->a23, true);
    f->b43 = tg_full(c, TG_F32, TG_SHAPE(4, 3), 1);
    f->m34 = tg_full(c, TG_F32, TG_SHAPE(3, 4), 1);
    f->m56 = tg_full(c, TG_F32, TG_SHAPE(5, 6), 1);
    f->v3 = tg_full(c, TG_F32, TG_SHAPE(3), 1);
    f->d23 = tg_tensor_from(c, TG_F64, TG_SHAPE(2, 3), d6);
    tg_set_requires_grad(f->d23, true);
    f->i23 = tg_tensor_from(c, TG_I64, TG_SHAPE(2, 3), l6);
    f->b234 = tg_full(c, TG_F32, TG_SHAPE(2, 3, 4), 1);
    f->b345 = tg_full(c, TG_F32, TG_SHAPE(3, 4, 5), 1);
    f->lab = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 2});
    f->lab_f = tg_tensor_from(c, TG_F32, TG_SHAPE(2), (const float[]){0, 2});
    f->lab_hi = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 3});
    f->lab_neg = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){-1, 0});
    f->lab3 = tg_tensor_from(c, TG_I64, TG_SHAPE(3), l6);
    f->lab21 = tg_tensor_from(c, TG_I64, TG_SHAPE(2, 1), l6);
    f->e03 = tg_tensor_new(c, TG_F32, TG_SHAPE(0, 3));
    f->lab0 = tg_tensor_new(c, TG_I64, TG_SHAPE(0));
    f->nonleaf = tg_mul(c, f->a23, f->a23);
    tu_assert_ok(c);
    ck_assert(!tg_is_leaf(f->nonleaf));
}

/* The context works after an error is cleared: a small op, checked. */
static void assert_works(tg_ctx *c)
{
    tu_assert_ok(c);
    tg_tensor *x = tg_tensor_from(c, TG_F32, TG_SHAPE(2), (const float[]){1, 2});
    tg_tensor *y = tg_tensor_from(c, TG_F32, TG_SHAPE(2), (const float[]){3, 4});
    tu_assert_values(tg_mul(c, tg_add(c, x, y), y), 0.0, 12.0, 24.0);
    tu_assert_ok(c);
}

/* ---------------------------------------------------------------------- */
/* The table                                                              */
/* ---------------------------------------------------------------------- */

#define C (f->c)
#define RC(call) (f->has_rc = true, f->rc = (call), (tg_tensor *)NULL)
#define VOID(call) ((call), (tg_tensor *)NULL)
#define AXES(...) \
    (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)), (const int[]) { __VA_ARGS__ }
#define SH9 \
    9, (const int64_t[]) { 1, 1, 1, 1, 1, 1, 1, 1, 1 }
#define BAD_DT ((tg_dtype)7)

/*
 * X(name, status, function, substring or NULL, substring or NULL, expr):
 * expr must give NULL (use RC() for calls that return a status, VOID()
 * for void ones); the context must then hold status, with a message
 * containing the function name and both substrings.
 */
#define ERROR_CASES(X)                                                                             \
    /* creation */                                                                                 \
    X(new_null_shape, TG_ERR_INVALID, "tg_tensor_new", NULL, NULL,                                 \
      tg_tensor_new(C, TG_F32, 2, NULL))                                                           \
    X(new_ndim9, TG_ERR_INVALID, "tg_tensor_new", NULL, NULL, tg_tensor_new(C, TG_F32, SH9))       \
    X(new_ndim_neg, TG_ERR_INVALID, "tg_tensor_new", NULL, NULL,                                   \
      tg_tensor_new(C, TG_F32, -1, (const int64_t[]){2}))                                          \
    X(new_neg_dim, TG_ERR_INVALID, "tg_tensor_new", NULL, NULL,                                    \
      tg_tensor_new(C, TG_F32, TG_SHAPE(2, -3)))                                                   \
    X(new_dtype, TG_ERR_DTYPE, "tg_tensor_new", NULL, NULL, tg_tensor_new(C, BAD_DT, TG_SHAPE(2))) \
    X(new_numel_overflow, TG_ERR_NOMEM, "tg_tensor_new", NULL, NULL,                               \
      tg_tensor_new(C, TG_F32, TG_SHAPE((int64_t)1 << 62, 4)))                                     \
    X(new_bytes_overflow, TG_ERR_NOMEM, "tg_tensor_new", NULL, NULL,                               \
      tg_tensor_new(C, TG_F64, TG_SHAPE((int64_t)1 << 61)))                                        \
    X(from_null_data, TG_ERR_INVALID, "tg_tensor_from", NULL, NULL,                                \
      tg_tensor_from(C, TG_F32, TG_SHAPE(2), NULL))                                                \
    X(from_ndim9, TG_ERR_INVALID, "tg_tensor_from", NULL, NULL,                                    \
      tg_tensor_from(C, TG_F32, SH9, (const float[]){1, 2}))                                       \
    X(from_neg_dim, TG_ERR_INVALID, "tg_tensor_from", NULL, NULL,                                  \
      tg_tensor_from(C, TG_F32, TG_SHAPE(-1), (const float[]){1}))                                 \
    X(from_dtype, TG_ERR_DTYPE, "tg_tensor_from", NULL, NULL,                                      \
      tg_tensor_from(C, BAD_DT, TG_SHAPE(1), (const float[]){1}))                                  \
    X(scalar_dtype, TG_ERR_DTYPE, "tg_scalar", NULL, NULL, tg_scalar(C, BAD_DT, 1))                \
    X(full_neg_dim, TG_ERR_INVALID, "tg_full", NULL, NULL, tg_full(C, TG_F32, TG_SHAPE(-2), 1))    \
    X(full_null_shape, TG_ERR_INVALID, "tg_full", NULL, NULL, tg_full(C, TG_F32, 1, NULL, 1))      \
    X(full_ndim9, TG_ERR_INVALID, "tg_full", NULL, NULL, tg_full(C, TG_F64, SH9, 1))               \
    X(full_dtype, TG_ERR_DTYPE, "tg_full", NULL, NULL, tg_full(C, BAD_DT, TG_SHAPE(2), 1))         \
    X(arange_step0, TG_ERR_INVALID, "tg_arange", NULL, NULL, tg_arange(C, TG_F32, 0, 5, 0))        \
    X(arange_nan, TG_ERR_INVALID, "tg_arange", NULL, NULL, tg_arange(C, TG_F32, NAN, 5, 1))        \
    X(arange_inf, TG_ERR_INVALID, "tg_arange", NULL, NULL, tg_arange(C, TG_F64, 0, INFINITY, 1))   \
    X(arange_nan_step, TG_ERR_INVALID, "tg_arange", NULL, NULL, tg_arange(C, TG_F64, 0, 5, NAN))   \
    X(arange_dtype, TG_ERR_DTYPE, "tg_arange", NULL, NULL, tg_arange(C, BAD_DT, 0, 5, 1))          \
    X(rand_i64, TG_ERR_DTYPE, "tg_rand", NULL, NULL, tg_rand(C, TG_I64, TG_SHAPE(3)))              \
    X(rand_neg_dim, TG_ERR_INVALID, "tg_rand", NULL, NULL, tg_rand(C, TG_F32, TG_SHAPE(-3)))       \
    X(rand_ndim9, TG_ERR_INVALID, "tg_rand", NULL, NULL, tg_rand(C, TG_F32, SH9))                  \
    X(randn_i64, TG_ERR_DTYPE, "tg_randn", NULL, NULL, tg_randn(C, TG_I64, TG_SHAPE(3)))           \
    X(randn_null_shape, TG_ERR_INVALID, "tg_randn", NULL, NULL, tg_randn(C, TG_F64, 2, NULL))      \
    X(zeros_like_null, TG_ERR_INVALID, "tg_zeros_like", NULL, NULL, tg_zeros_like(C, NULL))        \
    /* binary elementwise: shapes, dtypes, NULLs */                                                \
    X(add_shape, TG_ERR_SHAPE, "tg_add", "[2,3]", "[4,3]", tg_add(C, f->a23, f->b43))              \
    X(sub_shape, TG_ERR_SHAPE, "tg_sub", "[2,3]", "[4,3]", tg_sub(C, f->a23, f->b43))              \
    X(mul_shape, TG_ERR_SHAPE, "tg_mul", "[4,3]", "[2,3]", tg_mul(C, f->b43, f->a23))              \
    X(div_shape, TG_ERR_SHAPE, "tg_div", "[2,3]", "[3,4]", tg_div(C, f->a23, f->m34))              \
    X(add_shape_3d, TG_ERR_SHAPE, "tg_add", "[2,3,4]", "[3,4,5]", tg_add(C, f->b234, f->b345))     \
    X(add_dtype, TG_ERR_DTYPE, "tg_add", NULL, NULL, tg_add(C, f->a23, f->d23))                    \
    X(sub_dtype, TG_ERR_DTYPE, "tg_sub", NULL, NULL, tg_sub(C, f->d23, f->a23))                    \
    X(mul_dtype, TG_ERR_DTYPE, "tg_mul", NULL, NULL, tg_mul(C, f->a23, f->d23))                    \
    X(div_dtype, TG_ERR_DTYPE, "tg_div", NULL, NULL, tg_div(C, f->a23, f->d23))                    \
    X(add_null_a, TG_ERR_INVALID, "tg_add", NULL, NULL, tg_add(C, NULL, f->a23))                   \
    X(add_null_b, TG_ERR_INVALID, "tg_add", NULL, NULL, tg_add(C, f->a23, NULL))                   \
    X(sub_null, TG_ERR_INVALID, "tg_sub", NULL, NULL, tg_sub(C, NULL, NULL))                       \
    X(mul_null, TG_ERR_INVALID, "tg_mul", NULL, NULL, tg_mul(C, f->a23, NULL))                     \
    X(div_null, TG_ERR_INVALID, "tg_div", NULL, NULL, tg_div(C, NULL, f->a23))                     \
    /* unary: I64 and NULL */                                                                      \
    X(neg_i64, TG_ERR_DTYPE, "tg_neg", NULL, NULL, tg_neg(C, f->i23))                              \
    X(scale_i64, TG_ERR_DTYPE, "tg_scale", NULL, NULL, tg_scale(C, f->i23, 2))                     \
    X(add_scalar_i64, TG_ERR_DTYPE, "tg_add_scalar", NULL, NULL, tg_add_scalar(C, f->i23, 2))      \
    X(pow_scalar_i64, TG_ERR_DTYPE, "tg_pow_scalar", NULL, NULL, tg_pow_scalar(C, f->i23, 2))      \
    X(exp_i64, TG_ERR_DTYPE, "tg_exp", NULL, NULL, tg_exp(C, f->i23))                              \
    X(log_i64, TG_ERR_DTYPE, "tg_log", NULL, NULL, tg_log(C, f->i23))                              \
    X(sqrt_i64, TG_ERR_DTYPE, "tg_sqrt", NULL, NULL, tg_sqrt(C, f->i23))                           \
    X(tanh_i64, TG_ERR_DTYPE, "tg_tanh", NULL, NULL, tg_tanh(C, f->i23))                           \
    X(sigmoid_i64, TG_ERR_DTYPE, "tg_sigmoid", NULL, NULL, tg_sigmoid(C, f->i23))                  \
    X(relu_i64, TG_ERR_DTYPE, "tg_relu", NULL, NULL, tg_relu(C, f->i23))                           \
    X(neg_null, TG_ERR_INVALID, "tg_neg", NULL, NULL, tg_neg(C, NULL))                             \
    X(scale_null, TG_ERR_INVALID, "tg_scale", NULL, NULL, tg_scale(C, NULL, 2))                    \
    X(add_scalar_null, TG_ERR_INVALID, "tg_add_scalar", NULL, NULL, tg_add_scalar(C, NULL, 2))     \
    X(pow_scalar_null, TG_ERR_INVALID, "tg_pow_scalar", NULL, NULL, tg_pow_scalar(C, NULL, 2))     \
    X(exp_null, TG_ERR_INVALID, "tg_exp", NULL, NULL, tg_exp(C, NULL))                             \
    X(log_null, TG_ERR_INVALID, "tg_log", NULL, NULL, tg_log(C, NULL))                             \
    X(sqrt_null, TG_ERR_INVALID, "tg_sqrt", NULL, NULL, tg_sqrt(C, NULL))                          \
    X(tanh_null, TG_ERR_INVALID, "tg_tanh", NULL, NULL, tg_tanh(C, NULL))                          \
    X(sigmoid_null, TG_ERR_INVALID, "tg_sigmoid", NULL, NULL, tg_sigmoid(C, NULL))                 \
    X(relu_null, TG_ERR_INVALID, "tg_relu", NULL, NULL, tg_relu(C, NULL))                          \
    /* reductions: bad axes */                                                                     \
    X(sum_null, TG_ERR_INVALID, "tg_sum", NULL, NULL, tg_sum(C, NULL))                             \
    X(mean_null, TG_ERR_INVALID, "tg_mean", NULL, NULL, tg_mean(C, NULL))                          \
    X(sum_i64, TG_ERR_DTYPE, "tg_sum", NULL, NULL, tg_sum(C, f->i23))                              \
    X(mean_i64, TG_ERR_DTYPE, "tg_mean", NULL, NULL, tg_mean(C, f->i23))                           \
    X(sum_axes_null, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                                    \
      tg_sum_axes(C, NULL, AXES(0), false))                                                        \
    X(sum_axes_high, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                                    \
      tg_sum_axes(C, f->a23, AXES(2), false))                                                      \
    X(sum_axes_low, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                                     \
      tg_sum_axes(C, f->a23, AXES(-3), false))                                                     \
    X(sum_axes_twice, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                                   \
      tg_sum_axes(C, f->a23, AXES(0, 0), false))                                                   \
    X(sum_axes_twice_neg, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                               \
      tg_sum_axes(C, f->a23, AXES(1, -1), true))                                                   \
    X(sum_axes_naxes_neg, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                               \
      tg_sum_axes(C, f->a23, -1, (const int[]){0}, false))                                         \
    X(sum_axes_naxes_big, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                               \
      tg_sum_axes(C, f->a23, 3, (const int[]){0, 1, 0}, false))                                    \
    X(sum_axes_null_axes, TG_ERR_INVALID, "tg_sum_axes", NULL, NULL,                               \
      tg_sum_axes(C, f->a23, 1, NULL, false))                                                      \
    X(mean_axes_high, TG_ERR_INVALID, "tg_mean_axes", NULL, NULL,                                  \
      tg_mean_axes(C, f->b234, AXES(3), false))                                                    \
    X(mean_axes_twice, TG_ERR_INVALID, "tg_mean_axes", NULL, NULL,                                 \
      tg_mean_axes(C, f->b234, AXES(0, 2, -3), false))                                             \
    X(mean_axes_i64, TG_ERR_DTYPE, "tg_mean_axes", NULL, NULL,                                     \
      tg_mean_axes(C, f->i23, AXES(0), false))                                                     \
    X(softmax_axis, TG_ERR_INVALID, "tg_softmax", NULL, NULL, tg_softmax(C, f->a23, 2))            \
    X(softmax_axis_neg, TG_ERR_INVALID, "tg_softmax", NULL, NULL, tg_softmax(C, f->a23, -3))       \
    X(softmax_i64, TG_ERR_DTYPE, "tg_softmax", NULL, NULL, tg_softmax(C, f->i23, 0))               \
    X(softmax_null, TG_ERR_INVALID, "tg_softmax", NULL, NULL, tg_softmax(C, NULL, 0))              \
    X(log_softmax_axis, TG_ERR_INVALID, "tg_log_softmax", NULL, NULL,                              \
      tg_log_softmax(C, f->a23, 5))                                                                \
    X(log_softmax_i64, TG_ERR_DTYPE, "tg_log_softmax", NULL, NULL, tg_log_softmax(C, f->i23, 1))   \
    /* matmul */                                                                                   \
    X(matmul_inner, TG_ERR_SHAPE, "tg_matmul", "[3,4]", "[5,6]", tg_matmul(C, f->m34, f->m56))     \
    X(matmul_inner2, TG_ERR_SHAPE, "tg_matmul", "[2,3]", "[4,3]", tg_matmul(C, f->a23, f->b43))    \
    X(matmul_1d, TG_ERR_SHAPE, "tg_matmul", "[3]", "[3,4]", tg_matmul(C, f->v3, f->m34))           \
    X(matmul_batch, TG_ERR_SHAPE, "tg_matmul", "[2,3,4]", "[3,4,5]",                               \
      tg_matmul(C, f->b234, f->b345))                                                              \
    X(matmul_dtype, TG_ERR_DTYPE, "tg_matmul", NULL, NULL,                                         \
      tg_matmul(C, f->a23, tg_transpose(C, f->d23, 0, 1)))                                         \
    X(matmul_i64, TG_ERR_DTYPE, "tg_matmul", NULL, NULL,                                           \
      tg_matmul(C, f->i23, tg_transpose(C, f->i23, 0, 1)))                                         \
    X(matmul_null, TG_ERR_INVALID, "tg_matmul", NULL, NULL, tg_matmul(C, f->m34, NULL))            \
    /* shapes and views */                                                                         \
    X(reshape_size, TG_ERR_SHAPE, "tg_reshape", "[2,3]", "[4,2]",                                  \
      tg_reshape(C, f->a23, TG_SHAPE(4, 2)))                                                       \
    X(reshape_infer_indivisible, TG_ERR_SHAPE, "tg_reshape", "[2,3]", NULL,                        \
      tg_reshape(C, f->a23, TG_SHAPE(-1, 4)))                                                      \
    X(reshape_two_infer, TG_ERR_INVALID, "tg_reshape", NULL, NULL,                                 \
      tg_reshape(C, f->a23, TG_SHAPE(-1, -1)))                                                     \
    X(reshape_neg_dim, TG_ERR_INVALID, "tg_reshape", NULL, NULL,                                   \
      tg_reshape(C, f->a23, TG_SHAPE(-2, -3)))                                                     \
    X(reshape_ndim9, TG_ERR_INVALID, "tg_reshape", NULL, NULL, tg_reshape(C, f->a23, SH9))         \
    X(reshape_ndim_neg, TG_ERR_INVALID, "tg_reshape", NULL, NULL,                                  \
      tg_reshape(C, f->a23, -1, (const int64_t[]){6}))                                             \
    X(reshape_null_shape, TG_ERR_INVALID, "tg_reshape", NULL, NULL,                                \
      tg_reshape(C, f->a23, 2, NULL))                                                              \
    X(reshape_to_scalar, TG_ERR_SHAPE, "tg_reshape", NULL, NULL, tg_reshape(C, f->a23, 0, NULL))   \
    X(reshape_null, TG_ERR_INVALID, "tg_reshape", NULL, NULL, tg_reshape(C, NULL, TG_SHAPE(6)))    \
    X(transpose_high, TG_ERR_INVALID, "tg_transpose", NULL, NULL, tg_transpose(C, f->a23, 0, 2))   \
    X(transpose_low, TG_ERR_INVALID, "tg_transpose", NULL, NULL, tg_transpose(C, f->a23, -3, 1))   \
    X(transpose_null, TG_ERR_INVALID, "tg_transpose", NULL, NULL, tg_transpose(C, NULL, 0, 1))     \
    X(permute_repeat, TG_ERR_INVALID, "tg_permute", NULL, NULL,                                    \
      tg_permute(C, f->a23, (const int[]){0, 0}))                                                  \
    X(permute_range, TG_ERR_INVALID, "tg_permute", NULL, NULL,                                     \
      tg_permute(C, f->a23, (const int[]){0, 2}))                                                  \
    X(permute_3d, TG_ERR_INVALID, "tg_permute", NULL, NULL,                                        \
      tg_permute(C, f->b234, (const int[]){2, 1, 3}))                                              \
    X(permute_null_perm, TG_ERR_INVALID, "tg_permute", NULL, NULL, tg_permute(C, f->a23, NULL))    \
    X(permute_null, TG_ERR_INVALID, "tg_permute", NULL, NULL,                                      \
      tg_permute(C, NULL, (const int[]){1, 0}))                                                    \
    X(expand_mismatch, TG_ERR_SHAPE, "tg_expand", "[2,3]", "[2,4]",                                \
      tg_expand(C, f->a23, TG_SHAPE(2, 4)))                                                        \
    X(expand_fewer_dims, TG_ERR_INVALID, "tg_expand", NULL, NULL,                                  \
      tg_expand(C, f->a23, TG_SHAPE(6)))                                                           \
    X(expand_ndim9, TG_ERR_INVALID, "tg_expand", NULL, NULL, tg_expand(C, f->a23, SH9))            \
    X(expand_new_dim_infer, TG_ERR_SHAPE, "tg_expand", NULL, NULL,                                 \
      tg_expand(C, f->a23, TG_SHAPE(-1, 2, 3)))                                                    \
    X(expand_neg, TG_ERR_SHAPE, "tg_expand", NULL, NULL,                                           \
      tg_expand(C, tg_reshape(C, f->v3, TG_SHAPE(3, 1)), TG_SHAPE(3, -5)))                         \
    X(expand_null_shape, TG_ERR_INVALID, "tg_expand", NULL, NULL, tg_expand(C, f->a23, 2, NULL))   \
    X(expand_null, TG_ERR_INVALID, "tg_expand", NULL, NULL, tg_expand(C, NULL, TG_SHAPE(2, 3)))    \
    X(slice_step0, TG_ERR_INVALID, "tg_slice", NULL, NULL, tg_slice(C, f->a23, 1, 0, 3, 0))        \
    X(slice_step_neg, TG_ERR_INVALID, "tg_slice", NULL, NULL, tg_slice(C, f->a23, 1, 3, 0, -1))    \
    X(slice_axis, TG_ERR_INVALID, "tg_slice", NULL, NULL, tg_slice(C, f->a23, 2, 0, 1, 1))         \
    X(slice_axis_neg, TG_ERR_INVALID, "tg_slice", NULL, NULL, tg_slice(C, f->a23, -3, 0, 1, 1))    \
    X(slice_null, TG_ERR_INVALID, "tg_slice", NULL, NULL, tg_slice(C, NULL, 0, 0, 1, 1))           \
    X(contiguous_null, TG_ERR_INVALID, "tg_contiguous", NULL, NULL, tg_contiguous(C, NULL))        \
    /* losses */                                                                                   \
    X(mse_shape, TG_ERR_SHAPE, "tg_mse_loss", "[2,3]", "[4,3]", tg_mse_loss(C, f->a23, f->b43))    \
    X(mse_no_broadcast, TG_ERR_SHAPE, "tg_mse_loss", "[2,3]", "[3]",                               \
      tg_mse_loss(C, f->a23, f->v3))                                                               \
    X(mse_dtype, TG_ERR_DTYPE, "tg_mse_loss", NULL, NULL, tg_mse_loss(C, f->a23, f->d23))          \
    X(mse_null, TG_ERR_INVALID, "tg_mse_loss", NULL, NULL, tg_mse_loss(C, NULL, f->a23))           \
    X(ce_float_labels, TG_ERR_DTYPE, "tg_cross_entropy", NULL, NULL,                               \
      tg_cross_entropy(C, f->a23, f->lab_f))                                                       \
    X(ce_label_high, TG_ERR_INVALID, "tg_cross_entropy", NULL, NULL,                               \
      tg_cross_entropy(C, f->a23, f->lab_hi))                                                      \
    X(ce_label_neg, TG_ERR_INVALID, "tg_cross_entropy", NULL, NULL,                                \
      tg_cross_entropy(C, f->a23, f->lab_neg))                                                     \
    X(ce_rows, TG_ERR_SHAPE, "tg_cross_entropy", "[2,3]", "[3]",                                   \
      tg_cross_entropy(C, f->a23, f->lab3))                                                        \
    X(ce_labels_2d, TG_ERR_SHAPE, "tg_cross_entropy", NULL, NULL,                                  \
      tg_cross_entropy(C, f->a23, f->lab21))                                                       \
    X(ce_logits_1d, TG_ERR_SHAPE, "tg_cross_entropy", NULL, NULL,                                  \
      tg_cross_entropy(C, f->v3, f->lab3))                                                         \
    X(ce_logits_3d, TG_ERR_SHAPE, "tg_cross_entropy", NULL, NULL,                                  \
      tg_cross_entropy(C, f->b234, f->lab))                                                        \
    X(ce_logits_i64, TG_ERR_DTYPE, "tg_cross_entropy", NULL, NULL,                                 \
      tg_cross_entropy(C, f->i23, f->lab))                                                         \
    X(ce_no_rows, TG_ERR_INVALID, "tg_cross_entropy", NULL, NULL,                                  \
      tg_cross_entropy(C, f->e03, f->lab0))                                                        \
    X(ce_null, TG_ERR_INVALID, "tg_cross_entropy", NULL, NULL, tg_cross_entropy(C, f->a23, NULL))  \
    /* autograd */                                                                                 \
    X(backward_non_scalar, TG_ERR_SHAPE, "tg_backward", NULL, NULL,                                \
      RC(tg_backward(C, f->nonleaf)))                                                              \
    X(backward_no_grad, TG_ERR_MISUSE, "tg_backward", NULL, NULL,                                  \
      RC(tg_backward(C, tg_sum(C, f->b43))))                                                       \
    X(backward_null, TG_ERR_INVALID, "tg_backward", NULL, NULL, RC(tg_backward(C, NULL)))          \
    X(backward_release_non_scalar, TG_ERR_SHAPE, "tg_backward_release", NULL, NULL,                \
      RC(tg_backward_release(C, f->nonleaf)))                                                      \
    X(backward_release_null, TG_ERR_INVALID, "tg_backward_release", NULL, NULL,                    \
      RC(tg_backward_release(C, NULL)))                                                            \
    X(backward_with_grad_shape, TG_ERR_SHAPE, "tg_backward_with_grad", NULL, NULL,                 \
      RC(tg_backward_with_grad(C, f->nonleaf, f->b43)))                                            \
    X(backward_with_grad_dtype, TG_ERR_DTYPE, "tg_backward_with_grad", NULL, NULL,                 \
      RC(tg_backward_with_grad(C, f->nonleaf, tg_full(C, TG_F64, TG_SHAPE(2, 3), 1))))             \
    X(backward_with_grad_null, TG_ERR_INVALID, "tg_backward_with_grad", NULL, NULL,                \
      RC(tg_backward_with_grad(C, f->nonleaf, NULL)))                                              \
    X(requires_grad_nonleaf, TG_ERR_MISUSE, "tg_set_requires_grad", NULL, NULL,                    \
      VOID(tg_set_requires_grad(f->nonleaf, false)))                                               \
    X(requires_grad_i64, TG_ERR_DTYPE, "tg_set_requires_grad", NULL, NULL,                         \
      VOID(tg_set_requires_grad(f->i23, true)))                                                    \
    X(detach_null, TG_ERR_INVALID, "tg_detach", NULL, NULL, tg_detach(C, NULL))

#define DEFINE_RUN(name, st, fn, s1, s2, ...) \
    static tg_tensor *run_##name(fx *f) { return (__VA_ARGS__); }
ERROR_CASES(DEFINE_RUN)
#undef DEFINE_RUN

typedef struct {
    const char *name;
    tg_status want;
    const char *fn, *s1, *s2;
    tg_tensor *(*run)(fx *f);
} error_case;

#define ROW(name, st, fn, s1, s2, ...) {#name, st, fn, s1, s2, run_##name},
static const error_case error_cases[] = {ERROR_CASES(ROW)};
#undef ROW
#define N_ERROR_CASES ((int)(sizeof error_cases / sizeof error_cases[0]))

static void assert_msg_has(const char *case_name, const char *msg, const char *what)
{
    if (what == NULL) return;
    ck_assert_msg(strstr(msg, what) != NULL, "%s: message \"%s\" lacks \"%s\"", case_name, msg,
                  what);
}

START_TEST(test_error_table)
{
    const error_case *e = &error_cases[_i];
    fx fix;
    fx_init(&fix);
    fx *f = &fix;
    tg_tensor *r = e->run(f);
    ck_assert_msg(r == NULL, "%s: returned a tensor", e->name);
    tg_status st = tg_ctx_status(C);
    ck_assert_msg(st == e->want, "%s: status %s, want %s (message \"%s\")", e->name,
                  tg_status_str(st), tg_status_str(e->want), tg_ctx_errmsg(C));
    if (f->has_rc)
        ck_assert_msg(f->rc == e->want, "%s: returned %s, want %s", e->name, tg_status_str(f->rc),
                      tg_status_str(e->want));
    const char *msg = tg_ctx_errmsg(C);
    ck_assert_ptr_nonnull(msg);
    assert_msg_has(e->name, msg, e->fn);
    assert_msg_has(e->name, msg, e->s1);
    assert_msg_has(e->name, msg, e->s2);

    /* Nothing was corrupted: the fixture is intact, grads untouched. */
    ck_assert(tg_requires_grad(f->a23));
    ck_assert(!tg_requires_grad(f->i23));
    ck_assert(tg_requires_grad(f->nonleaf));
    ck_assert_ptr_null(tg_grad(f->a23));
    ck_assert_ptr_null(tg_grad(f->d23));
    tu_assert_values(f->a23, 0.0, 1, 2, 3, 4, 5, 6);

    tg_ctx_clear_error(C);
    tu_assert_status(tg_ctx_status(C), TG_OK);
    ck_assert_str_eq(tg_ctx_errmsg(C), "");
    assert_works(C);
    tg_ctx_free(C);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Functions that report through their return value                      */
/* ---------------------------------------------------------------------- */

START_TEST(test_null_ctx)
{
    /* Every call that takes a context survives a NULL one. */
    tg_ctx *c = tu_ctx();
    tg_tensor *a = tg_full(c, TG_F32, TG_SHAPE(2, 3), 1);
    tg_tensor *l = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 1});
    tg_set_requires_grad(a, true);
    tg_tensor *loss = tg_sum(c, tg_mul(c, a, a));
    tu_assert_ok(c);

    tg_ctx_free(NULL);
    tg_ctx_reset(NULL);
    tu_assert_status(tg_ctx_status(NULL), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(tg_ctx_errmsg(NULL));
    tg_ctx_clear_error(NULL);
    tg_status rc = tg_ctx_set_error(NULL, TG_ERR_IO, "x %d", 1); /* nowhere to record */
    ck_assert_msg(rc == TG_ERR_IO || rc == TG_ERR_INVALID, "%s", tg_status_str(rc));
    tu_assert_status(tg_ctx_set_threads(NULL, 2), TG_ERR_INVALID);
    (void)tg_ctx_threads(NULL);
    tg_ctx_seed(NULL, 1);
    ck_assert_uint_eq(tg_ctx_bytes_used(NULL), 0);
    ck_assert_uint_eq(tg_ctx_bytes_reserved(NULL), 0);
    (void)tg_set_grad_enabled(NULL, false);
    (void)tg_grad_enabled(NULL);

    ck_assert_ptr_null(tg_tensor_new(NULL, TG_F32, TG_SHAPE(2)));
    ck_assert_ptr_null(tg_tensor_from(NULL, TG_F32, TG_SHAPE(1), (const float[]){1}));
    ck_assert_ptr_null(tg_scalar(NULL, TG_F32, 1));
    ck_assert_ptr_null(tg_full(NULL, TG_F32, TG_SHAPE(2), 1));
    ck_assert_ptr_null(tg_arange(NULL, TG_F32, 0, 3, 1));
    ck_assert_ptr_null(tg_rand(NULL, TG_F32, TG_SHAPE(2)));
    ck_assert_ptr_null(tg_randn(NULL, TG_F32, TG_SHAPE(2)));
    ck_assert_ptr_null(tg_zeros_like(NULL, a));

    ck_assert_ptr_null(tg_add(NULL, a, a));
    ck_assert_ptr_null(tg_sub(NULL, a, a));
    ck_assert_ptr_null(tg_mul(NULL, a, a));
    ck_assert_ptr_null(tg_div(NULL, a, a));
    ck_assert_ptr_null(tg_neg(NULL, a));
    ck_assert_ptr_null(tg_scale(NULL, a, 2));
    ck_assert_ptr_null(tg_add_scalar(NULL, a, 2));
    ck_assert_ptr_null(tg_pow_scalar(NULL, a, 2));
    ck_assert_ptr_null(tg_exp(NULL, a));
    ck_assert_ptr_null(tg_log(NULL, a));
    ck_assert_ptr_null(tg_sqrt(NULL, a));
    ck_assert_ptr_null(tg_tanh(NULL, a));
    ck_assert_ptr_null(tg_sigmoid(NULL, a));
    ck_assert_ptr_null(tg_relu(NULL, a));
    ck_assert_ptr_null(tg_sum(NULL, a));
    ck_assert_ptr_null(tg_mean(NULL, a));
    ck_assert_ptr_null(tg_sum_axes(NULL, a, AXES(0), false));
    ck_assert_ptr_null(tg_mean_axes(NULL, a, AXES(0), false));
    ck_assert_ptr_null(tg_softmax(NULL, a, 0));
    ck_assert_ptr_null(tg_log_softmax(NULL, a, 0));
    ck_assert_ptr_null(tg_matmul(NULL, a, tg_transpose(c, a, 0, 1)));
    ck_assert_ptr_null(tg_reshape(NULL, a, TG_SHAPE(6)));
    ck_assert_ptr_null(tg_transpose(NULL, a, 0, 1));
    ck_assert_ptr_null(tg_permute(NULL, a, (const int[]){1, 0}));
    ck_assert_ptr_null(tg_expand(NULL, a, TG_SHAPE(2, 2, 3)));
    ck_assert_ptr_null(tg_slice(NULL, a, 0, 0, 1, 1));
    ck_assert_ptr_null(tg_contiguous(NULL, a));
    ck_assert_ptr_null(tg_mse_loss(NULL, a, a));
    ck_assert_ptr_null(tg_cross_entropy(NULL, a, l));
    ck_assert_ptr_null(tg_detach(NULL, a));

    tu_assert_status(tg_backward(NULL, loss), TG_ERR_INVALID);
    tu_assert_status(tg_backward_release(NULL, loss), TG_ERR_INVALID);
    tg_retain(NULL); /* does nothing */
    ck_assert(!tg_is_released(NULL));
    tu_assert_status(tg_backward_with_grad(NULL, loss, tg_scalar(c, TG_F32, 1)), TG_ERR_INVALID);
    tg_tensor *g[1] = {a};
    tu_assert_status(tg_grad_of(NULL, 1, &loss, NULL, 1, &a, false, g), TG_ERR_INVALID);
    ck_assert_ptr_null(g[0]);
    ck_assert_ptr_null(tg_grad(a)); /* nothing accumulated */

    tu_assert_ok(c);
    assert_works(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_null_tensor_accessors)
{
    ck_assert_int_eq(tg_ndim(NULL), -1);
    ck_assert_ptr_null(tg_shape(NULL));
    ck_assert_ptr_null(tg_strides(NULL));
    ck_assert_int_eq(tg_numel(NULL), 0);
    ck_assert_int_eq(tg_tensor_dtype(NULL), TG_F32);
    ck_assert_ptr_null(tg_tensor_ctx(NULL));
    ck_assert(!tg_is_contiguous(NULL));
    ck_assert(isnan(tg_item(NULL)));
    ck_assert(isnan(tg_get(NULL, (const int64_t[]){0})));
    ck_assert_ptr_null(tg_data(NULL));
    tg_tensor_bump_version(NULL);
    char buf[16] = "zzz";
    const char *s = tg_shape_str(NULL, buf, sizeof buf);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_lt(strlen(s), sizeof buf);
    float f[2];
    tu_assert_status(tg_copy_out(NULL, f, sizeof f), TG_ERR_INVALID);
    tu_assert_status(tg_copy_in(NULL, f, sizeof f), TG_ERR_INVALID);

    tg_set_requires_grad(NULL, true);
    ck_assert(!tg_requires_grad(NULL));
    (void)tg_is_leaf(NULL);
    ck_assert_ptr_null(tg_grad(NULL));
    tg_zero_grad(NULL);
    ck_assert_int_eq(tg_tensor_op(NULL), TG_OP_NONE);

    /* tg_shape_str with no room at all, and tg_get with a NULL index. */
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_full(c, TG_F32, TG_SHAPE(2, 3), 1);
    ck_assert_ptr_nonnull(tg_shape_str(t, buf, 1));
    ck_assert_str_eq(buf, "");
    (void)tg_shape_str(t, NULL, 0);
    ck_assert(isnan(tg_get(t, NULL)));
    tu_assert_status(tg_copy_out(t, NULL, 6 * sizeof(float)), TG_ERR_INVALID);
    tu_assert_status(tg_copy_in(t, NULL, 6 * sizeof(float)), TG_ERR_INVALID);
    tu_assert_status(tg_copy_out(t, f, sizeof f), TG_ERR_SHAPE);
    tu_assert_status(tg_copy_in(t, f, sizeof f), TG_ERR_SHAPE);
    tu_assert_values(t, 0.0, 1, 1, 1, 1, 1, 1);
    /* copy_out/in errors are not recorded on a context. */
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_ctx_options)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = -1;
    ck_assert_ptr_null(tg_ctx_new_opts(&o));
    o.n_threads = -1000;
    ck_assert_ptr_null(tg_ctx_new_opts(&o));

    tg_ctx *c = tu_ctx();
    tu_assert_status(tg_ctx_set_threads(c, 0), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    tu_assert_status(tg_ctx_set_threads(c, -1), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_int_ge(tg_ctx_threads(c), 1);
    assert_works(c);

    /* An empty user message is still an error. */
    tg_ctx_set_error(c, TG_ERR_IO, "%s", "");
    tu_assert_status(tg_ctx_status(c), TG_ERR_IO);
    tg_ctx_clear_error(c);
    assert_works(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_op_registry)
{
    ck_assert_int_eq(tg_op_count(), TG_OP_COUNT);
    for (int i = 0; i < TG_OP_COUNT; i++) {
        const char *name = tg_op_name((tg_op)i);
        ck_assert_ptr_nonnull(name);
        ck_assert_int_eq(tg_op_from_name(name), i);
        if (tg_op_flags((tg_op)i) & TG_OPF_VARIADIC) ck_assert_int_eq(tg_op_arity((tg_op)i), -1);
        else ck_assert_int_ge(tg_op_arity((tg_op)i), 1);
    }
    ck_assert_ptr_null(tg_op_name(TG_OP_NONE));
    ck_assert_ptr_null(tg_op_name(TG_OP_COUNT));
    ck_assert_ptr_null(tg_op_name((tg_op)1000));
    ck_assert_int_eq(tg_op_arity(TG_OP_NONE), -1);
    ck_assert_int_eq(tg_op_arity(TG_OP_COUNT), -1);
    ck_assert_uint_eq(tg_op_flags(TG_OP_NONE), 0);
    ck_assert_uint_eq(tg_op_flags(TG_OP_COUNT), 0);
    ck_assert_int_eq(tg_op_from_name("no_such_op"), TG_OP_NONE);
    ck_assert_int_eq(tg_op_from_name(""), TG_OP_NONE);
    ck_assert_int_eq(tg_op_from_name(NULL), TG_OP_NONE);
    ck_assert_int_eq(tg_op_from_name("matmul"), TG_OP_MATMUL);
}
END_TEST

START_TEST(test_grad_of_errors)
{
    fx fix;
    fx_init(&fix);
    fx *f = &fix;
    tg_tensor *loss = tg_sum(C, f->nonleaf);
    tg_tensor *g[2] = {f->a23, f->a23}; /* must come back NULL on error */

    /* NULL outputs / inputs / grads arrays. */
    tu_assert_status(tg_grad_of(C, 1, NULL, NULL, 1, &f->a23, false, g), TG_ERR_INVALID);
    ck_assert_ptr_null(g[0]);
    ck_assert_msg(strstr(tg_ctx_errmsg(C), "tg_grad_of") != NULL, "%s", tg_ctx_errmsg(C));
    tg_ctx_clear_error(C);
    g[0] = f->a23;
    tu_assert_status(tg_grad_of(C, 1, &loss, NULL, 1, NULL, false, g), TG_ERR_INVALID);
    tg_ctx_clear_error(C);
    tu_assert_status(tg_grad_of(C, 1, &loss, NULL, 1, &f->a23, false, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(C);
    /* A NULL entry among the outputs or inputs. */
    tg_tensor *outs_null[1] = {NULL};
    g[0] = f->a23;
    tu_assert_status(tg_grad_of(C, 1, outs_null, NULL, 1, &f->a23, false, g), TG_ERR_INVALID);
    ck_assert_ptr_null(g[0]);
    tg_ctx_clear_error(C);
    tg_tensor *ins_null[2] = {f->a23, NULL};
    g[0] = g[1] = f->a23;
    tu_assert_status(tg_grad_of(C, 1, &loss, NULL, 2, ins_null, false, g), TG_ERR_INVALID);
    ck_assert_ptr_null(g[0]);
    ck_assert_ptr_null(g[1]);
    tg_ctx_clear_error(C);
    /* Negative counts. */
    tu_assert_status(tg_grad_of(C, -1, &loss, NULL, 1, &f->a23, false, g), TG_ERR_INVALID);
    tg_ctx_clear_error(C);
    tu_assert_status(tg_grad_of(C, 1, &loss, NULL, -1, &f->a23, false, g), TG_ERR_INVALID);
    tg_ctx_clear_error(C);

    /* A non-scalar output without its gradient. */
    g[0] = f->a23;
    tu_assert_status(tg_grad_of(C, 1, &f->nonleaf, NULL, 1, &f->a23, false, g), TG_ERR_SHAPE);
    ck_assert_ptr_null(g[0]);
    ck_assert_msg(strstr(tg_ctx_errmsg(C), "tg_grad_of") != NULL, "%s", tg_ctx_errmsg(C));
    tg_ctx_clear_error(C);
    /* A dout of the wrong shape. */
    tg_tensor *bad_dout[1] = {f->b43};
    tu_assert_status(tg_grad_of(C, 1, &f->nonleaf, bad_dout, 1, &f->a23, false, g), TG_ERR_SHAPE);
    tg_ctx_clear_error(C);
    /* An output that requires no grad: an error like tg_backward's, or
     * (inputs the outputs do not depend on get zeros) zeros. */
    tg_tensor *nograd = tg_sum(C, f->b43);
    tg_status rc = tg_grad_of(C, 1, &nograd, NULL, 1, &f->a23, false, g);
    if (rc == TG_OK) tu_assert_values(g[0], 0.0, 0, 0, 0, 0, 0, 0);
    else tu_assert_status(rc, TG_ERR_MISUSE);
    tg_ctx_clear_error(C);
    ck_assert_ptr_null(tg_grad(f->a23)); /* .grad never touched */

    /* Afterwards a correct call works: d sum(a*a) / da = 2a. */
    tu_assert_status(tg_grad_of(C, 1, &loss, NULL, 1, &f->a23, false, g), TG_OK);
    tu_assert_values(g[0], 0.0, 2, 4, 6, 8, 10, 12);
    ck_assert_ptr_null(tg_grad(f->a23));
    assert_works(C);
    tg_ctx_free(C);
}
END_TEST

START_TEST(test_backward_errors_leave_grads)
{
    /* A failed backward after a good one leaves the accumulated gradient. */
    fx fix;
    fx_init(&fix);
    fx *f = &fix;
    tu_assert_status(tg_backward(C, tg_sum(C, f->nonleaf)), TG_OK);
    tu_assert_values(tg_grad(f->a23), 0.0, 2, 4, 6, 8, 10, 12);
    tu_assert_status(tg_backward(C, f->nonleaf), TG_ERR_SHAPE);
    tu_assert_values(tg_grad(f->a23), 0.0, 2, 4, 6, 8, 10, 12);
    /* With the error pending, backward returns it unchanged. */
    tu_assert_status(tg_backward(C, tg_sum(C, f->nonleaf)), TG_ERR_SHAPE);
    tu_assert_values(tg_grad(f->a23), 0.0, 2, 4, 6, 8, 10, 12);
    tg_ctx_clear_error(C);
    /* A loss of one element but more than zero dims is fine. */
    tg_tensor *l11 = tg_reshape(C, tg_sum(C, f->nonleaf), TG_SHAPE(1, 1));
    tu_assert_status(tg_backward(C, l11), TG_OK);
    tu_assert_values(tg_grad(f->a23), 0.0, 4, 8, 12, 16, 20, 24);
    assert_works(C);
    tg_ctx_free(C);
}
END_TEST

START_TEST(test_gradcheck_errors)
{
    char report[256];
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_full(c, TG_F64, TG_SHAPE(3), 0.5);
    tg_set_requires_grad(x, true);
    tg_tensor *xs[1] = {x};
    /* NULL function, NULL inputs. */
    tu_assert_status(tg_gradcheck(NULL, NULL, xs, 1, NULL, report, sizeof report), TG_ERR_INVALID);
    ck_assert_uint_lt(strlen(report), sizeof report);
    tg_tensor *nulls[1] = {NULL};
    tu_assert_status(tg_gradcheck(NULL, NULL, nulls, 1, NULL, NULL, 0), TG_ERR_INVALID);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");

    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_error_table, 0, N_ERROR_CASES);
    suite_add_tcase(s, tc);

    tc = tcase_create("returns");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_null_ctx);
    tcase_add_test(tc, test_null_tensor_accessors);
    tcase_add_test(tc, test_ctx_options);
    tcase_add_test(tc, test_op_registry);
    tcase_add_test(tc, test_grad_of_errors);
    tcase_add_test(tc, test_backward_errors_leave_grads);
    tcase_add_test(tc, test_gradcheck_errors);
    suite_add_tcase(s, tc);

    return s;
}
