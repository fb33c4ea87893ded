/*
 * norm.c - layer_norm, rms_norm, group_norm and batch_norm, each forward
 * beside its backward.
 *
 * Forward: one fused kernel per op. Each normalised row (or channel, for
 * batch_norm) is handled by one thread, its statistics taken in a fixed
 * order (the mean, then the mean of squared deviations: two passes, no
 * cancellation), so results are bit-identical whatever the thread count.
 * They are sums in double, except for f32 layer_norm and rms_norm, which
 * sum blocks in float lanes and carry the mean as two floats (see
 * ln_rows_f32; half the time of the double form).
 * Inputs are made contiguous first (a copy for strided views). The mean
 * and rstd = 1 / sqrt(var + eps) are saved on the node in "keepdim" shape
 * (x's shape with the normalised dims set to 1), ready to broadcast.
 *
 * Backward, with xhat = (x - mean) * rstd and g = dout * weight:
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   (means over the
 *        normalised dims; rms_norm has no mean(g) term)
 *   dweight = sum(dout * xhat), dbias = sum(dout) over the other dims.
 * When the gradient is itself being recorded (create_graph) and x requires
 * grad, mean and rstd depend on x, so xhat and rstd are rebuilt from x
 * with ops (mean_axes, sub, mul, pow_scalar) and the formula is
 * differentiable again; otherwise the saved statistics are used. layer_norm
 * and rms_norm, when nothing records the gradient at all, compute it in
 * one fused pass per row instead (and dweight, dbias in one pass).
 * A row's sums run as TG__NSUM interleaved partial sums added in a fixed order
 * (so GCC vectorises them, and the bits still do not depend on threads),
 * and the row kernels are also compiled for AVX-512 and AVX2
 * (TG__VEC_CLONES).
 *
 * Node arguments: f[0] = eps. LAYER_NORM, RMS_NORM: iv[0] = number of
 * normalised trailing dims. GROUP_NORM: iv[0] = groups. BATCH_NORM: iv[0]
 * = training; saved[0], saved[1] = batch mean and rstd (training) or the
 * caller's running_mean and running_var (eval, constants).
 */
#include "fastmath.h"
#include "ops_impl.h"

#include <math.h>
#include <string.h>

#define NEED(i) (n->in[i] && n->in[i]->requires_grad)

/* ====================================================================== */
/* Shared helpers                                                         */
/* ====================================================================== */

static bool check_eps(tg_ctx *c, const char *fn, double eps)
{
    if (eps >= 0 && isfinite(eps)) return true;
    tg__fail(c, TG_ERR_INVALID, "%s: eps %g must be finite and >= 0", fn, eps);
    return false;
}

/* p (if given) must be a float tensor of x's dtype with the given shape. */
static bool check_param(tg_ctx *c, const char *fn, const char *what, const tg_tensor *p,
                        const tg_tensor *x, int nd, const int64_t *shape)
{
    if (!p) return true;
    if (!p->st || !tg__valid_dtype(p->dtype)) {
        tg__fail(c, TG_ERR_INVALID, "%s: %s is not a valid tensor", fn, what);
        return false;
    }
    if (p->dtype != x->dtype) {
        tg__fail(c, TG_ERR_DTYPE, "%s: %s is %s but x is %s", fn, what, tg_dtype_name(p->dtype),
                 tg_dtype_name(x->dtype));
        return false;
    }
    bool same = p->ndim == nd;
    for (int d = 0; same && d < nd; d++) same = p->shape[d] == shape[d];
    if (!same) {
        char a[128], b[128], s[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s: %s is %s, expected %s", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape), what,
                 tg__fmt_shape(b, sizeof b, p->ndim, p->shape),
                 tg__fmt_shape(s, sizeof s, nd, shape));
        return false;
    }
    return true;
}

/* Rows of a contiguous x: row r is M elements; element j*S + s of row r
 * (j < M / S) belongs to channel (r % G) * Cg + j of weight and bias. Layer
 * and rms norm: G = 1, S = 1 (channel = element). Group norm: G groups of Cg
 * channels of S positions each. */
typedef struct {
    tg_dtype dt;
    const char *x;
    char *y;
    const char *w, *b; /* contiguous, or NULL */
    char *mean, *rstd; /* one per row; mean NULL for rms */
    int64_t M, G, Cg, S;
    double eps;
    bool rms;
} rows_plan;

/* sum of x, and of (x - mu)^2 */
#define ROW_SUMS(T)                                                        \
    static inline double sum_##T(const T *x, int64_t n)                    \
    {                                                                      \
        double a[TG__NSUM] = {0}, t = 0.0;                                 \
        int64_t m = 0;                                                     \
        for (; m + TG__NSUM <= n; m += TG__NSUM)                           \
            for (int k = 0; k < TG__NSUM; k++) a[k] += (double)x[m + k];   \
        for (; m < n; m++) t += (double)x[m];                              \
        return tg__sum_parts(a) + t;                                       \
    }                                                                      \
    static inline double sumsq_##T(const T *x, int64_t n, double mu)       \
    {                                                                      \
        double a[TG__NSUM] = {0}, t = 0.0;                                 \
        int64_t m = 0;                                                     \
        for (; m + TG__NSUM <= n; m += TG__NSUM)                           \
            for (int k = 0; k < TG__NSUM; k++) {                           \
                double d = (double)x[m + k] - mu;                          \
                a[k] += d * d;                                             \
            }                                                              \
        for (; m < n; m++) t += ((double)x[m] - mu) * ((double)x[m] - mu); \
        return tg__sum_parts(a) + t;                                       \
    }
ROW_SUMS(float)
ROW_SUMS(double)

