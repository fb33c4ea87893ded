/*
 * test_threads.c - results do not depend on the thread count: every op
 * family, on tensors large enough to be split over threads, gives
 * bit-identical results with 1, 2, 3 and 4 threads (memcmp of tg_copy_out),
 * and so does a full backward. Also: a sum of 1,000,000 f32 ones is
 * exactly 1e6.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

/* Inputs are R x R: 1000 x 1000 (1e6 elements, far above the parallel
 * threshold); 400 x 400 under valgrind for the bit-identity tests (still
 * above the elementwise threshold, not always above the reductions'). */
static int64_t R;
static double *data_a, *data_b; /* R*R each */

/* full: 1000 x 1000 even under valgrind. */
static void make_data_n(bool full)
{
    int64_t want = full || !tu_under_valgrind() ? 1000 : 400;
    if (data_a != NULL && R == want) return;
    free(data_a);
    free(data_b);
    R = want;
    data_a = malloc((size_t)(R * R) * sizeof *data_a);
    data_b = malloc((size_t)(R * R) * sizeof *data_b);
    ck_assert(data_a && data_b);
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int64_t i = 0; i < R * R; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        data_a[i] = (double)(s >> 11) / 9007199254740992.0 * 4 - 2; /* [-2, 2) */
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        data_b[i] = (double)(s >> 11) / 9007199254740992.0 * 4 - 2;
    }
}

static void make_data(void) { make_data_n(false); }

typedef struct {
    tg_tensor *a, *b; /* [R,R] */
    tg_tensor *row;   /* [R], the first row of b */
    tg_tensor *col;   /* [R,1], the first row of a */
} inputs;

/* Builds outputs from the inputs in c; returns how many (at most 4). */
typedef int (*build_fn)(tg_ctx *c, const inputs *in, tg_tensor **out);

static tg_tensor *from(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, const double *v)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (dt == TG_F64) return tg_tensor_from(c, dt, ndim, shape, v);
    float *f = malloc((size_t)n * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    tg_tensor *t = tg_tensor_from(c, dt, ndim, shape, f);
    free(f);
    return t;
}

#define T(x) tg_transpose(c, (x), 0, 1)
#define AXES(...) \
    (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)), (const int[]) { __VA_ARGS__ }

#define BUILD1(name, expr)                                                \
    static int build_##name(tg_ctx *c, const inputs *in, tg_tensor **out) \
    {                                                                     \
        (void)in;                                                         \
        out[0] = (expr);                                                  \
        return 1;                                                         \
    }

/* elementwise, with broadcasting, on contiguous and transposed inputs */
BUILD1(add_row, tg_add(c, in->a, in->row))
BUILD1(add_col, tg_add(c, in->a, in->col))
BUILD1(add_outer, tg_add(c, in->col, in->row))
BUILD1(add_T_row, tg_add(c, T(in->a), in->row))
BUILD1(add_T_T, tg_add(c, T(in->a), T(in->b)))
BUILD1(sub_T, tg_sub(c, T(in->a), in->b))
BUILD1(mul, tg_mul(c, in->a, in->b))
BUILD1(mul_T, tg_mul(c, T(in->a), in->b))
BUILD1(mul_col_T, tg_mul(c, T(in->a), in->col))
BUILD1(div, tg_div(c, in->a, tg_exp(c, in->b)))
BUILD1(exp, tg_exp(c, in->a))
BUILD1(exp_T, tg_exp(c, T(in->a)))
BUILD1(tanh, tg_tanh(c, in->a))
BUILD1(tanh_T, tg_tanh(c, T(in->a)))
BUILD1(sigmoid, tg_sigmoid(c, in->a))
BUILD1(sigmoid_T, tg_sigmoid(c, T(in->a)))
BUILD1(relu, tg_relu(c, in->a))
BUILD1(relu_T, tg_relu(c, T(in->a)))
BUILD1(pow_T, tg_pow_scalar(c, T(in->a), 3.0))
BUILD1(sqrt_log, tg_sqrt(c, tg_log(c, tg_add_scalar(c, tg_exp(c, in->a), 1.0))))
BUILD1(slice_step, tg_tanh(c, tg_slice(c, in->a, 1, 1, R, 2)))
/* reductions */
BUILD1(sum, tg_sum(c, in->a))
BUILD1(sum_T, tg_sum(c, T(in->a)))
BUILD1(mean, tg_mean(c, in->a))
BUILD1(mean_T, tg_mean(c, T(in->b)))
BUILD1(sum_axis0, tg_sum_axes(c, in->a, AXES(0), false))
BUILD1(sum_axis_last, tg_sum_axes(c, in->a, AXES(-1), false))
BUILD1(sum_axis0_T, tg_sum_axes(c, T(in->a), AXES(0), true))
BUILD1(sum_axis_last_T, tg_sum_axes(c, T(in->a), AXES(-1), true))
BUILD1(sum_axes_both, tg_sum_axes(c, in->a, AXES(1, 0), true))
BUILD1(mean_axis0, tg_mean_axes(c, in->a, AXES(0), false))
BUILD1(mean_axis_last_T, tg_mean_axes(c, T(in->b), AXES(1), false))
BUILD1(sum_axis_3d, tg_sum_axes(c, tg_reshape(c, in->a, TG_SHAPE(10, -1, 10)), AXES(1), false))
BUILD1(softmax_last, tg_softmax(c, in->a, -1))
BUILD1(softmax_0, tg_softmax(c, in->a, 0))
BUILD1(softmax_T, tg_softmax(c, T(in->a), -1))
BUILD1(log_softmax_last, tg_log_softmax(c, in->a, 1))
BUILD1(cross_entropy,
       tg_cross_entropy(c, in->a,
                        tg_slice(c, tg_arange(c, TG_I64, 0, 2 * (double)R, 1), 0, 0, R, 1)))
