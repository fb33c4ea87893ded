/*
 * test_nn.c - the nn suite: forward values of layer_norm, rms_norm,
 * group_norm, batch_norm (with running statistics over two steps) and
 * sdpa in f32 and f64 against NumPy; dropout's determinism, statistics
 * and eval identity; embedding with repeated indices; thread invariance;
 * error paths; the fast f32 exp / sigmoid / tanh within 3 ulp, the normal
 * tail and f32 gelu within 8 ulp, and the fused LSTM cell against its composite. (Gradients to second order are checked by the opgrad
 * table; sdpa is also gradient-checked here, with a mask that requires grad.)
 *
 * Inputs are seq(n, a, b, s)[i] = s * sin(a * i + b). The reference values
 * come from NumPy (numpy 2.x, float64) with the same inputs:
 *   LN   = (x - x.mean(-1)) / sqrt(x.var(-1) + 1e-5) * w + b
 *   RMS  = x / sqrt((x * x).mean(-1) + 1e-6) * w
 *   GN   = groups of x.reshape(2, 2, 4) normalised (eps 1e-5), * w + b per channel
 *   BN   = per channel over axes (0, 2), eps 1e-5; running stats updated as
 *          torch does: rm = 0.9 rm + 0.1 mean, rv = 0.9 rv + 0.1 var * n / (n - 1)
 *   SDPA = softmax(q @ k^T / sqrt(4) [+ where(tril(ones(3, 5)), 0, -inf)]) @ v
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "autograd/tape.h"
#include "ops/fastmath.h"
#include "ops/ops_impl.h" /* tg__sdpa_keep_p */
#include "tensor/tensor_impl.h" /* tg__get_flat */
#include "test_util.h"

static const tg_dtype dts[2] = {TG_F64, TG_F32};
static double tol_of(tg_dtype dt) { return dt == TG_F64 ? 1e-12 : 2e-5; }

/* s * sin(a * i + b) in row-major order. */
static tg_tensor *seq(tg_ctx *c, tg_dtype dt, int nd, const int64_t *shape, double a, double b,
                      double s)
{
    tg_tensor *t = tg_tensor_new(c, dt, nd, shape);
    ck_assert_ptr_nonnull(t);
    int64_t n = tg_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = s * sin(a * (double)i + b);
        if (dt == TG_F32) ((float *)tg_data(t))[i] = (float)v;
        else ((double *)tg_data(t))[i] = v;
    }
    return t;
}

static void assert_same_bits(const tg_tensor *a, const tg_tensor *b)
{
    ck_assert_int_eq(tg_numel(a), tg_numel(b));
    size_t n = (size_t)tg_numel(a) * (tg_tensor_dtype(a) == TG_F32 ? 4 : 8);
    void *pa = malloc(n), *pb = malloc(n);
    ck_assert(pa && pb);
    tu_assert_status(tg_copy_out(a, pa, n), TG_OK);
    tu_assert_status(tg_copy_out(b, pb, n), TG_OK);
    ck_assert_msg(memcmp(pa, pb, n) == 0, "tensors differ");
    free(pa);
    free(pb);
}

static tg_tensor *vec(tg_ctx *c, tg_dtype dt, int64_t n, const double *v)
{
    tg_tensor *t = tg_tensor_new(c, dt, 1, &n);
    ck_assert_ptr_nonnull(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == TG_F32) ((float *)tg_data(t))[i] = (float)v[i];
        else ((double *)tg_data(t))[i] = v[i];
    }
    return t;
}

/* The context's message names fn and contains what. */

/* ====================================================================== */
/* Normalisation values                                                   */
/* ====================================================================== */

START_TEST(test_layer_rms_norm_values)
{
    tg_dtype dt = dts[_i];
    double tol = tol_of(dt);
    tg_ctx *c = tu_ctx();
    tg_tensor *x = seq(c, dt, TG_SHAPE(2, 4), 1.3, 0.2, 2.0);
    tg_tensor *w = vec(c, dt, 4, (const double[]){1.0, 0.5, -1.5, 2.0});
    tg_tensor *b = vec(c, dt, 4, (const double[]){0.1, -0.2, 0.3, 0.0});
    tg_tensor *y = tg_layer_norm(c, x, TG_SHAPE(4), w, b, 1e-5);
    tu_assert_ok(c);
    tu_assert_values(y, tol, 0.1314695353447628, 0.43035745284969512, -0.061858589042466161,
                     -3.066847000811594, -1.4090201144997061, -0.028232140944047746,
                     -1.594576326854553, -0.19513297636380081);
    ck_assert_int_eq(tg_tensor_dtype(y), dt);
    y = tg_rms_norm(c, x, TG_SHAPE(4), w, 1e-6);
    tu_assert_values(y, tol, 0.29482999614860678, 0.7401531023479917, -0.74569553306274206,
                     -2.4286852584456451, -1.1665156833791348, 0.30556773080222838,
                     -2.2402075853991184, 0.37573682337823577);
    /* normalising over all of [2,4] of a transposed view = over its copy */
    tg_tensor *xt = tg_transpose(c, seq(c, dt, TG_SHAPE(4, 2), 0.7, 0.1, 1.0), 0, 1);
    tg_tensor *y1 = tg_layer_norm(c, xt, TG_SHAPE(2, 4), NULL, NULL, 1e-5);
    tg_tensor *y2 = tg_layer_norm(c, tg_contiguous(c, xt), TG_SHAPE(2, 4), NULL, NULL, 1e-5);
    tu_assert_ok(c);
    for (int64_t i = 0; i < 8; i++)
        ck_assert(tg_get(y1, (int64_t[]){i / 4, i % 4}) == tg_get(y2, (int64_t[]){i / 4, i % 4}));
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_group_norm_values)
{
    tg_dtype dt = dts[_i];
    tg_ctx *c = tu_ctx();
    tg_tensor *x = seq(c, dt, TG_SHAPE(2, 4, 2), 1.3, 0.2, 2.0);
    tg_tensor *w = vec(c, dt, 4, (const double[]){1, -0.5, 2, 0.3});
    tg_tensor *b = vec(c, dt, 4, (const double[]){0.1, 0.2, -0.3, 0.4});
    tg_tensor *y = tg_group_norm(c, x, 2, w, b, 1e-5);
    tu_assert_ok(c);
    tu_assert_values(y, tol_of(dt), 0.1314695353447628, 1.3607149056993904, 0.07938047031917797,
                     0.96671175020289857, -3.3180402289994122, 0.38707143622380907,
                     0.7789152653709106, 0.37073005354542993, -1.0726762930290528,
                     -0.6840694936686379, -0.17985779559155124, -0.39851509775729416,
                     0.010687989841614676, -2.8225024703647841, 0.28337806430919782,
                     0.84839410776927771);
    tg_ctx_free(c);
}
END_TEST

/* Two training steps update the running statistics as PyTorch does
 * (momentum 0.1, unbiased variance), bumping their versions; eval then
 * normalises with them and changes nothing. */
START_TEST(test_batch_norm_running_stats)
{
    tg_dtype dt = dts[_i];
    double tol = tol_of(dt);
    tg_ctx *p = tu_ctx(), *c = tu_ctx();
    tg_tensor *rm = tg_tensor_new(p, dt, TG_SHAPE(3));
    tg_tensor *rv = tg_full(p, dt, TG_SHAPE(3), 1.0);
    tg_tensor *w = vec(p, dt, 3, (const double[]){1.0, -0.5, 2.0});
    tg_tensor *b = vec(p, dt, 3, (const double[]){0.1, 0.2, -0.3});
    tg_set_requires_grad(w, true);
    tg_tensor *x1 = seq(c, dt, TG_SHAPE(4, 3, 2), 1.3, 0.2, 2.0);
    tg_tensor *x2 = tg_add_scalar(c, seq(c, dt, TG_SHAPE(4, 3, 2), 0.7, 1.1, 3.0), 0.5);
    tg_batch_norm_opts o = tg_batch_norm_defaults();
    ck_assert(o.training);
    ck_assert_close(o.momentum, 0.1, 0);
    ck_assert_close(o.eps, 1e-5, 0);

    uint64_t v0 = rm->st->version, w0 = rv->st->version;
    tg_tensor *y = tg_batch_norm(c, x1, w, b, rm, rv, NULL);
    tu_assert_ok(c);
    ck_assert(rm->st->version > v0 && rv->st->version > w0);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_BATCH_NORM);
    tu_assert_values(
        y, tol, 0.3782502566362631, 1.4999432112565305, -0.047832835548650143, 0.76530872116323923,
        -2.5756644924099019, 0.7718660130059658, 1.4885177846399373, 0.27403935901751114,
        0.83898814407690003, 0.62419448172572634, 1.3040747633426146, 2.2785920228426626,
        -0.029770257807014561, -1.2825186008647265, 0.49476232738956577, -0.34155779409502279,
        1.9993330031487535, -1.2430365251033448, -1.303877525541622, -0.22458422733687897,
        -0.42920434965175874, -0.30465869505999971, -1.8053803511469919, -3.1297844336797582);
    tu_assert_values(rm, tol, 0.00010208585390531489, -0.0033018147503026843,
                     0.0055564899965786681);
    tu_assert_values(rv, tol, 1.1318493179517217, 1.1298877845574686, 1.1262907859752032);

    y = tg_batch_norm(c, x2, w, b, rm, rv, &o);
    tu_assert_values(
        y, tol, 0.9966115932578502, 1.1088849772937472, -0.21654708882508344, 0.29449896036948281,
        -1.6292521893886489, -2.4800473674717272, -1.3448660718169194, -0.59377271245294938,
        -0.06590321029858498, -0.45013963529891704, 2.9807876024406865, 1.9101558672571672,
        -0.31626330088066756, -1.1649999794472155, 1.023561296860944, 0.88926737828573121,
        -0.44859687608707755, 1.4519758896849821, 1.016647085569049, 1.0977584084771057,
        -0.19532610986869692, 0.32058840877512401, -1.6960509656442764, -2.4889719607911061);
    tu_assert_values(rm, tol, 0.11946533081798452, 0.065953911284545974, -0.0079391710792218705);
    tu_assert_values(rv, tol, 1.5759314854606123, 1.4416953063289697, 1.5456143500651636);

    o.training = false;
    uint64_t v1 = rm->st->version;
    y = tg_batch_norm(c, seq(c, dt, TG_SHAPE(4, 3, 2), 0.9, 0.4, 2.0), w, b, rm, rv, &o);
    tu_assert_ok(c);
    ck_assert(rm->st->version == v1);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_BATCH_NORM);
    tu_assert_values(
        y, tol, 0.62524270749287225, 1.5399405145366587, -0.4458838790470025, 0.19283448593142843,
        -2.7221811031219478, -3.448192735967873, -0.73535037408184445, 0.64982771236046821,
        -0.57865800756828656, -0.43754773758795568, -0.20751517164993677, -2.7571973175724191,
        -1.5551526096398354, -0.71152508993004648, -0.12246751793477184, -0.58206251675548759,
        2.2489113085732533, -0.26160724645107913, -1.2352048052461198, -1.5494941382705225,
        0.58938831827286087, -0.13512529484821473, 2.8523981516502395, 2.2152638139812488);
    tu_assert_values(rm, tol, 0.11946533081798452, 0.065953911284545974, -0.0079391710792218705);
    /* the running statistics are not inputs of the recorded node */
    ck_assert_ptr_null(y->node->in[3]);
    ck_assert_ptr_null(y->node->in[4]);
    ck_assert_ptr_eq(y->node->saved[0], rm);
    ck_assert_ptr_eq(y->node->saved[1], rv);
    tg_ctx_free(c);
    tg_ctx_free(p);
}
END_TEST

