/*
 * gradcheck.c - the public gradient checker: analytic gradients from the
 * backward driver against central finite differences, in TG_F64.
 *
 * Sits above the ops (it builds its scalar objective with tg_mul/tg_sum
 * and differentiates with tg_grad_of), next to the backward driver.
 *
 * Method. f's output is reduced to a scalar L = sum(w * out) with weights
 * w drawn once from a seeded RNG in [0.5, 1.5), so no output element is
 * ignored and no weight is ~0 (a weight of 0 would hide a wrong gradient
 * of that element). For every element x_j of every checked input,
 *
 *     numeric_j = (L(x + e_j) - L(x - e_j)) / ((x_j + eps) - (x_j - eps))
 *
 * (the denominator is the step actually taken after rounding, not 2 eps),
 * compared with the analytic gradient by |a - n| <= atol + rtol * |n|.
 * The second-order check applies the same test to
 * G(x) = sum_i sum(v_i * dL/dx_i) with fixed random v_i: its analytic
 * gradient comes from differentiating a create_graph backward, its numeric
 * one from central differences of G recomputed from first-order gradients.
 *
 * Two private contexts: `work` holds one evaluation (f, L, backward) and is
 * reset between evaluations, so the whole check allocates no more than one
 * evaluation needs; `keep` holds what must survive resets (weights, saved
 * input values, analytic and numeric results). Both are freed on every
 * path. Checked inputs are perturbed in place through their strides and
 * restored to their exact original bits after each element.
 */
#include "../tensor/tensor_impl.h"
#include "tapegrad/autograd.h"
#include "tapegrad/ops.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GC_SEED 0x6a09e667f3bcc908ull /* fixed: the same check every run */

tg_gradcheck_opts tg_gradcheck_defaults(void)
{
    tg_gradcheck_opts o;
    o.eps = 1e-6;
    o.atol = 1e-7;
    o.rtol = 1e-5;
    o.second_order = false;
    return o;
}

typedef struct {
    tg_fn f;
    void *user;
    tg_tensor **inputs;
    int n;
    tg_gradcheck_opts o;

    tg_ctx *work, *keep;

    int nc;          /* checked inputs */
    int *idx;        /* their positions in inputs[] */
    tg_tensor **x;   /* the checked inputs themselves */
    int64_t *numel;  /* their element counts */
    double **orig;   /* their original values (bits), row-major */
    double **ana;    /* analytic gradient, row-major */
    double **num;    /* numeric gradient, row-major */
    double *scratch; /* max numel doubles */
    tg_tensor **g;   /* gradients of the current evaluation (in work) */

    tg_tensor *w;  /* output weights, in keep */
    tg_tensor **v; /* second-order weights, in keep */

    char *report;
    size_t report_len;
} gc_state;

/* ---- reporting ---------------------------------------------------------- */

