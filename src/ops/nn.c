/*
 * nn.c - dropout, embedding (and its adjoint, embedding_backward) and
 * scaled dot-product attention, each forward beside its backward.
 *
 * Dropout draws its mask from the context's RNG serially (one uniform per
 * element, row-major), so a seed fixes the mask whatever the thread count;
 * the scaled mask is saved and the backward is a multiplication by it.
 * Embedding gathers rows; its backward is the op embedding_backward, a
 * scatter-add that is deterministic with repeated indices (positions are
 * bucketed per row by a stable counting sort, and each output row, owned by
 * one thread, adds its positions in row-major order, in double), whose own
 * backward is an embedding again: second order needs nothing else.
 * Attention (tg_sdpa) is one fused op, its backward six GEMMs per batch;
 * when the gradient is itself recorded it is built from ops instead. The
 * recurrent ops are in recurrent.c.
 *
 * Node arguments: DROPOUT: f[0] = p, saved[0] = the scaled mask.
 * EMBEDDING_BACKWARD: iv[0] = number of rows. SDPA: f[0] = scale, iv[0] =
 * causal, nothing saved (the backward recomputes P).
 */
#include "../core/arena_mark.h"
#include "fastmath.h"
#include "ops_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#define NEED(i) (n->in[i] && n->in[i]->requires_grad)

/* ====================================================================== */
/* dropout                                                                */
/* ====================================================================== */

/* o = m != 0 ? x * m : 0 over a run (a dropped element is exactly 0). */
#define DROP_KERNEL(NAME, T)                                                        \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux)              \
    {                                                                               \
        (void)aux;                                                                  \
        T *o = (T *)p[0];                                                           \
        for (int64_t i = 0; i < n; i++) {                                           \
            T x = *(const T *)(p[1] + i * s[1]), m = *(const T *)(p[2] + i * s[2]); \
            o[i] = m != 0 ? x * m : (T)0;                                           \
        }                                                                           \
    }
DROP_KERNEL(drop_f32, float)
DROP_KERNEL(drop_f64, double)

/* x is any shape; y and the mask are x's shape */
/* y = x * mask, mask_i = [u_i >= p] / (1 - p) */
tg_tensor *tg_dropout(tg_ctx *c, tg_tensor *x, double p, bool training)
{
    const char *fn = "tg_dropout";
    if (!tg__check_inputs(c, fn, 1, &x) || !tg__check_float(c, fn, x)) return NULL;
    if (!(p >= 0 && p <= 1)) {
        tg__fail(c, TG_ERR_INVALID, "%s: p %g outside [0, 1]", fn, p);
        return NULL;
    }
    if (!training) return x;
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    tg_tensor *mask = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!y || !mask) return NULL;
    double keep = p < 1 ? 1.0 / (1.0 - p) : 0.0;
    int64_t total = tg__numel(x->ndim, x->shape);
    if (x->dtype == TG_F32) {
        float *m = (float *)tg__ptr(mask);
        for (int64_t i = 0; i < total; i++)
            m[i] = tg__rng_uniform(c->rng) >= p ? (float)keep : 0.0f;
    } else {
        double *m = (double *)tg__ptr(mask);
        for (int64_t i = 0; i < total; i++) m[i] = tg__rng_uniform(c->rng) >= p ? keep : 0.0;
    }
    tg_tensor *ops[3] = {y, x, mask};
    tg__ew_apply(c, 3, ops, x->dtype == TG_F32 ? drop_f32 : drop_f64, NULL);
    tg__node *n;
    if (tg__record(c, TG_OP_DROPOUT, y, 1, &x, &n)) return NULL;
    if (n) {
        n->f[0] = p;
        tg__save_own(n, 0, mask);
    }
    return y;
}

/* dout, dx are x's shape */
/* dx = dout * mask (the mask is a constant) */
void tg__dropout_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_mul(c, dout, n->saved[0]);
}

/* ====================================================================== */
/* embedding, embedding_backward                                          */
/* ====================================================================== */

/* Checks indices (TG_I64, dense copy returned through out) against
 * [0, rows); names the first bad one by its multi-index and value. */
static bool check_indices(tg_ctx *c, const char *fn, tg_tensor *indices, int64_t rows,
                          tg_tensor **out)
{
    if (indices->dtype != TG_I64) {
        tg__fail(c, TG_ERR_DTYPE, "%s: indices are %s, expected i64", fn,
                 tg_dtype_name(indices->dtype));
        return false;
    }
    if (indices->ndim + 1 > TG_MAX_DIMS) {
        tg__fail(c, TG_ERR_SHAPE, "%s: indices have %d dims; the result would have more than %d",
                 fn, indices->ndim, TG_MAX_DIMS);
        return false;
    }
    tg_tensor *d = tg__dense(c, fn, indices);
    if (!d) return false;
    const int64_t *v = (const int64_t *)tg__ptr(d);
    int64_t total = tg__numel(d->ndim, d->shape);
    for (int64_t i = 0; i < total; i++) {
        if (v[i] >= 0 && v[i] < rows) continue;
        int64_t idx[TG_MAX_DIMS], rem = i;
        for (int k = d->ndim - 1; k >= 0; k--) {
            idx[k] = rem % d->shape[k];
            rem /= d->shape[k];
        }
        char at[128], sh[128];
        tg__fail(c, TG_ERR_INVALID,
                 "%s: indices %s: index %lld at position %s is outside [0, %lld)", fn,
                 tg__fmt_shape(sh, sizeof sh, d->ndim, d->shape), (long long)v[i],
                 tg__fmt_shape(at, sizeof at, d->ndim, idx), (long long)rows);
        return false;
    }
    *out = d;
    return true;
}

typedef struct {
    const char *w;      /* weight base (tg__ptr), strided */
    int64_t ws0, ws1;   /* weight strides, elements */
    const int64_t *idx; /* dense indices */
    char *y;            /* (P, D) contiguous */
    int64_t D;
    bool f32;
} gather_plan;

static void gather_task(void *arg, int64_t p0, int64_t p1)
{
    const gather_plan *g = arg;
    for (int64_t p = p0; p < p1; p++) {
        int64_t r = g->idx[p] * g->ws0;
        if (g->f32) {
            const float *w = (const float *)g->w + r;
            float *y = (float *)g->y + p * g->D;
            for (int64_t j = 0; j < g->D; j++) y[j] = w[j * g->ws1];
        } else {
            const double *w = (const double *)g->w + r;
            double *y = (double *)g->y + p * g->D;
            for (int64_t j = 0; j < g->D; j++) y[j] = w[j * g->ws1];
        }
    }
}