/* Backward in f32 runs and agrees with f64 (each norm, x and weight). */
START_TEST(test_norm_backward_f32)
{
    tg_ctx *c = tu_ctx();
    double g[2][4][24];
    for (int k = 0; k < 2; k++) {
        tg_dtype dt = dts[k];
        for (int op = 0; op < 4; op++) {
            tg_tensor *x = seq(c, dt, TG_SHAPE(4, 3, 2), 1.1, 0.3, 1.5);
            tg_tensor *w = vec(c, dt, op == 2 ? 3 : 2, (const double[]){0.7, -1.2, 1.5});
            tg_set_requires_grad(x, true);
            tg_set_requires_grad(w, true);
            tg_tensor *y;
            if (op == 0) y = tg_layer_norm(c, x, TG_SHAPE(2), w, NULL, 1e-5);
            else if (op == 1) y = tg_rms_norm(c, x, TG_SHAPE(2), w, 1e-5);
            else if (op == 2) y = tg_batch_norm(c, x, w, NULL, NULL, NULL, NULL);
            else y = tg_group_norm(c, tg_reshape(c, x, TG_SHAPE(4, 2, 3)), 1, w, NULL, 1e-5);
            tg_tensor *wt = seq(c, dt, TG_SHAPE(24), 0.37, 0.5, 1.0);
            tg_tensor *L = tg_sum(c, tg_mul(c, tg_reshape(c, y, TG_SHAPE(24)), wt));
            tu_assert_ok(c);
            tu_assert_status(tg_backward(c, L), TG_OK);
            tu_assert_ok(c);
            ck_assert_int_eq(tg_copy_out(tg_contiguous(c, tg_grad(x)), &g[k][op][0],
                                         dt == TG_F64 ? 24 * 8 : 24 * 4),
                             TG_OK);
            if (dt == TG_F32) {
                float f[24];
                memcpy(f, g[k][op], sizeof f);
                for (int i = 23; i >= 0; i--) g[k][op][i] = f[i];
            }
        }
    }
    for (int op = 0; op < 4; op++)
        for (int i = 0; i < 24; i++) ck_assert_close(g[1][op][i], g[0][op][i], 1e-4);
    tg_ctx_free(c);
}
END_TEST

/* With no graph recorded, layer_norm and rms_norm add their gradients into
 * the walk's own buffers (tg__ops_acc): the same bits as a separate dx and
 * the engine's sum (anomaly mode takes that path), for an input that also
 * feeds a residual path (the walk's buffer is a copy of its gradient so
 * far), one normalised twice (the second adds into an own buffer) and one
 * that reaches nothing else (zeros). */
START_TEST(test_norm_backward_acc)
{
    tg_dtype dt = dts[_i];
    for (int op = 0; op < 2; op++)
        for (int graph = 0; graph < 3; graph++) {
            tg_tensor *g[2][3];
            tg_ctx *c = tu_ctx();
            tg_tensor *x = seq(c, dt, TG_SHAPE(5, 3, 37), 1.1, 0.3, 1.5);
            tg_tensor *w = seq(c, dt, TG_SHAPE(37), 0.7, -1.2, 1.5);
            tg_tensor *b = seq(c, dt, TG_SHAPE(37), 0.3, 0.2, 0.5);
            tg_tensor *wt = seq(c, dt, TG_SHAPE(5, 3, 37), 0.37, 0.5, 1.0);
            tg_tensor *in[3] = {x, w, b};
            for (int i = 0; i < 3; i++) tg_set_requires_grad(in[i], true);
            for (int anomaly = 0; anomaly < 2; anomaly++) {
                tg_set_anomaly(c, anomaly == 1);
                tg_tensor *y = op ? tg_rms_norm(c, x, TG_SHAPE(37), w, 1e-5)
                                  : tg_layer_norm(c, x, TG_SHAPE(37), w, b, 1e-5);
                if (graph == 0) y = tg_add(c, x, y);
                if (graph == 1)
                    y = tg_add(c, y, tg_layer_norm(c, x, TG_SHAPE(37), w, NULL, 1e-5));
                tg_tensor *L = tg_sum(c, tg_mul(c, y, wt));
                tu_assert_ok(c);
                tu_assert_status(tg_grad_of(c, 1, &L, NULL, op ? 2 : 3, in, false, g[anomaly]),
                                 TG_OK);
            }
            for (int i = 0; i < (op ? 2 : 3); i++) assert_same_bits(g[0][i], g[1][i]);
            tg_ctx_free(c);
        }
}
END_TEST

/* A tensor's values as doubles, in row-major order (malloc'd; the caller
 * frees). */
static double *values_of(const tg_tensor *t)
{
    int64_t n = tg_numel(t);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) v[i] = tg__get_flat(t, i);
    return v;
}

/* (float)(s * sin(a * i + b)) + (float)(off |s|), as a tensor of dt: the
 * same values in f32 and f64 */
static tg_tensor *seq_f32_as(tg_ctx *c, tg_dtype dt, int nd, const int64_t *shape, double a,
                             double b, double s, double off)
{
    tg_tensor *t = tg_tensor_new(c, dt, nd, shape);
    ck_assert_ptr_nonnull(t);
    for (int64_t i = 0; i < tg_numel(t); i++) {
        float v = (float)(s * sin(a * (double)i + b)) + (float)(off * fabs(s));
        if (dt == TG_F32) ((float *)tg_data(t))[i] = v;
        else ((double *)tg_data(t))[i] = v;
    }
    return t;
}

/* f32 layer_norm and rms_norm run in float lanes (sums per block in
 * double, the mean as two floats): their output and x, weight and bias
 * gradients agree with f64 on the same (f32-rounded) inputs, within
 * 4e-6 of each tensor's largest magnitude (times the R rows summed for
 * weight and bias), for rows shorter than a vector, with tails, longer
 * than a summation block; with a mean 10^4 times the spread (where a
 * one-float mean would shift every deviation by up to half its ulp, 1e-3
 * of the spread here); and with values around 1e20, whose squares pass
 * FLT_MAX, so the rows go to the double fallback. */
