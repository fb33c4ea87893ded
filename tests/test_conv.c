/*
 * test_conv.c - the conv suite: outer, linear, conv1d/conv2d and their
 * gradient kernels, max/avg/adaptive pooling.
 *
 * Forward values are compared, in f32 and f64, against naive direct
 * implementations written here from the definitions (loops over every
 * output and window, in double), for every option (stride, padding,
 * dilation, groups, bias or none, strided inputs), plus a few small cases
 * worked out by hand. Then errors (messages naming the numbers, never an
 * abort), gradients through tg_backward in f32, and bit-identical results
 * whatever the thread count. Gradients in f64 to second order are checked
 * by the table-driven test (tests/opgrad_conv.c).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------ */

static double gen(int64_t i, int salt)
{
    return 1.5 * sin(0.7 * (double)i + salt) + 0.1 * cos(1.3 * (double)i);
}

/* A tensor of dtype dt with deterministic values, copied (rounded to dt)
 * into host (numel doubles, malloc'ed; free it). */
static tg_tensor *mk(tg_ctx *c, tg_dtype dt, int nd, const int64_t *shape, int salt, double **host)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    double *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    ck_assert_ptr_nonnull(h);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (int64_t i = 0; i < n; i++) {
        h[i] = gen(i, salt);
        f[i] = (float)h[i];
        if (dt == TG_F32) h[i] = (double)f[i];
    }
    tg_tensor *t = tg_tensor_from(c, dt, nd, shape, dt == TG_F32 ? (void *)f : (void *)h);
    free(f);
    ck_assert_ptr_nonnull(t);
    *host = h;
    return t;
}

/* The same values through a strided layout: last two dims transposed in
 * memory (a non-contiguous view). */
static tg_tensor *strided(tg_ctx *c, tg_tensor *t)
{
    int nd = tg_ndim(t);
    tg_tensor *s =
        tg_transpose(c, tg_contiguous(c, tg_transpose(c, t, nd - 2, nd - 1)), nd - 2, nd - 1);
    ck_assert_ptr_nonnull(s);
    if (tg_shape(t)[nd - 1] > 1 && tg_shape(t)[nd - 2] > 1) ck_assert(!tg_is_contiguous(s));
    return s;
}

/* t's elements against ref (n of them) within tol. */
static void cmp(tg_tensor *t, const double *ref, int64_t n, double tol)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_numel(t), n);
    double *got = malloc((size_t)(n > 0 ? n : 1) * sizeof *got);
    ck_assert_ptr_nonnull(got);
    if (tg_tensor_dtype(t) == TG_F32) {
        float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
        ck_assert_int_eq(tg_copy_out(t, f, (size_t)n * sizeof *f), TG_OK);
        for (int64_t i = 0; i < n; i++) got[i] = f[i];
        free(f);
    } else {
        ck_assert_int_eq(tg_copy_out(t, got, (size_t)n * sizeof *got), TG_OK);
    }
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - ref[i]) <= tol * (1 + fabs(ref[i])) ||
                          (isinf(ref[i]) && got[i] == ref[i]),
                      "element %lld: got %.17g, want %.17g", (long long)i, got[i], ref[i]);
    free(got);
}

static double tol_of(tg_dtype dt) { return dt == TG_F32 ? 2e-5 : 1e-12; }

/* ---- reference convolution --------------------------------------------- */

typedef struct {
    int64_t N, C, H, W, OC, KH, KW;
    int64_t sh, sw, ph, pw, dh, dw, G;
    bool bias;
} cspec;

static int64_t osz(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* y[n,o,i,j] = b[o] + sum w[o,c,p,q] x[n, g*Cg+c, i*sh-ph+p*dh, j*sw-pw+q*dw] */
static double *ref_conv(const cspec *s, const double *x, const double *w, const double *b)
{
    int64_t OH = osz(s->H, s->KH, s->sh, s->ph, s->dh), OW = osz(s->W, s->KW, s->sw, s->pw, s->dw);
    int64_t cg = s->C / s->G, ocg = s->OC / s->G;
    double *y = calloc((size_t)(s->N * s->OC * OH * OW), sizeof *y);
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t o = 0; o < s->OC; o++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    double acc = b ? b[o] : 0;
                    int64_t g = o / ocg;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t p = 0; p < s->KH; p++)
                            for (int64_t q = 0; q < s->KW; q++) {
                                int64_t ih = i * s->sh - s->ph + p * s->dh;
                                int64_t iw = j * s->sw - s->pw + q * s->dw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += w[((o * cg + ci) * s->KH + p) * s->KW + q] *
                                       x[((n * s->C + g * cg + ci) * s->H + ih) * s->W + iw];
                            }
                    y[((n * s->OC + o) * OH + i) * OW + j] = acc;
                }
    return y;
}

/* the adjoints: dx (scatter of dout through w) and dw (correlation) */
static void ref_conv_grads(const cspec *s, const double *x, const double *w, const double *dy,
                           double *dx, double *dw)
{
    int64_t OH = osz(s->H, s->KH, s->sh, s->ph, s->dh), OW = osz(s->W, s->KW, s->sw, s->pw, s->dw);
    int64_t cg = s->C / s->G, ocg = s->OC / s->G;
    memset(dx, 0, (size_t)(s->N * s->C * s->H * s->W) * sizeof *dx);
    memset(dw, 0, (size_t)(s->OC * cg * s->KH * s->KW) * sizeof *dw);
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t o = 0; o < s->OC; o++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    double d = dy[((n * s->OC + o) * OH + i) * OW + j];
                    int64_t g = o / ocg;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t p = 0; p < s->KH; p++)
                            for (int64_t q = 0; q < s->KW; q++) {
                                int64_t ih = i * s->sh - s->ph + p * s->dh;
                                int64_t iw = j * s->sw - s->pw + q * s->dw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                int64_t xi = ((n * s->C + g * cg + ci) * s->H + ih) * s->W + iw;
                                int64_t wi = ((o * cg + ci) * s->KH + p) * s->KW + q;
                                dx[xi] += d * w[wi];
                                dw[wi] += d * x[xi];
                            }
                }
}

static tg_conv2d_opts opts_of(const cspec *s)
{
    tg_conv2d_opts o = tg_conv2d_defaults();
    o.stride[0] = s->sh;
    o.stride[1] = s->sw;
    o.padding[0] = s->ph;
    o.padding[1] = s->pw;
    o.dilation[0] = s->dh;
    o.dilation[1] = s->dw;
    o.groups = s->G;
    return o;
}

/* N C H W OC KH KW sh sw ph pw dh dw G bias */
static const cspec conv_cases[] = {
    {2, 3, 6, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, true},  /* plain */
    {2, 2, 7, 7, 3, 3, 3, 2, 2, 0, 0, 1, 1, 1, true},  /* stride 2 */
    {1, 2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},  /* padding 1 */
    {2, 2, 7, 6, 3, 3, 2, 1, 1, 0, 0, 2, 2, 1, false}, /* dilation 2, no bias */
    {2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},  /* groups 2 */
    {1, 6, 5, 4, 6, 2, 3, 1, 1, 0, 1, 1, 1, 6, true},  /* depthwise */
    {3, 4, 9, 8, 4, 3, 2, 2, 3, 2, 1, 2, 1, 2, false}, /* everything at once */
    {2, 3, 4, 4, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},  /* 1x1 */
};
#define N_CONV_CASES ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* ---- conv2d forward ---------------------------------------------------- */