/* weight is (V, D), indices is any shape; y is (*indices, D) */
/* y[p, :] = weight[indices[p], :] */
tg_tensor *tg_embedding(tg_ctx *c, tg_tensor *weight, tg_tensor *indices)
{
    const char *fn = "tg_embedding";
    tg_tensor *in[2] = {weight, indices};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_float(c, fn, weight)) return NULL;
    if (weight->ndim != 2) {
        char a[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: weight %s must be 2-d (rows, dim)", fn,
                 tg__fmt_shape(a, sizeof a, weight->ndim, weight->shape));
        return NULL;
    }
    tg_tensor *idx;
    if (!check_indices(c, fn, indices, weight->shape[0], &idx)) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, indices->shape, (size_t)indices->ndim * sizeof(int64_t));
    shape[indices->ndim] = weight->shape[1];
    tg_tensor *y = tg__empty(c, fn, weight->dtype, indices->ndim + 1, shape);
    if (!y) return NULL;
    gather_plan g = {.w = tg__ptr(weight),
                     .ws0 = weight->stride[0],
                     .ws1 = weight->stride[1],
                     .idx = (const int64_t *)tg__ptr(idx),
                     .y = tg__ptr(y),
                     .D = weight->shape[1],
                     .f32 = weight->dtype == TG_F32};
    int64_t P = tg__numel(indices->ndim, indices->shape);
    if (P > 0 && g.D > 0) {
        int64_t grain = TG__PAR_GRAIN / g.D;
        tg__parallel_for(c, P, grain > 0 ? grain : 1, gather_task, &g);
    }
    tg__node *n;
    if (tg__record(c, TG_OP_EMBEDDING, y, 2, in, &n)) return NULL;
    return y;
}

/* dout is (*indices, D); dweight is (V, D) */
/* dweight = embedding_backward(dout, indices, V) */
void tg__embedding_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_embedding_backward(c, dout, n->in[1], n->in[0]->shape[0]);
}

#define SCAT_COLS 64 /* columns summed together (a stack accumulator) */

typedef struct {
    const char *g;        /* dense dout, (P, D) */
    const int64_t *start; /* V + 1 bucket bounds into order */
    const int64_t *order; /* positions, grouped by row, ascending in a row */
    char *y;              /* (V, D) contiguous */
    int64_t D;
    bool f32;
} scatter_plan;

/* Row v of y: sum of dout rows order[start[v] .. start[v+1]) in that order. */
static void scatter_task(void *arg, int64_t v0, int64_t v1)
{
    const scatter_plan *s = arg;
    double acc[SCAT_COLS];
    for (int64_t v = v0; v < v1; v++) {
        for (int64_t j0 = 0; j0 < s->D; j0 += SCAT_COLS) {
            int64_t w = s->D - j0 < SCAT_COLS ? s->D - j0 : SCAT_COLS;
            for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
            for (int64_t k = s->start[v]; k < s->start[v + 1]; k++) {
                int64_t off = s->order[k] * s->D + j0;
                if (s->f32) {
                    const float *g = (const float *)s->g + off;
                    for (int64_t j = 0; j < w; j++) acc[j] += (double)g[j];
                } else {
                    const double *g = (const double *)s->g + off;
                    for (int64_t j = 0; j < w; j++) acc[j] += g[j];
                }
            }
            int64_t off = v * s->D + j0;
            if (s->f32)
                for (int64_t j = 0; j < w; j++) ((float *)s->y)[off + j] = (float)acc[j];
            else
                for (int64_t j = 0; j < w; j++) ((double *)s->y)[off + j] = acc[j];
        }
    }
}

/* dout is (*indices, D), indices any shape; y is (num_rows, D) */
/* y = 0; y[indices[p], :] += dout[p, :] for p in row-major order */
tg_tensor *tg_embedding_backward(tg_ctx *c, tg_tensor *dout, tg_tensor *indices, int64_t num_rows)
{
    const char *fn = "tg_embedding_backward";
    tg_tensor *in[2] = {dout, indices};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_float(c, fn, dout)) return NULL;
    if (num_rows < 0) {
        tg__fail(c, TG_ERR_INVALID, "%s: num_rows %lld is negative", fn, (long long)num_rows);
        return NULL;
    }
    bool ok = dout->ndim == indices->ndim + 1;
    for (int d = 0; ok && d < indices->ndim; d++) ok = dout->shape[d] == indices->shape[d];
    if (!ok) {
        char a[128], b[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: dout %s must be indices' shape %s plus one dim", fn,
                 tg__fmt_shape(a, sizeof a, dout->ndim, dout->shape),
                 tg__fmt_shape(b, sizeof b, indices->ndim, indices->shape));
        return NULL;
    }
    tg_tensor *idx;
    if (!check_indices(c, fn, indices, num_rows, &idx)) return NULL;
    int64_t D = dout->shape[dout->ndim - 1], P = tg__numel(indices->ndim, indices->shape);
    int64_t shape[2] = {num_rows, D};
    tg_tensor *g = tg__dense(c, fn, dout);
    tg_tensor *y = tg__empty(c, fn, dout->dtype, 2, shape);
    int64_t *start = tg__arena_calloc(c, (size_t)num_rows + 2, sizeof(int64_t));
    int64_t *order = tg__arena_alloc(c, (size_t)(P > 0 ? P : 1) * sizeof(int64_t));
    if (!tg__ok(c)) return NULL;
    /* stable counting sort of the positions by row */
    const int64_t *iv = (const int64_t *)tg__ptr(idx);
    for (int64_t p = 0; p < P; p++) start[iv[p] + 2]++;
    for (int64_t v = 0; v < num_rows; v++) start[v + 2] += start[v + 1];
    for (int64_t p = 0; p < P; p++) order[start[iv[p] + 1]++] = p;
    /* now start[v] .. start[v + 1] is row v's bucket */
    if (num_rows > 0 && D > 0) {
        scatter_plan s = {.g = tg__ptr(g),
                          .start = start,
                          .order = order,
                          .y = tg__ptr(y),
                          .D = D,
                          .f32 = dout->dtype == TG_F32};
        int64_t per = D * (P / num_rows + 1), grain = TG__PAR_GRAIN / per;
        tg__parallel_for(c, num_rows, grain > 0 ? grain : 1, scatter_task, &s);
    }
    tg__node *n;
    if (tg__record(c, TG_OP_EMBEDDING_BACKWARD, y, 2, in, &n)) return NULL;
    if (n) {
        n->iv[0] = num_rows;
        n->n_iv = 1;
    }
    return y;
}

