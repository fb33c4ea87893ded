/*
 * pool.c - 2-d max, average and adaptive average pooling, and the linear
 * ops their gradients are made of, each forward beside its backward.
 *
 * Every backward here is itself an op of the list, so gradients of any
 * order exist:
 *   max_pool2d(x)            dx = max_unpool2d(dout, idx)  (idx a constant)
 *   max_unpool2d(x, idx)     dx = gather2d(u, idx)
 *   gather2d(x, idx)         dx = max_unpool2d(u, idx)
 *   avg_pool2d(x)            dx = avg_pool2d_input_grad(dout)
 *   avg_pool2d_input_grad    d  = avg_pool2d(u)
 *   adaptive_avg_pool2d and its input_grad likewise.
 *
 * Kernels run over (n, c) planes split across threads; each output plane
 * is written by one thread in a fixed order, so results are bit-identical
 * whatever the thread count. f32 sums accumulate in double.
 */
#include "fastmath.h"
#include "ops_impl.h"

#include <math.h>
#include <string.h>

#define NEED(i) (n->in[i] && n->in[i]->requires_grad)
#define PARAM_MAX ((int64_t)1 << 31)

tg_pool2d_opts tg_pool2d_defaults(void)
{
    tg_pool2d_opts o = {{0, 0}, {0, 0}, {0, 0}, {1, 1}, true};
    return o;
}

static int64_t grain_for(int64_t work_per_item)
{
    int64_t gr = TG__PAR_GRAIN / (work_per_item > 0 ? work_per_item : 1);
    return gr > 0 ? gr : 1;
}

static bool check_4d(tg_ctx *c, const char *fn, const char *name, const tg_tensor *t)
{
    if (t->ndim == 4) return true;
    char s[128];
    tg__fail(c, TG_ERR_SHAPE, "%s: %s %s: need a 4-d [N, C, H, W] tensor", fn, name,
             tg__fmt_shape(s, sizeof s, t->ndim, t->shape));
    return false;
}

/* Validates o into r (stride 0 resolved to the kernel). */
bool tg__pool2d_resolve_opts(tg_ctx *c, const char *fn, const tg_pool2d_opts *o,
                             bool dilation_ok, tg_pool2d_opts *r)
{
    if (!o) {
        tg__fail(c, TG_ERR_INVALID, "%s: options are NULL (the kernel size must be set)", fn);
        return false;
    }
    *r = *o;
    for (int i = 0; i < 2; i++) {
        const char *dim = i ? "width" : "height";
        if (o->kernel[i] < 1 || o->kernel[i] >= PARAM_MAX) {
            tg__fail(c, TG_ERR_INVALID, "%s: kernel %s %lld out of range [1, 2^31)", fn, dim,
                     (long long)o->kernel[i]);
            return false;
        }
        if (o->stride[i] == 0) r->stride[i] = o->kernel[i];
        if (r->stride[i] < 1 || r->stride[i] >= PARAM_MAX) {
            tg__fail(c, TG_ERR_INVALID, "%s: stride %s %lld out of range (0 for the kernel, or "
                     "[1, 2^31))", fn, dim, (long long)o->stride[i]);
            return false;
        }
        if (o->padding[i] < 0 || o->padding[i] > o->kernel[i] / 2) {
            tg__fail(c, TG_ERR_INVALID, "%s: padding %s %lld must be in [0, kernel %lld / 2]",
                     fn, dim, (long long)o->padding[i], (long long)o->kernel[i]);
            return false;
        }
        if (o->dilation[i] < 1 || o->dilation[i] >= PARAM_MAX ||
            (!dilation_ok && o->dilation[i] != 1)) {
            tg__fail(c, TG_ERR_INVALID, "%s: dilation %s %lld %s", fn, dim,
                     (long long)o->dilation[i],
                     dilation_ok ? "out of range [1, 2^31)" : "not supported (must be 1)");
            return false;
        }
    }
    return true;
}

/* floor((in + 2p - d(k-1) - 1) / s) + 1, which may be <= 0 */
static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    int64_t num = in + 2 * p - d * (k - 1) - 1;
    int64_t q = num >= 0 ? num / s : -((-num + s - 1) / s);
    return q + 1;
}

/* The output size of a pooling of an h x w input; false (error naming the
 * numbers) when empty. */
static bool pool_out(tg_ctx *c, const char *fn, const tg_pool2d_opts *r, int64_t h, int64_t w,
                     int64_t *oh, int64_t *ow)
{
    *oh = out_size(h, r->kernel[0], r->stride[0], r->padding[0], r->dilation[0]);
    *ow = out_size(w, r->kernel[1], r->stride[1], r->padding[1], r->dilation[1]);
    if (*oh > 0 && *ow > 0) return true;
    tg__fail(c, TG_ERR_SHAPE,
             "%s: output size %lldx%lld <= 0 (input %lldx%lld, padding %lldx%lld, dilated "
             "kernel %lldx%lld, stride %lldx%lld)",
             fn, (long long)*oh, (long long)*ow, (long long)h, (long long)w,
             (long long)r->padding[0], (long long)r->padding[1],
             (long long)(r->dilation[0] * (r->kernel[0] - 1) + 1),
             (long long)(r->dilation[1] * (r->kernel[1] - 1) + 1), (long long)r->stride[0],
             (long long)r->stride[1]);
    return false;
}

static void save_popts(tg__node *n, const tg_pool2d_opts *r, int64_t e0, int64_t e1)
{
    int64_t v[11] = {r->kernel[0],   r->kernel[1],   r->stride[0],   r->stride[1],
                     r->padding[0],  r->padding[1],  r->dilation[0], r->dilation[1],
                     r->count_include_pad, e0, e1};
    memcpy(n->iv, v, sizeof v);
    n->n_iv = 11;
}

static tg_pool2d_opts popts_of(const tg__node *n)
{
    tg_pool2d_opts o = {{n->iv[0], n->iv[1]}, {n->iv[2], n->iv[3]}, {n->iv[4], n->iv[5]},
                        {n->iv[6], n->iv[7]}, n->iv[8] != 0};
    return o;
}

/* ====================================================================== */
/* max_pool2d                                                             */
/* ====================================================================== */

/*
 * What the forward keeps for backward is, per output, the code of its
 * maximum: its place k = i * KW + j in the window (tap i down, tap j
 * across), or none when the window holds no input element (a dilated
 * window over padding only). A window of at most BYTE_CODES places (every
 * common one) takes one byte per output, none being 255; a larger one an
 * int64, none being -1. The plane index ih * W + iw that
 * tg_max_pool2d_with_indices returns and max_unpool2d takes is made from
 * the codes only when asked for (the public indices, a backward that
 * records its graph): one byte kept per output instead of eight.
 */
#define BYTE_CODES 255

/* Window o of an axis starts at b[o] and uses taps [lo[o], hi[o]) (those
 * inside the input). */
typedef struct {
    int64_t *b, *lo, *hi;
} tap_tab;

typedef struct {
    int64_t C, H, W, OH, OW;
    tg_pool2d_opts r;
    tap_tab th, tw;
    const char *x;
    int64_t xs[4];
    char *y;
    void *code; /* uint8_t or int64_t per output */
} maxp_args;

/* The taps k in [*k0, *k1) of a window starting at b with dilation d and
 * size k that land inside [0, n): the loops never visit padding. */