/* matmul: strided, transposed and batched */
BUILD1(matmul, tg_matmul(c, tg_slice(c, in->a, 0, 0, 300, 1), tg_slice(c, in->b, 1, 0, 200, 1)))
BUILD1(matmul_T,
       tg_matmul(c, T(tg_slice(c, in->a, 1, 0, 300, 1)), T(tg_slice(c, in->b, 0, 0, 200, 1))))
BUILD1(matmul_batched, tg_matmul(c, tg_reshape(c, in->a, TG_SHAPE(-1, 40, 100)),
                                 tg_reshape(c, in->b, TG_SHAPE(-1, 100, 40))))
/* GEMMs big enough to be cut into blocks (src/core/blas.c): tall and
 * skinny (cut by rows), short and wide (cut by columns), sizes that are
 * not multiples of the block alignment, transposed operands. */
BUILD1(matmul_skinny, tg_matmul(c, in->a, tg_slice(c, in->b, 1, 0, 10, 1)))
BUILD1(matmul_wide, tg_matmul(c, tg_slice(c, in->a, 0, 0, 10, 1), in->b))
/* under valgrind (R = 400, a memory check) the GEMM cases are kept small */
#define VG(plain, valgrind) (tu_under_valgrind() ? (valgrind) : (plain))
BUILD1(matmul_odd_T, tg_matmul(c, T(tg_slice(c, in->a, 1, 1, VG(334, 65), 1)),
                               T(tg_slice(c, in->b, 0, 1, 778, 1))))
/* tall enough for four blocks (two under valgrind, where R is 400) */
BUILD1(matmul_tall, tg_matmul(c, tg_reshape(c, in->a, TG_SHAPE(-1, 250)),
                              tg_slice(c, tg_reshape(c, in->b, TG_SHAPE(250, -1)), 1, 0, 64, 1)))

/* A full backward of a small graph on big tensors: every kind of node,
 * broadcast gradients summed back, and gradient accumulation. */
static int build_backward(tg_ctx *c, const inputs *in, tg_tensor **out)
{
    tg_tensor *w = in->a, *bias = in->row, *x = in->b;
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(bias, true);
    tg_tensor *h = tg_tanh(c, tg_add(c, tg_mul(c, x, w), bias));
    tg_tensor *s = tg_softmax(c, h, -1);
    tg_tensor *m = tg_matmul(c, tg_slice(c, h, 0, 0, 64, 1), tg_slice(c, w, 1, 0, 64, 1));
    tg_tensor *r = tg_sum_axes(c, tg_mul(c, tg_sigmoid(c, T(h)), tg_relu(c, x)), AXES(0), false);
    tg_tensor *loss = tg_add(c, tg_mean(c, tg_mul(c, s, x)),
                             tg_add(c, tg_mean(c, r), tg_mean(c, tg_sigmoid(c, m))));
    tu_assert_status(tg_backward(c, loss), TG_OK);
    /* a second backward accumulates */
    tg_tensor *loss2 = tg_mean(c, tg_mul(c, tg_sigmoid(c, w), x));
    tu_assert_status(tg_backward(c, loss2), TG_OK);
    out[0] = loss;
    out[1] = tg_grad(w);
    out[2] = tg_grad(bias);
    return 3;
}

