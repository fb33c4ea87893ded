/*
 * conv.c - 2-d and 1-d convolution on im2col + GEMM, and the two gradient
 * kernels as ops of their own, each forward beside its backward.
 *
 * Three ops close under differentiation (x input, w weight, g = dout):
 *   conv2d(x, w)              d/dx = input_grad(g, w)  d/dw = weight_grad(x, g)
 *   input_grad(g, w) (= conv_transpose)
 *                             d/dg = conv2d(u, w)      d/dw = weight_grad(u, g)
 *   weight_grad(x, g)         d/dx = input_grad(g, v)  d/dg = conv2d(x, v)
 * so second (and higher) order gradients need nothing else. conv1d is
 * conv2d on a height-1 view, with its backward through the 2-d kernels.
 *
 * Layout: the columns buffer lives in the context's arena and holds one
 * image at a time, rows (c, kh, kw) by columns (oh, ow), so the rows of one
 * group are one contiguous GEMM operand; an image's columns are made, used
 * by its GEMMs and overwritten by the next image's while they are still in
 * cache (a batch's columns are 9 times the input: 14 MB for a 64-image
 * 32-channel 14x14 batch, written and read back from memory every call).
 * Threads: a batch's images are cut into at most IMAGE_GROUPS groups, a
 * number that depends on the batch size alone, and the groups run side by
 * side, each thread with its own columns buffer. Outputs of an image
 * (forward, input gradient) are its own; the weight gradient is summed per
 * group (images in order, the first with GEMM beta 0, then beta 1) and the
 * groups' sums added in group order, so its bits do not follow the thread
 * count either. With one image (or inside another parallel region) the
 * group runs alone and im2col / col2im (by rows and by (c) planes) and the
 * GEMMs use the threads instead.
 */
#include "../core/arena_mark.h"
#include "ew_kernels.h" /* tg__take_spare, TG__RELU */
#include "fastmath.h"
#include "ops_impl.h"

#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#define NEED(i) (n->in[i] && n->in[i]->requires_grad)
#define PARAM_MAX ((int64_t)1 << 31)

/* ====================================================================== */
/* Geometry                                                               */
/* ====================================================================== */

typedef struct {
    int64_t N, C, H, W;  /* input */
    int64_t OC, KH, KW;  /* weight: [OC, C/G, KH, KW] */
    int64_t OH, OW;      /* output */
    int64_t sh, sw, ph, pw, dh, dw, G;
} geom;

tg_conv2d_opts tg_conv2d_defaults(void)
{
    tg_conv2d_opts o = {{1, 1}, {0, 0}, {1, 1}, 1};
    return o;
}

tg_conv1d_opts tg_conv1d_defaults(void)
{
    tg_conv1d_opts o = {1, 0, 1, 1};
    return o;
}

bool tg__conv2d_check_opts(tg_ctx *c, const char *fn, const tg_conv2d_opts *o)
{
    const char *bad = NULL;
    int64_t v = 0;
    for (int i = 0; i < 2 && !bad; i++) {
        if (o->stride[i] < 1 || o->stride[i] >= PARAM_MAX) bad = "stride", v = o->stride[i];
        else if (o->padding[i] < 0 || o->padding[i] >= PARAM_MAX)
            bad = "padding", v = o->padding[i];
        else if (o->dilation[i] < 1 || o->dilation[i] >= PARAM_MAX)
            bad = "dilation", v = o->dilation[i];
    }
    if (!bad && (o->groups < 1 || o->groups >= PARAM_MAX)) bad = "groups", v = o->groups;
    if (!bad) return true;
    tg__fail(c, TG_ERR_INVALID, "%s: %s %lld out of range (stride, dilation, groups >= 1, "
             "padding >= 0, all < 2^31)", fn, bad, (long long)v);
    return false;
}

/* floor((in + 2p - d(k-1) - 1) / s) + 1, which may be <= 0 */
static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    int64_t num = in + 2 * p - d * (k - 1) - 1;
    int64_t q = num >= 0 ? num / s : -((-num + s - 1) / s);
    return q + 1;
}

/* "fn: x [..] w [..]: " then what */
static void conv_fail(tg_ctx *c, tg_status s, const char *fn, const char *an,
                      const tg_tensor *a, const char *bn, const tg_tensor *b, const char *what)
{
    char sa[128], sb[128];
    tg__fail(c, s, "%s: %s %s %s %s: %s", fn, an, tg__fmt_shape(sa, sizeof sa, a->ndim, a->shape),
             bn, tg__fmt_shape(sb, sizeof sb, b->ndim, b->shape), what);
}

/* Fills the options part of g from o and computes OH, OW from H, W, KH, KW;
 * false (error naming the numbers) when the output would be empty. */
static bool finish_geom(tg_ctx *c, const char *fn, const char *an, const tg_tensor *a,
                        const char *bn, const tg_tensor *b, const tg_conv2d_opts *o, geom *g)
{
    g->sh = o->stride[0];
    g->sw = o->stride[1];
    g->ph = o->padding[0];
    g->pw = o->padding[1];
    g->dh = o->dilation[0];
    g->dw = o->dilation[1];
    g->G = o->groups;
    g->OH = out_size(g->H, g->KH, g->sh, g->ph, g->dh);
    g->OW = out_size(g->W, g->KW, g->sw, g->pw, g->dw);
    if (g->OH <= 0 || g->OW <= 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "output size %lldx%lld <= 0 (input %lldx%lld, padding %lldx%lld, dilated "
                 "kernel %lldx%lld, stride %lldx%lld)",
                 (long long)g->OH, (long long)g->OW, (long long)g->H, (long long)g->W,
                 (long long)g->ph, (long long)g->pw, (long long)(g->dh * (g->KH - 1) + 1),
                 (long long)(g->dw * (g->KW - 1) + 1), (long long)g->sh, (long long)g->sw);
        conv_fail(c, TG_ERR_SHAPE, fn, an, a, bn, b, msg);
        return false;
    }
    int64_t ckk = g->C / g->G * g->KH * g->KW;
    if (g->OH * g->OW > INT_MAX || ckk > INT_MAX || g->OC > INT_MAX) {
        conv_fail(c, TG_ERR_INVALID, fn, an, a, bn, b, "sizes exceed the int range of BLAS");
        return false;
    }
    return true;
}

/* Channel checks shared by the three ops: C == cg * G, OC % G == 0. */
static bool check_channels(tg_ctx *c, const char *fn, const char *an, const tg_tensor *a,
                           const char *bn, const tg_tensor *b, int64_t C, int64_t cg,
                           int64_t OC, int64_t G)
{
    char msg[160];
    if (C != cg * G) {
        snprintf(msg, sizeof msg, "in channels %lld != %lld * groups %lld", (long long)C,
                 (long long)cg, (long long)G);
        conv_fail(c, TG_ERR_SHAPE, fn, an, a, bn, b, msg);
        return false;
    }
    if (OC % G != 0) {
        snprintf(msg, sizeof msg, "out channels %lld not divisible by groups %lld",
                 (long long)OC, (long long)G);
        conv_fail(c, TG_ERR_SHAPE, fn, an, a, bn, b, msg);
        return false;
    }
    return true;
}