/* row r, in double (layer and rms norm: also f32's fallback, see ln_rows_f32) */
#define ROW(T)                                                                         \
    do {                                                                               \
        const T *xr = (const T *)p->x + r * p->M;                                      \
        T *yr = (T *)p->y + r * p->M;                                                  \
        const T *w = (const T *)p->w, *b = (const T *)p->b;                            \
        double mu = p->rms ? 0.0 : sum_##T(xr, p->M) / (double)p->M;                   \
        double rs = 1.0 / sqrt(sumsq_##T(xr, p->M, mu) / (double)p->M + p->eps);       \
        if (p->mean) ((T *)p->mean)[r] = (T)mu;                                        \
        ((T *)p->rstd)[r] = (T)rs;                                                     \
        if (p->S == 1 && p->G == 1) { /* layer and rms norm: channel = element */      \
            for (int64_t m = 0; m < p->M; m++) {                                       \
                double v = ((double)xr[m] - mu) * rs;                                  \
                if (w) v *= (double)w[m];                                              \
                if (b) v += (double)b[m];                                              \
                yr[m] = (T)v;                                                          \
            }                                                                          \
            break;                                                                     \
        }                                                                              \
        int64_t c0 = (r % p->G) * p->Cg, nj = p->M / p->S;                             \
        for (int64_t j = 0; j < nj; j++) {                                             \
            double wv = w ? (double)w[c0 + j] : 1.0, bv = b ? (double)b[c0 + j] : 0.0; \
            for (int64_t s = 0; s < p->S; s++) {                                       \
                int64_t m = j * p->S + s;                                              \
                double v = ((double)xr[m] - mu) * rs;                                  \
                if (w) v *= wv;                                                        \
                if (b) v += bv;                                                        \
                yr[m] = (T)v;                                                          \
            }                                                                          \
        }                                                                              \
    } while (0)
#define ROWS(T)                                                                        \
    for (int64_t r = r0; r < r1; r++) ROW(T);

/*
 * f32 layer and rms norm rows (channel = element) in float lanes: the
 * row's sums run as NSUMF float partials over blocks of SUMF_BLOCK
 * elements, each block's partials added into a double in a fixed order
 * (the same bits whatever the thread count; a lane adds at most
 * SUMF_BLOCK / NSUMF values in float). The mean is carried as two floats,
 * mh + ml, and a deviation is (x - mh) - ml: x - mh is exact where x is
 * within a factor 2 of the mean, so the deviations keep the double mean's
 * accuracy. The output is (d * rstd) * w + b in float; the saved mean and
 * rstd are the floats it used. A row whose float sums are not finite (an
 * inf or NaN in it, or squares past FLT_MAX, from |x| around 1e19) is
 * done again in double (ROW).
 */
#define NSUMF 16
#define SUMF_BLOCK 256

/* the partials' sum, a fixed tree: halves added as vectors */
static inline float sumf_parts(const float *a)
{
    float h[8], q[4];
    for (int k = 0; k < 8; k++) h[k] = a[k] + a[k + 8];
    for (int k = 0; k < 4; k++) q[k] = h[k] + h[k + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

/* OUT += the sum of EXPR(m) over m in [0, n): NSUMF float partials per
 * block of SUMF_BLOCK, each block's total added into OUT (a double) */
#define SUMF(n, EXPR, OUT)                                                    \
    do {                                                                      \
        for (int64_t m0_ = 0; m0_ < (n); m0_ += SUMF_BLOCK) {                 \
            const int64_t m1_ = (n) - m0_ < SUMF_BLOCK ? (n) : m0_ + SUMF_BLOCK; \
            float a_[NSUMF] = {0}, t_ = 0.0f;                                 \
            int64_t m = m0_;                                                  \
            for (; m + NSUMF <= m1_; m += NSUMF)                              \
                for (int k_ = 0; k_ < NSUMF; k_++) a_[k_] += EXPR(m + k_);    \
            for (; m < m1_; m++) t_ += EXPR(m);                               \
            OUT += (double)(sumf_parts(a_) + t_);                             \
        }                                                                     \
    } while (0)

/* The mean of x[0..M) as x0 + the mean of x - x0, x0 the row's first
 * element: the differences are exact where x is within a factor 2 of x0,
 * so a mean far larger than the spread costs no accuracy in float sums.
 * The backward calls it again for the low half of the mean. */
#define LNF_X(m) (xr[m] - x0)
static inline double ln_mean_f32(const float *xr, int64_t M)
{
    if (M == 0) return 0.0;
    const float x0 = xr[0];
    double s = 0.0;
    SUMF(M, LNF_X, s);
    return (double)x0 + s / (double)M;
}

#define LNF_SQ(m) (((xr[m] - mh) - ml) * ((xr[m] - mh) - ml))
TG__VEC_CLONES static void ln_rows_f32(const rows_plan *p, int64_t r0, int64_t r1)
{
    const int64_t M = p->M;
    const float *w = (const float *)p->w, *b = (const float *)p->b;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = (const float *)p->x + r * M;
        float *yr = (float *)p->y + r * M;
        const double mu = p->rms ? 0.0 : ln_mean_f32(xr, M);
        const float mh = (float)mu, ml = (float)(mu - (double)mh);
        double ss = 0.0;
        SUMF(M, LNF_SQ, ss);
        if (!isfinite(mu) || !isfinite(ss)) { /* an inf or NaN, or float sums overflowed */
            ROW(float);
            continue;
        }
        const float rs = 1.0f / sqrtf((float)(ss / (double)M + p->eps));
        if (p->mean) ((float *)p->mean)[r] = mh;
        ((float *)p->rstd)[r] = rs;
        if (w && b)
            for (int64_t m = 0; m < M; m++) yr[m] = (((xr[m] - mh) - ml) * rs) * w[m] + b[m];
        else if (w)
            for (int64_t m = 0; m < M; m++) yr[m] = (((xr[m] - mh) - ml) * rs) * w[m];
        else if (b)
            for (int64_t m = 0; m < M; m++) yr[m] = ((xr[m] - mh) - ml) * rs + b[m];
        else
            for (int64_t m = 0; m < M; m++) yr[m] = ((xr[m] - mh) - ml) * rs;
    }
}

TG__VEC_CLONES static void rows_task(void *arg, int64_t r0, int64_t r1)
{
    const rows_plan *p = arg;
    if (p->dt == TG_F32 && p->S == 1 && p->G == 1) {
        ln_rows_f32(p, r0, r1);
    } else if (p->dt == TG_F32) {
        ROWS(float)
    } else {
        ROWS(double)
    }
}

static void run_rows(tg_ctx *c, rows_plan *p, int64_t R)
{
    if (R == 0 || p->M == 0) return;
    int64_t grain = TG__PAR_GRAIN / p->M;
    tg__parallel_for(c, R, grain > 0 ? grain : 1, rows_task, p);
}

/* xhat and rstd of x over the axes, rebuilt with ops (differentiable),
 * keepdim shapes. rms: no centring. */
static void rebuild(tg_ctx *c, tg_tensor *x, int na, const int *axes, double eps, bool rms,
                    tg_tensor **xhat, tg_tensor **rstd)
{
    tg_tensor *xc = x;
    if (!rms) xc = tg_sub(c, x, tg_mean_axes(c, x, na, axes, true));
    tg_tensor *var = tg_mean_axes(c, tg_mul(c, xc, xc), na, axes, true);
    *rstd = tg_pow_scalar(c, tg_add_scalar(c, var, eps), -0.5);
    *xhat = tg_mul(c, xc, *rstd);
}

/* xhat and rstd from the saved statistics (keepdim shapes; mean NULL for
 * rms). x here may be a reshaped view of the node's input. */
static void from_saved(tg_ctx *c, tg_tensor *x, tg_tensor *mean, tg_tensor *rstd, tg_tensor **xhat,
                       tg_tensor **rs)
{
    *rs = rstd;
    *xhat = tg_mul(c, mean ? tg_sub(c, x, mean) : x, rstd);
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) over the axes; rms
 * drops the mean(g) term. */
static tg_tensor *norm_dx(tg_ctx *c, tg_tensor *g, tg_tensor *xhat, tg_tensor *rstd, int na,
                          const int *axes, bool rms)
{
    tg_tensor *proj = tg_mul(c, xhat, tg_mean_axes(c, tg_mul(c, g, xhat), na, axes, true));
    tg_tensor *cg = rms ? g : tg_sub(c, g, tg_mean_axes(c, g, na, axes, true));
    return tg_mul(c, rstd, tg_sub(c, cg, proj));
}

/* ====================================================================== */
/* layer_norm, rms_norm                                                   */
/* ====================================================================== */

/* Shared forward: x (..., *ns), weight/bias ns or NULL; rms without mean. */
static tg_tensor *last_dims_norm(tg_ctx *c, const char *fn, tg_op op, tg_tensor *x, int k,
                                 const int64_t *ns, tg_tensor *weight, tg_tensor *bias, double eps)
{
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    char a[128], b[128];
    if (k < 1 || k > x->ndim || !ns) {
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s: %d normalised dims%s (1 to %d)", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape), k,
                 ns ? "" : " with a NULL normalized_shape", x->ndim);
        return NULL;
    }
    int lead = x->ndim - k;
    for (int d = 0; d < k; d++)
        if (x->shape[lead + d] != ns[d]) {
            tg__fail(c, TG_ERR_SHAPE, "%s: x %s does not end in normalized_shape %s", fn,
                     tg__fmt_shape(a, sizeof a, x->ndim, x->shape),
                     tg__fmt_shape(b, sizeof b, k, ns));
            return NULL;
        }
    if (!check_param(c, fn, "weight", weight, x, k, ns) ||
        !check_param(c, fn, "bias", bias, x, k, ns) || !check_eps(c, fn, eps))
        return NULL;

    int64_t ks[TG_MAX_DIMS], R = 1, M = 1;
    for (int d = 0; d < x->ndim; d++) {
        ks[d] = d < lead ? x->shape[d] : 1;
        if (d < lead) R *= x->shape[d];
        else M *= x->shape[d];
    }
    bool rms = op == TG_OP_RMS_NORM;
    tg_tensor *xd = tg__dense(c, fn, x), *wd = tg__dense(c, fn, weight),
              *bd = tg__dense(c, fn, bias);
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    tg_tensor *mean = rms ? NULL : tg__empty(c, fn, x->dtype, x->ndim, ks);
    tg_tensor *rstd = tg__empty(c, fn, x->dtype, x->ndim, ks);
    if (!tg__ok(c)) return NULL;
    rows_plan p = {.dt = x->dtype,
                   .x = tg__ptr(xd),
                   .y = tg__ptr(y),
                   .w = wd ? tg__ptr(wd) : NULL,
                   .b = bd ? tg__ptr(bd) : NULL,
                   .mean = mean ? tg__ptr(mean) : NULL,
                   .rstd = tg__ptr(rstd),
                   .M = M,
                   .G = 1,
                   .Cg = 0,
                   .S = 1,
                   .eps = eps,
                   .rms = rms};
    run_rows(c, &p, R);

    tg_tensor *in[3] = {x, weight, bias};
    tg__node *n;
    if (tg__record(c, op, y, rms ? 2 : 3, in, &n)) return NULL;
    if (n) {
        n->f[0] = eps;
        n->iv[0] = k;
        n->n_iv = 1;
        tg__save(n, 0, mean);
        tg__save(n, 1, rstd);
    }
    return y;
}

/* The fused backward of layer_norm and rms_norm over rows of M: dx per row
 * (one thread each, statistics in double); dweight and dbias summed over
 * the rows in row order, in double, by one thread (deterministic). With
 * add, each element is rounded to T, then added to what dx holds (the bits
 * of a separate dx and a sum). */
typedef struct {
    const char *x, *d, *w, *mean, *rstd; /* contiguous; w and mean may be NULL */
    char *dx;
    int64_t M;
    bool add;
    float *mlo; /* f32 layer norm: per row, the low half of the forward's mean */
} lnb_plan;

/* the low half of row r's mean for the f32 double fallback rows (mlo set:
 * layer norm), 0 where it is not finite (a row the forward did in double,
 * whose saved mean is the whole of it) */
static inline double mean_lo_at(const float *mlo, int64_t r)
{
    return isfinite(mlo[r]) ? (double)mlo[r] : 0.0;
}

/* the row sums of g = dout (* w) and of g xhat, with the g of element m
 * given by G(m): one loop per sum and per form, which GCC vectorises (it
 * does not vectorise a loop that feeds two sets of partial sums) */
#define LNB_SUMS(T, G)                                                                   \
    do {                                                                                 \
        for (m = 0; m + TG__NSUM <= p->M; m += TG__NSUM)                                 \
            for (int k = 0; k < TG__NSUM; k++) ag[k] += G(m + k);                        \
        for (m = 0; m + TG__NSUM <= p->M; m += TG__NSUM)                                 \
            for (int k = 0; k < TG__NSUM; k++)                                           \
                agx[k] += G(m + k) * (((double)xr[m + k] - mu) * rs);                    \
        for (; m < p->M; m++) {                                                          \
            sg += G(m);                                                                  \
            sgx += G(m) * (((double)xr[m] - mu) * rs);                                   \
        }                                                                                \
    } while (0)
#define LNB_GW(m) ((double)dr[m] * (double)w[m])
#define LNB_G(m) ((double)dr[m])

/* dx of the row from its means mg, mgx: written, or added (p->add) */
#define LNB_DX(T, G)                                                                  \
    do {                                                                              \
        if (p->add)                                                                   \
            for (m = 0; m < p->M; m++)                                                \
                o[m] += (T)(rs * (G(m) - mg - ((double)xr[m] - mu) * rs * mgx));      \
        else                                                                          \
            for (m = 0; m < p->M; m++)                                                \
                o[m] = (T)(rs * (G(m) - mg - ((double)xr[m] - mu) * rs * mgx));       \
    } while (0)

/* row r in double (also f32's fallback, see lnb_f32) */
#define LNB_ROW(T)                                                                  \
    do {                                                                            \
        const T *xr = (const T *)p->x + r * p->M, *dr = (const T *)p->d + r * p->M; \
        const T *w = (const T *)p->w;                                               \
        T *o = (T *)p->dx + r * p->M;                                               \
        double mu = p->mean ? (double)((const T *)p->mean)[r] : 0.0;                \
        if (p->mlo) mu += mean_lo_at(p->mlo, r);                                    \
        double rs = (double)((const T *)p->rstd)[r], sg = 0.0, sgx = 0.0;           \
        double ag[TG__NSUM] = {0}, agx[TG__NSUM] = {0};                             \
        int64_t m = 0;                                                              \
        if (w) LNB_SUMS(T, LNB_GW);                                                 \
        else LNB_SUMS(T, LNB_G);                                                    \
        sg += tg__sum_parts(ag);                                                    \
        sgx += tg__sum_parts(agx);                                                  \
        double mg = p->mean ? sg / (double)p->M : 0.0, mgx = sgx / (double)p->M;    \
        if (w) LNB_DX(T, LNB_GW);                                                   \
        else LNB_DX(T, LNB_G);                                                      \
    } while (0)
#define LNB_ROWS(T)                                                                 \
    for (int64_t r = r0; r < r1; r++) LNB_ROW(T);

/* The low half of row xr's mean, whose high half mh the forward saved:
 * its mean again (the same bits), minus mh. */
static inline float mean_lo(const float *xr, int64_t M, float mh)
{
    return (float)(ln_mean_f32(xr, M) - (double)mh);
}

/* f32 rows in float lanes (see ln_rows_f32): the sums of g and g xhat
 * by SUMF, dx = rs ((g - mean g) - xhat mean(g xhat)) in float, with
 * xhat = ((x - mh) - ml) rs from the forward's statistics; a row whose
 * sums are not finite is done again in double (LNB_ROW) */
#define LNBF_GW(m) (dr[m] * w[m])
#define LNBF_G(m) dr[m]
#define LNBF_XH(m) (((xr[m] - mu) - ml) * rs)
#define LNBF_GWX(m) (LNBF_GW(m) * LNBF_XH(m))
#define LNBF_GX(m) (LNBF_G(m) * LNBF_XH(m))
#define LNBF_DX(G)                                                                    \
    do {                                                                              \
        if (p->add)                                                                   \
            for (int64_t m = 0; m < M; m++) o[m] += rs * ((G(m) - mg) - LNBF_XH(m) * mgx); \
        else                                                                          \
            for (int64_t m = 0; m < M; m++) o[m] = rs * ((G(m) - mg) - LNBF_XH(m) * mgx); \
    } while (0)

TG__VEC_CLONES static void lnb_f32(void *arg, int64_t r0, int64_t r1)
{
    const lnb_plan *p = arg;
    const int64_t M = p->M;
    const float *w = (const float *)p->w;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = (const float *)p->x + r * M, *dr = (const float *)p->d + r * M;
        float *o = (float *)p->dx + r * M;
        const float mu = p->mean ? ((const float *)p->mean)[r] : 0.0f;
        const float ml = p->mlo ? (p->mlo[r] = mean_lo(xr, M, mu)) : 0.0f;
        const float rs = ((const float *)p->rstd)[r];
        double sg = 0.0, sgx = 0.0;
        if (w) {
            if (p->mean) SUMF(M, LNBF_GW, sg);
            SUMF(M, LNBF_GWX, sgx);
        } else {
            if (p->mean) SUMF(M, LNBF_G, sg);
            SUMF(M, LNBF_GX, sgx);
        }
        if (!isfinite(ml) || !isfinite(sg) || !isfinite(sgx)) {
            LNB_ROW(float);
            continue;
        }
        const float mg = (float)(sg / (double)M), mgx = (float)(sgx / (double)M);
        if (w) LNBF_DX(LNBF_GW);
        else LNBF_DX(LNBF_G);
    }
}