/* dout is (num_rows, D); d(dout) is (*indices, D) */
/* d(dout) = embedding(dout_of_this_op, indices) */
void tg__embedding_backward_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_embedding(c, dout, n->in[1]);
}

/* ====================================================================== */
/* scaled dot-product attention (a composite)                             */
/* ====================================================================== */

/*
 * The fused op: for each batch b of the broadcast batch shape, with the
 * matrices read in place by BLAS (a copy only for strides it cannot take),
 *   S = scale Q K^T (GEMM), + mask, causal entries skipped, P = softmax(S)
 *   row by row (in scratch), Y = P V (GEMM).
 * Backward, per batch: P (kept by the forward, or made again with the
 * same GEMM and rows: see sdpa_keeps), dV = P^T dY,
 * dP = dY V^T, dS = P (dP - rowsum(dP P)), dQ = scale dS K, dK = scale
 * dS^T Q, dmask = dS (six GEMMs); causal ones by blocks of rows and keys
 * (sdpa_block_rows). Gradients come out in the broadcast batch shape; the
 * engine sums them back. y and dq, dk, dv keep q's, k's and v's order of
 * dims (sdpa_empty_like), and dout is read in place, so head splits and
 * merges around attention stay views.
 */
typedef struct {
    int nb;                       /* batch dims */
    int64_t bs[TG_MAX_DIMS];      /* broadcast batch shape */
    int64_t nbatch, Lq, Lk, D, Dv;
} sdpa_geom;

/* A tensor's batch strides aligned to g's batch dims (0 where broadcast),
 * and its last two dims as a BLAS operand (*tr, *ld), or false when BLAS
 * cannot read it in place. */
typedef struct {
    const tg_tensor *t;
    int64_t bst[TG_MAX_DIMS];
    bool tr;
    int64_t ld;
} sdpa_mat;

static bool sdpa_mat_of(const tg_tensor *t, const sdpa_geom *g, sdpa_mat *m)
{
    int tb = t->ndim - 2;
    m->t = t;
    for (int d = 0; d < g->nb; d++) {
        int td = d - (g->nb - tb);
        m->bst[d] = td >= 0 && t->shape[td] != 1 ? t->stride[td] : 0;
    }
    return tg__mat_layout(t->shape[t->ndim - 2], t->shape[t->ndim - 1], t->stride[t->ndim - 2],
                          t->stride[t->ndim - 1], &m->tr, &m->ld);
}

/* Element offset of batch b (flat index into g->bs) for strides bst. */
static int64_t sdpa_boff(const sdpa_geom *g, const int64_t *bst, int64_t b)
{
    int64_t off = 0;
    for (int d = g->nb - 1; d >= 0; d--) {
        off += (b % g->bs[d]) * bst[d];
        b /= g->bs[d];
    }
    return off;
}

static const char *sdpa_at(const sdpa_mat *m, const sdpa_geom *g, int64_t b)
{
    return (const char *)tg__ptr((tg_tensor *)m->t) +
           sdpa_boff(g, m->bst, b) * (int64_t)tg__esize(m->t->dtype);
}

/*
 * A new tensor of shape (nd dims) whose memory follows ref's order of dims
 * (ref's dims but the last sorted by stride, largest first; the last dim
 * stays innermost, so a GEMM writes its rows), like PyTorch's
 * preserve_format. Multi-head attention's q is a permuted view of one
 * [B, L, heads, D] projection, so y is a view of one [B, L, heads, Dv]
 * block: merging the heads back is a view, not a copy, and so is each
 * gradient's split in the backward. Contiguous when ref is, or when ref
 * has another rank.
 */
static tg_tensor *sdpa_empty_like(tg_ctx *c, const tg_tensor *ref, tg_dtype dt, int nd,
                                  const int64_t *shape)
{
    int ord[TG_MAX_DIMS];
    bool perm = false;
    for (int i = 0; i < nd; i++) ord[i] = i;
    if (ref->ndim == nd)
        for (int i = 1; i < nd - 1; i++) { /* stable insertion sort */
            int d = ord[i], j = i;
            for (; j > 0 && ref->stride[ord[j - 1]] < ref->stride[d]; j--) ord[j] = ord[j - 1];
            ord[j] = d;
            perm = perm || j != i;
        }
    if (!perm) return tg__empty(c, "tg_sdpa", dt, nd, shape);
    int64_t ps[TG_MAX_DIMS] = {0}, pst[TG_MAX_DIMS], st[TG_MAX_DIMS];
    for (int i = 0; i < nd; i++) ps[i] = shape[ord[i]];
    tg_tensor *base = tg__empty(c, "tg_sdpa", dt, nd, ps);
    if (!base) return NULL;
    tg__contig_strides(nd, ps, pst);
    for (int i = 0; i < nd; i++) st[ord[i]] = pst[i];
    return tg__view(c, base, nd, shape, st, 0);
}

/* The max of x[0..n) (-inf when n is 0), NaN when one is NaN. The
 * floats' bits as integer keys that order like the numbers (negative ones
 * with their magnitude bits flipped) make it an integer max, which GCC
 * vectorises (a float max it does not, without -ffinite-math-only); the
 * max is exact, so the order does not matter. */
#define ROW_MAX(NAME, T, I, IMAX)                      \
    static inline T NAME(const T *x, int64_t n)        \
    {                                                  \
        T lo = -INFINITY, r;                           \
        I mx, b;                                       \
        int nan = 0;                                   \
        memcpy(&mx, &lo, sizeof mx);                   \
        mx ^= IMAX; /* -inf's key */                   \
        for (int64_t j = 0; j < n; j++) {              \
            memcpy(&b, &x[j], sizeof b);               \
            I key = b < 0 ? b ^ IMAX : b;              \
            mx = key > mx ? key : mx;                  \
            nan |= x[j] != x[j];                       \
        }                                              \
        b = mx < 0 ? mx ^ IMAX : mx;                   \
        memcpy(&r, &b, sizeof r);                      \
        return nan ? (T)NAN : r;                       \
    }
