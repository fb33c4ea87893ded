/*
 * test_fastpaths.c - the kernels that serve the common case faster hold
 * the results of the general ones bit for bit:
 *   - relu's no-graph backward against its composite rule, on zeros of
 *     both signs, NaN, infinities and dout of every kind;
 *   - max_pool2d's 2x2 stride-2 kernels (the portable one, and AVX-512's
 *     where the CPU has it) against the general kernel (run on a strided
 *     copy of the same input), ties, NaN and signed zeros included (every
 *     window of four drawn from six such values), odd sizes included, rows
 *     shorter and longer than a vector, and its no-graph backward against
 *     max_unpool2d (the graph rule); the window codes max_pool2d keeps
 *     (bytes, int64 for windows over 255 places) against a plain scan and
 *     their backward against max_unpool2d of the indices, with padding,
 *     dilation and windows over padding only;
 *   - conv2d's no-graph backward (one image at a time: both GEMMs, the
 *     bias sums in reduce.c's order) against the graph rule (the gradient
 *     ops and tg_sum_axes), over geometries that take each im2col / col2im
 *     path and bias sums that cross reduce.c's 4096-element blocks.
 *   - tiny products (src/core/blas.c's loops, not BLAS) against their
 *     definition: each sum in double in order of k, rounded once (plus the
 *     bias, for tg_linear), over shapes that take every loop (narrow and
 *     wide rows of sums, both orientations, the scalar fallback), operands
 *     transposed or not, and special values (NaN only as NaN: its sign and
 *     payload are the hardware's), and tg_linear's no-graph backward (GEMM
 *     jobs, bias column sums of 1 to 4 columns in registers) against its
 *     graph rule;
 *   - the pointwise losses' reduced forward on contiguous operands (summed
 *     as evaluated, no scratch tensor) against the general path (the same
 *     values through strided views), and mse's fused backward against its
 *     composite rule, for every reduction it fuses, special values included.
 * The graph rule is what tg_grad_of(create_graph) runs; tg_backward runs
 * the fast one.
 */
#include "ops/ops_impl.h"
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

/* x (N, C, H, W) through the 2x2 stride-2 kernels, the portable one and
 * AVX-512's (where the CPU has it): values and indices against the general
 * kernel on a strided copy of x, and the no-graph backward (from the kept
 * codes) against max_unpool2d, the graph rule, with dout's own specials.
 * Frees v. */
static void check_k22(tg_dtype dt, const int64_t shape[4], double *v)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = from_doubles(c, dt, 4, shape, v);
    tg_pool2d_opts o = tg_pool2d_defaults();
    o.kernel[0] = o.kernel[1] = 2;
    tg_tensor *i_ref, *i_fast;
    tg_tensor *y_ref = tg_max_pool2d_with_indices(c, strided(c, x), &o, &i_ref);
    tu_assert_ok(c);
    double *dv = pseudo(tg_numel(y_ref), 5, false);
    dv[0] = NAN;
    dv[1] = -0.0;
    if (tg_numel(y_ref) > 2) dv[2] = INFINITY;
    tg_tensor *d = from_doubles(c, dt, 4, tg_shape(y_ref), dv);
    const bool was = tg__maxp22_wide;
    for (int wide = 0; wide < 2; wide++) {
        tg__maxp22_wide = wide;
        tg_set_requires_grad(x, false);
        tg_tensor *y_fast = tg_max_pool2d_with_indices(c, x, &o, &i_fast);
        tu_assert_ok(c);
        assert_same_bits(y_fast, y_ref, "max_pool2d 2x2 values");
        assert_same_bits(i_fast, i_ref, "max_pool2d 2x2 indices");
        tg_set_requires_grad(x, true);
        tg_tensor *y = tg_max_pool2d(c, x, &o);
        tg_tensor *fast, *ref;
        ck_assert_int_eq(tg_grad_of(c, 1, &y, &d, 1, &x, true, &ref), TG_OK);
        ck_assert_int_eq(tg_grad_of(c, 1, &y, &d, 1, &x, false, &fast), TG_OK);
        assert_same_bits(fast, ref, "max_pool2d backward");
    }
    tg__maxp22_wide = was;
    tu_assert_ok(c);
    free(dv);
    free(v);
    tg_ctx_free(c);
}