TG__VEC_CLONES static void lnb_f64(void *arg, int64_t r0, int64_t r1)
{
    const lnb_plan *p = arg;
    LNB_ROWS(double)
}

/* dweight[m] = sum_r dout xhat, dbias[m] = sum_r dout, rows in order */
#define LNB_PARAMS_ROWS(T, R0, R1)                                                    \
    for (int64_t r = (R0); r < (R1); r++) {                                           \
        const T *xr = (const T *)p.x + r * M, *dr = (const T *)p.d + r * M;           \
        double mu = p.mean ? (double)((const T *)p.mean)[r] : 0.0;                    \
        if (p.mlo) mu += mean_lo_at(p.mlo, r);                                        \
        double rs = (double)((const T *)p.rstd)[r];                                   \
        for (int64_t m = 0; m < M; m++) {                                             \
            acc[m] += (double)dr[m] * (((double)xr[m] - mu) * rs);                    \
            acc[M + m] += (double)dr[m];                                              \
        }                                                                             \
    }

/* f32: float sums over blocks of PARAMS_BLOCK rows (in f, 2 M floats),
 * each block's sums added into acc in double; a block whose float sums
 * are not finite is summed again in double */
#define PARAMS_BLOCK 32

TG__VEC_CLONES static void lnb_params(const lnb_plan *pp, bool f32, int64_t R, int64_t M,
                                     double *restrict acc, float *restrict f, bool mlo_set)
{
    const lnb_plan p = *pp;
    if (!f32) {
        LNB_PARAMS_ROWS(double, 0, R)
        return;
    }
    for (int64_t r0 = 0; r0 < R; r0 += PARAMS_BLOCK) {
        const int64_t r1 = R - r0 < PARAMS_BLOCK ? R : r0 + PARAMS_BLOCK;
        for (int64_t m = 0; m < 2 * M; m++) f[m] = 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = (const float *)p.x + r * M, *dr = (const float *)p.d + r * M;
            const float mu = p.mean ? ((const float *)p.mean)[r] : 0.0f;
            const float ml = !p.mlo ? 0.0f : mlo_set ? p.mlo[r] : (p.mlo[r] = mean_lo(xr, M, mu));
            const float rs = ((const float *)p.rstd)[r];
            for (int64_t m = 0; m < M; m++) {
                f[m] += dr[m] * LNBF_XH(m);
                f[M + m] += dr[m];
            }
        }
        bool finite = true;
        for (int64_t m = 0; m < 2 * M; m++) finite &= isfinite(f[m]) != 0;
        if (!finite) { /* an inf or NaN, or a float sum past FLT_MAX: in double */
            LNB_PARAMS_ROWS(float, r0, r1);
            continue;
        }
        for (int64_t m = 0; m < 2 * M; m++) acc[m] += (double)f[m];
    }
}