/* _i: case * 4 + (dtype, strided) */
START_TEST(test_conv2d_forward)
{
    const cspec *s = &conv_cases[_i / 4];
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    bool str = (_i & 2) != 0;
    tg_ctx *c = tu_ctx();
    double *hx, *hw, *hb = NULL;
    tg_tensor *x = mk(c, dt, 4, (const int64_t[]){s->N, s->C, s->H, s->W}, 1, &hx);
    tg_tensor *w = mk(c, dt, 4, (const int64_t[]){s->OC, s->C / s->G, s->KH, s->KW}, 2, &hw);
    tg_tensor *b = s->bias ? mk(c, dt, 1, (const int64_t[]){s->OC}, 3, &hb) : NULL;
    if (str) {
        x = strided(c, x);
        w = strided(c, w);
    }
    tg_conv2d_opts o = opts_of(s);
    tg_tensor *y = tg_conv2d(c, x, w, b, &o);
    tu_assert_ok(c);
    int64_t OH = osz(s->H, s->KH, s->sh, s->ph, s->dh), OW = osz(s->W, s->KW, s->sw, s->pw, s->dw);
    ck_assert_int_eq(tg_ndim(y), 4);
    ck_assert_int_eq(tg_shape(y)[1], s->OC);
    ck_assert_int_eq(tg_shape(y)[2], OH);
    ck_assert_int_eq(tg_shape(y)[3], OW);
    double *ref = ref_conv(s, hx, hw, hb);
    cmp(y, ref, s->N * s->OC * OH * OW, tol_of(dt));
    free(ref);
    free(hx);
    free(hw);
    free(hb);
    tg_ctx_free(c);
}
END_TEST

/* The gradient kernels as ops, against the reference adjoints. */
START_TEST(test_conv2d_grad_kernels)
{
    const cspec *s = &conv_cases[_i / 2];
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    tg_ctx *c = tu_ctx();
    int64_t OH = osz(s->H, s->KH, s->sh, s->ph, s->dh), OW = osz(s->W, s->KW, s->sw, s->pw, s->dw);
    double *hx, *hw, *hd;
    tg_tensor *x = mk(c, dt, 4, (const int64_t[]){s->N, s->C, s->H, s->W}, 1, &hx);
    tg_tensor *w = mk(c, dt, 4, (const int64_t[]){s->OC, s->C / s->G, s->KH, s->KW}, 2, &hw);
    tg_tensor *d = mk(c, dt, 4, (const int64_t[]){s->N, s->OC, OH, OW}, 4, &hd);
    int64_t nx = s->N * s->C * s->H * s->W, nw = s->OC * (s->C / s->G) * s->KH * s->KW;
    double *rdx = malloc((size_t)nx * sizeof *rdx), *rdw = malloc((size_t)nw * sizeof *rdw);
    ref_conv_grads(s, hx, hw, hd, rdx, rdw);
    tg_conv2d_opts o = opts_of(s);
    tg_tensor *dx = tg_conv2d_input_grad(c, d, w, s->H, s->W, &o);
    tg_tensor *dw = tg_conv2d_weight_grad(c, x, d, s->KH, s->KW, &o);
    tu_assert_ok(c);
    double tol = dt == TG_F32 ? 1e-4 : 1e-12;
    cmp(dx, rdx, nx, tol);
    cmp(dw, rdw, nw, tol);

    /* the same through tg_backward of sum(conv2d(x, w) * d) */
    tg_set_requires_grad(x, true);
    tg_set_requires_grad(w, true);
    tg_tensor *loss = tg_sum(c, tg_mul(c, tg_conv2d(c, x, w, NULL, &o), d));
    tu_assert_status(tg_backward(c, loss), TG_OK);
    cmp(tg_grad(x), rdx, nx, tol);
    cmp(tg_grad(w), rdw, nw, tol);
    free(rdx);
    free(rdw);
    free(hx);
    free(hw);
    free(hd);
    tg_ctx_free(c);
}
END_TEST

/* A case small enough to check by hand: ones 2x2 over arange(16) as 4x4. */
START_TEST(test_conv2d_by_hand)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_reshape(c, tg_arange(c, TG_F64, 0, 16, 1), 4, (const int64_t[]){1, 1, 4, 4});
    tg_tensor *w = tg_full(c, TG_F64, 4, (const int64_t[]){1, 1, 2, 2}, 1.0);
    tg_tensor *b = tg_full(c, TG_F64, 1, (const int64_t[]){1}, 0.5);
    tg_tensor *y = tg_conv2d(c, x, w, b, NULL);
    tu_assert_values(y, 1e-12, 10.5, 14.5, 18.5, 26.5, 30.5, 34.5, 42.5, 46.5, 50.5);
    tg_conv2d_opts o = tg_conv2d_defaults();
    o.stride[0] = o.stride[1] = 2;
    o.padding[0] = o.padding[1] = 1;
    /* windows start at -1, 1, 3 each way: row 0 gives 0, 1+2, 3; rows 1-2
     * give 4+8, 5+6+9+10, 7+11; row 3 gives 12, 13+14, 15 */
    tu_assert_values(tg_conv2d(c, x, w, NULL, &o), 1e-12, 0, 3, 3, 12, 30, 18, 12, 27, 15);
    /* transposed convolution of a single 1 with the kernel 1,2,3,4 */
    tg_tensor *d = tg_tensor_from(c, TG_F64, 4, (const int64_t[]){1, 1, 1, 1}, (const double[]){1});
    tg_tensor *k = tg_reshape(c, tg_arange(c, TG_F64, 1, 5, 1), 4, (const int64_t[]){1, 1, 2, 2});
    tu_assert_values(tg_conv2d_input_grad(c, d, k, 2, 2, NULL), 1e-12, 1, 2, 3, 4);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---- conv1d ------------------------------------------------------------ */

START_TEST(test_conv1d)
{
    /* N C L OC K s p d G bias, checked as conv2d with H = 1 in the reference */
    static const int64_t cases[][10] = {
        {2, 3, 9, 4, 3, 1, 0, 1, 1, 1},
        {2, 4, 11, 2, 2, 2, 1, 3, 2, 0},
        {1, 2, 5, 2, 5, 1, 2, 1, 1, 1},
    };
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 4; t++) {
            const int64_t *v = cases[k];
            tg_dtype dt = (t & 1) ? TG_F64 : TG_F32;
            cspec s = {v[0], v[1], 1, v[2], v[3], 1, v[4], 1, v[5], 0, v[6], 1, v[7], v[8], v[9]};
            tg_ctx *c = tu_ctx();
            double *hx, *hw, *hb = NULL;
            tg_tensor *x = mk(c, dt, 3, (const int64_t[]){s.N, s.C, s.W}, 1, &hx);
            tg_tensor *w = mk(c, dt, 3, (const int64_t[]){s.OC, s.C / s.G, s.KW}, 2, &hw);
            tg_tensor *b = s.bias ? mk(c, dt, 1, (const int64_t[]){s.OC}, 3, &hb) : NULL;
            if (t & 2) {
                x = strided(c, x);
                w = strided(c, w);
            }
            tg_conv1d_opts o = tg_conv1d_defaults();
            o.stride = v[5];
            o.padding = v[6];
            o.dilation = v[7];
            o.groups = v[8];
            tg_tensor *y = tg_conv1d(c, x, w, b, &o);
            tu_assert_ok(c);
            int64_t OL = osz(s.W, s.KW, s.sw, s.pw, s.dw);
            ck_assert_int_eq(tg_ndim(y), 3);
            ck_assert_int_eq(tg_shape(y)[2], OL);
            double *ref = ref_conv(&s, hx, hw, hb);
            cmp(y, ref, s.N * s.OC * OL, tol_of(dt));
            free(ref);
            free(hx);
            free(hw);
            free(hb);
            tg_ctx_free(c);
        }
}
END_TEST