ROW_MAX(row_max_f32, float, int32_t, INT32_MAX)
ROW_MAX(row_max_f64, double, int64_t, INT64_MAX)

/* row i of P (Lk entries) from S: + mask row, causal cut, softmax; false
 * when every entry is -inf. The sum (double) runs over TG__NSUM
 * interleaved partials, so it vectorises; the partial sums are added in a
 * fixed order. A causal row of n entries runs over ne, n rounded up to a
 * multiple of 16 (at most Lk), its entries from n on set to -inf, so exp
 * gives 0 there: the loops then have whole vectors (no scalar tail of
 * exps) and trip counts that change every 16 rows, not every row, and the
 * sum is that of the explicit mask (zeros added to partials that hold them
 * anyway), so P has the mask's bits. f32 takes e^(x - max) from
 * tg__exp_le1f, tg__expf's bits for arguments <= 0 in fewer operations:
 * its one difference, 0 for a NaN argument, arises only where the row
 * holds a NaN or +inf (the max is then NaN or +inf), and such a row still
 * comes out all NaN (a sum of 0 or NaN, then 0 * inf or x * NaN). */
#define SDPA_SOFTMAX(T, EXP, MAX)                                                 \
    do {                                                                          \
        T *pr = (T *)prow;                                                        \
        int64_t n = causal ? (i + 1 < Lk ? i + 1 : Lk) : Lk, j = 0;               \
        int64_t ne = (n + 15) / 16 * 16 < Lk ? (n + 15) / 16 * 16 : Lk;           \
        if (mrow)                                                                 \
            for (j = 0; j < n; j++) pr[j] += ((const T *)mrow)[j * ms1];          \
        for (j = n; j < ne; j++) pr[j] = -INFINITY;                               \
        T mt = MAX(pr, ne);                                                       \
        if (mt == -INFINITY) return false;                                        \
        double sk[TG__NSUM] = {0}, sum = 0.0;                                     \
        for (j = 0; j < ne; j++) pr[j] = EXP(pr[j] - mt); /* vectorised */        \
        for (j = 0; j + TG__NSUM <= ne; j += TG__NSUM)                            \
            for (int k = 0; k < TG__NSUM; k++) sk[k] += (double)pr[j + k];        \
        for (; j < ne; j++) sum += (double)pr[j];                                 \
        T inv = (T)(1.0 / (tg__sum_parts(sk) + sum));                             \
        for (j = 0; j < ne; j++) pr[j] *= inv;                                    \
        for (j = ne; j < Lk; j++) pr[j] = 0;                                      \
    } while (0)

TG__VEC_CLONES static bool sdpa_softmax_row(char *prow, const char *mrow, int64_t ms1, int64_t i,
                                            int64_t Lk, bool causal, bool f64)
{
    if (f64) SDPA_SOFTMAX(double, exp, row_max_f64);
    else SDPA_SOFTMAX(float, tg__exp_le1f, row_max_f32);
    return true;
}

bool tg__sdpa_keep_p = true;

/* Whether the forward keeps P of every batch for the backward, which then
 * reads it instead of computing it again (the same calls, so the same
 * bits): when P is at most twice the output (Lk <= 2 Dv), short sequences
 * like the GPT benchmark's 64 keys of 32 per head (1 MB of f32 per layer
 * through the step; its step 35.2-35.7 -> 34.4-34.8 ms at one thread).
 * Longer ones recompute: P grows with Lq Lk, the output with Lq only. */
static bool sdpa_keeps(const sdpa_geom *g)
{
    return tg__sdpa_keep_p && g->Lk <= 2 * g->Dv;
}

/* What P = softmax(S) of a batch needs, the same in the forward and in
 * the backward, which recomputes P when the forward did not keep it (see
 * sdpa_keeps): a GEMM and a softmax pass, a quarter of the forward's
 * time. */
typedef struct {
    tg_ctx *c;
    const sdpa_geom *g;
    const sdpa_mat *q, *k;
    const tg_tensor *mask;
    const int64_t *mst; /* the mask's strides aligned to the scores' dims */
    bool causal, f64;
    double scale;
    int64_t es;
} sdpa_scores;

/*
 * Causal attention by blocks of rows. Row i of a causal P is zero past key
 * i, so with rows in blocks of SB (a multiple of the softmax's 16), the
 * block [r0, r0 + SB) needs keys [0, r0 + SB) only (its "key end"), and a
 * key block [k0, k0 + SB) only the rows from k0 on: each GEMM skips the
 * products with P's or dS's zeros above the diagonal blocks (a quarter of
 * the attention's multiply-adds at two blocks, nearly half at many). The
 * skipped terms are exact zeros at the end (or the start) of each sum, but
 * BLAS picks its kernels by a product's shape, so the results match the
 * whole products (an explicit mask's) to rounding, not bit for bit
 * (tests/test_nn.c); the forward's and the backward's P are the same calls.
 * Without causal, or with fewer than two blocks of 32 rows, one block
 * covers everything: the whole products.
 */
static int64_t sdpa_block_rows(int64_t Lq, bool causal)
{
    if (!causal || Lq < 64) return Lq > 0 ? Lq : 1;
    int64_t sb = (Lq / 16 + 15) / 16 * 16; /* at most about 16 blocks */
    return sb > 32 ? sb : 32;
}

/* Keys that rows [r0, r0 + sb) of a causal P reach (all Lk without causal). */
static int64_t sdpa_key_end(const sdpa_geom *g, int64_t r0, int64_t sb)
{
    return sb < g->Lq && r0 + sb < g->Lk ? r0 + sb : g->Lk;
}

/* Row r of m's matrix at base (es bytes per element). */
static const char *sdpa_row(const sdpa_mat *m, const char *base, int64_t r, int64_t es)
{
    return base + (m->tr ? r : r * m->ld) * es;
}

/* Rows [k0, k0 + sb) of the product a^T m for a (Lq x Lk, rows of Lk at pa:
 * P or dS) and m's matrix of batch b (Lq rows: dY or Q), times alpha, into
 * o's matrix of batch b (Lk rows: dV or dK): by key blocks over the rows
 * from k0 on when causal blocks are on (a block no row reaches is zero),
 * else one product over everything. */