/* Gradients of layer_norm / rms_norm without ops (nothing records them):
 * new tensors in dx, or with acc (the walk's own buffers, see tg__ops_acc)
 * added into acc[i] instead, so an input that also feeds a residual path
 * costs no dx plus a sum. */
static void last_dims_backward_fused(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                     tg_tensor **dx, tg_tensor **acc, bool rms)
{
    const char *fn = rms ? "tg_rms_norm" : "tg_layer_norm";
    tg_tensor *x = n->in[0], *w = n->in[1], *b = rms ? NULL : n->in[2];
    int k = (int)n->iv[0];
    int64_t M = 1;
    for (int d = x->ndim - k; d < x->ndim; d++) M *= x->shape[d];
    int64_t R = M > 0 ? tg__numel(x->ndim, x->shape) / M : 0;
    tg_tensor *xd = tg__dense(c, fn, x), *dd = tg__dense(c, fn, dout), *wd = tg__dense(c, fn, w);
    if (!tg__ok(c)) return;
    lnb_plan p = {tg__ptr(xd), tg__ptr(dd), wd ? tg__ptr(wd) : NULL,
                  n->saved[0] ? tg__ptr(n->saved[0]) : NULL, tg__ptr(n->saved[1]), NULL, M,
                  acc != NULL, NULL};
    bool f32 = x->dtype == TG_F32;
    if (f32 && n->saved[0]) {
        p.mlo = tg__arena_alloc(c, (size_t)(R > 0 ? R : 1) * sizeof(float));
        if (!p.mlo) return;
    }
    if (NEED(0)) {
        tg_tensor *g = acc ? acc[0] : tg__empty(c, fn, x->dtype, x->ndim, x->shape);
        if (!g) return;
        p.dx = tg__ptr(g);
        if (R > 0 && M > 0) {
            int64_t grain = TG__PAR_GRAIN / M;
            tg__parallel_for(c, R, grain > 0 ? grain : 1, f32 ? lnb_f32 : lnb_f64, &p);
        }
        if (!acc) dx[0] = g;
    }
    bool nw = w && NEED(1), nb = b && NEED(2);
    if (!nw && !nb) return;
    double *sums = tg__arena_calloc(c, (size_t)(2 * M > 0 ? 2 * M : 1), sizeof(double));
    float *fsums = f32 ? tg__arena_alloc(c, (size_t)(2 * M > 0 ? 2 * M : 1) * sizeof(float)) : NULL;
    if (!sums || (f32 && !fsums)) return;
    lnb_params(&p, f32, R, M, sums, fsums, NEED(0));
    for (int j = 0; j < 2; j++) {
        if (j == 0 ? !nw : !nb) continue;
        tg_tensor *t = acc ? acc[1 + j] : tg__empty(c, fn, x->dtype, k, x->shape + x->ndim - k);
        if (!t) return;
        for (int64_t m = 0; m < M; m++) {
            if (f32) {
                float v = (float)sums[j * M + m], *o = (float *)tg__ptr(t) + m;
                *o = acc ? *o + v : v;
            } else {
                double v = sums[j * M + m], *o = (double *)tg__ptr(t) + m;
                *o = acc ? *o + v : v;
            }
        }
        if (!acc) dx[1 + j] = t;
    }
}