/* ---- outer and linear --------------------------------------------------- */

START_TEST(test_outer)
{
    for (int t = 0; t < 2; t++) {
        tg_ctx *c = tu_ctx();
        tg_dtype dt = t ? TG_F64 : TG_F32;
        tg_tensor *a = tg_tensor_from(c, dt, 1, (const int64_t[]){3},
                                      t ? (const void *)(const double[]){1, 2, 3}
                                        : (const void *)(const float[]){1, 2, 3});
        tg_tensor *b = tg_tensor_from(c, dt, 1, (const int64_t[]){2},
                                      t ? (const void *)(const double[]){-1, 0.5}
                                        : (const void *)(const float[]){-1, 0.5f});
        tu_assert_values(tg_outer(c, a, b), 0, -1, 0.5, -2, 1, -3, 1.5);
        /* a strided 1-d input: every other element of [0..5] */
        tg_tensor *e = tg_slice(c, tg_arange(c, dt, 0, 6, 1), 0, 0, 6, 2);
        tu_assert_values(tg_outer(c, e, b), 0, 0, 0, -2, 1, -4, 2);
        tu_assert_ok(c);
        tg_ctx_free(c);
    }
}
END_TEST

/* y = x W^T + b against a loop, for 3-d x, strided x and W, no bias, 1-d x */
START_TEST(test_linear)
{
    static const int64_t xs[][4] = {{3, 2, 3, 5}, {2, 4, 5, 0}, {1, 5, 0, 0}, {2, 1, 4, 0}};
    static const int xnd[] = {3, 2, 1, 3};
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < 8; t++) {
            tg_dtype dt = (t & 1) ? TG_F64 : TG_F32;
            bool str = (t & 2) != 0, bias = (t & 4) == 0;
            int nd = xnd[k];
            int64_t IN = xs[k][nd - 1], OUT = 3, R = 1;
            for (int d = 0; d < nd - 1; d++) R *= xs[k][d];
            tg_ctx *c = tu_ctx();
            double *hx, *hw, *hb = NULL;
            tg_tensor *x = mk(c, dt, nd, xs[k], 1, &hx);
            tg_tensor *w = mk(c, dt, 2, (const int64_t[]){OUT, IN}, 2, &hw);
            tg_tensor *b = bias ? mk(c, dt, 1, (const int64_t[]){OUT}, 3, &hb) : NULL;
            if (str) {
                if (nd >= 2) x = strided(c, x);
                w = strided(c, w);
            }
            tg_tensor *y = tg_linear(c, x, w, b);
            tu_assert_ok(c);
            ck_assert_int_eq(tg_ndim(y), nd);
            ck_assert_int_eq(tg_shape(y)[nd - 1], OUT);
            double ref[64];
            for (int64_t r = 0; r < R; r++)
                for (int64_t o = 0; o < OUT; o++) {
                    double acc = bias ? hb[o] : 0;
                    for (int64_t i = 0; i < IN; i++) acc += hx[r * IN + i] * hw[o * IN + i];
                    ref[r * OUT + o] = acc;
                }
            cmp(y, ref, R * OUT, tol_of(dt));

            /* f32/f64 backward against the definitions */
            if (!str) {
                tg_set_requires_grad(x, true);
                tg_set_requires_grad(w, true);
                if (b) tg_set_requires_grad(b, true);
                tu_assert_status(tg_backward(c, tg_sum(c, tg_linear(c, x, w, b))), TG_OK);
                double gx[64], gw[64], gb[8];
                for (int64_t r = 0; r < R; r++)
                    for (int64_t i = 0; i < IN; i++) {
                        gx[r * IN + i] = 0;
                        for (int64_t o = 0; o < OUT; o++) gx[r * IN + i] += hw[o * IN + i];
                    }
                for (int64_t o = 0; o < OUT; o++) {
                    gb[o] = (double)R;
                    for (int64_t i = 0; i < IN; i++) {
                        gw[o * IN + i] = 0;
                        for (int64_t r = 0; r < R; r++) gw[o * IN + i] += hx[r * IN + i];
                    }
                }
                cmp(tg_grad(x), gx, R * IN, tol_of(dt));
                cmp(tg_grad(w), gw, OUT * IN, tol_of(dt));
                if (b) cmp(tg_grad(b), gb, OUT, tol_of(dt));
            }
            free(hx);
            free(hw);
            free(hb);
            tg_ctx_free(c);
        }
}
END_TEST

/* ---- pooling ------------------------------------------------------------ */

typedef struct {
    int64_t N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw;
    bool inc;
} pspec;

static tg_pool2d_opts popts_of(const pspec *s)
{
    tg_pool2d_opts o = tg_pool2d_defaults();
    o.kernel[0] = s->kh;
    o.kernel[1] = s->kw;
    o.stride[0] = s->sh;
    o.stride[1] = s->sw;
    o.padding[0] = s->ph;
    o.padding[1] = s->pw;
    o.dilation[0] = s->dh;
    o.dilation[1] = s->dw;
    o.count_include_pad = s->inc;
    return o;
}

/* N C H W kh kw sh sw ph pw dh dw count_include_pad (stride 0: kernel) */
static const pspec pool_cases[] = {
    {2, 3, 6, 6, 2, 2, 0, 0, 0, 0, 1, 1, true},  {2, 2, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, true},
    {2, 2, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, false}, {1, 3, 8, 7, 3, 2, 1, 2, 1, 1, 1, 1, false},
    {1, 2, 7, 7, 2, 3, 1, 2, 1, 1, 2, 2, true}, /* dilation: max only */
    /* 2x2 windows over an odd height: the 2x2 kernel's path for planes
     * that are not whole row pairs (case 0 is the other) */
    {2, 3, 7, 6, 2, 2, 0, 0, 0, 0, 1, 1, true},
};
#define N_POOL_CASES ((int)(sizeof pool_cases / sizeof pool_cases[0]))