static void sdpa_key_blocks(tg_ctx *c, const sdpa_geom *g, bool f64, int64_t es, int64_t sb,
                            const char *pa, const sdpa_mat *m, int64_t b, double alpha,
                            const sdpa_mat *o, int64_t n)
{
    const int64_t Lq = g->Lq, Lk = g->Lk;
    const char *mb = sdpa_at(m, g, b);
    char *ob = (char *)sdpa_at(o, g, b);
    if (sb >= Lq) {
        tg__gemm(c, f64, true, m->tr, Lk, n, Lq, alpha, pa, Lk, mb, m->ld, 0.0, ob, o->ld);
        return;
    }
    for (int64_t k0 = 0; k0 < Lk; k0 += sb) {
        const int64_t k1 = k0 + sb < Lk ? k0 + sb : Lk;
        if (k0 >= Lq) {
            for (int64_t r = k0; r < k1; r++) memset(ob + r * o->ld * es, 0, (size_t)(n * es));
            continue;
        }
        tg__gemm(c, f64, true, m->tr, k1 - k0, n, Lq - k0, alpha, pa + (k0 * Lk + k0) * es, Lk,
                 sdpa_row(m, mb, k0, es), m->ld, 0.0, ob + k0 * o->ld * es, o->ld);
    }
}

/* Rows [r0, r0 + sb) of P of batch b into pb (Lq x Lk): S = scale Q K^T over
 * the block's keys, then the masked softmax row by row (causal rows hold +0
 * past their last key). The same calls in the same order each time, so the
 * backward's P has the forward's bits. -1, or the first query whose every
 * key is masked. */
static int64_t sdpa_probs_rows(const sdpa_scores *s, int64_t b, char *pb, int64_t r0, int64_t sb)
{
    const sdpa_geom *g = s->g;
    const int64_t r1 = r0 + sb < g->Lq ? r0 + sb : g->Lq, ke = sdpa_key_end(g, r0, sb);
    tg__gemm(s->c, s->f64, s->q->tr, !s->k->tr, r1 - r0, ke, g->D, s->scale,
             sdpa_row(s->q, sdpa_at(s->q, g, b), r0, s->es), s->q->ld, sdpa_at(s->k, g, b),
             s->k->ld, 0.0, pb + r0 * g->Lk * s->es, g->Lk);
    const char *mb = s->mask ? (const char *)tg__ptr((tg_tensor *)s->mask) +
                                   sdpa_boff(g, s->mst, b) * s->es
                             : NULL;
    for (int64_t i = r0; i < r1; i++)
        if (!sdpa_softmax_row(pb + i * g->Lk * s->es, mb ? mb + i * s->mst[g->nb] * s->es : NULL,
                              s->mst[g->nb + 1], i, g->Lk, s->causal, s->f64))
            return i;
    return -1;
}

/* All of P of batch b (rows by blocks of sb); -1 or the first bad query. */
static int64_t sdpa_probs(const sdpa_scores *s, int64_t b, char *pb, int64_t sb)
{
    for (int64_t r0 = 0; r0 < s->g->Lq; r0 += sb) {
        int64_t bad = sdpa_probs_rows(s, b, pb, r0, sb);
        if (bad >= 0) return bad;
    }
    return -1;
}

/* The mask's strides aligned to the scores' nb + 2 dims (0 where it
 * broadcasts); all 0 without a mask. */
static void sdpa_mask_strides(const tg_tensor *mask, const sdpa_geom *g, int64_t *mst)
{
    for (int d = 0; d < g->nb + 2; d++) {
        int td = mask ? d - (g->nb + 2 - mask->ndim) : -1;
        mst[d] = td >= 0 && mask->shape[td] != 1 ? mask->stride[td] : 0;
    }
}

/* nds scratch buffers of n elements of es bytes each; NULL (error on c)
 * without memory */
static char **sdpa_scratch(tg_ctx *c, int64_t nds, int64_t n, int64_t es)
{
    char **sc = tg__arena_alloc(c, (size_t)(nds > 0 ? nds : 1) * sizeof(char *));
    for (int64_t i = 0; sc && i < nds; i++)
        if (!(sc[i] = tg__arena_alloc(c, (size_t)((n > 0 ? n : 1) * es)))) return NULL;
    return sc;
}

/* The forward over batches [b0, b1): P = softmax(scale Q K^T) in the
 * running thread's scratch, or in the kept P's batch b, Y = P V. Batches
 * are independent, so they run side by side on the context's threads; the
 * GEMMs inside then run single. */
typedef struct {
    const sdpa_scores *s;
    const sdpa_mat *v, *y;
    int64_t *bad; /* per batch: the first fully masked query, or -1 */
    char **sc;    /* Lq x Lk scratch per running thread, or NULL */
    char *pk;     /* the kept P (nbatch x Lq x Lk), or NULL */
    _Atomic int next;
} sdpa_fwd_job;

static void sdpa_fwd_task(void *arg, int64_t b0, int64_t b1)
{
    sdpa_fwd_job *j = arg;
    const sdpa_geom *g = j->s->g;
    const int64_t sb = sdpa_block_rows(g->Lq, j->s->causal), es = j->s->es;
    char *pb = j->pk ? NULL : j->sc[atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)];
    for (int64_t b = b0; b < b1; b++) {
        if (j->pk) pb = j->pk + b * g->Lq * g->Lk * es;
        j->bad[b] = -1;
        for (int64_t r0 = 0; r0 < g->Lq; r0 += sb) {
            if ((j->bad[b] = sdpa_probs_rows(j->s, b, pb, r0, sb)) >= 0) break;
            const int64_t r1 = r0 + sb < g->Lq ? r0 + sb : g->Lq;
            char *y = (char *)sdpa_at(j->y, g, b) + r0 * j->y->ld * es;
            tg__gemm(j->s->c, j->s->f64, false, j->v->tr, r1 - r0, g->Dv,
                     sdpa_key_end(g, r0, sb), 1.0, pb + r0 * g->Lk * es, g->Lk,
                     sdpa_at(j->v, g, b), j->v->ld, 0.0, y, j->y->ld);
        }
    }
}

/* The forward: y (rows of unit stride, batch shape g->bs), and P into pk
 * when it is non-NULL. */