/* Shared backward of layer_norm and rms_norm. */
static void last_dims_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx,
                               bool rms)
{
    if (!c->grad_enabled) {
        last_dims_backward_fused(c, n, dout, dx, NULL, rms);
        return;
    }
    tg_tensor *x = n->in[0], *w = n->in[1];
    int k = (int)n->iv[0], axes[TG_MAX_DIMS];
    for (int d = 0; d < k; d++) axes[d] = x->ndim - k + d;
    tg_tensor *xhat, *rstd;
    if (c->grad_enabled && NEED(0)) rebuild(c, x, k, axes, n->f[0], rms, &xhat, &rstd);
    else from_saved(c, x, n->saved[0], n->saved[1], &xhat, &rstd);
    if (NEED(0)) dx[0] = norm_dx(c, w ? tg_mul(c, dout, w) : dout, xhat, rstd, k, axes, rms);
    if (NEED(1)) dx[1] = tg_mul(c, dout, xhat); /* summed over the leading dims by the engine */
    if (!rms && NEED(2)) dx[2] = dout;
}

/* x is (..., *ns); weight, bias are ns or NULL; y is x's shape */
/* y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps) over ns */
tg_tensor *tg_layer_norm(tg_ctx *c, tg_tensor *x, int nnorm, const int64_t *normalized_shape,
                         tg_tensor *weight, tg_tensor *bias, double eps)
{
    return last_dims_norm(c, "tg_layer_norm", TG_OP_LAYER_NORM, x, nnorm, normalized_shape, weight,
                          bias, eps);
}
void tg__layer_norm_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    last_dims_backward(c, n, dout, dx, false);
}
void tg__layer_norm_backward_acc(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **acc)
{
    tg_tensor *dx[3] = {NULL, NULL, NULL};
    last_dims_backward_fused(c, n, dout, dx, acc, false);
}