static tg_status gc_report(gc_state *s, tg_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static tg_status gc_report(gc_state *s, tg_status st, const char *fmt, ...)
{
    if (s->report && s->report_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->report, s->report_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Reports the error recorded on c (a failure of f, an op or backward);
 * f returning NULL without recording an error counts as TG_ERR_INVALID. */
static tg_status gc_fail_ctx(gc_state *s, tg_ctx *c, const char *what)
{
    tg_status st = tg_ctx_status(c);
    const char *msg = tg_ctx_errmsg(c);
    if (st == TG_OK)
        return gc_report(s, TG_ERR_INVALID,
                         "tg_gradcheck: %s returned NULL without recording an error", what);
    return gc_report(s, st, "tg_gradcheck: %s failed: %s (%s)", what,
                     msg && *msg ? msg : "no message", tg_status_str(st));
}

/* "[i0,i1,...]" for row-major position flat of t. */
static void fmt_index(char *buf, size_t n, const tg_tensor *t, int64_t flat)
{
    int64_t ix[TG_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t sz = t->shape[d] > 0 ? t->shape[d] : 1;
        ix[d] = flat % sz;
        flat /= sz;
    }
    size_t k = 0;
    int w = snprintf(buf, n, "[");
    k = w > 0 ? (size_t)w : 0;
    for (int d = 0; d < t->ndim && k < n; d++) {
        w = snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)ix[d]);
        if (w < 0) break;
        k += (size_t)w;
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- element access through strides ------------------------------------ */

static double *elem(tg_tensor *t, int64_t flat)
{
    return (double *)(void *)(tg__ptr(t) + tg__flat_offset(t, flat));
}

static void restore_elem(gc_state *s, int i, int64_t j)
{
    memcpy(elem(s->x[i], j), &s->orig[i][j], sizeof(double));
    tg_tensor_bump_version(s->x[i]);
}

/* ---- evaluations in `work` ---------------------------------------------- */

/* Seed of the work context's RNG before every run of f. */
#define GC_F_SEED 0x6c0ffee5ull

/* Resets work, runs f and returns L = sum(w * out) (NULL on error, with the
 * report written and *st set). */
static tg_tensor *eval_loss(gc_state *s, bool grad_mode, tg_tensor **out_p, tg_status *st)
{
    tg_ctx *c = s->work;
    tg_ctx_reset(c);
    tg_ctx_seed(c, GC_F_SEED); /* the same draws every time: f may use the RNG (dropout) */
    tg_set_grad_enabled(c, grad_mode);
    tg_tensor *out = s->f(c, s->inputs, s->n, s->user);
    if (!out) {
        *st = gc_fail_ctx(s, c, "f");
        return NULL;
    }
    if (tg_ndim(out) != tg_ndim(s->w) ||
        memcmp(tg_shape(out), tg_shape(s->w), (size_t)tg_ndim(out) * sizeof(int64_t)) != 0 ||
        tg_tensor_dtype(out) != TG_F64) {
        char a[96], b[96];
        *st = gc_report(s, TG_ERR_INVALID,
                        "tg_gradcheck: f returned %s %s, but %s f64 the first time",
                        tg_dtype_name(tg_tensor_dtype(out)), tg_shape_str(out, a, sizeof a),
                        tg_shape_str(s->w, b, sizeof b));
        return NULL;
    }
    tg_tensor *L = tg_sum(c, tg_mul(c, out, s->w));
    if (!L) {
        *st = gc_fail_ctx(s, c, "reducing f's output");
        return NULL;
    }
    if (out_p) *out_p = out;
    *st = TG_OK;
    return L;
}

/* s->g[i] = dL/dx_i for the evaluation at the current inputs (create_graph
 * as asked); zeros when L does not depend on any input at all. Returns the
 * output through out_p. */
static tg_status first_grads(gc_state *s, bool create_graph, tg_tensor **out_p)
{
    tg_status st;
    tg_tensor *L = eval_loss(s, true, out_p, &st);
    if (!L) return st;
    if (!tg_requires_grad(L)) {
        for (int i = 0; i < s->nc; i++) {
            s->g[i] = tg_zeros_like(s->work, s->x[i]);
            if (!s->g[i]) return gc_fail_ctx(s, s->work, "allocating a gradient");
        }
        return TG_OK;
    }
    st = tg_grad_of(s->work, 1, &L, NULL, s->nc, s->x, create_graph, s->g);
    if (st != TG_OK) return gc_fail_ctx(s, s->work, "backward (tg_grad_of)");
    return TG_OK;
}

/* G = sum_i sum(v_i * g_i), in work. */
static tg_tensor *weighted_grad_sum(gc_state *s)
{
    tg_ctx *c = s->work;
    tg_tensor *acc = NULL;
    for (int i = 0; i < s->nc; i++) {
        tg_tensor *t = tg_sum(c, tg_mul(c, s->g[i], s->v[i]));
        acc = acc ? tg_add(c, acc, t) : t;
    }
    return acc;
}

/* The scalar objective at the current inputs: L (first order, grad mode
 * off) or G (second order, from a plain backward). */
static tg_status eval_scalar(gc_state *s, bool second, double *val)
{
    tg_status st;
    if (!second) {
        tg_tensor *L = eval_loss(s, false, NULL, &st);
        if (!L) return st;
        *val = tg_item(L);
        return TG_OK;
    }
    st = first_grads(s, false, NULL);
    if (st != TG_OK) return st;
    tg_tensor *G = weighted_grad_sum(s);
    if (!G) return gc_fail_ctx(s, s->work, "summing first-order gradients");
    *val = tg_item(G);
    return TG_OK;
}

/* Copies g (in work) to dst (numel doubles). */
static tg_status copy_grad(gc_state *s, int i, tg_tensor *g, double *dst)
{
    if (s->numel[i] == 0) return TG_OK;
    if (!g || tg_tensor_dtype(g) != TG_F64 || tg_numel(g) != s->numel[i]) {
        char a[96], b[96];
        return gc_report(
            s, TG_ERR_INVALID, "tg_gradcheck: gradient of input %d is %s %s, expected f64 %s",
            s->idx[i], g ? tg_dtype_name(tg_tensor_dtype(g)) : "NULL",
            g ? tg_shape_str(g, a, sizeof a) : "-", tg_shape_str(s->x[i], b, sizeof b));
    }
    tg_status st = tg_copy_out(g, dst, (size_t)s->numel[i] * sizeof(double));
    if (st != TG_OK)
        return gc_report(s, st, "tg_gradcheck: cannot read gradient of input %d", s->idx[i]);
    return TG_OK;
}

/* Central differences of the objective for every element of every checked
 * input, into s->num. Inputs are restored after each element, whatever
 * happens. */
static tg_status numeric(gc_state *s, bool second)
{
    for (int i = 0; i < s->nc; i++) {
        for (int64_t j = 0; j < s->numel[i]; j++) {
            double *p = elem(s->x[i], j);
            double x0 = s->orig[i][j];
            double xp = x0 + s->o.eps, xm = x0 - s->o.eps;
            double fp = 0, fm = 0;

            *p = xp;
            tg_tensor_bump_version(s->x[i]);
            tg_status st = eval_scalar(s, second, &fp);
            if (st == TG_OK) {
                *p = xm;
                tg_tensor_bump_version(s->x[i]);
                st = eval_scalar(s, second, &fm);
            }
            restore_elem(s, i, j);
            if (st != TG_OK) return st;
            s->num[i][j] = (fp - fm) / (xp - xm);
        }
    }
    return TG_OK;
}

/* Compares s->ana with s->num and reports the worst element. */
static tg_status compare(gc_state *s, const char *check)
{
    int wi = -1;
    int64_t wj = -1, bad = 0, total = 0;
    double worst = -1;
    for (int i = 0; i < s->nc; i++) {
        for (int64_t j = 0; j < s->numel[i]; j++) {
            double a = s->ana[i][j], n = s->num[i][j];
            double tol = s->o.atol + s->o.rtol * fabs(n);
            double diff = fabs(a - n);
            total++;
            if (diff <= tol) continue; /* false for NaN: a NaN fails */
            bad++;
            double r = isnan(diff) ? INFINITY : (tol > 0 ? diff / tol : INFINITY);
            if (r > worst || wi < 0) {
                worst = r;
                wi = i;
                wj = j;
            }
        }
    }
    if (bad == 0) return TG_OK;

    char ix[160], sh[96];
    fmt_index(ix, sizeof ix, s->x[wi], wj);
    tg_shape_str(s->x[wi], sh, sizeof sh);
    double a = s->ana[wi][wj], n = s->num[wi][wj];
    return gc_report(s, TG_ERR_GRADCHECK,
                     "tg_gradcheck: %s: input %d, element %s (flat %lld): analytic %.17g, "
                     "numeric %.17g, |diff| %.3g > atol %.3g + rtol %.3g * |numeric|; "
                     "input shape %s; %lld of %lld elements differ",
                     check, s->idx[wi], ix, (long long)wj, a, n, fabs(a - n), s->o.atol, s->o.rtol,
                     sh, (long long)bad, (long long)total);
}

/* Reports one element of input i for the zero-grad and determinism checks. */
static tg_status report_elem(gc_state *s, const char *check, int i, int64_t j, const char *la,
                             double a, const char *lb, double b)
{
    char ix[160], sh[96];
    fmt_index(ix, sizeof ix, s->x[i], j);
    tg_shape_str(s->x[i], sh, sizeof sh);
    return gc_report(s, TG_ERR_GRADCHECK,
                     "tg_gradcheck: %s: input %d, element %s (flat %lld): %s %.17g, %s %.17g; "
                     "input shape %s",
                     check, s->idx[i], ix, (long long)j, la, a, lb, b, sh);
}

/* ---- the checks --------------------------------------------------------- */

/* Analytic first-order gradients into s->ana, plus the determinism and
 * zero-output-gradient checks on the same graph. */
static tg_status check_first_analytic(gc_state *s)
{
    tg_tensor *out = NULL;
    tg_status st = first_grads(s, false, &out);
    if (st != TG_OK) return st;
    for (int i = 0; i < s->nc; i++) {
        st = copy_grad(s, i, s->g[i], s->ana[i]);
        if (st != TG_OK) return st;
    }
    if (!tg_requires_grad(out)) return TG_OK; /* f does not depend on the inputs */

    /* determinism: backward again over the same graph, bit for bit */
    tg_tensor *L = tg_sum(s->work, tg_mul(s->work, out, s->w));
    if (!L) return gc_fail_ctx(s, s->work, "reducing f's output");
    st = tg_grad_of(s->work, 1, &L, NULL, s->nc, s->x, false, s->g);
    if (st != TG_OK) return gc_fail_ctx(s, s->work, "second backward (tg_grad_of)");
    for (int i = 0; i < s->nc; i++) {
        st = copy_grad(s, i, s->g[i], s->scratch);
        if (st != TG_OK) return st;
        if (s->numel[i] == 0 ||
            memcmp(s->scratch, s->ana[i], (size_t)s->numel[i] * sizeof(double)) == 0)
            continue;
        for (int64_t j = 0; j < s->numel[i]; j++)
            if (memcmp(&s->scratch[j], &s->ana[i][j], sizeof(double)) != 0)
                return report_elem(s, "determinism", i, j, "first backward", s->ana[i][j],
                                   "second backward", s->scratch[j]);
    }

    /* a zero output gradient must give exactly zero input gradients */
    tg_tensor *dz = tg_zeros_like(s->work, out);
    if (!dz) return gc_fail_ctx(s, s->work, "allocating a zero output gradient");
    st = tg_grad_of(s->work, 1, &out, &dz, s->nc, s->x, false, s->g);
    if (st != TG_OK) return gc_fail_ctx(s, s->work, "backward of a zero gradient");
    for (int i = 0; i < s->nc; i++) {
        st = copy_grad(s, i, s->g[i], s->scratch);
        if (st != TG_OK) return st;
        for (int64_t j = 0; j < s->numel[i]; j++)
            if (!(s->scratch[j] == 0.0))
                return report_elem(s, "zero grad", i, j, "analytic", s->scratch[j], "expected",
                                   0.0);
    }
    return TG_OK;
}

/* Analytic gradient of G = sum_i sum(v_i * dL/dx_i) into s->ana. */
static tg_status check_second_analytic(gc_state *s)
{
    tg_status st = first_grads(s, true, NULL);
    if (st != TG_OK) return st;
    tg_tensor *G = weighted_grad_sum(s);
    if (!G) return gc_fail_ctx(s, s->work, "summing first-order gradients");
    if (!tg_requires_grad(G)) {
        /* no gradient depends on any input: the second derivative is 0 */
        for (int i = 0; i < s->nc; i++)
            for (int64_t j = 0; j < s->numel[i]; j++) s->ana[i][j] = 0.0;
        return TG_OK;
    }
    st = tg_grad_of(s->work, 1, &G, NULL, s->nc, s->x, false, s->g);
    if (st != TG_OK) return gc_fail_ctx(s, s->work, "double backward (tg_grad_of)");
    for (int i = 0; i < s->nc; i++) {
        st = copy_grad(s, i, s->g[i], s->ana[i]);
        if (st != TG_OK) return st;
    }
    return TG_OK;
}

/* Draws a tensor of the given shape uniform in [0.5, 1.5), in keep. */
static tg_tensor *draw_weights(tg_ctx *keep, int ndim, const int64_t *shape)
{
    tg_tensor *t = tg_rand(keep, TG_F64, ndim, shape);
    if (!t) return NULL;
    double *d = tg_data(t);
    for (int64_t k = 0; d && k < tg_numel(t); k++) d[k] += 0.5;
    return t;
}

/* Sorted byte offsets (from the storage's start) of t's elements, in keep. */
static int64_t *sorted_offsets(tg_ctx *keep, tg_tensor *t, int64_t n)
{
    int64_t *o = tg__arena_alloc(keep, (size_t)(n > 0 ? n : 1) * sizeof *o);
    if (!o) return NULL;
    int64_t base = t->offset * (int64_t)sizeof(double);
    for (int64_t j = 0; j < n; j++) o[j] = base + tg__flat_offset(t, j);
    qsort(o, (size_t)n, sizeof *o, cmp_i64);
    return o;
}

/* Two distinct checked inputs that share an element would make the numeric
 * gradient of one include the other's: rejected. The same tensor passed
 * twice is fine (both get the total gradient, analytic and numeric). */
static tg_status check_disjoint(gc_state *s)
{
    for (int a = 0; a < s->nc; a++) {
        for (int b = a + 1; b < s->nc; b++) {
            tg_tensor *x = s->x[a], *y = s->x[b];
            if (x == y || x->st != y->st || s->numel[a] == 0 || s->numel[b] == 0) continue;
            int64_t *ox = sorted_offsets(s->keep, x, s->numel[a]);
            int64_t *oy = sorted_offsets(s->keep, y, s->numel[b]);
            if (!ox || !oy) return gc_fail_ctx(s, s->keep, "allocating");
            for (int64_t i = 0, j = 0; i < s->numel[a] && j < s->numel[b];) {
                if (ox[i] == oy[j])
                    return gc_report(s, TG_ERR_INVALID,
                                     "tg_gradcheck: inputs %d and %d share elements of one "
                                     "storage: perturbing one would change the other",
                                     s->idx[a], s->idx[b]);
                if (ox[i] < oy[j]) i++;
                else j++;
            }
        }
    }
    return TG_OK;
}

/* Validates the inputs and sets up the checked set; allocations in keep. */
static tg_status setup(gc_state *s)
{
    tg_ctx *k = s->keep;
    int nc = 0;
    for (int i = 0; i < s->n; i++) {
        tg_tensor *t = s->inputs[i];
        if (!t) return gc_report(s, TG_ERR_INVALID, "tg_gradcheck: input %d is NULL", i);
        if (!tg_requires_grad(t)) continue;
        if (tg_tensor_dtype(t) != TG_F64)
            return gc_report(s, TG_ERR_INVALID,
                             "tg_gradcheck: input %d is %s and requires grad; only f64 "
                             "inputs can be checked (make it f64 or stop requiring grad)",
                             i, tg_dtype_name(tg_tensor_dtype(t)));
        if (tg__overlaps(t)) {
            char sh[96];
            return gc_report(s, TG_ERR_INVALID,
                             "tg_gradcheck: input %d %s overlaps itself (an expanded view?): "
                             "its elements cannot be perturbed one at a time",
                             i, tg_shape_str(t, sh, sizeof sh));
        }
        nc++;
    }
    if (nc == 0) return gc_report(s, TG_ERR_INVALID, "tg_gradcheck: no TG_F64 input requires grad");

    s->nc = nc;
    s->idx = tg__arena_alloc(k, (size_t)nc * sizeof *s->idx);
    s->x = tg__arena_alloc(k, (size_t)nc * sizeof *s->x);
    s->numel = tg__arena_alloc(k, (size_t)nc * sizeof *s->numel);
    s->orig = tg__arena_alloc(k, (size_t)nc * sizeof *s->orig);
    s->ana = tg__arena_alloc(k, (size_t)nc * sizeof *s->ana);
    s->num = tg__arena_alloc(k, (size_t)nc * sizeof *s->num);
    s->g = tg__arena_calloc(k, (size_t)nc, sizeof *s->g);
    s->v = tg__arena_calloc(k, (size_t)nc, sizeof *s->v);
    if (!s->idx || !s->x || !s->numel || !s->orig || !s->ana || !s->num || !s->g || !s->v)
        return gc_fail_ctx(s, k, "allocating");

    int64_t maxn = 1;
    for (int i = 0, c = 0; i < s->n; i++) {
        tg_tensor *t = s->inputs[i];
        if (!tg_requires_grad(t)) continue;
        s->idx[c] = i;
        s->x[c] = t;
        s->numel[c] = tg_numel(t);
        if (s->numel[c] > maxn) maxn = s->numel[c];
        size_t nb = (size_t)(s->numel[c] > 0 ? s->numel[c] : 1) * sizeof(double);
        s->orig[c] = tg__arena_alloc(k, nb);
        s->ana[c] = tg__arena_alloc(k, nb);
        s->num[c] = tg__arena_alloc(k, nb);
        if (!s->orig[c] || !s->ana[c] || !s->num[c]) return gc_fail_ctx(s, k, "allocating");
        for (int64_t j = 0; j < s->numel[c]; j++)
            memcpy(&s->orig[c][j], elem(t, j), sizeof(double));
        c++;
    }
    s->scratch = tg__arena_alloc(k, (size_t)maxn * sizeof(double));
    if (!s->scratch) return gc_fail_ctx(s, k, "allocating");
    return check_disjoint(s);
}

/* Runs f once to learn its output shape and draws the output weights. */
static tg_status setup_weights(gc_state *s)
{
    tg_ctx *c = s->work;
    tg_ctx_reset(c);
    tg_ctx_seed(c, GC_F_SEED);
    tg_set_grad_enabled(c, false);
    tg_tensor *out = s->f(c, s->inputs, s->n, s->user);
    if (!out) return gc_fail_ctx(s, c, "f");
    if (tg_tensor_dtype(out) != TG_F64) {
        char sh[96];
        return gc_report(s, TG_ERR_INVALID,
                         "tg_gradcheck: f returned %s %s; gradcheck needs an f64 output",
                         tg_dtype_name(tg_tensor_dtype(out)), tg_shape_str(out, sh, sizeof sh));
    }
    s->w = draw_weights(s->keep, tg_ndim(out), tg_shape(out));
    if (!s->w) return gc_fail_ctx(s, s->keep, "drawing output weights");
    if (s->o.second_order) {
        for (int i = 0; i < s->nc; i++) {
            s->v[i] = draw_weights(s->keep, tg_ndim(s->x[i]), tg_shape(s->x[i]));
            if (!s->v[i]) return gc_fail_ctx(s, s->keep, "drawing gradient weights");
        }
    }
    return TG_OK;
}

static tg_status run(gc_state *s)
{
    tg_status st = setup(s);
    if (st == TG_OK) st = setup_weights(s);
    if (st == TG_OK) st = check_first_analytic(s);
    if (st == TG_OK) st = numeric(s, false);
    if (st == TG_OK) st = compare(s, "first order");
    if (st != TG_OK || !s->o.second_order) return st;
    st = check_second_analytic(s);
    if (st == TG_OK) st = numeric(s, true);
    if (st == TG_OK) st = compare(s, "second order");
    return st;
}

tg_status tg_gradcheck(tg_fn f, void *user, tg_tensor **inputs, int n,
                       const tg_gradcheck_opts *opts, char *report, size_t report_len)
{
    gc_state s;
    memset(&s, 0, sizeof s);
    s.report = report;
    s.report_len = report_len;
    if (report && report_len > 0) report[0] = '\0';

    if (!f || !inputs || n < 1)
        return gc_report(&s, TG_ERR_INVALID, "tg_gradcheck: %s",
                         !f        ? "f is NULL"
                         : !inputs ? "inputs is NULL"
                                   : "n < 1");
    s.o = opts ? *opts : tg_gradcheck_defaults();
    if (!(s.o.eps > 0) || !isfinite(s.o.eps) || !(s.o.atol >= 0) || !(s.o.rtol >= 0) ||
        !isfinite(s.o.atol) || !isfinite(s.o.rtol))
        return gc_report(&s, TG_ERR_INVALID,
                         "tg_gradcheck: options need eps > 0, atol >= 0, rtol >= 0 (finite); "
                         "got eps %g, atol %g, rtol %g",
                         s.o.eps, s.o.atol, s.o.rtol);
    s.f = f;
    s.user = user;
    s.inputs = inputs;
    s.n = n;

    s.keep = tg_ctx_new();
    s.work = tg_ctx_new();
    tg_status st;
    if (!s.keep || !s.work) {
        st = gc_report(&s, TG_ERR_NOMEM, "tg_gradcheck: out of memory creating contexts");
    } else {
        tg_ctx_seed(s.keep, GC_SEED);
        st = run(&s);
    }
    tg_ctx_free(s.work);
    tg_ctx_free(s.keep);
    return st;
}