static bool sdpa_run(tg_ctx *c, const sdpa_geom *g, const sdpa_mat *q, const sdpa_mat *k,
                     const sdpa_mat *v, const tg_tensor *mask, bool causal, double scale,
                     tg_tensor *y, char *pk)
{
    int64_t es = (int64_t)tg__esize(y->dtype);
    int64_t nsc = tg_ctx_threads(c) < g->nbatch ? tg_ctx_threads(c) : g->nbatch;
    char **sc = pk ? NULL : sdpa_scratch(c, nsc, g->Lq * g->Lk, es);
    if (!pk && !sc) return false;
    int64_t mst[TG_MAX_DIMS + 2];
    sdpa_mask_strides(mask, g, mst);
    int64_t *bad = tg__arena_alloc(c, (size_t)(g->nbatch > 0 ? g->nbatch : 1) * sizeof(int64_t));
    if (!bad) return false;
    sdpa_mat my;
    bool ok = sdpa_mat_of(y, g, &my);
    TG_ASSERT(ok && !my.tr);
    const sdpa_scores s = {c, g, q, k, mask, mst, causal, y->dtype == TG_F64, scale, es};
    sdpa_fwd_job j = {&s, v, &my, bad, sc, pk, 0};
    atomic_init(&j.next, 0);
    tg__parallel_for(c, g->nbatch, 1, sdpa_fwd_task, &j);
    for (int64_t b = 0; b < g->nbatch; b++) {
        if (bad[b] < 0) continue;
        char a[128];
        int64_t ss[TG_MAX_DIMS + 2];
        memcpy(ss, g->bs, (size_t)g->nb * sizeof(int64_t));
        ss[g->nb] = g->Lq;
        ss[g->nb + 1] = g->Lk;
        tg__fail(c, TG_ERR_NUMERIC,
                 "tg_sdpa: scores %s: query %lld of batch %lld is fully masked (every "
                 "key -inf): nothing to attend to",
                 tg__fmt_shape(a, sizeof a, g->nb + 2, ss), (long long)bad[b], (long long)b);
        return false;
    }
    return true;
}

/* t, or a contiguous copy when BLAS cannot read its last two dims. */
static tg_tensor *sdpa_operand(tg_ctx *c, tg_tensor *t, const sdpa_geom *g, sdpa_mat *m)
{
    if (sdpa_mat_of(t, g, m)) return t;
    tg_tensor *d = tg__empty(c, "tg_sdpa", t->dtype, t->ndim, t->shape);
    if (!d) return NULL;
    tg__copy_strided(c, d, t);
    sdpa_mat_of(d, g, m);
    return d;
}

/* q is (..., Lq, D), k is (..., Lk, D), v is (..., Lk, Dv); y is (..., Lq, Dv) */
/* y = softmax(q k^T * scale + mask + causal, -1) v */
tg_tensor *tg_sdpa(tg_ctx *c, tg_tensor *q, tg_tensor *k, tg_tensor *v, tg_tensor *mask,
                   bool causal, double scale)
{
    const char *fn = "tg_sdpa";
    tg_tensor *in[4] = {q, k, v, mask};
    if (!tg__check_inputs(c, fn, 3, in) || !tg__check_same_dtype(c, fn, q, k) ||
        !tg__check_same_dtype(c, fn, q, v))
        return NULL;
    if (mask && (!tg__check_inputs(c, fn, 1, &mask) || !tg__check_same_dtype(c, fn, q, mask)))
        return NULL;
    char a[128], b[128], d[128];
    tg__fmt_shape(a, sizeof a, q->ndim, q->shape);
    tg__fmt_shape(b, sizeof b, k->ndim, k->shape);
    tg__fmt_shape(d, sizeof d, v->ndim, v->shape);
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2) {
        tg__fail(c, TG_ERR_SHAPE, "%s: q %s, k %s, v %s: each needs at least 2 dims", fn, a, b, d);
        return NULL;
    }
    int64_t Lq = q->shape[q->ndim - 2], D = q->shape[q->ndim - 1];
    int64_t Lk = k->shape[k->ndim - 2];
    if (k->shape[k->ndim - 1] != D || v->shape[v->ndim - 2] != Lk) {
        tg__fail(c, TG_ERR_SHAPE,
                 "%s: q %s, k %s, v %s: need q [..., Lq, D], k [..., Lk, D], "
                 "v [..., Lk, Dv]",
                 fn, a, b, d);
        return NULL;
    }
    int nb1, nb2;
    int64_t b1[TG_MAX_DIMS], b2[TG_MAX_DIMS];
    if (!tg__broadcast_shape(q->ndim - 2, q->shape, k->ndim - 2, k->shape, &nb1, b1) ||
        !tg__broadcast_shape(nb1, b1, v->ndim - 2, v->shape, &nb2, b2)) {
        tg__fail(c, TG_ERR_SHAPE, "%s: q %s, k %s, v %s: batch dims do not broadcast", fn, a, b, d);
        return NULL;
    }
    if (!isfinite(scale)) {
        tg__fail(c, TG_ERR_INVALID, "%s: scale %g is not finite", fn, scale);
        return NULL;
    }
    if (scale == 0) scale = D > 0 ? 1.0 / sqrt((double)D) : 1.0;
    int64_t ss[TG_MAX_DIMS + 2];
    memcpy(ss, b1, (size_t)nb1 * sizeof(int64_t));
    ss[nb1] = Lq;
    ss[nb1 + 1] = Lk;
    if (mask) {
        int64_t bs[TG_MAX_DIMS];
        int ns = nb1 + 2, nm;
        bool same = tg__broadcast_shape(ns, ss, mask->ndim, mask->shape, &nm, bs) && nm == ns;
        for (int i = 0; same && i < ns; i++) same = bs[i] == ss[i];
        if (!same) {
            char m[128], sc[128];
            tg__fail(c, TG_ERR_SHAPE, "%s: mask %s does not broadcast to the scores %s", fn,
                     tg__fmt_shape(m, sizeof m, mask->ndim, mask->shape),
                     tg__fmt_shape(sc, sizeof sc, ns, ss));
            return NULL;
        }
    }
    /* the batch shape of everything: q, k and v's broadcast (the scores are
     * repeated over batch dims that only v has) */
    sdpa_geom g = {.nb = nb2, .Lq = Lq, .Lk = Lk, .D = D, .Dv = v->shape[v->ndim - 1]};
    memcpy(g.bs, b2, (size_t)nb2 * sizeof(int64_t));
    g.nbatch = tg__numel(nb2, b2);
    memcpy(ss, b2, (size_t)nb2 * sizeof(int64_t));
    ss[nb2] = Lq;
    ss[nb2 + 1] = Lk;
    sdpa_mat mq, mk, mv;
    tg_tensor *qd = sdpa_operand(c, q, &g, &mq), *kd = qd ? sdpa_operand(c, k, &g, &mk) : NULL;
    tg_tensor *vd = kd ? sdpa_operand(c, v, &g, &mv) : NULL;
    int64_t ys[TG_MAX_DIMS + 2];
    memcpy(ys, ss, sizeof ys);
    ys[nb2 + 1] = g.Dv;
    tg_tensor *y = vd ? sdpa_empty_like(c, q, q->dtype, nb2 + 2, ys) : NULL;
    tg_tensor *pk = NULL; /* P kept for the backward (sdpa_keeps) */
    if (y && tg__wants_grad(c, 4, in) && sdpa_keeps(&g) &&
        !(pk = tg__empty(c, fn, q->dtype, 3, (const int64_t[]){g.nbatch, Lq, Lk})))
        return NULL;
    if (!y || !sdpa_run(c, &g, &mq, &mk, &mv, mask, causal, scale, y, pk ? tg__ptr(pk) : NULL))
        return NULL;
    tg__node *n;
    if (tg__record(c, TG_OP_SDPA, y, 4, in, &n)) return NULL;
    if (n) {
        n->f[0] = scale;
        n->iv[0] = causal;
        n->n_iv = 1;
        tg__save_own(n, 0, pk);
    }
    return y;
}