START_TEST(test_norm_f32_lanes)
{
    static const int64_t Ms[] = {5, 37, 128, 1000, 4099};
    static const double offs[] = {0.6, 2e4, 0.6}, scales[] = {0.5, 0.5, 1e20};
    for (int op = 0; op < 2; op++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (int oi = 0; oi < 3; oi++)
                for (int affine = 0; affine < 2; affine++) {
                    const int64_t M = Ms[mi], R = 3;
                    double *v[2][4];
                    int nv = 0;
                    for (int k = 0; k < 2; k++) {
                        tg_ctx *c = tu_ctx();
                        const tg_dtype dt = k ? TG_F64 : TG_F32;
                        tg_tensor *x =
                            seq_f32_as(c, dt, TG_SHAPE(R, M), 0.61, 0.2, scales[oi], offs[oi]);
                        tg_tensor *w = seq_f32_as(c, dt, TG_SHAPE(M), 0.37, 0.1, 1.3, 0.0);
                        tg_tensor *b = seq_f32_as(c, dt, TG_SHAPE(M), 0.23, 0.4, 0.7, 0.0);
                        tg_tensor *wt = seq_f32_as(c, dt, TG_SHAPE(R, M), 0.17, 0.5, 1.0, 0.0);
                        tg_tensor *in[3] = {x, w, b};
                        for (int i = 0; i < 3; i++) tg_set_requires_grad(in[i], true);
                        tg_tensor *y = op ? tg_rms_norm(c, x, TG_SHAPE(M), affine ? w : NULL, 1e-5)
                                          : tg_layer_norm(c, x, TG_SHAPE(M), affine ? w : NULL,
                                                          affine ? b : NULL, 1e-5);
                        tg_tensor *L = tg_sum(c, tg_mul(c, y, wt));
                        tu_assert_ok(c);
                        nv = affine ? (op ? 2 : 3) : 1;
                        tg_tensor *g[3];
                        tu_assert_status(tg_grad_of(c, 1, &L, NULL, nv, in, false, g), TG_OK);
                        v[k][0] = values_of(y);
                        for (int i = 0; i < nv; i++) v[k][1 + i] = values_of(g[i]);
                        tg_ctx_free(c);
                    }
                    /* gradients of weight and bias sum R rows */
                    for (int t = 0; t < 1 + nv; t++) {
                        int64_t n = t <= 1 ? R * M : M;
                        double big = 0.0;
                        for (int64_t i = 0; i < n; i++) big = fmax(big, fabs(v[1][t][i]));
                        double lim = 4e-6 * (t <= 1 ? 1.0 : (double)R) * big;
                        for (int64_t i = 0; i < n; i++)
                            ck_assert_msg(fabs(v[0][t][i] - v[1][t][i]) <= lim,
                                          "op %d M %lld offset %g affine %d: tensor %d [%lld]: "
                                          "f32 %.9g, f64 %.9g",
                                          op, (long long)M, offs[oi], affine, t, (long long)i,
                                          v[0][t][i], v[1][t][i]);
                        free(v[0][t]);
                        free(v[1][t]);
                    }
                }
}
END_TEST

/* A NaN or an inf in a row of x: that row's output and gradient are those
 * of f64 on the same values (the double fallback: NaN, or for rms_norm
 * and an inf, zeros beside it), and the other rows keep the bits they
 * have without it, in f32 layer_norm and rms_norm. */
START_TEST(test_norm_f32_nonfinite)
{
    enum { R = 4, M = 40 };
    static const float bad[2] = {NAN, INFINITY};
    for (int op = 0; op < 2; op++)
        for (int k = 0; k < 2; k++) {
            double *v[3][2]; /* f32 clean, f32 poisoned, f64 poisoned */
            for (int run = 0; run < 3; run++) {
                tg_ctx *c = tu_ctx();
                tg_dtype dt = run == 2 ? TG_F64 : TG_F32;
                tg_tensor *x = seq_f32_as(c, dt, TG_SHAPE(R, M), 0.61, 0.2, 0.5, 0.6);
                if (run && dt == TG_F32) ((float *)tg_data(x))[1 * M + 7] = bad[k];
                if (run && dt == TG_F64) ((double *)tg_data(x))[1 * M + 7] = bad[k];
                tg_tensor *w = seq_f32_as(c, dt, TG_SHAPE(M), 0.37, 0.1, 1.3, 0.0);
                tg_tensor *wt = seq_f32_as(c, dt, TG_SHAPE(R, M), 0.17, 0.5, 1.0, 0.0);
                tg_set_requires_grad(x, true);
                tg_tensor *y = op ? tg_rms_norm(c, x, TG_SHAPE(M), w, 1e-5)
                                  : tg_layer_norm(c, x, TG_SHAPE(M), w, NULL, 1e-5);
                tg_tensor *L = tg_sum(c, tg_mul(c, y, wt)), *g;
                tu_assert_status(tg_grad_of(c, 1, &L, NULL, 1, &x, false, &g), TG_OK);
                v[run][0] = values_of(y);
                v[run][1] = values_of(g);
                tg_ctx_free(c);
            }
            for (int t = 0; t < 2; t++) {
                for (int64_t i = 0; i < R * M; i++) {
                    double a = v[1][t][i], b = i / M == 1 ? v[2][t][i] : v[0][t][i];
                    bool same = isnan(b) ? isnan(a) : i / M != 1 ? a == b
                                                    : fabs(a - b) <= 1e-5 * fmax(1, fabs(b));
                    ck_assert_msg(same, "op %d x %g: %s [%lld] = %g, want %g", op,
                                  (double)bad[k], t ? "dx" : "y", (long long)i, a, b);
                }
                for (int run = 0; run < 3; run++) free(v[run][t]);
            }
        }
}
END_TEST

/* Output gradients whose float sums pass FLT_MAX although every result is
 * finite: rows of 16 elements of 2e38 (each row's sum of g), and 2e38,
 * 2e38, -3.3e38 down each column of three equal rows of x (the weight and
 * bias gradients' sums over rows). The f32 backward does those sums again
 * in double, with the forward's two-float mean (x's mean is 2e4, its
 * spread 3), and agrees with f64 on the same values. */
START_TEST(test_norm_f32_overflow)
{
    enum { R = 3, M = 16 };
    double v[2][3][R * M];
    for (int k = 0; k < 2; k++) {
        tg_ctx *c = tu_ctx();
        const tg_dtype dt = k ? TG_F64 : TG_F32;
        tg_tensor *x = tg_tensor_new(c, dt, 2, (const int64_t[]){R, M});
        tg_tensor *w = seq_f32_as(c, dt, TG_SHAPE(M), 0.37, 0.1, 0.2, 4.0);
        tg_tensor *b = seq_f32_as(c, dt, TG_SHAPE(M), 0.23, 0.4, 0.7, 0.0);
        tg_tensor *d = tg_tensor_new(c, dt, 2, (const int64_t[]){R, M});
        ck_assert_ptr_nonnull(d);
        ck_assert_ptr_nonnull(x);
        for (int64_t i = 0; i < R * M; i++) {
            float xv = (float)(3.0 * sin(0.61 * (double)(i % M) + 0.2)) + 2e4f;
            float dv = i / M == 2 ? -3.3e38f : 2e38f;
            if (k) {
                ((double *)tg_data(x))[i] = xv;
                ((double *)tg_data(d))[i] = dv;
            } else {
                ((float *)tg_data(x))[i] = xv;
                ((float *)tg_data(d))[i] = dv;
            }
        }
        tg_tensor *in[3] = {x, w, b};
        for (int i = 0; i < 3; i++) tg_set_requires_grad(in[i], true);
        tg_tensor *y = tg_layer_norm(c, x, TG_SHAPE(M), w, b, 1e-5);
        tu_assert_status(tg_backward_with_grad(c, y, d), TG_OK);
        for (int i = 0; i < 3; i++) {
            double *g = values_of(tg_grad(in[i]));
            memcpy(v[k][i], g, (size_t)(i ? M : R * M) * sizeof(double));
            free(g);
        }
        tg_ctx_free(c);
    }
    for (int i = 0; i < 3; i++) {
        double big = 0.0;
        for (int64_t j = 0; j < (i ? M : R * M); j++) big = fmax(big, fabs(v[1][i][j]));
        ck_assert_msg(big < 3.4e38, "grad %d: f64 %g is past FLT_MAX", i, big);
        for (int64_t j = 0; j < (i ? M : R * M); j++)
            ck_assert_msg(fabs(v[0][i][j] - v[1][i][j]) <= 4e-6 * big,
                          "grad %d [%lld]: f32 %.9g, f64 %.9g", i, (long long)j, v[0][i][j],
                          v[1][i][j]);
    }
}
END_TEST

/* The fused kernels give the same bits with 1 and 4 threads. */
START_TEST(test_norm_threads)
{
    uint8_t *out[2][3];
    size_t nb = 64 * 2048 * sizeof(float);
    for (int t = 0; t < 2; t++) {
        tg_ctx *c = tu_ctx();
        tg_ctx_set_threads(c, t ? 4 : 1);
        tg_tensor *x = seq(c, TG_F32, TG_SHAPE(64, 2048), 0.013, 0.3, 2.0);
        tg_tensor *y[3] = {
            tg_layer_norm(c, x, TG_SHAPE(2048), NULL, NULL, 1e-5),
            tg_batch_norm(c, tg_reshape(c, x, TG_SHAPE(64, 16, 128)), NULL, NULL, NULL, NULL, NULL),
            tg_group_norm(c, tg_reshape(c, x, TG_SHAPE(64, 16, 128)), 4, NULL, NULL, 1e-5)};
        tu_assert_ok(c);
        for (int k = 0; k < 3; k++) {
            out[t][k] = malloc(nb);
            ck_assert_int_eq(tg_copy_out(y[k], out[t][k], nb), TG_OK);
        }
        tg_ctx_free(c);
    }
    for (int k = 0; k < 3; k++) {
        ck_assert(memcmp(out[0][k], out[1][k], nb) == 0);
        free(out[0][k]);
        free(out[1][k]);
    }
}
END_TEST

START_TEST(test_norm_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = seq(c, TG_F64, TG_SHAPE(2, 3, 4), 1.0, 0.0, 1.0);
    tg_tensor *w3 = tg_full(c, TG_F64, TG_SHAPE(3), 1.0);
    tg_tensor *w4 = tg_full(c, TG_F64, TG_SHAPE(4), 1.0);

    ck_assert_ptr_null(tg_layer_norm(c, x, TG_SHAPE(3), NULL, NULL, 1e-5));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_layer_norm", "normalized_shape [3]");
    ck_assert_ptr_null(tg_layer_norm(c, x, 4, (const int64_t[]){1, 2, 3, 4}, NULL, NULL, 1e-5));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_layer_norm", NULL);
    ck_assert_ptr_null(tg_layer_norm(c, x, TG_SHAPE(4), w3, NULL, 1e-5));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_layer_norm", "weight is [3]");
    ck_assert_ptr_null(
        tg_layer_norm(c, x, TG_SHAPE(4), NULL, tg_full(c, TG_F32, TG_SHAPE(4), 0), 1e-5));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_layer_norm", "bias");
    ck_assert_ptr_null(tg_rms_norm(c, x, TG_SHAPE(4), w4, -1.0));
    tu_assert_error(c, TG_ERR_INVALID, "tg_rms_norm", "eps");
    ck_assert_ptr_null(tg_group_norm(c, x, 2, NULL, NULL, 1e-5));
    tu_assert_error(c, TG_ERR_INVALID, "tg_group_norm", "3 channels");
    ck_assert_ptr_null(tg_group_norm(c, x, 3, w4, NULL, 1e-5));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_group_norm", "weight");
    ck_assert_ptr_null(tg_group_norm(c, w4, 1, NULL, NULL, 1e-5));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_group_norm", NULL);

    tg_batch_norm_opts o = tg_batch_norm_defaults();
    o.training = false;
    ck_assert_ptr_null(tg_batch_norm(c, x, NULL, NULL, NULL, NULL, &o));
    tu_assert_error(c, TG_ERR_INVALID, "tg_batch_norm", "running_mean and running_var");
    tg_tensor *rm = tg_tensor_new(c, TG_F64, TG_SHAPE(3)), *rv = tg_full(c, TG_F64, TG_SHAPE(3), 1);
    ck_assert_ptr_null(tg_batch_norm(c, x, NULL, NULL, rm, NULL, NULL));
    tu_assert_error(c, TG_ERR_INVALID, "tg_batch_norm", "running_var is NULL");
    ck_assert_ptr_null(tg_batch_norm(c, x, NULL, NULL, w4, w4, NULL));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_batch_norm", "running_mean");
    ck_assert_ptr_null(
        tg_batch_norm(c, tg_tensor_new(c, TG_F64, TG_SHAPE(1, 3)), NULL, NULL, rm, rv, NULL));
    tu_assert_error(c, TG_ERR_INVALID, "tg_batch_norm", "more than 1 value per channel");
    ck_assert_close(tg_item(tg_sum(c, rm)), 0.0, 0); /* nothing updated on error */
    tg_tensor *rg = tg_tensor_new(c, TG_F64, TG_SHAPE(3));
    tg_set_requires_grad(rg, true);
    ck_assert_ptr_null(tg_batch_norm(c, x, NULL, NULL, rg, rv, NULL));
    tu_assert_error(c, TG_ERR_INVALID, "tg_batch_norm", "requires grad");
    o = tg_batch_norm_defaults();
    o.momentum = 1.5;
    ck_assert_ptr_null(tg_batch_norm(c, x, NULL, NULL, rm, rv, &o));
    tu_assert_error(c, TG_ERR_INVALID, "tg_batch_norm", "momentum");
    ck_assert_ptr_null(tg_batch_norm(c, w4, NULL, NULL, NULL, NULL, NULL));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_batch_norm", NULL);

    /* NULL in, NULL out, the first error kept */
    ck_assert_ptr_null(tg_layer_norm(c, NULL, TG_SHAPE(4), NULL, NULL, 1e-5));
    ck_assert_ptr_null(tg_batch_norm(c, x, NULL, NULL, NULL, NULL, NULL));
    tu_assert_error(c, TG_ERR_INVALID, "tg_layer_norm", "NULL");
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* Dropout                                                                */
/* ====================================================================== */

START_TEST(test_dropout_seed)
{
    tg_dtype dt = dts[_i];
    size_t es = dt == TG_F64 ? 8 : 4, nb = 1000 * es;
    uint8_t a[8000], b[8000], d[8000];
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_full(c, dt, TG_SHAPE(10, 100), 2.0);
    tg_ctx_seed(c, 42);
    ck_assert_int_eq(tg_copy_out(tg_dropout(c, x, 0.5, true), a, nb), TG_OK);
    tg_ctx_seed(c, 42);
    ck_assert_int_eq(tg_copy_out(tg_dropout(c, x, 0.5, true), b, nb), TG_OK);
    tg_ctx_seed(c, 43);
    ck_assert_int_eq(tg_copy_out(tg_dropout(c, x, 0.5, true), d, nb), TG_OK);
    ck_assert(memcmp(a, b, nb) == 0);
    ck_assert(memcmp(a, d, nb) != 0);
    /* the same mask in another context with the same seed and thread count 4 */
    tg_ctx *e = tu_ctx();
    tg_ctx_set_threads(e, 4);
    tg_ctx_seed(e, 42);
    ck_assert_int_eq(
        tg_copy_out(tg_dropout(e, tg_full(e, dt, TG_SHAPE(10, 100), 2.0), 0.5, true), d, nb),
        TG_OK);
    ck_assert(memcmp(a, d, nb) == 0);
    tu_assert_ok(c);
    tg_ctx_free(e);
    tg_ctx_free(c);
}
END_TEST

/* About 1 - p of the elements are kept, each scaled by 1 / (1 - p), so the
 * mean is preserved; the gradient is the same scaled mask. */
START_TEST(test_dropout_stats)
{
    tg_ctx *c = tu_ctx();
    int64_t n = 200000;
    tg_tensor *x = seq(c, TG_F64, 1, &n, 0.001, 0.0, 1.0);
    tg_set_requires_grad(x, true);
    tg_tensor *y = tg_dropout(c, x, 0.3, true);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_tensor_op(y), TG_OP_DROPOUT);
    ck_assert(tg_op_flags(TG_OP_DROPOUT) & TG_OPF_RANDOM);
    tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
    const double *xv = tg_data(x), *yv = tg_data(y), *gv = tg_data(tg_grad(x));
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        if (gv[i] != 0) {
            kept++;
            ck_assert_close(gv[i], 1.0 / 0.7, 1e-15);
            ck_assert_close(yv[i], xv[i] / 0.7, 1e-15);
        } else {
            ck_assert(yv[i] == 0);
        }
    }
    /* binomial: sd of the kept fraction is sqrt(0.21 / n) ~ 0.001 */
    ck_assert_close((double)kept / (double)n, 0.7, 0.006);
    tg_tensor *ones = tg_full(c, TG_F64, 1, &n, 1.0);
    ck_assert_close(tg_item(tg_mean(c, tg_dropout(c, ones, 0.3, true))), 1.0, 0.01);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_dropout_eval_and_edges)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = seq(c, TG_F32, TG_SHAPE(3, 4), 1.0, 0.5, 1.0);
    tg_set_requires_grad(x, true);
    /* eval: x itself, no draws */
    tg_ctx_seed(c, 7);
    ck_assert_ptr_eq(tg_dropout(c, x, 0.5, false), x);
    double r1 = tg_item(tg_rand(c, TG_F64, 0, NULL));
    tg_ctx_seed(c, 7);
    ck_assert_close(tg_item(tg_rand(c, TG_F64, 0, NULL)), r1, 0);
    /* p == 0 keeps everything, p == 1 drops everything, also inf */
    tg_tensor *y = tg_dropout(c, x, 0.0, true);
    for (int64_t i = 0; i < 12; i++)
        ck_assert(tg_get(y, (int64_t[]){i / 4, i % 4}) == tg_get(x, (int64_t[]){i / 4, i % 4}));
    tg_tensor *z = tg_dropout(c, tg_full(c, TG_F32, TG_SHAPE(3, 4), INFINITY), 1.0, true);
    tu_assert_ok(c);
    ck_assert_close(tg_item(tg_sum(c, z)), 0.0, 0);
    /* p outside [0, 1] */
    ck_assert_ptr_null(tg_dropout(c, x, 1.5, true));
    tu_assert_error(c, TG_ERR_INVALID, "tg_dropout", "p 1.5");
    ck_assert_ptr_null(tg_dropout(c, x, -0.1, false));
    tu_assert_error(c, TG_ERR_INVALID, "tg_dropout", NULL);
    ck_assert_ptr_null(tg_dropout(c, x, NAN, true));
    tu_assert_error(c, TG_ERR_INVALID, "tg_dropout", NULL);
    ck_assert_ptr_null(tg_dropout(c, tg_tensor_new(c, TG_I64, TG_SHAPE(2)), 0.5, true));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_dropout", NULL);
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* Embedding                                                              */
/* ====================================================================== */