/* x is (..., *ns); weight is ns or NULL; y is x's shape */
/* y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps) over ns */
tg_tensor *tg_rms_norm(tg_ctx *c, tg_tensor *x, int nnorm, const int64_t *normalized_shape,
                       tg_tensor *weight, double eps)
{
    return last_dims_norm(c, "tg_rms_norm", TG_OP_RMS_NORM, x, nnorm, normalized_shape, weight,
                          NULL, eps);
}
void tg__rms_norm_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    last_dims_backward(c, n, dout, dx, true);
}
void tg__rms_norm_backward_acc(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **acc)
{
    tg_tensor *dx[2] = {NULL, NULL};
    last_dims_backward_fused(c, n, dout, dx, acc, true);
}

/* ====================================================================== */
/* group_norm                                                             */
/* ====================================================================== */

/* Axes 0, 2, 3, ... of an nd-dim (N, C, *) tensor: all but the channels. */
static int non_channel_axes(int nd, int *axes)
{
    int na = 0;
    for (int d = 0; d < nd; d++)
        if (d != 1) axes[na++] = d;
    return na;
}

/* (C, 1, ..., 1) with nd - 1 dims: a per-channel tensor that broadcasts
 * against (N, C, *). */
static tg_tensor *per_channel(tg_ctx *c, tg_tensor *t, int nd)
{
    int64_t s[TG_MAX_DIMS];
    s[0] = tg_numel(t);
    for (int d = 1; d < nd - 1; d++) s[d] = 1;
    return tg_reshape(c, t, nd - 1, s);
}

/* x is (N, C, *); weight, bias are (C) or NULL; y is x's shape */
/* y = (x - mean) * rstd * weight + bias, statistics per (sample, group) */
tg_tensor *tg_group_norm(tg_ctx *c, tg_tensor *x, int num_groups, tg_tensor *weight,
                         tg_tensor *bias, double eps)
{
    const char *fn = "tg_group_norm";
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    char a[128];
    if (x->ndim < 2) {
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s: expected (N, C, *), at least 2 dims", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape));
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1];
    if (num_groups < 1 || C % num_groups != 0) {
        tg__fail(c, TG_ERR_INVALID, "%s: x %s: %lld channels do not split into %d groups", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape), (long long)C, num_groups);
        return NULL;
    }
    if (!check_param(c, fn, "weight", weight, x, 1, &C) ||
        !check_param(c, fn, "bias", bias, x, 1, &C) || !check_eps(c, fn, eps))
        return NULL;
    int64_t G = num_groups, S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    int64_t ks[3] = {N, G, 1};
    tg_tensor *xd = tg__dense(c, fn, x), *wd = tg__dense(c, fn, weight),
              *bd = tg__dense(c, fn, bias);
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    tg_tensor *mean = tg__empty(c, fn, x->dtype, 3, ks);
    tg_tensor *rstd = tg__empty(c, fn, x->dtype, 3, ks);
    if (!tg__ok(c)) return NULL;
    rows_plan p = {.dt = x->dtype,
                   .x = tg__ptr(xd),
                   .y = tg__ptr(y),
                   .w = wd ? tg__ptr(wd) : NULL,
                   .b = bd ? tg__ptr(bd) : NULL,
                   .mean = tg__ptr(mean),
                   .rstd = tg__ptr(rstd),
                   .M = C / G * S,
                   .G = G,
                   .Cg = C / G,
                   .S = S,
                   .eps = eps};
    run_rows(c, &p, N * G);

    tg_tensor *in[3] = {x, weight, bias};
    tg__node *n;
    if (tg__record(c, TG_OP_GROUP_NORM, y, 3, in, &n)) return NULL;
    if (n) {
        n->f[0] = eps;
        n->iv[0] = G;
        n->n_iv = 1;
        tg__save(n, 0, mean);
        tg__save(n, 1, rstd);
    }
    return y;
}