static void taps(int64_t b, int64_t d, int64_t k, int64_t n, int64_t *k0, int64_t *k1)
{
    int64_t lo = b >= 0 ? 0 : (-b + d - 1) / d;
    int64_t hi = n - b <= 0 ? 0 : (n - b + d - 1) / d;
    *k0 = lo < k ? lo : k;
    *k1 = hi < k ? hi : k;
    if (*k1 < *k0) *k1 = *k0;
}

static bool tap_tab_make(tg_ctx *c, tap_tab *t, int64_t out, int64_t in, int64_t k, int64_t s,
                         int64_t pad, int64_t d)
{
    t->b = tg__arena_alloc(c, (size_t)(3 * out) * sizeof(int64_t));
    if (!t->b) return false;
    t->lo = t->b + out;
    t->hi = t->lo + out;
    for (int64_t o = 0; o < out; o++) {
        t->b[o] = o * s - pad;
        taps(t->b[o], d, k, in, &t->lo[o], &t->hi[o]);
    }
    return true;
}

/* Any geometry: windows from the tap tables, codes of type IX. */
#define MAXP_KERNEL(T, IX, SFX)                                                        \
    static void maxp_##SFX(void *arg, int64_t p0, int64_t p1)                          \
    {                                                                                  \
        const maxp_args *p = arg;                                                      \
        const int64_t C = p->C, KW = p->r.kernel[1], OH = p->OH, OW = p->OW;           \
        const int64_t dh = p->r.dilation[0], dw = p->r.dilation[1];                    \
        const int64_t xs2 = p->xs[2], xs3 = p->xs[3];                                  \
        const int64_t *hb = p->th.b, *hlo = p->th.lo, *hhi = p->th.hi;                 \
        const int64_t *wb = p->tw.b, *wlo = p->tw.lo, *whi = p->tw.hi;                 \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *xp = (const T *)p->x + (pl / C) * p->xs[0] + (pl % C) * p->xs[1]; \
            T *y = (T *)p->y + pl * OH * OW;                                           \
            IX *cd = (IX *)p->code + pl * OH * OW;                                     \
            for (int64_t oh = 0; oh < OH; oh++)                                        \
                for (int64_t ow = 0; ow < OW; ow++) {                                  \
                    T best = -(T)INFINITY;                                             \
                    int64_t bi = -1;                                                   \
                    const int64_t j0 = wlo[ow], j1 = whi[ow];                          \
                    for (int64_t i = hlo[oh]; i < hhi[oh]; i++) {                      \
                        const T *xr = xp + (hb[oh] + i * dh) * xs2;                    \
                        for (int64_t j = j0; j < j1; j++) {                            \
                            const T v = xr[(wb[ow] + j * dw) * xs3];                   \
                            if (bi < 0 || v > best || v != v) {                        \
                                best = v;                                              \
                                bi = i * KW + j;                                       \
                            }                                                          \
                        }                                                              \
                    }                                                                  \
                    y[oh * OW + ow] = best;                                            \
                    cd[oh * OW + ow] = (IX)bi; /* none: 255 or -1 */                   \
                }                                                                      \
        }                                                                              \
    }

MAXP_KERNEL(float, uint8_t, f32_u8)
MAXP_KERNEL(double, uint8_t, f64_u8)
MAXP_KERNEL(float, int64_t, f32_i64)
MAXP_KERNEL(double, int64_t, f64_i64)

/* Without padding every window lies inside the input: no tap tables, and
 * the common 2x2 window unrolled. Same scan order and tie / NaN rule as
 * MAXP_KERNEL (the first maximum wins, a NaN replaces anything), without
 * branches (selects by bit masks; U is T's unsigned twin): on real data the
 * comparisons are coin flips. Byte codes. */
#define MAXP_TAKE(T, U, V, K)                                       \
    do {                                                            \
        const T v_ = (V);                                           \
        const U m_ = -(U)((v_ > best) | (v_ != v_));                \
        U vb_, bb_;                                                 \
        memcpy(&vb_, &v_, sizeof vb_);                              \
        memcpy(&bb_, &best, sizeof bb_);                            \
        bb_ = (vb_ & m_) | (bb_ & ~m_);                             \
        memcpy(&best, &bb_, sizeof best);                           \
        bi = (uint8_t)(((K) & (uint8_t)m_) | (bi & (uint8_t)~m_)); \
    } while (0)

#define MAXP_NOPAD_KERNEL(T, U, SFX)                                                   \
    static void maxp_nopad_##SFX(void *arg, int64_t p0, int64_t p1)                    \
    {                                                                                  \
        const maxp_args *p = arg;                                                      \
        const int64_t C = p->C, OH = p->OH, OW = p->OW;                                \
        const int64_t KH = p->r.kernel[0], KW = p->r.kernel[1];                        \
        const int64_t sh = p->r.stride[0], sw = p->r.stride[1];                        \
        const int64_t dh = p->r.dilation[0], dw = p->r.dilation[1];                    \
        const int64_t xs2 = p->xs[2], xs3 = p->xs[3];                                  \
        const bool k22 = KH == 2 && KW == 2;                                           \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *xp = (const T *)p->x + (pl / C) * p->xs[0] + (pl % C) * p->xs[1]; \
            T *y = (T *)p->y + pl * OH * OW;                                           \
            uint8_t *cd = (uint8_t *)p->code + pl * OH * OW;                           \
            for (int64_t oh = 0; oh < OH; oh++) {                                      \
                const T *r0 = xp + oh * sh * xs2, *r1 = r0 + dh * xs2;                 \
                for (int64_t ow = 0; ow < OW; ow++) {                                  \
                    const int64_t iw = ow * sw;                                        \
                    T best = r0[iw * xs3];                                             \
                    uint8_t bi = 0;                                                    \
                    if (k22) {                                                         \
                        MAXP_TAKE(T, U, r0[(iw + dw) * xs3], 1);                       \
                        MAXP_TAKE(T, U, r1[iw * xs3], 2);                              \
                        MAXP_TAKE(T, U, r1[(iw + dw) * xs3], 3);                       \
                    } else {                                                           \
                        for (int64_t i = 0; i < KH; i++)                               \
                            for (int64_t j = i ? 0 : 1; j < KW; j++)                   \
                                MAXP_TAKE(T, U, r0[i * dh * xs2 + (iw + j * dw) * xs3], \
                                          (uint8_t)(i * KW + j));                      \
                    }                                                                  \
                    y[oh * OW + ow] = best;                                            \
                    cd[oh * OW + ow] = bi;                                             \
                }                                                                      \
            }                                                                          \
        }                                                                              \
    }

MAXP_NOPAD_KERNEL(float, uint32_t, f32)
MAXP_NOPAD_KERNEL(double, uint64_t, f64)

/* The common case, 2x2 windows at stride 2 without dilation over rows of
 * unit stride, in loops that vectorise over many windows at once (a row of
 * a 14 x 14 output, or a 7 x 7 plane, is too short for a vector loop and
 * its scalar tail): over chunks of up to MAXP22_CHUNK outputs (rows of
 * windows, of consecutive planes too, or pieces of a long row), the
 * maximum of each column pair (row 2oh against 2oh + 1) row by row, then
 * of the two columns of every window over the whole chunk. The second step
 * compares places, so that the first scan's rule holds: the window's last
 * NaN in scan order, else its first maximum, as MAXP_KERNEL's sequential
 * scan gives (ties and signed zeros included). MT is an integer of T's
 * width, so that every loop has one lane width. The outputs of planes
 * [p0, p1) are the row pairs [p0 * OH, p1 * OH), contiguous in y. */