START_TEST(test_embedding_values)
{
    tg_dtype dt = dts[_i];
    tg_ctx *c = tu_ctx();
    tg_tensor *w = seq(c, dt, TG_SHAPE(4, 3), 1.0, 0.0, 1.0);
    tg_set_requires_grad(w, true);
    tg_tensor *idx = tg_tensor_from(c, TG_I64, TG_SHAPE(2, 2), (const int64_t[]){1, 3, 1, 1});
    tg_tensor *y = tg_embedding(c, w, idx);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_ndim(y), 3);
    ck_assert_int_eq(tg_shape(y)[2], 3);
    for (int p = 0; p < 4; p++) {
        int64_t r = p == 1 ? 3 : 1;
        for (int j = 0; j < 3; j++)
            ck_assert_close(tg_get(y, (int64_t[]){p / 2, p % 2, j}), tg_get(w, (int64_t[]){r, j}),
                            0);
    }
    /* dweight: row 1 collects three rows of dout (in order), row 3 one */
    tg_tensor *g = seq(c, dt, TG_SHAPE(2, 2, 3), 0.9, 0.1, 1.0);
    tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, g))), TG_OK);
    tg_tensor *dw = tg_grad(w);
    for (int j = 0; j < 3; j++) {
        double g0 = tg_get(g, (int64_t[]){0, 0, j}), g1 = tg_get(g, (int64_t[]){0, 1, j});
        double g2 = tg_get(g, (int64_t[]){1, 0, j}), g3 = tg_get(g, (int64_t[]){1, 1, j});
        double s = dt == TG_F32 ? (double)(float)((g0 + g2) + g3) : (g0 + g2) + g3;
        ck_assert_close(tg_get(dw, (int64_t[]){0, j}), 0.0, 0);
        ck_assert_close(tg_get(dw, (int64_t[]){1, j}), s, 0);
        ck_assert_close(tg_get(dw, (int64_t[]){2, j}), 0.0, 0);
        ck_assert_close(tg_get(dw, (int64_t[]){3, j}), g1, 0);
    }
    /* a strided weight gathers the same rows */
    tg_tensor *wt = tg_transpose(c, seq(c, dt, TG_SHAPE(3, 4), 1.0, 0.0, 1.0), 0, 1);
    tg_tensor *y2 = tg_embedding(c, wt, idx);
    tu_assert_ok(c);
    ck_assert_close(tg_get(y2, (int64_t[]){0, 1, 2}), tg_get(wt, (int64_t[]){3, 2}), 0);
    tg_ctx_free(c);
}
END_TEST

/* Scatter-add with many repeated indices: the same bits on 1 and 4 threads. */
START_TEST(test_embedding_backward_threads)
{
    int64_t P = 20000, D = 64, V = 50;
    size_t nb = (size_t)(V * D) * sizeof(float);
    uint8_t *out[2];
    for (int t = 0; t < 2; t++) {
        tg_ctx *c = tu_ctx();
        tg_ctx_set_threads(c, t ? 4 : 1);
        int64_t *iv = malloc((size_t)P * sizeof *iv);
        for (int64_t p = 0; p < P; p++) iv[p] = (p * 7919) % V;
        tg_tensor *idx = tg_tensor_from(c, TG_I64, 1, &P, iv);
        free(iv);
        tg_tensor *g = seq(c, TG_F32, TG_SHAPE(P, D), 0.0137, 0.2, 1.0);
        tg_tensor *dw = tg_embedding_backward(c, g, idx, V);
        tu_assert_ok(c);
        out[t] = malloc(nb);
        ck_assert_int_eq(tg_copy_out(dw, out[t], nb), TG_OK);
        tg_ctx_free(c);
    }
    ck_assert(memcmp(out[0], out[1], nb) == 0);
    free(out[0]);
    free(out[1]);
}
END_TEST

