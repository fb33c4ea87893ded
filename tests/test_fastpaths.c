/*
 * test_fastpaths.c - the kernels that serve the common case faster hold
 * the results of the general ones bit for bit:
 *   - relu's no-graph backward against its composite rule, on zeros of
 *     both signs, NaN, infinities and dout of every kind;
 *   - max_pool2d's 2x2 stride-2 kernel against the general kernel (run on
 *     a strided copy of the same input), ties, NaN and signed zeros
 *     included, odd sizes included, and its no-graph backward against
 *     max_unpool2d (the graph rule); the window codes max_pool2d keeps
 *     (bytes, int64 for windows over 255 places) against a plain scan and
 *     their backward against max_unpool2d of the indices, with padding,
 *     dilation and windows over padding only;
 *   - conv2d's no-graph backward (one image at a time: both GEMMs, the
 *     bias sums in reduce.c's order) against the graph rule (the gradient
 *     ops and tg_sum_axes), over geometries that take each im2col / col2im
 *     path and bias sums that cross reduce.c's 4096-element blocks.
 * The graph rule is what tg_grad_of(create_graph) runs; tg_backward runs
 * the fast one.
 */
#include "test_util.h"

/* Bytes of t (contiguous copy), malloc'd; *nb gets the size. */
static void *bytes_of(const tg_tensor *t, size_t *nb)
{
    *nb = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
    void *b = malloc(*nb ? *nb : 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tg_copy_out(t, b, *nb), TG_OK);
    return b;
}

static void assert_same_bits(const tg_tensor *a, const tg_tensor *b, const char *what)
{
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tg_tensor_dtype(a), tg_tensor_dtype(b));
    size_t na, nb;
    void *pa = bytes_of(a, &na), *pb = bytes_of(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(pa, pb, na) == 0, "%s: the fast path's bits differ", what);
    free(pa);
    free(pb);
}

/* A tensor of dt from double values. */
static tg_tensor *from_doubles(tg_ctx *c, tg_dtype dt, int nd, const int64_t *shape,
                               const double *v)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (dt == TG_F64) return tg_tensor_from(c, dt, nd, shape, v);
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    tg_tensor *t = tg_tensor_from(c, dt, nd, shape, f);
    free(f);
    return t;
}

/* Deterministic values in [-1, 1), with some exact repeats (ties). */
static double *pseudo(int64_t n, uint64_t seed, bool ties)
{
    double *v = malloc((size_t)n * sizeof *v);
    uint64_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
        v[i] = ties ? (double)((int)(u * 4)) / 4 : u;
    }
    return v;
}

/* The gradients of sum(f(ins) * wt) with respect to ins, by tg_backward
 * (the fast rules) into fast[] and by tg_grad_of with create_graph (the
 * graph rules) into ref[]. */
static void both_grads(tg_ctx *c, tg_tensor *loss, int n, tg_tensor *const *ins,
                       tg_tensor **fast, tg_tensor **ref)
{
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, n, ins, true, ref), TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    for (int i = 0; i < n; i++) fast[i] = tg_grad(ins[i]);
}

/* ---- relu ------------------------------------------------------------------ */