#define MAXP22_CHUNK 256
#define MAXP22_KERNEL(T, MT, SFX)                                                      \
    TG__VEC_CLONES static void maxp22_##SFX(void *arg, int64_t p0, int64_t p1)         \
    {                                                                                  \
        const maxp_args *p = arg;                                                      \
        const int64_t C = p->C, OH = p->OH, OW = p->OW, xs2 = p->xs[2];                \
        const int64_t cw = OW < MAXP22_CHUNK ? OW : MAXP22_CHUNK;                      \
        const int64_t rows = OW < MAXP22_CHUNK ? MAXP22_CHUNK / OW : 1;                \
        /* planes one after another, each 2 OH rows: row pair t at t 2 xs2 */         \
        const bool flat = p->xs[1] == 2 * OH * xs2 && p->xs[0] == C * p->xs[1];        \
        T cv[2 * MAXP22_CHUNK];                                                        \
        MT cb[2 * MAXP22_CHUNK], kc[MAXP22_CHUNK];                                     \
        for (int64_t ta = p0 * OH; ta < p1 * OH; ta += rows)                           \
            for (int64_t c0 = 0; c0 < OW; c0 += cw) {                                  \
                const int64_t tb = ta + rows < p1 * OH ? ta + rows : p1 * OH;          \
                const int64_t n = (c0 + cw < OW ? c0 + cw : OW) - c0, m = (tb - ta) * n; \
                for (int64_t t = ta; t < tb; t++) {                                    \
                    /* plane t / OH, row pair t % OH */                                \
                    const T *restrict x0 =                                             \
                        (const T *)p->x + 2 * c0 +                                     \
                        (flat ? t * 2 * xs2                                            \
                              : (t / OH / C) * p->xs[0] + (t / OH % C) * p->xs[1] +    \
                                    2 * (t % OH) * xs2);                               \
                    const T *restrict x1 = x0 + xs2;                                   \
                    T *restrict v = cv + (t - ta) * 2 * n;                             \
                    MT *restrict b = cb + (t - ta) * 2 * n;                            \
                    for (int64_t w = 0; w < 2 * n; w++) {                              \
                        const T a = x0[w], e = x1[w];                                  \
                        const MT u = (e > a) | (e != e);                               \
                        v[w] = u ? e : a;                                              \
                        b[w] = u;                                                      \
                    }                                                                  \
                }                                                                      \
                /* e (column 1) wins: a NaN over a number or over an earlier NaN, a    \
                 * larger number, or an equal one found earlier (row 0 against 1) */   \
                T *restrict y = (T *)p->y + ta * OW + c0;                              \
                for (int64_t j = 0; j < m; j++) {                                      \
                    const T a = cv[2 * j], e = cv[2 * j + 1];                          \
                    const MT ia = 2 * cb[2 * j], ie = 2 * cb[2 * j + 1] + 1;           \
                    const MT an = a != a, en = e != e;                                 \
                    const MT u = (en & (!an | (ie > ia))) | (e > a) |                  \
                                 ((e == a) & (ie < ia));                               \
                    y[j] = u ? e : a;                                                  \
                    kc[j] = u ? ie : ia;                                               \
                }                                                                      \
                uint8_t *restrict cd = (uint8_t *)p->code + ta * OW + c0;              \
                for (int64_t j = 0; j < m; j++) cd[j] = (uint8_t)kc[j];                \
            }                                                                          \
    }

MAXP22_KERNEL(float, int32_t, f32)
MAXP22_KERNEL(double, int64_t, f64)

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* maxp22_f32 with AVX-512F, row pair by row pair: up to 16 windows of a
 * row at once (32 columns of the two rows, masked loads past the row's
 * end), so rows of 7 or 14 windows take one step each instead of a vector
 * loop's scalar tail. The same two comparisons as MAXP22_KERNEL, lane for
 * lane (the rows' pair of each column, then the two columns of each window
 * by place), so the same values and codes, NaNs, ties and signed zeros
 * included; maxima and comparisons round nothing. */
#define MAXP22_WIDE 1
#include <immintrin.h>

bool tg__maxp22_wide = true;

/* The lanes of a step over n (1..16) windows of a row: mo its n outputs,
 * ml and mh its 2 n input columns, 16 per vector. */
static inline void wide_masks(int64_t n, __mmask16 *mo, __mmask16 *ml, __mmask16 *mh)
{
    *mo = (__mmask16)((1u << n) - 1u);
    *ml = (__mmask16)(n >= 8 ? 0xffffu : (1u << 2 * n) - 1u);
    *mh = (__mmask16)(n > 8 ? (1u << 2 * (n - 8)) - 1u : 0u);
}

/* MAXP22_KERNEL's first comparison over 16 columns (the lanes of m) of
 * rows a0 and a1: the bottom row wins a column with a NaN or a larger
 * number. The winners, and in *place 2 where the bottom row won, else 0. */
__attribute__((target("avx512f"))) static inline __m512 col_max(__mmask16 m, const float *a0,
                                                                 const float *a1,
                                                                 __m512i *place)
{
    const __m512 t = _mm512_maskz_loadu_ps(m, a0), b = _mm512_maskz_loadu_ps(m, a1);
    const __mmask16 u = _mm512_cmp_ps_mask(b, t, _CMP_GT_OQ) |
                        _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
    *place = _mm512_maskz_mov_epi32(u, _mm512_set1_epi32(2));
    return _mm512_mask_blend_ps(u, t, b);
}

__attribute__((target("avx512f"))) static void maxp22_f32_avx512(void *arg, int64_t p0,
                                                                 int64_t p1)
{
    const maxp_args *p = arg;
    const int64_t C = p->C, OH = p->OH, OW = p->OW;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t pl = p0; pl < p1; pl++) {
        const float *xp = (const float *)p->x + (pl / C) * p->xs[0] + (pl % C) * p->xs[1];
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = xp + 2 * oh * p->xs[2], *r1 = r0 + p->xs[2];
            float *y = (float *)p->y + (pl * OH + oh) * OW;
            uint8_t *cd = (uint8_t *)p->code + (pl * OH + oh) * OW;
            for (int64_t w0 = 0; w0 < OW; w0 += 16) {
                __mmask16 mo, ml, mh;
                wide_masks(OW - w0 < 16 ? OW - w0 : 16, &mo, &ml, &mh);
                /* columns 2 w0 .. 2 w0 + 31 */
                const float *a0 = r0 + 2 * w0, *a1 = r1 + 2 * w0;
                __m512i bl, bh;
                const __m512 vl = col_max(ml, a0, a1, &bl);
                const __m512 vh = col_max(mh, a0 + 16, a1 + 16, &bh);
                /* each window's columns: a (place 0 or 2), e (1 or 3) */
                const __m512 a = _mm512_permutex2var_ps(vl, even, vh);
                const __m512 e = _mm512_permutex2var_ps(vl, odd, vh);
                const __m512i ia = _mm512_permutex2var_epi32(bl, even, bh);
                const __m512i ie = _mm512_add_epi32(_mm512_permutex2var_epi32(bl, odd, bh),
                                                    _mm512_set1_epi32(1));
                const __mmask16 an = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
                const __mmask16 en = _mm512_cmp_ps_mask(e, e, _CMP_UNORD_Q);
                const __mmask16 later = _mm512_cmpgt_epi32_mask(ie, ia);
                const __mmask16 u =
                    (en & (~an | later)) | _mm512_cmp_ps_mask(e, a, _CMP_GT_OQ) |
                    (_mm512_cmp_ps_mask(e, a, _CMP_EQ_OQ) & _mm512_cmplt_epi32_mask(ie, ia));
                _mm512_mask_storeu_ps(y + w0, mo, _mm512_mask_blend_ps(u, a, e));
                _mm512_mask_cvtepi32_storeu_epi8(cd + w0, mo, _mm512_mask_blend_epi32(u, ia, ie));
            }
        }
    }
}
#else
bool tg__maxp22_wide = false; /* no such kernel here */
#endif