/* _i: dtype (bit 0) and size (_i / 2): even, odd height, odd width, 1x?,
 * chunks of 17 rows of 15 outputs (the last one short), rows of 300 outputs
 * cut into pieces of 256 and 44 */
START_TEST(test_max_pool_2x2_kernel)
{
    static const int64_t sizes[6][2] = {{6, 8}, {7, 6}, {6, 9}, {3, 5}, {90, 30}, {5, 601}};
    const int64_t N = 2, C = 3, H = sizes[_i >> 1][0], W = sizes[_i >> 1][1];
    double *v = pseudo(N * C * H * W, 11 + (uint64_t)_i, true);
    /* specials in the first plane: NaN, infinities, signed zeros, ties */
    const double sp[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, NAN, -0.0, 0.0, 0.0, -0.0};
    for (int i = 0; i < (int)(sizeof sp / sizeof sp[0]); i++) v[(i * 7) % (H * W)] = sp[i];
    check_k22((_i & 1) ? TG_F64 : TG_F32, (const int64_t[]){N, C, H, W}, v);
}
END_TEST

/* Every window of four values drawn from NaN, -0, +0, 1 (twice: ties),
 * -inf and 2 (6^4 = 1296 windows, in order), laid out as rows of 36
 * windows (_i / 2 == 0: a row in chunks of 16, 16 and 4) or of 7 (a row
 * shorter than one vector). */
START_TEST(test_max_pool_2x2_special_windows)
{
    static const double sp[6] = {NAN, -0.0, 0.0, 1.0, -INFINITY, 2.0};
    const int64_t OW = _i / 2 == 0 ? 36 : 7, OH = (1296 + OW - 1) / OW, H = 2 * OH, W = 2 * OW;
    double *v = malloc((size_t)(H * W) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t k = 0; k < OH * OW; k++) {
        const int64_t q = k % 1296, r = 2 * (k / OW), col = 2 * (k % OW);
        v[r * W + col] = sp[q % 6];
        v[r * W + col + 1] = sp[q / 6 % 6];
        v[(r + 1) * W + col] = sp[q / 36 % 6];
        v[(r + 1) * W + col + 1] = sp[q / 216];
    }
    check_k22((_i & 1) ? TG_F64 : TG_F32, (const int64_t[]){1, 1, H, W}, v);
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

/* ---- tiny GEMM ------------------------------------------------------------- */

/* m, n, k of products small enough for blas.c's own loops (m n k <= 4096):
 * rows of 1 to 4 sums and wider, more rows than columns (the transposed
 * order) or not, and k n > 1024 (the scalar fallback). */
static const int tiny_shapes[][3] = {
    {32, 3, 2}, {32, 1, 3}, {32, 3, 1}, {1, 3, 32}, {3, 2, 32}, {4, 4, 4},  {2, 5, 7},
    {7, 5, 2},  {1, 1, 1},  {5, 1, 9},  {1, 9, 5},  {16, 16, 16}, {3, 40, 30}, {1, 4, 600},
    {4, 1, 600}, {2, 2, 900}, {64, 64, 1}, {1, 64, 64},
};
#define N_TINY (int)(sizeof tiny_shapes / sizeof tiny_shapes[0])

/* values with exact repeats, zeros of both signs, infinities and NaN */
static double tiny_val(double u, int64_t i)
{
    switch (i % 53) {
    case 7: return -0.0;
    case 19: return 0.0;
    case 31: return i % 2 ? INFINITY : -INFINITY;
    case 47: return NAN;
    default: return u * 8;
    }
}

/* x as T, read back as double */
static double tiny_round(tg_dtype dt, double x) { return dt == TG_F32 ? (double)(float)x : x; }

/* t's values (contiguous, row-major) as doubles, malloc'd */
static double *as_doubles(const tg_tensor *t)
{
    size_t nb;
    void *raw = bytes_of(t, &nb);
    int64_t n = tg_numel(t);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t q = 0; q < n; q++)
        v[q] = tg_tensor_dtype(t) == TG_F32 ? (double)((float *)raw)[q] : ((double *)raw)[q];
    free(raw);
    return v;
}