static tg_conv2d_opts opts_of(const tg__node *n)
{
    tg_conv2d_opts o = {{n->iv[0], n->iv[1]}, {n->iv[2], n->iv[3]}, {n->iv[4], n->iv[5]},
                        n->iv[6]};
    return o;
}

static void save_opts(tg__node *n, const tg_conv2d_opts *o, int64_t e0, int64_t e1)
{
    int64_t v[9] = {o->stride[0], o->stride[1], o->padding[0], o->padding[1], o->dilation[0],
                    o->dilation[1], o->groups, e0, e1};
    memcpy(n->iv, v, sizeof v);
    n->n_iv = 9;
}

/* ====================================================================== */
/* im2col / col2im                                                        */
/* ====================================================================== */

/* One image: im2col's rows and col2im's planes are its channels'. */
typedef struct {
    const geom *g;
    const char *x;  /* im2col: the image's first element; strides below */
    int64_t xs[4];  /* (unused, C, H, W) */
    bool flat;      /* unit strides and rows OW apart: IM2COL_FLAT, COL2IM_FLAT */
    char *cols;     /* [C, KH, KW] rows by [OH, OW] columns */
    char *dx;       /* col2im: the image's contiguous [C, H, W] */
} cols_args;

/* The steps k in [*lo, *hi) of b + k*s (k < cnt) that land inside [0, n):
 * inner loops then run without bounds checks. */
static inline void span(int64_t b, int64_t s, int64_t n, int64_t cnt, int64_t *lo, int64_t *hi)
{
    int64_t l = b >= 0 ? 0 : (-b + s - 1) / s;
    int64_t h = n - b <= 0 ? 0 : (n - b + s - 1) / s;
    *lo = l < cnt ? l : cnt;
    *hi = h < cnt ? h : cnt;
    if (*hi < *lo) *hi = *lo;
}

/* With unit strides and x's rows exactly OW apart (a "same" padding over a
 * contiguous x), a row of the columns is x's plane shifted by (bh, bw):
 * one copy of the span from the first to the last element inside, then
 * zeros over the rows above and below and over the columns outside
 * [o0, o1), which the copy filled with the neighbouring rows' ends. */
/* Zeros the gaps between the columns [o0, o1) of consecutive rows h0..h1-1
 * of a flat row of the columns; a gap of one or two (a "same" 3x3 or 5x5
 * kernel) by plain stores, not a memset call each. */
#define FLAT_GAPS(T, SFX)                                                              \
    static inline void flat_gaps_##SFX(T *col, int64_t OW, int64_t h0, int64_t h1,     \
                                       int64_t o0, int64_t o1)                         \
    {                                                                                  \
        const int64_t nz = OW - o1 + o0;                                               \
        if (nz == 0) return;                                                           \
        for (int64_t oh = h0; oh + 1 < h1; oh++) {                                     \
            T *z = col + oh * OW + o1;                                                 \
            if (nz <= 2) z[0] = z[nz - 1] = 0;                                         \
            else memset(z, 0, (size_t)nz * sizeof(T));                                 \
        }                                                                              \
    }

FLAT_GAPS(float, f32)
FLAT_GAPS(double, f64)

#define IM2COL_FLAT(T, SFX)                                                            \
    static void im2col_flat_##SFX(const geom *g, const T *xp, T *col, int64_t bh,      \
                                  int64_t bw, int64_t o0, int64_t o1)                  \
    {                                                                                  \
        const int64_t OW = g->OW, OHW = g->OH * OW;                                    \
        int64_t h0, h1;                                                                \
        span(bh, 1, g->H, g->OH, &h0, &h1);                                            \
        if (h0 >= h1 || o0 >= o1) {                                                    \
            memset(col, 0, (size_t)OHW * sizeof(T));                                   \
            return;                                                                    \
        }                                                                              \
        const int64_t j0 = h0 * OW + o0, j1 = (h1 - 1) * OW + o1;                      \
        memset(col, 0, (size_t)j0 * sizeof(T));                                        \
        memcpy(col + j0, xp + j0 + bh * OW + bw, (size_t)(j1 - j0) * sizeof(T));       \
        memset(col + j1, 0, (size_t)(OHW - j1) * sizeof(T));                           \
        flat_gaps_##SFX(col, OW, h0, h1, o0, o1);                                      \
    }

IM2COL_FLAT(float, f32)
IM2COL_FLAT(double, f64)

/* The adjoint, for unit strides and W == OW: the gaps of the columns row
 * (outside [o0, o1), so outside the input) are zeroed in the scratch
 * columns, then the whole span is added in one loop. Adding those zeros
 * changes no bit: d starts at +0 and a sum that starts at +0 is never -0
 * (x + (+0) == x for every other x, NaN included), and each element still
 * gets its taps in the same order. The row is left all zeros (see
 * input_grad_image), by the same loop while it is in cache. */
#define COL2IM_FLAT(T, SFX)                                                            \
    TG__VEC_CLONES static void col2im_flat_##SFX(const geom *g, T *d, T *col, int64_t bh, \
                                                 int64_t bw, int64_t o0, int64_t o1)   \
    {                                                                                  \
        const int64_t OW = g->OW, OHW = g->OH * OW;                                    \
        int64_t h0, h1;                                                                \
        span(bh, 1, g->H, g->OH, &h0, &h1);                                            \
        if (h0 >= h1 || o0 >= o1) {                                                    \
            memset(col, 0, (size_t)OHW * sizeof(T));                                   \
            return;                                                                    \
        }                                                                              \
        flat_gaps_##SFX(col, OW, h0, h1, o0, o1);                                      \
        const int64_t j0 = h0 * OW + o0, j1 = (h1 - 1) * OW + o1;                      \
        T *restrict dd = d + (j0 + bh * OW + bw);                                      \
        T *restrict cc = col + j0;                                                     \
        for (int64_t j = 0; j < j1 - j0; j++) {                                        \
            dd[j] += cc[j];                                                            \
            cc[j] = 0;                                                                 \
        }                                                                              \
        for (int64_t j = 0; j < j0; j++) col[j] = 0;                                   \
        for (int64_t j = j1; j < OHW; j++) col[j] = 0;                                 \
    }

COL2IM_FLAT(float, f32)
COL2IM_FLAT(double, f64)