/* ---- codes to plane indices, and the backward from codes ------------------ */

/* Geometry of a max pooling's codes: output (OH, OW) planes of an (H, W)
 * input, windows KH x KW at stride (sh, sw) from (-ph, -pw), dilation
 * (dh, dw); wide: int64 codes, else bytes. */
typedef struct {
    int64_t H, W, OH, OW, KW, sh, sw, ph, pw, dh, dw;
    bool wide;
    int64_t off[BYTE_CODES]; /* byte codes: the plane offset of place k */
    const void *code;
    const char *src; /* unpool: dout, contiguous */
    char *dst;       /* unpool: dx; indices: int64 */
} codes_args;

static codes_args codes_geom(const tg_pool2d_opts *r, int64_t H, int64_t W, int64_t OH,
                             int64_t OW, bool wide, const void *code)
{
    codes_args a = {H, W, OH, OW, r->kernel[1], r->stride[0], r->stride[1], r->padding[0],
                    r->padding[1], r->dilation[0], r->dilation[1], wide, {0}, code, NULL, NULL};
    const int64_t kk = r->kernel[0] * r->kernel[1];
    for (int64_t k = 0; !wide && k < kk; k++)
        a.off[k] = (k / a.KW) * a.dh * W + (k % a.KW) * a.dw;
    return a;
}

/* The code of output q of plane pl (q = oh * OW + ow), -1 for none. */
static inline int64_t code_at(const codes_args *a, int64_t i)
{
    if (a->wide) return ((const int64_t *)a->code)[i];
    const uint8_t k = ((const uint8_t *)a->code)[i];
    return k == BYTE_CODES ? -1 : k;
}

/* The plane offset of place k of the window of output (oh, ow). */
static inline int64_t code_off(const codes_args *a, int64_t oh, int64_t ow, int64_t k)
{
    const int64_t base = (oh * a->sh - a->ph) * a->W + ow * a->sw - a->pw;
    return base + (a->wide ? (k / a->KW) * a->dh * a->W + (k % a->KW) * a->dw : a->off[k]);
}

static void code_index(void *arg, int64_t p0, int64_t p1)
{
    const codes_args *a = arg;
    int64_t *ix = (int64_t *)(void *)a->dst;
    for (int64_t pl = p0; pl < p1; pl++)
        for (int64_t oh = 0, i = pl * a->OH * a->OW; oh < a->OH; oh++)
            for (int64_t ow = 0; ow < a->OW; ow++, i++) {
                const int64_t k = code_at(a, i);
                ix[i] = k < 0 ? -1 : code_off(a, oh, ow, k);
            }
}

/* Any geometry: each plane of dx zeroed, then every dout added at its
 * maximum in output order (unpool_f32's order, so its bits). */
#define UNPOOL_CODES_KERNEL(T, SFX)                                                    \
    static void unpool_codes_##SFX(void *arg, int64_t p0, int64_t p1)                  \
    {                                                                                  \
        const codes_args *a = arg;                                                     \
        const int64_t per_in = a->OH * a->OW;                                          \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *s = (const T *)a->src + pl * per_in;                              \
            T *d = (T *)a->dst + pl * a->H * a->W;                                     \
            for (int64_t i = 0; i < a->H * a->W; i++) d[i] = 0;                        \
            for (int64_t oh = 0, i = pl * per_in; oh < a->OH; oh++)                    \
                for (int64_t ow = 0; ow < a->OW; ow++, i++) {                          \
                    const int64_t k = code_at(a, i);                                   \
                    if (k >= 0) d[code_off(a, oh, ow, k)] += s[i - pl * per_in];       \
                }                                                                      \
        }                                                                              \
    }

UNPOOL_CODES_KERNEL(float, f32)
UNPOOL_CODES_KERNEL(double, f64)

/* v where m is all ones, +0 where it is 0: a select by bit masks, which
 * GCC vectorises where it leaves a ternary as a branch. */
static inline float keep_f32(float v, int32_t m)
{
    int32_t b;
    memcpy(&b, &v, sizeof b);
    b &= m;
    memcpy(&v, &b, sizeof v);
    return v;
}
static inline double keep_f64(double v, int64_t m)
{
    int64_t b;
    memcpy(&b, &v, sizeof b);
    b &= m;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* 2x2 windows at stride 2, no padding or dilation, byte codes: the windows
 * do not overlap, so each element of dx is written once, 0 + dout at a
 * window's maximum (the bits of zeroing and adding: -0 becomes +0) and 0
 * elsewhere, rows and columns no window covers included. Over chunks as in
 * MAXP22_KERNEL: the top and bottom rows of every window of the chunk in
 * one loop, then copied row by row. */
#define UNPOOL22_KERNEL(T, MT, SFX)                                                    \
    TG__VEC_CLONES static void unpool22_##SFX(void *arg, int64_t p0, int64_t p1)       \
    {                                                                                  \
        const codes_args *a = arg;                                                     \
        const int64_t H = a->H, W = a->W, OH = a->OH, OW = a->OW;                      \
        const int64_t cw = OW < MAXP22_CHUNK ? OW : MAXP22_CHUNK;                      \
        const int64_t rows = OW < MAXP22_CHUNK ? MAXP22_CHUNK / OW : 1;                \
        T top[2 * MAXP22_CHUNK], bot[2 * MAXP22_CHUNK];                                \
        MT kc[MAXP22_CHUNK];                                                           \
        for (int64_t ta = p0 * OH; ta < p1 * OH; ta += rows)                           \
            for (int64_t c0 = 0; c0 < OW; c0 += cw) {                                  \
                const int64_t tb = ta + rows < p1 * OH ? ta + rows : p1 * OH;          \
                const int64_t n = (c0 + cw < OW ? c0 + cw : OW) - c0, m = (tb - ta) * n; \
                const uint8_t *restrict cd = (const uint8_t *)a->code + ta * OW + c0;  \
                const T *restrict s = (const T *)a->src + ta * OW + c0;                \
                for (int64_t j = 0; j < m; j++) kc[j] = cd[j];                         \
                for (int64_t j = 0; j < m; j++) {                                      \
                    const T v = (T)0 + s[j];                                           \
                    const MT k = kc[j];                                                \
                    top[2 * j] = keep_##SFX(v, -(MT)(k == 0));                         \
                    top[2 * j + 1] = keep_##SFX(v, -(MT)(k == 1));                     \
                    bot[2 * j] = keep_##SFX(v, -(MT)(k == 2));                         \
                    bot[2 * j + 1] = keep_##SFX(v, -(MT)(k == 3));                     \
                }                                                                      \
                for (int64_t t = ta; t < tb; t++) {                                    \
                    T *d0 = (T *)a->dst + (t / OH) * H * W + 2 * (t % OH) * W + 2 * c0; \
                    memcpy(d0, top + (t - ta) * 2 * n, (size_t)(2 * n) * sizeof(T));  \
                    memcpy(d0 + W, bot + (t - ta) * 2 * n, (size_t)(2 * n) * sizeof(T)); \
                }                                                                      \
            }                                                                          \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            T *d = (T *)a->dst + pl * H * W;                                           \
            for (int64_t r = 0; W > 2 * OW && r < 2 * OH; r++) d[r * W + W - 1] = 0;   \
            for (int64_t i = 2 * OH * W; i < H * W; i++) d[i] = 0;                     \
        }                                                                              \
    }