/* Convolutions over a batch of 10 images, which run in image groups side
 * by side: the forward, the no-graph backward (input, weight and bias
 * gradients), and the two gradient ops. */
static tg_tensor *conv_x(tg_ctx *c, const inputs *in)
{
    return tg_reshape(c, tg_slice(c, in->a, 0, 0, 40, 1), TG_SHAPE(10, 4, 20, -1));
}

static tg_tensor *conv_w(tg_ctx *c, const inputs *in)
{
    return tg_reshape(c, tg_slice(c, tg_reshape(c, in->b, TG_SHAPE(-1)), 0, 0, 288, 1),
                      TG_SHAPE(8, 4, 3, 3));
}

static tg_conv2d_opts conv_opts(void)
{
    tg_conv2d_opts o = tg_conv2d_defaults();
    o.padding[0] = o.padding[1] = 1;
    return o;
}

static const tg_conv2d_opts *conv_opts_p(void)
{
    static tg_conv2d_opts o;
    o = conv_opts();
    return &o;
}

BUILD1(conv2d, tg_conv2d(c, conv_x(c, in), conv_w(c, in), NULL, conv_opts_p()))

static int build_conv2d_backward(tg_ctx *c, const inputs *in, tg_tensor **out)
{
    tg_tensor *x = tg_detach(c, conv_x(c, in)), *w = tg_detach(c, conv_w(c, in));
    tg_tensor *b = tg_detach(c, tg_slice(c, in->row, 0, 0, 8, 1));
    tg_set_requires_grad(x, true);
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(b, true);
    tg_conv2d_opts o = conv_opts();
    tg_tensor *y = tg_conv2d(c, x, w, b, &o);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
    out[0] = y;
    out[1] = tg_grad(x);
    out[2] = tg_grad(w);
    out[3] = tg_grad(b);
    return 4;
}

static int build_conv2d_grad_ops(tg_ctx *c, const inputs *in, tg_tensor **out)
{
    tg_tensor *x = conv_x(c, in), *w = conv_w(c, in);
    tg_conv2d_opts o = conv_opts();
    tg_tensor *y = tg_conv2d(c, x, w, NULL, &o);
    out[0] = tg_conv2d_weight_grad(c, x, y, 3, 3, &o);
    out[1] = tg_conv2d_input_grad(c, y, w, tg_shape(x)[2], tg_shape(x)[3], &o);
    return 2;
}

/* Attention over 2 x 8 heads of 64 queries, causal: batches run side by
 * side, forward and the no-graph backward. */
#define HEADS TG_SHAPE(2, 8, 64, -1)
static int build_sdpa_backward(tg_ctx *c, const inputs *in, tg_tensor **out)
{
    tg_tensor *q = tg_detach(c, tg_reshape(c, tg_slice(c, in->a, 0, 0, 128, 1), HEADS));
    tg_tensor *k = tg_detach(c, tg_reshape(c, tg_slice(c, in->b, 0, 0, 128, 1), HEADS));
    tg_tensor *v = tg_detach(c, tg_reshape(c, tg_slice(c, in->a, 0, 128, 256, 1), HEADS));
    tg_set_requires_grad(q, true);
    tg_set_requires_grad(k, true);
    tg_set_requires_grad(v, true);
    tg_tensor *y = tg_sdpa(c, q, k, v, NULL, true, 0.05);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
    out[0] = y;
    out[1] = tg_grad(q);
    out[2] = tg_grad(k);
    out[3] = tg_grad(v);
    return 4;
}

/* The same on multi-head attention's layout: q, k, v are head-split views
 * of [2, 64, R] leaves, so sdpa reads them and dout in place and writes y
 * and the gradients in [2, 64, 8, R/8] order. */
static tg_tensor *heads_leaf(tg_ctx *c, tg_tensor *t, int64_t at)
{
    tg_tensor *x = tg_detach(c, tg_reshape(c, tg_slice(c, t, 0, at, at + 128, 1),
                                           TG_SHAPE(2, 64, -1)));
    tg_set_requires_grad(x, true);
    return x;
}
static int build_sdpa_heads_backward(tg_ctx *c, const inputs *in, tg_tensor **out)
{
    tg_tensor *x[3] = {heads_leaf(c, in->a, 0), heads_leaf(c, in->b, 0),
                       heads_leaf(c, in->a, 128)};
    tg_tensor *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = tg_permute(c, tg_reshape(c, x[i], TG_SHAPE(2, 64, 8, -1)),
                          (const int[]){0, 2, 1, 3});
    tg_tensor *y = tg_sdpa(c, h[0], h[1], h[2], NULL, true, 0.05);
    y = tg_reshape(c, tg_permute(c, y, (const int[]){0, 2, 1, 3}), TG_SHAPE(2, 64, -1));
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
    out[0] = y;
    for (int i = 0; i < 3; i++) out[1 + i] = tg_grad(x[i]);
    return 4;
}