/* max (or avg, or avg excluding pad) of each window; idx gets arg maxes */
static double *ref_pool(const pspec *s, const double *x, bool is_max, int64_t *idx, int64_t *oh,
                        int64_t *ow)
{
    int64_t sh = s->sh ? s->sh : s->kh, sw = s->sw ? s->sw : s->kw;
    int64_t OH = osz(s->H, s->kh, sh, s->ph, s->dh), OW = osz(s->W, s->kw, sw, s->pw, s->dw);
    double *y = calloc((size_t)(s->N * s->C * OH * OW), sizeof *y);
    for (int64_t pl = 0; pl < s->N * s->C; pl++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                double best = -INFINITY, sum = 0;
                int64_t bi = -1, cnt = 0;
                for (int64_t p = 0; p < s->kh; p++)
                    for (int64_t q = 0; q < s->kw; q++) {
                        int64_t ih = i * sh - s->ph + p * s->dh, iw = j * sw - s->pw + q * s->dw;
                        if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                        double v = x[(pl * s->H + ih) * s->W + iw];
                        if (bi < 0 || v > best) best = v, bi = ih * s->W + iw;
                        sum += v;
                        cnt++;
                    }
                int64_t o = (pl * OH + i) * OW + j;
                if (is_max) {
                    y[o] = best;
                    if (idx) idx[o] = bi;
                } else {
                    y[o] = sum / (double)(s->inc ? s->kh * s->kw : cnt);
                }
            }
    *oh = OH;
    *ow = OW;
    return y;
}

/* _i: case * 4 + (dtype, strided) */
START_TEST(test_max_pool2d)
{
    const pspec *s = &pool_cases[_i / 4];
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    tg_ctx *c = tu_ctx();
    double *hx;
    tg_tensor *x = mk(c, dt, 4, (const int64_t[]){s->N, s->C, s->H, s->W}, 5, &hx);
    if (_i & 2) x = strided(c, x);
    tg_pool2d_opts o = popts_of(s);
    tg_tensor *idx;
    tg_tensor *y = tg_max_pool2d_with_indices(c, x, &o, &idx);
    tu_assert_ok(c);
    int64_t OH, OW, n = s->N * s->C;
    int64_t *ridx = malloc((size_t)(n * 64) * sizeof *ridx);
    double *ref = ref_pool(s, hx, true, ridx, &OH, &OW);
    n *= OH * OW;
    cmp(y, ref, n, 0);
    cmp(tg_max_pool2d(c, x, &o), ref, n, 0);
    int64_t *gi = malloc((size_t)n * sizeof *gi);
    ck_assert_int_eq(tg_tensor_dtype(idx), TG_I64);
    ck_assert_int_eq(tg_copy_out(idx, gi, (size_t)n * sizeof *gi), TG_OK);
    for (int64_t i = 0; i < n; i++) ck_assert_int_eq(gi[i], ridx[i]);
    /* gathering by the indices gives the maxima back */
    cmp(tg_gather2d(c, x, idx), ref, n, 0);
    free(gi);
    free(ridx);
    free(ref);
    free(hx);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_avg_pool2d)
{
    const pspec *s = &pool_cases[_i / 4];
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    if (s->dh != 1) return; /* dilation: max pooling only */
    tg_ctx *c = tu_ctx();
    double *hx;
    tg_tensor *x = mk(c, dt, 4, (const int64_t[]){s->N, s->C, s->H, s->W}, 6, &hx);
    if (_i & 2) x = strided(c, x);
    tg_pool2d_opts o = popts_of(s);
    tg_tensor *y = tg_avg_pool2d(c, x, &o);
    tu_assert_ok(c);
    int64_t OH, OW;
    double *ref = ref_pool(s, hx, false, NULL, &OH, &OW);
    cmp(y, ref, s->N * s->C * OH * OW, tol_of(dt));
    free(ref);
    free(hx);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_pool_by_hand)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_reshape(c, tg_arange(c, TG_F32, 0, 16, 1), 4, (const int64_t[]){1, 1, 4, 4});
    tg_pool2d_opts o = tg_pool2d_defaults();
    o.kernel[0] = o.kernel[1] = 2;
    tu_assert_values(tg_max_pool2d(c, x, &o), 0, 5, 7, 13, 15);
    tu_assert_values(tg_avg_pool2d(c, x, &o), 0, 2.5, 4.5, 10.5, 12.5);
    tu_assert_values(tg_adaptive_avg_pool2d(c, x, 1, 1), 0, 7.5);
    /* padding 1 with count_include_pad: the corner window holds x[0,0] only */
    o.padding[0] = o.padding[1] = 1;
    o.stride[0] = o.stride[1] = 3;
    tu_assert_values(tg_avg_pool2d(c, x, &o), 0, 0.0 / 4, (2 + 3) / 4.0, (8 + 12) / 4.0,
                     (10 + 11 + 14 + 15) / 4.0);
    o.count_include_pad = false;
    tu_assert_values(tg_avg_pool2d(c, x, &o), 0, 0.0, 2.5, 10.0, 12.5);
    /* ties go to the first position in the window */
    tg_tensor *t = tg_full(c, TG_F64, 4, (const int64_t[]){1, 1, 2, 2}, 1.0);
    tg_tensor *idx;
    o = tg_pool2d_defaults();
    o.kernel[0] = o.kernel[1] = 2;
    tg_set_requires_grad(t, true);
    tg_tensor *m = tg_max_pool2d_with_indices(c, t, &o, &idx);
    tu_assert_values(idx, 0, 0);
    tu_assert_status(tg_backward(c, tg_sum(c, m)), TG_OK);
    tu_assert_values(tg_grad(t), 0, 1, 0, 0, 0);
    /* unpool adds repeated indices */
    tg_tensor *v =
        tg_tensor_from(c, TG_F64, 4, (const int64_t[]){1, 1, 1, 3}, (const double[]){1, 2, 4});
    tg_tensor *ix =
        tg_tensor_from(c, TG_I64, 4, (const int64_t[]){1, 1, 1, 3}, (const int64_t[]){3, -1, 3});
    tu_assert_values(tg_max_unpool2d(c, v, ix, 2, 2), 0, 0, 0, 0, 5);
    tu_assert_values(tg_gather2d(c,
                                 tg_reshape(c, tg_arange(c, TG_F64, 10, 14, 1), 4,
                                            (const int64_t[]){1, 1, 2, 2}),
                                 ix),
                     0, 13, 0, 13);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* adaptive windows [floor(i H / oh), ceil((i+1) H / oh)) */
START_TEST(test_adaptive_avg_pool2d)
{
    static const int64_t cases[][4] = {{5, 7, 3, 2}, {6, 6, 1, 1}, {3, 4, 5, 6}, {8, 8, 4, 4}};
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < 4; t++) {
            tg_dtype dt = (t & 1) ? TG_F64 : TG_F32;
            int64_t H = cases[k][0], W = cases[k][1], OH = cases[k][2], OW = cases[k][3];
            tg_ctx *c = tu_ctx();
            double *hx;
            tg_tensor *x = mk(c, dt, 4, (const int64_t[]){2, 3, H, W}, 7, &hx);
            if (t & 2) x = strided(c, x);
            tg_tensor *y = tg_adaptive_avg_pool2d(c, x, OH, OW);
            tu_assert_ok(c);
            double *ref = malloc((size_t)(6 * OH * OW) * sizeof *ref);
            for (int64_t pl = 0; pl < 6; pl++)
                for (int64_t i = 0; i < OH; i++)
                    for (int64_t j = 0; j < OW; j++) {
                        int64_t h0 = i * H / OH, h1 = ((i + 1) * H + OH - 1) / OH;
                        int64_t w0 = j * W / OW, w1 = ((j + 1) * W + OW - 1) / OW;
                        double sum = 0;
                        for (int64_t h = h0; h < h1; h++)
                            for (int64_t w = w0; w < w1; w++) sum += hx[(pl * H + h) * W + w];
                        ref[(pl * OH + i) * OW + j] = sum / (double)((h1 - h0) * (w1 - w0));
                    }
            cmp(y, ref, 6 * OH * OW, tol_of(dt));
            free(ref);
            free(hx);
            tg_ctx_free(c);
        }
}
END_TEST