UNPOOL22_KERNEL(float, int32_t, f32)
UNPOOL22_KERNEL(double, int64_t, f64)

#ifdef MAXP22_WIDE
/* unpool22_f32 with AVX-512 (F, and BW with VL for the masked load of the
 * codes: a byte copy into a buffer instead stalls every load on it), row
 * of windows by row: up to 16 windows at once, 0 + dout put in the
 * window's place of their maximum and +0 in the other three (the same bits
 * as keep_f32), the two rows of their 32 columns interleaved in registers
 * and stored straight into dx (masked past the row's end); then, as there,
 * the column and rows no window covers. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void unpool22_f32_avx512(
    void *arg, int64_t p0, int64_t p1)
{
    const codes_args *a = arg;
    const int64_t H = a->H, W = a->W, OH = a->OH, OW = a->OW;
    /* lanes 0-7 / 8-15 of two vectors, interleaved */
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    for (int64_t pl = p0; pl < p1; pl++) {
        float *d = (float *)a->dst + pl * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *s = (const float *)a->src + (pl * OH + oh) * OW;
            const uint8_t *cd = (const uint8_t *)a->code + (pl * OH + oh) * OW;
            float *d0 = d + 2 * oh * W, *d1 = d0 + W;
            for (int64_t w0 = 0; w0 < OW; w0 += 16) {
                __mmask16 mo, ml, mh;
                wide_masks(OW - w0 < 16 ? OW - w0 : 16, &mo, &ml, &mh);
                const __m512i k = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mo, cd + w0));
                const __m512 v =
                    _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(mo, s + w0));
                __m512 p[4];
                for (int q = 0; q < 4; q++)
                    p[q] = _mm512_maskz_mov_ps(
                        _mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(q)), v);
                _mm512_mask_storeu_ps(d0 + 2 * w0, ml, _mm512_permutex2var_ps(p[0], lo, p[1]));
                _mm512_mask_storeu_ps(d0 + 2 * w0 + 16, mh,
                                      _mm512_permutex2var_ps(p[0], hi, p[1]));
                _mm512_mask_storeu_ps(d1 + 2 * w0, ml, _mm512_permutex2var_ps(p[2], lo, p[3]));
                _mm512_mask_storeu_ps(d1 + 2 * w0 + 16, mh,
                                      _mm512_permutex2var_ps(p[2], hi, p[3]));
            }
        }
        for (int64_t r = 0; W > 2 * OW && r < 2 * OH; r++) d[r * W + W - 1] = 0;
        for (int64_t i = 2 * OH * W; i < H * W; i++) d[i] = 0;
    }
}
#endif

static bool is_k22(const tg_pool2d_opts *r)
{
    return r->padding[0] == 0 && r->padding[1] == 0 && r->kernel[0] == 2 && r->kernel[1] == 2 &&
           r->stride[0] == 2 && r->stride[1] == 2 && r->dilation[0] == 1 && r->dilation[1] == 1;
}

/* The codes tensor of n outputs (a byte or an int64 each) in c: an I64
 * tensor used as raw storage, which the engine's versions guard like any
 * saved tensor. */
static tg_tensor *codes_new(tg_ctx *c, const char *fn, int64_t n, bool wide)
{
    const int64_t len = wide ? n : (n + 7) / 8;
    return tg__empty(c, fn, TG_I64, 1, &len);
}

/* The (N, C, OH, OW) plane indices of the codes. */
static tg_tensor *codes_to_index(tg_ctx *c, const char *fn, const codes_args *a, int64_t N,
                                 int64_t C)
{
    tg_tensor *idx = tg__empty(c, fn, TG_I64, 4, (const int64_t[]){N, C, a->OH, a->OW});
    if (!idx || N * C == 0) return idx;
    codes_args p = *a;
    p.dst = tg__ptr(idx);
    tg__parallel_for(c, N * C, grain_for(a->OH * a->OW), code_index, &p);
    return idx;
}

/* x is (N, C, H, W); y and indices are (N, C, OH, OW) */
tg_tensor *tg_max_pool2d_with_indices(tg_ctx *c, tg_tensor *x, const tg_pool2d_opts *o,
                                      tg_tensor **indices)
{
    const char *fn = "tg_max_pool2d";
    if (indices) *indices = NULL;
    tg_pool2d_opts r;
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x) ||
        !check_4d(c, fn, "x", x) || !tg__pool2d_resolve_opts(c, fn, o, true, &r))
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], OH, OW;
    if (!pool_out(c, fn, &r, H, W, &OH, &OW)) return NULL;
    const int64_t shape[4] = {N, C, OH, OW};
    const bool wide = r.kernel[0] * r.kernel[1] > BYTE_CODES, f64 = x->dtype == TG_F64;
    tg_tensor *y = tg__empty(c, fn, x->dtype, 4, shape);
    tg_tensor *code = y ? codes_new(c, fn, tg__numel(4, shape), wide) : NULL;
    if (!code) return NULL;
    if (N * C > 0) {
        maxp_args p = {C, H, W, OH, OW, r, {NULL, NULL, NULL}, {NULL, NULL, NULL}, tg__ptr(x),
                       {x->stride[0], x->stride[1], x->stride[2], x->stride[3]}, tg__ptr(y),
                       tg__ptr(code)};
        bool nopad = !wide && r.padding[0] == 0 && r.padding[1] == 0;
        bool k22 = is_k22(&r) && x->stride[3] == 1;
        if (!nopad &&
            (!tap_tab_make(c, &p.th, OH, H, r.kernel[0], r.stride[0], r.padding[0],
                           r.dilation[0]) ||
             !tap_tab_make(c, &p.tw, OW, W, r.kernel[1], r.stride[1], r.padding[1],
                           r.dilation[1])))
            return NULL;
        tg__range_fn k22_f32 = maxp22_f32;
#ifdef MAXP22_WIDE
        if (tg__maxp22_wide && __builtin_cpu_supports("avx512f")) k22_f32 = maxp22_f32_avx512;
#endif
        tg__parallel_for(c, N * C, grain_for(OH * OW * r.kernel[0] * r.kernel[1]),
                         k22     ? (f64 ? maxp22_f64 : k22_f32)
                         : nopad ? (f64 ? maxp_nopad_f64 : maxp_nopad_f32)
                         : wide  ? (f64 ? maxp_f64_i64 : maxp_f32_i64)
                                 : (f64 ? maxp_f64_u8 : maxp_f32_u8),
                         &p);
    }
    if (indices) {
        codes_args a = codes_geom(&r, H, W, OH, OW, wide, tg__ptr(code));
        if (!(*indices = codes_to_index(c, fn, &a, N, C))) return NULL;
    }
    tg__node *n;
    if (tg__record(c, TG_OP_MAX_POOL2D, y, 1, &x, &n)) {
        if (indices) *indices = NULL;
        return NULL;
    }
    if (n) {
        save_popts(n, &r, H, W);
        tg__save_own(n, 0, code);
    }
    return y;
}