/* A linear layer's gradients: the weight's lands in .grad through a
 * deferred GEMM at commit (beta = 0, then beta = 1 on the second
 * backward), the input's through a GEMM in the walk. */
static int build_linear_grads(tg_ctx *c, const inputs *in, tg_tensor **out)
{
    tg_tensor *x = tg_slice(c, in->a, 0, 0, VG(256, 32), 1); /* [256, R] */
    tg_tensor *w = tg_slice(c, in->b, 0, 0, VG(384, 48), 1); /* [384, R] */
    tg_tensor *bias = tg_slice(c, in->row, 0, 0, VG(384, 48), 1);
    tg_tensor *xl = tg_detach(c, x), *wl = tg_detach(c, w), *bl = tg_detach(c, bias);
    tg_set_requires_grad(xl, true);
    tg_set_requires_grad(wl, true);
    tg_set_requires_grad(bl, true);
    for (int i = 0; i < 2; i++) {
        tg_tensor *y = tg_linear(c, xl, wl, bl);
        tu_assert_status(tg_backward(c, tg_mean(c, tg_mul(c, y, y))), TG_OK);
    }
    out[0] = tg_grad(xl);
    out[1] = tg_grad(wl);
    out[2] = tg_grad(bl);
    return 3;
}

typedef struct {
    const char *name;
    build_fn f;
} thread_case;

#define CASE(name)          \
    {                       \
#name, build_##name \
    }
static const thread_case cases[] = {
    CASE(add_row),
    CASE(add_col),
    CASE(add_outer),
    CASE(add_T_row),
    CASE(add_T_T),
    CASE(sub_T),
    CASE(mul),
    CASE(mul_T),
    CASE(mul_col_T),
    CASE(div),
    CASE(exp),
    CASE(exp_T),
    CASE(tanh),
    CASE(tanh_T),
    CASE(sigmoid),
    CASE(sigmoid_T),
    CASE(relu),
    CASE(relu_T),
    CASE(pow_T),
    CASE(sqrt_log),
    CASE(slice_step),
    CASE(sum),
    CASE(sum_T),
    CASE(mean),
    CASE(mean_T),
    CASE(sum_axis0),
    CASE(sum_axis_last),
    CASE(sum_axis0_T),
    CASE(sum_axis_last_T),
    CASE(sum_axes_both),
    CASE(mean_axis0),
    CASE(mean_axis_last_T),
    CASE(sum_axis_3d),
    CASE(softmax_last),
    CASE(softmax_0),
    CASE(softmax_T),
    CASE(log_softmax_last),
    CASE(cross_entropy),
    CASE(matmul),
    CASE(matmul_T),
    CASE(matmul_batched),
    CASE(matmul_skinny),
    CASE(matmul_wide),
    CASE(matmul_odd_T),
    CASE(matmul_tall),
    CASE(backward),
    CASE(linear_grads),
    CASE(conv2d),
    CASE(conv2d_backward),
    CASE(conv2d_grad_ops),
    CASE(sdpa_backward),
    CASE(sdpa_heads_backward),
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* Runs case k in dtype dt with n threads; returns the outputs' bytes,
 * concatenated, in a malloc'd buffer. */
static char *run_case(const thread_case *k, tg_dtype dt, int n, size_t *nbytes)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = n;
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tg_ctx_threads(c), n);
    inputs in;
    in.a = from(c, dt, TG_SHAPE(R, R), data_a);
    in.b = from(c, dt, TG_SHAPE(R, R), data_b);
    in.row = from(c, dt, TG_SHAPE(R), data_b);
    in.col = from(c, dt, TG_SHAPE(R, 1), data_a);
    tg_tensor *out[4] = {NULL};
    int nout = k->f(c, &in, out);
    ck_assert_msg(tg_ctx_status(c) == TG_OK, "%s (%s, %d threads): %s", k->name, tg_dtype_name(dt),
                  n, tg_ctx_errmsg(c));
    size_t total = 0;
    for (int i = 0; i < nout; i++) {
        ck_assert_ptr_nonnull(out[i]);
        total += (size_t)tg_numel(out[i]) * tg_dtype_size(tg_tensor_dtype(out[i]));
    }
    char *buf = malloc(total + 1);
    ck_assert_ptr_nonnull(buf);
    size_t off = 0;
    for (int i = 0; i < nout; i++) {
        size_t nb = (size_t)tg_numel(out[i]) * tg_dtype_size(tg_tensor_dtype(out[i]));
        tu_assert_status(tg_copy_out(out[i], buf + off, nb), TG_OK);
        off += nb;
    }
    tg_ctx_free(c);
    *nbytes = total;
    return buf;
}

