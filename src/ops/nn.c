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
 * Attention (tg_sdpa) is a composite of recorded ops and has no node type.
 *
 * Node arguments: DROPOUT: f[0] = p, saved[0] = the scaled mask.
 * EMBEDDING_BACKWARD: iv[0] = number of rows.
 */
#include "ops_impl.h"

#include <math.h>
#include <string.h>

#define NEED(i) (n->in[i] && n->in[i]->requires_grad)

/* t itself when contiguous, else a contiguous copy in c (not recorded). */
static tg_tensor *dense(tg_ctx *c, const char *fn, tg_tensor *t)
{
    if (!t || tg_is_contiguous(t)) return t;
    tg_tensor *d = tg__empty(c, fn, t->dtype, t->ndim, t->shape);
    if (d) tg__copy_strided(c, d, t);
    return d;
}

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
        tg__save(n, 0, mask);
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
    tg_tensor *d = dense(c, fn, indices);
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
    tg_tensor *g = dense(c, fn, dout);
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

/* False (TG_ERR_NUMERIC on c) when some row of the contiguous scores s is
 * all -inf. */
static bool check_rows(tg_ctx *c, const tg_tensor *s)
{
    int64_t Lq = s->shape[s->ndim - 2], Lk = s->shape[s->ndim - 1];
    int64_t rows = tg__numel(s->ndim, s->shape) / (Lk > 0 ? Lk : 1);
    if (Lk == 0) return true;
    for (int64_t r = 0; r < rows; r++) {
        bool dead = true;
        for (int64_t j = 0; j < Lk && dead; j++) {
            double v = s->dtype == TG_F32 ? (double)((const float *)tg__ptr(s))[r * Lk + j]
                                          : ((const double *)tg__ptr(s))[r * Lk + j];
            dead = v == -INFINITY;
        }
        if (dead) {
            char a[128];
            tg__fail(c, TG_ERR_NUMERIC,
                     "tg_sdpa: scores %s: query %lld of batch %lld is fully masked (every key "
                     "-inf): nothing to attend to",
                     tg__fmt_shape(a, sizeof a, s->ndim, s->shape), (long long)(r % Lq),
                     (long long)(r / Lq));
            return false;
        }
    }
    return true;
}

/* q is (..., Lq, D), k is (..., Lk, D), v is (..., Lk, Dv); y is (..., Lq, Dv) */
/* y = softmax(q k^T * scale + mask + causal, -1) v */
tg_tensor *tg_sdpa(tg_ctx *c, tg_tensor *q, tg_tensor *k, tg_tensor *v, tg_tensor *mask,
                   bool causal, double scale)
{
    const char *fn = "tg_sdpa";
    tg_tensor *in[3] = {q, k, v};
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
    if (mask) {
        int64_t ss[TG_MAX_DIMS], bs[TG_MAX_DIMS];
        int ns = nb1 + 2, nm;
        memcpy(ss, b1, (size_t)nb1 * sizeof(int64_t));
        ss[nb1] = Lq;
        ss[nb1 + 1] = Lk;
        bool same = tg__broadcast_shape(ns, ss, mask->ndim, mask->shape, &nm, bs) && nm == ns;
        for (int i = 0; same && i < ns; i++) same = bs[i] == ss[i];
        if (!same) {
            char m[128], s[128];
            tg__fail(c, TG_ERR_SHAPE, "%s: mask %s does not broadcast to the scores %s", fn,
                     tg__fmt_shape(m, sizeof m, mask->ndim, mask->shape),
                     tg__fmt_shape(s, sizeof s, ns, ss));
            return NULL;
        }
    }
    tg_tensor *s = tg_scale(c, tg_matmul(c, q, tg_transpose(c, k, -2, -1)), scale);
    if (mask) s = tg_add(c, s, mask);
    if (causal) s = tg_add(c, s, causal_mask(c, q->dtype, Lq, Lk));
    if (!s) return NULL;
    /* causal alone never empties a row (query i always sees key 0) */
    if (mask && !check_rows(c, s)) return NULL;
    return tg_matmul(c, tg_softmax(c, s, -1), v);
}