tg_tensor *tg_max_pool2d(tg_ctx *c, tg_tensor *x, const tg_pool2d_opts *o)
{
    return tg_max_pool2d_with_indices(c, x, o, NULL);
}

/* dx = max_unpool2d(dout, idx): each gradient to its window's maximum, idx
 * the plane indices of the saved codes. With no graph to record (grad mode
 * and anomaly mode off) the codes are used as they are: the forward made
 * them (in range, contiguous) and the in-place check guards them since. */
void tg__max_pool2d_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    const char *fn = "tg_max_unpool2d";
    const tg_pool2d_opts r = popts_of(n);
    const int64_t N = dout->shape[0], C = dout->shape[1], H = n->iv[9], W = n->iv[10];
    const bool wide = r.kernel[0] * r.kernel[1] > BYTE_CODES;
    codes_args a = codes_geom(&r, H, W, dout->shape[2], dout->shape[3], wide,
                              tg__ptr(n->saved[0]));
    if (c->grad_enabled || c->anomaly) {
        dx[0] = tg_max_unpool2d(c, dout, codes_to_index(c, fn, &a, N, C), H, W);
        return;
    }
    tg_tensor *y = tg__empty(c, fn, dout->dtype, 4, (const int64_t[]){N, C, H, W});
    tg_tensor *dc = y ? tg__dense(c, fn, dout) : NULL;
    if (!dc) return;
    if (N * C > 0) {
        const bool f64 = dout->dtype == TG_F64;
        a.src = tg__ptr(dc);
        a.dst = tg__ptr(y);
        tg__range_fn k22_f32 = unpool22_f32;
#ifdef MAXP22_WIDE
        if (tg__maxp22_wide && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
            k22_f32 = unpool22_f32_avx512;
#endif
        tg__parallel_for(c, N * C, grain_for(a.OH * a.OW + H * W),
                         !wide && is_k22(&r) ? (f64 ? unpool22_f64 : k22_f32)
                                             : (f64 ? unpool_codes_f64 : unpool_codes_f32),
                         &a);
    }
    dx[0] = y;
}

/* ====================================================================== */
/* max_unpool2d and gather2d: the adjoint pair                            */
/* ====================================================================== */

typedef struct {
    int64_t per_in, per_out; /* elements per plane of the source and destination */
    const char *src;
    const int64_t *idx; /* contiguous, per_in (unpool) or per_out (gather) per plane */
    char *dst;
} plane_args;

#define PLANE_KERNELS(T, SFX)                                                          \
    static void unpool_##SFX(void *arg, int64_t p0, int64_t p1)                        \
    {                                                                                  \
        const plane_args *p = arg;                                                     \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *s = (const T *)p->src + pl * p->per_in;                           \
            const int64_t *ix = p->idx + pl * p->per_in;                               \
            T *d = (T *)p->dst + pl * p->per_out;                                      \
            for (int64_t i = 0; i < p->per_out; i++) d[i] = 0;                         \
            for (int64_t i = 0; i < p->per_in; i++)                                    \
                if (ix[i] >= 0) d[ix[i]] += s[i];                                      \
        }                                                                              \
    }                                                                                  \
    static void gather_##SFX(void *arg, int64_t p0, int64_t p1)                        \
    {                                                                                  \
        const plane_args *p = arg;                                                     \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *s = (const T *)p->src + pl * p->per_in;                           \
            const int64_t *ix = p->idx + pl * p->per_out;                              \
            T *d = (T *)p->dst + pl * p->per_out;                                      \
            for (int64_t i = 0; i < p->per_out; i++) d[i] = ix[i] >= 0 ? s[ix[i]] : (T)0; \
        }                                                                              \
    }

PLANE_KERNELS(float, f32)
PLANE_KERNELS(double, f64)

/* Checks idx (TG_I64, values in [-1, hi)); returns its contiguous form. */
static tg_tensor *check_index(tg_ctx *c, const char *fn, tg_tensor *idx, int64_t hi)
{
    if (idx->dtype != TG_I64) {
        tg__fail(c, TG_ERR_DTYPE, "%s: indices must be i64, not %s", fn,
                 tg_dtype_name(idx->dtype));
        return NULL;
    }
    tg_tensor *ic = tg__dense(c, fn, idx);
    if (!ic) return NULL;
    const int64_t *v = (const int64_t *)tg__ptr(ic);
    int64_t m = tg__numel(ic->ndim, ic->shape);
    for (int64_t i = 0; i < m; i++)
        if (v[i] < -1 || v[i] >= hi) {
            tg__fail(c, TG_ERR_INVALID, "%s: index %lld at position %lld outside [-1, %lld)",
                     fn, (long long)v[i], (long long)i, (long long)hi);
            return NULL;
        }
    return ic;
}

/* x is (N, C, OH, OW) any strides, ic its contiguous checked indices; y is
 * (N, C, h, w_) */
static tg_tensor *unpool_run(tg_ctx *c, const char *fn, tg_tensor *x, tg_tensor *ic, int64_t h,
                             int64_t w_)
{
    tg_tensor *xc = tg__dense(c, fn, x);
    if (!xc) return NULL;
    int64_t N = x->shape[0], C = x->shape[1];
    tg_tensor *y = tg__empty(c, fn, x->dtype, 4, (const int64_t[]){N, C, h, w_});
    if (!y) return NULL;
    if (N * C > 0) {
        plane_args p = {x->shape[2] * x->shape[3], h * w_, tg__ptr(xc),
                        (const int64_t *)tg__ptr(ic), tg__ptr(y)};
        tg__parallel_for(c, N * C, grain_for(p.per_in + p.per_out),
                         x->dtype == TG_F64 ? unpool_f64 : unpool_f32, &p);
    }
    return y;
}

/* x, idx are (N, C, OH, OW); y is (N, C, h, w_) */
tg_tensor *tg_max_unpool2d(tg_ctx *c, tg_tensor *x, tg_tensor *idx, int64_t h, int64_t w_)
{
    const char *fn = "tg_max_unpool2d";
    tg_tensor *in[2] = {x, idx};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_float(c, fn, x) ||
        !check_4d(c, fn, "x", x))
        return NULL;
    char sx[128], si[128];
    if (idx->ndim != 4 || memcmp(idx->shape, x->shape, 4 * sizeof(int64_t)) != 0) {
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s and indices %s differ in shape", fn,
                 tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape),
                 tg__fmt_shape(si, sizeof si, idx->ndim, idx->shape));
        return NULL;
    }
    if (h < 0 || w_ < 0 || h >= PARAM_MAX || w_ >= PARAM_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: output size %lldx%lld out of range", fn, (long long)h,
                 (long long)w_);
        return NULL;
    }
    tg_tensor *ic = check_index(c, fn, idx, h * w_);
    tg_tensor *y = ic ? unpool_run(c, fn, x, ic, h, w_) : NULL;
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_MAX_UNPOOL2D, y, 2, in, &n)) return NULL;
    return y;
}

/* dx = gather2d(u, idx) */
void tg__max_unpool2d_backward(tg_ctx *c, const tg__node *n, tg_tensor *u, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_gather2d(c, u, n->in[1]);
}