static bool same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* _i: shape (i / 8), dtype (bit 0), A stored transposed (bit 1), B stored
 * transposed (bit 2). tg_matmul of the views, and tg_linear (x W^T + b) of
 * the same numbers, against the definition. */
START_TEST(test_tiny_gemm_definition)
{
    const int *sh = tiny_shapes[_i / 8];
    int64_t m = sh[0], n = sh[1], k = sh[2];
    tg_dtype dt = _i & 1 ? TG_F64 : TG_F32;
    bool ta = _i & 2, tb = _i & 4;
    double *u = pseudo(m * k + k * n + n, 17 + (uint64_t)_i, false);
    double *av = malloc((size_t)(m * k) * sizeof *av), *bv = malloc((size_t)(k * n) * sizeof *bv);
    double bias[64];
    /* A(i, p) = av[i * k + p], B(p, j) = bv[p * n + j], as T */
    for (int64_t q = 0; q < m * k; q++) av[q] = tiny_round(dt, tiny_val(u[q], q));
    for (int64_t q = 0; q < k * n; q++) bv[q] = tiny_round(dt, tiny_val(u[m * k + q], q + 5));
    for (int64_t j = 0; j < n; j++) bias[j] = tiny_round(dt, u[m * k + k * n + j]);

    /* the operands as stored: A (m, k) or its transpose (k, m) made contiguous */
    double *as = malloc((size_t)(m * k) * sizeof *as), *bs = malloc((size_t)(k * n) * sizeof *bs);
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++) as[ta ? p * m + i : i * k + p] = av[i * k + p];
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < n; j++) bs[tb ? j * k + p : p * n + j] = bv[p * n + j];
    tg_ctx *c = tu_ctx();
    tg_tensor *a = from_doubles(c, dt, 2, ta ? (const int64_t[]){k, m} : (const int64_t[]){m, k}, as);
    tg_tensor *b = from_doubles(c, dt, 2, tb ? (const int64_t[]){n, k} : (const int64_t[]){k, n}, bs);
    if (ta) a = tg_transpose(c, a, 0, 1);
    if (tb) b = tg_transpose(c, b, 0, 1);
    tg_tensor *y = tg_matmul(c, a, b);
    /* tg_linear takes W as (n, k): B's transpose, a view when B is stored (k, n) */
    tg_tensor *w = tg_transpose(c, b, 0, 1);
    tg_tensor *yl = tg_linear(c, a, w, from_doubles(c, dt, 1, (const int64_t[]){n}, bias));
    tu_assert_ok(c);

    double *got = as_doubles(y), *gotl = as_doubles(yl);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += av[i * k + p] * bv[p * n + j];
            double want = tiny_round(dt, s), wantl = tiny_round(dt, s + bias[j]);
            ck_assert_msg(same_value(got[i * n + j], want),
                          "matmul %lldx%lldx%lld ta %d tb %d dt %d: [%lld,%lld] %a != %a",
                          (long long)m, (long long)n, (long long)k, ta, tb, dt, (long long)i,
                          (long long)j, got[i * n + j], want);
            ck_assert_msg(same_value(gotl[i * n + j], wantl),
                          "linear %lldx%lldx%lld ta %d tb %d dt %d: [%lld,%lld] %a != %a",
                          (long long)m, (long long)n, (long long)k, ta, tb, dt, (long long)i,
                          (long long)j, gotl[i * n + j], wantl);
        }
    free(u);
    free(av);
    free(bv);
    free(as);
    free(bs);
    free(got);
    free(gotl);
    tg_ctx_free(c);
}
END_TEST

/* _i: dtype (bit 0), shape (i / 2): R x IN -> OUT. The gradients of
 * sum(linear(x, W, b) * wt) by both rules. */