/* A constant (Lq, Lk) tensor: 0 where key j <= query i, -inf above. */
static tg_tensor *causal_mask(tg_ctx *c, tg_dtype dt, int64_t Lq, int64_t Lk)
{
    int64_t shape[2] = {Lq, Lk};
    tg_tensor *m = tg__empty(c, "tg_sdpa", dt, 2, shape);
    if (!m) return NULL;
    for (int64_t i = 0; i < Lq; i++)
        for (int64_t j = 0; j < Lk; j++) {
            double v = j <= i ? 0.0 : -INFINITY;
            if (dt == TG_F32) ((float *)tg__ptr(m))[i * Lk + j] = (float)v;
            else ((double *)tg__ptr(m))[i * Lk + j] = v;
        }
    return m;
}

/* The backward with ops (differentiable again), from P rebuilt with ops. */
static void sdpa_backward_ops(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *mask = n->in[3];
    double scale = n->f[0];
    int64_t Lq = q->shape[q->ndim - 2], Lk = k->shape[k->ndim - 2];
    tg_tensor *s = tg_scale(c, tg_matmul(c, q, tg_transpose(c, k, -2, -1)), scale);
    if (mask) s = tg_add(c, s, mask);
    if (n->iv[0]) s = tg_add(c, s, causal_mask(c, q->dtype, Lq, Lk));
    tg_tensor *P = tg_softmax(c, s, -1);
    if (NEED(2)) dx[2] = tg_matmul(c, tg_transpose(c, P, -2, -1), dout);
    if (!NEED(0) && !NEED(1) && !NEED(3)) return;
    tg_tensor *dP = tg_matmul(c, dout, tg_transpose(c, v, -2, -1));
    tg_tensor *dS = tg_mul(c, P, tg_sub(c, dP, tg_sum_axes(c, tg_mul(c, dP, P), 1,
                                                            (const int[]){P->ndim - 1}, true)));
    if (NEED(0)) dx[0] = tg_scale(c, tg_matmul(c, dS, k), scale);
    if (NEED(1)) dx[1] = tg_scale(c, tg_matmul(c, tg_transpose(c, dS, -2, -1), q), scale);
    if (NEED(3)) dx[3] = dS;
}

/* dS = P (dP - rowsum(dP P)) in place of dP, rows [r0, r1) of Lk entries
 * of which the first ke are read and written (a causal block's keys: P is
 * zero past them, so the sums keep the bits of whole rows) */
#define SDPA_DS(T)                                                                             \
    for (int64_t i = r0; i < r1; i++) {                                                        \
        const T *pr = (const T *)pb + i * Lk;                                                  \
        T *dr = (T *)ds + i * Lk;                                                              \
        double dk[TG__NSUM] = {0}, dot = 0.0;                                                  \
        int64_t j = 0;                                                                         \
        for (; j + TG__NSUM <= ke; j += TG__NSUM)                                              \
            for (int k = 0; k < TG__NSUM; k++) dk[k] += (double)dr[j + k] * (double)pr[j + k]; \
        for (; j < ke; j++) dot += (double)dr[j] * (double)pr[j];                              \
        dot += tg__sum_parts(dk);                                                              \
        for (j = 0; j < ke; j++) dr[j] = (T)((double)pr[j] * ((double)dr[j] - dot));           \
    }

/* dS = P * (dP - rowsum(dP * P)) in place of dP (ds), see SDPA_DS */
TG__VEC_CLONES static void sdpa_ds(bool f64, const char *pb, char *ds, int64_t r0, int64_t r1,
                                   int64_t Lk, int64_t ke)
{
    if (f64) {
        SDPA_DS(double)
    } else {
        SDPA_DS(float)
    }
}

/* The plain backward over batches [b0, b1), each with its own outputs;
 * each running thread has its own scratch for P (recomputed) and dS. */
typedef struct {
    tg_ctx *c;
    const sdpa_geom *g;
    const sdpa_mat *mq, *mk, *mv, *md; /* md: dout */
    bool f64;
    double scale;
    int64_t es;
    const sdpa_scores *s;
    const sdpa_mat *out; /* dq, dk, dv, dmask (t NULL when not needed) */
    bool need_ds;
    char **ds, **pf; /* per running thread: dS, and P (when not kept) */
    const char *pk;  /* the forward's P (nbatch x Lq x Lk), or NULL */
    _Atomic int next;
} sdpa_bwd_job;