/* dout is x's shape (N, C, *); x viewed as (N, G, M) rows for dx */
void tg__group_norm_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = n->in[0], *w = n->in[1];
    int nd = x->ndim, axes[TG_MAX_DIMS], na = non_channel_axes(nd, axes), last = 2;
    int64_t G = n->iv[0], S = 1;
    for (int d = 2; d < nd; d++) S *= x->shape[d];
    int64_t rs[3] = {x->shape[0], G, x->shape[1] / G * S};
    tg_tensor *xr = tg_reshape(c, x, 3, rs), *xhat_r, *rstd;
    if (c->grad_enabled && NEED(0)) rebuild(c, xr, 1, &last, n->f[0], false, &xhat_r, &rstd);
    else from_saved(c, xr, n->saved[0], n->saved[1], &xhat_r, &rstd);
    if (NEED(0)) {
        tg_tensor *g = w ? tg_mul(c, dout, per_channel(c, w, nd)) : dout;
        tg_tensor *d = norm_dx(c, tg_reshape(c, g, 3, rs), xhat_r, rstd, 1, &last, false);
        dx[0] = tg_reshape(c, d, nd, x->shape);
    }
    if (NEED(1))
        dx[1] =
            tg_sum_axes(c, tg_mul(c, dout, tg_reshape(c, xhat_r, nd, x->shape)), na, axes, false);
    if (NEED(2)) dx[2] = tg_sum_axes(c, dout, na, axes, false);
}

/* ====================================================================== */
/* batch_norm                                                             */
/* ====================================================================== */

tg_batch_norm_opts tg_batch_norm_defaults(void)
{
    return (tg_batch_norm_opts){.training = true, .momentum = 0.1, .eps = 1e-5};
}

/* Channel ch of a contiguous (N, C, S) x: element (i, ch, s) at
 * (i * C + ch) * S + s. Training computes the batch statistics (mean,
 * biased var) in double; eval takes rm and rv. */
typedef struct {
    tg_dtype dt;
    const char *x;
    char *y;
    const char *w, *b;     /* contiguous, or NULL */
    char *mean, *rstd;     /* training: C each, x's dtype */
    double *bmean, *bvar;  /* training: C each, for the running update */
    const double *rm, *rv; /* eval: the running statistics */
    int64_t N, C, S;
    double eps;
    bool train;
} bn_plan;

#define BN(T)                                                                                   \
    for (int64_t ch = c0; ch < c1; ch++) {                                                      \
        const T *x = (const T *)p->x;                                                           \
        T *y = (T *)p->y;                                                                       \
        double mu, rs;                                                                          \
        if (p->train) {                                                                         \
            double cnt = (double)(p->N * p->S), s1 = 0.0, ss = 0.0;                             \
            for (int64_t i = 0; i < p->N; i++)                                                  \
                for (int64_t s = 0; s < p->S; s++) s1 += (double)x[(i * p->C + ch) * p->S + s]; \
            mu = s1 / cnt;                                                                      \
            for (int64_t i = 0; i < p->N; i++)                                                  \
                for (int64_t s = 0; s < p->S; s++) {                                            \
                    double d = (double)x[(i * p->C + ch) * p->S + s] - mu;                      \
                    ss += d * d;                                                                \
                }                                                                               \
            rs = 1.0 / sqrt(ss / cnt + p->eps);                                                 \
            ((T *)p->mean)[ch] = (T)mu;                                                         \
            ((T *)p->rstd)[ch] = (T)rs;                                                         \
            p->bmean[ch] = mu;                                                                  \
            p->bvar[ch] = ss / cnt;                                                             \
        } else {                                                                                \
            mu = p->rm[ch];                                                                     \
            rs = 1.0 / sqrt(p->rv[ch] + p->eps);                                                \
        }                                                                                       \
        const T *w = (const T *)p->w, *b = (const T *)p->b;                                     \
        double wv = w ? (double)w[ch] : 1.0, bv = b ? (double)b[ch] : 0.0;                      \
        for (int64_t i = 0; i < p->N; i++)                                                      \
            for (int64_t s = 0; s < p->S; s++) {                                                \
                int64_t at = (i * p->C + ch) * p->S + s;                                        \
                double v = ((double)x[at] - mu) * rs;                                           \
                if (w) v *= wv;                                                                 \
                if (b) v += bv;                                                                 \
                y[at] = (T)v;                                                                   \
            }                                                                                   \
    }

static void bn_task(void *arg, int64_t c0, int64_t c1)
{
    const bn_plan *p = arg;
    if (p->dt == TG_F32) {
        BN(float)
    } else {
        BN(double)
    }
}

/* A running statistic: (C), x's dtype, no grad, no self-overlap (it is
 * written in place). */
static bool check_running(tg_ctx *c, const char *fn, const char *what, const tg_tensor *r,
                          const tg_tensor *x, const int64_t *C)
{
    if (!check_param(c, fn, what, r, x, 1, C)) return false;
    if (r->requires_grad) {
        tg__fail(c, TG_ERR_INVALID, "%s: %s requires grad; running statistics are buffers", fn,
                 what);
        return false;
    }
    if (tg__overlaps(r)) {
        tg__fail(c, TG_ERR_INVALID, "%s: %s overlaps itself (an expanded view)", fn, what);
        return false;
    }
    return true;
}

/* x is (N, C, *); weight, bias, running_mean, running_var are (C) or NULL */
/* y = (x - m) * rstd * weight + bias per channel, m and var from the batch
 * (training) or the running statistics (eval) */
