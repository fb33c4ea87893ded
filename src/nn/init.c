/*
 * init.c - parameter initialisers (torch.nn.init): uniform, normal,
 * constants, Xavier/Glorot and Kaiming/He, with PyTorch's fans and gains.
 *
 * Values are drawn from the RNG of the tensor's own context (for a
 * parameter, the persistent context), one draw per element in row-major
 * order (two uniforms per normal: Box-Muller without a cached value), so a
 * seed fixes every weight.
 */
#include "nn_impl.h"

#include <math.h>

/* t may be filled: non-NULL, floating, no self-overlap. */
static tg_status check_fill(const char *fn, tg_tensor *t)
{
    if (!t) return TG_ERR_INVALID;
    if (!tg__is_float(t->dtype))
        return tg__fail(t->ctx, TG_ERR_DTYPE, "%s: tensor is %s, not floating", fn,
                        tg_dtype_name(t->dtype));
    if (tg__overlaps(t))
        return tg__fail(t->ctx, TG_ERR_INVALID, "%s: tensor overlaps itself (an expanded view)",
                        fn);
    return TG_OK;
}

typedef enum { FILL_CONST, FILL_UNIFORM, FILL_NORMAL } fill_kind;

static tg_status fill(const char *fn, tg_tensor *t, fill_kind k, double a, double b)
{
    tg_status s = check_fill(fn, t);
    if (s != TG_OK) return s;
    int64_t n = tg_numel(t);
    uint64_t *rng = t->ctx->rng;
    void *d = tg_is_contiguous(t) ? tg_data(t) : NULL;
    for (int64_t i = 0; i < n; i++) {
        double v = k == FILL_CONST     ? a
                   : k == FILL_UNIFORM ? a + (b - a) * tg__rng_uniform(rng)
                                       : a + b * tg__rng_normal(rng);
        if (d && t->dtype == TG_F32) ((float *)d)[i] = (float)v;
        else if (d) ((double *)d)[i] = v;
        else tg__set_flat(t, i, v);
    }
    tg_tensor_bump_version(t);
    return TG_OK;
}

double tg_init_gain(tg_nonlin nl, double param)
{
    switch (nl) {
    case TG_NONLIN_LINEAR:
    case TG_NONLIN_SIGMOID: return 1.0;
    case TG_NONLIN_TANH: return 5.0 / 3.0;
    case TG_NONLIN_RELU: return sqrt(2.0);
    case TG_NONLIN_LEAKY_RELU: return sqrt(2.0 / (1.0 + param * param));
    }
    return NAN;
}

tg_status tg_init_fans(const tg_tensor *t, int64_t *fan_in, int64_t *fan_out)
{
    if (!t || t->ndim < 2) return TG_ERR_INVALID;
    int64_t rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= t->shape[i];
    if (fan_in) *fan_in = t->shape[1] * rf;
    if (fan_out) *fan_out = t->shape[0] * rf;
    return TG_OK;
}

tg_status tg_init_uniform(tg_tensor *t, double lo, double hi)
{
    if (t && !(lo <= hi && isfinite(lo) && isfinite(hi)))
        return tg__fail(t->ctx, TG_ERR_INVALID, "tg_init_uniform: bounds [%g, %g] invalid", lo, hi);
    return fill("tg_init_uniform", t, FILL_UNIFORM, lo, hi);
}

tg_status tg_init_normal(tg_tensor *t, double mean, double std)
{
    if (t && !(std >= 0 && isfinite(std) && isfinite(mean)))
        return tg__fail(t->ctx, TG_ERR_INVALID, "tg_init_normal: mean %g, std %g invalid", mean,
                        std);
    return fill("tg_init_normal", t, FILL_NORMAL, mean, std);
}

tg_status tg_init_constant(tg_tensor *t, double v)
{
    return fill("tg_init_constant", t, FILL_CONST, v, 0);
}

tg_status tg_init_zeros(tg_tensor *t) { return fill("tg_init_zeros", t, FILL_CONST, 0, 0); }
tg_status tg_init_ones(tg_tensor *t) { return fill("tg_init_ones", t, FILL_CONST, 1, 0); }

static tg_status fans_or_fail(const char *fn, tg_tensor *t, int64_t *fi, int64_t *fo)
{
    if (!t) return TG_ERR_INVALID;
    if (tg_init_fans(t, fi, fo) != TG_OK) {
        char b[64];
        return tg__fail(t->ctx, TG_ERR_INVALID,
                        "%s: fan in and fan out need at least 2 dims, tensor is %s", fn,
                        tg_shape_str(t, b, sizeof b));
    }
    if (*fi == 0 || *fo == 0) {
        char b[64];
        return tg__fail(t->ctx, TG_ERR_INVALID, "%s: tensor %s has a zero fan", fn,
                        tg_shape_str(t, b, sizeof b));
    }
    return TG_OK;
}

static tg_status xavier(const char *fn, tg_tensor *t, double gain, bool uniform)
{
    int64_t fi, fo;
    tg_status s = fans_or_fail(fn, t, &fi, &fo);
    if (s != TG_OK) return s;
    if (!isfinite(gain)) return tg__fail(t->ctx, TG_ERR_INVALID, "%s: gain %g", fn, gain);
    double std = gain * sqrt(2.0 / (double)(fi + fo));
    return uniform ? fill(fn, t, FILL_UNIFORM, -sqrt(3.0) * std, sqrt(3.0) * std)
                   : fill(fn, t, FILL_NORMAL, 0.0, std);
}

tg_status tg_init_xavier_uniform(tg_tensor *t, double gain)
{
    return xavier("tg_init_xavier_uniform", t, gain, true);
}

tg_status tg_init_xavier_normal(tg_tensor *t, double gain)
{
    return xavier("tg_init_xavier_normal", t, gain, false);
}

static tg_status kaiming(const char *fn, tg_tensor *t, double a, tg_fan_mode mode, tg_nonlin nl,
                         bool uniform)
{
    int64_t fi, fo;
    tg_status s = fans_or_fail(fn, t, &fi, &fo);
    if (s != TG_OK) return s;
    double gain = tg_init_gain(nl, a);
    if (!isfinite(gain) || (mode != TG_FAN_IN && mode != TG_FAN_OUT))
        return tg__fail(t->ctx, TG_ERR_INVALID, "%s: bad nonlinearity %d, a %g or mode %d", fn,
                        (int)nl, a, (int)mode);
    double std = gain / sqrt((double)(mode == TG_FAN_IN ? fi : fo));
    return uniform ? fill(fn, t, FILL_UNIFORM, -sqrt(3.0) * std, sqrt(3.0) * std)
                   : fill(fn, t, FILL_NORMAL, 0.0, std);
}

tg_status tg_init_kaiming_uniform(tg_tensor *t, double a, tg_fan_mode mode, tg_nonlin nl)
{
    return kaiming("tg_init_kaiming_uniform", t, a, mode, nl, true);
}

tg_status tg_init_kaiming_normal(tg_tensor *t, double a, tg_fan_mode mode, tg_nonlin nl)
{
    return kaiming("tg_init_kaiming_normal", t, a, mode, nl, false);
}