#define COLS_KERNELS(T, SFX)                                                           \
    static void im2col_##SFX(void *arg, int64_t r0, int64_t r1)                        \
    {                                                                                  \
        const cols_args *p = arg;                                                      \
        const geom *g = p->g;                                                          \
        const int64_t OHW = g->OH * g->OW, xs3 = p->xs[3];                             \
        for (int64_t r = r0; r < r1; r++) {                                            \
            int64_t kw = r % g->KW, t = r / g->KW;                                     \
            int64_t kh = t % g->KH, ch = t / g->KH;                                    \
            const T *xp = (const T *)p->x + ch * p->xs[1];                             \
            T *col = (T *)p->cols + r * OHW;                                           \
            int64_t bw = kw * g->dw - g->pw, o0, o1;                                   \
            span(bw, g->sw, g->W, g->OW, &o0, &o1);                                    \
            if (p->flat) {                                                             \
                im2col_flat_##SFX(g, xp, col, kh * g->dh - g->ph, bw, o0, o1);         \
                continue;                                                              \
            }                                                                          \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                   \
                int64_t ih = oh * g->sh - g->ph + kh * g->dh;                          \
                T *crow = col + oh * g->OW;                                            \
                if (ih < 0 || ih >= g->H) {                                            \
                    memset(crow, 0, (size_t)g->OW * sizeof(T));                        \
                    continue;                                                          \
                }                                                                      \
                const T *xr = xp + ih * p->xs[2] + bw * xs3;                           \
                for (int64_t ow = 0; ow < o0; ow++) crow[ow] = 0;                      \
                if (g->sw == 1 && xs3 == 1)                                            \
                    memcpy(crow + o0, xr + o0, (size_t)(o1 - o0) * sizeof(T));         \
                else                                                                   \
                    for (int64_t ow = o0; ow < o1; ow++) crow[ow] = xr[ow * g->sw * xs3]; \
                for (int64_t ow = o1; ow < g->OW; ow++) crow[ow] = 0;                  \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    TG__VEC_CLONES static void col2im_##SFX(void *arg, int64_t p0, int64_t p1)         \
    {                                                                                  \
        const cols_args *p = arg;                                                      \
        const geom *g = p->g;                                                          \
        const int64_t OHW = g->OH * g->OW, KK = g->KH * g->KW;                         \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            T *d = (T *)p->dx + pl * g->H * g->W;                                      \
            memset(d, 0, (size_t)(g->H * g->W) * sizeof(T));                           \
            for (int64_t kh = 0; kh < g->KH; kh++)                                     \
                for (int64_t kw = 0; kw < g->KW; kw++) {                               \
                    T *col = (T *)p->cols + (pl * KK + kh * g->KW + kw) * OHW;         \
                    int64_t bw = kw * g->dw - g->pw, o0, o1;                           \
                    span(bw, g->sw, g->W, g->OW, &o0, &o1);                            \
                    if (p->flat) {                                                     \
                        col2im_flat_##SFX(g, d, col, kh * g->dh - g->ph, bw, o0, o1);  \
                        continue;                                                      \
                    }                                                                  \
                    for (int64_t oh = 0; oh < g->OH; oh++) {                           \
                        int64_t ih = oh * g->sh - g->ph + kh * g->dh;                  \
                        if (ih < 0 || ih >= g->H) continue;                            \
                        const T *crow = col + oh * g->OW;                              \
                        T *drow = d + ih * g->W + bw;                                  \
                        if (g->sw == 1) /* a loop that vectorises */                   \
                            for (int64_t ow = o0; ow < o1; ow++) drow[ow] += crow[ow]; \
                        else                                                           \
                            for (int64_t ow = o0; ow < o1; ow++) drow[ow * g->sw] += crow[ow]; \
                    }                                                                  \
                    memset(col, 0, (size_t)OHW * sizeof(T));                           \
                }                                                                      \
        }                                                                              \
    }

COLS_KERNELS(float, f32)
COLS_KERNELS(double, f64)

static int64_t grain_for(int64_t work_per_item)
{
    int64_t gr = TG__PAR_GRAIN / (work_per_item > 0 ? work_per_item : 1);
    return gr > 0 ? gr : 1;
}

/* A rows x cols buffer in c's arena; NULL with TG_ERR_NOMEM recorded when
 * it cannot be had (its size overflowing included). */
static char *cols_alloc(tg_ctx *c, int64_t rows, int64_t cols, int64_t es)
{
    if (rows > 0 && cols > 0 && rows > INT64_MAX / es / cols) {
        tg__fail(c, TG_ERR_NOMEM, "%s: im2col workspace of %lld x %lld elements overflows",
                 c->api ? c->api : "tg_conv2d", (long long)rows, (long long)cols);
        return NULL;
    }
    return tg__arena_alloc(c, (size_t)(rows * cols * es) + 1);
}

/* True when x is its own columns matrix: a 1x1 kernel at stride 1 without
 * padding over a contiguous x needs no copy. */
static bool cols_are_x(const tg_tensor *x, const geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
           tg_is_contiguous(x);
}

/* The columns of image nn of x (any strides) for g: written into buf, or x's
 * own data (read only) when cols_are_x. */
static const char *im2col_image(tg_ctx *c, const tg_tensor *x, const geom *g, int64_t nn,
                                char *buf)
{
    const int64_t es = (int64_t)tg__esize(x->dtype);
    if (cols_are_x(x, g)) return tg__ptr(x) + nn * x->stride[0] * es;
    bool flat = g->sh == 1 && g->sw == 1 && x->stride[3] == 1 && x->stride[2] == g->OW;
    cols_args p = {g, tg__ptr(x) + nn * x->stride[0] * es,
                   {0, x->stride[1], x->stride[2], x->stride[3]}, flat, buf, NULL};
    tg__parallel_for(c, g->C * g->KH * g->KW, grain_for(g->OH * g->OW),
                     x->dtype == TG_F64 ? im2col_f64 : im2col_f32, &p);
    return buf;
}

/* ====================================================================== */
/* Kernels without recording                                              */
/* ====================================================================== */

/* ---- images over threads ------------------------------------------------- */

#define IMAGE_GROUPS 8 /* at most; fixed by the batch size, never by threads */

typedef struct images images;
/* One image's work: nn, whether it is the first of its group, the thread's
 * columns buffer, its zeroed gradient columns (see input_grad_image) and
 * the group's weight-gradient target (each NULL when not wanted). */
typedef void (*image_fn)(const images *j, int64_t nn, bool first, char *buf, char *zbuf,
                         char *dw);

struct images {
    tg_ctx *c;
    const geom *g;
    image_fn fn;
    bool f64;
    int64_t es;
    const tg_tensor *x;     /* the input, any strides */
    const tg_tensor *b;     /* the bias (forward) or NULL */
    const char *pw, *dout;  /* contiguous weights and dout */
    char *y, *dx;           /* outputs: forward y, input gradient */
    bool relu;              /* forward: clamp y at 0 (conv2d_relu) */
    unsigned char *mask;    /* ...and mark where y > 0, or NULL */
    int64_t P;              /* groups */
    char **bufs;            /* one columns buffer per running thread */
    char **zbufs;           /* one zeroed gradient columns buffer per thread */
    char **dws;             /* P weight-gradient targets, dws[0] the result; or NULL */
    _Atomic int next;       /* the next unused buffer */
};

static void images_task(void *arg, int64_t g0, int64_t g1)
{
    images *j = arg;
    const int t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
    for (int64_t gi = g0; gi < g1; gi++) {
        /* group gi: images [gi * N / P, (gi + 1) * N / P) */
        int64_t b = gi * j->g->N / j->P, e = (gi + 1) * j->g->N / j->P;
        for (int64_t nn = b; nn < e; nn++)
            j->fn(j, nn, nn == b, j->bufs[t], j->zbufs[t], j->dws ? j->dws[gi] : NULL);
    }
}

/* Runs j->fn over every image of the batch, groups side by side. bufs: a
 * columns buffer per thread (none when cols_buf is false); zbufs likewise,
 * zeroed (zero_buf); weight: each group gets a weight-gradient target, the
 * first being dw, and the others' sums are added to dw in group order
 * afterwards. Everything it allocates is scratch, for the caller to
 * rewind. False (error on c) on OOM. */
static bool images_run(images *j, bool cols_buf, bool zero_buf, char *dw)
{
    tg_ctx *c = j->c;
    const geom *g = j->g;
    const int64_t rows = g->C * g->KH * g->KW, OHW = g->OH * g->OW;
    j->P = g->N < IMAGE_GROUPS ? g->N : IMAGE_GROUPS;
    int64_t nbuf = tg_ctx_threads(c) < j->P ? tg_ctx_threads(c) : j->P;
    j->bufs = tg__arena_alloc(c, (size_t)(2 * nbuf) * sizeof(char *));
    if (!j->bufs) return false;
    j->zbufs = j->bufs + nbuf;
    for (int64_t i = 0; i < nbuf; i++) {
        j->bufs[i] = cols_buf ? cols_alloc(c, rows, OHW, j->es) : NULL;
        j->zbufs[i] = zero_buf ? cols_alloc(c, rows, OHW, j->es) : NULL;
        if ((cols_buf && !j->bufs[i]) || (zero_buf && !j->zbufs[i])) return false;
        if (zero_buf) memset(j->zbufs[i], 0, (size_t)(rows * OHW * j->es));
    }
    const int64_t nw = g->OC * (g->C / g->G) * g->KH * g->KW;
    j->dws = NULL;
    if (dw) {
        j->dws = tg__arena_alloc(c, (size_t)j->P * sizeof(char *));
        if (!j->dws) return false;
        j->dws[0] = dw;
        for (int64_t i = 1; i < j->P; i++)
            if (!(j->dws[i] = cols_alloc(c, nw, 1, j->es))) return false;
    }
    atomic_init(&j->next, 0);
    tg__parallel_for(c, j->P, 1, images_task, j);
    for (int64_t i = 1; dw && i < j->P; i++) {
        if (j->f64) {
            double *d = (double *)(void *)dw;
            const double *s = (const double *)(const void *)j->dws[i];
            for (int64_t k = 0; k < nw; k++) d[k] += s[k];
        } else {
            float *d = (float *)(void *)dw;
            const float *s = (const float *)(const void *)j->dws[i];
            for (int64_t k = 0; k < nw; k++) d[k] += s[k];
        }
    }
    return true;
}

/* tg_relu over n elements in place, its rule (TG__RELU) and bits, and
 * m[i] = y[i] > 0 when m: where relu's backward passes the gradient. */
#define RELU_LOOP(T)                                                                    \
    for (int64_t i = 0; i < n; i++) y[i] = TG__RELU(T, y[i]);                           \
    for (int64_t i = 0; m && i < n; i++) m[i] = y[i] > 0;
TG__VEC_CLONES static void relu_f32(int64_t n, float *restrict y, unsigned char *restrict m)
{
    RELU_LOOP(float)
}
static void relu_f64(int64_t n, double *restrict y, unsigned char *restrict m)
{
    RELU_LOOP(double)
}
#undef RELU_LOOP

void tg__relu_run(bool f64, int64_t n, char *y, unsigned char *m)
{
    if (f64) relu_f64(n, (double *)(void *)y, m);
    else relu_f32(n, (float *)(void *)y, m);
}

/* y's image nn = the bias, then the GEMMs add to it (beta 1) */
static void forward_image(const images *j, int64_t nn, bool first, char *buf, char *zbuf,
                          char *dw)
{
    (void)first, (void)zbuf, (void)dw;
    const geom *g = j->g;
    const int64_t OHW = g->OH * g->OW, KK = g->KH * g->KW, es = j->es;
    const int64_t cg = g->C / g->G, ocg = g->OC / g->G, ckk = cg * KK;
    const char *cols = im2col_image(j->c, j->x, g, nn, buf);
    char *py = j->y + nn * g->OC * OHW * es;
    const tg_tensor *b = j->b;
    for (int64_t o = 0; b && o < g->OC; o++) {
        if (j->f64) {
            double v = ((const double *)tg__ptr(b))[o * b->stride[0]],
                   *row = (double *)(void *)py + o * OHW;
            for (int64_t i = 0; i < OHW; i++) row[i] = v;
        } else {
            float v = ((const float *)tg__ptr(b))[o * b->stride[0]],
                  *row = (float *)(void *)py + o * OHW;
            for (int64_t i = 0; i < OHW; i++) row[i] = v;
        }
    }
    for (int64_t gi = 0; gi < g->G; gi++)
        tg__gemm(j->c, j->f64, false, false, ocg, OHW, ckk, 1.0, j->pw + gi * ocg * ckk * es, ckk,
                 cols + gi * ckk * OHW * es, OHW, b ? 1.0 : 0.0, py + gi * ocg * OHW * es, OHW);
    if (j->relu) tg__relu_run(j->f64, g->OC * OHW, py, j->mask ? j->mask + nn * g->OC * OHW : NULL);
}

/* x is (N, C, H, W) any strides, w is (OC, C/G, KH, KW), b is (OC) or NULL; y is (N, OC, OH, OW) */
static tg_tensor *conv2d_run(tg_ctx *c, const char *fn, tg_tensor *x, tg_tensor *w,
                             tg_tensor *b, const geom *g, bool relu, unsigned char *mask)
{
    tg_tensor *y = tg__empty(c, fn, x->dtype, 4, (const int64_t[]){g->N, g->OC, g->OH, g->OW});
    if (!y) return NULL;
    if (g->N == 0 || g->OC == 0) return y;
    const tg__arena_pos m = tg__arena_mark(c); /* scratch from here on */
    tg_tensor *wc = tg__dense(c, fn, w);
    images j = {.c = c, .g = g, .fn = forward_image, .f64 = x->dtype == TG_F64,
                .es = (int64_t)tg__esize(x->dtype), .x = x, .b = b,
                .pw = wc ? tg__ptr(wc) : NULL, .y = tg__ptr(y), .relu = relu,
                .mask = mask};
    bool ok = wc && images_run(&j, !cols_are_x(x, g), false, NULL);
    tg__arena_rewind(c, m);
    return ok ? y : NULL;
}

/* One image's part of each gradient, shared by the gradient ops and
 * conv2d's own backward (which runs the three for an image in turn, while
 * the image's dout is in cache). es-sized element pointers. */

/* dout_n is (OC, OH, OW) contiguous; dx_n = its (C, H, W) input gradient,
 * through the columns buffer cols, which must hold zeros and is left so:
 * the GEMM adds its product to them (beta 1), which gives the bits of
 * beta 0 (BLAS zeroes C for beta 0 before it adds, and tg__gemm's own
 * loops' sum from +0 is never -0), and col2im zeroes every row it has read
 * while the row is in cache, instead of BLAS zeroing the whole buffer
 * before each image's GEMM. */
static void input_grad_image(tg_ctx *c, const geom *g, bool f64, const char *pw,
                             const char *dout_n, char *cols, char *dx_n)
{
    const int64_t OHW = g->OH * g->OW, KK = g->KH * g->KW, es = f64 ? 8 : 4;
    const int64_t cg = g->C / g->G, ocg = g->OC / g->G, ckk = cg * KK;
    for (int64_t gi = 0; gi < g->G; gi++)
        tg__gemm(c, f64, true, false, ckk, OHW, ocg, 1.0, pw + gi * ocg * ckk * es, ckk,
                 dout_n + gi * ocg * OHW * es, OHW, 1.0, cols + gi * ckk * OHW * es, OHW);
    cols_args p = {g, NULL, {0, 0, 0, 0}, g->sh == 1 && g->sw == 1 && g->W == g->OW, cols, dx_n};
    tg__parallel_for(c, g->C, grain_for(KK * OHW), f64 ? col2im_f64 : col2im_f32, &p);
}

/* dw (OC, C/G, KH, KW) = (first) or += image nn's part: dout_n times the
 * columns of x's image nn (made in buf) */
static void weight_grad_image(tg_ctx *c, const geom *g, const tg_tensor *x, int64_t nn,
                              const char *dout_n, char *buf, char *dw, bool first)
{
    const int64_t OHW = g->OH * g->OW, KK = g->KH * g->KW;
    const int64_t cg = g->C / g->G, ocg = g->OC / g->G, ckk = cg * KK;
    const bool f64 = x->dtype == TG_F64;
    const int64_t es = f64 ? 8 : 4;
    const char *cols = im2col_image(c, x, g, nn, buf);
    for (int64_t gi = 0; gi < g->G; gi++)
        tg__gemm(c, f64, false, true, ocg, ckk, OHW, 1.0, dout_n + gi * ocg * OHW * es, OHW,
                 cols + gi * ckk * OHW * es, OHW, first ? 0.0 : 1.0, dw + gi * ocg * ckk * es,
                 ckk);
}

/* The gradients of image nn: the weight's (into the group's dw, through
 * the columns buf) when wanted, then the input's (into j->dx, through the
 * zeroed columns zbuf) when wanted. */
static void backward_image(const images *j, int64_t nn, bool first, char *buf, char *zbuf,
                           char *dw)
{
    const geom *g = j->g;
    const char *dn = j->dout + nn * g->OC * g->OH * g->OW * j->es;
    if (dw) weight_grad_image(j->c, g, j->x, nn, dn, buf, dw, first);
    if (j->dx)
        input_grad_image(j->c, g, j->f64, j->pw, dn, zbuf,
                         j->dx + nn * g->C * g->H * g->W * j->es);
}

/* dout is (N, OC, OH, OW), w is (OC, C/G, KH, KW); dx is (N, C, H, W) */
static tg_tensor *input_grad_run(tg_ctx *c, const char *fn, tg_tensor *dout, tg_tensor *w,
                                 const geom *g)
{
    tg_tensor *dx = tg__empty(c, fn, dout->dtype, 4, (const int64_t[]){g->N, g->C, g->H, g->W});
    if (!dx) return NULL;
    if (g->N == 0 || g->C == 0 || g->H * g->W == 0) return dx;
    const tg__arena_pos m = tg__arena_mark(c); /* scratch from here on */
    tg_tensor *wc = tg__dense(c, fn, w), *dc = wc ? tg__dense(c, fn, dout) : NULL;
    images j = {.c = c, .g = g, .fn = backward_image, .f64 = dout->dtype == TG_F64,
                .es = (int64_t)tg__esize(dout->dtype), .pw = wc ? tg__ptr(wc) : NULL,
                .dout = dc ? tg__ptr(dc) : NULL, .dx = tg__ptr(dx)};
    bool ok = dc && images_run(&j, false, true, NULL);
    tg__arena_rewind(c, m);
    return ok ? dx : NULL;
}

/* A (OC, C/G, KH, KW) weight gradient for g, zero when N is 0 (its images
 * then add nothing); NULL on OOM. */
static tg_tensor *weight_grad_new(tg_ctx *c, const char *fn, tg_dtype dt, const geom *g)
{
    tg_tensor *dw = tg__empty(c, fn, dt, 4, (const int64_t[]){g->OC, g->C / g->G, g->KH, g->KW});
    if (dw && g->N == 0) memset(tg__ptr(dw), 0, (size_t)tg__numel(4, dw->shape) * tg__esize(dt));
    return dw;
}

/* x is (N, C, H, W) any strides, dout is (N, OC, OH, OW); dw is (OC, C/G, KH, KW) */
static tg_tensor *weight_grad_run(tg_ctx *c, const char *fn, tg_tensor *x, tg_tensor *dout,
                                  const geom *g)
{
    tg_tensor *dw = weight_grad_new(c, fn, x->dtype, g);
    if (!dw || g->N == 0 || tg__numel(4, dw->shape) == 0) return dw;
    const tg__arena_pos m = tg__arena_mark(c); /* scratch from here on */
    tg_tensor *dc = tg__dense(c, fn, dout);
    images j = {.c = c, .g = g, .fn = backward_image, .f64 = x->dtype == TG_F64,
                .es = (int64_t)tg__esize(x->dtype), .x = x, .dout = dc ? tg__ptr(dc) : NULL};
    bool ok = dc && images_run(&j, !cols_are_x(x, g), false, tg__ptr(dw));
    tg__arena_rewind(c, m);
    return ok ? dw : NULL;
}

/* ---- the bias gradient ---------------------------------------------------- */

/* db[o] = dout[:, o] summed over (N, OH, OW) in the order reduce.c's
 * contract fixes for tg_sum_axes (row-major over the reduced axes, blocks of
 * SUM_BLOCK summed in double from 0, the block sums added in order from 0),
 * so the bits are tg_sum_axes's (tested). One image at a time, its running
 * block sums and totals kept per channel, and BIAS_CH channels at once, so
 * their chains of dependent adds overlap instead of each add waiting for
 * the one before. */
#define SUM_BLOCK 4096 /* reduce.c's RED_BLOCK */
#define BIAS_CH 8

typedef struct {
    int64_t OC, OHW;
    int64_t left;     /* elements left in the current block, the same for all channels */
    const char *d;    /* one image's contiguous (OC, OH, OW) */
    double *acc, *tot; /* (OC) each: the current block's sums, the finished blocks' */
} bias_args;

#define BIAS_KERNEL(T, SFX)                                                            \
    TG__VEC_CLONES static void bias_image_##SFX(void *arg, int64_t t0, int64_t t1)     \
    {                                                                                  \
        const bias_args *p = arg;                                                      \
        const int64_t OHW = p->OHW;                                                    \
        for (int64_t t = t0; t < t1; t++) {                                            \
            const int64_t o0 = t * BIAS_CH;                                            \
            const int64_t w = p->OC - o0 < BIAS_CH ? p->OC - o0 : BIAS_CH;             \
            double acc[BIAS_CH] = {0}, tot[BIAS_CH] = {0};                             \
            for (int64_t j = 0; j < w; j++) acc[j] = p->acc[o0 + j], tot[j] = p->tot[o0 + j]; \
            const T *d = (const T *)p->d + o0 * OHW;                                   \
            int64_t left = p->left;                                                    \
            for (int64_t i = 0; i < OHW;) {                                            \
                const int64_t e = i + (OHW - i < left ? OHW - i : left);               \
                if (w == BIAS_CH)                                                      \
                    for (int64_t k = i; k < e; k++)                                    \
                        for (int j = 0; j < BIAS_CH; j++) acc[j] += (double)d[j * OHW + k]; \
                else                                                                   \
                    for (int64_t j = 0; j < w; j++)                                    \
                        for (int64_t k = i; k < e; k++) acc[j] += (double)d[j * OHW + k]; \
                left -= e - i;                                                         \
                i = e;                                                                 \
                if (left == 0) {                                                       \
                    for (int j = 0; j < BIAS_CH; j++) tot[j] += acc[j], acc[j] = 0;    \
                    left = SUM_BLOCK;                                                  \
                }                                                                      \
            }                                                                          \
            for (int64_t j = 0; j < w; j++) p->acc[o0 + j] = acc[j], p->tot[o0 + j] = tot[j]; \
        }                                                                              \
    }

BIAS_KERNEL(float, f32)
BIAS_KERNEL(double, f64)

/* Adds image dout_n ((OC, OH, OW) contiguous) to the running sums of p. */
static void bias_grad_image(tg_ctx *c, bias_args *p, bool f64, const char *dout_n)
{
    p->d = dout_n;
    tg__parallel_for(c, (p->OC + BIAS_CH - 1) / BIAS_CH, grain_for(BIAS_CH * p->OHW),
                     f64 ? bias_image_f64 : bias_image_f32, p);
    int64_t used = (SUM_BLOCK - p->left + p->OHW) % SUM_BLOCK;
    p->left = SUM_BLOCK - used;
}

/* db (OC) = the sums of p: the last, unfinished block added. */
static void bias_grad_finish(const bias_args *p, bool f64, tg_tensor *db)
{
    for (int64_t o = 0; o < p->OC; o++) {
        double v = p->left < SUM_BLOCK ? p->tot[o] + p->acc[o] : p->tot[o];
        if (f64) ((double *)tg__ptr(db))[o] = v;
        else ((float *)tg__ptr(db))[o] = (float)v;
    }
}

/* ---- conv2d's backward without a graph ------------------------------------ */

/* conv2d_backward_direct's work into its results gx, gw, gb (each NULL
 * when not wanted), with scratch allocated on c; false (error on c) on
 * OOM. */
static bool backward_direct_run(tg_ctx *c, const geom *g, const tg_tensor *x, tg_tensor *w,
                                tg_tensor *dout, tg_tensor *gx, tg_tensor *gw, tg_tensor *gb,
                                bool f64, int64_t es, int64_t per_out, int64_t per_in)
{
    const char *fn = "tg_conv2d";
    tg_tensor *dc = tg__dense(c, fn, dout), *wc = NULL;
    bias_args bp = {g->OC, g->OH * g->OW, SUM_BLOCK, NULL, NULL, NULL};
    if (!dc || (gx && !(wc = tg__dense(c, fn, w)))) return false;
    if (gb) {
        if (!(bp.acc = tg__arena_alloc(c, (size_t)(2 * g->OC) * sizeof(double) + 1)))
            return false;
        bp.tot = bp.acc + g->OC;
        for (int64_t i = 0; i < 2 * g->OC; i++) bp.acc[i] = 0;
    }
    bool want_w = gw && tg__numel(4, gw->shape) > 0, want_x = gx && per_in > 0;
    if (g->N > 0 && (want_w || want_x)) {
        images j = {.c = c, .g = g, .fn = backward_image, .f64 = f64, .es = es, .x = x,
                    .pw = wc ? tg__ptr(wc) : NULL, .dout = tg__ptr(dc),
                    .dx = want_x ? tg__ptr(gx) : NULL};
        if (!images_run(&j, want_w && !cols_are_x(x, g), want_x, want_w ? tg__ptr(gw) : NULL))
            return false;
    }
    /* the bias sums over every image in order (tg_sum_axes's bits) */
    for (int64_t nn = 0; gb && nn < g->N; nn++)
        bias_grad_image(c, &bp, f64, tg__ptr(dc) + nn * per_out * es);
    if (gb) bias_grad_finish(&bp, f64, gb);
    return true;
}

/* x is (N, C, H, W), w is (OC, C/G, KH, KW), dout is (N, OC, OH, OW): the
 * gradients conv2d's plain rule gives (input_grad, weight_grad, dout summed
 * over (N, OH, OW)), with their bits, computed one image at a time: the
 * image's dout is read by its two GEMMs and its bias sums while in cache. */
static void conv2d_backward_direct(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                   tg_tensor **dx)
{
    const char *fn = "tg_conv2d";
    tg_tensor *x = n->in[0], *w = n->in[1];
    geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2],
              w->shape[3], 0, 0, 0, 0, 0, 0, 0, 0, 0};
    tg_conv2d_opts o = opts_of(n);
    if (!finish_geom(c, fn, "x", x, "w", w, &o, &g)) return;
    const bool f64 = x->dtype == TG_F64;
    const int64_t es = (int64_t)tg__esize(x->dtype);
    const int64_t per_out = g.OC * g.OH * g.OW, per_in = g.C * g.H * g.W;
    tg_tensor *gx = NULL, *gw = NULL, *gb = NULL;
    if ((NEED(0) && !(gx = tg__empty(c, fn, x->dtype, 4, x->shape))) ||
        (NEED(1) && !(gw = weight_grad_new(c, fn, x->dtype, &g))) ||
        (NEED(2) && !(gb = tg__empty(c, fn, x->dtype, 1, &g.OC))))
        return;
    const tg__arena_pos m = tg__arena_mark(c); /* scratch from here on */
    if (backward_direct_run(c, &g, x, w, dout, gx, gw, gb, f64, es, per_out, per_in)) {
        dx[0] = gx;
        dx[1] = gw;
        dx[2] = gb;
    }
    tg__arena_rewind(c, m);
}