START_TEST(test_linear_backward_direct)
{
    static const int shapes[][3] = {{32, 2, 3}, {32, 3, 1}, {7, 5, 2}, {9, 4, 4},
                                    {3, 6, 5}, {40, 3, 9}, {1, 1, 1}};
    const int *sh = shapes[_i / 2];
    int64_t R = sh[0], IN = sh[1], OUT = sh[2];
    tg_dtype dt = _i & 1 ? TG_F64 : TG_F32;
    double *u = pseudo(R * IN + OUT * IN + OUT + R * OUT, 3 + (uint64_t)_i, false);
    tg_ctx *c = tu_ctx();
    tg_tensor *ins[3] = {from_doubles(c, dt, 2, (const int64_t[]){R, IN}, u),
                         from_doubles(c, dt, 2, (const int64_t[]){OUT, IN}, u + R * IN),
                         from_doubles(c, dt, 1, (const int64_t[]){OUT}, u + R * IN + OUT * IN)};
    tg_tensor *wt = from_doubles(c, dt, 2, (const int64_t[]){R, OUT}, u + R * IN + OUT * IN + OUT);
    for (int k = 0; k < 3; k++) tg_set_requires_grad(ins[k], true);
    tg_tensor *loss = tg_sum(c, tg_mul(c, tg_linear(c, ins[0], ins[1], ins[2]), wt));
    tg_tensor *fast[3], *ref[3];
    both_grads(c, loss, 3, ins, fast, ref);
    assert_same_bits(fast[0], ref[0], "linear dx");
    assert_same_bits(fast[1], ref[1], "linear dW");
    assert_same_bits(fast[2], ref[2], "linear db");
    tu_assert_ok(c);
    free(u);
    tg_ctx_free(c);
}
END_TEST

/* ---- pointwise losses ------------------------------------------------------- */

/* x and t: n values with ties, and with zeros, infinities and NaN when
 * special (bce needs [0, 1]: none there) */
static void loss_values(double *x, double *t, int64_t n, uint64_t seed, bool unit, bool special)
{
    double *u = pseudo(2 * n, seed, false);
    for (int64_t i = 0; i < n; i++) {
        x[i] = unit ? (u[i] + 1) / 2 : u[i] * 3;
        t[i] = unit ? (u[n + i] + 1) / 2 : u[n + i] * 3;
        if (!unit && i % 17 == 3) x[i] = t[i];
        if (!unit && special && i % 29 == 5) x[i] = i % 2 ? INFINITY : -0.0;
        if (!unit && special && i % 41 == 7) t[i] = NAN;
    }
    free(u);
}

typedef tg_tensor *(*loss_fn)(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r);
static tg_tensor *l_mse(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_mse_loss_ex(c, x, t, r);
}
static tg_tensor *l_l1(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_l1_loss(c, x, t, r);
}
static tg_tensor *l_smooth(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_smooth_l1_loss(c, x, t, 0.5, r);
}
static tg_tensor *l_huber(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_huber_loss(c, x, t, 0.7, r);
}
static tg_tensor *l_bce(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_bce_loss(c, x, t, r);
}
static tg_tensor *l_logits(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_bce_with_logits(c, x, t, NULL, r);
}
static tg_tensor *l_kl(tg_ctx *c, tg_tensor *x, tg_tensor *t, tg_reduction r)
{
    return tg_kl_div(c, x, t, r, true);
}
static const loss_fn loss_fns[] = {l_mse, l_l1, l_smooth, l_huber, l_bce, l_logits, l_kl};
#define N_LOSS_FNS (int)(sizeof loss_fns / sizeof loss_fns[0])

/* _i: loss (i / 8), dtype (bit 0), sum or mean (bit 1), special values
 * (bit 2); 70 x 130 elements (over one 4096-element block of the sum) */