/* the pooling gradient kernels are the adjoints of the poolings:
 * <pool(x), d> == <x, pool_input_grad(d)> */
START_TEST(test_pool_adjoints)
{
    for (int k = 0; k < N_POOL_CASES; k++) {
        const pspec *s = &pool_cases[k];
        tg_ctx *c = tu_ctx();
        double *hx, *hd;
        tg_tensor *x = mk(c, TG_F64, 4, (const int64_t[]){s->N, s->C, s->H, s->W}, 8, &hx);
        tg_pool2d_opts o = popts_of(s);
        if (s->dh == 1) {
            tg_tensor *y = tg_avg_pool2d(c, x, &o);
            ck_assert_ptr_nonnull(y);
            tg_tensor *d = mk(c, TG_F64, 4, tg_shape(y), 9, &hd);
            double l = tg_item(tg_sum(c, tg_mul(c, y, d)));
            double r =
                tg_item(tg_sum(c, tg_mul(c, x, tg_avg_pool2d_input_grad(c, d, s->H, s->W, &o))));
            ck_assert_close(l, r, 1e-12 * (1 + fabs(l)));
            free(hd);
        }
        tg_tensor *ya = tg_adaptive_avg_pool2d(c, x, 3, 2);
        tg_tensor *da = mk(c, TG_F64, 4, tg_shape(ya), 10, &hd);
        double l = tg_item(tg_sum(c, tg_mul(c, ya, da)));
        double r =
            tg_item(tg_sum(c, tg_mul(c, x, tg_adaptive_avg_pool2d_input_grad(c, da, s->H, s->W))));
        ck_assert_close(l, r, 1e-12 * (1 + fabs(l)));
        tu_assert_ok(c);
        free(hd);
        free(hx);
        tg_ctx_free(c);
    }
}
END_TEST

/* ---- errors -------------------------------------------------------------- */

static void expect_err(tg_ctx *c, tg_tensor *y, tg_status want, const char *needle)
{
    ck_assert_ptr_null(y);
    tu_assert_status(tg_ctx_status(c), want);
    ck_assert_msg(strstr(tg_ctx_errmsg(c), needle) != NULL, "message \"%s\" lacks \"%s\"",
                  tg_ctx_errmsg(c), needle);
    tg_ctx_clear_error(c);
}

START_TEST(test_conv_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){2, 3, 8, 8});
    tg_tensor *w = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){4, 2, 3, 3});
    tg_tensor *w3 = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){4, 3, 3, 3});
    tg_tensor *wd = tg_tensor_new(c, TG_F64, 4, (const int64_t[]){4, 3, 3, 3});
    expect_err(c, tg_conv2d(c, x, w, NULL, NULL), TG_ERR_SHAPE,
               "tg_conv2d: x [2,3,8,8] w [4,2,3,3]: in channels 3 != 2 * groups 1");
    expect_err(c, tg_conv2d(c, x, wd, NULL, NULL), TG_ERR_DTYPE, "tg_conv2d");
    expect_err(c, tg_conv2d(c, NULL, w3, NULL, NULL), TG_ERR_INVALID, "tg_conv2d");
    tg_tensor *big = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){4, 3, 9, 3});
    expect_err(c, tg_conv2d(c, x, big, NULL, NULL), TG_ERR_SHAPE, "output size 0x6 <= 0");
    tg_conv2d_opts o = tg_conv2d_defaults();
    o.stride[1] = 0;
    expect_err(c, tg_conv2d(c, x, w3, NULL, &o), TG_ERR_INVALID, "stride 0");
    o = tg_conv2d_defaults();
    o.padding[0] = -1;
    expect_err(c, tg_conv2d(c, x, w3, NULL, &o), TG_ERR_INVALID, "padding -1");
    o = tg_conv2d_defaults();
    o.groups = 3;
    tg_tensor *w1 = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){4, 1, 3, 3});
    expect_err(c, tg_conv2d(c, x, w1, NULL, &o), TG_ERR_SHAPE,
               "out channels 4 not divisible by groups 3");
    tg_tensor *b5 = tg_tensor_new(c, TG_F32, 1, (const int64_t[]){5});
    expect_err(c, tg_conv2d(c, x, w3, b5, NULL), TG_ERR_SHAPE, "bias must be [4]");
    tg_tensor *x3 = tg_tensor_new(c, TG_F32, 3, (const int64_t[]){2, 3, 8});
    expect_err(c, tg_conv2d(c, x3, w3, NULL, NULL), TG_ERR_SHAPE, "need 4-d x");
    /* conv1d */
    tg_tensor *k1 = tg_tensor_new(c, TG_F32, 3, (const int64_t[]){4, 2, 3});
    expect_err(c, tg_conv1d(c, x3, k1, NULL, NULL), TG_ERR_SHAPE,
               "tg_conv1d: x [2,3,8] w [4,2,3]: in channels 3 != 2 * groups 1");
    tg_tensor *k9 = tg_tensor_new(c, TG_F32, 3, (const int64_t[]){4, 3, 9});
    expect_err(c, tg_conv1d(c, x3, k9, NULL, NULL), TG_ERR_SHAPE, "<= 0");
    /* gradient kernels */
    tg_tensor *d = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){2, 4, 6, 6});
    expect_err(c, tg_conv2d_input_grad(c, d, w3, 9, 9, NULL), TG_ERR_SHAPE,
               "input 9x9 gives output 7x7, not 6x6");
    expect_err(c, tg_conv2d_input_grad(c, d, w3, 0, 8, NULL), TG_ERR_INVALID, "out of range");
    expect_err(c, tg_conv2d_weight_grad(c, x, d, 2, 3, NULL), TG_ERR_SHAPE,
               "kernel 2x3 gives output 7x6, not 6x6");
    tg_tensor *d1 = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){1, 4, 6, 6});
    expect_err(c, tg_conv2d_weight_grad(c, x, d1, 3, 3, NULL), TG_ERR_SHAPE, "batch 2 != dout's 1");
    /* sticky: a held error makes every op return NULL */
    tg_conv2d(c, x, w, NULL, NULL);
    ck_assert_ptr_null(tg_conv2d(c, x, w3, NULL, NULL));
    tg_ctx_clear_error(c);
    ck_assert_ptr_nonnull(tg_conv2d(c, x, w3, NULL, NULL));
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_outer_errors)
{
    /* tg_linear's checks: test_linear_family_errors */
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){3, 4});
    tg_tensor *b = tg_tensor_new(c, TG_F32, 1, (const int64_t[]){4});
    expect_err(c, tg_outer(c, x, b), TG_ERR_SHAPE,
               "tg_outer: [3,4] and [4]: both operands must be 1-d");
    tg_ctx_free(c);
}
END_TEST