/* The gradient ops are given the size (what: "input" or "kernel", e0 x
 * e1) the forward had; the output size g computed from it must be dout's. */
static bool check_dout_size(tg_ctx *c, const char *fn, const char *an, const tg_tensor *a,
                            const char *bn, const tg_tensor *b, const char *what, int64_t e0,
                            int64_t e1, const geom *g, const tg_tensor *dout)
{
    if (g->OH == dout->shape[2] && g->OW == dout->shape[3]) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "%s %lldx%lld gives output %lldx%lld, not %lldx%lld", what,
             (long long)e0, (long long)e1, (long long)g->OH, (long long)g->OW,
             (long long)dout->shape[2], (long long)dout->shape[3]);
    conv_fail(c, TG_ERR_SHAPE, fn, an, a, bn, b, msg);
    return false;
}

static bool check_rank(tg_ctx *c, const char *fn, const char *an, const tg_tensor *a,
                       const char *bn, const tg_tensor *b, int ra, int rb)
{
    if (a->ndim == ra && b->ndim == rb) return true;
    char msg[96];
    snprintf(msg, sizeof msg, "need %d-d %s and %d-d %s", ra, an, rb, bn);
    conv_fail(c, TG_ERR_SHAPE, fn, an, a, bn, b, msg);
    return false;
}