START_TEST(test_loss_flat_forward)
{
    enum { R = 70, C = 130, N = R * C };
    tg_dtype dt = _i & 1 ? TG_F64 : TG_F32;
    tg_reduction r = _i & 2 ? TG_REDUCE_MEAN : TG_REDUCE_SUM;
    loss_fn f = loss_fns[_i / 8];
    bool unit = f == l_bce;
    double *x = malloc(N * sizeof *x), *t = malloc(N * sizeof *t);
    loss_values(x, t, N, 31 + (uint64_t)_i, unit, _i & 4);
    tg_ctx *c = tu_ctx();
    tg_tensor *tx = from_doubles(c, dt, 2, (const int64_t[]){R, C}, x);
    tg_tensor *tt = from_doubles(c, dt, 2, (const int64_t[]){R, C}, t);
    /* the same values through views the flat path does not take */
    tg_tensor *sx = tg_transpose(c, tg_contiguous(c, tg_transpose(c, tx, 0, 1)), 0, 1);
    tg_tensor *st = tg_transpose(c, tg_contiguous(c, tg_transpose(c, tt, 0, 1)), 0, 1);
    ck_assert(!tg_is_contiguous(sx) && !tg_is_contiguous(st));
    assert_same_bits(f(c, tx, tt, r), f(c, sx, st, r), "reduced loss");
    tu_assert_ok(c);
    free(x);
    free(t);
    tg_ctx_free(c);
}
END_TEST

/* _i: dtype (bit 0), reduction sum or mean (bit 1), target requires grad
 * (bit 2), dout 1 or 0.3 (bit 3); a batch of 32 x 3 (0.3f / 96 in float
 * differs from 0.3f / 96 in double rounded to float), values as above */
START_TEST(test_mse_backward_fused)
{
    enum { R = 32, C = 3, N = R * C };
    tg_dtype dt = _i & 1 ? TG_F64 : TG_F32;
    tg_reduction r = _i & 2 ? TG_REDUCE_MEAN : TG_REDUCE_SUM;
    bool both = _i & 4;
    double x[N], t[N];
    loss_values(x, t, N, 7 + (uint64_t)_i, false, true);
    tg_ctx *c = tu_ctx();
    tg_tensor *ins[2] = {from_doubles(c, dt, 2, (const int64_t[]){R, C}, x),
                         from_doubles(c, dt, 2, (const int64_t[]){R, C}, t)};
    tg_set_requires_grad(ins[0], true);
    tg_set_requires_grad(ins[1], both);
    tg_tensor *loss = tg_mse_loss_ex(c, ins[0], ins[1], r);
    tg_tensor *d = from_doubles(c, dt, 0, NULL, (const double[]){_i & 8 ? 0.3 : 1.0});
    tg_tensor *fast[2], *ref[2];
    int n = both ? 2 : 1;
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, &d, n, ins, true, ref), TG_OK);
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, &d, n, ins, false, fast), TG_OK);
    for (int k = 0; k < n; k++) assert_same_bits(fast[k], ref[k], "mse backward");
    tu_assert_ok(c);
    tg_ctx_free(c);
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
    tcase_add_loop_test(tc, test_max_pool_2x2_special_windows, 0, 4);
    tcase_add_loop_test(tc, test_max_pool_codes, 0, 2 * N_POOL_CASES);
    suite_add_tcase(s, tc);
    tc = tu_tcase("conv2d");
    tcase_add_loop_test(tc, test_conv2d_backward_direct, 0, 2 * N_CONV_CASES);
    tcase_add_test(tc, test_conv2d_backward_direct_threads);
    suite_add_tcase(s, tc);
    tc = tu_tcase("tiny_gemm");
    tcase_add_loop_test(tc, test_tiny_gemm_definition, 0, 8 * N_TINY);
    tcase_add_loop_test(tc, test_linear_backward_direct, 0, 14);
    suite_add_tcase(s, tc);
    tc = tu_tcase("losses");
    tcase_add_loop_test(tc, test_loss_flat_forward, 0, 8 * N_LOSS_FNS);
    tcase_add_loop_test(tc, test_mse_backward_fused, 0, 16);
    suite_add_tcase(s, tc);
    return s;
}