/* x is (N, C, H, W), idx is (N, C, OH, OW); y is (N, C, OH, OW) */
tg_tensor *tg_gather2d(tg_ctx *c, tg_tensor *x, tg_tensor *idx)
{
    const char *fn = "tg_gather2d";
    tg_tensor *in[2] = {x, idx};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_float(c, fn, x) ||
        !check_4d(c, fn, "x", x))
        return NULL;
    char sx[128], si[128];
    if (idx->ndim != 4 || idx->shape[0] != x->shape[0] || idx->shape[1] != x->shape[1]) {
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s and indices %s: need indices [N, C, ...] of x's "
                 "N and C", fn, tg__fmt_shape(sx, sizeof sx, x->ndim, x->shape),
                 tg__fmt_shape(si, sizeof si, idx->ndim, idx->shape));
        return NULL;
    }
    tg_tensor *ic = check_index(c, fn, idx, x->shape[2] * x->shape[3]);
    tg_tensor *xc = ic ? tg__dense(c, fn, x) : NULL;
    if (!xc) return NULL;
    int64_t N = x->shape[0], C = x->shape[1];
    tg_tensor *y = tg__empty(c, fn, x->dtype, 4, idx->shape);
    if (!y) return NULL;
    if (N * C > 0) {
        plane_args p = {x->shape[2] * x->shape[3], idx->shape[2] * idx->shape[3], tg__ptr(xc),
                        (const int64_t *)tg__ptr(ic), tg__ptr(y)};
        tg__parallel_for(c, N * C, grain_for(p.per_out),
                         x->dtype == TG_F64 ? gather_f64 : gather_f32, &p);
    }
    tg__node *n;
    if (tg__record(c, TG_OP_GATHER2D, y, 2, in, &n)) return NULL;
    return y;
}

/* dx = max_unpool2d(u, idx) */
void tg__gather2d_backward(tg_ctx *c, const tg__node *n, tg_tensor *u, tg_tensor **dx)
{
    const tg_tensor *x = n->in[0];
    if (NEED(0)) dx[0] = tg_max_unpool2d(c, u, n->in[1], x->shape[2], x->shape[3]);
}

/* ====================================================================== */
/* Average pooling: windows from per-axis tables                          */
/* ====================================================================== */

/* Window o of an axis covers [lo[o], hi[o]) of the input (clipped) and
 * divides by dv[o]; the divisor of a 2-d window is the product. */
typedef struct {
    int64_t *lo, *hi, *dv;
} axis_tab;

typedef struct {
    int64_t C, H, W, OH, OW;
    axis_tab th, tw;
    const char *src; /* forward: x; backward: dout */
    int64_t ss[4];
    char *dst;       /* contiguous */
} avg_args;

#define AVG_KERNELS(T, SFX)                                                            \
    static void avgf_##SFX(void *arg, int64_t p0, int64_t p1)                          \
    {                                                                                  \
        const avg_args *p = arg;                                                       \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *xp = (const T *)p->src + (pl / p->C) * p->ss[0] + (pl % p->C) * p->ss[1]; \
            T *y = (T *)p->dst + pl * p->OH * p->OW;                                   \
            for (int64_t oh = 0; oh < p->OH; oh++)                                     \
                for (int64_t ow = 0; ow < p->OW; ow++) {                               \
                    double s = 0;                                                      \
                    for (int64_t ih = p->th.lo[oh]; ih < p->th.hi[oh]; ih++)           \
                        for (int64_t iw = p->tw.lo[ow]; iw < p->tw.hi[ow]; iw++)       \
                            s += (double)xp[ih * p->ss[2] + iw * p->ss[3]];            \
                    y[oh * p->OW + ow] = (T)(s / (double)(p->th.dv[oh] * p->tw.dv[ow])); \
                }                                                                      \
        }                                                                              \
    }                                                                                  \
    static void avgb_##SFX(void *arg, int64_t p0, int64_t p1)                          \
    {                                                                                  \
        const avg_args *p = arg;                                                       \
        for (int64_t pl = p0; pl < p1; pl++) {                                         \
            const T *dp = (const T *)p->src + (pl / p->C) * p->ss[0] + (pl % p->C) * p->ss[1]; \
            T *dx = (T *)p->dst + pl * p->H * p->W;                                    \
            for (int64_t i = 0; i < p->H * p->W; i++) dx[i] = 0;                       \
            for (int64_t oh = 0; oh < p->OH; oh++)                                     \
                for (int64_t ow = 0; ow < p->OW; ow++) {                               \
                    T v = (T)((double)dp[oh * p->ss[2] + ow * p->ss[3]] /              \
                              (double)(p->th.dv[oh] * p->tw.dv[ow]));                  \
                    for (int64_t ih = p->th.lo[oh]; ih < p->th.hi[oh]; ih++)           \
                        for (int64_t iw = p->tw.lo[ow]; iw < p->tw.hi[ow]; iw++)       \
                            dx[ih * p->W + iw] += v;                                   \
                }                                                                      \
        }                                                                              \
    }

AVG_KERNELS(float, f32)
AVG_KERNELS(double, f64)

static bool tab_alloc(tg_ctx *c, axis_tab *t, int64_t n)
{
    t->lo = tg__arena_alloc(c, (size_t)(3 * n) * sizeof(int64_t));
    if (!t->lo) return false;
    t->hi = t->lo + n;
    t->dv = t->hi + n;
    return true;
}

/* avg_pool2d windows along one axis (PyTorch's rule without ceil_mode) */
static bool tab_pool(tg_ctx *c, axis_tab *t, int64_t in, int64_t out, int64_t k, int64_t s,
                     int64_t pad, bool include_pad)
{
    if (!tab_alloc(c, t, out)) return false;
    for (int64_t o = 0; o < out; o++) {
        int64_t st = o * s - pad, en = st + k;
        if (en > in + pad) en = in + pad;
        int64_t pl = en - st;
        t->lo[o] = st < 0 ? 0 : st;
        t->hi[o] = en > in ? in : en;
        t->dv[o] = include_pad ? pl : t->hi[o] - t->lo[o];
    }
    return true;
}

/* adaptive windows: [floor(o*in/out), ceil((o+1)*in/out)) */
static bool tab_adaptive(tg_ctx *c, axis_tab *t, int64_t in, int64_t out)
{
    if (!tab_alloc(c, t, out)) return false;
    for (int64_t o = 0; o < out; o++) {
        t->lo[o] = o * in / out;
        t->hi[o] = ((o + 1) * in + out - 1) / out;
        t->dv[o] = t->hi[o] - t->lo[o];
    }
    return true;
}

/* forward (pool) or backward (spread) with tables; src any strides */
static tg_tensor *avg_run(tg_ctx *c, const char *fn, tg_tensor *src, bool forward, int64_t H,
                          int64_t W, int64_t OH, int64_t OW, const axis_tab *th,
                          const axis_tab *tw)
{
    int64_t N = src->shape[0], C = src->shape[1];
    tg_tensor *y = tg__empty(c, fn, src->dtype, 4,
                             forward ? (const int64_t[]){N, C, OH, OW}
                                     : (const int64_t[]){N, C, H, W});
    if (!y || N * C == 0) return y;
    avg_args p = {C, H, W, OH, OW, *th, *tw, tg__ptr(src),
                  {src->stride[0], src->stride[1], src->stride[2], src->stride[3]}, tg__ptr(y)};
    bool f64 = src->dtype == TG_F64;
    int64_t work = H * W + OH * OW;
    tg__parallel_for(c, N * C, grain_for(work),
                     forward ? (f64 ? avgf_f64 : avgf_f32) : (f64 ? avgb_f64 : avgb_f32), &p);
    return y;
}