/* Loop index: case * 2 + dtype. */
START_TEST(test_bit_identical)
{
    make_data();
    const thread_case *k = &cases[_i / 2];
    const tg_dtype dt = (_i % 2) ? TG_F64 : TG_F32;
    /* Under valgrind (a memory check; the plain run checks the bits of
     * every count) 1 against 2 threads: the GEMM cases at 3 and 4 threads
     * took minutes there. */
    const int max_threads = tu_under_valgrind() ? 2 : 4;
    size_t nref = 0;
    char *ref = run_case(k, dt, 1, &nref);
    ck_assert_uint_gt(nref, 0);
    for (int n = 2; n <= max_threads; n++) {
        size_t nb = 0;
        char *got = run_case(k, dt, n, &nb);
        ck_assert_uint_eq(nb, nref);
        if (memcmp(got, ref, nref) != 0) {
            size_t i = 0;
            while (got[i] == ref[i]) i++;
            free(got);
            free(ref);
            ck_abort_msg("%s (%s): %d threads differ from 1 thread (first at byte %zu of %zu)",
                         k->name, tg_dtype_name(dt), n, i, nref);
        }
        free(got);
    }
    free(ref);
}
END_TEST

/* One context whose thread count changes between runs of the same op. */
START_TEST(test_switch_threads)
{
    make_data();
    tg_ctx *c = tu_ctx();
    tg_tensor *a = from(c, TG_F32, TG_SHAPE(R, R), data_a);
    tg_tensor *b = from(c, TG_F32, TG_SHAPE(R, R), data_b);
    const int counts[] = {2, 4, 1, 3, 2};
    float ref_sum = 0;
    float *ref = malloc((size_t)(R * R) * sizeof *ref);
    float *got = malloc((size_t)(R * R) * sizeof *got);
    ck_assert(ref && got);
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        tu_assert_status(tg_ctx_set_threads(c, counts[k]), TG_OK);
        tg_tensor *y = tg_tanh(c, tg_mul(c, T(a), b));
        tg_tensor *s = tg_sum(c, y);
        tu_assert_ok(c);
        float sv = (float)tg_item(s);
        tu_assert_status(tg_copy_out(y, k ? got : ref, (size_t)(R * R) * sizeof(float)), TG_OK);
        if (k == 0) {
            ref_sum = sv;
        } else {
            ck_assert_msg(memcmp(&sv, &ref_sum, sizeof sv) == 0,
                          "sum with %d threads: %.9g vs %.9g", counts[k], sv, ref_sum);
            ck_assert_msg(memcmp(got, ref, (size_t)(R * R) * sizeof(float)) == 0,
                          "tanh(a^T * b) differs with %d threads", counts[k]);
        }
        tg_ctx_reset(c);
        a = from(c, TG_F32, TG_SHAPE(R, R), data_a);
        b = from(c, TG_F32, TG_SHAPE(R, R), data_b);
    }
    free(ref);
    free(got);
    tg_ctx_free(c);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* The parallel path is taken                                             */
/* ---------------------------------------------------------------------- */

/* Counts allocator calls: a context creates its thread pool through its
 * allocator hook the first time a kernel splits work over threads, so a
 * call during an op whose output fits in the arena means the op ran in
 * parallel. This keeps the bit-identity tests above from passing
 * vacuously with every kernel serial. */
static void *count_hook(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)osize;
    ++*(long *)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return malloc(nsize);
}

/* Loop index: case * 2 + (1 thread ? 0 : 1). Only single-op cases. */
static const char *const parallel_cases[] = {
    "add_row",     "add_col",    "mul_T",        "exp",       "tanh_T",           "sigmoid",
    "relu",        "sum",        "sum_T",        "mean",      "sum_axis0",        "sum_axis_last",
    "sum_axis0_T", "mean_axis0", "softmax_last", "softmax_0", "log_softmax_last",
    "matmul_skinny", "matmul_wide", "matmul_odd_T", "matmul_tall", "conv2d",
};
#define NPARALLEL ((int)(sizeof parallel_cases / sizeof parallel_cases[0]))