START_TEST(test_embedding_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *w = tg_tensor_new(c, TG_F64, TG_SHAPE(5, 2));
    tg_tensor *bad = tg_tensor_from(c, TG_I64, TG_SHAPE(2, 2), (const int64_t[]){0, 4, 7, 1});
    ck_assert_ptr_null(tg_embedding(c, w, bad));
    tu_assert_error(c, TG_ERR_INVALID, "tg_embedding", "index 7 at position [1,0]");
    tg_tensor *neg = tg_tensor_from(c, TG_I64, TG_SHAPE(1), (const int64_t[]){-1});
    ck_assert_ptr_null(tg_embedding(c, w, neg));
    tu_assert_error(c, TG_ERR_INVALID, "tg_embedding", "index -1");
    ck_assert_ptr_null(tg_embedding(c, w, tg_tensor_new(c, TG_F64, TG_SHAPE(2))));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_embedding", "i64");
    ck_assert_ptr_null(tg_embedding(c, tg_tensor_new(c, TG_F64, TG_SHAPE(5)), neg));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_embedding", "2-d");
    ck_assert_ptr_null(tg_embedding_backward(c, tg_tensor_new(c, TG_F64, TG_SHAPE(2, 3)), bad, 8));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_embedding_backward", NULL);
    ck_assert_ptr_null(
        tg_embedding_backward(c, tg_tensor_new(c, TG_F64, TG_SHAPE(2, 2, 3)), bad, 5));
    tu_assert_error(c, TG_ERR_INVALID, "tg_embedding_backward", "index 7");
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* Attention                                                              */
/* ====================================================================== */

typedef struct {
    tg_tensor *q, *k, *v;
} qkv;

static qkv make_qkv(tg_ctx *c, tg_dtype dt)
{
    return (qkv){seq(c, dt, TG_SHAPE(2, 3, 4), 0.61, 0.3, 1.0),
                 seq(c, dt, TG_SHAPE(2, 5, 4), 0.47, 1.7, 1.0),
                 seq(c, dt, TG_SHAPE(2, 5, 2), 0.83, 0.9, 1.5)};
}

START_TEST(test_sdpa_values)
{
    tg_dtype dt = dts[_i];
    double tol = tol_of(dt);
    tg_ctx *c = tu_ctx();
    qkv t = make_qkv(c, dt);
    tg_tensor *y = tg_sdpa(c, t.q, t.k, t.v, NULL, false, 0.0);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_shape(y)[1], 3);
    ck_assert_int_eq(tg_shape(y)[2], 2);
    tu_assert_values(y, tol, -0.017494958237321216, 0.57575910791752705, 0.73784227672475311,
                     0.41894155264400196, -0.078084501747803903, -0.17029322667639249,
                     -0.53294764625644586, -0.39199818311202539, 0.75727150177878699,
                     0.18283339423395908, -0.59291918085066664, -0.79118674307965853);
    y = tg_sdpa(c, t.q, t.k, t.v, NULL, true, 0.0);
    tu_assert_values(y, tol, 1.1749903644412252, 1.4810307595510745, 0.92435207742928349,
                     0.15996915119696356, -0.27879733758032493, -0.63318812744794151,
                     0.33433487115037147, -0.85341703495492771, 0.15413964108342088,
                     -0.88303253515105684, -0.97253623260523159, -0.71707894321835863);
    y = tg_sdpa(c, t.q, t.k, t.v, NULL, false, 0.3);
    tu_assert_values(y, tol, 0.083316146278235664, 0.48123962217266208, 0.58233532385861997,
                     0.39116849402448539, 0.087372817638901132, 0.037030992710999827,
                     -0.3472364455187521, -0.34323404961482951, 0.51037143448390532,
                     0.04168369482748302, -0.37687216566259629, -0.59698925886642429);
    tg_ctx_free(c);
}
END_TEST

/* causal == an explicit top-left tril mask, for Lq < Lk and Lq > Lk,
 * forward and backward, bit for bit; the third case has rows longer than
 * the softmax's vectors and partial sums (a causal row runs to a multiple
 * of 16 entries, the mask's over all Lk), the last four run causal by
 * blocks of rows and keys (Lq >= 64: products skip the zeros above the
 * diagonal blocks; keys past the last query get zero gradients). */
START_TEST(test_sdpa_causal_vs_mask)
{
    tg_dtype dt = dts[_i];
    tg_ctx *c = tu_ctx();
    static const int64_t lqs[7] = {3, 5, 37, 64, 70, 100, 80},
                         lks[7] = {5, 3, 40, 64, 90, 40, 130};
    for (int cs = 0; cs < 7; cs++) {
        int64_t Lq = lqs[cs], Lk = lks[cs], D = cs < 3 ? 4 : 24;
        tg_tensor *q = seq(c, dt, 3, (const int64_t[]){2, Lq, D}, 0.61, 0.3, 1.0);
        tg_tensor *k = seq(c, dt, 3, (const int64_t[]){2, Lk, D}, 0.47, 1.7, 1.0);
        tg_tensor *v = seq(c, dt, 3, (const int64_t[]){2, Lk, 2}, 0.83, 0.9, 1.5);
        tg_tensor *m = tg_full(c, dt, 2, (const int64_t[]){Lq, Lk}, 0.0);
        tu_assert_ok(c);
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t j = i + 1; j < Lk; j++) {
                if (dt == TG_F32) ((float *)tg_data(m))[i * Lk + j] = -INFINITY;
                else ((double *)tg_data(m))[i * Lk + j] = -INFINITY;
            }
        tg_tensor *in[3] = {q, k, v};
        for (int i = 0; i < 3; i++) tg_set_requires_grad(in[i], true);
        tg_tensor *a = tg_sdpa(c, q, k, v, NULL, true, 0.0);
        tg_tensor *b = tg_sdpa(c, q, k, v, m, false, 0.0);
        tg_tensor *both = tg_sdpa(c, q, k, v, m, true, 0.0);
        tu_assert_ok(c);
        /* blocks change the products' shapes, so their rounding: there the
         * results agree to a few ulp of the largest term */
        const double tol = cs < 3 ? 0.0 : dt == TG_F32 ? 1e-6 : 1e-15;
        for (int64_t i = 0; i < tg_numel(a); i++) {
            int64_t ix[3] = {i / (Lq * 2), i / 2 % Lq, i % 2};
            ck_assert(fabs(tg_get(a, ix) - tg_get(b, ix)) <= tol);
            ck_assert(tg_get(a, ix) == tg_get(both, ix));
            ck_assert(isfinite(tg_get(a, ix)));
        }
        /* the gradients are the mask's (bit for bit without blocks) */
        tg_tensor *wt = seq(c, dt, 3, (const int64_t[]){2, Lq, 2}, 0.37, 0.5, 1.0);
        tg_tensor *ga[3], *gb[3];
        tg_tensor *la = tg_sum(c, tg_mul(c, a, wt)), *lb = tg_sum(c, tg_mul(c, b, wt));
        tu_assert_status(tg_grad_of(c, 1, &la, NULL, 3, in, false, ga), TG_OK);
        tu_assert_status(tg_grad_of(c, 1, &lb, NULL, 3, in, false, gb), TG_OK);
        for (int i = 0; i < 3; i++) {
            if (cs < 3) {
                assert_same_bits(ga[i], gb[i]);
                continue;
            }
            tg_tensor *d = tg_max_axes(c, tg_abs(c, tg_sub(c, ga[i], gb[i])), 3,
                                       (const int[]){0, 1, 2}, false);
            tu_assert_ok(c);
            ck_assert_msg(tg_item(d) <= 8 * tol, "case %d grad %d: %g", cs, i, tg_item(d));
            /* keys past the last query get exact zeros */
            for (int64_t key = Lq; i > 0 && key < Lk; key++)
                for (int64_t e = 0; e < (i == 1 ? D : 2); e++)
                    ck_assert(tg_get(ga[i], (const int64_t[]){1, key, e}) == 0.0);
        }
    }
    tg_ctx_free(c);
}
END_TEST

/* P kept by the forward (Lk <= 2 Dv) or made again in the backward
 * (tg__sdpa_keep_p false): the same y and the same gradients of q, k, v
 * and a mask, bit for bit, at 1 and at 3 threads; keeping costs the
 * forward P's bytes. Cases: a mask with its gradient and broadcast batch
 * dims; causal by blocks (64 queries); causal with more keys than queries
 * (Lk = 2 Dv exactly). Runs 0 and 2 are at 1 thread. */