/* ====================================================================== */
/* conv2d                                                                 */
/* ====================================================================== */

/* x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC); y is (N, OC, OH, OW) */
/* y = b + correlation of x with w (see ops_conv.h), then relu(y) for CONV2D_RELU */
static tg_tensor *conv2d_op(tg_ctx *c, const char *fn, tg_op op, tg_tensor *x, tg_tensor *w,
                            tg_tensor *b, const tg_conv2d_opts *o)
{
    tg_conv2d_opts d = tg_conv2d_defaults();
    if (!o) o = &d;
    tg_tensor *in[3] = {x, w, b};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, x, w) ||
        (b && (!tg__check_inputs(c, fn, 1, &in[2]) || !tg__check_same_dtype(c, fn, x, b))) ||
        !tg__conv2d_check_opts(c, fn, o) || !check_rank(c, fn, "x", x, "w", w, 4, 4))
        return NULL;
    geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2],
              w->shape[3], 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!check_channels(c, fn, "x", x, "w", w, g.C, w->shape[1], g.OC, o->groups)) return NULL;
    if (b && (b->ndim != 1 || b->shape[0] != g.OC)) {
        char msg[96];
        snprintf(msg, sizeof msg, "bias must be [%lld]", (long long)g.OC);
        conv_fail(c, TG_ERR_SHAPE, fn, "x", x, "bias", b, msg);
        return NULL;
    }
    if (!finish_geom(c, fn, "x", x, "w", w, o, &g)) return NULL;
    /* conv2d_relu's backward reads a byte per output, where it is > 0, not
     * the output (which then goes back once nothing else reads it) */
    bool relu = op == TG_OP_CONV2D_RELU;
    int64_t len = (g.N * g.OC * g.OH * g.OW + 7) / 8;
    tg_tensor *mask = relu && tg__wants_grad(c, 3, in) ? tg__empty(c, fn, TG_I64, 1, &len) : NULL;
    if (!tg__ok(c)) return NULL;
    tg_tensor *y =
        conv2d_run(c, fn, x, w, b, &g, relu, mask ? (unsigned char *)tg__ptr(mask) : NULL);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, op, y, 3, in, &n)) return NULL;
    if (n) save_opts(n, o, g.H, g.W);
    if (n && mask) tg__save_own(n, 0, mask);
    return y;
}