START_TEST(test_parallel_path)
{
    make_data_n(true); /* one op each: affordable at full size under valgrind */
    const char *name = parallel_cases[_i / 2];
    const int threads = (_i % 2) ? 2 : 1;
    const thread_case *k = NULL;
    for (int i = 0; i < NCASES; i++)
        if (strcmp(cases[i].name, name) == 0) k = &cases[i];
    ck_assert_ptr_nonnull(k);

    long calls = 0;
    tg_ctx_opts o = tg_ctx_defaults();
    o.alloc = count_hook;
    o.alloc_ud = &calls;
    o.arena_chunk = (size_t)64 << 20; /* inputs and outputs fit in the first block */
    o.n_threads = threads;
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    inputs in;
    in.a = from(c, TG_F32, TG_SHAPE(R, R), data_a);
    in.b = from(c, TG_F32, TG_SHAPE(R, R), data_b);
    in.row = from(c, TG_F32, TG_SHAPE(R), data_b);
    in.col = from(c, TG_F32, TG_SHAPE(R, 1), data_a);
    tu_assert_ok(c);
    const long before = calls;
    tg_tensor *out[4] = {NULL};
    ck_assert_int_eq(k->f(c, &in, out), 1);
    tu_assert_ok(c);
    if (threads == 1) ck_assert_msg(calls == before, "%s with 1 thread called the allocator", name);
    else
        ck_assert_msg(calls > before,
                      "%s on %lld elements with 2 threads did not start the thread pool "
                      "(it ran serially)",
                      name, (long long)(R * R));
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_sum_of_ones)
{
    const int n = 1 + _i; /* 1..4 threads */
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = n;
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    tg_tensor *ones = tg_full(c, TG_F32, TG_SHAPE(1000000), 1.0);
    tg_tensor *s = tg_sum(c, ones);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tg_tensor_dtype(s), TG_F32);
    float v = 0;
    tu_assert_status(tg_copy_out(s, &v, sizeof v), TG_OK);
    ck_assert_msg(v == 1e6f, "sum of 1e6 f32 ones is %.9g", v);
    ck_assert(tg_item(s) == 1e6);
    ck_assert(tg_item(tg_mean(c, ones)) == 1.0);
    /* Per-column sums of a [1000,1000] view of the same ones. */
    tg_tensor *cols = tg_sum_axes(c, tg_reshape(c, ones, TG_SHAPE(1000, 1000)), AXES(0), false);
    float cv[1000];
    tu_assert_status(tg_copy_out(cols, cv, sizeof cv), TG_OK);
    for (int i = 0; i < 1000; i++) ck_assert(cv[i] == 1000.0f);
    /* Through a strided view: every other element of 2e6 ones. */
    tg_tensor *two = tg_full(c, TG_F32, TG_SHAPE(2000000), 1.0);
    ck_assert(tg_item(tg_sum(c, tg_slice(c, two, 0, 0, 2000000, 2))) == 1e6);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* Accuracy of a long f32 sum: 1e6 copies of 0.1f. A naive running f32 sum
 * is about 1% off; blocked or pairwise summation is within a few ulps. */
START_TEST(test_sum_accuracy)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_full(c, TG_F32, TG_SHAPE(1000000), 0.1);
    double exact = 1e6 * (double)0.1f;
    double got = tg_item(tg_sum(c, t));
    ck_assert_msg(fabs(got - exact) <= 1e-5 * exact, "sum of 1e6 x 0.1f = %.9g, exact %.9g", got,
                  exact);
    got = tg_item(tg_mean(c, t));
    ck_assert_msg(fabs(got - (double)0.1f) <= 1e-5 * 0.1, "mean = %.9g", got);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

Suite *threads_suite(void)
{
    Suite *s = suite_create("threads");

    TCase *tc = tcase_create("identical");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_bit_identical, 0, 2 * NCASES);
    tcase_add_test(tc, test_switch_threads);
    tcase_add_loop_test(tc, test_parallel_path, 0, 2 * NPARALLEL);
    suite_add_tcase(s, tc);

    tc = tcase_create("sums");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_sum_of_ones, 0, 4);
    tcase_add_test(tc, test_sum_accuracy);
    suite_add_tcase(s, tc);

    return s;
}
