/*
 * fastmath.h - branch-free f32 exp, sigmoid, tanh and the normal tail
 * Phi(-|x|) that a compiler can vectorise (glibc's expf / tanhf / erfcf are
 * calls that cannot be), for the fused kernels (the LSTM cell, attention's
 * softmax, gelu). Library-internal.
 *
 * Accuracy: exp, sigmoid and tanh within 3 ulp of the correctly rounded
 * result over every finite float, the normal tail within 8 ulp (tests/
 * test_nn.c checks dense sweeps against the double functions),
 * NaN in gives NaN out, exp overflows to +inf and underflows gradually.
 * f64 keeps libm: these exist only for float.
 *
 * exp is Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split
 * of ln2 so n * ln2_hi is exact), a degree-7 polynomial for exp(r), and the
 * scale 2^n applied as two factors 2^(n/2) 2^(n - n/2) built from their bits
 * so that n from -150 to 128 needs no branch. No fmaf: without -mfma it is
 * a library call.
 *
 * Speed: a vectorised loop of these is bound by the latency of its longest
 * chain of dependent operations, not by their number (the out-of-order
 * window holds too few iterations to overlap them), so the polynomials run
 * mostly in Estrin's scheme (independent products of powers of r), and no
 * product is left to underflow where the result is a chosen 0 (a denormal
 * result costs a microcode assist of ~100 cycles for the whole vector).
 * Measured against the double functions over every float (every 3rd bit
 * pattern with |x| <= 16 for the tail and gelu): exp within 1.02 ulp,
 * sigmoid 2.84, tanh 1.33, the tail 7.21 and gelu 7.32 (Horner's
 * everywhere: 0.98, 2.72, 1.33, 7.20, 7.31 over every 7th float).
 */
#ifndef TG_OPS_FASTMATH_H
#define TG_OPS_FASTMATH_H