static void sdpa_bwd_task(void *arg, int64_t b0, int64_t b1)
{
    sdpa_bwd_job *j = arg;
    const sdpa_geom *g = j->g;
    const int64_t Lq = g->Lq, Lk = g->Lk, es = j->es;
    const bool f64 = j->f64;
    tg_ctx *c = j->c;
    const sdpa_mat *out = j->out, *md = j->md;
    int t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
    char *ds = j->need_ds ? j->ds[t] : NULL, *pf = j->pk ? NULL : j->pf[t];
    const int64_t sb = sdpa_block_rows(Lq, j->s->causal);
    for (int64_t b = b0; b < b1; b++) {
        const char *db = sdpa_at(md, g, b), *pb = pf;
        /* the forward succeeded on these inputs (their versions are
         * checked), so no row is fully masked */
        if (j->pk) pb = j->pk + b * Lq * Lk * es;
        else (void)sdpa_probs(j->s, b, pf, sb);
        if (out[2].t) /* dV = P^T dY */
            sdpa_key_blocks(c, g, f64, es, sb, pb, md, b, 1.0, &out[2], g->Dv);
        if (!ds) continue;
        /* dP = dY V^T, then dS in place, by blocks of rows over their keys */
        for (int64_t r0 = 0; r0 < Lq; r0 += sb) {
            const int64_t r1 = r0 + sb < Lq ? r0 + sb : Lq, ke = sdpa_key_end(g, r0, sb);
            tg__gemm(c, f64, md->tr, !j->mv->tr, r1 - r0, ke, g->Dv, 1.0, sdpa_row(md, db, r0, es),
                     md->ld, sdpa_at(j->mv, g, b), j->mv->ld, 0.0, ds + r0 * Lk * es, Lk);
            sdpa_ds(f64, pb, ds, r0, r1, Lk, ke);
            for (int64_t i = r0; out[3].t && ke < Lk && i < r1; i++) /* the mask's gradient */
                memset(ds + (i * Lk + ke) * es, 0, (size_t)((Lk - ke) * es));
            if (out[0].t) /* dQ = scale dS K */
                tg__gemm(c, f64, false, j->mk->tr, r1 - r0, g->D, ke, j->scale,
                         ds + r0 * Lk * es, Lk, sdpa_at(j->mk, g, b), j->mk->ld, 0.0,
                         (char *)sdpa_at(&out[0], g, b) + r0 * out[0].ld * es, out[0].ld);
        }
        if (out[3].t)
            memcpy((char *)sdpa_at(&out[3], g, b), ds, (size_t)(Lq * Lk * es));
        if (out[1].t) /* dK = scale dS^T Q */
            sdpa_key_blocks(c, g, f64, es, sb, ds, j->mq, b, j->scale, &out[1], g->D);
    }
}

/* dout is (..., Lq, Dv), read in place; dq, dk, dv in the broadcast batch
 * shape, each in its input's order of dims (sdpa_empty_like), dmask
 * contiguous */
void tg__sdpa_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (c->grad_enabled) {
        sdpa_backward_ops(c, n, dout, dx);
        return;
    }
    tg_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *mask = n->in[3];
    double scale = n->f[0];
    int nb1;
    int64_t b1[TG_MAX_DIMS];
    sdpa_geom g = {.Lq = q->shape[q->ndim - 2],
                   .Lk = k->shape[k->ndim - 2],
                   .D = q->shape[q->ndim - 1],
                   .Dv = v->shape[v->ndim - 1]};
    /* the forward's batch shape: q, k and v's broadcast (checked then) */
    bool ok = tg__broadcast_shape(q->ndim - 2, q->shape, k->ndim - 2, k->shape, &nb1, b1) &&
              tg__broadcast_shape(nb1, b1, v->ndim - 2, v->shape, &g.nb, g.bs);
    TG_ASSERT(ok);
    g.nbatch = tg__numel(g.nb, g.bs);
    int64_t Lq = g.Lq, Lk = g.Lk, es = (int64_t)tg__esize(q->dtype), sh[TG_MAX_DIMS + 2];
    bool f64 = q->dtype == TG_F64;
    sdpa_mat mq, mk, mv, md;
    tg_tensor *qd = sdpa_operand(c, q, &g, &mq), *kd = qd ? sdpa_operand(c, k, &g, &mk) : NULL;
    tg_tensor *vd = kd ? sdpa_operand(c, v, &g, &mv) : NULL;
    tg_tensor *dd = vd ? sdpa_operand(c, dout, &g, &md) : NULL;
    if (!dd) return;
    memcpy(sh, g.bs, (size_t)g.nb * sizeof(int64_t));
    sdpa_mat out[4] = {{.t = NULL}, {.t = NULL}, {.t = NULL}, {.t = NULL}};
    const int64_t last[4] = {g.D, g.D, g.Dv, g.Lk};
    const int64_t rows[4] = {Lq, Lk, Lk, Lq};
    for (int i = 0; i < 4; i++) {
        if (!NEED(i)) continue;
        sh[g.nb] = rows[i];
        sh[g.nb + 1] = last[i];
        tg_tensor *o = i < 3 ? sdpa_empty_like(c, n->in[i], q->dtype, g.nb + 2, sh)
                             : tg__empty(c, "tg_sdpa", q->dtype, g.nb + 2, sh);
        if (!o) return;
        bool ok = sdpa_mat_of(o, &g, &out[i]);
        TG_ASSERT(ok && !out[i].tr);
    }
    bool need_ds = NEED(0) || NEED(1) || NEED(3);
    int64_t nds = tg_ctx_threads(c) < g.nbatch ? tg_ctx_threads(c) : g.nbatch;
    char **ds = need_ds ? sdpa_scratch(c, nds, Lq * Lk, es) : NULL;
    const tg_tensor *pk = n->saved[0]; /* the forward's P, when it kept it */
    char **pf = pk ? NULL : sdpa_scratch(c, nds, Lq * Lk, es);
    if ((need_ds && !ds) || (!pk && !pf)) return;
    int64_t mst[TG_MAX_DIMS + 2];
    sdpa_mask_strides(mask, &g, mst);
    const sdpa_scores s = {c, &g, &mq, &mk, mask, mst, n->iv[0] != 0, f64, scale, es};
    sdpa_bwd_job j = {c,  &g,  &mq,     &mk, &mv, &md, f64, scale, es, &s, out, need_ds,
                      ds, pf, pk ? tg__ptr((tg_tensor *)pk) : NULL, 0};
    atomic_init(&j.next, 0);
    tg__parallel_for(c, g.nbatch, 1, sdpa_bwd_task, &j);
    for (int i = 0; i < 4; i++) dx[i] = (tg_tensor *)out[i].t;
}
