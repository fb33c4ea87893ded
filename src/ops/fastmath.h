/*
 * fastmath.h - branch-free f32 exp, sigmoid, tanh and gelu that a compiler
 * can vectorise (glibc's expf / tanhf / erfcf are calls that cannot be),
 * for the fused kernels (the LSTM cell, gelu). Library-internal.
 *
 * Accuracy: within 3 ulp of the correctly rounded result over every finite
 * float (tests/test_nn.c checks a dense sweep against the double functions),
 * NaN in gives NaN out, exp overflows to +inf and underflows gradually.
 * f64 keeps libm: these exist only for float.
 *
 * exp is Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split
 * of ln2 so n * ln2_hi is exact), a degree-7 polynomial for exp(r), and the
 * scale 2^n applied as two factors 2^(n/2) 2^(n - n/2) built from their bits
 * so that n from -150 to 128 needs no branch. No fmaf: without -mfma it is
 * a library call.
 */
#ifndef TG_OPS_FASTMATH_H
#define TG_OPS_FASTMATH_H

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

/* c ? a : b by bit masks (m = -(int32_t)c: all ones or zero). Every value
 * is computed before it is chosen, so GCC vectorises the loops without
 * -fno-trapping-math (it will not speculate a float op out of a branch). */
static inline float tg__f32_sel(int32_t m, float a, float b)
{
    return tg__f32_from_bits((tg__f32_bits(a) & m) | (tg__f32_bits(b) & ~m));
}

/* e^x */
static inline float tg__expf(float x)
{
    /* clamp so that n stays in [-150, 128]; the scale then saturates to 0
     * or inf exactly as the true value does */
    float xc = tg__f32_sel(-(int32_t)(x < -104.0f), -104.0f, x);
    xc = tg__f32_sel(-(int32_t)(xc > 89.0f), 89.0f, xc);
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest even) */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float fn = t - 12582912.0f;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    int32_t n = (int32_t)fn, n1 = n / 2, n2 = n - n1;
    float y = p * tg__f32_from_bits((n1 + 127) << 23) * tg__f32_from_bits((n2 + 127) << 23);
    return tg__f32_sel(-(int32_t)(x != x), x, y);
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

/* tanh x: Cephes' odd polynomial below |x| = 0.625, 1 - 2 / (e^2|x| + 1)
 * above (no cancellation there: the result is at least 0.55) */
static inline float tg__tanhf(float x)
{
    float a = tg__f32_from_bits(tg__f32_bits(x) & 0x7fffffff);
    float z = x * x;
    float s = -5.70498872745e-3f;
    s = s * z + 2.06390887954e-2f;
    s = s * z - 5.37397155531e-2f;
    s = s * z + 1.33314422036e-1f;
    s = s * z - 3.33332819422e-1f;
    s = s * z * x + x;
    float big = 1.0f - 2.0f / (tg__expf(a + a) + 1.0f);
    big = tg__f32_from_bits(tg__f32_bits(big) | (tg__f32_bits(x) & INT32_MIN));
    return tg__f32_sel(-(int32_t)(a < 0.625f), s, big);
}

/* e^(-x^2 / 2) without the error of rounding x^2 (which would cost up to
 * x^2 ulp): x = xh + xl with xh of 12 significant bits, so xh^2 is exact
 * and x^2 = xh^2 + xl (xh + x) */
static inline float tg__exp_half_sqf(float x)
{
    float xh = tg__f32_from_bits(tg__f32_bits(x) & (int32_t)-4096);
    float xl = x - xh;
    float r = tg__expf(-0.5f * (xh * xh)) * tg__expf(-0.5f * (xl * (xh + x)));
    /* 0 beyond |x| = 1e19 (x^2 / 2 > 2^127), where inf - inf made xl NaN */
    float a = tg__f32_from_bits(tg__f32_bits(x) & 0x7fffffff);
    return tg__f32_sel(-(int32_t)(a > 1e19f), 0.0f, r);
}