/* t's n elements, row-major, as doubles into out. */
static void host_of(const tg_tensor *t, double *out, int64_t n)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_numel(t), n);
    if (tg_tensor_dtype(t) == TG_F64) {
        ck_assert_int_eq(tg_copy_out(t, out, (size_t)n * sizeof *out), TG_OK);
        return;
    }
    float f[128];
    ck_assert_int_le(n, 128);
    ck_assert_int_eq(tg_copy_out(t, f, (size_t)n * sizeof *f), TG_OK);
    for (int64_t i = 0; i < n; i++) out[i] = f[i];
}

/* tg_linear_add against tg_linear + tg_add: values and every gradient, for
 * an addend that is a strided time-step view (the RNN's use), a
 * broadcast row, with and without bias (strided in f64), f32 and f64; then
 * its errors. */
START_TEST(test_linear_add)
{
    for (int t = 0; t < 8; t++) {
        tg_dtype dt = (t & 1) ? TG_F64 : TG_F32;
        bool bias = (t & 2) == 0, bcast = (t & 4) != 0;
        tg_ctx *c = tu_ctx();
        double *h;
        tg_tensor *x = mk(c, dt, 2, (const int64_t[]){4, 3}, 1, &h);
        free(h);
        tg_tensor *w = mk(c, dt, 2, (const int64_t[]){6, 3}, 2, &h);
        free(h);
        /* f64's bias is every other element of a [12] leaf (stride 2) */
        tg_tensor *bsrc = bias ? mk(c, dt, 1, (const int64_t[]){dt == TG_F64 ? 12 : 6}, 3, &h)
                               : NULL;
        if (bsrc) free(h);
        /* addend: step 2 of a [4, 5, 6] sequence (row stride 30), or [6] */
        tg_tensor *seq = mk(c, dt, bcast ? 1 : 3, bcast ? (const int64_t[]){6}
                                                        : (const int64_t[]){4, 5, 6}, 4, &h);
        free(h);
        tg_tensor *leaves[4] = {x, w, seq, bsrc};
        for (int i = 0; i < (bias ? 4 : 3); i++) tg_set_requires_grad(leaves[i], true);
        tg_tensor *b = bsrc && dt == TG_F64 ? tg_slice(c, bsrc, 0, 0, 12, 2) : bsrc;
        tg_tensor *ad = bcast ? seq : tg_squeeze(c, tg_slice(c, seq, 1, 2, 3, 1), 1);
        tg_tensor *y = tg_linear_add(c, x, w, b, ad);
        tg_tensor *ref = tg_add(c, tg_linear(c, x, w, b), ad);
        tu_assert_ok(c);
        ck_assert_int_eq(tg_tensor_op(y), TG_OP_LINEAR_ADD);
        double r[24];
        ck_assert_int_eq(tg_numel(ref), 24);
        host_of(ref, r, 24);
        cmp(y, r, 24, tol_of(dt));
        /* gradients of sum(y * y) (dout not constant) without a graph */
        tg_tensor *gy[4], *gr[4];
        tu_assert_status(tg_grad_of(c, 1, &(tg_tensor *){tg_sum(c, tg_mul(c, y, y))}, NULL,
                                    bias ? 4 : 3, leaves, false, gy),
                         TG_OK);
        tu_assert_status(tg_grad_of(c, 1, &(tg_tensor *){tg_sum(c, tg_mul(c, ref, ref))}, NULL,
                                    bias ? 4 : 3, leaves, false, gr),
                         TG_OK);
        for (int i = 0; i < (bias ? 4 : 3); i++) {
            int64_t n = tg_numel(gr[i]);
            double g[128];
            ck_assert_int_le(n, 128);
            host_of(gr[i], g, n);
            cmp(gy[i], g, n, tol_of(dt));
        }
        /* tg_backward: the deferred leaf gradients land in .grad */
        tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
        for (int i = 0; i < (bias ? 4 : 3); i++) {
            int64_t n = tg_numel(gr[i]);
            double g[128];
            host_of(gr[i], g, n);
            cmp(tg_grad(leaves[i]), g, n, tol_of(dt));
        }
        tg_ctx_free(c);
    }

    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){3, 4});
    tg_tensor *w = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){5, 4});
    tg_tensor *a35 = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){3, 5});
    expect_err(c, tg_linear_add(c, x, w, NULL, NULL), TG_ERR_INVALID, "tg_linear_add: input 0");
    expect_err(c, tg_linear_add(c, x, w, NULL, tg_tensor_new(c, TG_F32, 2, (const int64_t[]){3, 4})),
               TG_ERR_SHAPE, "tg_linear_add: addend [3,4] does not broadcast to the output [3,5]");
    expect_err(c, tg_linear_add(c, x, w, NULL, tg_tensor_new(c, TG_F32, 3, (const int64_t[]){2, 3, 5})),
               TG_ERR_SHAPE, "does not broadcast");
    expect_err(c, tg_linear_add(c, x, w, NULL, tg_tensor_new(c, TG_F64, 2, (const int64_t[]){3, 5})),
               TG_ERR_DTYPE, "tg_linear_add");
    expect_err(c, tg_linear_add(c, x, tg_tensor_new(c, TG_F32, 2, (const int64_t[]){5, 3}), NULL, a35),
               TG_ERR_SHAPE, "tg_linear_add: x [3,4] W [5,3] b none: in features 4 != W's 3");
    ck_assert_ptr_nonnull(tg_linear_add(c, x, w, NULL, a35));
    tg_ctx_free(c);
}
END_TEST

/* t's bytes (malloc'ed, *nb of them) */
static void *raw_of(const tg_tensor *t, size_t *nb)
{
    ck_assert_ptr_nonnull(t);
    *nb = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
    void *p = malloc(*nb ? *nb : 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tg_copy_out(t, p, *nb), TG_OK);
    return p;
}