START_TEST(test_sdpa_keeps_p)
{
    const tg_dtype dt = dts[_i];
    const size_t es = dt == TG_F64 ? 8 : 4;
    static const struct {
        int64_t B, H, Lq, Lk, D, Dv;
        bool causal, mask;
    } cs[3] = {{2, 3, 8, 6, 4, 5, false, true},
               {2, 2, 64, 64, 16, 32, true, false},
               {1, 2, 80, 130, 8, 65, true, true}};
    static double want[60000], got[60000];
    for (int ci = 0; ci < 3; ci++) {
        const int64_t B = cs[ci].B, H = cs[ci].H, Lq = cs[ci].Lq, Lk = cs[ci].Lk;
        size_t grew[2] = {0, 0};
        for (int run = 0; run < 4; run++) { /* keep, threads 1 / 3 */
            const bool keep = run < 2;
            tg__sdpa_keep_p = keep;
            tg_ctx *c = tu_ctx();
            tu_assert_status(tg_ctx_set_threads(c, run % 2 ? 3 : 1), TG_OK);
            /* k broadcast over the batch dim */
            tg_tensor *q = seq(c, dt, 4, (const int64_t[]){B, H, Lq, cs[ci].D}, 0.61, 0.3, 1.0);
            tg_tensor *k = seq(c, dt, 4, (const int64_t[]){1, H, Lk, cs[ci].D}, 0.47, 1.7, 1.0);
            tg_tensor *v = seq(c, dt, 4, (const int64_t[]){B, H, Lk, cs[ci].Dv}, 0.83, 0.9, 1.5);
            tg_tensor *m =
                cs[ci].mask ? seq(c, dt, 2, (const int64_t[]){Lq, Lk}, 0.29, 0.1, 0.5) : NULL;
            tg_tensor *in[4] = {q, k, v, m};
            for (int i = 0; i < 4; i++)
                if (in[i]) tg_set_requires_grad(in[i], true);
            tu_assert_ok(c);
            const size_t before = tg_ctx_bytes_used(c);
            tg_tensor *y = tg_sdpa(c, q, k, v, m, cs[ci].causal, 0.0);
            tu_assert_ok(c);
            if (run % 2 == 0) grew[!keep] = tg_ctx_bytes_used(c) - before;
            tg_tensor *wt = seq(c, dt, 4, (const int64_t[]){B, H, Lq, cs[ci].Dv}, 0.37, 0.5, 1.0);
            tu_assert_status(tg_backward(c, tg_sum(c, tg_mul(c, y, wt))), TG_OK);
            double *out = run ? got : want;
            int64_t at = 0;
            for (int i = -1; i < 4; i++) {
                const tg_tensor *t = i < 0 ? y : in[i] ? tg_grad(in[i]) : NULL;
                if (i >= 0 && !in[i]) continue;
                ck_assert_ptr_nonnull(t);
                for (int64_t e = 0; e < tg_numel(t); e++) {
                    ck_assert_int_lt(at, 60000);
                    out[at++] = tg__get_flat(t, e);
                }
            }
            if (run)
                for (int64_t e = 0; e < at; e++)
                    ck_assert_msg(memcmp(&want[e], &got[e], sizeof got[e]) == 0,
                                  "case %d run %d: element %lld of y and the gradients: %.17g, "
                                  "%.17g kept at 1 thread",
                                  ci, run, (long long)e, got[e], want[e]);
            tg_ctx_free(c);
        }
        /* P's bytes, less the one batch of scratch the recompute's forward
         * makes (at 1 thread) */
        const size_t p_bytes = (size_t)(B * H * Lq * Lk) * es, scratch = (size_t)(Lq * Lk) * es;
        ck_assert_msg(grew[0] + scratch >= grew[1] + p_bytes,
                      "case %d: the forward took %zu bytes keeping P, %zu without", ci, grew[0],
                      grew[1]);
    }
    tg__sdpa_keep_p = true;
}
END_TEST

/* A NaN or +inf among a row's scores makes that row of y all NaN, in f32
 * (whose softmax takes e^(s - max) from tg__exp_le1f, 0 for a NaN) and in
 * f64 alike; other rows keep the unmasked result's bits, and a NaN past a
 * causal row's last key is never read. */
START_TEST(test_sdpa_nonfinite_rows)
{
    tg_dtype dt = dts[_i];
    tg_ctx *c = tu_ctx();
    qkv t = make_qkv(c, dt);
    tg_tensor *m = tg_full(c, dt, TG_SHAPE(3, 5), 0.0);
    tu_assert_ok(c);
    /* row 0: NaN at key 4 (past its causal cut); row 1: +inf at key 1;
     * row 2: NaN at key 2 */
    const int64_t at[3] = {0 * 5 + 4, 1 * 5 + 1, 2 * 5 + 2};
    const double val[3] = {NAN, INFINITY, NAN};
    for (int k = 0; k < 3; k++) {
        if (dt == TG_F32) ((float *)tg_data(m))[at[k]] = (float)val[k];
        else ((double *)tg_data(m))[at[k]] = val[k];
    }
    for (int causal = 0; causal < 2; causal++) {
        tg_tensor *y = tg_sdpa(c, t.q, t.k, t.v, m, causal, 0.0);
        tg_tensor *y0 = tg_sdpa(c, t.q, t.k, t.v, NULL, causal, 0.0);
        tu_assert_ok(c);
        for (int64_t b = 0; b < 2; b++)
            for (int64_t i = 0; i < 3; i++)
                for (int64_t j = 0; j < 2; j++) {
                    const int64_t ix[3] = {b, i, j};
                    const double v = tg_get(y, ix);
                    if (i > 0 || !causal)
                        ck_assert_msg(isnan(v), "row %lld causal %d: %g", (long long)i, causal, v);
                    else ck_assert(v == tg_get(y0, ix));
                }
    }
    tg_ctx_free(c);
}
END_TEST

typedef struct {
    bool causal;
} sdpa_arg;

static tg_tensor *f_sdpa(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    const sdpa_arg *a = user;
    return tg_sdpa(c, in[0], in[1], in[2], n > 3 ? in[3] : NULL, a->causal, 0.0);
}

/* First and second order through the fused op, with a mask that requires
 * grad and with broadcast batch dims. */
START_TEST(test_sdpa_gradcheck)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *in[4] = {seq(c, TG_F64, TG_SHAPE(2, 3, 4), 0.61, 0.3, 1.0),
                        seq(c, TG_F64, TG_SHAPE(1, 5, 4), 0.47, 1.7, 1.0),
                        seq(c, TG_F64, TG_SHAPE(2, 5, 2), 0.83, 0.9, 1.5),
                        seq(c, TG_F64, TG_SHAPE(3, 5), 0.29, 0.4, 0.5)};
    for (int i = 0; i < 4; i++) tg_set_requires_grad(in[i], true);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    o.atol = 1e-6;
    o.rtol = 1e-4;
    char rep[1024];
    for (int cs = 0; cs < 2; cs++) {
        sdpa_arg a = {cs == 1};
        tg_status st = tg_gradcheck(f_sdpa, &a, in, 4, &o, rep, sizeof rep);
        ck_assert_msg(st == TG_OK, "causal %d: %s", cs, rep);
        st = tg_gradcheck(f_sdpa, &a, in, 3, &o, rep, sizeof rep);
        ck_assert_msg(st == TG_OK, "causal %d, no mask: %s", cs, rep);
    }
    /* causal by blocks of rows (64 queries, more keys than queries), with a
     * mask over the keys that requires grad: first order */
    tg_tensor *big[4] = {seq(c, TG_F64, TG_SHAPE(1, 64, 3), 0.61, 0.3, 1.0),
                         seq(c, TG_F64, TG_SHAPE(1, 70, 3), 0.47, 1.7, 1.0),
                         seq(c, TG_F64, TG_SHAPE(1, 70, 2), 0.83, 0.9, 1.5),
                         seq(c, TG_F64, TG_SHAPE(70), 0.29, 0.4, 0.5)};
    for (int i = 0; i < 4; i++) tg_set_requires_grad(big[i], true);
    o.second_order = false;
    sdpa_arg a = {true};
    tg_status st = tg_gradcheck(f_sdpa, &a, big, 4, &o, rep, sizeof rep);
    ck_assert_msg(st == TG_OK, "causal blocks: %s", rep);
    tg_ctx_free(c);
}
END_TEST

/* x [B, L, H*d] -> [B, H, L, d]: multi-head attention's head split, a view */
static tg_tensor *split_heads(tg_ctx *c, tg_tensor *x, int64_t h)
{
    const int64_t *s = tg_shape(x);
    tg_tensor *r = tg_reshape(c, x, TG_SHAPE(s[0], s[1], h, s[2] / h));
    return tg_permute(c, r, (const int[]){0, 2, 1, 3});
}

/* [B, H, L, d] -> [B, L, H*d] */
static tg_tensor *merge_heads(tg_ctx *c, tg_tensor *y)
{
    const int64_t *s = tg_shape(y);
    tg_tensor *p = tg_permute(c, y, (const int[]){0, 2, 1, 3});
    return tg_reshape(c, p, TG_SHAPE(s[0], s[2], s[1] * s[3]));
}

/* On head-split views (multi-head attention's layout) sdpa reads q, k, v
 * and dout in place and writes y and dq, dk, dv in their inputs' order of
 * dims, so merging heads and splitting their gradients are views, with the
 * same bits as sdpa on contiguous copies; 40 x 40 x 8 products per head
 * go through BLAS. */
START_TEST(test_sdpa_head_layout)
{
    tg_dtype dt = dts[_i];
    tg_ctx *c = tu_ctx();
    const int64_t B = 2, L = 40, H = 3, E = 24;
    tg_tensor *x[3], *w = seq(c, dt, TG_SHAPE(B, L, E), 0.37, 0.2, 1.0);
    for (int i = 0; i < 3; i++) {
        x[i] = seq(c, dt, TG_SHAPE(B, L, E), 0.61 + 0.1 * i, 0.3 * i, 1.0);
        tg_set_requires_grad(x[i], true);
    }
    tg_tensor *y[2], *m[2], *g[2][3], *gh[3];
    for (int copy = 0; copy < 2; copy++) {
        tg_tensor *h[3];
        for (int i = 0; i < 3; i++) {
            h[i] = split_heads(c, x[i], H);
            if (copy) h[i] = tg_contiguous(c, h[i]);
        }
        y[copy] = tg_sdpa(c, h[0], h[1], h[2], NULL, true, 0.0);
        m[copy] = merge_heads(c, y[copy]);
        tg_tensor *loss = tg_sum(c, tg_mul(c, m[copy], w));
        tu_assert_ok(c);
        tu_assert_status(tg_grad_of(c, 1, &loss, NULL, 3, x, false, g[copy]), TG_OK);
        if (!copy) tu_assert_status(tg_grad_of(c, 1, &loss, NULL, 3, h, false, gh), TG_OK);
    }
    /* y is laid out as [B, L, H, d]: the merge is a view of it */
    ck_assert_ptr_null(tg_data(y[0]));
    ck_assert_ptr_nonnull(tg_data(tg_permute(c, y[0], (const int[]){0, 2, 1, 3})));
    ck_assert_ptr_eq(tg_data(m[0]), tg_data(tg_permute(c, y[0], (const int[]){0, 2, 1, 3})));
    ck_assert_ptr_nonnull(tg_data(y[1]));
    assert_same_bits(y[0], y[1]);
    for (int i = 0; i < 3; i++) {
        /* dq, dk, dv like q, k, v: their head merge is contiguous */
        ck_assert_ptr_nonnull(tg_data(tg_permute(c, gh[i], (const int[]){0, 2, 1, 3})));
        assert_same_bits(g[0][i], g[1][i]);
    }
    tg_ctx_free(c);
}
END_TEST