/* ====================================================================== */
/* avg_pool2d                                                             */
/* ====================================================================== */

/* x is (N, C, H, W); y is (N, C, OH, OW) */
tg_tensor *tg_avg_pool2d(tg_ctx *c, tg_tensor *x, const tg_pool2d_opts *o)
{
    const char *fn = "tg_avg_pool2d";
    tg_pool2d_opts r;
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x) ||
        !check_4d(c, fn, "x", x) || !tg__pool2d_resolve_opts(c, fn, o, false, &r))
        return NULL;
    int64_t H = x->shape[2], W = x->shape[3], OH, OW;
    if (!pool_out(c, fn, &r, H, W, &OH, &OW)) return NULL;
    axis_tab th, tw;
    if (!tab_pool(c, &th, H, OH, r.kernel[0], r.stride[0], r.padding[0], r.count_include_pad) ||
        !tab_pool(c, &tw, W, OW, r.kernel[1], r.stride[1], r.padding[1], r.count_include_pad))
        return NULL;
    tg_tensor *y = avg_run(c, fn, x, true, H, W, OH, OW, &th, &tw);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_AVG_POOL2D, y, 1, &x, &n)) return NULL;
    if (n) save_popts(n, &r, H, W);
    return y;
}

/* dx = avg_pool2d_input_grad(dout) */
void tg__avg_pool2d_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_pool2d_opts r = popts_of(n);
    if (NEED(0)) dx[0] = tg_avg_pool2d_input_grad(c, dout, n->iv[9], n->iv[10], &r);
}

/* dout is (N, C, OH, OW); dx is (N, C, h, w_) */
tg_tensor *tg_avg_pool2d_input_grad(tg_ctx *c, tg_tensor *dout, int64_t h, int64_t w_,
                                    const tg_pool2d_opts *o)
{
    const char *fn = "tg_avg_pool2d_input_grad";
    tg_pool2d_opts r;
    if (!tg__check_inputs(c, fn, 1, &dout) || !tg__check_float(c, fn, dout) ||
        !check_4d(c, fn, "dout", dout) || !tg__pool2d_resolve_opts(c, fn, o, false, &r))
        return NULL;
    if (h < 1 || w_ < 1 || h >= PARAM_MAX || w_ >= PARAM_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: input size %lldx%lld out of range", fn, (long long)h,
                 (long long)w_);
        return NULL;
    }
    int64_t OH, OW;
    if (!pool_out(c, fn, &r, h, w_, &OH, &OW)) return NULL;
    if (OH != dout->shape[2] || OW != dout->shape[3]) {
        char s[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: dout %s: input %lldx%lld gives output %lldx%lld", fn,
                 tg__fmt_shape(s, sizeof s, dout->ndim, dout->shape), (long long)h,
                 (long long)w_, (long long)OH, (long long)OW);
        return NULL;
    }
    axis_tab th, tw;
    if (!tab_pool(c, &th, h, OH, r.kernel[0], r.stride[0], r.padding[0], r.count_include_pad) ||
        !tab_pool(c, &tw, w_, OW, r.kernel[1], r.stride[1], r.padding[1], r.count_include_pad))
        return NULL;
    tg_tensor *y = avg_run(c, fn, dout, false, h, w_, OH, OW, &th, &tw);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_AVG_POOL2D_INPUT_GRAD, y, 1, &dout, &n)) return NULL;
    if (n) save_popts(n, &r, h, w_);
    return y;
}

/* d dout = avg_pool2d(u) */
void tg__avg_pool2d_input_grad_backward(tg_ctx *c, const tg__node *n, tg_tensor *u,
                                        tg_tensor **dx)
{
    tg_pool2d_opts r = popts_of(n);
    if (NEED(0)) dx[0] = tg_avg_pool2d(c, u, &r);
}

/* ====================================================================== */
/* adaptive_avg_pool2d                                                    */
/* ====================================================================== */

/* x is (N, C, H, W); y is (N, C, oh, ow) */
tg_tensor *tg_adaptive_avg_pool2d(tg_ctx *c, tg_tensor *x, int64_t oh, int64_t ow)
{
    const char *fn = "tg_adaptive_avg_pool2d";
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x) ||
        !check_4d(c, fn, "x", x))
        return NULL;
    int64_t H = x->shape[2], W = x->shape[3];
    if (oh < 1 || ow < 1 || oh >= PARAM_MAX || ow >= PARAM_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: output size %lldx%lld out of range [1, 2^31)", fn,
                 (long long)oh, (long long)ow);
        return NULL;
    }
    if (H < 1 || W < 1) {
        char s[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s: empty input planes", fn,
                 tg__fmt_shape(s, sizeof s, x->ndim, x->shape));
        return NULL;
    }
    axis_tab th, tw;
    if (!tab_adaptive(c, &th, H, oh) || !tab_adaptive(c, &tw, W, ow)) return NULL;
    tg_tensor *y = avg_run(c, fn, x, true, H, W, oh, ow, &th, &tw);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_ADAPTIVE_AVG_POOL2D, y, 1, &x, &n)) return NULL;
    if (n) {
        n->iv[0] = H;
        n->iv[1] = W;
        n->n_iv = 2;
    }
    return y;
}

/* dx = adaptive_avg_pool2d_input_grad(dout) */
void tg__adaptive_avg_pool2d_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                      tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_adaptive_avg_pool2d_input_grad(c, dout, n->iv[0], n->iv[1]);
}

/* dout is (N, C, OH, OW); dx is (N, C, h, w_) */
tg_tensor *tg_adaptive_avg_pool2d_input_grad(tg_ctx *c, tg_tensor *dout, int64_t h,
                                             int64_t w_)
{
    const char *fn = "tg_adaptive_avg_pool2d_input_grad";
    if (!tg__check_inputs(c, fn, 1, &dout) || !tg__check_float(c, fn, dout) ||
        !check_4d(c, fn, "dout", dout))
        return NULL;
    int64_t OH = dout->shape[2], OW = dout->shape[3];
    if (h < 1 || w_ < 1 || h >= PARAM_MAX || w_ >= PARAM_MAX || OH < 1 || OW < 1) {
        tg__fail(c, TG_ERR_INVALID, "%s: sizes %lldx%lld -> %lldx%lld out of range", fn,
                 (long long)OH, (long long)OW, (long long)h, (long long)w_);
        return NULL;
    }
    axis_tab th, tw;
    if (!tab_adaptive(c, &th, h, OH) || !tab_adaptive(c, &tw, w_, OW)) return NULL;
    tg_tensor *y = avg_run(c, fn, dout, false, h, w_, OH, OW, &th, &tw);
    if (!y) return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_ADAPTIVE_AVG_POOL2D_INPUT_GRAD, y, 1, &dout, &n)) return NULL;
    return y;
}

/* d dout = adaptive_avg_pool2d(u) */
void tg__adaptive_avg_pool2d_input_grad_backward(tg_ctx *c, const tg__node *n, tg_tensor *u,
                                                 tg_tensor **dx)
{
    const tg_tensor *d = n->in[0];
    if (NEED(0)) dx[0] = tg_adaptive_avg_pool2d(c, u, d->shape[2], d->shape[3]);
}