/* element i of n bytes of dtype dt's elements at p, as a double */
static double elem_of(const void *p, tg_dtype dt, size_t i)
{
    return dt == TG_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

/* tg_gelu_linear against tg_linear(tg_gelu(x)) on rows that take several
 * of its blocks (700 rows of 200: 327, 327 and 46), for x contiguous, a
 * column slice (row stride 256) and a transposed view, f32 and f64, with
 * and without bias, gradients of sum(y * y): the output and every gradient
 * within rounding of the two ops' (BLAS may sum a block's rows in another
 * order than one call's, and W's gradient is summed block by block), and
 * every bit the same at 1 and 3 threads. */
START_TEST(test_gelu_linear)
{
    const int64_t R = 700, IN = 200, OUT = 24;
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    int layout = (_i >> 1) % 3;
    bool bias = _i < 6;
    void *got[3][4] = {{NULL}}; /* unfused; fused at 1 thread; at 3: y, dx, dW, db */
    size_t nb[4] = {0};
    for (int run = 0; run < 3; run++) {
        tg_ctx *c = tu_ctx();
        tu_assert_status(tg_ctx_set_threads(c, run == 2 ? 3 : 1), TG_OK);
        double *h;
        tg_tensor *src = layout == 0   ? mk(c, dt, 2, (const int64_t[]){R, IN}, 1, &h)
                         : layout == 1 ? mk(c, dt, 2, (const int64_t[]){R, 256}, 1, &h)
                                       : mk(c, dt, 2, (const int64_t[]){IN, R}, 1, &h);
        free(h);
        tg_tensor *w = mk(c, dt, 2, (const int64_t[]){OUT, IN}, 2, &h);
        free(h);
        tg_tensor *b = bias ? mk(c, dt, 1, (const int64_t[]){OUT}, 3, &h) : NULL;
        if (b) free(h);
        tg_set_requires_grad(src, true);
        tg_set_requires_grad(w, true);
        if (b) tg_set_requires_grad(b, true);
        tg_tensor *x = layout == 0   ? src
                       : layout == 1 ? tg_slice(c, src, 1, 0, IN, 1)
                                     : tg_transpose(c, src, 0, 1);
        tg_tensor *y = run == 0 ? tg_linear(c, tg_gelu(c, x), w, b) : tg_gelu_linear(c, x, w, b);
        tu_assert_ok(c);
        ck_assert_int_eq(tg_tensor_op(y), run == 0 ? TG_OP_LINEAR : TG_OP_GELU_LINEAR);
        tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
        tg_tensor *outs[4] = {y, tg_grad(src), tg_grad(w), b ? tg_grad(b) : NULL};
        for (int k = 0; k < 4 && outs[k]; k++) got[run][k] = raw_of(outs[k], &nb[k]);
        tg_ctx_free(c);
    }
    for (int k = 0; k < 4 && got[0][k]; k++) {
        ck_assert_msg(memcmp(got[1][k], got[2][k], nb[k]) == 0,
                      "output %d differs between 1 and 3 threads", k);
        double d = 0, mag = 0;
        for (size_t i = 0; i < nb[k] / tg_dtype_size(dt); i++) {
            double u = elem_of(got[0][k], dt, i), f = elem_of(got[1][k], dt, i);
            d = fmax(d, fabs(u - f));
            mag = fmax(mag, fabs(u));
        }
        ck_assert_msg(d <= (dt == TG_F32 ? 2e-6 : 1e-14) * mag,
                      "output %d: %g off the two ops' (largest %g)", k, d, mag);
    }
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++) free(got[r][k]);
}
END_TEST

/* tg_linear_relu against tg_relu(tg_linear(x)): the output and every
 * gradient bit for bit, f32 and f64, contiguous and transposed x, with and
 * without bias, gradients of sum(y * y) with tg_backward (no graph: dout
 * masked in place, linear's jobs deferred) and with tg_grad_of's graph
 * (its errors: test_linear_family_errors). */
START_TEST(test_linear_relu)
{
    tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    bool strided_x = _i & 2, bias = _i < 4;
    void *got[2][5] = {{NULL}};
    size_t nb[5] = {0};
    for (int run = 0; run < 2; run++) { /* the two ops; the fused one */
        tg_ctx *c = tu_ctx();
        double *h;
        tg_tensor *x = mk(c, dt, 2, (const int64_t[]){40, 24}, 1, &h);
        free(h);
        tg_tensor *w = mk(c, dt, 2, (const int64_t[]){30, 24}, 2, &h);
        free(h);
        tg_tensor *b = bias ? mk(c, dt, 1, (const int64_t[]){30}, 3, &h) : NULL;
        if (b) free(h);
        tg_tensor *leaves[3] = {x, w, b};
        for (int i = 0; i < (bias ? 3 : 2); i++) tg_set_requires_grad(leaves[i], true);
        tg_tensor *xv = strided_x ? strided(c, x) : x;
        tg_tensor *y = run ? tg_linear_relu(c, xv, w, b) : tg_relu(c, tg_linear(c, xv, w, b));
        tu_assert_ok(c);
        ck_assert_int_eq(tg_tensor_op(y), run ? TG_OP_LINEAR_RELU : TG_OP_RELU);
        tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
        tg_tensor *gg[3];
        tu_assert_status(tg_grad_of(c, 1, &(tg_tensor *){tg_sum(c, tg_mul(c, y, y))}, NULL,
                                    bias ? 3 : 2, leaves, true, gg),
                         TG_OK);
        tg_tensor *outs[5] = {y, tg_grad(x), tg_grad(w), gg[0], bias ? tg_grad(b) : NULL};
        for (int k = 0; k < 5 && outs[k]; k++) got[run][k] = raw_of(outs[k], &nb[k]);
        tg_ctx_free(c);
    }
    for (int k = 0; k < 5 && got[0][k]; k++)
        ck_assert_msg(memcmp(got[0][k], got[1][k], nb[k]) == 0, "output %d differs", k);
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 5; k++) free(got[r][k]);
}
END_TEST

/* The errors and edge cases tg_linear, tg_linear_relu and tg_gelu_linear
 * share (_i picks the op): shapes that do not fit, a bias of another
 * dtype, NULL inputs, an integer x; zeros in give zeros out, and empty
 * rows or an empty inner dimension give the bias alone (relu and gelu
 * leave 0 and 2 as they are). */
typedef tg_tensor *(*linear_fn)(tg_ctx *, tg_tensor *, tg_tensor *, tg_tensor *);
static const struct {
    const char *name;
    linear_fn fn;
} linear_family[] = {
    {"tg_linear", tg_linear},
    {"tg_linear_relu", tg_linear_relu},
    {"tg_gelu_linear", tg_gelu_linear},
};