static tg_tensor *f_sdpa_heads(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    const sdpa_arg *a = user;
    tg_tensor *y = tg_sdpa(c, split_heads(c, in[0], 2), split_heads(c, in[1], 2),
                           split_heads(c, in[2], 2), NULL, a->causal, 0.0);
    return merge_heads(c, y);
}

/* First and second order through the head-split layout. */
START_TEST(test_sdpa_heads_gradcheck)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *in[3] = {seq(c, TG_F64, TG_SHAPE(2, 3, 4), 0.61, 0.3, 1.0),
                        seq(c, TG_F64, TG_SHAPE(2, 3, 4), 0.47, 1.7, 1.0),
                        seq(c, TG_F64, TG_SHAPE(2, 3, 4), 0.83, 0.9, 1.5)};
    for (int i = 0; i < 3; i++) tg_set_requires_grad(in[i], true);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    o.atol = 1e-6;
    o.rtol = 1e-4;
    char rep[1024];
    for (int cs = 0; cs < 2; cs++) {
        sdpa_arg a = {cs == 1};
        tg_status st = tg_gradcheck(f_sdpa_heads, &a, in, 3, &o, rep, sizeof rep);
        ck_assert_msg(st == TG_OK, "causal %d: %s", cs, rep);
    }
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_sdpa_errors)
{
    tg_ctx *c = tu_ctx();
    qkv t = make_qkv(c, TG_F64);
    /* a fully masked row is an error naming it, not a silent NaN */
    tg_tensor *m = tg_tensor_new(c, TG_F64, TG_SHAPE(3, 5));
    for (int j = 0; j < 5; j++) ((double *)tg_data(m))[1 * 5 + j] = -INFINITY;
    ck_assert_ptr_null(tg_sdpa(c, t.q, t.k, t.v, m, false, 0.0));
    tu_assert_error(c, TG_ERR_NUMERIC, "tg_sdpa", "query 1 of batch 0 is fully masked");
    /* a large finite negative on a whole row cancels in the softmax: the row
     * attends as if unmasked, up to the rounding of s - 1e9 (PyTorch too) */
    for (int j = 0; j < 5; j++) ((double *)tg_data(m))[1 * 5 + j] = -1e9;
    tg_tensor *y = tg_sdpa(c, t.q, t.k, t.v, m, false, 0.0);
    tg_tensor *y0 = tg_sdpa(c, t.q, t.k, t.v, NULL, false, 0.0);
    tu_assert_ok(c);
    ck_assert_close(tg_get(y, (int64_t[]){0, 1, 0}), tg_get(y0, (int64_t[]){0, 1, 0}), 1e-6);

    ck_assert_ptr_null(tg_sdpa(c, t.q, t.v, t.v, NULL, false, 0.0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_sdpa", NULL);
    ck_assert_ptr_null(tg_sdpa(c, t.q, t.k, t.q, NULL, false, 0.0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_sdpa", NULL);
    ck_assert_ptr_null(
        tg_sdpa(c, t.q, t.k, t.v, tg_tensor_new(c, TG_F64, TG_SHAPE(4, 5)), false, 0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_sdpa", "mask [4,5]");
    ck_assert_ptr_null(
        tg_sdpa(c, t.q, tg_tensor_new(c, TG_F64, TG_SHAPE(3, 5, 4)), t.v, NULL, false, 0));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_sdpa", "batch dims");
    ck_assert_ptr_null(tg_sdpa(c, t.q, t.k, t.v, NULL, false, INFINITY));
    tu_assert_error(c, TG_ERR_INVALID, "tg_sdpa", "scale");
    ck_assert_ptr_null(
        tg_sdpa(c, t.q, t.k, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 5, 2)), NULL, false, 0));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_sdpa", NULL);
    ck_assert_ptr_null(tg_sdpa(c, t.q, NULL, t.v, NULL, false, 0));
    tu_assert_error(c, TG_ERR_INVALID, "tg_sdpa", NULL);
    tg_ctx_free(c);
}
END_TEST

/* ---- fast f32 math and the LSTM cell ----------------------------------- */

/* |got - want| in units of the last place of want rounded to float; a NaN
 * must meet a NaN, an infinity or a float overflow the same infinity. */
static double ulps(float got, double want)
{
    if (isnan(want)) return isnan(got) ? 0 : INFINITY;
    float w = (float)want;
    if (isinf(w)) return got == w ? 0 : INFINITY;
    float u = nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / u;
}

/* exp, sigmoid and tanh of fastmath.h within 3 ulp of the double results,
 * over a sweep of every 4099th float bit pattern (65537th under valgrind;
 * NaNs, infinities,
 * subnormals, the overflow edge included) plus chosen points */
/* Entry i of a float sweep: the chosen points pts[0..np), then every
 * stride-th bit pattern (stride odd, so the patterns are all distinct). */
static float sweep_float(const float *pts, size_t np, uint64_t stride, uint64_t i)
{
    if (i < np) return pts[i];
    uint32_t bits = (uint32_t)((i - np) * stride);
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

START_TEST(test_fastmath_ulps)
{
    static const float pts[] = {0.0f,     -0.0f,   1e-30f,   0.625f,   -0.625f, 0.6249f,
                                88.72f,   88.73f,  -87.3f,   -103.9f,  -104.1f, 9.0f,
                                -9.0f,    20.0f,   INFINITY, -INFINITY, NAN};
    double worst[3] = {0, 0, 0};
    const uint64_t stride = tu_under_valgrind() ? 65537 : 4099; /* odd: all bit patterns */
    const size_t np = sizeof pts / sizeof pts[0];
    for (uint64_t i = 0; i < (1ull << 32) / stride + np; i++) {
        const float x = sweep_float(pts, np, stride, i);
        double xd = x;
        double e[3] = {ulps(tg__expf(x), exp(xd)), ulps(tg__sigmoidf(x), 1.0 / (1.0 + exp(-xd))),
                       ulps(tg__tanhf(x), tanh(xd))};
        for (int k = 0; k < 3; k++) {
            ck_assert_msg(e[k] <= 3.0, "function %d at %a: %g ulp", k, (double)x, e[k]);
            if (e[k] > worst[k]) worst[k] = e[k];
        }
    }
    /* the sweep does reach the rounding error (the check can fail) */
    ck_assert(worst[0] > 0 && worst[1] > 0 && worst[2] > 0);
}
END_TEST

static bool same_float_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* tg__exp_le1f (gelu's tail, the softmax of tg_sdpa) is tg__expf bit for
 * bit wherever x <= 1, NaN aside (0 there): on the sweep's points, and on
 * every float from -87.4 down to -104.1, where the result goes subnormal
 * and then to 0. */
START_TEST(test_fastmath_exp_le1)
{
    static const float pts[] = {1.0f, 0.99999994f, 0.0f, -0.0f, -1e-30f, -INFINITY, -104.0f};
    const uint64_t stride = tu_under_valgrind() ? 65537 : 4099;
    const size_t np = sizeof pts / sizeof pts[0];
    uint64_t n = 0;
    for (uint64_t i = 0; i < (1ull << 32) / stride + np; i++) {
        const float x = sweep_float(pts, np, stride, i);
        if (!(x <= 1.0f)) continue;
        ck_assert_msg(same_float_bits(tg__exp_le1f(x), tg__expf(x)), "at %a", (double)x);
        n++;
    }
    ck_assert(n > (1ull << 31) / stride); /* most of the sweep is <= 1 */
    const uint64_t step = tu_under_valgrind() ? 97 : 1;
    for (float x = -87.4f; x >= -104.1f; x = nextafterf(x, -INFINITY)) {
        ck_assert_msg(same_float_bits(tg__exp_le1f(x), tg__expf(x)), "at %a", (double)x);
        for (uint64_t k = 1; k < step; k++) x = nextafterf(x, -INFINITY);
    }
    ck_assert(tg__exp_le1f(NAN) == 0.0f);
}
END_TEST

/* f32 tg_tanh's runs of one or two elements (a branch to the one form the
 * argument needs) give the bits of the vector loop (both forms and a
 * select): the same sweep, once as a contiguous tensor and once as the
 * first two columns of an [M, 3] buffer, whose rows reach the kernel as
 * runs of two. */
START_TEST(test_tanh_short_runs_same_bits)
{
    static const float pts[] = {0.0f,   -0.0f, 0.625f,   -0.625f,   0.6249999f, -0.6249999f,
                                0.625001f, 1e-30f, 88.0f, INFINITY, -INFINITY, NAN, -NAN, 1e-45f};
    const size_t np = sizeof pts / sizeof pts[0];
    const uint64_t stride = tu_under_valgrind() ? 65537 : 4099;
    const int64_t m = (int64_t)((np + (1ull << 32) / stride + 2) / 2); /* rows of two */
    float *flat = calloc((size_t)(2 * m), sizeof *flat), *wide = calloc((size_t)(3 * m), 4);
    float *a = malloc((size_t)(2 * m) * sizeof *a), *b = malloc((size_t)(2 * m) * sizeof *b);
    ck_assert(flat && wide && a && b);
    for (int64_t i = 0; i < 2 * m; i++) {
        const float x = sweep_float(pts, np, stride, (uint64_t)i);
        flat[i] = x;
        wide[i / 2 * 3 + i % 2] = x;
    }
    tg_ctx *c = tu_ctx();
    tg_tensor *v = tg_tanh(c, tg_tensor_from(c, TG_F32, TG_SHAPE(2 * m), flat));
    tg_tensor *w = tg_tensor_from(c, TG_F32, TG_SHAPE(m, 3), wide);
    tg_tensor *s = tg_tanh(c, tg_slice(c, w, 1, 0, 2, 1));
    tu_assert_ok(c);
    ck_assert_int_eq(tg_copy_out(v, a, (size_t)(2 * m) * sizeof *a), TG_OK);
    ck_assert_int_eq(tg_copy_out(s, b, (size_t)(2 * m) * sizeof *b), TG_OK);
    for (int64_t i = 0; i < 2 * m; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof a[i]) == 0, "tanh(%a): %a in a run of two, %a",
                      (double)flat[i], (double)b[i], (double)a[i]);
    tg_ctx_free(c);
    free(flat);
    free(wide);
    free(a);
    free(b);
}
END_TEST

/* fastmath.h's tail k Phi(-|x|) and f32 tg_gelu (its kernel, whichever
 * copy the CPU runs) against double erfc over every 4099th float bit
 * pattern with |x| <= 16 (65537th under valgrind) plus chosen points:
 * within 8 ulp where the exact result is a normal float, within 4 units of
 * 2^-149 below; specials as x / 2 erfc(-x / sqrt 2) gives them (-inf is
 * -inf * 0 = NaN, -0 stays -0). */
START_TEST(test_fastmath_gelu_ulps)
{
    static const float pts[] = {0.0f,  -0.0f,   1e-30f,  -1e-30f,   1e-45f,    -1e-45f,  0.5f,
                                -0.5f, -13.1f,  -13.2f,  -14.3f,    -16.0f,    16.0f,    -20.0f,
                                30.0f, -1e30f,  1e30f,   INFINITY,  -INFINITY, NAN,      3.4e38f};
    const size_t np = sizeof pts / sizeof pts[0];
    const uint64_t stride = tu_under_valgrind() ? 65537 : 4099;
    const int64_t cap = (int64_t)np + (int64_t)(((1ull << 32) / stride) / 2 + 1);
    float *xs = malloc((size_t)cap * sizeof *xs);
    ck_assert_ptr_nonnull(xs);
    int64_t n = 0;
    for (size_t i = 0; i < np; i++) xs[n++] = pts[i];
    for (uint64_t b = 0; b < (1ull << 32); b += stride) {
        uint32_t u = (uint32_t)b;
        float x;
        memcpy(&x, &u, sizeof x);
        if (fabsf(x) <= 16.0f && n < cap) xs[n++] = x;
    }
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_tensor_from(c, TG_F32, 1, &n, xs);
    tg_tensor *g = tg_gelu(c, t);
    ck_assert_ptr_nonnull(g);
    const float *gv = tg_data(g);
    double worst[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        float x = xs[i];
        double xd = x, want[2] = {0.5 * erfc(fabs(xd) * 0.70710678118654752440), 0.5 * xd * erfc(-xd * 0.70710678118654752440)};
        float got[2] = {tg__phi_lowerf(x, 1.0f), gv[i]};
        for (int k = 0; k < 2; k++) {
            if (isnan(want[k]) || isinf(want[k]) || fabs(want[k]) >= 0x1p-126) {
                double e = ulps(got[k], want[k]);
                ck_assert_msg(e <= 8.0, "%s at %a: %g ulp", k ? "gelu" : "phi", (double)x, e);
                if (e > worst[k]) worst[k] = e;
            } else {
                ck_assert_msg(fabs(got[k] - want[k]) <= 0x1p-147, "%s at %a: %a, want %a",
                              k ? "gelu" : "phi", (double)x, (double)got[k], want[k]);
            }
        }
    }
    /* -inf: NaN as x / 2 erfc(-x / sqrt 2); -0 keeps its sign */
    ck_assert(isnan(gv[18]) && signbit(gv[1]) && gv[17] == INFINITY);
    ck_assert(worst[0] > 1 && worst[1] > 1); /* the sweep reaches the error */
    free(xs);
    tg_ctx_free(c);
}
END_TEST

/* tg_lstm_cell against the same step written with ops, f64 and f32, and
 * the gradients of both inputs */
START_TEST(test_lstm_cell_values)
{
    tg_dtype dt = dts[_i];
    tg_ctx *c = tu_ctx();
    const int64_t B = 3, H = 5;
    tg_tensor *G = seq(c, dt, 2, (const int64_t[]){B, 4 * H}, 0.7, 0.1, 3.0);
    tg_tensor *cp = seq(c, dt, 2, (const int64_t[]){B, H}, 1.3, 0.4, 2.0);
    tg_set_requires_grad(G, true);
    tg_set_requires_grad(cp, true);
    tg_tensor *y = tg_lstm_cell(c, G, cp);
    tg_tensor *i = tg_sigmoid(c, tg_slice(c, G, 1, 0, H, 1));
    tg_tensor *f = tg_sigmoid(c, tg_slice(c, G, 1, H, 2 * H, 1));
    tg_tensor *g = tg_tanh(c, tg_slice(c, G, 1, 2 * H, 3 * H, 1));
    tg_tensor *o = tg_sigmoid(c, tg_slice(c, G, 1, 3 * H, 4 * H, 1));
    tg_tensor *c2 = tg_add(c, tg_mul(c, f, cp), tg_mul(c, i, g));
    tg_tensor *ref = tg_stack(c, (tg_tensor *[]){tg_mul(c, o, tg_tanh(c, c2)), c2}, 2, 0);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_ndim(y), 3);
    ck_assert_int_eq(tg_shape(y)[0], 2);
    for (int64_t k = 0; k < 2 * B * H; k++) {
        int64_t ix[3] = {k / (B * H), k / H % B, k % H};
        ck_assert_close(tg_get(y, ix), tg_get(ref, ix), tol_of(dt));
    }
    /* gradients of a weighted sum: fused backward vs the ops' */
    tg_tensor *w = seq(c, dt, 3, (const int64_t[]){2, B, H}, 0.9, 0.2, 1.0);
    tg_tensor *gy[2], *gr[2];
    tg_tensor *ins[2] = {G, cp};
    tg_tensor *ly = tg_sum(c, tg_mul(c, y, w)), *lr = tg_sum(c, tg_mul(c, ref, w));
    ck_assert_int_eq(tg_grad_of(c, 1, &ly, NULL, 2, ins, false, gy), TG_OK);
    ck_assert_int_eq(tg_grad_of(c, 1, &lr, NULL, 2, ins, false, gr), TG_OK);
    for (int k = 0; k < 2; k++)
        for (int64_t e = 0; e < tg_numel(gy[k]); e++) {
            int64_t n1 = tg_shape(gy[k])[1], ix[2] = {e / n1, e % n1};
            ck_assert_close(tg_get(gy[k], ix), tg_get(gr[k], ix), tol_of(dt));
        }
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_lstm_cell_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *G = tg_tensor_new(c, TG_F64, TG_SHAPE(3, 8));
    tg_tensor *cp = tg_tensor_new(c, TG_F64, TG_SHAPE(3, 2));
    ck_assert_ptr_null(tg_lstm_cell(c, G, tg_tensor_new(c, TG_F64, TG_SHAPE(3, 3))));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm_cell", "need gates [B, 4H] and cell [B, H]");
    ck_assert_ptr_null(tg_lstm_cell(c, G, tg_tensor_new(c, TG_F64, TG_SHAPE(2, 2))));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm_cell", "gates [3,8], cell [2,2]");
    ck_assert_ptr_null(tg_lstm_cell(c, tg_tensor_new(c, TG_F64, TG_SHAPE(24)), cp));
    tu_assert_error(c, TG_ERR_SHAPE, "tg_lstm_cell", NULL);
    ck_assert_ptr_null(tg_lstm_cell(c, G, tg_tensor_new(c, TG_F32, TG_SHAPE(3, 2))));
    tu_assert_error(c, TG_ERR_DTYPE, "tg_lstm_cell", NULL);
    ck_assert_ptr_null(tg_lstm_cell(c, NULL, cp));
    tu_assert_error(c, TG_ERR_INVALID, "tg_lstm_cell", NULL);
    tg_ctx_free(c);
}
END_TEST

Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *norm = tu_tcase("norm");
    tcase_set_timeout(norm, 60);
    tcase_add_loop_test(norm, test_layer_rms_norm_values, 0, 2);
    tcase_add_loop_test(norm, test_group_norm_values, 0, 2);
    tcase_add_loop_test(norm, test_batch_norm_running_stats, 0, 2);
    tcase_add_test(norm, test_norm_backward_f32);
    tcase_add_test(norm, test_norm_threads);
    tcase_add_test(norm, test_norm_f32_lanes);
    tcase_add_test(norm, test_norm_f32_overflow);
    tcase_add_test(norm, test_norm_f32_nonfinite);
    tcase_add_loop_test(norm, test_norm_backward_acc, 0, 2);
    tcase_add_test(norm, test_norm_errors);
    suite_add_tcase(s, norm);

    TCase *drop = tu_tcase("dropout");
    tcase_set_timeout(drop, 60);
    tcase_add_loop_test(drop, test_dropout_seed, 0, 2);
    tcase_add_test(drop, test_dropout_stats);
    tcase_add_test(drop, test_dropout_eval_and_edges);
    suite_add_tcase(s, drop);

    TCase *emb = tu_tcase("embedding");
    tcase_set_timeout(emb, 60);
    tcase_add_loop_test(emb, test_embedding_values, 0, 2);
    tcase_add_test(emb, test_embedding_backward_threads);
    tcase_add_test(emb, test_embedding_errors);
    suite_add_tcase(s, emb);

    TCase *att = tu_tcase("sdpa");
    tcase_set_timeout(att, 120);
    tcase_add_loop_test(att, test_sdpa_values, 0, 2);
    tcase_add_loop_test(att, test_sdpa_causal_vs_mask, 0, 2);
    tcase_add_loop_test(att, test_sdpa_keeps_p, 0, 2);
    tcase_add_test(att, test_sdpa_gradcheck);
    tcase_add_loop_test(att, test_sdpa_head_layout, 0, 2);
    tcase_add_test(att, test_sdpa_heads_gradcheck);
    tcase_add_loop_test(att, test_sdpa_nonfinite_rows, 0, 2);
    tcase_add_test(att, test_sdpa_errors);
    suite_add_tcase(s, att);

    TCase *rnn = tu_tcase("lstm_cell");
    tcase_set_timeout(rnn, 120);
    tcase_add_test(rnn, test_fastmath_ulps);
    tcase_add_test(rnn, test_fastmath_exp_le1);
    tcase_add_test(rnn, test_tanh_short_runs_same_bits);
    tcase_add_test(rnn, test_fastmath_gelu_ulps);
    tcase_add_loop_test(rnn, test_lstm_cell_values, 0, 2);
    tcase_add_test(rnn, test_lstm_cell_errors);
    suite_add_tcase(s, rnn);
    return s;
}