#include "../core/core_impl.h" /* TG__VEC_CLONES */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline float tg__f32_from_bits(int32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline int32_t tg__f32_bits(float f)
{
    int32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* A row sum in double as TG__NSUM partial sums over interleaved elements
 * (a[k] += x[m + k]), a loop GCC vectorises, added up here in a fixed
 * order: the same bits whatever the thread count. */
#define TG__NSUM 8
static inline double tg__sum_parts(const double *a)
{
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* c ? a : b by bit masks (m = -(int32_t)c: all ones or zero). Every value
 * is computed before it is chosen, so GCC vectorises the loops without
 * -fno-trapping-math (it will not speculate a float op out of a branch). */
static inline float tg__f32_sel(int32_t m, float a, float b)
{
    return tg__f32_from_bits((tg__f32_bits(a) & m) | (tg__f32_bits(b) & ~m));
}

/* p with e^x = p 2^n, for x in [-104, 89] (not NaN): n = round(x / ln2)
 * by the 1.5 * 2^23 trick (round to nearest even), r = x - n ln2 in two
 * steps, p = e^r by Cephes' polynomial evaluated in Estrin's scheme: about
 * half of Horner's chain of dependent operations, which is what bounds a
 * vectorised loop of these (the out-of-order window cannot hold enough
 * iterations to hide Horner's latency). */
static inline float tg__exp_parts(float xc, int32_t *n)
{
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float fn = t - 12582912.0f;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float r2 = r * r, r4 = r2 * r2;
    float q0 = 5.0000001201e-1f + 1.6666665459e-1f * r;
    float q1 = 4.1665795894e-2f + 8.3334519073e-3f * r;
    float q2 = 1.3981999507e-3f + 1.9875691500e-4f * r;
    float p = (q0 + q1 * r2) + q2 * r4;
    *n = (int32_t)fn;
    return p * r2 + r + 1.0f;
}

/* e^x */
static inline float tg__expf(float x)
{
    /* below -104, e^x < 2^-150 rounds to 0: chosen, not computed, as an
     * underflowing product costs a microcode assist (~100 cycles for the
     * whole vector: softmax rows padded with -inf hit it every row); the
     * clamp at 89 keeps n <= 128, where the scale overflows to inf exactly
     * as the true value does */
    const int32_t lo = -(int32_t)(x < -104.0f);
    float xc = tg__f32_sel(lo, 0.0f, x);
    xc = tg__f32_sel(-(int32_t)(xc > 89.0f), 89.0f, xc);
    xc = tg__f32_sel(-(int32_t)(x != x), 0.0f, xc); /* NaN: no float-to-int of NaN below */
    int32_t n;
    float p = tg__exp_parts(xc, &n);
    int32_t n1 = n / 2, n2 = n - n1; /* n in [-150, 128]: two normal factors */
    float y = p * tg__f32_from_bits((int32_t)((uint32_t)(n1 + 127) << 23)) *
              tg__f32_from_bits((int32_t)((uint32_t)(n2 + 127) << 23));
    y = tg__f32_sel(lo, 0.0f, y);
    return tg__f32_sel(-(int32_t)(x != x), x, y);
}

/* e^x for x <= 1, 0 for a NaN x (the callers' other factors carry the
 * NaN: gelu's tail, its gradient). Two selects instead of tg__expf's five,
 * and one scale factor: n is in [-150, 1], so 2^n = 2^(n + 64) 2^-64,
 * where p 2^(n + 64) is exact and the second product rounds once, as
 * tg__expf's two factors do: tg__expf's bits for every x <= 1. */
static inline float tg__exp_le1f(float x)
{
    const int32_t lo = -(int32_t)!(x >= -104.0f); /* or NaN; 0, as in tg__expf */
    int32_t n;
    const float p = tg__exp_parts(tg__f32_sel(lo, 0.0f, x), &n);
    const float y = p * tg__f32_from_bits((int32_t)((uint32_t)(n + 64 + 127) << 23)) * 0x1p-64f;
    return tg__f32_sel(lo, 0.0f, y);
}

/* 1 / (1 + e^-x), as e^x / (1 + e^x) for x < 0 so small results keep
 * their relative accuracy */
static inline float tg__sigmoidf(float x)
{
    float a = tg__f32_from_bits(tg__f32_bits(x) & 0x7fffffff);
    float e = tg__expf(-a);
    float q = 1.0f / (1.0f + e);
    float eq = e * q;
    return tg__f32_sel(-(int32_t)(tg__f32_bits(x) < 0), eq, q);
}

/* tanh x: Cephes' odd polynomial below |x| = 0.625 (tg__tanhf_small),
 * 1 - 2 / (e^2|x| + 1) above (tg__tanhf_big; no cancellation there: the
 * result is at least 0.55). tg__tanhf evaluates both and selects, so it
 * vectorises; a scalar caller may branch on tg__tanhf_is_small instead
 * and evaluate one, for the same bits. */
static inline bool tg__tanhf_is_small(float x)
{
    return tg__f32_from_bits(tg__f32_bits(x) & 0x7fffffff) < 0.625f; /* false for NaN */
}
static inline float tg__tanhf_small(float x)
{
    float z = x * x;
    float s = -5.70498872745e-3f;
    s = s * z + 2.06390887954e-2f;
    s = s * z - 5.37397155531e-2f;
    s = s * z + 1.33314422036e-1f;
    s = s * z - 3.33332819422e-1f;
    return s * z * x + x;
}
static inline float tg__tanhf_big(float x)
{
    float a = tg__f32_from_bits(tg__f32_bits(x) & 0x7fffffff);
    float big = 1.0f - 2.0f / (tg__expf(a + a) + 1.0f);
    return tg__f32_from_bits(tg__f32_bits(big) | (tg__f32_bits(x) & INT32_MIN));
}
static inline float tg__tanhf(float x)
{
    return tg__f32_sel(-(int32_t)tg__tanhf_is_small(x), tg__tanhf_small(x), tg__tanhf_big(x));
}

/* k Phi(-|x|) = k erfc(|x| / sqrt 2) / 2: the lower tail of the standard
 * normal distribution, times k (gelu passes k = x), within 8 ulp where the
 * result is a normal float (tests/test_nn.c sweeps it against double
 * erfc); NaN gives NaN, |x| = inf gives k * 0. tg__phi_lowerf(x, k) is
 * tg__phi_lower_fin(tg__phi_lower_arg(x, k, &e, &pre), e, pre): a kernel
 * that runs the two halves as two loops over a block of elements halves
 * the chain of dependent operations per iteration (gelu: 10-20% less time).
 *
 * One form for the whole line, so there is nothing to select: with
 * t = 1 / (1 + |x| / 4), erfc(|x| / sqrt 2) = t e^(P(t) - x^2 / 2), P a
 * degree-10 polynomial in t - 0.61 (a weighted least-squares fit of
 * log(erfc(|x| / sqrt 2) e^(x^2 / 2) / t) for |x| in [0, 15], float
 * coefficients, fit error 2.1e-8; Numerical Recipes' erfcc has this
 * shape). t takes two roundings, x / 4 none. The exponent keeps the low
 * bits of x^2 / 2, whose rounding would cost up to x^2 / 2 ulp: x = xh + xl
 * with xh of 12 significant bits, so xh^2 / 2 is exact, x^2 / 2 = xh^2 / 2
 * + xl (xh + x) / 2, and the rounding error e of P - x^2 / 2 (Knuth's
 * TwoSum) multiplies the result as 1 + e. k multiplies before the
 * exponential, so a result near the underflow threshold is rounded once.
 * |x| is clamped at 16, where the result has long underflowed. */
static inline float tg__phi_lower_arg(float x, float k, float *e_, float *pre)
{
    float a = tg__f32_from_bits(tg__f32_bits(x) & 0x7fffffff);
    a = tg__f32_sel(-(int32_t)(a > 16.0f), 16.0f, a); /* NaN passes through */
    const float t = 1.0f / (1.0f + 0.25f * a);
    /* P(u) = c0 + u (c1 + u (c2 + u H(u))), H = c3 + c4 u + ... + c10 u^7
     * in Estrin's scheme (see exp), the last three steps Horner's: a full
     * Estrin P rounds its large low-order terms less well (8.1 ulp) */
    const float u = t - 0.61f, u2 = u * u, u4 = u2 * u2;
    const float h0 = -1.269308329e-01f - 4.905351698e-01f * u;
    const float h1 = -1.203971207e-01f + 3.763998449e-01f * u;
    const float h2 = 2.153260559e-01f - 2.970757186e-01f * u;
    const float h3 = -1.897090822e-01f + 1.717668027e-01f * u;
    float p = (h0 + h1 * u2) + (h2 + h3 * u2) * u4;
    p = p * u + 7.460786104e-01f;
    p = p * u + 1.775968790e+00f;
    p = p * u - 7.875778079e-01f;
    const float ah = tg__f32_from_bits(tg__f32_bits(a) & (int32_t)0xfffff000);
    const float hi = 0.5f * (ah * ah), lo = 0.5f * ((a - ah) * (ah + a));
    /* s + e = (p - lo) - hi exactly */
    const float b = p - lo, s = b - hi, bb = s - b;
    const float e = (b - (s - bb)) + (-hi - bb);
    *e_ = e;
    *pre = (0.5f * k) * t;
    return s;
}

/* the tail from tg__phi_lower_arg's s, e and pre: e^s (1 + e) pre. s <= 1
 * (P <= 0.8); a NaN s comes with a NaN pre. */
static inline float tg__phi_lower_fin(float s, float e, float pre)
{
    return pre * (tg__exp_le1f(s) * (1.0f + e));
}

static inline float tg__phi_lowerf(float x, float k)
{
    float e, pre;
    const float s = tg__phi_lower_arg(x, k, &e, &pre);
    return tg__phi_lower_fin(s, e, pre);
}

#endif /* TG_OPS_FASTMATH_H */