tg_tensor *tg_conv2d(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                     const tg_conv2d_opts *o)
{
    return conv2d_op(c, "tg_conv2d", TG_OP_CONV2D, x, w, b, o);
}

tg_tensor *tg_conv2d_relu(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                          const tg_conv2d_opts *o)
{
    return conv2d_op(c, "tg_conv2d_relu", TG_OP_CONV2D_RELU, x, w, b, o);
}

/* dx = input_grad(dout, w), dw = weight_grad(x, dout), db = dout summed over (N, OH, OW) */
void tg__conv2d_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    /* with no graph to record (grad mode and anomaly mode off) */
    if (!c->grad_enabled && !c->anomaly) {
        conv2d_backward_direct(c, n, dout, dx);
        return;
    }
    tg_conv2d_opts o = opts_of(n);
    tg_tensor *x = n->in[0], *w = n->in[1];
    if (NEED(0)) dx[0] = tg_conv2d_input_grad(c, dout, w, x->shape[2], x->shape[3], &o);
    if (NEED(1)) dx[1] = tg_conv2d_weight_grad(c, x, dout, w->shape[2], w->shape[3], &o);
    if (NEED(2)) dx[2] = tg_sum_axes(c, dout, 3, (const int[]){0, 2, 3}, false);
}

/* d = d times m (0 or 1), or with !keep the 0/1 mask m itself: relu's
 * backward rule and bits (dout * 0 gives its -0s and NaNs, as relu's
 * does). */