START_TEST(test_linear_family_errors)
{
    const char *name = linear_family[_i].name;
    const linear_fn op = linear_family[_i].fn;
    char msg[128];
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){3, 4});
    tg_tensor *w = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){5, 3});
    snprintf(msg, sizeof msg, "%s: x [3,4] W [5,3] b none: in features 4 != W's 3", name);
    expect_err(c, op(c, x, w, NULL), TG_ERR_SHAPE, msg);
    tg_tensor *w4 = tg_tensor_new(c, TG_F32, 2, (const int64_t[]){5, 4});
    expect_err(c, op(c, x, w4, tg_tensor_new(c, TG_F32, 1, (const int64_t[]){4})), TG_ERR_SHAPE,
               "bias must be [5]");
    expect_err(c, op(c, x, w4, tg_tensor_new(c, TG_F64, 1, (const int64_t[]){5})), TG_ERR_DTYPE,
               name);
    expect_err(c, op(c, x, NULL, NULL), TG_ERR_INVALID, name);
    expect_err(c, op(c, NULL, w4, NULL), TG_ERR_INVALID, name);
    tg_tensor *xi = tg_tensor_new(c, TG_I64, 2, (const int64_t[]){3, 4});
    expect_err(c, op(c, xi, w4, NULL), TG_ERR_DTYPE, name);
    tg_tensor *y = op(c, x, w4, NULL); /* zeros in, zeros out */
    ck_assert_ptr_nonnull(y);
    ck_assert_double_eq(tg_get(y, (const int64_t[]){2, 4}), 0.0);
    /* empty rows and an empty inner dimension: the bias alone, or zeros */
    tg_tensor *b5 = tg_full(c, TG_F32, 1, (const int64_t[]){5}, 2.0);
    y = op(c, tg_tensor_new(c, TG_F32, 2, (const int64_t[]){3, 0}),
           tg_tensor_new(c, TG_F32, 2, (const int64_t[]){5, 0}), b5);
    ck_assert_ptr_nonnull(y);
    ck_assert_double_eq(tg_get(y, (const int64_t[]){1, 3}), 2.0);
    ck_assert_int_eq(tg_numel(op(c, tg_tensor_new(c, TG_F32, 2, (const int64_t[]){0, 4}), w4, b5)),
                     0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_pool_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){1, 2, 4, 4});
    tg_pool2d_opts o = tg_pool2d_defaults();
    expect_err(c, tg_max_pool2d(c, x, &o), TG_ERR_INVALID, "kernel height 0");
    expect_err(c, tg_max_pool2d(c, x, NULL), TG_ERR_INVALID, "options are NULL");
    o.kernel[0] = o.kernel[1] = 2;
    o.padding[1] = 2;
    expect_err(c, tg_avg_pool2d(c, x, &o), TG_ERR_INVALID,
               "padding width 2 must be in [0, kernel 2 / 2]");
    o.padding[1] = 0;
    o.dilation[0] = 2;
    expect_err(c, tg_avg_pool2d(c, x, &o), TG_ERR_INVALID, "not supported");
    o.kernel[0] = o.kernel[1] = 5;
    o.dilation[0] = 1;
    expect_err(c, tg_max_pool2d(c, x, &o), TG_ERR_SHAPE, "output size 0x0 <= 0");
    tg_tensor *x3 = tg_tensor_new(c, TG_F32, 3, (const int64_t[]){2, 4, 4});
    o.kernel[0] = o.kernel[1] = 2;
    expect_err(c, tg_max_pool2d(c, x3, &o), TG_ERR_SHAPE, "tg_max_pool2d: x [2,4,4]: need a 4-d");
    expect_err(c, tg_adaptive_avg_pool2d(c, x, 0, 1), TG_ERR_INVALID, "output size 0x1");
    tg_tensor *d = tg_tensor_new(c, TG_F32, 4, (const int64_t[]){1, 2, 2, 2});
    expect_err(c, tg_avg_pool2d_input_grad(c, d, 6, 6, &o), TG_ERR_SHAPE, "gives output 3x3");
    tg_tensor *ix = tg_tensor_from(c, TG_I64, 4, (const int64_t[]){1, 2, 2, 2},
                                   (const int64_t[]){0, 1, 2, 16, 0, 0, 0, 0});
    expect_err(c, tg_max_unpool2d(c, d, ix, 4, 4), TG_ERR_INVALID,
               "index 16 at position 3 outside [-1, 16)");
    expect_err(c, tg_gather2d(c, x, ix), TG_ERR_INVALID, "index 16");
    expect_err(c, tg_max_unpool2d(c, d, d, 4, 4), TG_ERR_DTYPE, "indices must be i64");
    tg_tensor *ix2 = tg_tensor_new(c, TG_I64, 4, (const int64_t[]){1, 2, 2, 3});
    expect_err(c, tg_max_unpool2d(c, d, ix2, 4, 4), TG_ERR_SHAPE, "differ in shape");
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---- threads -------------------------------------------------------------- */

/* conv2d forward and backward, and pooling, give the same bytes with 1 and
 * 4 threads on inputs big enough to be split. */
START_TEST(test_conv_threads)
{
    float *ref[6] = {NULL};
    int64_t len[6] = {0};
    for (int th = 1; th <= 4; th += 3) {
        tg_ctx *c = tu_ctx();
        tu_assert_status(tg_ctx_set_threads(c, th), TG_OK);
        double *hx, *hw;
        tg_tensor *x = mk(c, TG_F32, 4, (const int64_t[]){4, 8, 24, 24}, 1, &hx);
        tg_tensor *w = mk(c, TG_F32, 4, (const int64_t[]){16, 4, 3, 3}, 2, &hw);
        tg_set_requires_grad(x, true);
        tg_set_requires_grad(w, true);
        tg_conv2d_opts o = tg_conv2d_defaults();
        o.padding[0] = o.padding[1] = 1;
        o.groups = 2;
        tg_pool2d_opts p = tg_pool2d_defaults();
        p.kernel[0] = p.kernel[1] = 3;
        p.stride[0] = p.stride[1] = 2;
        p.padding[0] = p.padding[1] = 1;
        tg_tensor *y = tg_conv2d(c, x, w, NULL, &o);
        tg_tensor *m = tg_max_pool2d(c, y, &p), *a = tg_avg_pool2d(c, y, &p);
        tg_tensor *loss = tg_add(c, tg_sum(c, tg_mul(c, m, m)), tg_sum(c, tg_mul(c, a, a)));
        tu_assert_status(tg_backward(c, loss), TG_OK);
        tg_tensor *outs[6] = {y, m, a, tg_grad(x), tg_grad(w), tg_adaptive_avg_pool2d(c, y, 5, 5)};
        for (int k = 0; k < 6; k++) {
            int64_t n = tg_numel(outs[k]);
            float *buf = malloc((size_t)n * sizeof *buf);
            ck_assert_int_eq(tg_copy_out(outs[k], buf, (size_t)n * sizeof *buf), TG_OK);
            if (th == 1) {
                ref[k] = buf;
                len[k] = n;
            } else {
                ck_assert_int_eq(n, len[k]);
                ck_assert_msg(memcmp(buf, ref[k], (size_t)n * sizeof *buf) == 0,
                              "output %d differs between 1 and 4 threads", k);
                free(buf);
            }
        }
        free(hx);
        free(hw);
        tg_ctx_free(c);
    }
    for (int k = 0; k < 6; k++) free(ref[k]);
}
END_TEST

Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tu_tcase("forward");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_conv2d_forward, 0, 4 * N_CONV_CASES);
    tcase_add_loop_test(tc, test_conv2d_grad_kernels, 0, 2 * N_CONV_CASES);
    tcase_add_test(tc, test_conv2d_by_hand);
    tcase_add_test(tc, test_conv1d);
    tcase_add_test(tc, test_outer);
    tcase_add_test(tc, test_linear);
    tcase_add_loop_test(tc, test_max_pool2d, 0, 4 * N_POOL_CASES);
    tcase_add_loop_test(tc, test_avg_pool2d, 0, 4 * N_POOL_CASES);
    tcase_add_test(tc, test_pool_by_hand);
    tcase_add_test(tc, test_adaptive_avg_pool2d);
    tcase_add_test(tc, test_pool_adjoints);
    suite_add_tcase(s, tc);

    tc = tu_tcase("errors");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_conv_errors);
    tcase_add_test(tc, test_outer_errors);
    tcase_add_test(tc, test_linear_add);
    tcase_add_loop_test(tc, test_gelu_linear, 0, 12);
    tcase_add_loop_test(tc, test_linear_family_errors, 0, 3);
    tcase_add_loop_test(tc, test_linear_relu, 0, 8);
    tcase_add_test(tc, test_pool_errors);
    suite_add_tcase(s, tc);

    tc = tu_tcase("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conv_threads);
    suite_add_tcase(s, tc);
    return s;
}