/* The standard normal cdf Phi(x) = erfc(-x / sqrt 2) / 2, and e = its
 * density times sqrt(2 pi), e^(-x^2/2), through *e. Below |x| = sqrt 2,
 * (1 + erf(x / sqrt 2)) / 2 with erf(w) = w P(w^2); above (and below
 * x = -0.5), erfc(z) = e^(-z^2) t G(t), t = 1 / z, G a polynomial on t in
 * [0, 0.5], [0.5, 1] and [1, 2.83] (least-squares fits in double of
 * erfc(z) e^(z^2) z, relative fit error under 6e-8). */
static inline float tg__phif(float x, float *e)
{
    const float w = x * 0.70710678118654752f;
    const float az = tg__f32_from_bits(tg__f32_bits(w) & 0x7fffffff);
    const float s = w * w;
    float p = 7.847259258e-05f;
    p = p * s - 8.008189034e-04f;
    p = p * s + 5.188099109e-03f;
    p = p * s - 2.685369179e-02f;
    p = p * s + 1.128358245e-01f;
    p = p * s - 3.761262596e-01f;
    p = p * s + 1.128379107e+00f;
    const float small = 0.5f + 0.5f * (w * p);
    /* the erfc form from |z| = 1 up, and already from x = -0.5 down, where
     * 1/2 + erf / 2 would cancel (Phi(-sqrt 2) = 0.08 = 0.5 - 0.42); t =
     * 1/|z| is kept finite where unused, for the select */
    const int32_t tail = -(int32_t)((az >= 1.0f) | (x < -0.5f));
    const float t = 1.0f / tg__f32_sel(tail, az, 1.0f);
    const float u1 = t - 0.29f, u2 = t - 0.75f;
    float g1 = -3.764528334e-01f, g2 = 1.347411796e-02f;
    g1 = g1 * u1 - 1.511531919e-01f;
    g2 = g2 * u2 - 1.874801703e-03f;
    g1 = g1 * u1 + 3.631515205e-01f;
    g2 = g2 * u2 - 1.823242009e-02f;
    g1 = g1 * u1 - 1.826764941e-01f;
    g2 = g2 * u2 + 3.780523688e-02f;
    g1 = g1 * u1 - 7.315355539e-02f;
    g2 = g2 * u2 - 5.046356469e-02f;
    g1 = g1 * u1 + 2.112079114e-01f;
    g2 = g2 * u2 + 4.029115662e-02f;
    g1 = g1 * u1 - 1.418730766e-01f;
    g2 = g2 * u2 + 1.934785955e-02f;
    g1 = g1 * u1 - 1.318267286e-01f;
    g2 = g2 * u2 - 1.690809727e-01f;
    g1 = g1 * u1 + 5.429654717e-01f;
    g2 = g2 * u2 + 4.681795835e-01f;
    const float u3 = t - 1.9f;
    float g3 = 4.621685002e-05f;
    g3 = g3 * u3 - 1.216201927e-04f;
    g3 = g3 * u3 + 1.734966791e-04f;
    g3 = g3 * u3 - 2.706316009e-04f;
    g3 = g3 * u3 + 2.757070470e-04f;
    g3 = g3 * u3 + 7.079921779e-04f;
    g3 = g3 * u3 - 5.834140349e-03f;
    g3 = g3 * u3 + 2.581063844e-02f;
    g3 = g3 * u3 - 9.482643008e-02f;
    g3 = g3 * u3 + 3.170754611e-01f;
    float g = tg__f32_sel(-(int32_t)(t < 0.5f), g1, g2);
    g = tg__f32_sel(-(int32_t)(t > 1.0f), g3, g);
    const float ex = tg__exp_half_sqf(x);
    const float half_erfc = 0.5f * (ex * (t * g)); /* erfc(|z|) / 2 */
    const float big = tg__f32_sel(-(int32_t)(x < 0), half_erfc, 1.0f - half_erfc);
    *e = ex;
    /* NaN fails every comparison and lands in small */
    return tg__f32_sel(tail, big, small);
}

/* gelu(x) = x Phi(x) */
static inline float tg__geluf(float x)
{
    float e;
    return x * tg__phif(x, &e);
}

/* gelu'(x) = Phi(x) + x e^(-x^2/2) / sqrt(2 pi) */
static inline float tg__gelu_gradf(float x)
{
    float e;
    float p = tg__phif(x, &e);
    return p + x * (e * 0.39894228040143267794f);
}

#endif /* TG_OPS_FASTMATH_H */