tg_tensor *tg_batch_norm(tg_ctx *c, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                         tg_tensor *running_mean, tg_tensor *running_var,
                         const tg_batch_norm_opts *opts)
{
    const char *fn = "tg_batch_norm";
    tg_batch_norm_opts o = opts ? *opts : tg_batch_norm_defaults();
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    char a[128];
    if (x->ndim < 2) {
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s: expected (N, C) or (N, C, *)", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape));
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    if (!check_param(c, fn, "weight", weight, x, 1, &C) ||
        !check_param(c, fn, "bias", bias, x, 1, &C) || !check_eps(c, fn, o.eps))
        return NULL;
    if (!running_mean != !running_var) {
        tg__fail(c, TG_ERR_INVALID, "%s: running_mean is %s but running_var is %s", fn,
                 running_mean ? "given" : "NULL", running_var ? "given" : "NULL");
        return NULL;
    }
    bool have_running = running_mean != NULL;
    if (have_running && (!check_running(c, fn, "running_mean", running_mean, x, &C) ||
                         !check_running(c, fn, "running_var", running_var, x, &C)))
        return NULL;
    if (!o.training && !have_running) {
        tg__fail(c, TG_ERR_INVALID, "%s: eval mode needs running_mean and running_var", fn);
        return NULL;
    }
    if (o.training && !(o.momentum >= 0 && o.momentum <= 1)) {
        tg__fail(c, TG_ERR_INVALID, "%s: momentum %g outside [0, 1]", fn, o.momentum);
        return NULL;
    }
    if (o.training && N * S <= 1) {
        tg__fail(c, TG_ERR_INVALID,
                 "%s: x %s: training needs more than 1 value per channel (got %lld)", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape), (long long)(N * S));
        return NULL;
    }

    int64_t ks[TG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ks[d] = d == 1 ? C : 1;
    tg_tensor *xd = tg__dense(c, fn, x), *wd = tg__dense(c, fn, weight),
              *bd = tg__dense(c, fn, bias);
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    tg_tensor *mean = NULL, *rstd = NULL;
    double *st = tg__arena_alloc(c, (size_t)(C > 0 ? 2 * C : 1) * sizeof(double));
    if (o.training) {
        mean = tg__empty(c, fn, x->dtype, x->ndim, ks);
        rstd = tg__empty(c, fn, x->dtype, x->ndim, ks);
    }
    if (!tg__ok(c)) return NULL;
    bn_plan p = {.dt = x->dtype,
                 .x = tg__ptr(xd),
                 .y = tg__ptr(y),
                 .w = wd ? tg__ptr(wd) : NULL,
                 .b = bd ? tg__ptr(bd) : NULL,
                 .N = N,
                 .C = C,
                 .S = S,
                 .eps = o.eps,
                 .train = o.training};
    if (o.training) {
        p.mean = tg__ptr(mean);
        p.rstd = tg__ptr(rstd);
        p.bmean = st;
        p.bvar = st + C;
    } else {
        for (int64_t ch = 0; ch < C; ch++) {
            st[ch] = tg__get_flat(running_mean, ch);
            st[C + ch] = tg__get_flat(running_var, ch);
        }
        p.rm = st;
        p.rv = st + C;
    }
    if (C > 0 && N * S > 0) {
        int64_t grain = TG__PAR_GRAIN / (N * S);
        tg__parallel_for(c, C, grain > 0 ? grain : 1, bn_task, &p);
    }

    if (o.training && have_running) { /* PyTorch's update, unbiased variance */
        double m = o.momentum, unbias = (double)(N * S) / (double)(N * S - 1);
        for (int64_t ch = 0; ch < C; ch++) {
            double rm = tg__get_flat(running_mean, ch), rv = tg__get_flat(running_var, ch);
            tg__set_flat(running_mean, ch, (1 - m) * rm + m * st[ch]);
            tg__set_flat(running_var, ch, (1 - m) * rv + m * st[C + ch] * unbias);
        }
        tg_tensor_bump_version(running_mean);
        tg_tensor_bump_version(running_var);
    }

    /* the running statistics are never inputs of the node */
    tg_tensor *in[5] = {x, weight, bias, NULL, NULL};
    tg__node *n;
    if (tg__record(c, TG_OP_BATCH_NORM, y, 5, in, &n)) return NULL;
    if (n) {
        n->f[0] = o.eps;
        n->iv[0] = o.training;
        n->n_iv = 1;
        tg__save(n, 0, o.training ? mean : running_mean);
        tg__save(n, 1, o.training ? rstd : running_var);
    }
    return y;
}

/* dout is x's shape (N, C, *); statistics over axes 0, 2, 3, ... */
void tg__batch_norm_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = n->in[0], *w = n->in[1];
    int nd = x->ndim, axes[TG_MAX_DIMS], na = non_channel_axes(nd, axes);
    tg_tensor *xhat, *rstd;
    if (n->iv[0]) {
        if (c->grad_enabled && NEED(0)) rebuild(c, x, na, axes, n->f[0], false, &xhat, &rstd);
        else from_saved(c, x, n->saved[0], n->saved[1], &xhat, &rstd);
    } else { /* eval: the running statistics are constants */
        rstd = tg_pow_scalar(c, tg_add_scalar(c, per_channel(c, n->saved[1], nd), n->f[0]), -0.5);
        xhat = tg_mul(c, tg_sub(c, x, per_channel(c, n->saved[0], nd)), rstd);
    }
    if (NEED(0)) {
        tg_tensor *g = w ? tg_mul(c, dout, per_channel(c, w, nd)) : dout;
        dx[0] = n->iv[0] ? norm_dx(c, g, xhat, rstd, na, axes, false) : tg_mul(c, g, rstd);
    }
    if (NEED(1)) dx[1] = tg_sum_axes(c, tg_mul(c, dout, xhat), na, axes, false);
    if (NEED(2)) dx[2] = tg_sum_axes(c, dout, na, axes, false);
}