#define MASK_LOOP(T)                                                                    \
    if (keep)                                                                           \
        for (int64_t i = 0; i < n; i++) d[i] *= (T)m[i];                                \
    else                                                                                \
        for (int64_t i = 0; i < n; i++) d[i] = (T)m[i];
TG__VEC_CLONES static void mask_f32(int64_t n, bool keep, const unsigned char *restrict m,
                                    float *restrict d)
{
    MASK_LOOP(float)
}
static void mask_f64(int64_t n, bool keep, const unsigned char *restrict m, double *restrict d)
{
    MASK_LOOP(double)
}
#undef MASK_LOOP

/* conv2d's backward of dout where y > 0 (relu's rule, from the forward's
 * byte mask): without a graph the masked dout (in dout itself when the
 * driver offers it), with one dout times a constant 0/1 tensor */
void tg__conv2d_relu_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    const char *fn = "tg_conv2d_relu";
    const unsigned char *m = (const unsigned char *)tg__ptr(n->saved[0]);
    const bool graph = c->grad_enabled, f64 = dout->dtype == TG_F64;
    const int64_t cnt = tg__numel(dout->ndim, dout->shape);
    tg_tensor *dst = !graph && tg__take_spare(c, dout)
                         ? dout
                         : tg__empty(c, fn, dout->dtype, dout->ndim, dout->shape);
    if (!tg__ok(c)) return;
    if (!graph && dst != dout) tg__copy_strided(c, dst, dout);
    if (f64) mask_f64(cnt, !graph, m, (double *)(void *)tg__ptr(dst));
    else mask_f32(cnt, !graph, m, (float *)(void *)tg__ptr(dst));
    tg_tensor *dm = graph ? tg_mul(c, dout, dst) : dst;
    if (dm) tg__conv2d_backward(c, n, dm, dx);
}

/* ====================================================================== */
/* conv2d_input_grad (the transposed convolution)                         */
/* ====================================================================== */

/* dout is (N, OC, OH, OW), w is (OC, C/G, KH, KW); dx is (N, C, h, w_) */
tg_tensor *tg_conv2d_input_grad(tg_ctx *c, tg_tensor *dout, tg_tensor *w, int64_t h,
                                int64_t w_, const tg_conv2d_opts *o)
{
    const char *fn = "tg_conv2d_input_grad";
    tg_conv2d_opts d = tg_conv2d_defaults();
    if (!o) o = &d;
    tg_tensor *in[2] = {dout, w};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, dout, w) ||
        !tg__conv2d_check_opts(c, fn, o) || !check_rank(c, fn, "dout", dout, "w", w, 4, 4))
        return NULL;
    if (h < 1 || w_ < 1 || h >= PARAM_MAX || w_ >= PARAM_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: input size %lldx%lld out of range", fn, (long long)h,
                 (long long)w_);
        return NULL;
    }
    char msg[160];
    if (dout->shape[1] != w->shape[0]) {
        snprintf(msg, sizeof msg, "dout channels %lld != w's out channels %lld",
                 (long long)dout->shape[1], (long long)w->shape[0]);
        conv_fail(c, TG_ERR_SHAPE, fn, "dout", dout, "w", w, msg);
        return NULL;
    }
    geom g = {dout->shape[0], w->shape[1] * o->groups, h, w_, w->shape[0], w->shape[2],
              w->shape[3], 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!check_channels(c, fn, "dout", dout, "w", w, g.C, w->shape[1], g.OC, o->groups) ||
        !finish_geom(c, fn, "dout", dout, "w", w, o, &g))
        return NULL;
    if (!check_dout_size(c, fn, "dout", dout, "w", w, "input", h, w_, &g, dout)) return NULL;
    tg_tensor *y = input_grad_run(c, fn, dout, w, &g);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_CONV2D_INPUT_GRAD, y, 2, in, &n)) return NULL;
    if (n) save_opts(n, o, h, w_);
    return y;
}

/* u is (N, C, h, w_): d dout = conv2d(u, w), dw = weight_grad(u, dout) */
void tg__conv2d_input_grad_backward(tg_ctx *c, const tg__node *n, tg_tensor *u, tg_tensor **dx)
{
    tg_conv2d_opts o = opts_of(n);
    tg_tensor *g = n->in[0], *w = n->in[1];
    if (NEED(0)) dx[0] = tg_conv2d(c, u, w, NULL, &o);
    if (NEED(1)) dx[1] = tg_conv2d_weight_grad(c, u, g, w->shape[2], w->shape[3], &o);
}