START_TEST(test_relu_backward_special_values)
{
    tg_dtype dt = _i ? TG_F64 : TG_F32;
    const double sv[] = {-1.5, -0.0, 0.0, 2.0, NAN, INFINITY, -INFINITY, 1e-300, -1e-300};
    const double dv[] = {1.0, -2.0, INFINITY, NAN, -0.0, 0.0, -INFINITY, 3e-310};
    enum { NS = sizeof sv / sizeof sv[0], ND = sizeof dv / sizeof dv[0], N = NS * ND };
    double x[N], d[N];
    for (int i = 0; i < NS; i++)
        for (int j = 0; j < ND; j++) {
            x[i * ND + j] = sv[i];
            d[i * ND + j] = dv[j];
        }
    tg_ctx *c = tu_ctx();
    tg_tensor *tx = from_doubles(c, dt, 1, (const int64_t[]){N}, x);
    tg_tensor *td = from_doubles(c, dt, 1, (const int64_t[]){N}, d);
    tg_set_requires_grad(tx, true);
    tg_tensor *y = tg_relu(c, tx);
    tg_tensor *fast, *ref;
    ck_assert_int_eq(tg_grad_of(c, 1, &y, &td, 1, &tx, true, &ref), TG_OK);
    ck_assert_int_eq(tg_grad_of(c, 1, &y, &td, 1, &tx, false, &fast), TG_OK);
    assert_same_bits(fast, ref, "relu backward");
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---- max_pool2d -------------------------------------------------------------- */

/* t as a non-contiguous view holding the same values (last two dims
 * transposed twice around a copy), which max_pool2d's general kernel takes. */
static tg_tensor *strided(tg_ctx *c, tg_tensor *t)
{
    tg_tensor *s = tg_transpose(c, tg_contiguous(c, tg_transpose(c, t, 2, 3)), 2, 3);
    ck_assert_ptr_nonnull(s);
    ck_assert(!tg_is_contiguous(s));
    return s;
}

/* _i: dtype (bit 0) and size (_i / 2): even, odd height, odd width, 1x?,
 * chunks of 17 rows of 15 outputs (the last one short), rows of 300 outputs
 * cut into pieces of 256 and 44 */
START_TEST(test_max_pool_2x2_kernel)
{
    static const int64_t sizes[6][2] = {{6, 8}, {7, 6}, {6, 9}, {3, 5}, {90, 30}, {5, 601}};
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    const int64_t N = 2, C = 3, H = sizes[_i >> 1][0], W = sizes[_i >> 1][1];
    const int64_t n = N * C * H * W;
    double *v = pseudo(n, 11 + (uint64_t)_i, true);
    /* specials in the first plane: NaN, infinities, signed zeros, ties */
    const double sp[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, NAN, -0.0, 0.0, 0.0, -0.0};
    for (int i = 0; i < (int)(sizeof sp / sizeof sp[0]); i++) v[(i * 7) % (H * W)] = sp[i];
    tg_ctx *c = tu_ctx();
    tg_tensor *x = from_doubles(c, dt, 4, (const int64_t[]){N, C, H, W}, v);
    tg_pool2d_opts o = tg_pool2d_defaults();
    o.kernel[0] = o.kernel[1] = 2;
    tg_tensor *i_fast, *i_ref;
    tg_tensor *y_fast = tg_max_pool2d_with_indices(c, x, &o, &i_fast);
    tg_tensor *y_ref = tg_max_pool2d_with_indices(c, strided(c, x), &o, &i_ref);
    tu_assert_ok(c);
    assert_same_bits(y_fast, y_ref, "max_pool2d 2x2 values");
    assert_same_bits(i_fast, i_ref, "max_pool2d 2x2 indices");

    /* backward: the no-graph rule against max_unpool2d (the graph rule),
     * with dout's own specials */
    tg_set_requires_grad(x, true);
    tg_tensor *y = tg_max_pool2d(c, x, &o);
    double *dv = pseudo(tg_numel(y), 5, false);
    dv[0] = NAN;
    dv[1] = -0.0;
    dv[2] = INFINITY;
    tg_tensor *d = from_doubles(c, dt, 4, tg_shape(y), dv);
    tg_tensor *fast, *ref;
    ck_assert_int_eq(tg_grad_of(c, 1, &y, &d, 1, &x, true, &ref), TG_OK);
    ck_assert_int_eq(tg_grad_of(c, 1, &y, &d, 1, &x, false, &fast), TG_OK);
    assert_same_bits(fast, ref, "max_pool2d backward");
    tu_assert_ok(c);
    free(dv);
    free(v);
    tg_ctx_free(c);
}
END_TEST

/* Geometries beyond the 2x2 kernel: padding (byte codes, general kernel),
 * a dilated window over padding only (no maximum: index -1), a window of
 * 16 x 16 = 256 places (int64 codes), a 3x3 window without padding. */
typedef struct {
    int64_t H, W, kh, kw, sh, sw, ph, pw, dh, dw;
} pspec;

static const pspec pool_cases[] = {
    {7, 8, 3, 3, 2, 2, 1, 1, 1, 1},
    {5, 3, 2, 2, 1, 1, 1, 1, 1, 4},
    {17, 18, 16, 16, 1, 1, 0, 0, 1, 1},
    {8, 9, 3, 3, 2, 2, 0, 0, 1, 1},
};
#define N_POOL_CASES ((int)(sizeof pool_cases / sizeof pool_cases[0]))

/* _i: case * 2 + dtype. The values and indices against a plain scan of
 * every window (the first maximum wins, a NaN wins), and the no-graph
 * backward (from the kept codes) against max_unpool2d of the indices. */
START_TEST(test_max_pool_codes)
{
    const pspec *q = &pool_cases[_i / 2];
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    const int64_t N = 2, C = 2, H = q->H, W = q->W, n = N * C * H * W;
    double *v = pseudo(n, 21 + (uint64_t)_i, true);
    v[3] = NAN;
    v[H * W + 5] = -0.0;
    tg_ctx *c = tu_ctx();
    tg_tensor *x = from_doubles(c, dt, 4, (const int64_t[]){N, C, H, W}, v);
    tg_pool2d_opts o = tg_pool2d_defaults();
    o.kernel[0] = q->kh, o.kernel[1] = q->kw, o.stride[0] = q->sh, o.stride[1] = q->sw;
    o.padding[0] = q->ph, o.padding[1] = q->pw, o.dilation[0] = q->dh, o.dilation[1] = q->dw;
    tg_tensor *idx;
    tg_tensor *y = tg_max_pool2d_with_indices(c, x, &o, &idx);
    tu_assert_ok(c);
    const int64_t OH = tg_shape(y)[2], OW = tg_shape(y)[3];
    size_t ni, ny;
    int64_t *iv = bytes_of(idx, &ni);
    void *yv = bytes_of(y, &ny);
    bool none_seen = false;
    for (int64_t pl = 0; pl < N * C; pl++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t bi = -1;
                double best = -INFINITY;
                for (int64_t i = 0; i < q->kh; i++)
                    for (int64_t j = 0; j < q->kw; j++) {
                        int64_t ih = oh * q->sh - q->ph + i * q->dh;
                        int64_t iw = ow * q->sw - q->pw + j * q->dw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        double e = v[pl * H * W + ih * W + iw];
                        if (dt == TG_F32) e = (float)e;
                        if (bi < 0 || e > best || e != e) best = e, bi = ih * W + iw;
                    }
                int64_t at = (pl * OH + oh) * OW + ow;
                none_seen |= bi < 0;
                ck_assert_int_eq(iv[at], bi);
                double got = dt == TG_F64 ? ((double *)yv)[at] : ((float *)yv)[at];
                ck_assert(got == best || (got != got && best != best));
            }
    ck_assert(none_seen == (_i / 2 == 1)); /* case 1 has windows over padding only */
    free(iv);
    free(yv);

    tg_set_requires_grad(x, true);
    tg_tensor *yy = tg_max_pool2d(c, x, &o);
    double *dv = pseudo(tg_numel(yy), 6, false);
    dv[0] = -0.0;
    dv[1] = NAN;
    tg_tensor *d = from_doubles(c, dt, 4, tg_shape(yy), dv);
    tg_tensor *fast, *ref;
    ck_assert_int_eq(tg_grad_of(c, 1, &yy, &d, 1, &x, true, &ref), TG_OK);
    ck_assert_int_eq(tg_grad_of(c, 1, &yy, &d, 1, &x, false, &fast), TG_OK);
    assert_same_bits(fast, ref, "max_pool2d backward from codes");
    assert_same_bits(ref, tg_max_unpool2d(c, d, idx, H, W), "max_unpool2d of the indices");
    tu_assert_ok(c);
    free(dv);
    free(v);
    tg_ctx_free(c);
}
END_TEST

/* ---- conv2d ---------------------------------------------------------------- */

typedef struct {
    int64_t N, C, H, W, OC, KH, KW;
    int64_t stride, pad, dil, groups;
    bool bias, x_grad;
} cspec;

static const cspec conv_cases[] = {
    /* the benchmark's two layers, smaller batches: "same" 3x3 (flat paths) */
    {3, 1, 12, 12, 4, 3, 3, 1, 1, 1, 1, true, false},
    {3, 4, 7, 7, 6, 3, 3, 1, 1, 1, 1, true, true},
    /* bias sums over 5 * 1024 = 5120 > 4096 elements: a block ends inside
     * image 4 */
    {5, 2, 32, 32, 3, 3, 3, 1, 1, 1, 1, true, true},
    /* 1x1 (x is its own columns), groups, stride, dilation, no padding,
     * 5x5 "same" (gaps of 2 per row), a non-square kernel */
    {2, 4, 6, 5, 6, 1, 1, 1, 0, 1, 2, true, true},
    {2, 4, 9, 8, 4, 3, 3, 2, 1, 1, 2, false, true},
    {2, 2, 9, 9, 3, 3, 3, 1, 2, 2, 1, true, true},
    {2, 2, 8, 8, 3, 3, 3, 1, 0, 1, 1, true, true},
    {2, 2, 8, 9, 3, 5, 5, 1, 2, 1, 1, true, true},
    {2, 3, 7, 8, 2, 3, 2, 1, 1, 1, 1, true, true},
};
#define N_CONV_CASES ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* _i: case * 2 + dtype */
START_TEST(test_conv2d_backward_direct)
{
    const cspec *s = &conv_cases[_i / 2];
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    tg_ctx *c = tu_ctx();
    const int64_t xs[4] = {s->N, s->C, s->H, s->W};
    const int64_t ws[4] = {s->OC, s->C / s->groups, s->KH, s->KW};
    double *xv = pseudo(s->N * s->C * s->H * s->W, 1, false);
    double *wv = pseudo(ws[0] * ws[1] * ws[2] * ws[3], 2, false);
    double *bv = pseudo(s->OC, 3, false);
    tg_tensor *x = from_doubles(c, dt, 4, xs, xv), *w = from_doubles(c, dt, 4, ws, wv);
    tg_tensor *b = s->bias ? from_doubles(c, dt, 1, &s->OC, bv) : NULL;
    if (s->x_grad) tg_set_requires_grad(x, true);
    tg_set_requires_grad(w, true);
    if (b) tg_set_requires_grad(b, true);
    tg_conv2d_opts o = tg_conv2d_defaults();
    o.stride[0] = o.stride[1] = s->stride;
    o.padding[0] = o.padding[1] = s->pad;
    o.dilation[0] = o.dilation[1] = s->dil;
    o.groups = s->groups;
    tg_tensor *y = tg_conv2d(c, x, w, b, &o);
    tu_assert_ok(c);
    double *gv = pseudo(tg_numel(y), 4, false);
    tg_tensor *loss = tg_sum(c, tg_mul(c, y, from_doubles(c, dt, 4, tg_shape(y), gv)));
    tg_tensor *ins[3] = {w, b ? b : w, x};
    int n = b ? 2 : 1;
    if (s->x_grad) ins[n++] = x;
    tg_tensor *fast[3], *ref[3];
    both_grads(c, loss, n, ins, fast, ref);
    static const char *names[3] = {"weight", "bias", "input"};
    for (int i = 0; i < n; i++)
        assert_same_bits(fast[i], ref[i], names[ins[i] == w ? 0 : ins[i] == x ? 2 : 1]);
    tu_assert_ok(c);
    free(gv);
    free(bv);
    free(wv);
    free(xv);
    tg_ctx_free(c);
}
END_TEST

/* The direct backward gives the same bytes with 1 and 3 threads on an input
 * big enough to be split. */
START_TEST(test_conv2d_backward_direct_threads)
{
    void *ref[3] = {NULL};
    size_t len[3] = {0};
    for (int th = 1; th <= 3; th += 2) {
        tg_ctx *c = tu_ctx();
        tu_assert_status(tg_ctx_set_threads(c, th), TG_OK);
        double *xv = pseudo(4 * 8 * 20 * 20, 7, false), *wv = pseudo(16 * 8 * 9, 8, false);
        double *bv = pseudo(16, 9, false);
        tg_tensor *x = from_doubles(c, TG_F32, 4, (const int64_t[]){4, 8, 20, 20}, xv);
        tg_tensor *w = from_doubles(c, TG_F32, 4, (const int64_t[]){16, 8, 3, 3}, wv);
        tg_tensor *b = from_doubles(c, TG_F32, 1, (const int64_t[]){16}, bv);
        tg_set_requires_grad(x, true);
        tg_set_requires_grad(w, true);
        tg_set_requires_grad(b, true);
        tg_conv2d_opts o = tg_conv2d_defaults();
        o.padding[0] = o.padding[1] = 1;
        tg_tensor *y = tg_conv2d(c, x, w, b, &o);
        tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
        tg_tensor *g[3] = {tg_grad(x), tg_grad(w), tg_grad(b)};
        for (int k = 0; k < 3; k++) {
            size_t nb;
            void *buf = bytes_of(g[k], &nb);
            if (th == 1) {
                ref[k] = buf;
                len[k] = nb;
            } else {
                ck_assert_uint_eq(nb, len[k]);
                ck_assert_msg(memcmp(buf, ref[k], nb) == 0, "gradient %d differs with 3 threads",
                              k);
                free(buf);
                free(ref[k]);
            }
        }
        free(xv);
        free(wv);
        free(bv);
        tg_ctx_free(c);
    }
}
END_TEST

Suite *fastpaths_suite(void)
{
    Suite *s = suite_create("fastpaths");
    TCase *tc = tu_tcase("relu");
    tcase_add_loop_test(tc, test_relu_backward_special_values, 0, 2);
    suite_add_tcase(s, tc);
    tc = tu_tcase("max_pool2d");
    tcase_add_loop_test(tc, test_max_pool_2x2_kernel, 0, 12);
    tcase_add_loop_test(tc, test_max_pool_codes, 0, 2 * N_POOL_CASES);
    suite_add_tcase(s, tc);
    tc = tu_tcase("conv2d");
    tcase_add_loop_test(tc, test_conv2d_backward_direct, 0, 2 * N_CONV_CASES);
    tcase_add_test(tc, test_conv2d_backward_direct_threads);
    suite_add_tcase(s, tc);
    return s;
}