/* ====================================================================== */
/* conv2d_weight_grad                                                     */
/* ====================================================================== */

/* x is (N, C, H, W), dout is (N, OC, OH, OW); dw is (OC, C/G, kh, kw) */
tg_tensor *tg_conv2d_weight_grad(tg_ctx *c, tg_tensor *x, tg_tensor *dout, int64_t kh,
                                 int64_t kw, const tg_conv2d_opts *o)
{
    const char *fn = "tg_conv2d_weight_grad";
    tg_conv2d_opts d = tg_conv2d_defaults();
    if (!o) o = &d;
    tg_tensor *in[2] = {x, dout};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, x, dout) ||
        !tg__conv2d_check_opts(c, fn, o) || !check_rank(c, fn, "x", x, "dout", dout, 4, 4))
        return NULL;
    if (kh < 1 || kw < 1 || kh >= PARAM_MAX || kw >= PARAM_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: kernel size %lldx%lld out of range", fn,
                 (long long)kh, (long long)kw);
        return NULL;
    }
    char msg[160];
    if (x->shape[0] != dout->shape[0]) {
        snprintf(msg, sizeof msg, "batch %lld != dout's %lld", (long long)x->shape[0],
                 (long long)dout->shape[0]);
        conv_fail(c, TG_ERR_SHAPE, fn, "x", x, "dout", dout, msg);
        return NULL;
    }
    if (x->shape[1] % o->groups != 0) {
        snprintf(msg, sizeof msg, "in channels %lld not divisible by groups %lld",
                 (long long)x->shape[1], (long long)o->groups);
        conv_fail(c, TG_ERR_SHAPE, fn, "x", x, "dout", dout, msg);
        return NULL;
    }
    geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], dout->shape[1], kh, kw,
              0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!check_channels(c, fn, "x", x, "dout", dout, g.C, g.C / o->groups, g.OC, o->groups) ||
        !finish_geom(c, fn, "x", x, "dout", dout, o, &g))
        return NULL;
    if (!check_dout_size(c, fn, "x", x, "dout", dout, "kernel", kh, kw, &g, dout)) return NULL;
    tg_tensor *y = weight_grad_run(c, fn, x, dout, &g);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_CONV2D_WEIGHT_GRAD, y, 2, in, &n)) return NULL;
    if (n) save_opts(n, o, kh, kw);
    return y;
}

/* v is (OC, C/G, kh, kw): dx = input_grad(dout, v), d dout = conv2d(x, v) */
void tg__conv2d_weight_grad_backward(tg_ctx *c, const tg__node *n, tg_tensor *v,
                                     tg_tensor **dx)
{
    tg_conv2d_opts o = opts_of(n);
    tg_tensor *x = n->in[0], *g = n->in[1];
    if (NEED(0)) dx[0] = tg_conv2d_input_grad(c, g, v, x->shape[2], x->shape[3], &o);
    if (NEED(1)) dx[1] = tg_conv2d(c, x, v, NULL, &o);
}

/* ====================================================================== */
/* conv1d                                                                 */
/* ====================================================================== */

tg_conv2d_opts tg__conv1d_as_2d(const tg_conv1d_opts *o)
{
    tg_conv2d_opts o2 = {{1, o->stride}, {0, o->padding}, {1, o->dilation}, o->groups};
    return o2;
}

/* A (d0, d1, 1, d2) view of a 3-d tensor. */
static tg_tensor *view4(tg_ctx *c, tg_tensor *t)
{
    int64_t shape[4] = {t->shape[0], t->shape[1], 1, t->shape[2]};
    int64_t st[4] = {t->stride[0], t->stride[1], t->stride[2] * t->shape[2], t->stride[2]};
    return tg__view(c, t, 4, shape, st, t->offset);
}

/* x is (N, C, L), w is (OC, C/G, K), b is (OC); y is (N, OC, OL) */
tg_tensor *tg_conv1d(tg_ctx *c, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                     const tg_conv1d_opts *o)
{
    const char *fn = "tg_conv1d";
    tg_conv1d_opts d = tg_conv1d_defaults();
    if (!o) o = &d;
    tg_conv2d_opts o2 = tg__conv1d_as_2d(o);
    tg_tensor *in[3] = {x, w, b};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, x, w) ||
        (b && (!tg__check_inputs(c, fn, 1, &in[2]) || !tg__check_same_dtype(c, fn, x, b))) ||
        !tg__conv2d_check_opts(c, fn, &o2) || !check_rank(c, fn, "x", x, "w", w, 3, 3))
        return NULL;
    geom g = {x->shape[0], x->shape[1], 1, x->shape[2], w->shape[0], 1, w->shape[2],
              0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!check_channels(c, fn, "x", x, "w", w, g.C, w->shape[1], g.OC, o->groups)) return NULL;
    if (b && (b->ndim != 1 || b->shape[0] != g.OC)) {
        char msg[96];
        snprintf(msg, sizeof msg, "bias must be [%lld]", (long long)g.OC);
        conv_fail(c, TG_ERR_SHAPE, fn, "x", x, "bias", b, msg);
        return NULL;
    }
    if (!finish_geom(c, fn, "x", x, "w", w, &o2, &g)) return NULL;
    tg_tensor *x4 = view4(c, x), *w4 = x4 ? view4(c, w) : NULL;
    tg_tensor *y4 = w4 ? conv2d_run(c, fn, x4, w4, b, &g, false, NULL) : NULL;
    if (!y4) return NULL;
    tg_tensor *y = tg__view(c, y4, 3, (const int64_t[]){g.N, g.OC, g.OW},
                            (const int64_t[]){g.OC * g.OW, g.OW, 1}, 0);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_CONV1D, y, 3, in, &n)) return NULL;
    if (n) save_opts(n, &o2, 1, x->shape[2]);
    return y;
}

/* the 2-d gradient kernels on height-1 reshapes; db = dout summed over (N, OL) */
void tg__conv1d_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_conv2d_opts o = opts_of(n);
    tg_tensor *x = n->in[0], *w = n->in[1];
    int64_t N = x->shape[0], C = x->shape[1], L = x->shape[2];
    int64_t OC = w->shape[0], CG = w->shape[1], K = w->shape[2], OL = dout->shape[2];
    tg_tensor *d4 = NULL;
    if (NEED(0) || NEED(1)) d4 = tg_reshape(c, dout, 4, (const int64_t[]){N, OC, 1, OL});
    if (NEED(0)) {
        tg_tensor *w4 = tg_reshape(c, w, 4, (const int64_t[]){OC, CG, 1, K});
        dx[0] = tg_reshape(c, tg_conv2d_input_grad(c, d4, w4, 1, L, &o), 3, x->shape);
    }
    if (NEED(1)) {
        tg_tensor *x4 = tg_reshape(c, x, 4, (const int64_t[]){N, C, 1, L});
        dx[1] = tg_reshape(c, tg_conv2d_weight_grad(c, x4, d4, 1, K, &o), 3, w->shape);
    }
    if (NEED(2)) dx[2] = tg_sum_axes(c, dout, 2, (const int[]){0, 2}, false);
}
